//! The `keywarden` binary against a fake `org.keywarden.Policy1` on a private `dbus-daemon`.
//!
//! The fake implements every member of the committed XML with zbus's `#[interface]` (its
//! introspection is checked against the XML first), so these tests pin down that the XML, the
//! `keywarden-dbus` proxy and the CLI agree on names, argument order and types, including the
//! file descriptor of `ExportAudit`; and that errors come out as
//! `keywarden: <command>: <message>` with the documented exit codes.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keywarden_dbus::names::{POLICY_BUS_NAME, POLICY_INTERFACE, POLICY_PATH};
use keywarden_dbus::policy::{
    AlarmInfo, AuditReport, GroupInfo, HolidayInfo, KeyChoice, KeyInfo, PermissionInfo,
    PolicyError, ReasonInfo, ReservationInfo, ScheduleInfo, SlotInfo, UserInfo, WindowSpec,
};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedFd, OwnedValue};

/// What the fake was called with, for the tests to check.
#[derive(Debug, Default)]
struct Seen {
    calls: Vec<String>,
    options: HashMap<String, OwnedValue>,
    users: Vec<String>,
    pin: Option<String>,
    windows: Vec<WindowSpec>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Seen>>);

impl Fake {
    fn note(&self, call: String) {
        if let Ok(mut seen) = self.0.lock() {
            seen.calls.push(call);
        }
    }
}

fn user_info(name: &str) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        display_name: "Bob Smith".to_owned(),
        role: "staff".to_owned(),
        active: true,
        valid_from: 0,
        valid_until: 1_796_112_000,
        factors: "badge+pin".to_owned(),
        has_pin: true,
        badges: 1,
        fingerprints: vec![3],
        groups: vec!["cleaners".to_owned()],
        locked_until: 0,
        keys_out: 0,
    }
}

#[zbus::interface(name = "org.keywarden.Policy1")]
impl Fake {
    #[zbus(out_args("keys"))]
    async fn list_keys(&self) -> Result<Vec<KeyChoice>, PolicyError> {
        Err(PolicyError::WrongState("no one is signed in".into()))
    }
    #[zbus(out_args("reasons"))]
    async fn list_reasons(&self) -> Result<Vec<ReasonInfo>, PolicyError> {
        Ok(vec![ReasonInfo {
            code: "MAINT".into(),
            description: "Maintenance".into(),
            max_minutes: 0,
        }])
    }
    async fn choose_key(&self, key: String) -> Result<(), PolicyError> {
        self.note(format!("ChooseKey {key}"));
        Ok(())
    }
    async fn choose_reason(&self, code: String) -> Result<(), PolicyError> {
        self.note(format!("ChooseReason {code}"));
        Ok(())
    }
    async fn cancel(&self) -> Result<(), PolicyError> {
        Ok(())
    }
    async fn add_user(
        &self,
        name: String,
        role: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        if seen.users.contains(&name) {
            return Err(PolicyError::AlreadyExists(format!(
                "user {name:?} already exists"
            )));
        }
        seen.calls.push(format!("AddUser {name} {role}"));
        seen.users.push(name);
        seen.options = options;
        Ok(())
    }
    async fn update_user(
        &self,
        name: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("UpdateUser {name}"));
        seen.options = options;
        Ok(())
    }
    async fn remove_user(&self, name: String) -> Result<(), PolicyError> {
        Err(PolicyError::NotFound(format!("no user {name:?}")))
    }
    async fn unlock_user(&self, name: String) -> Result<(), PolicyError> {
        self.note(format!("UnlockUser {name}"));
        Ok(())
    }
    #[zbus(out_args("users"))]
    async fn list_users(&self) -> Result<Vec<UserInfo>, PolicyError> {
        Ok(vec![user_info("bob")])
    }
    async fn set_pin(&self, user: String, pin: String) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("SetPin {user}"));
        seen.pin = Some(pin);
        Ok(())
    }
    async fn add_badge(&self, user: String, code: String) -> Result<(), PolicyError> {
        self.note(format!("AddBadge {user} {code}"));
        Ok(())
    }
    async fn clear_badges(&self, user: String) -> Result<(), PolicyError> {
        self.note(format!("ClearBadges {user}"));
        Ok(())
    }
    #[zbus(out_args("template"))]
    async fn enroll_fingerprint(&self, user: String) -> Result<u32, PolicyError> {
        self.note(format!("EnrollFingerprint {user}"));
        Ok(7)
    }
    async fn remove_fingerprint(&self, template: u32) -> Result<(), PolicyError> {
        self.note(format!("RemoveFingerprint {template}"));
        Ok(())
    }
    async fn add_group(&self, name: String) -> Result<(), PolicyError> {
        self.note(format!("AddGroup {name}"));
        Ok(())
    }
    async fn remove_group(&self, name: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveGroup {name}"));
        Ok(())
    }
    async fn add_member(&self, group: String, user: String) -> Result<(), PolicyError> {
        self.note(format!("AddMember {group} {user}"));
        Ok(())
    }
    async fn remove_member(&self, group: String, user: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveMember {group} {user}"));
        Ok(())
    }
    #[zbus(out_args("groups"))]
    async fn list_groups(&self) -> Result<Vec<GroupInfo>, PolicyError> {
        Ok(vec![])
    }
    async fn add_key(
        &self,
        label: String,
        tag: String,
        kind: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("AddKey {label} {tag} {kind}"));
        seen.options = options;
        Ok(())
    }
    async fn update_key(
        &self,
        label: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("UpdateKey {label}"));
        seen.options = options;
        Ok(())
    }
    async fn remove_key(&self, label: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveKey {label}"));
        Ok(())
    }
    async fn place_key(&self, label: String, slot: u32) -> Result<(), PolicyError> {
        self.note(format!("PlaceKey {label} {slot}"));
        Ok(())
    }
    #[zbus(out_args("keys"))]
    async fn list_all_keys(&self) -> Result<Vec<KeyInfo>, PolicyError> {
        Ok(vec![KeyInfo {
            label: "204".into(),
            tag: "T-0001".into(),
            kind: "unit".into(),
            notes: "resident has a dog".into(),
            home_slot: 3,
            critical: false,
            active: true,
            slot: 0,
            holder: "bob".into(),
            taken_at: 1_796_112_000,
            due_at: 1_796_115_600,
        }])
    }
    #[zbus(out_args("slots"))]
    async fn list_slots(&self) -> Result<Vec<SlotInfo>, PolicyError> {
        Ok(vec![])
    }
    #[zbus(out_args("id"))]
    async fn grant(
        &self,
        subject: String,
        target: String,
        schedule: String,
    ) -> Result<i64, PolicyError> {
        self.note(format!("Grant {subject} {target} {schedule:?}"));
        Ok(12)
    }
    async fn revoke(&self, id: i64) -> Result<(), PolicyError> {
        self.note(format!("Revoke {id}"));
        Ok(())
    }
    #[zbus(out_args("permissions"))]
    async fn list_permissions(&self) -> Result<Vec<PermissionInfo>, PolicyError> {
        Ok(vec![])
    }
    async fn set_schedule(
        &self,
        name: String,
        windows: Vec<WindowSpec>,
        on_holidays: bool,
    ) -> Result<(), PolicyError> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("SetSchedule {name} {on_holidays}"));
        seen.windows = windows;
        Ok(())
    }
    async fn remove_schedule(&self, name: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveSchedule {name}"));
        Ok(())
    }
    #[zbus(out_args("schedules"))]
    async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>, PolicyError> {
        Ok(vec![ScheduleInfo {
            name: "office".into(),
            windows: vec![WindowSpec {
                days: 0b001_1111,
                start: 480,
                end: 1080,
            }],
            on_holidays: false,
        }])
    }
    async fn add_holiday(&self, date: String, name: String) -> Result<(), PolicyError> {
        self.note(format!("AddHoliday {date} {name}"));
        Ok(())
    }
    async fn remove_holiday(&self, date: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveHoliday {date}"));
        Ok(())
    }
    #[zbus(out_args("holidays"))]
    async fn list_holidays(&self) -> Result<Vec<HolidayInfo>, PolicyError> {
        Ok(vec![])
    }
    async fn set_reason(
        &self,
        code: String,
        description: String,
        max_minutes: u32,
    ) -> Result<(), PolicyError> {
        self.note(format!("SetReason {code} {description} {max_minutes}"));
        Ok(())
    }
    async fn remove_reason(&self, code: String) -> Result<(), PolicyError> {
        self.note(format!("RemoveReason {code}"));
        Ok(())
    }
    #[zbus(out_args("id"))]
    async fn reserve(
        &self,
        key: String,
        user: String,
        from: i64,
        until: i64,
    ) -> Result<i64, PolicyError> {
        self.note(format!("Reserve {key} {user} {from} {until}"));
        Ok(5)
    }
    async fn cancel_reservation(&self, id: i64) -> Result<(), PolicyError> {
        self.note(format!("CancelReservation {id}"));
        Ok(())
    }
    #[zbus(out_args("reservations"))]
    async fn list_reservations(&self) -> Result<Vec<ReservationInfo>, PolicyError> {
        Ok(vec![])
    }
    #[zbus(out_args("alarms"))]
    async fn list_alarms(&self, active_only: bool) -> Result<Vec<AlarmInfo>, PolicyError> {
        self.note(format!("ListAlarms {active_only}"));
        Ok(vec![])
    }
    async fn acknowledge_alarm(&self, id: i64, note: String) -> Result<(), PolicyError> {
        self.note(format!("AcknowledgeAlarm {id} {note}"));
        Ok(())
    }
    #[zbus(out_args("entries"))]
    async fn export_audit(&self, fd: OwnedFd, from_seq: u64) -> Result<u64, PolicyError> {
        let fd: std::os::fd::OwnedFd = fd.into();
        let mut file = std::fs::File::from(fd);
        writeln!(file, "{{\"from_seq\":{from_seq}}}")
            .map_err(|e| PolicyError::Storage(e.to_string()))?;
        Ok(1)
    }
    #[zbus(out_args("report"))]
    async fn verify_audit(&self) -> Result<AuditReport, PolicyError> {
        Err(PolicyError::AuditBroken(
            "entry 3 does not match its stored hash".into(),
        ))
    }
    #[zbus(out_args("key"))]
    async fn device_public_key(&self) -> Result<String, PolicyError> {
        Ok("ab".repeat(32))
    }
    #[zbus(out_args("rows"))]
    async fn report(
        &self,
        kind: String,
        fd: OwnedFd,
        options: HashMap<String, OwnedValue>,
    ) -> Result<u64, PolicyError> {
        let fd: std::os::fd::OwnedFd = fd.into();
        let mut file = std::fs::File::from(fd);
        writeln!(file, "report {kind}").map_err(|e| PolicyError::Storage(e.to_string()))?;
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push(format!("Report {kind}"));
        seen.options = options;
        Ok(1)
    }

    #[zbus(out_args("size", "manifest"))]
    async fn diagnostic_bundle(
        &self,
        fd: OwnedFd,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(u64, String), PolicyError> {
        let fd: std::os::fd::OwnedFd = fd.into();
        let mut file = std::fs::File::from(fd);
        write!(file, "bundle").map_err(|e| PolicyError::Storage(e.to_string()))?;
        let mut seen = self
            .0
            .lock()
            .map_err(|_| PolicyError::Storage("poisoned".into()))?;
        seen.calls.push("DiagnosticBundle".into());
        seen.options = options;
        let manifest = r#"{"format":1,"created":"2026-12-01T08:00:00Z","created_unix":1796112000,"device_key":"ab","serial":null,"files":[{"name":"summary.json","size":2,"sha256":"00","truncated":false}]}"#;
        Ok((6, manifest.into()))
    }

    #[zbus(signal)]
    async fn denied(emitter: &SignalEmitter<'_>, reason: &str, message: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    async fn granted(
        emitter: &SignalEmitter<'_>,
        key: &str,
        slot: u32,
        due: i64,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    async fn alarm_changed(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        subject: &str,
        active: bool,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn session_state(&self) -> String {
        "choose-key".into()
    }
    #[zbus(property)]
    async fn session_user(&self) -> String {
        "Bob Smith".into()
    }
    #[zbus(property)]
    async fn session_prompt(&self) -> String {
        "Type a key number".into()
    }
    #[zbus(property)]
    async fn session_key(&self) -> String {
        String::new()
    }
    #[zbus(property)]
    async fn session_notes(&self) -> String {
        String::new()
    }
    #[zbus(property)]
    async fn session_slot(&self) -> u32 {
        0
    }
    #[zbus(property)]
    async fn session_entry(&self) -> String {
        "20".into()
    }
    #[zbus(property)]
    async fn pin_length(&self) -> u32 {
        0
    }
    #[zbus(property)]
    async fn active_alarms(&self) -> u32 {
        1
    }
    #[zbus(property)]
    async fn status(&self) -> String {
        "ready".into()
    }
}

/// A private bus daemon, and the fake on it (served from its own thread and runtime, so the test
/// thread can run the CLI synchronously).
struct Bus {
    dir: tempfile::TempDir,
    address: String,
    daemon: Child,
    seen: Arc<Mutex<Seen>>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        drop(self.daemon.kill());
        drop(self.daemon.wait());
    }
}

fn start_bus() -> (tempfile::TempDir, String, Child) {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("system.d");
    std::fs::create_dir(&policy_dir).unwrap();
    let socket = dir.path().join("bus");
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/bus/private-system-bus.conf.in"
    ))
    .unwrap();
    let config = template
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@POLICY_DIR@", &policy_dir.display().to_string());
    let config_path = dir.path().join("bus.conf");
    std::fs::write(&config_path, config).unwrap();
    // `--print-address` writes the address once the daemon listens; the socket file exists
    // from bind(), before listen(), so waiting for the file alone lets a connection be refused.
    let mut daemon = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config_path.display()))
        .args(["--nofork", "--nopidfile", "--print-address"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon must be installed (apt-get install dbus-daemon)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(!line.trim().is_empty(), "dbus-daemon printed no address");
    (dir, format!("unix:path={}", socket.display()), daemon)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Start a bus with the fake serving on it; returns once the name is owned.
fn start(serve: bool) -> Bus {
    let (dir, address, daemon) = start_bus();
    let fake = Fake::default();
    let seen = fake.0.clone();
    if serve {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let addr = address.clone();
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let conn = zbus::connection::Builder::address(addr.as_str())
                    .unwrap()
                    .serve_at(POLICY_PATH, fake)
                    .unwrap()
                    .name(POLICY_BUS_NAME)
                    .unwrap()
                    .build()
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                // Serve until the test process ends.
                std::future::pending::<()>().await;
                drop(conn);
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    Bus {
        dir,
        address,
        daemon,
        seen,
    }
}

impl Bus {
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .arg("--bus-address")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn calls(&self) -> Vec<String> {
        self.seen.lock().unwrap().calls.clone()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "failed: {o:?}\n{}", stderr(o));
}

#[test]
fn the_fake_serves_exactly_the_committed_xml() {
    let bus = start(true);
    runtime().block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
            .destination(POLICY_BUS_NAME)
            .unwrap()
            .path(POLICY_PATH)
            .unwrap()
            .build()
            .await
            .unwrap();
        let xml = proxy.introspect().await.unwrap();
        keywarden_dbus::xml::check_against_committed(POLICY_INTERFACE, &xml).unwrap();
    });
}

#[test]
fn user_add_sends_typed_options_and_reports_duplicates() {
    let bus = start(true);
    let o = bus.cli(&[
        "user",
        "add",
        "bob",
        "--role",
        "staff",
        "--display-name",
        "Bob Smith",
        "--valid-until",
        "2026-12-01T08:00:00Z",
        "--max-keys-out",
        "2",
    ]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    {
        let seen = bus.seen.lock().unwrap();
        assert_eq!(seen.calls, ["AddUser bob staff"]);
        let get = |k: &str| seen.options.get(k).map(|v| format!("{:?}", **v));
        assert_eq!(seen.options.len(), 3, "{:?}", seen.options);
        assert_eq!(get("display-name").as_deref(), Some(r#"Str("Bob Smith")"#));
        assert_eq!(get("valid-until").as_deref(), Some("I64(1796112000)"));
        assert_eq!(get("max-keys-out").as_deref(), Some("U32(2)"));
    }

    let o = bus.cli(&["user", "add", "bob", "--role", "staff"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "keywarden: user add bob: user \"bob\" already exists\n"
    );
}

#[test]
fn user_update_clears_and_sets_active() {
    let bus = start(true);
    assert_ok(&bus.cli(&[
        "user",
        "update",
        "bob",
        "--valid-from",
        "none",
        "--active",
        "false",
        "--role",
        "admin",
    ]));
    let seen = bus.seen.lock().unwrap();
    let get = |k: &str| seen.options.get(k).map(|v| format!("{:?}", **v));
    assert_eq!(get("valid-from").as_deref(), Some("I64(0)"));
    assert_eq!(get("active").as_deref(), Some("Bool(false)"));
    assert_eq!(get("role").as_deref(), Some(r#"Str("admin")"#));
}

#[test]
fn lists_print_tables_or_json() {
    let bus = start(true);
    let o = bus.cli(&["--json", "user", "list"]);
    assert_ok(&o);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users[0]["name"], "bob");
    assert_eq!(users[0]["valid_until"], 1_796_112_000);
    assert_eq!(users[0]["fingerprints"][0], 3);

    let o = bus.cli(&["user", "list"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with("NAME  DISPLAY NAME  ROLE   ACTIVE"),
        "{text}"
    );
    assert!(text.contains("\nbob   Bob Smith     staff  yes"), "{text}");

    let o = bus.cli(&["key", "list"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with("LABEL  TAG     KIND  SLOT  HOME"),
        "{text}"
    );
    assert!(text.contains("resident has a dog"), "{text}");

    let o = bus.cli(&["schedule", "list"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("office  no           mon-fri 08:00-18:00"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_pin_comes_from_stdin_not_argv() {
    let bus = start(true);
    assert_ok(&bus.cli_with_stdin(&["user", "pin", "bob"], "482916\n"));
    assert_eq!(bus.seen.lock().unwrap().pin.as_deref(), Some("482916"));

    let o = bus.cli_with_stdin(&["user", "pin", "bob"], "");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "keywarden: user pin bob: no PIN on standard input\n"
    );
}

#[test]
fn commands_with_results_print_them() {
    let bus = start(true);
    let o = bus.cli(&["perm", "grant", "--group", "cleaners", "--kind", "amenity"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "permission 12\n");
    let o = bus.cli(&["--json", "user", "enroll-finger", "bob"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["template"], 7);
    assert_ok(&bus.cli(&[
        "schedule",
        "set",
        "office",
        "--window",
        "sat,sun 10:00-14:00",
    ]));
    assert_ok(&bus.cli(&["holiday", "add", "2026-12-25", "Christmas", "Day"]));
    assert_ok(&bus.cli(&["alarm", "list"]));
    assert_ok(&bus.cli(&["session", "choose-key", "204"]));
    assert_eq!(
        bus.calls(),
        [
            "Grant group:cleaners kind:amenity \"\"",
            "EnrollFingerprint bob",
            "SetSchedule office false",
            "AddHoliday 2026-12-25 Christmas Day",
            "ListAlarms true",
            "ChooseKey 204",
        ]
    );
    assert_eq!(
        bus.seen.lock().unwrap().windows,
        [WindowSpec {
            days: 0b110_0000,
            start: 600,
            end: 840
        }]
    );
}

#[test]
fn session_status_reads_every_property() {
    let bus = start(true);
    let o = bus.cli(&["--json", "session", "status"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "choose-key");
    assert_eq!(v["entry"], "20");
    assert_eq!(v["active_alarms"], 1);
    assert_eq!(v["status"], "ready");

    let o = bus.cli(&["session", "keys"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "keywarden: session keys: no one is signed in\n");
}

#[test]
fn audit_export_passes_a_new_0640_file() {
    let bus = start(true);
    let file = bus.dir.path().join("trail.jsonl");
    let path = file.to_str().unwrap();
    let o = bus.cli(&["audit", "export", path, "--from-seq", "40"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("exported 1 entries to {path}\n"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"from_seq\":40}\n"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let o = bus.cli(&["audit", "export", path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("keywarden: audit export {path}: create: ")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn diag_bundle_passes_a_new_file_and_typed_options() {
    let bus = start(true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.kwdiag");
    let path = file.to_str().unwrap();
    let o = bus.cli(&[
        "diag",
        "bundle",
        "-o",
        path,
        "--since",
        "2026-12-01T08:00:00Z",
        "--no-self-test",
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("1 files"), "{}", stdout(&o));
    // What the service wrote is in the file, under its name; no temporary file is left.
    assert_eq!(std::fs::read(&file).unwrap(), b"bundle");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    {
        let seen = bus.seen.lock().unwrap();
        assert_eq!(seen.calls, ["DiagnosticBundle"]);
        let get = |k: &str| seen.options.get(k).map(|v| format!("{:?}", **v));
        assert_eq!(get("since").as_deref(), Some("I64(1796112000)"));
        assert_eq!(get("self-test").as_deref(), Some("Bool(false)"));
        assert_eq!(seen.options.len(), 2);
    }
    // An existing file is refused before the service is asked.
    let o = bus.cli(&["diag", "bundle", "-o", path]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(bus.seen.lock().unwrap().calls.len(), 1);
}

#[test]
fn report_passes_stdout_and_typed_options() {
    let bus = start(true);
    let o = bus.cli(&[
        "--json",
        "report",
        "key",
        "204",
        "--from",
        "2026-12-01T08:00:00Z",
        "--user",
        "alice",
        "--limit",
        "5",
    ]);
    assert_ok(&o);
    // The service wrote to the CLI's own standard output.
    assert_eq!(stdout(&o), "report key\n");
    {
        let seen = bus.seen.lock().unwrap();
        assert_eq!(seen.calls, ["Report key"]);
        let get = |k: &str| seen.options.get(k).map(|v| format!("{:?}", **v));
        assert_eq!(get("key").as_deref(), Some("Str(\"204\")"));
        assert_eq!(get("user").as_deref(), Some("Str(\"alice\")"));
        assert_eq!(get("format").as_deref(), Some("Str(\"json\")"));
        assert_eq!(get("from").as_deref(), Some("I64(1796112000)"));
        assert_eq!(get("limit").as_deref(), Some("U64(5)"));
        assert_eq!(seen.options.len(), 5);
    }
    let o = bus.cli(&["report", "reason", "--format", "csv"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "report reasons\n");
    let o = bus.cli(&["--json", "report", "denials", "--format", "csv"]);
    assert_eq!(o.status.code(), Some(2));
    let o = bus.cli(&["report", "key", "204", "--key", "205"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
}

#[test]
fn a_broken_chain_on_the_device_fails_with_exit_1() {
    let bus = start(true);
    let o = bus.cli(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "keywarden: audit verify: entry 3 does not match its stored hash\n"
    );
}

#[test]
fn no_service_is_exit_3() {
    let bus = start(false);
    let o = bus.cli(&["user", "list"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("keywarden: "), "{}", stderr(&o));
}

/// An export written with `keywarden-audit`, for offline verification.
fn write_export(path: &Path) -> String {
    use keywarden_audit::{Chain, DeviceKey, ExportWriter, GENESIS};
    let key = DeviceKey::from_bytes(&[7; 32]);
    let mut chain = Chain::new(0, GENESIS);
    let mut out = ExportWriter::new(
        Vec::new(),
        &key.public_hex(),
        1,
        &GENESIS,
        1_700_000_100_000,
    )
    .unwrap();
    for i in 0..3 {
        let (entry, hash) = chain.append(
            1_700_000_000_000 + i,
            "granted",
            "bob",
            "key:204",
            r#"{"slot":"3"}"#,
        );
        out.entry(&entry, &hash).unwrap();
    }
    let (seq, head) = chain.head();
    out.checkpoint(&key.sign_checkpoint(seq, &head, 1_700_000_100_000))
        .unwrap();
    std::fs::write(path, out.finish().unwrap()).unwrap();
    key.public_hex()
}

#[test]
fn audit_verify_file_works_without_a_bus() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trail.jsonl");
    let key = write_export(&file);
    let path = file.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .args(["--bus-address", "unix:path=/nonexistent"])
            .args(args)
            .output()
            .unwrap()
    };

    let o = run(&["audit", "verify", path, "--key", &key]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("entries      3\n"), "{text}");
    assert!(text.contains(&format!("key          {key}\n")), "{text}");

    let o = run(&["--json", "audit", "verify", path]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["entries"].as_u64(), v["checkpoints"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(v["key_trusted"], false);

    let other = "cd".repeat(32);
    let o = run(&["audit", "verify", path, "--key", &other]);
    assert_ne!(o.status.code(), Some(0));

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("key:204", "key:205")).unwrap();
    let o = run(&["audit", "verify", path, "--key", &key]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("keywarden: audit verify {path}: entry 1 does not match its stored hash: it, or the entry before it, was edited\n")
    );
}
