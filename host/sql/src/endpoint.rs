//! Where a SQL sink connects: the dialect, the URL with credentials, how
//! it is shown in messages (never with the password), and what a tenant's
//! URL may say.

use weir_core::Failure;
use weir_core::config::JobOwner;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL",
        }
    }
}

/// Where to connect, without the password (for messages).
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub dialect: Dialect,
    pub url: String,
    pub shown: String,
    /// PostgreSQL `application_name` of the sink's connections:
    /// `weir:<transaction prefix>:<process nonce>`, so that a restore can
    /// tell the connections of a dead run from its own.
    pub app_name: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A URL's scheme and the rest.
fn split_scheme(url: &str) -> Result<(Dialect, &str), Failure> {
    let url = url.strip_prefix("jdbc:").unwrap_or(url);
    if let Some(r) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        Ok((Dialect::Postgres, r))
    } else if let Some(r) = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
    {
        Ok((Dialect::MySql, r))
    } else {
        Err(Failure::user(format!(
            "SQL sink 'url' must start with postgres://, postgresql://, mysql:// or \
             mariadb:// (optionally after jdbc:), not '{}'",
            url.split("://").next().unwrap_or(url)
        )))
    }
}

impl Endpoint {
    /// `shown_user` is the user as the job wrote it (a secret reference
    /// stays a reference in messages).
    pub fn parse(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
        shown_user: Option<&str>,
    ) -> Result<Endpoint, Failure> {
        let (dialect, rest) = split_scheme(url)?;
        // Credentials in the URL, or from the options.
        let (creds, hostpart) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (url_user, url_pass) = match creds {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(c.to_owned()), None),
            },
            None => (None, None),
        };
        let user = user.map(str::to_owned).or(url_user);
        let password = password.map(str::to_owned).or(url_pass);
        let scheme = match dialect {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        };
        let auth = match (&user, &password) {
            (Some(u), Some(p)) => format!("{}:{}@", percent(u), percent(p)),
            (Some(u), None) => format!("{}@", percent(u)),
            _ => String::new(),
        };
        let shown_host = hostpart.split('?').next().unwrap_or(hostpart);
        let shown = match shown_user.map(str::to_owned).or(user) {
            Some(u) => format!("{scheme}://{u}@{shown_host}"),
            None => format!("{scheme}://{shown_host}"),
        };
        Ok(Endpoint {
            dialect,
            url: format!("{scheme}://{auth}{hostpart}"),
            shown,
            app_name: None,
        })
    }

    pub fn failure(&self, what: &str, e: impl std::fmt::Display) -> Failure {
        Failure::external(format!(
            "{} at {}: cannot {what}: {e}. Check the sink's url, that the server is up and \
             reachable, and the user and password",
            self.dialect.name(),
            self.shown
        ))
    }
}

/// URL parameters a tenant's job may set, and those naming files (which
/// must lie in the tenant's folder). Anything else could read the
/// session's files, reach its local sockets or change how it
/// authenticates, and is refused.
const TENANT_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "connect_timeout",
    "application_name",
    "statement-cache-capacity",
    "charset",
    "collation",
    "timezone",
];
const TENANT_FILE_PARAMS: &[&str] = &[
    "sslrootcert",
    "sslcert",
    "sslkey",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
];

/// What a tenant's SQL sink URL may say: a host over the network (no local
/// socket), the allowed parameters, and files only in the tenant's folder.
pub(crate) fn check_tenant_url(url: &str, owner: &JobOwner) -> Result<(), Failure> {
    if !owner.restricted {
        return Ok(());
    }
    let (_, rest) = split_scheme(url)?;
    let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (authority, query) = match hostpart.split_once('?') {
        Some((a, q)) => (a, q),
        None => (hostpart, ""),
    };
    let host = authority.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with('%') || host.contains("%2F") || host.contains("%2f") {
        return Err(Failure::user(format!(
            "the SQL sink's 'url' names no network host ({authority}); a tenant's job connects \
             over the network, not through a local socket"
        )));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if TENANT_PARAMS.contains(&k) {
            continue;
        }
        if TENANT_FILE_PARAMS.contains(&k) {
            let path = percent_decode(v);
            weir_connectors::confine(owner, &format!("url parameter {k}"), path.as_ref())?;
            continue;
        }
        return Err(Failure::user(format!(
            "the SQL sink's 'url' sets '{k}', which a tenant's job may not set; it may set {} \
             and, inside its folder, {}",
            TENANT_PARAMS.join(", "),
            TENANT_FILE_PARAMS.join(", ")
        )));
    }
    Ok(())
}

fn percent_decode(s: &str) -> std::path::PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::path::PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_credentials_and_never_show_the_password() {
        let e = Endpoint::parse(
            "jdbc:postgresql://db:5432/app",
            Some("weir"),
            Some("p@ss"),
            None,
        )
        .unwrap();
        assert_eq!(e.url, "postgres://weir:p%40ss@db:5432/app");
        assert_eq!(format!("{e:?}"), "postgres://weir@db:5432/app");
        let m =
            Endpoint::parse("mysql://root:secret@127.0.0.1:3306/test", None, None, None).unwrap();
        assert!(!format!("{m:?}").contains("secret"));
        assert!(!m.failure("connect", "refused").message.contains("secret"));
        assert!(Endpoint::parse("oracle://x", None, None, None).is_err());
        let s = Endpoint::parse("mysql://h/db", Some("resolved"), None, Some("${user}")).unwrap();
        assert_eq!(s.shown, "mysql://${user}@h/db");
    }

    #[test]
    fn tenant_urls_reach_only_the_network_and_their_folder() {
        let owner = JobOwner {
            tenant: Some("a".into()),
            restricted: true,
            files: Some(std::env::temp_dir()),
            ..JobOwner::default()
        };
        assert!(check_tenant_url("postgres://db:5432/app?sslmode=require", &owner).is_ok());
        for bad in [
            "postgres:///app?host=/var/run/postgresql",
            "postgres://%2Fvar%2Frun%2Fpostgresql/app",
            "postgres://db/app?sslkey=/etc/shadow",
            "mysql://db/app?socket=/run/mysqld/mysqld.sock",
            "postgres://db/app?options=-c%20log_statement%3Dall",
        ] {
            assert!(check_tenant_url(bad, &owner).is_err(), "{bad}");
        }
        let inside = std::env::temp_dir().join("ca.pem");
        assert!(
            check_tenant_url(
                &format!("postgres://db/app?sslrootcert={}", inside.display()),
                &owner
            )
            .is_ok()
        );
        assert!(check_tenant_url("postgres:///app?host=/tmp", &JobOwner::default()).is_ok());
    }
}
