//! The D-Bus surface: `org.keywarden.Hardware1` (and, on the sim backend, `org.keywarden.HardwareSim1`).
//!
//! A thin adapter: every method first checks the caller's uid from the message header with the
//! bus (`GetConnectionUnixUser`) against the allowed set, whatever the bus policy says, then
//! validates its arguments and hands a [`Request`] to the driver loop, which owns the state. Property
//! getters read the [`Snapshot`] the driver loop publishes after every turn.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keywarden_dbus::hardware::{
    BeepPattern, HardwareError, IndicatorMode, SelfTestResult, SlotStatus, BURN_IN_SETTLE_MS,
    MAX_BURN_IN_CYCLES, MAX_PULSE_SECONDS,
};
use tokio::sync::{mpsc, oneshot};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use crate::backend::sim::{SimControl, SimError};
use crate::core::Cabinet;

/// What a caller asked the driver loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Unlock the door for this long.
    UnlockDoor(Duration),
    /// Lock the door now.
    LockDoor,
    /// Release a slot for this long.
    ReleaseSlot(u32, Duration),
    /// Set a slot's LED.
    SetIndicator(u32, IndicatorMode),
    /// Play a buzzer pattern.
    Beep(BeepPattern),
    /// Enroll a fingerprint template.
    EnrollFingerprint(u32),
    /// Delete a fingerprint template.
    DeleteFingerprint(u32),
    /// Run the non-actuating self-test.
    SelfTest,
    /// Run the factory burn-in (root only).
    BurnIn {
        /// Cycles.
        cycles: u32,
        /// Settle time after each drive.
        settle: Duration,
    },
}

/// The driver loop's answer.
#[derive(Debug)]
pub enum Reply {
    /// Done, nothing to return.
    Done,
    /// Self-test results.
    SelfTest(Vec<SelfTestResult>),
}

/// A request with the channel its answer goes back on.
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Reply, HardwareError>>,
}

/// The state the properties show, published by the driver loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `DoorLockState`.
    pub door_lock_state: &'static str,
    /// `DoorState`.
    pub door_state: &'static str,
    /// `DoorAlarmState`.
    pub door_alarm_state: &'static str,
    /// `TamperActive`.
    pub tamper_active: bool,
    /// `Slots`.
    pub slots: Vec<SlotStatus>,
    /// `FingerprintModule`.
    pub fingerprint_module: &'static str,
}

impl Snapshot {
    /// The properties' view of the core, plus the fingerprint module's state.
    pub fn of(cabinet: &Cabinet, fingerprint_module: &'static str) -> Snapshot {
        Snapshot {
            door_lock_state: if cabinet.door_locked() {
                "locked"
            } else {
                "unlocked"
            },
            door_state: if cabinet.door_open() {
                "open"
            } else {
                "closed"
            },
            door_alarm_state: cabinet.door_alarm().map_or("none", |k| k.as_str()),
            tamper_active: cabinet.tamper(),
            slots: cabinet
                .slots()
                .map(|s| SlotStatus {
                    number: s.number,
                    occupied: s.occupied,
                    released: s.released,
                    indicator: s.indicator.as_str().to_owned(),
                })
                .collect(),
            fingerprint_module,
        }
    }
}

/// Shared, published snapshot.
pub type SharedSnapshot = Arc<Mutex<Snapshot>>;

/// Who may call: uid 0 and the uids of the allowed users.
#[derive(Debug, Clone)]
pub struct Callers {
    allowed: BTreeSet<u32>,
}

impl Callers {
    /// Root plus `uids`.
    pub fn new(uids: impl IntoIterator<Item = u32>) -> Callers {
        let mut allowed: BTreeSet<u32> = uids.into_iter().collect();
        allowed.insert(0);
        Callers { allowed }
    }

    /// The caller's uid if allowed; `AccessDenied` otherwise (also when the bus cannot tell).
    pub async fn check(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
    ) -> Result<u32, HardwareError> {
        let sender = header
            .sender()
            .ok_or_else(|| HardwareError::AccessDenied("message has no sender".into()))?;
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let uid = dbus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| {
                HardwareError::AccessDenied(format!("cannot identify caller {sender}: {e}"))
            })?;
        if self.allowed.contains(&uid) {
            Ok(uid)
        } else {
            tracing::warn!(uid, sender = %sender, what, "refused caller");
            Err(HardwareError::AccessDenied(format!(
                "uid {uid} may not call {what}"
            )))
        }
    }
}

fn pulse(seconds: u32) -> Result<Duration, HardwareError> {
    if (1..=MAX_PULSE_SECONDS).contains(&seconds) {
        Ok(Duration::from_secs(u64::from(seconds)))
    } else {
        Err(HardwareError::InvalidArgument(format!(
            "seconds must be 1..={MAX_PULSE_SECONDS}, got {seconds}"
        )))
    }
}

fn burn_in(cycles: u32, settle_ms: u32) -> Result<Request, HardwareError> {
    if !(1..=MAX_BURN_IN_CYCLES).contains(&cycles) {
        return Err(HardwareError::InvalidArgument(format!(
            "cycles must be 1..={MAX_BURN_IN_CYCLES}, got {cycles}"
        )));
    }
    if !BURN_IN_SETTLE_MS.contains(&settle_ms) {
        return Err(HardwareError::InvalidArgument(format!(
            "settle_ms must be {}..={}, got {settle_ms}",
            BURN_IN_SETTLE_MS.start(),
            BURN_IN_SETTLE_MS.end()
        )));
    }
    Ok(Request::BurnIn {
        cycles,
        settle: Duration::from_millis(u64::from(settle_ms)),
    })
}

fn invalid(e: impl std::fmt::Display) -> HardwareError {
    HardwareError::InvalidArgument(e.to_string())
}

/// `org.keywarden.Hardware1` at `/org/keywarden/Hardware1`.
pub struct HardwareService {
    calls: mpsc::Sender<Call>,
    snapshot: SharedSnapshot,
    callers: Callers,
    backend: &'static str,
    board: String,
}

impl HardwareService {
    /// A service handing requests to the driver loop over `calls`.
    pub fn new(
        calls: mpsc::Sender<Call>,
        snapshot: SharedSnapshot,
        callers: Callers,
        backend: &'static str,
        board: String,
    ) -> Self {
        HardwareService {
            calls,
            snapshot,
            callers,
            backend,
            board,
        }
    }

    async fn call(&self, request: Request) -> Result<Reply, HardwareError> {
        let (reply, answer) = oneshot::channel();
        let shutting_down =
            || HardwareError::DeviceFault("the hardware service is shutting down".into());
        self.calls
            .send(Call { request, reply })
            .await
            .map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Check the caller first, then the arguments (already parsed into `request`), then act.
    async fn act(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
        request: Result<Request, HardwareError>,
    ) -> Result<Reply, HardwareError> {
        let uid = self.callers.check(conn, header, what).await?;
        let request = request?;
        tracing::info!(uid, ?request, "request");
        self.call(request).await
    }

    fn snap(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[interface(name = "org.keywarden.Hardware1")]
impl HardwareService {
    async fn unlock_door(
        &self,
        seconds: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        let request = pulse(seconds).map(Request::UnlockDoor);
        self.act(conn, &header, "UnlockDoor", request)
            .await
            .map(drop)
    }

    async fn lock_door(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.act(conn, &header, "LockDoor", Ok(Request::LockDoor))
            .await
            .map(drop)
    }

    async fn release_slot(
        &self,
        slot: u32,
        seconds: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        let request = pulse(seconds).map(|d| Request::ReleaseSlot(slot, d));
        self.act(conn, &header, "ReleaseSlot", request)
            .await
            .map(drop)
    }

    async fn set_slot_indicator(
        &self,
        slot: u32,
        mode: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        let request = mode
            .parse::<IndicatorMode>()
            .map(|m| Request::SetIndicator(slot, m))
            .map_err(invalid);
        self.act(conn, &header, "SetSlotIndicator", request)
            .await
            .map(drop)
    }

    async fn beep(
        &self,
        pattern: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        let request = pattern
            .parse::<BeepPattern>()
            .map(Request::Beep)
            .map_err(invalid);
        self.act(conn, &header, "Beep", request).await.map(drop)
    }

    async fn enroll_fingerprint(
        &self,
        template_id: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.act(
            conn,
            &header,
            "EnrollFingerprint",
            Ok(Request::EnrollFingerprint(template_id)),
        )
        .await
        .map(drop)
    }

    async fn delete_fingerprint(
        &self,
        template_id: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.act(
            conn,
            &header,
            "DeleteFingerprint",
            Ok(Request::DeleteFingerprint(template_id)),
        )
        .await
        .map(drop)
    }

    #[zbus(out_args("results"))]
    async fn self_test(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<SelfTestResult>, HardwareError> {
        match self
            .act(conn, &header, "SelfTest", Ok(Request::SelfTest))
            .await?
        {
            Reply::SelfTest(results) => Ok(results),
            Reply::Done => Ok(Vec::new()),
        }
    }

    /// Root only: the burn-in opens every lock.
    #[zbus(out_args("results"))]
    async fn burn_in(
        &self,
        cycles: u32,
        settle_ms: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<SelfTestResult>, HardwareError> {
        let uid = self.callers.check(conn, &header, "BurnIn").await?;
        if uid != 0 {
            tracing::warn!(uid, "refused burn-in: root only");
            return Err(HardwareError::AccessDenied(format!(
                "uid {uid} may not call BurnIn: root only (it opens every lock)"
            )));
        }
        let request = burn_in(cycles, settle_ms)?;
        tracing::info!(uid, ?request, "request");
        match self.call(request).await? {
            Reply::SelfTest(results) => Ok(results),
            Reply::Done => Ok(Vec::new()),
        }
    }

    #[zbus(signal)]
    pub async fn badge_scanned(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        code: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn scan_rejected(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn keypad_key(
        emitter: &SignalEmitter<'_>,
        keypad: &str,
        key: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn fingerprint_matched(
        emitter: &SignalEmitter<'_>,
        template_id: u32,
        score: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn fingerprint_not_matched(
        emitter: &SignalEmitter<'_>,
        reason: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn door_changed(emitter: &SignalEmitter<'_>, open: bool) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn door_lock_changed(emitter: &SignalEmitter<'_>, locked: bool) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn door_alarm(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        active: bool,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn slot_changed(
        emitter: &SignalEmitter<'_>,
        slot: u32,
        occupied: bool,
        while_locked: bool,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn tamper_changed(emitter: &SignalEmitter<'_>, active: bool) -> zbus::Result<()>;

    #[zbus(property)]
    fn backend(&self) -> String {
        self.backend.to_owned()
    }

    #[zbus(property)]
    fn board(&self) -> String {
        self.board.clone()
    }

    #[zbus(property)]
    fn door_lock_state(&self) -> String {
        self.snap().door_lock_state.to_owned()
    }

    #[zbus(property)]
    fn door_state(&self) -> String {
        self.snap().door_state.to_owned()
    }

    #[zbus(property)]
    fn door_alarm_state(&self) -> String {
        self.snap().door_alarm_state.to_owned()
    }

    #[zbus(property)]
    fn tamper_active(&self) -> bool {
        self.snap().tamper_active
    }

    #[zbus(property)]
    fn slots(&self) -> Vec<SlotStatus> {
        self.snap().slots.clone()
    }

    #[zbus(property)]
    fn fingerprint_module(&self) -> String {
        self.snap().fingerprint_module.to_owned()
    }
}

/// `org.keywarden.HardwareSim1` at `/org/keywarden/HardwareSim1`: the sim backend's control surface.
pub struct HardwareSimService {
    control: SimControl,
    callers: Callers,
}

impl HardwareSimService {
    /// Export `control` to the same callers as the hardware interface.
    pub fn new(control: SimControl, callers: Callers) -> Self {
        HardwareSimService { control, callers }
    }
}

impl From<SimError> for HardwareError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::NoSuchSlot(_) => HardwareError::NoSuchSlot(e.to_string()),
            SimError::Closed => HardwareError::DeviceFault(e.to_string()),
            SimError::NoDevice { .. } | SimError::NoSuchLine(_) => {
                HardwareError::NotSupported(e.to_string())
            }
            SimError::Untypeable(_) | SimError::NoSuchKey(_) => {
                HardwareError::InvalidArgument(e.to_string())
            }
        }
    }
}

#[interface(name = "org.keywarden.HardwareSim1")]
impl HardwareSimService {
    async fn scan_badge(
        &self,
        reader: &str,
        text: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "ScanBadge").await?;
        Ok(self.control.scan_badge(reader, text).await?)
    }

    async fn press_keys(
        &self,
        keypad: &str,
        keys: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "PressKeys").await?;
        Ok(self.control.press_keys(keypad, &keys).await?)
    }

    async fn set_door(
        &self,
        open: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "SetDoor").await?;
        Ok(self.control.set_door(open).await?)
    }

    async fn set_slot(
        &self,
        slot: u32,
        occupied: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "SetSlot").await?;
        Ok(self.control.set_slot(slot, occupied).await?)
    }

    async fn set_tamper(
        &self,
        active: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "SetTamper").await?;
        Ok(self.control.set_tamper(active).await?)
    }

    async fn touch_fingerprint(
        &self,
        template_id: i32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers
            .check(conn, &header, "TouchFingerprint")
            .await?;
        Ok(self.control.touch_fingerprint(Some(template_id)).await?)
    }

    async fn lift_fingerprint(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers.check(conn, &header, "LiftFingerprint").await?;
        Ok(self.control.touch_fingerprint(None).await?)
    }

    #[zbus(out_args("active"))]
    async fn output(
        &self,
        line: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<bool, HardwareError> {
        self.callers.check(conn, &header, "Output").await?;
        Ok(self.control.output(line)?)
    }

    async fn set_feedback_broken(
        &self,
        lock: &str,
        broken: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), HardwareError> {
        self.callers
            .check(conn, &header, "SetFeedbackBroken")
            .await?;
        Ok(self.control.set_feedback_broken(lock, broken)?)
    }
}
