//! Boots the test VM under QEMU (TCG), streams its serial console line by line, echoes results
//! as they come, keeps the whole console in a log file, and kills QEMU at the deadline.

use crate::cmd::display;
use crate::console::{Line, Tally};
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the VM's `/init` runs (`keywarden.mode=` on the kernel command line).
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// The scenarios.
    Test,
    /// The benchmark.
    Bench,
    /// Devices and bus only.
    Smoke,
}

impl Mode {
    /// The `keywarden.mode=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Bench => "bench",
            Mode::Smoke => "smoke",
        }
    }
}

/// How to boot.
pub struct Boot<'a> {
    /// The bzImage.
    pub kernel: &'a Path,
    /// The `.cpio.gz`.
    pub initrd: &'a Path,
    /// A raw disk image for the data partition (`/dev/vda` in the VM).
    pub data_disk: Option<&'a Path>,
    /// What to run.
    pub mode: Mode,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Echo every console line, not just results.
    pub verbose: bool,
    /// Where to keep the whole console.
    pub log: &'a Path,
}

/// Lines of console kept to show when a run goes wrong.
const TAIL: usize = 40;

/// Boots the VM and returns what it reported. A run that ends without its final line (crash,
/// panic, timeout) has [`Tally::incomplete`] set; errors are for QEMU not starting at all.
pub fn run(boot: &Boot) -> Result<Tally> {
    let mut qemu = command(boot);
    let cmd = display(&qemu);
    let mut child = qemu.spawn().map_err(|source| Error::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    let lines = read_lines(&mut child)?;
    let mut log = std::fs::File::create(boot.log)
        .map_err(Error::io(format!("creating {}", boot.log.display())))?;
    let (mut tally, tail, timed_out) = follow(&lines, boot, &mut log);
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().map_err(Error::io("waiting for qemu"))?;
    let finished = tally.done.is_some() || tally.bench_done || tally.bench_failed;
    if timed_out || !finished {
        show_tail(&tail, boot.log);
        let why = if timed_out {
            format!("killed QEMU after {:?}", boot.timeout)
        } else {
            format!("QEMU exited ({status}) without a DONE line")
        };
        tally.incomplete = Some(why);
    }
    Ok(tally)
}

fn command(boot: &Boot) -> Command {
    let append = format!(
        "console=ttyS0 panic=-1 quiet keywarden.mode={}",
        boot.mode.as_str()
    );
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "512",
    ])
    .args(["-nographic", "-no-reboot", "-kernel"])
    .arg(boot.kernel)
    .arg("-initrd")
    .arg(boot.initrd)
    .args(["-append", &append]);
    if let Some(disk) = boot.data_disk {
        // cache=none: the guest's flushes (fsync) reach the host's disk, as on real storage.
        // A comma in the path is written twice (QEMU's option syntax).
        let file = disk.to_string_lossy().replace(',', ",,");
        qemu.arg("-drive")
            .arg(format!("file={file},if=virtio,format=raw,cache=none"));
    }
    qemu.stdin(Stdio::null()).stdout(Stdio::piped());
    qemu
}

/// A thread forwarding QEMU's stdout, one line per message; the channel closes at EOF.
fn read_lines(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Setup("qemu stdout not captured".into()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(bytes) = line else { break };
            if tx
                .send(String::from_utf8_lossy(&bytes).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

/// Consumes console lines until EOF or the deadline; returns the tally, the last lines, and
/// whether the deadline passed.
fn follow(
    lines: &mpsc::Receiver<String>,
    boot: &Boot,
    log: &mut impl Write,
) -> (Tally, VecDeque<String>, bool) {
    let deadline = Instant::now() + boot.timeout;
    let mut tally = Tally::default();
    let mut tail = VecDeque::with_capacity(TAIL);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let raw = match lines.recv_timeout(left) {
            Ok(raw) => raw,
            Err(mpsc::RecvTimeoutError::Timeout) => return (tally, tail, true),
            Err(mpsc::RecvTimeoutError::Disconnected) => return (tally, tail, false),
        };
        let _ = writeln!(log, "{}", raw.trim_end());
        let line = Line::parse(&raw);
        echo(&line, boot.verbose);
        tally.record(&line);
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(raw.trim_end().to_owned());
    }
}

/// Prints results always, progress lines (`kw-...`) always, everything else when verbose.
fn echo(line: &Line, verbose: bool) {
    match line {
        Line::Start(name) if verbose => println!("  ....  {name}"),
        Line::Pass(name, ms) => println!("  pass  {name} ({ms} ms)"),
        Line::Fail(name, reason) => println!("  FAIL  {name}: {reason}"),
        Line::Done(passed, failed) => println!("  vm: {passed} passed, {failed} failed"),
        Line::Bench(text) => println!("  bench {text}"),
        Line::Other(text) if verbose || text.starts_with("kw-") => println!("  | {text}"),
        _ => {}
    }
}

fn show_tail(tail: &VecDeque<String>, log: &Path) {
    eprintln!(
        "--- last {} console lines (all of it in {}) ---",
        tail.len(),
        log.display()
    );
    for line in tail {
        eprintln!("  | {line}");
    }
}
