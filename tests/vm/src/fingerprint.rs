//! The fingerprint module's serial port: a pty whose slave is `/dev/ttyKWFP0` (group `dialout`,
//! 0660) for the daemon, and whose master is served by the module emulator from
//! `keywarden_hwd::fingerprint::emulator` in a thread, with one template enrolled.

use crate::board::{ids::DIALOUT_GID, FINGERPRINT_PORT};
use crate::{Context, Result};
use keywarden_hwd::fingerprint::emulator::{serve, EmulatorCore};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The library page holding the enrolled finger (the `template_id` of `FingerprintMatched`).
pub const ENROLLED: u32 = 7;
/// The identity of the enrolled finger in the emulator.
const ENROLLED_FINGER: i32 = 42;
/// A finger the module does not know.
const UNKNOWN_FINGER: i32 = -1;
/// Library size of an R503.
const CAPACITY: u16 = 200;

/// The pty pair behind the fingerprint port and the emulator serving its master. The slave
/// stays open here, so the master never sees a hang-up while the daemon restarts.
pub struct FingerprintPort {
    /// The pty slave `/dev/pts/N` that `/dev/ttyKWFP0` points at.
    pub slave_path: PathBuf,
    _slave: OwnedFd,
    core: Arc<Mutex<EmulatorCore>>,
}

impl FingerprintPort {
    /// Opens a raw-mode pty, links [`FINGERPRINT_PORT`] to its slave and serves the emulator.
    pub fn open() -> Result<Self> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let mut termios = tcgetattr(&pty.slave).context("tcgetattr on the pty slave")?;
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).context("tcsetattr on the pty slave")?;
        let slave_path = nix::unistd::ttyname(&pty.slave).context("ttyname of the pty slave")?;
        chown(&slave_path, None, Some(DIALOUT_GID))
            .context(format!("chgrp {}", slave_path.display()))?;
        std::fs::set_permissions(&slave_path, std::fs::Permissions::from_mode(0o660))
            .context(format!("chmod {}", slave_path.display()))?;
        std::os::unix::fs::symlink(&slave_path, FINGERPRINT_PORT)
            .context(format!("symlink {FINGERPRINT_PORT}"))?;
        let mut core = EmulatorCore::new(CAPACITY, 0);
        core.templates.insert(ENROLLED as u16, ENROLLED_FINGER);
        let core = Arc::new(Mutex::new(core));
        let master = File::from(pty.master);
        let serving = core.clone();
        std::thread::Builder::new()
            .name("fingerprint-emulator".into())
            .spawn(move || serve(master, serving))
            .context("starting the emulator thread")?;
        Ok(FingerprintPort {
            slave_path,
            _slave: pty.slave,
            core,
        })
    }

    /// Puts a finger on the sensor (`Some(true)` the enrolled one, `Some(false)` an unknown
    /// one) or lifts it (`None`).
    pub fn place_finger(&self, enrolled: Option<bool>) {
        let finger = enrolled.map(|known| {
            if known {
                ENROLLED_FINGER
            } else {
                UNKNOWN_FINGER
            }
        });
        let mut core = self
            .core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        core.set_finger(finger);
    }
}
