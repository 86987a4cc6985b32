//! Writing a bundle: files in memory under size caps, then one signed, compressed archive.

use std::io::Write;

use keywarden_audit::DeviceKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// The format version written in every manifest.
pub const FORMAT: u32 = 1;

/// Domain tag before the manifest's bytes in the signed message.
pub const SIGNATURE_TAG: &[u8] = b"keywarden-diag-bundle-v1\0";

/// The names the format itself uses.
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const SIGNATURE: &str = "manifest.sig";

/// zstd level: small bundles over slow uplinks matter more than a second of CPU.
const ZSTD_LEVEL: i32 = 12;

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the bundle was made (RFC 3339, UTC).
    pub created: String,
    /// The same, as Unix seconds (the tar entries' mtime).
    pub created_unix: u64,
    /// The signing device key (64 hex digits).
    pub device_key: String,
    /// The cabinet's serial number, if it was provisioned.
    pub serial: Option<String>,
    /// The files after the manifest and its signature, in archive order.
    pub files: Vec<FileEntry>,
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Flat name.
    pub name: String,
    /// Size in bytes, as stored.
    pub size: u64,
    /// SHA-256 of the stored bytes (hex).
    pub sha256: String,
    /// The source was larger than its cap and was cut (see [`Keep`]).
    pub truncated: bool,
}

/// Which end of an over-long source to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The beginning (reports).
    Head,
    /// The end, from a line start (logs: the newest lines matter).
    Tail,
}

/// Size limits, in bytes of uncompressed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Per file.
    pub per_file: usize,
    /// All files together.
    pub total: usize,
}

impl Default for Caps {
    /// 4 MiB per file, 16 MiB in all (typically well under 2 MiB once compressed).
    fn default() -> Caps {
        Caps {
            per_file: 4 << 20,
            total: 16 << 20,
        }
    }
}

/// What [`BundleBuilder::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The manifest as signed.
    pub manifest: Manifest,
    /// Compressed bytes written.
    pub compressed_bytes: u64,
    /// Uncompressed content bytes (all files).
    pub content_bytes: u64,
}

/// Collects the files of one bundle.
#[derive(Debug)]
pub struct BundleBuilder {
    caps: Caps,
    used: usize,
    files: Vec<(String, Vec<u8>, bool)>,
}

impl BundleBuilder {
    /// An empty bundle under `caps`.
    pub fn new(caps: Caps) -> BundleBuilder {
        BundleBuilder {
            caps,
            used: 0,
            files: Vec::new(),
        }
    }

    /// Adds a file, cut to the per-file cap and to what is left of the total (keeping `keep`'s
    /// end). Names are flat (`[a-z0-9._-]+`, not starting with a dot) and unique.
    pub fn add(&mut self, name: &str, mut bytes: Vec<u8>, keep: Keep) -> Result<()> {
        check_name(name)?;
        if name == MANIFEST || name == SIGNATURE {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                why: "reserved",
            });
        }
        if self.files.iter().any(|(n, _, _)| n == name) {
            return Err(Error::DuplicateName {
                name: name.to_owned(),
            });
        }
        let room = self
            .caps
            .per_file
            .min(self.caps.total.saturating_sub(self.used));
        let truncated = bytes.len() > room;
        if truncated {
            bytes = cut(bytes, room, keep);
        }
        self.used += bytes.len();
        self.files.push((name.to_owned(), bytes, truncated));
        Ok(())
    }

    /// Adds `value` as pretty-printed JSON.
    pub fn add_json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
            name: name.to_owned(),
            source,
        })?;
        bytes.push(b'\n');
        self.add(name, bytes, Keep::Head)
    }

    /// Signs the manifest with `key` and writes the compressed archive to `out`.
    pub fn finish<W: Write>(
        self,
        key: &DeviceKey,
        serial: Option<String>,
        created_unix: u64,
        out: W,
    ) -> Result<Summary> {
        let files: Vec<FileEntry> = self
            .files
            .iter()
            .map(|(name, bytes, truncated)| FileEntry {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
                truncated: *truncated,
            })
            .collect();
        let manifest = Manifest {
            format: FORMAT,
            created: rfc3339(created_unix),
            created_unix,
            device_key: key.public_hex(),
            serial,
            files,
        };
        let mut manifest_bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Json {
                name: MANIFEST.to_owned(),
                source,
            })?;
        manifest_bytes.push(b'\n');
        let signature = hex::encode(key.sign_tagged(SIGNATURE_TAG, &manifest_bytes));

        let counter = CountingWriter { inner: out, n: 0 };
        let encoder = zstd::Encoder::new(counter, ZSTD_LEVEL).map_err(Error::Write)?;
        let mut tar = tar::Builder::new(encoder);
        tar.mode(tar::HeaderMode::Deterministic);
        append(&mut tar, MANIFEST, &manifest_bytes, created_unix)?;
        append(&mut tar, SIGNATURE, signature.as_bytes(), created_unix)?;
        for (name, bytes, _) in &self.files {
            append(&mut tar, name, bytes, created_unix)?;
        }
        let encoder = tar.into_inner().map_err(Error::Write)?;
        let mut counter = encoder.finish().map_err(Error::Write)?;
        counter.flush().map_err(Error::Write)?;
        Ok(Summary {
            manifest,
            compressed_bytes: counter.n,
            content_bytes: self.used as u64,
        })
    }
}

/// Checks a flat file name.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let invalid = |why| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return invalid("1 to 64 characters");
    }
    if name.starts_with('.') {
        return invalid("starts with a dot");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return invalid("only a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8], mtime: u64) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    tar.append_data(&mut header, name, bytes)
        .map_err(Error::Write)
}

/// Cuts `bytes` to at most `room`, keeping the head or a tail that starts at a line.
fn cut(mut bytes: Vec<u8>, room: usize, keep: Keep) -> Vec<u8> {
    match keep {
        Keep::Head => {
            bytes.truncate(room);
            bytes
        }
        Keep::Tail => {
            let mut start = bytes.len() - room;
            if start > 0 && bytes[start - 1] != b'\n' {
                start = bytes[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| start + p + 1);
            }
            bytes.split_off(start)
        }
    }
}

/// Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
