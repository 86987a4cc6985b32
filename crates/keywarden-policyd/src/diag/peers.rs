//! The other services' part of a bundle, asked over the bus: hwd's state and a non-actuating
//! self-test, the updater's slots and history. Each call has a deadline; a service that does
//! not answer is recorded as such, and the bundle is still made.

use std::future::Future;
use std::time::Duration;

use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::update::Update1Proxy;
use serde_json::{json, Value};
use zbus::proxy::CacheProperties;
use zbus::Connection;

/// How many update history records a bundle carries (the newest).
const HISTORY: u32 = 100;

/// Per call.
const DEADLINE: Duration = Duration::from_secs(10);

async fn ask<T, F>(what: &str, call: F) -> Result<T, String>
where
    F: Future<Output = zbus::Result<T>>,
{
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", DEADLINE.as_secs())),
    }
}

fn value<T: serde::Serialize>(r: Result<T, String>) -> Value {
    match r {
        Ok(v) => serde_json::to_value(v).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e }),
    }
}

/// `hardware.json`.
pub(super) async fn hardware(conn: &Connection, self_test: bool) -> Result<Value, String> {
    let hw = Hardware1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("hardware proxy: {e}"))?;
    // The first call says whether hwd is there at all.
    let backend = ask("Backend", hw.backend()).await?;
    let tests = if self_test {
        Some(ask("SelfTest", hw.self_test()).await)
    } else {
        None
    };
    let passed = tests.as_ref().map(|t| {
        t.as_ref()
            .map(|t| t.iter().all(|r| r.passed))
            .unwrap_or(false)
    });
    Ok(json!({
        "backend": backend,
        "board": value(ask("Board", hw.board()).await),
        "door_lock": value(ask("DoorLockState", hw.door_lock_state()).await),
        "door": value(ask("DoorState", hw.door_state()).await),
        "door_alarm": value(ask("DoorAlarmState", hw.door_alarm_state()).await),
        "tamper_active": value(ask("TamperActive", hw.tamper_active()).await),
        "slots": value(ask("Slots", hw.slots()).await),
        "fingerprint_module": value(ask("FingerprintModule", hw.fingerprint_module()).await),
        "self_test_passed": passed,
        "self_test": tests.map(value),
    }))
}

/// `update.json`.
pub(super) async fn update(conn: &Connection) -> Result<Value, String> {
    let up = Update1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("update proxy: {e}"))?;
    let state = ask("State", up.state()).await?;
    let last_error = ask("LastError", up.last_error()).await;
    Ok(json!({
        "state": state,
        "booted_slot": value(ask("BootedSlot", up.booted_slot()).await),
        "booted_version": value(ask("BootedVersion", up.booted_version()).await),
        "slots": value(ask("Slots", up.slots()).await),
        "last_error": match last_error {
            Ok((code, message)) => json!({ "code": code, "message": message }),
            Err(e) => json!({ "error": e }),
        },
        "last_install": {
            "bytes_total": value(ask("BytesTotal", up.bytes_total()).await),
            "bytes_downloaded": value(ask("BytesDownloaded", up.bytes_downloaded()).await),
            "bytes_reused": value(ask("BytesReused", up.bytes_reused()).await),
        },
        "history": value(ask("History", up.history(HISTORY)).await),
    }))
}
