//! `keywarden hw ...` (the hardware service) and `keywarden sim ...` (the sim backend's control
//! surface): thin wrappers over the `keywarden-dbus` proxies.

use std::time::Duration;

use clap::Subcommand;
use futures_util::stream::StreamExt;
use keywarden_dbus::hardware::{Hardware1Proxy, HardwareSim1Proxy};
use zbus::Connection;

use crate::error::{call, Error};

/// The hardware service.
#[derive(Debug, Subcommand)]
pub enum Hw {
    /// Show door, lock, alarm, tamper, slots and fingerprint module state.
    Status,
    /// Print every signal as it arrives (Ctrl-C to stop).
    Watch {
        /// Stop after this many signals.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Unlock the door for SECONDS (1-60); it relocks by itself.
    Unlock { seconds: u32 },
    /// Lock the door now.
    Lock,
    /// Release one slot's lock for SECONDS (1-60).
    Release { slot: u32, seconds: u32 },
    /// Set a slot's LED: off, on or blink.
    Indicator { slot: u32, mode: String },
    /// Sound the buzzer: ack, error, attention or alarm.
    Beep { pattern: String },
    /// Enroll a finger as template ID (touch the sensor twice).
    Enroll { template_id: u32 },
    /// Delete fingerprint template ID.
    DeleteFinger { template_id: u32 },
    /// Run the non-actuating self-test; exit 1 if any check fails.
    Selftest,
}

/// The sim backend's control surface.
#[derive(Debug, Subcommand)]
pub enum Sim {
    /// Scan TEXT on badge reader READER.
    Scan { reader: String, text: String },
    /// Press keypad keys: 0-9, *, #, enter, clear, cancel.
    Keys { keypad: String, keys: Vec<String> },
    /// Open or close the door.
    Door { state: OpenClosed },
    /// Take a key out of a slot (empty) or put one in (occupied).
    Slot { slot: u32, state: Occupancy },
    /// Tamper switch on or off.
    Tamper { state: OnOff },
    /// Put finger ID on the sensor (-1 = an unknown finger).
    Finger {
        #[arg(allow_hyphen_values = true)]
        id: i32,
    },
    /// Lift the finger from the sensor.
    Lift,
    /// Read an output line: door-lock, buzzer, slot-N-lock, slot-N-led.
    Output { line: String },
    /// Cut the simulated wiring of a lock's feedback line (door-lock, slot-N-lock): it then
    /// stays where it is and the factory burn-in fails; `--mend` reconnects it.
    BreakFeedback {
        lock: String,
        /// Reconnect instead.
        #[arg(long)]
        mend: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OpenClosed {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Occupancy {
    Occupied,
    Empty,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Run one `hw` command.
pub async fn hw(conn: &Connection, cmd: Hw) -> Result<(), Error> {
    let hw = Hardware1Proxy::new(conn)
        .await
        .map_err(call("connect to org.keywarden.Hardware1"))?;
    match cmd {
        Hw::Status => status(&hw).await,
        Hw::Watch { count, seconds } => watch(&hw, count, seconds.map(Duration::from_secs)).await,
        Hw::Unlock { seconds } => hw.unlock_door(seconds).await.map_err(call("unlock door")),
        Hw::Lock => hw.lock_door().await.map_err(call("lock door")),
        Hw::Release { slot, seconds } => hw
            .release_slot(slot, seconds)
            .await
            .map_err(call(format!("release slot {slot}"))),
        Hw::Indicator { slot, mode } => hw
            .set_slot_indicator(slot, &mode)
            .await
            .map_err(call(format!("set slot {slot} indicator"))),
        Hw::Beep { pattern } => hw.beep(&pattern).await.map_err(call("beep")),
        Hw::Enroll { template_id } => {
            println!("touch the fingerprint sensor, lift, and touch again");
            hw.enroll_fingerprint(template_id)
                .await
                .map_err(call(format!("enroll template {template_id}")))?;
            println!("enrolled template {template_id}");
            Ok(())
        }
        Hw::DeleteFinger { template_id } => hw
            .delete_fingerprint(template_id)
            .await
            .map_err(call(format!("delete template {template_id}"))),
        Hw::Selftest => {
            let results = hw.self_test().await.map_err(call("self-test"))?;
            let mut failed = 0;
            for r in &results {
                println!(
                    "{:<5} {:<28} {}",
                    if r.passed { "ok" } else { "FAIL" },
                    r.check,
                    r.detail
                );
                failed += usize::from(!r.passed);
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
            if failed > 0 {
                return Err(Error::Call {
                    what: "self-test".into(),
                    source: Box::new(zbus::Error::Failure(format!("{failed} checks failed"))),
                });
            }
            Ok(())
        }
    }
}

async fn status(hw: &Hardware1Proxy<'_>) -> Result<(), Error> {
    let line = |k: &str, v: String| println!("{k:<12} {v}");
    line("board", hw.board().await.map_err(call("read Board"))?);
    line("backend", hw.backend().await.map_err(call("read Backend"))?);
    line(
        "door",
        hw.door_state().await.map_err(call("read DoorState"))?,
    );
    line(
        "door lock",
        hw.door_lock_state()
            .await
            .map_err(call("read DoorLockState"))?,
    );
    line(
        "door alarm",
        hw.door_alarm_state()
            .await
            .map_err(call("read DoorAlarmState"))?,
    );
    line(
        "tamper",
        hw.tamper_active()
            .await
            .map_err(call("read TamperActive"))?
            .to_string(),
    );
    line(
        "fingerprint",
        hw.fingerprint_module()
            .await
            .map_err(call("read FingerprintModule"))?,
    );
    println!("slot  key      lock      led");
    for s in hw.slots().await.map_err(call("read Slots"))? {
        println!(
            "{:<5} {:<8} {:<9} {}",
            s.number,
            if s.occupied { "present" } else { "out" },
            if s.released { "released" } else { "locked" },
            s.indicator
        );
    }
    Ok(())
}

/// Print the hardware service's signals, one line each.
async fn watch(
    hw: &Hardware1Proxy<'_>,
    count: Option<usize>,
    limit: Option<Duration>,
) -> Result<(), Error> {
    let mut all = hw
        .inner()
        .receive_all_signals()
        .await
        .map_err(call("subscribe to signals"))?;
    let mut seen = 0;
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, all.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(()),
            },
            None => all.next().await,
        };
        let Some(msg) = next else {
            return Err(Error::Gone);
        };
        let header = msg.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let body = msg.body();
        let args = match body.deserialize::<zbus::zvariant::Structure<'_>>() {
            Ok(s) => s
                .fields()
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => String::new(),
        };
        println!("signal {member} {args}");
        seen += 1;
    }
}

/// Run one `sim` command.
pub async fn sim(conn: &Connection, cmd: Sim) -> Result<(), Error> {
    let sim = HardwareSim1Proxy::new(conn)
        .await
        .map_err(call("connect to org.keywarden.HardwareSim1"))?;
    match cmd {
        Sim::Scan { reader, text } => sim.scan_badge(&reader, &text).await.map_err(call("scan")),
        Sim::Keys { keypad, keys } => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            sim.press_keys(&keypad, &keys)
                .await
                .map_err(call("press keys"))
        }
        Sim::Door { state } => sim
            .set_door(matches!(state, OpenClosed::Open))
            .await
            .map_err(call("set door")),
        Sim::Slot { slot, state } => sim
            .set_slot(slot, matches!(state, Occupancy::Occupied))
            .await
            .map_err(call(format!("set slot {slot}"))),
        Sim::Tamper { state } => sim
            .set_tamper(matches!(state, OnOff::On))
            .await
            .map_err(call("set tamper")),
        Sim::Finger { id } => sim
            .touch_fingerprint(id)
            .await
            .map_err(call("touch fingerprint")),
        Sim::Lift => sim.lift_fingerprint().await.map_err(call("lift finger")),
        Sim::Output { line } => {
            let on = sim
                .output(&line)
                .await
                .map_err(call(format!("read output {line}")))?;
            println!("{line} {}", if on { "active" } else { "inactive" });
            Ok(())
        }
        Sim::BreakFeedback { lock, mend } => sim
            .set_feedback_broken(&lock, !mend)
            .await
            .map_err(call(format!("break feedback of {lock}"))),
    }
}
