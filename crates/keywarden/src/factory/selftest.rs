//! `keywarden factory selftest`: the burn-in self-test of a finished cabinet, run as root on it.
//!
//! Three groups of checks, in this order:
//! - `hardware`: hwd's non-actuating `SelfTest` (every GPIO line held, readers and keypads
//!   grabbed, the fingerprint module's handshake).
//! - `burn-in`: hwd's `BurnIn` (root only): every lock cycled `--cycles` times through hwd's own
//!   bounded pulses, its feedback line (where the board file has one) checked `--settle-ms`
//!   after each drive, then every sensor read (door closed, tamper inactive, feedback locked,
//!   each slot's presence reported).
//! - `host`: the watchdog (`/dev/watchdog0` present and its sysfs identity, state and timeout;
//!   systemd holds the device on the appliance, so it is only looked at, never opened: opening
//!   it would arm it), the RTC (`/dev/rtc0` present, its time from sysfs within
//!   `--rtc-tolerance-s` of the system clock), the system clock (set: after 2026-01-01), and
//!   free space on the data partition (`/var/lib/keywarden`, at least `--min-free-mib`).
//!
//! The report (JSON, [`Report`]) is printed with `--json` (else a line per check and a summary)
//! and always saved, replacing the previous one atomically, at `--report`
//! (default [`DEFAULT_REPORT`], on the data partition, where the diagnostic bundle picks it up).
//!
//! Exit codes: 0 every check passed; 1 a check failed (the report says which); 2 refused: the
//! caller is not root (hwd's `BurnIn` is root's only) or an argument is out of range; 3 the
//! bus or the hardware service is unreachable (the host checks still ran and the report is
//! saved). A report that cannot be saved is exit 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keywarden_dbus::hardware::{Hardware1Proxy, SelfTestResult};
use serde::Serialize;

use crate::error::{exit, Error};
use crate::output::Output;

/// Where the last report is saved (the data partition survives updates).
pub const DEFAULT_REPORT: &str = "/var/lib/keywarden/factory/selftest.json";
/// The report's format version (the `format` field).
pub const REPORT_FORMAT: u32 = 1;
/// The system clock counts as set from 2026-01-01T00:00:00Z (as keywarden-policyd judges it).
const CLOCK_FLOOR: u64 = 1_767_225_600;

/// `keywarden factory selftest` options. The hidden ones point the host checks elsewhere
/// (tests use temporary files).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Times each lock is cycled (1-100).
    #[arg(long, default_value_t = 3)]
    pub cycles: u32,
    /// Settle time after driving a lock before its feedback is read, in milliseconds (10-10000).
    #[arg(long, default_value_t = 300)]
    pub settle_ms: u32,
    /// Where to save the report (replaced atomically).
    #[arg(long, default_value = DEFAULT_REPORT)]
    pub report: PathBuf,
    /// Least free space on the data partition, in MiB.
    #[arg(long, default_value_t = 64)]
    pub min_free_mib: u64,
    /// Largest difference between the RTC and the system clock, in seconds.
    #[arg(long, default_value_t = 5)]
    pub rtc_tolerance_s: u64,
    /// The watchdog device.
    #[arg(long, hide = true, default_value = "/dev/watchdog0")]
    pub watchdog_dev: PathBuf,
    /// The watchdog's sysfs directory.
    #[arg(long, hide = true, default_value = "/sys/class/watchdog/watchdog0")]
    pub watchdog_sysfs: PathBuf,
    /// Pass a watchdog nobody has armed (no systemd: the VM test harness).
    #[arg(long, hide = true)]
    pub allow_inactive_watchdog: bool,
    /// The RTC device.
    #[arg(long, hide = true, default_value = "/dev/rtc0")]
    pub rtc_dev: PathBuf,
    /// The RTC's sysfs directory.
    #[arg(long, hide = true, default_value = "/sys/class/rtc/rtc0")]
    pub rtc_sysfs: PathBuf,
    /// The data partition's mount point.
    #[arg(long, hide = true, default_value = "/var/lib/keywarden")]
    pub data_dir: PathBuf,
}

/// The saved report (`format` 1).
#[derive(Debug, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// When the run started, RFC 3339 UTC by the system clock.
    pub started: String,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// Every check passed.
    pub passed: bool,
    /// How many checks failed.
    pub failed: usize,
    /// The board model hwd reports (`Board` property), empty when unreachable.
    pub board: String,
    /// hwd's backend (`cdev` or `sim`), empty when unreachable.
    pub backend: String,
    /// Burn-in cycles asked for.
    pub cycles: u32,
    /// Settle time asked for, in milliseconds.
    pub settle_ms: u32,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

/// One check of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `hardware`, `burn-in` or `host`.
    pub group: &'static str,
    /// What was checked: `gpio:door-lock`, `lock:slot-2-lock`, `sensor:tamper`, `host:rtc`...
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was read, for a person.
    pub detail: String,
}

impl Check {
    fn new(group: &'static str, check: impl Into<String>, passed: bool, detail: String) -> Self {
        Check {
            group,
            check: check.into(),
            passed,
            detail,
        }
    }

    fn from_hwd(group: &'static str, r: SelfTestResult) -> Self {
        Check::new(group, r.check, r.passed, r.detail)
    }
}

/// Run the self-test; see the module docs for the exit codes.
pub async fn run(bus_address: Option<&str>, out: Output, args: Args) -> Result<(), Error> {
    let started_wall = SystemTime::now();
    let started = Instant::now();
    let mut checks = Vec::new();
    let mut worst = 0u8;
    let (board, backend) = hardware(bus_address, &args, &mut checks, &mut worst).await;
    checks.extend(host_checks(&args));
    let failed = checks.iter().filter(|c| !c.passed).count();
    let report = Report {
        format: REPORT_FORMAT,
        started: rfc3339(started_wall),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        passed: failed == 0,
        failed,
        board,
        backend,
        cycles: args.cycles,
        settle_ms: args.settle_ms,
        checks,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let saved = save(&args.report, &json);
    if out.json {
        println!("{json}");
    } else {
        print_human(&report, &args.report);
    }
    saved?;
    if failed == 0 {
        return Ok(());
    }
    let code = if worst == 0 { exit::FAILED } else { worst };
    Err(Error::Checks {
        message: format!(
            "factory selftest: {failed} of {} checks failed; report saved to {}",
            report.checks.len(),
            args.report.display()
        ),
        code,
    })
}

/// Longest a burn-in can take, plus a margin: the BurnIn call's timeout.
fn burn_in_timeout(args: &Args, locks: usize) -> Duration {
    let steps = u64::from(args.cycles) * 2 * u64::try_from(locks).unwrap_or(u64::MAX);
    Duration::from_millis(steps.saturating_mul(u64::from(args.settle_ms))) + Duration::from_secs(60)
}

/// The bus exit code of a failed call: refused (2), unreachable (3), or a failed check (1).
fn call_code(e: &zbus::Error) -> u8 {
    crate::error::call_exit_code(e)
}

/// hwd's checks: the self-test and the burn-in. Returns the board model and backend.
async fn hardware(
    bus_address: Option<&str>,
    args: &Args,
    checks: &mut Vec<Check>,
    worst: &mut u8,
) -> (String, String) {
    let mut note = |checks: &mut Vec<Check>, check: &str, what: String, code: u8| {
        checks.push(Check::new("hardware", check, false, what));
        *worst = (*worst).max(code);
    };
    // The burn-in's length depends on the lock count, known only once connected: connect once
    // with a timeout for the largest board this CLI accepts (100 cycles x 10 s would be hours:
    // the timeout is computed from the arguments and a generous 64 locks).
    let timeout = burn_in_timeout(args, 64);
    let builder = match bus_address {
        Some(addr) => zbus::connection::Builder::address(addr),
        None => zbus::connection::Builder::system(),
    };
    let conn = match builder {
        Ok(b) => b.method_timeout(timeout).build().await,
        Err(e) => Err(e),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            note(
                checks,
                "hwd",
                format!("cannot connect to the bus: {e}"),
                exit::UNREACHABLE,
            );
            return (String::new(), String::new());
        }
    };
    let hw = match Hardware1Proxy::new(&conn).await {
        Ok(hw) => hw,
        Err(e) => {
            note(
                checks,
                "hwd",
                format!("org.keywarden.Hardware1: {e}"),
                call_code(&e),
            );
            return (String::new(), String::new());
        }
    };
    let board = match hw.board().await {
        Ok(b) => b,
        Err(e) => {
            note(
                checks,
                "hwd",
                format!("reading Board: {}", described(&e)),
                call_code(&e),
            );
            return (String::new(), String::new());
        }
    };
    let backend = hw.backend().await.unwrap_or_default();
    match hw.self_test().await {
        Ok(results) => checks.extend(results.into_iter().map(|r| Check::from_hwd("hardware", r))),
        Err(e) => note(checks, "self-test", described(&e), call_code(&e)),
    }
    match hw.burn_in(args.cycles, args.settle_ms).await {
        Ok(results) => checks.extend(results.into_iter().map(|r| Check::from_hwd("burn-in", r))),
        Err(e) => {
            let code = call_code(&e);
            checks.push(Check::new("burn-in", "burn-in", false, described(&e)));
            // A refusal for the cabinet's state (door open, lock busy) is a failed check;
            // a refused caller or argument, or an unreachable service, keeps its own code.
            if code != exit::REFUSED || !is_state_refusal(&e) {
                *worst = (*worst).max(code);
            }
        }
    }
    (board, backend)
}

/// hwd refused the burn-in for the cabinet's state (door open, a lock or burn-in busy).
fn is_state_refusal(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.keywarden.Hardware1.Error.DoorOpen"
            || name.as_str() == "org.keywarden.Hardware1.Error.Busy")
}

/// A call's error for the report: hwd's message alone, else the D-Bus error in full.
fn described(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(message), _) => {
            let short = name.as_str().rsplit('.').next().unwrap_or_default();
            format!("refused ({short}): {message}")
        }
        other => other.to_string(),
    }
}

/// The checks on the host itself.
fn host_checks(args: &Args) -> Vec<Check> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    vec![
        watchdog(args),
        rtc(args, now),
        clock(now),
        data_partition(args),
    ]
}

fn read_attr(dir: &Path, name: &str) -> Result<String, String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn watchdog(args: &Args) -> Check {
    let check = |passed, detail| Check::new("host", "host:watchdog", passed, detail);
    let dev = args.watchdog_dev.display();
    if let Err(e) = std::fs::metadata(&args.watchdog_dev) {
        return check(false, format!("{dev}: {e}"));
    }
    let attrs = (|| {
        Ok::<_, String>((
            read_attr(&args.watchdog_sysfs, "identity")?,
            read_attr(&args.watchdog_sysfs, "state")?,
            read_attr(&args.watchdog_sysfs, "timeout")?,
        ))
    })();
    let (identity, state, timeout) = match attrs {
        Ok(a) => a,
        Err(e) => return check(false, format!("{dev} present; sysfs attributes: {e}")),
    };
    let armed = state == "active";
    let detail = format!(
        "{dev} present ({identity}), state {state}, timeout {timeout} s; read from sysfs, \
         not opened (systemd holds it)"
    );
    if armed || args.allow_inactive_watchdog {
        check(true, detail)
    } else {
        check(
            false,
            format!("{detail}: nobody arms it (systemd's RuntimeWatchdogSec should)"),
        )
    }
}

fn rtc(args: &Args, now: u64) -> Check {
    let check = |passed, detail| Check::new("host", "host:rtc", passed, detail);
    let dev = args.rtc_dev.display();
    if let Err(e) = std::fs::metadata(&args.rtc_dev) {
        return check(false, format!("{dev}: {e}"));
    }
    let rtc = match read_attr(&args.rtc_sysfs, "since_epoch").and_then(|s| {
        s.parse::<u64>()
            .map_err(|e| format!("since_epoch {s:?}: {e}"))
    }) {
        Ok(s) => s,
        Err(e) => return check(false, format!("{dev} present; {e}")),
    };
    let apart = rtc.abs_diff(now);
    let detail = format!(
        "{dev} reads {}, system clock {}: {apart} s apart (tolerance {} s)",
        rfc3339_secs(rtc),
        rfc3339_secs(now),
        args.rtc_tolerance_s
    );
    check(apart <= args.rtc_tolerance_s, detail)
}

fn clock(now: u64) -> Check {
    let set = now >= CLOCK_FLOOR;
    let detail = if set {
        format!("system clock {} (set)", rfc3339_secs(now))
    } else {
        format!(
            "system clock {}: not set (before {})",
            rfc3339_secs(now),
            rfc3339_secs(CLOCK_FLOOR)
        )
    };
    Check::new("host", "host:clock", set, detail)
}

// `fsblkcnt_t` is 32 bits on some targets (32-bit ARM boards), 64 on x86_64.
#[allow(clippy::useless_conversion)]
fn data_partition(args: &Args) -> Check {
    let check = |passed, detail| Check::new("host", "host:data-partition", passed, detail);
    let dir = args.data_dir.display();
    match nix::sys::statvfs::statvfs(&args.data_dir) {
        Ok(st) => {
            let block = st.fragment_size();
            let free = u64::from(st.blocks_available()).saturating_mul(block) >> 20;
            let total = u64::from(st.blocks()).saturating_mul(block) >> 20;
            check(
                free >= args.min_free_mib,
                format!(
                    "{dir}: {free} MiB free of {total} MiB (at least {} MiB needed)",
                    args.min_free_mib
                ),
            )
        }
        Err(e) => check(false, format!("{dir}: {e}")),
    }
}

fn rfc3339_secs(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{secs} s after the epoch"), |t| t.to_string())
}

fn rfc3339(t: SystemTime) -> String {
    rfc3339_secs(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Write the report next to its final path, flush it to disk, then rename it over the old one.
fn save(path: &Path, json: &str) -> Result<(), Error> {
    let what = format!("factory selftest: saving the report to {}", path.display());
    let io = |source| Error::Io {
        what: what.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(json.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

fn print_human(report: &Report, path: &Path) {
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_owned()
        } else {
            s.to_owned()
        }
    };
    println!(
        "factory selftest: board {} ({}), {} cycles, {} ms settle",
        or_unknown(&report.board),
        or_unknown(&report.backend),
        report.cycles,
        report.settle_ms
    );
    for c in &report.checks {
        println!(
            "{:<5} {:<9} {:<30} {}",
            if c.passed { "ok" } else { "FAIL" },
            c.group,
            c.check,
            c.detail
        );
    }
    let secs = Duration::from_millis(report.duration_ms).as_secs_f64();
    if report.passed {
        println!(
            "PASSED: {} checks in {secs:.1} s; report saved to {}",
            report.checks.len(),
            path.display()
        );
    } else {
        println!(
            "FAILED: {} of {} checks in {secs:.1} s; report saved to {}",
            report.failed,
            report.checks.len(),
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["selftest"];
        argv.extend_from_slice(extra);
        Cmd::parse_from(argv).args
    }

    #[test]
    fn host_checks_read_the_files_they_are_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let wd = d.join("wd");
        let rtc_dir = d.join("rtc");
        std::fs::create_dir_all(&wd).unwrap();
        std::fs::create_dir_all(&rtc_dir).unwrap();
        std::fs::write(d.join("watchdog0"), "").unwrap();
        std::fs::write(d.join("rtc0"), "").unwrap();
        std::fs::write(wd.join("identity"), "i6300ESB timer\n").unwrap();
        std::fs::write(wd.join("state"), "active\n").unwrap();
        std::fs::write(wd.join("timeout"), "30\n").unwrap();
        let now = CLOCK_FLOOR + 1_000_000;
        std::fs::write(rtc_dir.join("since_epoch"), format!("{}\n", now + 3)).unwrap();
        let p = |name: &str| d.join(name).to_str().unwrap().to_owned();
        let a = args(&[
            "--watchdog-dev",
            &p("watchdog0"),
            "--watchdog-sysfs",
            &p("wd"),
            "--rtc-dev",
            &p("rtc0"),
            "--rtc-sysfs",
            &p("rtc"),
            "--data-dir",
            &p(""),
        ]);
        let w = watchdog(&a);
        assert!(w.passed, "{w:?}");
        assert!(w.detail.contains("i6300ESB timer"), "{w:?}");
        assert!(w.detail.contains("not opened"), "{w:?}");
        let r = rtc(&a, now);
        assert!(r.passed, "{r:?}");
        assert!(r.detail.contains("3 s apart (tolerance 5 s)"), "{r:?}");
        let r = rtc(&a, now + 100);
        assert!(!r.passed, "{r:?}");
        assert!(clock(now).passed);
        let c = clock(1_000);
        assert!(!c.passed);
        assert!(c.detail.contains("not set"), "{c:?}");
        assert!(data_partition(&a).passed);
        let greedy = args(&["--data-dir", &p(""), "--min-free-mib", "999999999"]);
        let c = data_partition(&greedy);
        assert!(!c.passed && c.detail.contains("MiB free"), "{c:?}");

        std::fs::write(wd.join("state"), "inactive\n").unwrap();
        let w = watchdog(&a);
        assert!(!w.passed && w.detail.contains("nobody arms it"), "{w:?}");
        std::fs::remove_file(d.join("rtc0")).unwrap();
        let r = rtc(&a, now);
        assert!(!r.passed && r.detail.contains("rtc0"), "{r:?}");
    }

    #[test]
    fn the_burn_in_timeout_covers_every_step() {
        let a = args(&["--cycles", "3", "--settle-ms", "500"]);
        assert_eq!(
            burn_in_timeout(&a, 5),
            Duration::from_millis(3 * 5 * 2 * 500) + Duration::from_secs(60)
        );
    }
}
