//! The fingerprint module's thread: the module protocol is blocking and slow (an enrollment waits
//! for two touches), so one thread owns the serial port and takes jobs in order. Search results
//! come back as [`FingerEvent`]s; enroll/delete/self-test answer on their own channel.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use keywarden_dbus::hardware::{HardwareError, SelfTestResult};
use tokio::sync::{mpsc, oneshot};

use crate::board::FingerprintSpec;
use crate::fingerprint::{FingerprintError, FingerprintModule, SearchOutcome, SerialPort};

/// Longest an enrollment waits for the finger.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(60);

/// A job for the module.
pub enum Job {
    /// A finger touched the sensor: search the library.
    Search,
    /// Enroll a template.
    Enroll(u32, oneshot::Sender<Result<(), HardwareError>>),
    /// Delete a template.
    Delete(u32, oneshot::Sender<Result<(), HardwareError>>),
    /// Check the module answers.
    SelfTest(oneshot::Sender<SelfTestResult>),
}

/// The outcome of a search, to report as a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerEvent {
    /// Matched a template.
    Matched {
        /// The template (page) id.
        template_id: u32,
        /// The module's confidence.
        score: u32,
    },
    /// No match, or the image could not be used.
    NotMatched(String),
}

/// Connect to the module on `port` and start its thread. Returns the job queue.
pub fn start(
    spec: &FingerprintSpec,
    port: &Path,
    events: mpsc::Sender<FingerEvent>,
) -> Result<std_mpsc::Sender<Job>, FingerprintError> {
    let serial = SerialPort::open(port, spec.baud)?;
    let mut module = FingerprintModule::connect(serial, spec.address, spec.password)?;
    let count = module.template_count().map_err(|e| {
        tracing::warn!(error = %e, "fingerprint module answered the handshake but not TemplateNum");
        e
    })?;
    tracing::info!(port = %port.display(), capacity = module.capacity(), templates = count, "fingerprint module ready");
    let (tx, rx) = std_mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("fingerprint".into())
        .spawn(move || {
            for job in rx {
                run(&mut module, job, &events);
            }
        });
    if let Err(source) = spawned {
        return Err(FingerprintError::Open {
            port: port.to_owned(),
            source,
        });
    }
    Ok(tx)
}

fn template(id: u32) -> Result<u16, HardwareError> {
    u16::try_from(id)
        .map_err(|_| HardwareError::InvalidArgument(format!("template id {id} is out of range")))
}

fn run(module: &mut FingerprintModule<SerialPort>, job: Job, events: &mpsc::Sender<FingerEvent>) {
    match job {
        Job::Search => {
            let event = match module.search() {
                Ok(SearchOutcome::Matched { template_id, score }) => FingerEvent::Matched {
                    template_id: u32::from(template_id),
                    score: u32::from(score),
                },
                Ok(SearchOutcome::NoMatch) => FingerEvent::NotMatched("no-match".into()),
                Ok(SearchOutcome::NoFinger) => FingerEvent::NotMatched(
                    "no-finger: finger lifted before the image was taken".into(),
                ),
                Ok(SearchOutcome::BadImage(code)) => {
                    FingerEvent::NotMatched(format!("bad-image: {code}"))
                }
                Err(e) => {
                    tracing::error!(error = %e, "fingerprint search failed");
                    FingerEvent::NotMatched(format!("module-error: {e}"))
                }
            };
            if events.blocking_send(event).is_err() {
                tracing::debug!("fingerprint result dropped: daemon shutting down");
            }
        }
        Job::Enroll(id, reply) => {
            let result = template(id).and_then(|id| {
                module
                    .enroll(id, ENROLL_TIMEOUT, ENROLL_TIMEOUT)
                    .map_err(|e| HardwareError::from(&e))
            });
            drop(reply.send(result));
        }
        Job::Delete(id, reply) => {
            let result =
                template(id).and_then(|id| module.delete(id).map_err(|e| HardwareError::from(&e)));
            drop(reply.send(result));
        }
        Job::SelfTest(reply) => {
            let result = match module.template_count() {
                Ok(n) => SelfTestResult {
                    check: "fingerprint".into(),
                    passed: true,
                    detail: format!(
                        "module answers; {n} of {} templates used",
                        module.capacity()
                    ),
                },
                Err(e) => SelfTestResult {
                    check: "fingerprint".into(),
                    passed: false,
                    detail: e.to_string(),
                },
            };
            drop(reply.send(result));
        }
    }
}
