//! The update repository end to end: TUF repositories built by `remote::publish` with the
//! test-only keys, served over loopback HTTPS by `keywarden_testbus::https::StaticServer`, read
//! by `remote::UpdateClient` and `remote::HttpSource`. Covers the TUF attack list (rollback,
//! freeze, mix-and-match, arbitrary software, endless data, root key rotation) with the
//! specific error each one gives.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use keywarden_bundle::{CreateSpec, SigningKey};
use keywarden_testbus::https::StaticServer;
use keywarden_updated::install::BundleSource;
use keywarden_updated::remote::publish::{self, Expiry, InitKeys};
use keywarden_updated::remote::tuf::{default_limits, read_head};
use keywarden_updated::remote::{HttpSource, HttpsClient, HttpsConfig, RemoteConfig, UpdateClient};
use keywarden_updated::Error;
use tempfile::TempDir;

const BOARD: &str = "qemu-x86_64";

fn key(name: &str) -> PathBuf {
    keywarden_testbus::workspace_root()
        .join("ota/keys/test-only/tuf")
        .join(format!("{name}.pem"))
}

/// The keys a publisher holds for the usual operations (not the root keys).
fn online_keys() -> Vec<PathBuf> {
    ["targets", "snapshot", "timestamp"]
        .iter()
        .map(|k| key(k))
        .collect()
}

fn expiry() -> Expiry {
    Expiry::from_now(30, 7)
}

struct Fixture {
    dir: TempDir,
    repo: PathBuf,
    root1: PathBuf,
    server: StaticServer,
    ca: PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let root1 = publish::init(
            &repo,
            &InitKeys {
                root: vec![key("root-1")],
                root_threshold: 1,
                targets: key("targets"),
                snapshot: key("snapshot"),
                timestamp: key("timestamp"),
            },
            Utc::now() + chrono::Duration::days(365),
        )
        .await
        .expect("init");
        // The device's copy of its root of trust.
        let device_root = dir.path().join("device-root.json");
        std::fs::copy(&root1, &device_root).expect("copy root");
        let server = StaticServer::start(&repo);
        let ca = server.write_ca(dir.path().join("ca.pem"));
        Fixture {
            dir,
            repo,
            root1: device_root,
            server,
            ca,
        }
    }

    fn https(&self) -> HttpsConfig {
        HttpsConfig {
            ca_file: self.ca.clone(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
        }
    }

    fn client_for(&self, board: &str, datastore: &str) -> UpdateClient {
        let mut config = RemoteConfig::new(
            &self.ca,
            &self.root1,
            self.dir.path().join(datastore),
            url::Url::parse(&format!("{}metadata/", self.server.url())).unwrap(),
            url::Url::parse(&format!("{}targets/", self.server.url())).unwrap(),
            board,
        );
        config.https = self.https();
        assert_eq!(
            config.limits.max_timestamp_size,
            default_limits().max_timestamp_size
        );
        UpdateClient::new(config).expect("client")
    }

    fn client(&self) -> UpdateClient {
        self.client_for(BOARD, "datastore")
    }

    /// A signed bundle with a payload of `len` bytes.
    fn bundle(&self, version: &str, board: &str, len: usize) -> PathBuf {
        let payload = self
            .dir
            .path()
            .join(format!("rootfs-{board}-{version}.img"));
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + version.len()) as u8).collect();
        std::fs::write(&payload, data).unwrap();
        let spec = CreateSpec {
            version: version.to_owned(),
            compatible: board.to_owned(),
            created: 1_790_000_000,
            build_id: None,
            payloads: vec![("rootfs".to_owned(), payload)],
        };
        let path = self.dir.path().join(format!("{board}-{version}.kwb"));
        let mut out = std::fs::File::create(&path).unwrap();
        keywarden_bundle::create(&spec, &SigningKey::from_bytes(&[7; 32]), &mut out).unwrap();
        path
    }

    async fn publish(&self, version: &str, board: &str) -> PathBuf {
        let bundle = self.bundle(version, board, 200_000);
        publish::add_bundle(&self.repo, &online_keys(), &bundle, &expiry())
            .await
            .expect("publish");
        bundle
    }

    fn metadata(&self) -> PathBuf {
        publish::metadata_dir(&self.repo)
    }

    /// A copy of the metadata directory as it is now (what an attacker could replay).
    fn save_metadata(&self, name: &str) -> PathBuf {
        let saved = self.dir.path().join(name);
        copy_dir(&self.metadata(), &saved);
        saved
    }

    /// Serves `saved` as the metadata directory from now on.
    fn serve_metadata(&self, saved: &Path) {
        std::fs::remove_dir_all(self.metadata()).unwrap();
        copy_dir(saved, &self.metadata());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn read_all(source: &mut HttpSource, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut reader = source.open_at(offset).expect("open");
    reader.read_to_end(&mut out).map(|_| out)
}

// ---- offers and downloads -------------------------------------------------------------------

#[tokio::test]
async fn the_newest_bundle_for_this_board_is_offered_and_downloads_intact() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let newest = f.publish("1.1.0", BOARD).await;
    f.publish("2.0.0", "other-board").await;
    let offer = f.client().check().await.expect("check").expect("an offer");
    assert_eq!(offer.version.to_string(), "1.1.0");
    assert_eq!(offer.target, "qemu-x86_64/keywarden-1.1.0.kwb");
    assert_eq!(offer.compatible, BOARD);
    let bytes = std::fs::read(&newest).unwrap();
    assert_eq!(offer.length, bytes.len() as u64);
    assert!(
        offer
            .url
            .starts_with(&format!("{}targets/qemu-x86_64/", f.server.url())),
        "{}",
        offer.url
    );
    assert!(offer
        .url
        .ends_with(&format!("{}.keywarden-1.1.0.kwb", offer.sha256.to_hex())));

    let client = f.client();
    let offer2 = offer.clone();
    let source_client = client.https().clone();
    let got = tokio::task::spawn_blocking(move || {
        let mut source = HttpSource::for_offer(source_client, &offer2);
        read_all(&mut source, 0).expect("download")
    })
    .await
    .unwrap();
    assert_eq!(got, bytes);
    let head = read_head(got.as_slice()).unwrap();
    offer.check_head(&head).expect("head matches the offer");
    let mut digest = offer.digest();
    digest.update(&got).unwrap();
    digest.finish().expect("whole bundle matches");

    // Another board sees its own bundle only.
    let other = f
        .client_for("other-board", "datastore-other")
        .check()
        .await
        .unwrap();
    assert_eq!(other.expect("offer").version.to_string(), "2.0.0");
    assert!(f
        .client_for("no-such-board", "datastore-none")
        .check()
        .await
        .unwrap()
        .is_none());
}

// ---- rollback -------------------------------------------------------------------------------

#[tokio::test]
async fn an_older_timestamp_after_a_newer_one_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let old = f.save_metadata("old-metadata");
    f.publish("1.1.0", BOARD).await;
    let client = f.client();
    assert_eq!(
        client.check().await.unwrap().unwrap().version.to_string(),
        "1.1.0"
    );
    f.serve_metadata(&old);
    match client.check().await {
        Err(Error::TufRollback { role, .. }) => assert_eq!(role, "timestamp"),
        other => panic!("expected a timestamp rollback, got {other:?}"),
    }
    // A device that never saw the newer one takes the old metadata (nothing to compare with).
    let fresh = f.client_for(BOARD, "fresh-datastore");
    assert_eq!(
        fresh.check().await.unwrap().unwrap().version.to_string(),
        "1.0.0"
    );
}

#[tokio::test]
async fn a_new_timestamp_naming_an_older_snapshot_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let old = f.save_metadata("old-metadata");
    f.publish("1.1.0", BOARD).await;
    let client = f.client();
    client.check().await.unwrap();
    // The old snapshot, with a fresh timestamp (version 2, as seen) naming it.
    f.serve_metadata(&old);
    let version = publish::refresh_timestamp(&f.repo, &online_keys(), expiry().timestamp)
        .await
        .unwrap();
    assert_eq!(version, 2);
    match client.check().await {
        Err(Error::TufRollback { role, .. }) => assert_eq!(role, "snapshot"),
        other => panic!("expected a snapshot rollback, got {other:?}"),
    }
}

// ---- freeze ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_timestamp_is_refused_until_it_is_re_signed() {
    let f = Fixture::new().await;
    let bundle = f.bundle("1.0.0", BOARD, 100_000);
    let mut stale = expiry();
    stale.timestamp = Utc::now() - chrono::Duration::hours(1);
    publish::add_bundle(&f.repo, &online_keys(), &bundle, &stale)
        .await
        .unwrap();
    match f.client().check().await {
        Err(Error::TufExpired { role }) => assert_eq!(role, "timestamp"),
        other => panic!("expected expired timestamp metadata, got {other:?}"),
    }
    publish::refresh_timestamp(&f.repo, &online_keys(), expiry().timestamp)
        .await
        .unwrap();
    assert!(f.client().check().await.unwrap().is_some());
}

// ---- mix and match --------------------------------------------------------------------------

#[tokio::test]
async fn targets_metadata_from_another_snapshot_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    f.publish("1.1.0", BOARD).await;
    let meta = f.metadata();
    // 2.snapshot.json names 2.targets.json by hash; serve version 1's in its place.
    std::fs::copy(meta.join("1.targets.json"), meta.join("2.targets.json")).unwrap();
    match f.client().check().await {
        Err(Error::TufMismatch { role, detail }) => {
            assert_eq!(role, "2.targets.json");
            assert!(detail.contains("SHA-256"), "{detail}");
        }
        other => panic!("expected a mix-and-match refusal, got {other:?}"),
    }
}

// ---- arbitrary software ---------------------------------------------------------------------

#[tokio::test]
async fn a_replaced_or_tampered_bundle_is_caught_by_the_offer() {
    let f = Fixture::new().await;
    let old_bundle = f.publish("1.0.0", BOARD).await;
    f.publish("1.1.0", BOARD).await;
    let client = f.client();
    let offer = client.check().await.unwrap().unwrap();
    let served = publish::targets_dir(&f.repo).join(format!(
        "qemu-x86_64/{}.keywarden-1.1.0.kwb",
        offer.sha256.to_hex()
    ));

    // A payload byte flipped: the header and manifest still match, the whole bundle does not.
    let mut bytes = std::fs::read(&served).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&served, &bytes).unwrap();
    let (https, o) = (client.https().clone(), offer.clone());
    let got = tokio::task::spawn_blocking(move || {
        read_all(&mut HttpSource::for_offer(https, &o), 0).unwrap()
    })
    .await
    .unwrap();
    offer
        .check_head(&read_head(got.as_slice()).unwrap())
        .unwrap();
    let mut digest = offer.digest();
    digest.update(&got).unwrap();
    match digest.finish() {
        Err(Error::TargetMismatch { what, .. }) => assert_eq!(what, "SHA-256"),
        other => panic!("expected a SHA-256 mismatch, got {other:?}"),
    }

    // An older, validly signed bundle swapped in: refused on its header and manifest, before
    // any payload byte.
    let old = std::fs::read(&old_bundle).unwrap();
    match offer.check_head(&read_head(old.as_slice()).unwrap()) {
        Err(Error::OfferMismatch { what, .. }) => assert_eq!(what, "SHA-256"),
        other => panic!("expected a manifest_sha256 mismatch, got {other:?}"),
    }
    // ... and on its whole-bundle hash.
    let mut digest = offer.digest();
    digest.update(&old).unwrap();
    match digest.finish() {
        Err(Error::TargetMismatch { what, .. }) => assert_eq!(what, "SHA-256"),
        other => panic!("expected a SHA-256 mismatch, got {other:?}"),
    }
    // A short bundle is refused on its length.
    let mut digest = offer.digest();
    digest.update(&got[..got.len() - 1]).unwrap();
    match digest.finish() {
        Err(Error::TargetMismatch { what, .. }) => assert_eq!(what, "length"),
        other => panic!("expected a length mismatch, got {other:?}"),
    }
    // Too many bytes are refused as they come.
    let mut digest = offer.digest();
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        digest.update(&longer),
        Err(Error::TargetMismatch { .. })
    ));
}

#[tokio::test]
async fn targets_metadata_signed_by_an_unknown_key_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    // Sign with the snapshot key where the targets key belongs: a targets role nobody trusts.
    let bundle = f.bundle("6.6.6", BOARD, 1000);
    let wrong = vec![key("snapshot"), key("timestamp"), key("root-2")];
    let result = publish::add_bundle(&f.repo, &wrong, &bundle, &expiry()).await;
    assert!(
        matches!(result, Err(Error::Publish { .. })),
        "publishing without the targets key must fail: {result:?}"
    );
    assert_eq!(
        f.client()
            .check()
            .await
            .unwrap()
            .unwrap()
            .version
            .to_string(),
        "1.0.0"
    );
}

// ---- endless data ---------------------------------------------------------------------------

#[tokio::test]
async fn endless_metadata_is_refused_without_reading_it_all() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    f.server.set_extra_bytes(1 << 40);
    match f.client().check().await {
        Err(Error::TufTooLarge { url, max, .. }) => {
            assert!(url.ends_with("timestamp.json"), "{url}");
            assert_eq!(max, default_limits().max_timestamp_size);
        }
        other => panic!("expected a size limit refusal, got {other:?}"),
    }
    // The client stopped early, and stays stopped: far less than the terabyte was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        f.server.bytes_sent() < 64 << 20,
        "{}",
        f.server.bytes_sent()
    );
}

#[tokio::test]
async fn a_bundle_longer_than_its_target_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let client = f.client();
    let offer = client.check().await.unwrap().unwrap();
    f.server.set_extra_bytes(1 << 40);
    let https = client.https().clone();
    let result = tokio::task::spawn_blocking(move || {
        HttpSource::for_offer(https, &offer).open_at(0).map(|_| ())
    })
    .await
    .unwrap();
    match result {
        Err(Error::HttpLength { expected, .. }) => assert!(expected > 0),
        other => panic!("expected a length refusal, got {other:?}"),
    }
    assert!(f.server.bytes_sent() < 64 << 20);
}

// ---- root key rotation ----------------------------------------------------------------------

#[tokio::test]
async fn a_device_with_the_first_root_follows_a_rotation() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let client = f.client();
    client.check().await.unwrap();
    let root2 = publish::rotate_root(
        &f.repo,
        &[key("root-1"), key("root-2")],
        &[key("root-2")],
        1,
        Utc::now() + chrono::Duration::days(365),
    )
    .await
    .expect("rotate");
    assert!(root2.ends_with("2.root.json"));
    f.publish("1.1.0", BOARD).await;
    assert_eq!(
        client.check().await.unwrap().unwrap().version.to_string(),
        "1.1.0"
    );
    let kept = keywarden_updated::remote::tuf::read_root(&f.dir.path().join("datastore/root.json"))
        .unwrap();
    assert_eq!(kept.signed.version.get(), 2);
    // A device made after the rotation, given 1.root.json, walks to 2 as well.
    let fresh = f.client_for(BOARD, "fresh-datastore");
    assert_eq!(
        fresh.check().await.unwrap().unwrap().version.to_string(),
        "1.1.0"
    );
}

#[tokio::test]
async fn a_new_root_not_signed_by_the_old_root_is_refused() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let root2 = publish::rotate_root(
        &f.repo,
        &[key("root-1"), key("root-2")],
        &[key("root-2")],
        1,
        Utc::now() + chrono::Duration::days(365),
    )
    .await
    .unwrap();
    // Drop the old root key's signature: signed by the new key alone.
    let first = keywarden_updated::remote::tuf::read_root(&f.root1).unwrap();
    let old_ids: Vec<String> = first.signed.roles[&tough::schema::RoleType::Root]
        .keyids
        .iter()
        .map(|id| hex::encode(id.as_ref() as &[u8]))
        .collect();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&root2).unwrap()).unwrap();
    let sigs = json["signatures"].as_array_mut().unwrap();
    let before = sigs.len();
    sigs.retain(|s| !old_ids.contains(&s["keyid"].as_str().unwrap().to_owned()));
    assert_eq!(sigs.len(), before - 1);
    std::fs::write(&root2, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    match f.client().check().await {
        Err(Error::TufSignature { role, .. }) => assert_eq!(role, "root"),
        other => panic!("expected the new root to be refused, got {other:?}"),
    }
}

// ---- HttpSource -----------------------------------------------------------------------------

/// A server with one file of `len` bytes at `/f.bin`, and a client for it.
fn file_server(len: usize) -> (TempDir, StaticServer, Vec<u8>, HttpsClient) {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("www");
    std::fs::create_dir(&served).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(served.join("f.bin"), &data).unwrap();
    let server = StaticServer::start(&served);
    let ca = server.write_ca(dir.path().join("ca.pem"));
    let client = HttpsClient::new(&HttpsConfig {
        ca_file: ca,
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
    })
    .unwrap();
    (dir, server, data, client)
}

#[test]
fn range_reads_from_any_offset() {
    let (_dir, server, data, client) = file_server(300_000);
    let mut source = HttpSource::new(client, format!("{}f.bin", server.url()), data.len() as u64);
    assert_eq!(source.len(), Some(data.len() as u64));
    assert_eq!(read_all(&mut source, 0).unwrap(), data);
    assert_eq!(read_all(&mut source, 123_457).unwrap(), data[123_457..]);
    assert!(read_all(&mut source, data.len() as u64).unwrap().is_empty());
    assert!(matches!(
        source.open_at(data.len() as u64 + 1),
        Err(Error::HttpRangeIgnored { .. })
    ));
    let requests = server.requests();
    assert!(
        requests.contains(&"GET /f.bin bytes=123457- -> 206".to_owned()),
        "{requests:?}"
    );
}

#[test]
fn a_cut_mid_stream_fails_and_resumes_from_the_offset_reached() {
    let (_dir, server, data, client) = file_server(300_000);
    let mut source = HttpSource::new(client, format!("{}f.bin", server.url()), data.len() as u64);
    server.cut_next_response_after(100_000);
    let mut got = Vec::new();
    let mut reader = source.open_at(0).unwrap();
    let mut buf = [0u8; 8192];
    let error = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("the stream ended quietly after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(got.len() <= 100_000);
    assert!(error.to_string().contains("f.bin"), "{error}");
    let rest = read_all(&mut source, got.len() as u64).unwrap();
    got.extend_from_slice(&rest);
    assert_eq!(got, data);
}

#[test]
fn never_more_than_the_known_length_is_read() {
    let (_dir, server, data, client) = file_server(50_000);
    // 206 with the right Content-Range, no Content-Length, and data that does not stop.
    server.set_overrun(1 << 40);
    let mut source = HttpSource::new(client, format!("{}f.bin", server.url()), data.len() as u64);
    assert_eq!(read_all(&mut source, 1000).unwrap(), data[1000..]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.bytes_sent() < 64 << 20, "{}", server.bytes_sent());
}

#[test]
fn a_server_ignoring_range_is_an_error() {
    let (_dir, server, data, client) = file_server(10_000);
    server.set_ignore_range(true);
    let mut source = HttpSource::new(client, format!("{}f.bin", server.url()), data.len() as u64);
    match source.open_at(5) {
        Err(Error::HttpRangeIgnored { offset, .. }) => assert_eq!(offset, 5),
        Err(other) => panic!("expected a range error, got {other:?}"),
        Ok(_) => panic!("expected a range error"),
    }
}

#[test]
fn http_status_and_tls_failures_are_named() {
    let (dir, server, _data, client) = file_server(10);
    let url = format!("{}missing.bin", server.url());
    match HttpSource::new(client, url.clone(), 10).open_at(0) {
        Err(Error::HttpStatus { url: u, status }) => {
            assert_eq!(status, 404);
            assert_eq!(u, url);
        }
        Err(other) => panic!("expected HTTP 404, got {other:?}"),
        Ok(_) => panic!("expected HTTP 404"),
    }
    // A client trusting another CA.
    let other = StaticServer::start(dir.path());
    let wrong_ca = other.write_ca(dir.path().join("other-ca.pem"));
    let stranger = HttpsClient::new(&HttpsConfig::new(wrong_ca)).unwrap();
    match HttpSource::new(stranger, format!("{}f.bin", server.url()), 10).open_at(0) {
        Err(Error::HttpTls { .. }) => {}
        Err(other) => panic!("expected a TLS failure, got {other:?}"),
        Ok(_) => panic!("expected a TLS failure"),
    }
    // A CA file with no certificate.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing\n").unwrap();
    assert!(matches!(
        HttpsClient::new(&HttpsConfig::new(empty)),
        Err(Error::HttpsCa { .. })
    ));
}

#[test]
fn a_silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts TCP connections (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let ca = StaticServer::start(dir.path()).write_ca(dir.path().join("ca.pem"));
    let client = HttpsClient::new(&HttpsConfig {
        ca_file: ca,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
    })
    .unwrap();
    let url = format!("https://127.0.0.1:{port}/f.bin");
    match HttpSource::new(client, url.clone(), 10).open_at(0) {
        Err(Error::HttpTimeout { url: u, .. }) => assert_eq!(u, url),
        Err(other) => panic!("expected a timeout, got {other:?}"),
        Ok(_) => panic!("expected a timeout"),
    }
    drop(silent);
}

#[tokio::test]
async fn a_snapshot_naming_older_targets_is_refused() {
    use std::collections::HashMap;
    use tough::editor::signed::SignedRole;
    use tough::key_source::KeySource;
    use tough::schema::{Hashes, KeyHolder, Metafile, Snapshot, Timestamp};

    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    f.publish("1.1.0", BOARD).await;
    let client = f.client();
    client.check().await.unwrap();

    // With the snapshot and timestamp keys (a compromise of those, not of targets): snapshot 3
    // naming targets version 1, and timestamp 3 naming it.
    let meta = f.metadata();
    let root = keywarden_updated::remote::tuf::read_root(&meta.join("1.root.json")).unwrap();
    let holder = KeyHolder::Root(root.signed);
    let keys: Vec<Box<dyn KeySource>> = online_keys()
        .into_iter()
        .map(|path| Box::new(publish::PemKey { path }) as Box<dyn KeySource>)
        .collect();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let old_targets = std::fs::read(meta.join("1.targets.json")).unwrap();
    let metafile = |bytes: &[u8], version: u64| Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: keywarden_bundle::Digest::of(bytes).0.to_vec().into(),
            _extra: HashMap::new(),
        }),
        version: std::num::NonZeroU64::new(version).unwrap(),
        _extra: HashMap::new(),
    };
    let expires = expiry().snapshot;
    let mut snapshot = Snapshot::new(
        "1.0.0".to_owned(),
        std::num::NonZeroU64::new(3).unwrap(),
        expires,
    );
    snapshot
        .meta
        .insert("targets.json".to_owned(), metafile(&old_targets, 1));
    let snapshot = SignedRole::new(snapshot, &holder, &keys, &rng)
        .await
        .unwrap();
    snapshot.write(&meta, true).await.unwrap();
    let mut timestamp = Timestamp::new(
        "1.0.0".to_owned(),
        std::num::NonZeroU64::new(3).unwrap(),
        expires,
    );
    timestamp
        .meta
        .insert("snapshot.json".to_owned(), metafile(snapshot.buffer(), 3));
    let timestamp = SignedRole::new(timestamp, &holder, &keys, &rng)
        .await
        .unwrap();
    timestamp.write(&meta, true).await.unwrap();

    match client.check().await {
        Err(Error::TufRollback { role, .. }) => assert_eq!(role, "targets.json"),
        other => panic!("expected a targets rollback, got {other:?}"),
    }
}

#[tokio::test]
async fn a_version_names_one_bundle() {
    let f = Fixture::new().await;
    let first = f.bundle("1.0.0", BOARD, 1000);
    let first_copy = f.dir.path().join("first-copy.kwb");
    std::fs::copy(&first, &first_copy).unwrap();
    publish::add_bundle(&f.repo, &online_keys(), &first_copy, &expiry())
        .await
        .unwrap();
    // The same bundle again: allowed (new metadata versions, same target).
    let again = publish::add_bundle(&f.repo, &online_keys(), &first_copy, &expiry())
        .await
        .unwrap();
    assert_eq!(again.targets_version, 2);
    // Another build under the same version: refused.
    let other = f.bundle("1.0.0", BOARD, 2000);
    match publish::add_bundle(&f.repo, &online_keys(), &other, &expiry()).await {
        Err(Error::Publish { problem, .. }) => {
            assert!(problem.contains("already published"), "{problem}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let offer = f.client().check().await.unwrap().unwrap();
    assert_eq!(offer.length, std::fs::metadata(&first_copy).unwrap().len());
}

#[tokio::test]
async fn a_rotated_timestamp_key_takes_over_from_the_old_one() {
    let f = Fixture::new().await;
    f.publish("1.0.0", BOARD).await;
    let client = f.client();
    client.check().await.unwrap();
    let new_key = f.dir.path().join("timestamp-2.pem");
    keywarden_bundle::keys::generate(&new_key, &f.dir.path().join("timestamp-2.pub")).unwrap();
    publish::rotate_keys(
        &f.repo,
        &[key("root-1")],
        tough::schema::RoleType::Timestamp,
        std::slice::from_ref(&new_key),
        1,
        Utc::now() + chrono::Duration::days(365),
    )
    .await
    .unwrap();
    // The timestamp signed with the old key is no longer accepted...
    match client.check().await {
        Err(Error::TufSignature { role, .. }) => assert_eq!(role, "timestamp"),
        other => panic!("expected the old timestamp key to be refused, got {other:?}"),
    }
    // ... nor one re-signed with it ...
    assert!(matches!(
        publish::refresh_timestamp(&f.repo, &[key("timestamp")], expiry().timestamp).await,
        Err(Error::Publish { .. })
    ));
    // ... the new key's is.
    publish::refresh_timestamp(&f.repo, &[new_key], expiry().timestamp)
        .await
        .unwrap();
    assert_eq!(
        client.check().await.unwrap().unwrap().version.to_string(),
        "1.0.0"
    );
}
