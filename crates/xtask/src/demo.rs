//! `cargo xtask demo`: the host demo. Starts a private `dbus-daemon` carrying the project's policy
//! file, `keywarden-hwd` on the `sim` backend with the demo board, and a `keywarden hw watch` that
//! prints every signal; then walks through a scripted checkout with the `keywarden` CLI (badge,
//! PIN, door, slot, relock, a forced door, a garbled scan). With `--interactive` it leaves the stack
//! running and prints the commands to drive it by hand until Ctrl-C.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// Children killed when the demo ends, however it ends.
struct Stack {
    children: Vec<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            drop(child.kill());
            drop(child.wait());
        }
    }
}

/// Run the demo.
pub fn run(root: &Path, args: &DemoArgs) -> Result<(), Error> {
    crate::cmd::run(&mut Command::new(root.join("tests/setup-host.sh")))?;
    crate::cmd::run(crate::cmd::cargo().current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        "keywarden-hwd",
        "-p",
        "keywarden",
    ]))?;
    let bin = crate::cmd::target_dir().join("debug");

    let dir = std::env::temp_dir().join(format!("keywarden-demo-{}", std::process::id()));
    let policy_dir = dir.join("system.d");
    std::fs::create_dir_all(&policy_dir).map_err(Error::io("create the demo directory"))?;
    let me = user_name();
    let policy = std::fs::read_to_string(
        root.join("crates/keywarden-hwd/dbus/org.keywarden.Hardware1.conf"),
    )
    .map_err(Error::io("read the policy file"))?;
    let policy = policy
        .replace(r#"user="keywarden""#, &format!(r#"user="{me}""#))
        .replace(r#"user="keywarden-hw""#, &format!(r#"user="{me}""#));
    std::fs::write(policy_dir.join("org.keywarden.Hardware1.conf"), policy)
        .map_err(Error::io("write the policy file"))?;
    let socket = dir.join("bus");
    let template = std::fs::read_to_string(root.join("tests/bus/private-system-bus.conf.in"))
        .map_err(Error::io("read the bus config"))?;
    let config = template
        .replace("@SOCKET@", &socket.display().to_string())
        .replace("@POLICY_DIR@", &policy_dir.display().to_string());
    let config_path = dir.join("bus.conf");
    std::fs::write(&config_path, config).map_err(Error::io("write the bus config"))?;
    let address = format!("unix:path={}", socket.display());

    let mut stack = Stack {
        children: Vec::new(),
    };
    let bus = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config_path.display()))
        .args(["--nofork", "--nopidfile"])
        .stderr(Stdio::null())
        .spawn()
        .map_err(Error::io("start dbus-daemon"))?;
    stack.children.push(bus);
    wait_for(|| socket.exists(), "the bus socket")?;

    let hwd = Command::new(bin.join("keywarden-hwd"))
        .args([
            "--backend",
            "sim",
            "--bus-address",
            &address,
            "--allow-user",
            &me,
        ])
        .arg("--board")
        .arg(root.join("crates/keywarden-hwd/boards/sim-demo.toml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(Error::io("start keywarden-hwd"))?;
    stack.children.push(hwd);
    let cli = |args: &[&str]| {
        let mut c = Command::new(bin.join("keywarden"));
        c.arg("--bus-address").arg(&address).args(args);
        c
    };
    wait_for(
        || {
            cli(&["hw", "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        },
        "keywarden-hwd on the bus",
    )?;
    let watch = cli(&["hw", "watch"])
        .spawn()
        .map_err(Error::io("start keywarden hw watch"))?;
    stack.children.push(watch);
    std::thread::sleep(Duration::from_millis(300));

    let pause = Duration::from_millis(args.pause_ms);
    let steps: &[(&str, &[&str])] = &[
        ("The cabinet at rest", &["hw", "status"]),
        (
            "Alice scans her badge on the reader (typed key by key, like a USB scanner)",
            &["sim", "scan", "badge", "EMP-0042"],
        ),
        (
            "...and types her PIN on the keypad (policyd, issue 3, checks it)",
            &["sim", "keys", "keypad", "1", "9", "8", "4", "enter"],
        ),
        (
            "Policy grants key 204: release slot 3 for 20 s and light its LED",
            &["hw", "release", "3", "20"],
        ),
        ("", &["hw", "indicator", "3", "blink"]),
        ("...and unlock the door for 10 s", &["hw", "unlock", "10"]),
        (
            "The door lock line is now energised",
            &["sim", "output", "door-lock"],
        ),
        ("Alice opens the door", &["sim", "door", "open"]),
        (
            "...takes the key from slot 3 (the slot relocks at once)",
            &["sim", "slot", "3", "empty"],
        ),
        ("", &["sim", "output", "slot-3-lock"]),
        ("", &["hw", "indicator", "3", "off"]),
        (
            "...and closes the door: it relocks on close, before the 10 s are up",
            &["sim", "door", "closed"],
        ),
        ("", &["hw", "beep", "ack"]),
        (
            "Later someone opens the door without a grant: a forced-door alarm",
            &["sim", "door", "open"],
        ),
        ("", &["sim", "door", "closed"]),
        (
            "A badge read that is too long for the reader is rejected, not passed on",
            &[
                "sim",
                "scan",
                "badge",
                "0123456789012345678901234567890123456789",
            ],
        ),
        (
            "A request the board cannot do gets a specific error",
            &["hw", "release", "99", "5"],
        ),
        ("The non-actuating self-test", &["hw", "selftest"]),
        ("The cabinet now", &["hw", "status"]),
    ];
    for (title, argv) in steps {
        if !title.is_empty() {
            println!("\n== {title}");
        }
        println!("$ keywarden {}", argv.join(" "));
        let status = cli(argv).status().map_err(Error::io("run keywarden"))?;
        if !status.success() {
            println!("(exit status {})", status.code().unwrap_or(-1));
        }
        std::thread::sleep(pause);
    }
    if args.interactive {
        println!("\nThe stack keeps running. In another terminal, try for example:");
        let k = bin.join("keywarden");
        println!(
            "  {} --bus-address {address} sim scan badge EMP-0007",
            k.display()
        );
        println!("  {} --bus-address {address} hw unlock 5", k.display());
        println!("  {} --bus-address {address} hw status", k.display());
        println!("Signals print here. Ctrl-C stops everything.");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    drop(stack);
    drop(std::fs::remove_dir_all(&dir));
    println!("\ndemo finished");
    Ok(())
}

fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output();
            out.ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| "root".into())
        })
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
