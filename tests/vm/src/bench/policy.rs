//! The policy benchmark: whole checkouts through keywarden-policyd, each followed by the return
//! of the key, on the real devices, bus and data partition; and, in the same run, the floor such
//! a grant cannot beat.
//!
//! - `policy-grant-gpio`: from calling `ChooseReason` (as the console user) to the slot's
//!   gpio-sim lock line reading 1. In between: the decision, the commit of the grant (one SQLite
//!   transaction with `synchronous=FULL`: audit before actuate) and `ReleaseSlot` to hwd.
//! - `policy-floor`: one `INSERT` into a WAL SQLite file with `synchronous=FULL` on the same
//!   file system as the service's database, plus two `Peer.Ping` round trips to the service
//!   (its parts: `policy-floor-sqlite-insert`, `policy-floor-2-pings`). Measured between the
//!   checkouts, with the same busy-polling thread running as while a grant is timed, so both
//!   see the same load.
//! - `policy-pin-to-choose-key`: from the keypad's Enter on uinput to `SessionState` becoming
//!   `choose-key` (a `PropertiesChanged` signal): mostly the Argon2id check of the PIN.
//! - `policy-argon2id-verify`: that check alone, `keywarden_policyd::store::verify_pin` on a
//!   hash made with the service's parameters, in this process.
//! - `policy-badge-to-gpio`: from the first key of the badge on uinput to the lock line
//!   reading 1, the harness answering each prompt at once (typing the badge and the PIN at one
//!   key per 2 ms included).

use super::print;
use crate::board::{slot_lines, DATA_DIR};
use crate::bus::connect_as;
use crate::gpiosim::{Sampler, Sampling};
use crate::policy::{scan, set_present, type_digits, Clients, StateStream, ALICE, KEY_204, REASON};
use crate::policyd::{data_filesystem, Policyd};
use crate::report::line;
use crate::setup::{progress, Cabinet};
use crate::{Context, Result};
use evdev::KeyCode;
use keywarden_dbus::names::{POLICY_BUS_NAME, POLICY_PATH};
use std::time::{Duration, Instant};

/// Checkouts (and returns) measured. Each costs one Argon2id check in the service.
const CHECKOUTS: usize = 100;
/// Argon2id verifications timed alone.
const ARGON2_RUNS: usize = 100;
/// Longest wait for a PIN check under TCG.
const PIN_CHECK: Duration = Duration::from_secs(30);
/// Longest wait for any other state change.
const STATE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Samples {
    grant: Vec<Duration>,
    floor: Vec<Duration>,
    floor_sql: Vec<Duration>,
    floor_pings: Vec<Duration>,
    pin: Vec<Duration>,
    end_to_end: Vec<Duration>,
}

/// Starts the service next to the running hwd, measures, prints the `KWBENCH policy-*` lines.
pub(super) async fn measure(cab: &mut Cabinet) -> Result<()> {
    let _policyd = Policyd::start(cab).await?;
    let clients = Clients::connect().await?;
    clients.ensure_site().await?;
    let fs = data_filesystem();
    let medium = if fs.starts_with("ext4") {
        "virtio-blk, QEMU cache=none: every fsync is flushed to the host's disk"
    } else {
        "NOT a block device: fsync costs nothing here"
    };
    line(&format!("KWBENCH policy-data-partition {fs} ({medium})"));
    let mut states = StateStream::subscribe(&connect_as(0).await?).await?;
    let floor_db = floor_database()?;
    let mut slot = clients.key(KEY_204.label).await?.slot;
    let mut s = Samples::default();
    let started = Instant::now();
    for i in 0..CHECKOUTS {
        slot = checkout_and_return(cab, &clients, &mut states, slot, &mut s)
            .await
            .map_err(|e| format!("checkout {i}: {e}"))?;
        floor_sample(cab, &clients, &floor_db, &mut s).await?;
    }
    progress(&format!(
        "{CHECKOUTS} checkouts and returns took {:?}",
        started.elapsed()
    ));
    let floor_p50 = print("policy-floor", &s.floor, None);
    print("policy-floor-sqlite-insert", &s.floor_sql, None);
    print("policy-floor-2-pings", &s.floor_pings, None);
    let grant_p50 = print("policy-grant-gpio", &s.grant, Some(floor_p50));
    let (floor_p99, grant_p99) = (p99(&s.floor), p99(&s.grant));
    line(&format!(
        "KWBENCH policy-grant-vs-floor p50 {:.2}x p99 {:.2}x (goal <= 1.5x)",
        grant_p50.as_secs_f64() / floor_p50.as_secs_f64().max(1e-9),
        grant_p99.as_secs_f64() / floor_p99.as_secs_f64().max(1e-9),
    ));
    print("policy-pin-to-choose-key", &s.pin, None);
    print("policy-argon2id-verify", &argon2_alone()?, None);
    print("policy-badge-to-gpio", &s.end_to_end, None);
    Ok(())
}

/// Badge, PIN, key, reason (timed), the key taken out; then returned by its tag into the slot
/// the service picks. Returns that slot (where the key is now).
async fn checkout_and_return(
    cab: &mut Cabinet,
    c: &Clients,
    states: &mut StateStream,
    slot: u32,
    s: &mut Samples,
) -> Result<u32> {
    let (_, lock) = slot_lines(slot);
    let first_key = Instant::now();
    scan(cab, ALICE.badge)?;
    states.wait_for("pin", STATE).await?;
    type_digits(cab, ALICE.pin)?;
    let enter = Instant::now();
    cab.keypad.tap(KeyCode::KEY_ENTER)?;
    let choosing = states.wait_for("choose-key", PIN_CHECK).await?;
    c.console
        .choose_key(KEY_204.label)
        .await
        .context("ChooseKey")?;
    states.wait_for("choose-reason", STATE).await?;
    let watch = Sampler::start(&cab.lines, &[lock.as_str()], Sampling::FirstHigh)?;
    let asked = Instant::now();
    let call = c
        .console
        .choose_reason(REASON)
        .await
        .context("ChooseReason");
    let high = watch.finish(call.is_err())?;
    call?;
    let (_, energised) = high
        .first()
        .ok_or_else(|| format!("{lock} never read 1 after ChooseReason"))?;
    s.grant.push(energised.saturating_duration_since(asked));
    s.pin.push(choosing.saturating_duration_since(enter));
    s.end_to_end
        .push(energised.saturating_duration_since(first_key));

    set_present(cab, slot, false)?;
    states.wait_for("message", STATE).await?;
    scan(cab, KEY_204.tag)?;
    states.wait_for("return-key", STATE).await?;
    let target = c.console.session_slot().await.context("SessionSlot")?;
    cab.lines
        .wait_value(&slot_lines(target).1, 1, Duration::from_secs(2))
        .await?;
    set_present(cab, target, true)?;
    states.wait_for("message", STATE).await?;
    Ok(target)
}

/// The floor file: WAL, `synchronous=FULL`, a table shaped like an audit row.
fn floor_database() -> Result<rusqlite::Connection> {
    let path = std::path::Path::new(DATA_DIR).join("bench-floor.db");
    let db = rusqlite::Connection::open(&path).context(format!("opening {}", path.display()))?;
    let mode: String = db
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("journal_mode=WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}"));
    }
    db.pragma_update(None, "synchronous", "FULL")
        .context("synchronous=FULL")?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,
         kind TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
         hash BLOB NOT NULL)",
    )
    .context("creating the floor table")?;
    Ok(db)
}

/// One floor sample: the INSERT (its own transaction), then two pings to the service.
async fn floor_sample(
    cab: &Cabinet,
    c: &Clients,
    db: &rusqlite::Connection,
    s: &mut Samples,
) -> Result<()> {
    // The same busy poller as while a grant is timed (on a line that stays 0).
    let spinner = Sampler::start(&cab.lines, &["door-lock"], Sampling::FirstHigh)?;
    let start = Instant::now();
    let inserted = db
        .prepare_cached(
            "INSERT INTO entries (at_ms, kind, actor, subject, detail, hash)
             VALUES (?1, 'granted', 'alice', 'key:204', ?2, ?3)",
        )
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                1_795_000_000_000_i64,
                r#"{"reason":"MAINT","due_at":"1795000000","slot":"1"}"#,
                [0xa5_u8; 32].as_slice()
            ])
        })
        .context("the floor INSERT");
    let sql = start.elapsed();
    let pinged = async {
        ping(&c.console_conn).await?;
        ping(&c.console_conn).await
    }
    .await;
    let total = start.elapsed();
    spinner.finish(true)?;
    inserted?;
    pinged?;
    s.floor.push(total);
    s.floor_sql.push(sql);
    s.floor_pings.push(total - sql);
    Ok(())
}

async fn ping(conn: &zbus::Connection) -> Result<()> {
    conn.call_method(
        Some(POLICY_BUS_NAME),
        POLICY_PATH,
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
        &(),
    )
    .await
    .map(drop)
    .context("Peer.Ping to keywarden-policyd")
}

/// Argon2id verification of a correct PIN with the service's own code and parameters.
fn argon2_alone() -> Result<Vec<Duration>> {
    let phc = keywarden_policyd::store::hash_pin(ALICE.pin).context("hash_pin")?;
    let mut samples = Vec::with_capacity(ARGON2_RUNS);
    for _ in 0..ARGON2_RUNS {
        let start = Instant::now();
        let ok = keywarden_policyd::store::verify_pin(&phc, ALICE.pin);
        samples.push(start.elapsed());
        if !ok {
            return Err("verify_pin refused the right PIN".into());
        }
    }
    Ok(samples)
}

fn p99(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    super::percentile(&sorted, 99)
}
