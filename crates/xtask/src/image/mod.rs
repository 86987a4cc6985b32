//! `cargo xtask image`: the appliance disk image, reproducibly.
//!
//! Steps (each in its own module):
//! 1. our release binaries, built with paths remapped so the source directory does not matter;
//! 2. the kernel from `image/kernel/` (the VM harness's cached build, same fragment);
//! 3. the pinned Debian packages as a local repository (`packages.rs`);
//! 4. the root file system tree (`rootfs.rs`);
//! 5. the squashfs root, the EFI system partition with GRUB, the data partition and the GPT disk
//!    (`disk.rs`, laid out by `image/genimage.cfg`);
//! 6. the `.bmap`, the OTA bundle of the root file system, the package manifest, `SHA256SUMS`.
//!
//! Every timestamp is `SOURCE_DATE_EPOCH` (the last commit's time unless set), every UUID is
//! fixed in `image/genimage.cfg`, and nothing is read from the host but the tools, so two builds
//! of the same commit in different directories give the same bytes (`image-repro` checks it).

mod bundle;
mod disk;
mod fat;
pub mod ota;
mod packages;
pub mod repro;
mod rootfs;
pub mod vm;

use crate::cmd::{self, workspace_root};
use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options of `cargo xtask image`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// Where the outputs go (default: target/image).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The board whose overlay and board file go in (image/boards/BOARD).
    #[arg(long, default_value = "qemu")]
    pub board: String,
    /// The OTA signing key (PKCS#8 PEM). Default: the repository's TEST-ONLY key, with a warning.
    #[arg(long)]
    pub signing_key: Option<PathBuf>,
    /// Re-resolve image/packages.txt against the live Debian mirror and rewrite
    /// image/packages.lock before building.
    #[arg(long)]
    pub update_lock: bool,
    /// The image and bundle version (default: the workspace's). For test bundles of a newer
    /// or older release built from the same tree.
    #[arg(long)]
    pub version: Option<String>,
}

/// One build's fixed inputs.
pub struct Build {
    /// The source tree.
    pub src: PathBuf,
    /// The board.
    pub board: String,
    /// The image version (the workspace's).
    pub version: String,
    /// SOURCE_DATE_EPOCH.
    pub epoch: u64,
}

impl Build {
    /// Board-only programs (test devices of the qemu board).
    pub fn board_binaries(&self) -> Vec<&'static str> {
        match self.board.as_str() {
            "qemu" => vec!["keywarden-qemu-board"],
            _ => Vec::new(),
        }
    }

    /// Board-only units to enable.
    pub fn board_units(&self) -> Vec<&'static str> {
        match self.board.as_str() {
            "qemu" => vec![
                "keywarden-qemu-board.service",
                "keywarden-boot-report.service",
            ],
            _ => Vec::new(),
        }
    }

    /// The board string a bundle is compatible with.
    pub fn compatible(&self) -> String {
        format!("keywarden-{}-x86_64", self.board)
    }
}

/// What one build produced (all in `out`).
pub struct Outputs {
    pub image: PathBuf,
    pub files: Vec<PathBuf>,
}

/// The cache shared by builds (kernel, pinned `.deb` files), outside any repository.
pub fn cache_root() -> PathBuf {
    std::env::var_os("KEYWARDEN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("keywarden")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/keywarden")))
        .unwrap_or_else(|| PathBuf::from("/var/cache/keywarden"))
}

/// `cargo xtask image`.
pub fn run(args: &ImageArgs) -> Result<()> {
    let outputs = build(&workspace_root(), args)?;
    println!("image: {}", outputs.image.display());
    for file in &outputs.files {
        println!("  {}", file.display());
    }
    Ok(())
}

/// Builds the image of the source tree `src`.
pub fn build(src: &Path, args: &ImageArgs) -> Result<Outputs> {
    crate::host::ensure_tools()?;
    if !nix_is_root() {
        return Err(Error::Setup(
            "cargo xtask image runs mmdebstrap and chroot as root (it does on the CI machines); \
             run it as root"
                .into(),
        ));
    }
    let started = Instant::now();
    let build = Build {
        src: src.to_path_buf(),
        board: args.board.clone(),
        version: match &args.version {
            Some(v) => v.clone(),
            None => workspace_version(src)?,
        },
        epoch: source_date_epoch(src)?,
    };
    let out = args.out.clone().unwrap_or_else(|| src.join("target/image"));
    let work = out.join("work");
    fs::create_dir_all(&work).map_err(Error::io(format!("creating {}", work.display())))?;
    eprintln!(
        "image: keywarden {} for board {} (SOURCE_DATE_EPOCH={}) into {}",
        build.version,
        build.board,
        build.epoch,
        out.display()
    );

    let step = Instant::now();
    let binaries = build_binaries(&build.src)?;
    eprintln!("image: binaries in {:.0?}", step.elapsed());
    let kernel = crate::kernel::build()?;

    let step = Instant::now();
    if args.update_lock {
        let pins = packages::resolve(src, &work, build.epoch)?;
        let lock = src.join(packages::PACKAGES_LOCK);
        write_file(&lock, &packages::render_lock(&pins))?;
        eprintln!(
            "image: pinned {} packages in {}",
            pins.len(),
            lock.display()
        );
    }
    let pins = packages::read_lock(src)?;
    let repo = work.join("repo");
    packages::local_repository(&pins, &repo)?;
    let root = work.join("rootfs");
    rootfs::bootstrap(&pins, &repo, &root, build.epoch)?;
    let signing_key = bundle::signing_key(&build, args)?;
    rootfs::customise(
        &build,
        &root,
        &binaries,
        &kernel,
        &bundle::public_pem(&signing_key)?,
    )?;
    eprintln!("image: root file system tree in {:.0?}", step.elapsed());

    let step = Instant::now();
    let files = disk::assemble(&build, &root, &work, &out, &pins, &signing_key)?;
    eprintln!("image: disk and outputs in {:.0?}", step.elapsed());
    // Which source this is, so `image-repro` knows whether these outputs are HEAD's.
    write_file(&work.join("source"), &source_id(src))?;
    eprintln!("image: done in {:.0?}", started.elapsed());
    let image = out.join(disk::IMAGE_NAME);
    Ok(Outputs { image, files })
}

/// The packages whose binaries the image and the VM test harness take (the harness's
/// binaries are built too, so `vm-test` and `image` share one build).
const APPLIANCE_PACKAGES: &[&str] = &[
    "keywarden-hwd",
    "keywarden-policyd",
    "keywarden-console",
    "keywarden-updated",
    "keywarden",
    "keywarden-vmtest",
];

/// `cargo` set up for the appliance build of the tree `src`: the `appliance` profile in
/// `src/target/appliance`, with the paths of the source tree and of cargo's registry remapped so
/// neither where the tree is nor whose home it is shows in the binaries.
pub fn appliance_cargo(src: &Path) -> Command {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let rustflags = format!(
        "--remap-path-prefix={}=/usr/src/keywarden --remap-path-prefix={}=/usr/src/cargo",
        src.display(),
        cargo_home.display()
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(src)
        .env("CARGO_TARGET_DIR", src.join("target"))
        .env("RUSTFLAGS", rustflags)
        // No SOURCE_DATE_EPOCH here: nothing in the binaries carries a time, and C build scripts
        // that watch it would rebuild at every commit.
        .env_remove("SOURCE_DATE_EPOCH");
    cargo
}

/// Builds the appliance's binaries (and the VM harness's); returns their directory.
pub fn build_binaries(src: &Path) -> Result<PathBuf> {
    let mut cargo = appliance_cargo(src);
    cargo.args(["build", "--profile", "appliance", "--locked"]);
    for name in APPLIANCE_PACKAGES {
        cargo.args(["-p", name]);
    }
    cargo.arg("--bins");
    cmd::run(&mut cargo)?;
    Ok(src.join("target/appliance"))
}

/// The workspace version, from `[workspace.package]` in Cargo.toml.
pub(crate) fn workspace_version(src: &Path) -> Result<String> {
    let path = src.join("Cargo.toml");
    let text =
        fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    let section = text
        .split("[workspace.package]")
        .nth(1)
        .ok_or_else(|| Error::Setup(format!("{} has no [workspace.package]", path.display())))?;
    section
        .lines()
        .take_while(|line| !line.trim_start().starts_with('['))
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "version").then(|| value.trim().trim_matches('"').to_owned())
        })
        .ok_or_else(|| Error::Setup(format!("{}: no workspace version", path.display())))
}

/// The commit of the tree, with "-dirty" when it has uncommitted changes to tracked files.
pub fn source_id(src: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(src)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_none_or(|status| !status.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

/// SOURCE_DATE_EPOCH from the environment, else the time of the source tree's last commit.
fn source_date_epoch(src: &Path) -> Result<u64> {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let value = value.to_string_lossy();
        return value
            .trim()
            .parse()
            .map_err(|_| Error::Setup(format!("SOURCE_DATE_EPOCH={value:?} is not a number")));
    }
    let out =
        cmd::stdout(
            Command::new("git")
                .arg("-C")
                .arg(src)
                .args(["log", "-1", "--format=%ct"]),
        )?;
    out.trim().parse().map_err(|_| {
        Error::Setup(format!(
            "git log printed {out:?} as the last commit's time; set SOURCE_DATE_EPOCH"
        ))
    })
}

/// Whether we run as root (effective uid 0, from /proc/self/status).
fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Writes a file, creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// Copies a tree into `to`, merging: directories 0755, files 0755 if executable in the source
/// and 0644 otherwise, symbolic links as links; owner root. Modes are normalised so the checkout's
/// umask does not change the image.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !from.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(to).map_err(Error::io(format!("creating {}", to.display())))?;
    let mut entries: Vec<_> = fs::read_dir(from)
        .map_err(Error::io(format!("listing {}", from.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::io(format!("listing {}", from.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)
            .map_err(Error::io(format!("reading {}", source.display())))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&source)
                .map_err(Error::io(format!("reading link {}", source.display())))?;
            if dest.exists() || dest.is_symlink() {
                fs::remove_file(&dest)
                    .map_err(Error::io(format!("replacing {}", dest.display())))?;
            }
            std::os::unix::fs::symlink(&target, &dest)
                .map_err(Error::io(format!("linking {}", dest.display())))?;
        } else if meta.is_dir() {
            copy_tree(&source, &dest)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
                .map_err(Error::io(format!("chmod {}", dest.display())))?;
        } else {
            fs::copy(&source, &dest).map_err(Error::io(format!(
                "copying {} to {}",
                source.display(),
                dest.display()
            )))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                .map_err(Error::io(format!("chmod {}", dest.display())))?;
        }
    }
    Ok(())
}
