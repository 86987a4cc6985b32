//! The arguments of `Install` and `MarkGood`/`MarkBad`, parsed strictly.

use std::path::PathBuf;

use super::Refusal;
use crate::boot::Slot;

/// Where an install takes its bundle from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The bundle the update repository (TUF) offers for this board.
    Repository,
    /// A bundle at an `https://` URL (the device's CA bundle decides whom to trust).
    Url(String),
    /// A bundle file on the device (a USB stick, a file copied by support).
    File(PathBuf),
}

impl Source {
    /// `""` = the repository, `https://...` = a URL, an absolute path = a file. Anything else
    /// (plain `http://`, a relative path, control characters) is refused.
    pub fn parse(text: &str) -> Result<Source, Refusal> {
        if text.is_empty() {
            return Ok(Source::Repository);
        }
        if text.len() > 4096 || text.chars().any(char::is_control) {
            return Err(Refusal::InvalidArgument(
                "the source must be at most 4096 characters without control characters".into(),
            ));
        }
        if let Some(rest) = text.strip_prefix("https://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(Refusal::InvalidArgument(format!(
                    "{text:?} is not a URL with a host"
                )));
            }
            return Ok(Source::Url(text.to_owned()));
        }
        if text.contains("://") {
            return Err(Refusal::InvalidArgument(format!(
                "{text:?}: only https:// URLs are accepted (bundles never travel unencrypted)"
            )));
        }
        if text.starts_with('/') {
            return Ok(Source::File(PathBuf::from(text)));
        }
        Err(Refusal::InvalidArgument(format!(
            "{text:?} is neither \"\" (the repository), an https:// URL nor an absolute path"
        )))
    }

    /// For messages and logs.
    pub fn describe(&self) -> String {
        match self {
            Source::Repository => "the update repository".into(),
            Source::Url(url) => url.clone(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// A slot as `MarkGood`/`MarkBad` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRef {
    /// The slot the system booted from.
    Booted,
    /// The one it did not.
    Other,
    /// `A` or `B`.
    Named(Slot),
}

impl SlotRef {
    /// `booted`, `other`, `A` or `B`.
    pub fn parse(text: &str) -> Result<SlotRef, Refusal> {
        match text {
            "booted" => Ok(SlotRef::Booted),
            "other" => Ok(SlotRef::Other),
            "A" => Ok(SlotRef::Named(Slot::A)),
            "B" => Ok(SlotRef::Named(Slot::B)),
            _ => Err(Refusal::InvalidArgument(format!(
                "unknown slot {text:?}: \"booted\", \"other\", \"A\" or \"B\""
            ))),
        }
    }

    /// The slot this names on a system booted from `booted`.
    pub fn resolve(self, booted: Slot) -> Slot {
        match self {
            SlotRef::Booted => booted,
            SlotRef::Other => booted.other(),
            SlotRef::Named(slot) => slot,
        }
    }
}
