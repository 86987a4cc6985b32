//! Alerts and notifications against real servers on loopback: an SMTP server (aiosmtpd, Debian's
//! `python3-aiosmtpd`, STARTTLS with AUTH, or TLS from the first byte) and an HTTPS webhook
//! server (Python's `ssl` + `http.server`), both from `tests/notify/`, with certificates made
//! at test time by rcgen. The database is a real SQLite file written through the real `Store`.
//!
//! The notifier's steps take `now`, so outages, retries and days pass without waiting; the
//! first test runs the spawned notifier on the real clock end to end.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keywarden_audit::DeviceKey;
use keywarden_policyd::admin::{Actor, AdminOp, UserField};
use keywarden_policyd::config::Config;
use keywarden_policyd::core::effects::{Change, Commit, Event, EventKind};
use keywarden_policyd::daemon::Options;
use keywarden_policyd::model::{AlarmKind, KeyKind, Role, Settings};
use keywarden_policyd::notify::{self, Notifier, NotifyConfig};
use keywarden_policyd::store::{BadgeKey, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(30);
/// 2026-12-01T00:00:00Z, past the clock floor.
const DAY0: i64 = 1_796_083_200;
const SMTP_PASSWORD: &str = "correct horse battery staple";
const HOOK_SECRET: &str = "webhook-signing-secret";

// ---- certificates ---------------------------------------------------------------------------

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, format!("Keywarden test CA {name}"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");
    let p = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&p.ca, ca_cert.pem()).expect("write CA");
    std::fs::write(&p.cert, leaf_cert.pem()).expect("write cert");
    std::fs::write(&p.key, key.serialize_pem()).expect("write key");
    p
}

// ---- servers --------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn script(name: &str) -> PathBuf {
    keywarden_testbus::workspace_root()
        .join("tests/notify")
        .join(name)
}

/// A server process, killed on drop; what it received is in `dir`.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: Vec<String>, port: u16, dir: &Path, what: &str) -> Server {
    std::fs::create_dir_all(dir).expect("server dir");
    let child = Command::new(PYTHON)
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{PYTHON} {args:?}: {e} (run tests/setup-host.sh)"));
    let mut server = Server {
        child,
        dir: dir.to_owned(),
    };
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the {what} server exited ({status}) before listening");
        }
        assert!(
            Instant::now() < deadline,
            "the {what} server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn smtp_server(p: &Pki, port: u16, dir: &Path, mode: &str) -> Server {
    let check = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status();
    assert!(
        matches!(check, Ok(s) if s.success()),
        "{PYTHON} cannot import aiosmtpd: install python3-aiosmtpd (tests/setup-host.sh)"
    );
    let args = vec![
        script("smtp_server.py").display().to_string(),
        format!("--port={port}"),
        format!("--cert={}", p.cert.display()),
        format!("--key={}", p.key.display()),
        format!("--dir={}", dir.display()),
        format!("--mode={mode}"),
        "--user=kw".to_owned(),
        format!("--password={SMTP_PASSWORD}"),
    ];
    start(args, port, dir, "SMTP")
}

fn webhook_server(p: &Pki, port: u16, dir: &Path) -> Server {
    let args = vec![
        script("webhook_server.py").display().to_string(),
        format!("--port={port}"),
        format!("--cert={}", p.cert.display()),
        format!("--key={}", p.key.display()),
        format!("--dir={}", dir.display()),
    ];
    start(args, port, dir, "webhook")
}

fn received(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read received"))
        .collect()
}

fn emails(dir: &Path) -> Vec<String> {
    received(dir, "eml")
}

fn posts(dir: &Path) -> Vec<Value> {
    received(dir, "json")
        .iter()
        .map(|t| serde_json::from_str(t).expect("post json"))
        .collect()
}

/// The body of a received e-mail, quoted-printable decoded (ASCII).
fn body(mail: &str) -> String {
    let raw = mail
        .split_once("\r\n\r\n")
        .or_else(|| mail.split_once("\n\n"))
        .map_or("", |b| b.1);
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut chars = joined.chars();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.by_ref().take(2).collect();
            out.push(u8::from_str_radix(&hex, 16).map_or('?', char::from));
        } else {
            out.push(c);
        }
    }
    out.replace("\r\n", "\n")
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    mail.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(prefix.as_str()))
}

// ---- database and configuration -------------------------------------------------------------

fn store(path: &Path) -> Store {
    let mut s = Store::open(
        path,
        DeviceKey::from_bytes(&[7; 32]),
        BadgeKey::from_bytes(&[9; 32]),
    )
    .expect("open store");
    s.sync_slots(&(1..=4).collect()).expect("slots");
    s
}

fn admin(s: &mut Store, op: AdminOp, at_ms: i64) {
    let actor = Actor {
        uid: 0,
        name: "root".into(),
    };
    s.apply_admin(&actor, &op, &Settings::default(), at_ms)
        .unwrap_or_else(|e| panic!("{op:?}: {e}"));
}

fn add_user(s: &mut Store, name: &str, display: &str, at_ms: i64) {
    admin(
        s,
        AdminOp::AddUser {
            name: name.into(),
            role: Role::Staff,
            fields: vec![UserField::DisplayName(display.into())],
        },
        at_ms,
    );
}

fn alarm(s: &mut Store, kind: AlarmKind, subject: &str, raised: bool, at_ms: i64) {
    let at = at_ms / 1000;
    let change = if raised {
        Change::RaiseAlarm {
            kind,
            subject: subject.into(),
            at,
        }
    } else {
        Change::ClearAlarm {
            kind,
            subject: subject.into(),
            at,
        }
    };
    let event = Event {
        kind: if raised {
            EventKind::AlarmRaised
        } else {
            EventKind::AlarmCleared
        },
        actor: String::new(),
        subject: subject.into(),
        detail: vec![("alarm", kind.as_str().to_owned())],
    };
    s.commit(
        &Commit {
            changes: vec![change],
            events: vec![event],
            then: vec![],
        },
        at_ms,
    )
    .expect("commit alarm");
}

fn activity(s: &mut Store, user: &str, at_ms: i64) {
    let event = Event {
        kind: EventKind::Authenticated,
        actor: user.into(),
        subject: format!("user:{user}"),
        detail: vec![("factor", "badge".into())],
    };
    s.commit(
        &Commit {
            changes: vec![],
            events: vec![event],
            then: vec![],
        },
        at_ms,
    )
    .expect("commit activity");
}

struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("keywarden.db");
    for (name, secret) in [
        ("smtp-password", SMTP_PASSWORD),
        ("hook-secret", HOOK_SECRET),
    ] {
        std::fs::write(dir.path().join(name), format!("{secret}\n")).expect("secret");
    }
    Setup { dir, db }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `[notify]` section for cabinet `lobby`: the relay on `smtp_port` (`mode`), one
    /// recipient and one webhook on `hook_port`, each taking `alerts`, trusting `ca`.
    fn config(
        &self,
        smtp_port: u16,
        mode: &str,
        hook_port: u16,
        ca: &Path,
        alerts: &str,
        extra: &str,
    ) -> NotifyConfig {
        let text = format!(
            r#"
time-zone = "UTC"
[notify]
cabinet = "lobby"
{extra}
[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "{mode}"
from = "Keywarden <keywarden@example.com>"
username = "kw"
password-file = "{pw}"
ca-file = "{ca}"
[[notify.email]]
to = "guard@example.com"
alerts = {alerts}
[[notify.webhook]]
url = "https://127.0.0.1:{hook_port}/hooks/keywarden"
alerts = {alerts}
ca-file = "{ca}"
secret-file = "{secret}"
"#,
            pw = self.path("smtp-password").display(),
            secret = self.path("hook-secret").display(),
            ca = ca.display(),
        );
        Config::parse(&text)
            .unwrap_or_else(|e| panic!("config: {e}\n{text}"))
            .notify
            .expect("notify section")
    }
}

fn notifier(db: &Path, config: &NotifyConfig) -> Notifier {
    Notifier::open(db, config.clone(), jiff::tz::TimeZone::UTC, 1).expect("open notifier")
}

fn outbox_conn(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).expect("open db");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c
}

fn check_signed(post: &Value) -> Value {
    let headers = &post["headers"];
    let body = post["body"].as_str().expect("body");
    let expected = notify::signature(HOOK_SECRET.as_bytes(), body.as_bytes()).expect("hmac");
    assert_eq!(
        headers["x-keywarden-signature"].as_str(),
        Some(expected.as_str())
    );
    assert_eq!(headers["content-type"].as_str(), Some("application/json"));
    let json: Value = serde_json::from_str(body).expect("body json");
    assert_eq!(headers["idempotency-key"], json["id"], "{post}");
    json
}

// ---- tests ----------------------------------------------------------------------------------

/// The spawned notifier, on the real clock: an alarm committed through the store reaches the
/// SMTP server (STARTTLS + AUTH) and the webhook (signed), each exactly once.
#[tokio::test]
async fn an_alarm_reaches_email_and_webhook() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let (smtp_port, hook_port) = (free_port(), free_port());
    let smtp = smtp_server(&p, smtp_port, &s.path("smtp"), "starttls");
    let hook = webhook_server(&p, hook_port, &s.path("hook"));
    let config = s.config(smtp_port, "starttls", hook_port, &p.ca, "[\"all\"]", "");
    let mut store = store(&s.db);
    let options = Options {
        database: s.db.clone(),
        device_key: s.path("device.pem"),
        badge_key: s.path("badge.key"),
        config: s.path("policy.toml"),
        offsite_config: s.path("offsite.toml"),
        bus_address: None,
        admin_groups: vec![],
        console_groups: vec![],
        diag: None,
    };
    let (head_tx, head_rx) = tokio::sync::watch::channel(store.audit_head().0);
    let task = notify::spawn(config, &options, jiff::tz::TimeZone::UTC, head_rx);
    // The notifier starts at the head: wait until it has placed its cursor.
    let conn = outbox_conn(&s.db);
    let cursor = || -> Option<i64> {
        conn.query_row(
            "SELECT value FROM notify_state WHERE name = 'cursor'",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    let deadline = Instant::now() + WAIT;
    while cursor().is_none() {
        assert!(Instant::now() < deadline, "the notifier never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let started = Instant::now();
    alarm(&mut store, AlarmKind::DoorForced, "door", true, now_ms);
    head_tx
        .send(store.audit_head().0)
        .expect("notifier listens");
    let deadline = Instant::now() + WAIT;
    while emails(&smtp.dir).is_empty() || posts(&hook.dir).is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A figure, not an assertion.
    eprintln!(
        "alarm committed -> e-mail and webhook received: {} ms",
        started.elapsed().as_millis()
    );
    drop(head_tx);
    task.await.expect("the notifier ends with the daemon");

    let mails = emails(&smtp.dir);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(header(mail, "X-Envelope-To"), Some("guard@example.com"));
    assert_eq!(
        header(mail, "Subject"),
        Some("[Keywarden lobby] ALARM door-forced: door")
    );
    let message_id = header(mail, "Message-ID").expect("Message-ID");
    assert!(
        message_id.starts_with("<kw-lobby-1-") && message_id.ends_with("@example.com>"),
        "{message_id}"
    );
    assert!(
        body(mail).contains("Cabinet lobby: alarm door-forced raised."),
        "{mail}"
    );
    let posts = posts(&hook.dir);
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["path"], "/hooks/keywarden");
    let body = check_signed(&posts[0]);
    assert_eq!(body["alert"], "door-forced");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["cabinet"], "lobby");
    assert_eq!(body["subject"], "door");
    assert_eq!(body["audit_seq"], store.audit_head().0);
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("kw-lobby-2-")),
        "{body}"
    );
    let n = notifier(
        &s.db,
        &s.config(smtp_port, "starttls", hook_port, &p.ca, "[\"all\"]", ""),
    );
    let rows = n.rows().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.sent_at.is_some() && r.attempts == 0),
        "{rows:?}"
    );
}

/// Servers down: the rows stay, retried later and later; a restart mid-outage loses nothing
/// and re-queues nothing; servers back: each message delivered once. Then a crash between a
/// send and its mark-sent (injected) resends that one message with the same dedupe handle.
#[test]
fn an_outage_and_a_restart_lose_nothing_and_duplicate_nothing() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let (smtp_port, hook_port) = (free_port(), free_port());
    let config = s.config(smtp_port, "starttls", hook_port, &p.ca, "[\"all\"]", "");
    let hook = webhook_server(&p, hook_port, &s.path("hook"));
    std::fs::write(s.path("hook").join("fail"), "").expect("fail mode");
    let mut store = store(&s.db);
    let t = DAY0;
    let mut n = notifier(&s.db, &config);
    assert_eq!(
        n.follow(t).expect("follow"),
        0,
        "the first run starts at the head"
    );
    alarm(&mut store, AlarmKind::DoorForced, "door", true, t * 1000);
    alarm(&mut store, AlarmKind::Tamper, "cabinet", true, t * 1000 + 1);
    alarm(
        &mut store,
        AlarmKind::DoorForced,
        "door",
        false,
        t * 1000 + 2,
    );
    assert_eq!(n.follow(t).expect("follow"), 6);
    assert_eq!(
        n.follow(t).expect("follow again"),
        0,
        "nothing queued twice"
    );

    let d = n.deliver_due(t).expect("deliver");
    assert_eq!((d.sent, d.failed, d.expired), (0, 6, 0));
    let rows = n.rows().expect("rows");
    for r in &rows {
        assert_eq!(r.attempts, 1);
        assert!((t + 15..=t + 30).contains(&r.next_attempt_at), "{r:?}");
        let error = r.last_error.as_deref().expect("error");
        match r.channel.as_str() {
            "email" => assert!(error.to_lowercase().contains("refused"), "{error}"),
            _ => assert!(error.contains("HTTP 500"), "{error}"),
        }
    }
    let d = n.deliver_due(t + 10).expect("deliver early");
    assert_eq!((d.sent, d.failed), (0, 0), "nothing is due before its time");
    let d = n.deliver_due(t + 3600).expect("deliver later");
    assert_eq!(d.failed, 6);
    let later = n.rows().expect("rows");
    for (before, after) in rows.iter().zip(&later) {
        assert_eq!(after.attempts, 2);
        assert!(after.next_attempt_at >= t + 3600 + 30, "{after:?}");
        assert!(after.next_attempt_at - (t + 3600) >= before.next_attempt_at - t);
    }

    // Restart mid-outage: a new notifier on the same file.
    drop(n);
    let mut n = notifier(&s.db, &config);
    assert_eq!(
        n.rows().expect("rows"),
        later,
        "the outbox survived the restart"
    );
    assert_eq!(
        n.follow(t + 3600).expect("follow"),
        0,
        "the cursor survived too"
    );
    alarm(
        &mut store,
        AlarmKind::Overdue,
        "key:204",
        true,
        (t + 3600) * 1000,
    );
    assert_eq!(n.follow(t + 3600).expect("follow"), 2);

    // Servers back.
    std::fs::remove_file(s.path("hook").join("fail")).expect("heal webhook");
    let smtp = smtp_server(&p, smtp_port, &s.path("smtp"), "starttls");
    let d = n.deliver_due(t + 7200).expect("deliver");
    assert_eq!((d.sent, d.failed), (8, 0));
    assert_eq!(n.deliver_due(t + 90_000).expect("again").sent, 0);
    let rows = n.rows().expect("rows");
    let mails = emails(&smtp.dir);
    let hooks = posts(&hook.dir);
    assert_eq!((mails.len(), hooks.len()), (4, 4));
    let subjects: Vec<&str> = mails.iter().filter_map(|m| header(m, "Subject")).collect();
    assert_eq!(
        subjects,
        [
            "[Keywarden lobby] ALARM door-forced: door",
            "[Keywarden lobby] ALARM tamper: cabinet",
            "[Keywarden lobby] cleared door-forced: door",
            "[Keywarden lobby] ALARM overdue: key:204",
        ]
    );
    let ids: BTreeSet<String> = hooks
        .iter()
        .map(|h| check_signed(h)["id"].as_str().expect("id").to_owned())
        .collect();
    let expected: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.channel == "webhook")
        .map(|r| format!("kw-lobby-{}-{}", r.id, r.created_at))
        .collect();
    assert_eq!(ids, expected, "each webhook row exactly once");

    // A crash after the POST and the e-mail but before their mark-sent: both are resent once,
    // with the same dedupe handles.
    let hook_row = rows
        .iter()
        .find(|r| r.channel == "webhook")
        .expect("webhook row");
    let mail_row = rows
        .iter()
        .find(|r| r.channel == "email")
        .expect("email row");
    outbox_conn(&s.db)
        .execute(
            "UPDATE outbox SET sent_at = NULL WHERE id IN (?1, ?2)",
            [hook_row.id, mail_row.id],
        )
        .expect("inject the crash");
    assert_eq!(n.deliver_due(t + 90_000).expect("resend").sent, 2);
    let hooks = posts(&hook.dir);
    assert_eq!(hooks.len(), 5);
    assert_eq!(
        hooks[4]["headers"]["idempotency-key"],
        hooks[0]["headers"]["idempotency-key"]
    );
    let mails = emails(&smtp.dir);
    assert_eq!(mails.len(), 5);
    assert_eq!(
        header(&mails[4], "Message-ID"),
        header(&mails[0], "Message-ID")
    );
}

/// The keys-out list: once a day at its time, never twice the same day (restarts included),
/// listing every key out with its holder, reason and overdue flag.
#[test]
fn the_keys_out_list_goes_out_once_a_day() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let (smtp_port, hook_port) = (free_port(), free_port());
    let smtp = smtp_server(&p, smtp_port, &s.path("smtp"), "starttls");
    let hook = webhook_server(&p, hook_port, &s.path("hook"));
    let config = s.config(
        smtp_port,
        "starttls",
        hook_port,
        &p.ca,
        "[\"keys-out\"]",
        "daily-keys-out = \"07:30\"",
    );
    let mut store = store(&s.db);
    let t0 = DAY0 * 1000;
    add_user(&mut store, "alice", "Alice Example", t0);
    admin(
        &mut store,
        AdminOp::AddKey {
            label: "204".into(),
            tag: "K-204".into(),
            kind: KeyKind::Unit,
            fields: vec![],
        },
        t0,
    );
    let conn = outbox_conn(&s.db);
    let id = |q: &str| -> i64 { conn.query_row(q, [], |r| r.get(0)).expect(q) };
    let (user, key) = (
        id("SELECT id FROM users WHERE name = 'alice'"),
        id("SELECT id FROM keys WHERE label = '204'"),
    );
    let granted = DAY0 + 6 * 3600;
    store
        .commit(
            &Commit {
                changes: vec![
                    Change::OpenLoan {
                        key,
                        user,
                        witness: None,
                        reason: "MAINT".into(),
                        granted_at: granted,
                        due_at: granted + 3600,
                        slot: None,
                    },
                    Change::TakeLoan {
                        key,
                        at: granted + 5,
                    },
                ],
                events: vec![],
                then: vec![],
            },
            granted * 1000,
        )
        .expect("loan");

    let at = |day: i64, h: i64, m: i64| DAY0 + day * 86_400 + h * 3600 + m * 60;
    let mut n = notifier(&s.db, &config);
    assert_eq!(
        n.daily(at(0, 7, 29)).expect("daily"),
        0,
        "not before its time"
    );
    assert_eq!(
        n.daily(at(0, 7, 30)).expect("daily"),
        2,
        "one e-mail, one webhook"
    );
    assert_eq!(n.daily(at(0, 7, 45)).expect("daily"), 0, "once a day");
    drop(n);
    let mut n = notifier(&s.db, &config);
    assert_eq!(
        n.daily(at(0, 12, 0)).expect("daily"),
        0,
        "a restart does not repeat it"
    );
    assert_eq!(n.daily(at(1, 7, 0)).expect("daily"), 0);
    assert_eq!(
        n.daily(at(1, 8, 0)).expect("daily"),
        2,
        "the next day, once"
    );
    assert_eq!(n.daily(at(1, 23, 59)).expect("daily"), 0);
    let d = n.deliver_due(at(1, 8, 0)).expect("deliver");
    assert_eq!((d.sent, d.failed), (4, 0));
    let mails = emails(&smtp.dir);
    assert_eq!(mails.len(), 2);
    assert_eq!(
        header(&mails[0], "Subject"),
        Some("[Keywarden lobby] keys out on 2026-12-01: 1 (1 overdue)")
    );
    assert!(
        body(&mails[0]).contains(
            "OVERDUE 204: Alice Example (alice), reason MAINT, since 2026-12-01 06:00 UTC, \
             due 2026-12-01 07:00 UTC"
        ),
        "{}",
        mails[0]
    );
    let hooks = posts(&hook.dir);
    let body = check_signed(&hooks[1]);
    assert_eq!(body["alert"], "keys-out");
    assert_eq!(body["day"], "2026-12-02");
    assert_eq!(body["keys"][0]["key"], "204");
    assert_eq!(body["keys"][0]["holder"], "alice");
    assert_eq!(body["keys"][0]["overdue"], true);
}

/// Inactive users: one alert per user per inactivity period; activity (or its absence since
/// creation) decides; a restart or a later day does not repeat it.
#[test]
fn inactive_users_are_alerted_once_per_inactivity_period() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let config = s.config(
        free_port(),
        "starttls",
        free_port(),
        &p.ca,
        "[\"inactive-user\"]",
        "inactive-days = 30",
    );
    let mut store = store(&s.db);
    let day = |d: i64| (DAY0 + d * 86_400) * 1000;
    add_user(&mut store, "alice", "Alice", day(0));
    add_user(&mut store, "bob", "Bob", day(0));
    activity(&mut store, "bob", day(20));
    let mut n = notifier(&s.db, &config);
    let alerted = |n: &Notifier| -> Vec<String> {
        n.rows()
            .expect("rows")
            .iter()
            .filter(|r| r.channel == "webhook")
            .map(|r| {
                let v: Value = serde_json::from_str(&r.payload).expect("payload");
                v["data"]["user"].as_str().expect("user").to_owned()
            })
            .collect()
    };
    assert_eq!(n.daily(day(29) / 1000).expect("daily"), 0);
    assert_eq!(
        n.daily(day(40) / 1000).expect("daily"),
        2,
        "alice: e-mail and webhook"
    );
    assert_eq!(alerted(&n), ["alice"]);
    assert_eq!(
        n.daily(day(40) / 1000 + 60).expect("daily"),
        0,
        "once a day"
    );
    drop(n);
    let mut n = notifier(&s.db, &config);
    assert_eq!(
        n.daily(day(41) / 1000).expect("daily"),
        0,
        "once per inactivity period"
    );
    activity(&mut store, "alice", day(45));
    assert_eq!(n.daily(day(70) / 1000).expect("daily"), 2, "bob: 50 days");
    assert_eq!(alerted(&n), ["alice", "bob"], "alice was back 25 days ago");
    assert_eq!(
        n.daily(day(80) / 1000).expect("daily"),
        2,
        "alice inactive again"
    );
    assert_eq!(
        alerted(&n),
        ["alice", "bob", "alice"],
        "bob: same period, no repeat"
    );
}

/// TLS is checked: a server whose certificate another CA signed is a delivery failure that
/// says so, on both channels, and nothing is received. With the right CA, SMTPS (TLS from
/// the first byte) delivers.
#[test]
fn a_certificate_from_another_ca_is_a_delivery_failure() {
    let s = setup();
    let good = pki(s.dir.path(), "good");
    let other = pki(s.dir.path(), "other");
    let (smtp_port, hook_port) = (free_port(), free_port());
    let smtp = smtp_server(&good, smtp_port, &s.path("smtp"), "tls");
    let hook = webhook_server(&good, hook_port, &s.path("hook"));
    let wrong = s.config(smtp_port, "tls", hook_port, &other.ca, "[\"all\"]", "");
    let mut store = store(&s.db);
    let mut n = notifier(&s.db, &wrong);
    n.follow(DAY0).expect("follow");
    alarm(&mut store, AlarmKind::Tamper, "cabinet", true, DAY0 * 1000);
    assert_eq!(n.follow(DAY0).expect("follow"), 2);
    let d = n.deliver_due(DAY0).expect("deliver");
    assert_eq!((d.sent, d.failed), (0, 2));
    for r in n.rows().expect("rows") {
        let error = r.last_error.expect("error");
        eprintln!("{}: {error}", r.channel);
        assert!(
            error.contains("UnknownIssuer") || error.contains("unknown issuer"),
            "{}: {error}",
            r.channel
        );
        assert_eq!(r.sent_at, None);
    }
    assert!(emails(&smtp.dir).is_empty() && posts(&hook.dir).is_empty());
    drop(n);
    let right = s.config(smtp_port, "tls", hook_port, &good.ca, "[\"all\"]", "");
    let mut n = notifier(&s.db, &right);
    let d = n.deliver_due(DAY0 + 3600).expect("deliver");
    assert_eq!((d.sent, d.failed), (2, 0));
    assert_eq!(emails(&smtp.dir).len(), 1);
    assert_eq!(posts(&hook.dir).len(), 1);
}

/// What the cursor does at the edges: with notifications turned off and on again
/// (`forget_cursor`) the entries recorded meanwhile are not alerted; a cursor past the head (a
/// database restored from an older copy) starts again at the head instead of waiting. Rows
/// undeliverable for a week are given up, not deleted.
#[test]
fn the_cursor_restarts_at_the_head_when_forgotten_or_ahead() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let config = s.config(free_port(), "starttls", free_port(), &p.ca, "[\"all\"]", "");
    let mut store = store(&s.db);
    let mut n = notifier(&s.db, &config);
    alarm(&mut store, AlarmKind::Tamper, "cabinet", true, DAY0 * 1000);
    assert_eq!(
        n.follow(DAY0).expect("follow"),
        0,
        "history before the first run"
    );
    alarm(
        &mut store,
        AlarmKind::Tamper,
        "cabinet",
        false,
        DAY0 * 1000 + 1,
    );
    assert_eq!(n.follow(DAY0).expect("follow"), 2);

    notify::forget_cursor(&s.db).expect("forget");
    alarm(
        &mut store,
        AlarmKind::DoorForced,
        "door",
        true,
        DAY0 * 1000 + 2,
    );
    assert_eq!(n.follow(DAY0).expect("follow"), 0, "recorded while off");
    alarm(
        &mut store,
        AlarmKind::DoorForced,
        "door",
        false,
        DAY0 * 1000 + 3,
    );
    assert_eq!(n.follow(DAY0).expect("follow"), 2);

    outbox_conn(&s.db)
        .execute(
            "UPDATE notify_state SET value = 1000 WHERE name = 'cursor'",
            [],
        )
        .expect("cursor ahead");
    assert_eq!(n.follow(DAY0).expect("follow"), 0);
    alarm(
        &mut store,
        AlarmKind::Overdue,
        "key:204",
        true,
        DAY0 * 1000 + 4,
    );
    assert_eq!(
        n.follow(DAY0).expect("follow"),
        2,
        "followed again from the head"
    );
    let alerts: Vec<String> = n
        .rows()
        .expect("rows")
        .iter()
        .filter(|r| r.channel == "email")
        .map(|r| r.alert.clone())
        .collect();
    assert_eq!(alerts, ["tamper", "door-forced", "overdue"]);

    // Nothing listens on the configured ports: a week later the rows are given up, kept with
    // their last error, and no longer due.
    let week = notify::schedule::EXPIRE_AFTER;
    let d = n.deliver_due(DAY0 + week).expect("deliver");
    assert_eq!((d.sent, d.failed, d.expired), (0, 0, 6));
    assert_eq!(n.next_due().expect("next due"), None);
    for r in n.rows().expect("rows") {
        assert_eq!(r.expired_at, Some(DAY0 + week));
        assert!(
            r.last_error.is_some_and(|e| e.contains("refused")),
            "{}",
            r.id
        );
    }
}

/// The daemon itself: policyd started with a `[notify]` section on a private bus with hwd on
/// the sim backend; the door opened while locked (a forced door, decided by policyd's core and
/// recorded in its audit chain) reaches the webhook.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_sends_a_forced_door_to_the_webhook() {
    use keywarden_dbus::hardware::HardwareSim1Proxy;
    use keywarden_testbus::{binary, current_user, wait_for_name, Daemon, PrivateBus};

    let s = setup();
    let p = pki(s.dir.path(), "a");
    let hook_port = free_port();
    let hook = webhook_server(&p, hook_port, &s.path("hook"));
    let bus = PrivateBus::start(
        &[
            "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
            "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
        ],
        &["keywarden", "keywarden-hw"],
        &["keywarden-admin", "keywarden-console"],
    );
    let root = keywarden_testbus::workspace_root();
    let _hwd = Daemon(
        Command::new(binary("keywarden-hwd"))
            .args(["--backend", "sim", "--allow-user", &current_user()])
            .arg("--board")
            .arg(root.join("crates/keywarden-hwd/boards/sim-demo.toml"))
            .args(["--bus-address", &bus.address])
            .spawn()
            .expect("start keywarden-hwd"),
    );
    let policy = bus.dir().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "time-zone = \"UTC\"\n[notify]\ncabinet = \"stack\"\n[[notify.webhook]]\n\
             url = \"https://127.0.0.1:{hook_port}/kw\"\nalerts = [\"door-forced\"]\n\
             ca-file = \"{}\"\nsecret-file = \"{}\"\n",
            p.ca.display(),
            s.path("hook-secret").display()
        ),
    )
    .expect("policy.toml");
    let conn = bus.connect().await;
    wait_for_name(&conn, "org.keywarden.Hardware1", WAIT).await;
    let db = bus.dir().join("data/keywarden.db");
    let _policyd = Daemon(
        Command::new(binary("keywarden-policyd"))
            .arg("--database")
            .arg(&db)
            .arg("--device-key")
            .arg(bus.dir().join("data/device-key.pem"))
            .arg("--badge-key")
            .arg(bus.dir().join("data/badge.key"))
            .arg("--config")
            .arg(&policy)
            .args(["--bus-address", &bus.address])
            .spawn()
            .expect("start keywarden-policyd"),
    );
    wait_for_name(&conn, "org.keywarden.Policy1", WAIT).await;
    // The notifier places its cursor at the head when it starts.
    let deadline = Instant::now() + WAIT;
    loop {
        let placed = rusqlite::Connection::open(&db).ok().and_then(|c| {
            c.query_row(
                "SELECT value FROM notify_state WHERE name = 'cursor'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok()
        });
        if placed.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's notifier never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sim = HardwareSim1Proxy::new(&conn).await.expect("sim proxy");
    sim.set_door(true).await.expect("open the door");
    let deadline = Instant::now() + WAIT;
    while posts(&hook.dir).is_empty() {
        assert!(Instant::now() < deadline, "no webhook from the daemon");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posts = posts(&hook.dir);
    let body = check_signed(&posts[0]);
    assert_eq!(body["cabinet"], "stack");
    assert_eq!(body["alert"], "door-forced");
    assert_eq!(body["state"], "raised");
    assert_eq!(body["subject"], "door");
}

/// A recipient the relay refuses (550) fails on its own, with the server's answer, while the
/// other recipient of the same pass is delivered.
#[test]
fn a_refused_recipient_does_not_hold_up_the_others() {
    let s = setup();
    let p = pki(s.dir.path(), "a");
    let (smtp_port, hook_port) = (free_port(), free_port());
    let smtp = smtp_server(&p, smtp_port, &s.path("smtp"), "starttls");
    let refused = "[[notify.email]]\nto = \"refused@example.com\"\nalerts = [\"all\"]";
    let config = s.config(
        smtp_port,
        "starttls",
        hook_port,
        &p.ca,
        "[\"tamper\"]",
        refused,
    );
    let mut store = store(&s.db);
    let mut n = notifier(&s.db, &config);
    n.follow(DAY0).expect("follow");
    alarm(&mut store, AlarmKind::Tamper, "cabinet", true, DAY0 * 1000);
    assert_eq!(n.follow(DAY0).expect("follow"), 3);
    let d = n.deliver_due(DAY0).expect("deliver");
    assert_eq!(
        (d.sent, d.failed),
        (1, 2),
        "the webhook server is not running"
    );
    let rows = n.rows().expect("rows");
    let by = |dest: &str| rows.iter().find(|r| r.destination == dest).expect(dest);
    let error = by("refused@example.com").last_error.clone().expect("error");
    assert!(
        error.contains("550") || error.contains("no such mailbox"),
        "{error}"
    );
    assert!(by("guard@example.com").sent_at.is_some());
    let mails = emails(&smtp.dir);
    assert_eq!(mails.len(), 1);
    assert_eq!(
        header(&mails[0], "X-Envelope-To"),
        Some("guard@example.com")
    );
}
