//! The TUF client: which bundle the repository offers this board, checked with `tough`
//! against the device's root of trust, over the updater's HTTPS client.
//!
//! `tough` does the TUF client workflow (root rotation, timestamp, snapshot, targets, with
//! rollback, freeze, mix-and-match and size checks); this module gives it a [`tough::Transport`]
//! on top of [`HttpsClient`], maps its errors to specific ones, and turns the signed targets
//! into an [`Offer`]. The bundle itself is not fetched by `tough` but streamed by the installer
//! through [`super::HttpSource`]; [`Offer::check_head`] binds what it reads to the offer before
//! any payload byte is used, and [`TargetDigest`] checks the whole bundle at the end.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use keywarden_bundle::{Digest, Version};
use sha2::{Digest as _, Sha256};
use tough::schema::{Root, Signed};
use tough::{
    Bytes, ExpirationEnforcement, Limits, RepositoryLoader, Transport, TransportError,
    TransportErrorKind, TransportStream,
};
use url::Url;

use super::https::{map_io, HttpsClient, HttpsConfig};
use crate::{Error, Result};

/// The custom-metadata keys of an update target (see `ota/REPOSITORY.md`).
pub const CUSTOM_VERSION: &str = "version";
/// The board the bundle is for (the manifest's `compatible`).
pub const CUSTOM_COMPATIBLE: &str = "compatible";
/// SHA-256 of the bundle's header and manifest (its first `112 + M` bytes).
pub const CUSTOM_MANIFEST_SHA256: &str = "manifest_sha256";

/// The target name of a bundle: `<compatible>/keywarden-<version>.kwb`.
pub fn target_name(compatible: &str, version: &Version) -> String {
    format!("{compatible}/keywarden-{version}.kwb")
}

/// Where a target's file is in a consistent-snapshot repository, relative to the targets
/// base URL: the SHA-256 prefixes the file name, not the directory (`<compatible>/<sha256>.keywarden-<version>.kwb`,
/// as the TUF specification and python-tuf have it).
pub fn target_file_path(name: &str, sha256: &Digest) -> String {
    match name.rsplit_once('/') {
        Some((dir, base)) => format!("{dir}/{}.{base}", sha256.to_hex()),
        None => format!("{}.{name}", sha256.to_hex()),
    }
}

/// Size limits for metadata (endless-data defence). Targets metadata listed in a snapshot is
/// limited to the length the snapshot gives.
pub fn default_limits() -> Limits {
    Limits {
        max_root_size: 256 * 1024,
        max_targets_size: 4 * 1024 * 1024,
        max_timestamp_size: 64 * 1024,
        max_snapshot_size: 256 * 1024,
        max_root_updates: 64,
    }
}

/// Everything the update client needs (from the updater's configuration).
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The HTTPS client's CA bundle and timeouts.
    pub https: HttpsConfig,
    /// The device's root of trust: the `root.json` it was given at manufacture (read-only).
    pub root_file: PathBuf,
    /// A directory on the data partition where the last metadata seen is kept (rollback
    /// protection across reboots), created if missing.
    pub datastore: PathBuf,
    /// Base URL of the TUF metadata (`https://updates.example/metadata/`).
    pub metadata_url: Url,
    /// Base URL of the targets (`https://updates.example/targets/`).
    pub targets_url: Url,
    /// This device's board string (a bundle's `compatible` must equal it).
    pub board: String,
    /// Metadata size limits.
    pub limits: Limits,
}

impl RemoteConfig {
    /// A configuration with the default timeouts ([`HttpsConfig::new`]) and metadata limits
    /// ([`default_limits`]).
    pub fn new(
        ca_file: impl Into<PathBuf>,
        root_file: impl Into<PathBuf>,
        datastore: impl Into<PathBuf>,
        metadata_url: Url,
        targets_url: Url,
        board: impl Into<String>,
    ) -> RemoteConfig {
        RemoteConfig {
            https: HttpsConfig::new(ca_file),
            root_file: root_file.into(),
            datastore: datastore.into(),
            metadata_url,
            targets_url,
            board: board.into(),
            limits: default_limits(),
        }
    }
}

/// The newest bundle the repository offers this board, as the TUF targets metadata signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The bundle version.
    pub version: Version,
    /// The TUF target name (`<compatible>/keywarden-<version>.kwb`).
    pub target: String,
    /// The bundle's URL (consistent-snapshot path under the targets base URL).
    pub url: String,
    /// The bundle's length in bytes.
    pub length: u64,
    /// SHA-256 of the whole bundle.
    pub sha256: Digest,
    /// SHA-256 of the bundle's header and manifest (its first `112 + M` bytes).
    pub manifest_sha256: Digest,
    /// The board it is for.
    pub compatible: String,
}

impl Offer {
    /// Checks the bundle's first `112 + M` bytes (header and manifest, as downloaded, before the
    /// signature check or any payload byte) against the offer: their SHA-256 must be
    /// `manifest_sha256`, and the manifest's version and board the offer's. This binds the
    /// TUF-approved target to the signed bundle: a different bundle, even one validly signed
    /// (an older one, another board's), is refused here.
    pub fn check_head(&self, head: &[u8]) -> Result<()> {
        let got = Digest::of(head);
        if got != self.manifest_sha256 {
            return Err(self.mismatch("SHA-256", self.manifest_sha256.to_hex(), got.to_hex()));
        }
        let unverified = keywarden_bundle::read_unverified(head)?;
        if unverified.manifest.version != self.version {
            return Err(self.mismatch(
                "version",
                self.version.to_string(),
                unverified.manifest.version.to_string(),
            ));
        }
        if unverified.manifest.compatible != self.compatible {
            return Err(self.mismatch(
                "compatible",
                self.compatible.clone(),
                unverified.manifest.compatible,
            ));
        }
        Ok(())
    }

    fn mismatch(&self, what: &str, expected: String, got: String) -> Error {
        Error::OfferMismatch {
            target: self.target.clone(),
            what: what.to_owned(),
            expected,
            got,
        }
    }

    /// A whole-bundle check: feed it every byte of the bundle in order, then
    /// [`finish`](TargetDigest::finish).
    pub fn digest(&self) -> TargetDigest {
        TargetDigest {
            target: self.target.clone(),
            length: self.length,
            sha256: self.sha256,
            seen: 0,
            hasher: Sha256::new(),
        }
    }
}

/// The whole-bundle length and SHA-256 check of a TUF target (see [`Offer::digest`]).
#[derive(Debug, Clone)]
pub struct TargetDigest {
    target: String,
    length: u64,
    sha256: Digest,
    seen: u64,
    hasher: Sha256,
}

impl TargetDigest {
    /// Adds the next bytes; fails as soon as they go past the signed length.
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        self.seen = self.seen.saturating_add(data.len() as u64);
        if self.seen > self.length {
            return Err(self.length_error());
        }
        self.hasher.update(data);
        Ok(())
    }

    fn length_error(&self) -> Error {
        Error::TargetMismatch {
            target: self.target.clone(),
            what: "length".to_owned(),
            expected: self.length.to_string(),
            got: if self.seen > self.length {
                format!("more than {}", self.length)
            } else {
                self.seen.to_string()
            },
        }
    }

    /// Checks the length and the SHA-256 of everything fed.
    pub fn finish(self) -> Result<()> {
        if self.seen != self.length {
            return Err(self.length_error());
        }
        let got = Digest(self.hasher.finalize().into());
        if got != self.sha256 {
            return Err(Error::TargetMismatch {
                target: self.target,
                what: "SHA-256".to_owned(),
                expected: self.sha256.to_hex(),
                got: got.to_hex(),
            });
        }
        Ok(())
    }
}

/// Reads a bundle's header and manifest bytes (the first `112 + M`) from `reader`.
pub fn read_head(mut reader: impl Read) -> Result<Vec<u8>> {
    let io = |what: &str, e: std::io::Error| keywarden_bundle::Error::Io {
        what: what.to_owned(),
        reason: e.to_string(),
    };
    let mut fixed = [0u8; keywarden_bundle::HEADER_LEN];
    reader
        .read_exact(&mut fixed)
        .map_err(|e| io("read the bundle header", e))?;
    let header = keywarden_bundle::Header::parse(&fixed)?;
    let mut head = fixed.to_vec();
    head.resize(
        keywarden_bundle::HEADER_LEN + header.manifest_len as usize,
        0,
    );
    reader
        .read_exact(&mut head[keywarden_bundle::HEADER_LEN..])
        .map_err(|e| io("read the manifest", e))?;
    Ok(head)
}

/// The update client: checks the TUF repository for an offer for this board.
#[derive(Debug, Clone)]
pub struct UpdateClient {
    config: RemoteConfig,
    client: HttpsClient,
}

impl UpdateClient {
    /// Reads the CA bundle (the root of trust is read at each check).
    pub fn new(config: RemoteConfig) -> Result<UpdateClient> {
        let client = HttpsClient::new(&config.https)?;
        Ok(UpdateClient { config, client })
    }

    /// The HTTPS client (for [`super::HttpSource`]).
    pub fn https(&self) -> &HttpsClient {
        &self.client
    }

    /// The bundle source for an offer.
    pub fn source(&self, offer: &Offer) -> super::HttpSource {
        super::HttpSource::for_offer(self.client.clone(), offer)
    }

    /// The root to start from: the newest root already verified (kept in the datastore by an
    /// earlier check), or the device's root of trust.
    fn trusted_root(&self) -> Result<Vec<u8>> {
        let path = &self.config.root_file;
        let shipped = std::fs::read(path).map_err(|e| Error::TufRoot {
            path: path.clone(),
            problem: format!("cannot read it: {e}"),
        })?;
        let shipped_root: Signed<Root> =
            serde_json::from_slice(&shipped).map_err(|e| Error::TufRoot {
                path: path.clone(),
                problem: format!("not TUF root metadata: {e}"),
            })?;
        let kept_path = self.config.datastore.join("root.json");
        if let Ok(kept) = std::fs::read(&kept_path) {
            match serde_json::from_slice::<Signed<Root>>(&kept) {
                Ok(root) if root.signed.version >= shipped_root.signed.version => return Ok(kept),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    path = %kept_path.display(),
                    "ignoring unreadable kept root metadata: {e}"
                ),
            }
        }
        Ok(shipped)
    }

    /// Loads the repository's metadata (async: `tough` is) and returns the newest bundle for
    /// this board, if any. Does not compare with the installed version: the caller refuses
    /// anything not newer (anti-rollback by version).
    pub async fn check(&self) -> Result<Option<Offer>> {
        Ok(self.offers().await?.into_iter().next_back())
    }

    /// Every bundle the repository offers this board, oldest first.
    pub async fn offers(&self) -> Result<Vec<Offer>> {
        let root = self.trusted_root()?;
        std::fs::create_dir_all(&self.config.datastore)
            .map_err(|e| Error::io("creating", &self.config.datastore, e))?;
        let repo = RepositoryLoader::new(
            &root,
            self.config.metadata_url.clone(),
            self.config.targets_url.clone(),
        )
        .transport(UreqTransport::new(self.client.clone()))
        .limits(self.config.limits)
        .datastore(&self.config.datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(from_tough)?;
        let mut offers = Vec::new();
        for (name, target) in repo.all_targets() {
            // A malformed target for this board (a publishing mistake: the metadata is signed)
            // is skipped, not fatal: the other bundles stay installable.
            match parse_offer(
                &self.config.board,
                &self.config.targets_url,
                name.raw(),
                target,
            ) {
                Ok(Some(offer)) => offers.push(offer),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a target: {e}"),
            }
        }
        offers.sort_by(|a, b| a.version.cmp(&b.version));
        tracing::debug!(
            count = offers.len(),
            timestamp = repo.timestamp().signed.version.get(),
            "TUF repository loaded"
        );
        Ok(offers)
    }
}

/// The offer target `name` makes to `board`: `None` if it is not a bundle (no `compatible`) or
/// is for another board; [`Error::BadOffer`] if it is for `board` but its custom metadata or its
/// name is malformed.
pub fn parse_offer(
    board: &str,
    targets_url: &Url,
    name: &str,
    target: &tough::schema::Target,
) -> Result<Option<Offer>> {
    let bad = |problem: String| Error::BadOffer {
        target: name.to_owned(),
        problem,
    };
    let text = |key: &str| -> Result<&str> {
        target
            .custom
            .get(key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("custom metadata {key:?} missing or not a string")))
    };
    let Some(compatible) = target
        .custom
        .get(CUSTOM_COMPATIBLE)
        .and_then(|v| v.as_str())
    else {
        tracing::debug!(target = name, "not a bundle (no compatible): ignored");
        return Ok(None);
    };
    if compatible != board {
        return Ok(None);
    }
    let version = Version::parse(text(CUSTOM_VERSION)?).map_err(|e| bad(e.to_string()))?;
    let manifest_sha256 = Digest::from_hex(text(CUSTOM_MANIFEST_SHA256)?)
        .ok_or_else(|| bad("manifest_sha256 is not 64 lowercase hex digits".to_owned()))?;
    let expected = target_name(compatible, &version);
    if name != expected {
        return Err(bad(format!(
            "a bundle for {compatible} {version} must be named {expected}"
        )));
    }
    let sha: [u8; 32] = target
        .hashes
        .sha256
        .as_ref()
        .try_into()
        .map_err(|_| bad("its sha256 is not 32 bytes".to_owned()))?;
    let sha256 = Digest(sha);
    let url = targets_url
        .join(&target_file_path(name, &sha256))
        .map_err(|e| bad(format!("no URL under {targets_url}: {e}")))?;
    Ok(Some(Offer {
        version,
        target: name.to_owned(),
        url: url.to_string(),
        length: target.length,
        sha256,
        manifest_sha256,
        compatible: compatible.to_owned(),
    }))
}

/// A [`tough::Transport`] on the updater's HTTPS client: each fetch runs the blocking request on
/// tokio's blocking pool and feeds the body through a small channel. When `tough` stops reading
/// (a size limit reached), the stream is dropped and the reading thread stops too.
#[derive(Debug, Clone)]
pub struct UreqTransport {
    client: HttpsClient,
}

impl UreqTransport {
    /// A transport over `client`.
    pub fn new(client: HttpsClient) -> UreqTransport {
        UreqTransport { client }
    }
}

/// An error carried through `tough` (which wants `'static` error sources) and recognised on the
/// way out.
#[derive(Debug)]
struct Carried(Error);

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

const READ_BUF: usize = 64 * 1024;

#[tough::async_trait]
impl Transport for UreqTransport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        if url.scheme() != "https" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let client = self.client.clone();
        let text = url.to_string();
        let request = text.clone();
        let response = tokio::task::spawn_blocking(move || client.get(&request, None))
            .await
            .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &text, e))?
            .map_err(|e| {
                TransportError::new_with_cause(TransportErrorKind::Other, &text, Carried(e))
            })?;
        let status = response.status().as_u16();
        if status == 404 || status == 410 {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, &text));
        }
        if status != 200 {
            let e = Error::HttpStatus {
                url: text.clone(),
                status,
            };
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                &text,
                Carried(e),
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut body = response.into_body().into_reader();
            loop {
                let mut buf = vec![0u8; READ_BUF];
                let item = match body.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(TransportError::new_with_cause(
                        TransportErrorKind::Other,
                        &text,
                        Carried(map_io(&text, &e)),
                    )),
                };
                let failed = item.is_err();
                // The receiver is gone: tough stopped reading (a limit, an error). Stop too.
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::pin(ChannelStream(rx)))
    }
}

/// The receiving end of a fetch as a stream.
struct ChannelStream(tokio::sync::mpsc::Receiver<std::result::Result<Bytes, TransportError>>);

impl futures_util::Stream for ChannelStream {
    type Item = std::result::Result<Bytes, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Recreates an error of ours found inside `tough`'s error chain (they are not `Clone`).
fn recreate(e: &Error) -> Error {
    match e {
        Error::HttpStatus { url, status } => Error::HttpStatus {
            url: url.clone(),
            status: *status,
        },
        Error::HttpTls { url, problem } => Error::HttpTls {
            url: url.clone(),
            problem: problem.clone(),
        },
        Error::HttpTimeout { url, phase } => Error::HttpTimeout {
            url: url.clone(),
            phase: phase.clone(),
        },
        Error::HttpTransfer { url, problem } => Error::HttpTransfer {
            url: url.clone(),
            problem: problem.clone(),
        },
        other => Error::Tuf {
            context: "fetch".to_owned(),
            problem: other.to_string(),
        },
    }
}

/// Maps a `tough` error to a specific one of ours (the attack it stopped, or the HTTPS failure).
pub(crate) fn from_tough(e: tough::error::Error) -> Error {
    use tough::error::Error as T;
    match &e {
        T::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => Error::TufRollback {
            role: role.to_string(),
            detail: format!("version {new_version} offered after version {current_version} was seen"),
        },
        T::OlderSnapshotInTimestamp {
            snapshot_new,
            snapshot_old,
            ..
        } => Error::TufRollback {
            role: "snapshot".to_owned(),
            detail: format!(
                "version {snapshot_new} named by the timestamp after version {snapshot_old} was seen"
            ),
        },
        T::SnapshotRoleRollback {
            role,
            old_role_version,
            new_role_version,
            ..
        } => Error::TufRollback {
            role: role.clone(),
            detail: format!(
                "version {new_role_version} named by the snapshot after version {old_role_version} was seen"
            ),
        },
        T::SnapshotRoleMissing { role, .. } => Error::TufRollback {
            role: role.clone(),
            detail: "dropped from the snapshot".to_owned(),
        },
        T::ExpiredMetadata { role, .. } => Error::TufExpired {
            role: role.to_string(),
        },
        T::VersionMismatch {
            role,
            fetched,
            expected,
            ..
        } => Error::TufMismatch {
            role: role.to_string(),
            detail: format!("version {fetched} where {expected} is listed"),
        },
        T::VerifyMetadata { role, source, .. } => Error::TufSignature {
            role: role.to_string(),
            detail: source.to_string(),
        },
        T::VerifyTrustedMetadata { source, .. } => Error::TufSignature {
            role: "trusted root".to_owned(),
            detail: source.to_string(),
        },
        T::SystemTimeSteppedBackward { .. } => Error::Tuf {
            context: "clock".to_owned(),
            problem: e.to_string(),
        },
        T::Transport { url, source, .. } => from_transport(url, source),
        _ => Error::Tuf {
            context: "loading the repository metadata".to_owned(),
            problem: e.to_string(),
        },
    }
}

fn from_transport(url: &Url, source: &TransportError) -> Error {
    let inner = std::error::Error::source(source);
    if let Some(inner) = inner {
        if let Some(Carried(ours)) = inner.downcast_ref::<Carried>() {
            return recreate(ours);
        }
        if let Some(t) = inner.downcast_ref::<tough::error::Error>() {
            match t {
                tough::error::Error::MaxSizeExceeded {
                    max_size,
                    specifier,
                    ..
                } => {
                    return Error::TufTooLarge {
                        url: url.to_string(),
                        max: *max_size,
                        by: (*specifier).to_owned(),
                    }
                }
                tough::error::Error::HashMismatch {
                    calculated,
                    expected,
                    ..
                } => {
                    return Error::TufMismatch {
                        role: url
                            .path_segments()
                            .and_then(|mut s| s.next_back())
                            .unwrap_or("metadata")
                            .to_owned(),
                        detail: format!("SHA-256 {calculated} where {expected} is listed"),
                    }
                }
                _ => {}
            }
        }
    }
    Error::Tuf {
        context: format!("fetching {url}"),
        problem: source.to_string(),
    }
}

/// The root metadata in `path`, parsed (for the publishing side and tests).
pub fn read_root(path: &Path) -> Result<Signed<Root>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::TufRoot {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn target(custom: &[(&str, &str)]) -> tough::schema::Target {
        tough::schema::Target {
            length: 1234,
            hashes: tough::schema::Hashes {
                sha256: vec![0xab; 32].into(),
                _extra: HashMap::new(),
            },
            custom: custom
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
                .collect(),
            _extra: HashMap::new(),
        }
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("version", "1.2.0-rc.1"),
            ("compatible", "qemu-x86_64"),
            ("manifest_sha256", "cd".repeat(32).leak()),
        ]
    }

    fn base() -> Url {
        Url::parse("https://updates.example/t/").unwrap()
    }

    #[test]
    fn a_well_formed_target_is_an_offer_with_its_consistent_snapshot_url() {
        let offer = parse_offer(
            "qemu-x86_64",
            &base(),
            "qemu-x86_64/keywarden-1.2.0-rc.1.kwb",
            &target(&good()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(offer.version, Version::parse("1.2.0-rc.1").unwrap());
        assert_eq!(offer.length, 1234);
        assert_eq!(
            offer.url,
            format!(
                "https://updates.example/t/qemu-x86_64/{}.keywarden-1.2.0-rc.1.kwb",
                "ab".repeat(32)
            )
        );
        assert_eq!(offer.manifest_sha256.to_hex(), "cd".repeat(32));
    }

    #[test]
    fn other_boards_and_other_files_are_not_offers() {
        let name = "qemu-x86_64/keywarden-1.2.0-rc.1.kwb";
        assert_eq!(
            parse_offer("rpi4", &base(), name, &target(&good())).unwrap(),
            None
        );
        assert_eq!(
            parse_offer("qemu-x86_64", &base(), "notes.txt", &target(&[])).unwrap(),
            None
        );
    }

    #[test]
    fn malformed_offers_for_this_board_are_named() {
        let name = "qemu-x86_64/keywarden-1.2.0-rc.1.kwb";
        let mut bad_version = good();
        bad_version[0].1 = "1.2";
        let mut bad_digest = good();
        bad_digest[2].1 = "CD";
        let missing: Vec<_> = good().into_iter().take(2).collect();
        for custom in [bad_version, bad_digest, missing] {
            assert!(matches!(
                parse_offer("qemu-x86_64", &base(), name, &target(&custom)),
                Err(Error::BadOffer { .. })
            ));
        }
        // The name must match the custom metadata.
        assert!(matches!(
            parse_offer(
                "qemu-x86_64",
                &base(),
                "qemu-x86_64/keywarden-9.9.9.kwb",
                &target(&good())
            ),
            Err(Error::BadOffer { .. })
        ));
    }

    #[test]
    fn the_target_digest_checks_length_and_hash() {
        let data = b"bundle bytes";
        let offer = Offer {
            version: Version::parse("1.0.0").unwrap(),
            target: "b/keywarden-1.0.0.kwb".to_owned(),
            url: String::new(),
            length: data.len() as u64,
            sha256: Digest::of(data),
            manifest_sha256: Digest::of(b""),
            compatible: "b".to_owned(),
        };
        let mut digest = offer.digest();
        digest.update(&data[..5]).unwrap();
        digest.update(&data[5..]).unwrap();
        digest.finish().unwrap();
        let mut digest = offer.digest();
        digest.update(b"bundle bytez").unwrap();
        assert!(matches!(digest.finish(), Err(Error::TargetMismatch { .. })));
    }
}
