//! `cargo xtask demo`: the host demo. Starts a private `dbus-daemon` carrying the project's policy
//! files, `keywarden-hwd` on the `sim` backend with the demo board and `keywarden-policyd` on a
//! fresh database, then either
//!
//! - at a terminal (`live.rs`): provisions a demo property and opens a tmux session with the
//!   front-panel console (`keywarden-console`) in the top pane and a `sim>` prompt (`prompt.rs`)
//!   in the bottom one, where a person plays the cabinet's hardware: badge, keypad, slots, door;
//!   or
//! - not at a terminal, or with `--scripted` (`script.rs`): the scripted walkthrough with the
//!   admin CLI, printing every command and its output (CI may run it).
//!
//! Every daemon is stopped when the demo ends.

mod live;
pub mod prompt;
mod script;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keywarden_testbus::{current_user, Daemon, PrivateBus};

use crate::error::Error;

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Play the scripted walkthrough even at a terminal (the default when not at one).
    #[arg(long)]
    scripted: bool,
    /// Pause between the scripted steps, in milliseconds.
    #[arg(long, default_value_t = 700)]
    pause_ms: u64,
}

/// The running stack: dropping it stops every daemon and removes the bus directory.
pub(crate) struct Stack {
    /// Where the binaries are.
    pub bin: PathBuf,
    /// The private bus's address.
    pub address: String,
    // Fields drop in order: the daemons before the bus.
    _policyd: Daemon,
    _hwd: Daemon,
    pub bus: PrivateBus,
}

impl Stack {
    /// A `keywarden` CLI command on this bus.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("keywarden"));
        c.arg("--bus-address").arg(&self.address).args(args);
        c
    }
}

/// Run the demo.
pub fn run(root: &Path, args: &DemoArgs) -> Result<(), Error> {
    let live = !args.scripted && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    crate::cmd::run(&mut Command::new(root.join("tests/setup-host.sh")))?;
    let mut build = crate::cmd::cargo();
    build.current_dir(root).args(["build", "--quiet"]);
    for p in [
        "keywarden-hwd",
        "keywarden-policyd",
        "keywarden",
        "keywarden-console",
    ] {
        build.args(["-p", p]);
    }
    crate::cmd::run(&mut build)?;
    let stack = start(root, &crate::cmd::target_dir().join("debug"))?;
    if live {
        live::run(&stack)
    } else {
        script::run(&stack, Duration::from_millis(args.pause_ms))
    }
}

fn start(root: &Path, bin: &Path) -> Result<Stack, Error> {
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
    let hwd = Daemon(hwd.spawn().map_err(Error::io("start keywarden-hwd"))?);
    let succeeds = |args: &[&str]| {
        Command::new(bin.join("keywarden"))
            .arg("--bus-address")
            .arg(&address)
            .args(args)
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
    let policyd = Daemon(
        policyd
            .spawn()
            .map_err(Error::io("start keywarden-policyd"))?,
    );
    wait_for(
        || succeeds(&["session", "status"]),
        "keywarden-policyd on the bus",
    )?;
    Ok(Stack {
        bin: bin.to_owned(),
        address,
        _policyd: policyd,
        _hwd: hwd,
        bus,
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
