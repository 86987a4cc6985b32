//! The `[offsite]` section of the policy file.

use std::path::PathBuf;
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
