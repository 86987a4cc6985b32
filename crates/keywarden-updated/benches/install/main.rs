//! Install benchmark (prints figures, asserts nothing):
//!
//! 1. throughput of `install` from a local bundle file into a target file, for a random payload
//!    (256 MiB by default), against `dd if=payload of=target bs=1M conv=fsync` of the same
//!    payload on the same file system, alternating, 5 rounds each (the ratio is taken per round: the disk is shared);
//! 2. the bytes an adaptive update downloads when the new payload differs from the active slot
//!    by a small in-place change (a "one-crate change"), against the bundle's size, with the
//!    active slot indexed from its saved manifest and by reading it; and, for contrast, after an
//!    insertion that shifts everything behind it.
//!
//! `cargo bench -p keywarden-updated --bench install`; `KW_BENCH_MIB` sets the payload size,
//! `KW_BENCH_DIR` the directory (default: the system's temporary directory).

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
    let t = Instant::now();
    let _ = keywarden_bundle::Digest::of(&v1);
    let sha_pass = t.elapsed();
    println!(
        "  one SHA-256 pass over the payload: {:.3} s ({:.0} MB/s); an install makes 3 (check before write, chunk and whole-payload hashes on read-back)",
        sha_pass.as_secs_f64(),
        mbps(size, sha_pass)
    );

    // 1. install vs dd, alternating.
    let state = dir.join("state");
    fs::create_dir_all(&state).expect("state dir");
    let mut dd_rates = Vec::new();
    let mut install_rates = Vec::new();
    let mut last_target = None;
    let mut ratios = Vec::new();
    for round in 1..=5 {
        let dd_target = dir.join("dd.img");
        let _ = fs::remove_file(&dd_target);
        sync();
        let started = Instant::now();
        let status = Command::new("dd")
            .arg(format!("if={}", payload_path.display()))
            .arg(format!("of={}", dd_target.display()))
            .args(["bs=1M", "conv=fsync", "status=none"])
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
        println!(
            "  round {round}: dd {:7.1} MB/s ({:.2} s) | install {:7.1} MB/s ({:.2} s, CPU {:.2} s; write {:.2}, final sync {:.2}, read-back {:.2} overlapped)",
            mbps(size, dd_time),
            dd_time.as_secs_f64(),
            mbps(size, time),
            time.as_secs_f64(),
            cpu.as_secs_f64(),
            t.write.as_secs_f64(),
            t.sync.as_secs_f64(),
            t.read_back.as_secs_f64(),
        );
        ratios.push(dd_time.as_secs_f64() / time.as_secs_f64());
        dd_rates.push(mbps(size, dd_time));
        install_rates.push(mbps(size, time));
        last_target = Some(target);
    }
    let dd = median(&mut dd_rates);
    let inst = median(&mut install_rates);
    let ratio = median(&mut ratios);
    println!(
        "  median: dd {dd:.1} MB/s, install {inst:.1} MB/s; install/dd per round: median {ratio:.2}x, best {:.2}x (goal >= 0.9x)",
        ratios.last().copied().unwrap_or(0.0)
    );

    // 2. Adaptive update: slot A holds v1 (installed above, manifest saved); v2 changes 300 KiB
    // in place at 70% of the payload (the binaries sit last in the image).
    let Some(active) = last_target else { return };
    let mut v2 = v1.clone();
    let at = (size as usize / 10 * 7) + 12_345;
    v2[at..at + 300 * 1024].copy_from_slice(&random_bytes(300 * 1024, 2));
    let bundle2 = make_bundle(dir, "v2", &v2, "1.2.0");
    let bundle2_len = fs::metadata(&bundle2).expect("bundle").len();
    let adaptive = |label: &str, bundle: &Path, bundle_len: u64, saved_manifest: bool| {
        let state2 = dir.join("state2");
        let _ = fs::remove_dir_all(&state2);
        fs::create_dir_all(&state2).expect("state dir");
        if saved_manifest {
            fs::copy(
                slot_manifest_path(&state, "A"),
                slot_manifest_path(&state2, "A"),
            )
            .expect("copy the slot manifest");
        }
        let target = slot(dir, "B");
        let mut req = request(&state2, &target, size + MIB, "1.1.0");
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
    };
    println!("adaptive update, 300 KiB changed in place (goal <= 15% of the bundle):");
    adaptive("saved manifest", &bundle2, bundle2_len, true);
    adaptive("slot read     ", &bundle2, bundle2_len, false);

    // For contrast: 100 KiB inserted, shifting the 30% after it off the 64 KiB grid.
    let mut v3 = v1[..at].to_vec();
    v3.extend_from_slice(&random_bytes(100 * 1024, 3));
    v3.extend_from_slice(&v1[at..v1.len() - 100 * 1024]);
    let bundle3 = make_bundle(dir, "v3", &v3, "1.2.0");
    let bundle3_len = fs::metadata(&bundle3).expect("bundle").len();
    println!("adaptive update, 100 KiB inserted at 70% (what follows moves off the chunk grid):");
    adaptive("saved manifest", &bundle3, bundle3_len, true);
}
