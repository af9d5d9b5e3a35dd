//! Kafka and database throughput, measured in one run:
//!
//! 1. records/s of Kafka -> (WASM identity map) -> Kafka through `weir run
//!    --local -p 1`, against a plain rdkafka consume-and-produce loop on the
//!    same broker (librdkafka's mock cluster in this process);
//! 2. rows/s upserted into PostgreSQL and MariaDB by the SQL sink, at least
//!    once and exactly once (two-phase commit every 50 000 rows).
//!
//! Run with `cargo bench -p weir-tests --bench kafka`.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::process::Command;
use std::time::{Duration, Instant};
use weir_connectors::{SinkContext, SinkFiles};
use weir_core::CheckpointId;
use weir_frame::connectors::SqlValue;
use weir_frame::{Record, Writer};
use weir_tests::KAFKA_JOBS_WASM;
use weir_tests::servers::{Kafka, MariaDb, Postgres};

const RECORDS: usize = 1_000_000;
/// librdkafka's mock cluster keeps at most 5 MiB per partition: with 32
/// partitions, every record of the input stays readable.
const PARTITIONS: i32 = 32;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Consumes `topic` and produces every record to `out`, as fast as one
/// thread can.
fn plain_copy(servers: &str, topic: &str, out: &str) -> Duration {
    let started = Instant::now();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "plain")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut n = 0;
    let mut progress = Instant::now();
    while n < RECORDS {
        let m = match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => panic!("plain consumer: {e}"),
            None => {
                assert!(
                    progress.elapsed() < Duration::from_secs(20),
                    "plain consumer: no records for 20 s after {n}"
                );
                continue;
            }
        };
        progress = Instant::now();
        loop {
            let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(out);
            if let Some(k) = m.key() {
                r = r.key(k);
            }
            if let Some(v) = m.payload() {
                r = r.payload(v);
            }
            match p.send(r) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        n += 1;
    }
    p.flush(Duration::from_secs(60)).unwrap();
    started.elapsed()
}

fn weir_copy(servers: &str, topic: &str, out: &str, guarantee: &str) -> Duration {
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_weir-under-test"))
        .env("WEIR_LOG", "error")
        .args(["run", "--local", "-p", "1"])
        .args(["-D", "execution.checkpointing.interval=1s"])
        .arg(KAFKA_JOBS_WASM)
        .args([
            "--",
            "--bootstrap-servers",
            servers,
            "--in",
            topic,
            "--out",
            out,
        ])
        .args(["--guarantee", guarantee, "--bounded"])
        .output()
        .expect("spawn weir");
    let d = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every record arrived (transaction markers take offsets too).
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    let written: i64 = (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(out, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum();
    assert!(
        written >= RECORDS as i64,
        "{out} holds {written} records, not {RECORDS}"
    );
    d
}

fn bench_kafka() {
    let kafka = Kafka::start();
    let topic = kafka.topic("in", PARTITIONS);
    let values: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| format!("{i:010}-{}", "x".repeat(80)).into_bytes())
        .collect();
    kafka.produce(&topic, &values, PARTITIONS);
    println!(
        "1. Kafka -> identity -> Kafka, {RECORDS} records of ~100 bytes, {PARTITIONS} partitions, \
         {} (median of 3, interleaved)",
        if kafka.real() {
            "a real broker"
        } else {
            "librdkafka's mock cluster"
        }
    );
    let (mut plain, mut weir_alo, mut weir_eo) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        plain.push(plain_copy(
            kafka.servers(),
            &topic,
            &kafka.topic(&format!("plain{round}"), PARTITIONS),
        ));
        weir_alo.push(weir_copy(
            kafka.servers(),
            &topic,
            &kafka.topic(&format!("alo{round}"), PARTITIONS),
            "at-least-once",
        ));
        weir_eo.push(weir_copy(
            kafka.servers(),
            &topic,
            &kafka.topic(&format!("eo{round}"), PARTITIONS),
            "exactly-once",
        ));
    }
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    let (p, a, e) = (median(plain), median(weir_alo), median(weir_eo));
    println!(
        "  plain rdkafka loop, one thread           {:>7.2} s {:>10.0} records/s",
        p.as_secs_f64(),
        rate(p)
    );
    println!(
        "  weir run --local -p 1, at least once     {:>7.2} s {:>10.0} records/s",
        a.as_secs_f64(),
        rate(a)
    );
    println!(
        "  weir run --local -p 1, exactly once      {:>7.2} s {:>10.0} records/s",
        e.as_secs_f64(),
        rate(e)
    );
    println!(
        "  weir / plain: {:.2} at least once, {:.2} exactly once (goal >= 0.7)",
        rate(a) / rate(p),
        rate(e) / rate(p)
    );
}

fn upsert_rate(url: &str, table: &str, exactly_once: bool) -> f64 {
    const ROWS: usize = 200_000;
    const KEYS: usize = 50_000;
    let c = weir_tests::servers::word_count_sink(url, table, exactly_once, &[]);
    let ctx = SinkContext::new(0, 1, &format!("bench-{exactly_once}"), std::env::temp_dir());
    let mut s = weir_sql::open_sink(&c, &ctx).unwrap();
    s.restore(&[], &SinkFiles::new()).unwrap();
    let started = Instant::now();
    let mut checkpoint = 0;
    for chunk in 0..ROWS / 1000 {
        let mut w = Writer::new();
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            let row = vec![
                SqlValue::Text(format!("word-{}", n % KEYS)),
                SqlValue::Int(n as i64),
            ];
            w.push(&Record::value(&postcard::to_allocvec(&row).unwrap()));
        }
        s.write(w.as_bytes()).unwrap();
        if (chunk + 1) % 50 == 0 {
            checkpoint += 1;
            s.snapshot(CheckpointId(checkpoint)).unwrap();
            s.commit(CheckpointId(checkpoint)).unwrap();
        }
    }
    checkpoint += 1;
    s.snapshot(CheckpointId(checkpoint)).unwrap();
    s.commit(CheckpointId(checkpoint)).unwrap();
    ROWS as f64 / started.elapsed().as_secs_f64()
}

fn bench_databases() {
    println!("2. SQL upsert sink: 200 000 rows over 50 000 keys, batches of 500 rows");
    let pg = Postgres::start();
    let db = MariaDb::start();
    for (name, table, url, create) in [
        (
            "PostgreSQL 15",
            "pg_counts",
            pg.url(),
            Box::new(|t: &str| {
                pg.sql(&format!(
                    "CREATE TABLE {t} (word text PRIMARY KEY, n bigint)"
                ));
            }) as Box<dyn Fn(&str)>,
        ),
        (
            "MariaDB",
            "my_counts",
            db.url(),
            Box::new(|t: &str| {
                db.sql(&format!(
                    "CREATE TABLE {t} (word VARCHAR(64) PRIMARY KEY, n BIGINT) ENGINE=InnoDB"
                ));
            }),
        ),
    ] {
        for exactly_once in [false, true] {
            let t = format!("{table}_{}", u8::from(exactly_once));
            create(&t);
            let rate = upsert_rate(&url, &t, exactly_once);
            println!(
                "  {name:<14} {:<14} {rate:>10.0} rows/s",
                if exactly_once {
                    "exactly once"
                } else {
                    "at least once"
                }
            );
        }
    }
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    if want("kafka") {
        bench_kafka();
    }
    if want("databases") {
        bench_databases();
    }
}
