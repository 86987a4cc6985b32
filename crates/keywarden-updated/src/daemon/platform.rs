//! The real [`Platform`]: the configured bootloader backend, the slot devices, the installer
//! and the repository client, as `update.toml` describes them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use keywarden_bundle::{Keyring, Version};
use keywarden_dbus::update::UpdateSlot;

use super::config::{Bootloader, Config};
use super::{BootReport, Platform};
use crate::boot::{self, BootBackend, BootSelector, Slot};
use crate::core::{BootAction, BootFacts, Counters, Offer, Source};
use crate::history::{Entry, HistoryFile};
use crate::install::{self, BundleSource, FileSource, InstallRequest, Phase, SlotDevice};
use crate::remote::{HttpSource, HttpsClient, HttpsConfig, RemoteConfig, UpdateClient};
use crate::{Error, Result};

/// The platform described by `update.toml`.
pub struct RealPlatform {
    config: Config,
    cmdline: PathBuf,
    os_release: PathBuf,
    boot: Mutex<Box<dyn BootSelector>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for RealPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealPlatform")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RealPlatform {
    /// The platform `config` describes, on the running system (`/proc/cmdline`,
    /// `/etc/os-release`). Must be called inside the tokio runtime (the repository client is
    /// async and runs on it).
    pub fn new(config: Config) -> Result<RealPlatform> {
        RealPlatform::with_paths(config, "/proc/cmdline".into(), "/etc/os-release".into())
    }

    /// As [`RealPlatform::new`] with other files standing for the kernel command line and the
    /// booted system's `os-release` (tests).
    pub fn with_paths(
        config: Config,
        cmdline: PathBuf,
        os_release: PathBuf,
    ) -> Result<RealPlatform> {
        let backend = match &config.bootloader {
            Bootloader::Grub { grubenv } => BootBackend::Grub {
                env_file: grubenv.clone(),
            },
            Bootloader::Uboot { fw_env_config } => BootBackend::UBoot {
                config: fw_env_config.clone(),
            },
        };
        let boot = boot::open(&backend)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::Worker(format!("no async runtime for the repository client: {e}"))
        })?;
        Ok(RealPlatform {
            config,
            cmdline,
            os_release,
            boot: Mutex::new(boot),
            runtime,
        })
    }

    fn selector(&self) -> std::sync::MutexGuard<'_, Box<dyn BootSelector>> {
        match self.boot.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn booted(&self) -> Result<Slot> {
        let text = std::fs::read_to_string(&self.cmdline)
            .map_err(|e| Error::io("reading", &self.cmdline, e))?;
        boot::booted_slot(&text)
    }

    /// The booted system's version: `IMAGE_VERSION` in its `os-release`.
    pub fn booted_version(&self) -> Result<Version> {
        let text = std::fs::read_to_string(&self.os_release)
            .map_err(|e| Error::io("reading", &self.os_release, e))?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .ok_or_else(|| Error::Config {
                path: self.os_release.clone(),
                reason: "no IMAGE_VERSION= (the booted version is unknown, so nothing can be \
                         checked to be newer)"
                    .into(),
            })?;
        Version::parse(&value).map_err(|e| Error::Config {
            path: self.os_release.clone(),
            reason: format!("IMAGE_VERSION={value:?}: {e}"),
        })
    }

    fn keyring(&self) -> Result<Keyring> {
        let mut files = Vec::new();
        for path in &self.config.keys.trusted {
            if path.is_dir() {
                let entries = std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))?;
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                    .collect();
                found.sort();
                files.extend(found);
            } else if path.exists() {
                files.push(path.clone());
            }
        }
        Ok(Keyring::load(&files)?)
    }

    fn client(&self) -> Result<UpdateClient> {
        let repo = self.config.repository()?.ok_or_else(|| {
            Error::NotConfigured(format!(
                "neither update.toml's [repository] nor {} names one",
                self.config.repository_config.display()
            ))
        })?;
        let url = |field: &str, text: &str| {
            url::Url::parse(text).map_err(|e| Error::Config {
                path: self.config.repository_config.clone(),
                reason: format!("{field}: {text:?}: {e}"),
            })
        };
        UpdateClient::new(RemoteConfig::new(
            &repo.ca,
            &repo.root,
            self.config.state_dir.join("tuf"),
            url("metadata-url", &repo.metadata_url)?,
            url("targets-url", &repo.targets_url)?,
            &self.config.compatible,
        ))
    }

    fn https(&self) -> Result<HttpsClient> {
        let repo = self.config.repository()?.ok_or_else(|| {
            Error::NotConfigured(
                "no CA is configured for HTTPS downloads (the repository settings name it)".into(),
            )
        })?;
        HttpsClient::new(&HttpsConfig::new(&repo.ca))
    }

    fn slot_versions(&self, slot: Slot, booted: Slot, booted_version: &str) -> String {
        if slot == booted {
            return booted_version.to_owned();
        }
        match install::slot_version(&self.config.state_dir, slot.as_str()) {
            Ok(Some(v)) => v.to_string(),
            _ => String::new(),
        }
    }
}

/// A block device's (or a regular file's) size in bytes.
fn device_size(path: &Path) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    file.seek(SeekFrom::End(0))
        .map_err(|e| Error::io("finding the size of", path, e))
}

/// A source whose first `112 + M` bytes (header and manifest) must be the ones the repository's
/// signed targets metadata names ([`crate::remote::Offer::check_head`]) before the installer
/// may use them.
struct BoundSource {
    inner: HttpSource,
    offer: crate::remote::Offer,
}

impl BundleSource for BoundSource {
    fn open_at(&mut self, offset: u64) -> Result<Box<dyn Read + Send>> {
        if offset != 0 {
            return self.inner.open_at(offset);
        }
        let mut stream = self.inner.open_at(0)?;
        let head = crate::remote::tuf::read_head(&mut stream)?;
        self.offer.check_head(&head)?;
        Ok(Box::new(std::io::Cursor::new(head).chain(stream)))
    }

    fn len(&self) -> Option<u64> {
        self.inner.len()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

impl Platform for RealPlatform {
    fn boot_report(&self) -> Result<BootReport> {
        let booted = self.booted()?;
        let status = self.selector().status()?;
        let booted_version = self
            .booted_version()
            .map(|v| v.to_string())
            .unwrap_or_default();
        let slots = [Slot::A, Slot::B]
            .into_iter()
            .map(|slot| {
                let s = status.slot(slot);
                UpdateSlot {
                    name: slot.to_string(),
                    bootable: s.bootable,
                    committed: s.is_committed(),
                    tries_left: s.tries_left.map(u32::from).unwrap_or(0),
                    version: self.slot_versions(slot, booted, &booted_version),
                }
            })
            .collect();
        Ok(BootReport {
            facts: BootFacts {
                booted,
                booted_committed: status.slot(booted).is_committed(),
            },
            slots,
            booted_version,
        })
    }

    fn boot(&self, action: BootAction) -> Result<()> {
        let mut selector = self.selector();
        match action {
            BootAction::Invalidate(slot) => selector.invalidate(slot),
            BootAction::Activate(slot) => selector.activate(slot),
            BootAction::MarkGood(slot) => selector.mark_good(slot).map(drop),
            BootAction::MarkBad(slot) => selector.mark_bad(slot),
        }
    }

    fn check(&self) -> Result<Option<Offer>> {
        let client = self.client()?;
        let installed = self.booted_version()?;
        let offer = self.runtime.block_on(client.check())?;
        Ok(offer.filter(|o| o.version > installed).map(|o| Offer {
            version: o.version.to_string(),
            size: o.length,
        }))
    }

    fn install(
        &self,
        source: &Source,
        target: Slot,
        progress: &mut dyn FnMut(Counters, bool),
        cancel: &AtomicBool,
    ) -> Result<Counters> {
        let booted = self.booted()?;
        if target == booted {
            return Err(Error::Worker(format!(
                "refusing to write slot {target}: the system runs from it"
            )));
        }
        let mut source: Box<dyn BundleSource> = match source {
            Source::File(path) => Box::new(FileSource::new(path)?),
            Source::Url(url) => Box::new(HttpSource::probe(self.https()?, url)?),
            Source::Repository => {
                let client = self.client()?;
                let offer = self
                    .runtime
                    .block_on(client.check())?
                    .ok_or_else(|| Error::NothingOffered(self.config.compatible.clone()))?;
                Box::new(BoundSource {
                    inner: client.source(&offer),
                    offer,
                })
            }
        };
        let target_device = self.config.slot_device(target).to_owned();
        let mut request = InstallRequest::new(
            self.keyring()?,
            &self.config.compatible,
            self.booted_version()?,
            SlotDevice {
                name: target.to_string(),
                device: target_device.clone(),
            },
            device_size(&target_device)?,
            &self.config.state_dir,
        );
        request.active = Some(SlotDevice {
            name: booted.to_string(),
            device: self.config.slot_device(booted).to_owned(),
        });
        request.allow_test_keys = self.config.keys.allow_test_only;
        let mut total = 0;
        let mut report = |p: &install::Progress| {
            if p.phase == Phase::Writing {
                total = p.total;
            }
            let counters = Counters {
                done: p.downloaded + p.reused + p.resumed,
                total,
                downloaded: p.downloaded,
                reused: p.reused,
            };
            progress(
                counters,
                matches!(p.phase, Phase::Syncing | Phase::ReadBack | Phase::Done),
            );
        };
        let done = install::install(request, source.as_mut(), &mut report, cancel)?;
        tracing::info!(
            version = %done.version,
            slot = %done.slot,
            downloaded = done.downloaded,
            reused = done.reused,
            resumed = done.resumed,
            "slot written and read back"
        );
        Ok(Counters {
            done: done.payload_size,
            total: done.payload_size,
            downloaded: done.downloaded,
            reused: done.reused + done.resumed,
        })
    }

    fn read_history(&self) -> Result<Vec<Entry>> {
        HistoryFile::in_dir(&self.config.state_dir).read()
    }

    fn append_history(&self, kept: Vec<Entry>, new: Vec<Entry>) -> Result<Vec<Entry>> {
        HistoryFile::in_dir(&self.config.state_dir).append(kept, &new)
    }
}
