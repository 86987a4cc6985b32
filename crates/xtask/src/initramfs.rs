//! The test VM's initramfs, assembled under `target/vm/` (never committed): the overlay
//! `tests/vm/rootfs/` (`/init`, accounts, machine-id, board file), busybox-static with its
//! applet links, our release binaries, the host's `dbus-daemon` and libgpiod tools with every
//! shared library `ldd` lists (ld-linux included), Debian's bus `system.conf` and the project's
//! policy files (`crates/*/dbus/*.conf`), the UTC zone from tzdata. Our binaries lose their
//! debug info (`strip --strip-debug`). Packed as a gzip-compressed newc cpio. The data partition
//! is not in it: [`data_disk`] makes a fresh ext4 image for the VM's virtio disk.

use crate::cmd::{self, display, workspace_root};
use crate::error::{Error, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Our binaries, from `target/appliance/` (the image's build), installed in `/usr/bin`.
pub const OUR_BINARIES: &[&str] = &[
    "keywarden-hwd",
    "keywarden-policyd",
    "keywarden",
    "keywarden-vm-scenarios",
    "keywarden-vm-bench",
];
/// keywarden-hwd's unit-test binary, for the tests that need real kernel devices (the VM runs
/// its ignored `input::evdev_device` tests); installed as `/usr/bin/keywarden-hwd-unit-tests`.
pub const HWD_UNIT_TESTS: &str = "keywarden-hwd-unit-tests";
/// Host programs copied with their libraries, installed in `/usr/bin`.
const HOST_PROGRAMS: &[&str] = &[
    "/usr/bin/dbus-daemon",
    "/usr/bin/gpioinfo",
    "/usr/bin/gpioget",
];
/// strip (binutils, from build-essential).
const STRIP: &str = "strip";
/// busybox-static (Debian package busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// The UTC zone file (Debian package tzdata).
const ZONEINFO_UTC: &str = "/usr/share/zoneinfo/Etc/UTC";
/// Debian's system bus configuration (package dbus-daemon / dbus).
const DBUS_SYSTEM_CONF: &str = "/usr/share/dbus-1/system.conf";

/// Assembles the initramfs from the binaries in `release_dir`; returns the `.cpio.gz` path.
pub fn build(release_dir: &Path, work: &Path) -> Result<PathBuf> {
    let root = work.join("initramfs");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(Error::io(format!("removing {}", root.display())))?;
    }
    copy_tree(&workspace_root().join("tests/vm/rootfs"), &root)?;
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "var/lib/dbus",
        "var/lib/keywarden",
        "etc/dbus-1/system.d",
    ] {
        mkdir(&root.join(dir))?;
    }
    install_busybox(&root)?;
    let mut programs: Vec<PathBuf> = OUR_BINARIES
        .iter()
        .chain([&HWD_UNIT_TESTS])
        .map(|b| release_dir.join(b))
        .collect();
    programs.retain(|p| p.exists() || warn_missing(p));
    for program in &programs {
        let dest = root
            .join("usr/bin")
            .join(program.file_name().unwrap_or_default());
        copy(program, &dest)?;
        // Release builds carry line tables (hundreds of MB together): too much for the VM's RAM
        // to unpack. Symbols stay, so a panic's backtrace still names functions.
        cmd::run(Command::new(STRIP).arg("--strip-debug").arg(&dest))?;
        install_libraries(program, &root)?;
    }
    for program in HOST_PROGRAMS.iter().map(Path::new) {
        let name = program.file_name().unwrap_or_default();
        copy(program, &root.join("usr/bin").join(name))?;
        install_libraries(program, &root)?;
    }
    install_dbus_config(&root)?;
    install_zoneinfo(&root)?;
    symlink("/etc/machine-id", &root.join("var/lib/dbus/machine-id"))?;
    pack(&root, &work.join("initramfs.cpio.gz"))
}

/// Size of the data partition image (sparse; the test database stays far smaller).
const DATA_DISK_BYTES: u64 = 64 << 20;
/// mke2fs as ext4 (Debian package e2fsprogs).
const MKFS_EXT4: &str = "/usr/sbin/mkfs.ext4";

/// A fresh, empty ext4 image for the VM's data partition (`/var/lib/keywarden`, where
/// keywarden-policyd keeps its database), so `fsync` in the VM reaches a real block device.
/// Made anew for every boot: every run starts with no database. `mkfs.ext4` is among the host
/// tools `host::ensure_tools` installs before any VM task gets here.
pub fn data_disk(work: &Path) -> Result<PathBuf> {
    let path = work.join("data.ext4");
    let file =
        fs::File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    file.set_len(DATA_DISK_BYTES)
        .map_err(Error::io(format!("sizing {}", path.display())))?;
    drop(file);
    cmd::run(
        Command::new(MKFS_EXT4)
            .args(["-q", "-F", "-L", "kw-data"])
            .arg(&path),
    )?;
    Ok(path)
}

/// Leaves a missing binary of ours out (the VM then reports what cannot start); returns false.
fn warn_missing(program: &Path) -> bool {
    eprintln!(
        "xtask: warning: {} not built, left out of the initramfs",
        program.display()
    );
    false
}

/// busybox as `/bin/busybox`, and a link to it for every applet it lists.
fn install_busybox(root: &Path) -> Result<()> {
    copy(Path::new(BUSYBOX), &root.join("bin/busybox"))?;
    let list = cmd::stdout(Command::new(BUSYBOX).arg("--list-full"))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if !link.exists() {
            symlink("/bin/busybox", &link)?;
        }
    }
    Ok(())
}

/// Copies every library `ldd` lists for `program` to the same path under `root`.
fn install_libraries(program: &Path, root: &Path) -> Result<()> {
    let out = cmd::output(Command::new("ldd").arg(program))?;
    if !out.status.success() {
        return Ok(()); // "not a dynamic executable"
    }
    for lib in ldd_paths(&String::from_utf8_lossy(&out.stdout)) {
        let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        if !dest.exists() {
            copy(&lib, &dest)?;
        }
    }
    Ok(())
}

/// The absolute library paths in `ldd` output (`name => /path (addr)` and `/path (addr)`).
pub fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.split(" => ").last()?.trim();
            let path = line.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Debian's system.conf, and the project's policy files into `/usr/share/dbus-1/system.d/`.
fn install_dbus_config(root: &Path) -> Result<()> {
    let share = root.join("usr/share/dbus-1");
    copy(Path::new(DBUS_SYSTEM_CONF), &share.join("system.conf"))?;
    let crates = workspace_root().join("crates");
    let entries =
        fs::read_dir(&crates).map_err(Error::io(format!("listing {}", crates.display())))?;
    let mut found = 0;
    for entry in entries.flatten() {
        let dir = entry.path().join("dbus");
        for policy in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = policy.path();
            if path.extension().is_some_and(|e| e == "conf") {
                copy(&path, &share.join("system.d").join(policy.file_name()))?;
                found += 1;
            }
        }
    }
    if found == 0 {
        eprintln!("xtask: warning: no crates/*/dbus/*.conf policy files found");
    }
    Ok(())
}

/// The UTC zone from the host's tzdata (`/usr/share/zoneinfo/Etc/UTC`, and `UTC` linked to it as
/// tzdata does): the test site's policy file names `time-zone = "UTC"`, which keywarden-policyd
/// looks up in the zone database like any other zone.
fn install_zoneinfo(root: &Path) -> Result<()> {
    let zoneinfo = root.join("usr/share/zoneinfo");
    copy(Path::new(ZONEINFO_UTC), &zoneinfo.join("Etc/UTC"))?;
    symlink("Etc/UTC", &zoneinfo.join("UTC"))
}

/// `find . | sort | cpio -o -H newc -R 0:0 | gzip`, all files owned by root.
fn pack(root: &Path, out: &Path) -> Result<PathBuf> {
    let mut names = Vec::new();
    list_tree(root, Path::new("."), &mut names)?;
    names.sort();
    let cpio_path = out.with_extension("");
    let cpio_file = fs::File::create(&cpio_path)
        .map_err(Error::io(format!("creating {}", cpio_path.display())))?;
    let mut cpio = Command::new("cpio");
    cpio.args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(cpio_file);
    let mut child = cpio.spawn().map_err(|source| Error::Spawn {
        cmd: display(&cpio),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let list = names.join("\n") + "\n";
        stdin
            .write_all(list.as_bytes())
            .map_err(Error::io("writing the file list to cpio"))?;
    }
    let status = child.wait().map_err(Error::io("waiting for cpio"))?;
    if !status.success() {
        return Err(Error::Failed {
            cmd: display(&cpio),
            status,
        });
    }
    cmd::run(
        Command::new("gzip")
            .args(["-1", "-f", "-n"])
            .arg(&cpio_path),
    )?;
    Ok(out.to_path_buf())
}

/// Every path under `dir` relative to the archive root, directories before their contents.
fn list_tree(root: &Path, rel: &Path, names: &mut Vec<String>) -> Result<()> {
    names.push(rel.to_string_lossy().into_owned());
    let dir = root.join(rel);
    let meta = fs::symlink_metadata(&dir).map_err(Error::io(format!("stat {}", dir.display())))?;
    if meta.is_dir() {
        let entries =
            fs::read_dir(&dir).map_err(Error::io(format!("listing {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
            list_tree(root, &rel.join(entry.file_name()), names)?;
        }
    }
    Ok(())
}

/// Copies a directory tree (files keep their permissions; symlinks are not expected).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    mkdir(to)?;
    let entries = fs::read_dir(from).map_err(Error::io(format!("listing {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", from.display())))?;
        let (src, dest) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dest)?;
        } else {
            copy(&src, &dest)?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    fs::copy(from, to).map(drop).map_err(Error::io(format!(
        "copying {} to {}",
        from.display(),
        to.display()
    )))
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))
}

fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        mkdir(parent)?;
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(Error::io(format!("linking {} to {target}", link.display())))
}

#[cfg(test)]
mod tests {
    use super::ldd_paths;
    use std::path::PathBuf;

    #[test]
    fn ldd_output_gives_library_paths_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f20)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f20)\n";
        assert_eq!(
            ldd_paths(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
