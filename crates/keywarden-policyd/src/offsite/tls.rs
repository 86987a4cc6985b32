//! One delivery: a TLS connection to the collector carrying one batch, and the close handshake
//! that acknowledges it (see the module docs of [`super`] for what the acknowledgement means).

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::OffsiteConfig;
use crate::error::{Error, Result};

/// The TLS client configuration: the collector's CA, this cabinet's certificate and key, the
/// `ring` provider. Read from the files at every delivery, so a renewed certificate is used
/// without a restart.
pub fn client_config(config: &OffsiteConfig) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&config.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| credentials(&config.ca_file, e))?;
    }
    let chain = read_certs(&config.client_cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.client_key)
        .map_err(|e| credentials(&config.client_key, format!("no PEM private key: {e}")))?;
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| credentials(&config.client_cert, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            credentials(
                &config.client_key,
                format!("does not fit the client certificate: {e}"),
            )
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| credentials(path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| credentials(path, e))?;
    if certs.is_empty() {
        return Err(credentials(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn credentials(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::OffsiteCredentials {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// Connect, send `frames`, close our side (TLS close_notify, then TCP FIN) and wait for the
/// collector to close its side the same way: its close_notify followed by a clean end of the
/// TCP stream. Only that is an acknowledgement; anything else, or `timeout` passing, fails.
pub async fn deliver(
    config: &OffsiteConfig,
    tls: Arc<ClientConfig>,
    frames: &[u8],
    timeout: Duration,
) -> Result<()> {
    let fail = |problem: String| Error::OffsiteDelivery {
        address: config.address.clone(),
        problem,
    };
    let server_name = ServerName::try_from(config.server_name.clone())
        .map_err(|e| fail(format!("server name {:?}: {e}", config.server_name)))?;
    let exchange = async {
        let tcp = TcpStream::connect(&config.address)
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let mut stream = TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| fail(format!("TLS handshake: {}", describe(&e))))?;
        stream
            .write_all(frames)
            .await
            .map_err(|e| fail(ended("send", &e)))?;
        stream
            .shutdown()
            .await
            .map_err(|e| fail(ended("close", &e)))?;
        let mut buf = [0u8; 256];
        match stream.read(&mut buf).await {
            Ok(0) => {}
            Ok(_) => return Err(fail("unexpected data from the collector".to_owned())),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err(fail(
                    "no acknowledgement: the collector closed the connection without a TLS \
                     close_notify (it refused this cabinet's client certificate, stopped, or \
                     does not answer close_notify: with rsyslog use the ossl stream driver)"
                        .to_owned(),
                ))
            }
            Err(e) => return Err(fail(ended("acknowledgement", &e))),
        }
        // A collector that closes with our data unread resets the connection: no acknowledgement.
        let (mut tcp, _) = stream.into_inner();
        match tcp.read(&mut buf).await {
            Ok(0) => Ok(()),
            Ok(_) => Err(fail("unexpected data after the collector's close_notify".to_owned())),
            Err(e) => Err(fail(format!(
                "no acknowledgement: the connection was reset after the collector's close_notify ({e}): it closed with data unread"
            ))),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no acknowledgement within {} s", timeout.as_secs())))?
}

/// An error after the handshake. With TLS 1.3 the collector checks the client certificate after
/// the client's handshake is over, so a refused certificate shows here, as a session ended early.
fn ended(stage: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => format!(
            "no acknowledgement: the collector ended the session during {stage} ({}): it refused \
             this cabinet's client certificate, or it stopped",
            describe(e)
        ),
        _ => format!("no acknowledgement: {stage}: {}", describe(e)),
    }
}

/// An IO error from the TLS stream, with the TLS alert spelt out when there is one.
fn describe(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "the collector refused the TLS session (alert {alert:?}): is this cabinet's client \
             certificate valid and signed by a CA the collector trusts?"
        ),
        Some(tls) => format!("TLS: {tls}"),
        None => e.to_string(),
    }
}
