//! Boot selection and rollback: which root slot boots, the try budget of a new slot, commit and
//! mark-bad, behind one trait ([`BootSelector`]) with two backends:
//!
//! - [`GrubEnv`]: the GRUB environment block `/EFI/BOOT/grubenv` on the EFI system partition,
//!   read by `image/grub/grub.cfg` (x86-64 / QEMU image).
//! - [`UBootEnv`]: the U-Boot environment with `fw_setenv` semantics (`/etc/fw_env.config`,
//!   redundant copies), read by `image/uboot/boot.cmd` (ARM boards).
//!
//! # The contract (both bootloaders)
//!
//! Per slot `S` in {A, B}: `S_OK` (`1` = may boot, anything else = never), `S_TRY` (empty =
//! committed; `3`/`2`/`1` = tries left; `0` = used up) and `ORDER` (`"A B"` or `"B A"`). A
//! variable that is absent has the boot script's default: `ORDER="A B"`, `A_OK=1`, `B_OK=0`,
//! `A_TRY=`, `B_TRY=` (the factory image boots A with no environment at all). The bootloader
//! decrements the tries of the slot it boots and marks a slot bad whose tries are used up; the
//! updater only ever writes:
//!
//! | operation | writes |
//! |---|---|
//! | [`BootSelector::invalidate`] (before writing into a slot) | `S_OK=0` |
//! | [`BootSelector::activate`] (after an install) | `S_OK=1 S_TRY=3 ORDER="S other"` |
//! | [`BootSelector::mark_good`] (health check passed) | `S_OK=1 S_TRY=` — nothing if already so |
//! | [`BootSelector::mark_bad`] | `S_OK=0 ORDER="other S"` |
//!
//! Every operation writes only when a variable's effective value changes, so the ordinary boot of
//! a committed slot (bootloader: no write; updater: `mark_good` finds it committed) never writes
//! the environment, and power cycles alone never flip slots.
//!
//! # Garbage in the environment
//!
//! [`BootSelector::status`] is strict: a boot-counting variable with a value the boot script does
//! not define is an [`Error::BootEnvValue`] naming it and its value (the boot script would treat
//! it as "not bootable" / "tries used up", which is worth surfacing). The write operations are
//! deliberately *not* blocked by such garbage: each one sets the variables it owns to well-defined
//! values (repairing them) and leaves everything else alone, so the updater can always commit the
//! slot it runs from or mark a slot bad. A structurally broken environment (bad GRUB header, no
//! U-Boot copy with a valid CRC) is an error for every operation: writing a fresh block then
//! would throw away whatever else lives in it.

mod env;
mod grubenv;
mod uboot;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Result};

pub use grubenv::GrubEnv;
pub use uboot::{UBootConfig, UBootEnv, UBootEnvLocation};

use env::EnvVars;

/// The try budget of a newly activated slot (`grub.cfg` counts down 3, 2, 1).
pub const TRY_BUDGET: u8 = 3;

/// Where the image keeps the GRUB environment block (the ESP is mounted at `/boot/efi`).
pub const DEFAULT_GRUBENV_PATH: &str = "/boot/efi/EFI/BOOT/grubenv";

/// Where `fw_setenv` looks for the location of the U-Boot environment.
pub const DEFAULT_FW_ENV_CONFIG: &str = "/etc/fw_env.config";

/// One of the two root file system slots (serialised as `"A"`/`"B"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Slot {
    /// Partition `rootA`.
    A,
    /// Partition `rootB`.
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot (the one to install into when running from `self`).
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The GPT partition label of the slot (`rootA`/`rootB`), as the kernel's `root=` names it.
    pub fn partition_label(self) -> &'static str {
        match self {
            Slot::A => "rootA",
            Slot::B => "rootB",
        }
    }

    /// The slot's letter, as used in variable names and on the kernel command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    fn ok_var(self) -> &'static str {
        match self {
            Slot::A => "A_OK",
            Slot::B => "B_OK",
        }
    }

    fn try_var(self) -> &'static str {
        match self {
            Slot::A => "A_TRY",
            Slot::B => "B_TRY",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = Error;

    /// `A` or `B` (exactly; the bootloader scripts compare case-sensitively).
    fn from_str(s: &str) -> Result<Slot> {
        match s {
            "A" => Ok(Slot::A),
            "B" => Ok(Slot::B),
            _ => Err(Error::BadSlot {
                value: s.to_string(),
            }),
        }
    }
}

/// The slot the running system booted from, read from `keywarden.slot=X` on the kernel command
/// line (the content of `/proc/cmdline`), which both boot scripts pass.
///
/// Missing, repeated with different values, or not `A`/`B`: an [`Error::BootCmdline`].
pub fn booted_slot(cmdline: &str) -> Result<Slot> {
    let mut found: Option<Slot> = None;
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix("keywarden.slot=") else {
            continue;
        };
        let slot = value.parse::<Slot>().map_err(|_| Error::BootCmdline {
            reason: format!("keywarden.slot={value:?} is not A or B"),
        })?;
        if let Some(previous) = found {
            if previous != slot {
                return Err(Error::BootCmdline {
                    reason: format!("keywarden.slot given twice ({previous} and {slot})"),
                });
            }
        }
        found = Some(slot);
    }
    found.ok_or_else(|| Error::BootCmdline {
        reason: "no keywarden.slot= (not booted by the Keywarden boot script?)".to_string(),
    })
}

/// Where the running kernel's command line is.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// [`booted_slot`] of the file at `path` (normally [`PROC_CMDLINE`]).
pub fn booted_slot_from(path: &Path) -> Result<Slot> {
    let cmdline = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    booted_slot(&cmdline)
}

/// The boot-counting state of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SlotStatus {
    /// `S_OK=1`: the bootloader may boot the slot.
    pub bootable: bool,
    /// `S_TRY`: `None` = committed (empty); `Some(n)` = `n` boots left before the bootloader marks
    /// the slot bad (`Some(0)`: used up, the bootloader marks it bad on the next boot).
    pub tries_left: Option<u8>,
}

impl SlotStatus {
    /// Bootable and committed: the bootloader boots it without writing anything.
    pub fn is_committed(&self) -> bool {
        self.bootable && self.tries_left.is_none()
    }
}

/// The whole boot-counting state, as the bootloader will see it on the next boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BootStatus {
    /// Slot A.
    pub a: SlotStatus,
    /// Slot B.
    pub b: SlotStatus,
    /// `ORDER`: the slots in order of preference.
    pub order: [Slot; 2],
}

impl BootStatus {
    /// The state of `slot`.
    pub fn slot(&self, slot: Slot) -> SlotStatus {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// The slot the bootloader will try first, if any is bootable (the first bootable one in
    /// `ORDER`; a slot with no tries left is skipped, as the boot script marks it bad).
    pub fn next_boot(&self) -> Option<Slot> {
        self.order.into_iter().find(|s| {
            let st = self.slot(*s);
            st.bootable && st.tries_left != Some(0)
        })
    }
}

/// Boot selection and rollback through the bootloader's environment. All methods are blocking
/// (file and device I/O): call them from a blocking thread.
pub trait BootSelector: Send {
    /// The boot-counting state. Strict: garbage in a boot-counting variable is an
    /// [`Error::BootEnvValue`] naming it.
    fn status(&mut self) -> Result<BootStatus>;

    /// After an install into `slot`: make it the preferred slot with [`TRY_BUDGET`] tries
    /// (`S_OK=1 S_TRY=3 ORDER="S other"`). The other slot's state is left as it is, so if the new
    /// slot never commits the bootloader falls back to it.
    fn activate(&mut self, slot: Slot) -> Result<()>;

    /// The health check passed on `slot`: commit it (`S_OK=1 S_TRY=`). Writes nothing at all if
    /// it is already committed, so ordinary boots never write the environment. Returns whether
    /// anything was written.
    fn mark_good(&mut self, slot: Slot) -> Result<bool>;

    /// `slot` must not boot again (`S_OK=0`, `ORDER="other S"`). The other slot's state is left
    /// as it is.
    fn mark_bad(&mut self, slot: Slot) -> Result<()>;

    /// Before writing into `slot`: `S_OK=0`, so a half-written slot can never boot; nothing else
    /// changes. The caller must never pass the slot it runs from.
    fn invalidate(&mut self, slot: Slot) -> Result<()>;
}

/// Which bootloader environment to drive, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootBackend {
    /// A GRUB environment block file (see [`DEFAULT_GRUBENV_PATH`]).
    Grub {
        /// The grubenv file.
        env_file: PathBuf,
    },
    /// The U-Boot environment as located by an `fw_env.config` (see [`DEFAULT_FW_ENV_CONFIG`]).
    UBoot {
        /// The `fw_env.config` file.
        config: PathBuf,
    },
}

/// The [`BootSelector`] for `backend`. The GRUB block is only read when used; the U-Boot config
/// is parsed here (so a wrong config is reported at start-up).
pub fn open(backend: &BootBackend) -> Result<Box<dyn BootSelector>> {
    match backend {
        BootBackend::Grub { env_file } => Ok(Box::new(GrubEnv::new(env_file.clone()))),
        BootBackend::UBoot { config } => Ok(Box::new(UBootEnv::from_config_file(config)?)),
    }
}

/// A backend's raw storage: load and store a list of variables. The boot-counting logic on top
/// ([`Selector`]) is shared by both backends.
pub(crate) trait EnvStore {
    /// Where the environment lives, for messages.
    fn location(&self) -> String;
    /// The current variables.
    fn load(&mut self) -> Result<EnvVars>;
    /// Replace the stored variables with `vars`, crash-safely as far as the medium allows.
    fn store(&mut self, vars: &EnvVars) -> Result<()>;
}

/// The boot script's defaults for absent variables (`grub.cfg` and `boot.cmd` set these before
/// loading the environment).
fn default_of(name: &str) -> &'static str {
    match name {
        "ORDER" => "A B",
        "A_OK" => "1",
        "B_OK" => "0",
        _ => "",
    }
}

/// The value the boot script sees for `name`: the stored value, or its default if absent.
fn effective<'a>(vars: &'a EnvVars, name: &str) -> &'a [u8] {
    vars.get(name)
        .unwrap_or_else(|| default_of(name).as_bytes())
}

/// Set `name` to `value` unless the boot script already sees that value.
fn set_effective(vars: &mut EnvVars, name: &str, value: &str) {
    if effective(vars, name) != value.as_bytes() {
        vars.set(name, value.as_bytes());
    }
}

fn order_value(first: Slot) -> String {
    format!("{} {}", first, first.other())
}

/// Strict reading of the boot-counting variables (see the module documentation).
pub(crate) fn parse_status(vars: &EnvVars, location: &str) -> Result<BootStatus> {
    let bad = |name: &str, value: &[u8], expected: &'static str| Error::BootEnvValue {
        location: location.to_string(),
        name: name.to_string(),
        value: String::from_utf8_lossy(value).into_owned(),
        expected,
    };
    let mut slots = [SlotStatus {
        bootable: false,
        tries_left: None,
    }; 2];
    for (i, slot) in Slot::ALL.into_iter().enumerate() {
        let ok = effective(vars, slot.ok_var());
        let bootable = match ok {
            b"1" => true,
            b"0" => false,
            _ => return Err(bad(slot.ok_var(), ok, "0 or 1")),
        };
        let tr = effective(vars, slot.try_var());
        let tries_left = match tr {
            b"" => None,
            [d @ b'0'..=b'3'] => Some(d - b'0'),
            _ => return Err(bad(slot.try_var(), tr, "empty (committed) or 0 to 3")),
        };
        slots[i] = SlotStatus {
            bootable,
            tries_left,
        };
    }
    let order_raw = effective(vars, "ORDER");
    let words: Vec<&[u8]> = order_raw
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let order = match words.as_slice() {
        [b"A", b"B"] => [Slot::A, Slot::B],
        [b"B", b"A"] => [Slot::B, Slot::A],
        _ => return Err(bad("ORDER", order_raw, "\"A B\" or \"B A\"")),
    };
    Ok(BootStatus {
        a: slots[0],
        b: slots[1],
        order,
    })
}

/// The boot-counting logic over any [`EnvStore`].
#[derive(Debug)]
pub(crate) struct Selector<S> {
    store: S,
}

impl<S: EnvStore> Selector<S> {
    pub(crate) fn new(store: S) -> Self {
        Selector { store }
    }

    pub(crate) fn store_ref(&self) -> &S {
        &self.store
    }

    /// Load, apply `change`, store only if a variable changed. Returns whether it wrote.
    fn update(&mut self, what: &str, change: impl FnOnce(&mut EnvVars)) -> Result<bool> {
        let before = self.store.load()?;
        let mut after = before.clone();
        change(&mut after);
        if after == before {
            tracing::debug!(location = %self.store.location(), "{what}: environment unchanged, nothing written");
            return Ok(false);
        }
        self.store.store(&after)?;
        tracing::info!(location = %self.store.location(), "{what}: boot environment written");
        Ok(true)
    }

    pub(crate) fn status(&mut self) -> Result<BootStatus> {
        let vars = self.store.load()?;
        parse_status(&vars, &self.store.location())
    }

    pub(crate) fn activate(&mut self, slot: Slot) -> Result<()> {
        self.update(&format!("activate {slot}"), |v| {
            set_effective(v, slot.ok_var(), "1");
            set_effective(v, slot.try_var(), &TRY_BUDGET.to_string());
            set_effective(v, "ORDER", &order_value(slot));
        })
        .map(drop)
    }

    pub(crate) fn mark_good(&mut self, slot: Slot) -> Result<bool> {
        self.update(&format!("mark {slot} good"), |v| {
            set_effective(v, slot.ok_var(), "1");
            set_effective(v, slot.try_var(), "");
        })
    }

    pub(crate) fn mark_bad(&mut self, slot: Slot) -> Result<()> {
        self.update(&format!("mark {slot} bad"), |v| {
            set_effective(v, slot.ok_var(), "0");
            set_effective(v, "ORDER", &order_value(slot.other()));
        })
        .map(drop)
    }

    pub(crate) fn invalidate(&mut self, slot: Slot) -> Result<()> {
        self.update(&format!("invalidate {slot}"), |v| {
            set_effective(v, slot.ok_var(), "0");
        })
        .map(drop)
    }
}

/// Implements [`BootSelector`] for a wrapper around `Selector<store>` in field `inner`.
macro_rules! delegate_boot_selector {
    ($ty:ty) => {
        impl $crate::boot::BootSelector for $ty {
            fn status(&mut self) -> $crate::Result<$crate::boot::BootStatus> {
                self.inner.status()
            }
            fn activate(&mut self, slot: $crate::boot::Slot) -> $crate::Result<()> {
                self.inner.activate(slot)
            }
            fn mark_good(&mut self, slot: $crate::boot::Slot) -> $crate::Result<bool> {
                self.inner.mark_good(slot)
            }
            fn mark_bad(&mut self, slot: $crate::boot::Slot) -> $crate::Result<()> {
                self.inner.mark_bad(slot)
            }
            fn invalidate(&mut self, slot: $crate::boot::Slot) -> $crate::Result<()> {
                self.inner.invalidate(slot)
            }
        }
    };
}
pub(crate) use delegate_boot_selector;
