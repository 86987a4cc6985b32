//! The sans-IO update state machine: which operation runs, what the bootloader must be told and
//! when, and what the bus shows.
//!
//! [`UpdateCore`] owns no I/O, clock or thread. The driver (`daemon`) hands it commands from the
//! bus with the bootloader's current facts ([`BootFacts`], read fresh each time: the environment
//! is the ground truth, not a copy kept here) and the current time, performs the [`Action`]s it
//! returns in order, and feeds back what the workers report ([`UpdateCore::check_done`],
//! [`UpdateCore::install_progress`], [`UpdateCore::install_done`],
//! [`UpdateCore::activation_done`]).
//!
//! The rules it enforces, each tested below:
//! - one operation (check or install) at a time;
//! - an install writes only the slot that is not booted, and only while the booted slot is
//!   committed (otherwise the install would overwrite the only known-good fallback);
//! - the target is made unbootable ([`BootAction::Invalidate`]) before the first byte is written,
//!   and activated ([`BootAction::Activate`]) only after the installer reported the slot written,
//!   synced and read back;
//! - a slot being written can be neither committed nor activated by hand;
//! - every install ends with exactly one [`Action::Completed`] (ok, or a stable error code).

mod source;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

pub use source::{SlotRef, Source};

use crate::boot::Slot;

/// What the bootloader environment says now, read by the driver before each command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFacts {
    /// The slot the running system booted from (`keywarden.slot=` on the kernel command line).
    pub booted: Slot,
    /// The booted slot is committed (it boots without counting tries).
    pub booted_committed: bool,
}

/// The `State` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing running; nothing installed since start.
    Idle,
    /// Asking the repository.
    Checking,
    /// Fetching and writing chunks.
    Downloading,
    /// Writing chunks taken from the active slot (no download needed for them).
    Installing,
    /// Syncing and reading the slot back, then activating it.
    Verifying,
    /// The new slot is activated: the next boot tries it.
    Installed,
    /// The last operation failed (see `LastError`).
    Failed,
}

impl Phase {
    /// The wire string of the `State` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Checking => "checking",
            Phase::Downloading => "downloading",
            Phase::Installing => "installing",
            Phase::Verifying => "verifying",
            Phase::Installed => "installed",
            Phase::Failed => "failed",
        }
    }
}

/// A command from the bus (already authorised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Check`.
    Check,
    /// `Install(source)`.
    Install(Source),
    /// `Cancel`.
    Cancel,
    /// `MarkGood(slot)`.
    MarkGood(SlotRef),
    /// `MarkBad(slot)`.
    MarkBad(SlotRef),
}

/// Something the bootloader environment must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootAction {
    /// Never boot this slot (it is about to be written).
    Invalidate(Slot),
    /// Boot this slot next, with the try budget (it was written and read back).
    Activate(Slot),
    /// Commit this slot.
    MarkGood(Slot),
    /// Never boot this slot; the other one first.
    MarkBad(Slot),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell the bootloader. For `Invalidate` and `Activate` the driver reports a failure back
    /// through [`UpdateCore::install_done`] / [`UpdateCore::activation_done`]; for `MarkGood`
    /// and `MarkBad` it answers the caller with the result.
    Boot(BootAction),
    /// Ask the repository for an offer; report with [`UpdateCore::check_done`].
    StartCheck,
    /// Run the installer into `target`; report with [`UpdateCore::install_progress`] and
    /// [`UpdateCore::install_done`].
    StartInstall {
        /// Where the bundle comes from.
        source: Source,
        /// The slot to write (never the booted one).
        target: Slot,
    },
    /// Ask the running installer to stop between two chunks.
    CancelInstall,
    /// Emit `Completed(ok, code, message)`.
    Completed {
        /// The install succeeded and the slot is activated.
        ok: bool,
        /// A stable error code, "" when ok.
        code: String,
        /// For people.
        message: String,
    },
}

/// Why a command was refused at once (mapped to the bus errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another operation runs.
    #[error("{0}")]
    Busy(String),
    /// The command makes no sense now or names something wrong.
    #[error("{0}")]
    InvalidArgument(String),
}

/// A failed check or install as the workers report it: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable, kebab-case (`bad-signature`, `chunk-mismatch`, `not-newer`...).
    pub code: String,
    /// For people.
    pub message: String,
}

/// The installer's progress, in payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Handled so far.
    pub done: u64,
    /// In all.
    pub total: u64,
    /// Of `done`, fetched from the source.
    pub downloaded: u64,
    /// Of `done`, taken from the active slot.
    pub reused: u64,
}

/// An offer from the repository, as the check reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The bundle's version.
    pub version: String,
    /// The bundle's length in bytes.
    pub size: u64,
}

/// What the bus shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `State`.
    pub phase: Phase,
    /// The `Bytes*` properties.
    pub counters: Counters,
    /// `LastError`, if any.
    pub last_error: Option<Failure>,
    /// The last offer seen by a check, if any.
    pub offer: Option<Offer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Idle,
    Checking {
        started: SystemTime,
    },
    Installing {
        target: Slot,
        started: SystemTime,
        cancel_requested: bool,
    },
    Activating {
        target: Slot,
        started: SystemTime,
    },
}

/// The update state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct UpdateCore {
    op: Op,
    phase: Phase,
    counters: Counters,
    last_error: Option<Failure>,
    offer: Option<Offer>,
}

impl Default for UpdateCore {
    fn default() -> Self {
        UpdateCore::new()
    }
}

impl UpdateCore {
    /// Nothing running.
    pub fn new() -> UpdateCore {
        UpdateCore {
            op: Op::Idle,
            phase: Phase::Idle,
            counters: Counters::default(),
            last_error: None,
            offer: None,
        }
    }

    /// The slot an install is writing (or activating), if any.
    pub fn busy_slot(&self) -> Option<Slot> {
        match self.op {
            Op::Installing { target, .. } | Op::Activating { target, .. } => Some(target),
            Op::Idle | Op::Checking { .. } => None,
        }
    }

    /// What the bus shows.
    pub fn view(&self) -> View {
        View {
            phase: self.phase,
            counters: self.counters,
            last_error: self.last_error.clone(),
            offer: self.offer.clone(),
        }
    }

    fn running(&self) -> Option<&'static str> {
        match self.op {
            Op::Idle => None,
            Op::Checking { .. } => Some("a check is running"),
            Op::Installing { .. } | Op::Activating { .. } => Some("an install is running"),
        }
    }

    /// A command from the bus. `Ok` holds the actions to perform in order.
    pub fn command(
        &mut self,
        command: Command,
        facts: BootFacts,
        now: SystemTime,
    ) -> Result<Vec<Action>, Refusal> {
        match command {
            Command::Check => {
                if let Some(what) = self.running() {
                    return Err(Refusal::Busy(format!("cannot check now: {what}")));
                }
                self.op = Op::Checking { started: now };
                self.phase = Phase::Checking;
                Ok(vec![Action::StartCheck])
            }
            Command::Install(source) => {
                if let Some(what) = self.running() {
                    return Err(Refusal::Busy(format!("cannot install now: {what}")));
                }
                if !facts.booted_committed {
                    return Err(Refusal::InvalidArgument(format!(
                        "the booted slot {} is not committed yet: installing would overwrite \
                         slot {}, the only known-good fallback; mark the booted slot good first \
                         (or let its health check do it)",
                        facts.booted,
                        facts.booted.other()
                    )));
                }
                let target = facts.booted.other();
                self.op = Op::Installing {
                    target,
                    started: now,
                    cancel_requested: false,
                };
                self.phase = Phase::Downloading;
                self.counters = Counters::default();
                Ok(vec![
                    Action::Boot(BootAction::Invalidate(target)),
                    Action::StartInstall { source, target },
                ])
            }
            Command::Cancel => match &mut self.op {
                Op::Installing {
                    cancel_requested, ..
                } => {
                    *cancel_requested = true;
                    Ok(vec![Action::CancelInstall])
                }
                Op::Activating { .. } => Err(Refusal::Busy(
                    "the install is activating the slot and can no longer be cancelled".into(),
                )),
                Op::Idle | Op::Checking { .. } => {
                    Err(Refusal::InvalidArgument("no install is running".into()))
                }
            },
            Command::MarkGood(which) => {
                let slot = which.resolve(facts.booted);
                if self.busy_slot() == Some(slot) {
                    return Err(Refusal::Busy(format!(
                        "slot {slot} is being written by an install and cannot be marked good"
                    )));
                }
                Ok(vec![Action::Boot(BootAction::MarkGood(slot))])
            }
            Command::MarkBad(which) => {
                let slot = which.resolve(facts.booted);
                Ok(vec![Action::Boot(BootAction::MarkBad(slot))])
            }
        }
    }

    /// The repository check ended.
    pub fn check_done(&mut self, result: Result<Option<Offer>, Failure>, _now: SystemTime) {
        if !matches!(self.op, Op::Checking { .. }) {
            return;
        }
        self.op = Op::Idle;
        match result {
            Ok(offer) => {
                self.offer = offer;
                self.phase = Phase::Idle;
            }
            Err(failure) => {
                self.phase = Phase::Failed;
                self.last_error = Some(failure);
            }
        }
    }

    /// The installer moved on. `writing_reused` says the chunks now handled come from the
    /// active slot (phase "installing") rather than the source ("downloading"); `verifying`
    /// that it is reading the slot back.
    pub fn install_progress(&mut self, counters: Counters, verifying: bool) {
        if !matches!(self.op, Op::Installing { .. }) {
            return;
        }
        let reusing = counters.reused > self.counters.reused
            && counters.downloaded == self.counters.downloaded;
        self.counters = counters;
        self.phase = if verifying {
            Phase::Verifying
        } else if reusing {
            Phase::Installing
        } else {
            Phase::Downloading
        };
    }

    /// The installer ended: on success the slot is written, synced and read back, and the
    /// core asks for it to be activated; on failure the install ends here (the slot stays
    /// invalidated).
    pub fn install_done(
        &mut self,
        result: Result<Counters, Failure>,
        now: SystemTime,
    ) -> Vec<Action> {
        let Op::Installing {
            target,
            started,
            cancel_requested,
        } = self.op
        else {
            return Vec::new();
        };
        match result {
            Ok(counters) if !cancel_requested => {
                self.counters = counters;
                self.phase = Phase::Verifying;
                self.op = Op::Activating { target, started };
                vec![Action::Boot(BootAction::Activate(target))]
            }
            Ok(_) => self.fail(
                Failure {
                    code: "cancelled".into(),
                    message: "the install was cancelled".into(),
                },
                started,
                now,
            ),
            Err(failure) => self.fail(failure, started, now),
        }
    }

    /// The bootloader was (or could not be) told to boot the new slot next.
    pub fn activation_done(&mut self, result: Result<(), Failure>, now: SystemTime) -> Vec<Action> {
        let Op::Activating { target, started } = self.op else {
            return Vec::new();
        };
        match result {
            Ok(()) => {
                self.op = Op::Idle;
                self.phase = Phase::Installed;
                self.last_error = None;
                vec![Action::Completed {
                    ok: true,
                    code: String::new(),
                    message: format!(
                        "installed into slot {target} in {}; it boots at the next restart",
                        human_duration(elapsed(started, now))
                    ),
                }]
            }
            Err(failure) => self.fail(failure, started, now),
        }
    }

    fn fail(&mut self, failure: Failure, started: SystemTime, now: SystemTime) -> Vec<Action> {
        self.op = Op::Idle;
        self.phase = Phase::Failed;
        let message = format!(
            "{} (after {})",
            failure.message,
            human_duration(elapsed(started, now))
        );
        self.last_error = Some(Failure {
            code: failure.code.clone(),
            message: message.clone(),
        });
        vec![Action::Completed {
            ok: false,
            code: failure.code,
            message,
        }]
    }
}

fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{} min {} s", secs / 60, secs % 60)
    } else {
        format!("{}.{} s", secs, d.subsec_millis() / 100)
    }
}
