//! `keywarden factory selftest` against the real `keywarden-hwd` on the `sim` backend, on a
//! private `dbus-daemon` carrying the shipped policy file; the host checks pointed at temporary
//! files. A passing cabinet, then failing ones (a lock's feedback cut and the tamper switch
//! tripped; the door open; no hardware service), with their exit codes, JSON and saved report.
//! `BurnIn` is root's only: as another user these tests say so and return.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keywarden_dbus::hardware::{Hardware1Proxy, HardwareSim1Proxy};
use keywarden_testbus::{binary, current_user, wait_for_name, Daemon, PrivateBus};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const DEMO_BOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../keywarden-hwd/boards/sim-demo.toml"
);

struct Stack {
    bus: PrivateBus,
    _hwd: Daemon,
    conn: zbus::Connection,
}

async fn start() -> Stack {
    let bus = PrivateBus::start(
        &["crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf"],
        &["keywarden", "keywarden-hw"],
        &[],
    );
    let child = Command::new(binary("keywarden-hwd"))
        .args(["--backend", "sim", "--board", DEMO_BOARD, "--bus-address"])
        .arg(&bus.address)
        .args(["--allow-user", &current_user()])
        .spawn()
        .unwrap();
    let conn = bus.connect().await;
    wait_for_name(&conn, "org.keywarden.Hardware1", T).await;
    Stack {
        bus,
        _hwd: Daemon(child),
        conn,
    }
}

/// Fake host devices: an armed watchdog, an RTC reading the system clock, the data partition
/// being the temporary directory.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("wd")).unwrap();
        std::fs::create_dir_all(d.join("rtc")).unwrap();
        std::fs::write(d.join("watchdog0"), "").unwrap();
        std::fs::write(d.join("rtc0"), "").unwrap();
        std::fs::write(d.join("wd/identity"), "i6300ESB timer\n").unwrap();
        std::fs::write(d.join("wd/state"), "active\n").unwrap();
        std::fs::write(d.join("wd/timeout"), "30\n").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::fs::write(d.join("rtc/since_epoch"), format!("{now}\n")).unwrap();
        Host { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn report(&self) -> PathBuf {
        self.path("factory/selftest.json")
    }

    /// `keywarden --bus-address BUS factory selftest ...` with the host checks pointed here.
    fn selftest(&self, bus: &str, extra: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keywarden"));
        cmd.args(["--bus-address", bus, "factory", "selftest"])
            .args(["--cycles", "2", "--settle-ms", "30"])
            .arg("--report")
            .arg(self.report())
            .arg("--watchdog-dev")
            .arg(self.path("watchdog0"))
            .arg("--watchdog-sysfs")
            .arg(self.path("wd"))
            .arg("--rtc-dev")
            .arg(self.path("rtc0"))
            .arg("--rtc-sysfs")
            .arg(self.path("rtc"))
            .arg("--data-dir")
            .arg(self.dir.path())
            // The fake RTC was written when the test started: no timing in this test.
            .args(["--rtc-tolerance-s", "86400", "--min-free-mib", "1"])
            .args(extra);
        cmd.output().unwrap()
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn saved(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: BurnIn is root's only");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_cabinet_passes_and_the_report_is_saved() {
    if !root() {
        return;
    }
    let stack = start().await;
    let host = Host::new();
    let out = host.selftest(&stack.bus.address, &["--json"]);
    let report = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["format"], 1);
    assert_eq!(report["passed"], true);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["board"], "keywarden-sim-8");
    assert_eq!(report["backend"], "sim");
    assert_eq!(
        (report["cycles"].as_u64(), report["settle_ms"].as_u64()),
        (Some(2), Some(30))
    );
    let door = check(&report, "lock:door-lock");
    assert_eq!(door["group"], "burn-in");
    assert_eq!(
        door["detail"],
        r#"2 cycles: feedback "door-lock-fb" followed each time (30 ms settle)"#
    );
    let slot8 = check(&report, "lock:slot-8-lock");
    assert_eq!(slot8["passed"], true);
    assert!(
        slot8["detail"]
            .as_str()
            .unwrap()
            .contains("no feedback line"),
        "{slot8}"
    );
    assert_eq!(
        check(&report, "sensor:door-sensor")["detail"],
        r#"closed (line "door-sensor" reads 0)"#
    );
    assert_eq!(
        check(&report, "sensor:slot-3-presence")["detail"],
        r#"key present (line "slot3-presence" reads 1)"#
    );
    assert_eq!(
        check(&report, "sensor:slot-3-lock-feedback")["passed"],
        true
    );
    assert_eq!(check(&report, "input:badge")["group"], "hardware");
    assert_eq!(check(&report, "fingerprint")["passed"], true);
    for host_check in [
        "host:watchdog",
        "host:rtc",
        "host:clock",
        "host:data-partition",
    ] {
        let c = check(&report, host_check);
        assert_eq!(
            (c["group"].as_str(), c["passed"].as_bool()),
            (Some("host"), Some(true)),
            "{c}"
        );
    }
    assert!(check(&report, "host:watchdog")["detail"]
        .as_str()
        .unwrap()
        .contains("not opened (systemd holds it)"));
    assert_eq!(
        saved(&host.report()),
        report,
        "the saved report is what was printed"
    );

    // Every lock is locked again, and the service takes ordinary requests.
    let hw = Hardware1Proxy::new(&stack.conn).await.unwrap();
    let sim = HardwareSim1Proxy::new(&stack.conn).await.unwrap();
    assert_eq!(hw.door_lock_state().await.unwrap(), "locked");
    assert!(hw.slots().await.unwrap().iter().all(|s| !s.released));
    assert!(!sim.output("slot-8-lock").await.unwrap());
    hw.release_slot(1, 60).await.unwrap();

    // For people: a line per check and a summary.
    let out = host.selftest(&stack.bus.address, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "slot 1 is still released: {text}"
    );
    assert!(
        text.contains("FAIL  burn-in   burn-in")
            && text.contains("refused (Busy): slot-1-lock is active"),
        "{text}"
    );
    assert!(text.contains("FAILED: 1 of "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_feedback_and_a_tripped_tamper_switch_fail_naming_what_was_read() {
    if !root() {
        return;
    }
    let stack = start().await;
    let sim = HardwareSim1Proxy::new(&stack.conn).await.unwrap();
    sim.set_feedback_broken("slot-2-lock", true).await.unwrap();
    sim.set_tamper(true).await.unwrap();
    let host = Host::new();
    let out = host.selftest(&stack.bus.address, &["--json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["passed"], false);
    assert_eq!(report["failed"], 2, "{report:#}");
    let slot2 = check(&report, "lock:slot-2-lock");
    assert_eq!(slot2["passed"], false);
    assert_eq!(
        slot2["detail"],
        "cycle 1: driven released, feedback read locked after 30 ms; \
         cycle 2: driven released, feedback read locked after 30 ms \
         (feedback line \"slot2-lock-fb\")"
    );
    let tamper = check(&report, "sensor:tamper");
    assert_eq!(tamper["passed"], false);
    assert_eq!(
        tamper["detail"],
        r#"tampered: the enclosure must be closed (line "tamper" reads 1)"#
    );
    assert_eq!(check(&report, "lock:slot-3-lock")["passed"], true);
    assert_eq!(saved(&host.report())["failed"], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 of ") && stderr.contains("checks failed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_door_refuses_the_burn_in_and_fails_the_selftest() {
    if !root() {
        return;
    }
    let stack = start().await;
    let sim = HardwareSim1Proxy::new(&stack.conn).await.unwrap();
    sim.set_door(true).await.unwrap();
    let hw = Hardware1Proxy::new(&stack.conn).await.unwrap();
    // The door's debounce: wait until hwd sees it open (the property, not a clock).
    let mut open = false;
    for _ in 0..200 {
        if hw.door_state().await.unwrap() == "open" {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(open, "hwd never saw the door open");
    let host = Host::new();
    let out = host.selftest(&stack.bus.address, &["--json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(
        check(&report, "burn-in")["detail"],
        "refused (DoorOpen): the door is open: close it before the burn-in"
    );
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| !c["check"].as_str().unwrap().starts_with("lock:")));
    assert_eq!(hw.door_lock_state().await.unwrap(), "locked");
}

#[test]
fn without_the_hardware_service_the_host_checks_still_run_and_it_exits_3() {
    let host = Host::new();
    let bus = format!("unix:path={}", host.path("no-bus").display());
    let out = host.selftest(&bus, &["--json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let hwd = check(&report, "hwd");
    assert!(
        hwd["detail"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect to the bus"),
        "{hwd}"
    );
    assert_eq!(check(&report, "host:rtc")["passed"], true);
    assert_eq!(report["board"], "");
    assert_eq!(saved(&host.report())["failed"], 1);
}
