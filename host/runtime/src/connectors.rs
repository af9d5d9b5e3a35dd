//! Which crate opens which connector: the built-in ones, Kafka, SQL.

use weir_connectors::{DeadLetterSink, SinkContext, SinkWriter, SourceContext, SourceReader};
use weir_core::Failure;
use weir_core::plan::Connector;

pub(crate) fn open_source(
    c: &Connector,
    ctx: &SourceContext,
) -> Result<Box<dyn SourceReader>, Failure> {
    match c.kind.as_str() {
        "kafka" => weir_kafka::open_source(c, ctx),
        _ => weir_connectors::open_source(c, ctx),
    }
}

pub(crate) fn open_sink(c: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure> {
    match c.kind.as_str() {
        "kafka" => weir_kafka::open_sink(c, ctx),
        "jdbc" => weir_sql::open_sink(c, ctx),
        _ => weir_connectors::open_sink(c, ctx),
    }
}

/// Where a source sends records it cannot decode, under
/// `'decode-errors' = 'dead-letter'`.
pub(crate) fn dead_letter(
    c: &Connector,
    owner: &weir_core::config::JobOwner,
) -> Result<Box<dyn DeadLetterSink>, Failure> {
    match c.kind.as_str() {
        "kafka" => weir_kafka::dead_letter(c, owner),
        other => Err(Failure::user(format!(
            "'decode-errors' = 'dead-letter' needs a Kafka source, not '{other}'; use \
             'fail' or 'skip'"
        ))),
    }
}

/// Checks a connector's options for the job's owner before the job starts
/// (secrets that exist, what a tenant may set, files in its folder), so
/// that a submission is refused with the option named.
pub fn check_connector(c: &Connector, owner: &weir_core::config::JobOwner) -> Result<(), Failure> {
    match c.kind.as_str() {
        "kafka" => weir_kafka::check_options(c, owner),
        "jdbc" => weir_sql::check_options(c, owner),
        _ => {
            for (k, v) in &c.options {
                if k == "path" {
                    weir_connectors::confine(owner, k, std::path::Path::new(v))?;
                }
            }
            Ok(())
        }
    }
}
