//! Checking a bundle off the device.

use std::io::Read;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::bundle::{check_name, Manifest, FORMAT, MANIFEST, SIGNATURE, SIGNATURE_TAG};
use crate::{Error, Result};

/// The most [`verify`] unpacks, whatever the archive claims: four times the default total cap
/// plus room for the manifest.
pub const MAX_UNPACKED: u64 = 64 << 20;

/// A bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its manifest.
    pub manifest: Manifest,
    /// Every file's name and contents, in manifest order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Reads a compressed bundle and checks it against the device key `expected`: the signature,
/// every file's size and hash, nothing missing, added, repeated or reordered. Every check
/// failure is a specific [`Error`].
pub fn verify<R: Read>(bundle: R, expected: &VerifyingKey) -> Result<Verified> {
    let decoder = zstd::Decoder::new(bundle).map_err(Error::Archive)?;
    let mut archive = tar::Archive::new(decoder.take(MAX_UNPACKED + 1));
    let mut entries = archive.entries().map_err(Error::Archive)?;
    let mut budget = MAX_UNPACKED;

    let mut next = |budget: &mut u64| -> Result<Option<(String, Vec<u8>)>> {
        let Some(entry) = entries.next() else {
            return Ok(None);
        };
        let mut entry = entry.map_err(Error::Archive)?;
        let path = entry.path().map_err(Error::Archive)?;
        let name = path.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(Error::UnexpectedEntry(format!(
                "{name:?} is not a regular file"
            )));
        }
        check_name(&name).map_err(|e| Error::UnexpectedEntry(e.to_string()))?;
        let size = entry.header().size().map_err(Error::Archive)?;
        if size > *budget {
            return Err(Error::TooLarge {
                limit: MAX_UNPACKED,
            });
        }
        *budget -= size;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.read_to_end(&mut bytes).map_err(Error::Archive)?;
        Ok(Some((name, bytes)))
    };

    let manifest_bytes = match next(&mut budget)? {
        Some((name, bytes)) if name == MANIFEST => bytes,
        _ => return Err(Error::Missing(MANIFEST)),
    };
    let signature_hex = match next(&mut budget)? {
        Some((name, bytes)) if name == SIGNATURE => bytes,
        _ => return Err(Error::Missing(SIGNATURE)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| Error::BadManifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(Error::BadManifest(format!(
            "format {} (this tool reads {FORMAT})",
            manifest.format
        )));
    }
    let expected_hex = hex::encode(expected.as_bytes());
    if !manifest.device_key.eq_ignore_ascii_case(&expected_hex) {
        return Err(Error::WrongSigner {
            expected: expected_hex,
            found: manifest.device_key.clone(),
        });
    }
    let bad_signature = || Error::BadSignature {
        key: expected_hex.clone(),
    };
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim_ascii(), &mut sig).map_err(|_| bad_signature())?;
    let mut signed = SIGNATURE_TAG.to_vec();
    signed.extend_from_slice(&manifest_bytes);
    expected
        .verify_strict(&signed, &Signature::from_bytes(&sig))
        .map_err(|_| bad_signature())?;

    // The manifest is authentic from here on: check the files against it.
    let mut files = Vec::with_capacity(manifest.files.len());
    for listed in &manifest.files {
        let Some((name, bytes)) = next(&mut budget)? else {
            return Err(Error::MissingFile {
                name: listed.name.clone(),
            });
        };
        if name != listed.name {
            return Err(Error::UnlistedFile { name });
        }
        if bytes.len() as u64 != listed.size {
            return Err(Error::FileMismatch { name, what: "size" });
        }
        if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(&listed.sha256) {
            return Err(Error::FileMismatch {
                name,
                what: "SHA-256",
            });
        }
        files.push((name, bytes));
    }
    if let Some((name, _)) = next(&mut budget)? {
        return Err(Error::UnlistedFile { name });
    }
    Ok(Verified { manifest, files })
}
