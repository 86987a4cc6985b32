//! Unit tests: pinned vectors, encoding, chain, export format, verifier edge cases, key storage.
//! Tampering properties are in `tests/tamper.rs`, streaming in `tests/streaming.rs`.

use std::fs;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::*;

const T0: i64 = 1_700_000_000_000;

fn key() -> DeviceKey {
    DeviceKey::from_bytes(&[7; 32])
}

fn entry(seq: u64, at_ms: i64, kind: &str, actor: &str, subject: &str, detail: &str) -> Entry {
    Entry {
        seq,
        at_ms,
        kind: kind.to_owned(),
        actor: actor.to_owned(),
        subject: subject.to_owned(),
        detail: detail.to_owned(),
    }
}

fn hex32(text: &str) -> Digest {
    let mut out = [0; 32];
    hex::decode_to_slice(text, &mut out).expect("test hex");
    out
}

/// An export of `n` entries with a checkpoint every `every` entries and one at the end.
fn export(key: &DeviceKey, n: u64, every: u64) -> (Vec<u8>, Digest) {
    let mut chain = Chain::new(0, GENESIS);
    let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), 1, &GENESIS, T0 + 99).unwrap();
    for i in 1..=n {
        let (e, h) = chain.append(T0 + i as i64, "grant", "user:7", "slot:3", r#"{"n":1}"#);
        out.entry(&e, &h).unwrap();
        if i % every == 0 || i == n {
            out.checkpoint(&key.sign_checkpoint(i, &h, T0 + 50))
                .unwrap();
        }
    }
    (out.finish().unwrap(), chain.head().1)
}

fn verify(file: &[u8]) -> Result<Report, VerifyError> {
    verify_export(file, Some(&key().verifying_key()))
}

fn lines(file: &[u8]) -> Vec<String> {
    String::from_utf8(file.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

fn malformed_line(result: Result<Report, VerifyError>) -> u64 {
    match result {
        Err(VerifyError::Malformed { line, .. }) => line,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// ---- pinned vectors (computed once with an independent Python implementation of the spec) ----

#[test]
fn entry_hash_vectors_are_pinned() {
    let e1 = entry(1, T0, "grant", "user:7", "slot:3", r#"{"via":"badge"}"#);
    let h1 = entry_hash(&GENESIS, &e1);
    assert_eq!(
        hex::encode(h1),
        "770b8baaa6113ac5bedc717c8f9f889b81893354b6744d62f74f94dc783b53ff"
    );
    // Negative time, an empty field and non-ASCII text.
    let e2 = entry(2, -5, "denial", "", "slot:ü", "{}");
    assert_eq!(
        hex::encode(entry_hash(&h1, &e2)),
        "f767ede743c18f79481250090214ff2357a41e1151a63ac4d2441ea7f7e6a484"
    );
}

#[test]
fn checkpoint_message_and_signature_are_pinned() {
    let hash = hex32("f767ede743c18f79481250090214ff2357a41e1151a63ac4d2441ea7f7e6a484");
    let at = 1_700_000_100_000;
    assert_eq!(
        hex::encode(Checkpoint::message(2, &hash, at)),
        "6b657977617264656e2d61756469742d636865636b706f696e742d7631000000000000000002\
         f767ede743c18f79481250090214ff2357a41e1151a63ac4d2441ea7f7e6a4840000018bcfe6eea0"
    );
    let key = key();
    assert_eq!(
        key.public_hex(),
        "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
    );
    let cp = key.sign_checkpoint(2, &hash, at);
    assert_eq!(
        hex::encode(cp.signature),
        "9e6a1dbe6407496545e396f79ba16ddb56556c51456f1d824ca4794f4d9e39cf\
         60b671fdaa1bc84e64dec038c5b98ba7ceb4faa7cb84ec88231c4a97c2884501"
    );
    assert_eq!(cp.verify(&key.verifying_key()), Ok(()));
}

#[test]
fn export_lines_are_pinned() {
    let key = key();
    let mut chain = Chain::new(0, GENESIS);
    let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), 1, &GENESIS, 9).unwrap();
    let (e, h) = chain.append(T0, "grant", "user:7", "slot:3", r#"{"via":"badge"}"#);
    out.entry(&e, &h).unwrap();
    out.checkpoint(&key.sign_checkpoint(1, &h, 8)).unwrap();
    let text = String::from_utf8(out.finish().unwrap()).unwrap();
    let sig = hex::encode(key.sign_checkpoint(1, &h, 8).signature);
    let expected = format!(
        "{{\"format\":\"keywarden-audit\",\"version\":1,\"device_key\":\"{key}\",\"first_seq\":1,\"prev_hash\":\"{zero}\",\"exported_at_ms\":9}}\n\
         {{\"entry\":{{\"seq\":1,\"at_ms\":1700000000000,\"kind\":\"grant\",\"actor\":\"user:7\",\"subject\":\"slot:3\",\"detail\":\"{{\\\"via\\\":\\\"badge\\\"}}\",\"hash\":\"770b8baaa6113ac5bedc717c8f9f889b81893354b6744d62f74f94dc783b53ff\"}}}}\n\
         {{\"checkpoint\":{{\"seq\":1,\"hash\":\"770b8baaa6113ac5bedc717c8f9f889b81893354b6744d62f74f94dc783b53ff\",\"at_ms\":8,\"signature\":\"{sig}\"}}}}\n",
        key = key.public_hex(),
        zero = "0".repeat(64),
    );
    assert_eq!(text, expected);
}

// ---- encoding ----

#[test]
fn moving_a_byte_between_fields_changes_the_hash() {
    let base = ["grant", "user:7", "slot:3", r#"{"a":1}"#];
    let hash_of = |f: &[String; 4]| entry_hash(&GENESIS, &entry(1, T0, &f[0], &f[1], &f[2], &f[3]));
    let original = base.map(str::to_owned);
    let reference = hash_of(&original);
    for i in 0..3 {
        // Last byte of field i to the front of field i+1, and first byte of i+1 to the end of i.
        let mut left = original.clone();
        let moved = left[i].pop().unwrap();
        left[i + 1].insert(0, moved);
        assert_ne!(hash_of(&left), reference, "fields {i} and {}", i + 1);
        let mut right = original.clone();
        let moved = right[i + 1].remove(0);
        right[i].push(moved);
        assert_ne!(hash_of(&right), reference, "fields {i} and {}", i + 1);
    }
    // Same concatenation, different split, including empty fields.
    let a = entry_hash(&GENESIS, &entry(1, 0, "ab", "", "c", ""));
    let b = entry_hash(&GENESIS, &entry(1, 0, "a", "b", "c", ""));
    let c = entry_hash(&GENESIS, &entry(1, 0, "", "ab", "c", ""));
    let d = entry_hash(&GENESIS, &entry(1, 0, "abc", "", "", ""));
    assert!(a != b && a != c && a != d && b != c && b != d && c != d);
}

#[test]
fn every_field_and_the_link_is_hashed() {
    let e = entry(5, T0, "grant", "user:7", "slot:3", "{}");
    let prev = [9; 32];
    let h = entry_hash(&prev, &e);
    let mut other_prev = prev;
    other_prev[31] ^= 1;
    assert_ne!(entry_hash(&other_prev, &e), h);
    let edits: [fn(&mut Entry); 6] = [
        |e| e.seq += 1,
        |e| e.at_ms += 1,
        |e| e.kind.push('x'),
        |e| e.actor.push('x'),
        |e| e.subject.push('x'),
        |e| e.detail.push(' '),
    ];
    for edit in edits {
        let mut edited = e.clone();
        edit(&mut edited);
        assert_ne!(entry_hash(&prev, &edited), h, "{edited:?}");
    }
    // seq and at_ms are separate fixed-width fields: swapping their values changes the hash.
    let swapped = Entry {
        seq: 7,
        at_ms: 5,
        ..e.clone()
    };
    assert_ne!(
        entry_hash(&prev, &swapped),
        entry_hash(
            &prev,
            &Entry {
                seq: 5,
                at_ms: 7,
                ..e
            }
        )
    );
}

// ---- chain ----

#[test]
fn chain_appends_and_resumes_from_a_stored_head() {
    let mut chain = Chain::new(0, GENESIS);
    assert_eq!((chain.next_seq(), chain.head()), (1, (0, GENESIS)));
    let (e1, h1) = chain.append(T0, "grant", "a", "b", "{}");
    assert_eq!((e1.seq, h1), (1, entry_hash(&GENESIS, &e1)));
    let (e2, h2) = chain.append(T0 + 1, "return", "a", "b", "{}");
    assert_eq!((e2.seq, h2), (2, entry_hash(&h1, &e2)));
    assert_eq!((chain.next_seq(), chain.head()), (3, (2, h2)));

    // A store restarting from its last row continues the same chain.
    let mut resumed = Chain::new(1, h1);
    assert_eq!(resumed.append(T0 + 1, "return", "a", "b", "{}"), (e2, h2));
}

// ---- export round trip ----

#[test]
fn export_round_trips() {
    let key = key();
    let (file, head) = export(&key, 10, 3);
    let report = verify(&file).unwrap();
    assert_eq!(
        report,
        Report {
            entries: 10,
            first_seq: 1,
            last_seq: 10,
            checkpoints: 4, // 3, 6, 9, 10
            head,
            key_hex: key.public_hex(),
        }
    );
    // Without a trusted key the header's key is used and reported.
    assert_eq!(verify_export(file.as_slice(), None), Ok(report));
}

#[test]
fn a_partial_export_verifies_from_its_prev_hash() {
    let key = key();
    let mut chain = Chain::new(0, GENESIS);
    for i in 0..4 {
        chain.append(T0 + i, "grant", "a", "b", "{}");
    }
    let (last, prev) = chain.head();
    let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), last + 1, &prev, T0).unwrap();
    for i in 0..3 {
        let (e, h) = chain.append(T0 + 10 + i, "removal", "a", "b", r#"{"slot":2}"#);
        out.entry(&e, &h).unwrap();
    }
    let (seq, head) = chain.head();
    out.checkpoint(&key.sign_checkpoint(seq, &head, T0))
        .unwrap();
    let file = out.finish().unwrap();
    let report = verify(&file).unwrap();
    assert_eq!(
        (report.entries, report.first_seq, report.last_seq),
        (3, 5, 7)
    );

    // An edited prev_hash breaks the first entry's link.
    let mut l = lines(&file);
    let mut other = prev;
    other[0] ^= 1;
    l[0] = l[0].replace(&hex::encode(prev), &hex::encode(other));
    assert_eq!(verify(&join(&l)), Err(VerifyError::EditedEntry { seq: 5 }));
    // A first_seq moved without the entries puts the first entry out of place.
    let mut l = lines(&file);
    l[0] = l[0].replace("\"first_seq\":5", "\"first_seq\":4");
    assert_eq!(
        verify(&join(&l)),
        Err(VerifyError::MissingEntries {
            expected: 4,
            found: 5
        })
    );
}

#[test]
fn text_fields_with_json_escapes_and_unicode_round_trip() {
    let key = key();
    let mut chain = Chain::new(0, GENESIS);
    let mut out = ExportWriter::new(Vec::new(), &key.public_hex(), 1, &GENESIS, T0).unwrap();
    let detail = "{\"note\":\"line\\nbreak \\\"quoted\\\" \\u00e9\",\"tab\":\"\t\"}";
    let (e, h) = chain.append(T0, "admin\n\"change\"", "ünïcødé 🔑", "\\slot\u{0}", detail);
    out.entry(&e, &h).unwrap();
    out.checkpoint(&key.sign_checkpoint(1, &h, T0)).unwrap();
    assert_eq!(verify(&out.finish().unwrap()).map(|r| r.head), Ok(h));
}

// ---- verifier ----

#[test]
fn verifier_errors_are_sticky() {
    let key = key();
    let mut chain = Chain::new(0, GENESIS);
    let (e1, h1) = chain.append(T0, "grant", "a", "b", "{}");
    let (e2, h2) = chain.append(T0, "grant", "a", "b", "{}");
    let mut verifier = Verifier::new(key.verifying_key(), 1, GENESIS);
    verifier.entry(&e1, &h1).unwrap();
    let wrong = VerifyError::EditedEntry { seq: 2 };
    assert_eq!(verifier.entry(&e2, &h1), Err(wrong.clone()));
    // Even valid input now fails with the same error.
    assert_eq!(verifier.entry(&e2, &h2), Err(wrong.clone()));
    assert_eq!(
        verifier.checkpoint(&key.sign_checkpoint(1, &h1, T0)),
        Err(wrong.clone())
    );
    assert_eq!(verifier.finish(), Err(wrong));
}

#[test]
fn verifier_refuses_first_seq_zero() {
    let verifier = Verifier::new(key().verifying_key(), 0, GENESIS);
    assert_eq!(verifier.finish(), Err(VerifyError::InvalidFirstSeq));
}

#[test]
fn verifier_requires_entries_and_a_covering_checkpoint() {
    let key = key();
    assert_eq!(
        Verifier::new(key.verifying_key(), 1, GENESIS).finish(),
        Err(VerifyError::Empty)
    );
    let mut chain = Chain::new(0, GENESIS);
    let (e1, h1) = chain.append(T0, "grant", "a", "b", "{}");
    let mut verifier = Verifier::new(key.verifying_key(), 1, GENESIS);
    verifier.entry(&e1, &h1).unwrap();
    assert_eq!(
        verifier.finish(),
        Err(VerifyError::UnsignedTail {
            last_checkpoint: None,
            last_entry: 1
        })
    );
}

#[test]
fn checkpoint_signature_covers_every_field() {
    let key = key();
    let cp = key.sign_checkpoint(4, &[3; 32], T0);
    let vk = key.verifying_key();
    let edits: [fn(&mut Checkpoint); 4] = [
        |c| c.seq += 1,
        |c| c.hash[0] ^= 1,
        |c| c.at_ms += 1,
        |c| c.signature[10] ^= 1,
    ];
    for edit in edits {
        let mut edited = cp.clone();
        edit(&mut edited);
        assert_eq!(
            edited.verify(&vk),
            Err(VerifyError::BadSignature { seq: edited.seq })
        );
    }
    let other = DeviceKey::from_bytes(&[8; 32]).verifying_key();
    assert_eq!(cp.verify(&other), Err(VerifyError::BadSignature { seq: 4 }));
}

// ---- export parsing ----

#[test]
fn header_problems_are_reported() {
    let key = key();
    let (file, _) = export(&key, 2, 1);
    let mut l = lines(&file);
    let header = l[0].clone();
    let with_header = |h: String| {
        let mut l = l.clone();
        l[0] = h;
        verify(&join(&l))
    };

    assert_eq!(malformed_line(verify(b"")), 1);
    assert_eq!(malformed_line(with_header("not json".into())), 1);
    assert_eq!(
        with_header(header.replace("\"keywarden-audit\"", "\"other\"")),
        Err(VerifyError::UnsupportedFormat {
            format: "other".into(),
            version: 1
        })
    );
    assert_eq!(
        with_header(header.replace("\"version\":1", "\"version\":2")),
        Err(VerifyError::UnsupportedFormat {
            format: "keywarden-audit".into(),
            version: 2
        })
    );
    assert_eq!(
        malformed_line(with_header(header.replace('}', ",\"extra\":1}"))),
        1
    );
    assert_eq!(
        malformed_line(with_header(
            header.replace("\"first_seq\":1", "\"first_seq\":0")
        )),
        1
    );
    assert_eq!(
        malformed_line(with_header(header.replace(&key.public_hex(), "abcd"))),
        1
    );
    assert_eq!(
        malformed_line(with_header(header.replace(&"0".repeat(64), "00"))),
        1
    );
    // Header missing: the first line is an entry.
    l.remove(0);
    assert_eq!(malformed_line(verify(&join(&l))), 1);
}

#[test]
fn a_substituted_key_is_caught_only_with_a_trusted_key() {
    // The whole export rewritten and re-signed with another key.
    let mallory = DeviceKey::from_bytes(&[66; 32]);
    let (forged, _) = export(&mallory, 3, 2);
    assert_eq!(
        verify(&forged),
        Err(VerifyError::WrongKey {
            expected: key().public_hex(),
            found: mallory.public_hex()
        })
    );
    // With no trusted key it verifies, and the report names the other key for a person to see.
    let report = verify_export(forged.as_slice(), None).unwrap();
    assert_eq!(report.key_hex, mallory.public_hex());
    assert_ne!(report.key_hex, key().public_hex());
}

#[test]
fn a_checkpoint_signed_with_another_key_is_a_bad_signature() {
    let (file, head) = export(&key(), 2, 100);
    let mut l = lines(&file);
    let forged = DeviceKey::from_bytes(&[66; 32]).sign_checkpoint(2, &head, T0);
    let mut out = ExportWriter::new(Vec::new(), &key().public_hex(), 1, &GENESIS, 0).unwrap();
    out.checkpoint(&forged).unwrap();
    let forged_line = lines(&out.finish().unwrap()).remove(1);
    *l.last_mut().unwrap() = forged_line;
    assert_eq!(verify(&join(&l)), Err(VerifyError::BadSignature { seq: 2 }));
}

#[test]
fn malformed_lines_name_their_line() {
    let (file, _) = export(&key(), 3, 1);
    let l = lines(&file);
    let with_line = |i: usize, text: &str| {
        let mut l = l.clone();
        l[i] = text.to_owned();
        verify(&join(&l))
    };
    let entry2 = l[3].clone();
    assert_eq!(malformed_line(with_line(3, "")), 4);
    assert_eq!(malformed_line(with_line(3, "{\"note\":{}}")), 4);
    assert_eq!(
        malformed_line(with_line(
            3,
            &entry2.replace("\"seq\"", "\"extra\":1,\"seq\"")
        )),
        4
    );
    assert_eq!(
        malformed_line(with_line(
            3,
            &entry2.replace("\"hash\":\"", "\"hash\":\"zz")
        )),
        4
    );
    assert_eq!(
        malformed_line(with_line(3, &entry2.replace("\"seq\":2", "\"seq\":-2"))),
        4
    );
    assert_eq!(
        malformed_line(with_line(3, &entry2.replace("}}", "},\"checkpoint\":{}}"))),
        4
    );
    let cp = l[2].clone();
    assert_eq!(
        malformed_line(with_line(
            2,
            &cp.replace("\"signature\":\"", "\"signature\":\"00")
        )),
        3
    );
}

#[test]
fn line_endings_crlf_and_a_missing_final_newline_are_accepted() {
    let (file, head) = export(&key(), 3, 2);
    let crlf = String::from_utf8(file.clone())
        .unwrap()
        .replace('\n', "\r\n");
    assert_eq!(verify(crlf.as_bytes()).map(|r| r.head), Ok(head));
    let no_final_newline = &file[..file.len() - 1];
    assert_eq!(verify(no_final_newline).map(|r| r.head), Ok(head));
}

#[test]
fn a_file_cut_mid_line_is_malformed() {
    let (file, _) = export(&key(), 3, 1);
    let cut = &file[..file.len() - 20];
    let lines_in_cut = cut.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    match verify(cut) {
        Err(VerifyError::Malformed { line, reason }) => {
            assert_eq!(line, lines_in_cut);
            assert!(reason.contains("cut off"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn an_overlong_line_is_refused_without_reading_it_all() {
    let (file, _) = export(&key(), 1, 1);
    let mut long = lines(&file)[0].clone();
    long.push('\n');
    long.push_str(&" ".repeat(MAX_LINE_LEN + 10));
    long.push('\n');
    match verify(long.as_bytes()) {
        Err(VerifyError::Malformed { line: 2, reason }) => assert!(reason.contains("longer")),
        other => panic!("expected Malformed on line 2, got {other:?}"),
    }
}

#[test]
fn a_header_only_export_is_empty() {
    let (file, _) = export(&key(), 1, 1);
    let header = join(&lines(&file)[..1]);
    assert_eq!(verify(&header), Err(VerifyError::Empty));
}

#[test]
fn read_errors_are_reported_with_the_line() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = self.0.read(buf)?;
            Ok(n)
        }
    }
    let (file, _) = export(&key(), 2, 1);
    let two_lines = join(&lines(&file)[..2]);
    let reader = io::BufReader::new(Failing(&two_lines));
    match verify_export(reader, None) {
        Err(VerifyError::Read { line: 3, reason }) => assert!(reason.contains("disk on fire")),
        other => panic!("expected a read error on line 3, got {other:?}"),
    }
    // BufRead is all verify_export needs.
    fn _assert_bufread<R: BufRead>(_: R) {}
}

#[test]
fn writer_refuses_an_invalid_device_key() {
    let err = ExportWriter::new(Vec::new(), "not hex", 1, &GENESIS, 0)
        .err()
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn error_messages_are_lowercase() {
    let errors = [
        VerifyError::Read {
            line: 1,
            reason: "x".into(),
        },
        VerifyError::Malformed {
            line: 1,
            reason: "x".into(),
        },
        VerifyError::UnsupportedFormat {
            format: "x".into(),
            version: 2,
        },
        VerifyError::WrongKey {
            expected: "a".into(),
            found: "b".into(),
        },
        VerifyError::InvalidFirstSeq,
        VerifyError::EditedEntry { seq: 1 },
        VerifyError::MissingEntries {
            expected: 1,
            found: 3,
        },
        VerifyError::OutOfOrder {
            previous: 3,
            found: 1,
        },
        VerifyError::CheckpointMismatch { seq: 1 },
        VerifyError::BadSignature { seq: 1 },
        VerifyError::CheckpointBeyondChain { seq: 4, last: 2 },
        VerifyError::UnsignedTail {
            last_checkpoint: None,
            last_entry: 2,
        },
        VerifyError::UnsignedTail {
            last_checkpoint: Some(1),
            last_entry: 2,
        },
        VerifyError::Empty,
    ];
    for error in errors {
        let text = error.to_string();
        assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
    }
}

// ---- keys ----

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn create_writes_a_0600_key_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device-key.pem");
    let created = DeviceKey::create(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let pem = fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let loaded = DeviceKey::load(&path).unwrap();
    assert_eq!(loaded.public_hex(), created.public_hex());
    assert_eq!(loaded.verifying_key(), created.verifying_key());
    // Only the key is left in the directory: the temporary name is gone.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["device-key.pem"]);
}

#[test]
fn to_pkcs8_pem_is_the_key_file_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device-key.pem");
    let key = DeviceKey::generate().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", *pem);
    fs::write(&path, pem.as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        DeviceKey::load(&path).unwrap().public_hex(),
        key.public_hex()
    );
}

#[test]
fn create_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let first = DeviceKey::create(&path).unwrap();
    let before = fs::read(&path).unwrap();
    match DeviceKey::create(&path) {
        Err(KeyError::Exists { path: p }) => assert_eq!(p, path),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(
        DeviceKey::load(&path).unwrap().public_hex(),
        first.public_hex()
    );
    // Any file there counts, even one that is not a key.
    let other = dir.path().join("other");
    fs::write(&other, "keep me").unwrap();
    assert!(matches!(
        DeviceKey::create(&other),
        Err(KeyError::Exists { .. })
    ));
    assert_eq!(fs::read_to_string(&other).unwrap(), "keep me");
}

#[test]
fn load_or_create_creates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let (created, was_created) = DeviceKey::load_or_create(&path).unwrap();
    assert!(was_created);
    let (loaded, was_created) = DeviceKey::load_or_create(&path).unwrap();
    assert!(!was_created);
    assert_eq!(loaded.public_hex(), created.public_hex());
}

#[test]
fn load_refuses_a_key_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    DeviceKey::create(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    match DeviceKey::load(&path) {
        Err(KeyError::InsecurePermissions { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("expected InsecurePermissions, got {other:?}"),
    }
    // load_or_create does not paper over it by making a new key.
    assert!(matches!(
        DeviceKey::load_or_create(&path),
        Err(KeyError::InsecurePermissions { .. })
    ));
}

#[test]
fn load_reports_missing_and_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        DeviceKey::load(&missing),
        Err(KeyError::Read { .. })
    ));
    let garbage = dir.path().join("garbage.pem");
    fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        DeviceKey::load(&garbage),
        Err(KeyError::Parse { .. })
    ));
}

#[test]
fn create_reports_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("key.pem");
    assert!(matches!(
        DeviceKey::create(&path),
        Err(KeyError::Write { .. })
    ));
}

#[test]
fn generated_keys_differ_and_sign() {
    let a = DeviceKey::generate().unwrap();
    let b = DeviceKey::generate().unwrap();
    assert_ne!(a.public_hex(), b.public_hex());
    let cp = a.sign_checkpoint(1, &[1; 32], T0);
    assert_eq!(cp.verify(&a.verifying_key()), Ok(()));
    // Debug shows the public key only.
    let debug = format!("{a:?}");
    assert!(debug.contains(&a.public_hex()), "{debug}");
}

#[test]
fn public_keys_parse_from_hex() {
    let key = key();
    assert_eq!(
        parse_public_key(&key.public_hex()).unwrap(),
        key.verifying_key()
    );
    assert_eq!(
        parse_public_key(&key.public_hex().to_uppercase()).unwrap(),
        key.verifying_key()
    );
    for bad in ["", "abcd", &"g".repeat(64), &"0".repeat(66)] {
        assert!(
            matches!(
                parse_public_key(bad),
                Err(KeyError::InvalidPublicKey { .. })
            ),
            "{bad:?}"
        );
    }
    // The identity point is a weak key: it would accept forged signatures.
    let identity = format!("01{}", "0".repeat(62));
    assert!(matches!(
        parse_public_key(&identity),
        Err(KeyError::InvalidPublicKey { reason }) if reason.contains("weak")
    ));
    // Not every 32-byte string is a point: some small y has no x.
    let off_curve = (2u8..=255).find_map(|y| {
        let text = format!("{y:02x}{}", "0".repeat(62));
        match parse_public_key(&text) {
            Err(KeyError::InvalidPublicKey { reason }) if reason.contains("point") => Some(()),
            _ => None,
        }
    });
    assert!(off_curve.is_some());
}

// ---- the pipelined verifier: chunks, workers, in-order checking ----

/// The sequential verifier `verify_export` was before the pipeline: each line read, parsed and
/// fed to the [`Verifier`] in turn. The pipeline must give the same result on any input.
fn verify_sequential(file: &[u8]) -> Result<Report, VerifyError> {
    use crate::export::{decode_hex, parse_header, parse_json, Lines, RecordIn};
    let mut lines = Lines::new(file);
    let Some((_, header)) = lines.next()? else {
        return Err(VerifyError::Malformed {
            line: 1,
            reason: "missing header line: the file is empty".to_owned(),
        });
    };
    let mut verifier = parse_header(header, Some(&key().verifying_key()))?;
    while let Some((line_no, line)) = lines.next()? {
        match parse_json::<RecordIn<'_>>(line, line_no)? {
            RecordIn::Entry(e) => {
                let hash = decode_hex::<32>(&e.hash, "hash", line_no)?;
                let entry = Entry {
                    seq: e.seq,
                    at_ms: e.at_ms,
                    kind: e.kind.into_owned(),
                    actor: e.actor.into_owned(),
                    subject: e.subject.into_owned(),
                    detail: e.detail.into_owned(),
                };
                verifier.entry(&entry, &hash)?;
            }
            RecordIn::Checkpoint(c) => {
                let cp = Checkpoint {
                    seq: c.seq,
                    hash: decode_hex::<32>(&c.hash, "hash", line_no)?,
                    at_ms: c.at_ms,
                    signature: decode_hex::<64>(&c.signature, "signature", line_no)?,
                };
                verifier.checkpoint(&cp)?;
            }
        }
    }
    verifier.finish()
}

/// An export spanning more than three pipeline chunks (about 3.5 MiB), checkpoints every 64.
fn multi_chunk_export() -> (Vec<String>, Digest) {
    let n = (3 * crate::pipeline::CHUNK as u64 + CHUNK_SLACK) / 190;
    let (file, head) = export(&key(), n, 64);
    assert!(
        file.len() > 3 * crate::pipeline::CHUNK,
        "{} bytes",
        file.len()
    );
    (lines(&file), head)
}
const CHUNK_SLACK: u64 = 512 * 1024;

/// Index (0-based) of the line holding byte `offset` of the file.
fn line_at(lines: &[String], offset: usize) -> usize {
    let mut at = 0;
    for (i, line) in lines.iter().enumerate() {
        at += line.len() + 1;
        if at > offset {
            return i;
        }
    }
    lines.len() - 1
}

fn entry_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"entry\":{\"seq\":")?;
    rest[..rest.find(',')?].parse().ok()
}

#[test]
fn a_multi_chunk_export_verifies_like_the_sequential_verifier() {
    let (l, head) = multi_chunk_export();
    let file = join(&l);
    let report = verify(&file).expect("verifies");
    assert_eq!(report.head, head);
    assert_eq!(Ok(report.clone()), verify_sequential(&file));
    assert_eq!(report.last_seq, report.entries);
    assert_eq!(
        report.checkpoints,
        report.entries.div_ceil(64),
        "{report:?}"
    );
    // Through a reader whose reads are short and uneven, as from a pipe.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = (self.1 * 7 + 3) % 9000 + 1;
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }
    let trickled = verify_export(
        io::BufReader::with_capacity(100, Trickle(&file, 1)),
        Some(&key().verifying_key()),
    );
    assert_eq!(trickled, Ok(report));
}

#[test]
fn tampering_at_chunk_boundaries_and_in_later_chunks_is_reported_at_its_line() {
    let (l, _) = multi_chunk_export();
    // Lines around the second and third chunk boundaries (the first entry of a chunk is hashed
    // by the verifier itself, the others by workers), and one deep in the last chunk.
    let mut targets = Vec::new();
    for boundary in [crate::pipeline::CHUNK, 2 * crate::pipeline::CHUNK] {
        let at = line_at(&l, boundary);
        targets.extend(at - 2..=at + 2);
    }
    targets.push(l.len() - 10);
    for i in targets {
        let Some(seq) = entry_seq(&l[i]) else {
            continue;
        };
        let check = |tampered: Vec<String>, expected: VerifyError| {
            let file = join(&tampered);
            let got = verify(&file);
            assert_eq!(got, Err(expected), "line {}", i + 1);
            assert_eq!(got, verify_sequential(&file), "line {}", i + 1);
        };
        // An edited field.
        let mut t = l.clone();
        t[i] = t[i].replace("\"actor\":\"user:7\"", "\"actor\":\"user:8\"");
        check(t, VerifyError::EditedEntry { seq });
        // A deleted entry line.
        let mut t = l.clone();
        t.remove(i);
        let next_is_entry = entry_seq(&t[i]).is_some();
        let got = verify(&join(&t));
        assert_eq!(got, verify_sequential(&join(&t)), "line {}", i + 1);
        if next_is_entry {
            assert_eq!(
                got,
                Err(VerifyError::MissingEntries {
                    expected: seq,
                    found: seq + 1
                })
            );
        }
        // A malformed line names its line.
        let mut t = l.clone();
        t[i].insert_str(1, "\"x\":1,");
        let got = verify(&join(&t));
        assert_eq!(malformed_line(got), i as u64 + 1);
        // The first error in the file wins: an edit here and a malformed line later.
        let mut t = l.clone();
        t[i] = t[i].replace("\"at_ms\":", "\"at_ms\":1");
        let last = t.len() - 2;
        t[last] = "{".to_owned();
        check(t, VerifyError::EditedEntry { seq });
    }
    // A forged checkpoint deep in the file.
    let i = (l.len() * 3 / 4..l.len())
        .find(|&i| l[i].starts_with("{\"checkpoint\""))
        .expect("a checkpoint line");
    let mut t = l.clone();
    let pos = t[i].find("\"signature\":\"").unwrap() + 13;
    let flipped = if &t[i][pos..pos + 1] == "0" { "1" } else { "0" };
    t[i].replace_range(pos..pos + 1, flipped);
    let seq = entry_seq(&l[i - 1]).unwrap();
    assert_eq!(verify(&join(&t)), Err(VerifyError::BadSignature { seq }));
}

#[test]
fn a_read_error_after_several_chunks_names_the_line_being_read() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            self.0.read(buf)
        }
    }
    let (l, _) = multi_chunk_export();
    // Every line intact, then the read fails: the error comes after the chain was checked.
    let whole = join(&l[..l.len() - 5]);
    let got = verify_export(io::BufReader::new(Failing(&whole)), None);
    match got {
        Err(VerifyError::Read { line, reason }) => {
            assert_eq!(line, l.len() as u64 - 4);
            assert!(reason.contains("disk on fire"));
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    // A tampered entry before the failure is reported first.
    let mut t = l[..l.len() - 5].to_vec();
    let i = t.len() / 2;
    let i = (i..t.len()).find(|&i| entry_seq(&t[i]).is_some()).unwrap();
    let seq = entry_seq(&t[i]).unwrap();
    t[i] = t[i].replace("\"kind\":\"grant\"", "\"kind\":\"grunt\"");
    let bytes = join(&t);
    assert_eq!(
        verify_export(io::BufReader::new(Failing(&bytes)), None),
        Err(VerifyError::EditedEntry { seq })
    );
}

#[test]
fn an_overlong_line_after_several_chunks_names_its_line() {
    let (mut l, _) = multi_chunk_export();
    let i = l.len() - 3;
    l[i] = " ".repeat(MAX_LINE_LEN + 1);
    assert_eq!(malformed_line(verify(&join(&l))), i as u64 + 1);
    // Exactly the limit is a line like any other (here: not JSON).
    l[i] = " ".repeat(MAX_LINE_LEN);
    match verify(&join(&l)) {
        Err(VerifyError::Malformed { line, reason }) => {
            assert_eq!(line, i as u64 + 1);
            assert!(!reason.contains("longer"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn hex_values_decode_in_either_case_and_bad_digits_are_refused() {
    use crate::export::decode_hex;
    let lower = "00ff10aB".to_owned() + &"9c".repeat(28);
    let got = decode_hex::<32>(&lower, "hash", 4).unwrap();
    assert_eq!(got[..4], [0x00, 0xff, 0x10, 0xab]);
    assert_eq!(got, hex32(&lower));
    for bad in [
        "0g".to_owned() + &"00".repeat(31),
        "00".repeat(31),
        "00".repeat(33),
        " 0".to_owned() + &"00".repeat(31),
        "é".to_owned() + &"00".repeat(31),
    ] {
        match decode_hex::<32>(&bad, "hash", 4) {
            Err(VerifyError::Malformed { line: 4, reason }) => {
                assert!(
                    reason.starts_with("hash: expected 64 hex digits"),
                    "{reason}"
                )
            }
            other => panic!("{bad:?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn the_fast_entry_parser_agrees_with_serde_json_or_steps_aside() {
    use crate::export::{parse_json, RecordIn};
    use crate::pipeline::fast_entry;
    let h = "ab".repeat(32);
    let line = |seq: &str, at: &str, kind: &str, detail: &str, hash: &str| {
        format!(
            "{{\"entry\":{{\"seq\":{seq},\"at_ms\":{at},\"kind\":\"{kind}\",\"actor\":\"user:7\",\
             \"subject\":\"key:204\",\"detail\":\"{detail}\",\"hash\":\"{hash}\"}}}}"
        )
    };
    let cases = [
        (
            line("1", "1700000000000", "grant", r#"{\"via\":\"badge\"}"#, &h),
            true,
        ),
        (
            line("0", "-5", "gr\u{e9}nt \u{1F511}", r#"a\\b\"c"#, &h),
            true,
        ),
        (line("999999999999999999", "0", "x", "", &h), true),
        // Everything else is serde_json's to accept or refuse.
        (line("01", "1", "x", "", &h), false),
        (line("1", "-0", "x", "", &h), false),
        (line("1", "1", "x", r"\n", &h), false),
        (line("1", "1", "x", r"\u0041", &h), false),
        (line("1", "1", "x", r"\/", &h), false),
        (line("1", "1", "a\tb", "", &h), false),
        (line("1", "1", "x\\\"y", "", &h), false),
        (line("1", "1", "x", "", "zz"), true), // accepted here; the hex check refuses it
        (line("1234567890123456789", "1", "x", "", &h), false),
        (
            line("1", "1", "x", "", &h).replace("\"seq\":1,", "\"seq\": 1,"),
            false,
        ),
        (line("1", "1", "x", "", &h) + " ", false),
        (
            line("1", "1", "x", "", &h).replace(",\"hash\"", ",\"extra\":1,\"hash\""),
            false,
        ),
    ];
    let mut buf = String::new();
    for (text, fast) in cases {
        let got = fast_entry(&text, &mut buf);
        assert_eq!(got.is_some(), fast, "{text}");
        let Some(got) = got else { continue };
        let Ok(RecordIn::Entry(e)) = parse_json::<RecordIn<'_>>(text.as_bytes(), 2) else {
            panic!("serde_json refuses what the fast path read: {text}");
        };
        assert_eq!(
            (
                got.seq,
                got.at_ms,
                got.kind,
                got.actor,
                got.subject,
                got.hash
            ),
            (e.seq, e.at_ms, &*e.kind, &*e.actor, &*e.subject, &*e.hash),
            "{text}"
        );
        assert_eq!(&buf[..got.detail_len], &*e.detail, "{text}");
    }
}

#[test]
fn tagged_signatures_are_bound_to_their_tag_and_derived_secrets_are_stable() {
    use ed25519_dalek::{Signature, Verifier as _};
    let key = DeviceKey::from_bytes(&[5; 32]);
    let sig = key.sign_tagged(b"tag-a\0", b"message");
    let vk = key.verifying_key();
    assert!(vk
        .verify(b"tag-a\0message", &Signature::from_bytes(&sig))
        .is_ok());
    // The same message under another tag, or as a checkpoint, is another statement.
    assert!(vk
        .verify(b"tag-b\0message", &Signature::from_bytes(&sig))
        .is_err());
    let a = key.derive_secret(b"diag-pseudonyms");
    assert_eq!(*a, *key.derive_secret(b"diag-pseudonyms"));
    assert_ne!(*a, *key.derive_secret(b"other"));
    assert_ne!(
        *a,
        *DeviceKey::from_bytes(&[6; 32]).derive_secret(b"diag-pseudonyms")
    );
    assert_ne!(&a[..], &[5; 32][..]);
}
