//! The Kafka source: a consumer with a manual assignment of the partitions
//! this subtask owns, offsets kept in checkpoints.

use crate::kafka_failure;
use crate::options::{Options, duration};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use weir_connectors::{Poll, SourceContext, SourceReader};
use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure};
use weir_frame::connectors::KafkaRecord;
use weir_frame::{Record, Writer};

const TIMEOUT: Duration = Duration::from_secs(15);

const KNOWN: &[&str] = &[
    "topic",
    "topic-pattern",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.bounded.mode",
    "scan.topic-partition-discovery.interval",
];

/// Where partitions without a checkpointed offset start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    Group,
    Timestamp(i64),
}

/// A partition of a topic.
type Tp = (String, i32);

/// The checkpointed position of a subtask: the next offset of each
/// partition it read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    offsets: Vec<(String, i32, i64)>,
}

/// Which subtask reads a partition (stable across runs, spread like
/// Flink's: a topic's partitions go round-robin from a start that depends
/// on the topic).
pub(crate) fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let start = (h & 0x7fff_ffff) % parallelism;
    (start + partition as u32) % parallelism
}

struct Split {
    tp: Tp,
    /// Next offset to hand downstream.
    next: Option<i64>,
    /// Read but not handed downstream yet (one split per poll).
    buffer: Writer,
    /// Offset after the last buffered record.
    buffered_next: i64,
    /// Bounded reading: the offset to stop at; reached when at EOF.
    end: Option<i64>,
    done: bool,
}

pub struct KafkaSource {
    options: Options,
    consumer: BaseConsumer,
    topics: Vec<String>,
    pattern: Option<regex_lite::Regex>,
    subtask: u32,
    parallelism: u32,
    batch_size: usize,
    startup: Startup,
    bounded: bool,
    discovery: Duration,
    last_discovery: Option<Instant>,
    splits: Vec<Split>,
    restored: HashMap<Tp, i64>,
    /// The source started from a snapshot: partitions it has no offset
    /// for appeared since, and start at the beginning (as Flink's).
    from_snapshot: bool,
    next_split: usize,
    current: usize,
    /// Offsets as of the last snapshot, committed when it completes.
    to_commit: std::sync::Mutex<Option<Vec<(String, i32, i64)>>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics)
            .field("splits", &self.splits.len())
            .finish()
    }
}

pub fn open_source(c: &Connector, ctx: &SourceContext) -> Result<Box<dyn SourceReader>, Failure> {
    Ok(Box::new(KafkaSource::open(c, ctx)?))
}

impl KafkaSource {
    pub fn open(c: &Connector, ctx: &SourceContext) -> Result<Self, Failure> {
        let options = Options::new(c, "source", &ctx.owner)?;
        options.check("source", KNOWN)?;
        let topics: Vec<String> = options
            .get("topic")
            .map(|t| {
                t.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let pattern = match options.get("topic-pattern") {
            Some(p) => Some(regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                Failure::user(format!("Kafka option 'topic-pattern' = '{p}': {e}"))
            })?),
            None => None,
        };
        if topics.is_empty() == pattern.is_none() {
            return Err(Failure::user(
                "a Kafka source needs either 'topic' (topics separated by ';') or \
                 'topic-pattern'",
            ));
        }
        let startup = match options.get("scan.startup.mode").unwrap_or("group-offsets") {
            "earliest-offset" => Startup::Earliest,
            "latest-offset" => Startup::Latest,
            "group-offsets" => Startup::Group,
            "timestamp" => Startup::Timestamp(options.parse("scan.startup.timestamp-millis", -1)?),
            other => {
                return Err(Failure::user(format!(
                    "Kafka option 'scan.startup.mode' = '{other}'; use earliest-offset, \
                     latest-offset, group-offsets or timestamp"
                )));
            }
        };
        if startup == Startup::Timestamp(-1) {
            return Err(Failure::user(
                "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'",
            ));
        }
        let bounded = match options.get("scan.bounded.mode").unwrap_or("unbounded") {
            "unbounded" => false,
            "latest-offset" => true,
            other => {
                return Err(Failure::user(format!(
                    "Kafka option 'scan.bounded.mode' = '{other}'; use unbounded or latest-offset"
                )));
            }
        };
        let discovery = duration(
            "scan.topic-partition-discovery.interval",
            options
                .get("scan.topic-partition-discovery.interval")
                .unwrap_or("30s"),
        )?;
        let group = format!("weir-{}", ctx.uid);
        let consumer: BaseConsumer = options
            .client(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
            ])
            .create()
            .map_err(|e| kafka_failure("create a consumer", options.servers(), e))?;
        Ok(KafkaSource {
            options,
            consumer,
            topics,
            pattern,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            batch_size: ctx.batch_size.max(1),
            startup,
            bounded,
            discovery,
            last_discovery: None,
            splits: Vec::new(),
            restored: HashMap::new(),
            from_snapshot: false,
            next_split: 0,
            current: 0,
            to_commit: std::sync::Mutex::new(None),
        })
    }

    /// The partitions of the source's topics this subtask owns.
    fn owned_partitions(&self) -> Result<Vec<Tp>, Failure> {
        let servers = self.options.servers();
        let topic = match (&self.pattern, self.topics.as_slice()) {
            (None, [one]) => Some(one.as_str()),
            _ => None,
        };
        let md = self
            .consumer
            .fetch_metadata(topic, TIMEOUT)
            .map_err(|e| kafka_failure("read topic metadata", servers, e))?;
        let mut out = Vec::new();
        let mut found = Vec::new();
        for t in md.topics() {
            let wanted = match &self.pattern {
                Some(p) => p.is_match(t.name()),
                None => self.topics.iter().any(|x| x == t.name()),
            };
            if !wanted {
                continue;
            }
            if let Some(e) = t.error() {
                return Err(Failure::external(format!(
                    "Kafka at {servers}: topic '{}' is not available ({e:?}); check that it \
                     exists and that the job may read it",
                    t.name()
                )));
            }
            found.push(t.name().to_owned());
            for p in t.partitions() {
                if owner(t.name(), p.id(), self.parallelism) == self.subtask {
                    out.push((t.name().to_owned(), p.id()));
                }
            }
        }
        if self.pattern.is_none()
            && let Some(missing) = self.topics.iter().find(|t| !found.contains(t))
        {
            return Err(Failure::external(format!(
                "Kafka at {servers}: topic '{missing}' does not exist; create it or fix 'topic'"
            )));
        }
        out.sort();
        Ok(out)
    }

    /// Where new partitions start: the checkpoint's offset, else the
    /// startup mode (partitions found later, or after a restore, start at
    /// the beginning: they appeared after the job started reading).
    fn start_offsets(&self, new: &[Tp], initial: bool) -> Result<Vec<i64>, Failure> {
        let servers = self.options.servers();
        let mut out = Vec::with_capacity(new.len());
        let mut group_offsets: HashMap<Tp, i64> = HashMap::new();
        let mut time_offsets: HashMap<Tp, i64> = HashMap::new();
        let mode = if initial && !self.from_snapshot {
            self.startup
        } else {
            Startup::Earliest
        };
        let unresolved: Vec<&Tp> = new
            .iter()
            .filter(|tp| !self.restored.contains_key(tp))
            .collect();
        if !unresolved.is_empty() {
            match mode {
                Startup::Group => {
                    let mut tpl = TopicPartitionList::new();
                    for (t, p) in &unresolved {
                        tpl.add_partition(t, *p);
                    }
                    let got = self
                        .consumer
                        .committed_offsets(tpl, TIMEOUT)
                        .map_err(|e| kafka_failure("read the group's offsets", servers, e))?;
                    for e in got.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            group_offsets.insert((e.topic().to_owned(), e.partition()), o);
                        }
                    }
                }
                Startup::Timestamp(ts) => {
                    let mut tpl = TopicPartitionList::new();
                    for (t, p) in &unresolved {
                        tpl.add_partition_offset(t, *p, Offset::Offset(ts))
                            .map_err(|e| kafka_failure("look up offsets by time", servers, e))?;
                    }
                    let got = self
                        .consumer
                        .offsets_for_times(tpl, TIMEOUT)
                        .map_err(|e| kafka_failure("look up offsets by time", servers, e))?;
                    for e in got.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            time_offsets.insert((e.topic().to_owned(), e.partition()), o);
                        }
                    }
                }
                _ => {}
            }
        }
        for tp in new {
            if let Some(o) = self.restored.get(tp) {
                out.push(*o);
                continue;
            }
            let (low, high) = self
                .consumer
                .fetch_watermarks(&tp.0, tp.1, TIMEOUT)
                .map_err(|e| kafka_failure("read partition offsets", servers, e))?;
            let o = match mode {
                Startup::Earliest => low,
                Startup::Latest => high,
                // Without a committed offset, from the beginning.
                Startup::Group => group_offsets.get(tp).copied().unwrap_or(low),
                // No record that late: the end.
                Startup::Timestamp(_) => time_offsets
                    .get(tp)
                    .copied()
                    .filter(|o| *o >= 0)
                    .unwrap_or(high),
            };
            out.push(o);
        }
        Ok(out)
    }

    /// Finds the source's partitions (again) and assigns the new ones.
    fn discover(&mut self) -> Result<(), Failure> {
        let initial = self.last_discovery.is_none();
        self.last_discovery = Some(Instant::now());
        let owned = self.owned_partitions()?;
        let new: Vec<Tp> = owned
            .into_iter()
            .filter(|tp| !self.splits.iter().any(|s| &s.tp == tp))
            .collect();
        if new.is_empty() && !initial {
            return Ok(());
        }
        if !initial && self.splits.iter().any(|s| !s.buffer.is_empty()) {
            // Reassigning would read buffered records again; next time.
            return Ok(());
        }
        let starts = self.start_offsets(&new, initial)?;
        for (tp, start) in new.into_iter().zip(starts) {
            let end = if self.bounded {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&tp.0, tp.1, TIMEOUT)
                    .map_err(|e| {
                        kafka_failure("read partition offsets", self.options.servers(), e)
                    })?;
                Some(high)
            } else {
                None
            };
            let done = end.is_some_and(|e| start >= e);
            self.splits.push(Split {
                tp,
                next: Some(start),
                buffer: Writer::new(),
                buffered_next: start,
                end,
                done,
            });
        }
        let mut tpl = TopicPartitionList::new();
        for s in self.splits.iter().filter(|s| !s.done) {
            let o = s.next.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&s.tp.0, s.tp.1, o)
                .map_err(|e| kafka_failure("assign partitions", self.options.servers(), e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_failure("assign partitions", self.options.servers(), e))?;
        Ok(())
    }

    fn split_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.splits
            .iter()
            .position(|s| s.tp.0 == topic && s.tp.1 == partition)
    }

    /// Hands one split's buffered records downstream.
    fn emit_buffered(&mut self, out: &mut Writer) -> bool {
        let n = self.splits.len();
        for k in 0..n {
            let i = (self.next_split + k) % n;
            let s = &mut self.splits[i];
            if s.buffer.is_empty() {
                continue;
            }
            let records = s.buffer.records();
            out.extend_framed(s.buffer.as_bytes(), records);
            s.buffer.clear();
            s.next = Some(s.buffered_next);
            self.current = i;
            self.next_split = (i + 1) % n;
            return true;
        }
        false
    }
}

fn encode(m: &rdkafka::message::BorrowedMessage<'_>) -> (Option<i64>, Vec<u8>) {
    let timestamp = m.timestamp().to_millis();
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    let rec = KafkaRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp,
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    };
    (
        timestamp,
        postcard::to_allocvec(&rec).expect("a Kafka record encodes"),
    )
}

impl SourceReader for KafkaSource {
    fn poll(&mut self, out: &mut Writer) -> Result<Poll, Failure> {
        let due = self
            .last_discovery
            .is_none_or(|t| t.elapsed() >= self.discovery);
        if due {
            self.discover()?;
        }
        if self.emit_buffered(out) {
            return Ok(Poll::Ready);
        }
        if self.bounded && self.splits.iter().all(|s| s.done) {
            return Ok(Poll::Finished);
        }
        if self.splits.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(Poll::Idle);
        }
        let mut read = 0;
        let mut wait = Duration::from_millis(50);
        while read < self.batch_size {
            let Some(m) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match m {
                Ok(m) => {
                    let Some(i) = self.split_of(m.topic(), m.partition()) else {
                        continue;
                    };
                    let s = &mut self.splits[i];
                    if s.done || s.end.is_some_and(|e| m.offset() >= e) {
                        s.done = true;
                        continue;
                    }
                    let (timestamp, value) = encode(&m);
                    s.buffer.push(&Record {
                        timestamp,
                        value: &value,
                        ..Record::default()
                    });
                    s.buffered_next = m.offset() + 1;
                    if s.end.is_some_and(|e| s.buffered_next >= e) {
                        s.done = true;
                    }
                    read += 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    // With bounded reading, a partition read to its end is
                    // done, even when its last offsets are transaction
                    // markers that never arrive as records.
                    if self.bounded {
                        self.mark_ends()?;
                    }
                }
                Err(e) => {
                    return Err(kafka_failure("read records", self.options.servers(), e));
                }
            }
        }
        if self.emit_buffered(out) {
            return Ok(Poll::Ready);
        }
        if self.bounded && self.splits.iter().all(|s| s.done) {
            return Ok(Poll::Finished);
        }
        Ok(Poll::Idle)
    }

    fn position(&self) -> Option<serde_json::Value> {
        let mut offsets: BTreeMap<Tp, i64> = BTreeMap::new();
        // Restored offsets of partitions not assigned yet stay in the state.
        for (tp, o) in &self.restored {
            offsets.insert(tp.clone(), *o);
        }
        for s in &self.splits {
            if let Some(o) = s.next {
                offsets.insert(s.tp.clone(), o);
            }
        }
        let offsets: Vec<(String, i32, i64)> =
            offsets.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        *self.to_commit.lock().expect("lock") = Some(offsets.clone());
        Some(serde_json::to_value(Position { offsets }).expect("serializable"))
    }

    fn restore(&mut self, positions: &[serde_json::Value]) -> Result<(), Failure> {
        // Every old subtask's offsets; this subtask takes its partitions'.
        self.from_snapshot = true;
        for v in positions {
            let p: Position = serde_json::from_value(v.clone())
                .map_err(|e| Failure::internal(format!("Kafka source position: {e}")))?;
            for (t, part, o) in p.offsets {
                if owner(&t, part, self.parallelism) == self.subtask {
                    self.restored.insert((t, part), o);
                }
            }
        }
        Ok(())
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), Failure> {
        self.restore(std::slice::from_ref(position))
    }

    fn splits(&self) -> usize {
        self.splits.len()
    }

    fn current_split(&self) -> usize {
        self.current
    }

    fn checkpoint_complete(&mut self, _id: CheckpointId) -> Result<(), Failure> {
        // For monitoring only: a restore reads offsets from the checkpoint.
        let Some(offsets) = self.to_commit.lock().expect("lock").take() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &offsets {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!("cannot commit offsets to the consumer group: {e}");
        }
        Ok(())
    }
}

impl KafkaSource {
    /// Marks the splits whose consumer position passed their end.
    fn mark_ends(&mut self) -> Result<(), Failure> {
        let positions = self
            .consumer
            .position()
            .map_err(|e| kafka_failure("read positions", self.options.servers(), e))?;
        for e in positions.elements() {
            if let (Offset::Offset(o), Some(i)) =
                (e.offset(), self.split_of(e.topic(), e.partition()))
                && self.splits[i].end.is_some_and(|end| o >= end)
            {
                self.splits[i].done = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_subtasks_and_rescale() {
        for p in [1u32, 2, 3, 4] {
            let mut counts = vec![0; p as usize];
            for part in 0..12 {
                counts[owner("clicks", part, p) as usize] += 1;
            }
            assert!(counts.iter().all(|c| *c == 12 / p), "{p}: {counts:?}");
        }
    }
}
