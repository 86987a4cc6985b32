//! The `[offsite]` section of the policy file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The `[offsite]` section as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffsiteFile {
    /// The collector, `host:port` (RFC 5425's port is 6514).
    address: Option<String>,
    /// The name the collector's certificate must carry; default: `address`'s host.
    server_name: Option<String>,
    /// PEM file with the CA certificate(s) the collector's certificate must chain to.
    ca_file: Option<PathBuf>,
    /// PEM file with this cabinet's client certificate (and its chain).
    client_cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    client_key: Option<PathBuf>,
    /// The syslog HOSTNAME: the cabinet's name, which names its file on the collector.
    cabinet: Option<String>,
    /// Most records per connection.
    batch_size: Option<u32>,
    /// A heartbeat after this long without sending anything.
    heartbeat_seconds: Option<u32>,
    /// Longest wait for a connection, the handshake and the acknowledgement.
    timeout_seconds: Option<u32>,
}

/// The `[offsite]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsiteConfig {
    /// `host:port`.
    pub address: String,
    /// The name the collector's certificate must carry.
    pub server_name: String,
    /// CA certificate(s), PEM.
    pub ca_file: PathBuf,
    /// Client certificate chain, PEM.
    pub client_cert: PathBuf,
    /// Client private key, PEM.
    pub client_key: PathBuf,
    /// The syslog HOSTNAME.
    pub cabinet: String,
    /// Most records per connection.
    pub batch_size: u32,
    /// Idle time before a heartbeat.
    pub heartbeat: Duration,
    /// Time limit of one delivery (connect, handshake, send, acknowledgement).
    pub timeout: Duration,
}

/// Default `batch-size`.
pub const DEFAULT_BATCH_SIZE: u32 = 256;
/// Default `heartbeat-seconds`.
pub const DEFAULT_HEARTBEAT_SECONDS: u32 = 60;
/// Default `timeout-seconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;

impl OffsiteConfig {
    /// Check the section; errors name the key (`offsite.batch-size = 0 is outside 1..=10000`).
    pub fn from_file(file: OffsiteFile) -> Result<OffsiteConfig, String> {
        let address = required("address", file.address)?;
        let (host, port) = address
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
            .ok_or_else(|| format!("offsite.address {address:?} is not host:port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let _ = port;
        let server_name = file.server_name.unwrap_or(host);
        rustls_pki_types::ServerName::try_from(server_name.as_str()).map_err(|_| {
            format!("offsite.server-name {server_name:?} is not a DNS name or IP address")
        })?;
        let cabinet = required("cabinet", file.cabinet)?;
        let valid = cabinet.len() <= 64
            && !cabinet.starts_with('.')
            && cabinet
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(format!(
                "offsite.cabinet {cabinet:?} must be 1 to 64 of A-Z a-z 0-9 . _ - (not starting with .): it is the syslog HOSTNAME and the collector's file name"
            ));
        }
        Ok(OffsiteConfig {
            address,
            server_name,
            ca_file: required_path("ca-file", file.ca_file)?,
            client_cert: required_path("client-cert", file.client_cert)?,
            client_key: required_path("client-key", file.client_key)?,
            cabinet,
            batch_size: range("batch-size", file.batch_size, DEFAULT_BATCH_SIZE, 1, 10_000)?,
            heartbeat: Duration::from_secs(
                range(
                    "heartbeat-seconds",
                    file.heartbeat_seconds,
                    DEFAULT_HEARTBEAT_SECONDS,
                    1,
                    3600,
                )?
                .into(),
            ),
            timeout: Duration::from_secs(
                range(
                    "timeout-seconds",
                    file.timeout_seconds,
                    DEFAULT_TIMEOUT_SECONDS,
                    1,
                    600,
                )?
                .into(),
            ),
        })
    }
}

/// A file holding only the `[offsite]` section: what `keywarden factory provision` writes to
/// `<data>/identity/offsite.toml` (the policy file is on the read-only root, the collector is
/// per device).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsiteOnlyFile {
    offsite: OffsiteFile,
}

impl OffsiteConfig {
    /// Parses the text of a file with only an `[offsite]` section (which must be there).
    pub fn parse_section_file(text: &str) -> Result<OffsiteConfig, String> {
        let file: OffsiteOnlyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        OffsiteConfig::from_file(file.offsite)
    }

    /// Reads such a file; `Ok(None)` if there is none.
    pub fn load_section_file(path: &Path) -> crate::error::Result<Option<OffsiteConfig>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(crate::error::Error::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        OffsiteConfig::parse_section_file(&text)
            .map(Some)
            .map_err(|message| crate::error::Error::OffsiteConfig {
                path: path.to_owned(),
                message,
            })
    }
}

fn required(name: &str, value: Option<String>) -> Result<String, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("offsite.{name} is required")),
    }
}

fn required_path(name: &str, value: Option<PathBuf>) -> Result<PathBuf, String> {
    match value {
        Some(p) if p.is_absolute() => Ok(p),
        Some(p) => Err(format!(
            "offsite.{name} {:?} must be an absolute path",
            p.display().to_string()
        )),
        None => Err(format!("offsite.{name} is required")),
    }
}

fn range(name: &str, value: Option<u32>, default: u32, min: u32, max: u32) -> Result<u32, String> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("offsite.{name} = {v} is outside {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const GOOD: &str = r#"
[offsite]
address = "collector.example.org:6514"
ca-file = "/etc/keywarden/offsite/ca.pem"
client-cert = "/var/lib/keywarden/identity/client.pem"
client-key = "/var/lib/keywarden/identity/client.key"
cabinet = "cabinet-1"
"#;

    #[test]
    fn a_minimal_section_gets_defaults() {
        let c = Config::parse(GOOD)
            .expect("parse")
            .offsite
            .expect("offsite");
        assert_eq!(c.server_name, "collector.example.org");
        assert_eq!(c.cabinet, "cabinet-1");
        assert_eq!(c.batch_size, super::DEFAULT_BATCH_SIZE);
        assert_eq!(c.heartbeat.as_secs(), 60);
        assert_eq!(c.timeout.as_secs(), 30);
        assert!(Config::parse("").expect("parse").offsite.is_none());
    }

    #[test]
    fn the_policy_file_section_wins_over_provisioning_s_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("offsite.toml");
        // No file: no offsite copy.
        let c = Config::parse("").expect("parse").or_offsite_file(&file);
        assert!(c.expect("no file is fine").offsite.is_none());
        // The file, when the policy file has no [offsite].
        std::fs::write(&file, GOOD.replace("cabinet-1", "SN-0042")).expect("write");
        let c = Config::parse("pin-attempts = 3").expect("parse");
        let offsite = c.or_offsite_file(&file).expect("file").offsite;
        assert_eq!(offsite.expect("offsite").cabinet, "SN-0042");
        // The policy file's own section wins.
        let c = Config::parse(GOOD).expect("parse").or_offsite_file(&file);
        assert_eq!(
            c.expect("ok").offsite.expect("offsite").cabinet,
            "cabinet-1"
        );
        // A bad file names itself and the field; so does one without the section.
        std::fs::write(&file, GOOD.replace("cabinet = \"cabinet-1\"", "")).expect("write");
        let err = Config::parse("").expect("parse").or_offsite_file(&file);
        let err = err.expect_err("bad file").to_string();
        assert!(
            err.contains("offsite.toml") && err.contains("offsite.cabinet is required"),
            "{err}"
        );
        std::fs::write(&file, "batch-size = 3\n").expect("write");
        let err = Config::parse("").expect("parse").or_offsite_file(&file);
        let err = err.expect_err("no section").to_string();
        assert!(err.contains("unknown field `batch-size`"), "{err}");
    }

    #[test]
    fn bad_sections_get_specific_errors() {
        let with = |extra: &str| format!("{GOOD}{extra}\n");
        let replace = |from: &str, to: &str| GOOD.replace(from, to);
        for (text, expected) in [
            (
                with("batch-size = 0"),
                "offsite.batch-size = 0 is outside 1..=10000",
            ),
            (
                with("heartbeat-seconds = 7200"),
                "offsite.heartbeat-seconds = 7200 is outside 1..=3600",
            ),
            (
                with("timeout-seconds = 0"),
                "offsite.timeout-seconds = 0 is outside 1..=600",
            ),
            (with("port = 6514"), "unknown field `port`"),
            (
                replace("collector.example.org:6514", "collector"),
                "offsite.address \"collector\" is not host:port",
            ),
            (
                replace("collector.example.org:6514", "collector:0"),
                "is not host:port",
            ),
            (
                replace("cabinet = \"cabinet-1\"", ""),
                "offsite.cabinet is required",
            ),
            (
                replace("cabinet-1", "cab 1"),
                "offsite.cabinet \"cab 1\" must be",
            ),
            (
                replace("cabinet-1", "../x"),
                "offsite.cabinet \"../x\" must be",
            ),
            (
                replace("\"/etc/keywarden/offsite/ca.pem\"", "\"ca.pem\""),
                "offsite.ca-file \"ca.pem\" must be an absolute path",
            ),
            (
                replace(
                    "client-key = \"/var/lib/keywarden/identity/client.key\"",
                    "",
                ),
                "offsite.client-key is required",
            ),
            (
                with("server-name = \"not a name!\""),
                "offsite.server-name \"not a name!\" is not a DNS name",
            ),
        ] {
            let err = Config::parse(&text).expect_err(&text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
