//! Kafka connectors on librdkafka, with Flink's option names (`topic`,
//! `properties.bootstrap.servers`, `scan.startup.mode`,
//! `sink.delivery-guarantee`, ...).
//!
//! - The source reads the partitions of its topics assigned to its subtask
//!   (reassigned on rescale), keeps its offsets in checkpoints — a restore
//!   never depends on the consumer group — and commits them back to the
//!   group when a checkpoint completes, for monitoring. Records reach the
//!   job with their key, headers and timestamp (event time).
//! - The sink writes at least once (flushing at every checkpoint) or
//!   exactly once, in a Kafka transaction per checkpoint committed when the
//!   checkpoint completes (see [`sink`]).
//! - Records a job cannot decode can go to a dead-letter topic.

mod dead_letter;
mod options;
mod sink;
mod source;
#[cfg(test)]
mod tests;

pub use dead_letter::dead_letter;
pub use sink::open_sink;
pub use source::open_source;

use weir_core::Failure;
use weir_core::config::JobOwner;
use weir_core::plan::Connector;

/// Checks a Kafka connector's options for its owner (secrets that exist,
/// properties a tenant may set) without connecting anywhere.
pub fn check_options(c: &Connector, owner: &JobOwner) -> Result<(), Failure> {
    options::Options::new(c, "connector", owner).map(|_| ())
}

/// The Kafka source and sink, for a job's [`weir_connectors::Connectors`].
pub struct KafkaConnectors;

impl weir_connectors::ConnectorProvider for KafkaConnectors {
    fn sources(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn sinks(&self) -> &'static [&'static str] {
        &["kafka"]
    }

    fn open_source(
        &self,
        c: &Connector,
        ctx: &weir_connectors::SourceContext,
    ) -> Result<Box<dyn weir_connectors::SourceReader>, Failure> {
        open_source(c, ctx)
    }

    fn open_sink(
        &self,
        c: &Connector,
        ctx: &weir_connectors::SinkContext,
    ) -> Result<Box<dyn weir_connectors::SinkWriter>, Failure> {
        open_sink(c, ctx)
    }

    fn dead_letter(
        &self,
        c: &Connector,
        owner: &JobOwner,
    ) -> Result<Box<dyn weir_connectors::DeadLetterSink>, Failure> {
        dead_letter(c, owner)
    }

    fn check_options(&self, c: &Connector, owner: &JobOwner) -> Result<(), Failure> {
        check_options(c, owner)
    }
}

/// A Kafka error, with where and what to check.
pub(crate) fn kafka_failure(what: &str, servers: &str, e: impl std::fmt::Display) -> Failure {
    Failure::external(format!(
        "Kafka at {servers}: cannot {what}: {e}. Check properties.bootstrap.servers, that \
         the brokers are up and reachable, and the security properties"
    ))
}
