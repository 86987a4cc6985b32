//! Install benchmark (prints figures, asserts nothing), in one run on one machine:
//!
//! 1. throughput of `install` from a local bundle file into a target file, for a random payload
//!    (256 MiB by default), against `dd if=payload of=target bs=1M conv=fdatasync` of the same
//!    payload on the same file system (measured first in each round: the floor; `fdatasync`
//!    because our installer fdatasyncs too) and against RAUC (Debian's `rauc`, a plain bundle
//!    of the same payload into a raw slot file, `rauc.rs`; skipped with the reason printed
//!    when it cannot run), 5 rounds each, alternating (the ratios are taken per round: the
//!    disk is shared);
//! 2. one SHA-256 pass over the payload with each implementation at hand (RustCrypto's `sha2`,
//!    which the bundle format uses, `ring`, `aws-lc-rs`): the installer makes three passes;
//! 3. the bytes an adaptive update downloads when the new payload differs from the active slot
//!    by a small in-place change (a "one-crate change"), against the bundle's size, with the
//!    active slot indexed from its saved manifest and by reading it; and after an insertion
//!    that moves everything behind it off the chunk grid (followed by the installer's search
//!    for shifted data).
//!
//! `cargo bench -p keywarden-updated --bench install`; `KW_BENCH_MIB` sets the payload size,
//! `KW_BENCH_DIR` the directory (default: the system's temporary directory).
//!
//! With `KW_BENCH_OLD` and `KW_BENCH_NEW` set to two root file system images, it measures
//! only the adaptive update from the one to the other (`tests/bench-one-crate.sh` builds the
//! images of a one-crate change and runs it).

mod rauc;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use keywarden_bundle::{create, keys, CreateSpec, Keyring, Version};
use keywarden_updated::install::{
    install, slot_manifest_path, FileSource, InstallReport, InstallRequest, SlotDevice,
};

const MIB: u64 = 1 << 20;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn make_bundle(dir: &Path, name: &str, payload: &[u8], version: &str) -> PathBuf {
    let key = keys::load_signing_key(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ota/keys/test-only/test-only-signing.pem"),
    )
    .expect("the test-only key");
    let payload_path = dir.join(format!("{name}.payload"));
    fs::write(&payload_path, payload).expect("write payload");
    let spec = CreateSpec {
        version: version.to_owned(),
        compatible: "qemu-x86_64".to_owned(),
        created: 1_790_000_000,
        build_id: None,
        payloads: vec![("rootfs".to_owned(), payload_path)],
    };
    let path = dir.join(format!("{name}.kwb"));
    let mut out = std::io::BufWriter::new(fs::File::create(&path).expect("create bundle"));
    create(&spec, &key, &mut out).expect("bundle");
    drop(out);
    path
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn slot(dir: &Path, name: &str) -> SlotDevice {
    let device = dir.join(format!("slot{name}.img"));
    let _ = fs::remove_file(&device);
    fs::File::create(&device).expect("create slot file");
    SlotDevice {
        name: name.to_owned(),
        device,
    }
}

fn request(state: &Path, target: &SlotDevice, size: u64, installed: &str) -> InstallRequest {
    let key = keys::load_signing_key(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ota/keys/test-only/test-only-signing.pem"),
    )
    .expect("the test-only key");
    let mut req = InstallRequest::new(
        Keyring::from_keys([key.verifying_key()]),
        "qemu-x86_64",
        Version::parse(installed).expect("version"),
        target.clone(),
        size,
        state,
    );
    req.allow_test_keys = true;
    req
}

fn run_install(req: InstallRequest, bundle: &Path) -> (InstallReport, Duration) {
    let mut source = FileSource::new(bundle).expect("bundle source");
    let started = Instant::now();
    let report = install(req, &mut source, &mut |_| {}, &AtomicBool::new(false)).expect("install");
    (report, started.elapsed())
}

/// This process's CPU time (user + system, all threads) from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th, in clock ticks (100 Hz on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn mbps(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mib: u64 = std::env::var("KW_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let base = std::env::var_os("KW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("temporary directory");
    let dir = tmp.path();
    if let (Some(old), Some(new)) = (
        std::env::var_os("KW_BENCH_OLD"),
        std::env::var_os("KW_BENCH_NEW"),
    ) {
        real_images(dir, Path::new(&old), Path::new(&new));
        return;
    }
    let size = mib * MIB;
    println!(
        "install benchmark: {mib} MiB random payload in {}",
        base.display()
    );

    let t = Instant::now();
    let v1 = random_bytes(size as usize, 1);
    let bundle1 = make_bundle(dir, "v1", &v1, "1.1.0");
    let bundle_len = fs::metadata(&bundle1).expect("bundle").len();
    println!(
        "  bundle: {bundle_len} bytes ({} bytes of header and manifest), made in {:.2} s",
        bundle_len - size,
        t.elapsed().as_secs_f64()
    );
    let payload_path = dir.join("v1.payload");
    sha_passes(&v1);

    // 1. dd (the floor), install and RAUC, alternating.
    let rauc = match rauc::unavailable() {
        Some(why) => {
            println!("  RAUC skipped: {why}");
            None
        }
        None => match rauc::Rauc::setup(dir, &payload_path, size) {
            Ok((rauc, version)) => {
                println!("  RAUC: {version}, plain bundle, raw slot file, bootloader=noop, `rauc service` on a private bus");
                Some(rauc)
            }
            Err(why) => {
                println!("  RAUC skipped: {why}");
                None
            }
        },
    };
    let state = dir.join("state");
    fs::create_dir_all(&state).expect("state dir");
    let mut dd_rates = Vec::new();
    let mut install_rates = Vec::new();
    let mut rauc_rates = Vec::new();
    let mut last_target = None;
    let mut ratios = Vec::new();
    let mut rauc_ratios = Vec::new();
    for round in 1..=5 {
        let dd_target = dir.join("dd.img");
        let _ = fs::remove_file(&dd_target);
        sync();
        let started = Instant::now();
        let status = Command::new("dd")
            .arg(format!("if={}", payload_path.display()))
            .arg(format!("of={}", dd_target.display()))
            .args(["bs=1M", "conv=fdatasync", "status=none"])
            .status()
            .expect("run dd");
        let dd_time = started.elapsed();
        assert!(status.success(), "dd failed");
        let _ = fs::remove_file(&dd_target);

        let target = slot(dir, "A");
        let _ = fs::remove_file(slot_manifest_path(&state, "A"));
        sync();
        let cpu = cpu_time();
        let (report, time) = run_install(request(&state, &target, size, "1.0.0"), &bundle1);
        let cpu = cpu_time().saturating_sub(cpu);
        let t = report.timings;
        let rauc_time = rauc.as_ref().map(|r| {
            r.reset(size).expect("empty RAUC's slot");
            sync();
            let time = r.install().expect("rauc install");
            r.check(&v1).expect("RAUC wrote the payload");
            time
        });
        println!(
            "  round {round}: dd {:7.1} MB/s ({:.2} s) | install {:7.1} MB/s ({:.2} s, CPU {:.2} s; write {:.2}, final sync {:.2}, read-back {:.2} overlapped){}",
            mbps(size, dd_time),
            dd_time.as_secs_f64(),
            mbps(size, time),
            time.as_secs_f64(),
            cpu.as_secs_f64(),
            t.write.as_secs_f64(),
            t.sync.as_secs_f64(),
            t.read_back.as_secs_f64(),
            rauc_time
                .map(|r| format!(" | RAUC {:7.1} MB/s ({:.2} s)", mbps(size, r), r.as_secs_f64()))
                .unwrap_or_default(),
        );
        ratios.push(dd_time.as_secs_f64() / time.as_secs_f64());
        dd_rates.push(mbps(size, dd_time));
        install_rates.push(mbps(size, time));
        if let Some(r) = rauc_time {
            rauc_rates.push(mbps(size, r));
            rauc_ratios.push(r.as_secs_f64() / time.as_secs_f64());
        }
        last_target = Some(target);
    }
    let best = ratios.iter().copied().fold(0.0, f64::max);
    let dd = median(&mut dd_rates);
    let inst = median(&mut install_rates);
    let ratio = median(&mut ratios);
    println!(
        "  median: dd {dd:.1} MB/s, install {inst:.1} MB/s; install/dd per round: median {ratio:.2}x, best {best:.2}x (goal >= 0.9x)"
    );
    if !rauc_rates.is_empty() {
        let rauc = median(&mut rauc_rates);
        let vs = median(&mut rauc_ratios);
        println!(
            "  median: RAUC {rauc:.1} MB/s; RAUC/dd {:.2}x; install/RAUC per round: median {vs:.2}x (> 1: ours faster)",
            rauc / dd
        );
    }
    drop(rauc);

    // 3. Adaptive update: slot A holds v1 (installed above, manifest saved); v2 changes 300 KiB
    // in place at 70% of the payload (the binaries sit last in the image).
    let Some(active) = last_target else { return };
    let mut v2 = v1.clone();
    let at = (size as usize / 10 * 7) + 12_345;
    v2[at..at + 300 * 1024].copy_from_slice(&random_bytes(300 * 1024, 2));
    let bundle2 = make_bundle(dir, "v2", &v2, "1.2.0");
    let bundle2_len = fs::metadata(&bundle2).expect("bundle").len();
    let adaptive = |label: &str, bundle: &Path, bundle_len: u64, saved_manifest: bool| {
        adaptive(
            dir,
            &state,
            &active,
            size + MIB,
            label,
            bundle,
            bundle_len,
            saved_manifest,
        );
    };
    println!("adaptive update, 300 KiB changed in place (goal <= 15% of the bundle):");
    adaptive("saved manifest", &bundle2, bundle2_len, true);
    adaptive("slot read     ", &bundle2, bundle2_len, false);

    // 100 KiB inserted: the 30% after it moves off the 64 KiB grid, and is found again by the
    // search for shifted data.
    let mut v3 = v1[..at].to_vec();
    v3.extend_from_slice(&random_bytes(100 * 1024, 3));
    v3.extend_from_slice(&v1[at..v1.len() - 100 * 1024]);
    let bundle3 = make_bundle(dir, "v3", &v3, "1.2.0");
    let bundle3_len = fs::metadata(&bundle3).expect("bundle").len();
    println!("adaptive update, 100 KiB inserted at 70% (what follows moves off the chunk grid; goal <= 15%):");
    adaptive("saved manifest", &bundle3, bundle3_len, true);
}

/// Installs `bundle` into a new slot B with `active` (which holds the previous payload, its
/// manifest saved in `state`) as the active slot, from the saved manifest or by reading the
/// slot, and prints what was fetched and reused.
#[allow(clippy::too_many_arguments)]
fn adaptive(
    dir: &Path,
    state: &Path,
    active: &SlotDevice,
    slot_size: u64,
    label: &str,
    bundle: &Path,
    bundle_len: u64,
    saved_manifest: bool,
) {
    let state2 = dir.join("state2");
    let _ = fs::remove_dir_all(&state2);
    fs::create_dir_all(&state2).expect("state dir");
    if saved_manifest {
        fs::copy(
            slot_manifest_path(state, &active.name),
            slot_manifest_path(&state2, &active.name),
        )
        .expect("copy the slot manifest");
    }
    let target = slot(dir, "B");
    let mut req = request(&state2, &target, slot_size, "1.1.0");
    req.active = Some(active.clone());
    sync();
    let (report, time) = run_install(req, bundle);
    println!(
        "  {label}: downloaded {} bytes + {} header/manifest/skipped = {} fetched of a {bundle_len}-byte bundle ({:.2}%), reused {} bytes; index from {:?} ({:.2} s), install {:.2} s",
        report.downloaded,
        report.fetched - report.downloaded,
        report.fetched,
        100.0 * report.fetched as f64 / bundle_len as f64,
        report.reused,
        report.index_source,
        report.timings.index.as_secs_f64(),
        time.as_secs_f64(),
    );
}

/// Adaptive update between two real root file systems, `KW_BENCH_OLD` and `KW_BENCH_NEW`
/// (two `rootfs.squashfs` from `cargo xtask image`, such as `tests/bench-one-crate.sh` builds
/// before and after a one-crate change): the old one is installed into slot A, then the new
/// one with A active.
fn real_images(dir: &Path, old: &Path, new: &Path) {
    let read = |path: &Path| fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (v1, v2) = (read(old), read(new));
    let slot_size = v1.len().max(v2.len()) as u64 + MIB;
    println!(
        "adaptive update between real images: {} ({} bytes) -> {} ({} bytes) (goal <= 15% of the bundle):",
        old.display(),
        v1.len(),
        new.display(),
        v2.len()
    );
    let on_grid = v2
        .chunks(64 * 1024)
        .enumerate()
        .filter(|(i, c)| v1.get(i * 64 * 1024..i * 64 * 1024 + c.len()) == Some(*c))
        .count();
    println!(
        "  {on_grid} of {} chunks of the new image are where they were in the old one",
        v2.len().div_ceil(64 * 1024)
    );
    let state = dir.join("state");
    fs::create_dir_all(&state).expect("state dir");
    let bundle1 = make_bundle(dir, "old", &v1, "1.1.0");
    let active = slot(dir, "A");
    run_install(request(&state, &active, slot_size, "1.0.0"), &bundle1);
    let bundle2 = make_bundle(dir, "new", &v2, "1.2.0");
    let bundle2_len = fs::metadata(&bundle2).expect("bundle").len();
    for (label, saved) in [("saved manifest", true), ("slot read     ", false)] {
        adaptive(
            dir,
            &state,
            &active,
            slot_size,
            label,
            &bundle2,
            bundle2_len,
            saved,
        );
    }
}

/// 2. One SHA-256 pass over `data` with each implementation at hand.
fn sha_passes(data: &[u8]) {
    let time = |f: &dyn Fn() -> Vec<u8>| {
        let t = Instant::now();
        let digest = f();
        (t.elapsed(), digest)
    };
    let (sha2_time, a) = time(&|| keywarden_bundle::Digest::of(data).0.to_vec());
    let (ring_time, b) = time(&|| {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    });
    let (aws_time, c) = time(&|| {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
            .as_ref()
            .to_vec()
    });
    assert!(a == b && b == c, "the SHA-256 implementations disagree");
    let len = data.len() as u64;
    println!(
        "  one SHA-256 pass over the payload: sha2 {:.0} MB/s ({:.3} s), ring {:.0} MB/s, aws-lc-rs {:.0} MB/s; an install hashes every payload byte 3 times (its chunk before it is written; on read-back its chunk and the whole payload)",
        mbps(len, sha2_time),
        sha2_time.as_secs_f64(),
        mbps(len, ring_time),
        mbps(len, aws_time),
    );
}
