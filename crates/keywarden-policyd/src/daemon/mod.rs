//! The driver loop: the only place that reads clocks, seeds the RNG, talks to SQLite and to hwd.
//!
//! Start: read the policy file; open the identity keys and the database (a corrupt or unusable
//! database does not stop the service: it runs *out of service*, says why in `Status`, and
//! refuses every request, so every lock stays shut); subscribe to hwd's signals, then read the
//! board's slots; serve `org.keywarden.Policy1`; take the name; tell systemd we are ready.
//!
//! Each turn: feed one input to the core (a hwd signal, a bus call, a PIN check result, a
//! deadline or the periodic tick), then drain its effects: commits go to the store in one
//! transaction each and only then are their actuations queued to hwd; PIN checks run on a
//! blocking thread; notices become signals; the published view is refreshed.

pub mod clock;
pub mod hardware;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use keywarden_audit::DeviceKey;
use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::names::{POLICY_BUS_NAME, POLICY_INTERFACE, POLICY_PATH};
use keywarden_dbus::policy::{AlarmInfo, AuditReport, PolicyError};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use zbus::names::InterfaceName;
use zbus::object_server::InterfaceRef;
use zbus::zvariant::Value;

use crate::config::Config;
use crate::core::effects::{Actuation, Effect};
use crate::core::{ConsoleError, Core, Notice};
use crate::error::{Error, Result};
use crate::model::{PolicyState, SlotNumber};
use crate::service::{
    Access, Call, ConsoleCommand, Listing, PolicyService, Published, Reply, ReportSource, Request,
    SharedPublished,
};
use crate::store::{AdminOutcome, BadgeKey, Store};
use crate::wire;

use hardware::HwEvent;

/// How often the wall-clock checks run (overdue keys, validity ends, lockouts).
const TICK: Duration = Duration::from_secs(5);

/// What `main` hands the daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// SQLite database.
    pub database: PathBuf,
    /// ed25519 device key (PKCS#8 PEM); created if missing.
    pub device_key: PathBuf,
    /// Badge hashing key (32 bytes); created if missing.
    pub badge_key: PathBuf,
    /// Policy file.
    pub config: PathBuf,
    /// Provisioning's offsite settings (a file with an `[offsite]` section), used when the
    /// policy file has no `[offsite]`; a missing file means no offsite copy.
    pub offsite_config: PathBuf,
    /// Bus address instead of the system bus.
    pub bus_address: Option<String>,
    /// Groups whose members may call admin methods.
    pub admin_groups: Vec<String>,
    /// Groups whose members may call console methods.
    pub console_groups: Vec<String>,
    /// Where the diagnostic bundle's sources are; `None`: the appliance's paths.
    pub diag: Option<crate::diag::DiagPaths>,
}

/// Wrap a zbus error with what was being done (used by the whole driver, `hardware.rs` too).
fn bus(operation: &'static str) -> impl Fn(zbus::Error) -> Error {
    move |e| Error::Bus {
        operation,
        source: Box::new(e),
    }
}

fn gids(names: &[String]) -> BTreeSet<u32> {
    let (found, missing) = keywarden_dbus::caller::group_ids(names);
    for group in missing {
        tracing::warn!(%group, "no such group; its members get no access");
    }
    found
}

/// Open keys and database; any failure is the reason the service is out of service.
fn open_store(options: &Options) -> Result<Store> {
    for path in [&options.device_key, &options.badge_key, &options.database] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
    }
    let (device_key, created) = DeviceKey::load_or_create(&options.device_key)?;
    if created {
        tracing::warn!(path = %options.device_key.display(), "no device key was provisioned; generated one");
    }
    let (badge_key, _) = BadgeKey::load_or_create(&options.badge_key)?;
    Store::open(&options.database, device_key, badge_key)
}

/// Run until SIGTERM/SIGINT.
pub async fn run(options: Options) -> Result<()> {
    let config = Config::load(&options.config)?.or_offsite_file(&options.offsite_config)?;
    let builder = match &options.bus_address {
        Some(addr) => {
            zbus::connection::Builder::address(addr.as_str()).map_err(bus("bus address"))?
        }
        None => zbus::connection::Builder::system().map_err(bus("system bus"))?,
    };
    let conn = builder
        .build()
        .await
        .map_err(bus("connecting to the bus"))?;
    let hw = Hardware1Proxy::new(&conn)
        .await
        .map_err(bus("hardware proxy"))?;
    let mut hw_events = hardware::events(&hw).await?;
    let slots = wait_for_hardware(&hw).await;
    let board_slots: BTreeSet<SlotNumber> = slots.iter().map(|s| s.number).collect();

    let seed = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| Error::Random {
            detail: e.to_string(),
        })?;
        u64::from_le_bytes(b)
    };
    let (mut store, mut core) = match open_store(&options).and_then(|mut store| {
        store.sync_slots(&board_slots)?;
        let state = store.load_state(config.settings.clone(), &board_slots)?;
        let alarms = store.active_alarms()?;
        Ok((store, state, alarms))
    }) {
        Ok((store, state, alarms)) => (Some(store), Core::new(state, alarms, seed)),
        Err(e) => {
            tracing::error!(error = %e, "out of service: every lock stays shut");
            (None, Core::out_of_service(e.to_string(), seed))
        }
    };
    for s in &slots {
        core.set_slot_sensor(s.number, s.occupied);
    }
    core.resume(&clock::now(&config.time_zone));

    // The audit head after every turn, for the tasks that follow the chain (notifier, shipper).
    let (head_tx, head_rx) =
        tokio::sync::watch::channel(store.as_ref().map(|s| s.audit_head().0).unwrap_or(0));
    if store.is_some() {
        match config.notify.clone() {
            Some(notify) => {
                crate::notify::spawn(notify, &options, config.time_zone.clone(), head_rx.clone());
            }
            None => {
                // Off: a later start with notifications on begins at the head, not at entries
                // recorded while they were off.
                let path = options.database.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = crate::notify::forget_cursor(&path) {
                        tracing::warn!(error = %e, "could not reset the notifier's cursor");
                    }
                });
            }
        }
        if let Some(offsite) = config.offsite.clone() {
            crate::offsite::spawn(offsite, &options, head_rx.clone());
        }
    }
    drop(head_rx);

    let published: SharedPublished = SharedPublished::default();
    let (calls_tx, mut calls) = mpsc::channel::<Call>(16);
    let access = Access {
        admin_gids: gids(&options.admin_groups),
        console_gids: gids(&options.console_groups),
    };
    let reports = store
        .as_ref()
        .map(|_| ReportSource::new(options.database.clone(), config.time_zone.clone()));
    let diag = crate::diag::DiagSource::new(options.diag.clone().unwrap_or_else(|| {
        crate::diag::DiagPaths::appliance(&options.database, &options.device_key, &options.config)
    }));
    let service = PolicyService::new(
        calls_tx,
        published.clone(),
        access,
        hw.clone(),
        reports,
        diag,
    );
    conn.object_server()
        .at(POLICY_PATH, service)
        .await
        .map_err(bus("serving the policy interface"))?;
    let iface: InterfaceRef<PolicyService> = conn
        .object_server()
        .interface(POLICY_PATH)
        .await
        .map_err(bus("policy interface"))?;
    let device_key = store
        .as_ref()
        .map(|s| s.device_public_hex())
        .unwrap_or_default();
    publish(&core, &published, &iface, &device_key).await;
    conn.request_name(POLICY_BUS_NAME)
        .await
        .map_err(bus("taking the bus name"))?;

    let actuator = hardware::actuator(hw.clone());
    let (pin_tx, mut pin_results) = mpsc::unbounded_channel::<(u64, bool)>();
    let watchdog = watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut tick = tokio::time::interval(TICK);
    let os = |source| Error::Io {
        path: PathBuf::from("signal handler"),
        source,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(os)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(os)?;
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "sd_notify READY failed");
    }
    tracing::info!(slots = board_slots.len(), status = %status(&core), "policy service ready");

    let mut turn = Turn {
        store: &mut store,
        config: &config,
        board_slots: &board_slots,
        actuator: &actuator,
        pin_tx: &pin_tx,
        iface: &iface,
    };
    loop {
        let deadline = core.poll_timeout();
        let zone = &config.time_zone;
        // "Now" is read after the wait, when the input is there.
        tokio::select! {
            Some(ev) = hw_events.next() => turn.hardware(&mut core, ev, &clock::now(zone)),
            Some(call) = calls.recv() => turn.call(&mut core, call, &clock::now(zone)),
            Some((attempt, ok)) = pin_results.recv() => {
                core.handle_pin_checked(attempt, ok, &clock::now(zone));
            }
            _ = sleep_until(deadline) => core.handle_timeout(&clock::now(zone)),
            _ = tick.tick() => core.handle_tick(&clock::now(zone)),
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify_watchdog(),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        turn.drain(&mut core).await;
        if let Some(store) = turn.store.as_ref() {
            let head = store.audit_head().0;
            head_tx.send_if_modified(|h| std::mem::replace(h, head) != head);
        }
        publish(&core, &published, &iface, &device_key).await;
    }
    if let Some(store) = store.as_mut() {
        if let Err(e) = store.checkpoint_now(clock::now_ms()) {
            tracing::warn!(error = %e, "no checkpoint at shutdown");
        }
    }
    tracing::info!("policy service stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Read the board's slots from hwd, waiting (and saying so) until it answers. Retries with a
/// growing pause, cut short when the hardware service's name gets an owner, so a hwd that starts
/// (or restarts) later is picked up at once rather than at the next retry.
async fn wait_for_hardware(
    hw: &Hardware1Proxy<'static>,
) -> Vec<keywarden_dbus::hardware::SlotStatus> {
    let mut owner_changes = match hw.inner().receive_owner_changed().await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(error = %e, "not watching the hardware service's name; retrying on a timer only");
            None
        }
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match hw.slots().await {
            Ok(slots) => return slots,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the hardware service");
                let appeared = async {
                    match owner_changes.as_mut() {
                        Some(stream) => {
                            while let Some(owner) = stream.next().await {
                                if owner.is_some() {
                                    return;
                                }
                            }
                            std::future::pending::<()>().await
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    () = appeared => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn status(core: &Core) -> String {
    match core.out_of_service_reason() {
        None => "ready".into(),
        Some(why) => format!("out of service: {why}"),
    }
}

/// Everything one turn of the loop needs besides the core.
struct Turn<'a> {
    store: &'a mut Option<Store>,
    config: &'a Config,
    board_slots: &'a BTreeSet<SlotNumber>,
    actuator: &'a mpsc::UnboundedSender<Actuation>,
    pin_tx: &'a mpsc::UnboundedSender<(u64, bool)>,
    iface: &'a InterfaceRef<PolicyService>,
}

impl Turn<'_> {
    fn hardware(&mut self, core: &mut Core, ev: HwEvent, now: &crate::core::Now) {
        match ev {
            HwEvent::Badge(reader, code) => {
                // A key's tag (not a credential) starts a return; anything else is a badge,
                // known to the core only by its keyed hash.
                if let Some(key) = core.state().key_by_tag(&code).map(|k| k.id) {
                    core.handle_tag(key, now);
                } else if let Some(store) = self.store.as_ref() {
                    let hash = store.badge_hash(&code);
                    core.handle_badge(&hash, now);
                } else {
                    core.handle_badge("", now);
                }
                tracing::debug!(%reader, "scan");
            }
            HwEvent::ScanRejected(reader, reason) => {
                core.handle_scan_rejected(&reader, &reason, now)
            }
            HwEvent::Keypad(key) => core.handle_keypad(&key, now),
            HwEvent::Finger(template) => core.handle_fingerprint(template, now),
            HwEvent::FingerNotMatched(reason) => {
                core.handle_scan_rejected("fingerprint", &reason, now)
            }
            HwEvent::Door(open) => core.handle_door(open, now),
            HwEvent::DoorAlarm(kind, active) => core.handle_door_alarm(&kind, active, now),
            HwEvent::Slot(slot, occupied) => core.handle_slot(slot, occupied, now),
            HwEvent::Tamper(active) => core.handle_tamper(active, now),
        }
    }

    fn call(&mut self, core: &mut Core, call: Call, now: &crate::core::Now) {
        let answer = self.answer(core, call.request, now);
        if call.reply.send(answer).is_err() {
            tracing::debug!("caller went away before the answer");
        }
    }

    fn answer(
        &mut self,
        core: &mut Core,
        request: Request,
        now: &crate::core::Now,
    ) -> std::result::Result<Reply, PolicyError> {
        let not_ready = || PolicyError::NotReady(status(core));
        match request {
            Request::Console(cmd) => {
                if core.out_of_service_reason().is_some() {
                    return Err(not_ready());
                }
                let result = match cmd {
                    ConsoleCommand::ChooseKey(k) => core.choose_key(&k, now),
                    ConsoleCommand::ChooseReason(r) => core.choose_reason(&r, now),
                    ConsoleCommand::Cancel if core.session().name() == "idle" => {
                        Err(ConsoleError::WrongState("idle"))
                    }
                    ConsoleCommand::Cancel => {
                        core.cancel(now);
                        Ok(())
                    }
                };
                result.map(|()| Reply::Done).map_err(console_error)
            }
            Request::List(listing) => self.list(core, listing, now),
            Request::Admin(actor, op) => {
                let Some(store) = self.store.as_mut() else {
                    return Err(not_ready());
                };
                let outcome =
                    store.apply_admin(&actor, &op, &self.config.settings, clock::now_ms());
                let outcome = outcome.map_err(PolicyError::from)?;
                self.reload(core);
                Ok(match outcome {
                    AdminOutcome::Done => Reply::Done,
                    AdminOutcome::Created(id) => Reply::Id(id),
                })
            }
            Request::FreeTemplate(user) => {
                if core.state().user_named(&user).is_none() {
                    return Err(PolicyError::NotFound(format!("no user {user:?}")));
                }
                let next = core
                    .state()
                    .users
                    .values()
                    .flat_map(|u| u.fingerprints.iter().copied())
                    .max()
                    .map_or(1, |m| m + 1);
                Ok(Reply::Template(next))
            }
            Request::Export(file, from_seq) => {
                let Some(store) = self.store.as_mut() else {
                    return Err(not_ready());
                };
                let out = std::io::BufWriter::new(file);
                store
                    .export_audit(out, from_seq, clock::now_ms())
                    .map(Reply::Count)
                    .map_err(PolicyError::from)
            }
            Request::Verify => {
                let Some(store) = self.store.as_mut() else {
                    return Err(not_ready());
                };
                // Sign the head this process computed itself (not re-read from the file), so
                // the whole stored chain gets a verdict and rows edited behind our back fail.
                store.checkpoint_now(clock::now_ms())?;
                let report = store.verify_audit().map_err(|e| match e {
                    Error::AuditVerify(v) => PolicyError::AuditBroken(v.to_string()),
                    other => PolicyError::from(other),
                })?;
                Ok(Reply::Audit(AuditReport {
                    entries: report.entries,
                    checkpoints: report.checkpoints,
                    head: hex::encode(report.head),
                }))
            }
        }
    }

    fn list(
        &mut self,
        core: &Core,
        listing: Listing,
        now: &crate::core::Now,
    ) -> std::result::Result<Reply, PolicyError> {
        let state: &PolicyState = core.state();
        Ok(match listing {
            Listing::KeyChoices => {
                let offers = core.key_offers(now).map_err(console_error)?;
                Reply::KeyChoices(wire::key_choices(state, &offers))
            }
            Listing::Reasons => Reply::Reasons(wire::reasons(state)),
            Listing::Users => Reply::Users(wire::users(state)),
            Listing::Groups => Reply::Groups(wire::groups(state)),
            Listing::AllKeys => Reply::AllKeys(wire::all_keys(state)),
            Listing::Slots => Reply::Slots(wire::slots(state)),
            Listing::Permissions => Reply::Permissions(wire::permissions(state)),
            Listing::Schedules => Reply::Schedules(wire::schedules(state)),
            Listing::Holidays => {
                let store = self
                    .store
                    .as_ref()
                    .ok_or_else(|| PolicyError::NotReady(status(core)))?;
                Reply::Holidays(wire::holidays(store.list_holidays()?))
            }
            Listing::Reservations => Reply::Reservations(wire::reservations(state, now.wall)),
            Listing::Alarms(active_only) => {
                let store = self
                    .store
                    .as_ref()
                    .ok_or_else(|| PolicyError::NotReady(status(core)))?;
                Reply::Alarms(
                    store
                        .list_alarms(active_only)?
                        .into_iter()
                        .map(|a| AlarmInfo {
                            id: a.id,
                            kind: a.kind.as_str().to_owned(),
                            subject: a.subject,
                            raised_at: a.raised_at,
                            cleared_at: a.cleared_at.unwrap_or(0),
                            acknowledged_by: a.acknowledged_by.unwrap_or_default(),
                            note: a.note.unwrap_or_default(),
                        })
                        .collect(),
                )
            }
        })
    }

    /// Re-read the decision state from the database (after an admin change or a failed commit).
    fn reload(&mut self, core: &mut Core) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        match store.load_state(self.config.settings.clone(), self.board_slots) {
            Ok(state) => core.replace_state(state, &clock::now(&self.config.time_zone)),
            Err(e) => tracing::error!(error = %e, "cannot reload the policy state"),
        }
    }

    /// Perform everything the core asked for.
    async fn drain(&mut self, core: &mut Core) {
        while let Some(effect) = core.poll_effect() {
            match effect {
                Effect::Commit(commit) => {
                    let result = match self.store.as_mut() {
                        Some(store) => store.commit(&commit, clock::now_ms()).map(drop),
                        None => Err(Error::OutOfService),
                    };
                    match result {
                        Ok(()) => {
                            for a in commit.then {
                                let _ = self.actuator.send(a);
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, ?commit.events, "commit failed; nothing opened");
                            let now = clock::now(&self.config.time_zone);
                            core.handle_commit_failed(&now);
                            self.reload(core);
                        }
                    }
                }
                Effect::Feedback(a) => {
                    let _ = self.actuator.send(a);
                }
                Effect::CheckPin { user, pin, attempt } => {
                    let phc = self
                        .store
                        .as_ref()
                        .map(|s| s.pin_hash(user))
                        .transpose()
                        .ok()
                        .flatten()
                        .flatten();
                    let tx = self.pin_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let ok = phc.is_some_and(|phc| crate::store::verify_pin(&phc, &pin));
                        let _ = tx.send((attempt, ok));
                    });
                }
            }
        }
        let emitter = self.iface.signal_emitter();
        while let Some(notice) = core.poll_notice() {
            let sent = match &notice {
                Notice::Denied { code, message } => {
                    PolicyService::denied(emitter, code, message).await
                }
                Notice::Granted { key, slot, due_at } => {
                    PolicyService::granted(emitter, key, *slot, *due_at).await
                }
                Notice::Alarm {
                    kind,
                    subject,
                    active,
                } => PolicyService::alarm_changed(emitter, kind.as_str(), subject, *active).await,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, ?notice, "cannot emit signal");
            }
        }
    }
}

fn console_error(e: ConsoleError) -> PolicyError {
    match e {
        ConsoleError::WrongState(_) => PolicyError::WrongState(e.to_string()),
        ConsoleError::UnknownKey(_) | ConsoleError::UnknownReason(_) => {
            PolicyError::NotFound(e.to_string())
        }
    }
}

/// Refresh the published view and emit `PropertiesChanged` for what changed.
async fn publish(
    core: &Core,
    published: &SharedPublished,
    iface: &InterfaceRef<PolicyService>,
    device_key: &str,
) {
    let new = Published {
        session: core.session_view(),
        active_alarms: core.active_alarms().count() as u32,
        status: status(core),
        device_key: device_key.to_owned(),
    };
    let old = {
        let mut guard = published.lock().unwrap_or_else(|p| p.into_inner());
        if *guard == new {
            return;
        }
        std::mem::replace(&mut *guard, new.clone())
    };
    // One PropertiesChanged for the whole change, so a console never sees a new state with an
    // old slot or prompt (and proxies' property caches stay consistent).
    let (o, n) = (&old.session, &new.session);
    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
    if o.state != n.state {
        changed.insert("SessionState", Value::from(n.state));
    }
    if o.user != n.user {
        changed.insert("SessionUser", Value::from(n.user.as_str()));
    }
    if o.prompt != n.prompt {
        changed.insert("SessionPrompt", Value::from(n.prompt.as_str()));
    }
    if o.key != n.key {
        changed.insert("SessionKey", Value::from(n.key.as_str()));
    }
    if o.notes != n.notes {
        changed.insert("SessionNotes", Value::from(n.notes.as_str()));
    }
    if o.slot != n.slot {
        changed.insert("SessionSlot", Value::from(n.slot));
    }
    if o.entry != n.entry {
        changed.insert("SessionEntry", Value::from(n.entry.as_str()));
    }
    if o.pin_length != n.pin_length {
        changed.insert("PinLength", Value::from(n.pin_length));
    }
    if old.active_alarms != new.active_alarms {
        changed.insert("ActiveAlarms", Value::from(new.active_alarms));
    }
    if old.status != new.status {
        changed.insert("Status", Value::from(new.status.as_str()));
    }
    let sent = zbus::fdo::Properties::properties_changed(
        iface.signal_emitter(),
        InterfaceName::from_static_str_unchecked(POLICY_INTERFACE),
        changed,
        Cow::Borrowed(&[]),
    )
    .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot emit PropertiesChanged");
    }
}

impl Error {
    /// The process exit code for a start-up failure (documented in `main.rs`): 2 for a refused
    /// policy file, 4 for an unreachable bus, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } | Error::OffsiteConfig { .. } => 2,
            Error::Bus { .. } => 4,
            _ => 1,
        }
    }
}

/// Half the systemd watchdog period, if the unit has one.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn notify_watchdog() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]) {
        tracing::warn!(error = %e, "watchdog ping failed");
    }
}
