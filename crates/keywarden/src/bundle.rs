//! `keywarden bundle create | inspect | verify | keygen`: OTA update bundles (the format is
//! `ota/FORMAT.md`, the work is `keywarden-bundle`). No bus: these run on a build machine as
//! well as on a cabinet.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use keywarden_bundle::{self as kb, keys, CreateSpec, Keyring, Manifest, VerifyingKey};
use serde::Serialize;
use serde_json::json;

use crate::error::{io, Error};
use crate::output::Output;

/// Update bundles.
#[derive(Debug, Subcommand)]
pub enum Bundle {
    /// Create a signed bundle from payload images (deterministic: the same inputs and key give
    /// the same bytes).
    Create {
        /// The bundle version, MAJOR.MINOR.PATCH[-PRERELEASE]; devices refuse older ones.
        #[arg(long)]
        version: String,
        /// The board it is for; devices refuse a bundle for another board.
        #[arg(long, value_name = "BOARD")]
        compatible: String,
        /// The signing key, PKCS#8 PEM.
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
        /// The build time, Unix seconds [default: $SOURCE_DATE_EPOCH; required if unset].
        #[arg(long, value_name = "SECS")]
        created: Option<u64>,
        /// A free-form build identifier (git description, CI run).
        #[arg(long, value_name = "ID")]
        build_id: Option<String>,
        /// A payload as NAME=FILE (`rootfs=rootfs.squashfs`); repeat for several, in order.
        #[arg(long, value_name = "NAME=FILE", required = true, value_parser = parse_payload)]
        payload: Vec<(String, PathBuf)>,
        /// The bundle file to write (written under a temporary name, renamed when complete).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Show a bundle's manifest WITHOUT checking its signature (needs no key; nothing shown is
    /// trustworthy until `bundle verify` passes).
    Inspect {
        /// The bundle.
        file: PathBuf,
    },
    /// Verify a bundle: the signature against the trusted keys, every chunk, the whole
    /// payloads. With no --key at all it fails: a bundle is never accepted unsigned.
    Verify {
        /// The bundle.
        file: PathBuf,
        /// A trusted public key file (SPKI PEM or 64 hex digits); repeat for several.
        #[arg(long, value_name = "PUB")]
        key: Vec<PathBuf>,
    },
    /// Generate a signing key pair (for a manufacturer's production key: keep the private key
    /// offline; it is written mode 0600 and never printed).
    Keygen {
        /// The private key file to create (PKCS#8 PEM, mode 0600).
        #[arg(long, value_name = "P")]
        out_private: PathBuf,
        /// The public key file to create (SPKI PEM), for the devices' keyring.
        #[arg(long, value_name = "Q")]
        out_public: PathBuf,
    },
}

/// `NAME=FILE`.
fn parse_payload(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "{text:?} is not NAME=FILE (rootfs=rootfs.squashfs)"
        )),
    }
}

/// Run one bundle command.
pub fn run(out: Output, cmd: &Bundle) -> Result<(), Error> {
    match cmd {
        Bundle::Create {
            version,
            compatible,
            key,
            created,
            build_id,
            payload,
            output,
        } => {
            let created = match created {
                Some(secs) => *secs,
                None => source_date_epoch()?,
            };
            let spec = CreateSpec {
                version: version.clone(),
                compatible: compatible.clone(),
                created,
                build_id: build_id.clone(),
                payloads: payload.clone(),
            };
            create(out, &spec, key, output)
        }
        Bundle::Inspect { file } => inspect(out, file),
        Bundle::Verify { file, key } => verify(out, file, key),
        Bundle::Keygen {
            out_private,
            out_public,
        } => keygen(out, out_private, out_public),
    }
}

fn bundle_error(what: impl Into<String>) -> impl FnOnce(kb::Error) -> Error {
    let what = what.into();
    move |source| Error::Bundle { what, source }
}

fn source_date_epoch() -> Result<u64, Error> {
    let invalid = |message: String| Error::Invalid {
        what: "bundle create".into(),
        message,
    };
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse().map_err(|_| {
            invalid(format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds"))
        }),
        Err(_) => Err(invalid(
            "give --created SECS or set SOURCE_DATE_EPOCH (the build time; never the clock, so bundles are reproducible)".into(),
        )),
    }
}

pub(crate) fn warn_test_key(key: &VerifyingKey, doing: &str) {
    if keys::is_test_only_key(key) {
        eprintln!(
            "keywarden: warning: {doing} the TEST-ONLY key from ota/keys/test-only; \
             devices that trust only production keys refuse this bundle"
        );
    }
}

/// The manifest without its chunk hashes, for people and for `--json` summaries.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    format: u32,
    version: String,
    compatible: &'a str,
    created: u64,
    build_id: Option<&'a str>,
    payloads: Vec<PayloadSummary<'a>>,
}

#[derive(Debug, Serialize)]
struct PayloadSummary<'a> {
    name: &'a str,
    slot_class: &'a str,
    size: u64,
    sha256: String,
    chunk_size: u32,
    chunks: u64,
}

fn summary(m: &Manifest) -> Summary<'_> {
    Summary {
        format: m.format,
        version: m.version.to_string(),
        compatible: &m.compatible,
        created: m.created,
        build_id: m.build_id.as_deref(),
        payloads: m
            .payloads
            .iter()
            .map(|p| PayloadSummary {
                name: &p.name,
                slot_class: &p.slot_class,
                size: p.size,
                sha256: p.sha256.to_hex(),
                chunk_size: p.chunk_size,
                chunks: p.chunk_count(),
            })
            .collect(),
    }
}

/// `key value` lines describing a manifest.
fn manifest_lines(m: &Manifest) -> Vec<(String, String)> {
    let created = jiff::Timestamp::from_second(m.created as i64)
        .map(|t| format!("{t} ({})", m.created))
        .unwrap_or_else(|_| m.created.to_string());
    let mut lines = vec![
        ("version".to_owned(), m.version.to_string()),
        ("compatible".to_owned(), m.compatible.clone()),
        ("created".to_owned(), created),
    ];
    if let Some(id) = &m.build_id {
        lines.push(("build id".to_owned(), id.clone()));
    }
    for p in &m.payloads {
        lines.push((
            format!("payload {}", p.name),
            format!(
                "slot class {}, {} bytes, {} chunks of {} bytes, sha256 {}",
                p.slot_class,
                p.size,
                p.chunk_count(),
                p.chunk_size,
                p.sha256
            ),
        ));
    }
    lines
}

fn print_lines(lines: &[(String, String)]) {
    let width = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in lines {
        println!("{k:<width$}  {v}");
    }
}

fn create(out: Output, spec: &CreateSpec, key: &Path, output: &Path) -> Result<(), Error> {
    let what = format!("bundle create {}", output.display());
    let signing = keys::load_signing_key(key).map_err(bundle_error(what.clone()))?;
    let signer = signing.verifying_key();
    warn_test_key(&signer, "signing with");
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = (|| {
        let file = fs::File::create(&partial).map_err(io(format!("{what}: create")))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let manifest =
            kb::create(spec, &signing, &mut writer).map_err(bundle_error(what.clone()))?;
        let file = writer
            .into_inner()
            .map_err(|e| io(format!("{what}: write"))(e.into_error()))?;
        file.sync_all().map_err(io(format!("{what}: sync")))?;
        fs::rename(&partial, output).map_err(io(format!("{what}: rename")))?;
        Ok(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    let bytes = fs::metadata(output)
        .map_err(io(format!("{what}: stat")))?
        .len();
    let signer_hex = hex_key(&signer);
    if out.json {
        return print_json(&json!({
            "bundle": output,
            "bytes": bytes,
            "signer": signer_hex,
            "test_only_key": keys::is_test_only_key(&signer),
            "manifest": summary(&manifest),
        }));
    }
    println!("created {} ({bytes} bytes)", output.display());
    let mut lines = manifest_lines(&manifest);
    lines.push(("signed by".to_owned(), signer_hex));
    print_lines(&lines);
    Ok(())
}

fn inspect(out: Output, file: &Path) -> Result<(), Error> {
    let what = format!("bundle inspect {}", file.display());
    let bundle = kb::inspect_file(file).map_err(bundle_error(what))?;
    let claimed = bundle.header.signer_hex();
    if out.json {
        return print_json(&json!({
            "verified": false,
            "warning": "UNVERIFIED: the signature was not checked",
            "claimed_signer": claimed,
            "manifest_len": bundle.header.manifest_len,
            "data_offset": bundle.header.data_offset(),
            "manifest": bundle.manifest,
        }));
    }
    println!(
        "UNVERIFIED: the signature was not checked; nothing below is trustworthy until \
         `keywarden bundle verify` passes with a trusted key"
    );
    let mut lines = manifest_lines(&bundle.manifest);
    lines.push(("claimed signer".to_owned(), claimed));
    lines.push((
        "manifest".to_owned(),
        format!(
            "{} bytes; payloads from offset {}",
            bundle.header.manifest_len,
            bundle.header.data_offset()
        ),
    ));
    print_lines(&lines);
    Ok(())
}

fn verify(out: Output, file: &Path, key_files: &[PathBuf]) -> Result<(), Error> {
    let what = format!("bundle verify {}", file.display());
    let keyring = Keyring::load(key_files).map_err(bundle_error(what.clone()))?;
    let verified = kb::verify_file(file, &keyring).map_err(bundle_error(what))?;
    let signer = verified.signer();
    warn_test_key(signer, "the bundle is signed with");
    if out.json {
        return print_json(&json!({
            "verified": true,
            "signer": hex_key(signer),
            "test_only_key": keys::is_test_only_key(signer),
            "bytes": verified.bundle_len(),
            "manifest": summary(verified.manifest()),
        }));
    }
    println!(
        "verified {}: signature, {} chunks and whole payloads",
        file.display(),
        verified
            .manifest()
            .payloads
            .iter()
            .map(|p| p.chunk_count())
            .sum::<u64>()
    );
    let mut lines = manifest_lines(verified.manifest());
    lines.push(("signed by".to_owned(), hex_key(signer)));
    print_lines(&lines);
    Ok(())
}

fn keygen(out: Output, private: &Path, public: &Path) -> Result<(), Error> {
    let key = keys::generate(private, public).map_err(bundle_error("bundle keygen"))?;
    let public_hex = hex_key(&key);
    if out.json {
        return print_json(&json!({
            "private": private,
            "public": public,
            "public_key": public_hex,
        }));
    }
    println!(
        "wrote the private key to {} (mode 0600: keep it offline, never on a device) and the \
         public key to {}",
        private.display(),
        public.display()
    );
    println!("public key {public_hex}");
    Ok(())
}

pub(crate) fn hex_key(key: &VerifyingKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn print_json(value: &serde_json::Value) -> Result<(), Error> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
