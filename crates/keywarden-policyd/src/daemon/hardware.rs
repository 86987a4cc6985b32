//! The hardware service, seen from policyd: its signals merged into one stream of
//! [`HwEvent`]s, and an actuator task that performs requests to it strictly in order.

use futures_util::stream::{select_all, BoxStream, StreamExt};
use keywarden_dbus::hardware::Hardware1Proxy;
use tokio::sync::mpsc;

use super::bus;
use crate::core::effects::Actuation;
use crate::error::Result;

/// One signal from hwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HwEvent {
    /// `BadgeScanned(reader, code)`.
    Badge(String, String),
    /// `ScanRejected(reader, reason)`.
    ScanRejected(String, String),
    /// `KeypadKey(keypad, key)`.
    Keypad(String),
    /// `FingerprintMatched(template, score)`.
    Finger(u32),
    /// `FingerprintNotMatched(reason)`.
    FingerNotMatched(String),
    /// `DoorChanged(open)`.
    Door(bool),
    /// `DoorAlarm(kind, active)`.
    DoorAlarm(String, bool),
    /// `SlotChanged(slot, occupied, while_locked)`.
    Slot(u32, bool),
    /// `TamperChanged(active)`.
    Tamper(bool),
}

/// Subscribe to every hwd signal policyd acts on. Call before reading the initial state so
/// nothing between the two is lost.
pub async fn events(hw: &Hardware1Proxy<'static>) -> Result<BoxStream<'static, HwEvent>> {
    let sub = bus("subscribing to hwd signals");
    let streams: Vec<BoxStream<'static, HwEvent>> = vec![
        hw.receive_badge_scanned()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move {
                let a = s.args().ok()?;
                Some(HwEvent::Badge(a.reader, a.code))
            })
            .boxed(),
        hw.receive_scan_rejected()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move {
                let a = s.args().ok()?;
                Some(HwEvent::ScanRejected(a.reader, a.reason))
            })
            .boxed(),
        hw.receive_keypad_key()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move { Some(HwEvent::Keypad(s.args().ok()?.key)) })
            .boxed(),
        hw.receive_fingerprint_matched()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move { Some(HwEvent::Finger(s.args().ok()?.template_id)) })
            .boxed(),
        hw.receive_fingerprint_not_matched()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move { Some(HwEvent::FingerNotMatched(s.args().ok()?.reason)) })
            .boxed(),
        hw.receive_door_changed()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move { Some(HwEvent::Door(s.args().ok()?.open)) })
            .boxed(),
        hw.receive_door_alarm()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move {
                let a = s.args().ok()?;
                Some(HwEvent::DoorAlarm(a.kind, a.active))
            })
            .boxed(),
        hw.receive_slot_changed()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move {
                let a = s.args().ok()?;
                Some(HwEvent::Slot(a.slot, a.occupied))
            })
            .boxed(),
        hw.receive_tamper_changed()
            .await
            .map_err(&sub)?
            .filter_map(|s| async move { Some(HwEvent::Tamper(s.args().ok()?.active)) })
            .boxed(),
    ];
    Ok(select_all(streams).boxed())
}

/// Start the actuator: requests are sent to hwd one after another, in the order the core
/// produced them (an LED's `blink` never overtakes its `off`).
pub fn actuator(hw: Hardware1Proxy<'static>) -> mpsc::UnboundedSender<Actuation> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Actuation>();
    tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            let result = match &a {
                Actuation::ReleaseSlot(slot, secs) => hw.release_slot(*slot, *secs).await,
                Actuation::UnlockDoor(secs) => hw.unlock_door(*secs).await,
                Actuation::LockDoor => hw.lock_door().await,
                Actuation::Indicator(slot, mode) => hw.set_slot_indicator(*slot, mode).await,
                Actuation::Beep(pattern) => hw.beep(pattern).await,
            };
            match result {
                Ok(()) => tracing::debug!(?a, "actuated"),
                Err(e) if a.opens() => tracing::error!(?a, error = %e, "hwd refused to open"),
                Err(e) => tracing::warn!(?a, error = %e, "hwd request failed"),
            }
        }
    });
    tx
}
