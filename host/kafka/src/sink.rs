//! The Kafka sink.
//!
//! `sink.delivery-guarantee`:
//! - `none`: records are sent and never waited for;
//! - `at-least-once` (the default): every checkpoint waits until every
//!   record sent before it is acknowledged;
//! - `exactly-once`: records go into a Kafka transaction of the subtask's
//!   producer (transactional id `<prefix>-<subtask>`, stable across the
//!   restarts of a job; the default prefix holds the job's id, so that one
//!   job never fences another's producers),
//!   committed when the checkpoint that covers them completes. Records
//!   that arrive after a barrier, while its transaction waits for the
//!   checkpoint to complete, wait in a local file and are sent in the next
//!   transaction. Each transaction also commits the checkpoint id as the
//!   offset of a consumer group of its own (atomically, as Kafka commits a
//!   transaction's offsets), and the records of every transaction not yet
//!   committed are kept in the checkpoint: after a failure, a restore sends
//!   again exactly the transactions whose commit did not happen, and
//!   aborts whatever else the old producers left open.

use crate::kafka_failure;
use crate::options::Options;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_connectors::{SinkContext, SinkFiles, SinkWriter};
use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure, SubtaskState};
use weir_frame::Reader;
use weir_frame::connectors::KafkaMessage;
#[cfg(test)]
use weir_frame::{Record, Writer};

const TIMEOUT: Duration = Duration::from_secs(30);

const KNOWN: &[&str] = &[
    "topic",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarantee {
    None,
    AtLeastOnce,
    ExactlyOnce,
}

/// Remembers the first failed delivery.
#[derive(Default, Clone)]
pub(crate) struct Deliveries {
    error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            let mut err = self.error.lock().expect("lock");
            if err.is_none() {
                *err = Some(format!(
                    "a record for topic '{}' was not delivered: {e}",
                    m.topic()
                ));
            }
        }
    }
}

impl Deliveries {
    pub fn check(&self, servers: &str) -> Result<(), Failure> {
        match self.error.lock().expect("lock").take() {
            Some(e) => Err(kafka_failure("write", servers, e)),
            None => Ok(()),
        }
    }
}

pub(crate) type KafkaProducer = ThreadedProducer<Deliveries>;

/// Sends one record, waiting while the producer's queue is full.
pub(crate) fn send(
    p: &KafkaProducer,
    topic: &str,
    m: &KafkaMessage,
    servers: &str,
) -> Result<(), Failure> {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &m.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let topic = m.topic.as_deref().unwrap_or(topic);
    loop {
        let mut r: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic).headers(headers.clone());
        if let Some(k) = &m.key {
            r = r.key(k.as_slice());
        }
        if let Some(v) = &m.value {
            r = r.payload(v.as_slice());
        }
        if let Some(t) = m.timestamp {
            r = r.timestamp(t);
        }
        match p.send(r) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => std::thread::sleep(Duration::from_millis(5)),
            Err((e, _)) => return Err(kafka_failure("write", servers, e)),
        }
    }
}

/// A transaction waiting for its checkpoint, and the file of its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    checkpoint: u64,
    /// Its records (a file of the snapshot).
    file: String,
    /// The transactional id that wrote it.
    transactional_id: String,
    /// Whether the records went into the producer's open transaction
    /// (else they wait for the next one).
    sent: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SinkState {
    transactional_id: Option<String>,
    pending: Vec<Pending>,
}

/// The records of one transaction, on local disk.
struct Segment {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Segment {
    fn create(path: PathBuf) -> Result<Self, Failure> {
        let f = File::create(&path)
            .map_err(|e| Failure::internal(format!("creating {}: {e}", path.display())))?;
        Ok(Segment {
            path,
            out: BufWriter::new(f),
        })
    }

    fn flush(&mut self) -> Result<(), Failure> {
        self.out
            .flush()
            .map_err(|e| Failure::internal(format!("writing {}: {e}", self.path.display())))
    }

    fn append(&mut self, framed: &[u8]) -> Result<(), Failure> {
        self.out
            .write_all(&(framed.len() as u32).to_le_bytes())
            .and_then(|_| self.out.write_all(framed))
            .map_err(|e| Failure::internal(format!("writing {}: {e}", self.path.display())))
    }

    fn close(mut self) -> Result<PathBuf, Failure> {
        self.flush()?;
        Ok(self.path)
    }
}

/// Calls `f` for every record of a segment file.
fn read_segment(
    path: &Path,
    mut f: impl FnMut(&KafkaMessage) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| Failure::internal(format!("reading {}: {e}", path.display())))?;
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let framed = rest
            .get(4..4 + n)
            .ok_or_else(|| Failure::internal(format!("{} is truncated", path.display())))?;
        for rec in Reader::new(framed) {
            let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
            f(&decode(rec.value)?)?;
        }
        rest = &rest[4 + n..];
    }
    Ok(())
}

fn decode(value: &[u8]) -> Result<KafkaMessage, Failure> {
    postcard::from_bytes(value)
        .map_err(|e| Failure::internal(format!("a record for the Kafka sink is malformed: {e}")))
}

pub struct KafkaSink {
    options: Options,
    topic: String,
    guarantee: Guarantee,
    producer: KafkaProducer,
    deliveries: Deliveries,
    subtask: u32,
    parallelism: u32,
    transactional_id: Option<String>,
    work_dir: PathBuf,
    /// Exactly once: the open transaction's records (sent as they come).
    current: Option<Segment>,
    /// Whether the records of `current` are sent (no transaction waits).
    current_sent: bool,
    pending: Vec<(Pending, PathBuf)>,
    next_segment: u64,
    /// Files of the last snapshot.
    files: SinkFiles,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("guarantee", &self.guarantee)
            .finish()
    }
}

pub fn open_sink(c: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure> {
    Ok(Box::new(KafkaSink::open(c, ctx)?))
}

/// The consumer group whose offset records what transactional id
/// `tid` committed.
fn marker_group(tid: &str) -> String {
    format!("{tid}-commits")
}

fn producer(
    options: &Options,
    deliveries: &Deliveries,
    tid: Option<&str>,
) -> Result<KafkaProducer, Failure> {
    let mut defaults = vec![("acks", "all"), ("enable.idempotence", "true")];
    if let Some(t) = tid {
        defaults.push(("transactional.id", t));
    }
    options
        .producer_client(&defaults)
        .create_with_context(deliveries.clone())
        .map_err(|e| kafka_failure("create a producer", options.servers(), e))
}

impl KafkaSink {
    pub fn open(c: &Connector, ctx: &SinkContext) -> Result<Self, Failure> {
        let options = Options::new(c, "sink", &ctx.owner)?;
        options.check("sink", KNOWN)?;
        let topic = options
            .get("topic")
            .ok_or_else(|| Failure::user("a Kafka sink needs 'topic'"))?
            .to_owned();
        let guarantee = match options
            .get("sink.delivery-guarantee")
            .unwrap_or("at-least-once")
        {
            "none" => Guarantee::None,
            "at-least-once" => Guarantee::AtLeastOnce,
            "exactly-once" => Guarantee::ExactlyOnce,
            other => {
                return Err(Failure::user(format!(
                    "Kafka option 'sink.delivery-guarantee' = '{other}'; use none, \
                     at-least-once or exactly-once"
                )));
            }
        };
        if guarantee == Guarantee::ExactlyOnce && !ctx.checkpointing {
            return Err(Failure::user(
                "an exactly-once Kafka sink commits its transactions with checkpoints; enable \
                 checkpointing (execution.checkpointing.interval)",
            ));
        }
        let prefix = match options.get("sink.transactional-id-prefix") {
            Some(p) => ctx.own_transaction_prefix(p),
            None => ctx.default_transaction_prefix(),
        };
        let transactional_id =
            (guarantee == Guarantee::ExactlyOnce).then(|| format!("{prefix}-{}", ctx.subtask));
        let deliveries = Deliveries::default();
        let producer = producer(&options, &deliveries, transactional_id.as_deref())?;
        std::fs::create_dir_all(&ctx.work_dir)
            .map_err(|e| Failure::internal(format!("creating {}: {e}", ctx.work_dir.display())))?;
        let mut sink = KafkaSink {
            options,
            topic,
            guarantee,
            producer,
            deliveries,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            transactional_id,
            work_dir: ctx.work_dir.clone(),
            current: None,
            current_sent: true,
            pending: Vec::new(),
            next_segment: 0,
            files: SinkFiles::new(),
        };
        if sink.guarantee == Guarantee::ExactlyOnce {
            // Fences earlier producers of this id, aborting what they left.
            sink.producer
                .init_transactions(TIMEOUT)
                .map_err(|e| kafka_failure("start transactions", &sink.servers(), e))?;
            sink.begin()?;
        }
        Ok(sink)
    }

    fn servers(&self) -> String {
        self.options.servers().to_owned()
    }

    fn new_segment(&mut self) -> Result<Segment, Failure> {
        self.next_segment += 1;
        Segment::create(self.work_dir.join(format!("segment-{}", self.next_segment)))
    }

    fn begin(&mut self) -> Result<(), Failure> {
        self.producer
            .begin_transaction()
            .map_err(|e| kafka_failure("begin a transaction", &self.servers(), e))?;
        Ok(())
    }

    /// Commits the open transaction, recording `checkpoint` as committed
    /// by transactional id `tid`.
    fn commit(&mut self, tid: &str, checkpoint: u64) -> Result<(), Failure> {
        let servers = self.servers();
        let group: BaseConsumer = self
            .options
            .client(&[("group.id", &marker_group(tid))])
            .create()
            .map_err(|e| kafka_failure("create a consumer", &servers, e))?;
        let meta = group
            .group_metadata()
            .ok_or_else(|| Failure::internal("no consumer group metadata"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(checkpoint as i64 + 1))
            .map_err(|e| kafka_failure("commit a transaction", &servers, e))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &meta, TIMEOUT)
            .map_err(|e| kafka_failure("commit a transaction", &servers, e))?;
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| kafka_failure("commit a transaction", &servers, e))?;
        self.deliveries.check(&servers)
    }

    /// Whether transactional id `tid` committed `checkpoint`.
    fn committed(&self, tid: &str, checkpoint: u64) -> Result<bool, Failure> {
        let servers = self.servers();
        let c: BaseConsumer = self
            .options
            .client(&[("group.id", &marker_group(tid))])
            .create()
            .map_err(|e| kafka_failure("create a consumer", &servers, e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let got = c
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|e| kafka_failure("read committed transactions", &servers, e))?;
        Ok(got.elements().iter().any(|e| match e.offset() {
            Offset::Offset(o) => o > checkpoint as i64,
            _ => false,
        }))
    }

    /// Sends the records of a segment file into the open transaction.
    fn send_file(&self, path: &Path) -> Result<(), Failure> {
        let servers = self.servers();
        read_segment(path, |m| send(&self.producer, &self.topic, m, &servers))
    }

    /// Commits, in order, the transactions of checkpoints up to `id`.
    fn commit_up_to(&mut self, id: u64) -> Result<(), Failure> {
        let tid = self.transactional_id.clone().expect("exactly once");
        let due: Vec<(Pending, PathBuf)> = {
            let (due, later) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(p, _)| p.checkpoint <= id);
            self.pending = later;
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        let last = due.last().map(|(p, _)| p.checkpoint).unwrap_or(id);
        for (p, path) in &due {
            if !p.sent {
                self.send_file(path)?;
            }
        }
        self.producer
            .flush(TIMEOUT)
            .map_err(|e| kafka_failure("write", &self.servers(), e))?;
        self.commit(&tid, last)?;
        for (_, path) in due {
            let _ = std::fs::remove_file(path);
        }
        self.begin()?;
        // Records that waited for this commit go into the new transaction;
        // their file stays the open transaction's.
        if !self.current_sent {
            let path = match self.current.as_mut() {
                Some(seg) => {
                    seg.flush()?;
                    Some(seg.path.clone())
                }
                None => None,
            };
            if let Some(path) = path {
                self.send_file(&path)?;
            }
            self.current_sent = true;
        }
        Ok(())
    }
}

impl SinkWriter for KafkaSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Failure> {
        let servers = self.servers();
        self.deliveries.check(&servers)?;
        if self.guarantee == Guarantee::ExactlyOnce {
            if self.current.is_none() {
                let seg = self.new_segment()?;
                self.current = Some(seg);
            }
            let seg = self.current.as_mut().expect("created above");
            seg.append(batch)?;
            if !self.current_sent {
                return Ok(());
            }
        }
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
            send(&self.producer, &self.topic, &decode(rec.value)?, &servers)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        let servers = self.servers();
        if self.guarantee != Guarantee::None {
            self.producer
                .flush(TIMEOUT)
                .map_err(|e| kafka_failure("write", &servers, e))?;
        }
        self.deliveries.check(&servers)
    }

    fn snapshot(&mut self, id: CheckpointId) -> Result<Option<serde_json::Value>, Failure> {
        let servers = self.servers();
        match self.guarantee {
            Guarantee::None => return Ok(None),
            Guarantee::AtLeastOnce => {
                self.producer
                    .flush(TIMEOUT)
                    .map_err(|e| kafka_failure("write", &servers, e))?;
                self.deliveries.check(&servers)?;
                return Ok(None);
            }
            Guarantee::ExactlyOnce => {}
        }
        if self.current_sent {
            self.producer
                .flush(TIMEOUT)
                .map_err(|e| kafka_failure("write", &servers, e))?;
            self.deliveries.check(&servers)?;
        }
        let tid = self.transactional_id.clone().expect("exactly once");
        if let Some(seg) = self.current.take() {
            let path = seg.close()?;
            let file = format!("txn-{}-{}", self.subtask, id.0);
            self.pending.push((
                Pending {
                    checkpoint: id.0,
                    file,
                    transactional_id: tid.clone(),
                    sent: self.current_sent,
                },
                path,
            ));
            // Until it commits, what follows waits.
            self.current_sent = false;
        }
        self.files = self
            .pending
            .iter()
            .map(|(p, path)| (p.file.clone(), path.clone()))
            .collect();
        let state = SinkState {
            transactional_id: Some(tid),
            pending: self.pending.iter().map(|(p, _)| p.clone()).collect(),
        };
        Ok(Some(serde_json::to_value(state).expect("serializable")))
    }

    fn snapshot_files(&mut self) -> SinkFiles {
        std::mem::take(&mut self.files)
    }

    fn commit(&mut self, id: CheckpointId) -> Result<(), Failure> {
        if self.guarantee == Guarantee::ExactlyOnce {
            self.commit_up_to(id.0)?;
        }
        Ok(())
    }

    fn restore(&mut self, states: &[SubtaskState], files: &SinkFiles) -> Result<(), Failure> {
        if self.guarantee != Guarantee::ExactlyOnce {
            return Ok(());
        }
        let tid = self.transactional_id.clone().expect("exactly once");
        let mut resend: Vec<(Pending, PathBuf)> = Vec::new();
        for st in states {
            if !st.belongs_to(self.subtask, self.parallelism) {
                continue;
            }
            let s: SinkState = serde_json::from_value(st.value.clone())
                .map_err(|e| Failure::internal(format!("Kafka sink state: {e}")))?;
            let Some(old) = s.transactional_id else {
                continue;
            };
            if old != tid {
                // Fence the old producer: aborts what it left open.
                let fence = producer(&self.options, &self.deliveries, Some(&old))?;
                fence.init_transactions(TIMEOUT).map_err(|e| {
                    kafka_failure("abort lingering transactions", &self.servers(), e)
                })?;
            }
            for p in s.pending {
                if self.committed(&p.transactional_id, p.checkpoint)? {
                    continue;
                }
                let path = files.get(&p.file).ok_or_else(|| {
                    Failure::internal(format!(
                        "the checkpoint lacks the Kafka sink file {}",
                        p.file
                    ))
                })?;
                resend.push((p, path.clone()));
            }
        }
        for (p, path) in resend {
            self.send_file(&path)?;
            self.producer
                .flush(TIMEOUT)
                .map_err(|e| kafka_failure("write", &self.servers(), e))?;
            self.commit(&p.transactional_id, p.checkpoint)?;
            self.begin()?;
        }
        Ok(())
    }
}

/// Encodes records as the sink expects them.
#[cfg(test)]
pub(crate) fn framed(messages: &[KafkaMessage]) -> Vec<u8> {
    let mut w = Writer::new();
    for m in messages {
        let v = postcard::to_allocvec(m).expect("encodes");
        w.push(&Record::value(&v));
    }
    w.into_bytes()
}
