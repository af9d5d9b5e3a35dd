//! The connectors against librdkafka's mock cluster: a real Kafka-protocol
//! broker on loopback (it accepts transactions without enforcing them).

use crate::sink::framed;
use crate::source::KafkaSource;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::Duration;
use weir_connectors::{Poll, SinkContext, SinkFiles, SourceContext, SourceReader};
use weir_core::CheckpointId;
use weir_core::plan::Connector;
use weir_frame::Reader;
use weir_frame::connectors::{KafkaMessage, KafkaRecord};

fn produce(servers: &str, topic: &str, n: usize, partitions: i32) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some(b"x"),
        });
        p.send(
            BaseRecord::to(topic)
                .key(&key)
                .payload(&value)
                .partition(i as i32 % partitions)
                .timestamp(1_000 + i as i64)
                .headers(headers),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

fn connector(options: &[(&str, &str)]) -> Connector {
    Connector {
        kind: "kafka".into(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn source(servers: &str, sub: u32, p: u32, extra: &[(&str, &str)]) -> KafkaSource {
    let mut options = vec![
        ("topic", "in"),
        ("properties.bootstrap.servers", servers),
        ("scan.startup.mode", "earliest-offset"),
        ("scan.bounded.mode", "latest-offset"),
    ];
    options.extend_from_slice(extra);
    KafkaSource::open(
        &connector(&options),
        &SourceContext {
            uid: "kafka-in".into(),
            ..SourceContext::new(sub, p, 100)
        },
    )
    .unwrap()
}

/// Reads until the bounded source finishes or `limit` records.
fn drain(s: &mut KafkaSource, limit: usize) -> Vec<KafkaRecord> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let mut w = weir_frame::Writer::new();
        match s.poll(&mut w).unwrap() {
            Poll::Finished => break,
            Poll::Idle => {}
            Poll::Ready => {
                for r in Reader::new(w.as_bytes()) {
                    let r = r.unwrap();
                    let rec: KafkaRecord = postcard::from_bytes(r.value).unwrap();
                    assert_eq!(r.timestamp, rec.timestamp);
                    out.push(rec);
                }
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out
}

#[test]
fn source_reads_its_partitions_with_keys_headers_and_timestamps() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("in", 6, 1).unwrap();
    let servers = mock.bootstrap_servers();
    produce(&servers, "in", 600, 6);
    let mut all = Vec::new();
    for sub in 0..3 {
        let mut s = source(&servers, sub, 3, &[]);
        let got = drain(&mut s, usize::MAX);
        assert_eq!(s.splits(), 2, "six partitions over three subtasks");
        assert_eq!(got.len(), 200);
        all.extend(got);
    }
    all.sort_by_key(|r| r.timestamp);
    assert_eq!(all.len(), 600);
    let r = &all[7];
    assert_eq!(r.key.as_deref(), Some(&b"k7"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"v7"[..]));
    assert_eq!(r.timestamp, Some(1_007));
    assert_eq!(r.headers, vec![("h".to_owned(), Some(b"x".to_vec()))]);
}

#[test]
fn source_resumes_from_checkpointed_offsets_at_another_parallelism() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("in", 6, 1).unwrap();
    let servers = mock.bootstrap_servers();
    produce(&servers, "in", 600, 6);
    // Two subtasks read a part, then checkpoint.
    let mut positions = Vec::new();
    let mut seen = Vec::new();
    for sub in 0..2 {
        let mut s = source(&servers, sub, 2, &[]);
        seen.extend(drain(&mut s, 150));
        positions.push(s.position().unwrap());
    }
    // Three subtasks take over from those offsets.
    for sub in 0..3 {
        let mut s = source(&servers, sub, 3, &[]);
        s.restore(&positions).unwrap();
        seen.extend(drain(&mut s, usize::MAX));
    }
    let mut offsets: Vec<(i32, i64)> = seen.iter().map(|r| (r.partition, r.offset)).collect();
    offsets.sort();
    let before = offsets.len();
    offsets.dedup();
    assert_eq!(before, offsets.len(), "no record read twice");
    assert_eq!(offsets.len(), 600, "every record read once");
}

#[test]
fn source_errors_name_the_missing_topic() {
    let mock = MockCluster::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    let mut s = KafkaSource::open(
        &connector(&[
            ("topic", "nope"),
            ("properties.bootstrap.servers", &servers),
        ]),
        &SourceContext::new(0, 1, 10),
    )
    .unwrap();
    let e = s.poll(&mut weir_frame::Writer::new()).unwrap_err();
    assert!(
        e.message.contains("'nope'") && e.message.contains(&servers),
        "{e}"
    );
}

/// The context of a sink subtask of one job (restarts keep the job's id).
fn sink_ctx(dir: &std::path::Path, sub: u32) -> SinkContext {
    let mut c = SinkContext::new(sub, 1, "kafka-out", dir.join(format!("sink-{sub}")));
    c.job_id = "0123456789abcdef0123456789abcdef".parse().unwrap();
    c
}

fn read_all(servers: &str, topic: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut quiet = 0;
    while quiet < 20 {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet = 0;
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let h = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "weir.error").map(|_| "!"))
                    .unwrap_or("");
                out.push(format!("{v}{h}"));
            }
            _ => quiet += 1,
        }
    }
    out.sort();
    out
}

fn messages(range: std::ops::Range<u32>) -> Vec<KafkaMessage> {
    range
        .map(|i| KafkaMessage {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("m{i:03}").into_bytes()),
            ..KafkaMessage::default()
        })
        .collect()
}

#[test]
fn exactly_once_sink_commits_with_checkpoints_and_resends_after_a_failure() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("out", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let c = connector(&[
        ("topic", "out"),
        ("properties.bootstrap.servers", &servers),
        ("sink.delivery-guarantee", "exactly-once"),
    ]);
    let mut s = crate::sink::KafkaSink::open(&c, &sink_ctx(dir.path(), 0)).unwrap();
    use weir_connectors::SinkWriter;
    s.write(&framed(&messages(0..10))).unwrap();
    let state = s.snapshot(CheckpointId(1)).unwrap().unwrap();
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "the pending transaction's records");
    // Records after the barrier wait for the commit.
    s.write(&framed(&messages(10..15))).unwrap();
    // The task fails before checkpoint 1's commit: the restored sink sends
    // the checkpoint's records again in a transaction of its own.
    let kept: SinkFiles = files
        .iter()
        .map(|(n, p)| {
            let copy = dir.path().join(format!("kept-{n}"));
            std::fs::copy(p, &copy).unwrap();
            (n.clone(), copy)
        })
        .collect();
    drop(s);
    let mut r = crate::sink::KafkaSink::open(&c, &sink_ctx(dir.path(), 0)).unwrap();
    let own = weir_core::SubtaskState {
        subtask: 0,
        parallelism: 1,
        value: state,
    };
    r.restore(&[own], &kept).unwrap();
    r.write(&framed(&messages(10..20))).unwrap();
    r.snapshot(CheckpointId(2)).unwrap();
    r.commit(CheckpointId(2)).unwrap();
    let got = read_all(&servers, "out");
    // The mock does not hide aborted transactions: records 0..10 of the
    // failed run show, while 10..15, which waited for a commit that never
    // came, were never sent. The restored run wrote 0..20 once.
    for i in 0..20 {
        let m = format!("m{i:03}");
        let n = got.iter().filter(|g| **g == m).count();
        assert_eq!(n, if i < 10 { 2 } else { 1 }, "{m} in {got:?}");
    }
    assert_eq!(got.len(), 30);
}

#[test]
fn dead_letters_carry_the_reason() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("dlq", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let c = connector(&[
        ("topic", "in"),
        ("properties.bootstrap.servers", &servers),
        ("dead-letter.topic", "dlq"),
    ]);
    let mut d = crate::dead_letter(&c, &Default::default()).unwrap();
    let raw = postcard::to_allocvec(&KafkaRecord {
        topic: "in".into(),
        value: Some(b"not json".to_vec()),
        ..KafkaRecord::default()
    })
    .unwrap();
    d.send(&raw, "expected value").unwrap();
    d.flush().unwrap();
    assert_eq!(read_all(&servers, "dlq"), vec!["not json!".to_owned()]);
}

#[test]
fn startup_modes_and_partition_discovery() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("in", 2, 1).unwrap();
    let servers = mock.bootstrap_servers();
    produce(&servers, "in", 100, 2);
    let read = |mode: &[(&str, &str)]| {
        let mut s = source(&servers, 0, 1, mode);
        drain(&mut s, usize::MAX)
    };
    assert!(read(&[("scan.startup.mode", "latest-offset")]).is_empty());
    // (The mock cluster answers every lookup by time with the end, so the
    // timestamp mode is checked against real brokers only, in
    // tests/all/kafka.rs.)
    // Committed group offsets: partition 0 from 30, partition 1 from the start.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("in", 0, rdkafka::Offset::Offset(30))
        .unwrap();
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    let from_group = read(&[
        ("scan.startup.mode", "group-offsets"),
        ("properties.group.id", "g"),
    ]);
    assert_eq!(from_group.len(), 100 - 30);

    // A pattern picks up topics created while the source runs.
    let mut s = KafkaSource::open(
        &connector(&[
            ("topic-pattern", "disc-.*"),
            ("properties.bootstrap.servers", &servers),
            ("scan.startup.mode", "earliest-offset"),
            ("scan.topic-partition-discovery.interval", "100ms"),
        ]),
        &SourceContext::new(0, 1, 100),
    )
    .unwrap();
    mock.create_topic("disc-a", 1, 1).unwrap();
    produce(&servers, "disc-a", 10, 1);
    let mut n = 0;
    let mut created = false;
    for _ in 0..200 {
        let mut w = weir_frame::Writer::new();
        if s.poll(&mut w).unwrap() == Poll::Ready {
            n += weir_frame::count(w.as_bytes()).unwrap();
        }
        if n == 10 && !created {
            mock.create_topic("disc-b", 2, 1).unwrap();
            produce(&servers, "disc-b", 6, 2);
            created = true;
        }
        if n == 16 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(n, 16, "records of the topic created later");
    assert_eq!(s.splits(), 3);
}

#[test]
fn partitions_added_after_a_snapshot_start_at_the_beginning() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("grow-a", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    produce(&servers, "grow-a", 50, 1);
    let open = || {
        KafkaSource::open(
            &connector(&[
                ("topic-pattern", "grow-.*"),
                ("properties.bootstrap.servers", &servers),
                ("scan.startup.mode", "latest-offset"),
                ("scan.bounded.mode", "latest-offset"),
            ]),
            &SourceContext::new(0, 1, 100),
        )
        .unwrap()
    };
    // A run starts at the end of what is there, and checkpoints.
    let mut s = open();
    assert!(drain(&mut s, usize::MAX).is_empty());
    let position = s.position().unwrap();
    // A topic matching the pattern appears before the job restores: its
    // records came after the job started reading, so none may be missed.
    mock.create_topic("grow-b", 2, 1).unwrap();
    produce(&servers, "grow-b", 40, 2);
    let mut r = open();
    r.restore(&[position]).unwrap();
    let got = drain(&mut r, usize::MAX);
    assert_eq!(
        got.len(),
        40,
        "the new partitions are read from their start"
    );
    assert!(got.iter().all(|r| r.topic == "grow-b"));
}
