//! The device's ed25519 checkpoint-signing key and its storage.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::checkpoint::Checkpoint;
use crate::entry::Digest;
use crate::error::KeyError;

/// Permission bits a key file must not have: any access for group or others.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// The device's signing key. Its secret is wiped from memory on drop; `Debug` shows only the
/// public half.
pub struct DeviceKey {
    signing: SigningKey,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<DeviceKey, KeyError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut_slice()).map_err(|e| KeyError::Random {
            reason: e.to_string(),
        })?;
        Ok(DeviceKey::from_bytes(&secret))
    }

    /// The key with this 32-byte secret (for tests and tools).
    pub fn from_bytes(secret: &[u8; 32]) -> DeviceKey {
        DeviceKey {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// Loads a PKCS#8 PEM key file.
    ///
    /// Refuses a file accessible to group or others ([`KeyError::InsecurePermissions`]), as ssh
    /// does: [`create`](DeviceKey::create) makes it 0600.
    pub fn load(path: &Path) -> Result<DeviceKey, KeyError> {
        let read_error = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let mode = file.metadata().map_err(read_error)?.permissions().mode();
        if mode & FORBIDDEN_MODE_BITS != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let mut pem = Zeroizing::new(String::new());
        file.read_to_string(&mut pem).map_err(read_error)?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(DeviceKey { signing })
    }

    /// Generates a key and stores it at `path` as PKCS#8 PEM, mode 0600.
    ///
    /// Never replaces an existing file ([`KeyError::Exists`]), even one created concurrently: the
    /// key is written to a temporary file in the same directory (mode 0600, fsynced) and then
    /// hard-linked to `path`, which fails if `path` exists (a rename would silently replace it);
    /// the temporary name is removed and the directory fsynced. The directory must exist and
    /// its filesystem must support hard links.
    pub fn create(path: &Path) -> Result<DeviceKey, KeyError> {
        if fs::symlink_metadata(path).is_ok() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
        let key = DeviceKey::generate()?;
        let pem = key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                reason: e.to_string(),
            })?;

        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = temp_path(path)?;
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Write { path, source }
        };

        let written = write_new_file(&temp, pem.as_bytes())
            .map_err(write_error(&temp))
            .and_then(|()| match fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(KeyError::Exists {
                    path: path.to_owned(),
                }),
                Err(e) => Err(write_error(path)(e)),
            });
        // The temporary name goes either way; if the link failed it is the only copy.
        let removed = fs::remove_file(&temp);
        written?;
        removed.map_err(write_error(&temp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error(dir))?;
        Ok(key)
    }

    /// Loads the key at `path`, or creates it if there is none. The flag is true if it was
    /// created. A key created concurrently by another process is loaded, not replaced.
    pub fn load_or_create(path: &Path) -> Result<(DeviceKey, bool), KeyError> {
        match DeviceKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                match DeviceKey::create(path) {
                    Ok(key) => Ok((key, true)),
                    Err(KeyError::Exists { .. }) => Ok((DeviceKey::load(path)?, false)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The key as PKCS#8 PEM (the format of the key file), for tools that store it themselves
    /// (factory provisioning writes it with its own owner and mode). Wiped from memory on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode {
                reason: e.to_string(),
            })?;
        Ok(Zeroizing::new(pem.as_str().to_owned()))
    }

    /// The public half, to verify checkpoints with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as 64 lowercase hex digits (as in export headers; see [`parse_public_key`]).
    pub fn public_hex(&self) -> String {
        hex::encode(self.verifying_key().as_bytes())
    }

    /// Signs `message` under a domain `tag` (the signed bytes are `tag` then `message`), for
    /// other statements the device makes with the same key (diagnostic bundles). Each kind of
    /// statement has its own tag, so no signature can be replayed as another kind; the tags in
    /// use end with a NUL byte, like [`Checkpoint::message`]'s.
    pub fn sign_tagged(&self, tag: &[u8], message: &[u8]) -> [u8; 64] {
        let mut signed = Vec::with_capacity(tag.len() + message.len());
        signed.extend_from_slice(tag);
        signed.extend_from_slice(message);
        self.signing.sign(&signed).to_bytes()
    }

    /// A 32-byte secret derived from the key for `label` (HMAC-SHA256 keyed with the key's
    /// secret): stable for the life of the device identity, useless for signing, and revealing
    /// nothing about the key. Used for the diagnostic bundles' stable pseudonyms.
    pub fn derive_secret(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        use hmac::Mac as _;
        let mut out = Zeroizing::new([0u8; 32]);
        // HMAC accepts keys of any length, so this cannot fail.
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.signing.as_bytes()) {
            mac.update(b"keywarden-derive-v1\0");
            mac.update(label);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// Signs "the chain at `seq` hashes to `hash`" at time `at_ms`.
    pub fn sign_checkpoint(&self, seq: u64, hash: &Digest, at_ms: i64) -> Checkpoint {
        let signature = self.signing.sign(&Checkpoint::message(seq, hash, at_ms));
        Checkpoint {
            seq,
            hash: *hash,
            at_ms,
            signature: signature.to_bytes(),
        }
    }
}

/// Parses a public key given as 64 hex digits (either case). Rejects points that are not on the
/// curve and weak (small-order) keys, which would accept forged signatures.
pub fn parse_public_key(hex: &str) -> Result<VerifyingKey, KeyError> {
    let invalid = |reason: String| KeyError::InvalidPublicKey { reason };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex, &mut bytes)
        .map_err(|e| invalid(format!("expected 64 hex digits: {e}")))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("not a valid ed25519 point".to_owned()))?;
    if key.is_weak() {
        return Err(invalid("weak (small-order) key".to_owned()));
    }
    Ok(key)
}

/// A fresh, unpredictable name beside `path` for the temporary key file.
fn temp_path(path: &Path) -> Result<PathBuf, KeyError> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| KeyError::Random {
        reason: e.to_string(),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.tmp-{}", hex::encode(suffix))))
}

/// Creates `path` (which must not exist) with mode 0600, writes `contents` and fsyncs it.
fn write_new_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only remove bits; set the mode explicitly so it is exactly 0600.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}
