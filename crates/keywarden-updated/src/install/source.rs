//! Where the bytes of a bundle come from: a file, or a ranged HTTPS read (`remote`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::{Error, Result};

/// The bytes of one bundle, readable from any offset (a resumed install or a skipped run of
/// reused chunks starts a new read). Blocking: the installer runs on a blocking thread.
pub trait BundleSource: Send {
    /// The bundle's bytes from `offset` to its end. A source with a known length (a file, a TUF
    /// target) must never yield more than that length in all (the "endless data" defence).
    fn open_at(&mut self, offset: u64) -> Result<Box<dyn Read + Send>>;
    /// The bundle's length if known before reading (a file's size, a TUF target's length).
    fn len(&self) -> Option<u64>;
    /// Whether the bundle is known to be empty (an empty source is never a bundle).
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
    /// For messages: the file path or URL.
    fn describe(&self) -> String;
}

/// A bundle in a local file (`keywarden update install FILE`, a USB stick at the factory).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// Opens nothing yet: checks the file exists and takes its length.
    pub fn new(path: impl Into<PathBuf>) -> Result<FileSource> {
        let path = path.into();
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io("reading", &path, e))?
            .len();
        Ok(FileSource { path, len })
    }
}

impl BundleSource for FileSource {
    fn open_at(&mut self, offset: u64) -> Result<Box<dyn Read + Send>> {
        let mut file = File::open(&self.path).map_err(|e| Error::io("opening", &self.path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seeking", &self.path, e))?;
        Ok(Box::new(file.take(self.len.saturating_sub(offset))))
    }

    fn len(&self) -> Option<u64> {
        Some(self.len)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
