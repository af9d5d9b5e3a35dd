//! Upsert sinks for PostgreSQL and MySQL/MariaDB (connector kind `jdbc`,
//! with the options of Flink's JDBC connector).
//!
//! Rows are upserted by primary key, in batches of multi-row statements
//! (`INSERT ... ON CONFLICT ... DO UPDATE`, `INSERT ... ON DUPLICATE KEY
//! UPDATE`); within a batch the last row of a key wins.
//!
//! `sink.delivery-guarantee`:
//! - `at-least-once` (the default): batches commit as they are written
//!   and at every checkpoint; after a failure, rows since the checkpoint
//!   are written again, which an upsert makes harmless.
//! - `exactly-once`: the rows between two checkpoints are one database
//!   transaction, prepared at the barrier (PostgreSQL `PREPARE
//!   TRANSACTION`, MySQL/MariaDB `XA PREPARE`) and committed when the
//!   checkpoint completes. A restore commits the prepared transactions of
//!   the checkpoint it restores and rolls back any others the sink's
//!   subtasks left behind, so the table holds exactly what the restored
//!   checkpoint covers.

use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use std::collections::HashMap;
use weir_connectors::{SinkContext, SinkFiles, SinkWriter};
use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure};
use weir_frame::Reader;
use weir_frame::connectors::SqlValue;

/// Most rows in one statement.
const ROWS_PER_STATEMENT: usize = 1000;

const KNOWN: &[&str] = &[
    "url",
    "table-name",
    "username",
    "password",
    "columns",
    "primary-key",
    "sink.buffer-flush.max-rows",
    "sink.delivery-guarantee",
    "sink.transaction-prefix",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
}

/// Where to connect, without the password (for messages).
#[derive(Clone)]
struct Endpoint {
    dialect: Dialect,
    url: String,
    shown: String,
    /// PostgreSQL `application_name` of the sink's connections:
    /// `weir:<transaction prefix>:<process nonce>`, so that a restore can
    /// tell the connections of a dead run from its own.
    app_name: Option<String>,
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

impl Endpoint {
    fn parse(url: &str, user: Option<&str>, password: Option<&str>) -> Result<Endpoint, Failure> {
        let url = url.strip_prefix("jdbc:").unwrap_or(url);
        let (dialect, rest) = if let Some(r) = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
        {
            (Dialect::Postgres, r)
        } else if let Some(r) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            (Dialect::MySql, r)
        } else {
            return Err(Failure::user(format!(
                "SQL sink 'url' must start with postgres://, postgresql://, mysql:// or \
                 mariadb:// (optionally after jdbc:), not '{}'",
                url.split("://").next().unwrap_or(url)
            )));
        };
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
        let shown = match &user {
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

    fn failure(&self, what: &str, e: impl std::fmt::Display) -> Failure {
        Failure::external(format!(
            "{} at {}: cannot {what}: {e}. Check the sink's url, that the server is up and \
             reachable, and the user and password",
            match self.dialect {
                Dialect::Postgres => "PostgreSQL",
                Dialect::MySql => "MySQL",
            },
            self.shown
        ))
    }
}

enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
}

/// Quotes an identifier (`schema.table` quotes each part).
fn ident(d: Dialect, name: &str) -> String {
    name.split('.')
        .map(|p| match d {
            Dialect::Postgres => format!("\"{}\"", p.replace('"', "\"\"")),
            Dialect::MySql => format!("`{}`", p.replace('`', "``")),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The upsert statement for `rows` rows.
fn upsert_sql(
    d: Dialect,
    table: &str,
    columns: &[String],
    key: &[String],
    rows: &[Vec<SqlValue>],
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(d, c)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        ident(d, table),
        cols.join(", ")
    );
    let mut n = 0;
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            if matches!(v, SqlValue::Null) {
                sql.push_str("NULL");
            } else {
                n += 1;
                match d {
                    Dialect::Postgres => sql.push_str(&format!("${n}")),
                    Dialect::MySql => sql.push('?'),
                }
            }
        }
        sql.push(')');
    }
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| {
            let q = ident(d, c);
            match d {
                Dialect::Postgres => format!("{q} = EXCLUDED.{q}"),
                Dialect::MySql => format!("{q} = VALUES({q})"),
            }
        })
        .collect();
    match d {
        Dialect::Postgres => {
            let keys: Vec<String> = key.iter().map(|c| ident(d, c)).collect();
            if updates.is_empty() {
                sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    updates.join(", ")
                ));
            }
        }
        Dialect::MySql => {
            let updates = if updates.is_empty() {
                // Nothing to update: a no-op keeps the statement valid.
                let k = ident(d, &key[0]);
                vec![format!("{k} = {k}")]
            } else {
                updates
            };
            sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", ")));
        }
    }
    sql
}

impl Conn {
    async fn connect(e: &Endpoint) -> Result<Conn, Failure> {
        Ok(match e.dialect {
            Dialect::Postgres => {
                let mut options: sqlx::postgres::PgConnectOptions =
                    e.url.parse().map_err(|x| e.failure("connect", x))?;
                if let Some(name) = &e.app_name {
                    options = options.application_name(name);
                }
                Conn::Pg(
                    PgConnection::connect_with(&options)
                        .await
                        .map_err(|x| e.failure("connect", x))?,
                )
            }
            Dialect::MySql => Conn::My(
                MySqlConnection::connect(&e.url)
                    .await
                    .map_err(|x| e.failure("connect", x))?,
            ),
        })
    }

    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(c)
                .await
                .map(|_| ()),
            Conn::My(c) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(c)
                .await
                .map(|_| ()),
        }
    }

    async fn upsert(&mut self, sql: &str, rows: &[Vec<SqlValue>]) -> Result<(), sqlx::Error> {
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                for v in rows.iter().flatten() {
                    q = match v {
                        SqlValue::Null => q,
                        SqlValue::Bool(b) => q.bind(*b),
                        SqlValue::Int(i) => q.bind(*i),
                        SqlValue::Float(f) => q.bind(*f),
                        SqlValue::Text(s) => q.bind(s.clone()),
                        SqlValue::Bytes(b) => q.bind(b.clone()),
                    };
                }
                q
            }};
        }
        match self {
            Conn::Pg(c) => {
                let q = bind_all!(sqlx::query::<sqlx::Postgres>(AssertSqlSafe(sql.to_owned())));
                q.execute(c).await.map(|_| ())
            }
            Conn::My(c) => {
                let q = bind_all!(sqlx::query::<sqlx::MySql>(AssertSqlSafe(sql.to_owned())));
                q.execute(c).await.map(|_| ())
            }
        }
    }

    /// Ends the PostgreSQL sessions of earlier runs of this sink (named
    /// `app_prefix…` but not `own`) and waits until they are gone: a run
    /// killed while its `PREPARE TRANSACTION` was in flight may otherwise
    /// prepare it after the restore looked, holding its rows' locks.
    async fn end_other_runs(&mut self, app_prefix: &str, own: &str) -> Result<(), sqlx::Error> {
        let c = match self {
            Conn::Pg(c) => c,
            Conn::My(c) => return wait_for_quiet(c).await,
        };
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND starts_with(application_name, $1) AND application_name <> $2 \
             AND pid <> pg_backend_pid()",
        )
        .bind(app_prefix)
        .bind(own)
        .fetch_all(&mut *c)
        .await?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut *c)
                .await?;
        }
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(10) {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&pids)
                    .fetch_one(&mut *c)
                    .await?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Global ids of prepared transactions starting with `prefix`.
    async fn prepared(&mut self, prefix: &str) -> Result<Vec<String>, sqlx::Error> {
        use sqlx::Row;
        match self {
            Conn::Pg(c) => {
                let rows = sqlx::query::<sqlx::Postgres>(
                    "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                )
                .fetch_all(c)
                .await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| r.try_get::<String, _>(0).ok())
                    .filter(|g| g.starts_with(prefix))
                    .collect())
            }
            Conn::My(c) => {
                let rows = sqlx::raw_sql("XA RECOVER").fetch_all(c).await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        let gtrid_len: i64 = r.try_get(1).ok()?;
                        let data: Vec<u8> = r.try_get(3).ok()?;
                        let gtrid = data.get(..gtrid_len as usize)?;
                        Some(String::from_utf8_lossy(gtrid).into_owned())
                    })
                    .filter(|g| g.starts_with(prefix))
                    .collect())
            }
        }
    }
}

fn guarantee_exactly_once(v: Option<&str>) -> Result<bool, Failure> {
    match v.unwrap_or("at-least-once") {
        "at-least-once" | "none" => Ok(false),
        "exactly-once" => Ok(true),
        other => Err(Failure::user(format!(
            "SQL sink option 'sink.delivery-guarantee' = '{other}'; use at-least-once or \
             exactly-once"
        ))),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SinkState {
    /// Prepared transactions waiting for their checkpoint to complete.
    pending: Vec<(u64, String)>,
}

pub struct SqlSink {
    endpoint: Endpoint,
    rt: tokio::runtime::Runtime,
    table: String,
    columns: Vec<String>,
    key: Vec<String>,
    key_index: Vec<usize>,
    max_rows: usize,
    exactly_once: bool,
    prefix: String,
    subtask: u32,
    parallelism: u32,
    /// Rows not written yet, by key (the last row of a key wins).
    buffer: Vec<Vec<SqlValue>>,
    by_key: HashMap<Vec<u8>, usize>,
    /// Writes rows (and, exactly once, holds the open transaction).
    data: Option<Conn>,
    /// The open transaction's id (exactly once).
    open: Option<String>,
    /// Prepared transactions and, for MySQL, the connection holding each.
    pending: Vec<(u64, String, Option<Conn>)>,
    /// Commits and rolls back prepared transactions (PostgreSQL commits
    /// them outside the data connection's transaction).
    admin: Option<Conn>,
}

impl std::fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSink")
            .field("endpoint", &self.endpoint)
            .field("table", &self.table)
            .finish()
    }
}

pub fn open_sink(c: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure> {
    Ok(Box::new(SqlSink::open(c, ctx)?))
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn key_bytes(row: &[SqlValue], idx: &[usize]) -> Vec<u8> {
    let key: Vec<&SqlValue> = idx.iter().map(|&i| &row[i]).collect();
    postcard::to_allocvec(&key).expect("encodes")
}

impl SqlSink {
    pub fn open(c: &Connector, ctx: &SinkContext) -> Result<Self, Failure> {
        let get = |k: &str| {
            c.options
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        for (k, _) in &c.options {
            if !KNOWN.contains(&k.as_str()) {
                return Err(Failure::user(format!(
                    "unknown option '{k}' for a SQL sink; it knows {}",
                    KNOWN.join(", ")
                )));
            }
        }
        let url = get("url").ok_or_else(|| Failure::user("a SQL sink needs 'url'"))?;
        let user = get("username")
            .map(weir_connectors::expand_env)
            .transpose()?;
        let password = get("password")
            .map(weir_connectors::expand_env)
            .transpose()?;
        let endpoint = Endpoint::parse(
            &weir_connectors::expand_env(url)?,
            user.as_deref(),
            password.as_deref(),
        )?;
        let table = get("table-name")
            .ok_or_else(|| Failure::user("a SQL sink needs 'table-name'"))?
            .to_owned();
        let columns = list(get("columns"));
        let key = list(get("primary-key"));
        if columns.is_empty() || key.is_empty() {
            return Err(Failure::user(
                "a SQL upsert sink needs 'columns' and 'primary-key' (comma-separated)",
            ));
        }
        let key_index = key
            .iter()
            .map(|k| {
                columns.iter().position(|c| c == k).ok_or_else(|| {
                    Failure::user(format!("primary key column '{k}' is not among 'columns'"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_rows = match get("sink.buffer-flush.max-rows") {
            Some(v) => v.parse().map_err(|e| {
                Failure::user(format!(
                    "SQL sink option 'sink.buffer-flush.max-rows' = '{v}': {e}"
                ))
            })?,
            None => 500,
        };
        let exactly_once = guarantee_exactly_once(get("sink.delivery-guarantee"))?;
        if exactly_once && !ctx.checkpointing {
            return Err(Failure::user(
                "an exactly-once SQL sink commits its transactions with checkpoints; enable \
                 checkpointing (execution.checkpointing.interval)",
            ));
        }
        let prefix = get("sink.transaction-prefix")
            .map_or_else(|| format!("weir-{}", ctx.uid), str::to_owned);
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || prefix.len() > 40
        {
            return Err(Failure::user(format!(
                "the SQL sink's transaction prefix '{prefix}' may hold letters, digits, '-', \
                 '_' and '.', at most 40 of them; set 'sink.transaction-prefix'"
            )));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::internal(format!("cannot start an I/O runtime: {e}")))?;
        let mut endpoint = endpoint;
        endpoint.app_name = Some(format!("weir:{prefix}:{}", process_nonce()));
        let mut sink = SqlSink {
            endpoint,
            rt,
            table,
            columns,
            key,
            key_index,
            max_rows: max_rows.max(1),
            exactly_once,
            prefix,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            buffer: Vec::new(),
            by_key: HashMap::new(),
            data: None,
            open: None,
            pending: Vec::new(),
            admin: None,
        };
        // Fail early, with the endpoint, when the database is unreachable.
        sink.data = Some(sink.rt.block_on(Conn::connect(&sink.endpoint))?);
        Ok(sink)
    }

    fn data(&mut self) -> Result<&mut Conn, Failure> {
        if self.data.is_none() {
            self.data = Some(self.rt.block_on(Conn::connect(&self.endpoint))?);
        }
        Ok(self.data.as_mut().expect("connected"))
    }

    /// A global transaction id: the prefix, the subtask (which restores
    /// look for), and a part unique to this transaction.
    fn new_gid(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}-{}-{nanos:x}", self.prefix, self.subtask)
    }

    /// Starts the transaction rows go into until the next checkpoint.
    fn begin(&mut self) -> Result<(), Failure> {
        let gid = self.new_gid();
        let sql = match self.endpoint.dialect {
            Dialect::Postgres => "BEGIN".to_owned(),
            Dialect::MySql => format!("XA START '{gid}'"),
        };
        let e = self.endpoint.clone();
        let rt = &self.rt;
        let conn = self.data.as_mut().expect("connected");
        rt.block_on(conn.exec(&sql))
            .map_err(|x| e.failure("start a transaction", x))?;
        self.open = Some(gid);
        Ok(())
    }

    /// Writes the buffered rows.
    fn write_out(&mut self) -> Result<(), Failure> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.data()?;
        if self.exactly_once && self.open.is_none() {
            self.begin()?;
        }
        let rows = std::mem::take(&mut self.buffer);
        self.by_key.clear();
        let e = self.endpoint.clone();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = upsert_sql(e.dialect, &self.table, &self.columns, &self.key, chunk);
            let conn = self.data.as_mut().expect("connected");
            self.rt
                .block_on(conn.upsert(&sql, chunk))
                .map_err(|x| e.failure(&format!("upsert into {}", self.table), x))?;
        }
        Ok(())
    }

    /// Commits prepared transaction `gid` (held by `conn` for MySQL);
    /// one that no longer exists was committed before.
    fn commit_prepared(&mut self, gid: &str, conn: Option<Conn>) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let sql = match e.dialect {
            Dialect::Postgres => format!("COMMIT PREPARED '{gid}'"),
            Dialect::MySql => format!("XA COMMIT '{gid}'"),
        };
        let r = match conn {
            Some(mut c) => {
                let r = self.rt.block_on(c.exec(&sql));
                // The connection is free again for new transactions.
                if r.is_ok() && self.data.is_none() {
                    self.data = Some(c);
                }
                r
            }
            None => {
                let rt = &self.rt;
                if self.admin.is_none() {
                    self.admin = Some(rt.block_on(Conn::connect(&e))?);
                }
                let admin = self.admin.as_mut().expect("connected");
                rt.block_on(admin.exec(&sql))
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err(x) if is_unknown_xid(&x) => Ok(()),
            Err(x) => Err(e.failure(&format!("commit prepared transaction {gid}"), x)),
        }
    }

    fn rollback_prepared(&mut self, gid: &str) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let sql = match e.dialect {
            Dialect::Postgres => format!("ROLLBACK PREPARED '{gid}'"),
            Dialect::MySql => format!("XA ROLLBACK '{gid}'"),
        };
        let rt = &self.rt;
        if self.admin.is_none() {
            self.admin = Some(rt.block_on(Conn::connect(&e))?);
        }
        let admin = self.admin.as_mut().expect("connected");
        match rt.block_on(admin.exec(&sql)) {
            Ok(()) => Ok(()),
            Err(x) if is_unknown_xid(&x) => Ok(()),
            Err(x) => Err(e.failure(&format!("roll back prepared transaction {gid}"), x)),
        }
    }
}

/// "No such prepared transaction": committed or rolled back before.
fn is_unknown_xid(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL undefined_object; MySQL XAER_NOTA.
            code == "42704"
                || code == "XAE04"
                || code == "1397"
                || d.message().contains("XAER_NOTA")
        }
        _ => false,
    }
}

/// The subtask a global transaction id names.
/// MySQL names no connection, so a restore waits (a bounded while) until
/// no other session of this user on this database is busy: a killed run's
/// session finishes the commands already sent (an `XA PREPARE`) before it
/// goes.
async fn wait_for_quiet(c: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
             AND USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND DB = DATABASE() \
             AND COMMAND <> 'Sleep'",
        )
        .fetch_one(&mut *c)
        .await?;
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Tells this process's connections from those of earlier runs.
fn process_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{:x}{:08x}", std::process::id(), nanos)
    })
}

fn parse_gid(prefix: &str, gid: &str) -> Option<u32> {
    let rest = gid.strip_prefix(prefix)?.strip_prefix('-')?;
    let (sub, _) = rest.split_once('-')?;
    sub.parse().ok()
}

impl SinkWriter for SqlSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Failure> {
        for rec in Reader::new(batch) {
            let rec = rec.map_err(|e| Failure::internal(e.to_string()))?;
            let row: Vec<SqlValue> = postcard::from_bytes(rec.value).map_err(|e| {
                Failure::internal(format!("a row for the SQL sink is malformed: {e}"))
            })?;
            if row.len() != self.columns.len() {
                return Err(Failure::user(format!(
                    "a row for {} has {} values, but the sink has {} columns ({})",
                    self.table,
                    row.len(),
                    self.columns.len(),
                    self.columns.join(", ")
                )));
            }
            let k = key_bytes(&row, &self.key_index);
            match self.by_key.get(&k) {
                Some(&i) => self.buffer[i] = row,
                None => {
                    self.by_key.insert(k, self.buffer.len());
                    self.buffer.push(row);
                }
            }
            if self.buffer.len() >= self.max_rows {
                self.write_out()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        if self.exactly_once {
            // The final checkpoint writes and prepares what is left.
            return Ok(());
        }
        self.write_out()
    }

    fn snapshot(&mut self, id: CheckpointId) -> Result<Option<serde_json::Value>, Failure> {
        self.write_out()?;
        if !self.exactly_once {
            return Ok(None);
        }
        if let Some(gid) = self.open.take() {
            let e = self.endpoint.clone();
            let conn = self.data.as_mut().expect("a transaction has a connection");
            match e.dialect {
                Dialect::Postgres => {
                    self.rt
                        .block_on(conn.exec(&format!("PREPARE TRANSACTION '{gid}'")))
                        .map_err(|x| e.failure("prepare a transaction", x))?;
                    self.pending.push((id.0, gid, None));
                }
                Dialect::MySql => {
                    self.rt
                        .block_on(conn.exec(&format!("XA END '{gid}'")))
                        .map_err(|x| e.failure("prepare a transaction", x))?;
                    self.rt
                        .block_on(conn.exec(&format!("XA PREPARE '{gid}'")))
                        .map_err(|x| e.failure("prepare a transaction", x))?;
                    // The connection holds the prepared transaction until
                    // it commits; new rows go through another.
                    let held = self.data.take();
                    self.pending.push((id.0, gid, held));
                }
            }
        }
        let state = SinkState {
            pending: self
                .pending
                .iter()
                .map(|(c, g, _)| (*c, g.clone()))
                .collect(),
        };
        Ok(Some(serde_json::to_value(state).expect("serializable")))
    }

    fn commit(&mut self, id: CheckpointId) -> Result<(), Failure> {
        if !self.exactly_once {
            return Ok(());
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _, _)| *c <= id.0);
        self.pending = later;
        for (_, gid, conn) in due {
            self.commit_prepared(&gid, conn)?;
        }
        Ok(())
    }

    /// Also called, with no states, when a job starts afresh: then it only
    /// rolls back what earlier runs left.
    fn restore(&mut self, states: &[serde_json::Value], _files: &SinkFiles) -> Result<(), Failure> {
        if !self.exactly_once {
            return Ok(());
        }
        let mut restored: Vec<String> = Vec::new();
        for (j, v) in states.iter().enumerate() {
            // Old subtask j is recovered by new subtask j % parallelism.
            if j as u32 % self.parallelism != self.subtask {
                continue;
            }
            let s: SinkState = serde_json::from_value(v.clone())
                .map_err(|e| Failure::internal(format!("SQL sink state: {e}")))?;
            for (_, gid) in s.pending {
                self.commit_prepared(&gid, None)?;
                restored.push(gid);
            }
        }
        self.abort_lingering(&restored)
    }
}

impl SqlSink {
    /// Rolls back prepared transactions this subtask's predecessors left
    /// that no restored checkpoint covers.
    fn abort_lingering(&mut self, keep: &[String]) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let prefix = self.prefix.clone();
        let rt = &self.rt;
        if self.admin.is_none() {
            self.admin = Some(rt.block_on(Conn::connect(&e))?);
        }
        let admin = self.admin.as_mut().expect("connected");
        if let Some(own) = &e.app_name {
            rt.block_on(admin.end_other_runs(&format!("weir:{prefix}:"), own))
                .map_err(|x| e.failure("wait for the sessions of an earlier run", x))?;
        }
        let found = rt
            .block_on(admin.prepared(&prefix))
            .map_err(|x| e.failure("list prepared transactions", x))?;
        for gid in found {
            let Some(sub) = parse_gid(&prefix, &gid) else {
                continue;
            };
            if sub % self.parallelism == self.subtask && !keep.contains(&gid) {
                tracing::warn!("rolling back prepared transaction {gid}, left by a failed run");
                self.rollback_prepared(&gid)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_for_both_dialects() {
        let cols = vec!["word".to_owned(), "count".to_owned()];
        let key = vec!["word".to_owned()];
        let rows = vec![
            vec![SqlValue::Text("a".into()), SqlValue::Int(1)],
            vec![SqlValue::Text("b".into()), SqlValue::Null],
        ];
        assert_eq!(
            upsert_sql(Dialect::Postgres, "public.counts", &cols, &key, &rows),
            "INSERT INTO \"public\".\"counts\" (\"word\", \"count\") VALUES ($1, $2), ($3, NULL) \
             ON CONFLICT (\"word\") DO UPDATE SET \"count\" = EXCLUDED.\"count\""
        );
        assert_eq!(
            upsert_sql(Dialect::MySql, "counts", &cols, &key, &rows),
            "INSERT INTO `counts` (`word`, `count`) VALUES (?, ?), (?, NULL) \
             ON DUPLICATE KEY UPDATE `count` = VALUES(`count`)"
        );
    }

    #[test]
    fn urls_take_credentials_and_never_show_the_password() {
        let e =
            Endpoint::parse("jdbc:postgresql://db:5432/app", Some("weir"), Some("p@ss")).unwrap();
        assert_eq!(e.url, "postgres://weir:p%40ss@db:5432/app");
        assert_eq!(format!("{e:?}"), "postgres://weir@db:5432/app");
        let m = Endpoint::parse("mysql://root:secret@127.0.0.1:3306/test", None, None).unwrap();
        assert!(!format!("{m:?}").contains("secret"));
        assert!(!m.failure("connect", "refused").message.contains("secret"));
        assert!(Endpoint::parse("oracle://x", None, None).is_err());
        assert_eq!(parse_gid("weir-sink", "weir-sink-2-17ab"), Some(2));
        assert_eq!(parse_gid("weir-sink", "other-2-17"), None);
    }
}
