//! `keywarden repo init | add | refresh-timestamp | rotate-root | rotate-keys`: the TUF update
//! repository (`ota/REPOSITORY.md`), thin over `keywarden_updated::remote::publish`. No bus:
//! these run on the release and root machines.
//!
//! Every private key file is read before anything is written, so a bad key file is refused
//! (exit 2) with the repository untouched; `repo add` verifies the bundle's signature with the
//! given bundle key(s) first and refuses one that does not verify the same way.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::{Subcommand, ValueEnum};
use keywarden_bundle::{self as kb, keys, Keyring, VerifyingKey};
use keywarden_updated::remote::publish::{self, Expiry, InitKeys, PemKey};
use serde_json::json;
use tough::key_source::KeySource as _;
use tough::schema::RoleType;

use crate::bundle::{hex_key, warn_test_key};
use crate::error::Error;
use crate::output::{print_json, Output};

/// The longest `--expires-days` / `--days` accepted (100 years).
const MAX_DAYS: i64 = 36_500;

/// The TUF update repository.
#[derive(Debug, Subcommand)]
pub enum Repo {
    /// Create a repository (once, on the offline root machine): writes metadata/1.root.json,
    /// the devices' root of trust.
    Init {
        /// The repository directory (must not hold a repository yet).
        repo: PathBuf,
        /// A root private key (PKCS#8 PEM); repeat for several holders.
        #[arg(long, value_name = "KEY.pem", required = true)]
        root_key: Vec<PathBuf>,
        /// How many root keys must sign a root.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        root_threshold: u64,
        /// The targets private key (signs releases).
        #[arg(long, value_name = "KEY.pem")]
        targets_key: PathBuf,
        /// The snapshot private key.
        #[arg(long, value_name = "KEY.pem")]
        snapshot_key: PathBuf,
        /// The timestamp private key (the online one).
        #[arg(long, value_name = "KEY.pem")]
        timestamp_key: PathBuf,
        /// When the root expires: RFC 3339, or YYYY-MM-DD (00:00 UTC).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        root_expires: DateTime<Utc>,
    },
    /// Publish a bundle: verify its signature with the bundle key, copy it to targets/, add the
    /// target and re-sign targets, snapshot and timestamp. A bundle that does not verify is
    /// refused with nothing written.
    Add {
        /// The repository directory.
        repo: PathBuf,
        /// The bundle (.kwb).
        bundle: PathBuf,
        /// A trusted bundle public key: 64 hex digits, or a file (SPKI PEM or 64 hex digits);
        /// repeat for several.
        #[arg(long, value_name = "HEX|PUB", required = true)]
        bundle_key: Vec<String>,
        /// A private key held (targets, snapshot, timestamp); repeat for several. Each role is
        /// signed with the ones among them that the newest root names.
        #[arg(long, value_name = "KEY.pem", required = true)]
        key: Vec<PathBuf>,
        /// Days until targets and snapshot expire.
        #[arg(long, value_name = "DAYS", default_value_t = 90, value_parser = days)]
        expires_days: i64,
        /// Days until the timestamp expires.
        #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = days)]
        timestamp_days: i64,
    },
    /// Re-sign timestamp.json with the next version and a new expiry, naming the same snapshot
    /// (the daily job: needs the timestamp key only).
    RefreshTimestamp {
        /// The repository directory.
        repo: PathBuf,
        /// The timestamp private key; repeat for several.
        #[arg(long, value_name = "KEY.pem", required = true)]
        key: Vec<PathBuf>,
        /// Days until the new timestamp expires.
        #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = days)]
        days: i64,
    },
    /// Rotate the root keys: writes N+1.root.json naming the new root keys, signed by a
    /// threshold of the old root keys and of the new ones.
    RotateRoot {
        /// The repository directory.
        repo: PathBuf,
        /// A private key held: the old root keys and the new ones; repeat for each.
        #[arg(long, value_name = "KEY.pem", required = true)]
        key: Vec<PathBuf>,
        /// A key of the new root role (private key file, PKCS#8 PEM); repeat for several.
        #[arg(long, value_name = "KEY.pem", required = true)]
        new_root_key: Vec<PathBuf>,
        /// How many of the new root keys must sign a root.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        threshold: u64,
        /// When the new root expires: RFC 3339, or YYYY-MM-DD (00:00 UTC).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        expires: DateTime<Utc>,
    },
    /// Replace the keys of the timestamp, snapshot or targets role: writes N+1.root.json naming
    /// the new keys. Re-sign the role with them (refresh-timestamp, or add) before uploading.
    RotateKeys {
        /// The repository directory.
        repo: PathBuf,
        /// A root private key held; repeat for several.
        #[arg(long, value_name = "KEY.pem", required = true)]
        root_key: Vec<PathBuf>,
        /// The role whose keys change.
        #[arg(long, value_enum)]
        role: Role,
        /// A new key of the role (private key file, PKCS#8 PEM); repeat for several.
        #[arg(long, value_name = "KEY.pem", required = true)]
        new_key: Vec<PathBuf>,
        /// How many of the new keys must sign the role.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        threshold: u64,
        /// When the new root expires: RFC 3339, or YYYY-MM-DD (00:00 UTC).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        root_expires: DateTime<Utc>,
    },
}

/// The roles `rotate-keys` changes (the root has `rotate-root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// timestamp.json.
    Timestamp,
    /// N.snapshot.json.
    Snapshot,
    /// N.targets.json.
    Targets,
}

impl Role {
    fn role_type(self) -> RoleType {
        match self {
            Role::Timestamp => RoleType::Timestamp,
            Role::Snapshot => RoleType::Snapshot,
            Role::Targets => RoleType::Targets,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Timestamp => "timestamp",
            Role::Snapshot => "snapshot",
            Role::Targets => "targets",
        }
    }
}

/// An expiry date: RFC 3339 (`2027-12-01T00:00:00Z`, or with an offset), or `YYYY-MM-DD`,
/// 00:00 UTC that day.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            "expected RFC 3339 (2027-12-01T00:00:00Z, or with an offset such as +02:00) or a date \
             YYYY-MM-DD (00:00 UTC)"
                .to_owned()
        })
}

/// A number of days from 1 to [`MAX_DAYS`].
fn days(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_DAYS).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of days from 1 to {MAX_DAYS}")),
    }
}

/// Run one repo command.
pub async fn run(out: Output, cmd: &Repo) -> Result<(), Error> {
    match cmd {
        Repo::Init {
            repo,
            root_key,
            root_threshold,
            targets_key,
            snapshot_key,
            timestamp_key,
            root_expires,
        } => {
            let keys = InitKeys {
                root: root_key.clone(),
                root_threshold: *root_threshold,
                targets: targets_key.clone(),
                snapshot: snapshot_key.clone(),
                timestamp: timestamp_key.clone(),
            };
            init(out, repo, &keys, *root_expires).await
        }
        Repo::Add {
            repo,
            bundle,
            bundle_key,
            key,
            expires_days,
            timestamp_days,
        } => {
            let expiry = Expiry::from_now(*expires_days, *timestamp_days);
            add(out, repo, bundle, bundle_key, key, &expiry).await
        }
        Repo::RefreshTimestamp { repo, key, days } => {
            let expires = Utc::now() + chrono::Duration::days(*days);
            refresh_timestamp(out, repo, key, expires).await
        }
        Repo::RotateRoot {
            repo,
            key,
            new_root_key,
            threshold,
            expires,
        } => {
            let what = format!("repo rotate-root {}", repo.display());
            rotate(
                out,
                &what,
                repo,
                key,
                RoleType::Root,
                new_root_key,
                *threshold,
                *expires,
            )
            .await
        }
        Repo::RotateKeys {
            repo,
            root_key,
            role,
            new_key,
            threshold,
            root_expires,
        } => {
            let what = format!("repo rotate-keys {} --role {}", repo.display(), role.name());
            rotate(
                out,
                &what,
                repo,
                root_key,
                role.role_type(),
                new_key,
                *threshold,
                *root_expires,
            )
            .await
        }
    }
}

fn refused(what: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.to_owned(),
        message: message.into(),
    }
}

fn failed(what: &str) -> impl FnOnce(keywarden_updated::Error) -> Error + '_ {
    move |source| Error::Repo {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

/// Reads every private key file as the publishing functions will, so that a missing or
/// malformed one is refused, naming the file, before anything is written.
async fn check_keys<'a>(
    what: &str,
    paths: impl IntoIterator<Item = &'a PathBuf>,
) -> Result<(), Error> {
    for path in paths {
        PemKey { path: path.clone() }
            .as_sign()
            .await
            .map_err(|e| refused(what, e.to_string()))?;
    }
    Ok(())
}

/// An expiry in the past would make metadata that every device refuses.
fn check_future(what: &str, option: &str, when: DateTime<Utc>) -> Result<(), Error> {
    if when <= Utc::now() {
        return Err(refused(
            what,
            format!(
                "{option} {} is in the past",
                when.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    Ok(())
}

fn check_threshold(what: &str, option: &str, threshold: u64, keys: usize) -> Result<(), Error> {
    if threshold > keys as u64 {
        return Err(refused(
            what,
            format!("{option} {threshold} is more than the {keys} key(s) given"),
        ));
    }
    Ok(())
}

/// The repository must exist (`repo init` first).
fn check_repo(what: &str, repo: &Path) -> Result<(u64, PathBuf), Error> {
    publish::latest_root(repo).map_err(|_| {
        refused(
            what,
            format!(
                "{} holds no repository (no metadata/N.root.json): run `keywarden repo init` first",
                repo.display()
            ),
        )
    })
}

async fn init(
    out: Output,
    repo: &Path,
    keys: &InitKeys,
    root_expires: DateTime<Utc>,
) -> Result<(), Error> {
    let what = format!("repo init {}", repo.display());
    if publish::latest_root(repo).is_ok() {
        return Err(refused(
            &what,
            "it already holds a repository (metadata/N.root.json); nothing was changed",
        ));
    }
    check_future(&what, "--root-expires", root_expires)?;
    check_threshold(
        &what,
        "--root-threshold",
        keys.root_threshold,
        keys.root.len(),
    )?;
    check_keys(
        &what,
        keys.root
            .iter()
            .chain([&keys.targets, &keys.snapshot, &keys.timestamp]),
    )
    .await?;
    let root = publish::init(repo, keys, root_expires)
        .await
        .map_err(failed(&what))?;
    let value = json!({
        "repo": repo,
        "root": root,
        "root_version": 1,
        "root_keys": keys.root.len(),
        "root_threshold": keys.root_threshold,
        "root_expires": root_expires.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    out.line(
        &value,
        format!(
            "created the repository {}: {} is the devices' root of trust (expires {})",
            repo.display(),
            root.display(),
            root_expires.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

/// `--bundle-key`: 64 hex digits, or a public key file.
fn bundle_keyring(what: &str, given: &[String]) -> Result<Keyring, Error> {
    let mut ring = Keyring::new();
    for text in given {
        let key = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            keys::parse_public_key(text)
                .map_err(|e| refused(what, format!("--bundle-key {text}: {e}")))?
        } else {
            keys::load_public_key(Path::new(text))
                .map_err(|e| refused(what, format!("--bundle-key: {e}")))?
        };
        ring.add(key);
    }
    Ok(ring)
}

async fn add(
    out: Output,
    repo: &Path,
    bundle: &Path,
    bundle_keys: &[String],
    signing_keys: &[PathBuf],
    expiry: &Expiry,
) -> Result<(), Error> {
    let what = format!("repo add {} {}", repo.display(), bundle.display());
    check_repo(&what, repo)?;
    let keyring = bundle_keyring(&what, bundle_keys)?;
    let verified = kb::verify_file(bundle, &keyring).map_err(|e| {
        refused(
            &what,
            format!("the bundle does not verify: {e}; nothing was published"),
        )
    })?;
    let signer: VerifyingKey = *verified.signer();
    warn_test_key(&signer, "publishing a bundle signed with");
    check_keys(&what, signing_keys).await?;
    let published = publish::add_bundle(repo, signing_keys, bundle, expiry)
        .await
        .map_err(failed(&what))?;
    let manifest = verified.manifest();
    let value = json!({
        "repo": repo,
        "bundle": bundle,
        "target": published.target,
        "path": published.path,
        "version": manifest.version.to_string(),
        "compatible": manifest.compatible,
        "signer": hex_key(&signer),
        "test_only_key": keys::is_test_only_key(&signer),
        "targets_version": published.targets_version,
        "snapshot_version": published.snapshot_version,
        "timestamp_version": published.timestamp_version,
        "targets_expires": expiry.targets.to_rfc3339_opts(SecondsFormat::Secs, true),
        "timestamp_expires": expiry.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if out.json {
        return print_json(&value);
    }
    println!("published {} in {}", published.target, repo.display());
    out.record(
        &value,
        &[
            ("bundle", published.path.display().to_string()),
            ("signed by", hex_key(&signer)),
            (
                "versions",
                format!(
                    "targets {}, snapshot {}, timestamp {}",
                    published.targets_version,
                    published.snapshot_version,
                    published.timestamp_version
                ),
            ),
            (
                "targets expire",
                expiry.targets.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (
                "timestamp expires",
                expiry.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (
                "upload",
                "targets/ first, then metadata/ (timestamp.json last)".to_owned(),
            ),
        ],
    )
}

async fn refresh_timestamp(
    out: Output,
    repo: &Path,
    keys: &[PathBuf],
    expires: DateTime<Utc>,
) -> Result<(), Error> {
    let what = format!("repo refresh-timestamp {}", repo.display());
    check_repo(&what, repo)?;
    if !publish::metadata_dir(repo).join("timestamp.json").exists() {
        return Err(refused(
            &what,
            "nothing is published yet (no metadata/timestamp.json): `keywarden repo add` a bundle first",
        ));
    }
    check_keys(&what, keys).await?;
    let version = publish::refresh_timestamp(repo, keys, expires)
        .await
        .map_err(failed(&what))?;
    let value = json!({
        "repo": repo,
        "timestamp_version": version,
        "expires": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    out.line(
        &value,
        format!(
            "re-signed {}: timestamp version {version}, expires {}",
            publish::metadata_dir(repo).join("timestamp.json").display(),
            expires.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

#[allow(clippy::too_many_arguments)]
async fn rotate(
    out: Output,
    what: &str,
    repo: &Path,
    keys: &[PathBuf],
    role: RoleType,
    new_keys: &[PathBuf],
    threshold: u64,
    expires: DateTime<Utc>,
) -> Result<(), Error> {
    let (old_version, _) = check_repo(what, repo)?;
    let option = if role == RoleType::Root {
        "--expires"
    } else {
        "--root-expires"
    };
    check_future(what, option, expires)?;
    check_threshold(what, "--threshold", threshold, new_keys.len())?;
    check_keys(what, keys.iter().chain(new_keys)).await?;
    let root = if role == RoleType::Root {
        publish::rotate_root(repo, keys, new_keys, threshold, expires).await
    } else {
        publish::rotate_keys(repo, keys, role, new_keys, threshold, expires).await
    }
    .map_err(failed(what))?;
    let version = old_version.saturating_add(1);
    let value = json!({
        "repo": repo,
        "role": role.to_string(),
        "root": root,
        "root_version": version,
        "keys": new_keys.len(),
        "threshold": threshold,
        "root_expires": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    let then = if role == RoleType::Root {
        "upload it; give new devices this file as their root of trust".to_owned()
    } else {
        format!(
            "metadata signed with the old {role} key is refused from now on: re-sign it with the \
             new key ({}) before uploading",
            if role == RoleType::Timestamp {
                "repo refresh-timestamp"
            } else {
                "repo add"
            }
        )
    };
    out.line(
        &value,
        format!(
            "wrote {} (root version {version}, new {role} keys, threshold {threshold}); {then}",
            root.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_or_a_day_at_midnight_utc() {
        assert_eq!(
            parse_date("2027-12-01").unwrap().to_rfc3339(),
            "2027-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_date("2027-12-01T08:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2027-12-01T06:00:00+00:00"
        );
        assert_eq!(
            parse_date("2027-12-01T08:00:00Z").unwrap().to_rfc3339(),
            "2027-12-01T08:00:00+00:00"
        );
        for bad in [
            "2027-13-01",
            "2027-2-1",
            "next year",
            "",
            "2027-12-01 08:00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_are_bounded() {
        assert_eq!(days("90"), Ok(90));
        assert!(days("0").is_err());
        assert!(days("-1").is_err());
        assert!(days("36501").is_err());
        assert!(days("9223372036854775807").is_err());
    }

    #[test]
    fn roles_map_to_tuf_roles() {
        assert_eq!(Role::Timestamp.role_type(), RoleType::Timestamp);
        assert_eq!(Role::Snapshot.role_type(), RoleType::Snapshot);
        assert_eq!(Role::Targets.role_type(), RoleType::Targets);
    }
}
