//! The console as a person sees it: `keywarden-console` runs in a detached tmux session of a fixed
//! size, against the real stack on a private `dbus-daemon` carrying the shipped policy files
//! (`keywarden-hwd --backend sim`, `keywarden-policyd` on a temporary SQLite file, provisioned with
//! the `keywarden` CLI). Badge, keypad, slots and door are driven with `keywarden sim ...`, the
//! display's own keys with `tmux send-keys`, and the screen is read with `tmux capture-pane -p`,
//! polled until the expected text appears or a deadline passes.
//!
//! The binaries are found next to this test's executable (`cargo test --workspace` builds them);
//! tmux must be installed (tests/setup-host.sh).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keywarden_testbus::binary;
use keywarden_testbus::{current_user, Daemon, PrivateBus};

/// How long a screen may take to appear (policyd's result messages stay 5 s).
const DEADLINE: Duration = Duration::from_secs(25);
const BOARD: &str = "crates/keywarden-hwd/boards/sim-demo.toml";
const ALICE_PIN: &str = "73914682";
const ALICE_BADGE: &str = "ALICE-7F3A9C0001";
const BOB_PIN: &str = "51739264";
const BOB_BADGE: &str = "BOB-5E1D2B0002";
/// What must never be on the display.
const SECRETS: &[&str] = &[ALICE_PIN, ALICE_BADGE, BOB_PIN, BOB_BADGE, "7391", "5173"];
/// policyd's idle prompt (the console's own idle screen says something else).
const POLICYD_IDLE: &str = "a key's tag to return it";

/// The console in a detached tmux session on its own server socket; killed on drop.
struct Tmux {
    socket: PathBuf,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).env("TERM", "xterm-256color");
        c
    }

    /// Start `argv` in a 100x30 pane. When the program ends the pane says so and stays.
    fn start(dir: &Path, argv: &[String]) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "tmux is not installed: run tests/setup-host.sh (apt-get install tmux)"
        );
        let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
        // After the console: its exit status and the terminal's line discipline (restored to
        // canonical mode with echo, or left raw).
        let script = format!(
            "{}; echo \"console exited with status $?\"; \
             echo \"terminal: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' ')\"; \
             sleep 3600",
            quoted.join(" ")
        );
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
            seen: std::cell::RefCell::new(Vec::new()),
        };
        let status = tmux
            .command()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "console"])
            .args(["-x", "100", "-y", "30", "sh", "-c", &script])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// Type keys on the display's keyboard (tmux key names: Up, Down, Enter, Escape...).
    fn send(&self, keys: &[&str]) {
        let status = self
            .command()
            .args(["send-keys", "-t", "console"])
            .args(keys)
            .status()
            .expect("run tmux send-keys");
        assert!(status.success(), "tmux send-keys {keys:?} failed");
    }

    /// The screen now, checked for secrets.
    fn capture(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "console"])
            .output()
            .expect("run tmux capture-pane");
        assert!(
            out.status.success(),
            "tmux capture-pane failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "the console showed {secret:?}:\n{text}"
            );
        }
        self.seen.borrow_mut().push(text.clone());
        text
    }

    /// Poll the screen until it contains every one of `want`; the screen, or a panic with the
    /// last screen after [`DEADLINE`].
    fn wait_for(&self, want: &[&str]) -> String {
        let start = Instant::now();
        let first = self.seen.borrow().len();
        loop {
            let text = self.capture();
            if want.iter().all(|w| text.contains(w)) {
                return text;
            }
            if start.elapsed() >= DEADLINE {
                let mut shown: Vec<String> = Vec::new();
                for screen in &self.seen.borrow()[first..] {
                    let lines: Vec<&str> = screen
                        .lines()
                        .filter(|l| !l.trim_matches(|c: char| c == '│' || c == ' ').is_empty())
                        .collect();
                    let compact = lines.join("\n");
                    if shown.last() != Some(&compact) {
                        shown.push(compact);
                    }
                }
                panic!(
                    "the console never showed {want:?}; the screens meanwhile:\n{}",
                    shown.join("\n--\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // KEYWARDEN_SHOW_SCREENS=1 prints every distinct screen the test saw, in order.
        if std::env::var_os("KEYWARDEN_SHOW_SCREENS").is_some() {
            let mut last = String::new();
            for screen in self.seen.borrow().iter() {
                if *screen != last {
                    println!("{screen}{}", "-".repeat(100));
                    last = screen.clone();
                }
            }
        }
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// The stack, provisioned, and the console in tmux.
struct Rig {
    // Fields drop in order: tmux's server (its socket is in the bus's directory) goes first.
    tmux: Option<Tmux>,
    policyd: Option<Daemon>,
    _hwd: Daemon,
    bus: PrivateBus,
}

impl Rig {
    /// Start the stack with `policy_toml`, provision it and start the console with
    /// `console_args`.
    fn start(policy_toml: &str, console_args: &[&str]) -> Rig {
        let bus = PrivateBus::start(
            &[
                "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
                "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
            ],
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
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("start keywarden-hwd"),
        );
        std::fs::write(bus.dir().join("policy.toml"), policy_toml).expect("policy.toml");
        let mut rig = Rig {
            bus,
            _hwd: hwd,
            policyd: None,
            tmux: None,
        };
        rig.wait_until(&["hw", "status"]);
        rig.start_policyd();
        rig.provision();
        let mut argv = vec![
            env!("CARGO_BIN_EXE_keywarden-console").to_string(),
            "--bus-address".into(),
            rig.bus.address.clone(),
            "--log-file".into(),
            rig.bus.dir().join("console.log").display().to_string(),
        ];
        argv.extend(console_args.iter().map(|a| a.to_string()));
        rig.tmux = Some(Tmux::start(rig.bus.dir(), &argv));
        rig
    }

    fn tmux(&self) -> &Tmux {
        self.tmux.as_ref().expect("console started")
    }

    fn start_policyd(&mut self) {
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
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start keywarden-policyd");
        self.policyd = Some(Daemon(child));
        self.wait_until(&["session", "status"]);
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("keywarden"));
        c.args(["--bus-address", &self.bus.address]).args(args);
        c
    }

    /// Run the CLI (with `stdin` typed in, if any); panics unless it succeeds.
    fn cli(&self, args: &[&str], stdin: Option<&str>) {
        let mut c = self.cli_command(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run keywarden");
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .expect("write to keywarden");
        }
        let out = child.wait_with_output().expect("run keywarden");
        assert!(
            out.status.success(),
            "keywarden {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Poll a CLI command until it succeeds (a service coming up).
    fn wait_until(&self, args: &[&str]) {
        let start = Instant::now();
        loop {
            let ok = self
                .cli_command(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "keywarden {args:?} never succeeded"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reasons INSP and MAINT; alice (staff) and bob (no permissions); keys 101 and 204 (units,
    /// slots 2 and 1, with notes) and MASTER (master key, slot 3); staff may take units.
    fn provision(&self) {
        self.cli(&["reason", "set", "INSP", "Inspection"], None);
        self.cli(&["reason", "set", "MAINT", "Maintenance"], None);
        self.cli(&["group", "add", "staff"], None);
        for (name, display, pin, badge) in [
            ("alice", "Alice Example", ALICE_PIN, ALICE_BADGE),
            ("bob", "Bob Example", BOB_PIN, BOB_BADGE),
        ] {
            self.cli(
                &[
                    "user",
                    "add",
                    name,
                    "--role",
                    "staff",
                    "--display-name",
                    display,
                ],
                None,
            );
            self.cli(&["user", "pin", name], Some(&format!("{pin}\n")));
            self.cli(&["user", "badge", name], Some(&format!("{badge}\n")));
        }
        self.cli(&["group", "member-add", "staff", "alice"], None);
        for (label, tag, kind, slot, notes) in [
            ("101", "TAG-101", "unit", "2", "Spare for flat 101"),
            (
                "204",
                "TAG-204",
                "unit",
                "1",
                "Dog in the unit; knock first",
            ),
            ("MASTER", "TAG-M", "master", "3", "Block A master"),
        ] {
            self.cli(
                &[
                    "key",
                    "add",
                    label,
                    "--tag",
                    tag,
                    "--kind",
                    kind,
                    "--home-slot",
                    slot,
                    "--notes",
                    notes,
                ],
                None,
            );
            self.cli(&["key", "place", label, slot], None);
        }
        self.cli(
            &["perm", "grant", "--group", "staff", "--kind", "unit"],
            None,
        );
    }

    /// `keywarden sim ARGS`: the person at the cabinet's hardware.
    fn sim(&self, args: &[&str]) {
        let mut all = vec!["sim"];
        all.extend_from_slice(args);
        self.cli(&all, None);
    }

    /// Type `digits` and Enter on the cabinet's keypad.
    fn keypad(&self, digits: &str) {
        let mut args: Vec<String> = vec!["keys".into(), "keypad".into()];
        args.extend(digits.chars().map(|c| c.to_string()));
        args.push("enter".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sim(&args);
    }
}

#[test]
fn checkout_and_return_walk_through_every_screen() {
    let rig = Rig::start("time-zone = \"UTC\"\nrandom-return-slot = false\n", &[]);
    let t = rig.tmux();
    t.wait_for(&["KEYWARDEN", "Ready", POLICYD_IDLE]);

    // Identify: the badge code never reaches the console, the PIN shows as asterisks.
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    t.wait_for(&["Hello, Alice Example.", "Enter your PIN", "PIN: _"]);
    rig.sim(&["keys", "keypad", "7", "3", "9"]);
    t.wait_for(&["PIN: * * *"]);
    rig.sim(&["keys", "keypad", "1", "4", "6", "8", "2", "enter"]);

    // The key list with notes; the cursor starts on the first key she may take (101).
    let list = t.wait_for(&[
        "Choose a key, Alice Example.",
        "> 101",
        "Spare for flat 101",
    ]);
    assert!(list.contains("Dog in the unit"), "{list}");
    assert!(
        list.contains("not permitted"),
        "MASTER is listed as refused:\n{list}"
    );
    t.send(&["Down"]);
    t.wait_for(&["> 204", "204: Dog in the unit; knock first"]);
    t.send(&["Enter"]);

    // The reason, with the key's notes.
    t.wait_for(&[
        "why do you need key 204?",
        "Notes: Dog in the unit; knock first",
        "> 1",
        "INSP",
    ]);
    t.send(&["Down"]);
    t.wait_for(&["> 2", "MAINT"]);
    t.send(&["Enter"]);

    // Granted: the slot to use.
    t.wait_for(&["Take key 204 from slot 1.", "Due back by"]);
    rig.sim(&["slot", "1", "empty"]);
    t.wait_for(&["Key 204 taken"]);
    t.wait_for(&[POLICYD_IDLE]);

    // Return: scan the key's tag, put it where the console says.
    rig.sim(&["scan", "badge", "TAG-204"]);
    t.wait_for(&[
        "Returning key 204.",
        "Put key 204 in slot 1",
        "light of slot 1 is blinking",
    ]);
    rig.sim(&["slot", "1", "occupied"]);
    t.wait_for(&["Key 204 returned"]);
    t.wait_for(&[POLICYD_IDLE]);
    assert!(t.seen.borrow().len() > 10);
}

#[test]
fn refusals_and_a_lockout_are_shown_with_their_message() {
    let rig = Rig::start("time-zone = \"UTC\"\npin-attempts = 2\n", &[]);
    let t = rig.tmux();
    t.wait_for(&[POLICYD_IDLE]);

    // An unknown badge.
    rig.sim(&["scan", "badge", "NOBODY-0001"]);
    t.wait_for(&["Refused: badge not recognised", "Nothing was opened"]);
    t.wait_for(&[POLICYD_IDLE]);

    // bob may take nothing: the refusal is on his key list; Esc ends the session.
    rig.sim(&["scan", "badge", BOB_BADGE]);
    t.wait_for(&["Hello, Bob Example."]);
    rig.keypad(BOB_PIN);
    t.wait_for(&["Choose a key, Bob Example.", "> 101"]);
    t.send(&["Enter"]);
    t.wait_for(&["101: not permitted to take this key"]);
    t.send(&["Escape"]);
    t.wait_for(&["Cancelled"]);
    t.wait_for(&[POLICYD_IDLE]);

    // Two wrong PINs lock alice out, with an alarm.
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    t.wait_for(&["Hello, Alice Example."]);
    rig.keypad("1111");
    t.wait_for(&["wrong PIN, 1 tries left"]);
    rig.keypad("1111");
    t.wait_for(&[
        "LOCKED OUT: locked out until",
        "ALARM: 1 active: PIN lockout (user alice)",
    ]);
    // Back to idle with the alarm still up; a new badge scan is refused as locked out.
    t.wait_for(&[POLICYD_IDLE, "ALARM: 1 active"]);
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    t.wait_for(&["LOCKED OUT"]);
}

#[test]
fn timeouts_bring_the_console_back_to_idle() {
    // policyd gives up on a session after 10 s; the display sleeps after 3 s without a change
    // (each screen below is on display for at least 3 s, so polling sees it).
    let rig = Rig::start(
        "time-zone = \"UTC\"\nsession-timeout-seconds = 10\n",
        &["--display-timeout-seconds", "3"],
    );
    let t = rig.tmux();
    t.wait_for(&[POLICYD_IDLE]);
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    t.wait_for(&["Hello, Alice Example.", "PIN: _"]);
    // The console's own display timeout: idle while policyd still waits for the PIN.
    let asleep = t.wait_for(&["Scan your badge or touch the fingerprint sensor"]);
    assert!(!asleep.contains(POLICYD_IDLE), "{asleep}");
    // A keypad digit wakes it, on the PIN screen.
    rig.sim(&["keys", "keypad", "7"]);
    t.wait_for(&["Hello, Alice Example.", "PIN: *"]);
    // policyd's session timeout ends the session.
    t.wait_for(&[POLICYD_IDLE]);

    // Esc on the display cancels a session at once.
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    t.wait_for(&["PIN: _"]);
    t.send(&["Escape"]);
    t.wait_for(&["Cancelled"]);
}

#[test]
fn policyd_restarts_and_a_broken_database_are_shown_and_alarms_show_a_banner() {
    let mut rig = Rig::start("time-zone = \"UTC\"\n", &[]);
    rig.tmux().wait_for(&[POLICYD_IDLE]);
    rig.policyd = None; // killed
    rig.tmux()
        .wait_for(&["Service unavailable", "keywarden-policyd is not running"]);
    rig.start_policyd();
    rig.tmux().wait_for(&["Ready", POLICYD_IDLE]);

    // A forced door raises an alarm: a banner on every screen while it is active.
    rig.sim(&["door", "open"]);
    rig.tmux()
        .wait_for(&["ALARM: 1 active: door forced (door)"]);
    rig.sim(&["scan", "badge", ALICE_BADGE]);
    rig.tmux()
        .wait_for(&["Hello, Alice Example.", "ALARM: 1 active"]);

    // A database policyd cannot use: it stays up, out of service, and the console says why.
    rig.policyd = None;
    rig.tmux().wait_for(&["Service unavailable"]);
    let data = rig.bus.dir().join("data");
    for name in ["keywarden.db-wal", "keywarden.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    std::fs::write(data.join("keywarden.db"), vec![0x5a; 8192]).expect("overwrite the database");
    rig.start_policyd();
    rig.tmux().wait_for(&[
        "Out of service: no key can be taken or returned.",
        "Reason: database",
    ]);

    // Ctrl-C on the display's keyboard ends the console and gives the terminal back.
    rig.tmux().send(&["C-c"]);
    let after = rig
        .tmux()
        .wait_for(&["console exited with status 0", "terminal: icanon echo"]);
    assert!(
        !after.contains("KEYWARDEN"),
        "the alternate screen stayed:\n{after}"
    );
}
