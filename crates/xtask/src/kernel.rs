//! The test kernel: `tests/vm/build-kernel.sh` builds it from Debian's linux-source with the
//! fragment in `image/kernel/`, or returns the cached build; its last stdout line is the path.

use crate::cmd::{stdout, workspace_root};
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::process::Command;

/// Builds (or reuses) the kernel; returns the bzImage path.
pub fn build() -> Result<PathBuf> {
    crate::host::ensure_tools()?;
    let script = workspace_root().join("tests/vm/build-kernel.sh");
    let out = stdout(&mut Command::new(&script))?;
    let path = out.lines().last().map(PathBuf::from).unwrap_or_default();
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Setup(format!(
            "{} printed {:?} as the kernel, which is not a file",
            script.display(),
            path
        )))
    }
}
