//! The SQL a sink sends: row writes (upserts by primary key, or plain
//! inserts) and the transaction log of exactly-once sinks.

use crate::endpoint::Dialect;
use weir_frame::connectors::SqlValue;

/// Quotes an identifier (`schema.table` quotes each part).
pub(crate) fn ident(d: Dialect, name: &str) -> String {
    name.split('.')
        .map(|p| match d {
            Dialect::Postgres => format!("\"{}\"", p.replace('"', "\"\"")),
            Dialect::MySql => format!("`{}`", p.replace('`', "``")),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The statement writing `rows` rows: an upsert by `key`, or a plain
/// insert without one.
pub(crate) fn write_sql(
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
    if key.is_empty() {
        return sql;
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

/// The transaction log of exactly-once sinks: every transaction adds its
/// row, so that the row exists exactly when the transaction committed.
/// A restore (or a commit that finds its prepared transaction gone) tells
/// a transaction committed earlier from one rolled back by someone else.
pub(crate) fn create_log(d: Dialect, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (sink VARCHAR(100) NOT NULL, checkpoint BIGINT NOT NULL, \
         gid VARCHAR(200) NOT NULL, PRIMARY KEY (sink, checkpoint))",
        ident(d, table)
    )
}

/// Adds a transaction's row to the log (inside the transaction).
pub(crate) fn log_row(d: Dialect, table: &str, sink: &str, checkpoint: u64, gid: &str) -> String {
    format!(
        "INSERT INTO {} (sink, checkpoint, gid) VALUES ({}, {checkpoint}, {})",
        ident(d, table),
        literal(sink),
        literal(gid)
    )
}

/// Whether the log has a transaction's row.
pub(crate) fn find_row(d: Dialect, table: &str, sink: &str, gid: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM {} WHERE sink = {} AND gid = {}",
        ident(d, table),
        literal(sink),
        literal(gid)
    )
}

/// How many transactions of prefix `prefix` (any subtask) after
/// checkpoint `after` committed.
pub(crate) fn count_after(d: Dialect, table: &str, prefix: &str, after: u64) -> String {
    let names = format!("{prefix}-");
    format!(
        "SELECT COUNT(*) FROM {} WHERE SUBSTR(sink, 1, {}) = {} AND checkpoint > {after}",
        ident(d, table),
        names.len(),
        literal(&names)
    )
}

/// Forgets a sink's rows older than `before` (kept for restores from
/// older retained checkpoints).
pub(crate) fn trim_log(d: Dialect, table: &str, sink: &str, before: u64) -> String {
    format!(
        "DELETE FROM {} WHERE sink = {} AND checkpoint < {before}",
        ident(d, table),
        literal(sink)
    )
}

/// A string literal of transaction ids and sink names (letters, digits,
/// '-', '_' and '.', checked when the prefix is set).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_and_inserts_for_both_dialects() {
        let cols = vec!["word".to_owned(), "count".to_owned()];
        let key = vec!["word".to_owned()];
        let rows = vec![
            vec![SqlValue::Text("a".into()), SqlValue::Int(1)],
            vec![SqlValue::Text("b".into()), SqlValue::Null],
        ];
        assert_eq!(
            write_sql(Dialect::Postgres, "public.counts", &cols, &key, &rows),
            "INSERT INTO \"public\".\"counts\" (\"word\", \"count\") VALUES ($1, $2), ($3, NULL) \
             ON CONFLICT (\"word\") DO UPDATE SET \"count\" = EXCLUDED.\"count\""
        );
        assert_eq!(
            write_sql(Dialect::MySql, "counts", &cols, &key, &rows),
            "INSERT INTO `counts` (`word`, `count`) VALUES (?, ?), (?, NULL) \
             ON DUPLICATE KEY UPDATE `count` = VALUES(`count`)"
        );
        assert_eq!(
            write_sql(Dialect::MySql, "counts", &cols, &[], &rows),
            "INSERT INTO `counts` (`word`, `count`) VALUES (?, ?), (?, NULL)"
        );
        assert_eq!(
            find_row(Dialect::Postgres, "weir_transactions", "p-0", "p-0-1f"),
            "SELECT COUNT(*) FROM \"weir_transactions\" WHERE sink = 'p-0' AND gid = 'p-0-1f'"
        );
    }
}
