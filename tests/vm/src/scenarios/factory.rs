//! The factory burn-in self-test, `keywarden factory selftest`, run as root (as on the factory
//! floor) against the real hwd on cdev: every lock cycled on real gpio-sim lines, each lock's
//! feedback line following it through the harness's wiring ([`crate::gpiosim::Wiring`]), the
//! sensors read, the RTC (`/dev/rtc0`), the watchdog (softdog, unarmed here: no systemd) and
//! the data partition checked. A good cabinet passes; then one feedback wire is cut and the
//! tamper switch tripped, and it fails naming both. Runs last: it sets the system clock from
//! the RTC first (`hwclock -s -u`), which the earlier scenarios run without.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Ctx;
use crate::board::{FEEDBACK, LOCKS};
use crate::bus::SYSTEM_BUS_SOCKET;
use crate::policy::error_name;
use crate::report::Report;
use crate::setup::progress;
use crate::{Context, Result};

/// Time limit of one self-test scenario: 3 cycles x 5 locks x 2 x 300 ms, and TCG.
const LIMIT: Duration = Duration::from_secs(180);
/// Cycles and settle time of the VM runs (the CLI's defaults).
const CYCLES: u32 = 3;
const SETTLE_MS: u32 = 300;
/// Where the report goes (the CLI's default path, on the VM's data disk).
const REPORT: &str = "/var/lib/keywarden/factory/selftest.json";

/// The self-test scenarios.
pub async fn run_all(report: &mut Report, ctx: &mut Ctx) {
    report.run("factory-selftest-pass", LIMIT, pass(ctx)).await;
    report.run("factory-selftest-fail", LIMIT, fail(ctx)).await;
}

/// `keywarden --json factory selftest ...` as root; its exit code, JSON report and wall time.
async fn selftest() -> Result<(Option<i32>, Value, Duration)> {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(|| {
        Command::new("keywarden")
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={SYSTEM_BUS_SOCKET}"),
            )
            .args(["--json", "factory", "selftest"])
            .args(["--cycles", &CYCLES.to_string()])
            .args(["--settle-ms", &SETTLE_MS.to_string()])
            .args(["--report", REPORT])
            // No systemd here to arm the watchdog; the VM's data disk is 64 MiB.
            .args(["--allow-inactive-watchdog", "--min-free-mib", "16"])
            .output()
    })
    .await
    .map_err(|e| format!("selftest thread: {e}"))?
    .context("running keywarden factory selftest")?;
    let took = started.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "stdout is not JSON ({e}): {} | stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), report, took))
}

fn check<'a>(report: &'a Value, name: &str) -> Result<&'a Value> {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == name))
        .ok_or_else(|| format!("no check {name} in the report: {report}"))
}

fn expect(report: &Value, name: &str, passed: bool, detail_has: &str) -> Result<()> {
    let c = check(report, name)?;
    let detail = c["detail"].as_str().unwrap_or_default();
    if c["passed"] != passed || !detail.contains(detail_has) {
        return Err(format!(
            "{name}: expected passed={passed} with {detail_has:?}, got {c}"
        ));
    }
    Ok(())
}

/// The role of a lock line: `door-lock`, `slot-3-lock` (board line `slot3-lock`).
fn role(line: &str) -> String {
    match line.strip_prefix("slot") {
        Some(rest) => format!("slot-{rest}"),
        None => line.to_owned(),
    }
}

async fn pass(ctx: &mut Ctx) -> Result<()> {
    // The RTC holds the host's time; the initramfs never copied it to the system clock.
    let status = Command::new("hwclock")
        .args(["-s", "-u"])
        .status()
        .context("hwclock -s -u")?;
    if !status.success() {
        return Err(format!("hwclock -s -u: {status}"));
    }
    // Root only: the keywarden user is refused (by the bus policy, before hwd's own check).
    let refused = ctx.hw.burn_in(1, 100).await;
    match refused {
        Err(e) if error_name(&e) == "org.freedesktop.DBus.Error.AccessDenied" => {}
        other => return Err(format!("BurnIn as keywarden: {other:?}")),
    }

    let (code, report, took) = selftest().await?;
    if code != Some(0) || report["passed"] != true {
        return Err(format!("exit {code:?}: {report}"));
    }
    if report["backend"] != "cdev" || report["board"] != "qemu-cabinet-4" {
        return Err(format!("board/backend: {report}"));
    }
    for (lock, fb) in FEEDBACK {
        let line = format!("feedback {fb:?} followed each time ({SETTLE_MS} ms settle)");
        expect(&report, &format!("lock:{}", role(lock)), true, &line)?;
    }
    expect(&report, "sensor:door-sensor", true, "closed")?;
    expect(&report, "sensor:tamper", true, "not tampered")?;
    // Either state passes (the policy scenarios leave keys out); the line must have been read.
    expect(
        &report,
        "sensor:slot-1-presence",
        true,
        r#"(line "slot1-presence" reads "#,
    )?;
    expect(&report, "sensor:slot-4-lock-feedback", true, "locked")?;
    expect(
        &report,
        "host:watchdog",
        true,
        "not opened (systemd holds it)",
    )?;
    expect(&report, "host:rtc", true, "/dev/rtc0 reads")?;
    expect(&report, "host:clock", true, "(set)")?;
    expect(&report, "host:data-partition", true, "MiB free")?;
    expect(&report, "input:badge", true, "grabbed")?;
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(REPORT)).context(format!("reading {REPORT}"))?,
    )
    .context(format!("parsing {REPORT}"))?;
    if saved != report {
        return Err(format!("{REPORT} differs from what was printed"));
    }
    for lock in LOCKS {
        ctx.cab.lines.expect_value(lock, 0, "after the burn-in")?;
    }
    progress(&format!(
        "factory selftest passed: {} checks, {CYCLES} cycles x {} locks, {SETTLE_MS} ms settle, \
         {} ms by the report, {} ms wall",
        report["checks"].as_array().map_or(0, Vec::len),
        LOCKS.len(),
        report["duration_ms"],
        took.as_millis()
    ));
    Ok(())
}

async fn fail(ctx: &mut Ctx) -> Result<()> {
    ctx.cab.wiring.cut("slot3-lock", true);
    ctx.cab.lines.pull("tamper", true)?;
    let outcome = selftest().await;
    ctx.cab.wiring.cut("slot3-lock", false);
    ctx.cab.lines.pull("tamper", false)?;
    let (code, report, took) = outcome?;
    if code != Some(1) || report["passed"] != false {
        return Err(format!("exit {code:?}: {report}"));
    }
    expect(
        &report,
        "lock:slot-3-lock",
        false,
        &format!("cycle 1: driven released, feedback read locked after {SETTLE_MS} ms"),
    )?;
    expect(&report, "lock:slot-3-lock", false, "cycle 3:")?;
    expect(&report, "lock:slot-2-lock", true, "followed each time")?;
    expect(
        &report,
        "sensor:tamper",
        false,
        "tampered: the enclosure must be closed",
    )?;
    if report["failed"] != 2 {
        return Err(format!("expected exactly 2 failed checks: {report}"));
    }
    for lock in LOCKS {
        ctx.cab
            .lines
            .expect_value(lock, 0, "after the failed burn-in")?;
    }
    progress(&format!(
        "factory selftest failed as expected in {} ms wall (slot 3 feedback cut, tamper tripped)",
        took.as_millis()
    ));
    Ok(())
}
