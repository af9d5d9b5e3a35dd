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
//! weir.tenants.acme.files: /srv/weir/acme       # the only folder `file` connectors may use
//! ```
//!
//! `weir token` prints a new token and its hash. Tenancy is on as soon as
//! one token is configured; every API call must then carry
//! `Authorization: Bearer <token>`.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weir_core::config::ConfigLayer;
use weir_core::options::{self, from_options};

/// Imports a tenant's modules may have unless its policy says otherwise:
/// the job contract and the WASI interfaces the sandbox provides inertly
/// (no preopened directories, an empty environment, every network address
/// refused).
pub const DEFAULT_IMPORTS: &str = "weir:stream/*, wasi:io/*, wasi:clocks/*, wasi:random/*, \
     wasi:cli/*, wasi:filesystem/*, wasi:sockets/*";

/// Connectors a tenant's jobs may use unless its policy says otherwise.
/// `socket` is left out: it opens connections from the session's host.
pub const DEFAULT_CONNECTORS: &str = "datagen, print, blackhole, file, kafka, jdbc";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TenantKeys {
    token_sha256: Option<String>,
    #[serde(default, deserialize_with = "opt_parsed")]
    slots: Option<u32>,
    #[serde(default, deserialize_with = "opt_parsed")]
    jobs: Option<u32>,
    #[serde(default, deserialize_with = "opt_bytes")]
    max_module_size: Option<u64>,
    #[serde(default, deserialize_with = "opt_bytes")]
    memory_per_instance: Option<u64>,
    #[serde(default, with = "weir_core::options::human_opt")]
    cpu_per_call: Option<Duration>,
    #[serde(default, deserialize_with = "opt_parsed")]
    fuel_per_call: Option<u64>,
    imports: Option<String>,
    connectors: Option<String>,
    files: Option<String>,
}

fn opt_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    options::parsed(d).map(Some)
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
    /// The folder `file` connectors may read and write.
    pub files: Option<PathBuf>,
}

impl Tenant {
    /// The key of a setting of this tenant, for messages.
    pub fn key(&self, setting: &str) -> String {
        format!("weir.tenants.{}.{setting}", self.name)
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
                .filter(|k| k.starts_with("weir.admin.") || k.starts_with("weir.tenants."))
                .cloned()
                .collect();
            for k in taken {
                let v = layer.remove(&k).expect("listed");
                keys.insert(k, v);
            }
        }
        let mut t = Tenancy::default();
        let mut per_tenant: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (k, v) in &keys {
            if let Some(rest) = k.strip_prefix("weir.admin.") {
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
                per_tenant
                    .entry(name.to_owned())
                    .or_default()
                    .push((setting.to_owned(), v.clone()));
            }
        }
        for (name, settings) in per_tenant {
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
                    },
                    imports: list(k.imports.as_deref().unwrap_or(DEFAULT_IMPORTS)),
                    connectors: list(k.connectors.as_deref().unwrap_or(DEFAULT_CONNECTORS)),
                    files: k.files.map(PathBuf::from),
                }),
            );
        }
        Ok(t)
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
        if self.admin.contains(&h) {
            return Some(Caller::Admin);
        }
        self.tenants
            .values()
            .find(|t| t.tokens.contains(&h))
            .map(|t| Caller::Tenant(t.clone()))
    }
}

/// Whether `path` lies inside `root` (lexically, after resolving `.` and
/// `..`; both absolute).
pub fn within(path: &Path, root: &Path) -> bool {
    fn normal(p: &Path) -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => out.push(c),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !out.pop() {
                        return None;
                    }
                }
                Component::Normal(n) => out.push(n),
            }
        }
        Some(out)
    }
    if !path.is_absolute() || !root.is_absolute() {
        return false;
    }
    match (normal(path), normal(root)) {
        (Some(p), Some(r)) => p.starts_with(r),
        _ => false,
    }
}

/// Whether the storage URL `url` lies inside the storage URL `root`.
pub fn url_within(url: &str, root: &str) -> bool {
    let (Some(u), Some(r)) = (url.strip_prefix("file://"), root.strip_prefix("file://")) else {
        let root = root.trim_end_matches('/');
        return !url.contains("/../") && (url == root || url.starts_with(&format!("{root}/")));
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
        let root = Path::new("/srv/a");
        assert!(within(Path::new("/srv/a/out.txt"), root));
        assert!(within(Path::new("/srv/a/./x/../y"), root));
        assert!(!within(Path::new("/srv/a/../b/out.txt"), root));
        assert!(!within(Path::new("/srv/ab"), root));
        assert!(!within(Path::new("relative"), root));
        assert!(url_within("file:///d/sp/a/x", "file:///d/sp/a"));
        assert!(!url_within("file:///d/sp/b/x", "file:///d/sp/a"));
        assert!(url_within("s3://bucket/sp/a/x", "s3://bucket/sp/a"));
        assert!(!url_within("s3://bucket/sp/ab", "s3://bucket/sp/a"));
        assert!(!url_within("s3://bucket/sp/a/../b", "s3://bucket/sp/a"));
    }
}
