//! The VM tasks (build, kernel, initramfs, boot, report) and the one test command.

use crate::cmd::{self, cargo, target_dir};
use crate::console::Tally;
use crate::error::{Error, Result};
use crate::qemu::{self, Mode};
use crate::{initramfs, kernel};
use std::time::{Duration, Instant};

/// Options of the VM tasks.
#[derive(clap::Args, Debug)]
pub struct VmArgs {
    /// Kill the VM after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Echo the whole serial console, not just results.
    #[arg(long, short)]
    verbose: bool,
}

/// Boots the VM in `mode`; fails if the run failed or did not finish.
pub fn vm(mode: Mode, args: &VmArgs) -> Result<()> {
    verdict(mode, &boot(mode, args)?)
}

/// `cargo test --workspace`, then the VM scenarios even if the former failed. Prints
/// `N passed, N failed` (the VM scenarios) last; fails if anything failed.
pub fn test(args: &VmArgs) -> Result<()> {
    let unit = cmd::run(cargo().args(["test", "--workspace"]));
    if let Err(e) = &unit {
        eprintln!("xtask: cargo test: {e}");
    }
    let tally = boot(Mode::Test, args);
    let counts = tally.as_ref().map_or((0, 0), |t| (t.passed, t.failed));
    let vm = tally.and_then(|t| verdict(Mode::Test, &t));
    if let Err(e) = &vm {
        eprintln!("xtask: VM scenarios: {e}");
    }
    println!("{} passed, {} failed", counts.0, counts.1);
    match (unit, vm) {
        (Ok(()), Ok(())) => Ok(()),
        (_, Err(e)) => Err(e),
        (Err(_), _) => Err(Error::TestsFailed("cargo test --workspace failed".into())),
    }
}

/// Builds the binaries, the kernel and the initramfs, and boots the VM.
fn boot(mode: Mode, args: &VmArgs) -> Result<Tally> {
    let started = Instant::now();
    build_release()?;
    let kernel = kernel::build()?;
    let work = target_dir().join("vm");
    let initrd = initramfs::build(&target_dir().join("release"), &work)?;
    println!(
        "xtask: kernel {}, initramfs {} (ready after {:.1?}); booting",
        kernel.display(),
        initrd.display(),
        started.elapsed()
    );
    let log = work.join(format!("console-{}.log", mode.as_str()));
    let boot = qemu::Boot {
        kernel: &kernel,
        initrd: &initrd,
        mode,
        timeout: Duration::from_secs(args.timeout),
        verbose: args.verbose,
        log: &log,
    };
    let booted = Instant::now();
    let tally = qemu::run(&boot)?;
    println!(
        "xtask: VM run took {:.1?} (console log {})",
        booted.elapsed(),
        log.display()
    );
    Ok(tally)
}

/// Whether a finished run counts as a success.
fn verdict(mode: Mode, tally: &Tally) -> Result<()> {
    if let Some(why) = &tally.incomplete {
        return Err(Error::TestsFailed(format!(
            "the VM run did not finish: {why}"
        )));
    }
    match mode {
        Mode::Bench if tally.bench_failed => Err(Error::TestsFailed("the benchmark failed".into())),
        Mode::Bench => Ok(()),
        _ if tally.failed > 0 || tally.done != Some((tally.passed, 0)) => Err(Error::TestsFailed(
            format!("{} passed, {} failed in the VM", tally.passed, tally.failed),
        )),
        _ => Ok(()),
    }
}

/// Release builds of the daemon and the VM binaries.
fn build_release() -> Result<()> {
    cmd::run(cargo().args([
        "build",
        "--release",
        "-p",
        "keywarden-hwd",
        "-p",
        "keywarden-vmtest",
        "--bins",
    ]))
}
