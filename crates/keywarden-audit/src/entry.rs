//! Entries, their hash encoding and the incremental [`Chain`] appender.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: an entry hash, a chain head or a checkpointed value.
pub type Digest = [u8; 32];

/// The `prev` hash of the entry with seq 1.
pub const GENESIS: Digest = [0u8; 32];

/// Domain tag that starts every entry hash's input.
pub(crate) const ENTRY_TAG: &[u8] = b"keywarden-audit-entry-v1\0";

/// Length of the fixed-size part of the encoding: tag, prev, seq, at_ms.
const FIXED_LEN: usize = ENTRY_TAG.len() + 32 + 8 + 8;

/// One audit event (grant, denial, removal, return, alarm, admin change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the trail: 1 for the first entry, then +1 per entry, no gaps.
    pub seq: u64,
    /// When it happened, milliseconds since the Unix epoch (from the caller's clock).
    pub at_ms: i64,
    /// What happened, e.g. `grant`, `denial`, `removal`, `return`, `alarm`, `admin`.
    pub kind: String,
    /// Who did it, e.g. a user id or `system`.
    pub actor: String,
    /// What it was done to, e.g. a slot or a user.
    pub subject: String,
    /// A JSON object as text. Hashed as its bytes, never re-canonicalised: keep the exact text.
    pub detail: String,
}

/// A borrowed view of an entry, so the verifier can hash fields parsed in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    pub seq: u64,
    pub at_ms: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub subject: &'a str,
    pub detail: &'a str,
}

impl<'a> From<&'a Entry> for EntryRef<'a> {
    fn from(entry: &'a Entry) -> Self {
        EntryRef {
            seq: entry.seq,
            at_ms: entry.at_ms,
            kind: &entry.kind,
            actor: &entry.actor,
            subject: &entry.subject,
            detail: &entry.detail,
        }
    }
}

impl EntryRef<'_> {
    /// See [`entry_hash`].
    pub(crate) fn hash(&self, prev: &Digest) -> Digest {
        let mut fixed = [0u8; FIXED_LEN];
        let (tag, rest) = fixed.split_at_mut(ENTRY_TAG.len());
        tag.copy_from_slice(ENTRY_TAG);
        let (prev_out, rest) = rest.split_at_mut(32);
        prev_out.copy_from_slice(prev);
        let (seq_out, at_out) = rest.split_at_mut(8);
        seq_out.copy_from_slice(&self.seq.to_be_bytes());
        at_out.copy_from_slice(&self.at_ms.to_be_bytes());

        let mut hasher = Sha256::new();
        hasher.update(fixed);
        for field in [self.kind, self.actor, self.subject, self.detail] {
            hasher.update(field_len(field));
            hasher.update(field.as_bytes());
        }
        hasher.finalize().into()
    }
}

/// A field's length prefix.
fn field_len(field: &str) -> [u8; 4] {
    match u32::try_from(field.len()) {
        Ok(len) => len.to_be_bytes(),
        // An ambiguous encoding would defeat the chain, so this is a hard stop. Exports cannot
        // reach it: the verifier refuses lines longer than `MAX_LINE_LEN` first.
        Err(_) => panic!(
            "audit entry field of {} bytes exceeds the 4 GiB limit",
            field.len()
        ),
    }
}

/// The hash of `entry` chained after `prev`.
///
/// SHA-256 over the domain tag `b"keywarden-audit-entry-v1\0"`, `prev` (32 bytes), `seq` as u64
/// big-endian, `at_ms` as i64 big-endian, then `kind`, `actor`, `subject` and `detail`, each as a
/// u32 big-endian byte length followed by its UTF-8 bytes. Every field is either fixed-size or
/// length-prefixed, so no two different entries share an encoding.
///
/// # Panics
///
/// If a text field is 4 GiB or longer (its length would not fit the u32 prefix).
pub fn entry_hash(prev: &Digest, entry: &Entry) -> Digest {
    EntryRef::from(entry).hash(prev)
}

/// Incremental chain appender.
///
/// The store keeps one, seeded from its last stored row ([`Chain::new`]), and appends each new
/// event through it; the returned entry and hash are what it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    last_seq: u64,
    last_hash: Digest,
}

impl Chain {
    /// A chain whose last entry has `last_seq` and hash `last_hash`; `(0, GENESIS)` for an empty
    /// trail.
    pub fn new(last_seq: u64, last_hash: Digest) -> Chain {
        Chain {
            last_seq,
            last_hash,
        }
    }

    /// The seq the next [`append`](Chain::append) will use.
    ///
    /// # Panics
    ///
    /// If the last seq is `u64::MAX` (the sequence space is exhausted).
    pub fn next_seq(&self) -> u64 {
        match self.last_seq.checked_add(1) {
            Some(seq) => seq,
            None => panic!("audit sequence numbers exhausted"),
        }
    }

    /// The last entry's seq and hash (`(0, GENESIS)` while empty).
    pub fn head(&self) -> (u64, Digest) {
        (self.last_seq, self.last_hash)
    }

    /// Builds the next entry with seq = [`next_seq`](Chain::next_seq), returns it with its hash
    /// and advances the head to it.
    ///
    /// # Panics
    ///
    /// As [`next_seq`](Chain::next_seq) and [`entry_hash`].
    pub fn append(
        &mut self,
        at_ms: i64,
        kind: &str,
        actor: &str,
        subject: &str,
        detail: &str,
    ) -> (Entry, Digest) {
        let entry = Entry {
            seq: self.next_seq(),
            at_ms,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_owned(),
        };
        let hash = entry_hash(&self.last_hash, &entry);
        self.last_seq = entry.seq;
        self.last_hash = hash;
        (entry, hash)
    }
}
