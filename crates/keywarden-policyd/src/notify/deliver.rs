//! The two ways out, blocking (they run on the notifier's blocking thread): SMTP through lettre
//! and HTTPS POST through ureq, both over rustls with the ring provider. Each call reads the
//! files it needs (password, secret, CA) so a fixed file works without a restart; every
//! failure is a message for the outbox's `last_error`, naming what failed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use sha2::Sha256;

use super::alerts::Payload;
use super::config::{SmtpConfig, SmtpTls, WebhookConfig};

/// Connect, TLS, SMTP dialogue or HTTP exchange: each gives up after this long.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(20);

/// An error and its sources, `: `-joined (lettre and ureq put the useful part in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn read_secret(what: &str, path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim_end().to_owned();
    if secret.is_empty() {
        return Err(format!("{what} {}: empty", path.display()));
    }
    Ok(secret)
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// For the outbox's `last_error`.
    pub message: String,
    /// Whether the server could not be used at all (connection, TLS, local files), so other
    /// messages for it need not be tried in the same pass; false when it answered about this
    /// one message (an SMTP reply refusing a recipient).
    pub server_down: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            server_down: true,
        }
    }
}

/// Send one e-mail. `message_id` is the row's stable id (the same on a resend, so a mail
/// client can drop a duplicate); `created_at` dates it.
pub fn send_email(
    smtp: &SmtpConfig,
    to: &str,
    message_id: &str,
    created_at: i64,
    payload: &Payload,
) -> Result<(), Failure> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", smtp.from))?;
    let to: Mailbox = to.parse().map_err(|e| Failure {
        message: format!("to {to:?}: {e}"),
        server_down: false,
    })?;
    let domain = from.email.domain().to_owned();
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(created_at.max(0).unsigned_abs());
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(payload.title.clone())
        .message_id(Some(format!("<{message_id}@{domain}>")))
        .date(date)
        .header(ContentType::TEXT_PLAIN)
        .body(payload.text.clone())
        .map_err(|e| Failure {
            message: format!("building the message: {e}"),
            server_down: false,
        })?;

    let mut tls = TlsParameters::builder(smtp.host.clone());
    if let Some(ca) = &smtp.ca_file {
        let cert = Certificate::from_pem(&read_pem("smtp ca-file", ca)?)
            .map_err(|e| format!("smtp ca-file {}: {}", ca.display(), chain(&e)))?;
        tls = tls
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    } else {
        tls = tls.certificate_store(CertificateStore::WebpkiRoots);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| format!("smtp TLS setup: {}", chain(&e)))?;
    let tls = match smtp.tls {
        SmtpTls::StartTls => Tls::Required(tls),
        SmtpTls::Tls => Tls::Wrapper(tls),
    };
    let mut transport = SmtpTransport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(NETWORK_TIMEOUT));
    if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
        let password = read_secret("smtp password-file", file)?;
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    transport
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| Failure {
            message: format!("smtp {}:{}: {}", smtp.host, smtp.port, chain(&e)),
            server_down: !(e.is_permanent() || e.is_transient()),
        })
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> Result<String, String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .map_err(|e| format!("webhook secret: {e}"))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// POST one webhook body. 2xx is delivered; anything else (redirects included) is a failure.
pub fn post_webhook(hook: &WebhookConfig, id: &str, body: &str) -> Result<(), String> {
    use ureq::tls::{Certificate as UCert, RootCerts, TlsConfig};
    let roots = match &hook.ca_file {
        Some(ca) => {
            let pem = read_pem("webhook ca-file", ca)?;
            let certs: Vec<UCert<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("webhook ca-file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("webhook ca-file {}: no certificate", ca.display()));
            }
            RootCerts::new_with_certs(&certs)
        }
        None => RootCerts::WebPki,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .https_only(true)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(NETWORK_TIMEOUT))
        .user_agent("keywarden-policyd")
        .build()
        .into();
    let mut request = agent
        .post(hook.url.as_str())
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", id);
    if let Some(file) = &hook.secret_file {
        let secret = read_secret("webhook secret-file", file)?;
        request = request.header(
            "X-Keywarden-Signature",
            signature(secret.as_bytes(), body.as_bytes())?,
        );
    }
    let response = request
        .send(body)
        .map_err(|e| format!("webhook {}: {}", hook.url, chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook {}: HTTP {status}", hook.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?").as_deref(),
            Ok("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }
}
