//! The VM scenarios: each drives real kernel devices (uinput, gpio-sim) and checks what the
//! daemon does on the bus and on the GPIO lines. Clients are the `keywarden` user (uid 900),
//! except where a scenario says otherwise. Scenarios leave the cabinet as they found it: door
//! closed and locked, every key in its slot. The policy scenarios ([`policy`]) run next to last,
//! with keywarden-policyd started next to hwd; the factory self-test ([`factory`]) runs last.

mod factory;
mod policy;

use crate::board::{ids, BADGE_MAX_LENGTH, BADGE_READER, CHIPS, KEYPAD};
use crate::bus::{connect_as, hardware};
use crate::report::Report;
use crate::setup::{progress, Cabinet};
use crate::{Context, Result};
use evdev::KeyCode;
use futures_util::{Stream, StreamExt};
use keywarden_dbus::hardware::Hardware1Proxy;
use std::time::{Duration, Instant};

/// Time limit of one scenario.
const LIMIT: Duration = Duration::from_secs(45);
/// How long a signal may take to arrive (generous: TCG).
pub(crate) const SIGNAL: Duration = Duration::from_secs(5);
/// How long an output may take to follow a request or a sensor change.
pub(crate) const PROMPT: Duration = Duration::from_millis(500);

/// What every scenario gets: the cabinet and a client connected as `keywarden`.
pub struct Ctx {
    /// The devices and processes.
    pub cab: Cabinet,
    /// `org.keywarden.Hardware1` as uid 900.
    pub hw: Hardware1Proxy<'static>,
}

/// Builds the cabinet and runs every scenario; returns whether all passed.
pub async fn run_all() -> bool {
    let mut report = Report::default();
    // Before the cabinet exists, so its uinput devices cannot collide with the tests' own.
    report
        .run("hwd-device-unit-tests", LIMIT, hwd_device_unit_tests())
        .await;
    let mut ctx = match setup().await {
        Ok(ctx) => ctx,
        Err(e) => {
            report.fail("setup", &e);
            return report.done();
        }
    };
    report.run("badge-scan", LIMIT, badge_scan(&mut ctx)).await;
    report
        .run("badge-rejects", LIMIT, badge_rejects(&mut ctx))
        .await;
    report
        .run("badge-overflow", LIMIT, badge_overflow(&mut ctx))
        .await;
    report.run("keypad", LIMIT, keypad(&mut ctx)).await;
    report
        .run("unlock-pulse", LIMIT, unlock_pulse(&mut ctx))
        .await;
    report
        .run("door-relock-on-close", LIMIT, relock_on_close(&mut ctx))
        .await;
    report
        .run("door-forced", LIMIT, door_forced(&mut ctx))
        .await;
    report
        .run("slot-release", LIMIT, slot_release(&mut ctx))
        .await;
    report
        .run("crash-relock", LIMIT, crash_relock(&mut ctx))
        .await;
    report
        .run("intruder-refused", LIMIT, intruder(&mut ctx))
        .await;
    report
        .run("fingerprint", LIMIT, fingerprint(&mut ctx))
        .await;
    policy::run_all(&mut report, &mut ctx).await;
    // Last: it sets the system clock from the RTC.
    factory::run_all(&mut report, &mut ctx).await;
    report.done()
}

/// Where xtask installs keywarden-hwd's unit-test binary.
const HWD_UNIT_TESTS: &str = "/usr/bin/keywarden-hwd-unit-tests";

/// keywarden-hwd's unit tests that need real kernel devices (`#[ignore = "needs /dev/uinput"]` on
/// hosts without uinput): exclusive grab, lookup by name, ambiguity. They run here, where
/// `/dev/uinput` exists; the scenario fails unless every one of them ran and passed.
async fn hwd_device_unit_tests() -> Result<()> {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(HWD_UNIT_TESTS)
            .args(["--ignored", "--test-threads=1", "input::evdev_device"])
            .output()
    })
    .await
    .map_err(|e| format!("test thread: {e}"))?
    .context(HWD_UNIT_TESTS)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("no test result line");
    if !out.status.success() || !summary.contains(" 0 failed") || summary.contains(" 0 passed") {
        return Err(format!(
            "{summary}; {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    progress(&format!("keywarden-hwd device unit tests: {summary}"));
    Ok(())
}

async fn setup() -> Result<Ctx> {
    let cab = Cabinet::build().await?;
    let conn = connect_as(ids::KEYWARDEN_UID).await?;
    let hw = hardware(&conn).await?;
    Ok(Ctx { cab, hw })
}

/// Devices and bus only, no daemon: checks the VM plumbing.
pub async fn smoke() -> bool {
    let mut report = Report::default();
    report.run("smoke", LIMIT, smoke_checks()).await;
    report.done()
}

async fn smoke_checks() -> Result<()> {
    let cab = Cabinet::devices_and_bus()?;
    for (_, names) in CHIPS {
        for name in names.iter() {
            cab.lines.value(name)?;
        }
    }
    progress(&gpioinfo()?);
    let conn = connect_as(ids::KEYWARDEN_UID).await?;
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .context("bus proxy")?;
    let me = conn
        .unique_name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let uid = dbus
        .get_connection_unix_user(me.as_str().try_into().context("unique name")?)
        .await
        .context("GetConnectionUnixUser")?;
    if uid != ids::KEYWARDEN_UID {
        return Err(format!(
            "bus sees uid {uid}, expected {}",
            ids::KEYWARDEN_UID
        ));
    }
    progress(&format!("bus client {me} is uid {uid}"));
    Ok(())
}

/// A badge typed on the uinput reader, then Enter, arrives as `BadgeScanned`.
async fn badge_scan(ctx: &mut Ctx) -> Result<()> {
    let mut scans = ctx
        .hw
        .receive_badge_scanned()
        .await
        .context("subscribing")?;
    ctx.cab.badge.type_text("kw0042")?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    let args = next(&mut scans, "BadgeScanned").await?;
    let args = args.args().context("BadgeScanned args")?;
    expect_eq(
        (args.reader.as_str(), args.code.as_str()),
        (BADGE_READER, "kw0042"),
    )
}

/// A non-printable key mid-scan, and a scan over the reader's limit, give `ScanRejected`.
async fn badge_rejects(ctx: &mut Ctx) -> Result<()> {
    let mut rejects = ctx
        .hw
        .receive_scan_rejected()
        .await
        .context("subscribing")?;
    ctx.cab.badge.type_text("12")?;
    ctx.cab.badge.tap(KeyCode::KEY_F5)?;
    ctx.cab.badge.type_text("3")?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    expect_rejected(&mut rejects, "garbled").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.cab.badge.type_text(&"7".repeat(BADGE_MAX_LENGTH + 8))?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    expect_rejected(&mut rejects, "too-long").await
}

/// A burst of 100 characters, which may overflow the kernel's buffer for the reader (events
/// lost, SYN_DROPPED), is rejected (garbled with the drop named, or too long), never passed on
/// as a scan; the next scan decodes normally.
async fn badge_overflow(ctx: &mut Ctx) -> Result<()> {
    let mut rejects = ctx
        .hw
        .receive_scan_rejected()
        .await
        .context("subscribing")?;
    let mut scans = ctx
        .hw
        .receive_badge_scanned()
        .await
        .context("subscribing")?;
    ctx.cab.badge.burst(KeyCode::KEY_7, 100)?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    // Whether the kernel's buffer overflows depends on whether hwd's reader drained it during
    // the burst (the scheduler decides): either way the scan must be rejected, not passed on,
    // as "garbled" (events dropped, SYN_DROPPED) or "too-long" (all 100 characters arrived).
    // The SYN_DROPPED path itself is unit-tested in the wedge decoder.
    let signal = next(&mut rejects, "ScanRejected").await?;
    let args = signal.args().context("ScanRejected args")?;
    let rejected = args.reader == BADGE_READER
        && (args.reason.starts_with("garbled: key events were dropped")
            || args.reason.starts_with("too-long"));
    if !rejected {
        return Err(format!(
            "got {args:?}, expected a garbled or too-long rejection"
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A too-long scan is rejected at its 33rd character; the rest of the burst and its Enter
    // may make one more rejection, which must not be mistaken for the next scan.
    while let Ok(Some(extra)) =
        tokio::time::timeout(Duration::from_millis(200), rejects.next()).await
    {
        let a = extra.args().context("ScanRejected args")?;
        if a.reader != BADGE_READER {
            return Err(format!("unexpected rejection {a:?}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.cab.badge.type_text("AFTER-1")?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    let scan = next(&mut scans, "BadgeScanned").await?;
    let args = scan.args().context("BadgeScanned args")?;
    if args.code != "AFTER-1" {
        return Err(format!(
            "the scan after the overflow decoded as {:?}",
            args.code
        ));
    }
    Ok(())
}

async fn expect_rejected<S>(rejects: &mut S, reason: &str) -> Result<()>
where
    S: Stream<Item = keywarden_dbus::hardware::ScanRejected> + Unpin,
{
    let signal = next(rejects, "ScanRejected").await?;
    let args = signal.args().context("ScanRejected args")?;
    if args.reader == BADGE_READER && args.reason.starts_with(reason) {
        Ok(())
    } else {
        Err(format!(
            "got {args:?}, expected reader {BADGE_READER:?} and a reason starting {reason:?}"
        ))
    }
}

/// Keypad digits and Enter arrive as `KeypadKey` signals, in order.
async fn keypad(ctx: &mut Ctx) -> Result<()> {
    let mut keys = ctx.hw.receive_keypad_key().await.context("subscribing")?;
    let typed = [
        (KeyCode::KEY_1, "1"),
        (KeyCode::KEY_9, "9"),
        (KeyCode::KEY_KP4, "4"),
        (KeyCode::KEY_0, "0"),
        (KeyCode::KEY_ENTER, "enter"),
    ];
    for (key, _) in typed {
        ctx.cab.keypad.tap(key)?;
    }
    for (_, want) in typed {
        let signal = next(&mut keys, "KeypadKey").await?;
        let args = signal.args().context("KeypadKey args")?;
        expect_eq((args.keypad.as_str(), args.key.as_str()), (KEYPAD, want))?;
    }
    Ok(())
}

/// `UnlockDoor(2)` energises the lock at once, keeps it so at 1 s, and it drops by itself by 3 s.
async fn unlock_pulse(ctx: &mut Ctx) -> Result<()> {
    let mut changes = ctx
        .hw
        .receive_door_lock_changed()
        .await
        .context("subscribing")?;
    let start = Instant::now();
    ctx.hw.unlock_door(2).await.context("UnlockDoor(2)")?;
    ctx.cab.lines.wait_value("door-lock", 1, PROMPT).await?;
    expect_locked_signal(&mut changes, false).await?;
    tokio::time::sleep_until((start + Duration::from_secs(1)).into()).await;
    ctx.cab
        .lines
        .expect_value("door-lock", 1, "1 s into a 2 s unlock")?;
    let remaining = Duration::from_secs(3).saturating_sub(start.elapsed());
    ctx.cab.lines.wait_value("door-lock", 0, remaining).await?;
    expect_locked_signal(&mut changes, true).await
}

async fn expect_locked_signal<S>(changes: &mut S, locked: bool) -> Result<()>
where
    S: Stream<Item = keywarden_dbus::hardware::DoorLockChanged> + Unpin,
{
    let signal = next(changes, "DoorLockChanged").await?;
    let args = signal.args().context("DoorLockChanged args")?;
    expect_eq(
        ("DoorLockChanged", args.locked),
        ("DoorLockChanged", locked),
    )
}

/// Opening the unlocked door gives `DoorChanged(true)`; closing it `DoorChanged(false)`, and the
/// lock relocks at once instead of waiting for the deadline.
async fn relock_on_close(ctx: &mut Ctx) -> Result<()> {
    let mut doors = ctx.hw.receive_door_changed().await.context("subscribing")?;
    ctx.hw.unlock_door(20).await.context("UnlockDoor(20)")?;
    ctx.cab.lines.wait_value("door-lock", 1, PROMPT).await?;
    ctx.cab.lines.pull("door-sensor", true)?;
    expect_door(&mut doors, true).await?;
    ctx.cab
        .lines
        .expect_value("door-lock", 1, "while the door is open")?;
    ctx.cab.lines.pull("door-sensor", false)?;
    expect_door(&mut doors, false).await?;
    ctx.cab
        .lines
        .wait_value("door-lock", 0, PROMPT)
        .await
        .map(drop)
}

async fn expect_door<S>(doors: &mut S, open: bool) -> Result<()>
where
    S: Stream<Item = keywarden_dbus::hardware::DoorChanged> + Unpin,
{
    let signal = next(doors, "DoorChanged").await?;
    let args = signal.args().context("DoorChanged args")?;
    expect_eq(("DoorChanged", args.open), ("DoorChanged", open))
}

/// Opening the door while it is locked raises `DoorAlarm("forced", true)`.
async fn door_forced(ctx: &mut Ctx) -> Result<()> {
    ctx.cab
        .lines
        .expect_value("door-lock", 0, "before forcing the door")?;
    let mut alarms = ctx.hw.receive_door_alarm().await.context("subscribing")?;
    ctx.cab.lines.pull("door-sensor", true)?;
    let signal = next(&mut alarms, "DoorAlarm").await;
    ctx.cab.lines.pull("door-sensor", false)?;
    let signal = signal?;
    let args = signal.args().context("DoorAlarm args")?;
    expect_eq((args.kind.as_str(), args.active), ("forced", true))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// `ReleaseSlot(1, 5)` energises the slot lock; taking the key out gives
/// `SlotChanged(1, false, false)` and relocks the slot at once.
async fn slot_release(ctx: &mut Ctx) -> Result<()> {
    let mut slots = ctx.hw.receive_slot_changed().await.context("subscribing")?;
    ctx.hw
        .release_slot(1, 5)
        .await
        .context("ReleaseSlot(1, 5)")?;
    ctx.cab.lines.wait_value("slot1-lock", 1, PROMPT).await?;
    ctx.cab.lines.pull("slot1-presence", false)?;
    let checked = async {
        let signal = next(&mut slots, "SlotChanged").await?;
        let args = signal.args().context("SlotChanged args")?;
        expect_eq(
            (args.slot, args.occupied, args.while_locked),
            (1, false, false),
        )?;
        ctx.cab
            .lines
            .wait_value("slot1-lock", 0, PROMPT)
            .await
            .map(drop)
    }
    .await;
    ctx.cab.lines.pull("slot1-presence", true)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    checked
}

/// SIGKILL during an unlock, with the lock line pulled towards "unlocked" while nobody drives
/// it: the restarted daemon drives it locked before it even takes its bus name, and holds every
/// line under a `keywarden` consumer name.
async fn crash_relock(ctx: &mut Ctx) -> Result<()> {
    ctx.hw.unlock_door(30).await.context("UnlockDoor(30)")?;
    ctx.cab.lines.wait_value("door-lock", 1, PROMPT).await?;
    ctx.cab.kill_hwd()?;
    ctx.cab.lines.pull("door-lock", true)?;
    let result = restart_and_check(ctx).await;
    ctx.cab.lines.pull("door-lock", false)?;
    result
}

async fn restart_and_check(ctx: &mut Ctx) -> Result<()> {
    ctx.cab.lines.expect_value(
        "door-lock",
        1,
        "with the daemon dead and the line pulled up",
    )?;
    ctx.cab.start_hwd().await?;
    ctx.cab
        .lines
        .expect_value("door-lock", 0, "once the restarted daemon owns its name")?;
    let info = gpioinfo()?;
    for (_, names) in CHIPS {
        for name in names.iter() {
            match consumer(&info, name) {
                Some(c) if c.starts_with("keywarden") => {}
                other => {
                    return Err(format!(
                        "gpioinfo: line {name} consumer {other:?}, expected keywarden*"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Runs `gpioinfo` (libgpiod 1.6).
fn gpioinfo() -> Result<String> {
    let out = std::process::Command::new("gpioinfo")
        .output()
        .context("running gpioinfo")?;
    if !out.status.success() {
        return Err(format!("gpioinfo: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The consumer of the line named `name` in `gpioinfo` output
/// (`line 0: "door-lock" "keywarden-hwd" output active-high [used]`).
fn consumer<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    let quoted = format!("\"{name}\"");
    let line = info.lines().find(|l| l.contains(&quoted))?;
    let fields: Vec<&str> = line.split('"').collect();
    fields.get(3).copied()
}

/// Another uid (`intruder`) is refused by the bus policy and never sees the daemon's signals.
async fn intruder(ctx: &mut Ctx) -> Result<()> {
    let conn = connect_as(ids::INTRUDER_UID).await?;
    let hw = hardware(&conn).await?;
    match hw.unlock_door(2).await {
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.AccessDenied" => {}
        other => {
            return Err(format!(
                "intruder's UnlockDoor(2) gave {other:?}, expected AccessDenied"
            ))
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.cab
        .lines
        .expect_value("door-lock", 0, "after the intruder's UnlockDoor")?;
    let mut stolen = hw
        .receive_badge_scanned()
        .await
        .context("intruder subscribing")?;
    let mut scans = ctx
        .hw
        .receive_badge_scanned()
        .await
        .context("subscribing")?;
    ctx.cab.badge.type_text("secret77")?;
    ctx.cab.badge.tap(KeyCode::KEY_ENTER)?;
    next(&mut scans, "BadgeScanned (as keywarden)").await?;
    match tokio::time::timeout(Duration::from_secs(1), stolen.next()).await {
        Err(_) | Ok(None) => Ok(()),
        Ok(Some(signal)) => Err(format!("the intruder received {:?}", signal.args())),
    }
}

/// A touch with an enrolled finger gives `FingerprintMatched(7, score)`; an unknown finger
/// `FingerprintNotMatched`.
async fn fingerprint(ctx: &mut Ctx) -> Result<()> {
    let mut matched = ctx
        .hw
        .receive_fingerprint_matched()
        .await
        .context("subscribing")?;
    let mut unmatched = ctx
        .hw
        .receive_fingerprint_not_matched()
        .await
        .context("subscribing")?;
    let signal = touch(ctx, true, &mut matched, "FingerprintMatched").await?;
    let args = signal.args().context("FingerprintMatched args")?;
    expect_eq(args.template_id, crate::fingerprint::ENROLLED)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    touch(ctx, false, &mut unmatched, "FingerprintNotMatched")
        .await
        .map(drop)
}

/// Places a finger, closes the touch line, waits for the signal on `stream`, lifts the finger.
async fn touch<S: Stream + Unpin>(
    ctx: &mut Ctx,
    enrolled: bool,
    stream: &mut S,
    what: &str,
) -> Result<S::Item> {
    ctx.cab.fingerprint.place_finger(Some(enrolled));
    ctx.cab.lines.pull("fp-touch", true)?;
    let signal = next(stream, what).await;
    ctx.cab.lines.pull("fp-touch", false)?;
    ctx.cab.fingerprint.place_finger(None);
    signal
}

/// The next item of a signal stream, within [`SIGNAL`].
async fn next<S: Stream + Unpin>(stream: &mut S, what: &str) -> Result<S::Item> {
    match tokio::time::timeout(SIGNAL, stream.next()).await {
        Ok(Some(item)) => Ok(item),
        Ok(None) => Err(format!("{what}: the signal stream ended")),
        Err(_) => Err(format!("no {what} signal within {SIGNAL:?}")),
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {want:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::consumer;

    #[test]
    fn consumer_is_read_from_gpioinfo_lines() {
        let info = "gpiochip0 - 2 lines:\n\tline   0:  \"door-lock\" \"keywarden-door\" output active-high [used]\n\tline   1: \"door-sensor\" unused input active-high \n";
        assert_eq!(consumer(info, "door-lock"), Some("keywarden-door"));
        assert_eq!(consumer(info, "door-sensor"), None);
        assert_eq!(consumer(info, "buzzer"), None);
    }
}
