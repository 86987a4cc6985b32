//! The install itself: checks, resume, reuse, download, sync, read-back.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keywarden_bundle::{
    keys, read_up_to, Digest, Error as BundleError, Header, Payload, VerifiedManifest, HEADER_LEN,
    MAGIC,
};

use super::readback::{self, ReadBack};
use super::reuse::{ActiveIndex, IndexSource, ShiftTracker};
use super::state::{self, Journal};
use super::{
    BundleSource, InstallReport, InstallRequest, Phase, Progress, SlotDevice, Timings,
    ROOTFS_SLOT_CLASS,
};
use crate::{Error, Result};

/// The slot is fdatasynced, journaled and read back (on the read-back thread) every this many
/// bytes written.
const SYNC_EVERY: u64 = if cfg!(test) {
    // Tests use small payloads: sync and read back every 4 chunks so that they go through the
    // progressive path.
    4 << 16
} else {
    16 << 20
};
/// Room the state directory needs beyond the manifest: the journal and its temporary file.
const STATE_MARGIN: u64 = 64 << 10;
/// The active slot is hashed up to this multiple of the new payload's size (reusable data lies
/// at about the same offsets; the rest of a large partition is old garbage).
const INDEX_SPAN: u64 = 2;

/// Installs the bundle `source` into `req.target`; see the [module documentation](super) for the
/// order of the checks and steps. Blocking. `progress` is called on each phase change and at most
/// every ~1% of a phase; `cancel` is checked between chunks ([`Error::Cancelled`]; the chunks
/// written so far are kept in the journal for the next attempt).
///
/// `Ok` means the target slot holds the payload, synced and read back against every hash: the
/// caller may activate it. On `Err` the slot must not be activated.
pub fn install(
    req: InstallRequest,
    source: &mut dyn BundleSource,
    progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<InstallReport> {
    let started = Instant::now();
    // 1. No trusted key: refuse before touching the source.
    if req.keyring.is_empty() {
        return Err(BundleError::NoTrustedKeys.into());
    }
    check_request(&req)?;
    let mut reporter = Reporter::new(progress);
    reporter.send(Progress::at(Phase::Verifying, 0, 0), true);

    // 2. Header and manifest, signature.
    let source_name = source.describe();
    let mut head_stream = source.open_at(0)?;
    let mut head = [0u8; HEADER_LEN];
    let got = read_up_to(&mut head_stream, &mut head).map_err(|e| Error::Download {
        source_name: source_name.clone(),
        offset: 0,
        error: e.to_string(),
    })?;
    let magic_len = got.min(MAGIC.len());
    if head[..magic_len] != MAGIC[..magic_len] {
        return Err(BundleError::BadMagic.into());
    }
    if got < HEADER_LEN {
        return Err(BundleError::TruncatedHeader { len: got as u64 }.into());
    }
    let header = Header::parse(&head)?;
    let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
    let got_manifest =
        read_up_to(&mut head_stream, &mut manifest_bytes).map_err(|e| Error::Download {
            source_name: source_name.clone(),
            offset: HEADER_LEN as u64,
            error: e.to_string(),
        })?;
    if got_manifest < manifest_bytes.len() {
        return Err(BundleError::TruncatedHeader {
            len: (HEADER_LEN + got_manifest) as u64,
        }
        .into());
    }
    let verified = header.verify(&manifest_bytes, &req.keyring)?;

    // 3. Policy: only then may the slot be touched.
    let pi = check_bundle(&req, &verified, source.len(), &source_name)?;
    let bundle_id = Digest::of(&manifest_bytes).to_hex();
    fs::create_dir_all(&req.state_dir).map_err(|e| Error::io("creating", &req.state_dir, e))?;
    check_space(
        &req.state_dir,
        u64::from(header.manifest_len) + STATE_MARGIN,
    )?;
    let verify_time = started.elapsed();

    let payload = verified.manifest().payloads[pi].clone();
    tracing::info!(
        version = %verified.manifest().version,
        bundle = %bundle_id,
        slot = %req.target.name,
        device = %req.target.device.display(),
        size = payload.size,
        "installing bundle"
    );

    let mut run = Run {
        req: &req,
        source,
        source_name,
        reporter,
        cancel,
        verified,
        pi,
        payload,
        stream: Some(Stream {
            reader: head_stream,
            pos: header.data_offset(),
        }),
        target: None,
        journal: Journal {
            format: 1,
            bundle: bundle_id.clone(),
            version: String::new(),
            slot: req.target.name.clone(),
            device: req.target.device.clone(),
            payload: String::new(),
            chunks_done: 0,
        },
        counters: Counters {
            fetched: (HEADER_LEN + manifest_bytes.len()) as u64,
            ..Counters::default()
        },
        timings: Timings {
            verify: verify_time,
            ..Timings::default()
        },
    };
    run.journal.version = run.verified.manifest().version.to_string();
    run.journal.payload = run.payload.name.clone();
    let (index_source, back) = run.write_slot()?;
    run.finish(back, &manifest_bytes)?;

    run.timings.total = started.elapsed();
    let report = InstallReport {
        version: run.verified.manifest().version.clone(),
        bundle_id,
        slot: req.target.name.clone(),
        payload_size: run.payload.size,
        fetched: run.counters.fetched,
        downloaded: run.counters.downloaded,
        reused: run.counters.reused,
        resumed: run.counters.resumed,
        source_opens: run.counters.opens,
        retries: run.counters.retries,
        index_source,
        timings: run.timings,
    };
    tracing::info!(
        version = %report.version,
        slot = %report.slot,
        downloaded = report.downloaded,
        reused = report.reused,
        resumed = report.resumed,
        seconds = report.timings.total.as_secs_f64(),
        "bundle installed and read back"
    );
    Ok(report)
}

/// Slot names, and the target must not be the active slot.
fn check_request(req: &InstallRequest) -> Result<()> {
    let valid = |name: &str| {
        (1..=16).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let invalid = |reason: String| Err(Error::InvalidRequest { reason });
    if !valid(&req.target.name) {
        return invalid(format!("bad target slot name {:?}", req.target.name));
    }
    if let Some(active) = &req.active {
        if !valid(&active.name) {
            return invalid(format!("bad active slot name {:?}", active.name));
        }
        if active.name == req.target.name || same_file(&active.device, &req.target.device) {
            return invalid(format!(
                "the target slot {} ({}) is the active slot",
                req.target.name,
                req.target.device.display()
            ));
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The updater's checks on a verified manifest, in order: signer, board, version, slot classes,
/// size, the source's length. Returns the index of the payload for the target slot.
fn check_bundle(
    req: &InstallRequest,
    verified: &VerifiedManifest,
    source_len: Option<u64>,
    source_name: &str,
) -> Result<usize> {
    if !req.allow_test_keys && keys::is_test_only_key(verified.signer()) {
        return Err(Error::TestKeyRefused {
            signer: hex::encode(verified.signer().as_bytes()),
        });
    }
    let manifest = verified.manifest();
    if manifest.compatible != req.compatible {
        return Err(Error::WrongBoard {
            bundle: manifest.compatible.clone(),
            device: req.compatible.clone(),
        });
    }
    if manifest.version <= req.installed_version {
        return Err(Error::NotNewer {
            bundle: manifest.version.clone(),
            installed: req.installed_version.clone(),
        });
    }
    if let Some(p) = manifest
        .payloads
        .iter()
        .find(|p| p.slot_class != ROOTFS_SLOT_CLASS)
    {
        return Err(Error::UnknownSlotClass {
            payload: p.name.clone(),
            slot_class: p.slot_class.clone(),
        });
    }
    let count = manifest.payloads.len();
    if count != 1 {
        return Err(Error::SlotClassCount {
            slot_class: ROOTFS_SLOT_CLASS.to_owned(),
            count,
        });
    }
    let payload = &manifest.payloads[0];
    if payload.size > req.target_size {
        return Err(Error::PayloadTooLarge {
            payload: payload.name.clone(),
            size: payload.size,
            slot: req.target.name.clone(),
            device: req.target.device.clone(),
            slot_size: req.target_size,
        });
    }
    if let Some(len) = source_len {
        if len != verified.bundle_len() {
            return Err(Error::BundleLength {
                source_name: source_name.to_owned(),
                expected: verified.bundle_len(),
                actual: len,
            });
        }
    }
    Ok(0)
}

#[cfg(test)]
thread_local! {
    /// Tests: read back regular files with O_DIRECT too (where the file system allows it).
    pub(super) static FORCE_DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether to read the slot back with O_DIRECT: a block device.
fn direct_reads(file: &File) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    #[cfg(test)]
    if FORCE_DIRECT.with(|f| f.get()) {
        return true;
    }
    file.metadata()
        .is_ok_and(|m| m.file_type().is_block_device())
}

/// Free space in the state directory.
pub(super) fn check_space(dir: &Path, needed: u64) -> Result<()> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io("checking free space of", dir, io::Error::from(e)))?;
    #[allow(clippy::useless_conversion)] // the widths differ between targets
    let available =
        u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    if available < needed {
        return Err(Error::NoSpace {
            path: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Sends progress on phase changes and at most every ~1% of a phase.
struct Reporter<'a> {
    sink: &'a mut dyn FnMut(&Progress),
    last: Option<(Phase, u64)>,
    counts: (u64, u64, u64),
}

impl<'a> Reporter<'a> {
    fn new(sink: &'a mut dyn FnMut(&Progress)) -> Reporter<'a> {
        Reporter {
            sink,
            last: None,
            counts: (0, 0, 0),
        }
    }

    fn send(&mut self, mut p: Progress, force: bool) {
        (p.downloaded, p.reused, p.resumed) = self.counts;
        let due = match self.last {
            Some((phase, done)) if phase == p.phase => {
                let step = (p.total / 100).max(1);
                force
                    || p.done >= done.saturating_add(step)
                    || (p.done == p.total && done != p.total)
            }
            _ => true,
        };
        if due {
            self.last = Some((p.phase, p.done));
            (self.sink)(&p);
        }
    }
}

impl Progress {
    fn at(phase: Phase, done: u64, total: u64) -> Progress {
        Progress {
            phase,
            done,
            total,
            downloaded: 0,
            reused: 0,
            resumed: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    fetched: u64,
    downloaded: u64,
    reused: u64,
    resumed: u64,
    opens: u32,
    retries: u32,
}

/// An open read of the bundle and the bundle offset of its next byte.
struct Stream {
    reader: Box<dyn Read + Send>,
    pos: u64,
}

/// Why a chunk could not be read from the source.
enum Fetch {
    /// The source ended early: truncated (final).
    Eof,
    /// An error opening or reading: retried.
    Failed(String),
}

struct Run<'a> {
    req: &'a InstallRequest,
    source: &'a mut dyn BundleSource,
    source_name: String,
    reporter: Reporter<'a>,
    cancel: &'a AtomicBool,
    verified: VerifiedManifest,
    pi: usize,
    payload: Payload,
    stream: Option<Stream>,
    target: Option<File>,
    journal: Journal,
    counters: Counters,
    timings: Timings,
}

impl Run<'_> {
    fn chunk_size(&self) -> u64 {
        u64::from(self.payload.chunk_size)
    }

    fn target(&self) -> Result<&File> {
        self.target.as_ref().ok_or_else(|| Error::InvalidRequest {
            reason: "the target slot is not open".to_owned(),
        })
    }

    fn cancelled(&self, written: u64) -> Option<Error> {
        self.cancel
            .load(Ordering::Relaxed)
            .then_some(Error::Cancelled {
                written,
                total: self.payload.size,
            })
    }

    fn send(&mut self, phase: Phase, done: u64, total: u64) {
        self.reporter.counts = (
            self.counters.downloaded,
            self.counters.reused,
            self.counters.resumed,
        );
        self.reporter.send(Progress::at(phase, done, total), false);
    }

    /// Steps 4 and 5: journal, resume, index, then every chunk into the slot.
    fn write_slot(&mut self) -> Result<(IndexSource, ReadBack)> {
        let req = self.req;
        let n = self.payload.chunk_count();
        let cs = self.chunk_size();

        // The device itself must hold the payload (whatever the request says), checked on a
        // read-only handle: a refused bundle never has the slot opened for writing. A regular
        // file (tests) grows as it is written; a device does not.
        {
            let mut probe = File::open(&req.target.device)
                .map_err(|e| Error::io("opening", &req.target.device, e))?;
            let device_len = probe
                .seek(SeekFrom::End(0))
                .map_err(|e| Error::io("measuring", &req.target.device, e))?;
            let is_file = probe
                .metadata()
                .map_err(|e| Error::io("measuring", &req.target.device, e))?
                .is_file();
            if !is_file && device_len < self.payload.size {
                return Err(Error::PayloadTooLarge {
                    payload: self.payload.name.clone(),
                    size: self.payload.size,
                    slot: req.target.name.clone(),
                    device: req.target.device.clone(),
                    slot_size: device_len,
                });
            }
        }
        // The same bundle already installed in the slot (an activation that failed, a retry):
        // every chunk is claimed, and re-checked like a journal's.
        let already = fs::read(state::slot_manifest_path(&req.state_dir, &req.target.name))
            .is_ok_and(|bytes| Digest::of(&bytes).to_hex() == self.journal.bundle);
        // The slot's saved manifest no longer describes it once it is written to.
        state::forget_slot_manifest(&req.state_dir, &req.target.name)?;
        let previous = Journal::load(&req.state_dir);
        let claimed = match previous {
            _ if already => n,
            Some(j)
                if j.bundle == self.journal.bundle
                    && j.slot == self.journal.slot
                    && j.device == self.journal.device
                    && j.payload == self.journal.payload =>
            {
                j.chunks_done.min(n)
            }
            Some(j) => {
                tracing::info!(bundle = %j.bundle, slot = %j.slot, "discarding the journal of another install");
                0
            }
            None => 0,
        };

        let target = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&req.target.device)
            .map_err(|e| Error::io("opening", &req.target.device, e))?;
        self.target = Some(target);
        if claimed == 0 {
            self.journal.chunks_done = 0;
            self.journal.store(&req.state_dir)?;
        }

        // 4. Resume: re-check what the journal claims.
        let mut present = vec![false; n as usize];
        let mut buf = vec![0u8; cs as usize];
        let t = Instant::now();
        if claimed > 0 {
            let total = self.payload.size.min(claimed * cs);
            self.send(Phase::Resuming, 0, total);
            let mut bad = 0u64;
            for i in 0..claimed {
                if let Some(e) = self.cancelled(self.counters.resumed) {
                    return Err(e);
                }
                let len = self.payload.chunk_len(i) as usize;
                let ok = self
                    .target()?
                    .read_exact_at(&mut buf[..len], i * cs)
                    .is_ok()
                    && self.verified.check_chunk(self.pi, i, &buf[..len]).is_ok();
                if ok {
                    present[i as usize] = true;
                    self.counters.resumed += len as u64;
                } else {
                    bad += 1;
                }
                self.send(Phase::Resuming, (i + 1) * cs, total);
            }
            tracing::info!(
                claimed,
                bad,
                "resuming an interrupted install: re-checked the chunks already on the slot"
            );
        }
        self.timings.resume = t.elapsed();

        // Adaptive reuse: index the active slot for the chunks still missing.
        let t = Instant::now();
        let needed: HashSet<Digest> = (0..n as usize)
            .filter(|i| !present[*i])
            .map(|i| self.payload.chunks[i])
            .collect();
        let index = if needed.is_empty() {
            None
        } else {
            self.index_active(&needed)?
        };
        let index_source = index
            .as_ref()
            .map_or(IndexSource::None, |index| index.source);
        self.timings.index = t.elapsed();

        // 5. Every missing chunk: reused or downloaded, checked, then written. The read-back
        // thread syncs, journals and reads back behind the writes.
        let t = Instant::now();
        let size = self.payload.size;
        let mut back = ReadBack::start(readback::Context {
            file: self
                .target()?
                .try_clone()
                .map_err(|e| Error::io("opening", &req.target.device, e))?,
            device: req.target.device.clone(),
            slot: req.target.name.clone(),
            payload: self.payload.clone(),
            journal: self.journal.clone(),
            state_dir: req.state_dir.clone(),
            direct: direct_reads(self.target()?),
        })?;
        self.send(Phase::Writing, self.counters.resumed, size);
        let mut since_sync = 0u64;
        let mut on_slot = self.counters.resumed;
        let mut shifts = ShiftTracker::default();
        for i in 0..n {
            if present[i as usize] {
                continue;
            }
            if let Some(e) = self.cancelled(on_slot) {
                back.abort(i);
                return Err(e);
            }
            let len = self.payload.chunk_len(i) as usize;
            let data = &mut buf[..len];
            let offset = i * cs;
            let reused = index.as_ref().is_some_and(|index| {
                let is_chunk = |bytes: &[u8]| self.verified.check_chunk(self.pi, i, bytes).is_ok();
                (index.read(&self.payload.chunks[i as usize], offset, data) && is_chunk(data))
                    || shifts.find(index, offset, data, is_chunk)
            });
            if reused {
                self.counters.reused += len as u64;
            } else {
                if let Err(e) = self.download(i, data) {
                    back.abort(i);
                    return Err(e);
                }
                self.counters.downloaded += len as u64;
                if let Some(index) = &index {
                    shifts.learn(index, i, offset, data);
                }
            }
            if let Err(e) = self.target()?.write_all_at(data, offset) {
                back.abort(i);
                return Err(Error::io("writing", &req.target.device, e));
            }
            on_slot += len as u64;
            since_sync += len as u64;
            if since_sync >= SYNC_EVERY {
                since_sync = 0;
                back.written(i + 1)?;
            }
            self.send(Phase::Writing, on_slot, size);
        }
        self.stream = None;
        if shifts.followed > 0 {
            tracing::info!(
                chunks = shifts.followed,
                searches = shifts.searches,
                "followed shifted data in the active slot"
            );
        }
        self.timings.write = t.elapsed();
        Ok((index_source, back))
    }

    /// Builds the index of the active slot, from its saved manifest or by hashing it.
    fn index_active(&mut self, needed: &HashSet<Digest>) -> Result<Option<ActiveIndex>> {
        let Some(active) = self.req.active.clone() else {
            return Ok(None);
        };
        let SlotDevice { name, device } = &active;
        let file = match File::open(device) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(device = %device.display(), error = %e, "cannot open the active slot; downloading every chunk");
                return Ok(None);
            }
        };
        let len = match (&file).seek(SeekFrom::End(0)) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(device = %device.display(), error = %e, "cannot measure the active slot; downloading every chunk");
                return Ok(None);
            }
        };
        match state::read_slot_manifest(&self.req.state_dir, name) {
            Ok(Some(saved)) => {
                let file_copy = file
                    .try_clone()
                    .map_err(|e| Error::io("opening", device, e))?;
                if let Some(index) = ActiveIndex::from_manifest(
                    device,
                    file_copy,
                    len,
                    &saved,
                    ROOTFS_SLOT_CLASS,
                    &self.payload,
                    needed,
                ) {
                    tracing::info!(slot = %name, version = %saved.version, matches = index.map.len(), "indexed the active slot from its saved manifest");
                    return Ok(Some(index));
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the active slot's saved manifest");
            }
        }

        // Hash the slot in the new payload's chunk size.
        let cs = self.chunk_size();
        let span = len.min(
            self.payload
                .size
                .saturating_mul(INDEX_SPAN)
                .saturating_add(cs),
        );
        let full_chunks = span / cs;
        let total = full_chunks * cs;
        let mut map = std::collections::HashMap::new();
        self.send(Phase::Indexing, 0, total);
        // Read in blocks of 16 chunks (fewer system calls), hash each chunk.
        let per_block = 16u64;
        let mut block = vec![0u8; (cs * per_block) as usize];
        let mut i = 0u64;
        'read: while i < full_chunks {
            if let Some(e) = self.cancelled(self.counters.resumed) {
                return Err(e);
            }
            let count = per_block.min(full_chunks - i);
            let data = &mut block[..(count * cs) as usize];
            if let Err(e) = file.read_exact_at(data, i * cs) {
                tracing::warn!(device = %device.display(), offset = i * cs, error = %e, "cannot read the active slot; indexing stops here");
                break 'read;
            }
            for chunk in data.chunks_exact(cs as usize) {
                let digest = Digest::of(chunk);
                if needed.contains(&digest) {
                    map.entry(digest).or_insert(i * cs);
                }
                i += 1;
            }
            self.send(Phase::Indexing, i * cs, total);
        }
        tracing::info!(slot = %name, matches = map.len(), "indexed the active slot by reading it");
        Ok(Some(ActiveIndex {
            device: device.clone(),
            file,
            map,
            len,
            chunk_size: cs,
            source: IndexSource::SlotRead,
        }))
    }

    /// Downloads chunk `i` into `data` and checks it, retrying failed reads of the source.
    fn download(&mut self, i: u64, data: &mut [u8]) -> Result<()> {
        let offset = self
            .verified
            .chunk_offset(self.pi, i)
            .ok_or(BundleError::NoSuchChunk {
                payload: self.pi,
                index: i,
            })?;
        let mut attempt = 0;
        loop {
            match self.fetch(offset, data) {
                Ok(()) => break,
                Err(Fetch::Eof) => {
                    return Err(BundleError::Truncated {
                        payload: self.payload.name.clone(),
                        index: i,
                    }
                    .into())
                }
                Err(Fetch::Failed(error)) => {
                    self.stream = None;
                    if attempt >= self.req.source_retries {
                        return Err(Error::Download {
                            source_name: self.source_name.clone(),
                            offset,
                            error,
                        });
                    }
                    attempt += 1;
                    self.counters.retries += 1;
                    tracing::warn!(source = %self.source_name, offset, attempt, %error, "reading the bundle failed; reopening it");
                }
            }
        }
        self.verified.check_chunk(self.pi, i, data)?;
        // The last chunk of the bundle: nothing may follow it.
        if self.pi + 1 == self.verified.manifest().payloads.len()
            && i + 1 == self.payload.chunk_count()
        {
            if let Some(stream) = &mut self.stream {
                let mut probe = [0u8; 1];
                if matches!(read_up_to(&mut stream.reader, &mut probe), Ok(1)) {
                    return Err(BundleError::TrailingData.into());
                }
            }
        }
        Ok(())
    }

    /// Reads `data.len()` bytes at bundle offset `offset`: from the open stream (discarding a
    /// small gap) or a new one.
    fn fetch(&mut self, offset: u64, data: &mut [u8]) -> std::result::Result<(), Fetch> {
        let mut stream = match self.stream.take() {
            Some(s) if s.pos <= offset && offset - s.pos <= self.req.reopen_gap => s,
            _ => {
                self.counters.opens += 1;
                let reader = self
                    .source
                    .open_at(offset)
                    .map_err(|e| Fetch::Failed(e.to_string()))?;
                Stream {
                    reader,
                    pos: offset,
                }
            }
        };
        let gap = offset - stream.pos;
        if gap > 0 {
            let skipped = io::copy(&mut (&mut stream.reader).take(gap), &mut io::sink())
                .map_err(|e| Fetch::Failed(e.to_string()))?;
            self.counters.fetched += skipped;
            if skipped < gap {
                return Err(Fetch::Eof);
            }
        }
        let got = read_up_to(&mut stream.reader, data).map_err(|e| Fetch::Failed(e.to_string()))?;
        self.counters.fetched += got as u64;
        if got < data.len() {
            return Err(Fetch::Eof);
        }
        stream.pos = offset + data.len() as u64;
        self.stream = Some(stream);
        Ok(())
    }

    /// Steps 6 and 7: the final fsync and read-back (on the read-back thread), then the slot's
    /// manifest saved and the journal removed.
    fn finish(&mut self, mut back: ReadBack, manifest_bytes: &[u8]) -> Result<()> {
        let req = self.req;
        let size = self.payload.size;
        back.finish();
        self.send(Phase::Syncing, 0, size);
        while !back.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
            if back.synced.load(Ordering::SeqCst) != 0 {
                let done = back.verified.load(Ordering::SeqCst);
                self.send(Phase::ReadBack, done, size);
            }
        }
        let tail = back.wait()?;
        self.send(Phase::ReadBack, size, size);
        self.timings.sync = tail.sync;
        self.timings.read_back = tail.read_back;

        state::save_slot_manifest(&req.state_dir, &req.target.name, manifest_bytes)?;
        Journal::remove(&req.state_dir)?;
        self.reporter
            .send(Progress::at(Phase::Done, size, size), true);
        Ok(())
    }
}
