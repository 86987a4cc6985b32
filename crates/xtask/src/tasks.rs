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

/// The one test command: `cargo test --workspace`, the VM scenarios, then the appliance image
/// (build, flash and boot test, OTA update test with power cuts, reproducibility) and the Yocto layer's checks. Every stage runs
/// even if an earlier one failed. Prints `N passed, N failed` last; fails if anything failed.
pub fn test(args: &VmArgs) -> Result<()> {
    // The host tests need their servers (dbus-daemon, rsyslog, aiosmtpd, tmux) before they run.
    crate::host::ensure_tools()?;
    let mut stages: Vec<(&str, usize, usize, Option<Error>)> = Vec::new();
    let (unit, unit_passed, unit_failed) = cargo_test()?;
    stages.push((
        "cargo test",
        unit_passed as usize,
        unit_failed as usize,
        unit.err(),
    ));

    let tally = boot(Mode::Test, args);
    let counts = tally.as_ref().map_or((0, 0), |t| (t.passed, t.failed));
    let vm = tally.and_then(|t| verdict(Mode::Test, &t));
    stages.push((
        "VM scenarios",
        counts.0 as usize,
        counts.1 as usize,
        vm.err(),
    ));

    let image = crate::image::build(
        &crate::cmd::workspace_root(),
        &crate::image::ImageArgs {
            out: None,
            board: "qemu".into(),
            signing_key: None,
            update_lock: false,
            version: None,
        },
    );
    match image {
        Ok(_) => {
            let boot = crate::image::vm::boot_test(&crate::image::vm::BootTestArgs {
                image: None,
                timeout: 300,
                verbose: args.verbose,
            });
            stages.push(stage_of("image boot test", boot));
            let update = crate::image::ota::update_test(&crate::image::ota::UpdateTestArgs {
                image: None,
                power_cuts: 20,
                seed: None,
                verbose: args.verbose,
            });
            stages.push(stage_of("image OTA update test", update));
            let repro = crate::image::repro::run(&crate::image::repro::ReproArgs { keep: false });
            stages.push(stage_of("image reproducibility", repro));
        }
        Err(e) => stages.push(("image build", 0, 1, Some(e))),
    }
    let layer = cmd::run(&mut std::process::Command::new(
        crate::cmd::workspace_root().join("recipes/lint.sh"),
    ));
    stages.push(match layer {
        Ok(()) => ("Yocto layer checks", 1, 0, None),
        Err(e) => ("Yocto layer checks", 0, 1, Some(e)),
    });

    let (mut passed, mut failed) = (0, 0);
    let mut first_error = None;
    for (name, p, f, error) in stages {
        println!("xtask: {name}: {p} passed, {f} failed");
        if let Some(e) = error {
            eprintln!("xtask: {name}: {e}");
            first_error.get_or_insert(e);
        }
        passed += p;
        failed += f;
    }
    println!("{passed} passed, {failed} failed");
    match first_error {
        Some(e) => Err(e),
        None if failed > 0 => Err(Error::TestsFailed(format!("{failed} failed"))),
        None => Ok(()),
    }
}

/// A stage that returns (passed, failed) counts.
fn stage_of(
    name: &'static str,
    result: Result<(usize, usize)>,
) -> (&'static str, usize, usize, Option<Error>) {
    match result {
        Ok((p, f)) => (
            name,
            p,
            f,
            (f > 0).then(|| Error::TestsFailed(format!("{name}: {f} failed"))),
        ),
        Err(e) => (name, 0, 1, Some(e)),
    }
}

/// Ends a task that counted checks: fails if any failed.
pub fn counted((passed, failed): (usize, usize)) -> Result<()> {
    if failed == 0 {
        Ok(())
    } else {
        Err(Error::TestsFailed(format!(
            "{passed} passed, {failed} failed"
        )))
    }
}

/// Builds the binaries, the kernel and the initramfs, and boots the VM.
fn boot(mode: Mode, args: &VmArgs) -> Result<Tally> {
    let started = Instant::now();
    let release = build_release()?;
    let kernel = kernel::build()?;
    let work = target_dir().join("vm");
    let initrd = initramfs::build(&release, &work)?;
    let data_disk = initramfs::data_disk(&work)?;
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
        data_disk: Some(&data_disk),
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

/// Release builds of the daemons and the VM binaries: the appliance image's build (same
/// profile, same flags), so `vm-test` and `image` share it. Returns the binaries' directory.
fn build_release() -> Result<std::path::PathBuf> {
    let root = crate::cmd::workspace_root();
    let dir = crate::image::build_binaries(&root)?;
    // keywarden-hwd's unit tests, built like the daemon, copied next to it under a fixed name.
    let json = cmd::stdout(crate::image::appliance_cargo(&root).args([
        "test",
        "--profile",
        "appliance",
        "--locked",
        "-p",
        "keywarden-hwd",
        "--lib",
        "--no-run",
        "--message-format=json",
    ]))?;
    let executable = test_executable(&json).ok_or_else(|| {
        Error::Setup("cargo test --no-run named no keywarden-hwd lib test executable".into())
    })?;
    let dest = dir.join(initramfs::HWD_UNIT_TESTS);
    std::fs::copy(&executable, &dest).map_err(Error::io(format!(
        "copy {} to {}",
        executable,
        dest.display()
    )))?;
    Ok(dir)
}

/// The `executable` of the test artifact in cargo's JSON messages.
fn test_executable(json: &str) -> Option<String> {
    json.lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""test":true"#))
        .find_map(|l| {
            let start = l.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
}

/// `cargo test --workspace`, its output passed through, with the `test result:` lines summed.
fn cargo_test() -> Result<(Result<()>, u32, u32)> {
    use std::io::{BufRead, BufReader};
    let mut command = cargo();
    command
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        cmd: cmd::display(&command),
        source,
    })?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(Error::io("read cargo test output"))?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count_before(rest, " passed");
                failed += count_before(rest, " failed");
            }
        }
    }
    let status = child.wait().map_err(Error::io("wait for cargo test"))?;
    let result = if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            cmd: cmd::display(&command),
            status,
        })
    };
    Ok((result, passed, failed))
}

/// The number just before `label` in a `test result:` line (`ok. 12 passed; 0 failed; ...`).
fn count_before(line: &str, label: &str) -> u32 {
    line.find(label)
        .and_then(|end| line[..end].rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn counts_come_from_cargo_test_result_lines() {
        let line =
            "ok. 81 passed; 2 failed; 2 ignored; 0 measured; 0 filtered out; finished in 14.53s";
        assert_eq!(count_before(line, " passed"), 81);
        assert_eq!(count_before(line, " failed"), 2);
        assert_eq!(count_before("FAILED. 0 passed; 1 failed;", " passed"), 0);
    }
}
