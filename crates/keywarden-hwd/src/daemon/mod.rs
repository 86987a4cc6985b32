//! The driver loop: the only place that reads the clock. It opens the backend (locks driven locked
//! first), builds the core, exports the D-Bus objects, then turns forever: wait for the next input,
//! key, fingerprint result, D-Bus request or deadline; feed the core and the decoders with `now`;
//! drive the outputs; emit signals; publish the property snapshot; ping the systemd watchdog.

mod fingerprint_worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use keywarden_dbus::hardware::{HardwareError, SelfTestResult};
use keywarden_dbus::names::{HARDWARE_BUS_NAME, HARDWARE_PATH, HARDWARE_SIM_PATH};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use zbus::object_server::InterfaceRef;
use zbus::Connection;

use crate::backend::{self, BackendKind, Hardware, InputSample};
use crate::board::Board;
use crate::core::{BurnInReport, Cabinet, CabinetConfig, Event, InputId, OutputId};
use crate::error::{Error, Result};
use crate::input::{KeyInput, KeypadDecoder, RawKey, ScanOutcome, WedgeDecoder};
use crate::service::{
    Call, Callers, HardwareService, HardwareSimService, Reply, Request, SharedSnapshot, Snapshot,
};
use fingerprint_worker::{FingerEvent, Job};

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The board file.
    pub board: PathBuf,
    /// Which backend.
    pub backend: BackendKind,
    /// Users (besides root) allowed to call.
    pub allow_users: Vec<String>,
    /// Bus address; the system bus when `None`.
    pub bus_address: Option<String>,
}

/// Resolve user names to uids; an unknown user is a configuration error.
fn resolve_users(names: &[String]) -> Result<Vec<u32>> {
    names
        .iter()
        .map(|n| match nix::unistd::User::from_name(n) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            _ => Err(Error::UnknownUser(n.clone())),
        })
        .collect()
}

/// A decoder per input device role.
enum Decoder {
    Reader(WedgeDecoder),
    Keypad(KeypadDecoder),
}

/// Where a caller's answer goes.
type ReplyTx = tokio::sync::oneshot::Sender<Result<Reply, HardwareError>>;

/// Everything the loop owns.
struct Driver {
    board: Board,
    cabinet: Cabinet,
    /// The caller of the running burn-in, answered when the core reports it finished.
    burn_in_reply: Option<ReplyTx>,
    hardware: Hardware,
    decoders: BTreeMap<String, Decoder>,
    fingerprint: Option<std_mpsc::Sender<Job>>,
    fingerprint_state: &'static str,
    finger_events: mpsc::Receiver<FingerEvent>,
    iface: InterfaceRef<HardwareService>,
    snapshot: SharedSnapshot,
}

/// Run the hardware service until SIGTERM/SIGINT.
pub async fn run(options: Options) -> Result<()> {
    let board = Board::load(&options.board)?;
    let callers = Callers::new(resolve_users(&options.allow_users)?);

    // Hardware first: opening drives every lock locked before anything else happens.
    let mut hardware = match options.backend {
        BackendKind::Cdev => backend::cdev::open(&board)?,
        BackendKind::Sim => backend::sim::open(&board)?,
    };
    let now = Instant::now();
    let mut cabinet = Cabinet::new(&CabinetConfig::from_board(&board), &hardware.initial, now);
    while let Some(out) = cabinet.poll_output() {
        hardware.outputs.set(out.id, out.active)?;
    }
    tracing::info!(board = %board.model, backend = options.backend.as_str(), "all locks driven locked");

    let (finger_tx, finger_events) = mpsc::channel(16);
    let (fingerprint, fingerprint_state) = match (&board.fingerprint, &hardware.fingerprint_port) {
        (Some(spec), Some(port)) => match fingerprint_worker::start(spec, port, finger_tx) {
            Ok(jobs) => (Some(jobs), "ready"),
            Err(e) => {
                // The cabinet stays usable with badge + PIN: report the fault, keep running.
                tracing::error!(error = %e, "fingerprint module unavailable");
                (None, "fault")
            }
        },
        _ => (None, "absent"),
    };

    let decoders = board
        .readers
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                Decoder::Reader(WedgeDecoder::new(r.wedge.clone())),
            )
        })
        .chain(
            board
                .keypads
                .iter()
                .map(|k| (k.name.clone(), Decoder::Keypad(KeypadDecoder::new()))),
        )
        .collect();

    let snapshot: SharedSnapshot = Arc::new(Mutex::new(Snapshot::of(&cabinet, fingerprint_state)));
    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    let service = HardwareService::new(
        calls_tx,
        snapshot.clone(),
        callers.clone(),
        options.backend.as_str(),
        board.model.clone(),
    );
    let connection = connect(
        &options,
        service,
        hardware
            .sim
            .clone()
            .map(|c| HardwareSimService::new(c, callers)),
    )
    .await?;
    let iface = connection
        .object_server()
        .interface::<_, HardwareService>(HARDWARE_PATH)
        .await
        .map_err(|source| Error::Bus {
            what: "look up the exported interface",
            source: Box::new(source),
        })?;

    let mut driver = Driver {
        board,
        cabinet,
        burn_in_reply: None,
        hardware,
        decoders,
        fingerprint,
        fingerprint_state,
        finger_events,
        iface,
        snapshot,
    };
    notify_ready();
    let watchdog = watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| Error::Os {
        what: "install SIGTERM handler".into(),
        source,
    })?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| Error::Os {
        what: "install SIGINT handler".into(),
        source,
    })?;
    tracing::info!(name = HARDWARE_BUS_NAME, "ready");

    loop {
        let deadline = driver.next_deadline().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(sample) = driver.hardware.samples.recv() => driver.on_sample(sample),
            Some(key) = driver.hardware.keys.recv() => driver.on_key(key).await,
            Some(ev) = driver.finger_events.recv() => driver.on_finger(ev).await,
            Some(call) = calls.recv() => driver.on_call(call),
            () = sleep => driver.on_timeout().await,
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify_watchdog(),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        driver.flush().await;
    }
    driver.shutdown();
    Ok(())
}

async fn connect(
    options: &Options,
    service: HardwareService,
    sim: Option<HardwareSimService>,
) -> Result<Connection> {
    let bus = |source| Error::Bus {
        what: "connect to the bus",
        source: Box::new(source),
    };
    let builder = match &options.bus_address {
        Some(addr) => zbus::connection::Builder::address(addr.as_str()).map_err(bus)?,
        None => zbus::connection::Builder::system().map_err(bus)?,
    };
    // Serve before taking the name, so no call arrives at a half-exported service.
    let mut builder = builder
        .serve_at(HARDWARE_PATH, service)
        .map_err(|source| Error::Bus {
            what: "export the hardware interface",
            source: Box::new(source),
        })?;
    if let Some(sim) = sim {
        builder = builder
            .serve_at(HARDWARE_SIM_PATH, sim)
            .map_err(|source| Error::Bus {
                what: "export the sim interface",
                source: Box::new(source),
            })?;
    }
    builder
        .name(HARDWARE_BUS_NAME)
        .map_err(|source| Error::Bus {
            what: "request the bus name",
            source: Box::new(source),
        })?
        .build()
        .await
        .map_err(|source| Error::Bus {
            what: "connect and own org.keywarden.Hardware1",
            source: Box::new(source),
        })
}

impl Driver {
    fn next_deadline(&self) -> Option<Instant> {
        let decoders = self.decoders.values().filter_map(|d| match d {
            Decoder::Reader(w) => w.poll_timeout(),
            Decoder::Keypad(_) => None,
        });
        self.cabinet
            .poll_timeout()
            .into_iter()
            .chain(decoders)
            .min()
    }

    fn on_sample(&mut self, sample: InputSample) {
        self.cabinet
            .handle_input(sample.id, sample.active, sample.at);
    }

    async fn on_key(&mut self, key: RawKey) {
        let emitter = self.iface.signal_emitter();
        let sent = match self.decoders.get_mut(&key.role) {
            Some(Decoder::Reader(w)) => {
                let outcome = match key.input {
                    KeyInput::Key { code, value } => w.handle_key(code, value, key.at),
                    KeyInput::Dropped => w.handle_dropped(key.at),
                };
                match outcome {
                    Some(outcome) => emit_scan(emitter, &key.role, outcome).await,
                    None => Ok(()),
                }
            }
            Some(Decoder::Keypad(k)) => match key.input {
                KeyInput::Key { code, value } => match k.handle_key(code, value) {
                    Some(name) => {
                        HardwareService::keypad_key(emitter, &key.role, name.as_str()).await
                    }
                    None => Ok(()),
                },
                // A lost keypad press cannot be recovered; the PIN entry it belonged to will
                // simply be wrong or incomplete, which policyd handles.
                KeyInput::Dropped => Ok(()),
            },
            None => Ok(()),
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "emitting an input signal failed");
        }
    }

    async fn on_finger(&mut self, event: FingerEvent) {
        let emitter = self.iface.signal_emitter();
        let sent = match &event {
            FingerEvent::Matched { template_id, score } => {
                HardwareService::fingerprint_matched(emitter, *template_id, *score).await
            }
            FingerEvent::NotMatched(reason) => {
                HardwareService::fingerprint_not_matched(emitter, reason).await
            }
        };
        if let Err(e) = sent {
            tracing::error!(error = %e, "emitting a fingerprint signal failed");
        }
    }

    /// Fire the core's timers and end every scan whose inter-key timeout passed. Scan outcomes
    /// are emitted here, in order, like those ended by a key in `on_key`.
    async fn on_timeout(&mut self) {
        let now = Instant::now();
        self.cabinet.handle_timeout(now);
        let emitter = self.iface.signal_emitter();
        for (role, d) in &mut self.decoders {
            let Decoder::Reader(w) = d else { continue };
            if let Some(outcome) = w.handle_timeout(now) {
                if let Err(e) = emit_scan(emitter, role, outcome).await {
                    tracing::error!(error = %e, "emitting a scan signal failed");
                }
            }
        }
    }

    fn on_call(&mut self, call: Call) {
        let now = Instant::now();
        let result = match call.request {
            Request::UnlockDoor(d) => self
                .cabinet
                .unlock_door(d, now)
                .map(|()| Reply::Done)
                .map_err(Into::into),
            Request::LockDoor => {
                self.cabinet.lock_door(now);
                Ok(Reply::Done)
            }
            Request::ReleaseSlot(slot, d) => self
                .cabinet
                .release_slot(slot, d, now)
                .map(|()| Reply::Done)
                .map_err(Into::into),
            Request::SetIndicator(slot, mode) => self
                .cabinet
                .set_indicator(slot, mode, now)
                .map(|()| Reply::Done)
                .map_err(Into::into),
            Request::Beep(p) => self
                .cabinet
                .beep(p, now)
                .map(|()| Reply::Done)
                .map_err(Into::into),
            Request::EnrollFingerprint(id) => {
                return self.fingerprint_job(call.reply, |tx| Job::Enroll(id, tx))
            }
            Request::DeleteFingerprint(id) => {
                return self.fingerprint_job(call.reply, |tx| Job::Delete(id, tx))
            }
            Request::SelfTest => return self.self_test(call.reply),
            Request::BurnIn { cycles, settle } => {
                match self.cabinet.start_burn_in(cycles, settle, now) {
                    Ok(()) => {
                        tracing::info!(cycles, settle_ms = settle.as_millis(), "burn-in started");
                        self.burn_in_reply = Some(call.reply);
                        return;
                    }
                    Err(e) => Err(e.into()),
                }
            }
        };
        drop(call.reply.send(result));
    }

    /// Hand a job to the fingerprint thread; its answer goes straight back to the caller.
    fn fingerprint_job(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<Reply, HardwareError>>,
        job: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), HardwareError>>) -> Job,
    ) {
        let Some(jobs) = &self.fingerprint else {
            drop(reply.send(Err(HardwareError::NotSupported(format!(
                "fingerprint module is {}",
                self.fingerprint_state
            )))));
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if jobs.send(job(tx)).is_err() {
            drop(reply.send(Err(HardwareError::DeviceFault(
                "fingerprint thread ended".into(),
            ))));
            return;
        }
        tokio::spawn(async move {
            let result = rx.await.unwrap_or_else(|_| {
                Err(HardwareError::DeviceFault(
                    "fingerprint thread ended".into(),
                ))
            });
            drop(reply.send(result.map(|()| Reply::Done)));
        });
    }

    fn self_test(&mut self, reply: tokio::sync::oneshot::Sender<Result<Reply, HardwareError>>) {
        let mut results = self.hardware.outputs.self_test();
        results.extend(self.hardware.input_checks.iter().cloned());
        let fingerprint = self.fingerprint.as_ref().map(|jobs| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (jobs.send(Job::SelfTest(tx)).is_ok(), rx)
        });
        let state = self.fingerprint_state;
        tokio::spawn(async move {
            match fingerprint {
                Some((true, rx)) => match tokio::time::timeout(Duration::from_secs(5), rx).await {
                    Ok(Ok(r)) => results.push(r),
                    _ => results.push(backend::failed(
                        "fingerprint".into(),
                        "module did not answer within 5 s".into(),
                    )),
                },
                Some((false, _)) => results.push(backend::failed(
                    "fingerprint".into(),
                    "fingerprint thread ended".into(),
                )),
                None if state == "absent" => {}
                None => results.push(backend::failed(
                    "fingerprint".into(),
                    format!("module {state}"),
                )),
            }
            drop(reply.send(Ok(Reply::SelfTest(results))));
        });
    }

    /// The burn-in's answer: a line per lock from the core's report, then every sensor read now.
    fn burn_in_results(&self, report: &BurnInReport) -> Vec<SelfTestResult> {
        let settle_ms = report.settle.as_millis();
        let feedback_line = |lock: OutputId| {
            self.board
                .feedback()
                .into_iter()
                .find(|(id, _)| *id == InputId::LockFeedback(lock))
                .map(|(_, l)| l.name.clone())
        };
        let mut results = Vec::new();
        if let Some(why) = &report.aborted {
            results.push(backend::failed("burn-in".into(), format!("aborted: {why}")));
        }
        for l in &report.locks {
            let check = format!("lock:{}", l.lock.role());
            let mut problems: Vec<String> = l
                .mismatches
                .iter()
                .map(|m| {
                    format!(
                        "cycle {}: driven {}, feedback read {} after {settle_ms} ms",
                        m.cycle,
                        lock_word(l.lock, m.driven),
                        lock_word(l.lock, m.read)
                    )
                })
                .collect();
            if l.cycles < report.cycles {
                problems.push(format!(
                    "completed {} of {} cycles",
                    l.cycles, report.cycles
                ));
            }
            let line = feedback_line(l.lock);
            results.push(match (problems.is_empty(), line) {
                (false, line) => backend::failed(
                    check,
                    format!(
                        "{} (feedback line {})",
                        problems.join("; "),
                        line.map_or_else(|| "none".to_owned(), |n| format!("{n:?}"))
                    ),
                ),
                (true, Some(line)) => backend::passed(
                    check,
                    format!(
                        "{} cycles: feedback {line:?} followed each time ({settle_ms} ms settle)",
                        l.cycles
                    ),
                ),
                (true, None) => backend::passed(
                    check,
                    format!(
                        "{} cycles driven; no feedback line in the board file: not verified",
                        l.cycles
                    ),
                ),
            });
        }
        for (id, spec) in self.board.inputs() {
            if id == InputId::FingerTouch {
                continue;
            }
            let check = format!("sensor:{}", id.role());
            let line = &spec.name;
            let active = match self.hardware.inputs.read(id) {
                Ok(a) => a,
                Err(e) => {
                    results.push(backend::failed(check, format!("line {line:?}: {e}")));
                    continue;
                }
            };
            let (ok, what) = match id {
                InputId::DoorSensor if active => (false, "open: the cabinet must be closed"),
                InputId::DoorSensor => (true, "closed"),
                InputId::Tamper if active => (false, "tampered: the enclosure must be closed"),
                InputId::Tamper => (true, "not tampered"),
                InputId::SlotPresence(_) if active => (true, "key present"),
                InputId::SlotPresence(_) => (true, "empty"),
                InputId::LockFeedback(_) if active => {
                    (false, "reads open with the lock driven locked")
                }
                InputId::LockFeedback(_) => (true, "locked"),
                InputId::FingerTouch => continue,
            };
            let detail = format!("{what} (line {line:?} reads {})", u8::from(active));
            results.push(if ok {
                backend::passed(check, detail)
            } else {
                backend::failed(check, detail)
            });
        }
        results
    }

    /// After every turn: drive outputs, report events, publish properties.
    async fn flush(&mut self) {
        while let Some(out) = self.cabinet.poll_output() {
            if let Err(e) = self.hardware.outputs.set(out.id, out.active) {
                tracing::error!(error = %e, line = %out.id.role(), active = out.active, "driving an output failed");
            }
        }
        let emitter = self.iface.signal_emitter().clone();
        while let Some(event) = self.cabinet.poll_event() {
            if event == Event::FingerTouched {
                if let Some(jobs) = &self.fingerprint {
                    drop(jobs.send(Job::Search));
                }
                continue;
            }
            if let Event::BurnInFinished(report) = event {
                let results = self.burn_in_results(&report);
                let failed = results.iter().filter(|r| !r.passed).count();
                tracing::info!(checks = results.len(), failed, "burn-in finished");
                match self.burn_in_reply.take() {
                    Some(reply) => drop(reply.send(Ok(Reply::SelfTest(results)))),
                    None => tracing::error!("burn-in finished with no caller waiting"),
                }
                continue;
            }
            if let Err(e) = emit_event(&emitter, &event).await {
                tracing::error!(error = %e, ?event, "emitting a signal failed");
            }
        }
        let now = Snapshot::of(&self.cabinet, self.fingerprint_state);
        let before = {
            let mut shared = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *shared, now.clone())
        };
        if before != now {
            if let Err(e) = self.properties_changed(&before, &now).await {
                tracing::error!(error = %e, "emitting PropertiesChanged failed");
            }
        }
    }

    async fn properties_changed(&self, before: &Snapshot, now: &Snapshot) -> zbus::Result<()> {
        let iface = self.iface.get().await;
        let emitter = self.iface.signal_emitter();
        if before.door_lock_state != now.door_lock_state {
            iface.door_lock_state_changed(emitter).await?;
        }
        if before.door_state != now.door_state {
            iface.door_state_changed(emitter).await?;
        }
        if before.door_alarm_state != now.door_alarm_state {
            iface.door_alarm_state_changed(emitter).await?;
        }
        if before.tamper_active != now.tamper_active {
            iface.tamper_active_changed(emitter).await?;
        }
        if before.slots != now.slots {
            iface.slots_changed(emitter).await?;
        }
        Ok(())
    }

    /// Drive every lock locked before exiting (systemd restarts us; the next start relocks too).
    fn shutdown(&mut self) {
        let locks: Vec<OutputId> = self
            .cabinet
            .slots()
            .map(|s| OutputId::SlotLock(s.number))
            .chain([OutputId::DoorLock])
            .collect();
        for id in locks {
            if let Err(e) = self.hardware.outputs.set(id, false) {
                tracing::error!(error = %e, line = %id.role(), "relocking at shutdown failed");
            }
        }
        tracing::info!("all locks driven locked; exiting");
    }
}

async fn emit_scan(
    emitter: &zbus::object_server::SignalEmitter<'_>,
    reader: &str,
    outcome: ScanOutcome,
) -> zbus::Result<()> {
    match outcome {
        ScanOutcome::Scanned(code) => HardwareService::badge_scanned(emitter, reader, &code).await,
        ScanOutcome::Rejected(why) => {
            tracing::warn!(reader, reason = %why, "scan rejected");
            HardwareService::scan_rejected(emitter, reader, &why.to_string()).await
        }
    }
}

async fn emit_event(
    emitter: &zbus::object_server::SignalEmitter<'_>,
    event: &Event,
) -> zbus::Result<()> {
    match *event {
        Event::DoorChanged { open } => HardwareService::door_changed(emitter, open).await,
        Event::DoorLockChanged { locked } => {
            HardwareService::door_lock_changed(emitter, locked).await
        }
        Event::DoorAlarm { kind, active } => {
            tracing::warn!(kind = kind.as_str(), active, "door alarm");
            HardwareService::door_alarm(emitter, kind.as_str(), active).await
        }
        Event::SlotChanged {
            slot,
            occupied,
            while_locked,
        } => HardwareService::slot_changed(emitter, slot, occupied, while_locked).await,
        Event::TamperChanged { active } => HardwareService::tamper_changed(emitter, active).await,
        Event::FingerTouched | Event::BurnInFinished(_) => Ok(()),
    }
}

/// A lock's state in words: `unlocked`/`released` when active, else `locked`.
fn lock_word(lock: OutputId, active: bool) -> &'static str {
    match (lock, active) {
        (_, false) => "locked",
        (OutputId::DoorLock, true) => "unlocked",
        (_, true) => "released",
    }
}

fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "sd_notify READY failed");
    }
}

/// Half the systemd watchdog period, if the unit has one.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn notify_watchdog() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]) {
        tracing::warn!(error = %e, "watchdog ping failed");
    }
}
