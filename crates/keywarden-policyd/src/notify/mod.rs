//! Alerts and notifications: e-mail over SMTP and webhooks over HTTPS, from a persistent outbox.
//!
//! The notifier **follows the audit chain**. Alarms are already audit entries (`alarm-raised`,
//! `alarm-cleared`, the alarm kind in the detail), so the notifier keeps a cursor (the last
//! audit seq it considered) and, in one transaction, turns the entries after it into outbox
//! rows and advances the cursor: a crash or restart loses nothing and enqueues nothing twice.
//! It wakes on the driver's audit head watch and on a timer.
//!
//! Once a day it also queues the keys-out list (at `daily-keys-out`, local time) and checks for
//! inactive users (`inactive-days`); the local date each job last ran is stored, so a restart
//! never repeats it, and an inactive user is alerted once per inactivity period.
//!
//! A sender delivers due rows, marks them sent, and on failure records the error and the next
//! attempt (exponential backoff with jitter, 30 s to 1 h); a row undelivered for a week is
//! given up (kept, marked expired, logged). Delivery is **at least once**: a crash between a
//! send and its mark-sent resends that one message, with the same dedupe handle (webhook
//! `Idempotency-Key` header and `id` field, e-mail `Message-ID`).
//!
//! - [`config`]: the `[notify]` section. [`alerts`] (sans-IO): which entries make which alerts,
//!   their text and JSON, and who gets them. [`schedule`] (sans-IO): backoff, expiry, daily
//!   jobs. `deliver`: the SMTP and HTTPS clients (blocking, rustls + ring).
//! - [`Notifier`]: the outbox on its own SQLite connection, each step a method taking `now`.
//! - [`spawn`]: the async driver: runs the steps on a blocking thread (the policy driver's
//!   runtime is single-threaded and must never wait on SQLite or the network).

pub mod alerts;
pub mod config;
mod deliver;
pub mod schedule;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::watch;

pub use alerts::{AlertKind, Channel};
pub use config::{NotifyConfig, NotifyFile};
pub use deliver::signature;

use crate::daemon::Options;
use crate::error::{Error, Result};
use alerts::{AuditEntry, OpenLoan, Outgoing, Payload};
use schedule::AfterFailure;

/// Audit entries turned into alerts per transaction.
const FOLLOW_BATCH: i64 = 500;
/// Rows tried per delivery pass (the rest wait for the next pass).
const DELIVER_BATCH: i64 = 100;
/// Sent rows are pruned this long after they were sent (expired ones after four times that).
const KEEP_SENT: i64 = 30 * 24 * 3600;
/// The driver wakes at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Queued at, Unix seconds.
    pub created_at: i64,
    /// Alert kind name.
    pub alert: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// Address or URL.
    pub destination: String,
    /// Stored message.
    pub payload: String,
    /// Failed attempts so far (a sent row counts its failures before the success).
    pub attempts: u32,
    /// Next try, Unix seconds.
    pub next_attempt_at: i64,
    /// Delivered at.
    pub sent_at: Option<i64>,
    /// Given up at.
    pub expired_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What a delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Rows sent.
    pub sent: usize,
    /// Rows that failed (and will be retried).
    pub failed: usize,
    /// Rows given up.
    pub expired: usize,
}

/// The outbox and the notifier's state, on its own connection to the policy database.
/// Every step takes the current time; [`spawn`] calls them with the clock.
pub struct Notifier {
    conn: Connection,
    path: PathBuf,
    config: NotifyConfig,
    zone: TimeZone,
    rng: StdRng,
    /// When [`Notifier::prune`] last ran from [`Notifier::step`].
    pruned_at: Option<i64>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let sql = |e| Error::sqlite(path, "configure the notifier's connection", e);
    conn.busy_timeout(crate::store::BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.pragma_update(None, "trusted_schema", "OFF")
        .map_err(sql)?;
    let version = crate::store::migrations::user_version(&conn, path)?;
    if version < 3 {
        return Err(Error::Notify {
            operation: "open",
            detail: format!("database schema version {version} has no outbox (needs 3)"),
        });
    }
    Ok(conn)
}

/// Notifications are off: forget the audit cursor, so that turning them on again starts at
/// the chain's head rather than alerting on everything recorded meanwhile. Pending outbox
/// rows are kept (and sent if notifications come back with the same destinations).
pub fn forget_cursor(path: &Path) -> Result<()> {
    let conn = connect(path)?;
    conn.execute("DELETE FROM notify_state WHERE name = 'cursor'", [])
        .map_err(|e| Error::sqlite(path, "forget the notifier's cursor", e))?;
    Ok(())
}

fn sql_err<'a>(path: &'a Path, operation: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| Error::sqlite(path, operation, e)
}

fn state(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM notify_state WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
}

fn set_state(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO notify_state (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )
    .map(|_| ())
}

fn insert(conn: &Connection, rows: &[Outgoing], now_s: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO outbox (created_at, alert, channel, destination, payload, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?1)",
    )?;
    for r in rows {
        stmt.execute(params![
            now_s,
            r.alert,
            r.channel.as_str(),
            r.destination,
            r.payload
        ])?;
    }
    Ok(())
}

impl Notifier {
    /// Open the notifier on the (already migrated) database at `path`. `seed` seeds the retry
    /// jitter.
    pub fn open(path: &Path, config: NotifyConfig, zone: TimeZone, seed: u64) -> Result<Notifier> {
        Ok(Notifier {
            conn: connect(path)?,
            path: path.to_owned(),
            config,
            zone,
            rng: StdRng::seed_from_u64(seed),
            pruned_at: None,
        })
    }

    fn sql(&self, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |e| Error::sqlite(&self.path, operation, e)
    }

    /// Turn the audit entries after the cursor into outbox rows, advancing the cursor in the
    /// same transaction. The first run (no cursor) starts at the chain's head: history is not
    /// alerted; so does a run whose cursor is past the head (a database restored from an
    /// older copy). Returns the number of rows queued.
    pub fn follow(&mut self, now_s: i64) -> Result<usize> {
        let mut queued = 0;
        loop {
            let path = self.path.clone();
            let sql = |operation| sql_err(&path, operation);
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("begin following the audit chain"))?;
            let head: i64 = tx
                .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))
                .map_err(sql("read the audit head"))?;
            let cursor = match state(&tx, "cursor").map_err(sql("read the cursor"))? {
                // Past the head: the database was restored from an older copy. Start again at
                // its head rather than wait for the chain to catch up.
                Some(c) if c > head => {
                    tracing::warn!(cursor = c, head, "notifier cursor past the audit head");
                    None
                }
                other => other,
            };
            let Some(cursor) = cursor else {
                set_state(&tx, "cursor", head).map_err(sql("set the cursor"))?;
                tx.commit().map_err(sql("commit the cursor"))?;
                tracing::info!(cursor = head, "notifier starts at the audit head");
                return Ok(queued);
            };
            let entries: Vec<AuditEntry> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT seq, at_ms, kind, actor, subject, detail FROM audit
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(sql("read the audit chain"))?;
                let rows = stmt
                    .query_map(params![cursor, FOLLOW_BATCH], |r| {
                        Ok(AuditEntry {
                            seq: r.get::<_, i64>(0)?.max(0).unsigned_abs(),
                            at_ms: r.get(1)?,
                            kind: r.get(2)?,
                            actor: r.get(3)?,
                            subject: r.get(4)?,
                            detail: r.get(5)?,
                        })
                    })
                    .map_err(sql("read the audit chain"))?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(sql("read the audit chain"))?
            };
            let Some(last) = entries.last().map(|e| e.seq) else {
                return Ok(queued);
            };
            let mut rows = Vec::new();
            for entry in &entries {
                if let Some(alert) = alerts::from_entry(&self.config.cabinet, &self.zone, entry) {
                    rows.extend(alerts::route(&self.config, &alert));
                }
            }
            insert(&tx, &rows, now_s).map_err(sql("queue alerts"))?;
            set_state(&tx, "cursor", last as i64).map_err(sql("advance the cursor"))?;
            tx.commit().map_err(sql("commit queued alerts"))?;
            if !rows.is_empty() {
                tracing::info!(alerts = ?alerts::tally(&rows), up_to = last, "alerts queued");
            }
            queued += rows.len();
            if entries.len() < FOLLOW_BATCH as usize {
                return Ok(queued);
            }
        }
    }

    /// The daily jobs, if due at `now_s`: the keys-out list (once per local day, at or after
    /// `daily-keys-out`) and the inactivity check (once per local day). Returns the rows
    /// queued.
    pub fn daily(&mut self, now_s: i64) -> Result<usize> {
        if now_s < crate::daemon::clock::CLOCK_FLOOR {
            return Ok(0); // the wall clock is not set: no "day" to speak of
        }
        let Ok(now) = Timestamp::from_second(now_s).map(|t| t.to_zoned(self.zone.clone())) else {
            return Ok(0);
        };
        let mut queued = 0;
        if let Some(at) = self.config.daily_keys_out {
            queued += self.keys_out(&now, at)?;
        }
        if let Some(days) = self.config.inactive_days {
            queued += self.inactive(&now, days)?;
        }
        Ok(queued)
    }

    fn keys_out(&mut self, now: &jiff::Zoned, at_minute: u16) -> Result<usize> {
        let path = self.path.clone();
        let sql = |operation| sql_err(&path, operation);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin the keys-out list"))?;
        let last = state(&tx, "keys-out-day")
            .map_err(sql("read the keys-out day"))?
            .and_then(schedule::date_from_int);
        if !schedule::daily_due(now, at_minute, last) {
            return Ok(0);
        }
        let loans: Vec<OpenLoan> = {
            let mut stmt = tx
                .prepare(
                    "SELECT k.label, u.name, u.display_name, l.reason,
                            coalesce(l.taken_at, l.granted_at), l.due_at
                     FROM loans l JOIN keys k ON k.id = l.key_id JOIN users u ON u.id = l.user_id
                     WHERE l.closed_at IS NULL AND l.taken_at IS NOT NULL
                     ORDER BY l.due_at, k.label",
                )
                .map_err(sql("list open loans"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(OpenLoan {
                        key: r.get(0)?,
                        holder: r.get(1)?,
                        holder_name: r.get(2)?,
                        reason: r.get(3)?,
                        since: r.get(4)?,
                        due: r.get(5)?,
                    })
                })
                .map_err(sql("list open loans"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(sql("list open loans"))?
        };
        let now_s = now.timestamp().as_second();
        let day = now.date().to_string();
        let alert = alerts::keys_out(&self.config.cabinet, &self.zone, &day, &loans, now_s);
        let rows = alerts::route(&self.config, &alert);
        insert(&tx, &rows, now_s).map_err(sql("queue the keys-out list"))?;
        set_state(&tx, "keys-out-day", schedule::date_to_int(now.date()))
            .map_err(sql("record the keys-out day"))?;
        tx.commit().map_err(sql("commit the keys-out list"))?;
        tracing::info!(%day, keys = loans.len(), messages = rows.len(), "keys-out list queued");
        Ok(rows.len())
    }

    fn inactive(&mut self, now: &jiff::Zoned, days: u32) -> Result<usize> {
        let path = self.path.clone();
        let sql = |operation| sql_err(&path, operation);
        let now_s = now.timestamp().as_second();
        let today = schedule::date_to_int(now.date());
        if state(&self.conn, "inactive-day").map_err(sql("read the inactivity day"))? == Some(today)
        {
            return Ok(0);
        }
        // Last activity: the latest entry the user is the actor of, or an admin change to the
        // account (creation, reactivation). One pass over the chain, once a day, outside the
        // write transaction (WAL: the policy driver is not held up).
        let threshold_ms = (now_s - i64::from(days) * 86_400) * 1000;
        let candidates: Vec<(String, String, i64)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "WITH activity (name, at_ms) AS (
                         SELECT actor, at_ms FROM audit WHERE actor != ''
                         UNION ALL
                         SELECT substr(subject, 6), at_ms FROM audit
                         WHERE kind = 'admin' AND subject LIKE 'user:%'),
                     latest (name, at_ms) AS (
                         SELECT name, max(at_ms) FROM activity GROUP BY name)
                     SELECT u.name, u.display_name, coalesce(l.at_ms, 0)
                     FROM users u LEFT JOIN latest l ON l.name = u.name
                     WHERE u.active = 1 AND (u.valid_until IS NULL OR u.valid_until > ?1)
                       AND (u.valid_from IS NULL OR u.valid_from <= ?1)
                       AND coalesce(l.at_ms, 0) < ?2
                     ORDER BY u.name",
                )
                .map_err(sql("find inactive users"))?;
            let rows = stmt
                .query_map(params![now_s, threshold_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(sql("find inactive users"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(sql("find inactive users"))?
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin the inactivity alerts"))?;
        let mut queued = 0;
        for (name, display_name, last_ms) in candidates {
            let alerted: Option<i64> = tx
                .query_row(
                    "SELECT last_activity_ms FROM notify_inactive WHERE user_name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("read inactivity alerts"))?;
            if alerted == Some(last_ms) {
                continue;
            }
            let alert = alerts::inactive_user(
                &self.config.cabinet,
                &self.zone,
                &name,
                &display_name,
                last_ms,
                days,
            );
            let rows = alerts::route(&self.config, &alert);
            insert(&tx, &rows, now_s).map_err(sql("queue an inactivity alert"))?;
            tx.execute(
                "INSERT INTO notify_inactive (user_name, last_activity_ms, alerted_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_name) DO UPDATE
                 SET last_activity_ms = excluded.last_activity_ms, alerted_at = excluded.alerted_at",
                params![name, last_ms, now_s],
            )
            .map_err(sql("record an inactivity alert"))?;
            tracing::info!(user = %name, "inactive user alert queued");
            queued += rows.len();
        }
        set_state(&tx, "inactive-day", today).map_err(sql("record the inactivity day"))?;
        tx.commit().map_err(sql("commit the inactivity alerts"))?;
        Ok(queued)
    }

    /// Every row, oldest first (inspection and tests).
    pub fn rows(&self) -> Result<Vec<OutboxRow>> {
        self.select(
            "SELECT id, created_at, alert, channel, destination, payload, attempts,
                            next_attempt_at, sent_at, expired_at, last_error
                     FROM outbox ORDER BY id",
            params![],
        )
    }

    fn select(&self, query: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn
            .prepare(query)
            .map_err(self.sql("read the outbox"))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    alert: r.get(2)?,
                    channel: r.get(3)?,
                    destination: r.get(4)?,
                    payload: r.get(5)?,
                    attempts: r.get(6)?,
                    next_attempt_at: r.get(7)?,
                    sent_at: r.get(8)?,
                    expired_at: r.get(9)?,
                    last_error: r.get(10)?,
                })
            })
            .map_err(self.sql("read the outbox"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.sql("read the outbox"))
    }

    /// When the next pending row is due (Unix seconds), if any.
    pub fn next_due(&self) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM outbox
                 WHERE sent_at IS NULL AND expired_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql("read the next due row"))
    }

    /// Deliver the rows due at `now_s`, in the order they were queued, marking each sent or failed (with its
    /// next attempt) right after its own attempt. Within one pass, once a server could not be
    /// used (connection, TLS), its other rows are not tried (they fail with the same error): a
    /// dead server costs one timeout per pass, not one per message. A refusal of one message
    /// (an SMTP reply about a recipient) does not hold up the others.
    pub fn deliver_due(&mut self, now_s: i64) -> Result<Delivered> {
        let due = self.select(
            "SELECT id, created_at, alert, channel, destination, payload, attempts,
                    next_attempt_at, sent_at, expired_at, last_error
             FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL AND next_attempt_at <= ?1
             ORDER BY id LIMIT ?2",
            params![now_s, DELIVER_BATCH],
        )?;
        let mut done = Delivered::default();
        let mut dead: HashMap<String, String> = HashMap::new();
        for row in due {
            // E-mails all go through the one relay; each webhook is its own server.
            let route = match row.channel.as_str() {
                "email" => "smtp".to_owned(),
                _ => row.destination.clone(),
            };
            let result = match dead.get(&route) {
                Some(error) => Err(format!("not tried: {error}")),
                None => self.send(&row).map_err(|f| {
                    if f.server_down {
                        dead.insert(route, f.message.clone());
                    }
                    f.message
                }),
            };
            match result {
                Ok(()) => {
                    self.conn
                        .execute(
                            "UPDATE outbox SET sent_at = ?2 WHERE id = ?1",
                            params![row.id, now_s],
                        )
                        .map_err(self.sql("mark a message sent"))?;
                    tracing::info!(id = row.id, alert = %row.alert, channel = %row.channel,
                        destination = %row.destination, "notification sent");
                    done.sent += 1;
                }
                Err(error) => {
                    let attempts = row.attempts.saturating_add(1);
                    let jitter: f64 = self.rng.random();
                    match schedule::after_failure(row.created_at, attempts, now_s, jitter) {
                        AfterFailure::RetryAt(at) => {
                            self.conn
                                .execute(
                                    "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3,
                                     last_error = ?4 WHERE id = ?1",
                                    params![row.id, attempts, at, error],
                                )
                                .map_err(self.sql("record a failed delivery"))?;
                            tracing::warn!(id = row.id, attempts, retry_at = at, %error,
                                "notification not delivered; will retry");
                            done.failed += 1;
                        }
                        AfterFailure::Expire => {
                            self.conn
                                .execute(
                                    "UPDATE outbox SET attempts = ?2, expired_at = ?3,
                                     last_error = ?4 WHERE id = ?1",
                                    params![row.id, attempts, now_s, error],
                                )
                                .map_err(self.sql("give a message up"))?;
                            tracing::error!(id = row.id, alert = %row.alert,
                                destination = %row.destination, attempts, %error,
                                "notification undelivered for a week: given up");
                            done.expired += 1;
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// One attempt at one row.
    fn send(&self, row: &OutboxRow) -> std::result::Result<(), deliver::Failure> {
        let payload = Payload::parse(&row.payload).ok_or_else(|| deliver::Failure {
            message: format!("outbox row {}: unreadable payload", row.id),
            server_down: false,
        })?;
        let id = alerts::dedupe_id(&self.config.cabinet, row.id, row.created_at);
        match Channel::parse(&row.channel) {
            Some(Channel::Email) => {
                let smtp =
                    self.config.smtp.as_ref().ok_or_else(|| {
                        "no [notify.smtp] relay is configured any more".to_owned()
                    })?;
                deliver::send_email(smtp, &row.destination, &id, row.created_at, &payload)
            }
            Some(Channel::Webhook) => {
                let hook = self
                    .config
                    .webhooks
                    .iter()
                    .find(|w| w.url == row.destination)
                    .ok_or_else(|| {
                        format!("webhook {} is not configured any more", row.destination)
                    })?;
                Ok(deliver::post_webhook(
                    hook,
                    &id,
                    &payload.webhook_body(&id),
                )?)
            }
            None => Err(format!("unknown channel {:?}", row.channel).into()),
        }
    }

    /// Delete rows sent more than 30 days ago and rows given up more than 120 days ago.
    pub fn prune(&mut self, now_s: i64) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE sent_at < ?1 OR expired_at < ?2",
                params![now_s - KEEP_SENT, now_s - 4 * KEEP_SENT],
            )
            .map_err(self.sql("prune the outbox"))
    }

    /// One round: follow the chain, the daily jobs, deliver what is due, prune. Returns how
    /// long the driver may sleep (until the next due row or the next daily job, at most a
    /// minute).
    pub fn step(&mut self, now_s: i64) -> Result<Duration> {
        self.follow(now_s)?;
        self.daily(now_s)?;
        self.deliver_due(now_s)?;
        if self.pruned_at.is_none_or(|t| now_s - t >= 3600) {
            self.prune(now_s)?;
            self.pruned_at = Some(now_s);
        }
        let mut wait = IDLE_WAKE.as_secs() as i64;
        if let Some(due) = self.next_due()? {
            wait = wait.min(due - now_s);
        }
        if let (Some(at), Ok(now)) = (
            self.config.daily_keys_out,
            Timestamp::from_second(now_s).map(|t| t.to_zoned(self.zone.clone())),
        ) {
            wait = wait.min(schedule::seconds_until(&now, at));
        }
        Ok(Duration::from_secs(wait.max(1).unsigned_abs()))
    }
}

/// Start the notifier: it runs on its own until `head`'s sender is dropped (the daemon
/// stopped). `head` carries the audit chain's head seq after every turn; a change wakes it.
/// Every step runs on a blocking thread with its own SQLite connection.
pub fn spawn(
    config: NotifyConfig,
    options: &Options,
    zone: TimeZone,
    mut head: watch::Receiver<u64>,
) -> tokio::task::JoinHandle<()> {
    let path = options.database.clone();
    tokio::spawn(async move {
        let seed = rand::random::<u64>();
        let opened =
            tokio::task::spawn_blocking(move || Notifier::open(&path, config, zone, seed)).await;
        let mut notifier = match opened {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "notifier not started: no alerts will be sent");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "notifier not started");
                return;
            }
        };
        tracing::info!("notifier started");
        loop {
            let now_s = crate::daemon::clock::now_ms().div_euclid(1000);
            let ran = tokio::task::spawn_blocking(move || {
                let r = notifier.step(now_s);
                (notifier, r)
            })
            .await;
            let wait = match ran {
                Ok((n, r)) => {
                    notifier = n;
                    r.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "notifier step failed; retrying");
                        Duration::from_secs(5)
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "notifier stopped");
                    return;
                }
            };
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations::{APPLICATION_ID, MIGRATIONS};

    fn config() -> NotifyConfig {
        crate::config::Config::parse(
            "[notify]\ncabinet = \"c\"\n[[notify.webhook]]\nurl = \"https://h/x\"\nalerts = [\"all\"]\n",
        )
        .expect("parse")
        .notify
        .expect("notify")
    }

    /// A database of schema version 2 with a user in it: the notifier refuses it as it is,
    /// and works on it once the store migrated it (migration 3 keeps the rows).
    #[test]
    fn migration_3_adds_the_outbox_to_a_version_2_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keywarden.db");
        {
            let conn = Connection::open(&path).expect("create");
            conn.pragma_update(None, "journal_mode", "WAL")
                .expect("wal");
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).expect("migration");
            }
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            assert_eq!(
                conn.pragma_query_value(None, "application_id", |r| r.get::<_, i32>(0))
                    .expect("id"),
                APPLICATION_ID
            );
            conn.execute(
                "INSERT INTO users (name, display_name, role) VALUES ('alice', 'Alice', 'staff')",
                [],
            )
            .expect("user");
        }
        let err = Notifier::open(&path, config(), TimeZone::UTC, 0).expect_err("version 2");
        assert_eq!(
            err.to_string(),
            "notifier: open: database schema version 2 has no outbox (needs 3)"
        );
        let store = crate::store::Store::open(
            &path,
            keywarden_audit::DeviceKey::from_bytes(&[1; 32]),
            crate::store::BadgeKey::from_bytes(&[2; 32]),
        )
        .expect("migrate");
        drop(store);
        let mut n = Notifier::open(&path, config(), TimeZone::UTC, 0).expect("open");
        assert_eq!(n.follow(1).expect("follow"), 0);
        assert!(n.rows().expect("rows").is_empty());
        let users: i64 = n
            .conn
            .query_row("SELECT count(*) FROM users WHERE name = 'alice'", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(users, 1);
    }
}
