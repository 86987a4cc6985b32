//! `keywarden factory provision`: the device identity on the data partition.
//!
//! Layout of `<data-dir>/identity/` (other parts of the system rely on these names):
//!
//! | path | what | owner | mode |
//! |---|---|---|---|
//! | `identity/` | | root:keywarden | 0750 |
//! | `device-key.pem` | ed25519 PKCS#8: audit checkpoints, diagnostic bundles | keywarden:keywarden | 0600 |
//! | `client.key` | TLS client key (ECDSA P-256, PKCS#8), offsite shipper | keywarden:keywarden | 0600 |
//! | `client.pem` | self-signed client certificate, CN = serial | root:root | 0644 |
//! | `client.csr` | the same key's CSR for the fleet CA | root:root | 0644 |
//! | `collector-ca.pem` | CA of the audit collector (with `--collector`) | root:root | 0644 |
//! | `offsite.toml` | `[offsite]` for policyd (with `--collector`) | root:root | 0644 |
//! | `update/` | | root:root | 0755 |
//! | `update/root.json` | the fleet's TUF root of trust | root:root | 0644 |
//! | `update/ca.pem` | CA of the update repository's HTTPS server | root:root | 0644 |
//! | `update/repository.toml` | the updater's repository settings | root:root | 0644 |
//! | `device.json` | the provisioning record (public facts), written last | root:root | 0644 |
//! | `device.replaced.json` | the record a `--replace-identity` replaced | root:root | 0644 |
//!
//! policyd (user keywarden) reads its two keys through the directory's group; it cannot change
//! anything here (the directory is root's). Private keys are created 0600 with their owner
//! before a byte is written, are never printed, and are written like every file: a temporary
//! file in the same directory, fsync, rename, fsync of the directory.
//!
//! `device.json` is the commit point: it is written last, so a device without it is not
//! provisioned and a rerun completes the job (adopting a device key an interrupted run left).
//! With it, provisioning refuses and changes nothing unless `--replace-identity`, which first
//! moves the old record to `device.replaced.json` and then makes every key anew.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Args;
use keywarden_audit::DeviceKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::DEFAULT_DATA_DIR;
use crate::error::Error;
use crate::output::Output;

/// The identity directory under the data directory.
pub const IDENTITY_DIR: &str = "identity";
/// The device's ed25519 key (policyd's `--device-key` default).
pub const DEVICE_KEY: &str = "device-key.pem";
/// TLS client private key.
pub const CLIENT_KEY: &str = "client.key";
/// TLS client certificate (self-signed until the fleet CA signs the CSR).
pub const CLIENT_CERT: &str = "client.pem";
/// Certificate signing request for the fleet CA.
pub const CLIENT_CSR: &str = "client.csr";
/// The audit collector's CA certificate(s).
pub const COLLECTOR_CA: &str = "collector-ca.pem";
/// policyd's `[offsite]` settings (its `--offsite-config` default).
pub const OFFSITE: &str = "offsite.toml";
/// The updater's directory.
pub const UPDATE_DIR: &str = "update";
/// The fleet's TUF root.
pub const UPDATE_ROOT: &str = "root.json";
/// The update server's CA certificate(s).
pub const UPDATE_CA: &str = "ca.pem";
/// The updater's repository settings (`keywarden-updated`'s `repository-config` default).
pub const UPDATE_REPOSITORY: &str = "repository.toml";
/// The provisioning record: the commit point.
pub const RECORD: &str = "device.json";
/// The record a `--replace-identity` replaced.
pub const REPLACED_RECORD: &str = "device.replaced.json";

/// The record's `format`.
pub const RECORD_FORMAT: &str = "keywarden-device-record";

const MAX_SERIAL: usize = 64;
const MAX_TEXT: usize = 128;

/// `factory provision`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 provisioned, 1 failed (files, keys), 2 refused (bad input, not root, \
                  already provisioned: nothing was changed)."
)]
pub struct ProvisionArgs {
    /// The device's serial number: 1 to 64 of A-Z a-z 0-9 . _ - (the certificate's CN and the
    /// cabinet's name on the audit collector).
    #[arg(long)]
    pub serial: String,
    /// The product model.
    #[arg(long)]
    pub model: String,
    /// The hardware revision.
    #[arg(long)]
    pub hardware_revision: String,
    /// The fleet's TUF root.json (root of trust for updates).
    #[arg(long)]
    pub update_root: PathBuf,
    /// Base https:// URL of the update repository's TUF metadata.
    #[arg(long)]
    pub update_metadata_url: String,
    /// Base https:// URL of the update repository's targets.
    #[arg(long)]
    pub update_targets_url: String,
    /// CA certificate(s), PEM, of the update repository's HTTPS server.
    #[arg(long)]
    pub update_ca: PathBuf,
    /// The offsite audit collector, HOST:PORT (one collector; RFC 5425 uses port 6514).
    #[arg(long, requires = "collector_ca")]
    pub collector: Option<String>,
    /// CA certificate(s), PEM, of the collector's TLS certificate.
    #[arg(long, requires = "collector")]
    pub collector_ca: Option<PathBuf>,
    /// Provision again: new device key, client key and certificate, and a new record naming
    /// the replaced device key.
    #[arg(long)]
    pub replace_identity: bool,
    /// The data partition.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Owner of the private keys, USER[:GROUP] (tests as a normal user; the directories and
    /// public files then belong to the user running the command).
    #[arg(long, hide = true, default_value = "keywarden")]
    pub owner: String,
    /// os-release file with IMAGE_VERSION (the firmware version in the record).
    #[arg(long, hide = true, default_value = "/etc/os-release")]
    pub os_release: PathBuf,
}

/// The provisioning record: `device.json` and what the command prints. Public facts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// Record version: 1.
    pub version: u32,
    /// Serial number.
    pub serial: String,
    /// Product model.
    pub model: String,
    /// Hardware revision.
    pub hardware_revision: String,
    /// When, RFC 3339 UTC.
    pub provisioned_at: String,
    /// The image's IMAGE_VERSION (os-release), if it has one.
    pub firmware_version: Option<String>,
    /// `generated` by this command, or `adopted`: the key policyd made at its first start
    /// (audit checkpoints were already signed with it).
    pub device_key: String,
    /// The device's ed25519 public key, 64 hex digits (verifies audit checkpoints).
    pub device_public_key: String,
    /// The self-signed TLS client certificate, PEM.
    pub client_certificate: String,
    /// SHA-256 of the certificate's DER, hex.
    pub client_certificate_sha256: String,
    /// The CSR for the fleet CA, PEM.
    pub client_csr: String,
    /// The update repository.
    pub update: UpdateRecord,
    /// The offsite audit collector, HOST:PORT.
    pub collector: Option<String>,
    /// With `--replace-identity`: the identity this one replaced.
    pub replaces: Option<Replaced>,
}

/// The record's `update` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// SHA-256 of `root.json` as installed, hex.
    pub root_sha256: String,
    /// The root's version.
    pub root_version: u64,
    /// When the root expires, RFC 3339 UTC.
    pub root_expires: String,
    /// TUF metadata base URL.
    pub metadata_url: String,
    /// Targets base URL.
    pub targets_url: String,
    /// SHA-256 of the update server's CA file, hex.
    pub ca_sha256: String,
}

/// The record's `replaces` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// The replaced device public key (hex), if known.
    pub device_public_key: Option<String>,
    /// The replaced record's serial, if there was a record.
    pub serial: Option<String>,
    /// When the replaced identity was provisioned.
    pub provisioned_at: Option<String>,
}

/// Users and groups the files get.
#[derive(Debug, Clone, Copy)]
struct Owners {
    /// Private keys (keywarden).
    key_uid: u32,
    key_gid: u32,
    /// Directories and public files (root, or whoever runs a test).
    admin_uid: u32,
    admin_gid: u32,
}

/// Everything checked and read before a byte is written.
struct Inputs {
    root_json: Vec<u8>,
    root_version: u64,
    root_expires: String,
    update_ca: Vec<u8>,
    collector: Option<(String, Vec<u8>)>,
    owners: Owners,
    now: jiff::Timestamp,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid {
        what: "factory provision".into(),
        message: message.into(),
    }
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let what = format!("factory provision: {what} {}", path.display());
    move |source| Error::Io { what, source }
}

/// Run `factory provision`.
pub fn run(out: Output, args: &ProvisionArgs) -> Result<(), Error> {
    let inputs = check(args)?;
    let identity = args.data_dir.join(IDENTITY_DIR);
    let record_path = identity.join(RECORD);

    // Already provisioned: refuse, touching nothing.
    let previous = match fs::read(&record_path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                invalid(format!(
                "{} exists but is not a provisioning record ({e}); --replace-identity replaces it",
                record_path.display()
            ))
            })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading", &record_path)(e)),
    };
    let field =
        |v: &serde_json::Value, name: &str| v.get(name).and_then(|s| s.as_str()).map(str::to_owned);
    if let (Some(old), false) = (&previous, args.replace_identity) {
        return Err(Error::AlreadyProvisioned {
            record: record_path,
            serial: field(old, "serial").unwrap_or_else(|| "(none)".into()),
            provisioned_at: field(old, "provisioned_at").unwrap_or_else(|| "(unknown)".into()),
        });
    }

    // The device key: adopt policyd's, or make one.
    let key_path = identity.join(DEVICE_KEY);
    let existing_key = match fs::symlink_metadata(&key_path) {
        Ok(_) => Some(DeviceKey::load(&key_path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading", &key_path)(e)),
    };
    let (device_key, adopted, replaces) = if args.replace_identity {
        let old_key = existing_key.and_then(|k| k.ok()).map(|k| k.public_hex());
        let replaces = Replaced {
            device_public_key: previous
                .as_ref()
                .and_then(|r| field(r, "device_public_key"))
                .or(old_key),
            serial: previous.as_ref().and_then(|r| field(r, "serial")),
            provisioned_at: previous.as_ref().and_then(|r| field(r, "provisioned_at")),
        };
        (generate_device_key()?, false, Some(replaces))
    } else {
        match existing_key {
            Some(Ok(key)) => (key, true, None),
            Some(Err(e)) => {
                return Err(invalid(format!(
                    "the existing device key cannot be adopted: {e}; --replace-identity makes a new one"
                )))
            }
            None => (generate_device_key()?, false, None),
        }
    };
    let client = client_identity(&args.serial, inputs.now)?;

    // Writing starts here.
    let o = inputs.owners;
    if !args.data_dir.exists() {
        // As systemd's StateDirectory would make it (keywarden, 0700), so that its first start
        // does not chown the whole tree to keywarden.
        make_dir(&args.data_dir, 0o700, o.key_uid, o.key_gid)?;
    }
    make_dir(&identity, 0o750, o.admin_uid, o.key_gid)?;
    let update_dir = identity.join(UPDATE_DIR);
    make_dir(&update_dir, 0o755, o.admin_uid, o.admin_gid)?;
    remove_stale_temporaries(&identity)?;
    remove_stale_temporaries(&update_dir)?;
    let public = (0o644, o.admin_uid, o.admin_gid);
    let private = (0o600, o.key_uid, o.key_gid);

    if previous.is_some() {
        // --replace-identity: from here on the device is not provisioned until the new record.
        fs::rename(&record_path, identity.join(REPLACED_RECORD))
            .map_err(io_error("moving aside", &record_path))?;
        sync_dir(&identity)?;
    }

    write_file(&update_dir, UPDATE_ROOT, &inputs.root_json, public)?;
    write_file(&update_dir, UPDATE_CA, &inputs.update_ca, public)?;
    let repository = repository_toml(
        &args.update_metadata_url,
        &args.update_targets_url,
        &update_dir.join(UPDATE_ROOT),
        &update_dir.join(UPDATE_CA),
    );
    write_file(
        &update_dir,
        UPDATE_REPOSITORY,
        repository.as_bytes(),
        public,
    )?;

    match &inputs.collector {
        Some((address, ca)) => {
            write_file(&identity, COLLECTOR_CA, ca, public)?;
            let offsite = offsite_toml(address, &args.serial, &identity);
            write_file(&identity, OFFSITE, offsite.as_bytes(), public)?;
        }
        None => {
            // A replaced identity's collector is not this one's.
            remove_if_present(&identity, OFFSITE)?;
            remove_if_present(&identity, COLLECTOR_CA)?;
        }
    }

    write_file(&identity, CLIENT_KEY, client.key_pem.as_bytes(), private)?;
    write_file(&identity, CLIENT_CERT, client.cert_pem.as_bytes(), public)?;
    write_file(&identity, CLIENT_CSR, client.csr_pem.as_bytes(), public)?;
    if adopted {
        // Keep the key, make sure policyd alone can read it.
        std::os::unix::fs::chown(&key_path, Some(o.key_uid), Some(o.key_gid))
            .map_err(io_error("changing the owner of", &key_path))?;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
            .map_err(io_error("changing the mode of", &key_path))?;
    } else {
        let pem = device_key.to_pkcs8_pem().map_err(|e| Error::Generate {
            what: "factory provision: device key".into(),
            message: e.to_string(),
        })?;
        write_file(&identity, DEVICE_KEY, pem.as_bytes(), private)?;
    }

    let record = Record {
        format: RECORD_FORMAT.into(),
        version: 1,
        serial: args.serial.clone(),
        model: args.model.clone(),
        hardware_revision: args.hardware_revision.clone(),
        provisioned_at: inputs.now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        firmware_version: firmware_version(&args.os_release),
        device_key: if adopted { "adopted" } else { "generated" }.into(),
        device_public_key: device_key.public_hex(),
        client_certificate: client.cert_pem.clone(),
        client_certificate_sha256: hex::encode(Sha256::digest(&client.cert_der)),
        client_csr: client.csr_pem.clone(),
        update: UpdateRecord {
            root_sha256: hex::encode(Sha256::digest(&inputs.root_json)),
            root_version: inputs.root_version,
            root_expires: inputs.root_expires.clone(),
            metadata_url: args.update_metadata_url.clone(),
            targets_url: args.update_targets_url.clone(),
            ca_sha256: hex::encode(Sha256::digest(&inputs.update_ca)),
        },
        collector: inputs.collector.as_ref().map(|(a, _)| a.clone()),
        replaces,
    };
    let mut json = serde_json::to_string_pretty(&record)?;
    json.push('\n');
    // The commit point.
    write_file(&identity, RECORD, json.as_bytes(), public)?;

    if out.json {
        print!("{json}");
        return Ok(());
    }
    print_summary(&record, &identity);
    Ok(())
}

fn print_summary(r: &Record, identity: &Path) {
    let lines = [
        ("serial", r.serial.clone()),
        ("model", r.model.clone()),
        ("hardware revision", r.hardware_revision.clone()),
        ("provisioned at", r.provisioned_at.clone()),
        (
            "firmware",
            r.firmware_version
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "device key",
            format!("{} ({})", r.device_public_key, r.device_key),
        ),
        (
            "client certificate",
            format!("CN={} sha256 {}", r.serial, r.client_certificate_sha256),
        ),
        (
            "update root",
            format!(
                "version {} expires {} sha256 {}",
                r.update.root_version, r.update.root_expires, r.update.root_sha256
            ),
        ),
        ("update metadata", r.update.metadata_url.clone()),
        ("update targets", r.update.targets_url.clone()),
        (
            "collector",
            r.collector.clone().unwrap_or_else(|| "none".into()),
        ),
    ];
    println!("provisioned {}", identity.display());
    for (k, v) in lines {
        println!("  {k:<19} {v}");
    }
    if let Some(old) = &r.replaces {
        println!(
            "  {:<19} device key {}",
            "replaced",
            old.device_public_key.as_deref().unwrap_or("unknown")
        );
    }
    println!(
        "The record is {} (--json prints it); the CSR is {}. Private keys stay on the device.",
        identity.join(RECORD).display(),
        identity.join(CLIENT_CSR).display()
    );
    println!("Restart keywarden-policyd (or reboot) for it to use the collector and the keys.");
}

/// Every check that can refuse, and every input read, before anything is written.
fn check(args: &ProvisionArgs) -> Result<Inputs, Error> {
    check_serial(&args.serial)?;
    check_text("--model", &args.model)?;
    check_text("--hardware-revision", &args.hardware_revision)?;
    check_url("--update-metadata-url", &args.update_metadata_url)?;
    check_url("--update-targets-url", &args.update_targets_url)?;
    let (root_json, root_version, root_expires) = read_root(&args.update_root)?;
    let update_ca = read_ca("--update-ca", &args.update_ca)?;
    let collector =
        match (&args.collector, &args.collector_ca) {
            (Some(address), Some(ca)) => {
                check_collector(address)?;
                Some((address.clone(), read_ca("--collector-ca", ca)?))
            }
            (None, None) => None,
            _ => return Err(invalid(
                "--collector and --collector-ca go together (the collector's address and its CA)",
            )),
        };
    let owners = owners(&args.owner)?;
    let now = jiff::Timestamp::now();
    if now.as_second() < CLOCK_SET_AFTER {
        return Err(invalid(format!(
            "the clock says {now}: set the time (NTP, timedatectl) before provisioning; the record and the certificate carry it"
        )));
    }
    Ok(Inputs {
        root_json,
        root_version,
        root_expires,
        update_ca,
        collector,
        owners,
        now,
    })
}

/// 2026-01-01T00:00:00Z: a clock before it is not set (as policyd's `clock.rs` says).
const CLOCK_SET_AFTER: i64 = 1_767_225_600;

fn check_serial(serial: &str) -> Result<(), Error> {
    if serial.is_empty() {
        return Err(invalid("--serial is empty"));
    }
    if serial.chars().count() > MAX_SERIAL {
        return Err(invalid(format!(
            "--serial {serial:?} is longer than {MAX_SERIAL} characters"
        )));
    }
    if let Some(c) = serial
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "--serial {serial:?} contains {c:?}: only A-Z a-z 0-9 . _ - are allowed (it names the client certificate and the cabinet on the audit collector)"
        )));
    }
    if serial.starts_with(['.', '-']) {
        return Err(invalid(format!(
            "--serial {serial:?} must not start with . or -"
        )));
    }
    Ok(())
}

fn check_text(option: &str, text: &str) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(invalid(format!("{option} is empty")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(invalid(format!(
            "{option} {text:?} is longer than {MAX_TEXT} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{option} {text:?} contains a control character"
        )));
    }
    Ok(())
}

fn check_url(option: &str, text: &str) -> Result<(), Error> {
    let url = url::Url::parse(text)
        .map_err(|e| invalid(format!("{option} {text:?} is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(invalid(format!(
            "{option} {text:?} is not an https:// URL (the updater fetches over HTTPS only)"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{option} {text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "{option} {text:?} carries credentials; the repository is public metadata"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{option} {text:?} has a query or fragment; give the base URL"
        )));
    }
    Ok(())
}

fn check_collector(address: &str) -> Result<(), Error> {
    let bad = |why: &str| invalid(format!("--collector {address:?} {why}"));
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("has no port number (1 to 65535) after the last ':'"))?;
    if port == 0 {
        return Err(bad("has port 0"));
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if rustls_pki_types::ServerName::try_from(host).is_err() {
        return Err(bad("does not start with a DNS name or an IP address"));
    }
    Ok(())
}

/// `root.json`: TUF root metadata, signed by its own root keys to the threshold.
fn read_root(path: &Path) -> Result<(Vec<u8>, u64, String), Error> {
    let bytes = fs::read(path).map_err(|e| {
        invalid(format!(
            "--update-root {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let signed: tough::schema::Signed<tough::schema::Root> = serde_json::from_slice(&bytes)
        .map_err(|e| {
            invalid(format!(
                "--update-root {} is not TUF root metadata: {e}",
                path.display()
            ))
        })?;
    // tough's `Root` does not check the type tag itself.
    let kind: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let kind = &kind["signed"]["_type"];
    if kind.as_str() != Some("root") {
        return Err(invalid(format!(
            "--update-root {} is not TUF root metadata: its signed._type is {kind}",
            path.display()
        )));
    }
    let root = &signed.signed;
    for role in [
        tough::schema::RoleType::Root,
        tough::schema::RoleType::Targets,
        tough::schema::RoleType::Snapshot,
        tough::schema::RoleType::Timestamp,
    ] {
        if !root.roles.contains_key(&role) {
            return Err(invalid(format!(
                "--update-root {} names no keys for the {role} role",
                path.display()
            )));
        }
    }
    root.verify_role(&signed).map_err(|e| {
        invalid(format!(
            "--update-root {} is not signed by its own root keys: {e}",
            path.display()
        ))
    })?;
    let expires = jiff::Timestamp::from_second(root.expires.timestamp())
        .map_err(|e| {
            invalid(format!(
                "--update-root {}: expiry out of range: {e}",
                path.display()
            ))
        })?
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Ok((bytes, root.version.get(), expires))
}

/// A PEM file of CA certificates (nothing else: a private key here would be published 0644).
fn read_ca(option: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = fs::read(path)
        .map_err(|e| invalid(format!("{option} {}: cannot read it: {e}", path.display())))?;
    if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(invalid(format!(
            "{option} {} contains a private key; give the CA certificate only",
            path.display()
        )));
    }
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|e| {
            invalid(format!(
                "{option} {}: bad PEM certificate: {e}",
                path.display()
            ))
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(format!(
            "{option} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The key owner (`USER[:GROUP]`) and whoever runs us; as root only, unless overridden.
fn owners(spec: &str) -> Result<Owners, Error> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let found = nix::unistd::User::from_name(user)
        .map_err(|e| invalid(format!("cannot look up user {user:?}: {e}")))?
        .ok_or_else(|| {
            invalid(format!(
                "no user {user:?} (the keywarden package's sysusers.d file creates it)"
            ))
        })?;
    let key_gid = match group {
        Some(g) => {
            nix::unistd::Group::from_name(g)
                .map_err(|e| invalid(format!("cannot look up group {g:?}: {e}")))?
                .ok_or_else(|| invalid(format!("no group {g:?}")))?
                .gid
        }
        None => found.gid,
    };
    let (euid, egid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if !euid.is_root() && euid != found.uid {
        return Err(invalid(
            "run as root: the keys are made for user keywarden and the directories belong to root",
        ));
    }
    Ok(Owners {
        key_uid: found.uid.as_raw(),
        key_gid: key_gid.as_raw(),
        admin_uid: euid.as_raw(),
        admin_gid: egid.as_raw(),
    })
}

fn generate_device_key() -> Result<DeviceKey, Error> {
    DeviceKey::generate().map_err(|e| Error::Generate {
        what: "factory provision: device key".into(),
        message: e.to_string(),
    })
}

/// The TLS client identity, in memory.
struct ClientIdentity {
    key_pem: Zeroizing<String>,
    cert_pem: String,
    cert_der: Vec<u8>,
    csr_pem: String,
}

/// An ECDSA P-256 key (what every TLS stack and CA takes), a self-signed certificate with
/// CN = serial for client authentication (valid from today with no expiry, 9999-12-31, as
/// device identity certificates are: the device outlives any date we would pick), and a CSR.
fn client_identity(serial: &str, now: jiff::Timestamp) -> Result<ClientIdentity, Error> {
    let fail = |what: &str| {
        let what = format!("factory provision: {what}");
        move |e: rcgen::Error| Error::Generate {
            what,
            message: e.to_string(),
        }
    };
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail("client key"))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail("certificate"))?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, serial);
    params.distinguished_name = name;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    params.not_before = rcgen::date_time_ymd(
        i32::from(today.year()),
        today.month().unsigned_abs(),
        today.day().unsigned_abs(),
    );
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(fail("CSR"))?;
    // A CSR carries no basic constraints (rcgen refuses them there); the certificate says
    // it is no CA.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.self_signed(&key).map_err(fail("certificate"))?;
    Ok(ClientIdentity {
        key_pem: Zeroizing::new(key.serialize_pem()),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        csr_pem,
    })
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `update/repository.toml`, as `keywarden-updated`'s `daemon::config::Repository` reads it.
fn repository_toml(metadata_url: &str, targets_url: &str, root: &Path, ca: &Path) -> String {
    format!(
        "# Written by keywarden factory provision: the fleet's update repository.\n\
         metadata-url = {}\ntargets-url = {}\nroot = {}\nca = {}\n",
        toml_string(metadata_url),
        toml_string(targets_url),
        toml_string(&root.display().to_string()),
        toml_string(&ca.display().to_string()),
    )
}

/// `offsite.toml`, as policyd's `[offsite]` section (`offsite/config.rs`) reads it.
fn offsite_toml(address: &str, serial: &str, identity: &Path) -> String {
    let path = |name: &str| toml_string(&identity.join(name).display().to_string());
    format!(
        "# Written by keywarden factory provision: the offsite audit collector (one only).\n\
         [offsite]\naddress = {}\nca-file = {}\nclient-cert = {}\nclient-key = {}\ncabinet = {}\n",
        toml_string(address),
        path(COLLECTOR_CA),
        path(CLIENT_CERT),
        path(CLIENT_KEY),
        toml_string(serial),
    )
}

/// IMAGE_VERSION from an os-release file (`/etc/os-release`, else `/usr/lib/os-release`).
fn firmware_version(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound && path == Path::new("/etc/os-release") {
                fs::read_to_string("/usr/lib/os-release")
            } else {
                Err(e)
            }
        })
        .ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("IMAGE_VERSION=")?.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Create `dir` if missing, then give it its owner and mode.
fn make_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), Error> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_error("creating", dir)(e)),
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(io_error("changing the owner of", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(io_error("changing the mode of", dir))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// Temporaries an interrupted run left (`.NAME.tmp-PID`).
fn remove_stale_temporaries(dir: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(io_error("listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("listing", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error("removing", &path))?;
        }
    }
    Ok(())
}

/// Write `dir/name` atomically: a new temporary file created with mode 0600, given its owner
/// and mode before any byte, written, fsynced, renamed over `name`, and the directory fsynced.
fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    (mode, uid, gid): (u32, u32, u32),
) -> Result<(), Error> {
    let temp = dir.join(temp_name(name));
    let target = dir.join(name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error("creating", &temp))?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(io_error("changing the owner of", &temp))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_error("changing the mode of", &temp))?;
        file.write_all(bytes).map_err(io_error("writing", &temp))?;
        file.sync_all().map_err(io_error("syncing", &temp))?;
        fs::rename(&temp, &target).map_err(io_error("renaming into place", &target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn remove_if_present(dir: &Path, name: &str) -> Result<(), Error> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn serials_are_checked() {
        for good in ["SN-0042", "a", "A.b_c-9", &"x".repeat(64)] {
            check_serial(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, expected) in [
            ("", "--serial is empty"),
            ("a b", "contains ' '"),
            ("../etc", "contains '/'"),
            ("é", "contains 'é'"),
            (".hidden", "must not start with . or -"),
            ("-x", "must not start with . or -"),
            (&"x".repeat(65), "longer than 64"),
        ] {
            let e = message(check_serial(bad).expect_err(bad));
            assert!(e.contains(expected), "{bad:?}: {e}");
        }
    }

    #[test]
    fn urls_are_checked() {
        check_url("--u", "https://updates.example.org/fleet/metadata/").expect("good");
        for (bad, expected) in [
            ("updates.example.org", "is not a URL"),
            ("http://updates.example.org/", "is not an https:// URL"),
            (
                "https://user:pw@updates.example.org/",
                "carries credentials",
            ),
            ("https://updates.example.org/?a=1", "query or fragment"),
            ("https://", "is not a URL: empty host"),
        ] {
            let e = message(check_url("--u", bad).expect_err(bad));
            assert!(e.contains(expected), "{bad:?}: {e}");
        }
    }

    #[test]
    fn collector_addresses_are_checked() {
        for good in ["collector.example.org:6514", "10.0.0.1:6514", "[::1]:6514"] {
            check_collector(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, expected) in [
            ("collector.example.org", "is not HOST:PORT"),
            ("collector:0", "has port 0"),
            ("collector:x", "has no port number"),
            (":6514", "has no host"),
            ("bad host!:6514", "does not start with a DNS name"),
        ] {
            let e = message(check_collector(bad).expect_err(bad));
            assert!(e.contains(expected), "{bad:?}: {e}");
        }
    }

    #[test]
    fn text_is_escaped_in_toml() {
        let t = repository_toml(
            "https://u/m\"x",
            "https://u/t",
            Path::new("/d/root.json"),
            Path::new("/d/ca.pem"),
        );
        let v: toml::Table = toml::from_str(&t).expect("toml");
        assert_eq!(v["metadata-url"].as_str(), Some("https://u/m\"x"));
        assert_eq!(v["root"].as_str(), Some("/d/root.json"));
    }

    #[test]
    fn the_firmware_version_comes_from_os_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("os-release");
        fs::write(
            &path,
            "ID=debian\nIMAGE_ID=keywarden\nIMAGE_VERSION=\"1.4.2\"\n",
        )
        .expect("w");
        assert_eq!(firmware_version(&path).as_deref(), Some("1.4.2"));
        fs::write(&path, "ID=debian\n").expect("w");
        assert_eq!(firmware_version(&path), None);
        assert_eq!(firmware_version(&dir.path().join("missing")), None);
    }

    #[test]
    fn the_client_certificate_names_the_serial() {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let c = client_identity("SN-0042", now).expect("identity");
        assert!(c.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(c.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        // The CN's bytes are in the DER (a UTF8String "SN-0042").
        assert!(c.cert_der.windows(7).any(|w| w == b"SN-0042"));
        // The certificate's key is the key's.
        let key = rcgen::KeyPair::from_pem(&c.key_pem).expect("key");
        let der = key.public_key_der();
        assert!(c.cert_der.windows(der.len()).any(|w| w == der.as_slice()));
    }
}
