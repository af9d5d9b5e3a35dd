//! What every configuration key means, with its default: the one table
//! that [`crate::config::defaults`] and the generated configuration
//! reference (`docs/configuration.md`) are both made from, and that a test
//! holds to the keys [`crate::Config`] parses.

/// One key: its name, its built-in default (none when unset means "off"
/// or "chosen at run time", as the meaning says), and what it does.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub key: &'static str,
    pub default: Option<&'static str>,
    pub meaning: &'static str,
}

const fn key(key: &'static str, default: &'static str, meaning: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        default: Some(default),
        meaning,
    }
}

const fn unset(key: &'static str, meaning: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        default: None,
        meaning,
    }
}

/// A group of keys under one heading of the reference.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub title: &'static str,
    pub intro: &'static str,
    pub keys: &'static [KeyDoc],
}

/// The keys of a job's and a session's configuration ([`crate::Config`]).
pub const SECTIONS: &[Section] = &[
    Section {
        title: "Pipeline",
        intro: "How a job's graph is built and how records move between its operators.",
        keys: &[
            key(
                "parallelism.default",
                "1",
                "Parallelism of operators that set none (`-p` on the command line).",
            ),
            key(
                "pipeline.max-parallelism",
                "128",
                "Number of key groups: the most subtasks a keyed operator can ever be rescaled to. \
                 Changing it makes keyed state of older snapshots unusable.",
            ),
            unset(
                "pipeline.name",
                "Name of the job shown in lists and the web UI (default: the name the job gives \
                 itself).",
            ),
            key(
                "execution.runtime-mode",
                "AUTOMATIC",
                "STREAMING, BATCH or AUTOMATIC (BATCH when every source is bounded).",
            ),
            key(
                "execution.buffer-timeout",
                "100ms",
                "Longest time a partly filled output batch waits before it is sent downstream.",
            ),
            key(
                "pipeline.batch-size",
                "1024",
                "Records per batch that sources read and a guest function is called with.",
            ),
            key(
                "pipeline.auto-watermark-interval",
                "200ms",
                "Least time between two watermarks of a source (0: after every batch that \
                 advances it).",
            ),
        ],
    },
    Section {
        title: "Checkpoints",
        intro: "Periodic snapshots of a job's state and source positions, from which it \
                recovers exactly once.",
        keys: &[
            unset(
                "execution.checkpointing.interval",
                "Time between two checkpoints; checkpointing is off when unset.",
            ),
            key(
                "execution.checkpointing.mode",
                "EXACTLY_ONCE",
                "EXACTLY_ONCE (aligned barriers) or AT_LEAST_ONCE.",
            ),
            key(
                "execution.checkpointing.timeout",
                "10min",
                "A checkpoint that takes longer is declared failed.",
            ),
            key(
                "execution.checkpointing.min-pause",
                "0ms",
                "Least time between the end of one checkpoint and the start of the next.",
            ),
            key(
                "execution.checkpointing.max-concurrent-checkpoints",
                "1",
                "Checkpoints in progress at once.",
            ),
            key(
                "execution.checkpointing.tolerable-failed-checkpoints",
                "0",
                "Consecutive failed checkpoints tolerated before the job fails.",
            ),
            key(
                "execution.checkpointing.num-retained",
                "1",
                "Completed checkpoints kept; older ones are deleted once no retained one \
                 refers to their files.",
            ),
            key(
                "execution.checkpointing.externalized-checkpoint-retention",
                "RETAIN_ON_CANCELLATION",
                "What happens to a job's checkpoints when it is cancelled: \
                 RETAIN_ON_CANCELLATION, DELETE_ON_CANCELLATION or NO_EXTERNALIZED_CHECKPOINTS.",
            ),
            key(
                "execution.checkpointing.unaligned",
                "false",
                "Barriers overtake queued records, which become part of the checkpoint, so \
                 that a checkpoint under backpressure takes about as long as an idle one \
                 (needs EXACTLY_ONCE and max-concurrent-checkpoints 1; savepoints and module \
                 swaps stay aligned). Also read as `execution.checkpointing.unaligned.enabled`.",
            ),
            key(
                "execution.checkpointing.aligned-checkpoint-timeout",
                "0ms",
                "With unaligned checkpoints: a task first waits this long for a barrier on \
                 all its inputs (from when it hears of it), then goes unaligned (0: unaligned \
                 from the start). Also read as `execution.checkpointing.alignment-timeout`.",
            ),
            key(
                "execution.checkpointing.incremental",
                "true",
                "Checkpoints upload only RocksDB files that are new since the previous one \
                 (kept under `<job>/shared/`); false makes every checkpoint self-contained.",
            ),
            key(
                "execution.state-recovery.claim-mode",
                "NO_CLAIM",
                "Who owns the snapshot a job starts from (`-s`): NO_CLAIM (never deleted; the \
                 first checkpoint is self-contained) or CLAIM (the job takes it over and \
                 deletes it once newer checkpoints subsume it).",
            ),
            unset(
                "state.checkpoints.dir",
                "Where checkpoints go: `file:///path`, `s3://bucket/path` or `memory://name`. \
                 Unset with `weir run --local`: checkpoints stay in the process. A session \
                 defaults to `<data-dir>/checkpoints`.",
            ),
            unset(
                "state.savepoints.dir",
                "Where savepoints go when none is named. A session defaults to \
                 `<data-dir>/savepoints`.",
            ),
            unset(
                "state.backend.rocksdb.localdir",
                "Local working directory of RocksDB instances and restored files (default: the \
                 system's temporary directory with `weir run --local`, `<data-dir>/work` in a \
                 session; a session uses its own setting for every job). Each process works in \
                 a `weir-…-<pid>` directory of its own there: `run --local` and task managers \
                 remove theirs when they end, and one left behind (a killed process's, or a \
                 session's) is removed by the next process that starts there. It needs a local \
                 file system, where `flock` locks work.",
            ),
            key(
                "taskmanager.memory.managed.size",
                "256mb",
                "Memory every RocksDB instance of the process shares, as Flink's managed \
                 memory: one block cache, with the write buffers (memtables) of all jobs \
                 charged to it, so that idle jobs cost what their state holds. A session's own \
                 setting applies to all its jobs.",
            ),
            key(
                "state.backend.rocksdb.memory.write-buffer-ratio",
                "0.5",
                "Share of taskmanager.memory.managed.size for write buffers; past it, the \
                 largest memtables are flushed.",
            ),
        ],
    },
    Section {
        title: "Restarts",
        intro: "What a job does when a task fails.",
        keys: &[
            key(
                "restart-strategy.type",
                "none",
                "none, fixed-delay or exponential-delay.",
            ),
            key(
                "restart-strategy.fixed-delay.attempts",
                "3",
                "Restarts before the job fails (fixed-delay).",
            ),
            key(
                "restart-strategy.fixed-delay.delay",
                "1s",
                "Wait before each restart (fixed-delay).",
            ),
            key(
                "restart-strategy.exponential-delay.initial-backoff",
                "1s",
                "Wait before the first restart (exponential-delay).",
            ),
            key(
                "restart-strategy.exponential-delay.max-backoff",
                "1min",
                "Longest wait between restarts (exponential-delay).",
            ),
            key(
                "restart-strategy.exponential-delay.backoff-multiplier",
                "2.0",
                "Factor the wait grows by after each restart (exponential-delay).",
            ),
            key(
                "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                "10",
                "Restarts before the job fails, counted since the last reset (exponential-delay).",
            ),
            key(
                "restart-strategy.exponential-delay.reset-backoff-threshold",
                "1h",
                "Running this long without a failure resets the wait and the count \
                 (exponential-delay).",
            ),
        ],
    },
    Section {
        title: "Guests",
        intro: "Limits and behaviour of the WebAssembly instances that run a job's functions.",
        keys: &[
            key(
                "weir.guest.memory-limit",
                "1gb",
                "Largest memory of one instance (all its memories and tables); growing past it \
                 fails the job with the size reached.",
            ),
            key(
                "weir.guest.call-timeout",
                "10s",
                "Longest one call into a guest (one batch) may run before it is interrupted \
                 and the job fails.",
            ),
            key(
                "weir.guest.fuel-per-call",
                "0",
                "Fuel (deterministic instruction metering) one call may use; 0 turns metering \
                 off.",
            ),
            key(
                "weir.guest.output-lines-per-second",
                "100",
                "Lines of a job's standard output and error logged per second; the rest are \
                 counted and dropped.",
            ),
            key(
                "weir.state.cached-keys",
                "100000",
                "Keys a keyed operator keeps decoded in the guest before writing them back to \
                 RocksDB.",
            ),
            key(
                "weir.state.memory-snapshots",
                "false",
                "Snapshot each instance's linear memory at every checkpoint, so that state a \
                 job keeps in plain variables survives a restore.",
            ),
            unset(
                "weir.compile-cache.dir",
                "Directory of compiled components (a session defaults to \
                 `<data-dir>/compiled`).",
            ),
            key(
                "weir.compile-cache.max-size",
                "2gb",
                "Most the compiled components in the cache take on disk; past it, the ones \
                 used least recently are removed (and compiled again when next needed).",
            ),
            key(
                "weir.compile.timeout",
                "2min",
                "Longest a session spends compiling one uploaded module.",
            ),
            key(
                "weir.compile.max-concurrent",
                "1",
                "Modules a session compiles at once; more uploads wait.",
            ),
            key(
                "weir.upgrade.probation",
                "1min",
                "How long a job upgraded with `weir upgrade` runs on probation: if it fails \
                 within that time it goes back to its previous module, from the snapshot the \
                 upgrade started from.",
            ),
        ],
    },
    Section {
        title: "Storage",
        intro: "Durability of local files, and the S3 (or MinIO) endpoint for `s3://` paths.",
        keys: &[
            key(
                "weir.io.fsync",
                "true",
                "Sync files and directories where durability depends on it (the file sink, \
                 checkpoints and HA data on `file://`).",
            ),
            unset(
                "s3.endpoint",
                "S3 endpoint URL (e.g. MinIO's); unset uses AWS.",
            ),
            unset("s3.region", "S3 region."),
            unset(
                "s3.access-key",
                "S3 access key (masked wherever the configuration is shown).",
            ),
            unset(
                "s3.secret-key",
                "S3 secret key (masked wherever the configuration is shown).",
            ),
            key(
                "s3.path.style.access",
                "false",
                "Path-style requests (`endpoint/bucket/key`), as MinIO needs.",
            ),
            key("s3.allow-http", "false", "Allow an `http://` endpoint."),
        ],
    },
    Section {
        title: "Session",
        intro: "The session cluster: REST API, task slots, HA store and ended jobs.",
        keys: &[
            key(
                "rest.address",
                "127.0.0.1",
                "Address the REST API and web UI listen on.",
            ),
            key(
                "rest.port",
                "8081",
                "Port of the REST API and web UI (0 picks a free one).",
            ),
            key(
                "rest.server.max-content-length",
                "100mb",
                "Largest request body, i.e. the largest module upload.",
            ),
            key(
                "taskmanager.numberOfTaskSlots",
                "4",
                "Task slots of the session; a job needs as many as its highest parallelism.",
            ),
            key(
                "high-availability.type",
                "none",
                "none (one session per HA store), or lease: sessions over one HA store elect a \
                 leader through a lease in it; the others stand by and take over its jobs.",
            ),
            key(
                "high-availability.lease.duration",
                "15s",
                "How long a leader's lease lasts unrenewed (it renews every quarter of it); a \
                 standby takes over once it expired.",
            ),
            key(
                "slot.request.timeout",
                "5min",
                "How long a job waits for enough free task slots (task managers to join) \
                 before it fails.",
            ),
            key(
                "heartbeat.interval",
                "1s",
                "How often a task manager tells the coordinator it is alive.",
            ),
            key(
                "heartbeat.timeout",
                "10s",
                "A task manager silent for this long is lost: its tasks fail and their jobs \
                 restart on the slots left.",
            ),
            unset(
                "weir.cluster.port",
                "Port of the session's cluster endpoint, where task managers join and tasks \
                 of different processes exchange data (Flink's RPC and data ports); no \
                 task manager can join without it. Keep it off the tenants' network.",
            ),
            key(
                "weir.cluster.bind-address",
                "127.0.0.1",
                "Address the cluster endpoint listens on (0.0.0.0 in a container).",
            ),
            unset(
                "weir.cluster.advertised-address",
                "host[:port] or URL other processes reach this one's cluster endpoint at \
                 (default: the bound address).",
            ),
            unset(
                "weir.cluster.secret",
                "Secret every process of a cluster shares; cluster requests without it are \
                 refused (masked wherever the configuration is shown).",
            ),
            unset(
                "high-availability.storageDir",
                "The HA store: uploaded modules, running jobs and their latest checkpoints, so \
                 that a restarted session resumes them (default `<data-dir>/ha`).",
            ),
            unset(
                "weir.data-dir",
                "Directory for modules, HA data, checkpoints and savepoints of a session \
                 (default `$XDG_DATA_HOME/weir` or `~/.local/share/weir`).",
            ),
            key(
                "jobstore.max-capacity",
                "1000",
                "Ended jobs a session keeps for listing; the oldest go first.",
            ),
            key(
                "jobstore.expiration-time",
                "3600",
                "How long a session keeps an ended job (seconds, or a duration such as 1h).",
            ),
        ],
    },
];

/// Keys of a session's tenants, secrets and admin (read by the session,
/// never by a job). `<t>` is a tenant's name, `<name>` a secret's.
pub const TENANT_KEYS: &[KeyDoc] = &[
    unset(
        "weir.admin.token-sha256",
        "SHA-256 hashes (hex, comma-separated) of the admin's API tokens (`weir token` makes one). \
         Any token turns tenancy on: every API call then needs `Authorization: Bearer`.",
    ),
    unset(
        "weir.secrets.<name>",
        "A secret every job may name as `${name}` in connector options. `${VAR}` as the value \
         reads the session's environment variable VAR once, at start.",
    ),
    unset(
        "weir.tenants.<t>.token-sha256",
        "SHA-256 hashes (hex, comma-separated) of tenant t's API tokens; required for each tenant.",
    ),
    unset(
        "weir.tenants.<t>.secrets.<name>",
        "A secret only tenant t's jobs may name as `${name}`.",
    ),
    unset(
        "weir.tenants.<t>.slots",
        "Task slots tenant t's running jobs may use together.",
    ),
    unset("weir.tenants.<t>.jobs", "Jobs tenant t may run at once."),
    unset(
        "weir.tenants.<t>.max-module-size",
        "Largest module tenant t may upload.",
    ),
    unset(
        "weir.tenants.<t>.memory-per-instance",
        "weir.guest.memory-limit for tenant t's jobs.",
    ),
    unset(
        "weir.tenants.<t>.cpu-per-call",
        "weir.guest.call-timeout for tenant t's jobs.",
    ),
    unset(
        "weir.tenants.<t>.fuel-per-call",
        "weir.guest.fuel-per-call for tenant t's jobs.",
    ),
    unset(
        "weir.tenants.<t>.imports",
        "Interfaces tenant t's modules may import (comma-separated patterns; default: the \
         weir:stream contract and WASI's clocks, random, I/O and CLI interfaces, no sockets \
         or HTTP).",
    ),
    unset(
        "weir.tenants.<t>.connectors",
        "Connectors tenant t's jobs may use (comma-separated; default: every connector but \
         `socket`).",
    ),
    unset(
        "weir.tenants.<t>.files",
        "The one folder (absolute path) tenant t's file sources, sinks and file-valued \
         connector options may name.",
    ),
    unset(
        "weir.tenants.<t>.checkpoint-min-interval",
        "Shortest checkpoint interval tenant t's jobs may ask for (default 100ms).",
    ),
    unset(
        "weir.tenants.<t>.storage-quota",
        "Bytes of checkpoints and savepoints tenant t may keep.",
    ),
];

/// Options set from outside a job, for one of its operators.
pub const CONNECTOR_KEYS: &[KeyDoc] = &[unset(
    "connector.<uid>.<option>",
    "Sets connector option `<option>` of the operator with uid `<uid>`, replacing the job's own \
     (e.g. `connector.kafka-in.properties.bootstrap.servers`).",
)];

/// Every key of [`SECTIONS`].
pub fn config_keys() -> impl Iterator<Item = &'static KeyDoc> {
    SECTIONS.iter().flat_map(|s| s.keys.iter())
}

fn table(out: &mut String, keys: &[KeyDoc]) {
    out.push_str("| key | default | meaning |\n|-----|---------|---------|\n");
    for k in keys {
        let default = k.default.map(|d| format!("`{d}`")).unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.key,
            default,
            k.meaning.replace('|', "\\|")
        ));
    }
}

/// The configuration reference, as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code (`host/core/src/reference.rs`); a test fails when this \
         file and the code disagree.\n\n\
         Settings come, lowest precedence first, from the built-in defaults below, the \
         configuration file (`--config config.yaml`, flat `key: value` or nested YAML), the \
         job's own plan, environment variables (`WEIR_` and the key in upper snake case, e.g. \
         `WEIR_EXECUTION_CHECKPOINTING_INTERVAL`) and `-D key=value` flags. Durations take \
         units (`500ms`, `10s`, `2min`, `1h`), sizes take `kb`, `mb`, `gb`. An unknown key \
         is an error that names it.\n",
    );
    for s in SECTIONS {
        out.push_str(&format!("\n## {}\n\n{}\n\n", s.title, s.intro));
        table(&mut out, s.keys);
    }
    out.push_str(
        "\n## Connector options\n\nOptions of a job's connectors, set from outside the job.\n\n",
    );
    table(&mut out, CONNECTOR_KEYS);
    out.push_str(
        "\n## Tenants and secrets\n\nSession keys only (in the session's configuration \
         file or flags); a job cannot set them. Sizes and durations as above. A tenant \
         without a quota key has the session's setting.\n\n",
    );
    table(&mut out, TENANT_KEYS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_key_the_configuration_parses_is_documented_once() {
        let documented: Vec<&str> = config_keys().map(|k| k.key).collect();
        let set: BTreeSet<&str> = documented.iter().copied().collect();
        assert_eq!(set.len(), documented.len(), "a key is documented twice");
        let parsed: BTreeSet<String> = crate::config::known_keys().into_iter().collect();
        let documented: BTreeSet<String> = set.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            parsed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys without documentation"
        );
        assert_eq!(
            documented.difference(&parsed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "documented keys the configuration does not parse"
        );
    }

    #[test]
    fn documented_defaults_are_the_defaults() {
        let c = crate::Config::default();
        let shown = c.to_display_map();
        for k in config_keys() {
            if let Some(d) = k.default {
                let one = crate::Config::from_layers(&[&[(k.key.to_owned(), d.to_owned())]
                    .into_iter()
                    .collect()])
                .unwrap();
                assert_eq!(one, c, "{} = {d} is not the default", k.key);
            } else {
                assert_eq!(
                    shown[k.key], "",
                    "{} has a default but none is documented",
                    k.key
                );
            }
        }
    }
}
