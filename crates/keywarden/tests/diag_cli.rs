//! `keywarden diag bundle | verify` against the real stack: a private `dbus-daemon` with the
//! shipped policy files, `keywarden-hwd` on the sim backend, `keywarden-policyd` on a real
//! SQLite file, a real journal file (written by `systemd-journal-remote`, read by `journalctl`).
//!
//! The redaction test plants 50 distinct canary secrets across the database, the
//! configuration, the identity directory, the journal and the daemons' environment, builds a
//! bundle through the CLI and checks that none of them appears in it: not in the compressed
//! file, not in the decompressed archive, not in any unpacked file.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keywarden_testbus::{binary, current_user, workspace_root, Daemon, PrivateBus};

const BOARD: &str = "crates/keywarden-hwd/boards/sim-demo.toml";

/// Made-up people: display name and login.
const PEOPLE: [(&str, &str); 5] = [
    ("Odalys Vantrecht", "ovantrecht"),
    ("Brixton Quellmoor", "bquellmoor"),
    ("Ysolde Farrowgate", "yfarrowgate"),
    ("Tamsin Okonkwert", "tokonkwert"),
    ("Lucan Drevisalo", "ldrevisalo"),
];
const PINS: [&str; 5] = ["58102937", "61937402", "70418253", "83920471", "94710368"];
const BADGES: [&str; 5] = [
    "BDG-QX7T-0001",
    "BDG-ZK3M-0002",
    "BDG-WV9R-0003",
    "BDG-HN2C-0004",
    "BDG-PL5F-0005",
];

struct Canaries(Vec<(String, &'static str)>);

impl Canaries {
    fn add(&mut self, value: impl Into<String>, place: &'static str) -> String {
        let value = value.into();
        assert!(
            !self.0.iter().any(|(v, _)| *v == value),
            "canary {value} twice"
        );
        self.0.push((value.clone(), place));
        value
    }
}

fn keywarden(bus: &PrivateBus, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary("keywarden"));
    cmd.args(["--bus-address", &bus.address])
        .args(args)
        .env("KW_CLI_API_TOKEN", "cnry-env-cli-token-5d8e")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run keywarden");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{input}\n").as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("keywarden output")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a journal file in `dir` with `entries` (unit, message) via systemd-journal-remote.
fn write_journal(dir: &Path, entries: &[(&str, String)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros();
    let mut export = String::new();
    for (i, (unit, message)) in entries.iter().enumerate() {
        assert!(!message.contains('\n'));
        let transport = if *unit == "kernel" {
            "_TRANSPORT=kernel\n".to_owned()
        } else {
            format!("_SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER={unit}\n")
        };
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n{transport}PRIORITY=6\nMESSAGE={message}\n\n",
            now - 1_000_000 + i as u128,
            1000 + i
        ));
    }
    std::fs::create_dir_all(dir).expect("journal dir");
    let remote = [
        "/usr/lib/systemd/systemd-journal-remote",
        "/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-journal-remote (tests/setup-host.sh installs it)");
    let mut child = Command::new(remote)
        .args(["--split-mode=none", "-o"])
        .arg(dir.join("test.journal"))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-journal-remote");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(export.as_bytes())
            .expect("export");
    }
    assert!(
        child.wait().expect("wait").success(),
        "journal-remote failed"
    );
}

struct Stack {
    bus: PrivateBus,
    _hwd: Daemon,
    _policyd: Daemon,
    data: PathBuf,
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stack with `policy_toml`, canaries planted in the daemons' environment.
fn start(c: &mut Canaries, policy_toml: &str, diag_args: &[String]) -> Stack {
    let bus = PrivateBus::start(
        &[
            "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
            "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
            "crates/keywarden-updated/dbus/org.keywarden.Update1.conf",
        ],
        &["keywarden", "keywarden-hw"],
        &["keywarden-admin", "keywarden-console"],
    );
    let root = workspace_root();
    let d = bus.dir().to_owned();
    let mut hwd = Daemon(
        Command::new(binary("keywarden-hwd"))
            .args(["--backend", "sim", "--allow-user", &current_user()])
            .arg("--board")
            .arg(root.join(BOARD))
            .args(["--bus-address", &bus.address])
            .env(
                "HWD_SERVICE_PASSWORD",
                c.add("cnry-env-hwd-pass-9b1c", "env"),
            )
            .spawn()
            .expect("start keywarden-hwd"),
    );
    // policyd starts once hwd is on the bus, as systemd orders them on the appliance.
    bus.wait_for_daemon(&mut hwd, "org.keywarden.Hardware1", Duration::from_secs(60));
    std::fs::write(d.join("policy.toml"), policy_toml).expect("policy.toml");
    let data = d.join("data");
    let policyd = Daemon(
        Command::new(binary("keywarden-policyd"))
            .arg("--database")
            .arg(data.join("keywarden.db"))
            .arg("--device-key")
            .arg(data.join("identity/device-key.pem"))
            .arg("--badge-key")
            .arg(data.join("secrets/badge.key"))
            .arg("--config")
            .arg(d.join("policy.toml"))
            .args(["--bus-address", &bus.address])
            .args(diag_args)
            .env("SMTP_PASSWORD", c.add("cnry-env-smtp-pass-77aa", "env"))
            .env(
                "AWS_SECRET_ACCESS_KEY",
                c.add("cnry-env-aws-secret-31f0", "env"),
            )
            .env(
                "KEYWARDEN_API_TOKEN",
                c.add("cnry-env-api-token-c4d2", "env"),
            )
            .spawn()
            .expect("start keywarden-policyd"),
    );
    c.add("cnry-env-cli-token-5d8e", "env (CLI)");
    let stack = Stack {
        bus,
        _hwd: hwd,
        _policyd: policyd,
        data,
    };
    wait_until("policyd on the bus", || {
        keywarden(&stack.bus, &["audit", "key"], None)
            .status
            .success()
    });
    stack
}

/// Every stored form of a bundle: the file, the decompressed tar, each verified file.
fn forms(bundle: &[u8], key: &str, bus: &PrivateBus, file: &Path) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![("compressed bundle".to_owned(), bundle.to_vec())];
    let mut tar = Vec::new();
    zstd::Decoder::new(bundle)
        .expect("zstd")
        .read_to_end(&mut tar)
        .expect("decompress");
    forms.push(("decompressed tar".to_owned(), tar));
    let extract = file.with_extension("d");
    ok(
        keywarden(
            bus,
            &[
                "diag",
                "verify",
                file.to_str().expect("utf8"),
                "--key",
                key,
                "--extract",
                extract.to_str().expect("utf8"),
            ],
            None,
        ),
        "diag verify --extract",
    );
    for entry in std::fs::read_dir(&extract).expect("extracted") {
        let path = entry.expect("entry").path();
        forms.push((
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            std::fs::read(&path).expect("read"),
        ));
    }
    forms
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let h = String::from_utf8_lossy(haystack).to_lowercase();
    h.contains(&needle.to_lowercase())
}

#[test]
fn a_bundle_carries_none_of_50_planted_secrets_and_verifies_off_the_device() {
    let mut c = Canaries(Vec::new());
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();

    // Configuration: the policy file (SMTP login, password file, webhook URL with a token in its
    // path, secret file, addresses, a comment) and the files it points to.
    let smtp_user = c.add("cnry-cfg-smtp-login-4e2f", "config");
    let smtp_pass = c.add("cnry-file-smtp-password-8c1d", "password file");
    let hook_secret = c.add("cnry-file-webhook-secret-0a9b", "secret file");
    let hook_token = c.add("T0CNRY9F3/B0CNRY2A7/XoXoCnryHookToken", "config url");
    let mail_from = c.add("cnry.sender.7b2@example.org", "config");
    let mail_to = c.add("cnry.security.1f4@example.org", "config");
    let comment = c.add("cnry-cfg-comment-admin-pw-6d3e", "config comment");
    std::fs::write(t.join("smtp-password"), &smtp_pass).expect("pw");
    std::fs::write(t.join("webhook-secret"), &hook_secret).expect("secret");
    let policy_toml = format!(
        r#"# root password for the mail relay: {comment}
[notify]
cabinet = "front-desk"
[notify.smtp]
host = "127.0.0.1"
port = 9
from = "Keywarden <{mail_from}>"
username = "{smtp_user}"
password-file = "{}"
[[notify.email]]
to = "{mail_to}"
alerts = ["door-forced"]
[[notify.webhook]]
url = "https://hooks.example.org/services/{hook_token}"
alerts = ["tamper"]
secret-file = "{}"
"#,
        t.join("smtp-password").display(),
        t.join("webhook-secret").display(),
    );
    // The updater's board file, with a secret in a comment and a fingerprint module password.
    let update_comment = c.add("cnry-upd-comment-9e8d", "update config comment");
    let board_password = c.add("30571946", "board: fingerprint password");
    std::fs::write(
        t.join("update.toml"),
        format!(
            "# support login: {update_comment}\ncompatible = \"keywarden-qemu-x86_64\"\n[slots]\nA = \"/dev/vda2\"\nB = \"/dev/vda3\"\n[bootloader]\nkind = \"grub\"\ngrubenv = \"/boot/efi/grubenv\"\n[keys]\ntrusted = [\"/usr/share/keywarden/update/keys\"]\n"
        ),
    )
    .expect("update.toml");
    let board = std::fs::read_to_string(workspace_root().join(BOARD)).expect("board");
    std::fs::write(
        t.join("board.toml"),
        format!("{board}\n[extra]\npassword = {board_password}\n"),
    )
    .expect("board.toml");

    // The journal: what a careless log line could leak.
    let journal_pin = c.add("40718293", "journal");
    let journal_entries = vec![
        (
            "keywarden-policyd.service",
            format!(
                "smtp login failed: password={}",
                c.add("cnry-jr-pass-1a2b", "journal")
            ),
        ),
        (
            "keywarden-policyd.service",
            format!("webhook token: {}", c.add("cnry-jr-token-3c4d", "journal")),
        ),
        (
            "keywarden-policyd.service",
            format!(
                "sent header Authorization: Bearer {}",
                c.add("cnryJrBearerXy5e6f", "journal")
            ),
        ),
        (
            "keywarden-policyd.service",
            format!("debug: user typed PIN {journal_pin}"),
        ),
        (
            "keywarden-hwd.service",
            format!("scan: badge_code={}", c.add("BDG-JRNL-7788", "journal")),
        ),
        (
            "keywarden-policyd.service",
            format!(
                "-----BEGIN PRIVATE KEY----- {} -----END PRIVATE KEY-----",
                c.add("MC4CAQAwBQYDK2VwBCIEIcnryPemBody", "journal")
            ),
        ),
        (
            "keywarden-policyd.service",
            format!("granted 204 to {} for MAINT", PEOPLE[0].0),
        ),
        (
            "keywarden-policyd.service",
            format!("lockout for {}", PEOPLE[1].1),
        ),
        (
            "keywarden-policyd.service",
            format!(
                "mail to {} failed",
                c.add("cnry.jr.mail@example.net", "journal")
            ),
        ),
        (
            "keywarden-updated.service",
            format!(
                "fetch https://{}@updates.example.org/x failed",
                c.add("cnryuser:cnryJrUrlPass", "journal")
            ),
        ),
        (
            "keywarden-updated.service",
            format!("api_key = {}", c.add("cnry-jr-apikey-5566", "journal")),
        ),
        (
            "kernel",
            format!(
                "usb 1-1: SerialNumber: secret={}",
                c.add("cnry-kern-serial-99", "kernel log")
            ),
        ),
        (
            "keywarden-policyd.service",
            format!(
                "hmac {}",
                c.add(
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15cafe0a08",
                    "journal"
                )
            ),
        ),
    ];
    let journal_dir = t.join("journal");
    write_journal(&journal_dir, &journal_entries);
    // The identity directory: a provisioning record with a certificate request, a TLS key.
    let diag_args: Vec<String> = vec![
        "--diag-journal-directory".into(),
        journal_dir.display().to_string(),
        "--diag-update-config".into(),
        t.join("update.toml").display().to_string(),
        "--diag-board".into(),
        t.join("board.toml").display().to_string(),
        "--diag-selftest-report".into(),
        t.join("selftest.json").display().to_string(),
    ];
    let selftest_secret = c.add("cnry-selftest-detail-pw-42", "selftest report");
    std::fs::write(
        t.join("selftest.json"),
        format!(
            r#"{{"passed": true, "checks": [{{"check": "gpio:door-lock", "passed": true, "detail": "password={selftest_secret}"}}]}}"#
        ),
    )
    .expect("selftest.json");

    let stack = start(&mut c, &policy_toml, &diag_args);
    let identity = stack.data.join("identity");
    let csr = c.add("cnry-identity-csr-body-ab12", "device.json");
    let client_key = c.add("cnry-identity-client-key-cd34", "client.key");
    std::fs::write(
        identity.join("device.json"),
        format!(
            r#"{{"serial": "KW-TEST-0042", "model": "kc-20", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n{csr}\n-----END CERTIFICATE REQUEST-----\n", "client_key_password": "{}"}}"#,
            c.add("cnry-identity-keypass-ef56", "device.json")
        ),
    )
    .expect("device.json");
    std::fs::write(identity.join("client.key"), &client_key).expect("client.key");

    // The database: people (display and login names), their PINs and badges, key tags and notes.
    let bus = &stack.bus;
    ok(
        keywarden(bus, &["reason", "set", "MAINT", "maintenance"], None),
        "reason",
    );
    for (i, (display, login)) in PEOPLE.iter().enumerate() {
        c.add(*display, "database: display name");
        c.add(*login, "database: login");
        c.add(PINS[i], "database: PIN");
        c.add(BADGES[i], "database: badge");
        ok(
            keywarden(
                bus,
                &[
                    "user",
                    "add",
                    login,
                    "--role",
                    "staff",
                    "--display-name",
                    display,
                ],
                None,
            ),
            "user add",
        );
        ok(
            keywarden(bus, &["user", "pin", login], Some(PINS[i])),
            "pin",
        );
        ok(
            keywarden(bus, &["user", "badge", login], Some(BADGES[i])),
            "badge",
        );
    }
    for (i, slot) in [1u32, 2, 3].iter().enumerate() {
        let tag = c.add(format!("TAG-CNRY-{i}X7Q"), "database: key tag");
        let notes = c.add(
            format!("cnry-key-notes-alarm-code-{i}91"),
            "database: key notes",
        );
        let label = format!("Unit {}", 100 + i);
        ok(
            keywarden(
                bus,
                &[
                    "key",
                    "add",
                    &label,
                    "--tag",
                    &tag,
                    "--kind",
                    "unit",
                    "--notes",
                    &notes,
                    "--home-slot",
                    &slot.to_string(),
                ],
                None,
            ),
            "key add",
        );
    }
    // A person-subject alarm: a PIN lockout is raised by wrong PINs at the cabinet; here the
    // person's name reaches the bundle only as a pseudonym (checked below via the journal).

    let private_pem = std::fs::read_to_string(identity.join("device-key.pem")).expect("key pem");
    let pem_body: String = private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    c.add(pem_body, "identity: device key");
    let badge_key = std::fs::read(stack.data.join("secrets/badge.key")).expect("badge key");
    c.add(hex_lower(&badge_key), "secrets: badge key (hex)");

    assert!(c.0.len() >= 50, "only {} canaries", c.0.len());

    // Build the bundle through the CLI.
    let file = t.join("cabinet.kwdiag");
    let made = ok(
        keywarden(
            bus,
            &["diag", "bundle", "-o", file.to_str().expect("utf8")],
            None,
        ),
        "diag bundle",
    );
    assert!(made.contains("KW-TEST-0042"), "{made}");
    let key = ok(keywarden(bus, &["audit", "key"], None), "audit key")
        .trim()
        .to_owned();
    let bundle = std::fs::read(&file).expect("bundle");
    assert!(bundle.len() < 4 << 20, "bundle {} bytes", bundle.len());

    let forms = forms(&bundle, &key, bus, &file);
    let mut leaks = Vec::new();
    for (value, place) in &c.0 {
        for (form, bytes) in &forms {
            if contains(bytes, value) {
                leaks.push(format!("{value} (planted in {place}) found in {form}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // Surnames alone are names too.
    for (display, _) in PEOPLE {
        let surname = display.split_whitespace().last().expect("surname");
        for (form, bytes) in &forms {
            assert!(!contains(bytes, surname), "{surname} in {form}");
        }
    }

    // ...and it is still useful: the journal lines are there, names as pseudonyms, the verdicts.
    let file_text = |name: &str| {
        let (_, bytes) = forms
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        String::from_utf8_lossy(bytes).into_owned()
    };
    let journal = file_text("journal.txt");
    assert_eq!(
        journal.lines().count(),
        journal_entries
            .iter()
            .filter(|(u, _)| *u != "kernel")
            .count(),
        "{journal}"
    );
    assert!(journal.contains("granted 204 to person-"), "{journal}");
    assert!(
        journal.contains("keywarden-policyd.service <6>"),
        "{journal}"
    );
    assert!(file_text("kernel.txt").contains("usb 1-1: SerialNumber"));
    let database: serde_json::Value =
        serde_json::from_str(&file_text("database.json")).expect("database.json");
    assert_eq!(database["integrity_check"], "ok", "{database}");
    assert_eq!(database["audit_chain"]["verdict"], "ok", "{database}");
    assert_eq!(database["counts"]["users"], 5, "{database}");
    let hardware: serde_json::Value =
        serde_json::from_str(&file_text("hardware.json")).expect("hardware.json");
    assert_eq!(hardware["backend"], "sim", "{hardware}");
    assert_eq!(hardware["self_test_passed"], true, "{hardware}");
    let policy = file_text("config-policy.toml");
    assert!(
        policy.contains("[notify.smtp]") && policy.contains("hooks.example.org"),
        "{policy}"
    );
    let collection = file_text("collection.json");
    assert!(collection.contains("\"update.json\""), "{collection}");

    // Pseudonyms are stable: a second bundle names the same person the same way.
    let pseudonym = journal
        .split("granted 204 to ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("pseudonym")
        .to_owned();
    let second = t.join("second.kwdiag");
    ok(
        keywarden(
            bus,
            &[
                "diag",
                "bundle",
                "-o",
                second.to_str().expect("utf8"),
                "--no-self-test",
            ],
            None,
        ),
        "second bundle",
    );
    let forms2 = self::forms(&std::fs::read(&second).expect("second"), &key, bus, &second);
    let journal2 = forms2
        .iter()
        .find(|(n, _)| n == "journal.txt")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .expect("journal 2");
    assert!(
        journal2.contains(&pseudonym),
        "{pseudonym} not in\n{journal2}"
    );

    // An existing file is never overwritten.
    let again = keywarden(
        bus,
        &["diag", "bundle", "-o", file.to_str().expect("utf8")],
        None,
    );
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert_eq!(std::fs::read(&file).expect("bundle"), bundle);
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_tampered_bundle_or_another_devices_key_fails_verify() {
    let mut c = Canaries(Vec::new());
    let stack = start(&mut c, "", &[]);
    let bus = &stack.bus;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("b.kwdiag");
    ok(
        keywarden(
            bus,
            &["diag", "bundle", "-o", file.to_str().expect("utf8")],
            None,
        ),
        "diag bundle",
    );
    let key = ok(keywarden(bus, &["audit", "key"], None), "audit key")
        .trim()
        .to_owned();
    let verify = |path: &Path, key: &str| {
        keywarden(
            bus,
            &["diag", "verify", path.to_str().expect("utf8"), "--key", key],
            None,
        )
    };
    let good = verify(&file, &key);
    assert!(good.status.success(), "{good:?}");
    let json = keywarden(
        bus,
        &[
            "--json",
            "diag",
            "verify",
            file.to_str().expect("utf8"),
            "--key",
            &key,
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["device_key"], key.as_str());

    // One byte changed inside a file (the archive recompressed, so only the content differs).
    let bytes = std::fs::read(&file).expect("read");
    let mut tar = Vec::new();
    zstd::Decoder::new(&bytes[..])
        .expect("zstd")
        .read_to_end(&mut tar)
        .expect("decompress");
    let at = find(&tar, b"\"backend\"").expect("hardware.json in the tar");
    tar[at + 1] = b'B';
    let tampered = tmp.path().join("tampered.kwdiag");
    std::fs::write(&tampered, zstd::encode_all(&tar[..], 3).expect("compress")).expect("write");
    let out = verify(&tampered, &key);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hardware.json: SHA-256 differs"), "{err}");

    // A flipped byte in the compressed file.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let path = tmp.path().join("flipped.kwdiag");
    std::fs::write(&path, &flipped).expect("write");
    assert_eq!(verify(&path, &key).status.code(), Some(1));

    // Another device's key.
    let other = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let out = verify(&file, other);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the expected"));
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
