//! `keywarden factory provision` and `keywarden factory reset`, run as the real binary on
//! temporary data directories. The TUF root is made with the updater's own publishing code from
//! the repository's TEST-ONLY keys; the updater's and policyd's parsers read what provisioning
//! wrote; the reset test runs the real policyd (and hwd on `sim`) on a private dbus-daemon.
//!
//! As root (the factory's case) the private keys are given to user `nobody` and the rest stays
//! root's, so owners are checked for real; as another user everything is that user's.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keywarden_audit::DeviceKey;
use keywarden_dbus::names::{HARDWARE_BUS_NAME, POLICY_BUS_NAME};
use keywarden_testbus::{binary, current_user, workspace_root, Daemon, PrivateBus};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const SERIAL: &str = "KW-2026-000042";

fn keywarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(args)
        .output()
        .expect("run keywarden")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The owner provisioning gives the private keys in these tests, with its uid and gid.
fn key_owner() -> (String, u32, u32) {
    let name = if nix::unistd::geteuid().is_root() {
        "nobody".to_owned()
    } else {
        current_user()
    };
    let user = nix::unistd::User::from_name(&name)
        .expect("look up user")
        .expect("user exists");
    (name, user.uid.as_raw(), user.gid.as_raw())
}

/// The inputs a factory would have: a TUF root, the update server's CA, the collector's CA,
/// an os-release.
struct Inputs {
    dir: tempfile::TempDir,
    root: PathBuf,
    update_ca: PathBuf,
    collector_ca: PathBuf,
    os_release: PathBuf,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = workspace_root().join("ota/keys/test-only/tuf");
        let repo = dir.path().join("repo");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let root = runtime
            .block_on(keywarden_updated::remote::publish::init(
                &repo,
                &keywarden_updated::remote::publish::InitKeys {
                    root: vec![keys.join("root-1.pem")],
                    root_threshold: 1,
                    targets: keys.join("targets.pem"),
                    snapshot: keys.join("snapshot.pem"),
                    timestamp: keys.join("timestamp.pem"),
                },
                chrono::DateTime::from_timestamp(2_000_000_000, 0).expect("expiry"),
            ))
            .expect("test TUF root");
        let ca = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("CA key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("CA");
            let path = dir.path().join(format!("{name}.pem"));
            std::fs::write(&path, cert.pem()).expect("write CA");
            path
        };
        let update_ca = ca("update-ca");
        let collector_ca = ca("collector-ca");
        let os_release = dir.path().join("os-release");
        std::fs::write(
            &os_release,
            "PRETTY_NAME=\"Debian GNU/Linux 13\"\nIMAGE_ID=keywarden\nIMAGE_VERSION=2.3.1\n",
        )
        .expect("os-release");
        Inputs {
            dir,
            root,
            update_ca,
            collector_ca,
            os_release,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The full argument list for provisioning `data` as `serial`, with a collector.
    fn args(&self, data: &Path, serial: &str) -> Vec<String> {
        let (owner, _, _) = key_owner();
        [
            "factory",
            "provision",
            "--serial",
            serial,
            "--model",
            "KW-24 Key Cabinet",
            "--hardware-revision",
            "rev C",
            "--update-root",
            &self.root.display().to_string(),
            "--update-metadata-url",
            "https://updates.example.org/fleet/metadata/",
            "--update-targets-url",
            "https://updates.example.org/fleet/targets/",
            "--update-ca",
            &self.update_ca.display().to_string(),
            "--collector",
            "collector.example.org:6514",
            "--collector-ca",
            &self.collector_ca.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
            "--owner",
            &owner,
            "--os-release",
            &self.os_release.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn run(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    keywarden(&refs)
}

/// `args` with option `name`'s value replaced (or the option removed, with `None`).
fn with(args: &[String], name: &str, value: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == name {
            if let Some(v) = value {
                out.push(name.to_owned());
                out.push(v.to_owned());
            }
            i += 2;
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    out
}

/// Every path under `dir` with its type, mode, owner and content hash.
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
                hex::encode(Sha256::digest(std::fs::read(&path).expect("read")))
            };
            map.insert(
                path,
                format!(
                    "{what} {:o} {}:{} {}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime_nsec()
                ),
            );
        }
    }
    map
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).expect("metadata");
    (m.uid(), m.gid())
}

/// The base64 body lines of a PEM file (what would leak if a key were printed).
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("pem")
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

fn assert_no_private_key_in(out: &Output, identity: &Path) {
    let (stdout, stderr) = text(out);
    for stream in [&stdout, &stderr] {
        assert!(!stream.contains("PRIVATE KEY"), "{stream}");
        for file in ["device-key.pem", "client.key"] {
            for line in pem_body_lines(&identity.join(file)) {
                assert!(!stream.contains(&line), "{file} leaked: {stream}");
            }
        }
    }
}

fn record(identity: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(identity.join("device.json")).expect("device.json"))
        .expect("device.json is JSON")
}

#[test]
fn provision_writes_the_identity_with_owners_modes_and_record() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let identity = data.join("identity");
    let out = run(&[inputs.args(&data, SERIAL), vec!["--json".into()]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_no_private_key_in(&out, &identity);

    // Files, modes, owners.
    let (_, key_uid, key_gid) = key_owner();
    let (me, my_gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    assert_eq!(mode(&data), 0o700);
    assert_eq!(owner(&data), (key_uid, key_gid));
    assert_eq!(mode(&identity), 0o750);
    assert_eq!(owner(&identity), (me, key_gid));
    for name in ["device-key.pem", "client.key"] {
        assert_eq!(mode(&identity.join(name)), 0o600, "{name}");
        assert_eq!(owner(&identity.join(name)), (key_uid, key_gid), "{name}");
    }
    for name in [
        "client.pem",
        "client.csr",
        "collector-ca.pem",
        "offsite.toml",
        "device.json",
        "update/root.json",
        "update/ca.pem",
        "update/repository.toml",
    ] {
        assert_eq!(mode(&identity.join(name)), 0o644, "{name}");
        assert_eq!(owner(&identity.join(name)), (me, my_gid), "{name}");
    }
    assert_eq!(mode(&identity.join("update")), 0o755);
    let mut names: Vec<_> = std::fs::read_dir(&identity)
        .expect("identity")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "client.csr",
            "client.key",
            "client.pem",
            "collector-ca.pem",
            "device-key.pem",
            "device.json",
            "offsite.toml",
            "update"
        ],
        "no temporaries left"
    );

    // The record: printed = stored, and every field true to the files.
    let r = record(&identity);
    let printed: Value = serde_json::from_str(&stdout).expect("stdout is the JSON record");
    assert_eq!(printed, r);
    assert_eq!(r["format"], "keywarden-device-record");
    assert_eq!(r["version"], 1);
    assert_eq!(r["serial"], SERIAL);
    assert_eq!(r["model"], "KW-24 Key Cabinet");
    assert_eq!(r["hardware_revision"], "rev C");
    assert_eq!(r["firmware_version"], "2.3.1");
    assert_eq!(r["device_key"], "generated");
    let at: jiff::Timestamp = r["provisioned_at"]
        .as_str()
        .expect("provisioned_at")
        .parse()
        .expect("RFC 3339");
    assert!(r["provisioned_at"].as_str().expect("s").ends_with('Z'));
    assert!((jiff::Timestamp::now() - at).get_seconds().abs() < 120);
    let device_key = DeviceKey::load(&identity.join("device-key.pem")).expect("device key");
    assert_eq!(r["device_public_key"], device_key.public_hex());
    let cert_pem = std::fs::read_to_string(identity.join("client.pem")).expect("cert");
    assert_eq!(r["client_certificate"], cert_pem);
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert PEM");
    assert_eq!(
        r["client_certificate_sha256"],
        hex::encode(Sha256::digest(der.as_ref()))
    );
    assert!(der.windows(SERIAL.len()).any(|w| w == SERIAL.as_bytes()));
    assert_eq!(
        r["client_csr"],
        std::fs::read_to_string(identity.join("client.csr")).expect("csr")
    );
    let root = std::fs::read(&inputs.root).expect("root");
    assert_eq!(
        std::fs::read(identity.join("update/root.json")).expect("copy"),
        root
    );
    assert_eq!(
        r["update"]["root_sha256"],
        hex::encode(Sha256::digest(&root))
    );
    assert_eq!(r["update"]["root_version"], 1);
    assert_eq!(r["update"]["root_expires"], "2033-05-18T03:33:20Z");
    assert_eq!(
        r["update"]["ca_sha256"],
        hex::encode(Sha256::digest(
            std::fs::read(&inputs.update_ca).expect("ca")
        ))
    );
    assert_eq!(r["collector"], "collector.example.org:6514");
    assert_eq!(r["replaces"], Value::Null);
    // Public facts only.
    assert!(!r.to_string().contains("PRIVATE"));

    // The client key is a PKCS#8 key whose public half is in the certificate.
    let key_der = PrivateKeyDer::from_pem_file(identity.join("client.key")).expect("client key");
    assert!(matches!(key_der, PrivateKeyDer::Pkcs8(_)));
    let pair = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(identity.join("client.key")).expect("key"),
    )
    .expect("key pair");
    let spki = pair.public_key_der();
    assert!(der.windows(spki.len()).any(|w| w == spki.as_slice()));

    // The updater's own parser takes repository.toml.
    let mut config = keywarden_updated::daemon::config::Config::parse(
        "compatible = \"keywarden-qemu-x86_64\"\n[slots]\nA = \"/dev/a\"\nB = \"/dev/b\"\n\
         [bootloader]\nkind = \"grub\"\ngrubenv = \"/boot/grubenv\"\n[keys]\ntrusted = [\"/k\"]\n",
    )
    .expect("update.toml");
    config.repository_config = identity.join("update/repository.toml");
    let repo = config
        .repository()
        .expect("repository.toml parses")
        .expect("repository.toml is there");
    assert_eq!(
        repo.metadata_url,
        "https://updates.example.org/fleet/metadata/"
    );
    assert_eq!(
        repo.targets_url,
        "https://updates.example.org/fleet/targets/"
    );
    assert_eq!(repo.root, identity.join("update/root.json"));
    assert_eq!(repo.ca, identity.join("update/ca.pem"));

    // policyd's own parser takes offsite.toml, and its paths are the identity's files.
    let offsite = keywarden_policyd::offsite::OffsiteConfig::load_section_file(
        &identity.join("offsite.toml"),
    )
    .expect("offsite.toml parses")
    .expect("offsite.toml is there");
    assert_eq!(offsite.address, "collector.example.org:6514");
    assert_eq!(offsite.cabinet, SERIAL);
    assert_eq!(offsite.ca_file, identity.join("collector-ca.pem"));
    assert_eq!(offsite.client_cert, identity.join("client.pem"));
    assert_eq!(offsite.client_key, identity.join("client.key"));
}

#[test]
fn the_human_summary_names_the_device_and_no_secret() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let identity = data.join("identity");
    let out = run(&inputs.args(&data, SERIAL));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_no_private_key_in(&out, &identity);
    let r = record(&identity);
    for fact in [
        SERIAL,
        r["device_public_key"].as_str().expect("key"),
        r["client_certificate_sha256"].as_str().expect("sha"),
        "collector.example.org:6514",
        "2.3.1",
    ] {
        assert!(stdout.contains(fact), "{fact} not in {stdout}");
    }
    // Not the PEM: the summary is for people.
    assert!(!stdout.contains("BEGIN CERTIFICATE"), "{stdout}");
}

#[test]
fn provisioning_adopts_the_key_policyd_made() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let identity = data.join("identity");
    std::fs::create_dir_all(&identity).expect("identity");
    let made = DeviceKey::create(&identity.join("device-key.pem")).expect("policyd's key");
    let before = std::fs::read(identity.join("device-key.pem")).expect("key");
    let out = run(&[inputs.args(&data, SERIAL), vec!["--json".into()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let r = record(&identity);
    assert_eq!(r["device_key"], "adopted");
    assert_eq!(r["device_public_key"], made.public_hex());
    assert_eq!(
        std::fs::read(identity.join("device-key.pem")).expect("key"),
        before
    );
    let (_, key_uid, key_gid) = key_owner();
    assert_eq!(owner(&identity.join("device-key.pem")), (key_uid, key_gid));
    assert_eq!(mode(&identity), 0o750);
}

#[test]
fn provisioning_twice_is_refused_and_changes_nothing_unless_replacing() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let identity = data.join("identity");
    let out = run(&inputs.args(&data, SERIAL));
    assert!(out.status.success(), "{:?}", text(&out));
    let first = record(&identity);
    let before = tree(&data);

    // Again, even with another serial: refused, exit 2, naming the existing serial and time.
    std::thread::sleep(Duration::from_millis(20));
    let out = run(&inputs.args(&data, "OTHER-1"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("already provisioned"), "{stderr}");
    assert!(stderr.contains(SERIAL), "{stderr}");
    assert!(
        stderr.contains(first["provisioned_at"].as_str().expect("at")),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(tree(&data), before, "the identity tree changed");

    // --replace-identity: new keys, a record naming what it replaced, the old record kept.
    let args = with(&inputs.args(&data, "OTHER-1"), "--collector", None);
    let args = with(&args, "--collector-ca", None);
    let out = run(&[args, vec!["--replace-identity".into(), "--json".into()]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_no_private_key_in(&out, &identity);
    let second = record(&identity);
    assert_eq!(second["serial"], "OTHER-1");
    assert_eq!(second["device_key"], "generated");
    assert_ne!(second["device_public_key"], first["device_public_key"]);
    assert_ne!(second["client_certificate"], first["client_certificate"]);
    assert_eq!(
        second["replaces"]["device_public_key"],
        first["device_public_key"]
    );
    assert_eq!(second["replaces"]["serial"], SERIAL);
    assert_eq!(
        second["replaces"]["provisioned_at"],
        first["provisioned_at"]
    );
    assert_eq!(
        DeviceKey::load(&identity.join("device-key.pem"))
            .expect("new key")
            .public_hex(),
        second["device_public_key"]
    );
    let replaced: Value = serde_json::from_slice(
        &std::fs::read(identity.join("device.replaced.json")).expect("old record"),
    )
    .expect("json");
    assert_eq!(replaced, first);
    // No collector this time: the old one's settings are gone.
    assert_eq!(second["collector"], Value::Null);
    assert!(!identity.join("offsite.toml").exists());
    assert!(!identity.join("collector-ca.pem").exists());
}

#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let good = inputs.args(&data, SERIAL);

    // A root whose signed part was edited, a root that is other TUF metadata, not JSON at all.
    let mut root: Value =
        serde_json::from_slice(&std::fs::read(&inputs.root).expect("root")).expect("json");
    root["signed"]["expires"] = Value::from("2099-01-01T00:00:00Z");
    let edited = inputs.path("edited-root.json");
    std::fs::write(&edited, root.to_string()).expect("write");
    let mut targets = root.clone();
    targets["signed"]["_type"] = Value::from("targets");
    let not_root = inputs.path("targets.json");
    std::fs::write(&not_root, targets.to_string()).expect("write");
    let garbage = inputs.path("garbage.json");
    std::fs::write(&garbage, "{\"hello\": 1}").expect("write");
    let no_cert = inputs.path("no-cert.pem");
    std::fs::write(&no_cert, "not a certificate\n").expect("write");
    let with_key = inputs.path("with-key.pem");
    std::fs::write(
        &with_key,
        format!(
            "{}{}",
            std::fs::read_to_string(&inputs.update_ca).expect("ca"),
            rcgen::KeyPair::generate().expect("key").serialize_pem()
        ),
    )
    .expect("write");
    let s = |p: &Path| p.display().to_string();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&good, "--serial", Some("")), "--serial is empty"),
        (
            with(&good, "--serial", Some("SN 42/x")),
            "--serial \"SN 42/x\" contains ' '",
        ),
        (
            with(&good, "--serial", Some(".hidden")),
            "must not start with . or -",
        ),
        (with(&good, "--model", Some("  ")), "--model is empty"),
        (
            with(&good, "--hardware-revision", Some("rev\u{7}")),
            "--hardware-revision \"rev\\u{7}\" contains a control character",
        ),
        (
            with(
                &good,
                "--update-root",
                Some(&s(&inputs.path("missing.json"))),
            ),
            "cannot read it",
        ),
        (
            with(&good, "--update-root", Some(&s(&garbage))),
            "is not TUF root metadata",
        ),
        (
            with(&good, "--update-root", Some(&s(&not_root))),
            "is not TUF root metadata: its signed._type is \"targets\"",
        ),
        (
            with(&good, "--update-root", Some(&s(&edited))),
            "is not signed by its own root keys",
        ),
        (
            with(
                &good,
                "--update-metadata-url",
                Some("http://updates.example.org/m/"),
            ),
            "--update-metadata-url \"http://updates.example.org/m/\" is not an https:// URL",
        ),
        (
            with(&good, "--update-targets-url", Some("not a url")),
            "--update-targets-url \"not a url\" is not a URL",
        ),
        (
            with(&good, "--update-ca", Some(&s(&no_cert))),
            "holds no PEM certificate",
        ),
        (
            with(&good, "--update-ca", Some(&s(&with_key))),
            "contains a private key",
        ),
        (
            with(&good, "--collector", Some("collector.example.org")),
            "--collector \"collector.example.org\" is not HOST:PORT",
        ),
        (
            with(&good, "--collector", Some("collector.example.org:99999")),
            "has no port number",
        ),
        (
            with(&good, "--collector-ca", Some(&s(&no_cert))),
            "--collector-ca",
        ),
        // clap: the collector's address without its CA.
        (with(&good, "--collector-ca", None), "--collector-ca"),
        (
            with(&good, "--owner", Some("no-such-user-kw")),
            "no user \"no-such-user-kw\"",
        ),
    ];
    for (args, expected) in cases {
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{expected}: {stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert!(
            !data.exists(),
            "{expected}: something was written under {}",
            data.display()
        );
    }
    // And the good arguments do work, so the refusals were for the one bad input each.
    let out = run(&good);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// hwd on `sim`, policyd on the provisioned data directory, on a private bus.
struct Stack {
    bus: PrivateBus,
    _hwd: Daemon,
    policyd: Option<Daemon>,
    data: PathBuf,
}

impl Stack {
    fn start(data: &Path) -> Stack {
        let bus = PrivateBus::start(
            &[
                "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
                "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
            ],
            &["keywarden", "keywarden-hw"],
            &["keywarden-admin", "keywarden-console"],
        );
        let mut hwd = Daemon(
            Command::new(binary("keywarden-hwd"))
                .args(["--backend", "sim", "--allow-user", &current_user()])
                .arg("--board")
                .arg(workspace_root().join("crates/keywarden-hwd/boards/sim-demo.toml"))
                .args(["--bus-address", &bus.address])
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("start keywarden-hwd"),
        );
        bus.wait_for_daemon(&mut hwd, HARDWARE_BUS_NAME, Duration::from_secs(60));
        let mut stack = Stack {
            bus,
            _hwd: hwd,
            policyd: None,
            data: data.to_owned(),
        };
        stack.start_policyd();
        stack
    }

    fn start_policyd(&mut self) {
        let d = &self.data;
        std::fs::write(self.bus.dir().join("policy.toml"), "").expect("policy.toml");
        let child = Command::new(binary("keywarden-policyd"))
            .arg("--database")
            .arg(d.join("keywarden.db"))
            .arg("--device-key")
            .arg(d.join("identity/device-key.pem"))
            .arg("--badge-key")
            .arg(d.join("secrets/badge.key"))
            .arg("--config")
            .arg(self.bus.dir().join("policy.toml"))
            .arg("--offsite-config")
            .arg(d.join("identity/offsite.toml"))
            .args(["--bus-address", &self.bus.address])
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start keywarden-policyd");
        let mut policyd = Daemon(child);
        self.bus
            .wait_for_daemon(&mut policyd, POLICY_BUS_NAME, Duration::from_secs(60));
        self.policyd = Some(policyd);
    }

    fn stop_policyd(&mut self) {
        self.policyd = None;
        // Gone from the bus once the process is reaped (the bus notices the closed socket).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let conn = self.bus.connect().await;
            let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus");
            let name = zbus::names::BusName::try_from(POLICY_BUS_NAME).expect("name");
            for _ in 0..500 {
                if !dbus
                    .name_has_owner(name.clone())
                    .await
                    .expect("NameHasOwner")
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("policyd did not leave the bus");
        });
    }

    fn cli(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .args(["--bus-address", &self.bus.address])
            .args(args)
            .output()
            .expect("run keywarden");
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(&[&["--json"], args].concat());
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn reset(&self, extra: &[&str]) -> Output {
        let data = self.data.display().to_string();
        let mut args = vec![
            "--bus-address",
            &self.bus.address,
            "factory",
            "reset",
            "--data-dir",
            &data,
        ];
        args.extend_from_slice(extra);
        keywarden(&args)
    }
}

#[test]
fn reset_wipes_the_records_and_keeps_the_identity() {
    let inputs = Inputs::new();
    let data = inputs.path("data");
    let identity = data.join("identity");
    let out = run(&inputs.args(&data, SERIAL));
    assert!(out.status.success(), "{:?}", text(&out));
    let device_public_key = record(&identity)["device_public_key"]
        .as_str()
        .expect("key")
        .to_owned();

    let mut stack = Stack::start(&data);
    stack.cli(&["user", "add", "alice", "--role", "staff"]);
    stack.cli(&[
        "key",
        "add",
        "101",
        "--tag",
        "TAG-101",
        "--kind",
        "unit",
        "--home-slot",
        "2",
    ]);
    assert_eq!(
        stack.json(&["user", "list"]).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        stack.json(&["key", "list"]).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(stack.json(&["audit", "key"])["key"], device_public_key);
    assert!(data.join("keywarden.db").exists() && data.join("secrets/badge.key").exists());
    let identity_before = tree(&identity);
    let badge_key_before = std::fs::read(data.join("secrets/badge.key")).expect("badge key");

    // Refused without --yes, and while policyd runs: nothing changes.
    let db_before = tree(&data);
    let out = stack.reset(&[]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("--yes"), "{:?}", text(&out));
    let out = stack.reset(&["--yes"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("keywarden-policyd is running"),
        "{:?}",
        text(&out)
    );
    // (policyd may have written to its database meanwhile; the files are all still there.)
    let names = |t: &BTreeMap<PathBuf, String>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&tree(&data)), names(&db_before));
    assert_eq!(
        stack.json(&["user", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    // Stopped: wiped, identity kept and said so.
    stack.stop_policyd();
    let out = stack.reset(&["--yes", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["serial"], SERIAL);
    assert_eq!(report["device_public_key"], device_public_key.as_str());
    let wiped: Vec<&str> = report["wiped"]
        .as_array()
        .expect("wiped")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        wiped.iter().any(|p| p.ends_with("/keywarden.db")),
        "{wiped:?}"
    );
    assert!(
        wiped.iter().any(|p| p.ends_with("/secrets/badge.key")),
        "{wiped:?}"
    );
    let kept = report["kept"].to_string();
    assert!(kept.contains("identity/device-key.pem") && kept.contains("identity/device.json"));
    for gone in [
        "keywarden.db",
        "keywarden.db-wal",
        "keywarden.db-shm",
        "secrets/badge.key",
    ] {
        assert!(!data.join(gone).exists(), "{gone} is still there");
    }
    assert_eq!(tree(&identity), identity_before, "the identity changed");

    // policyd starts on an empty database, with the same device key and a new badge key.
    stack.start_policyd();
    assert_eq!(
        stack.json(&["user", "list"]).as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        stack.json(&["key", "list"]).as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(stack.json(&["audit", "key"])["key"], device_public_key);
    assert_ne!(
        std::fs::read(data.join("secrets/badge.key")).expect("new badge key"),
        badge_key_before
    );
    assert_eq!(
        tree(&identity),
        identity_before,
        "policyd changed the identity"
    );

    // New audit checkpoints verify with the device key from the provisioning record.
    stack.cli(&["user", "add", "bob", "--role", "staff"]);
    let export = inputs.path("audit.jsonl");
    stack.cli(&["audit", "export", &export.display().to_string()]);
    let out = keywarden(&[
        "audit",
        "verify",
        &export.display().to_string(),
        "--key",
        &device_public_key,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let other = DeviceKey::generate().expect("key").public_hex();
    let out = keywarden(&[
        "audit",
        "verify",
        &export.display().to_string(),
        "--key",
        &other,
    ]);
    assert_eq!(out.status.code(), Some(1), "another key must not verify it");
}
