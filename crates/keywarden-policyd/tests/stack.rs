//! Integration tests of the whole host stack on a real `dbus-daemon` carrying the shipped policy
//! files: `keywarden-hwd` on the `sim` backend, `keywarden-policyd` on a real SQLite file, driven
//! through hwd's simulation surface exactly as a person at the cabinet would (badge, keypad,
//! slot sensors). The same flows on real gpio-sim and uinput devices run in the VM (`tests/vm`).
//!
//! The binaries are found next to this test's executable (`cargo test --workspace` builds them).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use keywarden_dbus::hardware::{Hardware1Proxy, HardwareSim1Proxy};
use keywarden_dbus::policy::Policy1Proxy;
use keywarden_testbus::binary;
use keywarden_testbus::{current_user, wait_for_name, Daemon, PrivateBus};
use tokio::time::{sleep, timeout};
use zbus::zvariant::Value;

const T: Duration = Duration::from_secs(15);
const BOARD: &str = "crates/keywarden-hwd/boards/sim-demo.toml";

struct Stack {
    bus: PrivateBus,
    _hwd: Daemon,
    policyd: Option<Daemon>,
    conn: zbus::Connection,
}

impl Stack {
    async fn start(policy_toml: &str) -> Stack {
        Stack::start_with(policy_toml, true).await
    }

    async fn start_with(policy_toml: &str, with_policy_files: bool) -> Stack {
        let policies: &[&str] = if with_policy_files {
            &[
                "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
                "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
            ]
        } else {
            &["crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf"]
        };
        let bus = PrivateBus::start(
            policies,
            &["keywarden", "keywarden-hw"],
            &["keywarden-admin", "keywarden-console"],
        );
        let root = keywarden_testbus::workspace_root();
        let hwd = Daemon(
            Command::new(binary("keywarden-hwd"))
                .args(["--backend", "sim", "--allow-user", &current_user()])
                .arg("--board")
                .arg(root.join(BOARD))
                .args(["--bus-address", &bus.address])
                .spawn()
                .expect("start keywarden-hwd"),
        );
        std::fs::write(bus.dir().join("policy.toml"), policy_toml).expect("policy.toml");
        let conn = bus.connect().await;
        wait_for_name(&conn, "org.keywarden.Hardware1", T).await;
        let mut stack = Stack {
            bus,
            _hwd: hwd,
            policyd: None,
            conn,
        };
        stack.start_policyd().await;
        stack
    }

    async fn start_policyd(&mut self) {
        let d = self.bus.dir();
        let child = Command::new(binary("keywarden-policyd"))
            .arg("--database")
            .arg(d.join("data/keywarden.db"))
            .arg("--device-key")
            .arg(d.join("data/identity/device-key.pem"))
            .arg("--badge-key")
            .arg(d.join("data/secrets/badge.key"))
            .arg("--config")
            .arg(d.join("policy.toml"))
            .args(["--bus-address", &self.bus.address])
            .spawn()
            .expect("start keywarden-policyd");
        self.policyd = Some(Daemon(child));
        wait_for_name(&self.conn, "org.keywarden.Policy1", T).await;
    }

    fn kill_policyd(&mut self) {
        self.policyd = None;
    }

    async fn policy(&self) -> Policy1Proxy<'static> {
        Policy1Proxy::new(&self.conn).await.expect("policy proxy")
    }

    async fn sim(&self) -> HardwareSim1Proxy<'static> {
        HardwareSim1Proxy::new(&self.conn).await.expect("sim proxy")
    }

    async fn hw(&self) -> Hardware1Proxy<'static> {
        Hardware1Proxy::new(&self.conn).await.expect("hw proxy")
    }
}

type Opts<'a> = HashMap<&'a str, Value<'a>>;

/// alice (staff, PIN 73914682, badge ALICE-7F3A9C0001), bob (staff, no permission for 204), keys 204
/// (slot 1), Pool (slot 2); reason MAINT.
async fn provision(p: &Policy1Proxy<'_>) {
    p.set_reason("MAINT", "maintenance", 0).await.unwrap();
    p.add_group("staff").await.unwrap();
    for (name, badge) in [("alice", "ALICE-7F3A9C0001"), ("bob", "BOB-5E1D2B0002")] {
        let mut o = Opts::new();
        o.insert("display-name", Value::from(name.to_uppercase()));
        p.add_user(name, "staff", &o).await.unwrap();
        p.set_pin(name, "73914682").await.unwrap();
        p.add_badge(name, badge).await.unwrap();
        p.add_member("staff", name).await.unwrap();
    }
    for (label, tag, slot) in [("204", "TAG-A1", 1u32), ("Pool", "TAG-B2", 2)] {
        let mut o = Opts::new();
        o.insert("home-slot", Value::from(slot));
        p.add_key(label, tag, "unit", &o).await.unwrap();
        p.place_key(label, slot).await.unwrap();
    }
    p.grant("user:alice", "key:204", "").await.unwrap();
    p.grant("group:staff", "key:Pool", "").await.unwrap();
}

async fn wait_state(p: &Policy1Proxy<'_>, want: &str) {
    let mut last = String::new();
    for _ in 0..300 {
        last = p.session_state().await.unwrap();
        if last == want {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("session state {last:?}, wanted {want:?}");
}

async fn login(sim: &HardwareSim1Proxy<'_>, p: &Policy1Proxy<'_>, badge: &str, pin: &str) {
    sim.scan_badge("badge", badge).await.unwrap();
    wait_state(p, "pin").await;
    let mut keys: Vec<String> = pin.chars().map(|c| c.to_string()).collect();
    keys.push("enter".into());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    sim.press_keys("keypad", &keys).await.unwrap();
}

async fn slot_released(hw: &Hardware1Proxy<'_>, slot: u32) -> bool {
    hw.slots()
        .await
        .unwrap()
        .iter()
        .any(|s| s.number == slot && s.released)
}

async fn next_denial(denied: &mut keywarden_dbus::policy::DeniedStream) -> String {
    let s = timeout(T, denied.next()).await.unwrap().unwrap();
    s.args().unwrap().reason.clone()
}

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn badge_pin_key_reason_releases_the_slot_and_everything_is_audited() {
    let stack = Stack::start("time-zone = \"UTC\"\n").await;
    let (p, sim, hw) = (stack.policy().await, stack.sim().await, stack.hw().await);
    assert_eq!(p.status().await.unwrap(), "ready");
    provision(&p).await;
    let mut granted = p.receive_granted().await.unwrap();

    login(&sim, &p, "ALICE-7F3A9C0001", "73914682").await;
    wait_state(&p, "choose-key").await;
    assert_eq!(p.session_user().await.unwrap(), "ALICE");
    let keys = p.list_keys().await.unwrap();
    let k204 = keys.iter().find(|k| k.label == "204").unwrap();
    assert!(k204.available, "{keys:?}");
    p.choose_key("204").await.unwrap();
    wait_state(&p, "choose-reason").await;
    assert!(!slot_released(&hw, 1).await);
    p.choose_reason("MAINT").await.unwrap();
    let g = timeout(T, granted.next()).await.unwrap().unwrap();
    let args = g.args().unwrap();
    assert_eq!((args.key.as_str(), args.slot), ("204", 1));
    wait_state(&p, "take-key").await;
    let mut released = false;
    for _ in 0..100 {
        if slot_released(&hw, 1).await {
            released = true;
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "slot 1 was not released");
    sim.set_slot(1, false).await.unwrap();
    wait_state(&p, "message").await;
    let all = p.list_all_keys().await.unwrap();
    let k = all.iter().find(|k| k.label == "204").unwrap();
    assert_eq!((k.holder.as_str(), k.slot), ("alice", 0));
    assert!(k.taken_at > 0 && k.due_at > k.taken_at);

    // The chain verifies on the device and off it, with the device's key.
    let report = p.verify_audit().await.unwrap();
    assert!(report.entries >= 15, "{report:?}");
    let path = stack.bus.dir().join("audit.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let n = p
        .export_audit(zbus::zvariant::Fd::from(&file), 1)
        .await
        .unwrap();
    drop(file);
    assert_eq!(n, report.entries);
    let key_hex = p.device_public_key().await.unwrap();
    let key = keywarden_audit::parse_public_key(&key_hex).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let off = keywarden_audit::verify_export(text.as_bytes(), Some(&key)).unwrap();
    assert_eq!(off.entries, n);
    for kind in [
        "\"granted\"",
        "\"removed\"",
        "\"authenticated\"",
        "\"admin\"",
    ] {
        assert!(text.contains(kind), "no {kind} in the export");
    }
    // Credentials never reach the audit trail.
    for secret in ["73914682", "ALICE-7F3A9C0001", "BOB-5E1D2B0002"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the audit trail"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn denials_open_nothing_and_say_why() {
    let stack = Stack::start("time-zone = \"UTC\"\npin-attempts = 2\n").await;
    let (p, sim, hw) = (stack.policy().await, stack.sim().await, stack.hw().await);
    provision(&p).await;
    let mut denied = p.receive_denied().await.unwrap();

    sim.scan_badge("badge", "NOBODY-9").await.unwrap();
    assert_eq!(next_denial(&mut denied).await, "unknown-badge");
    sleep(Duration::from_secs(6)).await; // the message times out back to idle

    // bob may not take 204.
    login(&sim, &p, "BOB-5E1D2B0002", "73914682").await;
    wait_state(&p, "choose-key").await;
    p.choose_key("204").await.unwrap();
    assert_eq!(next_denial(&mut denied).await, "not-permitted");
    let err = p.choose_reason("MAINT").await.unwrap_err();
    assert_eq!(error_name(&err), "org.keywarden.Policy1.Error.WrongState");
    p.cancel().await.unwrap();
    sleep(Duration::from_secs(6)).await;

    // Two wrong PINs lock alice out, with an alarm.
    let mut alarms = p.receive_alarm_changed().await.unwrap();
    login(&sim, &p, "ALICE-7F3A9C0001", "1111").await;
    assert_eq!(next_denial(&mut denied).await, "wrong-pin");
    sim.press_keys("keypad", &["1", "1", "1", "1", "enter"])
        .await
        .unwrap();
    assert_eq!(next_denial(&mut denied).await, "locked-out");
    let a = timeout(T, alarms.next()).await.unwrap().unwrap();
    let a = a.args().unwrap();
    assert_eq!(
        (a.kind.as_str(), a.subject.as_str(), a.active),
        ("pin-lockout", "user:alice", true)
    );
    let users = p.list_users().await.unwrap();
    assert!(
        users
            .iter()
            .find(|u| u.name == "alice")
            .unwrap()
            .locked_until
            > 0
    );

    for slot in 1..=8 {
        assert!(!slot_released(&hw, slot).await, "slot {slot} released");
    }
    assert_eq!(
        hw.door_lock_state().await.unwrap(),
        "locked",
        "the door opened"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_slot_return_and_forced_door_raise_alarms() {
    let stack = Stack::start("time-zone = \"UTC\"\n").await;
    let (p, sim) = (stack.policy().await, stack.sim().await);
    provision(&p).await;
    // Slots 3-8 hold no key in the records; empty two of them.
    sim.set_slot(4, false).await.unwrap();
    sim.set_slot(5, false).await.unwrap();
    let mut alarms = p.receive_alarm_changed().await.unwrap();

    login(&sim, &p, "ALICE-7F3A9C0001", "73914682").await;
    wait_state(&p, "choose-key").await;
    p.choose_key("204").await.unwrap();
    p.choose_reason("MAINT").await.unwrap();
    wait_state(&p, "take-key").await;
    sim.set_slot(1, false).await.unwrap();
    wait_state(&p, "message").await;
    sleep(Duration::from_secs(6)).await;

    // Return by tag: the service picks a free slot; the key goes into another one.
    sim.scan_badge("badge", "TAG-A1").await.unwrap();
    wait_state(&p, "return-key").await;
    let target = p.session_slot().await.unwrap();
    assert!([1, 4, 5].contains(&target), "slot {target}");
    let wrong = [1, 4, 5].into_iter().find(|s| *s != target).unwrap();
    sim.set_slot(wrong, true).await.unwrap();
    let a = timeout(T, alarms.next()).await.unwrap().unwrap();
    let a = a.args().unwrap();
    assert_eq!(
        (a.kind.as_str(), a.subject.as_str(), a.active),
        ("wrong-slot", "key:204", true)
    );
    assert!(p
        .session_prompt()
        .await
        .unwrap()
        .contains(&format!("slot {target}")));
    let active = p.list_alarms(true).await.unwrap();
    assert!(active.iter().any(|a| a.kind == "wrong-slot"), "{active:?}");

    // Moving it to the right slot clears the alarm.
    sim.set_slot(wrong, false).await.unwrap();
    let a = timeout(T, alarms.next()).await.unwrap().unwrap();
    assert!(!a.args().unwrap().active);
    sim.set_slot(target, true).await.unwrap();
    wait_state(&p, "message").await;

    // The door opened while locked: forced.
    sim.set_door(true).await.unwrap();
    let a = timeout(T, alarms.next()).await.unwrap().unwrap();
    let a = a.args().unwrap();
    assert_eq!((a.kind.as_str(), a.active), ("door-forced", true));
    let list = p.list_alarms(false).await.unwrap();
    let forced = list.iter().find(|a| a.kind == "door-forced").unwrap();
    p.acknowledge_alarm(forced.id, "checked: cleaner")
        .await
        .unwrap();
    let list = p.list_alarms(false).await.unwrap();
    let forced = list.iter().find(|a| a.kind == "door-forced").unwrap();
    assert!(!forced.acknowledged_by.is_empty());
    assert_eq!(forced.note, "checked: cleaner");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_policyd_keeps_its_records_and_chain() {
    let mut stack = Stack::start("time-zone = \"UTC\"\n").await;
    {
        let p = stack.policy().await;
        provision(&p).await;
    }
    let before = stack.policy().await.verify_audit().await.unwrap();
    stack.kill_policyd();
    stack.start_policyd().await;
    let p = stack.policy().await;
    let after = p.verify_audit().await.unwrap();
    assert!(after.entries >= before.entries);
    assert_eq!(p.list_users().await.unwrap().len(), 2);
    let err = p
        .add_user("alice", "staff", &Opts::new())
        .await
        .unwrap_err();
    assert_eq!(
        error_name(&err),
        "org.keywarden.Policy1.Error.AlreadyExists"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_database_keeps_every_lock_shut_and_says_why() {
    let mut stack = Stack::start("time-zone = \"UTC\"\n").await;
    provision(&stack.policy().await).await;
    stack.kill_policyd();
    let db = stack.bus.dir().join("data/keywarden.db");
    // Overwrite the middle of the file (and drop the WAL) as a failing flash would.
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid.saturating_sub(4096)..mid] {
        *b = 0xA5;
    }
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&db, bytes).unwrap();
    stack.start_policyd().await;
    let (p, sim, hw) = (stack.policy().await, stack.sim().await, stack.hw().await);
    let status = p.status().await.unwrap();
    assert!(status.starts_with("out of service"), "{status}");
    sim.scan_badge("badge", "ALICE-7F3A9C0001").await.unwrap();
    sleep(Duration::from_millis(500)).await;
    assert_eq!(p.session_state().await.unwrap(), "message");
    let err = p.list_alarms(true).await.unwrap_err();
    assert_eq!(error_name(&err), "org.keywarden.Policy1.Error.NotReady");
    for slot in 1..=8 {
        assert!(!slot_released(&hw, slot).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_errors_are_specific() {
    let stack = Stack::start("time-zone = \"UTC\"\n").await;
    let p = stack.policy().await;
    provision(&p).await;
    let cases: Vec<(zbus::Error, &str)> = vec![
        (p.set_pin("alice", "1234").await.unwrap_err(), "WeakPin"),
        (p.set_pin("nobody", "8642").await.unwrap_err(), "NotFound"),
        (
            p.add_badge("bob", "ALICE-7F3A9C0001").await.unwrap_err(),
            "AlreadyExists",
        ),
        (
            p.add_user("Bad Name", "staff", &Opts::new())
                .await
                .unwrap_err(),
            "InvalidArgument",
        ),
        (
            p.add_user("carol", "janitor", &Opts::new())
                .await
                .unwrap_err(),
            "InvalidArgument",
        ),
        (
            p.grant("user:alice", "kind:restricted", "")
                .await
                .unwrap_err(),
            "InvalidArgument",
        ),
        (p.remove_schedule("nope").await.unwrap_err(), "NotFound"),
        (p.add_badge("bob", "TAG-A1").await.unwrap_err(), "Conflict"),
        (
            p.add_key("Gym", "BOB-5E1D2B0002", "amenity", &Opts::new())
                .await
                .unwrap_err(),
            "Conflict",
        ),
    ];
    for (err, name) in cases {
        assert_eq!(
            error_name(&err),
            format!("org.keywarden.Policy1.Error.{name}"),
            "{err}"
        );
    }
    // Reservations block others, and overlapping ones are refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    p.reserve("Pool", "alice", now - 60, now + 3600)
        .await
        .unwrap();
    let err = p.reserve("Pool", "bob", now, now + 60).await.unwrap_err();
    assert_eq!(error_name(&err), "org.keywarden.Policy1.Error.Conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_interface_matches_the_committed_xml() {
    let stack = Stack::start("").await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&stack.conn)
        .destination("org.keywarden.Policy1")
        .unwrap()
        .path("/org/keywarden/Policy1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let xml = proxy.introspect().await.unwrap();
    keywarden_dbus::xml::check_against_committed("org.keywarden.Policy1", &xml).unwrap();
}

/// Defence in depth: with no Policy1 policy file at all, a caller as uid 65534 still gets
/// AccessDenied from policyd's own check, and nothing changes. Needs root to act as another uid.
#[tokio::test(flavor = "multi_thread")]
async fn another_uid_is_refused_by_the_method_check() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: acting as another uid needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let stack = Stack::start_with("", false).await;
    std::fs::set_permissions(stack.bus.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", stack.bus.address))
        .args([
            "--print-reply",
            "--dest=org.keywarden.Policy1",
            "/org/keywarden/Policy1",
            "org.keywarden.Policy1.AddGroup",
            "string:intruders",
        ])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("dbus-send must be installed (apt-get install dbus-bin)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("org.keywarden.Policy1.Error.AccessDenied"),
        "{stderr}"
    );
    assert!(stack.policy().await.list_groups().await.unwrap().is_empty());
}
