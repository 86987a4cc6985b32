//! The database's part of a bundle, read on its own read-only connection: its health, counts
//! and the alarm summary. Never the credentials tables, never audit rows, never notes.

use std::path::Path;

use keywarden_diag::Scrubber;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Map, Value};

/// What was read; `people` feeds the scrubber.
pub(super) struct DatabaseFacts {
    /// Every user's login and display name.
    pub people: Vec<String>,
    /// `PRAGMA user_version`.
    pub schema_version: Option<i64>,
    integrity: Result<Vec<String>, String>,
    counts: Map<String, Value>,
    files: Map<String, Value>,
    alarms: Result<Vec<Alarm>, String>,
    alarm_counts: Result<Vec<(String, i64)>, String>,
    open_error: Option<String>,
}

struct Alarm {
    kind: String,
    subject: String,
    raised_at: i64,
    acknowledged: bool,
}

/// Alarms whose subject is a person (the rest name a key or the door).
const PERSON_ALARMS: &[&str] = &["pin-lockout", "holder-expired"];

/// The tables counted (no contents).
const COUNTED: &[&str] = &[
    "users",
    "badges",
    "fingerprints",
    "groups",
    "keys",
    "slots",
    "permissions",
    "schedules",
    "reasons",
    "reservations",
    "loans",
    "alarms",
    "audit",
    "checkpoints",
    "outbox",
];

pub(super) fn collect(path: &Path) -> DatabaseFacts {
    let mut facts = DatabaseFacts {
        people: Vec::new(),
        schema_version: None,
        integrity: Err("not run".into()),
        counts: Map::new(),
        files: Map::new(),
        alarms: Err("not read".into()),
        alarm_counts: Err("not read".into()),
        open_error: None,
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let size = std::fs::metadata(&name).map(|m| m.len()).ok();
        facts
            .files
            .insert(format!("keywarden.db{suffix}"), json!(size));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(c) => c,
        Err(e) => {
            facts.open_error = Some(e.to_string());
            return facts;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    facts.schema_version = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).ok();
    facts.integrity = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| e.to_string());
    for table in COUNTED {
        let n: Result<i64, _> =
            conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            });
        facts.counts.insert(
            (*table).to_owned(),
            n.map_or_else(|e| json!({ "error": e.to_string() }), |n| json!(n)),
        );
    }
    for (what, sql) in [
        ("loans_open", "SELECT count(*) FROM loans WHERE closed_at IS NULL"),
        (
            "loans_overdue",
            "SELECT count(*) FROM loans WHERE closed_at IS NULL AND due_at < CAST(strftime('%s','now') AS INTEGER) * 1000",
        ),
        ("outbox_unsent", "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL"),
    ] {
        let n: Result<i64, _> = conn.query_row(sql, [], |r| r.get(0));
        facts.counts.insert(
            what.to_owned(),
            n.map_or_else(|e| json!({ "error": e.to_string() }), |n| json!(n)),
        );
    }
    if let Ok(mut s) = conn.prepare("SELECT name, display_name FROM users") {
        if let Ok(rows) = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        {
            for (login, display) in rows.flatten() {
                facts.people.push(login);
                facts.people.push(display);
            }
        }
    }
    facts.alarms = conn
        .prepare(
            "SELECT kind, subject, raised_at, acknowledged_at IS NOT NULL FROM alarms
             WHERE cleared_at IS NULL ORDER BY raised_at",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(Alarm {
                    kind: r.get(0)?,
                    subject: r.get(1)?,
                    raised_at: r.get(2)?,
                    acknowledged: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(|e| e.to_string());
    facts.alarm_counts = conn
        .prepare(
            "SELECT kind, count(*) FROM alarms
             WHERE raised_at >= (CAST(strftime('%s','now') AS INTEGER) - 30 * 86400) * 1000
             GROUP BY kind ORDER BY kind",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(|e| e.to_string());
    facts
}

impl DatabaseFacts {
    /// `database.json`.
    pub(super) fn report(
        &self,
        scrub: &Scrubber,
        audit: &Result<(u64, u64, String), String>,
    ) -> Value {
        let integrity = match &self.integrity {
            Ok(lines) if lines.len() == 1 && lines[0] == "ok" => json!("ok"),
            Ok(lines) => json!(lines.iter().map(|l| scrub.text(l)).collect::<Vec<_>>()),
            Err(e) => json!({ "error": scrub.text(e) }),
        };
        let audit = match audit {
            Ok((entries, checkpoints, head)) => json!({
                "verdict": "ok",
                "entries": entries,
                "checkpoints": checkpoints,
                "head": head,
            }),
            Err(e) => json!({ "verdict": "failed", "error": scrub.text(e) }),
        };
        let alarms = match &self.alarms {
            Ok(list) => json!({
                "active_count": list.len(),
                "active": list.iter().map(|a| json!({
                    "kind": a.kind,
                    "subject": if PERSON_ALARMS.contains(&a.kind.as_str()) {
                        scrub.person(&a.subject)
                    } else {
                        scrub.text(&a.subject)
                    },
                    "raised_at_ms": a.raised_at,
                    "acknowledged": a.acknowledged,
                })).collect::<Vec<_>>(),
                "raised_last_30_days": match &self.alarm_counts {
                    Ok(c) => Value::Object(
                        c.iter().map(|(k, n)| (k.clone(), json!(n))).collect(),
                    ),
                    Err(e) => json!({ "error": e }),
                },
            }),
            Err(e) => json!({ "error": e }),
        };
        json!({
            "open_error": self.open_error,
            "schema_version": self.schema_version,
            "files": self.files,
            "integrity_check": integrity,
            "audit_chain": audit,
            "counts": self.counts,
            "alarms": alarms,
        })
    }
}
