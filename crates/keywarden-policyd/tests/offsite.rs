//! The offsite audit copy against a real collector: Debian's `rsyslogd` (imtcp, `ossl` stream
//! driver, TLS with client certificates required) on a loopback port, started by each test in
//! the foreground in its own directory; certificates made at test time with rcgen; the audit
//! chain written through the real `Store` on a real SQLite file; the shipper is policyd's own
//! (`offsite::spawn`). The collector's file is checked with the verifier `keywarden audit
//! verify --collector` uses.
//!
//! Needs `rsyslog` and `rsyslog-openssl` (tests/setup-host.sh installs them).

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keywarden_audit::collector::verify_collector_copy;
use keywarden_audit::{parse_public_key, CollectorReport, DeviceKey, VerifyError};
use keywarden_policyd::admin::{Actor, AdminOp};
use keywarden_policyd::config::Config;
use keywarden_policyd::daemon::Options;
use keywarden_policyd::model::Settings;
use keywarden_policyd::offsite::{self, OffsiteStatus};
use keywarden_policyd::store::{BadgeKey, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tempfile::TempDir;
use tokio::sync::watch;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const OSSL_DRIVER: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so";
const CABINET: &str = "cabinet-1";
const WAIT: Duration = Duration::from_secs(120);

fn require_rsyslog() {
    assert!(
        Path::new(RSYSLOGD).exists(),
        "{RSYSLOGD} is missing: install rsyslog and rsyslog-openssl (tests/setup-host.sh)"
    );
    let driver_found = Path::new(OSSL_DRIVER).exists()
        || Path::new("/usr/lib/rsyslog/lmnsd_ossl.so").exists()
        || std::fs::read_dir("/usr/lib")
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().join("rsyslog/lmnsd_ossl.so").exists())
            })
            .unwrap_or(false);
    assert!(
        driver_found,
        "rsyslog's ossl stream driver (lmnsd_ossl.so) is missing: install rsyslog-openssl (tests/setup-host.sh)"
    );
}

/// A test CA, the collector's certificate, a cabinet's client certificate, and one from another
/// CA, as PEM files in `dir`.
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("CA cert"), key)
}

fn make_leaf(
    name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca, ca_key).expect("leaf cert");
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    fn new(dir: &Path) -> Certs {
        let (ca, ca_key) = make_ca("keywarden test collector CA");
        let (rogue_ca, rogue_ca_key) = make_ca("someone else's CA");
        let (server_cert, server_key) = make_leaf(
            "collector.test",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (client_cert, client_key) =
            make_leaf(CABINET, ExtendedKeyUsagePurpose::ClientAuth, &ca, &ca_key);
        let (rogue_cert, rogue_key) = make_leaf(
            CABINET,
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_ca,
            &rogue_ca_key,
        );
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        Certs {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            rogue_cert: write("rogue.pem", &rogue_cert),
            rogue_key: write("rogue.key", &rogue_key),
        }
    }
}

/// rsyslogd in the foreground, as `contrib/collector/keywarden-collector.conf` configures it,
/// writing each cabinet's messages to `dir/<HOSTNAME>.log`.
struct Collector {
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Collector {
    fn start(dir: &Path, certs: &Certs) -> Collector {
        require_rsyslog();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let conf = dir.join("rsyslog.conf");
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../contrib/collector/keywarden-collector.conf"),
        )
        .expect("contrib/collector/keywarden-collector.conf")
        .replace("/var/spool/rsyslog", &work.display().to_string())
        .replace(
            "/etc/keywarden-collector/ca.pem",
            &certs.ca.display().to_string(),
        )
        .replace(
            "/etc/keywarden-collector/collector.pem",
            &certs.server_cert.display().to_string(),
        )
        .replace(
            "/etc/keywarden-collector/collector.key",
            &certs.server_key.display().to_string(),
        )
        .replace("/var/log/keywarden", &dir.display().to_string())
        .replace("address=\"0.0.0.0\"", "address=\"127.0.0.1\"")
        // The tests may run as any user: no chown to group adm.
        .replace(" dirGroup=\"adm\" fileGroup=\"adm\"", "")
        .replace("port=\"6514\"", &format!("port=\"{port}\""));
        std::fs::write(&conf, text).expect("rsyslog.conf");
        let mut collector = Collector {
            dir: dir.to_owned(),
            conf,
            port,
            child: None,
        };
        collector.restart();
        collector
    }

    fn restart(&mut self) {
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`hard`) or SIGTERM, and wait for the process to end.
    fn stop(&mut self, hard: bool) {
        if let Some(mut child) = self.child.take() {
            if hard {
                let _ = child.kill();
            } else {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    fn copy_path(&self) -> PathBuf {
        self.dir.join(format!("{CABINET}.log"))
    }

    fn copy(&self) -> Vec<u8> {
        std::fs::read(self.copy_path()).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// A cabinet's database and keys, and the shipper's configuration.
struct Cabinet {
    dir: TempDir,
    store: Store,
    key_hex: String,
    head_tx: watch::Sender<u64>,
    now_ms: i64,
}

impl Cabinet {
    fn new() -> Cabinet {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DeviceKey::create(&dir.path().join("device-key.pem")).expect("device key");
        let key_hex = key.public_hex();
        let mut store = Store::open(
            &dir.path().join("keywarden.db"),
            key,
            BadgeKey::from_bytes(&[9; 32]),
        )
        .expect("open store");
        store
            .sync_slots(&(1..=4).collect::<BTreeSet<u32>>())
            .expect("slots");
        let (head_tx, _) = watch::channel(store.audit_head().0);
        Cabinet {
            dir,
            store,
            key_hex,
            head_tx,
            now_ms: 1_790_000_000_000,
        }
    }

    /// `n` audit entries (admin changes, with text that syslog must carry untouched).
    fn records(&mut self, n: u64) {
        let actor = Actor {
            uid: 0,
            name: "root".to_owned(),
        };
        for _ in 0..n {
            let i = self.store.audit_head().0;
            let op = AdminOp::SetReason {
                code: "MAINT".to_owned(),
                description: format!("Wartung #{i} « sous-sol » \"quoted\" \\ back-slash"),
                max_minutes: Some(60 + (i % 7) as u32),
            };
            self.store
                .apply_admin(&actor, &op, &Settings::default(), self.now_ms)
                .expect("admin change");
            self.now_ms += 1000;
        }
        self.head_tx.send_replace(self.store.audit_head().0);
    }

    fn head(&self) -> u64 {
        self.store.audit_head().0
    }

    fn policy(&self, collector: &Collector, certs: &Certs, batch: u32) -> Config {
        let text = format!(
            "[offsite]\naddress = \"127.0.0.1:{}\"\nserver-name = \"collector.test\"\n\
             ca-file = \"{}\"\nclient-cert = \"{}\"\nclient-key = \"{}\"\ncabinet = \"{CABINET}\"\n\
             batch-size = {batch}\nheartbeat-seconds = 1\ntimeout-seconds = 10\n",
            collector.port,
            certs.ca.display(),
            self.dir.path().join("client.pem").display(),
            self.dir.path().join("client.key").display(),
        );
        Config::parse(&text).expect("policy file")
    }

    /// Install a client certificate where the policy file points.
    fn use_client_cert(&self, cert: &Path, key: &Path) {
        std::fs::copy(cert, self.dir.path().join("client.pem")).expect("client cert");
        std::fs::copy(key, self.dir.path().join("client.key")).expect("client key");
    }

    fn ship(&self, config: Config) -> watch::Receiver<OffsiteStatus> {
        let options = Options {
            database: self.dir.path().join("keywarden.db"),
            device_key: self.dir.path().join("device-key.pem"),
            badge_key: self.dir.path().join("badge.key"),
            config: self.dir.path().join("policy.toml"),
            offsite_config: self.dir.path().join("offsite.toml"),
            bus_address: None,
            admin_groups: Vec::new(),
            console_groups: Vec::new(),
            diag: None,
        };
        offsite::spawn(
            config.offsite.expect("[offsite]"),
            &options,
            self.head_tx.subscribe(),
        )
    }

    fn verify(&self, copy: &[u8]) -> Result<CollectorReport, VerifyError> {
        let key = parse_public_key(&self.key_hex).expect("key");
        verify_collector_copy(copy, Some(&key))
    }
}

async fn wait_for(
    status: &mut watch::Receiver<OffsiteStatus>,
    what: &str,
    mut done: impl FnMut(&OffsiteStatus) -> bool,
) -> OffsiteStatus {
    let result = tokio::time::timeout(WAIT, status.wait_for(|s| done(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match result {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}: {:?}", *status.borrow()),
    }
}

/// Entries of the copy in order, one per seq, after dropping duplicates: what the verifier saw.
fn assert_complete(report: &CollectorReport, head: u64) {
    assert_eq!(report.verified.first_seq, 1, "{report:?}");
    assert_eq!(report.verified.last_seq, head, "{report:?}");
    assert_eq!(report.verified.entries, head, "{report:?}");
    assert_eq!(report.unsigned_tail, None, "{report:?}");
}

#[tokio::test]
async fn every_record_reaches_the_collector_and_the_copy_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(tmp.path());
    let collector = Collector::start(&tmp.path().join("collector"), &certs);
    let mut cabinet = Cabinet::new();
    cabinet.use_client_cert(&certs.client_cert, &certs.client_key);
    cabinet.records(150);
    let started = Instant::now();
    let mut status = cabinet.ship(cabinet.policy(&collector, &certs, 40));
    let head = cabinet.head();
    wait_for(&mut status, "the first records", |s| s.acked.entry == head).await;
    // A figure, not an assertion: one TLS connection and one fsync on the collector per batch.
    let secs = started.elapsed().as_secs_f64();
    println!(
        "offsite: {head} entries in batches of 40 acknowledged in {secs:.2} s ({:.0} entries/s)",
        head as f64 / secs
    );

    // More records later: the head watch wakes the shipper.
    cabinet.records(25);
    let head = cabinet.head();
    let st = wait_for(&mut status, "the later records", |s| s.acked.entry == head).await;
    assert_eq!(st.shipped, head);
    assert_eq!(st.last_error, None);
    let _ = wait_for(&mut status, "a heartbeat", |s| s.heartbeats >= 1).await;

    let copy = collector.copy();
    let report = cabinet
        .verify(&copy)
        .expect("the collector's copy verifies");
    assert_complete(&report, head);
    assert!(report.heartbeats >= 1, "{report:?}");
    assert_eq!(report.duplicates, 0, "nothing was resent: {report:?}");

    // Every entry line is byte for byte what an export of the database holds.
    let mut export = Vec::new();
    cabinet
        .store
        .export_audit(&mut export, 1, cabinet.now_ms)
        .expect("export");
    let text = String::from_utf8(copy.clone()).expect("UTF-8");
    let copied: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .collect();
    let exported = String::from_utf8(export).expect("UTF-8");
    let exported: BTreeSet<&str> = exported
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .collect();
    assert_eq!(copied, exported);

    // The position survives in the database.
    let conn = rusqlite::Connection::open(cabinet.dir.path().join("keywarden.db")).expect("db");
    let acked: i64 = conn
        .query_row(
            "SELECT entry_seq FROM offsite_position WHERE collector = ?1",
            [format!("127.0.0.1:{}", collector.port)],
            |r| r.get(0),
        )
        .expect("position row");
    assert_eq!(acked as u64, head);

    // Tampering with the collector's copy is detected.
    let edited = text.replacen("Wartung #7 ", "Wartung #8 ", 1);
    assert_ne!(edited, text);
    assert!(matches!(
        cabinet.verify(edited.as_bytes()),
        Err(VerifyError::EditedEntry { .. })
    ));
    let lines: Vec<&str> = text.lines().collect();
    let dropped: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 20)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert!(
        cabinet.verify(dropped.as_bytes()).is_err(),
        "a deleted line is detected"
    );
}

#[tokio::test]
async fn a_collector_killed_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(tmp.path());
    let mut collector = Collector::start(&tmp.path().join("collector"), &certs);
    let mut cabinet = Cabinet::new();
    cabinet.use_client_cert(&certs.client_cert, &certs.client_key);
    cabinet.records(600);
    let mut status = cabinet.ship(cabinet.policy(&collector, &certs, 10));

    // Kill the collector (SIGKILL, and SIGTERM every third time) while batches are in flight
    // (each time a few ms after it acknowledged one more), adding records as the cabinet goes on
    // working, and bring it back each time.
    let mut kills = 0;
    let mut failures = 0;
    for round in 0..15u64 {
        let acked = status.borrow().acked.entry;
        let _ = wait_for(&mut status, "progress", |s| s.acked.entry > acked).await;
        tokio::time::sleep(Duration::from_millis(7 * (round % 6))).await;
        collector.stop(round % 3 != 2);
        kills += 1;
        cabinet.records(10);
        let _ = wait_for(&mut status, "a failed delivery", |s| s.failures > 0).await;
        failures += 1;
        collector.restart();
    }
    let head = cabinet.head();
    let st = wait_for(&mut status, "catch-up", |s| s.acked.entry == head).await;
    println!(
        "offsite: {kills} collector kills ({failures} seen by the shipper), {} entries shipped, head {head}",
        st.shipped
    );

    let report = cabinet
        .verify(&collector.copy())
        .expect("the copy verifies after the outages");
    assert_complete(&report, head);
    println!(
        "offsite: copy holds {} duplicates, {} headers, {} heartbeats",
        report.duplicates, report.headers, report.heartbeats
    );
}

#[tokio::test]
async fn a_cabinet_without_a_valid_certificate_is_refused_and_keeps_its_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(tmp.path());
    let collector = Collector::start(&tmp.path().join("collector"), &certs);
    let mut cabinet = Cabinet::new();
    cabinet.use_client_cert(&certs.client_cert, &certs.client_key);
    cabinet.records(30);
    let mut status = cabinet.ship(cabinet.policy(&collector, &certs, 100));
    let first = cabinet.head();
    wait_for(&mut status, "the first records", |s| s.acked.entry == first).await;
    let before = collector.copy();

    // A certificate from another CA: the collector refuses the session.
    cabinet.use_client_cert(&certs.rogue_cert, &certs.rogue_key);
    cabinet.records(10);
    let st = wait_for(&mut status, "a refusal", |s| s.failures >= 2).await;
    let error = st.last_error.clone().expect("an error");
    assert!(
        error.contains(&format!("offsite collector 127.0.0.1:{}", collector.port))
            && (error.contains("refused the TLS session")
                || error.contains("it refused this cabinet's client certificate")),
        "{error}"
    );
    assert_eq!(st.acked.entry, first, "the position stays");
    let after = collector.copy();
    let new_lines = &after[before.len().min(after.len())..];
    assert!(
        !String::from_utf8_lossy(new_lines).contains("\"entry\""),
        "the collector wrote nothing of the refused sessions"
    );

    // The right certificate again: it catches up from where it was.
    cabinet.use_client_cert(&certs.client_cert, &certs.client_key);
    let head = cabinet.head();
    wait_for(&mut status, "catch-up", |s| s.acked.entry == head).await;
    let report = cabinet.verify(&collector.copy()).expect("verifies");
    assert_complete(&report, head);
}

/// The running daemon: policyd (with hwd on the sim backend, on a private bus) reads
/// `[offsite]` from its policy file and ships what its admin calls record; killed and started
/// again, it resumes from the position it stored, not from the start.
#[tokio::test]
async fn the_running_service_ships_its_trail_and_resumes_after_a_restart() {
    use keywarden_dbus::policy::Policy1Proxy;
    use keywarden_testbus::{binary, current_user, wait_for_name, Daemon, PrivateBus};

    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(tmp.path());
    let collector = Collector::start(&tmp.path().join("collector"), &certs);
    let bus = PrivateBus::start(
        &[
            "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
            "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
        ],
        &["keywarden", "keywarden-hw"],
        &["keywarden-admin", "keywarden-console"],
    );
    let d = bus.dir().to_owned();
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "[offsite]\naddress = \"127.0.0.1:{}\"\nserver-name = \"collector.test\"\n\
             ca-file = \"{}\"\nclient-cert = \"{}\"\nclient-key = \"{}\"\ncabinet = \"{CABINET}\"\n\
             heartbeat-seconds = 2\n",
            collector.port,
            certs.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display(),
        ),
    )
    .expect("policy.toml");
    let _hwd = Daemon(
        Command::new(binary("keywarden-hwd"))
            .args(["--backend", "sim", "--allow-user", &current_user()])
            .arg("--board")
            .arg(
                keywarden_testbus::workspace_root()
                    .join("crates/keywarden-hwd/boards/sim-demo.toml"),
            )
            .args(["--bus-address", &bus.address])
            .spawn()
            .expect("start keywarden-hwd"),
    );
    let conn = bus.connect().await;
    wait_for_name(&conn, "org.keywarden.Hardware1", Duration::from_secs(15)).await;
    let policyd = || {
        let child = Command::new(binary("keywarden-policyd"))
            .arg("--database")
            .arg(d.join("data/keywarden.db"))
            .arg("--device-key")
            .arg(d.join("data/identity/device-key.pem"))
            .arg("--badge-key")
            .arg(d.join("data/secrets/badge.key"))
            .arg("--config")
            .arg(d.join("policy.toml"))
            .args(["--bus-address", &bus.address])
            .spawn()
            .expect("start keywarden-policyd");
        Daemon(child)
    };
    let db = d.join("data/keywarden.db");
    let acked = |collector_port: u16| -> u64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT entry_seq FROM offsite_position WHERE collector = ?1",
                    [format!("127.0.0.1:{collector_port}")],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map(|v| v as u64)
            .unwrap_or(0)
    };
    let wait_acked = |n: u64| async move {
        let deadline = Instant::now() + WAIT;
        while acked(collector.port) < n {
            assert!(
                Instant::now() < deadline,
                "the service never shipped entry {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let daemon = policyd();
    wait_for_name(&conn, "org.keywarden.Policy1", Duration::from_secs(15)).await;
    let p = Policy1Proxy::new(&conn).await.expect("proxy");
    let key_hex = p.device_public_key().await.expect("device key");
    for i in 0..5 {
        p.set_reason("MAINT", &format!("maintenance {i}"), 0)
            .await
            .expect("set reason");
    }
    wait_acked(5).await;
    drop(daemon);

    let _daemon = policyd();
    wait_for_name(&conn, "org.keywarden.Policy1", Duration::from_secs(15)).await;
    let p = Policy1Proxy::new(&conn).await.expect("proxy");
    for i in 0..3 {
        p.set_reason("MAINT", &format!("after the restart {i}"), 0)
            .await
            .expect("set reason");
    }
    wait_acked(8).await;
    let key = parse_public_key(&key_hex).expect("key");
    let report = verify_collector_copy(collector.copy().as_slice(), Some(&key)).expect("verifies");
    assert_complete(&report, 8);
    assert_eq!(
        report.duplicates, 0,
        "resumed from its position: {report:?}"
    );
}
