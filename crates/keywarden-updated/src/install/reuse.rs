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
        match self.map.get(digest) {
            Some(at) => self.read_at(*at, buf),
            None if (buf.len() as u64) < self.chunk_size => self.read_at(offset, buf),
            None => false,
        }
    }

    /// Reads `buf.len()` bytes of the active slot at `at`; `false` if they are not all there or
    /// cannot be read.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> bool {
        if at.saturating_add(buf.len() as u64) > self.len {
            return false;
        }
        match self.file.read_exact_at(buf, at) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(device = %self.device.display(), offset = at, error = %e, "cannot read the active slot; downloading instead");
                false
            }
        }
    }
}

/// The length of the byte string, from the end of a downloaded chunk, searched for in the
/// active slot.
const ANCHOR: usize = 64;
/// How far from where a known shift puts it an anchor is searched for, each way.
const REACH: u64 = 1 << 20;
/// How many shifts are kept.
const MAX_SHIFTS: usize = 4;
/// The most chunks a search waits after misses.
const MAX_BACKOFF: u64 = 64;

/// Follows data of the active slot that moved off the chunk grid in the new payload.
///
/// The index only finds a chunk the active slot holds at a multiple of the chunk size. When a
/// few bytes are inserted into or deleted from the payload (a file in a compressed root file
/// system that grew or shrank), everything behind them moves by that amount and no chunk
/// behind them is on the grid any more. So after a chunk is downloaded, its last bytes (the
/// anchor: the chunk's end is likely to be old data even when its start was new) are searched
/// for in the active slot, within [`REACH`] of where no shift and each known shift would put
/// them; where they are found gives a shift (new offset − old offset), and each later chunk
/// the index misses is tried at each known shift, most recently useful first. Like the index,
/// a shift is only a hint: the caller checks every chunk it reads.
///
/// A search that finds nothing makes the next one wait, 1, 2, 4 … [`MAX_BACKOFF`] chunks, so a
/// payload with nothing in common with the active slot costs a few dozen searches. An anchor
/// of one repeated byte (padding) would match anywhere and is not searched for.
#[derive(Debug)]
pub(crate) struct ShiftTracker {
    /// Known shifts, the most recently useful first; never 0 (that is the index's job).
    shifts: Vec<i64>,
    /// No search before this chunk.
    next_search: u64,
    /// Chunks the next search waits after a miss.
    backoff: u64,
    /// Searches made.
    pub searches: u64,
    /// Chunks found at a shift.
    pub followed: u64,
    window: Vec<u8>,
}

impl Default for ShiftTracker {
    fn default() -> ShiftTracker {
        ShiftTracker {
            shifts: Vec::new(),
            next_search: 0,
            backoff: 1,
            searches: 0,
            followed: 0,
            window: Vec::new(),
        }
    }
}

impl ShiftTracker {
    /// Tries the chunk the new payload wants at `offset` (`buf.len()` bytes) in the active slot
    /// at each known shift; `is_chunk` says whether bytes read are that chunk. `true` with the
    /// chunk in `buf` if one was.
    pub fn find(
        &mut self,
        index: &ActiveIndex,
        offset: u64,
        buf: &mut [u8],
        is_chunk: impl Fn(&[u8]) -> bool,
    ) -> bool {
        for k in 0..self.shifts.len() {
            let Some(at) = offset.checked_add_signed(-self.shifts[k]) else {
                continue;
            };
            if index.read_at(at, buf) && is_chunk(buf) {
                self.shifts[..=k].rotate_right(1);
                self.followed += 1;
                return true;
            }
        }
        false
    }

    /// Learns from chunk `i`, at `offset` in the new payload, just downloaded (`data`): where,
    /// if anywhere near, the active slot holds its end.
    pub fn learn(&mut self, index: &ActiveIndex, i: u64, offset: u64, data: &[u8]) {
        if i < self.next_search || data.len() < ANCHOR {
            return;
        }
        let anchor = &data[data.len() - ANCHOR..];
        if anchor.iter().all(|b| *b == anchor[0]) {
            return;
        }
        self.searches += 1;
        let at_new = offset + (data.len() - ANCHOR) as u64;
        let bases: Vec<i64> = std::iter::once(0)
            .chain(self.shifts.iter().copied())
            .collect();
        for base in bases {
            let Some(expected) = at_new.checked_add_signed(-base) else {
                continue;
            };
            let start = expected.saturating_sub(REACH);
            let end = expected
                .saturating_add(REACH + ANCHOR as u64)
                .min(index.len);
            if end < start + ANCHOR as u64 {
                continue;
            }
            let mut window = std::mem::take(&mut self.window);
            window.resize((end - start) as usize, 0);
            let found = index.read_at(start, &mut window).then(|| {
                memchr::memmem::find_iter(&window, anchor)
                    .map(|p| start + p as u64)
                    .min_by_key(|p| p.abs_diff(expected))
            });
            self.window = window;
            if let Some(Some(old)) = found {
                // Both are below the slot's length, which a file or block device keeps far
                // below i64::MAX.
                let shift = at_new as i64 - old as i64;
                if shift != 0 {
                    self.shifts.retain(|s| *s != shift);
                    self.shifts.insert(0, shift);
                    self.shifts.truncate(MAX_SHIFTS);
                }
                self.backoff = 1;
                self.next_search = i + 1;
                return;
            }
        }
        self.next_search = i + 1 + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::install::tests::random_bytes;

    const CS: usize = 64 * 1024;

    /// An index over a file holding `old` (with an empty map: these tests are about shifts).
    fn index(dir: &tempfile::TempDir, old: &[u8]) -> ActiveIndex {
        let device = dir.path().join("active.img");
        std::fs::write(&device, old).unwrap();
        ActiveIndex {
            file: File::open(&device).unwrap(),
            device,
            map: HashMap::new(),
            len: old.len() as u64,
            chunk_size: CS as u64,
            source: IndexSource::SlotRead,
        }
    }

    /// Installs `new` over `old` as the installer does (the grid, then the shifts, else a
    /// download and a search): the number of chunks downloaded, and the tracker.
    fn install(old: &[u8], new: &[u8]) -> (usize, ShiftTracker) {
        let dir = tempfile::tempdir().unwrap();
        let index = index(&dir, old);
        let mut shifts = ShiftTracker::default();
        let mut downloads = 0;
        for (i, chunk) in new.chunks(CS).enumerate() {
            let offset = (i * CS) as u64;
            let mut buf = vec![0; chunk.len()];
            let on_grid = index.read_at(offset, &mut buf) && buf == chunk;
            if on_grid || shifts.find(&index, offset, &mut buf, |b| b == chunk) {
                assert_eq!(buf, chunk);
                continue;
            }
            downloads += 1;
            shifts.learn(&index, i as u64, offset, chunk);
        }
        (downloads, shifts)
    }

    #[test]
    fn an_insertion_and_a_deletion_cost_the_chunks_they_touch() {
        let old = random_bytes(100 * CS + 1234, 1);
        let mut new = old.clone();
        // 1,000 bytes inserted in chunk 20, then 3,000 deleted in chunk 60 (of the new payload).
        new.splice(20 * CS + 77..20 * CS + 77, random_bytes(1000, 2));
        new.drain(60 * CS + 500..60 * CS + 3500);
        let (downloads, shifts) = install(&old, &new);
        // Chunk 20 holds the insertion; chunk 60 the deletion. Each is found again from the
        // end of the chunk downloaded.
        assert_eq!(downloads, 2);
        assert_eq!(shifts.searches, 2);
        assert_eq!(shifts.shifts, vec![-2000, 1000]);
        // Without the tracker, everything behind the insertion is downloaded.
        let grid_only = new
            .chunks(CS)
            .enumerate()
            .filter(|(i, c)| old.get(i * CS..i * CS + c.len()) != Some(*c))
            .count();
        assert_eq!(grid_only, new.len().div_ceil(CS) - 20);
    }

    #[test]
    fn shifts_add_up_and_the_most_recent_is_tried_first() {
        let old = random_bytes(200 * CS, 3);
        let mut new = old.clone();
        // Five insertions of different lengths: the data behind the k-th moved by the sum.
        for (k, at) in [150, 120, 90, 60, 30].into_iter().enumerate() {
            new.splice(
                at * CS + 10..at * CS + 10,
                random_bytes(100 + k * 37, 4 + k as u64),
            );
        }
        let (downloads, shifts) = install(&old, &new);
        assert_eq!(downloads, 5);
        assert_eq!(shifts.shifts.len(), MAX_SHIFTS);
        assert_eq!(shifts.shifts[0], new.len() as i64 - old.len() as i64);
    }

    #[test]
    fn a_payload_with_nothing_in_common_costs_few_searches() {
        let old = random_bytes(1000 * CS, 5);
        let new = random_bytes(1000 * CS, 6);
        let (downloads, shifts) = install(&old, &new);
        assert_eq!(downloads, 1000);
        assert_eq!(shifts.followed, 0);
        // Searches at chunks 0, 2, 5, 10, 19, 36, 69, 134, then every 65th.
        assert!(shifts.searches <= 22, "{} searches", shifts.searches);
    }

    #[test]
    fn padding_is_not_an_anchor() {
        let mut old = random_bytes(10 * CS, 7);
        old.resize(40 * CS, 0);
        let mut new = random_bytes(CS + 100, 8);
        new.resize(40 * CS, 0);
        let (downloads, shifts) = install(&old, &new);
        assert_eq!(downloads, 10, "chunks 0 to 9 differ");
        assert_eq!(shifts.searches, 1, "only chunk 0's end is not zeros");
        assert!(shifts.shifts.is_empty());
    }
}
