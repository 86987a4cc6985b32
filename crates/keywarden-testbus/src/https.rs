//! A static HTTPS file server on loopback for tests: serves a directory over HTTPS on
//! `127.0.0.1:0` with a certificate signed by a fresh test CA (handed back as PEM), a minimal
//! HTTP/1.1 `GET`/`HEAD` with one `Range: bytes=FIRST-[LAST]` (206, 416), `Content-Length`, and
//! `Connection: close` after each response.
//!
//! Knobs for attack and failure tests: serve extra bytes after each file as if it were longer
//! (endless data, announced), keep sending past the announced range without a length (endless
//! data, unannounced), cut the next response after N body bytes (network cut), ignore `Range`.
//! It counts the body bytes it sent, so a test can tell that a client stopped reading.
//!
//! It runs on its own thread with its own tokio runtime, so blocking and async tests can both
//! use it; it stops when dropped.

use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const NO_CUT: u64 = u64::MAX;

#[derive(Debug, Default)]
struct State {
    extra: AtomicU64,
    overrun: AtomicU64,
    cut_next: AtomicU64,
    ignore_range: AtomicBool,
    sent: AtomicU64,
    log: Mutex<Vec<String>>,
}

/// The server; stops when dropped. See the module documentation.
#[derive(Debug)]
pub struct StaticServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A test CA and a certificate it signed for `127.0.0.1`, `localhost` and `extra_names`.
fn pki(extra_names: &[&str]) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Keywarden test update server CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    names.extend(extra_names.iter().map(|n| (*n).to_owned()));
    let mut leaf = CertificateParams::new(names).expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");
    (
        ca_cert.pem(),
        leaf_cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

impl StaticServer {
    /// Serves `root` (a directory) until dropped.
    pub fn start(root: impl Into<PathBuf>) -> StaticServer {
        StaticServer::start_for(root, &[])
    }

    /// As [`StaticServer::start`], with a certificate that also names `extra_names` (e.g. the
    /// name a VM guest reaches the host by).
    pub fn start_for(root: impl Into<PathBuf>, extra_names: &[&str]) -> StaticServer {
        let root: PathBuf = root.into();
        let (ca_pem, cert, key) = pki(extra_names);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local address");
        let state = Arc::new(State {
            cut_next: AtomicU64::new(NO_CUT),
            ..State::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let root = root.clone();
                        let state = thread_state.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve(tls, &root, &state).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        StaticServer {
            addr,
            ca_pem,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/` (with the slash).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA's certificate (PEM): the only trust anchor of a client of this server.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA certificate to `path` and returns it.
    pub fn write_ca(&self, path: impl AsRef<Path>) -> PathBuf {
        std::fs::write(path.as_ref(), &self.ca_pem).expect("write the CA PEM");
        path.as_ref().to_owned()
    }

    /// Serves `extra` bytes (`x`) after every file, as if it were that much longer (the
    /// announced lengths include them): an endless-data server when large.
    pub fn set_extra_bytes(&self, extra: u64) {
        self.state.extra.store(extra, Ordering::SeqCst);
    }

    /// Sends `bytes` more than announced after each body, without a `Content-Length` (a
    /// close-delimited body that does not stop where its `Content-Range` says): a client must
    /// stop reading by itself.
    pub fn set_overrun(&self, bytes: u64) {
        self.state.overrun.store(bytes, Ordering::SeqCst);
    }

    /// Cuts the next response's connection (no TLS close_notify) after `bytes` body bytes.
    pub fn cut_next_response_after(&self, bytes: u64) {
        self.state.cut_next.store(bytes, Ordering::SeqCst);
    }

    /// Answers every request with the whole file (200), ignoring `Range`.
    pub fn set_ignore_range(&self, ignore: bool) {
        self.state.ignore_range.store(ignore, Ordering::SeqCst);
    }

    /// Body bytes sent so far, all responses together.
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// The requests served so far: `"GET /path"` or `"GET /path bytes=N-"`, and the status.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the request head (up to 16 KiB).
async fn read_head<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 || buf.len() > 16 * 1024 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    String::from_utf8(buf).ok()
}

/// The file a request path names under `root`, refusing `..`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split('?').next()?.trim_start_matches('/');
    let relative = Path::new(path);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(relative);
    full.is_file().then_some(full)
}

/// `bytes=FIRST-` or `bytes=FIRST-LAST`.
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        l => Some(l.parse().ok()?),
    };
    Some((first, last))
}

async fn serve<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut stream: S, root: &Path, state: &State) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_owned());
    let log = |status: u16| {
        let mut entry = format!("{method} {target}");
        if let Some(r) = &range {
            entry.push(' ');
            entry.push_str(r);
        }
        entry.push_str(&format!(" -> {status}"));
        if let Ok(mut l) = state.log.lock() {
            l.push(entry);
        }
    };
    let simple = |status: u16, reason: &str, extra: &str| {
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    if method != "GET" && method != "HEAD" {
        log(405);
        let _ = stream
            .write_all(simple(405, "Method Not Allowed", "").as_bytes())
            .await;
        let _ = stream.shutdown().await;
        return;
    }
    let Some(path) = resolve(root, &target) else {
        log(404);
        let _ = stream
            .write_all(simple(404, "Not Found", "").as_bytes())
            .await;
        let _ = stream.shutdown().await;
        return;
    };
    // Local files, small reads: plain blocking I/O is fine here (no tokio "fs" feature needed).
    let Ok(mut file) = std::fs::File::open(&path) else {
        log(404);
        let _ = stream
            .write_all(simple(404, "Not Found", "").as_bytes())
            .await;
        let _ = stream.shutdown().await;
        return;
    };
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let total = file_len.saturating_add(state.extra.load(Ordering::SeqCst));
    let ignore = state.ignore_range.load(Ordering::SeqCst);
    let (status, first, last) = match range.as_deref().and_then(parse_range) {
        Some((first, last)) if !ignore => {
            if first >= total {
                log(416);
                let _ = stream
                    .write_all(
                        simple(
                            416,
                            "Range Not Satisfiable",
                            &format!("Content-Range: bytes */{total}\r\n"),
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            let last = last.map_or(total - 1, |l| l.min(total - 1));
            (206, first, last)
        }
        _ => (200, 0, total.saturating_sub(1)),
    };
    let length = if total == 0 { 0 } else { last - first + 1 };
    let overrun = state.overrun.load(Ordering::SeqCst);
    let reason = if status == 206 {
        "Partial Content"
    } else {
        "OK"
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nAccept-Ranges: bytes\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n"
    );
    if overrun == 0 {
        response.push_str(&format!("Content-Length: {length}\r\n"));
    }
    if status == 206 {
        response.push_str(&format!("Content-Range: bytes {first}-{last}/{total}\r\n"));
    }
    response.push_str("\r\n");
    log(status);
    if stream.write_all(response.as_bytes()).await.is_err() || method == "HEAD" {
        let _ = stream.shutdown().await;
        return;
    }
    let cut = state.cut_next.swap(NO_CUT, Ordering::SeqCst);
    if first < file_len && file.seek(std::io::SeekFrom::Start(first)).is_err() {
        return;
    }
    let mut pos = first;
    let end = first + length;
    let mut written = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let n = if pos < file_len {
            let want = want.min((file_len - pos) as usize);
            match file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            }
        } else {
            buf[..want].fill(b'x');
            want
        };
        let n = if cut != NO_CUT {
            n.min(cut.saturating_sub(written) as usize)
        } else {
            n
        };
        if n > 0 && stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        state.sent.fetch_add(n as u64, Ordering::SeqCst);
        written += n as u64;
        pos += n as u64;
        if cut != NO_CUT && written >= cut {
            // A network cut: the connection drops without TLS close_notify.
            return;
        }
    }
    let mut left = overrun;
    buf.fill(b'x');
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
        state.sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=5-9"), Some((5, Some(9))));
        assert_eq!(parse_range("bytes=5-9,11-12"), None);
        assert_eq!(parse_range("items=5-"), None);
    }
}
