//! SQL sinks for PostgreSQL and MySQL/MariaDB (connector kind `jdbc`, with
//! the options of Flink's JDBC connector).
//!
//! With a `primary-key`, rows are upserted by it, in batches of multi-row
//! statements (`INSERT ... ON CONFLICT ... DO UPDATE`, `INSERT ... ON
//! DUPLICATE KEY UPDATE`); within a batch the last row of a key wins.
//! Without one, every row is appended (`INSERT`), as Flink's JDBC sink
//! does for tables without a key.
//!
//! `sink.delivery-guarantee`:
//! - `at-least-once` (the default): batches commit as they are written
//!   and at every checkpoint; after a failure, rows since the checkpoint
//!   are written again, which an upsert makes harmless.
//! - `exactly-once`: the rows between two checkpoints are one database
//!   transaction, prepared at the barrier (PostgreSQL `PREPARE
//!   TRANSACTION`, MySQL/MariaDB `XA PREPARE`) and committed when the
//!   checkpoint completes. Transaction ids hold the job's id (or the
//!   job's own `sink.transaction-prefix`), so jobs never touch each
//!   other's transactions. Each transaction also adds its row to a
//!   transaction log table (`sink.transaction-log-table`), so a commit
//!   that finds its transaction gone tells "committed before" from "rolled
//!   back by someone else" — the latter fails the job loudly rather than
//!   losing rows in silence. A restore commits the prepared transactions of
//!   the checkpoint it restores and rolls back any others the restored
//!   job's subtasks left behind, so the table holds exactly what the
//!   restored checkpoint covers.

mod conn;
mod endpoint;
mod statements;

use conn::{Conn, is_unknown_xid};
use endpoint::{Dialect, Endpoint, check_tenant_url};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use weir_connectors::{SinkContext, SinkFiles, SinkWriter};
use weir_core::plan::Connector;
use weir_core::{CheckpointId, Failure, SubtaskState};
use weir_frame::Reader;
use weir_frame::connectors::SqlValue;

/// Most rows in one statement.
const ROWS_PER_STATEMENT: usize = 1000;

/// Rows of a sink's own transaction log kept, in checkpoints: a restore
/// from a checkpoint this much older than the newest cannot tell its
/// committed transactions from lost ones.
const LOG_KEPT: u64 = 1000;

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
    "sink.transaction-log-table",
];

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
    /// The transaction prefix of the run that took the state (older
    /// states lack it: the prefix then is that of the restoring job).
    #[serde(default)]
    prefix: Option<String>,
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
    log_table: String,
    subtask: u32,
    parallelism: u32,
    /// Rows not written yet (upserts: by key, the last row of a key wins).
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
    /// The checkpoint the job restored, if it did.
    restored: Option<u64>,
    /// Commits since the log was last trimmed.
    since_trim: u32,
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

/// The JDBC sink, for a job's [`weir_connectors::Connectors`].
pub struct JdbcConnectors;

impl weir_connectors::ConnectorProvider for JdbcConnectors {
    fn sources(&self) -> &'static [&'static str] {
        &[]
    }

    fn sinks(&self) -> &'static [&'static str] {
        &["jdbc"]
    }

    fn open_source(
        &self,
        c: &Connector,
        _: &weir_connectors::SourceContext,
    ) -> Result<Box<dyn weir_connectors::SourceReader>, Failure> {
        Err(Failure::internal(format!("'{}' has no source", c.kind)))
    }

    fn open_sink(&self, c: &Connector, ctx: &SinkContext) -> Result<Box<dyn SinkWriter>, Failure> {
        open_sink(c, ctx)
    }

    fn check_options(
        &self,
        c: &Connector,
        owner: &weir_core::config::JobOwner,
    ) -> Result<(), Failure> {
        check_options(c, owner)
    }
}

/// Checks a SQL sink's options for its owner (known keys, secrets that
/// exist, what a tenant's URL may say) without connecting anywhere.
pub fn check_options(c: &Connector, owner: &weir_core::config::JobOwner) -> Result<(), Failure> {
    for (k, v) in &c.options {
        if !KNOWN.contains(&k.as_str()) {
            return Err(Failure::user(format!(
                "unknown option '{k}' for a SQL sink; it knows {}",
                KNOWN.join(", ")
            )));
        }
        if matches!(k.as_str(), "url" | "username" | "password") {
            let v = owner.secrets.expand(v)?;
            if k == "url" {
                check_tenant_url(&v, owner)?;
            }
        }
    }
    Ok(())
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

fn check_prefix(prefix: &str) -> Result<(), Failure> {
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || prefix.len() > 40
    {
        return Err(Failure::user(format!(
            "the SQL sink's transaction prefix '{prefix}' may hold letters, digits, '-', '_' and \
             '.', at most 40 of them; set 'sink.transaction-prefix'"
        )));
    }
    Ok(())
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
        let secrets = &ctx.owner.secrets;
        let url =
            secrets.expand(get("url").ok_or_else(|| Failure::user("a SQL sink needs 'url'"))?)?;
        check_tenant_url(&url, &ctx.owner)?;
        let user = get("username").map(|u| secrets.expand(u)).transpose()?;
        let password = get("password").map(|p| secrets.expand(p)).transpose()?;
        let endpoint =
            Endpoint::parse(&url, user.as_deref(), password.as_deref(), get("username"))?;
        let table = get("table-name")
            .ok_or_else(|| Failure::user("a SQL sink needs 'table-name'"))?
            .to_owned();
        let columns = list(get("columns"));
        let key = list(get("primary-key"));
        if columns.is_empty() {
            return Err(Failure::user(
                "a SQL sink needs 'columns' (comma-separated), and 'primary-key' to upsert rather \
                 than append",
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
        if exactly_once && ctx.max_concurrent_checkpoints > 1 {
            // Rows of the next transaction would wait for the locks of the
            // one still prepared, which commits only after them.
            return Err(Failure::user(format!(
                "an exactly-once SQL sink needs one checkpoint at a time (its prepared \
                 transaction holds its rows' locks until the checkpoint completes); set \
                 execution.checkpointing.max-concurrent-checkpoints to 1, not {}",
                ctx.max_concurrent_checkpoints
            )));
        }
        let prefix = match get("sink.transaction-prefix") {
            Some(p) => ctx.own_transaction_prefix(p),
            None => ctx.default_transaction_prefix(),
        };
        check_prefix(&prefix)?;
        let log_table = get("sink.transaction-log-table")
            .unwrap_or("weir_transactions")
            .to_owned();
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
            log_table,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            buffer: Vec::new(),
            by_key: HashMap::new(),
            data: None,
            open: None,
            pending: Vec::new(),
            admin: None,
            since_trim: 0,
            restored: ctx.restored.map(|c| c.0),
        };
        // Fail early, with the endpoint, when the database is unreachable.
        sink.data = Some(sink.rt.block_on(Conn::connect(&sink.endpoint))?);
        if sink.exactly_once {
            sink.create_log()?;
        }
        Ok(sink)
    }

    fn data(&mut self) -> Result<&mut Conn, Failure> {
        if self.data.is_none() {
            self.data = Some(self.rt.block_on(Conn::connect(&self.endpoint))?);
        }
        Ok(self.data.as_mut().expect("connected"))
    }

    fn admin(&mut self) -> Result<&mut Conn, Failure> {
        if self.admin.is_none() {
            self.admin = Some(self.rt.block_on(Conn::connect(&self.endpoint))?);
        }
        Ok(self.admin.as_mut().expect("connected"))
    }

    /// The name this subtask's rows carry in the transaction log.
    fn log_name(prefix: &str, subtask: u32) -> String {
        format!("{prefix}-{subtask}")
    }

    /// Creates the transaction log table if it does not exist (several
    /// subtasks may race to create it: one wins, the others find it).
    fn create_log(&mut self) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let sql = statements::create_log(e.dialect, &self.log_table);
        let probe = format!(
            "SELECT COUNT(*) FROM {} WHERE 1 = 0",
            statements::ident(e.dialect, &self.log_table)
        );
        let rt = &self.rt;
        let conn = self.data.as_mut().expect("connected");
        if let Err(first) = rt.block_on(conn.exec(&sql)) {
            rt.block_on(conn.count(&probe)).map_err(|_| {
                e.failure(
                    &format!(
                        "create the transaction log table {} (sink.transaction-log-table)",
                        self.log_table
                    ),
                    first,
                )
            })?;
        }
        Ok(())
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
            let sql =
                statements::write_sql(e.dialect, &self.table, &self.columns, &self.key, chunk);
            let conn = self.data.as_mut().expect("connected");
            self.rt
                .block_on(conn.write(&sql, chunk))
                .map_err(|x| e.failure(&format!("write into {}", self.table), x))?;
        }
        Ok(())
    }

    /// Whether the transaction log holds `gid` (it committed).
    fn logged(&mut self, prefix: &str, subtask: u32, gid: &str) -> Result<bool, Failure> {
        let sql = statements::find_row(
            self.endpoint.dialect,
            &self.log_table,
            &Self::log_name(prefix, subtask),
            gid,
        );
        Ok(self.count_log(&sql)? > 0)
    }

    /// Runs a `SELECT COUNT(*)` on the transaction log.
    fn count_log(&mut self, sql: &str) -> Result<i64, Failure> {
        let e = self.endpoint.clone();
        self.admin()?;
        let rt = &self.rt;
        let admin = self.admin.as_mut().expect("connected");
        rt.block_on(admin.count(sql))
            .map_err(|x| e.failure("read the transaction log", x))
    }

    /// The failure of a run that would write again what an earlier run
    /// from the same snapshot committed: `what` says how it was found.
    fn replay(&self, what: &str) -> Failure {
        Failure::user(format!(
            "{} at {}: {what} of the transactions '{}' committed already, in an earlier run \
             restored from the same snapshot; starting here would write their rows twice. \
             Restore from the newest checkpoint of that run, or give the sink another \
             sink.transaction-prefix to write the output again",
            self.endpoint.dialect.name(),
            self.endpoint.shown,
            self.prefix
        ))
    }

    /// Commits prepared transaction `gid` (held by `conn` for MySQL). One
    /// that no longer exists must be in the transaction log (it committed
    /// before); otherwise someone else rolled it back and its rows are
    /// lost, which fails the job.
    fn commit_prepared(
        &mut self,
        prefix: &str,
        checkpoint: u64,
        gid: &str,
        conn: Option<Conn>,
    ) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let sql = match e.dialect {
            Dialect::Postgres => format!("COMMIT PREPARED '{gid}'"),
            Dialect::MySql => format!("XA COMMIT '{gid}'"),
        };
        tracing::debug!("committing {gid} (checkpoint {checkpoint})");
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
            Err(x) if is_unknown_xid(&x) => {
                let subtask = parse_gid(prefix, gid).unwrap_or(self.subtask);
                if self.logged(prefix, subtask, gid)? {
                    return Ok(());
                }
                Err(Failure::external(format!(
                    "{} at {}: the prepared transaction {gid} with the rows of checkpoint \
                     {checkpoint} is gone without having committed: something outside this job \
                     rolled it back, and those rows are lost. Check that no other job or person \
                     uses the transaction prefix '{prefix}'",
                    e.dialect.name(),
                    e.shown
                )))
            }
            Err(x) => Err(e.failure(&format!("commit prepared transaction {gid}"), x)),
        }
    }

    fn rollback_prepared(&mut self, gid: &str) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        let sql = match e.dialect {
            Dialect::Postgres => format!("ROLLBACK PREPARED '{gid}'"),
            Dialect::MySql => format!("XA ROLLBACK '{gid}'"),
        };
        self.admin()?;
        let rt = &self.rt;
        let admin = self.admin.as_mut().expect("connected");
        match rt.block_on(admin.exec(&sql)) {
            Ok(()) => Ok(()),
            Err(x) if is_unknown_xid(&x) => Ok(()),
            Err(x) => Err(e.failure(&format!("roll back prepared transaction {gid}"), x)),
        }
    }

    /// Drops this subtask's log rows older than the retained window, now
    /// and then.
    fn trim_log(&mut self, checkpoint: u64) -> Result<(), Failure> {
        self.since_trim += 1;
        if self.since_trim < 64 || checkpoint <= LOG_KEPT {
            return Ok(());
        }
        self.since_trim = 0;
        let e = self.endpoint.clone();
        let sql = statements::trim_log(
            e.dialect,
            &self.log_table,
            &Self::log_name(&self.prefix, self.subtask),
            checkpoint - LOG_KEPT,
        );
        self.admin()?;
        let rt = &self.rt;
        let admin = self.admin.as_mut().expect("connected");
        rt.block_on(admin.exec(&sql))
            .map_err(|x| e.failure("trim the transaction log", x))
    }

    /// Rolls back the prepared transactions that runs with these prefixes
    /// left for this subtask's share of the work and that no restored
    /// checkpoint covers.
    fn abort_lingering(
        &mut self,
        prefixes: &BTreeSet<String>,
        keep: &[String],
    ) -> Result<(), Failure> {
        let e = self.endpoint.clone();
        for prefix in prefixes {
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
                .block_on(admin.prepared(prefix))
                .map_err(|x| e.failure("list prepared transactions", x))?;
            for gid in found {
                let Some(sub) = parse_gid(prefix, &gid) else {
                    continue;
                };
                if sub % self.parallelism == self.subtask && !keep.contains(&gid) {
                    tracing::warn!("rolling back prepared transaction {gid}, left by a failed run");
                    self.rollback_prepared(&gid)?;
                }
            }
        }
        Ok(())
    }

    /// Refuses to start when an earlier run from the same snapshot
    /// committed checkpoints after the restored one: restoring that
    /// snapshot again would write their rows a second time.
    fn refuse_replay(&mut self) -> Result<(), Failure> {
        let Some(restored) = self.restored else {
            return Ok(());
        };
        let sql = statements::count_after(
            self.endpoint.dialect,
            &self.log_table,
            &self.prefix,
            restored,
        );
        match self.count_log(&sql)? {
            0 => Ok(()),
            n => Err(self.replay(&format!(
                "the job was restored from checkpoint {restored}, but {n} later checkpoint(s)"
            ))),
        }
    }
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

/// The subtask a global transaction id of `prefix` names.
fn parse_gid(prefix: &str, gid: &str) -> Option<u32> {
    let rest = gid.strip_prefix(prefix)?.strip_prefix('-')?;
    let (sub, unique) = rest.split_once('-')?;
    if unique.contains('-') {
        // A longer prefix that starts with this one.
        return None;
    }
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
            if self.key_index.is_empty() {
                self.buffer.push(row);
            } else {
                let k = key_bytes(&row, &self.key_index);
                match self.by_key.get(&k) {
                    Some(&i) => self.buffer[i] = row,
                    None => {
                        self.by_key.insert(k, self.buffer.len());
                        self.buffer.push(row);
                    }
                }
            }
            // While a prepared transaction waits for its checkpoint to
            // complete, it holds its rows' locks: rows wait here rather
            // than block on them (they go out with the commit, or at the
            // next barrier).
            if self.buffer.len() >= self.max_rows && self.pending.is_empty() {
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
            tracing::debug!("preparing {gid} for checkpoint {id}");
            let e = self.endpoint.clone();
            let log = statements::log_row(
                e.dialect,
                &self.log_table,
                &Self::log_name(&self.prefix, self.subtask),
                id.0,
                &gid,
            );
            let conn = self.data.as_mut().expect("a transaction has a connection");
            if let Err(x) = self.rt.block_on(conn.exec(&log)) {
                return Err(if conn::is_duplicate_key(&x) {
                    self.replay(&format!("checkpoint {id}"))
                } else {
                    e.failure("write the transaction log", x)
                });
            }
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
            prefix: Some(self.prefix.clone()),
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
        let prefix = self.prefix.clone();
        for (checkpoint, gid, conn) in due {
            self.commit_prepared(&prefix, checkpoint, &gid, conn)?;
        }
        self.trim_log(id.0)?;
        if self.pending.is_empty() && self.buffer.len() >= self.max_rows {
            self.write_out()?;
        }
        Ok(())
    }

    fn restore(&mut self, states: &[SubtaskState], _files: &SinkFiles) -> Result<(), Failure> {
        if !self.exactly_once {
            return Ok(());
        }
        // Before anything is rolled back: what the earlier run prepared
        // may be all that is left of its newest checkpoint.
        self.refuse_replay()?;
        let mut prefixes: BTreeSet<String> = [self.prefix.clone()].into();
        let mut restored: Vec<String> = Vec::new();
        for st in states {
            let s: SinkState = serde_json::from_value(st.value.clone())
                .map_err(|e| Failure::internal(format!("SQL sink state: {e}")))?;
            let prefix = s.prefix.unwrap_or_else(|| self.prefix.clone());
            prefixes.insert(prefix.clone());
            if !st.belongs_to(self.subtask, self.parallelism) {
                continue;
            }
            for (checkpoint, gid) in s.pending {
                self.commit_prepared(&prefix, checkpoint, &gid, None)?;
                restored.push(gid);
            }
        }
        self.abort_lingering(&prefixes, &restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_name_their_subtask() {
        assert_eq!(parse_gid("weir-sink", "weir-sink-2-17ab"), Some(2));
        assert_eq!(parse_gid("weir-sink", "other-2-17"), None);
        assert_eq!(
            parse_gid("weir-sink", "weir-sink-x-2-17ab"),
            None,
            "another sink's prefix that starts with this one"
        );
        assert!(check_prefix("weir-0123-counts").is_ok());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix(&"x".repeat(41)).is_err());
    }
}
