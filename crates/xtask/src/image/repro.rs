//! `cargo xtask image-repro`: two clean builds of the same commit, in different directories
//! (different path lengths, so a leaked path cannot hide), must give bit-identical outputs: the
//! disk image, the bmap, the OTA bundle, the root file system and the manifest.
//!
//! Build A is this tree's `target/image` (built again unless it is HEAD's; if the tree has
//! uncommitted changes, A is a clone too, since B can only be HEAD). Build B is a fresh `git clone` of HEAD
//! under a temporary directory with its own target directory, built by its own
//! `cargo xtask image`. Shared between them are only what is keyed by content: cargo's registry,
//! the kernel cache (keyed by the fragment and the kernel source) and the pinned `.deb` cache
//! (checked against the lock's hashes).

use super::{disk::IMAGE_NAME, packages::sha256_file, ImageArgs};
use crate::cmd::{self, workspace_root};
use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The outputs compared.
const COMPARED: &[&str] = &[
    IMAGE_NAME,
    "keywarden.bmap",
    "rootfs.squashfs",
    "packages.manifest",
    "SHA256SUMS",
];

/// Options of `cargo xtask image-repro`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReproArgs {
    /// Keep the second build's directory (for inspecting a difference).
    #[arg(long)]
    pub keep: bool,
}

/// Runs the comparison; returns (passed, failed) checks.
pub fn run(args: &ReproArgs) -> Result<(usize, usize)> {
    let root = workspace_root();
    let scratch = std::env::temp_dir().join(format!("keywarden-repro-{}", std::process::id()));
    let source = super::source_id(&root);
    let first = if source.ends_with("-dirty") {
        eprintln!(
            "image-repro: the tree has uncommitted changes; building HEAD twice, in two clones"
        );
        build_clone(&root, &scratch.join("a/keywarden"))?
    } else {
        let out = root.join("target/image");
        let built = fs::read_to_string(out.join("work/source")).unwrap_or_default();
        if built.trim() != source || !out.join("SHA256SUMS").is_file() {
            super::build(
                &root,
                &ImageArgs {
                    out: Some(out.clone()),
                    board: "qemu".into(),
                    signing_key: None,
                    update_lock: false,
                    version: None,
                },
            )?;
        }
        out
    };
    let second = build_clone(&root, &scratch.join("second/build/tree/keywarden"))?;

    let mut passed = 0;
    let mut failed = 0;
    for name in COMPARED
        .iter()
        .map(|s| (*s).to_owned())
        .chain(bundle_names(&first)?)
    {
        let (a, b) = (first.join(&name), second.join(&name));
        let (ha, hb) = (sha256_file(&a)?, sha256_file(&b)?);
        if ha == hb {
            passed += 1;
            println!("image-repro: PASS {name} identical ({ha})");
        } else {
            failed += 1;
            println!("image-repro: FAIL {name} differs: {ha} vs {hb}");
        }
    }
    if failed > 0 {
        explain_rootfs(&first, &second, &scratch)?;
    }
    if !args.keep && failed == 0 {
        let _ = fs::remove_dir_all(&scratch);
    } else {
        println!("image-repro: second build kept in {}", second.display());
    }
    Ok((passed, failed))
}

fn bundle_names(out: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(out).map_err(Error::io(format!("listing {}", out.display())))? {
        let entry = entry.map_err(Error::io(format!("listing {}", out.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".kwb") {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(Error::Setup(format!("no OTA bundle in {}", out.display())));
    }
    Ok(names)
}

/// Clones HEAD into `dir` and builds its image there with its own xtask; returns its outputs.
fn build_clone(root: &Path, dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(Error::io(format!("creating {}", parent.display())))?;
    }
    cmd::run(
        Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(root)
            .arg(dir),
    )?;
    eprintln!("image-repro: building the clone in {}", dir.display());
    cmd::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .args(["xtask", "image"]),
    )?;
    Ok(dir.join("target/image"))
}

/// On a difference, names the files of the root file system that differ.
fn explain_rootfs(first: &Path, second: &Path, scratch: &Path) -> Result<()> {
    let (a, b) = (scratch.join("unsquash-a"), scratch.join("unsquash-b"));
    for (from, to) in [(first, &a), (second, &b)] {
        let _ = fs::remove_dir_all(to);
        cmd::run(
            Command::new("unsquashfs")
                .args(["-quiet", "-no-progress", "-d"])
                .arg(to)
                .arg(from.join("rootfs.squashfs")),
        )?;
    }
    let diff = cmd::output(
        Command::new("diff")
            .args(["-rq", "--no-dereference"])
            .arg(&a)
            .arg(&b),
    )?;
    // diff names device nodes whatever they are; only real differences are kept.
    let text: String = String::from_utf8_lossy(&diff.stdout)
        .lines()
        .filter(|l| !l.contains("is a character special file while file"))
        .map(|l| format!("{l}\n"))
        .collect();
    if text.trim().is_empty() {
        println!(
            "image-repro: the root file systems' files are identical (metadata or layout differs)"
        );
    } else {
        println!("image-repro: files that differ in the root file system:");
        for line in text.lines().take(30) {
            println!("  {line}");
        }
    }
    Ok(())
}
