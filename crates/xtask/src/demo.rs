//! `cargo xtask demo`: the host demo. Starts a private `dbus-daemon` carrying the project's policy
//! files, `keywarden-hwd` on the `sim` backend with the demo board, `keywarden-policyd` on a fresh
//! database, and a `keywarden hw watch` that prints every hardware signal; provisions a tiny
//! property with the admin CLI; then walks through a checkout and a return as a person at the
//! cabinet would (badge, PIN, key, reason, take the key; scan its tag, put it in the slot the
//! cabinet picks), a denial, a forced door, and the audit trail's verification. With
//! `--interactive` it leaves the stack running and prints the commands to drive it by hand.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keywarden_testbus::{current_user, Daemon, PrivateBus};

use crate::error::Error;

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the stack running after the script and print how to drive it by hand.
    #[arg(long)]
    interactive: bool,
    /// Pause between steps, in milliseconds.
    #[arg(long, default_value_t = 700)]
    pause_ms: u64,
}

/// One scripted step: a title (or none), the CLI's arguments, and what to type on its stdin.
struct Step(&'static str, &'static [&'static str], Option<&'static str>);

/// Run the demo.
pub fn run(root: &Path, args: &DemoArgs) -> Result<(), Error> {
    crate::cmd::run(&mut Command::new(root.join("tests/setup-host.sh")))?;
    crate::cmd::run(crate::cmd::cargo().current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        "keywarden-hwd",
        "-p",
        "keywarden-policyd",
        "-p",
        "keywarden",
    ]))?;
    let bin = crate::cmd::target_dir().join("debug");

    let bus = PrivateBus::start(
        &[
            "crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf",
            "crates/keywarden-policyd/dbus/org.keywarden.Policy1.conf",
        ],
        &["keywarden", "keywarden-hw"],
        &["keywarden-admin", "keywarden-console"],
    );
    let address = bus.address.clone();
    let data = bus.dir().join("data");
    let quiet = |mut c: Command| {
        c.env("RUST_LOG", "warn");
        c
    };
    let mut hwd = quiet(Command::new(bin.join("keywarden-hwd")));
    hwd.args(["--backend", "sim", "--bus-address", &address])
        .args(["--allow-user", &current_user()])
        .arg("--board")
        .arg(root.join("crates/keywarden-hwd/boards/sim-demo.toml"));
    let _hwd = Daemon(hwd.spawn().map_err(Error::io("start keywarden-hwd"))?);
    let cli = |args: &[&str]| {
        let mut c = Command::new(bin.join("keywarden"));
        c.arg("--bus-address").arg(&address).args(args);
        c
    };
    let succeeds = |args: &[&str]| {
        cli(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    wait_for(|| succeeds(&["hw", "status"]), "keywarden-hwd on the bus")?;
    let mut policyd = quiet(Command::new(bin.join("keywarden-policyd")));
    policyd
        .args(["--bus-address", &address])
        .arg("--database")
        .arg(data.join("keywarden.db"))
        .arg("--device-key")
        .arg(data.join("identity/device-key.pem"))
        .arg("--badge-key")
        .arg(data.join("secrets/badge.key"))
        .arg("--config")
        .arg(data.join("policy.toml"));
    let _policyd = Daemon(
        policyd
            .spawn()
            .map_err(Error::io("start keywarden-policyd"))?,
    );
    wait_for(
        || succeeds(&["session", "status"]),
        "keywarden-policyd on the bus",
    )?;
    let _watch = Daemon(
        cli(&["hw", "watch"])
            .spawn()
            .map_err(Error::io("start keywarden hw watch"))?,
    );
    std::thread::sleep(Duration::from_millis(300));

    let steps: &[Step] = &[
        Step(
            "An administrator sets up a tiny property",
            &["reason", "set", "MAINT", "Maintenance"],
            None,
        ),
        Step(
            "",
            &[
                "user",
                "add",
                "alice",
                "--role",
                "staff",
                "--display-name",
                "Alice Example",
            ],
            None,
        ),
        Step(
            "(the PIN is read from stdin, never from the command line)",
            &["user", "pin", "alice"],
            Some("2468\n"),
        ),
        Step("", &["user", "badge", "alice"], Some("EMP-0042\n")),
        Step("", &["user", "add", "bob", "--role", "staff"], None),
        Step("", &["user", "pin", "bob"], Some("1357\n")),
        Step("", &["user", "badge", "bob"], Some("EMP-0007\n")),
        Step(
            "",
            &[
                "key",
                "add",
                "204",
                "--tag",
                "K-7F3A",
                "--kind",
                "unit",
                "--home-slot",
                "1",
                "--notes",
                "Dog in the unit; knock first",
            ],
            None,
        ),
        Step("", &["key", "place", "204", "1"], None),
        Step(
            "",
            &["perm", "grant", "--user", "alice", "--key", "204"],
            None,
        ),
        Step("", &["user", "list"], None),
        Step(
            "Alice scans her badge (typed key by key, like a USB scanner)",
            &["sim", "scan", "badge", "EMP-0042"],
            None,
        ),
        Step(
            "...and types her PIN on the keypad; policyd checks it (Argon2id)",
            &["sim", "keys", "keypad", "2", "4", "6", "8", "enter"],
            None,
        ),
        Step(
            "The console shows her session (never her PIN)",
            &["session", "status"],
            None,
        ),
        Step(
            "She picks key 204 and a reason: the grant is recorded, then slot 1 is released",
            &["session", "choose-key", "204"],
            None,
        ),
        Step("", &["session", "choose-reason", "MAINT"], None),
        Step("", &["session", "status"], None),
        Step(
            "She takes the key from slot 1",
            &["sim", "slot", "1", "empty"],
            None,
        ),
        Step(
            "Who has which key, why, and until when",
            &["key", "list"],
            None,
        ),
        Step(
            "Bob asks for key 204 while Alice has it: refused, recorded, nothing opens",
            &["sim", "scan", "badge", "EMP-0007"],
            None,
        ),
        Step(
            "",
            &["sim", "keys", "keypad", "1", "3", "5", "7", "enter"],
            None,
        ),
        Step("", &["session", "choose-key", "204"], None),
        Step("", &["session", "status"], None),
        Step("", &["session", "cancel"], None),
        Step(
            "Alice brings the key back: she scans its tag, the cabinet picks a free slot",
            &["sim", "scan", "badge", "K-7F3A"],
            None,
        ),
        Step("", &["session", "status"], None),
        Step(
            "The door is opened without a grant: a forced-door alarm",
            &["sim", "door", "open"],
            None,
        ),
        Step("", &["sim", "door", "closed"], None),
        Step("", &["alarm", "list", "--all"], None),
        Step(
            "The audit trail: every event above, hash-chained and signed",
            &["audit", "verify"],
            None,
        ),
    ];
    let pause = Duration::from_millis(args.pause_ms);
    for Step(title, argv, stdin) in steps {
        if !title.is_empty() {
            println!("\n== {title}");
        }
        println!("$ keywarden {}", argv.join(" "));
        let mut cmd = cli(argv);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(Error::io("run keywarden"))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .map_err(Error::io("write to keywarden"))?;
        }
        let status = child.wait().map_err(Error::io("run keywarden"))?;
        if !status.success() {
            println!("(exit status {})", status.code().unwrap_or(-1));
        }
        // The return step: put the key into whichever slot the cabinet released.
        if argv.ends_with(&["badge", "K-7F3A"]) {
            std::thread::sleep(Duration::from_millis(300));
            if let Some(slot) = session_slot(&cli(&["--json", "session", "status"])) {
                println!("\n== ...and puts it into slot {slot}, as the blinking LED shows");
                println!("$ keywarden sim slot {slot} occupied");
                let _ = cli(&["sim", "slot", &slot.to_string(), "occupied"]).status();
            }
        }
        std::thread::sleep(pause);
    }
    if args.interactive {
        println!("\nThe stack keeps running. In another terminal, try for example:");
        let k = bin.join("keywarden");
        println!(
            "  {} --bus-address {address} sim scan badge EMP-0042",
            k.display()
        );
        println!(
            "  {} --bus-address {address} sim keys keypad 2 4 6 8 enter",
            k.display()
        );
        println!("  {} --bus-address {address} session status", k.display());
        println!("  {} --bus-address {address} key list", k.display());
        println!("Hardware signals print here. Ctrl-C stops everything.");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    println!("\ndemo finished");
    Ok(())
}

/// The `slot` field of `keywarden --json session status`.
fn session_slot(cmd: &Command) -> Option<u32> {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    let out = c.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("\"slot\"")?;
    text[at + 6..]
        .trim_start_matches([':', ' '])
        .split(|ch: char| !ch.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<(), Error> {
    for _ in 0..200 {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::Io {
        what: format!("wait for {what}"),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "not ready after 10 s"),
    })
}
