//! Reports on the whole host stack: a real `dbus-daemon` with the shipped policy files,
//! `keywarden-hwd` on the `sim` backend, `keywarden-policyd` on a real SQLite file, and the
//! `keywarden` CLI binary, whose standard output the service writes each report to.
//!
//! The binaries are found next to this test's executable (`cargo test --workspace` builds them).

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use keywarden_dbus::hardware::HardwareSim1Proxy;
use keywarden_dbus::policy::Policy1Proxy;
use keywarden_testbus::binary;
use keywarden_testbus::{current_group, current_user, wait_for_name, Daemon, PrivateBus};
use tokio::time::sleep;
use zbus::zvariant::Value;

const T: Duration = Duration::from_secs(15);
const BOARD: &str = "crates/keywarden-hwd/boards/sim-demo.toml";

/// dbus-daemon, hwd (sim) and policyd with extra arguments (its admin and console groups).
struct Stack {
    bus: PrivateBus,
    _hwd: Daemon,
    _policyd: Daemon,
    conn: zbus::Connection,
}

impl Stack {
    async fn start(with_policy_file: bool, policyd_args: &[&str]) -> Stack {
        let mut policies = vec!["crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf"];
        if with_policy_file {
            policies.push("crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf");
        }
        let bus = PrivateBus::start(
            &policies,
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
        let d = bus.dir();
        std::fs::write(d.join("policy.toml"), "time-zone = \"UTC\"\n").expect("policy.toml");
        let conn = bus.connect().await;
        wait_for_name(&conn, "org.keywarden.Hardware1", T).await;
        let policyd = Daemon(
            Command::new(binary("keywarden-policyd"))
                .arg("--database")
                .arg(d.join("data/keywarden.db"))
                .arg("--device-key")
                .arg(d.join("data/identity/device-key.pem"))
                .arg("--badge-key")
                .arg(d.join("data/secrets/badge.key"))
                .arg("--config")
                .arg(d.join("policy.toml"))
                .args(["--bus-address", &bus.address])
                .args(policyd_args)
                .spawn()
                .expect("start keywarden-policyd"),
        );
        wait_for_name(&conn, "org.keywarden.Policy1", T).await;
        Stack {
            bus,
            _hwd: hwd,
            _policyd: policyd,
            conn,
        }
    }

    async fn policy(&self) -> Policy1Proxy<'static> {
        Policy1Proxy::new(&self.conn).await.expect("policy proxy")
    }

    async fn sim(&self) -> HardwareSim1Proxy<'static> {
        HardwareSim1Proxy::new(&self.conn).await.expect("sim proxy")
    }

    /// Run the CLI (optionally as another uid and gid) on the blocking pool.
    async fn cli(&self, args: &[&str], as_ids: Option<(u32, u32)>) -> Output {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(binary("keywarden"));
        cmd.args(["--bus-address", &self.bus.address]).args(args);
        if let Some((uid, gid)) = as_ids {
            cmd.uid(uid).gid(gid);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run keywarden"))
            .await
            .expect("cli task")
    }

    /// The CLI's standard output, which must have succeeded.
    async fn report(&self, args: &[&str]) -> String {
        let o = self.cli(args, None).await;
        assert!(
            o.status.success(),
            "keywarden {args:?}: {:?}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).expect("utf-8 report")
    }
}

type Opts<'a> = HashMap<&'a str, Value<'a>>;

/// alice (may take 204) and bob (may not), PIN 73914682; key 204 in slot 1; reason MAINT.
async fn provision(p: &Policy1Proxy<'_>) {
    p.set_reason("MAINT", "maintenance", 0).await.unwrap();
    for (name, badge) in [("alice", "ALICE-7F3A9C0001"), ("bob", "BOB-5E1D2B0002")] {
        p.add_user(name, "staff", &Opts::new()).await.unwrap();
        p.set_pin(name, "73914682").await.unwrap();
        p.add_badge(name, badge).await.unwrap();
    }
    let mut o = Opts::new();
    o.insert("home-slot", Value::from(1u32));
    p.add_key("204", "TAG-A1", "unit", &o).await.unwrap();
    p.place_key("204", 1).await.unwrap();
    p.grant("user:alice", "key:204", "").await.unwrap();
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

async fn login(sim: &HardwareSim1Proxy<'_>, p: &Policy1Proxy<'_>, badge: &str) {
    sim.scan_badge("badge", badge).await.unwrap();
    wait_state(p, "pin").await;
    sim.press_keys("keypad", &["7", "3", "9", "1", "4", "6", "8", "2", "enter"])
        .await
        .unwrap();
    wait_state(p, "choose-key").await;
}

/// Back to idle: the message after a checkout, return or denial times out.
async fn idle(p: &Policy1Proxy<'_>) {
    sleep(Duration::from_secs(6)).await;
    wait_state(p, "idle").await;
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    assert!(text.ends_with("\r\n"), "CSV lines end in CRLF: {text:?}");
    text.split_terminator("\r\n")
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_of_a_real_checkout_denial_and_return_in_every_format() {
    // Members of the test's own group are admins (as root, uid 0 is anyway).
    let stack = Stack::start(true, &["--admin-group", &current_group()]).await;
    let (p, sim) = (stack.policy().await, stack.sim().await);
    provision(&p).await;

    // alice takes 204 for MAINT.
    login(&sim, &p, "ALICE-7F3A9C0001").await;
    p.choose_key("204").await.unwrap();
    p.choose_reason("MAINT").await.unwrap();
    wait_state(&p, "take-key").await;
    sim.set_slot(1, false).await.unwrap();
    wait_state(&p, "message").await;

    let out = csv_rows(
        &stack
            .report(&["report", "keys-out", "--format", "csv"])
            .await,
    );
    assert_eq!(
        out[0],
        ["key", "holder", "state", "since", "reason", "due", "overdue", "witness", "slot"]
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        (&out[1][0], &out[1][1], &out[1][2], &out[1][4], &out[1][6]),
        (
            &"204".to_owned(),
            &"alice".to_owned(),
            &"out".to_owned(),
            &"MAINT".to_owned(),
            &"false".to_owned()
        )
    );
    idle(&p).await;

    // bob is refused 204.
    login(&sim, &p, "BOB-5E1D2B0002").await;
    p.choose_key("204").await.unwrap();
    p.cancel().await.unwrap();
    idle(&p).await;

    // Anyone returns it by its tag, into the slot the cabinet picks.
    sim.scan_badge("badge", "TAG-A1").await.unwrap();
    wait_state(&p, "return-key").await;
    let slot = p.session_slot().await.unwrap();
    sim.set_slot(slot, true).await.unwrap();
    wait_state(&p, "message").await;

    // The unit report, as JSON: who entered and why, in order.
    let text = stack.report(&["--json", "report", "key", "204"]).await;
    let rows: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
    let rows = rows.as_array().expect("an array");
    let cabinet: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| r["event"] != "admin")
        .map(|r| {
            (
                r["event"].as_str().unwrap(),
                r["who"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        cabinet,
        [
            ("granted", "alice", "MAINT"),
            ("removed", "alice", "MAINT"),
            ("denied", "bob", "-"),
            ("return-started", "", "-"),
            ("returned", "", "MAINT"),
        ],
        "{text}"
    );
    assert!(rows.iter().any(|r| r["event"] == "admin"), "{text}");
    let denied = rows.iter().find(|r| r["event"] == "denied").unwrap();
    assert!(
        denied["note"].as_str().unwrap().starts_with("key-out: "),
        "{denied}"
    );
    let returned = rows.iter().find(|r| r["event"] == "returned").unwrap();
    assert_eq!(returned["slot"], slot.to_string());

    // The same as CSV and as a table.
    let out = csv_rows(
        &stack
            .report(&["report", "key", "204", "--format", "csv"])
            .await,
    );
    assert_eq!(out.len(), rows.len() + 1);
    assert_eq!(
        out[0],
        ["at", "event", "who", "subject", "reason", "due", "slot", "note"]
    );
    let granted = out.iter().find(|r| r[1] == "granted").unwrap();
    assert_eq!((&granted[2][..], &granted[4][..]), ("alice", "MAINT"));
    assert!(
        granted[0].ends_with('Z') && granted[5].ends_with('Z'),
        "{granted:?}"
    );
    let table = stack.report(&["report", "key", "204"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), rows.len() + 1, "{table}");
    assert!(
        lines[0].starts_with("AT  ") && lines[0].contains("REASON"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("granted") && l.contains("alice") && l.contains("MAINT")),
        "{table}"
    );
    // A limit and a range.
    let text = stack
        .report(&["report", "key", "204", "--json", "--limit", "1"])
        .await;
    assert_eq!(text.lines().count(), 3, "{text}");
    let text = stack
        .report(&[
            "report",
            "key",
            "204",
            "--from",
            "2000-01-01",
            "--to",
            "2000-01-02",
        ])
        .await;
    assert_eq!(text.lines().count(), 1, "{text}");

    // Denials; nothing out any more.
    let text = stack.report(&["--json", "report", "denials"]).await;
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["who"] == "bob" && r["subject"] == "key:204"),
        "{text}"
    );
    assert_eq!(
        stack.report(&["--json", "report", "keys-out"]).await,
        "[]\n"
    );

    // Specific errors.
    let o = stack.cli(&["report", "key", "999"], None).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no key \"999\""), "{err}");
    let o = stack
        .cli(&["report", "alarms", "--user", "alice"], None)
        .await;
    assert_eq!(o.status.code(), Some(2));
    let o = stack
        .cli(
            &[
                "report",
                "denials",
                "--from",
                "2026-12-02",
                "--to",
                "2026-12-01",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ends before it starts"), "{err}");
}

/// A caller who may use the console but is not an admin gets AccessDenied from policyd's own
/// check. As root the CLI runs as uid/gid 65534 (nogroup = console group here) with no Policy1
/// bus policy in the way; otherwise the test's own group is made console-only.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_admin_caller_is_refused_a_report() {
    let root = nix::unistd::geteuid().is_root();
    let (stack, as_ids) = if root {
        let stack = Stack::start(false, &["--console-group", "nogroup"]).await;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(stack.bus.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        (stack, Some((65534, 65534)))
    } else {
        let group = current_group();
        let args = [
            "--admin-group",
            "keywarden-no-such-group",
            "--console-group",
            &group,
        ];
        (Stack::start(true, &args).await, None)
    };
    // A console method works for this caller, so the bus let it through ...
    let o = stack.cli(&["session", "status"], as_ids).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // ... and the report is refused by the method check, with nothing written.
    let o = stack.cli(&["report", "keys-out"], as_ids).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("may not call Report"), "{err}");
    assert!(o.stdout.is_empty());
}
