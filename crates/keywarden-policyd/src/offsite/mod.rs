//! The offsite audit copy: every audit record and signed checkpoint shipped to a syslog collector
//! (RFC 5424 over TLS, RFC 5425). Placeholder: the offsite work fills this in.

use serde::Deserialize;
use tokio::sync::watch;

use crate::daemon::Options;

/// The `[offsite]` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffsiteFile {}

/// The `[offsite]` section, checked.
#[derive(Debug, Clone)]
pub struct OffsiteConfig {}

impl OffsiteConfig {
    /// Check the section.
    pub fn from_file(_file: OffsiteFile) -> std::result::Result<OffsiteConfig, String> {
        Ok(OffsiteConfig {})
    }
}

/// Start the shipper: it runs on its own until the process ends. `head` carries the audit
/// chain's head seq after every commit.
pub fn spawn(_config: OffsiteConfig, _options: &Options, _head: watch::Receiver<u64>) {}
