//! The GRUB environment block backend (`/EFI/BOOT/grubenv` on the ESP, read by `grub.cfg`).
//!
//! # Format (GRUB's `lib/envblk.c`, `grub-editenv`)
//!
//! Exactly [`BLOCK_SIZE`] bytes: the header `# GRUB Environment Block\n`, then lines. A line
//! starting with `#` is a comment (Debian's `grub-editenv` writes a "Do not edit" one); any other
//! line is `NAME=value\n`, where a backslash in the value is written `\\` and a newline `\` +
//! newline (GRUB unescapes "backslash + any byte" to that byte). The rest of the block is padding:
//! `#` up to the end, which is also where GRUB's `save_env` finds room for new variables.
//! Parsing is strict: a wrong size or header, a line with no `=` or an empty name, or a value
//! that runs into the end of the block is an [`Error::GrubEnvFormat`]. Unknown variables and
//! comments are kept as they are.
//!
//! A missing file is an environment with every variable at the boot script's default (GRUB's
//! `load_env` fails and `grub.cfg`'s defaults apply: slot A, committed); the first write creates
//! it.
//!
//! # Writing: in place, as GRUB's own `save_env` does
//!
//! An existing 1024-byte block is overwritten in place (same file, same clusters, no directory
//! change) and fsynced. Only a missing file (a factory image without one) is created, through a
//! temporary file renamed into place.
//!
//! Replacing the file by rename was tried first and failed the VM power-cut test: on the FAT ESP
//! Linux's vfat driver does not order the new directory entry after the new file's clusters and
//! FAT chain, and a cut during an update left an entry pointing at cluster 0. GRUB's `load_env`
//! then failed ("invalid cluster 0"), the boot script fell back to its defaults (slot A), and
//! slot A was the half-written one. In place there is no file-system metadata to tear. The
//! variables occupy the first 512-byte sector (header and five short variables, well under 512
//! bytes); the second sector is padding that never changes, so a write changes one sector,
//! which the disk writes whole. [`Error::BootEnvTooLarge`] still bounds the block at 1024 bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::env::{Entry, EnvVars};
use super::{delegate_boot_selector, EnvStore, Selector};
use crate::{Error, Result};

/// The size of a GRUB environment block.
pub const BLOCK_SIZE: usize = 1024;

/// The first line of every GRUB environment block.
const HEADER: &[u8] = b"# GRUB Environment Block\n";

/// The boot selector over a GRUB environment block file.
#[derive(Debug)]
pub struct GrubEnv {
    inner: Selector<GrubStore>,
}

#[derive(Debug)]
pub(crate) struct GrubStore {
    path: PathBuf,
}

impl GrubStore {
    pub(crate) fn new(path: PathBuf) -> GrubStore {
        GrubStore { path }
    }
}

impl GrubEnv {
    /// The selector over the block at `path` (e.g. [`super::DEFAULT_GRUBENV_PATH`]). Nothing is
    /// read until the first call.
    pub fn new(path: impl Into<PathBuf>) -> GrubEnv {
        GrubEnv {
            inner: Selector::new(GrubStore::new(path.into())),
        }
    }

    /// The grubenv file.
    pub fn path(&self) -> &Path {
        &self.inner.store_ref().path
    }
}

delegate_boot_selector!(GrubEnv);

impl EnvStore for GrubStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&mut self) -> Result<EnvVars> {
        match fs::read(&self.path) {
            Ok(buf) => parse(&buf, &self.path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %self.path.display(), "no grubenv: the boot script's defaults apply");
                Ok(EnvVars::default())
            }
            Err(e) => Err(Error::io("reading", &self.path, e)),
        }
    }

    fn store(&mut self, vars: &EnvVars) -> Result<()> {
        let block = serialize(vars, &self.path)?;
        match fs::metadata(&self.path) {
            Ok(meta) if meta.len() == BLOCK_SIZE as u64 => write_in_place(&self.path, &block),
            _ => write_replace(&self.path, &block),
        }
    }
}

/// Parse a GRUB environment block (strictly; see the module documentation).
pub(crate) fn parse(buf: &[u8], path: &Path) -> Result<EnvVars> {
    let err = |reason: String| Error::GrubEnvFormat {
        path: path.to_path_buf(),
        reason,
    };
    if buf.len() != BLOCK_SIZE {
        return Err(err(format!(
            "{} bytes, a block is exactly {BLOCK_SIZE}",
            buf.len()
        )));
    }
    let body = buf
        .strip_prefix(HEADER)
        .ok_or_else(|| err("no \"# GRUB Environment Block\" header".to_string()))?;
    let mut entries = Vec::new();
    let mut p = 0;
    while p < body.len() {
        let offset = HEADER.len() + p;
        let rest = &body[p..];
        if rest[0] == b'#' {
            match rest.iter().position(|&b| b == b'\n') {
                Some(n) => {
                    entries.push(Entry::Comment(rest[..n].to_vec()));
                    p += n + 1;
                    continue;
                }
                // The padding: '#' up to the end of the block.
                None if rest.iter().all(|&b| b == b'#') => break,
                None => return Err(err(format!("unterminated comment at byte {offset}"))),
            }
        }
        let eq = rest.iter().position(|&b| b == b'=' || b == b'\n');
        let eq = match eq {
            Some(i) if rest[i] == b'=' => i,
            _ => {
                let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                return Err(err(format!(
                    "line without '=' at byte {offset}: {:?}",
                    String::from_utf8_lossy(&rest[..line_end.min(40)])
                )));
            }
        };
        if eq == 0 {
            return Err(err(format!("empty variable name at byte {offset}")));
        }
        let name = rest[..eq].to_vec();
        let mut value = Vec::new();
        let mut i = eq + 1;
        let mut terminated = false;
        while i < rest.len() {
            match rest[i] {
                b'\n' => {
                    terminated = true;
                    break;
                }
                b'\\' => {
                    let Some(&next) = rest.get(i + 1) else { break };
                    value.push(next);
                    i += 2;
                }
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        if !terminated {
            return Err(err(format!(
                "the value of {} runs into the end of the block",
                String::from_utf8_lossy(&name)
            )));
        }
        entries.push(Entry::Var { name, value });
        p += i + 1;
    }
    Ok(EnvVars { entries })
}

/// Serialise `vars` into a block of exactly [`BLOCK_SIZE`] bytes, or refuse if it does not fit.
pub(crate) fn serialize(vars: &EnvVars, path: &Path) -> Result<Vec<u8>> {
    let unrepresentable = |name: &[u8], reason: &'static str| Error::BootEnvUnrepresentable {
        location: path.display().to_string(),
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    };
    let mut out = HEADER.to_vec();
    for entry in &vars.entries {
        match entry {
            Entry::Comment(c) => {
                if c.first() != Some(&b'#') || c.contains(&b'\n') {
                    return Err(unrepresentable(c, "not a single comment line"));
                }
                out.extend_from_slice(c);
                out.push(b'\n');
            }
            Entry::Var { name, value } => {
                if name.is_empty()
                    || name[0] == b'#'
                    || name.iter().any(|&b| b == b'=' || b == b'\n' || b == 0)
                {
                    return Err(unrepresentable(
                        name,
                        "a name must be non-empty, not start with '#' and hold no '=', newline or NUL",
                    ));
                }
                if value.contains(&0) {
                    return Err(unrepresentable(name, "GRUB values cannot hold a NUL byte"));
                }
                out.extend_from_slice(name);
                out.push(b'=');
                for &b in value {
                    if b == b'\\' || b == b'\n' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'\n');
            }
        }
    }
    if out.len() > BLOCK_SIZE {
        return Err(Error::BootEnvTooLarge {
            location: path.display().to_string(),
            needed: out.len(),
            capacity: BLOCK_SIZE,
        });
    }
    out.resize(BLOCK_SIZE, b'#');
    Ok(out)
}

/// Overwrite the existing block `path` with `bytes` (same length) and fsync it.
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", path, e))
}

/// Create `path` with `bytes` (first write only): temporary file in the same directory, fsync, rename, fsync the
/// directory (see the module documentation for why).
fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "grubenv".to_string());
    let tmp = dir.join(format!(".{file_name}.new"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io("renaming the new block over", path, e))
    })();
    if result.is_err() {
        // Best effort: a stale temporary file is harmless (truncated on the next write).
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", &dir, e))
}
