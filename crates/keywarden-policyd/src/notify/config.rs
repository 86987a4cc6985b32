//! The `[notify]` section of the policy file: who gets which alerts, and how to reach them.
//!
//! Secrets (the SMTP password, the webhook signing secret) live in files of their own, named
//! here, never in the policy file. Those files and the CA files are read when messages are
//! delivered, so a fixed file takes effect without a restart and a missing one is a delivery
//! error in the outbox (`last_error`), not a start failure.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::alerts::AlertKind;

/// The `[notify]` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyFile {
    /// Names the cabinet in every alert (and in the dedupe ids).
    cabinet: Option<String>,
    /// Local time of the daily keys-out list, `HH:MM`.
    daily_keys_out: Option<String>,
    /// An active user with no activity for this many days gets one `inactive-user` alert.
    inactive_days: Option<u32>,
    /// The SMTP relay (needed by `[[notify.email]]`).
    smtp: Option<SmtpFile>,
    /// E-mail recipients.
    #[serde(default)]
    email: Vec<EmailFile>,
    /// Webhooks.
    #[serde(default)]
    webhook: Vec<WebhookFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SmtpFile {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    from: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EmailFile {
    to: String,
    alerts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WebhookFile {
    url: String,
    alerts: Vec<String>,
    ca_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
}

/// How the SMTP connection is secured. There is no plain-text mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never optional); port 587 by default.
    StartTls,
    /// TLS from the first byte (SMTPS); port 465 by default.
    Tls,
}

/// The SMTP relay, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Host name (the certificate must name it) or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// STARTTLS or TLS.
    pub tls: SmtpTls,
    /// `From:` mailbox (`Name <addr>` or `addr`).
    pub from: String,
    /// SMTP AUTH user, with its password in `password_file`.
    pub username: Option<String>,
    /// File holding the SMTP password (first line).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

/// One e-mail recipient, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// Address.
    pub to: String,
    /// Alert kinds this recipient gets.
    pub alerts: BTreeSet<AlertKind>,
}

/// One webhook, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `https://` URL the JSON body is POSTed to.
    pub url: String,
    /// Alert kinds it gets.
    pub alerts: BTreeSet<AlertKind>,
    /// PEM CA certificate(s) to trust instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// File holding the HMAC-SHA256 key that signs the body (`X-Keywarden-Signature`).
    pub secret_file: Option<PathBuf>,
}

/// The `[notify]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Cabinet name: letters, digits, `.`, `_`, `-`.
    pub cabinet: String,
    /// Minutes after local midnight of the daily keys-out list.
    pub daily_keys_out: Option<u16>,
    /// Inactivity threshold in days.
    pub inactive_days: Option<u32>,
    /// SMTP relay.
    pub smtp: Option<SmtpConfig>,
    /// E-mail recipients.
    pub email: Vec<EmailConfig>,
    /// Webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

impl NotifyConfig {
    /// Check the section; errors name the key (`notify.webhook[0].url: ...`).
    pub fn from_file(file: NotifyFile) -> std::result::Result<NotifyConfig, String> {
        let cabinet = file
            .cabinet
            .ok_or("notify.cabinet is missing (it names the cabinet in every alert)")?;
        let name_ok = !cabinet.is_empty()
            && cabinet.len() <= 64
            && cabinet
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(format!(
                "notify.cabinet {cabinet:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
            ));
        }
        let daily_keys_out = file
            .daily_keys_out
            .as_deref()
            .map(|t| {
                crate::config::time_of_day(t)
                    .map_err(|_| format!("notify.daily-keys-out {t:?} is not a time of day HH:MM"))
            })
            .transpose()?;
        if let Some(days) = file.inactive_days {
            if !(1..=3650).contains(&days) {
                return Err(format!("notify.inactive-days = {days} is outside 1..=3650"));
            }
        }
        let smtp = file.smtp.map(smtp_config).transpose()?;
        let mut email = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, e) in file.email.into_iter().enumerate() {
            let at = format!("notify.email[{i}]");
            if smtp.is_none() {
                return Err(format!(
                    "{at}: e-mail recipients need a [notify.smtp] section"
                ));
            }
            e.to.parse::<lettre::Address>()
                .map_err(|err| format!("{at}.to {:?}: not an e-mail address ({err})", e.to))?;
            if !seen.insert(e.to.to_ascii_lowercase()) {
                return Err(format!("{at}.to {:?}: listed twice", e.to));
            }
            email.push(EmailConfig {
                alerts: alert_kinds(&at, &e.alerts)?,
                to: e.to,
            });
        }
        let mut webhooks = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, w) in file.webhook.into_iter().enumerate() {
            let at = format!("notify.webhook[{i}]");
            let rest = w
                .url
                .strip_prefix("https://")
                .ok_or_else(|| format!("{at}.url {:?}: must start with https://", w.url))?;
            if rest.is_empty() || rest.starts_with('/') || w.url.chars().any(char::is_whitespace) {
                return Err(format!("{at}.url {:?}: no host", w.url));
            }
            if !seen.insert(w.url.clone()) {
                return Err(format!("{at}.url {:?}: listed twice", w.url));
            }
            absolute(&format!("{at}.ca-file"), w.ca_file.as_ref())?;
            absolute(&format!("{at}.secret-file"), w.secret_file.as_ref())?;
            webhooks.push(WebhookConfig {
                alerts: alert_kinds(&at, &w.alerts)?,
                url: w.url,
                ca_file: w.ca_file,
                secret_file: w.secret_file,
            });
        }
        if email.is_empty() && webhooks.is_empty() {
            return Err("notify: no destination ([[notify.email]] or [[notify.webhook]])".into());
        }
        let wanted = |kind: AlertKind| {
            email.iter().any(|e| e.alerts.contains(&kind))
                || webhooks.iter().any(|w| w.alerts.contains(&kind))
        };
        if daily_keys_out.is_some() && !wanted(AlertKind::KeysOut) {
            return Err(
                "notify.daily-keys-out is set but no destination takes \"keys-out\"".into(),
            );
        }
        if file.inactive_days.is_some() && !wanted(AlertKind::InactiveUser) {
            return Err(
                "notify.inactive-days is set but no destination takes \"inactive-user\"".into(),
            );
        }
        Ok(NotifyConfig {
            cabinet,
            daily_keys_out,
            inactive_days: file.inactive_days,
            smtp,
            email,
            webhooks,
        })
    }
}

fn smtp_config(s: SmtpFile) -> std::result::Result<SmtpConfig, String> {
    if s.host.is_empty() || s.host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("notify.smtp.host {:?}: not a host name", s.host));
    }
    let tls = match s.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some(other) => {
            return Err(format!(
                "notify.smtp.tls {other:?}: use \"starttls\" or \"tls\""
            ))
        }
    };
    let port = match s.port {
        Some(0) => return Err("notify.smtp.port = 0 is outside 1..=65535".into()),
        Some(p) => p,
        None if tls == SmtpTls::Tls => 465,
        None => 587,
    };
    s.from
        .parse::<lettre::message::Mailbox>()
        .map_err(|err| format!("notify.smtp.from {:?}: not a mailbox ({err})", s.from))?;
    match (&s.username, &s.password_file) {
        (Some(_), None) => {
            return Err("notify.smtp.username needs notify.smtp.password-file".into())
        }
        (None, Some(_)) => {
            return Err("notify.smtp.password-file needs notify.smtp.username".into())
        }
        _ => {}
    }
    absolute("notify.smtp.password-file", s.password_file.as_ref())?;
    absolute("notify.smtp.ca-file", s.ca_file.as_ref())?;
    Ok(SmtpConfig {
        host: s.host,
        port,
        tls,
        from: s.from,
        username: s.username,
        password_file: s.password_file,
        ca_file: s.ca_file,
    })
}

fn absolute(key: &str, path: Option<&PathBuf>) -> std::result::Result<(), String> {
    match path {
        Some(p) if !p.is_absolute() => Err(format!(
            "{key} {:?}: must be an absolute path",
            p.display().to_string()
        )),
        _ => Ok(()),
    }
}

/// `["all"]` or alert kind names.
fn alert_kinds(at: &str, names: &[String]) -> std::result::Result<BTreeSet<AlertKind>, String> {
    if names.is_empty() {
        return Err(format!("{at}.alerts is empty"));
    }
    let mut kinds = BTreeSet::new();
    for name in names {
        if name == "all" {
            kinds.extend(AlertKind::ALL);
            continue;
        }
        let kind = AlertKind::parse(name).ok_or_else(|| {
            format!(
                "{at}.alerts: unknown alert {name:?} (known: all, {})",
                AlertKind::ALL.map(AlertKind::as_str).join(", ")
            )
        })?;
        kinds.insert(kind);
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    const GOOD: &str = r#"
[notify]
cabinet = "front-desk"
daily-keys-out = "07:30"
inactive-days = 90
[notify.smtp]
host = "mail.example.com"
from = "Keywarden <keywarden@example.com>"
username = "kw"
password-file = "/etc/keywarden/smtp-password"
[[notify.email]]
to = "security@example.com"
alerts = ["door-forced", "tamper", "keys-out"]
[[notify.webhook]]
url = "https://hooks.example.com/keywarden"
alerts = ["all"]
secret-file = "/etc/keywarden/webhook-secret"
"#;

    #[test]
    fn a_full_section_is_read() {
        let c = Config::parse(GOOD).expect("parse").notify.expect("notify");
        assert_eq!(c.cabinet, "front-desk");
        assert_eq!(c.daily_keys_out, Some(7 * 60 + 30));
        assert_eq!(c.inactive_days, Some(90));
        let smtp = c.smtp.expect("smtp");
        assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
        assert_eq!(c.email[0].alerts.len(), 3);
        assert!(c.email[0].alerts.contains(&AlertKind::KeysOut));
        assert_eq!(c.webhooks[0].alerts.len(), AlertKind::ALL.len());
        let tls = Config::parse(&GOOD.replace(
            "host = \"mail.example.com\"",
            "host = \"mail.example.com\"\ntls = \"tls\"",
        ))
        .expect("parse");
        let smtp = tls.notify.and_then(|n| n.smtp).expect("smtp");
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Tls));
        assert!(Config::parse("").expect("parse").notify.is_none());
    }

    #[test]
    fn bad_sections_get_specific_errors() {
        let webhook_only = "[notify]\ncabinet = \"c1\"\n[[notify.webhook]]\nurl = \"https://h/x\"\nalerts = [\"all\"]\n";
        for (from, to, expected) in [
            ("cabinet = \"front-desk\"\n", "", "notify.cabinet is missing"),
            ("\"front-desk\"", "\"front desk\"", "notify.cabinet \"front desk\": use 1 to 64"),
            ("\"07:30\"", "\"7h30\"", "notify.daily-keys-out \"7h30\" is not a time of day HH:MM"),
            ("inactive-days = 90", "inactive-days = 0", "notify.inactive-days = 0 is outside 1..=3650"),
            ("inactive-days = 90", "inactive-dayz = 9", "unknown field `inactive-dayz`"),
            ("username = \"kw\"\n", "", "notify.smtp.password-file needs notify.smtp.username"),
            ("password-file = \"/etc/keywarden/smtp-password\"\n", "", "notify.smtp.username needs notify.smtp.password-file"),
            ("\"/etc/keywarden/smtp-password\"", "\"smtp-password\"", "notify.smtp.password-file \"smtp-password\": must be an absolute path"),
            ("from = \"Keywarden <keywarden@example.com>\"", "from = \"nobody\"", "notify.smtp.from \"nobody\": not a mailbox"),
            ("host = \"mail.example.com\"", "host = \"mail.example.com\"\ntls = \"none\"", "notify.smtp.tls \"none\": use \"starttls\" or \"tls\""),
            ("host = \"mail.example.com\"", "host = \"mail.example.com\"\nport = 0", "notify.smtp.port = 0 is outside 1..=65535"),
            ("to = \"security@example.com\"", "to = \"security\"", "notify.email[0].to \"security\": not an e-mail address"),
            ("[\"door-forced\", \"tamper\", \"keys-out\"]", "[\"door-forced\", \"fire\"]", "notify.email[0].alerts: unknown alert \"fire\""),
            ("[\"door-forced\", \"tamper\", \"keys-out\"]", "[]", "notify.email[0].alerts is empty"),
            ("\"https://hooks.example.com/keywarden\"", "\"http://hooks.example.com/keywarden\"", "notify.webhook[0].url \"http://hooks.example.com/keywarden\": must start with https://"),
            ("\"https://hooks.example.com/keywarden\"", "\"https:///x\"", "notify.webhook[0].url \"https:///x\": no host"),
            ("secret-file = \"/etc/keywarden/webhook-secret\"", "secret-file = \"secret\"", "notify.webhook[0].secret-file \"secret\": must be an absolute path"),
            ("secret-file = \"/etc/keywarden/webhook-secret\"", "token = \"x\"", "unknown field `token`"),
            ("alerts = [\"all\"]", "alerts = [\"door-forced\"]", "notify.inactive-days is set but no destination takes \"inactive-user\""),
        ] {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from} not in the example");
            let err = Config::parse(&text).expect_err(&text);
            assert!(err.contains(expected), "{expected}\ngot: {err}");
        }
        let twice =
            format!("{GOOD}[[notify.email]]\nto = \"Security@example.com\"\nalerts = [\"all\"]\n");
        let err = Config::parse(&twice).expect_err("twice");
        assert!(
            err.contains("notify.email[1].to \"Security@example.com\": listed twice"),
            "{err}"
        );
        let no_smtp =
            format!("{webhook_only}[[notify.email]]\nto = \"a@b.c\"\nalerts = [\"all\"]\n");
        let err = Config::parse(&no_smtp).expect_err("no smtp");
        assert!(
            err.contains("notify.email[0]: e-mail recipients need a [notify.smtp] section"),
            "{err}"
        );
        let err = Config::parse("[notify]\ncabinet = \"c1\"\n").expect_err("nothing");
        assert!(err.contains("notify: no destination"), "{err}");
        let keys_out_unwanted = webhook_only
            .replace("alerts = [\"all\"]", "alerts = [\"tamper\"]")
            .replace(
                "cabinet = \"c1\"\n",
                "cabinet = \"c1\"\ndaily-keys-out = \"07:00\"\n",
            );
        let err = Config::parse(&keys_out_unwanted).expect_err("keys-out unwanted");
        assert!(
            err.contains("notify.daily-keys-out is set but no destination takes \"keys-out\""),
            "{err}"
        );
        assert!(Config::parse(webhook_only).is_ok());
    }
}
