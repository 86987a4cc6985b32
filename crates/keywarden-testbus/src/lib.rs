//! Test support shared by the host integration tests and the host demo: a private `dbus-daemon`
//! configured like the system bus and carrying the project's own policy files, with the
//! services' users and groups mapped to whoever runs the tests; and child processes that are
//! killed when dropped.
//!
//! Not for production code: it panics on set-up failures, which is what a test wants.

pub mod https;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The repository root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// The name of the user running this process (falls back to `root`).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |u| u.name)
}

/// The name of this process's primary group (falls back to `root`).
pub fn current_group() -> String {
    nix::unistd::Group::from_gid(nix::unistd::getgid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |g| g.name)
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

/// A private bus daemon; killed with its directory on drop.
#[derive(Debug)]
pub struct PrivateBus {
    /// The bus address, for `--bus-address` and `zbus::connection::Builder::address`.
    pub address: String,
    // Fields drop in order: the daemon goes before its directory.
    _daemon: Daemon,
    dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Start `dbus-daemon` with `tests/bus/private-system-bus.conf.in` and the given policy files
    /// (paths relative to the repository root). In each policy file, `user="X"` for every X in
    /// `users` and `group="Y"` for every Y in `groups` are replaced by the current user and group,
    /// so the shipped rules apply to the test's own processes.
    pub fn start(policies: &[&str], users: &[&str], groups: &[&str]) -> PrivateBus {
        let root = workspace_root();
        let dir = tempfile::tempdir().expect("temporary directory");
        let policy_dir = dir.path().join("system.d");
        std::fs::create_dir(&policy_dir).expect("policy directory");
        let (me, my_group) = (current_user(), current_group());
        for p in policies {
            let path = root.join(p);
            let mut text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for u in users {
                text = text.replace(&format!(r#"user="{u}""#), &format!(r#"user="{me}""#));
            }
            for g in groups {
                text = text.replace(
                    &format!(r#"group="{g}""#),
                    &format!(r#"group="{my_group}""#),
                );
            }
            let name = path.file_name().expect("policy file name");
            std::fs::write(policy_dir.join(name), text).expect("write policy");
        }
        let socket = dir.path().join("bus");
        let template = std::fs::read_to_string(root.join("tests/bus/private-system-bus.conf.in"))
            .expect("tests/bus/private-system-bus.conf.in");
        let config = template
            .replace("@SOCKET@", &socket.display().to_string())
            .replace("@POLICY_DIR@", &policy_dir.display().to_string());
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).expect("write bus config");
        // `--print-address` writes the address once the daemon listens: waiting for that line
        // (not for the socket file, which exists from bind(), before listen()) means the first
        // connection is never refused.
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--nopidfile", "--print-address"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon must be installed (apt-get install dbus-daemon)");
        let stdout = child.stdout.take().expect("dbus-daemon's stdout");
        let daemon = Daemon(child);
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        std::io::BufRead::read_line(&mut reader, &mut line).expect("read dbus-daemon's address");
        assert!(
            !line.trim().is_empty() && socket.exists(),
            "dbus-daemon did not start (no address printed)"
        );
        PrivateBus {
            address: format!("unix:path={}", socket.display()),
            dir,
            _daemon: daemon,
        }
    }

    /// A scratch directory that lives as long as the bus.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new connection to the bus.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the private bus")
    }

    /// Waits until `daemon` owns `name` on this bus, for tests without a runtime of their own;
    /// panics, saying which, if the daemon exits first or `limit` passes.
    pub fn wait_for_daemon(&self, daemon: &mut Daemon, name: &str, limit: Duration) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let conn = self.connect().await;
                let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus proxy");
                let bus_name: zbus::names::BusName<'_> = name.try_into().expect("bus name");
                let start = std::time::Instant::now();
                while !dbus.name_has_owner(bus_name.clone()).await.unwrap_or(false) {
                    if let Ok(Some(status)) = daemon.0.try_wait() {
                        panic!("the daemon meant to own {name} exited: {status}");
                    }
                    assert!(
                        start.elapsed() < limit,
                        "{name} did not appear on the bus within {limit:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
    }
}

/// Wait until `name` has an owner on `conn`'s bus; panics after `limit`.
pub async fn wait_for_name(conn: &zbus::Connection, name: &str, limit: Duration) {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.expect("DBus proxy");
    let bus_name: zbus::names::BusName<'_> = name.try_into().expect("bus name");
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if dbus.name_has_owner(bus_name.clone()).await.unwrap_or(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} did not appear on the bus within {limit:?}");
}

/// A binary of this workspace next to the running test executable (`target/<profile>/NAME`);
/// panics, saying how to build it, if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p {name}, or cargo test --workspace)",
        path.display()
    );
    path
}
