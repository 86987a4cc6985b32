//! `keywarden bundle create | inspect | verify | keygen`, run as the built binary on real files
//! (no bus needed).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn keywarden(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keywarden"));
    cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().expect("run keywarden")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Keys {
    private: PathBuf,
    public: PathBuf,
}

fn keygen(dir: &Path, name: &str) -> Keys {
    let keys = Keys {
        private: dir.join(format!("{name}.pem")),
        public: dir.join(format!("{name}.pub")),
    };
    let out = keywarden(
        &[
            "bundle",
            "keygen",
            "--out-private",
            s(&keys.private),
            "--out-public",
            s(&keys.public),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    keys
}

fn create(
    keys: &Keys,
    payload: &Path,
    out: &Path,
    extra: &[&str],
    env: &[(&str, Option<&str>)],
) -> Output {
    let payload = format!("rootfs={}", s(payload));
    let mut args = vec![
        "bundle",
        "create",
        "--version",
        "2.1.0",
        "--compatible",
        "qemu-x86_64",
        "--key",
        s(&keys.private),
        "--payload",
        &payload,
        "-o",
        s(out),
    ];
    args.extend_from_slice(extra);
    keywarden(&args, env)
}

/// 2.5 chunks of bytes that differ from chunk to chunk.
fn payload(dir: &Path) -> PathBuf {
    let path = dir.join("rootfs.img");
    let bytes: Vec<u8> = (0..160 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_reads_and_never_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen(dir.path(), "prod");
    let mode = fs::metadata(&keys.private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let private = fs::read_to_string(&keys.private).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(fs::read_to_string(&keys.public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // A second keygen over the same files is refused (exit 2) and changes nothing.
    let out = keywarden(
        &[
            "--json",
            "bundle",
            "keygen",
            "--out-private",
            s(&keys.private),
            "--out-public",
            s(&dir.path().join("new.pub")),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(fs::read_to_string(&keys.private).unwrap(), private);
    assert!(!dir.path().join("new.pub").exists());

    // The private key's base64 body never appears in the output.
    let out = keywarden(
        &[
            "--json",
            "bundle",
            "keygen",
            "--out-private",
            s(&dir.path().join("b.pem")),
            "--out-public",
            s(&dir.path().join("b.pub")),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let body = fs::read_to_string(dir.path().join("b.pem")).unwrap();
    let body = body.lines().nth(1).unwrap();
    assert!(!text(&out).contains(body));
    let public = json(&out)["public_key"].as_str().unwrap().to_owned();
    assert_eq!(public.len(), 64);
}

#[test]
fn create_inspect_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen(dir.path(), "signing");
    let other = keygen(dir.path(), "other");
    let rootfs = payload(dir.path());
    let bundle = dir.path().join("update.kwb");

    let out = create(
        &keys,
        &rootfs,
        &bundle,
        &["--created", "1790000000", "--json"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created = json(&out);
    assert_eq!(created["manifest"]["version"], "2.1.0");
    assert_eq!(created["manifest"]["payloads"][0]["chunks"], 3);
    assert_eq!(created["test_only_key"], false);
    assert_eq!(created["bytes"], fs::metadata(&bundle).unwrap().len());
    assert!(!dir.path().join("update.kwb.partial").exists());
    let bytes = fs::read(&bundle).unwrap();

    // Deterministic: again with --created, and with SOURCE_DATE_EPOCH instead.
    let again = dir.path().join("again.kwb");
    let out = create(&keys, &rootfs, &again, &["--created", "1790000000"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(fs::read(&again).unwrap() == bytes, "second create differs");
    let out = create(
        &keys,
        &rootfs,
        &again,
        &[],
        &[("SOURCE_DATE_EPOCH", Some("1790000000"))],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        fs::read(&again).unwrap() == bytes,
        "create from SOURCE_DATE_EPOCH differs"
    );
    // Neither: refused, the clock is never used.
    let out = create(&keys, &rootfs, &dir.path().join("x.kwb"), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("SOURCE_DATE_EPOCH"), "{}", text(&out));
    assert!(!dir.path().join("x.kwb").exists());

    // Inspect needs no key and says it did not verify.
    let out = keywarden(&["bundle", "inspect", s(&bundle)], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).starts_with("UNVERIFIED"), "{}", text(&out));
    assert!(stdout(&out).contains("qemu-x86_64"), "{}", text(&out));
    let out = keywarden(&["bundle", "inspect", s(&bundle), "--json"], &[]);
    let inspected = json(&out);
    assert_eq!(inspected["verified"], false);
    assert_eq!(inspected["manifest"]["created"], 1_790_000_000u64);
    assert_eq!(
        inspected["manifest"]["payloads"][0]["chunks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Verify with the right key, with several keys, with none, with the wrong one.
    let out = keywarden(
        &["bundle", "verify", s(&bundle), "--key", s(&keys.public)],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).starts_with("verified"), "{}", text(&out));
    let out = keywarden(
        &[
            "bundle",
            "verify",
            s(&bundle),
            "--key",
            s(&other.public),
            "--key",
            s(&keys.public),
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["verified"], true);
    assert_eq!(json(&out)["signer"], created["signer"]);

    let out = keywarden(&["bundle", "verify", s(&bundle)], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("no trusted bundle keys"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty());

    let out = keywarden(
        &["bundle", "verify", s(&bundle), "--key", s(&other.public)],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("not a trusted key"), "{}", text(&out));

    // A flipped byte in the second chunk.
    let mut bad = bytes.clone();
    let at = inspected["data_offset"].as_u64().unwrap() as usize + 65536 + 10;
    bad[at] ^= 0x20;
    let tampered = dir.path().join("tampered.kwb");
    fs::write(&tampered, &bad).unwrap();
    let out = keywarden(
        &["bundle", "verify", s(&tampered), "--key", s(&keys.public)],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(r#"payload "rootfs" chunk 1: hash mismatch"#),
        "{}",
        text(&out)
    );
}

#[test]
fn create_refusals_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keygen(dir.path(), "k");
    let rootfs = payload(dir.path());
    let out_path = dir.path().join("b.kwb");
    for (extra, code, message) in [
        (&["--created", "1", "--build-id", "\t"][..], 2, "build id"),
        (
            &["--created", "1", "--payload", "rootfs=/nonexistent"][..],
            2,
            "given twice",
        ),
        (
            &["--created", "1", "--payload", "boot=/nonexistent"][..],
            1,
            "/nonexistent",
        ),
        (
            &["--created", "1", "--payload", "nonsense"][..],
            2,
            "NAME=FILE",
        ),
    ] {
        let out = create(&keys, &rootfs, &out_path, extra, &[]);
        assert_eq!(out.status.code(), Some(code), "{message}: {}", text(&out));
        assert!(stderr(&out).contains(message), "{message}: {}", text(&out));
        assert!(!out_path.exists());
        assert!(!dir.path().join("b.kwb.partial").exists());
    }
    let out = keywarden(
        &[
            "bundle",
            "create",
            "--version",
            "2.1",
            "--compatible",
            "b",
            "--key",
            s(&keys.private),
            "--created",
            "1",
            "--payload",
            &format!("rootfs={}", s(&rootfs)),
            "-o",
            s(&out_path),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("invalid version"), "{}", text(&out));
}

#[test]
fn the_test_only_key_signs_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let test_keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ota/keys/test-only");
    let keys = Keys {
        private: test_keys.join("test-only-signing.pem"),
        public: test_keys.join("test-only-signing.pub"),
    };
    let rootfs = payload(dir.path());
    let bundle = dir.path().join("dev.kwb");
    let out = create(&keys, &rootfs, &bundle, &["--created", "0", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("TEST-ONLY"), "{}", text(&out));
    assert_eq!(json(&out)["test_only_key"], true);
    let out = keywarden(
        &["bundle", "verify", s(&bundle), "--key", s(&keys.public)],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("TEST-ONLY"), "{}", text(&out));
}
