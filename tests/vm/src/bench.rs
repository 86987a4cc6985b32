//! The VM benchmark: latencies through the real kernel devices and the real bus, each printed
//! as `KWBENCH <name> n=.. p50=..us p99=..us ratio=..` next to a floor measured in the same run
//! (a bare `org.freedesktop.DBus.Peer.Ping` round trip to the daemon).
//!
//! - `ping`: the floor.
//! - `badge-scan`: from writing the terminating key event of a badge scan into uinput to the
//!   `BadgeScanned` signal arriving at a subscriber (uid 900).
//! - `unlock-gpio`: from calling `UnlockDoor` to the gpio-sim line reading 1 (a second thread
//!   busy-polls the sysfs value file), then `LockDoor` and wait for 0 outside the timing.
//! - `policy-*`: checkouts through keywarden-policyd against their own floor ([`policy`]).

mod policy;

use crate::board::{ids, BADGE_READER};
use crate::bus::{connect_as, hardware, wait_for_hardware};
use crate::report::line;
use crate::setup::Cabinet;
use crate::{Context, Result};
use evdev::KeyCode;
use futures_util::StreamExt;
use keywarden_dbus::names::HARDWARE_PATH;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Iterations per measurement (TCG: keep the whole run well under 3 minutes).
const ITERATIONS: usize = 200;

/// Sets up the cabinet and runs every measurement; returns whether all ran.
pub async fn run() -> bool {
    match measure_all().await {
        Ok(()) => {
            line("KWBENCH DONE");
            true
        }
        Err(e) => {
            line(&format!("KWBENCH FAIL {e}"));
            false
        }
    }
}

async fn measure_all() -> Result<()> {
    let mut cab = Cabinet::build().await?;
    let conn = connect_as(ids::KEYWARDEN_UID).await?;
    let owner = wait_for_hardware(&conn, Duration::from_secs(5)).await?;
    let floor = ping(&conn, &owner).await?;
    let floor_p50 = print("ping", &floor, None);
    let scans = badge_scans(&conn, &mut cab).await?;
    print("badge-scan", &scans, Some(floor_p50));
    let unlocks = unlocks(&conn, &cab).await?;
    print("unlock-gpio", &unlocks, Some(floor_p50));
    policy::measure(&mut cab).await
}

async fn ping(conn: &zbus::Connection, owner: &str) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        conn.call_method(
            Some(owner),
            HARDWARE_PATH,
            Some("org.freedesktop.DBus.Peer"),
            "Ping",
            &(),
        )
        .await
        .context("Peer.Ping")?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

async fn badge_scans(conn: &zbus::Connection, cab: &mut Cabinet) -> Result<Vec<Duration>> {
    let hw = hardware(conn).await?;
    let mut scans = hw.receive_badge_scanned().await.context("subscribing")?;
    let mut samples = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let code = format!("bench{i:04}");
        cab.badge.type_text(&code)?;
        cab.badge.key(KeyCode::KEY_ENTER, 1)?;
        let start = Instant::now();
        let signal = tokio::time::timeout(Duration::from_secs(5), scans.next())
            .await
            .map_err(|_| format!("no BadgeScanned for {code} within 5 s"))?
            .ok_or("the signal stream ended")?;
        samples.push(start.elapsed());
        cab.badge.key(KeyCode::KEY_ENTER, 0)?;
        let args = signal.args().context("BadgeScanned args")?;
        if args.reader != BADGE_READER || args.code != code {
            return Err(format!("scanned {code}, got {args:?}"));
        }
    }
    Ok(samples)
}

async fn unlocks(conn: &zbus::Connection, cab: &Cabinet) -> Result<Vec<Duration>> {
    let hw = hardware(conn).await?;
    let value = cab.lines.value_path("door-lock")?;
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let armed = Arc::new(AtomicBool::new(true));
        let watcher = {
            let (value, armed) = (value.clone(), armed.clone());
            std::thread::spawn(move || busy_wait_for_one(&value, &armed))
        };
        let start = Instant::now();
        let call = hw.unlock_door(5).await.context("UnlockDoor(5)");
        let seen = watch_result(watcher, &armed, call)?;
        samples.push(seen.saturating_duration_since(start));
        hw.lock_door().await.context("LockDoor")?;
        cab.lines
            .wait_value("door-lock", 0, Duration::from_secs(2))
            .await?;
    }
    Ok(samples)
}

/// Joins the poller; disarms it first if the call failed so it does not spin forever.
fn watch_result(
    watcher: std::thread::JoinHandle<Result<Instant>>,
    armed: &AtomicBool,
    call: Result<()>,
) -> Result<Instant> {
    if call.is_err() {
        armed.store(false, Ordering::Relaxed);
    }
    let seen = watcher.join().map_err(|_| "poller panicked".to_owned())?;
    call?;
    seen
}

/// Re-reads the sysfs value until it is 1 (or for at most 5 s, or until disarmed).
fn busy_wait_for_one(path: &std::path::Path, armed: &AtomicBool) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while armed.load(Ordering::Relaxed) && Instant::now() < deadline {
        let text = std::fs::read(path).context(format!("reading {}", path.display()))?;
        if text.first() == Some(&b'1') {
            return Ok(Instant::now());
        }
    }
    Err("door-lock never read 1".to_owned())
}

/// Prints one KWBENCH line; returns the p50.
fn print(name: &str, samples: &[Duration], floor_p50: Option<Duration>) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let p50 = percentile(&sorted, 50);
    let p99 = percentile(&sorted, 99);
    let ratio = match floor_p50 {
        Some(floor) if !floor.is_zero() => {
            format!(" ratio={:.1}x", p50.as_secs_f64() / floor.as_secs_f64())
        }
        _ => String::new(),
    };
    line(&format!(
        "KWBENCH {name} n={} p50={}us p99={}us{ratio}",
        sorted.len(),
        p50.as_micros(),
        p99.as_micros()
    ));
    p50
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
        assert_eq!(percentile(&samples[..1], 99), Duration::from_micros(1));
    }
}
