//! The collector-side commands, run as the binary on files: `audit verify --collector` on a copy
//! as the offsite shipper sends it (a header per connection, a resend, heartbeats), and
//! `collector check` on a directory of copies with a silent cabinet. Neither needs a bus.
//! (The copy from a real rsyslog collector is verified in keywarden-policyd's tests/offsite.rs.)

use std::fs::File;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use keywarden_audit::collector::heartbeat_line;
use keywarden_audit::{checkpoint_line, entry_line, header_line, Chain, DeviceKey, GENESIS};

fn keywarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(args)
        .output()
        .expect("run keywarden")
}

/// A copy of 12 entries in two connections, the second resending entries 9 and 10.
fn copy(key: &DeviceKey) -> String {
    let mut chain = Chain::new(0, GENESIS);
    let t = 1_790_000_000_000;
    let records: Vec<_> = (0..12)
        .map(|i| chain.append(t + i, "grant", "user:7", "slot:3", r#"{"via":"badge"}"#))
        .collect();
    let mut lines = vec![header_line(&key.public_hex(), 1, &GENESIS, t).unwrap()];
    for (e, h) in &records[..10] {
        lines.push(entry_line(e, h).unwrap());
    }
    lines.push(heartbeat_line(t + 20, 10));
    lines.push(header_line(&key.public_hex(), 9, &records[7].1, t + 30).unwrap());
    for (e, h) in &records[8..] {
        lines.push(entry_line(e, h).unwrap());
    }
    let (last, hash) = &records[11];
    lines.push(checkpoint_line(&key.sign_checkpoint(12, hash, last.at_ms)).unwrap());
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn audit_verify_collector_checks_a_copy_with_resends() {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::from_bytes(&[5; 32]);
    let path = dir.path().join("cabinet-1.log");
    std::fs::write(&path, copy(&key)).unwrap();
    let file = path.to_str().unwrap();
    let out = keywarden(&[
        "--json",
        "audit",
        "verify",
        "--collector",
        file,
        "--key",
        &key.public_hex(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["last_seq"], 12);
    assert_eq!(report["duplicates"], 2);
    assert_eq!(report["heartbeats"], 1);
    assert_eq!(report["unsigned_tail"], serde_json::Value::Null);

    // An edited resend is tampering: exit 1, naming the entry.
    let edited = copy(&key).replacen(
        r#"{"entry":{"seq":10,"at_ms":1790000000009,"kind":"grant","actor":"user:7""#,
        r#"{"entry":{"seq":10,"at_ms":1790000000009,"kind":"grant","actor":"user:8""#,
        2,
    );
    let first = edited.find("\"user:8\"").unwrap();
    let edited = format!(
        "{}{}",
        &edited[..first],
        edited[first..].replacen("\"user:8\"", "\"user:7\"", 1)
    );
    std::fs::write(&path, edited).unwrap();
    let out = keywarden(&[
        "audit",
        "verify",
        "--collector",
        file,
        "--key",
        &key.public_hex(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("entry 10 appears again at line"),
        "{stderr}"
    );

    // Another device's key is refused.
    let other = DeviceKey::from_bytes(&[6; 32]).public_hex();
    std::fs::write(&path, copy(&key)).unwrap();
    let out = keywarden(&["audit", "verify", "--collector", file, "--key", &other]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn collector_check_names_the_silent_cabinet() {
    let dir = tempfile::tempdir().unwrap();
    let now_line = format!("{}\n", heartbeat_line(1_790_000_000_000, 41));
    std::fs::write(dir.path().join("lobby.log"), &now_line).unwrap();
    std::fs::write(dir.path().join("garage.log"), &now_line).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a copy").unwrap();
    let d = dir.path().to_str().unwrap();

    let out = keywarden(&["collector", "check", d, "--max-silence", "15m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("garage") && table.contains("lobby") && table.contains("heartbeat 41"),
        "{table}"
    );

    // The garage has not been heard from for 20 minutes.
    File::options()
        .write(true)
        .open(dir.path().join("garage.log"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(20 * 60))
        .unwrap();
    let out = keywarden(&["--json", "collector", "check", d, "--max-silence", "15m"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cabinet offline from its offsite collector (silent for more than 900 s): garage"
        ),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cabinets = report["cabinets"].as_array().unwrap();
    assert_eq!(cabinets.len(), 2);
    assert_eq!(
        (
            cabinets[0]["cabinet"].as_str(),
            cabinets[0]["offline"].as_bool()
        ),
        (Some("garage"), Some(true))
    );
    assert_eq!(
        (
            cabinets[1]["cabinet"].as_str(),
            cabinets[1]["offline"].as_bool()
        ),
        (Some("lobby"), Some(false))
    );

    let empty = tempfile::tempdir().unwrap();
    let out = keywarden(&[
        "collector",
        "check",
        empty.path().to_str().unwrap(),
        "--max-silence",
        "15m",
    ]);
    assert_eq!(out.status.code(), Some(1));
}
