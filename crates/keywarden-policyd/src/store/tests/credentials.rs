//! Badge key file, badge hashes, PIN hashing and PIN rules.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::error::Error;
use crate::model::Settings;
use crate::store::{check_pin_strength, hash_pin, verify_pin, BadgeKey};

#[test]
fn the_badge_key_file_is_created_0600_and_hashes_stay_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badge.key");
    let (key, created) = BadgeKey::load_or_create(&path).unwrap();
    assert!(created);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let hash = key.hash("0004217356");
    assert_eq!(hash.len(), 64);
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let (again, created) = BadgeKey::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(again.hash("0004217356"), hash);
    assert_eq!(BadgeKey::load(&path).unwrap().hash("0004217356"), hash);
    assert_ne!(again.hash("0004217357"), hash);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn create_never_replaces_an_existing_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badge.key");
    let (key, _) = BadgeKey::load_or_create(&path).unwrap();
    match BadgeKey::create(&path) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(BadgeKey::load(&path).unwrap().hash("x"), key.hash("x"));
}

#[test]
fn a_wrong_size_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badge.key");
    for len in [0usize, 31, 33, 64] {
        fs::write(&path, vec![1u8; len]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        match BadgeKey::load_or_create(&path) {
            Err(Error::BadgeKeySize { len: found, .. }) => assert_eq!(found, len as u64),
            other => panic!("{len} bytes: expected BadgeKeySize, got {other:?}"),
        }
    }
}

#[test]
fn a_key_file_open_to_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badge.key");
    BadgeKey::create(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        BadgeKey::load(&path),
        Err(Error::BadgeKeyMode { mode: 0o644, .. })
    ));
}

#[test]
fn badge_hashes_depend_on_the_key() {
    let a = BadgeKey::from_bytes(&[1; 32]);
    let b = BadgeKey::from_bytes(&[2; 32]);
    assert_eq!(a.hash("123"), a.hash("123"));
    assert_ne!(a.hash("123"), b.hash("123"));
    assert!(!format!("{a:?}").contains("01"), "Debug shows no key bytes");
}

#[test]
fn pins_hash_with_argon2id_and_verify() {
    let phc = hash_pin("480315").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(!phc.contains("480315"));
    assert!(verify_pin(&phc, "480315"));
    assert!(!verify_pin(&phc, "480316"));
    assert!(!verify_pin(&phc, ""));
    assert!(!verify_pin("not a phc string", "480315"));
    assert_ne!(hash_pin("480315").unwrap(), phc, "a fresh salt each time");
}

#[test]
fn pin_rules() {
    let settings = Settings {
        pin_min_length: 4,
        pin_max_length: 8,
        ..Settings::default()
    };
    for good in ["4803", "48031597", "1235", "0912", "7788", "9870", "1212"] {
        assert!(
            check_pin_strength(good, &settings).is_ok(),
            "{good} refused"
        );
    }
    for (bad, why) in [
        ("", "digits"),
        ("48a3", "digits"),
        ("4 803", "digits"),
        ("４８０３", "digits"),
        ("480", "shorter"),
        ("480315971", "longer"),
        ("0000", "repeated"),
        ("77777777", "repeated"),
        ("1234", "run"),
        ("3456789", "run"),
        ("9876", "run"),
        ("6543210", "run"),
    ] {
        match check_pin_strength(bad, &settings) {
            Err(Error::WeakPin { reason }) => {
                assert!(reason.contains(why), "{bad:?}: {reason}");
                assert!(
                    bad.is_empty() || !reason.contains(bad),
                    "reason repeats the PIN"
                );
            }
            other => panic!("{bad:?}: expected WeakPin, got {other:?}"),
        }
    }
}
