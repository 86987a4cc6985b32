//! The U-Boot environment backend, with `fw_setenv` (libubootenv) semantics, read by
//! `image/uboot/boot.cmd`.
//!
//! # Where: `/etc/fw_env.config`
//!
//! One line per copy: `device offset env-size [sector-size [sector-count]]` (numbers decimal,
//! `0x` hex or leading-`0` octal, as `strtoul(.., 0)`); `#` starts a comment. One line = a single
//! environment, two lines = the redundant pair. The device may be a plain file (tests, images) or
//! a block device (an eMMC offset, an eMMC boot partition); MTD character devices need
//! erase-before-write and are refused for writing. The sector fields only matter for MTD and are
//! kept but not used.
//!
//! # Format
//!
//! Single: `CRC32 (LE) | data`; redundant: `CRC32 (LE) | flags (1 byte) | data`, the CRC over the
//! data only. The data is `name=value\0` entries ending with an empty one (`\0\0`), padded with
//! zeros to the configured size. An empty value means "not set" (`fw_setenv NAME` deletes), so
//! setting a variable to "" removes it; `*_TRY` then reads as its default, empty = committed.
//!
//! # Which copy, and writing
//!
//! A copy is valid if its CRC matches and its data parses. Redundant: if both are valid, the one
//! with the higher flags byte is current, with wrap-around (255 followed by 0: the 0 copy is
//! newer), equal flags pick the first — U-Boot's and libubootenv's rule. A write goes to the
//! *other* copy with flags + 1 (wrapping) and is fsynced: a power cut mid-write leaves that copy
//! with a bad CRC, so the old current copy stays in use. Single copy: the write is in place and
//! can be torn by a power cut (U-Boot then falls back to its built-in default environment);
//! boards should configure the redundant pair. No valid copy at all is an
//! [`Error::UBootEnvInvalid`] for reads *and* writes: writing a fresh environment would replace
//! U-Boot's default one (`bootcmd` and the rest), so the image must ship a valid environment
//! (`mkenvimage` from the board's defaults).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::env::{Entry, EnvVars};
use super::{delegate_boot_selector, EnvStore, Selector};
use crate::{Error, Result};

/// One copy of the environment: a line of `fw_env.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootEnvLocation {
    /// The device or file holding it.
    pub device: PathBuf,
    /// Byte offset of the copy in the device.
    pub offset: u64,
    /// Size of the copy in bytes (CRC, flags and data).
    pub size: usize,
    /// Erase sector size (MTD only; kept, not used).
    pub sector_size: Option<u64>,
    /// Number of erase sectors (MTD only; kept, not used).
    pub sector_count: Option<u64>,
}

/// The parsed `fw_env.config`: one copy, or the redundant pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UBootConfig {
    /// The copies, in the file's order (1 or 2).
    pub copies: Vec<UBootEnvLocation>,
}

impl UBootConfig {
    /// Parse the text of an `fw_env.config` (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<UBootConfig> {
        let err = |line: usize, reason: String| Error::UBootConfig {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut copies = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if fields.len() < 3 || fields.len() > 5 {
                return Err(err(
                    line_no,
                    format!(
                        "{} fields; expected: device offset env-size [sector-size [sector-count]]",
                        fields.len()
                    ),
                ));
            }
            let num = |idx: usize, what: &str| {
                parse_c_number(fields[idx]).ok_or_else(|| {
                    err(line_no, format!("{what} {:?} is not a number", fields[idx]))
                })
            };
            let offset = num(1, "offset")?;
            let size = num(2, "env size")?;
            let sector_size = if fields.len() > 3 {
                Some(num(3, "sector size")?)
            } else {
                None
            };
            let sector_count = if fields.len() > 4 {
                Some(num(4, "sector count")?)
            } else {
                None
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s > 6 && s <= 64 << 20)
                .ok_or_else(|| err(line_no, format!("env size {size} out of range")))?;
            copies.push(UBootEnvLocation {
                device: PathBuf::from(fields[0]),
                offset,
                size,
                sector_size,
                sector_count,
            });
        }
        match copies.len() {
            0 => return Err(err(0, "no environment location".to_string())),
            1 | 2 => {}
            n => return Err(err(0, format!("{n} locations; at most 2 (redundant pair)"))),
        }
        if copies.len() == 2 && copies[0].size != copies[1].size {
            return Err(err(
                0,
                format!(
                    "the redundant copies differ in size ({} and {})",
                    copies[0].size, copies[1].size
                ),
            ));
        }
        Ok(UBootConfig { copies })
    }

    /// Read and parse an `fw_env.config` file.
    pub fn from_file(path: &Path) -> Result<UBootConfig> {
        let text = fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        UBootConfig::parse(&text, path)
    }

    /// Two copies (with the flags byte).
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }
}

/// `strtoul(s, NULL, 0)` without its leniency: `0x` hex, leading-`0` octal, else decimal.
fn parse_c_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// The boot selector over a U-Boot environment.
#[derive(Debug)]
pub struct UBootEnv {
    inner: Selector<UBootStore>,
}

#[derive(Debug)]
pub(crate) struct UBootStore {
    config: UBootConfig,
    /// From the last load: the current copy and its flags byte.
    current: Option<(usize, u8)>,
}

impl UBootStore {
    pub(crate) fn new(config: UBootConfig) -> UBootStore {
        UBootStore {
            config,
            current: None,
        }
    }
}

impl UBootEnv {
    /// The selector over the environment `config` locates. Nothing is read until the first call.
    pub fn new(config: UBootConfig) -> UBootEnv {
        UBootEnv {
            inner: Selector::new(UBootStore::new(config)),
        }
    }

    /// Parse the `fw_env.config` at `path` (e.g. [`super::DEFAULT_FW_ENV_CONFIG`]).
    pub fn from_config_file(path: &Path) -> Result<UBootEnv> {
        Ok(UBootEnv::new(UBootConfig::from_file(path)?))
    }

    /// The configuration in use.
    pub fn config(&self) -> &UBootConfig {
        &self.inner.store_ref().config
    }
}

delegate_boot_selector!(UBootEnv);

fn describe(loc: &UBootEnvLocation) -> String {
    format!("{}@{:#x}", loc.device.display(), loc.offset)
}

/// Header bytes before the data: CRC, plus the flags byte when redundant.
fn header_len(redundant: bool) -> usize {
    if redundant {
        5
    } else {
        4
    }
}

/// Check and parse one copy. `Err` says why the copy is not valid.
pub(crate) fn decode(buf: &[u8], redundant: bool) -> std::result::Result<(u8, EnvVars), String> {
    let hl = header_len(redundant);
    if buf.len() <= hl {
        return Err(format!("{} bytes is too small", buf.len()));
    }
    let stored = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let flags = if redundant { buf[4] } else { 0 };
    let data = &buf[hl..];
    let computed = crc32fast::hash(data);
    if stored != computed {
        return Err(format!(
            "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let mut entries = Vec::new();
    let mut p = 0;
    loop {
        let Some(len) = data[p..].iter().position(|&b| b == 0) else {
            return Err("data not terminated by an empty entry".to_string());
        };
        if len == 0 {
            break;
        }
        let entry = &data[p..p + len];
        match entry.iter().position(|&b| b == b'=') {
            Some(eq) if eq > 0 => entries.push(Entry::Var {
                name: entry[..eq].to_vec(),
                value: entry[eq + 1..].to_vec(),
            }),
            _ => {
                return Err(format!(
                    "entry at byte {} is not name=value: {:?}",
                    hl + p,
                    String::from_utf8_lossy(&entry[..entry.len().min(40)])
                ))
            }
        }
        p += len + 1;
    }
    Ok((flags, EnvVars { entries }))
}

/// Serialise one copy of `size` bytes with `flags` (ignored unless redundant).
pub(crate) fn encode(
    vars: &EnvVars,
    size: usize,
    redundant: bool,
    flags: u8,
    location: &str,
) -> Result<Vec<u8>> {
    let hl = header_len(redundant);
    let mut data = Vec::with_capacity(size);
    for (name, value) in vars.vars() {
        if value.is_empty() {
            continue; // fw_setenv semantics: an empty value is an unset variable
        }
        if name.is_empty() || name.iter().any(|&b| b == b'=' || b == 0) {
            return Err(Error::BootEnvUnrepresentable {
                location: location.to_string(),
                name: String::from_utf8_lossy(name).into_owned(),
                reason: "a name must be non-empty and hold no '=' or NUL",
            });
        }
        if value.contains(&0) {
            return Err(Error::BootEnvUnrepresentable {
                location: location.to_string(),
                name: String::from_utf8_lossy(name).into_owned(),
                reason: "U-Boot values cannot hold a NUL byte",
            });
        }
        data.extend_from_slice(name);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(0);
    }
    data.push(0);
    let capacity = size.saturating_sub(hl);
    if data.len() > capacity {
        return Err(Error::BootEnvTooLarge {
            location: location.to_string(),
            needed: data.len() + hl,
            capacity: size,
        });
    }
    data.resize(capacity, 0);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
    if redundant {
        out.push(flags);
    }
    out.extend_from_slice(&data);
    Ok(out)
}

/// Which of two valid copies is current, by their flags bytes (U-Boot's `env_import_redund`).
pub(crate) fn newer_copy(flags0: u8, flags1: u8) -> usize {
    if flags0 == 255 && flags1 == 0 {
        1
    } else if flags1 == 255 && flags0 == 0 {
        0
    } else if flags1 > flags0 {
        1
    } else {
        0
    }
}

fn read_copy(loc: &UBootEnvLocation) -> Result<Vec<u8>> {
    let f = File::open(&loc.device).map_err(|e| Error::io("opening", &loc.device, e))?;
    let mut buf = vec![0u8; loc.size];
    f.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| Error::io("reading the U-Boot environment from", &loc.device, e))?;
    Ok(buf)
}

fn write_copy(loc: &UBootEnvLocation, bytes: &[u8]) -> Result<()> {
    let meta = fs::metadata(&loc.device).map_err(|e| Error::io("inspecting", &loc.device, e))?;
    if meta.file_type().is_char_device() {
        return Err(Error::UBootConfig {
            path: loc.device.clone(),
            line: 0,
            reason: "character (MTD) devices need erase-before-write, which is not supported"
                .to_string(),
        });
    }
    with_boot_partition_writable(&loc.device, || {
        let f = OpenOptions::new()
            .write(true)
            .open(&loc.device)
            .map_err(|e| Error::io("opening for writing", &loc.device, e))?;
        f.write_all_at(bytes, loc.offset)
            .map_err(|e| Error::io("writing the U-Boot environment to", &loc.device, e))?;
        f.sync_all()
            .map_err(|e| Error::io("syncing", &loc.device, e))
    })
}

/// eMMC boot partitions (`/dev/mmcblkXbootY`) are read-only until `force_ro` is cleared, as
/// libubootenv does; it is set again afterwards.
fn with_boot_partition_writable(device: &Path, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let name = device
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("mmcblk") && n.contains("boot"));
    let Some(name) = name else { return f() };
    let force_ro = PathBuf::from(format!("/sys/class/block/{name}/force_ro"));
    let was = fs::read_to_string(&force_ro).map(|s| s.trim() == "1");
    if let Ok(true) = was {
        fs::write(&force_ro, "0").map_err(|e| Error::io("clearing", &force_ro, e))?;
    }
    let result = f();
    if let Ok(true) = was {
        if let Err(e) = fs::write(&force_ro, "1") {
            tracing::warn!(path = %force_ro.display(), error = %e, "could not set force_ro again");
        }
    }
    result
}

impl EnvStore for UBootStore {
    fn location(&self) -> String {
        self.config
            .copies
            .iter()
            .map(describe)
            .collect::<Vec<_>>()
            .join(" + ")
    }

    fn load(&mut self) -> Result<EnvVars> {
        let redundant = self.config.is_redundant();
        let mut valid = Vec::new();
        let mut reasons = Vec::new();
        for (i, loc) in self.config.copies.iter().enumerate() {
            let buf = read_copy(loc)?;
            match decode(&buf, redundant) {
                Ok((flags, vars)) => valid.push((i, flags, vars)),
                Err(reason) => {
                    tracing::warn!(copy = %describe(loc), %reason, "U-Boot environment copy not valid");
                    reasons.push(format!("{}: {reason}", describe(loc)));
                }
            }
        }
        let pick = match valid.len() {
            0 => {
                self.current = None;
                return Err(Error::UBootEnvInvalid {
                    device: self.location(),
                    reasons: reasons.join("; "),
                });
            }
            1 => 0,
            _ => newer_copy(valid[0].1, valid[1].1),
        };
        let (index, flags, vars) = valid.swap_remove(pick);
        self.current = Some((index, flags));
        Ok(vars)
    }

    fn store(&mut self, vars: &EnvVars) -> Result<()> {
        if self.current.is_none() {
            self.load()?;
        }
        let Some((current, flags)) = self.current else {
            return Err(Error::UBootEnvInvalid {
                device: self.location(),
                reasons: "no copy loaded".to_string(),
            });
        };
        let redundant = self.config.is_redundant();
        let (target, new_flags) = if redundant {
            (1 - current, flags.wrapping_add(1))
        } else {
            (0, 0)
        };
        let loc = &self.config.copies[target];
        let bytes = encode(vars, loc.size, redundant, new_flags, &describe(loc))?;
        write_copy(loc, &bytes)?;
        self.current = Some((target, new_flags));
        Ok(())
    }
}
