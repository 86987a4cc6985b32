//! The sans-IO [`Verifier`]: fed entries and checkpoints in file order, it checks the chain and
//! the signatures in constant memory.

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::Checkpoint;
use crate::entry::{Digest, Entry, EntryRef};
use crate::error::VerifyError;

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Number of entries verified.
    pub entries: u64,
    /// The first entry's seq (the export header's `first_seq`; 1 for a complete trail).
    pub first_seq: u64,
    /// The last entry's seq, covered by a signed checkpoint.
    pub last_seq: u64,
    /// Number of checkpoints verified.
    pub checkpoints: u64,
    /// The last entry's hash.
    pub head: Digest,
    /// The device key the checkpoints were verified with, hex.
    pub key_hex: String,
}

/// How an entry's hash is obtained.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryHash<'a> {
    /// From the fields, chained to the verifier's head.
    Fields(EntryRef<'a>),
    /// Computed already, chained to `prev` (the previous entry's stored hash).
    Chained {
        /// The hash it was chained to.
        prev: Digest,
        /// The entry's hash.
        hash: Digest,
    },
}

/// A forward jump in seq, not yet classified: the next item tells a deletion from a reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    /// The seq that should have come.
    expected: u64,
    /// The seq that came.
    found: u64,
}

/// Sans-IO chain verifier: feed entries and checkpoints in file order (each checkpoint right after
/// the entry with its seq), then call [`finish`](Verifier::finish).
///
/// Only [`finish`](Verifier::finish) gives a verdict. `Ok` from [`entry`](Verifier::entry) or
/// [`checkpoint`](Verifier::checkpoint) means only that nothing is wrong yet: tampering after
/// the last checkpoint shows at `finish`, a re-hashed edit at the next checkpoint, and a jump in
/// seq at the next call (which tells deleted entries, [`VerifyError::MissingEntries`], from
/// reordered ones, [`VerifyError::OutOfOrder`]).
///
/// Errors are sticky: after one, every call returns it again.
///
/// Memory use is constant: the verifier keeps the head (seq, hash), counters and at most one
/// pending gap.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
    first_seq: u64,
    /// Seq of the head: the last verified entry, `first_seq - 1` before any.
    last_seq: u64,
    /// Hash of the head: the last verified entry's, `prev_hash` before any.
    head: Digest,
    entries: u64,
    checkpoints: u64,
    last_checkpoint: Option<u64>,
    gap: Option<Gap>,
    failed: Option<VerifyError>,
}

impl Verifier {
    /// A verifier for a trail whose first entry is `first_seq` (1 for a complete trail), chained
    /// after `prev_hash` ([`GENESIS`](crate::GENESIS) for seq 1), with checkpoints signed by `key`.
    ///
    /// `first_seq` 0 makes every call fail with [`VerifyError::InvalidFirstSeq`].
    pub fn new(key: VerifyingKey, first_seq: u64, prev_hash: Digest) -> Verifier {
        Verifier {
            key,
            first_seq,
            last_seq: first_seq.saturating_sub(1),
            head: prev_hash,
            entries: 0,
            checkpoints: 0,
            last_checkpoint: None,
            gap: None,
            failed: (first_seq == 0).then_some(VerifyError::InvalidFirstSeq),
        }
    }

    /// Feeds the next entry and the hash stored with it.
    pub fn entry(&mut self, entry: &Entry, stored_hash: &Digest) -> Result<(), VerifyError> {
        self.entry_ref(EntryRef::from(entry), stored_hash)
    }

    /// [`entry`](Verifier::entry) on borrowed fields, so parsers need not build an [`Entry`].
    pub(crate) fn entry_ref(
        &mut self,
        entry: EntryRef<'_>,
        stored_hash: &Digest,
    ) -> Result<(), VerifyError> {
        self.entry_hashed(entry.seq, EntryHash::Fields(entry), stored_hash)
    }

    /// [`entry`](Verifier::entry) with the hash computed elsewhere (the export pipeline's
    /// workers) or from borrowed fields.
    pub(crate) fn entry_hashed(
        &mut self,
        seq: u64,
        hash: EntryHash<'_>,
        stored_hash: &Digest,
    ) -> Result<(), VerifyError> {
        self.sticky()?;
        let result = self.step_entry(seq, hash, stored_hash);
        self.record(result)
    }

    /// Feeds the next checkpoint; it must cover the entry just fed.
    pub fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), VerifyError> {
        self.sticky()?;
        let result = self.step_checkpoint(cp, cp.verify(&self.key));
        self.record(result)
    }

    /// [`checkpoint`](Verifier::checkpoint) with the signature already checked against
    /// [`Verifier::key`] (`signature` is that check's result).
    pub(crate) fn checkpoint_checked(
        &mut self,
        cp: &Checkpoint,
        signature: Result<(), VerifyError>,
    ) -> Result<(), VerifyError> {
        self.sticky()?;
        let result = self.step_checkpoint(cp, signature);
        self.record(result)
    }

    /// The key checkpoints must be signed with.
    pub(crate) fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The verdict: the trail holds at least one entry, the chain is unbroken and a valid
    /// checkpoint covers the last entry.
    pub fn finish(self) -> Result<Report, VerifyError> {
        self.sticky()?;
        if let Some(gap) = self.gap {
            return Err(VerifyError::MissingEntries {
                expected: gap.expected,
                found: gap.found,
            });
        }
        if self.entries == 0 {
            return Err(VerifyError::Empty);
        }
        if self.last_checkpoint != Some(self.last_seq) {
            return Err(VerifyError::UnsignedTail {
                last_checkpoint: self.last_checkpoint,
                last_entry: self.last_seq,
            });
        }
        Ok(Report {
            entries: self.entries,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            checkpoints: self.checkpoints,
            head: self.head,
            key_hex: hex::encode(self.key.as_bytes()),
        })
    }

    fn sticky(&self) -> Result<(), VerifyError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record(&mut self, result: Result<(), VerifyError>) -> Result<(), VerifyError> {
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn step_entry(
        &mut self,
        seq: u64,
        hash: EntryHash<'_>,
        stored_hash: &Digest,
    ) -> Result<(), VerifyError> {
        if let Some(gap) = self.gap {
            // The entry after a jump decides what the jump was.
            return Err(if seq < gap.found {
                VerifyError::OutOfOrder {
                    previous: gap.found,
                    found: seq,
                }
            } else {
                VerifyError::MissingEntries {
                    expected: gap.expected,
                    found: gap.found,
                }
            });
        }
        if seq <= self.last_seq {
            return Err(VerifyError::OutOfOrder {
                previous: self.last_seq,
                found: seq,
            });
        }
        if seq - self.last_seq > 1 {
            // Deleted entries, or the first of two swapped ones: the next item tells.
            self.gap = Some(Gap {
                expected: self.last_seq + 1,
                found: seq,
            });
            return Ok(());
        }
        let hash = match hash {
            EntryHash::Fields(entry) => entry.hash(&self.head),
            // Computed on the previous entry's stored hash, which is the head whenever the
            // previous entry verified; when it did not, the verifier has failed already and
            // never gets here. Refuse rather than trust a hash of another chain position.
            EntryHash::Chained { prev, hash } if prev == self.head => hash,
            EntryHash::Chained { .. } => return Err(VerifyError::EditedEntry { seq }),
        };
        if hash != *stored_hash {
            return Err(VerifyError::EditedEntry { seq });
        }
        self.last_seq = seq;
        self.head = hash;
        self.entries += 1;
        Ok(())
    }

    fn step_checkpoint(
        &mut self,
        cp: &Checkpoint,
        signature: Result<(), VerifyError>,
    ) -> Result<(), VerifyError> {
        // Authenticity first: a forged checkpoint is reported as such wherever it sits.
        signature?;
        if let Some(gap) = self.gap {
            return if cp.seq < gap.found {
                Err(VerifyError::OutOfOrder {
                    previous: gap.found,
                    found: cp.seq,
                })
            } else if cp.seq == gap.found {
                // The checkpoint of the entry after the jump; the next entry still decides.
                Ok(())
            } else {
                Err(VerifyError::MissingEntries {
                    expected: gap.expected,
                    found: gap.found,
                })
            };
        }
        if cp.seq > self.last_seq {
            return Err(VerifyError::CheckpointBeyondChain {
                seq: cp.seq,
                last: self.last_seq,
            });
        }
        if cp.seq < self.last_seq {
            return Err(VerifyError::OutOfOrder {
                previous: self.last_seq,
                found: cp.seq,
            });
        }
        if cp.hash != self.head {
            return Err(VerifyError::CheckpointMismatch { seq: cp.seq });
        }
        self.checkpoints += 1;
        self.last_checkpoint = Some(cp.seq);
        Ok(())
    }
}
