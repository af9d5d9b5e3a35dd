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
pub(crate) fn dead_letter(c: &Connector) -> Result<Box<dyn DeadLetterSink>, Failure> {
    match c.kind.as_str() {
        "kafka" => weir_kafka::dead_letter(c),
        other => Err(Failure::user(format!(
            "'decode-errors' = 'dead-letter' needs a Kafka source, not '{other}'; use \
             'fail' or 'skip'"
        ))),
    }
}
