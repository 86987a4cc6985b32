//! Bundles as files: created by `create` from payload files on disk, then read back, verified,
//! tampered with, cut short and extended, every error produced from a real bundle.

use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use keywarden_bundle::{
    create, keys, read_unverified, verify_file, BundleReader, ChunkCursor, CreateSpec, Digest,
    Error, Header, Keyring, Manifest, Next, CHUNK_SIZE, FORMAT_VERSION, HEADER_LEN,
    MAX_MANIFEST_LEN,
};

const CHUNK: usize = CHUNK_SIZE as usize;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn ring(keys: &[&SigningKey]) -> Keyring {
    Keyring::from_keys(keys.iter().map(|k| k.verifying_key()))
}

/// `len` bytes that do not repeat from chunk to chunk (xorshift from `seed`).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    payloads: Vec<(String, Vec<u8>)>,
    spec: CreateSpec,
}

/// Payload files `(name, bytes)` in a temporary directory and a spec for them.
fn fixture(payloads: &[(&str, Vec<u8>)]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let mut spec = CreateSpec {
        version: "1.4.0-rc.2".into(),
        compatible: "qemu-x86_64".into(),
        created: 1_790_000_000,
        build_id: Some("v1.4.0-rc.2-3-gabcdef".into()),
        payloads: Vec::new(),
    };
    for (name, bytes) in payloads {
        let path = dir.join(format!("{name}.img"));
        fs::write(&path, bytes).unwrap();
        spec.payloads.push(((*name).to_owned(), path));
    }
    Fixture {
        _dir: tmp,
        dir,
        payloads: payloads
            .iter()
            .map(|(n, b)| ((*n).to_owned(), b.clone()))
            .collect(),
        spec,
    }
}

/// A rootfs of 3 chunks and 1234 bytes, and a small second payload.
fn standard() -> Fixture {
    fixture(&[
        ("rootfs", pattern(3 * CHUNK + 1234, 7)),
        ("extra", pattern(5000, 9)),
    ])
}

fn bundle_bytes(f: &Fixture, key: &SigningKey) -> (Vec<u8>, Manifest) {
    let mut out = Vec::new();
    let manifest = create(&f.spec, key, &mut out).unwrap();
    (out, manifest)
}

fn write_bundle(f: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let path = f.dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Reads every chunk; returns the payloads reassembled at the chunks' offsets.
fn read_all(bytes: &[u8], keyring: &Keyring) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut reader = BundleReader::open(Cursor::new(bytes), keyring)?;
    let mut out: Vec<(String, Vec<u8>)> = reader
        .manifest()
        .payloads
        .iter()
        .map(|p| (p.name.clone(), Vec::new()))
        .collect();
    while let Some(chunk) = reader.next_chunk()? {
        let (name, data) = &mut out[chunk.payload];
        assert_eq!(chunk.offset, data.len() as u64, "chunks arrive in order");
        assert_eq!(chunk.offset, chunk.index * CHUNK_SIZE as u64);
        assert_eq!(chunk.name, name);
        data.extend_from_slice(chunk.data);
    }
    Ok(out)
}

fn data_offset(bytes: &[u8]) -> usize {
    HEADER_LEN + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize
}

/// A bundle with this manifest text, signed by `key` (for manifests `create` would not write).
fn signed_raw(manifest: &[u8], key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        format: FORMAT_VERSION,
        manifest_len: manifest.len() as u32,
        signer: key.verifying_key().to_bytes(),
        signature: key.sign(manifest).to_bytes(),
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(manifest);
    out.extend_from_slice(payload);
    out
}

#[test]
fn round_trip_create_verify_and_read_back() {
    let f = standard();
    let k = key(1);
    let (bytes, manifest) = bundle_bytes(&f, &k);
    let path = write_bundle(&f, "b.kwb", &bytes);

    let verified = verify_file(&path, &ring(&[&k])).unwrap();
    assert_eq!(verified.manifest(), &manifest);
    assert_eq!(verified.signer(), &k.verifying_key());
    assert_eq!(verified.bundle_len(), bytes.len() as u64);
    assert_eq!(manifest.version.to_string(), "1.4.0-rc.2");
    assert_eq!(manifest.compatible, "qemu-x86_64");
    assert_eq!(manifest.created, 1_790_000_000);
    assert_eq!(manifest.build_id.as_deref(), Some("v1.4.0-rc.2-3-gabcdef"));

    let rootfs = &manifest.payloads[0];
    assert_eq!(
        (rootfs.name.as_str(), rootfs.slot_class.as_str()),
        ("rootfs", "rootfs")
    );
    assert_eq!(rootfs.size, 3 * CHUNK as u64 + 1234);
    assert_eq!(rootfs.chunk_size, CHUNK_SIZE);
    assert_eq!(rootfs.chunks.len(), 4);
    assert_eq!(rootfs.sha256, Digest::of(&f.payloads[0].1));
    assert_eq!(rootfs.chunks[3], Digest::of(&f.payloads[0].1[3 * CHUNK..]));
    assert_eq!(manifest.payloads[1].chunks.len(), 1);

    // The payloads follow the manifest back to back, at the offsets the manifest gives.
    let start = verified.payload_offset(0).unwrap() as usize;
    assert_eq!(start, data_offset(&bytes));
    assert_eq!(
        &bytes[start..start + rootfs.size as usize],
        &f.payloads[0].1[..]
    );
    let second = verified.payload_offset(1).unwrap() as usize;
    assert_eq!(second, start + rootfs.size as usize);
    assert_eq!(&bytes[second..], &f.payloads[1].1[..]);
    assert_eq!(
        verified.chunk_offset(0, 2),
        Some((start + 2 * CHUNK) as u64)
    );
    assert_eq!(verified.chunk_offset(0, 4), Some(second as u64));
    assert_eq!(verified.chunk_offset(0, 5), None);

    assert_eq!(read_all(&bytes, &ring(&[&k])).unwrap(), f.payloads);
    // The manifest is what inspection shows too.
    assert_eq!(
        read_unverified(Cursor::new(&bytes)).unwrap().manifest,
        manifest
    );
}

#[test]
fn same_inputs_and_key_give_identical_bytes() {
    let f = standard();
    let (a, _) = bundle_bytes(&f, &key(1));
    let (b, _) = bundle_bytes(&f, &key(1));
    assert!(a == b, "two creates differ");
    // ... and each input matters.
    let (c, _) = bundle_bytes(&f, &key(2));
    assert!(a != c);
    let mut later = standard();
    later.spec.created += 1;
    assert!(a != bundle_bytes(&later, &key(1)).0);
}

#[test]
fn payload_sizes_not_a_multiple_of_the_chunk_size_exact_and_empty() {
    let f = fixture(&[
        ("rootfs", pattern(2 * CHUNK, 3)),
        ("empty", Vec::new()),
        ("tiny", vec![42]),
        ("odd", pattern(CHUNK + 1, 4)),
    ]);
    let k = key(1);
    let (bytes, manifest) = bundle_bytes(&f, &k);
    let counts: Vec<usize> = manifest.payloads.iter().map(|p| p.chunks.len()).collect();
    assert_eq!(counts, [2, 0, 1, 2]);
    assert_eq!(manifest.payloads[1].sha256, Digest::of(b""));
    assert_eq!(manifest.payloads[3].chunk_len(1), 1);
    assert_eq!(read_all(&bytes, &ring(&[&k])).unwrap(), f.payloads);
    let path = write_bundle(&f, "b.kwb", &bytes);
    verify_file(&path, &ring(&[&k])).unwrap();

    // A bundle of one empty payload is valid too.
    let f = fixture(&[("rootfs", Vec::new())]);
    let (bytes, _) = bundle_bytes(&f, &k);
    assert_eq!(read_all(&bytes, &ring(&[&k])).unwrap(), f.payloads);
}

#[test]
fn a_flipped_payload_byte_names_its_payload_and_chunk() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let start = data_offset(&bytes);
    let rootfs_len = f.payloads[0].1.len();
    // Every chunk boundary's neighbours, and a spread of positions through both payloads.
    let mut positions: Vec<usize> = vec![
        0,
        CHUNK - 1,
        CHUNK,
        2 * CHUNK + 17,
        rootfs_len - 1,
        rootfs_len,
        rootfs_len + 4999,
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        positions.push((x % (rootfs_len as u64 + 5000)) as usize);
    }
    for pos in positions {
        let mut bad = bytes.clone();
        bad[start + pos] ^= 0x01;
        let (payload, index) = if pos < rootfs_len {
            ("rootfs", (pos / CHUNK) as u64)
        } else {
            ("extra", ((pos - rootfs_len) / CHUNK) as u64)
        };
        let err = read_all(&bad, &ring(&[&k])).unwrap_err();
        assert_eq!(
            err,
            Error::ChunkMismatch {
                payload: payload.into(),
                index
            },
            "byte {pos}"
        );
        assert_eq!(
            err.to_string(),
            format!("payload \"{payload}\" chunk {index}: hash mismatch (the payload was altered)")
        );
        let path = write_bundle(&f, "bad.kwb", &bad);
        assert_eq!(verify_file(&path, &ring(&[&k])).unwrap_err(), err);
    }
}

#[test]
fn chunks_before_a_bad_one_are_handed_out_and_the_error_is_sticky() {
    let f = standard();
    let k = key(1);
    let (mut bytes, _) = bundle_bytes(&f, &k);
    let start = data_offset(&bytes);
    bytes[start + 2 * CHUNK + 5] ^= 0x80;
    let mut reader = BundleReader::open(Cursor::new(&bytes), &ring(&[&k])).unwrap();
    assert_eq!(reader.next_chunk().unwrap().unwrap().index, 0);
    assert_eq!(reader.next_chunk().unwrap().unwrap().index, 1);
    let expected = Error::ChunkMismatch {
        payload: "rootfs".into(),
        index: 2,
    };
    assert_eq!(reader.next_chunk().unwrap_err(), expected);
    assert_eq!(reader.next_chunk().unwrap_err(), expected);
    assert_eq!(reader.position(), (0, 2));
}

#[test]
fn every_flipped_header_or_manifest_byte_is_refused_before_any_payload_byte() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let end = data_offset(&bytes);
    for pos in 0..end {
        let mut bad = bytes[..end].to_vec();
        bad[pos] ^= 0x04;
        // Only the header and manifest are given: if the reader needed a payload byte to
        // refuse, it would report a truncated payload instead.
        let err = BundleReader::open(Cursor::new(&bad), &ring(&[&k])).unwrap_err();
        let expected_ok = match pos {
            0..8 => err == Error::BadMagic,
            8..12 => matches!(err, Error::UnsupportedFormat { version, known: 1 } if version != 1),
            12..16 => matches!(
                err,
                Error::ManifestTooLarge { .. }
                    | Error::TruncatedHeader { .. }
                    | Error::BadSignature { .. }
            ),
            16..48 => matches!(err, Error::UnknownSigner { .. }),
            _ => matches!(err, Error::BadSignature { .. }),
        };
        assert!(expected_ok, "byte {pos}: {err:?}");
    }
    // A flipped manifest byte, named plainly.
    let mut bad = bytes.clone();
    bad[HEADER_LEN + 20] ^= 0x01;
    assert_eq!(
        read_all(&bad, &ring(&[&k])).unwrap_err(),
        Error::BadSignature {
            signer: hex::encode(k.verifying_key().as_bytes())
        }
    );
}

#[test]
fn trust_comes_only_from_the_keyring() {
    let f = standard();
    let (signer, other) = (key(1), key(2));
    let (bytes, _) = bundle_bytes(&f, &signer);
    let path = write_bundle(&f, "b.kwb", &bytes);

    assert_eq!(
        verify_file(&path, &ring(&[&other])).unwrap_err(),
        Error::UnknownSigner {
            signer: hex::encode(signer.verifying_key().as_bytes())
        }
    );
    // No key at all: refused, whatever the file holds, even before reading it.
    assert_eq!(
        verify_file(&path, &Keyring::new()).unwrap_err(),
        Error::NoTrustedKeys
    );
    assert_eq!(
        BundleReader::open(Cursor::new(b"not a bundle"), &Keyring::new()).unwrap_err(),
        Error::NoTrustedKeys
    );
    // Key rotation: a keyring with the old and the new key accepts bundles from either.
    let both = ring(&[&other, &signer]);
    assert_eq!(
        verify_file(&path, &both).unwrap().signer(),
        &signer.verifying_key()
    );
    let (by_other, _) = bundle_bytes(&f, &other);
    let path2 = write_bundle(&f, "b2.kwb", &by_other);
    verify_file(&path2, &both).unwrap();

    // A signature made by another key, with the trusted key named in the header: bad signature.
    let mut forged = by_other.clone();
    forged[16..48].copy_from_slice(signer.verifying_key().as_bytes());
    assert!(matches!(
        read_all(&forged, &ring(&[&signer])),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn cut_short_anywhere_is_truncated_with_the_right_place() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let start = data_offset(&bytes);
    let rootfs_len = f.payloads[0].1.len();
    for (cut, expected) in [
        (0, Error::TruncatedHeader { len: 0 }),
        (5, Error::TruncatedHeader { len: 5 }),
        (
            HEADER_LEN - 1,
            Error::TruncatedHeader {
                len: HEADER_LEN as u64 - 1,
            },
        ),
        (
            HEADER_LEN + 10,
            Error::TruncatedHeader {
                len: HEADER_LEN as u64 + 10,
            },
        ),
        (
            start - 1,
            Error::TruncatedHeader {
                len: start as u64 - 1,
            },
        ),
        (
            start,
            Error::Truncated {
                payload: "rootfs".into(),
                index: 0,
            },
        ),
        (
            start + 100,
            Error::Truncated {
                payload: "rootfs".into(),
                index: 0,
            },
        ),
        (
            start + CHUNK,
            Error::Truncated {
                payload: "rootfs".into(),
                index: 1,
            },
        ),
        (
            start + 3 * CHUNK + 1,
            Error::Truncated {
                payload: "rootfs".into(),
                index: 3,
            },
        ),
        (
            start + rootfs_len,
            Error::Truncated {
                payload: "extra".into(),
                index: 0,
            },
        ),
        (
            bytes.len() - 1,
            Error::Truncated {
                payload: "extra".into(),
                index: 0,
            },
        ),
    ] {
        assert_eq!(
            read_all(&bytes[..cut], &ring(&[&k])).unwrap_err(),
            expected,
            "cut at {cut}"
        );
        let path = write_bundle(&f, "cut.kwb", &bytes[..cut]);
        assert_eq!(
            verify_file(&path, &ring(&[&k])).unwrap_err(),
            expected,
            "file cut at {cut}"
        );
    }
}

#[test]
fn bytes_after_the_last_payload_are_trailing_data() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    for extra in [&b"\0"[..], b"more bytes", &pattern(CHUNK * 2, 5)] {
        let mut long = bytes.clone();
        long.extend_from_slice(extra);
        let path = write_bundle(&f, "long.kwb", &long);
        assert_eq!(
            verify_file(&path, &ring(&[&k])).unwrap_err(),
            Error::TrailingData
        );
    }
}

#[test]
fn resume_from_a_chunk_boundary_on_a_new_stream() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let path = write_bundle(&f, "b.kwb", &bytes);

    // A first "download" breaks after two chunks.
    let mut first = BundleReader::open(fs::File::open(&path).unwrap(), &ring(&[&k])).unwrap();
    let mut rootfs = Vec::new();
    for _ in 0..2 {
        rootfs.extend_from_slice(first.next_chunk().unwrap().unwrap().data);
    }
    let (payload, chunk) = first.position();
    assert_eq!((payload, chunk), (0, 2));
    let verified = first.verified().clone();

    // The second starts at the resume point's offset, like an HTTP range request.
    let mut file = fs::File::open(&path).unwrap();
    file.seek(SeekFrom::Start(
        verified.chunk_offset(payload, chunk).unwrap(),
    ))
    .unwrap();
    let mut second = BundleReader::resume(file, verified.clone(), payload, chunk).unwrap();
    let mut extra = Vec::new();
    while let Some(c) = second.next_chunk().unwrap() {
        match c.payload {
            0 => {
                assert_eq!(c.offset, rootfs.len() as u64);
                rootfs.extend_from_slice(c.data);
            }
            _ => extra.extend_from_slice(c.data),
        }
    }
    assert_eq!(rootfs, f.payloads[0].1);
    assert_eq!(extra, f.payloads[1].1);

    // A stream that starts at the wrong offset is caught at the first chunk.
    let mut file = fs::File::open(&path).unwrap();
    file.seek(SeekFrom::Start(verified.chunk_offset(0, 1).unwrap()))
        .unwrap();
    let mut wrong = BundleReader::resume(file, verified.clone(), 0, 2).unwrap();
    assert_eq!(
        wrong.next_chunk().unwrap_err(),
        Error::ChunkMismatch {
            payload: "rootfs".into(),
            index: 2
        }
    );
    assert_eq!(
        BundleReader::resume(Cursor::new(&bytes), verified, 0, 9).unwrap_err(),
        Error::NoSuchChunk {
            payload: 0,
            index: 9
        }
    );
}

#[test]
fn check_chunk_verifies_chunks_from_elsewhere() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let reader = BundleReader::open(Cursor::new(&bytes), &ring(&[&k])).unwrap();
    let v = reader.verified();
    let rootfs = &f.payloads[0].1;
    v.check_chunk(0, 1, &rootfs[CHUNK..2 * CHUNK]).unwrap();
    v.check_chunk(0, 3, &rootfs[3 * CHUNK..]).unwrap();
    assert_eq!(
        v.check_chunk(0, 1, &rootfs[..CHUNK]).unwrap_err(),
        Error::ChunkMismatch {
            payload: "rootfs".into(),
            index: 1
        }
    );
    assert_eq!(
        v.check_chunk(0, 3, &rootfs[3 * CHUNK..3 * CHUNK + 10])
            .unwrap_err(),
        Error::SizeMismatch {
            payload: "rootfs".into(),
            expected: 1234,
            actual: 10
        }
    );
}

#[test]
fn header_rules_magic_format_and_manifest_length() {
    let f = standard();
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let keyring = ring(&[&k]);

    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(b"RAUCBNDL");
    assert_eq!(read_all(&bad, &keyring).unwrap_err(), Error::BadMagic);

    let mut bad = bytes.clone();
    bad[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        read_all(&bad, &keyring).unwrap_err(),
        Error::UnsupportedFormat {
            version: 2,
            known: 1
        }
    );

    for len in [0, MAX_MANIFEST_LEN + 1, u32::MAX] {
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            read_all(&bad, &keyring).unwrap_err(),
            Error::ManifestTooLarge {
                len: len.into(),
                max: MAX_MANIFEST_LEN.into()
            }
        );
    }
}

#[test]
fn signed_but_malformed_manifests_are_refused_with_the_reason() {
    let k = key(1);
    let keyring = ring(&[&k]);
    let payload = pattern(100, 1);
    let chunk = Digest::of(&payload).to_hex();
    let good = format!(
        r#"{{"format":1,"version":"1.0.0","compatible":"b","created":0,"payloads":[{{"name":"rootfs","slot_class":"rootfs","size":100,"sha256":"{chunk}","chunk_size":65536,"chunks":["{chunk}"]}}]}}"#
    );
    assert_eq!(
        read_all(&signed_raw(good.as_bytes(), &k, &payload), &keyring).unwrap(),
        vec![("rootfs".to_owned(), payload.clone())]
    );
    for (manifest, reason) in [
        ("not json".to_owned(), "expected ident"),
        (
            good.replace(r#""created":0"#, r#""created":0,"extra":1"#),
            "unknown field `extra`",
        ),
        (good.replace(r#""format":1"#, r#""format":2"#), "format 2"),
        (
            good.replace(r#""created":0"#, r#""created":0,"created":5"#),
            "duplicate field `created`",
        ),
        (
            good.replace(r#""build_id""#, "")
                .replace(r#""created":0"#, r#""created":-1"#),
            "invalid value",
        ),
        (good.replace("1.0.0", "1.0"), "invalid version"),
        (
            good.replace(r#""compatible":"b""#, r#""compatible":"""#),
            "compatible",
        ),
        (
            good.replace(r#""size":100"#, r#""size":70000"#),
            "1 chunk hashes for 70000 bytes (expected 2)",
        ),
        (good.replace("65536", "65535"), "power of two"),
        (
            good.replace(r#""name":"rootfs""#, r#""name":"Root FS""#),
            "payload name",
        ),
        (good.replace(&chunk, &chunk.to_uppercase()), "lowercase hex"),
        (
            r#"{"format":1,"version":"1.0.0","compatible":"b","created":0,"payloads":[]}"#
                .to_owned(),
            "0 payloads",
        ),
    ] {
        match read_all(&signed_raw(manifest.as_bytes(), &k, &payload), &keyring) {
            Err(Error::Malformed { reason: got }) => {
                assert!(got.contains(reason), "{manifest}: {got:?} lacks {reason:?}")
            }
            other => panic!("{manifest}: {other:?}"),
        }
    }

    // Two payloads with one name.
    let item = format!(
        r#"{{"name":"rootfs","slot_class":"rootfs","size":100,"sha256":"{chunk}","chunk_size":65536,"chunks":["{chunk}"]}}"#
    );
    assert!(good.contains(&item));
    let twice = good.replace(&item, &format!("{item},{item}"));
    assert!(matches!(
        read_all(&signed_raw(twice.as_bytes(), &k, &[payload.clone(), payload.clone()].concat()), &keyring),
        Err(Error::Malformed { reason }) if reason.contains("appears twice")
    ));

    // Chunks that all match but a whole-payload hash that does not.
    let wrong_whole = good.replacen(&chunk, &Digest::of(b"other").to_hex(), 1);
    assert_eq!(
        read_all(&signed_raw(wrong_whole.as_bytes(), &k, &payload), &keyring).unwrap_err(),
        Error::PayloadMismatch {
            payload: "rootfs".into()
        }
    );
}

#[test]
fn create_refuses_invalid_requests() {
    let f = standard();
    let k = key(1);
    let mut out = Vec::new();
    for (change, what) in [
        (
            &(|s: &mut CreateSpec| s.version = "1.2".into()) as &dyn Fn(&mut CreateSpec),
            "version",
        ),
        (
            &|s: &mut CreateSpec| s.version = "1.2.3+build".into(),
            "version",
        ),
        (
            &|s: &mut CreateSpec| s.compatible = "qemu x86".into(),
            "compatible",
        ),
        (
            &|s: &mut CreateSpec| s.build_id = Some("tab\there".into()),
            "build id",
        ),
        (&|s: &mut CreateSpec| s.payloads.clear(), "0 payloads"),
        (
            &|s: &mut CreateSpec| s.payloads[1].0 = "rootfs".into(),
            "given twice",
        ),
        (
            &|s: &mut CreateSpec| s.payloads[1].0 = "Extra".into(),
            "payload name",
        ),
    ] {
        let mut spec = f.spec.clone();
        change(&mut spec);
        let err = create(&spec, &k, &mut out).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::InvalidSpec { .. } | Error::InvalidVersion { .. }
            ) && err.to_string().contains(what),
            "{what}: {err}"
        );
    }
    let mut spec = f.spec.clone();
    spec.payloads[0].1 = f.dir.join("missing.img");
    assert!(matches!(
        create(&spec, &k, &mut out).unwrap_err(),
        Error::Io { what, .. } if what.contains("missing.img")
    ));
    assert!(out.is_empty(), "nothing written for a refused request");
}

#[test]
fn key_files_generate_load_and_refuse_to_overwrite() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub"));
    let generated = keys::generate(&private, &public).unwrap();
    assert_eq!(
        fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = fs::read_to_string(&private).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let signing = keys::load_signing_key(&private).unwrap();
    assert_eq!(signing.verifying_key(), generated);
    assert_eq!(keys::load_public_key(&public).unwrap(), generated);
    assert!(matches!(
        keys::generate(&private, &dir.path().join("other.pub")).unwrap_err(),
        Error::KeyExists { path } if path == private
    ));
    assert_eq!(fs::read_to_string(&private).unwrap(), pem, "not replaced");

    // Public keys as 64 hex digits, as the audit export prints them.
    let hex_file = dir.path().join("k.hex");
    fs::write(
        &hex_file,
        format!("{}\n", hex::encode(generated.as_bytes())),
    )
    .unwrap();
    assert_eq!(keys::load_public_key(&hex_file).unwrap(), generated);
    fs::write(&hex_file, "abcd\n").unwrap();
    assert!(matches!(
        keys::load_public_key(&hex_file),
        Err(Error::Key { .. })
    ));
    assert!(matches!(
        keys::load_signing_key(&public),
        Err(Error::Key { .. })
    ));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_test_only_key_is_the_one_the_tools_flag() {
    let dir = repo_root().join("ota/keys/test-only");
    let public = keys::load_public_key(&dir.join("test-only-signing.pub")).unwrap();
    let signing = keys::load_signing_key(&dir.join("test-only-signing.pem")).unwrap();
    assert_eq!(signing.verifying_key(), public);
    assert!(keys::is_test_only_key(&public));
    assert!(!keys::is_test_only_key(&key(1).verifying_key()));
}

/// FORMAT.md's "verify by hand" recipe, as the script `ota/verify-by-hand.sh`, on a real bundle
/// (openssl, jq and coreutils only), and on a tampered one.
#[test]
fn the_by_hand_recipe_in_format_md_verifies_a_bundle() {
    for tool in ["openssl", "jq", "sha256sum", "od"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            found,
            "{tool} is needed by this test: run tests/setup-host.sh"
        );
    }
    let f = standard();
    let dir = repo_root().join("ota/keys/test-only");
    let signing = keys::load_signing_key(&dir.join("test-only-signing.pem")).unwrap();
    let (bytes, _) = bundle_bytes(&f, &signing);
    let good = write_bundle(&f, "good.kwb", &bytes);
    let script = repo_root().join("ota/verify-by-hand.sh");
    let run = |bundle: &Path| {
        std::process::Command::new("bash")
            .arg(&script)
            .arg(bundle)
            .arg(dir.join("test-only-signing.pub"))
            .current_dir(&f.dir)
            .output()
            .unwrap()
    };
    let out = run(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Signature Verified Successfully"),
        "{stdout}"
    );
    assert!(stdout.contains("payload extra: 1 chunks OK"), "{stdout}");

    let start = data_offset(&bytes);
    for (pos, what) in [(HEADER_LEN + 3, "signature"), (start + CHUNK + 1, "rootfs")] {
        let mut bad = bytes.clone();
        bad[pos] ^= 1;
        let path = write_bundle(&f, "bad.kwb", &bad);
        let out = run(&path);
        assert!(!out.status.success(), "tampered {what} passed");
    }
}

/// Reading never needs more than the manifest's bytes to refuse a bundle signed by a stranger:
/// a stream that would fail on any payload read is never touched.
#[test]
fn no_payload_byte_is_read_before_the_signature_is_checked() {
    struct Limited<'a> {
        data: &'a [u8],
        limit: usize,
        pos: usize,
    }
    impl Read for Limited<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let end = (self.pos + buf.len()).min(self.data.len());
            if end > self.limit {
                panic!("read past the manifest before verifying");
            }
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            Ok(n)
        }
    }
    let f = standard();
    let (bytes, _) = bundle_bytes(&f, &key(1));
    let limit = data_offset(&bytes);
    for keyring in [ring(&[&key(2)]), ring(&[&key(1)])] {
        let stream = Limited {
            data: &bytes,
            limit,
            pos: 0,
        };
        let opened = BundleReader::open(stream, &keyring);
        assert_eq!(
            opened.is_ok(),
            keyring.find(key(1).verifying_key().as_bytes()).is_some()
        );
    }
}

/// The sans-IO path an async installer takes: parse and verify the head from a buffer, then feed
/// the cursor chunk by chunk from byte slices.
#[test]
fn the_cursor_alone_drives_an_install_without_a_reader() {
    let f = fixture(&[
        ("rootfs", pattern(2 * CHUNK + 10, 2)),
        ("empty", Vec::new()),
        ("extra", pattern(300, 3)),
    ]);
    let k = key(1);
    let (bytes, _) = bundle_bytes(&f, &k);
    let header = Header::parse(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    let start = header.data_offset() as usize;
    let verified = header
        .verify(&bytes[HEADER_LEN..start], &ring(&[&k]))
        .unwrap();
    let mut cursor = ChunkCursor::new(verified.clone());
    let mut at = start;
    let mut slots: Vec<Vec<u8>> = vec![Vec::new(); 3];
    while let Next::Chunk(pos) = cursor.next_step().unwrap() {
        let data = &bytes[at..at + pos.len];
        assert_eq!(cursor.accept(data).unwrap(), pos);
        assert_eq!(pos.offset, slots[pos.payload].len() as u64);
        slots[pos.payload].extend_from_slice(data);
        at += pos.len;
    }
    assert_eq!(at, bytes.len());
    let expected: Vec<Vec<u8>> = f.payloads.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(slots, expected);
    // Nothing more is expected: more bytes are trailing data.
    assert_eq!(cursor.accept(b"x").unwrap_err(), Error::TrailingData);

    // A wrong chunk, then the same error again; a wrong length.
    let mut cursor = ChunkCursor::new(verified.clone());
    let Next::Chunk(pos) = cursor.next_step().unwrap() else {
        panic!()
    };
    let wrong = &bytes[start + 1..start + 1 + pos.len];
    let mismatch = Error::ChunkMismatch {
        payload: "rootfs".into(),
        index: 0,
    };
    assert_eq!(cursor.accept(wrong).unwrap_err(), mismatch);
    assert_eq!(cursor.next_step().unwrap_err(), mismatch);
    let mut cursor = ChunkCursor::new(verified.clone());
    assert!(matches!(
        cursor.accept(&bytes[start..start + 10]).unwrap_err(),
        Error::SizeMismatch { expected, actual: 10, .. } if expected == CHUNK as u64
    ));
    // Resumed at the last chunk of rootfs: the next payloads follow.
    let mut cursor = ChunkCursor::resume(verified.clone(), 0, 2).unwrap();
    assert_eq!(
        cursor.truncated(),
        Error::Truncated {
            payload: "rootfs".into(),
            index: 2
        }
    );
    let mut cursor = ChunkCursor::resume(verified, 0, 2).unwrap();
    let off = start + 2 * CHUNK;
    cursor.accept(&bytes[off..off + 10]).unwrap();
    let Next::Chunk(pos) = cursor.next_step().unwrap() else {
        panic!()
    };
    assert_eq!((pos.payload, pos.index, pos.len), (2, 0, 300));
}
