//! Connector options: Flink's keys, `properties.*` passed to librdkafka.
//!
//! A tenant's job may set only the client properties in
//! [`TENANT_PROPERTIES`]; file-valued ones ([`TENANT_FILE_PROPERTIES`]) must
//! name files in the tenant's folder. The rest of librdkafka's properties
//! load native code (`plugin.library.paths`), run commands
//! (`sasl.kerberos.kinit.cmd`), read the session's files or reach
//! elsewhere, and are refused, naming the key.

use rdkafka::ClientConfig;
use weir_core::Failure;
use weir_core::config::JobOwner;
use weir_core::plan::Connector;

/// Client properties a tenant's job may set.
pub const TENANT_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "client.id",
    "client.rack",
    "auto.offset.reset",
    "isolation.level",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "fetch.message.max.bytes",
    "partition.assignment.strategy",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    "acks",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "batch.size",
    "batch.num.messages",
    "message.max.bytes",
    "request.timeout.ms",
    "socket.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transaction.timeout.ms",
    "retries",
    "retry.backoff.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "topic.metadata.refresh.interval.ms",
    "allow.auto.create.topics",
    "broker.address.family",
    "client.dns.lookup",
];

/// File-valued client properties a tenant's job may set to files in its
/// folder.
pub const TENANT_FILE_PROPERTIES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.crl.location",
];

/// SASL mechanisms a tenant's job may use (GSSAPI runs a kinit command;
/// OAUTHBEARER's OIDC fetches tokens from a URL).
const TENANT_SASL: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Checks a client property of a tenant's job.
fn check_tenant_property(key: &str, value: &str, owner: &JobOwner) -> Result<(), Failure> {
    if TENANT_FILE_PROPERTIES.contains(&key) {
        return weir_connectors::confine(
            owner,
            &format!("properties.{key}"),
            std::path::Path::new(value),
        );
    }
    if !TENANT_PROPERTIES.contains(&key) {
        return Err(Failure::user(format!(
            "Kafka property 'properties.{key}' cannot be set by a tenant's job; it may set {} \
             and, to files in its folder, {}",
            TENANT_PROPERTIES.join(", "),
            TENANT_FILE_PROPERTIES.join(", ")
        )));
    }
    if matches!(key, "sasl.mechanism" | "sasl.mechanisms")
        && !value
            .split(',')
            .all(|m| TENANT_SASL.contains(&m.trim().to_ascii_uppercase().as_str()))
    {
        return Err(Failure::user(format!(
            "Kafka property 'properties.{key}' = '{value}': a tenant's job may use {}",
            TENANT_SASL.join(", ")
        )));
    }
    Ok(())
}

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
    pub fn new(c: &Connector, what: &str, owner: &JobOwner) -> Result<Options, Failure> {
        let mut own = Vec::new();
        let mut properties = Vec::new();
        for (k, v) in &c.options {
            match k.strip_prefix("properties.") {
                Some(p) => {
                    let v = owner.secrets.expand(v)?;
                    if owner.restricted {
                        check_tenant_property(p, &v, owner)?;
                    }
                    properties.push((p.to_owned(), v));
                }
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
    fn tenants_set_only_harmless_properties() {
        let dir = std::env::temp_dir();
        let owner = JobOwner {
            tenant: Some("a".into()),
            restricted: true,
            files: Some(dir.clone()),
            ..JobOwner::default()
        };
        let with = |k: &str, v: &str| Connector {
            kind: "kafka".into(),
            options: vec![
                ("properties.bootstrap.servers".into(), "b:9092".into()),
                (format!("properties.{k}"), v.to_owned()),
            ],
        };
        for (k, v) in [
            ("plugin.library.paths", "/tmp/evil.so"),
            ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("ssl.key.location", "/etc/shadow"),
            ("sasl.mechanism", "GSSAPI"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "http://169.254.169.254/",
            ),
            ("debug", "all"),
        ] {
            let e = Options::new(&with(k, v), "source", &owner).unwrap_err();
            assert!(e.message.contains(k), "{k}: {e}");
        }
        assert!(Options::new(&with("sasl.mechanism", "SCRAM-SHA-512"), "source", &owner).is_ok());
        let inside = dir.join("ca.pem");
        assert!(
            Options::new(
                &with("ssl.ca.location", &inside.display().to_string()),
                "source",
                &owner
            )
            .is_ok()
        );
        assert!(
            Options::new(
                &with("plugin.library.paths", "x.so"),
                "source",
                &JobOwner::default()
            )
            .is_ok(),
            "the operator's own jobs are not restricted"
        );
    }

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
        let o = Options::new(&c, "source", &JobOwner::default()).unwrap();
        assert_eq!(o.property("sasl.password"), Some("s3cret"));
        assert!(!format!("{o:?}").contains("s3cret"));
        assert!(o.check("source", &["topic"]).is_ok());
        assert!(o.check("source", &["other"]).is_err());
        assert_eq!(duration("x", "5min").unwrap().as_secs(), 300);
    }
}
