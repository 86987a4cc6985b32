//! Creating and signing a bundle from payload files.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};

use crate::error::{io, Error, Result};
use crate::manifest::{
    valid_build_id, valid_compatible, valid_name, Digest, Header, Manifest, Payload, CHUNK_SIZE,
    FORMAT_VERSION, MAX_MANIFEST_LEN, MAX_PAYLOADS,
};
use crate::version::Version;

/// What to put in a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSpec {
    /// The bundle version (`MAJOR.MINOR.PATCH[-PRERELEASE]`, see [`Version`]).
    pub version: String,
    /// The board it is for (`[A-Za-z0-9._+-]`, 1-64 characters).
    pub compatible: String,
    /// When the image was built, Unix seconds: `SOURCE_DATE_EPOCH`, never the wall clock, so
    /// that the same inputs give the same bundle.
    pub created: u64,
    /// A free-form build identifier (printable ASCII, 1-128 characters), or none.
    pub build_id: Option<String>,
    /// The payloads as (name, file), in bundle order. The name is also the slot class
    /// (`rootfs`).
    pub payloads: Vec<(String, PathBuf)>,
}

/// Creates a bundle: hashes each payload file in [`CHUNK_SIZE`] chunks, writes the header, the
/// manifest signed with `key`, and the payloads to `out`, and returns the manifest.
///
/// The output is deterministic: the same spec, files and key give the same bytes (the manifest
/// has a fixed field order, no clock is read, ed25519 signatures are deterministic). Each file
/// is read twice, and the second read is checked against the first
/// ([`Error::PayloadChanged`], [`Error::SizeMismatch`]) so a file changing underneath never
/// gives a bundle whose manifest does not match its bytes. `out` is flushed but not synced.
pub fn create(spec: &CreateSpec, key: &SigningKey, out: &mut impl Write) -> Result<Manifest> {
    let invalid = |reason: String| Error::InvalidSpec { reason };
    let version = Version::parse(&spec.version)?;
    if !valid_compatible(&spec.compatible) {
        return Err(invalid(format!(
            "compatible {:?} must be 1-64 of [A-Za-z0-9._+-]",
            spec.compatible
        )));
    }
    if let Some(id) = &spec.build_id {
        if !valid_build_id(id) {
            return Err(invalid(format!(
                "build id {id:?} must be 1-128 printable ASCII characters"
            )));
        }
    }
    if spec.payloads.is_empty() || spec.payloads.len() > MAX_PAYLOADS {
        return Err(invalid(format!(
            "{} payloads given (1 to {MAX_PAYLOADS} allowed)",
            spec.payloads.len()
        )));
    }
    for (i, (name, _)) in spec.payloads.iter().enumerate() {
        if !valid_name(name) {
            return Err(invalid(format!(
                "payload name {name:?} must be 1-32 of [a-z0-9_-]"
            )));
        }
        if spec.payloads[..i].iter().any(|(n, _)| n == name) {
            return Err(invalid(format!("payload {name:?} given twice")));
        }
    }

    let mut payloads = Vec::with_capacity(spec.payloads.len());
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    for (name, path) in &spec.payloads {
        payloads.push(hash_payload(name, path, &mut buf)?);
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        version,
        compatible: spec.compatible.clone(),
        created: spec.created,
        build_id: spec.build_id.clone(),
        payloads,
    };
    manifest.validate()?;
    let bytes = manifest.to_bytes()?;
    let manifest_len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= MAX_MANIFEST_LEN)
        .ok_or(Error::ManifestTooLarge {
            len: bytes.len() as u64,
            max: MAX_MANIFEST_LEN.into(),
        })?;
    let header = Header {
        format: FORMAT_VERSION,
        manifest_len,
        signer: key.verifying_key().to_bytes(),
        signature: key.sign(&bytes).to_bytes(),
    };
    let write_error = io("write the bundle");
    out.write_all(&header.to_bytes())
        .and_then(|()| out.write_all(&bytes))
        .map_err(write_error)?;
    for (payload, (_, path)) in manifest.payloads.iter().zip(&spec.payloads) {
        copy_payload(payload, path, &mut buf, out)?;
    }
    out.flush().map_err(io("write the bundle"))?;
    Ok(manifest)
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the file.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn hash_payload(name: &str, path: &PathBuf, buf: &mut [u8]) -> Result<Payload> {
    let what = format!("read payload {name} {}", path.display());
    let mut file = File::open(path).map_err(io(what.clone()))?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut size: u64 = 0;
    loop {
        let n = read_full(&mut file, buf).map_err(io(what.clone()))?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        chunks.push(Digest::of(&buf[..n]));
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(Payload {
        name: name.to_owned(),
        slot_class: name.to_owned(),
        size,
        sha256: Digest(whole.finalize().into()),
        chunk_size: CHUNK_SIZE,
        chunks,
    })
}

fn copy_payload(
    payload: &Payload,
    path: &PathBuf,
    buf: &mut [u8],
    out: &mut impl Write,
) -> Result<()> {
    let what = format!("read payload {} {}", payload.name, path.display());
    let mut file = File::open(path).map_err(io(what.clone()))?;
    let mut size: u64 = 0;
    for (index, expected) in payload.chunks.iter().enumerate() {
        let n = read_full(&mut file, buf).map_err(io(what.clone()))?;
        size += n as u64;
        if n as u64 != payload.chunk_len(index as u64) {
            return Err(Error::SizeMismatch {
                payload: payload.name.clone(),
                expected: payload.size,
                actual: size,
            });
        }
        if Digest::of(&buf[..n]) != *expected {
            return Err(Error::PayloadChanged {
                payload: payload.name.clone(),
                index: index as u64,
            });
        }
        out.write_all(&buf[..n]).map_err(io("write the bundle"))?;
    }
    // Nothing may have been appended since it was hashed.
    let extra = read_full(&mut file, &mut buf[..1]).map_err(io(what))?;
    if extra != 0 {
        return Err(Error::SizeMismatch {
            payload: payload.name.clone(),
            expected: payload.size,
            actual: size + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second read of a payload file is checked against the first: here the copy reads a
    /// different file than the one hashed, as if the file had changed in between.
    #[test]
    fn a_payload_changing_between_hashing_and_copying_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = CHUNK_SIZE as usize;
        let a: Vec<u8> = (0..3 * chunk).map(|i| (i % 251) as u8).collect();
        let hashed = dir.path().join("a");
        std::fs::write(&hashed, &a).unwrap();
        let mut buf = vec![0u8; chunk];
        let payload = hash_payload("rootfs", &hashed, &mut buf).unwrap();

        let copy = |content: &[u8]| {
            let path = dir.path().join("b");
            std::fs::write(&path, content).unwrap();
            copy_payload(&payload, &path, &mut vec![0u8; chunk], &mut Vec::new())
        };
        copy(&a).unwrap();
        let mut changed = a.clone();
        changed[2 * chunk + 3] ^= 1;
        assert_eq!(
            copy(&changed).unwrap_err(),
            Error::PayloadChanged {
                payload: "rootfs".into(),
                index: 2
            }
        );
        let longer = [&a[..], &[7]].concat();
        assert_eq!(
            copy(&longer).unwrap_err(),
            Error::SizeMismatch {
                payload: "rootfs".into(),
                expected: a.len() as u64,
                actual: a.len() as u64 + 1
            }
        );
        assert_eq!(
            copy(&a[..chunk + 5]).unwrap_err(),
            Error::SizeMismatch {
                payload: "rootfs".into(),
                expected: a.len() as u64,
                actual: chunk as u64 + 5
            }
        );
    }
}
