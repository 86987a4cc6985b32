//! The appliance image in QEMU (TCG, UEFI firmware from Debian's `ovmf`):
//! - `cargo xtask vm`: boots it with the serial console on the terminal (Ctrl-A X quits). The
//!   disk is a copy of the image kept between runs (`--fresh` starts over), so the data
//!   partition persists like a cabinet's.
//! - `cargo xtask vm-boot-test`: flashes the image with `bmaptool copy` onto a fresh target file
//!   (the factory's step), checks the copy is the image, then boots the copy twice, cutting the
//!   power (killing QEMU) after each boot report, and checks what the qemu board's test-only
//!   `keywarden-boot-report` prints: no failed units, every Keywarden service active and
//!   answering on the bus, introspection, `systemd-analyze security` exposure at most
//!   [`MAX_EXPOSURE`] for policyd, console and hwd, the slot booted, and that the database made by
//!   the first boot is still there after the power cut.

use crate::cmd::{self, workspace_root};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The exposure level (`systemd-analyze security`, 0 best to 10) each service unit must meet.
pub const MAX_EXPOSURE: f64 = 2.5;

/// Units whose exposure is checked.
const CHECKED_UNITS: &[&str] = &[
    "keywarden-policyd.service",
    "keywarden-console.service",
    "keywarden-hwd.service",
];

/// Units that must be active.
const ACTIVE_UNITS: &[&str] = &[
    "keywarden-qemu-board.service",
    "keywarden-hwd.service",
    "keywarden-policyd.service",
    "keywarden-console.service",
    "keywarden-updated.service",
    "keywarden-health-check.service",
    "keywarden-bless-boot.service",
    "dbus.service",
];

/// Units whose exposure is reported but not bounded: the updater runs as root and writes block
/// devices, so its figure is higher by nature.
const REPORTED_UNITS: &[&str] = &["keywarden-updated.service"];

/// Bus names that must answer and introspect.
const BUS_NAMES: &[&str] = &[
    "org.keywarden.Hardware1",
    "org.keywarden.Policy1",
    "org.keywarden.Update1",
];

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub(super) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Options of `cargo xtask vm`.
#[derive(clap::Args, Debug)]
pub struct VmArgs {
    /// The image to boot (default: target/image/keywarden.img).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Start from a fresh copy of the image (the data partition starts empty again).
    #[arg(long)]
    fresh: bool,
}

/// Options of `cargo xtask vm-boot-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct BootTestArgs {
    /// The image to test (default: target/image/keywarden.img).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Give up on a boot after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Echo the whole serial console.
    #[arg(long, short)]
    pub verbose: bool,
}

pub(super) fn default_image() -> PathBuf {
    workspace_root()
        .join("target/image")
        .join(super::disk::IMAGE_NAME)
}

/// The QEMU command line for a disk: q35, UEFI, the disk on virtio, the i6300esb watchdog
/// systemd arms, no network (the update test adds its own), serial on stdio.
pub(super) fn qemu(disk: &Path, vars: &Path, network: bool) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine", "q35", "-m", "1024", "-smp", "2", "-rtc", "base=utc",
    ])
    .args(["-watchdog-action", "reset", "-device", "i6300esb"])
    .arg("-drive")
    .arg(format!(
        "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
    ))
    .arg("-drive")
    .arg(format!(
        "if=pflash,format=raw,unit=1,file={}",
        vars.display()
    ))
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", disk.display()));
    if network {
        qemu.args(["-nic", "user,model=virtio-net-pci"]);
    } else {
        qemu.args(["-nic", "none"]);
    }
    qemu
}

/// `cargo xtask vm`.
pub fn run(args: &VmArgs) -> Result<()> {
    crate::host::ensure_tools()?;
    let image = args.image.clone().unwrap_or_else(default_image);
    require_image(&image)?;
    let dir = workspace_root().join("target/image/vm");
    fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let disk = dir.join("disk.img");
    let vars = dir.join("OVMF_VARS.fd");
    if args.fresh || !disk.exists() {
        copy_sparse(&image, &disk)?;
        fs::copy(OVMF_VARS, &vars).map_err(Error::io("copying the UEFI variables"))?;
        eprintln!("vm: fresh disk {} from {}", disk.display(), image.display());
    } else {
        eprintln!(
            "vm: disk {} (persists between runs; --fresh starts over)",
            disk.display()
        );
    }
    eprintln!("vm: serial console below; Ctrl-A X quits QEMU");
    cmd::run(qemu(&disk, &vars, false).arg("-nographic"))
}

pub(super) fn require_image(image: &Path) -> Result<()> {
    if image.is_file() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{} does not exist: build it with `cargo xtask image`",
            image.display()
        )))
    }
}

pub(super) fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    cmd::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))
}

/// One boot's report: every KWBOOT line, by kind.
#[derive(Debug, Default)]
pub struct BootReport {
    /// `kind` → the rest of each line of that kind, in order.
    pub facts: BTreeMap<String, Vec<String>>,
    /// Host time from starting QEMU to `KWBOOT ready`.
    pub ready_after: Option<Duration>,
    /// Whether `KWBOOT done` arrived.
    pub done: bool,
}

impl BootReport {
    fn first(&self, kind: &str) -> Option<&str> {
        self.facts
            .get(kind)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn all(&self, kind: &str) -> &[String] {
        self.facts.get(kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The exposure figure of a unit.
    pub fn exposure(&self, unit: &str) -> Option<f64> {
        self.all("security").iter().find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == unit).then(|| value.trim().parse().ok()).flatten()
        })
    }
}

/// Boots `disk` until the boot report is done (or the deadline), then cuts the power.
fn boot_once(disk: &Path, vars: &Path, log: &Path, args: &BootTestArgs) -> Result<BootReport> {
    let started = Instant::now();
    let mut child: Child = qemu(disk, vars, false)
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-no-reboot")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Spawn {
            cmd: "qemu-system-x86_64".into(),
            source,
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Setup("QEMU's stdout was not captured".into()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log_file =
        fs::File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
    let deadline = started + Duration::from_secs(args.timeout);
    let mut report = BootReport::default();
    while !report.done {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let _ = writeln!(log_file, "{line}");
        if args.verbose {
            eprintln!("  | {line}");
        }
        let Some(at) = line.find("KWBOOT ") else {
            continue;
        };
        let fact = line[at + "KWBOOT ".len()..].trim_end_matches('\r').trim();
        let (kind, rest) = fact.split_once(' ').unwrap_or((fact, ""));
        if !args.verbose {
            eprintln!("  KWBOOT {fact}");
        }
        match kind {
            "done" => report.done = true,
            "ready" => report.ready_after = Some(started.elapsed()),
            _ => {}
        }
        report
            .facts
            .entry(kind.to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    // The power cut: no shutdown, no sync from the guest.
    let _ = child.kill();
    let _ = child.wait();
    Ok(report)
}

/// A named check and whether it held.
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn check(
    checks: &mut Vec<Check>,
    name: impl Into<String>,
    passed: bool,
    detail: impl Into<String>,
) {
    check_as("vm-boot-test", checks, name, passed, detail);
}

/// Records a check and prints it as `TASK: PASS|FAIL name (detail)`.
pub(super) fn check_as(
    task: &str,
    checks: &mut Vec<Check>,
    name: impl Into<String>,
    passed: bool,
    detail: impl Into<String>,
) {
    let check = Check {
        name: name.into(),
        passed,
        detail: detail.into(),
    };
    println!(
        "{task}: {} {}{}",
        if check.passed { "PASS" } else { "FAIL" },
        check.name,
        if check.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", check.detail)
        }
    );
    checks.push(check);
}

/// The checks of one boot's report.
fn check_boot(checks: &mut Vec<Check>, boot: &str, report: &BootReport) {
    check(
        checks,
        format!("{boot}: boot report complete"),
        report.done,
        "",
    );
    let state = report.first("state").unwrap_or("none");
    check(
        checks,
        format!("{boot}: system state running"),
        state == "running",
        state,
    );
    let failed = report.all("failed");
    check(
        checks,
        format!("{boot}: no failed units"),
        failed.is_empty(),
        failed.join(", "),
    );
    for unit in ACTIVE_UNITS {
        let state = report
            .all("active")
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{unit} ")))
            .unwrap_or("not reported");
        check(
            checks,
            format!("{boot}: {unit} active"),
            state == "active",
            state,
        );
    }
    for name in BUS_NAMES {
        let answer = report
            .all("answers")
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("not reported");
        check(
            checks,
            format!("{boot}: {name} answers on the bus"),
            answer.starts_with("yes"),
            answer,
        );
        let introspect = report
            .all("introspect")
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("not reported");
        check(
            checks,
            format!("{boot}: busctl introspect {name}"),
            introspect == "yes",
            introspect,
        );
    }
    for unit in CHECKED_UNITS {
        let exposure = report.exposure(unit);
        check(
            checks,
            format!("{boot}: {unit} exposure <= {MAX_EXPOSURE}"),
            exposure.is_some_and(|e| e <= MAX_EXPOSURE),
            exposure.map_or("not reported".into(), |e| format!("{e}")),
        );
    }
    let slot = report.first("slot").unwrap_or("none");
    check(checks, format!("{boot}: booted slot A"), slot == "A", slot);
    // `KWBOOT diag ok <bytes> <ms> <verified> <file:state ...>`: built on the cabinet, verified
    // with its device key, the journal and the database read.
    let diag = report.first("diag").unwrap_or("not reported");
    let fields: Vec<&str> = diag.split_whitespace().collect();
    let collected = |file: &str| fields.iter().any(|f| *f == format!("{file}:ok"));
    check(
        checks,
        format!("{boot}: diagnostic bundle built on the cabinet and verified with its key"),
        fields.first() == Some(&"ok") && fields.get(3) == Some(&"yes"),
        diag,
    );
    check(
        checks,
        format!(
            "{boot}: the bundle holds the journal, kernel log, database, hardware and update state"
        ),
        [
            "journal.txt",
            "kernel.txt",
            "database.json",
            "hardware.json",
            "update.json",
        ]
        .iter()
        .all(|f| collected(f)),
        diag,
    );
}

/// `KWBOOT diag` and `KWBOOT selftest` as figures for people.
fn tool_figures(report: &BootReport) -> String {
    let diag: Vec<&str> = report
        .first("diag")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let diag = match diag.as_slice() {
        ["ok", bytes, ms, ..] => format!("diagnostic bundle {bytes} bytes in {ms} ms"),
        _ => "diagnostic bundle failed".to_owned(),
    };
    let selftest = report.first("selftest").unwrap_or("not reported");
    format!("{diag}; self-test (exit, passed, failed, ms, failures): {selftest}")
}

/// `cargo xtask vm-boot-test`: returns (passed, failed).
pub fn boot_test(args: &BootTestArgs) -> Result<(usize, usize)> {
    crate::host::ensure_tools()?;
    let image = args.image.clone().unwrap_or_else(default_image);
    require_image(&image)?;
    let bmap = image.with_extension("bmap");
    let dir = workspace_root().join("target/image/boot-test");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut checks = Vec::new();

    // The factory's step: flash with bmaptool onto a target that is not blank (a used device).
    let target = dir.join("flashed.img");
    let size = fs::metadata(&image)
        .map_err(Error::io(format!("reading {}", image.display())))?
        .len();
    {
        let mut file = fs::File::create(&target)
            .map_err(Error::io(format!("creating {}", target.display())))?;
        file.write_all(&vec![0xa5; 1 << 20])
            .map_err(Error::io("writing garbage to the flash target"))?;
        file.set_len(size)
            .map_err(Error::io("sizing the flash target"))?;
    }
    let flash = cmd::output(
        Command::new("bmaptool")
            .args(["copy", "--bmap"])
            .arg(&bmap)
            .arg(&image)
            .arg(&target),
    )?;
    check(
        &mut checks,
        "bmaptool copy flashes the image (checksums verified)",
        flash.status.success(),
        String::from_utf8_lossy(&flash.stderr).trim().to_owned(),
    );
    let same = cmd::output(Command::new("cmp").arg(&image).arg(&target))?;
    check(
        &mut checks,
        "the flashed target is byte-identical to the image where the image has data",
        flash.status.success() && mapped_ranges_equal(&bmap, &image, &target)?,
        if same.status.success() {
            "whole file identical".to_owned()
        } else {
            "unmapped ranges differ (not written, by design)".to_owned()
        },
    );

    let vars = dir.join("OVMF_VARS.fd");
    fs::copy(OVMF_VARS, &vars).map_err(Error::io("copying the UEFI variables"))?;
    let first = boot_once(&target, &vars, &dir.join("boot-1.log"), args)?;
    check_boot(&mut checks, "boot 1", &first);
    let second = boot_once(&target, &vars, &dir.join("boot-2.log"), args)?;
    check_boot(&mut checks, "boot 2 (after a power cut)", &second);
    let (db1, db2) = (
        first.first("data").unwrap_or("none"),
        second.first("data").unwrap_or("none"),
    );
    check(
        &mut checks,
        "the database on the data partition survives the power cut",
        db1 != "none" && db1 == db2,
        format!("birth time {db1} then {db2}"),
    );

    for (boot, report) in [("boot 1", &first), ("boot 2", &second)] {
        let ready = report
            .ready_after
            .map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()));
        let guest = report.first("ready").unwrap_or("?");
        let exposures: Vec<String> = CHECKED_UNITS
            .iter()
            .chain(REPORTED_UNITS)
            .map(|u| {
                format!(
                    "{} {}",
                    u.trim_end_matches(".service"),
                    report.exposure(u).map_or("?".into(), |e| format!("{e}"))
                )
            })
            .collect();
        println!(
            "vm-boot-test: {boot}: QEMU start to cabinet ready {ready} (guest uptime {guest} s); exposure {}",
            exposures.join(", ")
        );
        println!("vm-boot-test: {boot}: {}", tool_figures(report));
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    let passed = checks.len() - failed;
    println!(
        "vm-boot-test: {passed} passed, {failed} failed (console logs in {})",
        dir.display()
    );
    Ok((passed, failed))
}

/// Compares the image and the target over the ranges the bmap says hold data.
fn mapped_ranges_equal(bmap: &Path, image: &Path, target: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let text =
        fs::read_to_string(bmap).map_err(Error::io(format!("reading {}", bmap.display())))?;
    let block: u64 = text
        .split("<BlockSize>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::Setup(format!("{} has no BlockSize", bmap.display())))?;
    let mut a = fs::File::open(image).map_err(Error::io("opening the image"))?;
    let mut b = fs::File::open(target).map_err(Error::io("opening the flash target"))?;
    for range in text.split("<Range").skip(1) {
        let Some(span) = range.split('>').nth(1).and_then(|s| s.split('<').next()) else {
            continue;
        };
        let (first, last) = match span.trim().split_once('-') {
            Some((f, l)) => (f.trim().parse::<u64>(), l.trim().parse::<u64>()),
            None => (span.trim().parse::<u64>(), span.trim().parse::<u64>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            return Err(Error::Setup(format!("bad bmap range {span:?}")));
        };
        let mut left = (last - first + 1) * block;
        a.seek(SeekFrom::Start(first * block))
            .map_err(Error::io("seeking the image"))?;
        b.seek(SeekFrom::Start(first * block))
            .map_err(Error::io("seeking the flash target"))?;
        let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        while left > 0 {
            let n = left.min(x.len() as u64) as usize;
            a.read_exact(&mut x[..n])
                .map_err(Error::io("reading the image"))?;
            b.read_exact(&mut y[..n])
                .map_err(Error::io("reading the flash target"))?;
            if x[..n] != y[..n] {
                return Ok(false);
            }
            left -= n as u64;
        }
    }
    Ok(true)
}
