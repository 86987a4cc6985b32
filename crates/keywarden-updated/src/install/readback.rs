//! Syncing the slot, journaling and reading it back, on a thread of its own so that the device
//! writes and the read-back overlap with the download and the hashing of later chunks.
//!
//! The writer tells this thread how many chunks (a prefix) it has written. The thread then:
//! `fdatasync`s the slot, records that prefix in the journal (so a journal never claims an
//! unsynced chunk), drops the synced range from the page cache, and reads it back from the device,
//! checking every chunk's hash and feeding the whole-payload hash in order. At the end it
//! `fsync`s the slot, reads back the last range and compares the whole-payload hash. Every byte
//! of the payload is thus read back from the device after it was synced, before `install`
//! returns `Ok`.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keywarden_bundle::{Digest, Error as BundleError, Payload};
use sha2::{Digest as _, Sha256};

use super::state::Journal;
use crate::{Error, Result};

/// What the read-back thread needs: its own handle on the slot, the payload's hashes, the journal.
pub(crate) struct Context {
    pub file: File,
    pub device: PathBuf,
    pub slot: String,
    pub payload: Payload,
    pub journal: Journal,
    pub state_dir: PathBuf,
}

enum Msg {
    /// Chunks `0..k` are written: sync, journal and read them back.
    Written(u64),
    /// Every chunk is written: fsync, journal, read back the rest, check the whole payload.
    Finish,
    /// The install stops: sync and journal chunks `0..k` for a later resume, read nothing.
    Abort(u64),
}

/// Time the last steps took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tail {
    /// The final fsync.
    pub sync: Duration,
    /// All the reading back, progressive and final.
    pub read_back: Duration,
}

/// The handle on the read-back thread.
pub(crate) struct ReadBack {
    tx: Sender<Msg>,
    handle: Option<JoinHandle<Result<Tail>>>,
    /// Payload bytes read back and verified so far.
    pub verified: Arc<AtomicU64>,
    /// Set once the final fsync is done.
    pub synced: Arc<AtomicU64>,
}

impl ReadBack {
    /// Starts the thread.
    pub fn start(ctx: Context) -> Result<ReadBack> {
        let (tx, rx) = mpsc::channel();
        let verified = Arc::new(AtomicU64::new(0));
        let synced = Arc::new(AtomicU64::new(0));
        let (v, s) = (verified.clone(), synced.clone());
        let device = ctx.device.clone();
        let handle = std::thread::Builder::new()
            .name("install-readback".to_owned())
            .spawn(move || run(ctx, rx, &v, &s))
            .map_err(|e| Error::io("starting the read-back thread for", device, e))?;
        Ok(ReadBack {
            tx,
            handle: Some(handle),
            verified,
            synced,
        })
    }

    /// Chunks `0..k` are written. An error of the thread (a failed sync, a chunk that reads
    /// back wrong) comes back here once the thread has stopped.
    pub fn written(&mut self, k: u64) -> Result<()> {
        if self.tx.send(Msg::Written(k)).is_err() {
            return self.join().map(|_| ());
        }
        Ok(())
    }

    /// Everything is written: asks for the final fsync and read-back; [`ReadBack::wait`] then
    /// waits for them.
    pub fn finish(&mut self) {
        // A send error means the thread already stopped: `wait` returns its error.
        let _ = self.tx.send(Msg::Finish);
    }

    /// Whether the thread has stopped.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the thread and returns its result.
    pub fn wait(mut self) -> Result<Tail> {
        self.join()
    }

    /// The install stops before chunk `k`: the thread syncs and journals `0..k`. Errors are
    /// logged (the caller returns the error that stopped it).
    pub fn abort(mut self, k: u64) {
        let _ = self.tx.send(Msg::Abort(k));
        if let Err(e) = self.join() {
            tracing::warn!(error = %e, "cannot record the interrupted install in the journal");
        }
    }

    fn join(&mut self) -> Result<Tail> {
        match self.handle.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(Error::InvalidRequest {
                    reason: "the read-back thread panicked".to_owned(),
                })
            }),
            None => Err(Error::InvalidRequest {
                reason: "the read-back thread was already joined".to_owned(),
            }),
        }
    }
}

impl Drop for ReadBack {
    fn drop(&mut self) {
        // Dropped on an error path: the channel closes and the thread stops without writing.
        if let Some(handle) = self.handle.take() {
            let (tx, _) = mpsc::channel();
            drop(std::mem::replace(&mut self.tx, tx));
            let _ = handle.join();
        }
    }
}

fn run(
    mut ctx: Context,
    rx: Receiver<Msg>,
    verified: &AtomicU64,
    synced: &AtomicU64,
) -> Result<Tail> {
    let n = ctx.payload.chunk_count();
    let cs = u64::from(ctx.payload.chunk_size);
    let mut buf = vec![0u8; (cs * 16) as usize];
    let mut whole = Sha256::new();
    let mut next = 0u64; // the first chunk not yet read back
    let mut tail = Tail::default();
    loop {
        // Wait for a message, then take every queued one: sync once for all of them.
        let Ok(first) = rx.recv() else {
            return Ok(tail); // the installer gave up (dropped): nothing to record
        };
        let mut written = 0;
        let mut finish = false;
        let mut abort = None;
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                Msg::Written(k) => written = written.max(k),
                Msg::Finish => finish = true,
                Msg::Abort(k) => abort = Some(k),
            }
        }
        if let Some(k) = abort {
            sync(&ctx, false)?;
            ctx.journal.chunks_done = k;
            ctx.journal.store(&ctx.state_dir)?;
            return Ok(tail);
        }
        let t = Instant::now();
        if finish {
            written = n;
            sync(&ctx, true)?;
            tail.sync = t.elapsed();
            synced.store(1, Ordering::SeqCst);
        } else {
            sync(&ctx, false)?;
        }
        ctx.journal.chunks_done = written;
        ctx.journal.store(&ctx.state_dir)?;

        // Read back chunks next..written from the device, not the page cache.
        let t = Instant::now();
        let start = next * cs;
        let end = ctx.payload.size.min(written * cs);
        if end > start {
            drop_cache(&ctx, start, end - start);
        }
        while next < written {
            let count = (written - next).min(16);
            let offset = next * cs;
            let len = (ctx.payload.size.min((next + count) * cs) - offset) as usize;
            let data = &mut buf[..len];
            ctx.file
                .read_exact_at(data, offset)
                .map_err(|e| Error::io("reading back", &ctx.device, e))?;
            for chunk in data.chunks(cs as usize) {
                if Digest::of(chunk) != ctx.payload.chunks[next as usize] {
                    return Err(Error::ReadBackMismatch {
                        slot: ctx.slot.clone(),
                        device: ctx.device.clone(),
                        payload: ctx.payload.name.clone(),
                        index: next,
                    });
                }
                next += 1;
            }
            whole.update(&*data);
            verified.store(offset + len as u64, Ordering::SeqCst);
        }
        tail.read_back += t.elapsed();
        if finish {
            if Digest(whole.finalize().into()) != ctx.payload.sha256 {
                return Err(BundleError::PayloadMismatch {
                    payload: ctx.payload.name.clone(),
                }
                .into());
            }
            return Ok(tail);
        }
    }
}

fn sync(ctx: &Context, all: bool) -> Result<()> {
    let result = if all {
        ctx.file.sync_all()
    } else {
        ctx.file.sync_data()
    };
    result.map_err(|e| Error::io("syncing", &ctx.device, e))
}

/// Drops `len` bytes at `offset` of the slot from the page cache (they are synced), so that the
/// read-back reads the device.
fn drop_cache(ctx: &Context, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    if let Err(e) = nix::fcntl::posix_fadvise(
        ctx.file.as_raw_fd(),
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    ) {
        tracing::warn!(device = %ctx.device.display(), error = %e, "cannot drop the slot's page cache; reading it back anyway");
    }
}
