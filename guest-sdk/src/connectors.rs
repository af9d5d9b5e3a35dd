//! Kafka and SQL connectors, configured as with Flink's builders; the host
//! does the I/O, the job decodes and encodes records.
//!
//! Options can be set or replaced from outside the job, without rebuilding
//! it: `-D connector.<uid>.<option>=<value>` on the command line (e.g.
//! `-D connector.words.properties.bootstrap.servers=kafka:9092`), and
//! values may refer to secrets as `${NAME}` — the way to pass credentials,
//! which the host never prints. `weir run --local` reads them from its
//! environment; a session only from the secrets its operator configured
//! (`weir.secrets.NAME`, or `weir.tenants.<tenant>.secrets.NAME`), never
//! from its own environment.

use crate::env::FnEntry;
use crate::plan::Connector;
use crate::stage::DecodeStage;
use crate::stream::SinkHandle;
use crate::{DataStream, Env};
use serde::{Serialize, de::DeserializeOwned};
use std::rc::Rc;

pub use weir_frame::connectors::{KafkaMessage, KafkaRecord, SqlValue};

/// Where a Kafka source starts reading partitions it has no checkpointed
/// offset for, as Flink's `OffsetsInitializer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The beginning of each partition.
    Earliest,
    /// The end: only new records.
    Latest,
    /// The consumer group's committed offsets (the beginning without).
    Committed,
    /// The first records at or after a time (ms since the Unix epoch).
    Timestamp(i64),
}

/// What to do with a record the job cannot decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrors {
    /// Fail the job (the default).
    Fail,
    /// Skip it, counting it in the metrics.
    Skip,
    /// Send it to this Kafka topic, with the reason in a header.
    DeadLetter(String),
}

/// A Kafka source, as Flink's `KafkaSource`.
///
/// ```
/// use weir_sdk::connectors::*;
/// let source = KafkaSource::builder()
///     .bootstrap_servers("localhost:9092")
///     .topics(&["words"])
///     .group_id("wordcount")
///     .starting_offsets(StartingOffsets::Earliest)
///     .build();
/// ```
#[derive(Debug, Clone, Default)]
pub struct KafkaSource {
    options: Vec<(String, String)>,
}

/// Builds a [`KafkaSource`].
#[derive(Debug, Clone, Default)]
pub struct KafkaSourceBuilder {
    options: Vec<(String, String)>,
}

fn set(options: &mut Vec<(String, String)>, k: &str, v: impl Into<String>) {
    let v = v.into();
    match options.iter_mut().find(|(key, _)| key == k) {
        Some(e) => e.1 = v,
        None => options.push((k.to_owned(), v)),
    }
}

impl KafkaSource {
    pub fn builder() -> KafkaSourceBuilder {
        KafkaSourceBuilder::default()
    }
}

impl KafkaSourceBuilder {
    /// `host:port` of some brokers, comma-separated.
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        set(&mut self.options, "properties.bootstrap.servers", servers);
        self
    }

    /// Topics to read.
    pub fn topics(mut self, topics: &[&str]) -> Self {
        set(&mut self.options, "topic", topics.join(";"));
        self
    }

    /// Reads every topic whose whole name matches `regex`; topics created
    /// later are picked up while running.
    pub fn topic_pattern(mut self, regex: &str) -> Self {
        set(&mut self.options, "topic-pattern", regex);
        self
    }

    /// The consumer group offsets are committed to (for monitoring; a
    /// restore reads offsets from the checkpoint).
    pub fn group_id(mut self, group: &str) -> Self {
        set(&mut self.options, "properties.group.id", group);
        self
    }

    pub fn starting_offsets(mut self, start: StartingOffsets) -> Self {
        let mode = match start {
            StartingOffsets::Earliest => "earliest-offset",
            StartingOffsets::Latest => "latest-offset",
            StartingOffsets::Committed => "group-offsets",
            StartingOffsets::Timestamp(ts) => {
                set(
                    &mut self.options,
                    "scan.startup.timestamp-millis",
                    ts.to_string(),
                );
                "timestamp"
            }
        };
        set(&mut self.options, "scan.startup.mode", mode);
        self
    }

    /// Stops at the offsets that are the latest when the job starts: a
    /// bounded job, as Flink's `setBounded(OffsetsInitializer.latest())`.
    pub fn bounded(mut self) -> Self {
        set(&mut self.options, "scan.bounded.mode", "latest-offset");
        self
    }

    /// How often to look for new partitions and topics.
    pub fn partition_discovery_interval(mut self, every: std::time::Duration) -> Self {
        set(
            &mut self.options,
            "scan.topic-partition-discovery.interval",
            format!("{}ms", every.as_millis()),
        );
        self
    }

    /// A librdkafka client property (`security.protocol`, `sasl.username`,
    /// ...); `${NAME}` refers to a secret (see the module's docs). A
    /// tenant's job may set only harmless properties, and file-valued ones
    /// only to files in its folder.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        set(&mut self.options, &format!("properties.{key}"), value);
        self
    }

    pub fn decode_errors(mut self, policy: DecodeErrors) -> Self {
        let v = match policy {
            DecodeErrors::Fail => "fail",
            DecodeErrors::Skip => "skip",
            DecodeErrors::DeadLetter(topic) => {
                set(&mut self.options, "dead-letter.topic", topic);
                "dead-letter"
            }
        };
        set(&mut self.options, "decode-errors", v);
        self
    }

    pub fn build(self) -> KafkaSource {
        KafkaSource {
            options: self.options,
        }
    }
}

/// How a Kafka sink delivers, as Flink's `DeliveryGuarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    None,
    AtLeastOnce,
    /// Kafka transactions committed with checkpoints.
    ExactlyOnce,
}

impl DeliveryGuarantee {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryGuarantee::None => "none",
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
            DeliveryGuarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// A Kafka sink, as Flink's `KafkaSink`.
///
/// ```
/// use weir_sdk::connectors::*;
/// let sink = KafkaSink::builder()
///     .bootstrap_servers("localhost:9092")
///     .topic("counts")
///     .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
///     .transactional_id_prefix("wordcount")
///     .build();
/// ```
#[derive(Debug, Clone, Default)]
pub struct KafkaSink {
    options: Vec<(String, String)>,
}

/// Builds a [`KafkaSink`].
#[derive(Debug, Clone, Default)]
pub struct KafkaSinkBuilder {
    options: Vec<(String, String)>,
}

impl KafkaSink {
    pub fn builder() -> KafkaSinkBuilder {
        KafkaSinkBuilder::default()
    }
}

impl KafkaSinkBuilder {
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        set(&mut self.options, "properties.bootstrap.servers", servers);
        self
    }

    /// The topic records go to (unless a record names its own).
    pub fn topic(mut self, topic: &str) -> Self {
        set(&mut self.options, "topic", topic);
        self
    }

    pub fn delivery_guarantee(mut self, g: DeliveryGuarantee) -> Self {
        set(&mut self.options, "sink.delivery-guarantee", g.as_str());
        self
    }

    /// Names the sink's transactions (`<prefix>-<subtask>`); unique per
    /// job writing to a cluster.
    pub fn transactional_id_prefix(mut self, prefix: &str) -> Self {
        set(&mut self.options, "sink.transactional-id-prefix", prefix);
        self
    }

    pub fn property(mut self, key: &str, value: &str) -> Self {
        set(&mut self.options, &format!("properties.{key}"), value);
        self
    }

    pub fn build(self) -> KafkaSink {
        KafkaSink {
            options: self.options,
        }
    }
}

/// A sink for PostgreSQL or MySQL/MariaDB, as Flink's JDBC sink: upserts
/// by a key ([`JdbcSink::upsert`]) or appends every row
/// ([`JdbcSink::insert`]).
///
/// ```
/// use weir_sdk::connectors::*;
/// let sink = JdbcSink::upsert("word_counts", &["word", "count"], &["word"])
///     .url("mysql://localhost:3306/weir")
///     .username("weir")
///     .password("${DB_PASSWORD}")
///     .exactly_once()
///     .build();
/// ```
#[derive(Debug, Clone, Default)]
pub struct JdbcSink {
    options: Vec<(String, String)>,
}

/// Builds a [`JdbcSink`].
#[derive(Debug, Clone, Default)]
pub struct JdbcSinkBuilder {
    options: Vec<(String, String)>,
}

impl JdbcSink {
    /// Upserts rows of `columns` into `table` by the `key` columns.
    pub fn upsert(table: &str, columns: &[&str], key: &[&str]) -> JdbcSinkBuilder {
        let mut options = Vec::new();
        set(&mut options, "table-name", table);
        set(&mut options, "columns", columns.join(","));
        set(&mut options, "primary-key", key.join(","));
        JdbcSinkBuilder { options }
    }

    /// Appends every row of `columns` to `table` (a plain `INSERT`).
    pub fn insert(table: &str, columns: &[&str]) -> JdbcSinkBuilder {
        let mut options = Vec::new();
        set(&mut options, "table-name", table);
        set(&mut options, "columns", columns.join(","));
        JdbcSinkBuilder { options }
    }
}

impl JdbcSinkBuilder {
    /// `postgres://host:port/db` or `mysql://host:port/db` (also as
    /// `jdbc:postgresql://...`, `jdbc:mysql://...`).
    pub fn url(mut self, url: &str) -> Self {
        set(&mut self.options, "url", url);
        self
    }

    pub fn username(mut self, user: &str) -> Self {
        set(&mut self.options, "username", user);
        self
    }

    /// The password. `${NAME}` refers to a secret: in `weir run --local`
    /// an environment variable, on a session a secret its operator
    /// configured (`weir.secrets.NAME`, or the tenant's).
    pub fn password(mut self, password: &str) -> Self {
        set(&mut self.options, "password", password);
        self
    }

    /// Rows per batch (500).
    pub fn batch_size(mut self, rows: usize) -> Self {
        set(
            &mut self.options,
            "sink.buffer-flush.max-rows",
            rows.to_string(),
        );
        self
    }

    /// One database transaction per checkpoint, committed in two phases.
    pub fn exactly_once(mut self) -> Self {
        set(&mut self.options, "sink.delivery-guarantee", "exactly-once");
        self
    }

    /// Names the sink's transactions (by default they hold the job's id,
    /// which makes them unique; a prefix set here must be unique to the
    /// job, and a tenant's is kept within the tenant's namespace).
    pub fn transaction_prefix(mut self, prefix: &str) -> Self {
        set(&mut self.options, "sink.transaction-prefix", prefix);
        self
    }

    pub fn build(self) -> JdbcSink {
        JdbcSink {
            options: self.options,
        }
    }
}

impl Env {
    /// Reads a Kafka source; `decode` turns each record (value, key,
    /// headers, timestamp) into a value. Kafka timestamps become event
    /// times, so `WatermarkStrategy` needs no assigner.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::connectors::*;
    /// # fn f(env: &mut Env) {
    /// let source = KafkaSource::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .topics(&["clicks"])
    ///     .build();
    /// let clicks = env.from_kafka(source, "Kafka: clicks", |r: &KafkaRecord| {
    ///     String::from_utf8(r.value.clone().unwrap_or_default()).map_err(|e| e.to_string())
    /// });
    /// # }
    /// ```
    pub fn from_kafka<T, D>(
        &mut self,
        source: KafkaSource,
        name: &str,
        mut decode: D,
    ) -> DataStream<T>
    where
        T: Serialize + DeserializeOwned + 'static,
        D: FnMut(&KafkaRecord) -> Result<T, String> + 'static,
    {
        self.from_source(
            Connector {
                kind: "kafka".into(),
                options: source.options,
            },
            name,
            move |raw: &[u8]| {
                let r: KafkaRecord = crate::codec::decode(raw)
                    .map_err(|e| format!("a Kafka record the job cannot read: {e}"))?;
                decode(&r)
            },
        )
    }

    /// Reads the values of a Kafka source as UTF-8 text.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::connectors::*;
    /// # fn f(env: &mut Env) {
    /// let source = KafkaSource::builder().bootstrap_servers("k:9092").topics(&["lines"]).build();
    /// let lines = env.from_kafka_text(source, "Kafka: lines");
    /// # }
    /// ```
    pub fn from_kafka_text(&mut self, source: KafkaSource, name: &str) -> DataStream<String> {
        self.from_kafka(source, name, |r: &KafkaRecord| {
            String::from_utf8(r.value.clone().unwrap_or_default())
                .map_err(|e| format!("a Kafka record's value is not UTF-8: {e}"))
        })
    }
}

impl<T: Serialize + DeserializeOwned + 'static> DataStream<T> {
    /// Writes to a Kafka sink; `encode` makes each value a record.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::connectors::*;
    /// # fn f(s: DataStream<(String, i64)>) {
    /// let sink = KafkaSink::builder().bootstrap_servers("k:9092").topic("counts").build();
    /// s.sink_to_kafka(sink, |(w, n)| KafkaMessage {
    ///     key: Some(w.as_bytes().to_vec()),
    ///     value: Some(n.to_string().into_bytes()),
    ///     ..KafkaMessage::default()
    /// });
    /// # }
    /// ```
    pub fn sink_to_kafka<F>(self, sink: KafkaSink, mut encode: F) -> SinkHandle
    where
        F: FnMut(&T) -> KafkaMessage + 'static,
    {
        self.sink_to(
            Connector {
                kind: "kafka".into(),
                options: sink.options,
            },
            "Sink: Kafka",
            move |v: &T, out: &mut Vec<u8>| crate::codec::encode(&encode(v), out),
        )
    }

    /// Upserts rows into a database; `row` gives each value's columns, in
    /// the sink's column order.
    ///
    /// ```no_run
    /// # use weir_sdk::prelude::*;
    /// use weir_sdk::connectors::*;
    /// # fn f(s: DataStream<(String, i64)>) {
    /// let sink = JdbcSink::upsert("counts", &["word", "n"], &["word"])
    ///     .url("postgres://localhost/weir")
    ///     .build();
    /// s.sink_to_jdbc(sink, |(w, n)| vec![w.as_str().into(), (*n).into()]);
    /// # }
    /// ```
    pub fn sink_to_jdbc<F>(self, sink: JdbcSink, mut row: F) -> SinkHandle
    where
        F: FnMut(&T) -> Vec<SqlValue> + 'static,
    {
        self.sink_to(
            Connector {
                kind: "jdbc".into(),
                options: sink.options,
            },
            "Sink: JDBC",
            move |v: &T, out: &mut Vec<u8>| crate::codec::encode(&row(v), out),
        )
    }
}

/// The Nexmark benchmark's source, generated by the host: persons, auctions
/// and bids (see [`crate::nexmark`]) with their event times, and watermarks
/// 4 s behind them (the out-of-orderness Nexmark's queries assume).
///
/// ```no_run
/// # use weir_sdk::prelude::*;
/// use weir_sdk::connectors::Nexmark;
/// use weir_sdk::nexmark::Event;
/// # fn f(env: &mut Env) {
/// let bids = env
///     .nexmark(Nexmark::new().events(10_000_000))
///     .flat_map(|e: Event| match e {
///         Event::Bid(b) => Some(b),
///         _ => None,
///     });
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Nexmark {
    options: Vec<(String, String)>,
}

impl Nexmark {
    /// An unbounded source, as fast as the job takes it, with event time
    /// advancing at the standard 10 M events per second.
    pub fn new() -> Self {
        Nexmark::default()
    }

    fn set(mut self, key: &str, value: String) -> Self {
        self.options.retain(|(k, _)| k != key);
        self.options.push((key.to_owned(), value));
        self
    }

    /// Events in all: the source ends after them.
    pub fn events(self, n: u64) -> Self {
        self.set("events", n.to_string())
    }

    /// At most this many events per second (in all subtasks).
    pub fn events_per_second(self, rate: f64) -> Self {
        self.set("events-per-second", rate.to_string())
    }

    /// Events per second of event time (windows hold this many per second).
    pub fn event_time_rate(self, rate: u64) -> Self {
        self.set("event-time-rate", rate.to_string())
    }

    /// Event time of the first event, in milliseconds since the epoch.
    pub fn base_time(self, ms: i64) -> Self {
        self.set("base-time", ms.to_string())
    }
}

impl DataStream<crate::nexmark::Event> {
    /// The bids of a stream of Nexmark events. Read straight from the
    /// source, the other events are skipped by their tag, undecoded.
    pub fn bids(self) -> DataStream<crate::nexmark::Bid> {
        use crate::nexmark::Event;
        self.only("bids", Event::decode_bid, |e| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
    }

    /// The auctions of a stream of Nexmark events (see [`DataStream::bids`]).
    pub fn auctions(self) -> DataStream<crate::nexmark::Auction> {
        use crate::nexmark::Event;
        self.only("auctions", Event::decode_auction, |e| match e {
            Event::Auction(a) => Some(a),
            _ => None,
        })
    }

    /// The people of a stream of Nexmark events (see [`DataStream::bids`]).
    pub fn persons(self) -> DataStream<crate::nexmark::Person> {
        use crate::nexmark::Event;
        self.only("persons", Event::decode_person, |e| match e {
            Event::Person(p) => Some(p),
            _ => None,
        })
    }

    /// The events of one kind: a decoder that skips the others when the
    /// stream comes straight from the source (no operator reads its decode
    /// stage yet, as every operator added takes the stream it reads), else
    /// a flat map.
    fn only<U>(
        self,
        kind: &str,
        decode: fn(&[u8]) -> Result<Option<U>, String>,
        pick: fn(crate::nexmark::Event) -> Option<U>,
    ) -> DataStream<U>
    where
        U: Serialize + DeserializeOwned + 'static,
    {
        if let [(op, 0)] = self.outputs.as_slice() {
            let mut g = self.g.borrow_mut();
            if g.decoders.contains_key(op) {
                let make: Rc<dyn Fn() -> FnEntry> =
                    Rc::new(move || FnEntry::Stage(Box::new(DecodeStage::skipping(decode))));
                let o = &mut g.plan.operators[*op as usize];
                o.name = format!("{} ({kind})", o.name.trim_end_matches(" (decode)"));
                g.fns[*op as usize] = Some(make());
                g.decoders.insert(*op, make);
                drop(g);
                return DataStream::new(self.g.clone(), *op);
            }
        }
        self.flat_map(pick)
    }
}

impl Env {
    /// Nexmark's events from the host's generator (see [`Nexmark`]).
    pub fn nexmark(&mut self, source: Nexmark) -> DataStream<crate::nexmark::Event> {
        self.shared_source(
            Connector {
                kind: "nexmark".into(),
                options: source.options,
            },
            "Source: nexmark",
            crate::nexmark::Event::decode,
        )
        .assign_timestamps_and_watermarks(
            crate::WatermarkStrategy::for_bounded_out_of_orderness(std::time::Duration::from_secs(
                4,
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Nexmark;
    use crate::plan::{OperatorKind, StageKind};
    use crate::{Args, Env, Error, Jobs};

    fn direct(env: &mut Env, _: &Args) -> Result<(), Error> {
        let events = env.nexmark(Nexmark::new());
        events.clone().auctions().print();
        events.bids().print();
        Ok(())
    }

    fn filtered(env: &mut Env, _: &Args) -> Result<(), Error> {
        env.nexmark(Nexmark::new())
            .filter(|_: &crate::nexmark::Event| true)
            .bids()
            .print();
        Ok(())
    }

    /// The decode stages and flat maps of a planned job.
    fn stages(job: crate::JobFn) -> (Vec<String>, usize) {
        let jobs: &'static [(&'static str, crate::JobFn)] = Box::leak(Box::new([("j", job)]));
        let plan = crate::runtime::Runtime::new()
            .plan(Jobs(jobs), None, &[])
            .unwrap();
        let decodes = plan
            .operators
            .iter()
            .filter(|o| o.kind == OperatorKind::Stage(StageKind::Decode))
            .map(|o| o.name.clone())
            .collect();
        let flat_maps = plan
            .operators
            .iter()
            .filter(|o| o.kind == OperatorKind::Stage(StageKind::FlatMap))
            .count();
        (decodes, flat_maps)
    }

    #[test]
    fn events_of_one_kind_are_decoded_alone_straight_from_the_source() {
        let (decodes, flat_maps) = stages(direct);
        assert_eq!(
            decodes,
            ["Source: nexmark (bids)", "Source: nexmark (auctions)"],
            "one decode stage per reader, each for its kind"
        );
        assert_eq!(flat_maps, 0);
        // Past another operator, the events are decoded: a flat map picks.
        let (decodes, flat_maps) = stages(filtered);
        assert_eq!(decodes, ["Source: nexmark (decode)"]);
        assert_eq!(flat_maps, 1);
    }

    #[test]
    fn skipping_decoders_skip_other_kinds_and_reject_what_is_no_event() {
        use crate::nexmark::Event;
        let mut bid = Vec::new();
        Event::Bid(crate::nexmark::Bid {
            auction: 7,
            bidder: 1,
            price: 2,
            date_time: 3,
            channel: "c".into(),
            url: "u".into(),
            extra: String::new(),
        })
        .encode(&mut bid);
        assert_eq!(Event::decode_bid(&bid).unwrap().unwrap().auction, 7);
        assert!(Event::decode_auction(&bid).unwrap().is_none());
        assert!(Event::decode_person(&bid).unwrap().is_none());
        assert!(Event::decode_auction(&[9, 1, 2]).is_err());
        assert!(Event::decode_bid(&[]).is_err());
        assert!(Event::decode_bid(&bid[..5]).is_err(), "a truncated bid");
    }
}
