//! Credentials at rest.
//!
//! - **Badges:** only `HMAC-SHA256(badge key, code)` is stored (lowercase hex). The badge key is
//!   32 random bytes in a file of its own (mode 0600, data partition), so a copy of the database
//!   alone does not let anyone test guessed codes. Lookups stay exact-match (`badges.hash`).
//! - **PINs:** Argon2id PHC strings with a per-user random 16-byte salt. Parameters follow OWASP's
//!   minimum for Argon2id: m = 19 MiB, t = 2, p = 1 ([`PIN_ARGON2_M_KIB`], [`PIN_ARGON2_T`],
//!   [`PIN_ARGON2_P`]). On a Cortex-A53 class board one hash takes in the order of 100-200 ms and
//!   19 MiB of RAM, so the driver verifies on a blocking thread; the parameters are stored in
//!   each PHC string, so raising them later only affects PINs set afterwards.
//! - **PIN rules** ([`check_pin_strength`]): what an admin may set.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use rusqlite::OptionalExtension;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Store;
use crate::error::{Error, Result};
use crate::model::{Settings, UserId};

/// Argon2id memory cost for PINs, in KiB (19 MiB, OWASP).
pub const PIN_ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id iterations for PINs.
pub const PIN_ARGON2_T: u32 = 2;
/// Argon2id parallelism for PINs.
pub const PIN_ARGON2_P: u32 = 1;

/// Length of the badge key, in bytes.
const BADGE_KEY_LEN: usize = 32;

/// The secret that keys badge-code hashes. Never printed (its `Debug` shows nothing).
pub struct BadgeKey {
    key: Zeroizing<[u8; BADGE_KEY_LEN]>,
}

impl std::fmt::Debug for BadgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BadgeKey(..)")
    }
}

impl BadgeKey {
    /// A key from bytes (tests, provisioning tools).
    pub fn from_bytes(bytes: &[u8; BADGE_KEY_LEN]) -> BadgeKey {
        BadgeKey {
            key: Zeroizing::new(*bytes),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Result<BadgeKey> {
        let mut key = Zeroizing::new([0u8; BADGE_KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|e| Error::Random {
            detail: e.to_string(),
        })?;
        Ok(BadgeKey { key })
    }

    /// Read the key file; it must hold exactly 32 bytes and be accessible to its owner only
    /// (like the device key).
    pub fn load(path: &Path) -> Result<BadgeKey> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.len() != BADGE_KEY_LEN as u64 {
            return Err(Error::BadgeKeySize {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(Error::BadgeKeyMode {
                path: path.to_owned(),
                mode: meta.mode() & 0o7777,
            });
        }
        let mut key = Zeroizing::new([0u8; BADGE_KEY_LEN]);
        file.read_exact(&mut key[..]).map_err(io)?;
        Ok(BadgeKey { key })
    }

    /// Create a new random key file at `path` (mode 0600). Atomic: the key is written and synced
    /// to a temporary file in the same directory, then hard-linked into place, which fails if
    /// `path` exists, so a crash never leaves a partial key and an existing key is never
    /// replaced.
    pub fn create(path: &Path) -> Result<BadgeKey> {
        let key = BadgeKey::generate()?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| Error::Random {
            detail: e.to_string(),
        })?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        let result = write_new(&tmp, &key.key[..]).and_then(|()| {
            fs::hard_link(&tmp, path).map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })
        });
        // The temporary name goes whatever happened; the key (if linked) stays under `path`.
        let _ = fs::remove_file(&tmp);
        result?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(key)
    }

    /// Load the key file, or create it if there is none. Returns the key and whether it was
    /// created (a new key makes every stored badge hash useless: log it).
    pub fn load_or_create(path: &Path) -> Result<(BadgeKey, bool)> {
        match BadgeKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                match BadgeKey::create(path) {
                    Ok(key) => Ok((key, true)),
                    // Someone else created it between our two calls: use theirs.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Ok((BadgeKey::load(path)?, false))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The stored form of a badge code: HMAC-SHA256 under this key, lowercase hex.
    pub fn hash(&self, code: &str) -> String {
        // HMAC is defined for keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .expect("HMAC accepts keys of any length");
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Create `path` (must not exist) with mode 0600, write `bytes`, sync.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: PathBuf::from(path),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The Argon2id instance for PINs.
fn pin_argon2() -> Result<Argon2<'static>> {
    let params = Params::new(PIN_ARGON2_M_KIB, PIN_ARGON2_T, PIN_ARGON2_P, None).map_err(|e| {
        Error::PinHash {
            detail: e.to_string(),
        }
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hash a PIN with Argon2id and a fresh random salt: a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`). Slow on purpose.
pub fn hash_pin(pin: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Random {
        detail: e.to_string(),
    })?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::PinHash {
        detail: e.to_string(),
    })?;
    let hash = pin_argon2()?
        .hash_password(pin.as_bytes(), &salt)
        .map_err(|e| Error::PinHash {
            detail: e.to_string(),
        })?;
    Ok(hash.to_string())
}

/// Whether `pin` matches the PHC string (Argon2's own constant-time comparison; the parameters
/// come from the string). A malformed string never matches.
pub fn verify_pin(phc: &str, pin: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        tracing::warn!("stored PIN hash is not a valid PHC string");
        return false;
    };
    Argon2::default()
        .verify_password(pin.as_bytes(), &hash)
        .is_ok()
}

/// The rules for a PIN an admin sets: digits only, length within the site's limits, not one
/// repeated digit, not a straight run up or down (`1234`, `9876`). Errors never contain the PIN.
pub fn check_pin_strength(pin: &str, settings: &Settings) -> Result<()> {
    let weak = |reason: String| Err(Error::WeakPin { reason });
    if pin.is_empty() || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return weak("a PIN is digits only".to_owned());
    }
    let len = pin.len();
    if len < settings.pin_min_length as usize {
        return weak(format!("shorter than {} digits", settings.pin_min_length));
    }
    if len > settings.pin_max_length as usize {
        return weak(format!("longer than {} digits", settings.pin_max_length));
    }
    let digits: Zeroizing<Vec<i8>> =
        Zeroizing::new(pin.bytes().map(|b| (b - b'0') as i8).collect());
    let steps = |step: i8| digits.windows(2).all(|w| w[1] - w[0] == step);
    if steps(0) {
        return weak("one digit repeated".to_owned());
    }
    if steps(1) || steps(-1) {
        return weak("a straight run of digits".to_owned());
    }
    Ok(())
}

impl Store {
    /// The user's PIN hash (PHC string), `None` if no PIN is set. The driver checks it with
    /// [`verify_pin`] on a blocking thread.
    pub fn pin_hash(&self, user: UserId) -> Result<Option<String>> {
        let row: Option<Option<String>> = self
            .conn
            .query_row("SELECT pin_hash FROM users WHERE id = ?1", [user], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sql("read a PIN hash"))?;
        match row {
            None => Err(Error::not_found("user", format!("id {user}"))),
            Some(hash) => Ok(hash),
        }
    }

    /// The keyed hash of a badge code under this store's badge key.
    pub fn badge_hash(&self, code: &str) -> String {
        self.badge_key.hash(code)
    }
}
