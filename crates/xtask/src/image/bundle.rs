//! The OTA bundle of the root file system (format: ota/FORMAT.md, crate keywarden-bundle).

use super::{Build, ImageArgs};
use crate::error::{Error, Result};
use std::path::Path;

/// Signs the root file system into a bundle.
pub fn create(_build: &Build, _rootfs: &Path, _out: &Path, _args: &ImageArgs) -> Result<()> {
    Err(Error::Setup(
        "the bundle step arrives with keywarden-bundle".into(),
    ))
}
