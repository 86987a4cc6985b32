//! Writing a bundle's payload into the inactive slot. See the crate documentation.
//!
//! [`install`] is blocking (the daemon runs it on a blocking thread) and sans-policy: it checks,
//! writes and verifies the target slot, and never touches the bootloader; after `Ok` the caller
//! activates the slot. In order:
//!
//! 1. the keyring is not empty (before the source is even opened);
//! 2. the header and manifest are fetched and the signature verified (`keywarden_bundle`);
//! 3. the signer is not the test-only key (unless allowed), the board matches, the version is
//!    strictly newer, every slot class is known, the payload fits the slot, the source has the
//!    bundle's length, the state directory has room for the journal: each refusal is its own
//!    [`Error`](crate::Error) variant and leaves the target slot unopened;
//! 4. chunks a resume journal claims (every chunk, if the slot's saved manifest is this bundle's)
//!    are read back from the slot and re-checked; only those that fail are written again;
//! 5. the other chunks are copied from the active slot when it has them (adaptive update) or
//!    downloaded, each checked against the manifest before it is written at its offset;
//! 6. the slot is synced and read back from the device (O_DIRECT, or after dropping its page
//!    cache) against every chunk hash and the whole-payload hash: progressively, every 16 MiB
//!    after an `fdatasync` (which also advances the journal), on a thread behind the writes,
//!    and the last range after the final `fsync`;
//! 7. the manifest is saved as the slot's (`slot-<NAME>.manifest.json`) and the journal removed.

mod readback;
mod reuse;
mod run;
mod source;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use keywarden_bundle::{Keyring, Version};

pub use reuse::IndexSource;
pub use run::install;
pub use source::{BundleSource, FileSource};
pub(crate) use state::write_atomic;
pub use state::{read_slot_manifest, slot_manifest_path, slot_version, JOURNAL_FILE};

/// The one slot class this installer knows: the `rootA`/`rootB` root file system partitions.
pub const ROOTFS_SLOT_CLASS: &str = "rootfs";

/// A slot: its name (`A`, `B`: used in the state files' names) and its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDevice {
    /// The slot's name, 1-16 of `[A-Za-z0-9_-]` (`A`, `B`).
    pub name: String,
    /// Its block device (a regular file in tests).
    pub device: PathBuf,
}

/// What to install where, and what this device accepts.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// The trusted signing keys. Empty refuses every bundle.
    pub keyring: Keyring,
    /// This board's string; a bundle's `compatible` must equal it.
    pub compatible: String,
    /// The running (active slot's) version: the bundle must be strictly newer.
    pub installed_version: Version,
    /// The slot written: the inactive one. It must exist (it is never created).
    pub target: SlotDevice,
    /// The target slot's size in bytes (its partition's size).
    pub target_size: u64,
    /// The active slot, read for adaptive reuse; `None` downloads every chunk.
    pub active: Option<SlotDevice>,
    /// The installer's directory on the data partition (journal, slot manifests).
    pub state_dir: PathBuf,
    /// Whether bundles signed with the repository's test-only key are accepted (development
    /// images only).
    pub allow_test_keys: bool,
    /// How many times a failed read of the source is retried (reopening it at the chunk it
    /// stopped in) before the install gives up; the journal keeps the chunks written so far.
    pub source_retries: u32,
    /// A run of chunks to skip (reused or resumed) longer than this many bytes reopens the source
    /// at the next chunk to download (a new range request) instead of reading and discarding it.
    pub reopen_gap: u64,
}

impl InstallRequest {
    /// A request with no active slot (no reuse), test-only keys refused, 3 retries of the
    /// source, and a reopen gap of 256 KiB (4 chunks).
    pub fn new(
        keyring: Keyring,
        compatible: impl Into<String>,
        installed_version: Version,
        target: SlotDevice,
        target_size: u64,
        state_dir: impl Into<PathBuf>,
    ) -> InstallRequest {
        InstallRequest {
            keyring,
            compatible: compatible.into(),
            installed_version,
            target,
            target_size,
            active: None,
            state_dir: state_dir.into(),
            allow_test_keys: false,
            source_retries: 3,
            reopen_gap: 256 << 10,
        }
    }
}

/// What the installer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Fetching the header and manifest and checking them.
    Verifying,
    /// Re-checking the chunks a resume journal says are on the slot (`done`/`total`: bytes).
    Resuming,
    /// Hashing the active slot for chunks to reuse (bytes of the active slot).
    Indexing,
    /// Writing the payload: copied or downloaded chunks (payload bytes on the slot).
    Writing,
    /// Flushing the slot to the device.
    Syncing,
    /// Reading the payload back from the device (payload bytes).
    ReadBack,
    /// The slot holds the payload, verified: it may be activated.
    Done,
}

impl Phase {
    /// The phase's name, for D-Bus properties and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Verifying => "verifying",
            Phase::Resuming => "resuming",
            Phase::Indexing => "indexing",
            Phase::Writing => "writing",
            Phase::Syncing => "syncing",
            Phase::ReadBack => "read-back",
            Phase::Done => "done",
        }
    }
}

/// A progress report, sent on each phase change and at most every ~1% of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The current phase.
    pub phase: Phase,
    /// Bytes done in this phase.
    pub done: u64,
    /// Bytes this phase handles in all.
    pub total: u64,
    /// Payload bytes downloaded so far.
    pub downloaded: u64,
    /// Payload bytes copied from the active slot so far.
    pub reused: u64,
    /// Payload bytes found already on the slot (resumed) so far.
    pub resumed: u64,
}

/// Time spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Header and manifest: fetch and checks.
    pub verify: Duration,
    /// Re-checking the chunks of a resume journal.
    pub resume: Duration,
    /// Indexing the active slot.
    pub index: Duration,
    /// Copying and downloading chunks into the slot.
    pub write: Duration,
    /// The final fsync.
    pub sync: Duration,
    /// Reading the payload back.
    pub read_back: Duration,
    /// The whole install.
    pub total: Duration,
}

/// What an install did; the slot it names holds the payload, read back and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The bundle's version.
    pub version: Version,
    /// The bundle's id: SHA-256 of its manifest bytes, hex.
    pub bundle_id: String,
    /// The slot written.
    pub slot: String,
    /// The payload's size.
    pub payload_size: u64,
    /// Every byte read from the source: header, manifest, chunks, skipped gaps.
    pub fetched: u64,
    /// Payload bytes downloaded (and written).
    pub downloaded: u64,
    /// Payload bytes copied from the active slot instead.
    pub reused: u64,
    /// Payload bytes already on the slot from an interrupted install (re-checked).
    pub resumed: u64,
    /// How many times the source was (re)opened for payload bytes.
    pub source_opens: u32,
    /// How many failed reads of the source were retried.
    pub retries: u32,
    /// Where the active slot's chunk index came from.
    pub index_source: IndexSource,
    /// Time per phase.
    pub timings: Timings,
}
