//! Keywarden's VM test harness, the part that runs inside the QEMU test VM.
//!
//! The VM boots an initramfs (assembled by `cargo xtask vm-test`) whose `/init` runs one of this
//! crate's binaries as root: `keywarden-vm-scenarios` (the system tests) or `keywarden-vm-bench`
//! (the latency benchmark). Both first build the cabinet out of real kernel devices
//! ([`setup::Cabinet`]: gpio-sim chips with named lines, uinput badge reader and keypad, a pty
//! for the fingerprint module, a real `dbus-daemon --system` with the shipped policy files, and
//! `keywarden-hwd --backend cdev` as its own unprivileged user), then drive inputs through
//! gpio-sim pulls and uinput events and observe outputs through gpio-sim sysfs and D-Bus.
//!
//! The policy scenarios and the policy benchmark also start `keywarden-policyd` as `keywarden`,
//! its database on the data partition (the VM's virtio disk, ext4, mounted by `/init` on
//! `/var/lib/keywarden`), and drive it as a person at the cabinet and as the console program.
//!
//! Clients connect to the bus as the `keywarden` user (uid 900) or the `intruder` (uid 950)
//! without a second process: [`bus::connect_as`] opens the socket from a helper thread whose
//! *thread* credentials were switched with a raw `setresuid` syscall, so the bus daemon sees that
//! uid (`SO_PEERCRED` is taken at `connect()`), and the rest of the process stays root.
//!
//! Results go to the serial console as `KWTEST ...` / `KWBENCH ...` lines ([`report`]).

pub mod board;
pub mod bus;
pub mod fingerprint;
pub mod gpiosim;
pub mod policy;
pub mod policyd;
pub mod report;
pub mod scenarios;
pub mod setup;
pub mod uinput;

pub mod bench;

/// Errors in the harness are messages for a person reading the console: what failed and why.
pub type Result<T> = std::result::Result<T, String>;

/// Adds "what we were doing" to any displayable error.
pub trait Context<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}
