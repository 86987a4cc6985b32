//! From the root file system tree to the outputs: the squashfs root, the EFI system partition
//! (GRUB built from Debian's modules, `image/grub/grub.cfg`, the initial boot selection
//! environment), the disk by genimage, its `.bmap`, the OTA bundle, the manifest, `SHA256SUMS`.

use super::packages::{sha256_file, Pin};
use super::{write_file, Build};
use crate::cmd;
use crate::error::{Error, Result};
use keywarden_bundle::SigningKey;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The EFI system partition's size (image/genimage.cfg gives the partition this image).
const ESP_SIZE: u64 = 64 << 20;

/// The disk image's file name.
pub const IMAGE_NAME: &str = "keywarden.img";

/// GRUB modules built into BOOTX64.EFI (there is no module directory on the ESP): GPT and the
/// file systems it reads (FAT for its config and environment, squashfs with xz for the kernel
/// inside each root slot), the script commands grub.cfg uses (sleep and reboot too: a slot it cannot load makes it
/// restart rather than stop at its prompt), and the Linux loader.
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "squash4",
    "xzio",
    "normal",
    "linux",
    "loadenv",
    "test",
    "echo",
    "regexp",
    "configfile",
    "boot",
    "halt",
    "reboot",
    "sleep",
    "serial",
    "terminal",
];

/// The boot selection environment of a fresh image: slot A installed and committed, B empty.
pub const INITIAL_GRUBENV: &[(&str, &str)] = &[
    ("ORDER", "A B"),
    ("A_OK", "1"),
    ("A_TRY", ""),
    ("B_OK", "0"),
    ("B_TRY", ""),
];

/// A GRUB environment block: the header, `key=value` lines, `#` padding to exactly 1024 bytes
/// (GRUB rewrites it in place and never changes its size).
pub fn grubenv(vars: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut text = String::from("# GRUB Environment Block\n");
    for (key, value) in vars {
        let _ = writeln!(text, "{key}={value}");
    }
    if text.len() > 1024 {
        return Err(Error::Setup(
            "GRUB environment longer than 1024 bytes".into(),
        ));
    }
    let mut bytes = text.into_bytes();
    bytes.resize(1024, b'#');
    Ok(bytes)
}

/// Builds every output into `out`; returns the files listed in SHA256SUMS.
pub fn assemble(
    build: &Build,
    root: &Path,
    work: &Path,
    out: &Path,
    pins: &[Pin],
    signing_key: &SigningKey,
) -> Result<Vec<PathBuf>> {
    let epoch = build.epoch.to_string();
    let input = work.join("input");
    if input.exists() {
        fs::remove_dir_all(&input).map_err(Error::io(format!("removing {}", input.display())))?;
    }
    fs::create_dir_all(&input).map_err(Error::io(format!("creating {}", input.display())))?;

    // The root file system. xz because GRUB's squash4 reads it (the kernel is inside); the
    // sort file puts our programs last, so a change to them leaves the chunks before them alone
    // (the OTA's adaptive update reuses unchanged chunks).
    let squashfs = input.join("rootfs.squashfs");
    let sort = work.join("squashfs.sort");
    write_file(&sort, &squashfs_sort(build))?;
    cmd::run(
        Command::new("mksquashfs")
            .arg(root)
            .arg(&squashfs)
            .args(["-comp", "xz", "-noappend", "-quiet", "-no-progress"])
            .arg("-sort")
            .arg(&sort)
            // Sets every file's time and the file system's (the equivalent of -all-time and
            // -mkfs-time, which mksquashfs refuses alongside it).
            .env("SOURCE_DATE_EPOCH", &epoch),
    )?;

    // The EFI system partition's tree.
    let esp = work.join("esp");
    if esp.exists() {
        fs::remove_dir_all(&esp).map_err(Error::io(format!("removing {}", esp.display())))?;
    }
    let efi_boot = esp.join("EFI/BOOT");
    fs::create_dir_all(&efi_boot).map_err(Error::io(format!("creating {}", efi_boot.display())))?;
    cmd::run(
        Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o"])
            .arg(efi_boot.join("BOOTX64.EFI"))
            .args(GRUB_MODULES),
    )?;
    fs::copy(
        build.src.join("image/grub/grub.cfg"),
        efi_boot.join("grub.cfg"),
    )
    .map_err(Error::io("copying image/grub/grub.cfg"))?;
    fs::write(efi_boot.join("grubenv"), grubenv(INITIAL_GRUBENV)?)
        .map_err(Error::io("writing grubenv"))?;
    // mcopy keeps file times: make them the epoch.
    cmd::run(
        Command::new("find")
            .arg(&esp)
            .args(["-exec", "touch", "--no-dereference", "--date"])
            .arg(format!("@{epoch}"))
            .args(["{}", "+"]),
    )?;

    // The EFI system partition (its size is the `boot` partition's in image/genimage.cfg).
    super::fat::build(
        &input.join("esp.vfat"),
        ESP_SIZE,
        "BOOT",
        "4b570001",
        &esp,
        build.epoch,
    )?;

    // The disk.
    let config = fs::read_to_string(build.src.join("image/genimage.cfg"))
        .map_err(Error::io("reading image/genimage.cfg"))?
        .replace("{SOURCE_DATE_EPOCH}", &epoch);
    let config_path = work.join("genimage.cfg");
    write_file(&config_path, &config)?;
    let genimage_tmp = work.join("genimage-tmp");
    let genimage_root = work.join("genimage-root");
    for dir in [&genimage_tmp, &genimage_root] {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(Error::io(format!("removing {}", dir.display())))?;
        }
    }
    fs::create_dir_all(&genimage_root).map_err(Error::io("creating genimage root"))?;
    fs::create_dir_all(out).map_err(Error::io(format!("creating {}", out.display())))?;
    let image = out.join(IMAGE_NAME);
    cmd::run(
        Command::new("genimage")
            .current_dir(work)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .env("E2FSPROGS_FAKE_TIME", &epoch)
            .arg("--config")
            .arg(&config_path)
            .arg("--inputpath")
            .arg(&input)
            .arg("--outputpath")
            .arg(out)
            .arg("--tmppath")
            .arg(&genimage_tmp)
            .arg("--rootpath")
            .arg(&genimage_root),
    )?;

    // Outputs beside the image.
    let bmap = out.join("keywarden.bmap");
    cmd::run(
        Command::new("bmaptool")
            .args(["create", "-o"])
            .arg(&bmap)
            .arg(&image),
    )?;
    let rootfs = out.join("rootfs.squashfs");
    fs::copy(&squashfs, &rootfs).map_err(Error::io("copying the root file system out"))?;
    let bundle = out.join(format!(
        "keywarden-{}-{}.kwb",
        build.version,
        build.compatible()
    ));
    super::bundle::create(build, &squashfs, &bundle, signing_key)?;
    let manifest = out.join("packages.manifest");
    write_file(&manifest, &package_manifest(build, pins))?;

    let files = vec![image, bmap, bundle, rootfs, manifest];
    let mut sums = String::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(sums, "{}  {name}", sha256_file(file)?);
    }
    let sums_path = out.join("SHA256SUMS");
    write_file(&sums_path, &sums)?;
    let mut all = files;
    all.push(sums_path);
    Ok(all)
}

/// mksquashfs sort file: higher priority is placed first; our programs get a low one, and
/// `os-release` (the one file that differs between two builds of the same tree at different
/// versions) the lowest. A small file lives in a shared compressed fragment block, so a change
/// to it changes that block's size and shifts every byte written after it: placed last, it
/// shifts nothing, and two releases differing only in version share every chunk but the tail
/// (before this, 0.1.1 and 0.1.2 shared 440 of 938 chunks).
fn squashfs_sort(build: &Build) -> String {
    let mut text = String::new();
    for name in super::rootfs::BINARIES
        .iter()
        .chain(build.board_binaries().iter())
    {
        let _ = writeln!(text, "usr/bin/{name} -1000");
    }
    let _ = writeln!(text, "usr/lib/os-release -2000");
    text
}

/// What is in the image: our components, then every Debian package.
fn package_manifest(build: &Build, pins: &[Pin]) -> String {
    let mut text = format!(
        "# Keywarden appliance image {} (board {}, SOURCE_DATE_EPOCH {})\n# component version\n",
        build.version, build.board, build.epoch
    );
    for name in super::rootfs::BINARIES
        .iter()
        .chain(build.board_binaries().iter())
    {
        let _ = writeln!(text, "{name} {}", build.version);
    }
    let _ = writeln!(text, "# debian-package version arch sha256-of-deb");
    for pin in pins {
        let _ = writeln!(
            text,
            "{} {} {} {}",
            pin.name, pin.version, pin.arch, pin.sha256
        );
    }
    text
}
