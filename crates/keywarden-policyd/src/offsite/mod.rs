//! The offsite audit copy: every audit entry and signed checkpoint shipped to a syslog collector
//! (RFC 5424 messages over TLS, RFC 5425), delivered at least once, in order, resuming from the
//! last acknowledged position after an outage.
//!
//! # Messages
//!
//! Each record is one RFC 5424 message (octet-counting framing, RFC 5425 §4.3) whose MSG is
//! exactly the line `keywarden_audit::ExportWriter` writes for it, so the collector's file of
//! MSGs (rsyslog: template `%msg%\n`, one file per HOSTNAME) is an export with a header per
//! connection, heartbeats and resent duplicates: `keywarden audit verify --collector FILE`
//! reads it (`keywarden_audit::collector`). PRI is facility 13 (log audit), severity 6;
//! HOSTNAME the configured `cabinet`; APP-NAME `keywarden-policyd`; MSGID `header`, `audit`,
//! `checkpoint` or `heartbeat`.
//!
//! # Delivery and acknowledgement
//!
//! RFC 5425 has no application-level acknowledgement, so the shipper uses the end of the
//! connection as one. Each delivery is one TLS connection carrying a header and up to
//! `batch-size` entries with their stored checkpoints, then a checkpoint over the last entry
//! signed by the shipper (so every acknowledged batch ends signed). The shipper then sends
//! close_notify, shuts its TCP write side, and waits for the collector to close its side: a
//! TLS close_notify **and then** a clean TCP end. Only then does it store the batch's end in
//! `offsite_position` (keyed by collector address) and go on. Any error, a reset, a close
//! without close_notify, or `timeout-seconds` passing acknowledges nothing: it backs off
//! (1 s doubling to 60 s) and resends from the last acknowledged position, so the collector may
//! get duplicates, never a gap.
//!
//! What the acknowledgement means, with rsyslog's `imtcp` and the `ossl` stream driver (the
//! `gtls` driver never sends close_notify, so nothing is ever acknowledged with it): rsyslog
//! closes a session in order (close_notify) only after reading to the end of the stream, and it
//! hands each message to its ruleset as it parses it; with the ruleset's queue `Direct`, the
//! `omfile` action has written it (and with `sync="on"` fsynced it) before the session is
//! closed. When rsyslogd is stopped (SIGTERM) it also closes sessions with close_notify, but
//! with our data unread, which resets the TCP connection: that is why the clean TCP end is
//! required too. Measured on loopback with rsyslog 8.2302 (Debian 12): hundreds of SIGKILLs and
//! SIGTERMs of the collector mid-stream, no acknowledged record missing from its file.
//!
//! Limits: with an in-memory (non-`Direct`) ruleset queue the acknowledgement only means the
//! collector's memory holds the batch; without `sync="on"` a power loss of the collector host
//! can lose acknowledged records still in its page cache; a collector whose file is edited or
//! deleted afterwards is what the verifier is for (and the cabinet keeps its own chain). The
//! position is per collector address: changing the address ships the whole trail again. The
//! collector must take messages as long as the longest entry (rsyslog's `maxMessageSize`,
//! 8k by default, 64k in `contrib/collector/`) and must not escape control characters, or the
//! copy will not verify.
//!
//! # Heartbeats
//!
//! With nothing to send for `heartbeat-seconds`, the shipper sends a heartbeat message
//! (`{"heartbeat":{"at_ms":...,"head_seq":...}}`), acknowledged the same way, so the collector
//! sees the cabinet is alive (`keywarden collector check`) and the cabinet learns the collector
//! is back.

mod config;
mod source;
mod syslog;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keywarden_audit::DeviceKey;
use tokio::sync::watch;

use crate::daemon::Options;
use crate::error::{Error, Result};

pub use config::{OffsiteConfig, OffsiteFile};
pub use source::Position;
pub use syslog::{frame, MsgId, Schedule};

/// What the shipper has done so far, published after every attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsiteStatus {
    /// The position the collector acknowledged.
    pub acked: Position,
    /// Entries acknowledged since the shipper started.
    pub shipped: u64,
    /// Heartbeats acknowledged since the shipper started.
    pub heartbeats: u64,
    /// Deliveries failed in a row (0 after a success).
    pub failures: u32,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// Start the shipper on the current runtime: it runs until the process ends. `head` carries the
/// audit chain's head seq after every commit; the returned receiver follows its progress.
pub fn spawn(
    config: OffsiteConfig,
    options: &Options,
    head: watch::Receiver<u64>,
) -> watch::Receiver<OffsiteStatus> {
    let (status_tx, status_rx) = watch::channel(OffsiteStatus::default());
    let database = options.database.clone();
    let device_key = options.device_key.clone();
    tokio::spawn(async move {
        if let Err(e) = run(config, database, device_key, head, status_tx).await {
            tracing::error!(error = %e, "offsite audit copy stopped");
        }
    });
    status_rx
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Run a blocking database step on the blocking pool.
async fn db<T: Send + 'static>(
    source: &Arc<Mutex<source::Source>>,
    f: impl FnOnce(&source::Source) -> Result<T> + Send + 'static,
) -> Result<T> {
    let source = Arc::clone(source);
    let task_failed = |problem: String| Error::OffsiteDelivery {
        address: String::new(),
        problem,
    };
    tokio::task::spawn_blocking(move || {
        let guard = source
            .lock()
            .map_err(|_| task_failed("database connection poisoned".to_owned()))?;
        f(&guard)
    })
    .await
    .map_err(|e| task_failed(format!("database task failed: {e}")))?
}

/// What one attempt did.
enum Done {
    /// A batch was acknowledged and its end stored.
    Batch(source::Batch),
    /// A heartbeat was acknowledged.
    Heartbeat,
    /// Nothing was due.
    Idle,
}

/// Ship the next batch after `acked`, or a heartbeat if one is due and there is nothing new.
async fn attempt(
    config: &OffsiteConfig,
    source: &Arc<Mutex<source::Source>>,
    acked: Position,
    heartbeat_due: bool,
) -> Result<Done> {
    let (max, at) = (config.batch_size, now_ms());
    if let Some(batch) = db(source, move |s| s.batch(acked, max, at)).await? {
        let mut frames = Vec::new();
        for (id, at_ms, line) in &batch.messages {
            frame(&mut frames, *at_ms, &config.cabinet, *id, line);
        }
        send(config, &frames).await?;
        let (collector, end) = (config.address.clone(), batch.end);
        db(source, move |s| s.set_position(&collector, end, now_ms())).await?;
        return Ok(Done::Batch(batch));
    }
    if !heartbeat_due {
        return Ok(Done::Idle);
    }
    let head_seq = db(source, |s| s.head()).await?;
    let at = now_ms();
    let mut frames = Vec::new();
    let line = keywarden_audit::collector::heartbeat_line(at, head_seq);
    frame(&mut frames, at, &config.cabinet, MsgId::Heartbeat, &line);
    send(config, &frames).await?;
    Ok(Done::Heartbeat)
}

async fn run(
    config: OffsiteConfig,
    database: std::path::PathBuf,
    device_key: std::path::PathBuf,
    mut head: watch::Receiver<u64>,
    status: watch::Sender<OffsiteStatus>,
) -> Result<()> {
    let address = config.address.clone();
    let (source, acked) = tokio::task::spawn_blocking(move || {
        let key = DeviceKey::load(&device_key)?;
        let source = source::Source::open(&database, key)?;
        let acked = source.position(&address)?;
        Ok::<_, Error>((source, acked))
    })
    .await
    .map_err(|e| Error::OffsiteDelivery {
        address: config.address.clone(),
        problem: format!("start-up task failed: {e}"),
    })??;
    let source = Arc::new(Mutex::new(source));
    tracing::info!(
        collector = %config.address,
        acked_entry = acked.entry,
        acked_checkpoint = acked.checkpoint,
        "offsite audit copy started"
    );
    status.send_modify(|s| s.acked = acked);
    let mut acked = acked;
    let mut schedule = Schedule::new(config.heartbeat);
    loop {
        let now = Instant::now();
        let mut pending = false;
        if schedule.may_send(now) {
            match attempt(&config, &source, acked, schedule.heartbeat_due(now)).await {
                Ok(Done::Batch(batch)) => {
                    schedule.succeeded(Instant::now());
                    acked = batch.end;
                    tracing::debug!(
                        entries = batch.entries,
                        acked_entry = acked.entry,
                        "offsite batch acknowledged"
                    );
                    status.send_modify(|st| {
                        st.acked = batch.end;
                        st.shipped += batch.entries;
                        st.failures = 0;
                        st.last_error = None;
                    });
                    continue;
                }
                Ok(Done::Heartbeat) => {
                    schedule.succeeded(Instant::now());
                    status.send_modify(|st| {
                        st.heartbeats += 1;
                        st.failures = 0;
                        st.last_error = None;
                    });
                }
                Ok(Done::Idle) => {}
                Err(e) => {
                    pending = true;
                    let wait = schedule.failed(Instant::now());
                    tracing::warn!(
                        error = %e,
                        acked_entry = acked.entry,
                        retry_in_s = wait.as_secs(),
                        "offsite delivery failed; resending from the last acknowledged record"
                    );
                    let failures = schedule.failures();
                    status.send_modify(|st| {
                        st.failures = failures;
                        st.last_error = Some(e.to_string());
                    });
                }
            }
        }
        let wake = schedule.next_wake(Instant::now());
        let backing_off = !schedule.may_send(Instant::now());
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            changed = head.changed(), if !backing_off && !pending => {
                if changed.is_err() {
                    // The driver is gone: the process is stopping.
                    return Ok(());
                }
            }
        }
    }
}

/// One delivery with fresh TLS credentials.
async fn send(config: &OffsiteConfig, frames: &[u8]) -> Result<()> {
    let tls = Arc::new(tls::client_config(config)?);
    tls::deliver(config, tls, frames, timeout(config)).await
}

fn timeout(config: &OffsiteConfig) -> Duration {
    config.timeout
}
