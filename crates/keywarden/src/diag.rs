//! `keywarden diag bundle | verify`: diagnostic bundles for support staff.
//!
//! `bundle` asks the policy service (`Policy1.DiagnosticBundle`, admin only) to write a bundle
//! into a file this command opens: the service collects, redacts and signs it (format and rules:
//! crate `keywarden-diag`). The file appears under its name only once the service finished: it
//! is written beside it under a temporary name and renamed, so a failed or interrupted run
//! leaves no partial bundle. `verify` needs no bus: it checks a bundle anywhere, against the
//! cabinet's device public key (`keywarden audit key` on the cabinet, or its provisioning
//! record).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use keywarden_dbus::policy::options;
use keywarden_diag::{FileEntry, Manifest};
use serde::Serialize;
use zbus::zvariant::Fd;

use crate::error::{call, io, Error};
use crate::output::Output;
use crate::policy::{Ctx, OptionMap};
use crate::times::parse_time_local;

#[derive(Debug, Subcommand)]
pub enum Diag {
    /// Have the cabinet build a diagnostic bundle (redacted, signed) into FILE.
    Bundle {
        /// The bundle file to write (a zstd-compressed tar); refused if it exists.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        /// Journal from this time (default: the last 72 hours).
        #[arg(long, value_name = "TIME", value_parser = parse_time_local)]
        since: Option<i64>,
        /// Skip the hardware service's (non-actuating) self-test.
        #[arg(long)]
        no_self_test: bool,
    },
    /// Check a bundle off the device: the device's signature and every file (no bus).
    Verify {
        /// The bundle.
        file: PathBuf,
        /// The cabinet's device public key (64 hex digits).
        #[arg(long, value_name = "HEX")]
        key: String,
        /// After verifying, unpack the files into this new directory.
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
    },
}

/// A bundle's description, as printed (`--json`: this object).
#[derive(Debug, Serialize)]
struct Described<'a> {
    file: &'a Path,
    size: u64,
    #[serde(flatten)]
    manifest: &'a Manifest,
}

fn describe(
    out: Output,
    file: &Path,
    size: u64,
    manifest: &Manifest,
    verb: &str,
) -> Result<(), Error> {
    if out.json {
        return crate::output::print_json(&Described {
            file,
            size,
            manifest,
        });
    }
    let truncated = manifest.files.iter().filter(|f| f.truncated).count();
    println!(
        "{verb} {}: {size} bytes, {} files{}",
        file.display(),
        manifest.files.len(),
        if truncated > 0 {
            format!(" ({truncated} cut to their size cap)")
        } else {
            String::new()
        }
    );
    println!(
        "device key {}  serial {}  created {}",
        manifest.device_key,
        manifest.serial.as_deref().unwrap_or("(not provisioned)"),
        manifest.created
    );
    for FileEntry {
        name,
        size,
        truncated,
        ..
    } in &manifest.files
    {
        println!(
            "  {name:<28} {size:>9}{}",
            if *truncated { "  (cut)" } else { "" }
        );
    }
    Ok(())
}

/// `diag bundle` (needs the bus).
pub async fn bundle(
    ctx: &Ctx<'_>,
    output: &Path,
    since: Option<i64>,
    no_self_test: bool,
) -> Result<(), Error> {
    let what = format!("diag bundle {}", output.display());
    if output.exists() {
        return Err(Error::Invalid {
            what,
            message: "the file exists; choose another name".into(),
        });
    }
    let temp = temp_name(output);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io(format!("{what}: create {}", temp.display())))?;
    let result: Result<(u64, Manifest), Error> = async {
        let mut map = OptionMap::default();
        map.set(options::SINCE, since)
            .set(options::SELF_TEST, no_self_test.then_some(false));
        let (size, manifest) = ctx
            .policy
            .diagnostic_bundle(Fd::from(file.as_fd()), map.get())
            .await
            .map_err(call(what.clone()))?;
        let manifest: Manifest = serde_json::from_str(&manifest).map_err(|e| Error::Invalid {
            what: what.clone(),
            message: format!("the service's manifest does not parse: {e}"),
        })?;
        file.sync_all().map_err(io(format!("{what}: fsync")))?;
        // Nothing may replace a file that appeared meanwhile.
        std::fs::hard_link(&temp, output).map_err(io(format!("{what}: link")))?;
        Ok((size, manifest))
    }
    .await;
    let _ = std::fs::remove_file(&temp);
    let (size, manifest) = result?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    describe(ctx.out, output, size, &manifest, "wrote")
}

fn temp_name(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// `diag verify` (no bus).
pub fn verify(out: Output, file: &Path, key: &str, extract: Option<&Path>) -> Result<(), Error> {
    let what = format!("diag verify {}", file.display());
    let key = keywarden_audit::parse_public_key(key).map_err(|e| Error::Invalid {
        what: what.clone(),
        message: format!("--key: {e}"),
    })?;
    let bundle = File::open(file).map_err(io(format!("{what}: open")))?;
    let size = bundle
        .metadata()
        .map_err(io(format!("{what}: stat")))?
        .len();
    let verified =
        keywarden_diag::verify(std::io::BufReader::new(bundle), &key).map_err(|source| {
            Error::Diag {
                what: what.clone(),
                source,
            }
        })?;
    if let Some(dir) = extract {
        std::fs::create_dir(dir).map_err(io(format!("{what}: create {}", dir.display())))?;
        for (name, bytes) in &verified.files {
            let path = dir.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(format!("{what}: create {}", path.display())))?;
            f.write_all(bytes)
                .map_err(io(format!("{what}: write {}", path.display())))?;
        }
    }
    describe(
        out,
        file,
        size,
        &verified.manifest,
        "valid diagnostic bundle",
    )
}
