//! The process: configuration, the driver loop around [`UpdateCore`], and the workers.
//!
//! The loop owns the core. It takes commands from the bus ([`Call`]), reads the bootloader's
//! facts fresh for each one, performs the core's [`Action`]s in order (bootloader writes on the
//! blocking pool; the check and the install as workers on the blocking pool that report back
//! over a channel), publishes the view and emits `Completed` and `PropertiesChanged`.
//! Everything that touches a device, a file or the network is behind [`Platform`], whose real
//! implementation (`platform.rs`) composes `boot`, `install` and `remote`. The loop also keeps
//! the update history ([`crate::history`]): what it did, and after each fresh read of the
//! bootloader's facts, how the last activated slot's trial ended.

pub mod config;
mod platform;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keywarden_dbus::names::{UPDATE_BUS_NAME, UPDATE_PATH};
use keywarden_dbus::update::{UpdateError, UpdateSlot};
use tokio::sync::{mpsc, oneshot};
use zbus::object_server::InterfaceRef;
use zbus::Connection;

pub use platform::RealPlatform;

use crate::boot::Slot;
use crate::core::{
    Action, BootAction, BootFacts, Command, Counters, Failure, Offer, Source, UpdateCore,
};
use crate::history::{self, Entry, Event};
use crate::service::{
    refusal, Call, Published, Reply, SharedHistory, SharedPublished, UpdateService,
};
use crate::{Error, Result};

/// What the bootloader environment and the slots say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReport {
    /// Booted slot and whether it is committed.
    pub facts: BootFacts,
    /// Per slot, for the `Slots` property.
    pub slots: Vec<UpdateSlot>,
    /// The booted slot's version, "" if unknown.
    pub booted_version: String,
}

/// Everything the loop needs from the outside world. Blocking: the loop calls it on tokio's
/// blocking pool.
pub trait Platform: Send + Sync + 'static {
    /// Reads the bootloader environment and the kernel command line.
    fn boot_report(&self) -> Result<BootReport>;
    /// Writes the bootloader environment.
    fn boot(&self, action: BootAction) -> Result<()>;
    /// Asks the repository for the newest bundle for this board (None: nothing newer).
    fn check(&self) -> Result<Option<Offer>>;
    /// Installs from `source` into `target`, reporting progress (`verifying` once it reads the
    /// slot back) and stopping between chunks once `cancel` is set.
    fn install(
        &self,
        source: &Source,
        target: Slot,
        progress: &mut dyn FnMut(Counters, bool),
        cancel: &AtomicBool,
    ) -> Result<Counters>;
    /// The update history kept, oldest first.
    fn read_history(&self) -> Result<Vec<Entry>>;
    /// Appends `new` to the history that holds `kept` (synced before it returns); returns the
    /// records kept afterwards.
    fn append_history(&self, kept: Vec<Entry>, new: Vec<Entry>) -> Result<Vec<Entry>>;
}

/// A worker's report.
#[derive(Debug)]
enum Report {
    Checked(Result<Option<Offer>, Failure>),
    Progress(Counters, bool),
    Installed(Result<Counters, Failure>),
}

/// The failure a worker reports for `error`.
pub fn failure(error: &Error) -> Failure {
    Failure {
        code: error.code().to_owned(),
        message: error.to_string(),
    }
}

/// Serves `org.keywarden.Update1` on `conn` until the bus connection ends or SIGTERM.
pub async fn serve(
    conn: Connection,
    platform: Arc<dyn Platform>,
    admin_gids: std::collections::BTreeSet<u32>,
) -> Result<()> {
    let (calls_tx, mut calls) = mpsc::channel::<Call>(16);
    let published = SharedPublished::default();
    let shared_history = SharedHistory::default();
    let service = UpdateService::new(
        admin_gids,
        calls_tx,
        published.clone(),
        shared_history.clone(),
    );
    conn.object_server()
        .at(UPDATE_PATH, service)
        .await
        .map_err(|e| Error::Bus {
            operation: "serving /org/keywarden/Update1",
            source: Box::new(e),
        })?;
    let iface: InterfaceRef<UpdateService> = conn
        .object_server()
        .interface(UPDATE_PATH)
        .await
        .map_err(|e| Error::Bus {
            operation: "finding the served interface",
            source: Box::new(e),
        })?;
    conn.request_name(UPDATE_BUS_NAME)
        .await
        .map_err(|e| Error::Bus {
            operation: "owning org.keywarden.Update1",
            source: Box::new(e),
        })?;

    let mut driver = Driver {
        core: UpdateCore::new(),
        platform,
        published,
        iface,
        reports: mpsc::unbounded_channel(),
        cancel: Arc::new(AtomicBool::new(false)),
        pending_check: None,
        boot: None,
        history: Vec::new(),
        shared_history,
        history_started: false,
        installing: None,
    };
    match driver.blocking(|p| p.read_history()).await {
        Ok(kept) => driver.set_history(kept),
        Err(e) => tracing::error!(error = %e, "cannot read the update history; starting a new one"),
    }
    driver.refresh_boot().await;
    driver.publish().await;
    notify(sd_notify::NotifyState::Ready);
    tracing::info!("serving org.keywarden.Update1");

    let watchdog = watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::io("installing the SIGTERM handler for", "keywarden-updated", e))?;
    loop {
        tokio::select! {
            call = calls.recv() => match call {
                Some(call) => driver.call(call).await,
                None => break,
            },
            Some(report) = driver.reports.1.recv() => driver.report(report).await,
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify(sd_notify::NotifyState::Watchdog),
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: stopping (a running install stops between two chunks and resumes later)");
                driver.cancel.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    Ok(())
}

struct Driver {
    core: UpdateCore,
    platform: Arc<dyn Platform>,
    published: SharedPublished,
    iface: InterfaceRef<UpdateService>,
    reports: (
        mpsc::UnboundedSender<Report>,
        mpsc::UnboundedReceiver<Report>,
    ),
    cancel: Arc<AtomicBool>,
    pending_check: Option<oneshot::Sender<Result<Reply, UpdateError>>>,
    boot: Option<BootReport>,
    /// The history kept (oldest first) and its published copy.
    history: Vec<Entry>,
    shared_history: SharedHistory,
    /// The history has been compared with the boot facts since the process started.
    history_started: bool,
    /// The slot the running (or last) install writes.
    installing: Option<crate::boot::Slot>,
}

impl Driver {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Platform) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let platform = self.platform.clone();
        tokio::task::spawn_blocking(move || f(platform.as_ref()))
            .await
            .map_err(|e| Error::Worker(e.to_string()))?
    }

    /// Reads the boot facts, then records in the history what they settle.
    async fn refresh_boot(&mut self) {
        match self.blocking(|p| p.boot_report()).await {
            Ok(report) => {
                let due = history::outcomes(
                    &self.history,
                    &report.slots,
                    report.facts.booted,
                    !self.history_started,
                    unix_now(),
                );
                self.history_started = true;
                self.boot = Some(report);
                self.record(due).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the boot state");
                self.boot = None;
            }
        }
    }

    /// Appends to the history. A history that cannot be written is logged, never a reason to
    /// stop an install or a commit.
    async fn record(&mut self, new: Vec<Entry>) {
        if new.is_empty() {
            return;
        }
        for entry in &new {
            tracing::info!(
                event = entry.event.as_str(),
                slot = %entry.slot,
                version = %entry.version,
                code = %entry.code,
                message = %entry.message,
                "update history"
            );
        }
        let kept = std::mem::take(&mut self.history);
        let fallback = kept.iter().chain(&new).cloned().collect::<Vec<_>>();
        match self.blocking(move |p| p.append_history(kept, new)).await {
            Ok(kept) => self.set_history(kept),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the update history");
                self.set_history(fallback);
            }
        }
    }

    fn set_history(&mut self, kept: Vec<Entry>) {
        let wire = kept.iter().map(Entry::to_wire).collect();
        self.history = kept;
        match self.shared_history.lock() {
            Ok(mut h) => *h = wire,
            Err(poisoned) => *poisoned.into_inner() = wire,
        }
    }

    /// `slot` as the boot facts read last describe it (`None` if they could not be read).
    fn slot_state(&self, slot: crate::boot::Slot) -> Option<&UpdateSlot> {
        self.boot
            .as_ref()
            .and_then(|b| b.slots.iter().find(|s| s.name == slot.as_str()))
    }

    /// Whether the boot facts read last say `test` of `slot` (false if they could not be read).
    fn slot_is(&self, slot: crate::boot::Slot, test: impl Fn(&UpdateSlot) -> bool) -> bool {
        self.slot_state(slot).is_some_and(test)
    }

    /// The version the boot facts name for `slot`, "" if unknown.
    fn slot_version(&self, slot: crate::boot::Slot) -> String {
        self.slot_state(slot)
            .map(|s| s.version.clone())
            .unwrap_or_default()
    }

    async fn call(&mut self, call: Call) {
        let Call {
            command,
            caller,
            reply,
        } = call;
        tracing::info!(%caller, ?command, "command");
        self.refresh_boot().await;
        let Some(boot) = self.boot.clone() else {
            let _ = reply.send(Err(UpdateError::Failed(
                "the bootloader environment cannot be read (see the journal)".into(),
            )));
            return;
        };
        let is_check = command == Command::Check;
        let who = caller.clone();
        let actions = match self.core.command(command, boot.facts, SystemTime::now()) {
            Ok(actions) => actions,
            Err(r) => {
                let _ = reply.send(Err(refusal(r)));
                return;
            }
        };
        if is_check {
            self.pending_check = Some(reply);
            if let Err(e) = self.perform(actions, &who).await {
                if let Some(reply) = self.pending_check.take() {
                    let _ = reply.send(Err(e));
                }
            }
        } else {
            let result = self.perform(actions, &who).await;
            let _ = reply.send(result.map(|()| Reply::Done));
        }
        self.publish().await;
    }

    /// Performs actions in order, on behalf of `who` (for the history). A failed
    /// `MarkGood`/`MarkBad` is the caller's error; a failed `Invalidate` ends the install before
    /// anything is written.
    async fn perform(&mut self, actions: Vec<Action>, who: &str) -> Result<(), UpdateError> {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Boot(boot_action) => {
                    let result = self.blocking(move |p| p.boot(boot_action)).await;
                    if let Err(e) = &result {
                        tracing::error!(error = %e, ?boot_action, "bootloader write failed");
                    } else {
                        tracing::info!(?boot_action, "bootloader environment written");
                    }
                    // A mark that changes nothing (the bless unit's at every ordinary boot) is
                    // not history.
                    let done = match (boot_action, &result) {
                        (BootAction::MarkGood(slot), Ok(()))
                            if !self.slot_is(slot, |s| s.bootable && s.committed) =>
                        {
                            Some((
                                Event::MarkedGood,
                                slot,
                                format!("slot {slot} marked good by {who}"),
                            ))
                        }
                        (BootAction::MarkBad(slot), Ok(()))
                            if self.slot_is(slot, |s| s.bootable) =>
                        {
                            Some((
                                Event::MarkedBad,
                                slot,
                                format!("slot {slot} marked bad by {who}"),
                            ))
                        }
                        (BootAction::Invalidate(slot), _) => {
                            self.installing = Some(slot);
                            None
                        }
                        _ => None,
                    };
                    if let Some((event, slot, message)) = done {
                        let version = self.slot_version(slot);
                        let entry = Entry::new(unix_now(), event, slot, &version, message);
                        self.record(vec![entry]).await;
                    }
                    match (boot_action, result) {
                        (BootAction::Invalidate(_), Err(e)) => {
                            // Nothing was written: the install ends before it starts.
                            queue.clear();
                            let now = SystemTime::now();
                            queue.extend(self.core.install_done(Err(failure(&e)), now));
                        }
                        (BootAction::Activate(_), result) => {
                            let now = SystemTime::now();
                            let r = result.map_err(|e| failure(&e));
                            queue.extend(self.core.activation_done(r, now));
                        }
                        (BootAction::MarkGood(_) | BootAction::MarkBad(_), Err(e)) => {
                            return Err(UpdateError::Failed(e.to_string()));
                        }
                        (_, Ok(())) => {}
                    }
                    self.refresh_boot().await;
                }
                Action::StartCheck => self.start_check(),
                Action::StartInstall { source, target } => {
                    self.installing = Some(target);
                    let entry = Entry::new(
                        unix_now(),
                        Event::InstallStarted,
                        target,
                        "",
                        format!("install into slot {target} from {}", source.describe()),
                    );
                    self.record(vec![entry]).await;
                    self.start_install(source, target);
                }
                Action::CancelInstall => self.cancel.store(true, Ordering::SeqCst),
                Action::Completed { ok, code, message } => {
                    if let Some(slot) = self.installing {
                        let entry = self.completion_entry(slot, ok, &code, &message);
                        self.record(vec![entry]).await;
                    }
                    // The properties first: whoever reacts to the signal reads the end state.
                    self.publish().await;
                    if ok {
                        tracing::info!(%message, "install completed");
                    } else {
                        tracing::error!(%code, %message, "install failed");
                    }
                    let emitter = self.iface.signal_emitter();
                    if let Err(e) = UpdateService::completed(emitter, ok, &code, &message).await {
                        tracing::warn!(error = %e, "cannot emit Completed");
                    }
                }
            }
        }
        Ok(())
    }

    /// The history record of an install into `slot` that ended.
    fn completion_entry(
        &self,
        slot: crate::boot::Slot,
        ok: bool,
        code: &str,
        message: &str,
    ) -> Entry {
        let counters = self.core.view().counters;
        if ok {
            let version = self.slot_version(slot);
            Entry::new(
                unix_now(),
                Event::Installed,
                slot,
                &version,
                format!(
                    "slot {slot} written, read back and activated ({} bytes downloaded, {} reused); \
                     it boots next, on trial",
                    counters.downloaded, counters.reused
                ),
            )
        } else {
            Entry {
                code: code.to_owned(),
                ..Entry::new(
                    unix_now(),
                    Event::InstallFailed,
                    slot,
                    "",
                    message.to_owned(),
                )
            }
        }
    }

    fn start_check(&self) {
        let platform = self.platform.clone();
        let reports = self.reports.0.clone();
        tokio::task::spawn_blocking(move || {
            let result = platform.check().map_err(|e| failure(&e));
            let _ = reports.send(Report::Checked(result));
        });
    }

    fn start_install(&self, source: Source, target: Slot) {
        self.cancel.store(false, Ordering::SeqCst);
        let platform = self.platform.clone();
        let reports = self.reports.0.clone();
        let cancel = self.cancel.clone();
        tracing::info!(source = %source.describe(), %target, "install started");
        tokio::task::spawn_blocking(move || {
            let progress_reports = reports.clone();
            let mut progress = move |counters, verifying| {
                let _ = progress_reports.send(Report::Progress(counters, verifying));
            };
            let result = platform
                .install(&source, target, &mut progress, &cancel)
                .map_err(|e| failure(&e));
            let _ = reports.send(Report::Installed(result));
        });
    }

    async fn report(&mut self, report: Report) {
        let now = SystemTime::now();
        match report {
            Report::Checked(result) => {
                let answer = match &result {
                    Ok(Some(offer)) => Ok(Reply::Offer(true, offer.version.clone(), offer.size)),
                    Ok(None) => Ok(Reply::Offer(false, String::new(), 0)),
                    Err(f) if f.code == "not-configured" => {
                        Err(UpdateError::NotConfigured(f.message.clone()))
                    }
                    Err(f) => Err(UpdateError::Failed(format!("{} ({})", f.message, f.code))),
                };
                self.core.check_done(result, now);
                if let Some(reply) = self.pending_check.take() {
                    let _ = reply.send(answer);
                }
            }
            Report::Progress(counters, verifying) => {
                self.core.install_progress(counters, verifying);
            }
            Report::Installed(result) => {
                let actions = self.core.install_done(result, now);
                if let Err(e) = self.perform(actions, "the installer").await {
                    tracing::error!(error = %e, "after the install");
                }
            }
        }
        self.publish().await;
    }

    /// Updates the published view and emits `PropertiesChanged` for what changed.
    async fn publish(&mut self) {
        let view = self.core.view();
        let mut next = Published {
            state: view.phase.as_str().to_owned(),
            bytes_done: view.counters.done,
            bytes_total: view.counters.total,
            bytes_downloaded: view.counters.downloaded,
            bytes_reused: view.counters.reused,
            last_error: view
                .last_error
                .map(|f| (f.code, f.message))
                .unwrap_or_default(),
            ..Published::default()
        };
        if let Some(boot) = &self.boot {
            next.booted_slot = boot.facts.booted.to_string();
            next.booted_version = boot.booted_version.clone();
            next.slots = boot.slots.clone();
        }
        let previous = match self.published.lock() {
            Ok(mut p) => std::mem::replace(&mut *p, next.clone()),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), next.clone()),
        };
        let iface = self.iface.get().await;
        let emitter = self.iface.signal_emitter();
        let mut results = Vec::new();
        if previous.state != next.state {
            results.push(iface.state_changed(emitter).await);
        }
        if previous.bytes_done != next.bytes_done {
            results.push(iface.bytes_done_changed(emitter).await);
        }
        if previous.bytes_total != next.bytes_total {
            results.push(iface.bytes_total_changed(emitter).await);
        }
        if previous.bytes_downloaded != next.bytes_downloaded {
            results.push(iface.bytes_downloaded_changed(emitter).await);
        }
        if previous.bytes_reused != next.bytes_reused {
            results.push(iface.bytes_reused_changed(emitter).await);
        }
        if previous.booted_slot != next.booted_slot {
            results.push(iface.booted_slot_changed(emitter).await);
        }
        if previous.booted_version != next.booted_version {
            results.push(iface.booted_version_changed(emitter).await);
        }
        if previous.slots != next.slots {
            results.push(iface.slots_changed(emitter).await);
        }
        if previous.last_error != next.last_error {
            results.push(iface.last_error_changed(emitter).await);
        }
        for result in results {
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot emit PropertiesChanged");
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
