//! Signing keys (PKCS#8 PEM), public keys (SPKI PEM, or 64 hex digits), the keyring of trusted
//! keys, and key generation.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::error::{io, Error, Result};

/// The public half of the test-only signing key in `ota/keys/test-only/` (hex). Bundles signed
/// with it are for development and tests; a production device must never trust it, and the
/// tools warn when they sign or verify with it.
pub const TEST_ONLY_PUBLIC_KEY: &str =
    "62d2b3650c6feedd0d407b7cc2f6355e4b561396758c40267f38acf6b898c569";

/// Whether `key` is the repository's test-only key ([`TEST_ONLY_PUBLIC_KEY`]).
pub fn is_test_only_key(key: &VerifyingKey) -> bool {
    hex::encode(key.as_bytes()) == TEST_ONLY_PUBLIC_KEY
}

/// The public keys a bundle may be signed with. Several keys allow rotating the signing key:
/// devices trust old and new key for a while, bundles move to the new key, then the old key is
/// removed. An empty keyring trusts nothing: every bundle is refused
/// ([`Error::NoTrustedKeys`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<VerifyingKey>,
}

impl Keyring {
    /// An empty keyring (which refuses every bundle).
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// A keyring of these keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Keyring {
        let mut ring = Keyring::new();
        for key in keys {
            ring.add(key);
        }
        ring
    }

    /// A keyring of the public key files `paths` ([`load_public_key`]).
    pub fn load<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Keyring> {
        let mut ring = Keyring::new();
        for path in paths {
            ring.add(load_public_key(path.as_ref())?);
        }
        Ok(ring)
    }

    /// Adds a key (once: a key already there is not added again).
    pub fn add(&mut self, key: VerifyingKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The trusted key with these bytes.
    pub fn find(&self, public: &[u8; 32]) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.as_bytes() == public)
    }

    /// The keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// No key: every bundle is refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

fn read_to_string(path: &Path) -> Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io(format!("read key file {}", path.display())))?;
    Ok(text)
}

/// Loads a signing key from a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, as written by
/// [`generate`] and by `openssl genpkey -algorithm ed25519`).
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let pem = read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| Error::Key {
        path: path.to_owned(),
        reason: format!("not an ed25519 PKCS#8 PEM private key: {e}"),
    })
}

/// Loads a public key: an SPKI PEM file (`-----BEGIN PUBLIC KEY-----`, as written by
/// [`generate`] and by `openssl pkey -pubout`), or a file holding the key's 32 bytes as 64 hex
/// digits (as the audit export prints keys). Surrounding whitespace is ignored.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = read_to_string(path)?;
    parse_public_key(text.trim()).map_err(|reason| Error::Key {
        path: path.to_owned(),
        reason,
    })
}

/// Parses a public key given as SPKI PEM or 64 hex digits.
pub fn parse_public_key(text: &str) -> std::result::Result<VerifyingKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| format!("not an ed25519 SPKI PEM public key: {e}"));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| "neither an SPKI PEM public key nor 64 hex digits".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// The public key as SPKI PEM (the public key file format).
pub fn public_key_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::KeyEncode {
            reason: e.to_string(),
        })
}

/// Generates a signing key from the operating system's random number generator and writes it
/// to `private` (PKCS#8 PEM, mode 0600) and its public half to `public` (SPKI PEM, mode 0644).
/// Refuses to replace either file ([`Error::KeyExists`]); the private key is never printed.
pub fn generate(private: &Path, public: &Path) -> Result<VerifyingKey> {
    for path in [private, public] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(Error::KeyExists {
                path: path.to_owned(),
            });
        }
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut_slice()).map_err(|e| Error::Random {
        reason: e.to_string(),
    })?;
    let signing = SigningKey::from_bytes(&secret);
    let pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::KeyEncode {
            reason: e.to_string(),
        })?;
    let verifying = signing.verifying_key();
    let public_pem = public_key_pem(&verifying)?;
    write_new(private, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(public, public_pem.as_bytes(), 0o644) {
        // Without its public half the new key would be unknown; leave nothing behind.
        let _ = fs::remove_file(private);
        return Err(e);
    }
    Ok(verifying)
}

/// Creates `path` (never replacing a file) with `mode`, writes `data`, fsyncs it and its
/// directory.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let what = format!("write key file {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyExists {
                    path: path.to_owned(),
                }
            } else {
                io(what.clone())(e)
            }
        })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io(what.clone()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("sync directory {}", dir.display())))
}
