//! `keywarden repo init | add | refresh-timestamp | rotate-root | rotate-keys`, run as the built
//! binary on temporary directories with the TEST-ONLY keys of `ota/keys/test-only/`; what they
//! write is read back by the device's own client (`keywarden_updated::remote::UpdateClient`)
//! over loopback HTTPS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keywarden_bundle::{CreateSpec, SigningKey};
use keywarden_testbus::https::StaticServer;
use keywarden_testbus::workspace_root;
use keywarden_updated::remote::{HttpsConfig, RemoteConfig, UpdateClient};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const BOARD: &str = "qemu-x86_64";

fn keywarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(args)
        .output()
        .expect("run keywarden")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A TEST-ONLY TUF role key.
fn tuf_key(name: &str) -> PathBuf {
    workspace_root()
        .join("ota/keys/test-only/tuf")
        .join(format!("{name}.pem"))
}

/// The TEST-ONLY bundle signing key and its public half.
fn bundle_signing_key() -> PathBuf {
    workspace_root().join("ota/keys/test-only/test-only-signing.pem")
}

fn bundle_public_key() -> PathBuf {
    workspace_root().join("ota/keys/test-only/test-only-signing.pub")
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// Every path under `dir` with its kind and content hash, for byte-for-byte comparisons.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let what = if meta.is_dir() {
                todo.push(path.clone());
                "dir".to_owned()
            } else {
                format!("{} bytes {}", meta.len(), sha256_hex(&path))
            };
            map.insert(path, what);
        }
    }
    map
}

struct Fixture {
    dir: TempDir,
    repo: PathBuf,
}

impl Fixture {
    /// A repository made by `keywarden repo init` with the test-only keys.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let f = Fixture { dir, repo };
        let out = keywarden(&[
            "--json",
            "repo",
            "init",
            s(&f.repo),
            "--root-key",
            s(&tuf_key("root-1")),
            "--root-threshold",
            "1",
            "--targets-key",
            s(&tuf_key("targets")),
            "--snapshot-key",
            s(&tuf_key("snapshot")),
            "--timestamp-key",
            s(&tuf_key("timestamp")),
            "--root-expires",
            &(chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339(),
        ]);
        let json = ok_json(&out);
        assert_eq!(json["root_version"], 1, "{json}");
        assert_eq!(
            Path::new(json["root"].as_str().unwrap()),
            f.repo.join("metadata/1.root.json")
        );
        // The device's copy of its root of trust, as the image would carry it.
        std::fs::copy(f.repo.join("metadata/1.root.json"), f.device_root()).expect("copy");
        f
    }

    fn device_root(&self) -> PathBuf {
        self.dir.path().join("device-root.json")
    }

    /// A small bundle signed with `key`.
    fn bundle(&self, version: &str, key: &SigningKey) -> PathBuf {
        let payload = self.dir.path().join(format!("rootfs-{version}.img"));
        let data: Vec<u8> = (0..50_000).map(|i| (i * 7 + version.len()) as u8).collect();
        std::fs::write(&payload, data).expect("payload");
        let spec = CreateSpec {
            version: version.to_owned(),
            compatible: BOARD.to_owned(),
            created: 1_790_000_000,
            build_id: None,
            payloads: vec![("rootfs".to_owned(), payload)],
        };
        let path = self.dir.path().join(format!("{BOARD}-{version}.kwb"));
        let mut out = std::fs::File::create(&path).expect("create");
        keywarden_bundle::create(&spec, key, &mut out).expect("bundle");
        path
    }

    fn test_signed_bundle(&self, version: &str) -> PathBuf {
        let key = keywarden_bundle::keys::load_signing_key(&bundle_signing_key()).expect("key");
        self.bundle(version, &key)
    }

    /// `repo add` with the online keys and the test-only bundle key.
    fn add(&self, bundle: &Path, bundle_key: &str) -> Output {
        keywarden(&[
            "--json",
            "repo",
            "add",
            s(&self.repo),
            s(bundle),
            "--bundle-key",
            bundle_key,
            "--key",
            s(&tuf_key("targets")),
            "--key",
            s(&tuf_key("snapshot")),
            "--key",
            s(&tuf_key("timestamp")),
            "--expires-days",
            "30",
        ])
    }

    fn metadata(&self, name: &str) -> Value {
        let path = self.repo.join("metadata").join(name);
        serde_json::from_slice(&std::fs::read(&path).expect("read metadata")).expect("json")
    }

    fn timestamp_version(&self) -> u64 {
        self.metadata("timestamp.json")["signed"]["version"]
            .as_u64()
            .expect("version")
    }
}

/// The device's update client, reading the repository over loopback HTTPS.
struct Device {
    _server: StaticServer,
    client: UpdateClient,
}

impl Device {
    fn new(f: &Fixture, datastore: &str) -> Device {
        let server = StaticServer::start(&f.repo);
        let ca = server.write_ca(f.dir.path().join(format!("ca-{datastore}.pem")));
        let mut config = RemoteConfig::new(
            &ca,
            f.device_root(),
            f.dir.path().join(datastore),
            url::Url::parse(&format!("{}metadata/", server.url())).expect("url"),
            url::Url::parse(&format!("{}targets/", server.url())).expect("url"),
            BOARD,
        );
        config.https = HttpsConfig {
            ca_file: ca,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
        };
        Device {
            _server: server,
            client: UpdateClient::new(config).expect("client"),
        }
    }
}

#[tokio::test]
async fn init_then_add_gives_a_repository_the_device_client_accepts() {
    let f = Fixture::new();
    let bundle = f.test_signed_bundle("1.0.0");
    let out = f.add(&bundle, s(&bundle_public_key()));
    let json = ok_json(&out);
    assert!(
        stderr(&out).contains("TEST-ONLY"),
        "the test-only key is warned about: {}",
        text(&out)
    );
    assert_eq!(json["target"], "qemu-x86_64/keywarden-1.0.0.kwb");
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["compatible"], BOARD);
    assert_eq!(json["test_only_key"], true);
    for v in ["targets_version", "snapshot_version", "timestamp_version"] {
        assert_eq!(json[v], 1, "{v}: {json}");
    }

    // The copied target file is the bundle, stored under its SHA-256.
    let sha = sha256_hex(&bundle);
    let copied = PathBuf::from(json["path"].as_str().unwrap());
    assert_eq!(
        copied,
        f.repo
            .join(format!("targets/{BOARD}/{sha}.keywarden-1.0.0.kwb"))
    );
    assert_eq!(sha256_hex(&copied), sha);

    // The metadata names it with the custom metadata the device selects by.
    let targets = f.metadata("1.targets.json");
    let target = &targets["signed"]["targets"]["qemu-x86_64/keywarden-1.0.0.kwb"];
    assert_eq!(target["hashes"]["sha256"], sha.as_str());
    assert_eq!(target["length"], std::fs::metadata(&bundle).unwrap().len());
    assert_eq!(target["custom"]["version"], "1.0.0");
    assert_eq!(target["custom"]["compatible"], BOARD);
    assert_eq!(
        target["custom"]["manifest_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(f.metadata("1.snapshot.json")["signed"]["version"], 1);
    assert_eq!(f.timestamp_version(), 1);

    // The device's client accepts it and offers the bundle.
    let device = Device::new(&f, "datastore");
    let offer = device
        .client
        .check()
        .await
        .expect("check")
        .expect("an offer");
    assert_eq!(offer.version.to_string(), "1.0.0");
    assert_eq!(offer.target, "qemu-x86_64/keywarden-1.0.0.kwb");
    assert_eq!(offer.sha256.to_hex(), sha);

    // A second release, the bundle key given as hex this time: versions move together.
    let bundle2 = f.test_signed_bundle("1.1.0");
    let json = ok_json(&f.add(&bundle2, keywarden_bundle::keys::TEST_ONLY_PUBLIC_KEY));
    for v in ["targets_version", "snapshot_version", "timestamp_version"] {
        assert_eq!(json[v], 2, "{v}: {json}");
    }
    let offer = device
        .client
        .check()
        .await
        .expect("check")
        .expect("an offer");
    assert_eq!(offer.version.to_string(), "1.1.0");
}

#[tokio::test]
async fn refresh_timestamp_bumps_the_version_and_the_client_accepts_it() {
    let f = Fixture::new();
    ok_json(&f.add(&f.test_signed_bundle("1.0.0"), s(&bundle_public_key())));
    let device = Device::new(&f, "datastore");
    device.client.check().await.expect("check").expect("offer");
    let snapshot_before = f.metadata("timestamp.json")["signed"]["meta"].clone();
    assert_eq!(f.timestamp_version(), 1);

    let out = keywarden(&[
        "--json",
        "repo",
        "refresh-timestamp",
        s(&f.repo),
        "--key",
        s(&tuf_key("timestamp")),
        "--days",
        "3",
    ]);
    let json = ok_json(&out);
    assert_eq!(json["timestamp_version"], 2);
    assert_eq!(f.timestamp_version(), 2);
    // Same snapshot named, new expiry about 3 days out.
    let ts = f.metadata("timestamp.json");
    assert_eq!(ts["signed"]["meta"], snapshot_before);
    let expires: chrono::DateTime<chrono::Utc> =
        ts["signed"]["expires"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((71..=72).contains(&days), "{expires}");

    let offer = device.client.check().await.expect("check").expect("offer");
    assert_eq!(offer.version.to_string(), "1.0.0");

    // Human output names the version.
    let out = keywarden(&[
        "repo",
        "refresh-timestamp",
        s(&f.repo),
        "--key",
        s(&tuf_key("timestamp")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("timestamp version 3"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bundle_that_does_not_verify_is_refused_and_nothing_is_written() {
    let f = Fixture::new();
    ok_json(&f.add(&f.test_signed_bundle("1.0.0"), s(&bundle_public_key())));
    let before = tree(&f.repo);

    // Signed with another key than the bundle key given.
    let other = f.bundle("1.1.0", &SigningKey::from_bytes(&[7; 32]));
    let out = f.add(&other, s(&bundle_public_key()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(tree(&f.repo), before, "the repository changed");

    // A test-signed bundle with one payload byte flipped.
    let flipped = f.test_signed_bundle("1.2.0");
    let mut bytes = std::fs::read(&flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&flipped, bytes).unwrap();
    let out = f.add(&flipped, s(&bundle_public_key()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(tree(&f.repo), before, "the repository changed");

    // A bundle key that is not one.
    let out = f.add(&other, "not-a-key-file");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("not-a-key-file"), "{}", text(&out));
    assert_eq!(tree(&f.repo), before, "the repository changed");
}

#[test]
fn a_malformed_key_file_is_refused_naming_the_file() {
    let f = Fixture::new();
    let bad = f.dir.path().join("broken-targets.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    let missing = f.dir.path().join("missing.pem");

    // init: nothing created.
    let fresh = f.dir.path().join("fresh");
    for key in [&bad, &missing] {
        let out = keywarden(&[
            "repo",
            "init",
            s(&fresh),
            "--root-key",
            s(&tuf_key("root-1")),
            "--root-threshold",
            "1",
            "--targets-key",
            s(key),
            "--snapshot-key",
            s(&tuf_key("snapshot")),
            "--timestamp-key",
            s(&tuf_key("timestamp")),
            "--root-expires",
            "2099-01-01",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(stderr(&out).contains(s(key)), "{}", text(&out));
        assert!(!fresh.exists(), "init wrote {}", fresh.display());
    }

    // add: the repository is unchanged.
    let before = tree(&f.repo);
    let bundle = f.test_signed_bundle("1.0.0");
    let out = keywarden(&[
        "repo",
        "add",
        s(&f.repo),
        s(&bundle),
        "--bundle-key",
        s(&bundle_public_key()),
        "--key",
        s(&bad),
        "--key",
        s(&tuf_key("snapshot")),
        "--key",
        s(&tuf_key("timestamp")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains(s(&bad)), "{}", text(&out));
    assert_eq!(tree(&f.repo), before, "the repository changed");
}

#[test]
fn bad_dates_and_thresholds_are_usage_errors() {
    let f = Fixture::new();
    let before = tree(&f.repo);
    for (expires, threshold) in [("2001-01-01", "1"), ("soon", "1"), ("2099-01-01", "2")] {
        let out = keywarden(&[
            "repo",
            "rotate-root",
            s(&f.repo),
            "--key",
            s(&tuf_key("root-1")),
            "--key",
            s(&tuf_key("root-2")),
            "--new-root-key",
            s(&tuf_key("root-2")),
            "--threshold",
            threshold,
            "--expires",
            expires,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{expires} {threshold}: {}",
            text(&out)
        );
    }
    assert_eq!(tree(&f.repo), before, "the repository changed");
}

#[tokio::test]
async fn rotate_root_writes_the_next_root_the_client_follows() {
    let f = Fixture::new();
    ok_json(&f.add(&f.test_signed_bundle("1.0.0"), s(&bundle_public_key())));
    let device = Device::new(&f, "datastore");
    device.client.check().await.expect("check").expect("offer");

    let out = keywarden(&[
        "--json",
        "repo",
        "rotate-root",
        s(&f.repo),
        "--key",
        s(&tuf_key("root-1")),
        "--key",
        s(&tuf_key("root-2")),
        "--new-root-key",
        s(&tuf_key("root-2")),
        "--threshold",
        "1",
        "--expires",
        "2099-01-01",
    ]);
    let json = ok_json(&out);
    assert_eq!(json["root_version"], 2);
    let root2 = f.repo.join("metadata/2.root.json");
    assert_eq!(Path::new(json["root"].as_str().unwrap()), root2);
    let parsed = keywarden_updated::remote::tuf::read_root(&root2).expect("root 2");
    assert_eq!(parsed.signed.version.get(), 2);
    assert_eq!(
        parsed.signed.expires.to_rfc3339(),
        "2099-01-01T00:00:00+00:00"
    );
    // Signed by the old root key and the new one.
    assert_eq!(parsed.signatures.len(), 2);

    // A release after the rotation; the device holding root 1 walks to root 2 and keeps it.
    ok_json(&f.add(&f.test_signed_bundle("1.1.0"), s(&bundle_public_key())));
    let offer = device.client.check().await.expect("check").expect("offer");
    assert_eq!(offer.version.to_string(), "1.1.0");
    let kept = keywarden_updated::remote::tuf::read_root(&f.dir.path().join("datastore/root.json"))
        .expect("kept root");
    assert_eq!(kept.signed.version.get(), 2);
    // So does a device first seeing the repository now, given 1.root.json.
    let fresh = Device::new(&f, "fresh-datastore");
    let offer = fresh.client.check().await.expect("check").expect("offer");
    assert_eq!(offer.version.to_string(), "1.1.0");
}

#[tokio::test]
async fn rotate_keys_hands_the_timestamp_to_a_new_key() {
    let f = Fixture::new();
    ok_json(&f.add(&f.test_signed_bundle("1.0.0"), s(&bundle_public_key())));
    let device = Device::new(&f, "datastore");
    device.client.check().await.expect("check").expect("offer");
    let new_key = f.dir.path().join("timestamp-2.pem");
    let out = keywarden(&[
        "bundle",
        "keygen",
        "--out-private",
        s(&new_key),
        "--out-public",
        s(&f.dir.path().join("timestamp-2.pub")),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let json = ok_json(&keywarden(&[
        "--json",
        "repo",
        "rotate-keys",
        s(&f.repo),
        "--root-key",
        s(&tuf_key("root-1")),
        "--role",
        "timestamp",
        "--new-key",
        s(&new_key),
        "--threshold",
        "1",
        "--root-expires",
        "2099-01-01T00:00:00Z",
    ]));
    assert_eq!(json["root_version"], 2);
    assert_eq!(json["role"], "timestamp");
    // The old timestamp key no longer signs ...
    let out = keywarden(&[
        "repo",
        "refresh-timestamp",
        s(&f.repo),
        "--key",
        s(&tuf_key("timestamp")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // ... the new one does, and the device accepts it.
    let json = ok_json(&keywarden(&[
        "--json",
        "repo",
        "refresh-timestamp",
        s(&f.repo),
        "--key",
        s(&new_key),
    ]));
    assert_eq!(json["timestamp_version"], 2);
    let offer = device.client.check().await.expect("check").expect("offer");
    assert_eq!(offer.version.to_string(), "1.0.0");
}
