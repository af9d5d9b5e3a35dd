//! Tenants of a session: who may call the API (API tokens, stored only as
//! SHA-256 hashes), what each tenant may run (quotas, imports, connectors)
//! and where its state lives.
//!
//! Configured with Flink-style keys in the session's configuration:
//!
//! ```yaml
//! weir.admin.token-sha256: 5e88…                # sees and manages everything
//! weir.tenants.acme.token-sha256: 9f86…         # several hashes: comma-separated
//! weir.tenants.acme.slots: 4
//! weir.tenants.acme.jobs: 10
//! weir.tenants.acme.max-module-size: 64mb
//! weir.tenants.acme.memory-per-instance: 256mb
//! weir.tenants.acme.cpu-per-call: 2s            # epoch deadline of one guest call
//! weir.tenants.acme.fuel-per-call: 1000000000   # deterministic metering (optional)
//! weir.tenants.acme.imports: "weir:*, wasi:io/*, wasi:clocks/*, ..."
//! weir.tenants.acme.connectors: "datagen, kafka, jdbc, print, blackhole, file"
//! weir.tenants.acme.files: /srv/weir/acme       # the only folder file-valued options may name
//! weir.tenants.acme.checkpoint-min-interval: 10s # shortest checkpoint interval its jobs may ask for
//! weir.tenants.acme.storage-quota: 10gb         # checkpoints and savepoints it may keep
//! weir.tenants.acme.secrets.db-password: s3cr3t # `${db-password}` in its connector options
//! weir.secrets.warehouse: ${WAREHOUSE_PASSWORD} # for jobs outside tenancy
//! ```
//!
//! A secret's configured value may itself be `${VAR}`, read from the
//! session's environment when the session starts (the operator's choice,
//! never a job's). Secrets are never shown: not in `/jobmanager/config`,
//! not in a job's configuration, and any value resolved is masked in
//! messages and logs.
//!
//! `weir token` prints a new token and its hash. Tenancy is on as soon as
//! one token is configured; every API call must then carry
//! `Authorization: Bearer <token>`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir_core::config::{ConfigLayer, Secret};
use weir_core::options::{self, from_options};
use weir_core::secrets::Secrets;

/// Imports a tenant's modules may have unless its policy says otherwise:
/// the job contract and the WASI interfaces the sandbox provides inertly
/// (no preopened directories, an empty environment, every network address
/// refused).
pub const DEFAULT_IMPORTS: &str = "weir:stream/*, wasi:io/*, wasi:clocks/*, wasi:random/*, \
     wasi:cli/*, wasi:filesystem/*, wasi:sockets/*";

/// Connectors a tenant's jobs may use unless its policy says otherwise.
/// `socket` is left out: it opens connections from the session's host.
pub const DEFAULT_CONNECTORS: &str = "datagen, nexmark, print, blackhole, file, kafka, jdbc";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TenantKeys {
    token_sha256: Option<String>,
    #[serde(default, deserialize_with = "options::opt_parsed")]
    slots: Option<u32>,
    #[serde(default, deserialize_with = "options::opt_parsed")]
    jobs: Option<u32>,
    #[serde(default, deserialize_with = "opt_bytes")]
    max_module_size: Option<u64>,
    #[serde(default, deserialize_with = "opt_bytes")]
    memory_per_instance: Option<u64>,
    #[serde(default, with = "weir_core::options::human_opt")]
    cpu_per_call: Option<Duration>,
    #[serde(default, deserialize_with = "options::opt_parsed")]
    fuel_per_call: Option<u64>,
    imports: Option<String>,
    connectors: Option<String>,
    files: Option<String>,
    #[serde(default, with = "weir_core::options::human_opt")]
    checkpoint_min_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_bytes")]
    storage_quota: Option<u64>,
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    options::bytes(d).map(Some)
}

/// Hard limits of one tenant; `None` leaves the session's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quota {
    pub slots: Option<u32>,
    pub jobs: Option<u32>,
    pub max_module_size: Option<u64>,
    pub memory_per_instance: Option<u64>,
    pub cpu_per_call: Option<Duration>,
    pub fuel_per_call: Option<u64>,
    /// The shortest checkpoint interval its jobs may ask for.
    pub checkpoint_min_interval: Option<Duration>,
    /// Bytes of checkpoints and savepoints it may keep.
    pub storage: Option<u64>,
}

/// One tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    tokens: Vec<[u8; 32]>,
    pub quota: Quota,
    /// Import patterns (`wasi:io/*`, `weir:*`, exact names).
    pub imports: Vec<String>,
    pub connectors: Vec<String>,
    /// The folder file-valued connector options may name.
    pub files: Option<PathBuf>,
    /// Secrets its jobs may refer to as `${name}`.
    pub secrets: BTreeMap<String, Secret>,
}

impl Tenant {
    /// The key of a setting of this tenant, for messages.
    pub fn key(&self, setting: &str) -> String {
        format!("weir.tenants.{}.{setting}", self.name)
    }

    /// How `${name}` resolves in this tenant's jobs.
    pub fn secrets(&self) -> Secrets {
        Secrets::named(self.key("secrets"), self.secrets.clone())
    }

    /// The imports of a module that this tenant's policy does not allow.
    pub fn forbidden_imports(&self, imports: &[String]) -> Vec<String> {
        imports
            .iter()
            .filter(|i| !self.imports.iter().any(|p| import_matches(p, i)))
            .cloned()
            .collect()
    }
}

/// Whether `pattern` (`ns:pkg/iface`, `ns:pkg/*`, `ns:*`, with or without a
/// version) admits the import `name`.
pub fn import_matches(pattern: &str, name: &str) -> bool {
    let unversioned = name.split('@').next().unwrap_or(name);
    if let Some(prefix) = pattern.strip_suffix('*') {
        return unversioned.starts_with(prefix);
    }
    if pattern.contains('@') {
        pattern == name
    } else {
        pattern == unversioned
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Tenancy is off: everything is visible, as in a plain session.
    Open,
    Admin,
    Tenant(Arc<Tenant>),
}

impl Caller {
    /// The tenant whose resources the caller may see (`None`: all).
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Caller::Tenant(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the caller may see a resource of `owner`.
    pub fn sees(&self, owner: &str) -> bool {
        match self {
            Caller::Tenant(t) => t.name == owner,
            _ => true,
        }
    }

    /// The name resources the caller creates belong to ("" outside tenancy).
    pub fn owner(&self) -> &str {
        match self {
            Caller::Tenant(t) => &t.name,
            _ => "",
        }
    }
}

/// The tenants of a session.
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    admin: Vec<[u8; 32]>,
    tenants: BTreeMap<String, Arc<Tenant>>,
    /// Secrets of jobs outside tenancy (`weir.secrets.<name>`).
    secrets: BTreeMap<String, Secret>,
}

/// Compares two hashes in time independent of where they differ.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Whether `h` is among `hashes`, looking at every one of them.
fn any_hash(hashes: &[[u8; 32]], h: &[u8; 32]) -> bool {
    hashes
        .iter()
        .fold(false, |found, x| found | same_hash(x, h))
}

/// A secret's configured value: `${VAR}` reads the session's environment
/// (when the session starts), anything else is the value itself.
fn secret_value(key: &str, v: &str) -> Result<Secret, String> {
    let t = v.trim();
    if let Some(var) = t.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return std::env::var(var)
            .map(Secret)
            .map_err(|_| format!("{key} reads the environment variable {var}, which is not set"));
    }
    Ok(Secret(v.to_owned()))
}

/// SHA-256 of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hashes(key: &str, value: &str) -> Result<Vec<[u8; 32]>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let bytes = hex::decode(h)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    format!(
                        "{key}: '{h}' is not a SHA-256 hash (64 hex digits); `weir token` prints a \
                     token and its hash"
                    )
                })?;
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes);
            Ok(out)
        })
        .collect()
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Tenancy {
    /// Takes the tenancy keys (`weir.admin.*`, `weir.tenants.*`) out of
    /// `layers` and parses them.
    pub fn take(layers: &mut [&mut ConfigLayer]) -> Result<Tenancy, String> {
        let mut keys: ConfigLayer = BTreeMap::new();
        for layer in layers.iter_mut() {
            let taken: Vec<String> = layer
                .keys()
                .filter(|k| {
                    k.starts_with("weir.admin.")
                        || k.starts_with("weir.tenants.")
                        || k.starts_with("weir.secrets.")
                })
                .cloned()
                .collect();
            for k in taken {
                let v = layer.remove(&k).expect("listed");
                keys.insert(k, v);
            }
        }
        let mut t = Tenancy::default();
        let mut per_tenant: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut tenant_secrets: BTreeMap<String, BTreeMap<String, Secret>> = BTreeMap::new();
        for (k, v) in &keys {
            if let Some(name) = k.strip_prefix("weir.secrets.") {
                check_secret_name(k, name)?;
                t.secrets.insert(name.to_owned(), secret_value(k, v)?);
            } else if let Some(rest) = k.strip_prefix("weir.admin.") {
                if rest != "token-sha256" {
                    return Err(format!(
                        "unknown key {k}; the admin has only weir.admin.token-sha256"
                    ));
                }
                t.admin = parse_hashes(k, v)?;
            } else if let Some(rest) = k.strip_prefix("weir.tenants.") {
                let Some((name, setting)) = rest.split_once('.') else {
                    return Err(format!(
                        "key '{k}' names no setting; use weir.tenants.<tenant>.<setting>"
                    ));
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(format!(
                        "tenant name '{name}' in {k}: use letters, digits, - and _"
                    ));
                }
                if let Some(secret) = setting.strip_prefix("secrets.") {
                    check_secret_name(k, secret)?;
                    tenant_secrets
                        .entry(name.to_owned())
                        .or_default()
                        .insert(secret.to_owned(), secret_value(k, v)?);
                    per_tenant.entry(name.to_owned()).or_default();
                    continue;
                }
                per_tenant
                    .entry(name.to_owned())
                    .or_default()
                    .push((setting.to_owned(), v.clone()));
            }
        }
        for (name, settings) in per_tenant {
            let key_name = name.clone();
            let k: TenantKeys = from_options(&format!("weir.tenants.{name}"), &settings)?;
            let key = format!("weir.tenants.{name}.token-sha256");
            let tokens = match &k.token_sha256 {
                Some(v) => parse_hashes(&key, v)?,
                None => return Err(format!("tenant {name} has no {key}")),
            };
            t.tenants.insert(
                name.clone(),
                Arc::new(Tenant {
                    name,
                    tokens,
                    quota: Quota {
                        slots: k.slots,
                        jobs: k.jobs,
                        max_module_size: k.max_module_size,
                        memory_per_instance: k.memory_per_instance,
                        cpu_per_call: k.cpu_per_call,
                        fuel_per_call: k.fuel_per_call,
                        checkpoint_min_interval: k.checkpoint_min_interval,
                        storage: k.storage_quota,
                    },
                    imports: list(k.imports.as_deref().unwrap_or(DEFAULT_IMPORTS)),
                    connectors: list(k.connectors.as_deref().unwrap_or(DEFAULT_CONNECTORS)),
                    files: match k.files {
                        Some(f) if !Path::new(&f).is_absolute() => {
                            return Err(format!(
                                "weir.tenants.{key_name}.files must be an absolute path, not {f}"
                            ));
                        }
                        f => f.map(PathBuf::from),
                    },
                    secrets: tenant_secrets.remove(&key_name).unwrap_or_default(),
                }),
            );
        }
        Ok(t)
    }

    /// How `${name}` resolves in jobs outside tenancy.
    pub fn session_secrets(&self) -> Secrets {
        Secrets::named("weir.secrets", self.secrets.clone())
    }

    /// Whether API calls need a token.
    pub fn enabled(&self) -> bool {
        !self.admin.is_empty() || !self.tenants.is_empty()
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(name)
    }

    /// Whether any tenant meters fuel (the engine then counts it for all).
    pub fn meters_fuel(&self) -> bool {
        self.tenants
            .values()
            .any(|t| t.quota.fuel_per_call.is_some())
    }

    /// The caller a bearer token identifies.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let h = hash_token(token);
        // Every hash is compared in full, so that timing reveals nothing
        // about which bytes of a guess were right.
        let admin = any_hash(&self.admin, &h);
        let mut found = None;
        for t in self.tenants.values() {
            if any_hash(&t.tokens, &h) && found.is_none() {
                found = Some(t.clone());
            }
        }
        if admin {
            return Some(Caller::Admin);
        }
        found.map(Caller::Tenant)
    }
}

fn check_secret_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "secret name '{name}' in {key}: use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Whether `path` lies inside `root`, with `.`, `..` and symbolic links
/// resolved (both absolute).
pub fn within(path: &Path, root: &Path) -> bool {
    weir_core::fs::within(path, root)
}

/// Whether the storage URL `url` lies inside the storage URL `root`.
pub fn url_within(url: &str, root: &str) -> bool {
    let (Some(u), Some(r)) = (url.strip_prefix("file://"), root.strip_prefix("file://")) else {
        let root = root.trim_end_matches('/');
        let climbs = url
            .split(['/', '\\'])
            .any(|p| p == ".." || p == "." || p.eq_ignore_ascii_case("%2e%2e"));
        return !climbs && (url == root || url.starts_with(&format!("{root}/")));
    };
    within(Path::new(u), Path::new(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> ConfigLayer {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokens_are_matched_by_hash_and_keys_are_taken_out() {
        let h = hex::encode(hash_token("secret-a"));
        let admin = hex::encode(hash_token("root"));
        let mut file = layer(&[
            ("weir.tenants.a.token-sha256", &h),
            ("weir.tenants.a.slots", "2"),
            ("weir.tenants.a.memory-per-instance", "64mb"),
            ("weir.tenants.a.cpu-per-call", "500ms"),
            ("weir.admin.token-sha256", &admin),
            ("parallelism.default", "1"),
        ]);
        let t = Tenancy::take(&mut [&mut file]).unwrap();
        assert_eq!(file.len(), 1, "only the session's own keys remain");
        assert!(t.enabled());
        match t.identify("secret-a") {
            Some(Caller::Tenant(x)) => {
                assert_eq!(x.name, "a");
                assert_eq!(x.quota.slots, Some(2));
                assert_eq!(x.quota.memory_per_instance, Some(64 << 20));
                assert_eq!(x.quota.cpu_per_call, Some(Duration::from_millis(500)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(t.identify("root"), Some(Caller::Admin)));
        assert!(t.identify("secret-b").is_none());
        assert!(t.identify(&h).is_none(), "the hash is not a token");
    }

    #[test]
    fn secrets_are_taken_out_and_never_shown() {
        let h = hex::encode(hash_token("x"));
        // SAFETY: the variable is only read by this test.
        unsafe { std::env::set_var("WEIR_TEST_TENANT_SECRET", "from-env-1234") };
        let mut file = layer(&[
            ("weir.tenants.a.token-sha256", &h),
            ("weir.tenants.a.secrets.db", "hunter2-pass"),
            ("weir.tenants.a.secrets.env", "${WEIR_TEST_TENANT_SECRET}"),
            ("weir.secrets.shared", "shared-pass"),
        ]);
        let t = Tenancy::take(&mut [&mut file]).unwrap();
        assert!(file.is_empty());
        let a = t.tenant("a").unwrap();
        assert_eq!(a.secrets().expand("${db}").unwrap(), "hunter2-pass");
        assert_eq!(a.secrets().expand("${env}").unwrap(), "from-env-1234");
        assert!(
            a.secrets().expand("${shared}").is_err(),
            "not the session's"
        );
        assert!(a.secrets().expand("${WEIR_TEST_TENANT_SECRET}").is_err());
        assert_eq!(
            t.session_secrets().expand("${shared}").unwrap(),
            "shared-pass"
        );
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Tenancy::take(&mut [&mut layer(&[("weir.tenants.a.slots", "2")])]).unwrap_err();
        assert!(e.contains("weir.tenants.a.token-sha256"), "{e}");
        let e = Tenancy::take(&mut [&mut layer(&[("weir.tenants.a.token-sha256", "abc")])])
            .unwrap_err();
        assert!(e.contains("not a SHA-256 hash"), "{e}");
        let h = hex::encode(hash_token("x"));
        let e = Tenancy::take(&mut [&mut layer(&[
            ("weir.tenants.a.token-sha256", &h),
            ("weir.tenants.a.slotz", "2"),
        ])])
        .unwrap_err();
        assert!(e.contains("slotz"), "{e}");
    }

    #[test]
    fn import_patterns() {
        assert!(import_matches("wasi:io/*", "wasi:io/streams@0.2.6"));
        assert!(import_matches("weir:stream/*", "weir:stream/host@0.1.0"));
        assert!(import_matches("wasi:cli/stdout", "wasi:cli/stdout@0.2.0"));
        assert!(import_matches(
            "wasi:cli/stdout@0.2.0",
            "wasi:cli/stdout@0.2.0"
        ));
        assert!(!import_matches(
            "wasi:cli/stdout@0.2.0",
            "wasi:cli/stdout@0.2.6"
        ));
        assert!(!import_matches("wasi:io/*", "wasi:http/types@0.2.0"));
        let t = Tenant {
            name: "a".into(),
            tokens: vec![],
            quota: Quota::default(),
            imports: list(DEFAULT_IMPORTS),
            connectors: vec![],
            files: None,
            secrets: BTreeMap::new(),
        };
        let bad = t.forbidden_imports(&[
            "wasi:io/streams@0.2.6".into(),
            "wasi:http/outgoing-handler@0.2.0".into(),
            "evil:net/raw".into(),
        ]);
        assert_eq!(bad, ["wasi:http/outgoing-handler@0.2.0", "evil:net/raw"]);
    }

    #[test]
    fn paths_stay_inside_their_root() {
        assert!(url_within("file:///d/sp/a/x", "file:///d/sp/a"));
        assert!(!url_within("file:///d/sp/b/x", "file:///d/sp/a"));
        assert!(url_within("s3://bucket/sp/a/x", "s3://bucket/sp/a"));
        assert!(!url_within("s3://bucket/sp/ab", "s3://bucket/sp/a"));
        assert!(!url_within("s3://bucket/sp/a/../b", "s3://bucket/sp/a"));
        assert!(!url_within("s3://bucket/sp/a/..", "s3://bucket/sp/a"));
    }

    #[test]
    fn every_tenant_setting_is_documented() {
        let e =
            from_options::<TenantKeys>("weir.tenants.x", &[("?".into(), "1".into())]).unwrap_err();
        let fields: std::collections::BTreeSet<String> = e
            .split("expected one of")
            .nth(1)
            .expect("serde lists the known fields")
            .split(',')
            .map(|f| f.trim().trim_matches('`').to_owned())
            .collect();
        let documented: std::collections::BTreeSet<String> = weir_core::reference::TENANT_KEYS
            .iter()
            .filter_map(|k| k.key.strip_prefix("weir.tenants.<t>."))
            .filter(|k| !k.starts_with("secrets."))
            .map(str::to_owned)
            .collect();
        assert_eq!(fields, documented);
    }

    #[test]
    fn the_configuration_reference_in_docs_is_the_generated_one() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let generated = weir_core::reference::markdown();
        if std::env::var_os("WEIR_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/configuration.md differs from the keys in the code; regenerate it with \
             `WEIR_BLESS=1 cargo test -p weir-cluster configuration_reference`"
        );
    }
}
