//! Adaptive update: an index of the chunks of the active slot, so that every chunk of the new
//! payload already there is copied from it instead of downloaded.
//!
//! The index maps a chunk's SHA-256 to an offset in the active slot. It comes from the active
//! slot's saved manifest when there is one with the same chunk size (no read needed), else from
//! hashing the slot in chunks of the new payload's chunk size. Either way it is only a hint:
//! every chunk copied from the slot is read and checked against the new manifest before it is
//! written, and a chunk that does not check is downloaded instead.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use keywarden_bundle::{Digest, Manifest, Payload};

/// Where the index of the active slot's chunks (for adaptive reuse) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSource {
    /// No active slot was given, or nothing in it could be used.
    None,
    /// The active slot's saved manifest (no read of the slot).
    SavedManifest,
    /// Hashing the active slot.
    SlotRead,
}

/// The chunks of the active slot the new payload needs: digest → offset in the slot.
#[derive(Debug)]
pub(crate) struct ActiveIndex {
    pub device: PathBuf,
    pub file: File,
    pub map: HashMap<Digest, u64>,
    /// The slot's length in bytes.
    pub len: u64,
    /// The chunk size of the new payload.
    pub chunk_size: u64,
    pub source: IndexSource,
}

impl ActiveIndex {
    /// An index from a saved manifest of the active slot, if its chunk size is `payload`'s.
    /// Only the digests in `needed` are kept.
    pub fn from_manifest(
        device: &Path,
        file: File,
        len: u64,
        saved: &Manifest,
        slot_class: &str,
        payload: &Payload,
        needed: &HashSet<Digest>,
    ) -> Option<ActiveIndex> {
        let old = saved
            .payloads
            .iter()
            .find(|p| p.slot_class == slot_class && p.chunk_size == payload.chunk_size)?;
        let mut map = HashMap::new();
        for (i, digest) in old.chunks.iter().enumerate() {
            let offset = i as u64 * u64::from(old.chunk_size);
            if offset + old.chunk_len(i as u64) <= len && needed.contains(digest) {
                map.entry(*digest).or_insert(offset);
            }
        }
        Some(ActiveIndex {
            device: device.to_owned(),
            file,
            map,
            len,
            chunk_size: u64::from(payload.chunk_size),
            source: IndexSource::SavedManifest,
        })
    }

    /// Reads the chunk `digest` of length `len`, which the new payload wants at `offset`, from
    /// the active slot into `buf`: at the offset the index gives, or at the same offset (a short
    /// last chunk is not in an index made by reading the slot). The caller checks the bytes.
    /// `false` if it is not there or cannot be read.
    pub fn read(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> bool {
        let at = match self.map.get(digest) {
            Some(at) => *at,
            None if (buf.len() as u64) < self.chunk_size => offset,
            None => return false,
        };
        if at + buf.len() as u64 > self.len {
            return false;
        }
        match self.file.read_exact_at(buf, at) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = %self.device.display(), offset = at, error = %e, "cannot read a chunk of the active slot; downloading it");
                false
            }
        }
    }
}
