//! `keywarden-policyd` in the VM: started as its own user (`keywarden`, uid 900, no supplementary
//! groups, what its unit sets) on the real system bus, with its database on the data partition
//! (`/var/lib/keywarden`, the VM's virtio disk); SIGKILLed and restarted as systemd's
//! `Restart=always` would. Its log (standard error, at debug level) is echoed on the console
//! and kept, so the scenarios can check that no credential ever reaches it.

use crate::board::{ids, BADGE_KEY, DATABASE, DATA_DIR, DEVICE_KEY, EMPTY_FOR_POLICY, POLICY_FILE};
use crate::bus::{connect_as, wait_for_name, SYSTEM_BUS_SOCKET};
use crate::setup::{progress, Cabinet};
use crate::{Context, Result};
use keywarden_dbus::names::POLICY_BUS_NAME;
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the service may take from exec to owning its bus name (TCG; it also opens and
/// migrates the database and may create the device key).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The running service and everything it logged so far.
pub struct Policyd {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Policyd {
    /// Empties the slots in [`EMPTY_FOR_POLICY`] (free slots for returns), gives the data
    /// partition to `keywarden` and starts the service.
    pub async fn start(cab: &Cabinet) -> Result<Self> {
        for slot in EMPTY_FOR_POLICY {
            cab.lines.pull(&format!("slot{slot}-presence"), false)?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        chown(DATA_DIR, Some(ids::KEYWARDEN_UID), Some(ids::KEYWARDEN_GID))
            .context(format!("chown {DATA_DIR}"))?;
        std::fs::set_permissions(DATA_DIR, std::fs::Permissions::from_mode(0o700))
            .context(format!("chmod {DATA_DIR}"))?;
        progress(&format!("data partition: {}", data_filesystem()));
        let mut policyd = Policyd {
            child: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        policyd.restart().await?;
        Ok(policyd)
    }

    /// Starts the service (again) and waits until it owns its bus name.
    pub async fn restart(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut child = spawn()?;
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    println!("policyd: {line}");
                    let mut log = log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        self.child = Some(child);
        let root = connect_as(0).await?;
        match wait_for_name(&root, POLICY_BUS_NAME, START_TIMEOUT).await {
            Ok(_) => {
                progress(&format!("keywarden-policyd up in {:?}", started.elapsed()));
                Ok(())
            }
            Err(e) => Err(format!("{e} ({})", self.status())),
        }
    }

    /// SIGKILLs the service and reaps it; returns when it is gone.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or("keywarden-policyd is not running")?;
        child.kill().context("SIGKILL keywarden-policyd")?;
        child.wait().context("reaping keywarden-policyd")?;
        Ok(())
    }

    /// Whether the service is still running, for error messages.
    pub fn status(&mut self) -> String {
        match self.child.as_mut().map(Child::try_wait) {
            None => "keywarden-policyd not running".to_owned(),
            Some(Ok(None)) => "keywarden-policyd still running".to_owned(),
            Some(Ok(Some(status))) => format!("keywarden-policyd exited: {status}"),
            Some(Err(e)) => format!("keywarden-policyd status unknown: {e}"),
        }
    }

    /// Everything the service wrote to standard error so far (every run).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Policyd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns the service as `keywarden` (uid and gid 900, no supplementary groups), its log piped.
fn spawn() -> Result<Child> {
    let mut command = Command::new("keywarden-policyd");
    command
        .args(["--database", DATABASE])
        .args(["--device-key", DEVICE_KEY])
        .args(["--badge-key", BADGE_KEY])
        .args(["--config", POLICY_FILE])
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={SYSTEM_BUS_SOCKET}"),
        )
        // Debug level: the scenarios check that no credential reaches even the debug log.
        .env("RUST_LOG", "keywarden_policyd=debug")
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes three syscalls (no allocation, no locks) between fork and
    // exec. std's own uid/gid setters cannot be used: they keep root's supplementary groups.
    unsafe {
        command.pre_exec(|| {
            setgroups(&[] as &[Gid])?;
            setgid(Gid::from_raw(ids::KEYWARDEN_GID))?;
            setuid(Uid::from_raw(ids::KEYWARDEN_UID))?;
            Ok(())
        });
    }
    command.spawn().context("starting keywarden-policyd")
}

/// What `/var/lib/keywarden` is mounted from, from `/proc/mounts`: `ext4 on /dev/vda` or
/// `tmpfs on tmpfs`.
pub fn data_filesystem() -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("?");
            (field(1) == DATA_DIR).then(|| format!("{} on {}", field(2), field(0)))
        })
        .unwrap_or_else(|| "not mounted (the initramfs' own tmpfs)".to_owned())
}
