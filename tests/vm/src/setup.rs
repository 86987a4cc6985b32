//! Builds the cabinet inside the VM: gpio-sim chips, uinput devices, the fingerprint pty, the
//! system bus, and the hardware daemon as its own user. Also stops and restarts the daemon, as
//! systemd's `Restart=always` would.

use crate::board::{ids, BADGE_DEVICE, BOARD_FILE, CHIPS, FEEDBACK, INITIALLY_HIGH, KEYPAD_DEVICE};
use crate::bus::{connect_as, wait_for_hardware, SYSTEM_BUS_SOCKET};
use crate::fingerprint::FingerprintPort;
use crate::gpiosim::{SimLines, Wiring};
use crate::uinput::Keyboard;
use crate::{Context, Result};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long the daemon may take from exec to owning its bus name (TCG is slow).
const HWD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the scenarios drive and observe.
pub struct Cabinet {
    /// The simulated GPIO lines.
    pub lines: SimLines,
    /// The lock feedback lines' wiring (each follows its lock output).
    pub wiring: Wiring,
    /// The uinput badge reader.
    pub badge: Keyboard,
    /// The uinput keypad.
    pub keypad: Keyboard,
    /// The fingerprint port, served by the module emulator.
    pub fingerprint: FingerprintPort,
    dbus: Child,
    hwd: Option<Child>,
}

impl Cabinet {
    /// Creates the devices and starts the bus (but not the daemon).
    pub fn devices_and_bus() -> Result<Self> {
        let lines = SimLines::create(CHIPS)?;
        for line in INITIALLY_HIGH {
            lines.pull(line, true)?;
        }
        for chip in lines.chip_names() {
            grant(&Path::new("/dev").join(chip), ids::GPIO_GID)?;
        }
        let wiring = Wiring::start(&lines, FEEDBACK)?;
        progress(&format!(
            "gpio-sim chips live: {}",
            lines.chip_names().join(", ")
        ));
        let badge = Keyboard::badge_reader(BADGE_DEVICE)?;
        let keypad = Keyboard::keypad(KEYPAD_DEVICE)?;
        badge.grant(ids::INPUT_GID)?;
        keypad.grant(ids::INPUT_GID)?;
        progress(&format!(
            "uinput devices: badge {}, keypad {}",
            badge.node.display(),
            keypad.node.display()
        ));
        let fingerprint = FingerprintPort::open()?;
        progress(&format!(
            "fingerprint emulator on {}",
            fingerprint.slave_path.display()
        ));
        let dbus = start_dbus()?;
        progress("dbus-daemon --system is up");
        Ok(Cabinet {
            lines,
            wiring,
            badge,
            keypad,
            fingerprint,
            dbus,
            hwd: None,
        })
    }

    /// Creates everything and starts the daemon.
    pub async fn build() -> Result<Self> {
        let mut cabinet = Self::devices_and_bus()?;
        cabinet.start_hwd().await?;
        Ok(cabinet)
    }

    /// Starts `keywarden-hwd` and waits until it owns its bus name.
    pub async fn start_hwd(&mut self) -> Result<()> {
        let started = Instant::now();
        let child = spawn_hwd()?;
        self.hwd = Some(child);
        let root = connect_as(0).await?;
        match wait_for_hardware(&root, HWD_START_TIMEOUT).await {
            Ok(_) => {
                progress(&format!("keywarden-hwd up in {:?}", started.elapsed()));
                Ok(())
            }
            Err(e) => Err(format!("{e} ({})", self.hwd_status())),
        }
    }

    /// SIGKILLs the daemon and reaps it.
    pub fn kill_hwd(&mut self) -> Result<()> {
        let mut child = self.hwd.take().ok_or("keywarden-hwd is not running")?;
        child.kill().context("SIGKILL keywarden-hwd")?;
        child.wait().context("reaping keywarden-hwd")?;
        Ok(())
    }

    /// Whether the daemon is still running, for error messages.
    pub fn hwd_status(&mut self) -> String {
        match self.hwd.as_mut().map(Child::try_wait) {
            None => "keywarden-hwd not started".to_owned(),
            Some(Ok(None)) => "keywarden-hwd still running".to_owned(),
            Some(Ok(Some(status))) => format!("keywarden-hwd exited: {status}"),
            Some(Err(e)) => format!("keywarden-hwd status unknown: {e}"),
        }
    }
}

impl Drop for Cabinet {
    fn drop(&mut self) {
        if let Some(mut hwd) = self.hwd.take() {
            let _ = hwd.kill();
            let _ = hwd.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

/// Prints a progress line on the console (not a result line).
pub fn progress(message: &str) {
    println!("kw-vm: {message}");
}

/// Gives a device node to `gid`, mode 0660: what the image's udev rules do.
fn grant(node: &Path, gid: u32) -> Result<()> {
    chown(node, None, Some(gid)).context(format!("chgrp {}", node.display()))?;
    std::fs::set_permissions(node, std::fs::Permissions::from_mode(0o660))
        .context(format!("chmod {}", node.display()))
}

/// Starts the real system bus with Debian's system.conf and our policy files.
fn start_dbus() -> Result<Child> {
    std::fs::create_dir_all("/run/dbus").context("mkdir /run/dbus")?;
    let mut child = Command::new("dbus-daemon")
        .args(["--system", "--nofork", "--nopidfile"])
        .spawn()
        .context("starting dbus-daemon")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(SYSTEM_BUS_SOCKET).exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dbus-daemon exited: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{SYSTEM_BUS_SOCKET} missing after 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// Spawns the daemon as `keywarden-hw` with groups gpio, input, dialout (what its unit sets).
fn spawn_hwd() -> Result<Child> {
    let groups = [ids::GPIO_GID, ids::INPUT_GID, ids::DIALOUT_GID].map(Gid::from_raw);
    let mut command = Command::new("keywarden-hwd");
    command
        .args(["--board", BOARD_FILE, "--backend", "cdev"])
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={SYSTEM_BUS_SOCKET}"),
        );
    // SAFETY: the closure only makes three syscalls (no allocation, no locks) between fork and
    // exec. std's own uid/gid setters cannot be used: they drop supplementary groups.
    unsafe {
        command.pre_exec(move || {
            setgroups(&groups)?;
            setgid(Gid::from_raw(ids::HW_GID))?;
            setuid(Uid::from_raw(ids::HW_UID))?;
            Ok(())
        });
    }
    command.spawn().context("starting keywarden-hwd")
}
