//! The crate's two error enums: [`VerifyError`] (what is wrong with a trail or an export) and
//! [`KeyError`] (the device key could not be made, stored, loaded or parsed).

use std::path::PathBuf;

/// Why a trail or an export failed verification.
///
/// Tampering variants name the first place where the evidence shows; the crate docs list which
/// tampering produces which variant. Errors are sticky: once a [`Verifier`](crate::Verifier)
/// returned one, every later call returns the same one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading the export failed (an I/O error, not tampering).
    #[error("cannot read line {line} of the export: {reason}")]
    Read {
        /// The line being read (1-based).
        line: u64,
        /// The I/O error.
        reason: String,
    },
    /// A line is not valid for the format: not JSON, an unknown or missing field, bad hex, too
    /// long, or cut off.
    #[error("line {line}: {reason}")]
    Malformed {
        /// The line (1-based; the header is line 1).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The header names another format or a version this verifier does not read.
    #[error("unsupported export format {format:?} version {version} (this verifier reads \"keywarden-audit\" version 1)")]
    UnsupportedFormat {
        /// The header's `format`.
        format: String,
        /// The header's `version`.
        version: u64,
    },
    /// The header names a device key other than the trusted one.
    #[error("the export claims device key {found}, not the trusted key {expected}")]
    WrongKey {
        /// The trusted key, hex.
        expected: String,
        /// The header's key, hex.
        found: String,
    },
    /// The verifier was started with `first_seq` 0; sequence numbers start at 1.
    #[error("first_seq must be at least 1 (sequence numbers start at 1)")]
    InvalidFirstSeq,
    /// Entry `seq`'s stored hash is not the hash recomputed from the chain: entry `seq` was
    /// edited, or the entry before it (or the header's `prev_hash`) was edited and re-hashed.
    #[error("entry {seq} does not match its stored hash: it, or the entry before it, was edited")]
    EditedEntry {
        /// The entry whose hash does not match.
        seq: u64,
    },
    /// The chain jumps from `expected - 1` to `found`: entries `expected..found` were deleted.
    #[error("entry {expected} is missing (the next entry is {found}): entries were deleted")]
    MissingEntries {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// An entry or checkpoint for `found` comes after entry `previous`, where it cannot be:
    /// entries were reordered, duplicated or inserted.
    #[error("entry or checkpoint {found} comes after entry {previous}: entries were reordered, duplicated or inserted")]
    OutOfOrder {
        /// The highest seq read so far (`first_seq - 1` before the first entry).
        previous: u64,
        /// The seq read out of order.
        found: u64,
    },
    /// A validly signed checkpoint disagrees with the chain at its seq: an entry at or before
    /// `seq` (after the previous checkpoint) was edited, inserted or deleted and the hashes
    /// recomputed.
    #[error("the chain at entry {seq} does not hash to the value signed in checkpoint {seq}: entries were edited, inserted or deleted and re-hashed")]
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// A checkpoint's signature does not verify with the device key: forged or edited checkpoint.
    #[error("checkpoint {seq} is not validly signed by the device key")]
    BadSignature {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// A checkpoint covers a seq the chain has not reached: the entries between were deleted.
    #[error("checkpoint {seq} comes after entry {last}: the entries up to {seq} were deleted")]
    CheckpointBeyondChain {
        /// The checkpoint's seq.
        seq: u64,
        /// The last entry read (`first_seq - 1` if none).
        last: u64,
    },
    /// The last entries are not covered by a signed checkpoint: the export was truncated, or
    /// entries were appended after the last checkpoint.
    #[error("entries after {} up to {last_entry} are not covered by a signed checkpoint: the export was truncated or entries were appended", describe_checkpoint(*last_checkpoint))]
    UnsignedTail {
        /// The last checkpoint's seq, if any.
        last_checkpoint: Option<u64>,
        /// The last entry's seq.
        last_entry: u64,
    },
    /// A collector copy holds two different lines for entry `seq`: a resend is byte-identical
    /// to what was sent first, so one of them was edited on the collector.
    #[error("entry {seq} appears again at line {line} with different content: the collector copy was edited")]
    ConflictingDuplicate {
        /// The entry's seq.
        seq: u64,
        /// The line of the second, different copy.
        line: u64,
    },
    /// The export (or the fed trail) holds no entries.
    #[error("the audit trail holds no entries")]
    Empty,
}

fn describe_checkpoint(seq: Option<u64>) -> String {
    match seq {
        Some(seq) => format!("checkpoint {seq}"),
        None => "the start (there is no checkpoint)".to_owned(),
    }
}

/// Why the device key could not be generated, stored, loaded or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading the key file (or its metadata) failed.
    #[error("cannot read device key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the key file, renaming it into place or syncing its directory failed.
    #[error("cannot write device key {}: {source}", path.display())]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// [`DeviceKey::create`](crate::DeviceKey::create) found a key already there and left it alone.
    #[error("device key {} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is accessible to its group or to others.
    #[error("device key {} has mode {mode:04o}; it must not be accessible to group or others (use 0600)", path.display())]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a PKCS#8 PEM ed25519 private key.
    #[error("device key {} is not a PKCS#8 PEM ed25519 private key: {reason}", path.display())]
    Parse {
        /// The key file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// Encoding the key as PKCS#8 PEM failed.
    #[error("cannot encode the device key as PKCS#8 PEM: {reason}")]
    Encode {
        /// The encoder's complaint.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {reason}")]
    Random {
        /// getrandom's error.
        reason: String,
    },
    /// A public key given as hex is not 64 hex digits, not a valid ed25519 point, or weak.
    #[error("invalid device public key: {reason}")]
    InvalidPublicKey {
        /// What is wrong with it.
        reason: String,
    },
}
