//! Syncing the slot, journaling and reading it back, on a thread of its own so that the device
//! writes and the read-back overlap with the download and the hashing of later chunks.
//!
//! The writer tells this thread how many chunks (a prefix) it has written. The thread then
//! `fdatasync`s the slot, records that prefix in the journal (so a journal never claims an
//! unsynced chunk), and reads the synced range back from the device (O_DIRECT, or buffered
//! reads after `posix_fadvise(DONTNEED)` where O_DIRECT is refused), checking every chunk's hash;
//! a second thread feeds the whole-payload hash with the blocks in order. At the end it `fsync`s
//! the slot, reads back the last range and compares the whole-payload hash. Every byte of the
//! payload is thus read back from the device after it was synced, before `install` returns `Ok`.

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
    /// Read back with O_DIRECT: for a block device. A regular file is read through its dropped
    /// page cache instead: on a file system, O_DIRECT reads take the inode lock that the writes
    /// behind them need, which serialises the two.
    pub direct: bool,
}

/// Chunks read back per read (1 MiB at 64 KiB chunks).
const BLOCK_CHUNKS: u64 = 16;

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

fn run(ctx: Context, rx: Receiver<Msg>, verified: &AtomicU64, synced: &AtomicU64) -> Result<Tail> {
    // The whole-payload hash runs on a thread of its own, over the blocks read back in order,
    // while this one reads and checks the next blocks.
    std::thread::scope(|scope| {
        let (to_hash, blocks) = mpsc::sync_channel::<Block>(8);
        let (recycle, spare) = mpsc::channel::<Block>();
        let hasher = std::thread::Builder::new()
            .name("install-sha256".to_owned())
            .spawn_scoped(scope, move || {
                let mut whole = Sha256::new();
                for block in blocks {
                    whole.update(block.data());
                    let _ = recycle.send(block);
                }
                Digest(whole.finalize().into())
            })
            .map_err(|e| Error::io("starting the hash thread for", &ctx.device, e))?;
        let tail = read_back(&ctx, &rx, verified, synced, &to_hash, &spare)?;
        drop(to_hash);
        let Some(tail) = tail else {
            return Ok(Tail::default());
        };
        let whole = hasher.join().map_err(|_| Error::InvalidRequest {
            reason: "the hash thread panicked".to_owned(),
        })?;
        if whole != ctx.payload.sha256 {
            return Err(BundleError::PayloadMismatch {
                payload: ctx.payload.name.clone(),
            }
            .into());
        }
        Ok(tail)
    })
}

/// The loop of the read-back thread: `Some` after the final read-back (the whole-payload hash
/// is then complete), `None` after an abort or when the installer went away.
fn read_back(
    ctx: &Context,
    rx: &Receiver<Msg>,
    verified: &AtomicU64,
    synced: &AtomicU64,
    to_hash: &mpsc::SyncSender<Block>,
    spare: &Receiver<Block>,
) -> Result<Option<Tail>> {
    let n = ctx.payload.chunk_count();
    let cs = u64::from(ctx.payload.chunk_size);
    let block_len = (cs * BLOCK_CHUNKS) as usize;
    let mut journal = ctx.journal.clone();
    // O_DIRECT reads go to the device without the page cache (and without a copy out of it);
    // where it is not supported (tmpfs), buffered reads after dropping the cache.
    let mut direct = open_direct(ctx);
    let mut next = 0u64; // the first chunk not yet read back
    let mut tail = Tail::default();
    loop {
        // Wait for a message, then take every queued one: sync once for all of them.
        let Ok(first) = rx.recv() else {
            return Ok(None); // the installer gave up (dropped): nothing to record
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
            sync(ctx, false)?;
            journal.chunks_done = k;
            journal.store(&ctx.state_dir)?;
            return Ok(None);
        }
        let t = Instant::now();
        if finish {
            written = n;
            sync(ctx, true)?;
            tail.sync = t.elapsed();
            synced.store(1, Ordering::SeqCst);
        } else {
            sync(ctx, false)?;
        }
        journal.chunks_done = written;
        journal.store(&ctx.state_dir)?;

        // Read back chunks next..written from the device, not the page cache.
        let t = Instant::now();
        let start = next * cs;
        let end = ctx.payload.size.min(written * cs);
        if end > start && direct.is_none() {
            drop_cache(ctx, start, end - start);
        }
        while next < written {
            let count = (written - next).min(BLOCK_CHUNKS);
            let offset = next * cs;
            let len = (ctx.payload.size.min((next + count) * cs) - offset) as usize;
            let mut block = spare.try_recv().unwrap_or_else(|_| Block::new(block_len));
            read_block(ctx, &mut direct, &mut block, offset, len)?;
            for chunk in block.data().chunks(cs as usize) {
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
            if to_hash.send(block).is_err() {
                return Err(Error::InvalidRequest {
                    reason: "the hash thread stopped".to_owned(),
                });
            }
            verified.store(offset + len as u64, Ordering::SeqCst);
        }
        tail.read_back += t.elapsed();
        if finish {
            return Ok(Some(tail));
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

/// Alignment of O_DIRECT buffers, offsets and lengths (a page: enough for any logical block).
const ALIGN: usize = 4096;

/// A read-back buffer, aligned for O_DIRECT.
struct Block {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    fn new(capacity: usize) -> Block {
        let buf = vec![0u8; capacity + 2 * ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Block { buf, start, len: 0 }
    }

    /// The bytes read.
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn aligned(&self) -> bool {
        (self.buf.as_ptr() as usize + self.start) % ALIGN == 0
    }
}

/// The slot opened for O_DIRECT reads, if [`Context::direct`] asks for them and the file system
/// supports them.
fn open_direct(ctx: &Context) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !ctx.direct {
        return None;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(&ctx.device)
    {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::debug!(device = %ctx.device.display(), error = %e, "no O_DIRECT reads; reading back through the page cache");
            None
        }
    }
}

/// Reads `len` bytes at `offset` of the slot into `block`: O_DIRECT if possible (falling back
/// to buffered reads for good if the device refuses it), else buffered after the page cache was
/// dropped.
fn read_block(
    ctx: &Context,
    direct: &mut Option<File>,
    block: &mut Block,
    offset: u64,
    len: usize,
) -> Result<()> {
    block.len = 0;
    if let Some(file) = direct {
        let aligned_len = len.div_ceil(ALIGN) * ALIGN;
        if block.aligned()
            && offset % ALIGN as u64 == 0
            && block.start + aligned_len <= block.buf.len()
        {
            let space = &mut block.buf[block.start..block.start + aligned_len];
            let mut got = 0;
            let result = loop {
                if got >= len {
                    break Ok(());
                }
                match file.read_at(&mut space[got..], offset + got as u64) {
                    Ok(0) => break Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match result {
                Ok(()) => {
                    block.len = len;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                    tracing::debug!(device = %ctx.device.display(), "O_DIRECT reads refused; reading back through the page cache");
                    *direct = None;
                    drop_cache(ctx, offset, ctx.payload.size.saturating_sub(offset));
                }
                Err(e) => return Err(Error::io("reading back", &ctx.device, e)),
            }
        } else {
            // Not aligned (never with chunk-sized blocks): this block goes through the cache.
            drop_cache(ctx, offset, len as u64);
        }
    }
    let space = &mut block.buf[block.start..block.start + len];
    ctx.file
        .read_exact_at(space, offset)
        .map_err(|e| Error::io("reading back", &ctx.device, e))?;
    block.len = len;
    Ok(())
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
