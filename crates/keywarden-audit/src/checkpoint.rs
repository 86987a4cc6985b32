//! Signed checkpoints: the device's statement "the chain at `seq` hashes to `hash`".

use ed25519_dalek::{Signature, VerifyingKey};

use crate::entry::Digest;
use crate::error::VerifyError;

/// Domain tag that starts every checkpoint's signed message.
pub(crate) const CHECKPOINT_TAG: &[u8] = b"keywarden-audit-checkpoint-v1\0";

/// A signed (seq, hash, time) triple: the chain's head hash after entry `seq`, signed with the
/// device key at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The seq of the entry the checkpoint covers (and all entries before it).
    pub seq: u64,
    /// The hash of entry `seq`, i.e. the chain head after it.
    pub hash: Digest,
    /// When it was signed, milliseconds since the Unix epoch (from the caller's clock).
    pub at_ms: i64,
    /// ed25519 signature over [`Checkpoint::message`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The signed message: the domain tag `b"keywarden-audit-checkpoint-v1\0"`, `seq` as u64
    /// big-endian, `hash` (32 bytes), `at_ms` as i64 big-endian.
    pub fn message(seq: u64, hash: &Digest, at_ms: i64) -> Vec<u8> {
        let mut message = Vec::with_capacity(CHECKPOINT_TAG.len() + 8 + 32 + 8);
        message.extend_from_slice(CHECKPOINT_TAG);
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(hash);
        message.extend_from_slice(&at_ms.to_be_bytes());
        message
    }

    /// Checks the signature with `key` (strict ed25519 verification: no malleable or small-order
    /// signatures). Fails with [`VerifyError::BadSignature`].
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        let message = Checkpoint::message(self.seq, &self.hash, self.at_ms);
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&message, &signature)
            .map_err(|_| VerifyError::BadSignature { seq: self.seq })
    }
}
