//! The real [`Platform`]: the configured bootloader backend, the slot devices, the installer
//! and the repository client.

use std::sync::atomic::AtomicBool;

use super::config::Config;
use super::{BootReport, Platform};
use crate::boot::Slot;
use crate::core::{BootAction, Counters, Offer, Source};
use crate::{Error, Result};

/// The platform described by `update.toml`.
#[derive(Debug)]
pub struct RealPlatform {
    config: Config,
}

impl RealPlatform {
    /// The platform `config` describes.
    pub fn new(config: Config) -> RealPlatform {
        RealPlatform { config }
    }
}

impl Platform for RealPlatform {
    fn boot_report(&self) -> Result<BootReport> {
        Err(Error::NotConfigured(format!("{:?}", self.config.bootloader)))
    }
    fn boot(&self, _action: BootAction) -> Result<()> {
        Err(Error::NotConfigured(String::new()))
    }
    fn check(&self) -> Result<Option<Offer>> {
        Err(Error::NotConfigured(String::new()))
    }
    fn install(
        &self,
        _source: &Source,
        _target: Slot,
        _progress: &mut dyn FnMut(Counters, bool),
        _cancel: &AtomicBool,
    ) -> Result<Counters> {
        Err(Error::NotConfigured(String::new()))
    }
}
