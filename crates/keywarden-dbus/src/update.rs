//! `org.keywarden.Update1`: the proxy, wire types and errors. The XML in `interfaces/` documents
//! every member.

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

/// One slot as reported by the `Slots` property: `(sbbus)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct UpdateSlot {
    /// "A" or "B".
    pub name: String,
    /// The bootloader may boot it.
    pub bootable: bool,
    /// It boots without counting tries (committed after a health check).
    pub committed: bool,
    /// Tries left before the bootloader gives up on it (0 when committed).
    pub tries_left: u32,
    /// The version installed in it, "" if unknown.
    pub version: String,
}

/// One record of the update history, as `History` returns it: `(tsssss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct UpdateHistoryEntry {
    /// When, in seconds since the Unix epoch (the device's clock).
    pub time: u64,
    /// What happened: "install-started", "installed", "install-failed",
    /// "install-interrupted", "committed", "rolled-back", "marked-good" or "marked-bad".
    pub event: String,
    /// The slot it concerns, "A" or "B".
    pub slot: String,
    /// The version concerned, "" if unknown.
    pub version: String,
    /// A stable error code for failures, else "".
    pub code: String,
    /// For people.
    pub message: String,
}

/// Errors of `org.keywarden.Update1`: `org.keywarden.Update1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.keywarden.Update1.Error")]
pub enum UpdateError {
    /// A bus-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller is neither root nor in `keywarden-admin`.
    AccessDenied(String),
    /// An argument is not one of the allowed values.
    InvalidArgument(String),
    /// A check or an install is already running.
    Busy(String),
    /// The device has no update repository (or no trusted keys) configured.
    NotConfigured(String),
    /// The operation failed; the message says why.
    Failed(String),
}

/// Client proxy for `org.keywarden.Update1`.
#[zbus::proxy(
    interface = "org.keywarden.Update1",
    default_service = "org.keywarden.Update1",
    default_path = "/org/keywarden/Update1"
)]
pub trait Update1 {
    /// See the interface XML.
    fn check(&self) -> zbus::Result<(bool, String, u64)>;
    /// See the interface XML.
    fn install(&self, source: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn cancel(&self) -> zbus::Result<()>;
    /// See the interface XML.
    fn mark_good(&self, slot: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn mark_bad(&self, slot: &str) -> zbus::Result<()>;
    /// See the interface XML.
    fn history(&self, limit: u32) -> zbus::Result<Vec<UpdateHistoryEntry>>;
    /// See the interface XML.
    #[zbus(signal)]
    fn completed(&self, ok: bool, code: String, message: String) -> zbus::Result<()>;
    /// See the interface XML.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    /// See the interface XML.
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    /// See the interface XML.
    #[zbus(property)]
    fn bytes_downloaded(&self) -> zbus::Result<u64>;
    /// See the interface XML.
    #[zbus(property)]
    fn bytes_reused(&self) -> zbus::Result<u64>;
    /// See the interface XML.
    #[zbus(property)]
    fn booted_slot(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn booted_version(&self) -> zbus::Result<String>;
    /// See the interface XML.
    #[zbus(property)]
    fn slots(&self) -> zbus::Result<Vec<UpdateSlot>>;
    /// See the interface XML.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<(String, String)>;
}
