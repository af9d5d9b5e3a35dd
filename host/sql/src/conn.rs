//! Connections to PostgreSQL and MySQL/MariaDB, and what the sink does
//! over them besides writing rows.

use crate::endpoint::{Dialect, Endpoint};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use weir_core::Failure;
use weir_frame::connectors::SqlValue;

pub(crate) enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
}

impl Conn {
    pub async fn connect(e: &Endpoint) -> Result<Conn, Failure> {
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

    pub async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
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

    /// The number a `SELECT COUNT(*)` statement returns.
    pub async fn count(&mut self, sql: &str) -> Result<i64, sqlx::Error> {
        match self {
            Conn::Pg(c) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(c)
                    .await
            }
            Conn::My(c) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(c)
                    .await
            }
        }
    }

    pub async fn write(&mut self, sql: &str, rows: &[Vec<SqlValue>]) -> Result<(), sqlx::Error> {
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
    pub async fn end_other_runs(&mut self, app_prefix: &str, own: &str) -> Result<(), sqlx::Error> {
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
    pub async fn prepared(&mut self, prefix: &str) -> Result<Vec<String>, sqlx::Error> {
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

/// A row with this key exists already.
pub(crate) fn is_duplicate_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// "No such prepared transaction": committed or rolled back before.
pub(crate) fn is_unknown_xid(e: &sqlx::Error) -> bool {
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
