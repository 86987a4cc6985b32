use std::io::Read as _;

use keywarden_audit::DeviceKey;

use crate::*;

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_bytes(&[n; 32])
}

fn sample(key: &DeviceKey) -> Vec<u8> {
    let mut b = BundleBuilder::new(Caps::default());
    b.add(
        "versions.json",
        b"{\"hwd\":\"0.1.0\"}\n".to_vec(),
        Keep::Head,
    )
    .expect("add");
    b.add("journal.txt", b"line 1\nline 2\n".to_vec(), Keep::Tail)
        .expect("add");
    let mut out = Vec::new();
    b.finish(key, Some("KW-0001".into()), 1_764_800_000, &mut out)
        .expect("finish");
    out
}

/// The archive's entries, decompressed.
fn unpack(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = Vec::new();
    zstd::Decoder::new(bundle)
        .expect("zstd")
        .read_to_end(&mut tar)
        .expect("decompress");
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).expect("read");
            (name, bytes)
        })
        .collect()
}

fn repack(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, name, &bytes[..]).expect("append");
    }
    let tar = tar.into_inner().expect("tar");
    zstd::encode_all(&tar[..], 3).expect("compress")
}

#[test]
fn a_bundle_verifies_with_its_device_key_and_is_reproducible() {
    let k = key(7);
    let bundle = sample(&k);
    assert_eq!(bundle, sample(&k), "same inputs, same bytes");
    let v = verify(&bundle[..], &k.verifying_key()).expect("verify");
    assert_eq!(v.manifest.serial.as_deref(), Some("KW-0001"));
    assert_eq!(v.manifest.created, "2025-12-03T22:13:20Z");
    let names: Vec<&str> = v.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["versions.json", "journal.txt"]);
    assert_eq!(v.files[1].1, b"line 1\nline 2\n");
    let entries = unpack(&bundle);
    assert_eq!(entries[0].0, "manifest.json");
    assert_eq!(entries[1].0, "manifest.sig");
}

#[test]
fn another_devices_key_is_refused() {
    let bundle = sample(&key(7));
    let err = verify(&bundle[..], &key(8).verifying_key()).expect_err("wrong key");
    assert!(matches!(err, Error::WrongSigner { .. }), "{err}");
}

#[test]
fn every_kind_of_tampering_is_refused_with_its_own_error() {
    let k = key(7);
    let vk = k.verifying_key();
    let good = unpack(&sample(&k));

    // A changed byte in a file.
    let mut e = good.clone();
    e[2].1[3] ^= 1;
    let err = verify(&repack(&e)[..], &vk).expect_err("file");
    assert!(
        matches!(err, Error::FileMismatch { ref name, what: "SHA-256" } if name == "versions.json"),
        "{err}"
    );

    // A file cut short.
    let mut e = good.clone();
    e[3].1.pop();
    let err = verify(&repack(&e)[..], &vk).expect_err("size");
    assert!(
        matches!(err, Error::FileMismatch { what: "size", .. }),
        "{err}"
    );

    // The manifest edited to match a changed file: the signature breaks.
    let mut e = good.clone();
    let text = String::from_utf8(e[0].1.clone()).expect("utf8");
    e[0].1 = text.replace("KW-0001", "KW-0002").into_bytes();
    let err = verify(&repack(&e)[..], &vk).expect_err("manifest");
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");

    // A file removed, added, or the order changed.
    let mut e = good.clone();
    e.pop();
    let err = verify(&repack(&e)[..], &vk).expect_err("missing");
    assert!(
        matches!(err, Error::MissingFile { ref name } if name == "journal.txt"),
        "{err}"
    );
    let mut e = good.clone();
    e.push(("extra.txt".into(), b"x".to_vec()));
    let err = verify(&repack(&e)[..], &vk).expect_err("extra");
    assert!(
        matches!(err, Error::UnlistedFile { ref name } if name == "extra.txt"),
        "{err}"
    );
    let mut e = good.clone();
    e.swap(2, 3);
    let err = verify(&repack(&e)[..], &vk).expect_err("order");
    assert!(matches!(err, Error::UnlistedFile { .. }), "{err}");

    // No signature, or a garbled one.
    let mut e = good.clone();
    e.remove(1);
    let err = verify(&repack(&e)[..], &vk).expect_err("unsigned");
    assert!(matches!(err, Error::Missing("manifest.sig")), "{err}");
    let mut e = good.clone();
    e[1].1 = b"zz".to_vec();
    let err = verify(&repack(&e)[..], &vk).expect_err("garbled");
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");

    // A path that is not flat.
    let mut e = good.clone();
    e[3].0 = "sub/journal.txt".into();
    let err = verify(&repack(&e)[..], &vk).expect_err("path");
    assert!(matches!(err, Error::UnexpectedEntry(_)), "{err}");

    // Not a bundle at all, or cut.
    let err = verify(&b"hello"[..], &vk).expect_err("garbage");
    assert!(matches!(err, Error::Archive(_)), "{err}");
    let bundle = sample(&k);
    let err = verify(&bundle[..bundle.len() / 2], &vk).expect_err("cut");
    assert!(matches!(err, Error::Archive(_)), "{err}");

    // And the untouched repack still verifies (the checks above are not repack artefacts).
    verify(&repack(&good)[..], &vk).expect("repacked original");
}

#[test]
fn files_are_cut_to_their_caps_keeping_the_chosen_end() {
    let caps = Caps {
        per_file: 10,
        total: 16,
    };
    let mut b = BundleBuilder::new(caps);
    b.add("head.txt", b"0123456789abcdef".to_vec(), Keep::Head)
        .expect("add");
    b.add("tail.log", b"aaaa\nbbbb\ncccc\n".to_vec(), Keep::Tail)
        .expect("add");
    b.add("fits.txt", b"x".to_vec(), Keep::Head).expect("add");
    b.add("none.txt", b"y".to_vec(), Keep::Head).expect("add");
    let k = key(1);
    let mut out = Vec::new();
    let summary = b.finish(&k, None, 0, &mut out).expect("finish");
    let v = verify(&out[..], &k.verifying_key()).expect("verify");
    assert_eq!(v.files[0].1, b"0123456789");
    // 6 bytes left of the total: the tail from a line start.
    assert_eq!(v.files[1].1, b"cccc\n");
    assert_eq!(v.files[2].1, b"x");
    assert_eq!(v.files[3].1, b"");
    let truncated: Vec<bool> = summary.manifest.files.iter().map(|f| f.truncated).collect();
    assert_eq!(truncated, [true, true, false, true]);
    assert_eq!(summary.content_bytes, 16);
}

#[test]
fn names_must_be_flat_unique_and_not_reserved() {
    let mut b = BundleBuilder::new(Caps::default());
    for bad in [
        "",
        "../x",
        "a/b",
        ".hidden",
        "Upper.txt",
        "manifest.json",
        "manifest.sig",
    ] {
        assert!(b.add(bad, Vec::new(), Keep::Head).is_err(), "{bad:?}");
    }
    b.add("a.txt", Vec::new(), Keep::Head).expect("add");
    assert!(matches!(
        b.add("a.txt", Vec::new(), Keep::Head),
        Err(Error::DuplicateName { .. })
    ));
}

fn scrubber(people: &[&str]) -> Scrubber {
    Scrubber::new(Pseudonyms::new(&[9; 32]), people.iter().copied())
}

#[test]
fn names_become_stable_pseudonyms() {
    let s = scrubber(&["Maria Lopez", "Bob"]);
    let out =
        s.text("granted to Maria Lopez; lopez returned; MARIA LOPEZ again; Bob too; Bobby not");
    let p = s.person("Maria Lopez");
    assert!(p.starts_with("person-") && p.len() == 17, "{p}");
    assert_eq!(out.matches(&p).count(), 3, "{out}");
    assert!(!out.to_lowercase().contains("lopez"), "{out}");
    assert!(out.contains(&s.person("bob")), "{out}");
    assert!(out.contains("Bobby"), "{out}");
    // Stable across scrubbers with the same secret, different with another.
    assert_eq!(scrubber(&[]).person("maria lopez "), p);
    let other = Scrubber::new(Pseudonyms::new(&[10; 32]), ["Maria Lopez"]);
    assert_ne!(other.person("Maria Lopez"), p);
}

#[test]
fn secrets_in_free_text_are_removed() {
    let s = scrubber(&[]);
    let cases = [
        ("smtp password=hunter2 sent", "hunter2"),
        ("token: abc.def.ghi", "abc.def.ghi"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9",
        ),
        ("user entered PIN 482913", "482913"),
        ("the password is correcthorse", "correcthorse"),
        ("badge_code=\"AB 12 CD\"", "AB 12 CD"),
        (
            "webhook https://hooks.example.org/services/T00/B00/XXXX?sig=1 failed",
            "T00/B00",
        ),
        (
            "fetch https://admin:s3cret@repo.example.org:8443/x",
            "s3cret",
        ),
        (
            "mail to ops.lead@example.org failed",
            "ops.lead@example.org",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
            "MC4CAQ",
        ),
        (
            "hmac 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "9f86d081",
        ),
        (
            "blob dGhpcyBpcyBhIHZlcnkgbG9uZyBzZWNyZXQgdmFsdWUgaW4gYmFzZTY0",
            "dGhpcyBp",
        ),
        ("card 0041234567 scanned", "0041234567"),
    ];
    for (input, secret) in cases {
        let out = s.text(input);
        assert!(!out.contains(secret), "{input:?} -> {out:?}");
        assert!(
            out.contains("redacted") || out.contains("email-"),
            "{out:?}"
        );
    }
    // Ordinary text survives.
    let plain = "slot 12 released for key Unit 4B, door closed after 3 s; code not-newer";
    assert_eq!(s.text(plain), plain);
    assert_eq!(
        s.text("GET https://updates.keywarden.test/ ok"),
        "GET https://updates.keywarden.test/ ok"
    );
}

#[test]
fn configuration_keeps_structure_and_safe_values_only() {
    let s = scrubber(&["Maria Lopez"]);
    let text = r#"
model = "kc-20"
[fingerprint]
port = "/dev/ttyS1"
password = 305419896
[notify.smtp]
host = "mail.example.org"
username = "cabinet7"
password-file = "/var/lib/keywarden/secrets/smtp"
from = "cabinet@example.org"
[[notify.webhooks]]
url = "https://hooks.example.org/T0/B0/secretpath"
headers = { Authorization = "Bearer zzz" }
[notify.email]
to = "Maria Lopez <maria@example.org>"
"#;
    let out = redact_toml(text, &s);
    for gone in [
        "305419896",
        "cabinet7",
        "secretpath",
        "zzz",
        "maria@example.org",
        "Maria",
        "cabinet@example.org",
    ] {
        assert!(!out.contains(gone), "{gone} in\n{out}");
    }
    for kept in ["kc-20", "/dev/ttyS1", "hooks.example.org", "[notify.smtp]"] {
        assert!(out.contains(kept), "{kept} missing in\n{out}");
    }
    let bad = redact_toml("password = \"oops", &s);
    assert!(
        bad.starts_with("# not valid TOML") && !bad.contains("oops"),
        "{bad}"
    );
}
