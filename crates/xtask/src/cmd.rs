//! Running programs with errors that say which command failed and how; and the paths xtask
//! works with.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The command line as a person would type it, for messages.
pub fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|source| Error::Spawn {
        cmd: display(cmd),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            cmd: display(cmd),
            status,
        })
    }
}

/// Runs `cmd` capturing stdout (stderr inherited); fails unless it exits 0.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd.stderr(Stdio::inherit()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Failed {
            cmd: display(cmd),
            status: out.status,
        })
    }
}

/// Runs `cmd` capturing its output, whatever its exit status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|source| Error::Spawn {
        cmd: display(cmd),
        source,
    })
}

/// `cargo`, as the one that runs xtask.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}
