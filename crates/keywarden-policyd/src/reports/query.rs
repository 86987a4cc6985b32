//! The query adapter: a read-only connection of its own, the named filters checked against the
//! records, the statement's parameters bound, its rows streamed into a [`ReportWriter`].

use std::io::Write;
use std::path::Path;

use jiff::tz::TimeZone;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{sql, Cell, Filter, Query, ReportWriter, MAX_COLUMNS};
use crate::error::{Error, Result};
use crate::store::BUSY_TIMEOUT;

/// Open the database read-only for reports (beside the service's own read-write connection:
/// WAL lets readers run while it writes). `query_only` and `trusted_schema=OFF` as a guard.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| {
        match Error::sqlite(path, "open for a report", source) {
            Error::Sqlite { source, .. } => Error::Open {
                path: path.to_owned(),
                source,
            },
            other => other,
        }
    })?;
    let sql = |e| Error::sqlite(path, "configure the report connection", e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    for (pragma, value) in [("query_only", "ON"), ("trusted_schema", "OFF")] {
        conn.pragma_update(None, pragma, value).map_err(sql)?;
    }
    Ok(conn)
}

/// Run `query` on `conn` and write its rows to `out` in the query's format; times in tables
/// are shown in `zone`, `now_ms` is "now" for overdue flags. Returns the number of rows.
///
/// A bad range or filter is [`Error::Invalid`]; a key, user or reason code the records do not
/// know is [`Error::NotFound`] (checked before anything is written). A failed write is
/// [`Error::Report`].
pub fn run<W: Write>(
    conn: &Connection,
    query: &Query,
    now_ms: i64,
    zone: &TimeZone,
    out: W,
) -> Result<u64> {
    query.validate()?;
    check_names(conn, query)?;
    let sql_err = |e| Error::Sqlite {
        operation: "run a report",
        source: e,
    };
    let mut stmt = conn.prepare(sql(query.kind)).map_err(sql_err)?;
    let limit = query
        .limit
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(-1);
    for name in super::PARAMETERS {
        let Some(index) = stmt.parameter_index(name).map_err(sql_err)? else {
            continue;
        };
        let result = match *name {
            ":from_ms" => stmt.raw_bind_parameter(index, query.from_ms.unwrap_or(0)),
            ":to_ms" => stmt.raw_bind_parameter(index, query.to_ms.unwrap_or(i64::MAX)),
            ":key" => stmt.raw_bind_parameter(index, query.key.as_deref()),
            ":user" => stmt.raw_bind_parameter(index, query.user.as_deref()),
            ":reason" => stmt.raw_bind_parameter(index, query.reason.as_deref()),
            ":now_ms" => stmt.raw_bind_parameter(index, now_ms),
            ":limit" => stmt.raw_bind_parameter(index, limit),
            _ => Ok(()),
        };
        result.map_err(sql_err)?;
    }
    let columns = query.kind.columns();
    debug_assert_eq!(stmt.column_count(), columns.len());
    let width = columns.len().min(MAX_COLUMNS);
    let mut writer =
        ReportWriter::new(out, query.format, columns, zone.clone()).map_err(Error::Report)?;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(sql_err)? {
        let mut cells = [Cell::Null; MAX_COLUMNS];
        for (i, cell) in cells.iter_mut().enumerate().take(width) {
            *cell = match row.get_ref(i).map_err(sql_err)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => match std::str::from_utf8(t) {
                    Ok(s) => Cell::Text(s),
                    // The records are written as UTF-8; a damaged value shows as empty.
                    Err(_) => Cell::Null,
                },
            };
        }
        writer.row(&cells[..width]).map_err(Error::Report)?;
    }
    let written = writer.rows();
    writer.finish().map_err(Error::Report)?;
    Ok(written)
}

/// Open `database` read-only and write the report to `out` (buffered). For the service's
/// blocking pool: one connection per report, closed when done.
pub fn run_to_file(
    database: &Path,
    query: &Query,
    now_ms: i64,
    zone: &TimeZone,
    out: std::fs::File,
) -> Result<u64> {
    let conn = open_read_only(database)?;
    run(
        &conn,
        query,
        now_ms,
        zone,
        std::io::BufWriter::with_capacity(64 * 1024, out),
    )
}

/// A named key, user or reason code must exist (deactivated ones count: history refers to them).
fn check_names(conn: &Connection, query: &Query) -> Result<()> {
    for (filter, what, sql) in [
        (Filter::Key, "key", "SELECT 1 FROM keys WHERE label = ?1"),
        (Filter::User, "user", "SELECT 1 FROM users WHERE name = ?1"),
        (
            Filter::Reason,
            "reason",
            "SELECT 1 FROM reasons WHERE code = ?1",
        ),
    ] {
        let Some(name) = query.filter(filter) else {
            continue;
        };
        let found: Option<i64> = conn
            .query_row(sql, [name], |row| row.get(0))
            .optional()
            .map_err(|e| Error::Sqlite {
                operation: "look up a report filter",
                source: e,
            })?;
        if found.is_none() {
            return Err(Error::not_found(what, name));
        }
    }
    Ok(())
}
