//! The site policy file (`/etc/keywarden/policy.toml`): lockout, timeouts, limits, cabinet kind,
//! time zone. Every key is optional; unknown keys are refused so a typo never silently keeps a
//! default.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::Settings;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    pin_attempts: Option<u32>,
    lockout_minutes: Option<u32>,
    pin_min_length: Option<u32>,
    pin_max_length: Option<u32>,
    session_timeout_seconds: Option<u32>,
    release_seconds: Option<u32>,
    dual_auth_window_seconds: Option<u32>,
    max_keys_out: Option<u32>,
    max_checkout_minutes: Option<u32>,
    random_return_slot: Option<bool>,
    slot_locks: Option<bool>,
    return_by: Option<String>,
    time_zone: Option<String>,
    /// `[notify]`: alerts and reports by e-mail and webhook (see `notify`).
    notify: Option<crate::notify::NotifyFile>,
    /// `[offsite]`: the audit copy shipped to a syslog collector (see `offsite`).
    offsite: Option<crate::offsite::OffsiteFile>,
}

/// The policy file, read.
#[derive(Debug, Clone)]
pub struct Config {
    /// Site settings for the core.
    pub settings: Settings,
    /// Time zone for schedules and holidays.
    pub time_zone: jiff::tz::TimeZone,
    /// Alerts and notifications; `None`: none are sent.
    pub notify: Option<crate::notify::NotifyConfig>,
    /// The offsite audit copy; `None`: not shipped.
    pub offsite: Option<crate::offsite::OffsiteConfig>,
}

impl Config {
    /// Defaults and the system time zone (UTC if it cannot be read).
    pub fn defaults() -> Config {
        Config {
            settings: Settings::default(),
            time_zone: jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
            notify: None,
            offsite: None,
        }
    }

    /// Read `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::defaults()),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Config::parse(&text).map_err(|message| Error::Config {
            path: path.to_owned(),
            message,
        })
    }

    /// Parse the file's text.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut s = Settings::default();
        let d = Settings::default();
        s.pin_attempts = range("pin-attempts", file.pin_attempts, d.pin_attempts, 1, 20)?;
        s.lockout_seconds = range(
            "lockout-minutes",
            file.lockout_minutes,
            d.lockout_seconds / 60,
            1,
            24 * 60,
        )? * 60;
        s.pin_min_length = range(
            "pin-min-length",
            file.pin_min_length,
            d.pin_min_length,
            4,
            12,
        )?;
        s.pin_max_length = range(
            "pin-max-length",
            file.pin_max_length,
            d.pin_max_length,
            4,
            16,
        )?;
        if s.pin_min_length > s.pin_max_length {
            return Err("pin-min-length is greater than pin-max-length".into());
        }
        s.session_timeout_seconds = range(
            "session-timeout-seconds",
            file.session_timeout_seconds,
            d.session_timeout_seconds,
            5,
            600,
        )?;
        s.release_seconds = range(
            "release-seconds",
            file.release_seconds,
            d.release_seconds,
            1,
            60,
        )?;
        s.dual_auth_window_seconds = range(
            "dual-auth-window-seconds",
            file.dual_auth_window_seconds,
            d.dual_auth_window_seconds,
            10,
            600,
        )?;
        s.max_keys_out = range("max-keys-out", file.max_keys_out, d.max_keys_out, 1, 100)?;
        s.max_checkout_minutes = range(
            "max-checkout-minutes",
            file.max_checkout_minutes,
            d.max_checkout_minutes,
            1,
            60 * 24 * 60,
        )?;
        s.random_return_slot = file.random_return_slot.unwrap_or(d.random_return_slot);
        s.slot_locks = file.slot_locks.unwrap_or(d.slot_locks);
        s.return_by = file.return_by.as_deref().map(time_of_day).transpose()?;
        let time_zone = match file.time_zone {
            None => Config::defaults().time_zone,
            // UTC needs no zone database (an appliance may ship without tzdata).
            Some(name) if matches!(name.as_str(), "UTC" | "Etc/UTC" | "UCT" | "Zulu") => {
                jiff::tz::TimeZone::UTC
            }
            Some(name) => {
                jiff::tz::TimeZone::get(&name).map_err(|e| format!("time-zone {name:?}: {e}"))?
            }
        };
        let notify = file
            .notify
            .map(crate::notify::NotifyConfig::from_file)
            .transpose()?;
        let offsite = file
            .offsite
            .map(crate::offsite::OffsiteConfig::from_file)
            .transpose()?;
        Ok(Config {
            settings: s,
            time_zone,
            notify,
            offsite,
        })
    }
}

impl Config {
    /// Without an `[offsite]` section in the policy file, the offsite copy's settings come from
    /// `path`, the file factory provisioning writes on the data partition
    /// (`/var/lib/keywarden/identity/offsite.toml`; only `[offsite]`); a missing file means no
    /// offsite copy. The policy file's own section, when there is one, wins.
    pub fn or_offsite_file(mut self, path: &Path) -> Result<Config> {
        if self.offsite.is_none() {
            self.offsite = crate::offsite::OffsiteConfig::load_section_file(path)?;
        }
        Ok(self)
    }
}

/// `HH:MM` (24-hour) as minutes after midnight.
pub(crate) fn time_of_day(text: &str) -> std::result::Result<u16, String> {
    let bad = || format!("return-by {text:?} is not a time of day HH:MM");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h < 24 && m < 60 && text.len() == 5 {
        Ok(h * 60 + m)
    } else {
        Err(bad())
    }
}

fn range(
    name: &str,
    value: Option<u32>,
    default: u32,
    min: u32,
    max: u32,
) -> std::result::Result<u32, String> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} = {v} is outside {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").expect("parse");
        assert_eq!(c.settings, Settings::default());
    }

    #[test]
    fn values_are_read_and_checked() {
        let c = Config::parse(
            "pin-attempts = 3\nlockout-minutes = 2\nslot-locks = false\ntime-zone = \"UTC\"\n",
        )
        .expect("parse");
        assert_eq!(c.settings.pin_attempts, 3);
        assert_eq!(c.settings.lockout_seconds, 120);
        assert!(!c.settings.slot_locks);
        let c = Config::parse("return-by = \"18:30\"").expect("parse");
        assert_eq!(c.settings.return_by, Some(18 * 60 + 30));
    }

    #[test]
    fn bad_files_get_specific_errors() {
        for (text, expected) in [
            ("pin-attempts = 0", "pin-attempts = 0 is outside 1..=20"),
            ("pin-atempts = 3", "unknown field `pin-atempts`"),
            ("pin-attempts = \"five\"", "invalid type"),
            ("time-zone = \"Mars/Olympus\"", "time-zone \"Mars/Olympus\""),
            (
                "return-by = \"25:00\"",
                "return-by \"25:00\" is not a time of day HH:MM",
            ),
            (
                "pin-min-length = 8\npin-max-length = 6",
                "pin-min-length is greater than pin-max-length",
            ),
        ] {
            let err = Config::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
