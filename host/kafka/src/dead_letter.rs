//! A dead-letter topic for records a job cannot decode.

use crate::kafka_failure;
use crate::options::Options;
use crate::sink::{Deliveries, KafkaProducer, send};
use std::time::Duration;
use weir_connectors::DeadLetterSink;
use weir_core::Failure;
use weir_core::config::JobOwner;
use weir_core::plan::Connector;
use weir_frame::connectors::{KafkaMessage, KafkaRecord};

/// Sends undecodable records to `dead-letter.topic` with their key, value
/// and headers, and the reason in the header `weir.error` (plus where they
/// came from in `weir.topic`, `weir.partition` and `weir.offset`); at least
/// once.
struct DeadLetter {
    producer: KafkaProducer,
    deliveries: Deliveries,
    topic: String,
    servers: String,
}

/// The dead-letter sink of a Kafka source connector.
pub fn dead_letter(c: &Connector, owner: &JobOwner) -> Result<Box<dyn DeadLetterSink>, Failure> {
    let options = Options::new(c, "source", owner)?;
    let topic = c
        .options
        .iter()
        .find(|(k, _)| k == "dead-letter.topic")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            Failure::user("'decode-errors' = 'dead-letter' needs 'dead-letter.topic'")
        })?;
    let deliveries = Deliveries::default();
    let producer = options
        .producer_client(&[("acks", "all"), ("enable.idempotence", "true")])
        .create_with_context(deliveries.clone())
        .map_err(|e| kafka_failure("create a producer", options.servers(), e))?;
    Ok(Box::new(DeadLetter {
        producer,
        deliveries,
        topic,
        servers: options.servers().to_owned(),
    }))
}

impl DeadLetterSink for DeadLetter {
    fn send(&mut self, raw: &[u8], reason: &str) -> Result<(), Failure> {
        let r: KafkaRecord = postcard::from_bytes(raw).unwrap_or_default();
        let mut headers = r.headers;
        headers.push(("weir.error".into(), Some(reason.as_bytes().to_vec())));
        headers.push(("weir.topic".into(), Some(r.topic.into_bytes())));
        headers.push((
            "weir.partition".into(),
            Some(r.partition.to_string().into_bytes()),
        ));
        headers.push((
            "weir.offset".into(),
            Some(r.offset.to_string().into_bytes()),
        ));
        let m = KafkaMessage {
            topic: None,
            key: r.key,
            value: r.value,
            headers,
            timestamp: r.timestamp,
        };
        self.deliveries.check(&self.servers)?;
        send(&self.producer, &self.topic, &m, &self.servers)
    }

    fn flush(&mut self) -> Result<(), Failure> {
        use rdkafka::producer::Producer;
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| kafka_failure("write to the dead-letter topic", &self.servers, e))?;
        self.deliveries.check(&self.servers)
    }
}
