//! `keywarden-updated`, the OTA updater (`org.keywarden.Update1`, root, sandboxed).
//!
//! - [`boot`]: which root slot boots, boot counting and rollback, behind one trait
//!   ([`boot::BootSelector`]): the GRUB environment block (x86-64 / QEMU image) and the U-Boot
//!   environment (ARM, `fw_setenv` semantics).
//! - [`install`]: writing a bundle's payload into the inactive slot: every chunk verified before
//!   it is written, resume from the chunks already on the slot, chunks found in the active slot
//!   reused instead of downloaded, fsync and read-back before the slot may be activated.
//! - [`remote`]: where bundles come from: a TUF repository (`tough`) over HTTPS (rustls, ureq)
//!   that names the bundle, and ranged HTTPS reads of it.
//! - [`core`]: the sans-IO update state machine (check, download/install, activate, commit,
//!   rollback) with the current time as an input.
//! - [`history`]: the update history on the data partition, and how a trial's outcome is read
//!   from the bootloader's facts.
//! - [`daemon`] and [`service`]: the D-Bus adapter and the process.

pub mod boot;
pub mod core;
pub mod daemon;
pub mod error;
pub mod health;
pub mod history;
pub mod install;
pub mod logging;
pub mod remote;
pub mod service;

pub use error::{Error, Result};
