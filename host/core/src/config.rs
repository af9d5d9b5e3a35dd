//! Configuration with Flink's keys.
//!
//! Settings come, lowest precedence first, from built-in defaults, the
//! configuration file (`config.yaml`, flat `key: value` or nested), the job's
//! plan, environment variables (`WEIR_` + key in upper snake case, e.g.
//! `WEIR_EXECUTION_CHECKPOINTING_INTERVAL`), and command-line flags. Every
//! source is a flat map of dotted keys to strings; [`Config::from_layers`]
//! merges them and parses the result into typed fields, rejecting unknown
//! keys with the list of known ones.

use crate::options::{bytes, human, human_opt, parsed, seconds, upper};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A flat map of configuration keys to values, one per source.
pub type ConfigLayer = BTreeMap<String, String>;

/// A configuration error, naming the key and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// How bounded inputs are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuntimeMode {
    Streaming,
    Batch,
    Automatic,
}

/// Checkpointing guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointingMode {
    /// Aligned barriers: state reflects each record exactly once.
    ExactlyOnce,
    /// Unaligned: records after a barrier may be counted again on recovery.
    AtLeastOnce,
}

/// What happens to externalized checkpoints when a job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExternalizedRetention {
    RetainOnCancellation,
    DeleteOnCancellation,
    NoExternalizedCheckpoints,
}

/// Who owns a snapshot a job is started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimMode {
    Claim,
    NoClaim,
}

/// Restart strategy kind, as Flink's `restart-strategy.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyKind {
    None,
    FixedDelay,
    ExponentialDelay,
}

/// The effective configuration of a job or a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "parallelism.default", deserialize_with = "parsed")]
    pub parallelism: u32,
    #[serde(rename = "pipeline.max-parallelism", deserialize_with = "parsed")]
    pub max_parallelism: u32,
    #[serde(rename = "pipeline.name", default)]
    pub pipeline_name: Option<String>,
    #[serde(rename = "execution.runtime-mode", deserialize_with = "upper")]
    pub runtime_mode: RuntimeMode,
    /// Flush partially filled output buffers at least this often.
    #[serde(rename = "execution.buffer-timeout", with = "human")]
    pub buffer_timeout: Duration,
    /// Records per batch read by sources.
    #[serde(rename = "pipeline.batch-size", deserialize_with = "parsed")]
    pub batch_size: usize,
    /// Least time between two watermarks of a generator (0: after every
    /// batch that advances it).
    #[serde(rename = "pipeline.auto-watermark-interval", with = "human")]
    pub watermark_interval: Duration,

    #[serde(
        rename = "execution.checkpointing.interval",
        with = "human_opt",
        default
    )]
    pub checkpoint_interval: Option<Duration>,
    #[serde(rename = "execution.checkpointing.mode", deserialize_with = "upper")]
    pub checkpointing_mode: CheckpointingMode,
    #[serde(rename = "execution.checkpointing.timeout", with = "human")]
    pub checkpoint_timeout: Duration,
    #[serde(rename = "execution.checkpointing.min-pause", with = "human")]
    pub checkpoint_min_pause: Duration,
    #[serde(
        rename = "execution.checkpointing.max-concurrent-checkpoints",
        deserialize_with = "parsed"
    )]
    pub max_concurrent_checkpoints: u32,
    #[serde(
        rename = "execution.checkpointing.tolerable-failed-checkpoints",
        deserialize_with = "parsed"
    )]
    pub tolerable_failed_checkpoints: u32,
    #[serde(
        rename = "execution.checkpointing.num-retained",
        deserialize_with = "parsed"
    )]
    pub num_retained: u32,
    #[serde(
        rename = "execution.checkpointing.externalized-checkpoint-retention",
        deserialize_with = "upper"
    )]
    pub externalized_retention: ExternalizedRetention,
    /// Barriers overtake queued records, which become part of the
    /// checkpoint (EXACTLY_ONCE only).
    #[serde(
        rename = "execution.checkpointing.unaligned",
        deserialize_with = "parsed"
    )]
    pub unaligned: bool,
    /// Unaligned checkpoints start aligned and switch once they ran this
    /// long.
    #[serde(
        rename = "execution.checkpointing.aligned-checkpoint-timeout",
        with = "human"
    )]
    pub aligned_checkpoint_timeout: Duration,
    #[serde(
        rename = "execution.checkpointing.incremental",
        deserialize_with = "parsed"
    )]
    pub incremental: bool,
    /// What a job started from a snapshot does with it: NO_CLAIM (the
    /// default: the job never deletes it and its first checkpoint is
    /// self-contained) or CLAIM (the job owns it: later checkpoints build
    /// on its files and delete it when it is no longer retained), as
    /// Flink's `execution.state-recovery.claim-mode`.
    #[serde(
        rename = "execution.state-recovery.claim-mode",
        deserialize_with = "upper"
    )]
    pub claim_mode: ClaimMode,
    #[serde(rename = "state.checkpoints.dir", default)]
    pub checkpoints_dir: Option<String>,
    #[serde(rename = "state.savepoints.dir", default)]
    pub savepoints_dir: Option<String>,

    #[serde(rename = "restart-strategy.type")]
    pub restart_strategy: RestartStrategyKind,
    #[serde(
        rename = "restart-strategy.fixed-delay.attempts",
        deserialize_with = "parsed"
    )]
    pub restart_attempts: u32,
    #[serde(rename = "restart-strategy.fixed-delay.delay", with = "human")]
    pub restart_delay: Duration,
    #[serde(
        rename = "restart-strategy.exponential-delay.initial-backoff",
        with = "human"
    )]
    pub restart_initial_backoff: Duration,
    #[serde(
        rename = "restart-strategy.exponential-delay.max-backoff",
        with = "human"
    )]
    pub restart_max_backoff: Duration,
    #[serde(
        rename = "restart-strategy.exponential-delay.backoff-multiplier",
        deserialize_with = "parsed"
    )]
    pub restart_backoff_multiplier: f64,
    #[serde(
        rename = "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        deserialize_with = "parsed"
    )]
    pub restart_exponential_attempts: u32,
    #[serde(
        rename = "restart-strategy.exponential-delay.reset-backoff-threshold",
        with = "human"
    )]
    pub restart_reset_threshold: Duration,

    /// Largest linear memory of one guest instance.
    #[serde(rename = "weir.guest.memory-limit", deserialize_with = "bytes")]
    pub guest_memory_limit: u64,
    /// Longest time one call into a guest may run before it is interrupted.
    #[serde(rename = "weir.guest.call-timeout", with = "human")]
    pub guest_call_timeout: Duration,
    /// Lines of a job's standard output and error logged per second (the
    /// rest are counted and dropped).
    #[serde(
        rename = "weir.guest.output-lines-per-second",
        deserialize_with = "parsed"
    )]
    pub guest_output_lines: u32,
    /// Fuel per call into a guest (deterministic CPU metering); off when 0.
    #[serde(rename = "weir.guest.fuel-per-call", deserialize_with = "parsed")]
    pub guest_fuel_per_call: u64,
    /// Snapshot the linear memory of job instances at every checkpoint.
    #[serde(rename = "weir.state.memory-snapshots", deserialize_with = "parsed")]
    pub memory_snapshots: bool,
    /// Keys a keyed operator keeps decoded in the guest before writing them
    /// back to RocksDB.
    #[serde(rename = "weir.state.cached-keys", deserialize_with = "parsed")]
    pub cached_keys: usize,
    /// Directory for compiled components.
    #[serde(rename = "weir.compile-cache.dir", default)]
    pub compile_cache_dir: Option<String>,
    /// Most the compile cache takes on disk; the least recently used
    /// components go first.
    #[serde(rename = "weir.compile-cache.max-size", deserialize_with = "bytes")]
    pub compile_cache_max_size: u64,
    /// Longest a session spends compiling one uploaded module.
    #[serde(rename = "weir.compile.timeout", with = "human")]
    pub compile_timeout: Duration,
    /// Modules a session compiles at once; more uploads wait.
    #[serde(rename = "weir.compile.max-concurrent", deserialize_with = "parsed")]
    pub compile_max_concurrent: u32,
    /// How long an upgraded job runs on probation: a failure within it
    /// rolls the job back to its previous module.
    #[serde(rename = "weir.upgrade.probation", with = "human")]
    pub upgrade_probation: Duration,
    /// Sync files and directories where durability depends on it (the file
    /// sink, checkpoints and HA data on `file://`), so that a power loss
    /// loses nothing a checkpoint or a commit covers.
    #[serde(rename = "weir.io.fsync", deserialize_with = "parsed")]
    pub fsync: bool,
    /// Ended jobs a session keeps for `weir list -a` and the REST API
    /// (Flink's key; the oldest go first).
    #[serde(rename = "jobstore.max-capacity", deserialize_with = "parsed")]
    pub jobstore_max_capacity: usize,
    /// How long a session keeps an ended job (Flink's key: seconds, or a
    /// duration such as 1h).
    #[serde(
        rename = "jobstore.expiration-time",
        serialize_with = "human::serialize",
        deserialize_with = "seconds"
    )]
    pub jobstore_expiration: Duration,
    /// Local working directory for RocksDB instances.
    #[serde(rename = "state.backend.rocksdb.localdir", default)]
    pub rocksdb_local_dir: Option<String>,
    /// Memory the process's RocksDB instances share: block cache, with the
    /// write buffers charged to it.
    #[serde(rename = "taskmanager.memory.managed.size", deserialize_with = "bytes")]
    pub managed_memory: u64,
    /// Share of the managed memory for write buffers (memtables).
    #[serde(
        rename = "state.backend.rocksdb.memory.write-buffer-ratio",
        deserialize_with = "parsed"
    )]
    pub write_buffer_ratio: f64,

    /// Connector options set from outside the job, by operator uid:
    /// `connector.<uid>.<option>` (e.g. `connector.kafka-in.properties.
    /// bootstrap.servers`), replacing the job's own.
    #[serde(skip)]
    pub connector_overrides: BTreeMap<String, Vec<(String, String)>>,

    /// Who the job belongs to and what its connectors may reach; set by
    /// the session that runs it, never by the job or a flag.
    #[serde(skip)]
    pub owner: JobOwner,

    #[serde(rename = "s3.endpoint", default)]
    pub s3_endpoint: Option<String>,
    #[serde(rename = "s3.region", default)]
    pub s3_region: Option<String>,
    #[serde(rename = "s3.access-key", default)]
    pub s3_access_key: Option<Secret>,
    #[serde(rename = "s3.secret-key", default)]
    pub s3_secret_key: Option<Secret>,
    #[serde(rename = "s3.path.style.access", deserialize_with = "parsed")]
    pub s3_path_style: bool,
    #[serde(rename = "s3.allow-http", deserialize_with = "parsed")]
    pub s3_allow_http: bool,

    #[serde(rename = "rest.address")]
    pub rest_address: String,
    #[serde(rename = "rest.port", deserialize_with = "parsed")]
    pub rest_port: u16,
    /// Largest request body the REST API takes (uploads).
    #[serde(rename = "rest.server.max-content-length", deserialize_with = "bytes")]
    pub rest_max_content_length: u64,
    #[serde(rename = "taskmanager.numberOfTaskSlots", deserialize_with = "parsed")]
    pub task_slots: u32,
    #[serde(rename = "high-availability.storageDir", default)]
    pub ha_storage_dir: Option<String>,
    /// `none`, or `lease`: sessions over one HA store elect a leader.
    #[serde(rename = "high-availability.type")]
    pub ha_type: String,
    #[serde(rename = "high-availability.lease.duration", with = "human")]
    pub ha_lease_duration: Duration,
    /// How long a job waits for enough free task slots before it fails.
    #[serde(rename = "slot.request.timeout", with = "human")]
    pub slot_request_timeout: Duration,
    #[serde(rename = "heartbeat.interval", with = "human")]
    pub heartbeat_interval: Duration,
    #[serde(rename = "heartbeat.timeout", with = "human")]
    pub heartbeat_timeout: Duration,
    /// Port of the cluster endpoint (task managers, data between
    /// processes); none without one.
    #[serde(
        rename = "weir.cluster.port",
        default,
        deserialize_with = "crate::options::opt_parsed"
    )]
    pub cluster_port: Option<u16>,
    #[serde(rename = "weir.cluster.bind-address")]
    pub cluster_bind_address: String,
    /// How other processes reach this one's cluster endpoint.
    #[serde(rename = "weir.cluster.advertised-address", default)]
    pub cluster_advertised_address: Option<String>,
    /// Shared by every process of a cluster: requests without it are
    /// refused.
    #[serde(rename = "weir.cluster.secret", default)]
    pub cluster_secret: Option<Secret>,
    #[serde(rename = "weir.data-dir", default)]
    pub data_dir: Option<String>,
}

/// Who a job belongs to, as far as its connectors are concerned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOwner {
    /// The tenant (None outside tenancy).
    pub tenant: Option<String>,
    /// How `${name}` in connector options resolves.
    pub secrets: crate::secrets::Secrets,
    /// Connector options are held to the tenants' allow-list, and
    /// file-valued ones to `files`.
    pub restricted: bool,
    /// The one folder a restricted job's file-valued options may name.
    pub files: Option<std::path::PathBuf>,
}

/// A value that is never printed (passwords, keys).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"******\"")
    }
}

/// Built-in defaults, as flat keys (Flink's defaults where Flink has one),
/// from the documented table of keys.
/// Other names Flink gives some keys (its newer and its deprecated ones).
const ALIASES: &[(&str, &str)] = &[
    (
        "execution.checkpointing.unaligned.enabled",
        "execution.checkpointing.unaligned",
    ),
    (
        "execution.checkpointing.alignment-timeout",
        "execution.checkpointing.aligned-checkpoint-timeout",
    ),
];

/// The key `key` is another name of, or itself.
fn canonical(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, k)| k)
}

pub fn defaults() -> ConfigLayer {
    crate::reference::config_keys()
        .filter_map(|k| k.default.map(|d| (k.key.to_owned(), d.to_owned())))
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Config::from_layers(&[]).expect("built-in defaults are valid")
    }
}

impl Config {
    /// Merges layers over the defaults (later layers win) and parses them.
    pub fn from_layers(layers: &[&ConfigLayer]) -> Result<Config, ConfigError> {
        let mut merged = defaults();
        for layer in layers {
            for (k, v) in layer.iter() {
                merged.insert(canonical(k).to_owned(), v.clone());
            }
        }
        Config::parse(&merged)
    }

    fn parse(flat: &ConfigLayer) -> Result<Config, ConfigError> {
        let mut overrides: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (k, v) in flat {
            if let Some(rest) = k.strip_prefix("connector.") {
                let Some((uid, option)) = rest.split_once('.') else {
                    return Err(ConfigError(format!(
                        "key '{k}' names no option; use connector.<operator uid>.<option>"
                    )));
                };
                overrides
                    .entry(uid.to_owned())
                    .or_default()
                    .push((option.to_owned(), v.clone()));
            }
        }
        let value = serde_json::Value::Object(
            flat.iter()
                .filter(|(k, _)| !k.starts_with("connector."))
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        let mut config: Config = serde_json::from_value(value).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("unknown field ") {
                Some(rest) => ConfigError(format!(
                    "unknown key {}; check the spelling against docs/configuration.md",
                    rest.split(", expected").next().unwrap_or(rest)
                )),
                None => ConfigError(msg),
            }
        })?;
        config.connector_overrides = overrides;
        config.validate()?;
        Ok(config)
    }

    /// `c` with the options set for operator `uid` from outside the job.
    pub fn connector_for(&self, uid: &str, c: &crate::plan::Connector) -> crate::plan::Connector {
        let mut c = c.clone();
        for (k, v) in self.connector_overrides.get(uid).into_iter().flatten() {
            match c.options.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = v.clone(),
                None => c.options.push((k.clone(), v.clone())),
            }
        }
        c
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.parallelism == 0 {
            return Err(ConfigError("parallelism.default must be at least 1".into()));
        }
        if self.max_parallelism == 0 || self.max_parallelism > crate::keygroup::MAX_MAX_PARALLELISM
        {
            return Err(ConfigError(format!(
                "pipeline.max-parallelism must be between 1 and {}",
                crate::keygroup::MAX_MAX_PARALLELISM
            )));
        }
        if self.batch_size == 0 {
            return Err(ConfigError("pipeline.batch-size must be at least 1".into()));
        }
        if self.num_retained == 0 {
            return Err(ConfigError(
                "execution.checkpointing.num-retained must be at least 1".into(),
            ));
        }
        if self.compile_max_concurrent == 0 {
            return Err(ConfigError(
                "weir.compile.max-concurrent must be at least 1".into(),
            ));
        }
        if self.unaligned && self.max_concurrent_checkpoints > 1 {
            return Err(ConfigError(
                "execution.checkpointing.unaligned needs \
                 execution.checkpointing.max-concurrent-checkpoints 1 (a newer unaligned \
                 checkpoint overtakes the one in progress)"
                    .into(),
            ));
        }
        if self.unaligned && self.checkpointing_mode == CheckpointingMode::AtLeastOnce {
            return Err(ConfigError(
                "execution.checkpointing.unaligned needs execution.checkpointing.mode \
                 EXACTLY_ONCE (AT_LEAST_ONCE does not align barriers at all)"
                    .into(),
            ));
        }
        if self.max_concurrent_checkpoints == 0 {
            return Err(ConfigError(
                "execution.checkpointing.max-concurrent-checkpoints must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Reads a configuration file: YAML with flat dotted keys (`a.b: 1`) or
/// nested maps (`a: {b: 1}`), as Flink's `config.yaml`.
pub fn parse_yaml(text: &str) -> Result<ConfigLayer, ConfigError> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError(format!("the configuration file is not valid YAML: {e}")))?;
    let mut out = ConfigLayer::new();
    if !value.is_null() {
        flatten("", &value, &mut out)?;
    }
    Ok(out)
}

fn flatten(
    prefix: &str,
    v: &serde_yaml_ng::Value,
    out: &mut ConfigLayer,
) -> Result<(), ConfigError> {
    use serde_yaml_ng::Value as V;
    match v {
        V::Mapping(m) => {
            for (k, v) in m {
                let k = match k {
                    V::String(s) => s.clone(),
                    V::Number(n) => n.to_string(),
                    V::Bool(b) => b.to_string(),
                    other => {
                        return Err(ConfigError(format!(
                            "configuration keys must be strings, found {other:?}"
                        )));
                    }
                };
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        V::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        V::Number(n) => {
            out.insert(prefix.to_owned(), n.to_string());
        }
        V::Bool(b) => {
            out.insert(prefix.to_owned(), b.to_string());
        }
        V::Null => {}
        other => {
            return Err(ConfigError(format!(
                "configuration key '{prefix}' has an unsupported value {other:?}; use a string, number or boolean"
            )));
        }
    }
    Ok(())
}

/// Settings from the environment: `WEIR_PARALLELISM_DEFAULT=4` sets
/// `parallelism.default`. Only variables naming a known key are taken.
pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> ConfigLayer {
    let known: BTreeMap<String, String> = known_keys()
        .into_iter()
        .map(|k| (env_name(&k), k))
        .collect();
    vars.into_iter()
        .filter_map(|(name, value)| known.get(&name).map(|k| (k.clone(), value)))
        .collect()
}

/// The environment variable for a key.
pub fn env_name(key: &str) -> String {
    let mut s = String::from("WEIR_");
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            s.push('_');
        }
        prev_lower = c.is_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_uppercase());
        } else {
            s.push('_');
        }
    }
    s
}

/// Every configuration key.
pub fn known_keys() -> Vec<String> {
    // Serialize a default config to enumerate keys.
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => vec![],
    }
}

impl Config {
    /// The configuration as the keys and values it parses from (secrets
    /// included): what another process of the cluster builds it again
    /// from. The owner is not part of it.
    pub fn to_layer(&self) -> ConfigLayer {
        let mut out = ConfigLayer::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(self) {
            for (k, v) in m {
                let text = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, text);
            }
        }
        for (uid, options) in &self.connector_overrides {
            for (k, v) in options {
                out.insert(format!("connector.{uid}.{k}"), v.clone());
            }
        }
        out
    }

    /// The configuration as flat keys and display values; secrets masked.
    pub fn to_display_map(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(self) {
            for (k, v) in m {
                let shown = if k.contains("secret") || k.contains("access-key") {
                    if v.is_null() {
                        "".into()
                    } else {
                        "******".into()
                    }
                } else {
                    match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    }
                };
                out.insert(k, shown);
            }
        }
        for (uid, options) in &self.connector_overrides {
            for (k, v) in options {
                let secret = ["password", "secret", "sasl", "ssl.key"]
                    .iter()
                    .any(|s| k.contains(s));
                let shown = if secret {
                    "******".to_owned()
                } else {
                    v.clone()
                };
                out.insert(format!("connector.{uid}.{k}"), shown);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_checkpoints_under_flink_s_names_and_only_exactly_once() {
        let c = Config::from_layers(&[&layer(&[
            ("execution.checkpointing.unaligned.enabled", "true"),
            ("execution.checkpointing.alignment-timeout", "30s"),
        ])])
        .unwrap();
        assert!(c.unaligned);
        assert_eq!(c.aligned_checkpoint_timeout, Duration::from_secs(30));
        let e = Config::from_layers(&[&layer(&[
            ("execution.checkpointing.unaligned", "true"),
            ("execution.checkpointing.mode", "AT_LEAST_ONCE"),
        ])])
        .unwrap_err();
        assert!(e.0.contains("EXACTLY_ONCE"), "{e}");
        let e = Config::from_layers(&[&layer(&[
            ("execution.checkpointing.unaligned", "true"),
            ("execution.checkpointing.max-concurrent-checkpoints", "2"),
        ])])
        .unwrap_err();
        assert!(e.0.contains("max-concurrent-checkpoints 1"), "{e}");
    }

    fn layer(kv: &[(&str, &str)]) -> ConfigLayer {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_flink_like() {
        let c = Config::default();
        assert_eq!(c.parallelism, 1);
        assert_eq!(c.max_parallelism, 128);
        assert_eq!(c.checkpoint_interval, None);
        assert_eq!(c.checkpointing_mode, CheckpointingMode::ExactlyOnce);
        assert_eq!(c.rest_port, 8081);
    }

    #[test]
    fn later_layers_win_and_values_parse() {
        let a = layer(&[
            ("parallelism.default", "2"),
            ("execution.checkpointing.interval", "10s"),
        ]);
        let b = layer(&[
            ("parallelism.default", "4"),
            ("execution.checkpointing.mode", "at-least-once"),
        ]);
        let c = Config::from_layers(&[&a, &b]).unwrap();
        assert_eq!(c.parallelism, 4);
        assert_eq!(c.checkpoint_interval, Some(Duration::from_secs(10)));
        assert_eq!(c.checkpointing_mode, CheckpointingMode::AtLeastOnce);
    }

    #[test]
    fn unknown_and_bad_values_are_named() {
        let e = Config::from_layers(&[&layer(&[("parallelism.defualt", "2")])]).unwrap_err();
        assert!(e.to_string().contains("parallelism.defualt"), "{e}");
        let e = Config::from_layers(&[&layer(&[("parallelism.default", "two")])]).unwrap_err();
        assert!(e.to_string().contains("'two'"), "{e}");
        let e = Config::from_layers(&[&layer(&[("execution.checkpointing.timeout", "soon")])])
            .unwrap_err();
        assert!(e.to_string().contains("duration"), "{e}");
    }

    #[test]
    fn yaml_nested_and_flat_keys() {
        let l =
            parse_yaml("parallelism.default: 3\nexecution:\n  checkpointing:\n    interval: 5s\n")
                .unwrap();
        assert_eq!(l["parallelism.default"], "3");
        assert_eq!(l["execution.checkpointing.interval"], "5s");
        assert!(parse_yaml("a: [1, 2]").is_err());
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(
            env_name("taskmanager.numberOfTaskSlots"),
            "WEIR_TASKMANAGER_NUMBER_OF_TASK_SLOTS"
        );
        let l = from_env([
            ("WEIR_PARALLELISM_DEFAULT".to_string(), "3".to_string()),
            ("WEIR_NOT_A_KEY".to_string(), "x".to_string()),
        ]);
        assert_eq!(l.len(), 1);
        assert_eq!(l["parallelism.default"], "3");
    }

    #[test]
    fn a_configuration_survives_its_layer() {
        let c = Config::from_layers(&[&layer(&[
            ("s3.secret-key", "hunter2"),
            ("parallelism.default", "3"),
            ("execution.checkpointing.interval", "250ms"),
            ("execution.checkpointing.mode", "at-least-once"),
            ("taskmanager.memory.managed.size", "64mb"),
            ("connector.sink-1.password", "pw"),
            ("weir.cluster.port", "6123"),
        ])])
        .unwrap();
        let again = Config::from_layers(&[&c.to_layer()]).unwrap();
        assert_eq!(c, again);
        assert_eq!(
            Config::from_layers(&[&Config::default().to_layer()]).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn secrets_are_masked() {
        let c = Config::from_layers(&[&layer(&[("s3.secret-key", "hunter2")])]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.to_display_map()["s3.secret-key"], "******");
    }
}
