//! The `cdev` backend: GPIO lines through the kernel character device (gpio-cdev, found by line
//! name across every `/dev/gpiochip*`), readers and keypads through evdev with an exclusive grab,
//! the fingerprint module on the board's UART.
//!
//! Outputs are requested with their inactive level as the request's default, so a lock line is
//! locked from the instant it is claimed; all outputs are claimed before any input. Each line's
//! consumer is `keywarden-<role>`, so `gpioinfo` shows who holds it. Input lines are watched for
//! both edges by one thread polling every line's event fd; after each edge the line is read back
//! and the logical level forwarded (the core debounces). Each input's handle is shared (behind a
//! mutex, held only for a read) with [`CdevInputs`], so the burn-in can read any line on demand;
//! the thread polls duplicates of the event fds, so it never holds the mutex while waiting.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gpio_cdev::{Chip, EventRequestFlags, Line, LineEventHandle, LineHandle, LineRequestFlags};
use keywarden_dbus::hardware::SelfTestResult;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::sync::mpsc;

use super::{
    failed, passed, BackendKind, Hardware, InputLines, InputSample, OutputLines, CHANNEL_CAPACITY,
};
use crate::board::{Board, LineSpec};
use crate::core::{InputId, OutputId};
use crate::error::{Error, Result};
use crate::input::{open_device, spawn_reader};

/// A line found by name: which chip, which offset.
struct Found {
    chip: PathBuf,
    line: Line,
}

/// Map every named line on every chip. A name on two chips is an error only if the board uses it.
fn find_lines(board_lines: &[&LineSpec]) -> Result<BTreeMap<String, Found>> {
    let chips = gpio_cdev::chips().map_err(|source| Error::Gpio {
        what: "list chips",
        target: "/dev/gpiochip*".into(),
        source,
    })?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for chip in chips {
        let chip: Chip = chip.map_err(|source| Error::Gpio {
            what: "open chip",
            target: "/dev/gpiochip*".into(),
            source,
        })?;
        let chip_path = chip.path().to_owned();
        let lines = chip.lines();
        for line in lines {
            let info = line.info().map_err(|source| Error::Gpio {
                what: "read line info",
                target: format!("{} line {}", chip_path.display(), line.offset()),
                source,
            })?;
            let Some(name) = info.name() else { continue };
            let Some(spec) = board_lines.iter().find(|l| l.name == name) else {
                continue;
            };
            if let Some(first) = found.get(name) {
                return Err(Error::LineAmbiguous {
                    field: spec.field.clone(),
                    name: name.to_owned(),
                    first: first.chip.display().to_string(),
                    second: chip_path.display().to_string(),
                });
            }
            found.insert(
                name.to_owned(),
                Found {
                    chip: chip_path.clone(),
                    line,
                },
            );
        }
    }
    for spec in board_lines {
        if !found.contains_key(&spec.name) {
            return Err(Error::LineNotFound {
                field: spec.field.clone(),
                name: spec.name.clone(),
            });
        }
    }
    Ok(found)
}

fn consumer(role: &str) -> String {
    // The kernel keeps 31 characters of a consumer label.
    let mut c = format!("keywarden-{role}");
    c.truncate(31);
    c
}

fn polarity(spec: &LineSpec) -> LineRequestFlags {
    if spec.active_low {
        LineRequestFlags::ACTIVE_LOW
    } else {
        LineRequestFlags::empty()
    }
}

struct CdevOutputs {
    lines: BTreeMap<OutputId, (String, LineHandle)>,
    driven: BTreeMap<OutputId, bool>,
}

impl OutputLines for CdevOutputs {
    fn set(&mut self, id: OutputId, active: bool) -> Result<()> {
        let Some((name, handle)) = self.lines.get(&id) else {
            return Ok(());
        };
        handle
            .set_value(u8::from(active))
            .map_err(|source| Error::Gpio {
                what: "set",
                target: name.clone(),
                source,
            })?;
        self.driven.insert(id, active);
        Ok(())
    }

    fn self_test(&mut self) -> Vec<SelfTestResult> {
        self.lines
            .iter()
            .map(|(id, (name, handle))| {
                let check = format!("gpio:{}", id.role());
                let want = self.driven.get(id).copied().unwrap_or(false);
                match handle.get_value() {
                    Ok(v) if (v != 0) == want => {
                        passed(check, format!("line {name:?} held, reads {v}"))
                    }
                    Ok(v) => failed(
                        check,
                        format!("line {name:?} reads {v}, driven {}", u8::from(want)),
                    ),
                    Err(e) => failed(check, format!("line {name:?}: {e}")),
                }
            })
            .collect()
    }
}

/// An input line's event handle, shared by the watcher thread and on-demand reads.
type SharedHandle = Arc<Mutex<LineEventHandle>>;

fn locked(handle: &SharedHandle) -> std::sync::MutexGuard<'_, LineEventHandle> {
    handle.lock().unwrap_or_else(|p| p.into_inner())
}

struct CdevInputs {
    lines: BTreeMap<InputId, (String, SharedHandle)>,
}

impl InputLines for CdevInputs {
    fn read(&self, id: InputId) -> Result<bool> {
        let (name, handle) = self.lines.get(&id).ok_or(Error::Unreachable(
            "read of an input line the board does not have",
        ))?;
        let value = locked(handle).get_value().map_err(|source| Error::Gpio {
            what: "read",
            target: name.clone(),
            source,
        })?;
        Ok(value != 0)
    }
}

/// Open the cabinet's real devices. Outputs are claimed (locks first, inactive) before anything else.
pub fn open(board: &Board) -> Result<Hardware> {
    let outputs = board.outputs();
    let inputs = board.inputs();
    let all: Vec<&LineSpec> = outputs
        .iter()
        .map(|(_, l)| *l)
        .chain(inputs.iter().map(|(_, l)| *l))
        .collect();
    let mut found = find_lines(&all)?;

    let mut out_lines = BTreeMap::new();
    for (id, spec) in &outputs {
        let line = take(&mut found, spec)?;
        let handle = line
            .request(
                LineRequestFlags::OUTPUT | polarity(spec),
                0,
                &consumer(&id.role()),
            )
            .map_err(|source| Error::Gpio {
                what: "request output",
                target: spec.name.clone(),
                source,
            })?;
        out_lines.insert(*id, (spec.name.clone(), handle));
    }
    let driven = out_lines.keys().map(|id| (*id, false)).collect();
    let outputs = CdevOutputs {
        lines: out_lines,
        driven,
    };

    let mut handles = Vec::new();
    let mut initial = Vec::new();
    for (id, spec) in &inputs {
        let line = take(&mut found, spec)?;
        let handle = line
            .events(
                LineRequestFlags::INPUT | polarity(spec),
                EventRequestFlags::BOTH_EDGES,
                &consumer(&id.role()),
            )
            .map_err(|source| Error::Gpio {
                what: "request input",
                target: spec.name.clone(),
                source,
            })?;
        let level = handle.get_value().map_err(|source| Error::Gpio {
            what: "read",
            target: spec.name.clone(),
            source,
        })?;
        initial.push((*id, level != 0));
        let fd = handle
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| Error::Os {
                what: format!("duplicate the event fd of line {:?}", spec.name),
                source,
            })?;
        handles.push((*id, spec.name.clone(), Arc::new(Mutex::new(handle)), fd));
    }
    let inputs = CdevInputs {
        lines: handles
            .iter()
            .map(|(id, name, handle, _)| (*id, (name.clone(), handle.clone())))
            .collect(),
    };
    let (sample_tx, samples) = mpsc::channel(CHANNEL_CAPACITY);
    spawn_input_watcher(handles, sample_tx)?;

    let (key_tx, keys) = mpsc::channel(CHANNEL_CAPACITY);
    let mut input_checks = Vec::new();
    let devices = board
        .readers
        .iter()
        .map(|r| (&r.name, &r.device))
        .chain(board.keypads.iter().map(|k| (&k.name, &k.device)));
    for (role, selector) in devices {
        let device = open_device(selector)?;
        let name = device.name().unwrap_or("unnamed").to_owned();
        spawn_reader(role.clone(), device, key_tx.clone())?;
        input_checks.push(passed(
            format!("input:{role}"),
            format!("{selector}: {name:?} grabbed"),
        ));
    }

    Ok(Hardware {
        kind: BackendKind::Cdev,
        outputs: Box::new(outputs),
        initial,
        inputs: Box::new(inputs),
        samples,
        keys,
        input_checks,
        fingerprint_port: board.fingerprint.as_ref().map(|f| f.port.clone()),
        sim: None,
    })
}

fn take(found: &mut BTreeMap<String, Found>, spec: &LineSpec) -> Result<Line> {
    found
        .remove(&spec.name)
        .map(|f| f.line)
        .ok_or_else(|| Error::LineNotFound {
            field: spec.field.clone(),
            name: spec.name.clone(),
        })
}

/// One thread polls every input line's event fd and forwards the level after each edge.
fn spawn_input_watcher(
    handles: Vec<(InputId, String, SharedHandle, OwnedFd)>,
    tx: mpsc::Sender<InputSample>,
) -> Result<()> {
    if handles.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("gpio-inputs".into())
        .spawn(move || watch_inputs(handles, tx))
        .map(drop)
        .map_err(|source| Error::Os {
            what: "spawn the GPIO input thread".into(),
            source,
        })
}

fn watch_inputs(
    handles: Vec<(InputId, String, SharedHandle, OwnedFd)>,
    tx: mpsc::Sender<InputSample>,
) {
    loop {
        let ready: Vec<usize> = {
            let mut polls: Vec<PollFd<'_>> = handles
                .iter()
                .map(|(_, _, _, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut polls, PollTimeout::NONE) {
                Ok(_) => polls
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(i, _)| i)
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "polling GPIO input lines failed; inputs are no longer watched");
                    return;
                }
            }
        };
        for i in ready {
            let (id, name, handle, _) = &handles[i];
            let mut handle = locked(handle);
            if let Err(e) = handle.get_event() {
                tracing::error!(line = %name, error = %e, "reading a GPIO edge failed");
                continue;
            }
            let value = handle.get_value();
            drop(handle);
            match value {
                Ok(v) => {
                    let sample = InputSample {
                        id: *id,
                        active: v != 0,
                        at: Instant::now(),
                    };
                    if tx.blocking_send(sample).is_err() {
                        return; // daemon shutting down
                    }
                }
                Err(e) => tracing::error!(line = %name, error = %e, "reading a GPIO input failed"),
            }
        }
    }
}
