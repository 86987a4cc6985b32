//! Installs of real bundles (made by `keywarden_bundle::create`) into temporary slot files.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use keywarden_bundle::{
    create, keys, CreateSpec, Error as BundleError, Keyring, SigningKey, Version, CHUNK_SIZE,
    HEADER_LEN,
};

use super::state::Journal;
use super::*;
use crate::Error;

const CS: usize = CHUNK_SIZE as usize;
const BOARD: &str = "qemu-x86_64";

fn test_key() -> SigningKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../ota/keys/test-only/test-only-signing.pem");
    keys::load_signing_key(&path).unwrap()
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn ring(key: &SigningKey) -> Keyring {
    Keyring::from_keys([key.verifying_key()])
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift).
pub(super) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(fx.state()).unwrap();
        fx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// A slot file of `size` bytes holding `content` at its start (zeros after).
    fn slot(&self, name: &str, size: usize, content: &[u8]) -> SlotDevice {
        let mut data = content.to_vec();
        data.resize(size, 0);
        let device = self.path(&format!("slot{name}.img"));
        fs::write(&device, data).unwrap();
        SlotDevice {
            name: name.to_owned(),
            device,
        }
    }

    fn bundle_with(
        &self,
        file: &str,
        payload: &[u8],
        version: &str,
        board: &str,
        key: &SigningKey,
    ) -> PathBuf {
        let payload_path = self.path(&format!("{file}.payload"));
        fs::write(&payload_path, payload).unwrap();
        let spec = CreateSpec {
            version: version.to_owned(),
            compatible: board.to_owned(),
            created: 1_790_000_000,
            build_id: None,
            payloads: vec![("rootfs".to_owned(), payload_path)],
        };
        let path = self.path(file);
        let mut out = fs::File::create(&path).unwrap();
        create(&spec, key, &mut out).unwrap();
        path
    }

    fn bundle(&self, file: &str, payload: &[u8], version: &str) -> PathBuf {
        self.bundle_with(file, payload, version, BOARD, &test_key())
    }

    fn request(&self, target: &SlotDevice, size: usize) -> InstallRequest {
        let mut req = InstallRequest::new(
            ring(&test_key()),
            BOARD,
            v("1.0.0"),
            target.clone(),
            size as u64,
            self.state(),
        );
        req.allow_test_keys = true;
        req
    }
}

/// Runs an install, collecting the progress reports.
fn run(
    req: InstallRequest,
    source: &mut dyn BundleSource,
) -> (crate::Result<InstallReport>, Vec<Progress>) {
    let mut seen = Vec::new();
    let cancel = AtomicBool::new(false);
    let result = install(req, source, &mut |p| seen.push(*p), &cancel);
    (result, seen)
}

fn file_source(path: &Path) -> FileSource {
    FileSource::new(path).unwrap()
}

/// A source that counts the bytes it serves and the times it is opened, optionally failing
/// every read once `fail_after` bytes were served in all (a network cut), and optionally
/// hiding its length (a chunked HTTP response).
struct TestSource {
    inner: FileSource,
    served: Arc<AtomicU64>,
    fail_after: Option<u64>,
    hide_len: bool,
    opens: u32,
}

impl TestSource {
    fn new(path: &Path) -> TestSource {
        TestSource {
            inner: file_source(path),
            served: Arc::new(AtomicU64::new(0)),
            fail_after: None,
            hide_len: false,
            opens: 0,
        }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

struct TestReader {
    inner: Box<dyn Read + Send>,
    served: Arc<AtomicU64>,
    fail_after: Option<u64>,
}

impl Read for TestReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let served = self.served.load(Ordering::SeqCst);
        let mut want = buf.len();
        if let Some(limit) = self.fail_after {
            if served >= limit {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset (test)",
                ));
            }
            want = want.min((limit - served) as usize);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.served.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl BundleSource for TestSource {
    fn open_at(&mut self, offset: u64) -> crate::Result<Box<dyn Read + Send>> {
        self.opens += 1;
        Ok(Box::new(TestReader {
            inner: self.inner.open_at(offset)?,
            served: self.served.clone(),
            fail_after: self.fail_after,
        }))
    }

    fn len(&self) -> Option<u64> {
        (!self.hide_len).then(|| self.inner.len()).flatten()
    }

    fn describe(&self) -> String {
        format!("test:{}", self.inner.describe())
    }
}

fn assert_installed(fx: &Fx, target: &SlotDevice, payload: &[u8], version: &str) {
    let on_slot = fs::read(&target.device).unwrap();
    assert_eq!(
        &on_slot[..payload.len()],
        payload,
        "the slot holds the payload"
    );
    assert_eq!(
        slot_version(&fx.state(), &target.name).unwrap(),
        Some(v(version)),
        "the slot's manifest is saved"
    );
    assert!(
        !fx.state().join(JOURNAL_FILE).exists(),
        "the journal is removed"
    );
}

#[test]
fn installs_a_bundle_and_reads_it_back() {
    let fx = Fx::new();
    let payload = random_bytes(64 * CS + 1234, 1);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 80 * CS, &[]);
    let (result, seen) = run(fx.request(&target, 80 * CS), &mut file_source(&bundle));
    let report = result.unwrap();
    assert_installed(&fx, &target, &payload, "1.1.0");
    assert_eq!(report.version, v("1.1.0"));
    assert_eq!(report.slot, "B");
    assert_eq!(report.payload_size, payload.len() as u64);
    assert_eq!(report.downloaded, payload.len() as u64);
    assert_eq!((report.reused, report.resumed), (0, 0));
    assert_eq!(report.fetched, fs::metadata(&bundle).unwrap().len());
    assert_eq!(report.index_source, IndexSource::None);
    assert_eq!(
        report.bundle_id.len(),
        64,
        "the bundle id is a sha256 in hex"
    );
    // Progress: every phase of a fresh install, in order, and at most ~1% steps.
    let mut phases: Vec<Phase> = seen.iter().map(|p| p.phase).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            Phase::Verifying,
            Phase::Writing,
            Phase::Syncing,
            Phase::ReadBack,
            Phase::Done
        ]
    );
    let writing: Vec<_> = seen.iter().filter(|p| p.phase == Phase::Writing).collect();
    assert!(
        writing.len() <= 102,
        "{} writing reports for 65 chunks",
        writing.len()
    );
    let last = writing.last().unwrap();
    assert_eq!(
        (last.done, last.total, last.downloaded),
        (
            payload.len() as u64,
            payload.len() as u64,
            payload.len() as u64
        )
    );
    assert!(writing.windows(2).all(|w| w[0].done < w[1].done));
}

#[test]
fn progress_is_reported_at_most_every_percent() {
    let fx = Fx::new();
    let payload = random_bytes(400 * CS, 2);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 400 * CS, &[]);
    let (result, seen) = run(fx.request(&target, 400 * CS), &mut file_source(&bundle));
    result.unwrap();
    // 400 chunks: one report per 4 chunks at most, plus the first.
    let writing = seen.iter().filter(|p| p.phase == Phase::Writing).count();
    assert!((90..=102).contains(&writing), "{writing} writing reports");
    // The read-back runs behind the writes; its tail is polled.
    let read_back: Vec<_> = seen.iter().filter(|p| p.phase == Phase::ReadBack).collect();
    assert!(
        (1..=102).contains(&read_back.len()),
        "{} read-back reports",
        read_back.len()
    );
    assert_eq!(read_back.last().unwrap().done, 400 * CS as u64);
}

/// A bundle refused before any write: the error, and the target file not modified.
fn assert_refused(
    fx: &Fx,
    req: InstallRequest,
    source: &mut dyn BundleSource,
    check: impl Fn(&Error) -> bool,
) {
    let target = req.target.device.clone();
    let before = fs::read(&target).unwrap();
    let mtime = fs::metadata(&target).unwrap().modified().unwrap();
    let (result, seen) = run(req, source);
    let error = result.unwrap_err();
    assert!(check(&error), "unexpected error: {error:?} ({error})");
    assert_eq!(fs::read(&target).unwrap(), before, "the slot is untouched");
    assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), mtime);
    assert!(seen.iter().all(|p| p.phase == Phase::Verifying));
    assert!(!fx.state().join(JOURNAL_FILE).exists());
    assert!(!slot_manifest_path(&fx.state(), "B").exists());
}

#[test]
fn an_empty_keyring_refuses_before_opening_the_source() {
    let fx = Fx::new();
    let bundle = fx.bundle("b.kwb", &random_bytes(3 * CS, 3), "1.1.0");
    let target = fx.slot("B", 4 * CS, &[1, 2, 3]);
    let mut req = fx.request(&target, 4 * CS);
    req.keyring = Keyring::new();
    let mut source = TestSource::new(&bundle);
    assert_refused(&fx, req, &mut source, |e| {
        matches!(e, Error::Bundle(BundleError::NoTrustedKeys))
    });
    assert_eq!(source.opens, 0, "the source was not opened");
}

#[test]
fn a_wrong_key_or_a_bad_signature_is_refused() {
    let fx = Fx::new();
    let payload = random_bytes(3 * CS, 4);
    let target = fx.slot("B", 4 * CS, &[9; 100]);
    let other = fx.bundle_with("other.kwb", &payload, "1.1.0", BOARD, &other_key());
    assert_refused(
        &fx,
        fx.request(&target, 4 * CS),
        &mut file_source(&other),
        |e| matches!(e, Error::Bundle(BundleError::UnknownSigner { .. })),
    );
    // The manifest altered after signing (one byte of the version string).
    let good = fx.bundle("good.kwb", &payload, "1.1.0");
    let mut bytes = fs::read(&good).unwrap();
    let at = bytes.windows(5).position(|w| w == b"1.1.0").unwrap();
    bytes[at + 2] = b'9';
    let altered = fx.path("altered.kwb");
    fs::write(&altered, bytes).unwrap();
    assert_refused(
        &fx,
        fx.request(&target, 4 * CS),
        &mut file_source(&altered),
        |e| matches!(e, Error::Bundle(BundleError::BadSignature { .. })),
    );
}

#[test]
fn the_test_only_key_is_refused_unless_allowed() {
    let fx = Fx::new();
    let bundle = fx.bundle("b.kwb", &random_bytes(3 * CS, 5), "1.1.0");
    let target = fx.slot("B", 4 * CS, &[]);
    let mut req = fx.request(&target, 4 * CS);
    req.allow_test_keys = false;
    assert_refused(
        &fx,
        req,
        &mut file_source(&bundle),
        |e| matches!(e, Error::TestKeyRefused { signer } if signer == keys::TEST_ONLY_PUBLIC_KEY),
    );
    // Another key is fine on a production device.
    let other = fx.bundle_with(
        "o.kwb",
        &random_bytes(3 * CS, 5),
        "1.1.0",
        BOARD,
        &other_key(),
    );
    let mut req = fx.request(&target, 4 * CS);
    req.allow_test_keys = false;
    req.keyring = ring(&other_key());
    run(req, &mut file_source(&other)).0.unwrap();
}

#[test]
fn an_older_or_equal_version_is_refused() {
    let fx = Fx::new();
    let payload = random_bytes(3 * CS, 6);
    let target = fx.slot("B", 4 * CS, &[]);
    for (version, installed) in [
        ("1.1.0", "1.2.0"),
        ("1.2.0", "1.2.0"),
        ("1.2.0-rc.1", "1.2.0"),
    ] {
        let bundle = fx.bundle("b.kwb", &payload, version);
        let mut req = fx.request(&target, 4 * CS);
        req.installed_version = v(installed);
        assert_refused(&fx, req, &mut file_source(&bundle), |e| {
            matches!(e, Error::NotNewer { bundle, installed: i }
                if *bundle == v(version) && *i == v(installed))
        });
    }
}

#[test]
fn a_bundle_for_another_board_is_refused() {
    let fx = Fx::new();
    let bundle = fx.bundle_with(
        "b.kwb",
        &random_bytes(3 * CS, 7),
        "1.1.0",
        "rpi4",
        &test_key(),
    );
    let target = fx.slot("B", 4 * CS, &[]);
    assert_refused(
        &fx,
        fx.request(&target, 4 * CS),
        &mut file_source(&bundle),
        |e| matches!(e, Error::WrongBoard { bundle, device } if bundle == "rpi4" && device == BOARD),
    );
}

#[test]
fn a_payload_larger_than_the_slot_is_refused() {
    let fx = Fx::new();
    let bundle = fx.bundle("b.kwb", &random_bytes(5 * CS, 8), "1.1.0");
    let target = fx.slot("B", 4 * CS, &[]);
    assert_refused(
        &fx,
        fx.request(&target, 4 * CS),
        &mut file_source(&bundle),
        |e| matches!(e, Error::PayloadTooLarge { size, slot_size, .. } if *size == 5 * CS as u64 && *slot_size == 4 * CS as u64),
    );
}

#[test]
fn an_unknown_slot_class_is_refused() {
    let fx = Fx::new();
    let payload_path = fx.path("boot.payload");
    fs::write(&payload_path, random_bytes(CS, 9)).unwrap();
    let spec = CreateSpec {
        version: "1.1.0".into(),
        compatible: BOARD.into(),
        created: 1,
        build_id: None,
        payloads: vec![("bootloader".into(), payload_path)],
    };
    let bundle = fx.path("b.kwb");
    create(&spec, &test_key(), &mut fs::File::create(&bundle).unwrap()).unwrap();
    let target = fx.slot("B", 4 * CS, &[]);
    assert_refused(
        &fx,
        fx.request(&target, 4 * CS),
        &mut file_source(&bundle),
        |e| matches!(e, Error::UnknownSlotClass { slot_class, .. } if slot_class == "bootloader"),
    );
}

#[test]
fn refusals_do_not_even_open_the_target() {
    // The target does not exist: a refusal is still the refusal, not "cannot open".
    let fx = Fx::new();
    let bundle = fx.bundle_with(
        "b.kwb",
        &random_bytes(3 * CS, 10),
        "1.1.0",
        "rpi4",
        &test_key(),
    );
    let target = SlotDevice {
        name: "B".into(),
        device: fx.path("missing.img"),
    };
    let (result, _) = run(fx.request(&target, 4 * CS), &mut file_source(&bundle));
    assert!(matches!(result, Err(Error::WrongBoard { .. })));
    assert!(!target.device.exists());
}

#[test]
fn the_target_may_not_be_the_active_slot() {
    let fx = Fx::new();
    let bundle = fx.bundle("b.kwb", &random_bytes(3 * CS, 11), "1.1.0");
    let target = fx.slot("B", 4 * CS, &[]);
    let mut req = fx.request(&target, 4 * CS);
    req.active = Some(SlotDevice {
        name: "A".into(),
        device: target.device.clone(),
    });
    assert_refused(&fx, req, &mut file_source(&bundle), |e| {
        matches!(e, Error::InvalidRequest { .. })
    });
}

#[test]
fn a_tampered_chunk_is_refused_and_never_written() {
    let fx = Fx::new();
    let payload = random_bytes(8 * CS, 12);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let mut bytes = fs::read(&bundle).unwrap();
    let data_offset = bytes.len() - payload.len();
    bytes[data_offset + 5 * CS + 77] ^= 0x40;
    fs::write(&bundle, &bytes).unwrap();
    let target = fx.slot("B", 8 * CS, &[]);
    let (result, _) = run(fx.request(&target, 8 * CS), &mut file_source(&bundle));
    let error = result.unwrap_err();
    assert!(
        matches!(&error, Error::Bundle(BundleError::ChunkMismatch { payload, index: 5 }) if payload == "rootfs"),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"rootfs\" chunk 5"), "{error}");
    let on_slot = fs::read(&target.device).unwrap();
    assert_eq!(
        &on_slot[..5 * CS],
        &payload[..5 * CS],
        "chunks before it were written"
    );
    assert!(
        on_slot[5 * CS..].iter().all(|b| *b == 0),
        "the bad chunk and the rest were not"
    );
    assert!(
        !slot_manifest_path(&fx.state(), "B").exists(),
        "the slot is not marked installed"
    );
}

#[test]
fn a_truncated_bundle_or_trailing_data_is_refused() {
    let fx = Fx::new();
    let payload = random_bytes(6 * CS, 13);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let bytes = fs::read(&bundle).unwrap();
    let short = fx.path("short.kwb");
    fs::write(&short, &bytes[..bytes.len() - CS - 10]).unwrap();
    let target = fx.slot("B", 8 * CS, &[]);
    // A known length that is wrong is refused before any write.
    assert_refused(
        &fx,
        fx.request(&target, 8 * CS),
        &mut file_source(&short),
        |e| matches!(e, Error::BundleLength { .. }),
    );
    // A stream of unknown length that ends early: truncated, naming the chunk.
    let mut source = TestSource::new(&short);
    source.hide_len = true;
    let (result, _) = run(fx.request(&target, 8 * CS), &mut source);
    let error = result.unwrap_err();
    assert!(
        matches!(&error, Error::Bundle(BundleError::Truncated { payload, index: 4 }) if payload == "rootfs"),
        "{error:?}"
    );
    // And one with a byte too many.
    let long = fx.path("long.kwb");
    fs::write(&long, [&bytes[..], b"x"].concat()).unwrap();
    let mut source = TestSource::new(&long);
    source.hide_len = true;
    let (result, _) = run(fx.request(&target, 8 * CS), &mut source);
    assert!(matches!(
        result,
        Err(Error::Bundle(BundleError::TrailingData))
    ));
    assert!(!slot_manifest_path(&fx.state(), "B").exists());
}

#[test]
fn a_cut_download_resumes_and_fetches_only_the_rest() {
    let fx = Fx::new();
    let payload = random_bytes(40 * CS, 14);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let bundle_len = fs::metadata(&bundle).unwrap().len();
    let target = fx.slot("B", 40 * CS, &[]);

    // The network dies after 25.5 chunks of payload; no retry.
    let mut source = TestSource::new(&bundle);
    let head = bundle_len - payload.len() as u64;
    source.fail_after = Some(head + 25 * CS as u64 + CS as u64 / 2);
    let mut req = fx.request(&target, 40 * CS);
    req.source_retries = 0;
    let (result, _) = run(req, &mut source);
    let first = source.served();
    assert!(
        matches!(&result, Err(Error::Download { offset, .. }) if *offset == head + 25 * CS as u64),
        "{result:?}"
    );
    let journal = Journal::load(&fx.state()).expect("the journal records the progress");
    assert_eq!(journal.chunks_done, 25);
    assert!(!slot_manifest_path(&fx.state(), "B").exists());

    // "Reboot": a new request and source; only the journal and the slot file remain.
    let mut source = TestSource::new(&bundle);
    let (result, seen) = run(fx.request(&target, 40 * CS), &mut source);
    let report = result.unwrap();
    assert_installed(&fx, &target, &payload, "1.1.0");
    assert_eq!(report.resumed, 25 * CS as u64);
    assert_eq!(report.downloaded, 15 * CS as u64);
    assert!(seen.iter().any(|p| p.phase == Phase::Resuming));
    let second = source.served();
    assert_eq!(report.fetched, second);
    assert!(
        second < bundle_len - 24 * CS as u64,
        "second fetch {second} of {bundle_len}"
    );
    assert!(first + second < bundle_len + 2 * CS as u64);
}

#[test]
fn retries_reopen_the_source_where_it_stopped() {
    let fx = Fx::new();
    let payload = random_bytes(20 * CS, 15);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 20 * CS, &[]);
    // A source that fails once mid-way: the install reopens it and completes.
    struct Flaky {
        inner: TestSource,
        failed: bool,
    }
    impl BundleSource for Flaky {
        fn open_at(&mut self, offset: u64) -> crate::Result<Box<dyn Read + Send>> {
            if !self.failed {
                self.inner.fail_after = Some(10 * CS as u64);
            } else {
                self.inner.fail_after = None;
            }
            self.failed = true;
            self.inner.open_at(offset)
        }
        fn len(&self) -> Option<u64> {
            self.inner.len()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }
    let mut source = Flaky {
        inner: TestSource::new(&bundle),
        failed: false,
    };
    let (result, _) = run(fx.request(&target, 20 * CS), &mut source);
    let report = result.unwrap();
    assert_installed(&fx, &target, &payload, "1.1.0");
    assert_eq!(report.retries, 1);
    assert_eq!(report.downloaded, 20 * CS as u64);
    assert_eq!(source.inner.opens, 2);
}

#[test]
fn a_crash_after_a_journal_write_rechecks_and_rewrites_bad_chunks() {
    let fx = Fx::new();
    let payload = random_bytes(30 * CS, 16);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    // As a crash leaves it: 20 chunks on the slot, the journal saying so, but chunk 7 did not
    // make it to the device intact.
    let mut on_slot = payload[..20 * CS].to_vec();
    on_slot[7 * CS + 3] ^= 1;
    let target = fx.slot("B", 30 * CS, &on_slot);
    let manifest_bytes = {
        let bytes = fs::read(&bundle).unwrap();
        let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        bytes[HEADER_LEN..HEADER_LEN + len].to_vec()
    };
    Journal {
        format: 1,
        bundle: keywarden_bundle::Digest::of(&manifest_bytes).to_hex(),
        version: "1.1.0".into(),
        slot: "B".into(),
        device: target.device.clone(),
        payload: "rootfs".into(),
        chunks_done: 20,
    }
    .store(&fx.state())
    .unwrap();
    let mut source = TestSource::new(&bundle);
    let report = run(fx.request(&target, 30 * CS), &mut source).0.unwrap();
    assert_installed(&fx, &target, &payload, "1.1.0");
    assert_eq!(report.resumed, 19 * CS as u64);
    assert_eq!(
        report.downloaded,
        11 * CS as u64,
        "chunk 7 and chunks 20..30"
    );
    assert!(report.fetched < fs::metadata(&bundle).unwrap().len() - 15 * CS as u64);
}

#[test]
fn a_journal_of_another_bundle_is_discarded() {
    let fx = Fx::new();
    let payload = random_bytes(10 * CS, 17);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 10 * CS, &payload);
    Journal {
        format: 1,
        bundle: "00".repeat(32),
        version: "1.0.5".into(),
        slot: "B".into(),
        device: target.device.clone(),
        payload: "rootfs".into(),
        chunks_done: 10,
    }
    .store(&fx.state())
    .unwrap();
    let report = run(fx.request(&target, 10 * CS), &mut file_source(&bundle))
        .0
        .unwrap();
    assert_eq!(report.resumed, 0);
    assert_eq!(report.downloaded, 10 * CS as u64);
    assert_installed(&fx, &target, &payload, "1.1.0");
}

#[test]
fn chunks_found_in_the_active_slot_are_reused_not_downloaded() {
    let fx = Fx::new();
    let old = random_bytes(64 * CS + 999, 18);
    let mut new = old.clone();
    // One 64 KiB region changes (chunk 30).
    new[30 * CS..31 * CS].copy_from_slice(&random_bytes(CS, 19));
    let active = fx.slot("A", 70 * CS, &old);
    let target = fx.slot("B", 70 * CS, &[]);
    let bundle = fx.bundle("b.kwb", &new, "1.1.0");
    let bundle_len = fs::metadata(&bundle).unwrap().len();
    let mut req = fx.request(&target, 70 * CS);
    req.active = Some(active.clone());
    let mut source = TestSource::new(&bundle);
    let (result, seen) = run(req, &mut source);
    let report = result.unwrap();
    assert_installed(&fx, &target, &new, "1.1.0");
    assert_eq!(report.index_source, IndexSource::SlotRead);
    assert_eq!(report.downloaded, CS as u64, "only the changed chunk");
    assert_eq!(
        report.reused,
        new.len() as u64 - CS as u64,
        "the short last chunk too"
    );
    assert!(seen.iter().any(|p| p.phase == Phase::Indexing));
    let head = bundle_len - new.len() as u64;
    assert!(
        source.served() <= head + CS as u64 + 256 * 1024,
        "fetched {} of {bundle_len}",
        source.served()
    );
    let last = seen.iter().rfind(|p| p.phase == Phase::Writing).unwrap();
    assert_eq!(
        (last.downloaded, last.reused),
        (report.downloaded, report.reused)
    );
}

#[test]
fn the_active_slots_saved_manifest_replaces_reading_it() {
    let fx = Fx::new();
    let v1 = random_bytes(50 * CS, 20);
    let mut v2 = v1.clone();
    // A change that straddles chunks 10 and 11, and the data after it moved by one chunk.
    v2[10 * CS + CS / 2..11 * CS + 100].fill(0xAB);
    v2.splice(40 * CS..40 * CS, random_bytes(CS, 21));
    // v1 installed into A by the installer: its manifest is saved.
    let a = fx.slot("A", 60 * CS, &[]);
    let b = fx.slot("B", 60 * CS, &[]);
    let bundle1 = fx.bundle("v1.kwb", &v1, "1.1.0");
    run(fx.request(&a, 60 * CS), &mut file_source(&bundle1))
        .0
        .unwrap();
    assert_eq!(
        read_slot_manifest(&fx.state(), "A")
            .unwrap()
            .unwrap()
            .version,
        v("1.1.0")
    );
    // v2 into B, reusing A.
    let bundle2 = fx.bundle("v2.kwb", &v2, "1.2.0");
    let mut req = fx.request(&b, 60 * CS);
    req.installed_version = v("1.1.0");
    req.active = Some(a.clone());
    let (result, seen) = run(req, &mut TestSource::new(&bundle2));
    let report = result.unwrap();
    assert_installed(&fx, &b, &v2, "1.2.0");
    assert_eq!(report.index_source, IndexSource::SavedManifest);
    assert!(
        !seen.iter().any(|p| p.phase == Phase::Indexing),
        "no read of A to index it"
    );
    assert_eq!(
        report.downloaded,
        3 * CS as u64,
        "chunks 10, 11 and the inserted one"
    );
    assert_eq!(report.reused, v2.len() as u64 - 3 * CS as u64);
    // The saved manifest is only a hint: if A no longer holds what it says, chunks are
    // downloaded instead.
    let c = fx.slot("C", 60 * CS, &[]);
    fs::write(&a.device, vec![0u8; 60 * CS]).unwrap();
    let mut req = fx.request(&c, 60 * CS);
    req.installed_version = v("1.1.0");
    req.active = Some(a);
    let report = run(req, &mut file_source(&bundle2)).0.unwrap();
    assert_installed(&fx, &c, &v2, "1.2.0");
    assert_eq!(report.reused, 0);
    assert_eq!(report.downloaded, v2.len() as u64);
}

#[test]
fn data_moved_off_the_chunk_grid_is_reused_not_downloaded() {
    let fx = Fx::new();
    let old = random_bytes(80 * CS + 4321, 22);
    let mut new = old.clone();
    // A file that grew by 1,000 bytes in chunk 20 and one that shrank by 3,000 in chunk 50:
    // everything behind each moved off the 64 KiB grid.
    new.splice(20 * CS + 77..20 * CS + 77, random_bytes(1000, 23));
    new.drain(50 * CS + 500..50 * CS + 3500);
    let a = fx.slot("A", 90 * CS, &[]);
    let b = fx.slot("B", 90 * CS, &[]);
    let bundle1 = fx.bundle("v1.kwb", &old, "1.1.0");
    run(fx.request(&a, 90 * CS), &mut file_source(&bundle1))
        .0
        .unwrap();
    let bundle2 = fx.bundle("v2.kwb", &new, "1.2.0");
    let mut req = fx.request(&b, 90 * CS);
    req.installed_version = v("1.1.0");
    req.active = Some(a);
    let report = run(req, &mut TestSource::new(&bundle2)).0.unwrap();
    assert_installed(&fx, &b, &new, "1.2.0");
    assert_eq!(report.index_source, IndexSource::SavedManifest);
    assert_eq!(
        report.downloaded,
        2 * CS as u64,
        "only the chunks with the insertion and the deletion"
    );
    assert_eq!(report.reused, new.len() as u64 - 2 * CS as u64);
}

#[test]
fn cancel_stops_between_chunks_and_the_next_install_resumes() {
    let fx = Fx::new();
    let payload = random_bytes(50 * CS, 22);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 50 * CS, &[]);
    let cancel = AtomicBool::new(false);
    let mut progress = |p: &Progress| {
        if p.phase == Phase::Writing && p.done >= 20 * CS as u64 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let result = install(
        fx.request(&target, 50 * CS),
        &mut file_source(&bundle),
        &mut progress,
        &cancel,
    );
    let error = result.unwrap_err();
    let Error::Cancelled { written, total } = error else {
        panic!("{error:?}")
    };
    assert_eq!(total, 50 * CS as u64);
    assert!(
        (20 * CS as u64..=22 * CS as u64).contains(&written),
        "{written}"
    );
    assert_eq!(
        Journal::load(&fx.state()).unwrap().chunks_done * CS as u64,
        written
    );
    assert!(!slot_manifest_path(&fx.state(), "B").exists());
    let report = run(fx.request(&target, 50 * CS), &mut file_source(&bundle))
        .0
        .unwrap();
    assert_eq!(report.resumed, written);
    assert_installed(&fx, &target, &payload, "1.1.0");
}

#[test]
fn a_failing_device_is_caught_by_the_read_back() {
    // The read-back compares the device's bytes with the hashes; here the "device" is
    // corrupted between the write and the read-back by a second handle, the way bad flash
    // would return other data. (Chunks 0..8 are read back progressively, behind the writes;
    // the last ones after the final fsync.)
    let fx = Fx::new();
    let payload = random_bytes(10 * CS, 23);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 10 * CS, &[]);
    let device = target.device.clone();
    let mut progress = |p: &Progress| {
        // The last chunk was just written; the final sync and read-back come next.
        if p.phase == Phase::Writing && p.done == p.total {
            use std::os::unix::fs::FileExt as _;
            let f = fs::OpenOptions::new().write(true).open(&device).unwrap();
            f.write_all_at(&[0xEE; 16], 9 * CS as u64 + 10).unwrap();
        }
    };
    let result = install(
        fx.request(&target, 10 * CS),
        &mut file_source(&bundle),
        &mut progress,
        &AtomicBool::new(false),
    );
    assert!(
        matches!(&result, Err(Error::ReadBackMismatch { index: 9, slot, .. }) if slot == "B"),
        "{result:?}"
    );
    assert!(!slot_manifest_path(&fx.state(), "B").exists());
}

#[test]
fn the_journal_advances_behind_the_writes_and_never_ahead() {
    // What a crash at any moment would leave: the journal read while the install runs never
    // claims a chunk that is not on the slot, and it does advance.
    let fx = Fx::new();
    let payload = random_bytes(60 * CS, 24);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 60 * CS, &[]);
    let mut best = 0;
    let device = target.device.clone();
    let state_dir = fx.state();
    let mut progress = |p: &Progress| {
        if p.phase != Phase::Writing {
            return;
        }
        if let Some(journal) = Journal::load(&state_dir) {
            let claimed = journal.chunks_done as usize * CS;
            assert!(
                claimed as u64 <= p.done,
                "{claimed} claimed, {} written",
                p.done
            );
            let on_slot = fs::read(&device).unwrap();
            assert_eq!(&on_slot[..claimed], &payload[..claimed]);
            best = best.max(journal.chunks_done);
        }
    };
    install(
        fx.request(&target, 60 * CS),
        &mut file_source(&bundle),
        &mut progress,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(best > 0, "the journal advanced while writing");
    assert_installed(&fx, &target, &payload, "1.1.0");
}

#[test]
fn installing_the_same_bundle_again_only_rechecks_the_slot() {
    let fx = Fx::new();
    let payload = random_bytes(20 * CS + 5, 25);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 21 * CS, &[]);
    run(fx.request(&target, 21 * CS), &mut file_source(&bundle))
        .0
        .unwrap();
    let mut source = TestSource::new(&bundle);
    let report = run(fx.request(&target, 21 * CS), &mut source).0.unwrap();
    assert_eq!(report.resumed, payload.len() as u64);
    assert_eq!(report.downloaded, 0);
    assert_eq!(source.served(), report.fetched);
    assert!(
        report.fetched < 3 * 4096,
        "only the header and manifest: {}",
        report.fetched
    );
    assert_installed(&fx, &target, &payload, "1.1.0");
    // A slot changed since (chunk 3): that chunk is downloaded again.
    use std::os::unix::fs::FileExt as _;
    fs::OpenOptions::new()
        .write(true)
        .open(&target.device)
        .unwrap()
        .write_all_at(b"changed", 3 * CS as u64)
        .unwrap();
    let report = run(fx.request(&target, 21 * CS), &mut file_source(&bundle))
        .0
        .unwrap();
    assert_eq!(report.downloaded, CS as u64);
    assert_installed(&fx, &target, &payload, "1.1.0");
}

#[test]
fn the_checks_come_in_order() {
    let fx = Fx::new();
    let payload = random_bytes(5 * CS, 26);
    let target = fx.slot("B", 4 * CS, &[]);
    let request = |allow_test_keys| {
        let mut req = fx.request(&target, 4 * CS);
        req.installed_version = v("2.0.0");
        req.allow_test_keys = allow_test_keys;
        req
    };
    // Everything wrong: an untrusted signer is found first.
    let bundle = fx.bundle_with("a.kwb", &payload, "1.0.0", "rpi4", &other_key());
    let (result, _) = run(request(true), &mut file_source(&bundle));
    assert!(matches!(
        result,
        Err(Error::Bundle(BundleError::UnknownSigner { .. }))
    ));
    // Signed with the test-only key: refused for that first where it is not allowed, then the
    // board, the version, the size.
    let bundle = fx.bundle_with("b.kwb", &payload, "1.0.0", "rpi4", &test_key());
    let (result, _) = run(request(false), &mut file_source(&bundle));
    assert!(matches!(result, Err(Error::TestKeyRefused { .. })));
    let (result, _) = run(request(true), &mut file_source(&bundle));
    assert!(matches!(result, Err(Error::WrongBoard { .. })));
    let bundle = fx.bundle("c.kwb", &payload, "1.0.0");
    let (result, _) = run(request(true), &mut file_source(&bundle));
    assert!(matches!(result, Err(Error::NotNewer { .. })));
    let bundle = fx.bundle("d.kwb", &payload, "2.0.1");
    let (result, _) = run(request(true), &mut file_source(&bundle));
    assert!(matches!(result, Err(Error::PayloadTooLarge { .. })));
}

#[test]
fn the_state_directory_must_have_room() {
    let fx = Fx::new();
    super::run::check_space(&fx.state(), 4096).unwrap();
    let error = super::run::check_space(&fx.state(), u64::MAX / 2).unwrap_err();
    assert!(
        matches!(&error, Error::NoSpace { path, needed, available } if *path == fx.state() && *needed == u64::MAX / 2 && *available < *needed),
        "{error:?}"
    );
}

#[test]
fn the_read_back_works_with_o_direct_as_on_a_block_device() {
    // Block devices are read back with O_DIRECT (regular files through the dropped page
    // cache); force it here on a file (or its fallback where the file system refuses it).
    super::run::FORCE_DIRECT.with(|f| f.set(true));
    let fx = Fx::new();
    let payload = random_bytes(30 * CS + 4097, 27);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = fx.slot("B", 31 * CS, &[]);
    run(fx.request(&target, 31 * CS), &mut file_source(&bundle))
        .0
        .unwrap();
    assert_installed(&fx, &target, &payload, "1.1.0");
    // And a device that returns other data is caught, in the short last chunk too.
    let target = fx.slot("C", 31 * CS, &[]);
    let device = target.device.clone();
    let mut progress = |p: &Progress| {
        if p.phase == Phase::Writing && p.done == p.total {
            use std::os::unix::fs::FileExt as _;
            let f = fs::OpenOptions::new().write(true).open(&device).unwrap();
            f.write_all_at(&[0xEE; 3], 30 * CS as u64 + 4000).unwrap();
        }
    };
    let result = install(
        fx.request(&target, 31 * CS),
        &mut file_source(&bundle),
        &mut progress,
        &AtomicBool::new(false),
    );
    super::run::FORCE_DIRECT.with(|f| f.set(false));
    assert!(
        matches!(&result, Err(Error::ReadBackMismatch { index: 30, .. })),
        "{result:?}"
    );
}

/// On a real block device (a loop device, as root): `KW_TEST_BLOCK_DEVICE=/dev/loopN cargo test
/// -p keywarden-updated -- --ignored block_device`. The device is overwritten.
#[test]
#[ignore = "needs a scratch block device in KW_TEST_BLOCK_DEVICE"]
fn installs_into_a_block_device() {
    let Some(device) = std::env::var_os("KW_TEST_BLOCK_DEVICE") else {
        return;
    };
    let fx = Fx::new();
    let device = PathBuf::from(device);
    let size = {
        use std::io::Seek as _;
        fs::File::open(&device)
            .unwrap()
            .seek(io::SeekFrom::End(0))
            .unwrap() as usize
    };
    let payload = random_bytes(size / 2 + 1000, 28);
    let bundle = fx.bundle("b.kwb", &payload, "1.1.0");
    let target = SlotDevice {
        name: "B".into(),
        device: device.clone(),
    };
    let report = run(fx.request(&target, size), &mut file_source(&bundle))
        .0
        .unwrap();
    assert_eq!(report.downloaded, payload.len() as u64);
    assert_installed(&fx, &target, &payload, "1.1.0");
    // Too large for the device itself, whatever the request says.
    let big = fx.bundle("big.kwb", &random_bytes(size + CS, 29), "1.2.0");
    let (result, _) = run(fx.request(&target, 2 * size), &mut file_source(&big));
    assert!(
        matches!(result, Err(Error::PayloadTooLarge { slot_size, .. }) if slot_size == size as u64)
    );
}

#[test]
fn small_gaps_are_read_through_and_large_ones_reopen_the_source() {
    let fx = Fx::new();
    let old = random_bytes(40 * CS, 30);
    let mut new = old.clone();
    for chunk in [5, 7, 30] {
        new[chunk * CS + 100] ^= 0xFF;
    }
    let active = fx.slot("A", 40 * CS, &old);
    let target = fx.slot("B", 40 * CS, &[]);
    let bundle = fx.bundle("b.kwb", &new, "1.1.0");
    let head = fs::metadata(&bundle).unwrap().len() - new.len() as u64;
    let mut req = fx.request(&target, 40 * CS);
    req.active = Some(active);
    let mut source = TestSource::new(&bundle);
    let report = run(req, &mut source).0.unwrap();
    assert_installed(&fx, &target, &new, "1.1.0");
    assert_eq!(report.downloaded, 3 * CS as u64);
    // Chunks 0-4 (5 chunks, more than the 256 KiB gap) and 8-29: reopened; chunk 6 (one
    // chunk) read through and discarded.
    assert_eq!(report.source_opens, 2);
    assert_eq!(
        source.opens, 3,
        "the header's stream and the two reopenings"
    );
    assert_eq!(report.fetched, head + 4 * CS as u64);
    assert_eq!(source.served(), report.fetched);
}
