//! Alerts and notifications (e-mail over SMTP, webhooks over HTTPS) from a persistent outbox.
//! Placeholder: the notification work fills this in.

use serde::Deserialize;
use tokio::sync::watch;

use crate::daemon::Options;

/// The `[notify]` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyFile {}

/// The `[notify]` section, checked.
#[derive(Debug, Clone)]
pub struct NotifyConfig {}

impl NotifyConfig {
    /// Check the section.
    pub fn from_file(_file: NotifyFile) -> std::result::Result<NotifyConfig, String> {
        Ok(NotifyConfig {})
    }
}

/// Start the notifier: it runs on its own until the process ends. `head` carries the audit
/// chain's head seq after every commit.
pub fn spawn(
    _config: NotifyConfig,
    _options: &Options,
    _zone: jiff::tz::TimeZone,
    _head: watch::Receiver<u64>,
) {
}
