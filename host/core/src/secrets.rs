//! Secrets a job's connectors may use, and keeping them out of messages.
//!
//! A connector option may refer to a secret as `${name}`. Where the name
//! is looked up depends on who runs the job:
//! - `weir run --local` runs the user's own job in the user's own process:
//!   `${VAR}` reads the process environment;
//! - a session never reads its own environment for a job: `${name}` is a
//!   secret configured for the job's owner (`weir.secrets.<name>` for jobs
//!   outside tenancy, `weir.tenants.<tenant>.secrets.<name>` for a
//!   tenant's), so that a tenant reaches only what the operator gave it.
//!
//! Every value a job resolves is remembered, and [`redact`] replaces it by
//! `******` wherever it would otherwise be printed: failures, logs, REST
//! answers.

use crate::config::Secret;
use crate::error::Failure;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

/// How `${name}` in a connector option is resolved.
#[derive(Clone, Default)]
pub enum Secrets {
    /// From the process environment (local runs).
    #[default]
    Environment,
    /// From secrets configured for the job's owner; `owner_key` is the
    /// configuration prefix that names them, for messages.
    Named {
        owner_key: String,
        values: Arc<BTreeMap<String, Secret>>,
    },
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secrets::Environment => f.write_str("Secrets::Environment"),
            Secrets::Named { owner_key, values } => f
                .debug_struct("Secrets::Named")
                .field("owner_key", owner_key)
                .field("names", &values.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl PartialEq for Secrets {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Secrets::Environment, Secrets::Environment) => true,
            (
                Secrets::Named {
                    owner_key: a,
                    values: x,
                },
                Secrets::Named {
                    owner_key: b,
                    values: y,
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

impl Secrets {
    /// Secrets configured under `owner_key` (`weir.secrets` or
    /// `weir.tenants.<t>.secrets`).
    pub fn named(owner_key: impl Into<String>, values: BTreeMap<String, Secret>) -> Secrets {
        for v in values.values() {
            register(&v.0);
        }
        Secrets::Named {
            owner_key: owner_key.into(),
            values: Arc::new(values),
        }
    }

    /// Replaces every `${name}` in `v` by the secret's value.
    pub fn expand(&self, v: &str) -> Result<String, Failure> {
        let mut out = String::new();
        let mut rest = v;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}') else {
                out.push_str(&rest[i..]);
                return Ok(out);
            };
            let name = &rest[i + 2..i + j];
            let value = self.lookup(name)?;
            register(&value);
            out.push_str(&value);
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, name: &str) -> Result<String, Failure> {
        match self {
            Secrets::Environment => std::env::var(name).map_err(|_| {
                Failure::user(format!(
                    "a connector option refers to the environment variable {name}, which is not \
                     set"
                ))
            }),
            Secrets::Named { owner_key, values } => {
                values.get(name).map(|s| s.0.clone()).ok_or_else(|| {
                    Failure::user(format!(
                        "a connector option refers to the secret '{name}', which is not \
                         configured; the session's operator sets it as {owner_key}.{name} (a \
                         session never reads its own environment for a job)"
                    ))
                })
            }
        }
    }

    /// Whether `v` refers to a secret.
    pub fn refers(v: &str) -> bool {
        v.contains("${")
    }
}

fn registry() -> &'static RwLock<Vec<String>> {
    static REGISTRY: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Values shorter than this are not redacted (they would mask ordinary
/// words and numbers everywhere).
const MIN_REDACTED: usize = 4;

/// Remembers a secret value, so that [`redact`] hides it.
pub fn register(value: &str) {
    if value.len() < MIN_REDACTED {
        return;
    }
    let mut r = registry().write().unwrap_or_else(|e| e.into_inner());
    if !r.iter().any(|v| v == value) {
        r.push(value.to_owned());
        // Longest first, so that a secret containing another is hidden whole.
        r.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `s` with every registered secret value replaced by `******`.
pub fn redact(s: &str) -> Cow<'_, str> {
    let r = registry().read().unwrap_or_else(|e| e.into_inner());
    if r.is_empty() || !r.iter().any(|v| s.contains(v.as_str())) {
        return Cow::Borrowed(s);
    }
    let mut out = s.to_owned();
    for v in r.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "******");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_secrets_resolve_and_are_redacted() {
        let s = Secrets::named(
            "weir.tenants.a.secrets",
            [("db".to_owned(), Secret("pa55-word-xyz".into()))].into(),
        );
        assert_eq!(s.expand("u:${db}@h").unwrap(), "u:pa55-word-xyz@h");
        let e = s.expand("${HOME}").unwrap_err();
        assert!(e.message.contains("weir.tenants.a.secrets.HOME"), "{e}");
        assert!(!e.message.contains('/'), "the environment is not read: {e}");
        assert_eq!(redact("login pa55-word-xyz failed"), "login ****** failed");
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn the_environment_is_only_read_in_local_runs() {
        // SAFETY: the variable is only read by this test.
        unsafe { std::env::set_var("WEIR_TEST_SECRET_ENV", "from-the-env") };
        assert_eq!(
            Secrets::Environment
                .expand("${WEIR_TEST_SECRET_ENV}")
                .unwrap(),
            "from-the-env"
        );
        assert!(
            Secrets::named("weir.secrets", BTreeMap::new())
                .expand("${WEIR_TEST_SECRET_ENV}")
                .is_err()
        );
    }
}
