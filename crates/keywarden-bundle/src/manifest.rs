//! The header and the manifest: their encoding, their rules, and the check of the signature.
//! Pure functions over bytes; the I/O is in `read.rs` and `create.rs`.

use std::collections::BTreeSet;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::keys::Keyring;
use crate::version::Version;

/// The first 8 bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"KWBUNDLE";
/// The format version this crate writes and reads (header and manifest `format`).
pub const FORMAT_VERSION: u32 = 1;
/// The fixed header's length: magic, format, manifest length, signer key, signature.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 32 + 64;
/// The longest manifest a reader accepts (4 MiB: about 60,000 chunks, i.e. 3.7 GiB of payload
/// at 64 KiB chunks). A reader needs this much memory before it knows the bundle is signed.
pub const MAX_MANIFEST_LEN: u32 = 4 << 20;
/// The chunk size [`create`](crate::create) uses: 64 KiB (why: `ota/FORMAT.md`).
pub const CHUNK_SIZE: u32 = 64 << 10;
/// The smallest chunk size a reader accepts.
pub const MIN_CHUNK_SIZE: u32 = 4 << 10;
/// The largest chunk size a reader accepts (a reader holds one chunk in memory).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// The most payloads a bundle may have.
pub const MAX_PAYLOADS: usize = 16;

/// A SHA-256 digest; in the manifest, 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits (the manifest's only spelling).
    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not 64 lowercase hex digits"))
        })
    }
}

/// The signed description of a bundle. Serialised as compact JSON with the fields in this
/// order (see `ota/FORMAT.md`); what is signed is the exact bytes, never a re-serialisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format version ([`FORMAT_VERSION`]); equal to the header's.
    pub format: u32,
    /// The bundle's version, ordered for anti-rollback ([`Version`]).
    pub version: Version,
    /// The board the bundle is for; the installer refuses a bundle whose `compatible` is not
    /// exactly its own.
    pub compatible: String,
    /// When the image was built: Unix seconds, from `SOURCE_DATE_EPOCH`, never the wall clock.
    pub created: u64,
    /// A free-form build identifier (a git description, a CI run), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// The payloads, in the order their bytes follow the manifest.
    pub payloads: Vec<Payload>,
}

/// One payload: an image for one class of slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Its name, unique in the bundle (`rootfs`).
    pub name: String,
    /// The class of A/B slots it is written to (`rootfs`: the `rootA`/`rootB` partitions).
    pub slot_class: String,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 of all its bytes.
    pub sha256: Digest,
    /// The chunk size in bytes.
    pub chunk_size: u32,
    /// The SHA-256 of each chunk: `size / chunk_size` rounded up (none for an empty payload);
    /// every chunk is `chunk_size` bytes but the last, which holds the rest.
    pub chunks: Vec<Digest>,
}

impl Payload {
    /// The number of chunks.
    pub fn chunk_count(&self) -> u64 {
        self.chunks.len() as u64
    }

    /// The length of chunk `index` (0 past the end).
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(u64::from(self.chunk_size));
        self.size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }
}

/// The number of chunks `size` bytes make at `chunk_size`.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size))
}

/// A name for a payload or a slot class: `[a-z0-9_-]`, 1 to 32 characters.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A board string: `[A-Za-z0-9._+-]`, 1 to 64 characters.
pub fn valid_compatible(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// A build id: printable ASCII (space included), 1 to 128 characters.
pub fn valid_build_id(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Manifest {
    /// Checks the rules `ota/FORMAT.md` gives beyond the JSON schema: the format number, the
    /// strings' alphabets, unique payload names, chunk sizes, and one hash per chunk.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::Malformed { reason });
        if self.format != FORMAT_VERSION {
            return bad(format!(
                "format {} does not match the header's {FORMAT_VERSION}",
                self.format
            ));
        }
        if !valid_compatible(&self.compatible) {
            return bad(format!(
                "compatible {:?} is not 1-64 of [A-Za-z0-9._+-]",
                self.compatible
            ));
        }
        if let Some(id) = &self.build_id {
            if !valid_build_id(id) {
                return bad(format!("build_id {id:?} is not 1-128 printable ASCII"));
            }
        }
        if self.payloads.is_empty() || self.payloads.len() > MAX_PAYLOADS {
            return bad(format!(
                "{} payloads (1 to {MAX_PAYLOADS} allowed)",
                self.payloads.len()
            ));
        }
        let mut names = BTreeSet::new();
        let mut total: u64 = 0;
        for p in &self.payloads {
            if !valid_name(&p.name) || !valid_name(&p.slot_class) {
                return bad(format!(
                    "payload name {:?} or slot class {:?} is not 1-32 of [a-z0-9_-]",
                    p.name, p.slot_class
                ));
            }
            if !names.insert(p.name.as_str()) {
                return bad(format!("payload {:?} appears twice", p.name));
            }
            if !p.chunk_size.is_power_of_two()
                || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&p.chunk_size)
            {
                return bad(format!(
                    "payload {:?}: chunk size {} is not a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}",
                    p.name, p.chunk_size
                ));
            }
            let expected = chunk_count(p.size, p.chunk_size);
            if p.chunk_count() != expected {
                return bad(format!(
                    "payload {:?}: {} chunk hashes for {} bytes (expected {expected})",
                    p.name,
                    p.chunks.len(),
                    p.size
                ));
            }
            total = match total.checked_add(p.size) {
                Some(t) if t <= i64::MAX as u64 => t,
                _ => return bad("the payloads' total size overflows".to_owned()),
            };
        }
        Ok(())
    }

    /// The manifest's bytes as they are signed: compact JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })
    }

    /// Parses and validates manifest bytes (which must already be known to be signed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            reason: e.to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The payload called `name`.
    pub fn payload(&self, name: &str) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.name == name)
    }

    /// The sum of the payloads' sizes.
    pub fn payload_bytes(&self) -> u64 {
        self.payloads.iter().map(|p| p.size).sum()
    }
}

/// The fixed-size header at the start of every bundle (layout: `ota/FORMAT.md`).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub format: u32,
    /// The manifest's length in bytes.
    pub manifest_len: u32,
    /// The public key the bundle claims to be signed with (not trusted by itself: it only picks
    /// the key of the keyring to verify with).
    pub signer: [u8; 32],
    /// The ed25519 signature over the manifest bytes.
    pub signature: [u8; 64],
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("format", &self.format)
            .field("manifest_len", &self.manifest_len)
            .field("signer", &hex::encode(self.signer))
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Parses the header: magic, known format, manifest length within bounds. Checks no
    /// signature (see [`Header::verify`]).
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header> {
        if bytes[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let format = u32_at(8);
        if format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                version: format,
                known: FORMAT_VERSION,
            });
        }
        let manifest_len = u32_at(12);
        if manifest_len == 0 || manifest_len > MAX_MANIFEST_LEN {
            return Err(Error::ManifestTooLarge {
                len: manifest_len.into(),
                max: MAX_MANIFEST_LEN.into(),
            });
        }
        let mut signer = [0u8; 32];
        signer.copy_from_slice(&bytes[16..48]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[48..HEADER_LEN]);
        Ok(Header {
            format,
            manifest_len,
            signer,
            signature,
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.format.to_le_bytes());
        out[12..16].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[16..48].copy_from_slice(&self.signer);
        out[48..].copy_from_slice(&self.signature);
        out
    }

    /// The offset of the first payload byte: the header plus the manifest.
    pub fn data_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.manifest_len)
    }

    /// The signer key as hex.
    pub fn signer_hex(&self) -> String {
        hex::encode(self.signer)
    }

    /// Verifies `manifest` (exactly `manifest_len` bytes) against the keyring, in this order:
    /// a key at all ([`Error::NoTrustedKeys`]), the named signer trusted
    /// ([`Error::UnknownSigner`]), the signature ([`Error::BadSignature`], strict ed25519), and
    /// only then the manifest's content ([`Error::Malformed`]).
    pub fn verify(&self, manifest: &[u8], keyring: &Keyring) -> Result<VerifiedManifest> {
        if keyring.is_empty() {
            return Err(Error::NoTrustedKeys);
        }
        if manifest.len() as u64 != u64::from(self.manifest_len) {
            return Err(Error::TruncatedHeader {
                len: HEADER_LEN as u64 + manifest.len() as u64,
            });
        }
        let key = keyring
            .find(&self.signer)
            .ok_or_else(|| Error::UnknownSigner {
                signer: self.signer_hex(),
            })?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(manifest, &signature)
            .map_err(|_| Error::BadSignature {
                signer: self.signer_hex(),
            })?;
        let parsed = Manifest::from_bytes(manifest)?;
        Ok(VerifiedManifest {
            manifest: parsed,
            signer: *key,
            data_offset: self.data_offset(),
        })
    }
}

/// A manifest whose signature was checked against a trusted key; only [`Header::verify`] makes
/// one. It knows where each chunk lies in the bundle, for resuming a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    manifest: Manifest,
    signer: VerifyingKey,
    data_offset: u64,
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The trusted key that signed it.
    pub fn signer(&self) -> &VerifyingKey {
        &self.signer
    }

    /// The offset in the bundle of the first payload byte.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The offset in the bundle of payload `payload`'s first byte.
    pub fn payload_offset(&self, payload: usize) -> Option<u64> {
        if payload >= self.manifest.payloads.len() {
            return None;
        }
        Some(
            self.data_offset
                + self.manifest.payloads[..payload]
                    .iter()
                    .map(|p| p.size)
                    .sum::<u64>(),
        )
    }

    /// The offset in the bundle of chunk `index` of payload `payload` (the resume point of a
    /// download: an HTTP `Range: bytes=OFFSET-`). `index` may be the chunk count (the payload's
    /// end).
    pub fn chunk_offset(&self, payload: usize, index: u64) -> Option<u64> {
        let p = self.manifest.payloads.get(payload)?;
        if index > p.chunk_count() {
            return None;
        }
        Some(self.payload_offset(payload)? + (index * u64::from(p.chunk_size)).min(p.size))
    }

    /// The bundle's total length.
    pub fn bundle_len(&self) -> u64 {
        self.data_offset + self.manifest.payload_bytes()
    }

    /// Checks one chunk's bytes against the manifest, e.g. a chunk taken from the active slot
    /// instead of the download (adaptive update) or read back from the slot on resume.
    pub fn check_chunk(&self, payload: usize, index: u64, data: &[u8]) -> Result<()> {
        let no_such = Error::NoSuchChunk { payload, index };
        let p = self.manifest.payloads.get(payload).ok_or(no_such.clone())?;
        let expected = usize::try_from(index)
            .ok()
            .and_then(|i| p.chunks.get(i))
            .ok_or(no_such)?;
        let len = p.chunk_len(index);
        if data.len() as u64 != len {
            return Err(Error::SizeMismatch {
                payload: p.name.clone(),
                expected: len,
                actual: data.len() as u64,
            });
        }
        if Digest::of(data) != *expected {
            return Err(Error::ChunkMismatch {
                payload: p.name.clone(),
                index,
            });
        }
        Ok(())
    }
}
