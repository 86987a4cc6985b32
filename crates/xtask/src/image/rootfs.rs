//! The root file system tree: Debian's pinned packages (mmdebstrap from the local repository),
//! then the image's overlay, the board's overlay, our binaries and the files each service crate
//! ships (units, D-Bus policies, udev rules, sysusers), the kernel, users and enabled units.
//! Everything is decided by the source tree and the lock; nothing comes from the host but the
//! tools.

use super::packages::{Pin, SUITE};
use super::{copy_tree, write_file, Build};
use crate::cmd;
use crate::error::{Error, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Our programs in the image, all in /usr/bin.
pub const BINARIES: &[&str] = &[
    "keywarden-hwd",
    "keywarden-policyd",
    "keywarden-console",
    "keywarden-updated",
    "keywarden",
];

/// Service crates whose shipped files (systemd/, dbus/, udev/, sysusers/, tmpfiles/) go into the
/// image, as they go into the Yocto layer.
const SERVICE_CRATES: &[&str] = &[
    "keywarden-hwd",
    "keywarden-policyd",
    "keywarden-console",
    "keywarden-updated",
];

/// Units enabled in every image.
const ENABLED: &[&str] = &[
    "keywarden-hwd.service",
    "keywarden-policyd.service",
    "keywarden-console.service",
    "keywarden-updated.service",
    "keywarden-health-check.service",
    "keywarden-bless-boot.service",
    "systemd-networkd.service",
    "systemd-timesyncd.service",
];

/// Where each kind of shipped file goes: (directory in the crate, destination in the image).
const SHIPPED: &[(&str, &str)] = &[
    ("systemd", "usr/lib/systemd/system"),
    ("dbus", "usr/share/dbus-1/system.d"),
    ("udev", "usr/lib/udev/rules.d"),
    ("sysusers", "usr/lib/sysusers.d"),
    ("tmpfiles", "usr/lib/tmpfiles.d"),
];

/// Bootstraps the packages into `root` from the local repository `repo`.
pub fn bootstrap(pins: &[Pin], repo: &Path, root: &Path, epoch: u64) -> Result<()> {
    if root.exists() {
        fs::remove_dir_all(root).map_err(Error::io(format!("removing {}", root.display())))?;
    }
    let names: Vec<&str> = pins.iter().map(|p| p.name.as_str()).collect();
    let mut mm = Command::new("mmdebstrap");
    mm.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["--mode=root", "--variant=essential", "--quiet"])
        .arg(format!("--include={}", names.join(",")))
        // Documentation, manuals and translations are not for an appliance without a shell.
        .args([
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/lintian/*",
        ])
        // The host's resolver and name must not leak in (mmdebstrap copies them).
        .arg("--customize-hook=rm -f \"$1/etc/resolv.conf\" \"$1/etc/hostname\"")
        .arg(SUITE)
        .arg(root)
        // copy://: mmdebstrap copies the files into the chroot (file:// would need a bind mount).
        // trusted=yes: this repository is exactly the files whose SHA-256 the lock pins.
        .arg(format!("deb [trusted=yes] copy://{} ./", repo.display()));
    cmd::run(&mut mm)
}

/// Everything after the packages.
pub fn customise(
    build: &Build,
    root: &Path,
    binaries: &Path,
    kernel: &Path,
    signing_public_pem: &str,
) -> Result<()> {
    let src = &build.src;
    // The package manifest, kept in the image for support (diagnostic bundles name versions).
    let manifest = cmd::stdout(Command::new("chroot").arg(root).args([
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version} ${Architecture}\\n",
    ]))?;
    write_file(
        &root.join("usr/share/keywarden/packages.manifest"),
        &manifest,
    )?;

    copy_tree(&src.join("image/overlay"), root)?;
    let board = src.join("image/boards").join(&build.board);
    if !board.is_dir() {
        return Err(Error::Setup(format!(
            "no board {:?}: {} does not exist",
            build.board,
            board.display()
        )));
    }
    copy_tree(&board.join("overlay"), root)?;
    let board_file = board.join("board.toml");
    fs::create_dir_all(root.join("etc/keywarden")).map_err(Error::io("creating etc/keywarden"))?;
    fs::copy(&board_file, root.join("etc/keywarden/board.toml"))
        .map_err(Error::io(format!("copying {}", board_file.display())))?;
    // The updater's board facts (slot devices, bootloader, bundle keys) and the public half of
    // the key that signs this image's bundles: the image trusts the key its own updates come
    // with (a fleet adds or rotates keys with the next image).
    let update_file = board.join("update.toml");
    fs::copy(&update_file, root.join("etc/keywarden/update.toml"))
        .map_err(Error::io(format!("copying {}", update_file.display())))?;
    write_file(
        &root.join("usr/share/keywarden/update/keys/bundle-signing.pub"),
        signing_public_pem,
    )?;

    for krate in SERVICE_CRATES {
        for (dir, dest) in SHIPPED {
            let from = src.join("crates").join(krate).join(dir);
            if from.is_dir() {
                copy_tree(&from, &root.join(dest))?;
            }
        }
    }
    let bin = root.join("usr/bin");
    for name in BINARIES.iter().chain(build.board_binaries().iter()) {
        let to = bin.join(name);
        fs::copy(binaries.join(name), &to)
            .map_err(Error::io(format!("installing {name} into the image")))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
            .map_err(Error::io(format!("chmod {}", to.display())))?;
    }
    fs::create_dir_all(root.join("boot/efi")).map_err(Error::io("creating boot/efi"))?;
    fs::copy(kernel, root.join("boot/vmlinuz"))
        .map_err(Error::io(format!("copying {}", kernel.display())))?;

    // The image's identity, for the updater and for support.
    let os_release = root.join("usr/lib/os-release");
    let mut text = fs::read_to_string(&os_release).map_err(Error::io("reading os-release"))?;
    text.push_str(&format!(
        "IMAGE_ID=keywarden\nIMAGE_VERSION={}\nVARIANT=\"Keywarden appliance ({} board)\"\nVARIANT_ID={}\n",
        build.version, build.board, build.board
    ));
    write_file(&os_release, &text)?;

    // Users exist before the first boot: /etc is read-only on the appliance.
    cmd::run(
        Command::new("chroot")
            .arg(root)
            .arg("systemd-sysusers")
            .env("SOURCE_DATE_EPOCH", build.epoch.to_string()),
    )?;
    let mut enable = Command::new("chroot");
    enable.arg(root).args(["systemctl", "enable"]);
    for unit in ENABLED.iter().chain(build.board_units().iter()) {
        enable.arg(unit);
    }
    cmd::run(&mut enable)?;
    // No login for anyone: no getty on any terminal (the console owns tty1).
    cmd::run(Command::new("chroot").arg(root).args([
        "systemctl",
        "mask",
        "getty.target",
        "console-getty.service",
    ]))?;

    // Machine identity is per device, made at first boot (an empty file on a read-only root
    // makes systemd use a transient one until provisioning gives the device its own).
    write_file(&root.join("etc/machine-id"), "")?;
    for leftover in [
        "var/lib/dbus/machine-id",
        "var/cache/ldconfig/aux-cache",
        "var/lib/systemd/catalog/database",
        "etc/.pwd.lock",
    ] {
        let path = root.join(leftover);
        if path.exists() || path.is_symlink() {
            fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
        }
    }
    // No package manager at run time: the manifest above is what is installed, for good.
    for dir in ["usr/bin", "usr/sbin"] {
        for entry in fs::read_dir(root.join(dir)).map_err(Error::io(format!("listing {dir}")))? {
            let entry = entry.map_err(Error::io(format!("listing {dir}")))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("dpkg") || name.starts_with("apt") {
                fs::remove_file(entry.path())
                    .map_err(Error::io(format!("removing {}", entry.path().display())))?;
            }
        }
    }
    // apt's configuration names the build's local repository (a host path): no apt, no config.
    let apt = root.join("etc/apt");
    if apt.exists() {
        fs::remove_dir_all(&apt).map_err(Error::io(format!("removing {}", apt.display())))?;
    }
    for dir in [
        "var/lib/apt",
        "var/cache/apt",
        "var/log",
        "var/cache/debconf",
    ] {
        let path = root.join(dir);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(Error::io(format!("removing {}", path.display())))?;
            fs::create_dir_all(&path).map_err(Error::io(format!("creating {}", path.display())))?;
        }
    }
    Ok(())
}
