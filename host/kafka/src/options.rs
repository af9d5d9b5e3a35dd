//! Connector options: Flink's keys, `properties.*` passed to librdkafka.

use rdkafka::ClientConfig;
use weir_core::Failure;
use weir_core::plan::Connector;

/// The options of a Kafka connector, split into its own keys and the
/// client properties.
#[derive(Clone)]
pub(crate) struct Options {
    own: Vec<(String, String)>,
    properties: Vec<(String, String)>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Properties may hold credentials: only their keys are shown.
        f.debug_struct("Options")
            .field("own", &self.own)
            .field(
                "properties",
                &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Options {
    pub fn new(c: &Connector, what: &str) -> Result<Options, Failure> {
        let mut own = Vec::new();
        let mut properties = Vec::new();
        for (k, v) in &c.options {
            match k.strip_prefix("properties.") {
                Some(p) => properties.push((p.to_owned(), weir_connectors::expand_env(v)?)),
                None => own.push((k.clone(), v.clone())),
            }
        }
        let o = Options { own, properties };
        if o.property("bootstrap.servers").is_none() {
            return Err(Failure::user(format!(
                "the Kafka {what} needs 'properties.bootstrap.servers'"
            )));
        }
        Ok(o)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.own
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn servers(&self) -> &str {
        self.property("bootstrap.servers").unwrap_or_default()
    }

    /// Rejects own options outside `known`.
    pub fn check(&self, what: &str, known: &[&str]) -> Result<(), Failure> {
        for (k, _) in &self.own {
            if !known.contains(&k.as_str()) {
                return Err(Failure::user(format!(
                    "unknown option '{k}' for a Kafka {what}; it knows {} and properties.*",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// A client configuration with `defaults`, overridden by the job's
    /// properties.
    pub fn client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A producer configuration: the job's properties without the
    /// consumer-only ones (a source's options also make its dead-letter
    /// producer).
    pub fn producer_client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        const CONSUMER_ONLY: &[&str] = &[
            "group.id",
            "group.instance.id",
            "auto.offset.reset",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "isolation.level",
            "session.timeout.ms",
            "max.poll.interval.ms",
            "fetch.min.bytes",
            "enable.partition.eof",
        ];
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            if !CONSUMER_ONLY.contains(&k.as_str()) {
                c.set(k, v);
            }
        }
        c
    }

    pub fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Failure>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| Failure::user(format!("Kafka option '{key}' = '{v}': {e}"))),
        }
    }
}

/// Parses durations like `10s`, `500ms`, `5min`.
pub(crate) fn duration(key: &str, v: &str) -> Result<std::time::Duration, Failure> {
    let v = v.trim();
    let (num, unit) = v
        .find(|c: char| !c.is_ascii_digit())
        .map_or((v, "ms"), |i| (&v[..i], v[i..].trim()));
    let n: u64 = num
        .parse()
        .map_err(|e| Failure::user(format!("Kafka option '{key}' = '{v}': {e}")))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "min" | "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => {
            return Err(Failure::user(format!(
                "Kafka option '{key}' = '{v}': use ms, s, min or h"
            )));
        }
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_expand_the_environment_and_are_not_shown() {
        // SAFETY: the variable is only read by this test.
        unsafe { std::env::set_var("WEIR_TEST_KAFKA_SECRET", "s3cret") };
        let c = Connector {
            kind: "kafka".into(),
            options: vec![
                ("topic".into(), "t".into()),
                ("properties.bootstrap.servers".into(), "b:9092".into()),
                (
                    "properties.sasl.password".into(),
                    "${WEIR_TEST_KAFKA_SECRET}".into(),
                ),
            ],
        };
        let o = Options::new(&c, "source").unwrap();
        assert_eq!(o.property("sasl.password"), Some("s3cret"));
        assert!(!format!("{o:?}").contains("s3cret"));
        assert!(o.check("source", &["topic"]).is_ok());
        assert!(o.check("source", &["other"]).is_err());
        assert_eq!(duration("x", "5min").unwrap().as_secs(), 300);
    }
}
