//! The publishing side: a TUF repository directory, created and updated from bundles, served
//! as static files (see `ota/REPOSITORY.md`).
//!
//! Layout of `REPO`:
//! - `REPO/metadata/`: `N.root.json` (every root version, kept for devices to walk),
//!   `timestamp.json`, `N.snapshot.json`, `N.targets.json` (consistent snapshots: old versions
//!   stay, so a device mid-update never sees a mix);
//! - `REPO/targets/<compatible>/<sha256>.keywarden-<version>.kwb`: the bundles.
//!
//! Keys are PKCS#8 PEM ed25519 private keys (`openssl genpkey -algorithm ed25519`); the
//! functions take the files of all the keys the caller holds and sign each role with the ones
//! its root lists.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use keywarden_bundle::Digest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tough::editor::signed::SignedRole;
use tough::editor::RepositoryEditor;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{
    Hashes, KeyHolder, Metafile, RoleKeys, RoleType, Root, Signed, Target, Timestamp,
};
use tough::sign::Sign;
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader};

use super::tuf::{
    read_head, target_file_path, target_name, CUSTOM_COMPATIBLE, CUSTOM_MANIFEST_SHA256,
    CUSTOM_VERSION,
};
use crate::{Error, Result};

const SPEC_VERSION: &str = "1.0.0";

/// The metadata directory of a repository.
pub fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

/// The targets directory of a repository.
pub fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
}

/// An ed25519 private key in a PKCS#8 PEM file, as a `tough` key source.
#[derive(Debug, Clone)]
pub struct PemKey {
    /// The PEM file.
    pub path: PathBuf,
}

#[tough::async_trait]
impl KeySource for PemKey {
    async fn as_sign(
        &self,
    ) -> std::result::Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>>
    {
        let der = PrivatePkcs8KeyDer::from_pem_file(&self.path)
            .map_err(|e| format!("{}: no PKCS#8 PEM private key: {e}", self.path.display()))?;
        let pair = tough::sign::parse_keypair(der.secret_pkcs8_der())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(Box::new(pair))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("keywarden does not write keys through tough".into())
    }
}

fn key_sources(keys: &[PathBuf]) -> Vec<Box<dyn KeySource>> {
    keys.iter()
        .map(|p| Box::new(PemKey { path: p.clone() }) as Box<dyn KeySource>)
        .collect()
}

fn publish_error(repo: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Publish {
        repo: repo.to_owned(),
        problem: problem.to_string(),
    }
}

/// When the metadata written by [`add_bundle`] and [`refresh_timestamp`] expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// targets.json (changes with each release).
    pub targets: DateTime<Utc>,
    /// snapshot.json.
    pub snapshot: DateTime<Utc>,
    /// timestamp.json (short: re-signed often, it bounds a freeze attack).
    pub timestamp: DateTime<Utc>,
}

impl Expiry {
    /// From now: targets and snapshot in `days` days, the timestamp in `timestamp_days`.
    pub fn from_now(days: i64, timestamp_days: i64) -> Expiry {
        let now = Utc::now();
        Expiry {
            targets: now + chrono::Duration::days(days),
            snapshot: now + chrono::Duration::days(days),
            timestamp: now + chrono::Duration::days(timestamp_days),
        }
    }
}

/// The key files that make a new repository's first root.
#[derive(Debug, Clone)]
pub struct InitKeys {
    /// Root keys (offline).
    pub root: Vec<PathBuf>,
    /// How many root keys must sign a root.
    pub root_threshold: u64,
    /// Targets key (signs releases).
    pub targets: PathBuf,
    /// Snapshot key.
    pub snapshot: PathBuf,
    /// Timestamp key (online: re-signs the timestamp periodically).
    pub timestamp: PathBuf,
}

/// The public TUF key of a private key file, and its key id.
async fn public_key(path: &Path) -> Result<(Decoded<Hex>, tough::schema::key::Key)> {
    let sign = PemKey {
        path: path.to_owned(),
    }
    .as_sign()
    .await
    .map_err(|e| publish_error(path, e))?;
    let key = sign.tuf_key();
    let id = key.key_id().map_err(|e| publish_error(path, e))?;
    Ok((id, key))
}

fn role_keys(ids: Vec<Decoded<Hex>>, threshold: u64) -> Result<RoleKeys> {
    Ok(RoleKeys {
        keyids: ids,
        threshold: NonZeroU64::new(threshold)
            .ok_or_else(|| publish_error(Path::new("."), "a threshold must be at least 1"))?,
        _extra: HashMap::new(),
    })
}

fn rng() -> aws_lc_rs::rand::SystemRandom {
    aws_lc_rs::rand::SystemRandom::new()
}

/// Creates a new, empty repository in `repo` (which must not hold one): writes
/// `metadata/1.root.json` naming the keys of `keys` and signed by its root keys. Returns its
/// path: the file devices are given as their root of trust.
pub async fn init(repo: &Path, keys: &InitKeys, root_expires: DateTime<Utc>) -> Result<PathBuf> {
    let meta = metadata_dir(repo);
    if latest_root(repo).is_ok() {
        return Err(publish_error(repo, "it already has root metadata"));
    }
    let mut all = HashMap::new();
    let mut root_ids = Vec::new();
    for path in &keys.root {
        let (id, key) = public_key(path).await?;
        root_ids.push(id.clone());
        all.insert(id, key);
    }
    let mut roles = HashMap::new();
    roles.insert(RoleType::Root, role_keys(root_ids, keys.root_threshold)?);
    for (role, path) in [
        (RoleType::Targets, &keys.targets),
        (RoleType::Snapshot, &keys.snapshot),
        (RoleType::Timestamp, &keys.timestamp),
    ] {
        let (id, key) = public_key(path).await?;
        roles.insert(role, role_keys(vec![id.clone()], 1)?);
        all.insert(id, key);
    }
    let root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: root_expires,
        keys: all,
        roles,
        _extra: HashMap::new(),
    };
    let signed = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &key_sources(&keys.root),
        &rng(),
    )
    .await
    .map_err(|e| publish_error(repo, e))?;
    check_threshold(repo, signed.signed(), &signed.signed().signed)?;
    signed
        .write(&meta, true)
        .await
        .map_err(|e| publish_error(repo, e))?;
    std::fs::create_dir_all(targets_dir(repo)).map_err(|e| Error::io("creating", repo, e))?;
    Ok(meta.join("1.root.json"))
}

/// Checks that `root` is signed by a threshold of `by`'s root keys.
fn check_threshold(repo: &Path, root: &Signed<Root>, by: &Root) -> Result<()> {
    by.verify_role(root).map_err(|e| {
        publish_error(
            repo,
            format!("the root metadata lacks a threshold of root signatures: {e}"),
        )
    })
}

/// The newest `N.root.json` in the repository.
pub fn latest_root(repo: &Path) -> Result<(u64, PathBuf)> {
    let meta = metadata_dir(repo);
    let entries = std::fs::read_dir(&meta).map_err(|e| Error::io("listing", &meta, e))?;
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &meta, e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".root.json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    best.ok_or_else(|| publish_error(repo, "no N.root.json in metadata/ (run init first)"))
}

fn file_url(path: &Path) -> Result<url::Url> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io("resolving", path, e))?;
    url::Url::from_directory_path(&abs)
        .map_err(|()| publish_error(path, "not an absolute directory path"))
}

/// Loads the repository as it is on disk (expired metadata accepted: it is being replaced).
async fn load_local(repo: &Path, root_path: &Path) -> Result<Option<tough::Repository>> {
    if !metadata_dir(repo).join("timestamp.json").exists() {
        return Ok(None);
    }
    let root = std::fs::read(root_path).map_err(|e| Error::io("reading", root_path, e))?;
    let loaded = RepositoryLoader::new(
        &root,
        file_url(&metadata_dir(repo))?,
        file_url(&targets_dir(repo))?,
    )
    .transport(FilesystemTransport)
    .expiration_enforcement(ExpirationEnforcement::Unsafe)
    .load()
    .await
    .map_err(|e| publish_error(repo, format!("loading the current metadata: {e}")))?;
    Ok(Some(loaded))
}

fn next(version: NonZeroU64) -> NonZeroU64 {
    version.saturating_add(1)
}

/// What [`add_bundle`] published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The target name.
    pub target: String,
    /// Where the bundle was copied, under `targets/`.
    pub path: PathBuf,
    /// The new targets, snapshot and timestamp version (they move together).
    pub targets_version: u64,
    /// The new snapshot version.
    pub snapshot_version: u64,
    /// The new timestamp version.
    pub timestamp_version: u64,
}

/// SHA-256 and length of a file.
fn file_digest(path: &Path) -> Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let len = std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io("reading", path, e))?;
    Ok((Digest(hasher.finalize().into()), len))
}

/// Publishes `bundle` in the repository `repo` (created with [`init`]): adds the target
/// `<compatible>/keywarden-<version>.kwb` with custom metadata `version`, `compatible` and
/// `manifest_sha256` read from the bundle's manifest, copies the bundle under `targets/`,
/// bumps the targets, snapshot and timestamp versions, sets their expiry and signs them with
/// the keys among `keys` that the newest root names.
///
/// The bundle's signature is not checked here (the publisher may not hold the device keyring);
/// run `keywarden bundle verify` first.
pub async fn add_bundle(
    repo: &Path,
    keys: &[PathBuf],
    bundle: &Path,
    expiry: &Expiry,
) -> Result<Published> {
    let head =
        read_head(std::fs::File::open(bundle).map_err(|e| Error::io("opening", bundle, e))?)?;
    let unverified = keywarden_bundle::read_unverified(head.as_slice())?;
    if hex::encode(unverified.header.signer) == keywarden_bundle::keys::TEST_ONLY_PUBLIC_KEY {
        tracing::warn!(
            bundle = %bundle.display(),
            "publishing a bundle signed with the TEST-ONLY key: only test devices accept it"
        );
    }
    let manifest = unverified.manifest;
    let manifest_sha256 = Digest::of(&head);
    let (sha256, length) = file_digest(bundle)?;
    let name = target_name(&manifest.compatible, &manifest.version);
    let mut custom = HashMap::new();
    custom.insert(
        CUSTOM_VERSION.to_owned(),
        Value::String(manifest.version.to_string()),
    );
    custom.insert(
        CUSTOM_COMPATIBLE.to_owned(),
        Value::String(manifest.compatible.clone()),
    );
    custom.insert(
        CUSTOM_MANIFEST_SHA256.to_owned(),
        Value::String(manifest_sha256.to_hex()),
    );
    let target = Target {
        length,
        hashes: Hashes {
            sha256: sha256.0.to_vec().into(),
            _extra: HashMap::new(),
        },
        custom,
        _extra: HashMap::new(),
    };

    let (_, root_path) = latest_root(repo)?;
    let current = load_local(repo, &root_path).await?;
    if let Some(current) = &current {
        let existing = current
            .all_targets()
            .find(|(n, _)| n.raw() == name)
            .map(|(_, t)| t.hashes.sha256.as_ref().to_vec());
        if existing.is_some_and(|h| h != sha256.0) {
            return Err(publish_error(
                repo,
                format!(
                    "{name} is already published with other content: a version names one bundle \
                     (give the new build a new version)"
                ),
            ));
        }
    }
    let (mut editor, versions) = match current {
        Some(current) => {
            let versions = (
                next(current.targets().signed.version),
                next(current.snapshot().signed.version),
                next(current.timestamp().signed.version),
            );
            let editor = RepositoryEditor::from_repo(&root_path, current)
                .await
                .map_err(|e| publish_error(repo, e))?;
            (editor, versions)
        }
        None => (
            RepositoryEditor::new(&root_path)
                .await
                .map_err(|e| publish_error(repo, e))?,
            (NonZeroU64::MIN, NonZeroU64::MIN, NonZeroU64::MIN),
        ),
    };
    editor
        .add_target(name.as_str(), target)
        .map_err(|e| publish_error(repo, e))?
        .targets_version(versions.0)
        .map_err(|e| publish_error(repo, e))?
        .targets_expires(expiry.targets)
        .map_err(|e| publish_error(repo, e))?
        .snapshot_version(versions.1)
        .snapshot_expires(expiry.snapshot)
        .timestamp_version(versions.2)
        .timestamp_expires(expiry.timestamp);
    let signed = editor
        .sign(&key_sources(keys))
        .await
        .map_err(|e| publish_error(repo, format!("signing: {e}")))?;

    // The bundle first, then the metadata that names it.
    let dest = targets_dir(repo).join(target_file_path(&name, &sha256));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    std::fs::copy(bundle, &dest).map_err(|e| Error::io("copying the bundle to", &dest, e))?;
    signed
        .write(metadata_dir(repo))
        .await
        .map_err(|e| publish_error(repo, format!("writing the metadata: {e}")))?;
    tracing::info!(target = %name, repo = %repo.display(), "bundle published");
    Ok(Published {
        target: name,
        path: dest,
        targets_version: versions.0.get(),
        snapshot_version: versions.1.get(),
        timestamp_version: versions.2.get(),
    })
}

/// Re-signs `timestamp.json` with the next version and a new expiry, naming the same
/// snapshot (the periodic job that keeps devices from seeing a frozen repository as current;
/// needs the timestamp key only). Returns the new timestamp version.
pub async fn refresh_timestamp(
    repo: &Path,
    keys: &[PathBuf],
    expires: DateTime<Utc>,
) -> Result<u64> {
    let meta = metadata_dir(repo);
    let (_, root_path) = latest_root(repo)?;
    let root = super::tuf::read_root(&root_path)?;
    let path = meta.join("timestamp.json");
    let old: Signed<Timestamp> =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?)
            .map_err(|e| publish_error(repo, format!("timestamp.json: {e}")))?;
    let snapshot_meta: &Metafile = old
        .signed
        .meta
        .get("snapshot.json")
        .ok_or_else(|| publish_error(repo, "timestamp.json names no snapshot"))?;
    let mut timestamp = Timestamp::new(SPEC_VERSION.to_owned(), next(old.signed.version), expires);
    timestamp
        .meta
        .insert("snapshot.json".to_owned(), snapshot_meta.clone());
    let signed = SignedRole::new(
        timestamp,
        &KeyHolder::Root(root.signed),
        &key_sources(keys),
        &rng(),
    )
    .await
    .map_err(|e| publish_error(repo, format!("signing the timestamp: {e}")))?;
    let version = signed.signed().signed.version.get();
    // Atomically: a device must never read half a timestamp.
    let tmp = meta.join(".timestamp.json.new");
    std::fs::write(&tmp, signed.buffer()).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("replacing", &path, e))?;
    Ok(version)
}

/// Rotates the root keys: writes `N+1.root.json` whose root role is `new_root_keys` (with
/// `threshold`), the other roles unchanged, signed by a threshold of the old root's keys and
/// of the new ones (all found among `keys`). Devices holding root N follow it on their next
/// check; give new devices the new file. Returns its path.
pub async fn rotate_root(
    repo: &Path,
    keys: &[PathBuf],
    new_root_keys: &[PathBuf],
    threshold: u64,
    expires: DateTime<Utc>,
) -> Result<PathBuf> {
    rotate_keys(
        repo,
        keys,
        RoleType::Root,
        new_root_keys,
        threshold,
        expires,
    )
    .await
}

/// Replaces the keys of one top-level role (`root`, `targets`, `snapshot` or `timestamp`):
/// writes `N+1.root.json` naming `new_keys` (with `threshold`) for `role`, the other roles
/// unchanged, expiring at `root_expires`, signed by a threshold of the old root's keys and of
/// the new root's (all found among `keys`). The role's current metadata, signed with the old
/// keys, is refused by devices from then on: re-sign it with the new keys
/// ([`refresh_timestamp`] for the timestamp, [`add_bundle`] for targets and snapshot) before
/// uploading. Returns the new root's path.
pub async fn rotate_keys(
    repo: &Path,
    keys: &[PathBuf],
    role: RoleType,
    new_keys: &[PathBuf],
    threshold: u64,
    root_expires: DateTime<Utc>,
) -> Result<PathBuf> {
    if role == RoleType::DelegatedTargets {
        return Err(publish_error(repo, "only top-level roles are rotated here"));
    }
    let (n, old_path) = latest_root(repo)?;
    let old = super::tuf::read_root(&old_path)?;
    let mut root = old.signed.clone();
    let old_ids = root
        .roles
        .get(&role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    let mut new_ids = Vec::new();
    for path in new_keys {
        let (id, key) = public_key(path).await?;
        new_ids.push(id.clone());
        root.keys.insert(id, key);
    }
    // Old keys no other role uses leave the key list.
    let still_used = |id: &Decoded<Hex>| {
        new_ids.contains(id)
            || root
                .roles
                .iter()
                .any(|(r, keys)| *r != role && keys.keyids.contains(id))
    };
    let dropped: Vec<_> = old_ids
        .iter()
        .filter(|id| !still_used(id))
        .cloned()
        .collect();
    for id in dropped {
        root.keys.remove(&id);
    }
    root.roles.insert(role, role_keys(new_ids, threshold)?);
    root.version = NonZeroU64::new(n.saturating_add(1))
        .ok_or_else(|| publish_error(repo, "root version overflow"))?;
    root.expires = root_expires;

    let sources = key_sources(keys);
    let by_new = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root.clone()),
        &sources,
        &rng(),
    )
    .await
    .map_err(|e| publish_error(repo, format!("signing with the new root keys: {e}")))?;
    let by_old = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(old.signed.clone()),
        &sources,
        &rng(),
    )
    .await
    .map_err(|e| publish_error(repo, format!("signing with the old root keys: {e}")))?;
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(|e| publish_error(repo, e))?;
    check_threshold(repo, signed.signed(), &old.signed)?;
    check_threshold(repo, signed.signed(), &root)?;
    signed
        .write(metadata_dir(repo), true)
        .await
        .map_err(|e| publish_error(repo, e))?;
    Ok(metadata_dir(repo).join(format!("{}.root.json", n + 1)))
}
