//! The updater's one HTTPS client (ureq, rustls with the `ring` provider, the fleet's CA only)
//! and [`HttpSource`], a bundle read with `Range: bytes=OFFSET-` requests.
//!
//! Every error names the URL and what failed: an HTTP status, a TLS failure, a timeout, a server
//! that ignored the range. The CA bundle is the only trust anchor: the public web PKI is not
//! trusted, plain `http://` is refused, redirects are not followed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::install::BundleSource;
use crate::{Error, Result};

/// Where the HTTPS client's trust and patience come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    /// PEM file with the CA certificate(s) the update servers' certificates chain to.
    pub ca_file: PathBuf,
    /// Limit for the TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for each read from the socket (an idle connection), not for a whole download.
    pub read_timeout: Duration,
}

impl HttpsConfig {
    /// The defaults for a device: 30 s to connect, 60 s without a byte.
    pub fn new(ca_file: impl Into<PathBuf>) -> HttpsConfig {
        HttpsConfig {
            ca_file: ca_file.into(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A blocking HTTPS client trusting only the configured CA bundle. Cheap to clone (one shared
/// connection pool). Call it from blocking threads only.
#[derive(Clone)]
pub struct HttpsClient {
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

/// Reads the CA bundle: every certificate in it, at least one, each one a valid trust anchor.
fn load_ca(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let ca = |problem: String| Error::HttpsCa {
        path: path.to_owned(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| ca(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(ca(format!("bad PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(ca("no PEM certificate in it".to_owned()));
    }
    // Check each as rustls will use it (ureq silently skips unparsable roots).
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store
            .add(rustls::pki_types::CertificateDer::from(cert.der().to_vec()))
            .map_err(|e| ca(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(certs)
}

impl HttpsClient {
    /// A client trusting the CA bundle of `config` only, with its timeouts.
    pub fn new(config: &HttpsConfig) -> Result<HttpsClient> {
        let certs = load_ca(&config.ca_file)?;
        // Both ring and aws-lc are compiled in (tough uses aws-lc): name the provider rather
        // than rely on a process default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&certs))
            .unversioned_rustls_crypto_provider(provider)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(true)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.connect_timeout + config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .timeout_per_write(Some(config.read_timeout))
            .user_agent(concat!("keywarden-updated/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpsClient { agent })
    }

    /// `GET url` (from byte `range_from` on, if given). The response may have any status:
    /// callers check it. Transport failures are mapped to specific errors.
    pub fn get(
        &self,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self.agent.get(url);
        if let Some(offset) = range_from {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        request.call().map_err(|e| map_ureq(url, e))
    }
}

/// A specific error for a ureq failure on `url`.
pub(crate) fn map_ureq(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::StatusCode(status) => Error::HttpStatus {
            url: url.to_owned(),
            status,
        },
        ureq::Error::Timeout(t) => Error::HttpTimeout {
            url: url.to_owned(),
            phase: t.to_string(),
        },
        ureq::Error::Tls(problem) => Error::HttpTls {
            url: url.to_owned(),
            problem: problem.to_owned(),
        },
        ureq::Error::Rustls(e) => Error::HttpTls {
            url: url.to_owned(),
            problem: e.to_string(),
        },
        ureq::Error::Io(e) => map_io(url, &e),
        other => Error::HttpTransfer {
            url: url.to_owned(),
            problem: other.to_string(),
        },
    }
}

/// A specific error for an I/O error on `url` (from a connection or a body read).
pub(crate) fn map_io(url: &str, e: &io::Error) -> Error {
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Error::HttpTls {
                url: url.to_owned(),
                problem: tls.to_string(),
            };
        }
        if let Some(ureq_error) = inner.downcast_ref::<ureq::Error>() {
            match ureq_error {
                ureq::Error::Timeout(t) => {
                    return Error::HttpTimeout {
                        url: url.to_owned(),
                        phase: t.to_string(),
                    }
                }
                ureq::Error::Rustls(tls) => {
                    return Error::HttpTls {
                        url: url.to_owned(),
                        problem: tls.to_string(),
                    }
                }
                ureq::Error::Tls(problem) => {
                    return Error::HttpTls {
                        url: url.to_owned(),
                        problem: (*problem).to_owned(),
                    }
                }
                _ => {}
            }
        }
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::HttpTimeout {
            url: url.to_owned(),
            phase: "read".to_owned(),
        },
        _ => Error::HttpTransfer {
            url: url.to_owned(),
            problem: e.to_string(),
        },
    }
}

/// `bytes FIRST-LAST/TOTAL` of a `Content-Range` header.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// A bundle on an HTTPS server whose length is known in advance (from the TUF targets
/// metadata): each [`open_at`](BundleSource::open_at) is one `Range: bytes=OFFSET-` request whose
/// answer must be `206 Partial Content` for exactly `OFFSET..len`, and no more than `len` bytes
/// are ever read in all, whatever the server sends (endless-data defence).
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: HttpsClient,
    url: String,
    len: u64,
}

impl HttpSource {
    /// The bundle at `url`, `len` bytes long.
    pub fn new(client: HttpsClient, url: impl Into<String>, len: u64) -> HttpSource {
        HttpSource {
            client,
            url: url.into(),
            len,
        }
    }

    /// The bundle a TUF offer names (its consistent-snapshot URL and signed length).
    pub fn for_offer(client: HttpsClient, offer: &super::Offer) -> HttpSource {
        HttpSource::new(client, offer.url.clone(), offer.length)
    }

    /// A bundle at a plain `https://` URL (no repository metadata gives its length): one
    /// `Range: bytes=0-` request whose `206` answer's `Content-Range` says the length; the body is
    /// not read. Such a bundle is still protected by its signature and chunk hashes, but not by
    /// the repository's freshness and rollback checks.
    pub fn probe(client: HttpsClient, url: &str) -> Result<HttpSource> {
        let response = client.get(url, Some(0))?;
        let status = response.status().as_u16();
        if status != 206 {
            return Err(Error::HttpRangeIgnored {
                url: url.to_owned(),
                offset: 0,
                problem: format!("answered {status} instead of 206 Partial Content"),
            });
        }
        let total = response
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .map(|(_, _, total)| total)
            .ok_or_else(|| Error::HttpRangeIgnored {
                url: url.to_owned(),
                offset: 0,
                problem: "no usable Content-Range header".to_owned(),
            })?;
        Ok(HttpSource::new(client, url, total))
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn range_error(&self, offset: u64, problem: String) -> Error {
        Error::HttpRangeIgnored {
            url: self.url.clone(),
            offset,
            problem,
        }
    }
}

impl BundleSource for HttpSource {
    fn open_at(&mut self, offset: u64) -> Result<Box<dyn Read + Send>> {
        if offset > self.len {
            return Err(self.range_error(
                offset,
                format!("the offset is past the bundle's {} bytes", self.len),
            ));
        }
        if offset == self.len {
            // Nothing left: a range request would be answered 416.
            return Ok(Box::new(io::empty()));
        }
        let response = self.client.get(&self.url, Some(offset))?;
        let status = response.status().as_u16();
        match status {
            206 => {}
            200 => {
                return Err(self.range_error(
                    offset,
                    "it answered 200 with the whole file instead of 206".to_owned(),
                ))
            }
            _ => {
                return Err(Error::HttpStatus {
                    url: self.url.clone(),
                    status,
                })
            }
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let remaining = self.len - offset;
        let content_range = header("content-range")
            .ok_or_else(|| self.range_error(offset, "206 without Content-Range".to_owned()))?;
        match parse_content_range(&content_range) {
            Some((first, last, total))
                if first == offset && last == self.len - 1 && total == self.len => {}
            Some((_, _, total)) if total != self.len => {
                return Err(Error::HttpLength {
                    url: self.url.clone(),
                    expected: self.len,
                    announced: format!("a total of {total} (Content-Range: {content_range})"),
                })
            }
            _ => {
                return Err(self.range_error(
                    offset,
                    format!(
                        "Content-Range {content_range:?} is not bytes {offset}-{}/{}",
                        self.len - 1,
                        self.len
                    ),
                ))
            }
        }
        if let Some(length) = header("content-length") {
            if length.trim().parse::<u64>().ok() != Some(remaining) {
                return Err(Error::HttpLength {
                    url: self.url.clone(),
                    expected: remaining,
                    announced: format!("Content-Length {length}"),
                });
            }
        }
        let body = response.into_body().into_reader();
        Ok(Box::new(SourceReader {
            inner: body.take(remaining),
            url: self.url.clone(),
        }))
    }

    fn len(&self) -> Option<u64> {
        Some(self.len)
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// A response body, capped at the bytes left, with errors that say what failed.
struct SourceReader<R> {
    inner: io::Take<R>,
    url: String,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = match e.kind() {
                io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
                kind => kind,
            };
            io::Error::new(kind, map_io(&self.url, &e).to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range_is_parsed_strictly() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, 10)));
        assert_eq!(parse_content_range("bytes 5-9/*"), None);
        assert_eq!(parse_content_range("5-9/10"), None);
        assert_eq!(parse_content_range("bytes x-9/10"), None);
    }
}
