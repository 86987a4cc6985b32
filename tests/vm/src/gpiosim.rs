//! gpio-sim chips built through configfs, and their lines through sysfs.
//!
//! A chip is `/sys/kernel/config/gpio-sim/<chip>/bank0/{num_lines,label,lineN/name}` plus
//! `live`=1; the kernel then names it in `dev_name` (platform device) and `bank0/chip_name`
//! (`gpiochipN`). Each line appears as `/sys/devices/platform/<dev>/<chip>/sim_gpioN/` with
//! `value` (what a consumer drives, or the pull when nobody drives it) and `pull` (`pull-up` /
//! `pull-down`: the simulated outside world driving an input).

use crate::{Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// Every simulated line by name: its sysfs directory.
#[derive(Debug, Default)]
pub struct SimLines {
    lines: HashMap<String, PathBuf>,
    chips: Vec<String>,
}

impl SimLines {
    /// Creates and enables one chip per `(name, lines)`.
    pub fn create(chips: &[(&str, &[&str])]) -> Result<Self> {
        let mut all = SimLines::default();
        for (chip, names) in chips {
            let (dev_name, chip_name) = create_chip(chip, names)?;
            let dir = Path::new("/sys/devices/platform")
                .join(&dev_name)
                .join(&chip_name);
            for (offset, name) in names.iter().enumerate() {
                all.lines
                    .insert((*name).to_owned(), dir.join(format!("sim_gpio{offset}")));
            }
            all.chips.push(chip_name);
        }
        Ok(all)
    }

    /// The `gpiochipN` names of the created chips.
    pub fn chip_names(&self) -> &[String] {
        &self.chips
    }

    fn dir(&self, line: &str) -> Result<&Path> {
        self.lines
            .get(line)
            .map(PathBuf::as_path)
            .ok_or_else(|| format!("no simulated line named {line:?}"))
    }

    /// The line's current value (0 or 1).
    pub fn value(&self, line: &str) -> Result<u8> {
        let path = self.dir(line)?.join("value");
        let text = fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
        match text.trim() {
            "0" => Ok(0),
            "1" => Ok(1),
            other => Err(format!("{}: unexpected value {other:?}", path.display())),
        }
    }

    /// The path of the line's `value` file (for busy-polling in the benchmark).
    pub fn value_path(&self, line: &str) -> Result<PathBuf> {
        Ok(self.dir(line)?.join("value"))
    }

    /// Pulls the line up (`true`) or down: the outside world drives an input.
    pub fn pull(&self, line: &str, up: bool) -> Result<()> {
        let path = self.dir(line)?.join("pull");
        let text = if up { "pull-up" } else { "pull-down" };
        fs::write(&path, text).context(format!("writing {text} to {}", path.display()))
    }

    /// Waits until the line reads `want`, polling every millisecond.
    pub async fn wait_value(&self, line: &str, want: u8, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let value = self.value(line)?;
            if value == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "line {line} still reads {value} after {within:?} (wanted {want})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Checks that the line reads `want` now.
    pub fn expect_value(&self, line: &str, want: u8, when: &str) -> Result<()> {
        match self.value(line)? {
            v if v == want => Ok(()),
            v => Err(format!("line {line} reads {v} {when}, expected {want}")),
        }
    }
}

/// Each line that read 1, with when it was first seen.
pub type Highs = Vec<(String, Instant)>;

/// A thread re-reading some lines' `value` files, recording each line the first time it reads
/// 1: to prove a lock never opened during a scenario, or to timestamp the moment one did.
pub struct Sampler {
    how: Sampling,
    armed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Highs>>>,
}

/// How a [`Sampler`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Sweep every millisecond until stopped; record every line that reads 1.
    Watch,
    /// Spin without pause (a whole vCPU) and end at the first 1, or after 10 s: for latency.
    FirstHigh,
}

impl Sampler {
    /// Starts sampling `names` (line names known to `lines`).
    pub fn start(lines: &SimLines, names: &[&str], how: Sampling) -> Result<Self> {
        let paths = names
            .iter()
            .map(|n| Ok(((*n).to_owned(), lines.value_path(n)?)))
            .collect::<Result<Vec<_>>>()?;
        let armed = Arc::new(AtomicBool::new(true));
        let flag = armed.clone();
        let thread = std::thread::Builder::new()
            .name("line-sampler".into())
            .spawn(move || sample(&paths, &flag, how))
            .context("starting the line sampler")?;
        Ok(Sampler {
            how,
            armed,
            thread: Some(thread),
        })
    }

    /// Stops (at once for [`Sampling::Watch`]; a [`Sampling::FirstHigh`] sampler first gets to
    /// finish unless `abort`) and returns each line that read 1, with when it was first seen.
    pub fn finish(mut self, abort: bool) -> Result<Highs> {
        self.stop(abort)
    }

    fn stop(&mut self, abort: bool) -> Result<Highs> {
        if abort || self.how == Sampling::Watch {
            self.armed.store(false, Ordering::Relaxed);
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "line sampler panicked".to_owned())?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.stop(true);
    }
}

fn sample(paths: &[(String, PathBuf)], armed: &AtomicBool, how: Sampling) -> Result<Highs> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Highs = Vec::new();
    loop {
        for (name, path) in paths {
            let text = fs::read(path).context(format!("reading {}", path.display()))?;
            if text.first() == Some(&b'1') && !seen.iter().any(|(n, _)| n == name) {
                seen.push((name.clone(), Instant::now()));
                if how == Sampling::FirstHigh {
                    return Ok(seen);
                }
            }
        }
        match how {
            Sampling::Watch if !armed.load(Ordering::Relaxed) => return Ok(seen),
            Sampling::Watch => std::thread::sleep(Duration::from_millis(1)),
            Sampling::FirstHigh if !armed.load(Ordering::Relaxed) || Instant::now() > deadline => {
                return Ok(seen)
            }
            Sampling::FirstHigh => {}
        }
    }
}

/// Creates one chip with one bank; returns `(dev_name, chip_name)`.
fn create_chip(chip: &str, names: &[&str]) -> Result<(String, String)> {
    let root = Path::new(CONFIGFS).join(chip);
    let bank = root.join("bank0");
    fs::create_dir(&root).context(format!("creating {}", root.display()))?;
    fs::create_dir(&bank).context(format!("creating {}", bank.display()))?;
    write(&bank.join("num_lines"), &names.len().to_string())?;
    write(&bank.join("label"), chip)?;
    for (offset, name) in names.iter().enumerate() {
        let line = bank.join(format!("line{offset}"));
        fs::create_dir(&line).context(format!("creating {}", line.display()))?;
        write(&line.join("name"), name)?;
    }
    write(&root.join("live"), "1")?;
    Ok((
        read(&root.join("dev_name"))?,
        read(&bank.join("chip_name"))?,
    ))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).context(format!("writing {text:?} to {}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).context(format!("reading {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Simulated wiring of lock feedback switches: a thread polls each lock output's `value` (what
/// the daemon drives) and sets the matching feedback input's `pull` to follow it, as a lock's
/// position switch would. A pair can be cut ([`Wiring::cut`]): its feedback then stays where it
/// is, like an unwired switch.
pub struct Wiring {
    cut: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    armed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the wiring thread looks at the lock outputs.
const WIRING_PERIOD: Duration = Duration::from_millis(2);

impl Wiring {
    /// Starts following `pairs` of (lock output, feedback input) line names.
    pub fn start(lines: &SimLines, pairs: &[(&str, &str)]) -> Result<Self> {
        let pairs = pairs
            .iter()
            .map(|(lock, fb)| {
                Ok((
                    (*lock).to_owned(),
                    lines.value_path(lock)?,
                    lines.dir(fb)?.join("pull"),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let cut: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
        let armed = Arc::new(AtomicBool::new(true));
        let (c, a) = (cut.clone(), armed.clone());
        let thread = std::thread::Builder::new()
            .name("feedback-wiring".into())
            .spawn(move || follow(&pairs, &c, &a))
            .context("starting the feedback wiring thread")?;
        Ok(Wiring {
            cut,
            armed,
            thread: Some(thread),
        })
    }

    /// Cuts (`true`) or reconnects the feedback wire of lock output `lock`.
    pub fn cut(&self, lock: &str, cut: bool) {
        let mut set = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        if cut {
            set.insert(lock.to_owned());
        } else {
            set.remove(lock);
        }
    }
}

impl Drop for Wiring {
    fn drop(&mut self) {
        self.armed.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    pairs: &[(String, PathBuf, PathBuf)],
    cut: &std::sync::Mutex<std::collections::BTreeSet<String>>,
    armed: &AtomicBool,
) {
    // What each feedback was last pulled to; None = not yet (pull it once at start).
    let mut pulled: Vec<Option<bool>> = vec![None; pairs.len()];
    while armed.load(Ordering::Relaxed) {
        for (i, (lock, value, pull)) in pairs.iter().enumerate() {
            if cut.lock().unwrap_or_else(|p| p.into_inner()).contains(lock) {
                continue;
            }
            let Ok(text) = fs::read(value) else { continue };
            let high = text.first() == Some(&b'1');
            if pulled[i] != Some(high) {
                let level = if high { "pull-up" } else { "pull-down" };
                if let Err(e) = fs::write(pull, level) {
                    eprintln!(
                        "kw-vm: feedback wiring: writing {level} to {}: {e}",
                        pull.display()
                    );
                    continue;
                }
                pulled[i] = Some(high);
            }
        }
        std::thread::sleep(WIRING_PERIOD);
    }
}
