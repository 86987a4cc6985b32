//! The host programs and files the VM tasks need. When one is missing, xtask runs
//! `tests/setup-host.sh` (which installs the Debian packages) once, then checks again.

use crate::cmd::{self, workspace_root};
use crate::error::{Error, Result};
use std::path::Path;
use std::process::Command;

/// (path, Debian package) for everything the VM tasks use from the host.
const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/bin/cpio", "cpio"),
    ("/usr/bin/gzip", "gzip"),
    ("/usr/bin/ldd", "libc-bin"),
    ("/usr/bin/dbus-daemon", "dbus-daemon"),
    ("/usr/share/dbus-1/system.conf", "dbus-system-bus-common"),
    ("/usr/bin/gpioinfo", "gpiod"),
    ("/usr/bin/gpioget", "gpiod"),
    ("/usr/src/linux-source-6.1.tar.xz", "linux-source-6.1"),
    ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
    ("/usr/bin/strip", "binutils"),
    ("/usr/share/zoneinfo/Etc/UTC", "tzdata"),
    // The offsite audit copy's host tests: a real rsyslog collector with the ossl TLS driver.
    ("/usr/sbin/rsyslogd", "rsyslog"),
    (
        "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so",
        "rsyslog-openssl",
    ),
    // The console's tests and the interactive demo (tmux panes).
    ("/usr/bin/tmux", "tmux"),
    // The notification tests' SMTP server (Debian's python3, not a pyenv one).
    (
        "/usr/lib/python3/dist-packages/aiosmtpd",
        "python3-aiosmtpd",
    ),
    // The appliance image and its boot test.
    ("/usr/bin/mmdebstrap", "mmdebstrap"),
    ("/usr/bin/genimage", "genimage"),
    ("/usr/bin/mksquashfs", "squashfs-tools"),
    ("/usr/bin/unsquashfs", "squashfs-tools"),
    ("/usr/sbin/mkfs.vfat", "dosfstools"),
    ("/usr/bin/mcopy", "mtools"),
    ("/usr/bin/grub-mkimage", "grub-common"),
    ("/usr/lib/grub/x86_64-efi/linux.mod", "grub-efi-amd64-bin"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    ("/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"),
    ("/usr/bin/bmaptool", "bmap-tools"),
    ("/usr/bin/apt-ftparchive", "apt-utils"),
    // keywarden-updated's boot backends against the real tools and Debian's U-Boot.
    ("/usr/bin/grub-editenv", "grub-common"),
    ("/usr/bin/fw_printenv", "libubootenv-tool"),
    ("/usr/bin/mkenvimage", "u-boot-tools"),
    ("/usr/bin/qemu-system-aarch64", "qemu-system-arm"),
    ("/usr/lib/u-boot/qemu_arm64/u-boot.bin", "u-boot-qemu"),
];

/// Makes sure every needed host file exists, installing packages if not.
pub fn ensure_tools() -> Result<()> {
    if missing().is_empty() {
        return Ok(());
    }
    cmd::run(&mut Command::new(
        workspace_root().join("tests/setup-host.sh"),
    ))?;
    let still = missing();
    if still.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = still
        .iter()
        .map(|(path, pkg)| format!("{path} (package {pkg})"))
        .collect();
    Err(Error::Setup(format!(
        "missing after tests/setup-host.sh: {}",
        list.join(", ")
    )))
}

fn missing() -> Vec<(&'static str, &'static str)> {
    NEEDED
        .iter()
        .copied()
        .filter(|(path, _)| !Path::new(path).exists())
        .collect()
}
