//! `cargo xtask vm-update-test`: the OTA updater on the real disk image in QEMU.
//!
//! The host builds the next release (`--version`, same tree) and bundles that must be refused
//! (wrong key, wrong board, older version, a tampered chunk), publishes the next release in a
//! TUF repository (the test-only role keys) and a second repository whose timestamp has
//! expired, and serves them over HTTPS on loopback (`keywarden_testbus::https::StaticServer`;
//! the guest reaches it as `updates.keywarden.test`, QEMU's user network). It drives the guest
//! through the qemu board's TEST-ONLY agent on a virtio serial port, with the same commands an
//! admin would type (`keywarden update ...`), and checks:
//! - the factory slot A boots committed; every refused bundle fails with its specific code and
//!   leaves slot B unbootable; expired metadata is refused;
//! - an install from the repository writes B, activates it on trial; a reboot boots B and its
//!   health check commits it;
//! - power cuts (QEMU killed, `--power-cuts N`, default 20, at seeded random moments; the
//!   seed is printed and `--seed` replays it): every cycle publishes a newer release (one of
//!   the two root file systems built, re-signed with a higher version: see `Releases` for
//!   what that does and does not show) and cuts its install (at a random moment of the
//!   measured install time) or, every third cycle, the boot that commits it (at a random
//!   moment of the measured commit boot). After each cut the cabinet boots a working,
//!   committed slot (never a half-written one; the activated one once activated), the
//!   database is the same file and in service, and the cut install then completes (resuming
//!   what was written). Each cycle prints the phase it cut (from the last update status seen:
//!   starting, downloading, writing, read-back/activating, activated, trial boot, committed
//!   boot) and the end the count per phase; the counts are printed, not asserted;
//! - (before the cuts) a release whose health check fails (TEST-ONLY: policyd made to fail by a drop-in in its
//!   root file system) boots on trial until its tries (3) are used up, the health check
//!   failing and the guest rebooting each time; then GRUB boots the committed slot by itself,
//!   and `keywarden update status --json` shows the bad slot not bootable.

use super::vm::{check_as, copy_sparse, default_image, qemu, require_image, Check, OVMF_VARS};
use super::ImageArgs;
use crate::cmd::workspace_root;
use crate::error::{Error, Result};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TASK: &str = "vm-update-test";
const HOST_NAME: &str = "updates.keywarden.test";
const TUF_KEYS: &str = "ota/keys/test-only/tuf";

/// Options of `cargo xtask vm-update-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpdateTestArgs {
    /// The image to test (default: target/image/keywarden.img).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Power cuts during the second install and the boot that commits it.
    #[arg(long, default_value_t = 20)]
    pub power_cuts: usize,
    /// Seed of the cut moments (default: from the clock; printed, so a run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Echo the guest's serial console.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A running VM with the test agent connected (QEMU is killed when it is dropped).
struct Vm {
    child: Child,
    agent: BufReader<UnixStream>,
    booted_at: Instant,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn start(disk: &Path, vars: &Path, dir: &Path, name: &str, verbose: bool) -> Result<Vm> {
        let socket = dir.join("agent.sock");
        let _ = fs::remove_file(&socket);
        let log = dir.join(format!("{name}.log"));
        let log_file =
            fs::File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let mut child = qemu(disk, vars, true)
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .arg("-no-reboot")
            .args(["-device", "virtio-serial-pci"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                socket.display()
            ))
            .args([
                "-device",
                "virtserialport,chardev=agent,name=org.keywarden.test-agent",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: "qemu-system-x86_64".into(),
                source,
            })?;
        let booted_at = Instant::now();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut log_file = log_file;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log_file, "{line}");
                    if verbose {
                        eprintln!("  | {line}");
                    }
                }
            });
        }
        // QEMU listens at once; connect before the guest opens the port.
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => {
                    let _ = child.kill();
                    return Err(Error::Setup(format!(
                        "cannot connect to the test agent socket {}: {e}",
                        socket.display()
                    )));
                }
            }
        };
        Ok(Vm {
            child,
            agent: BufReader::new(stream),
            booted_at,
        })
    }

    fn read_line(&mut self, timeout: Duration) -> Result<String> {
        self.read_line_until(Instant::now() + timeout)?
            .ok_or_else(|| Error::Setup("the test agent did not answer in time".into()))
    }

    /// Reads one line from the agent; `None` once `deadline` has passed.
    fn read_line_until(&mut self, deadline: Instant) -> Result<Option<String>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        self.agent
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(Error::io("setting the agent's read timeout"))?;
        let mut line = String::new();
        match self.agent.read_line(&mut line) {
            Ok(0) => Err(Error::Setup("the test agent closed the connection".into())),
            Ok(_) => Ok(Some(line.trim_end().to_owned())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io("reading from the test agent")(e)),
        }
    }

    /// Waits for the agent's `KWAGENT ready` until `deadline`: `false` if it was not seen by
    /// then (or the guest went away).
    fn ready_by(&mut self, deadline: Instant) -> bool {
        loop {
            match self.read_line_until(deadline) {
                Ok(Some(line)) if line == "KWAGENT ready" => return true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// `keywarden --json update status`, unless `deadline` passes first (or the guest went
    /// away): then `None`, and the agent is out of step (the caller cuts the power).
    fn status_by(&mut self, deadline: Instant) -> Option<serde_json::Value> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let command = "keywarden --json update status 2>/dev/null";
        writeln!(self.agent.get_mut(), "{}", engine.encode(command)).ok()?;
        let mut output = String::new();
        loop {
            let line = self.read_line_until(deadline).ok()??;
            if let Some(out) = line.strip_prefix("KWAGENT out ") {
                let bytes = engine.decode(out.trim()).ok()?;
                output = String::from_utf8_lossy(&bytes).into_owned();
            } else if line.starts_with("KWAGENT rc ") {
                // Null while the updater is not on the bus yet.
                return Some(serde_json::from_str(&output).unwrap_or_default());
            }
        }
    }

    /// Waits for the agent's `KWAGENT ready`; returns the time since QEMU started.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Setup(
                    "the guest's test agent never became ready".into(),
                ));
            }
            if self.read_line(left)? == "KWAGENT ready" {
                return Ok(self.booted_at.elapsed());
            }
        }
    }

    /// Runs `command` in the guest as root; (exit status, output).
    fn run(&mut self, command: &str) -> Result<(i32, String)> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        writeln!(self.agent.get_mut(), "{}", engine.encode(command))
            .map_err(Error::io("writing to the test agent"))?;
        let mut output = String::new();
        loop {
            let line = self.read_line(Duration::from_secs(900))?;
            if let Some(out) = line.strip_prefix("KWAGENT out ") {
                let bytes = engine.decode(out.trim()).map_err(|e| {
                    Error::Setup(format!("the test agent sent undecodable output: {e}"))
                })?;
                output = String::from_utf8_lossy(&bytes).into_owned();
            } else if let Some(rc) = line.strip_prefix("KWAGENT rc ") {
                let rc = rc.trim().parse().unwrap_or(-1);
                return Ok((rc, output));
            }
        }
    }

    /// Runs `command` and parses its standard output as JSON.
    fn json(&mut self, command: &str) -> Result<(i32, serde_json::Value)> {
        // Standard output only: the CLI prints its errors on standard error.
        let (rc, out) = self.run(&format!("{command} 2>/dev/null"))?;
        let value = serde_json::from_str(&out).unwrap_or_else(|_| serde_json::json!({"raw": out}));
        Ok((rc, value))
    }

    /// Waits until the boot is over (the bless unit ran or failed); the update status then.
    fn settled_status(&mut self) -> Result<serde_json::Value> {
        self.run("systemctl is-system-running --wait >/dev/null 2>&1; true")?;
        let (_, status) = self.json("keywarden --json update status")?;
        Ok(status)
    }

    /// Reboots the guest (the agent dies with it, so no answer is awaited) and waits for QEMU to
    /// end (`-no-reboot`).
    fn reboot(mut self, timeout: Duration) -> bool {
        use base64::Engine as _;
        let command = base64::engine::general_purpose::STANDARD.encode("systemctl reboot");
        let _ = writeln!(self.agent.get_mut(), "{command}");
        self.wait_exit(timeout)
    }

    /// Cuts the power: no shutdown, no sync.
    fn power_cut(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for QEMU to exit by itself (the guest rebooted; `-no-reboot` ends QEMU).
    fn wait_exit(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

fn slot<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["slots"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

fn slot_bootable(status: &serde_json::Value, name: &str) -> bool {
    slot(status, name).is_some_and(|s| s["bootable"] == true)
}

fn slot_committed(status: &serde_json::Value, name: &str) -> bool {
    slot(status, name).is_some_and(|s| s["bootable"] == true && s["committed"] == true)
}

fn summary(status: &serde_json::Value) -> String {
    let slots: Vec<String> = status["slots"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "{}:{}{}{}",
                        s["name"].as_str().unwrap_or("?"),
                        if s["bootable"] == true { "ok" } else { "bad" },
                        if s["committed"] == true {
                            ",committed".to_owned()
                        } else {
                            format!(",tries={}", s["tries_left"])
                        },
                        s["version"]
                            .as_str()
                            .filter(|v| !v.is_empty())
                            .map(|v| format!(",{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "booted {} {}; {}",
        status["booted_slot"].as_str().unwrap_or("?"),
        status["booted_version"].as_str().unwrap_or("?"),
        slots.join(" ")
    )
}

/// The next patch version after `version` (`0.1.0` → `0.1.1`).
fn bump(version: &str, by: u64) -> Result<String> {
    let mut parts: Vec<u64> = version
        .split('-')
        .next()
        .unwrap_or(version)
        .split('.')
        .map(|p| {
            p.parse()
                .map_err(|_| Error::Setup(format!("version {version:?}")))
        })
        .collect::<Result<_>>()?;
    if parts.len() != 3 {
        return Err(Error::Setup(format!(
            "version {version:?} is not MAJOR.MINOR.PATCH"
        )));
    }
    parts[2] += by;
    Ok(format!("{}.{}.{}", parts[0], parts[1], parts[2]))
}

/// Builds (or reuses, when it is this tree's) the image of `version` into `out`; its bundle.
fn release(src: &Path, version: &str, out: &Path) -> Result<PathBuf> {
    let bundle = out.join(format!("keywarden-{version}-keywarden-qemu-x86_64.kwb"));
    let source = super::source_id(src);
    let built = fs::read_to_string(out.join("work/source")).unwrap_or_default();
    // A dirty tree's id does not change with its edits: always rebuild it.
    if built.trim() != source || source.ends_with("-dirty") || !bundle.is_file() {
        super::build(
            src,
            &ImageArgs {
                out: Some(out.to_path_buf()),
                board: "qemu".into(),
                signing_key: None,
                update_lock: false,
                version: Some(version.to_owned()),
            },
        )?;
    }
    Ok(bundle)
}

/// Bundles the updater must refuse, made from the next release's root file system.
fn bad_bundles(
    src: &Path,
    rootfs: &Path,
    good: &Path,
    next: &str,
    dir: &Path,
) -> Result<Vec<(String, &'static str)>> {
    use keywarden_bundle::{create, keys, CreateSpec};
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let test_key = keys::load_signing_key(&src.join(super::bundle::TEST_ONLY_KEY))
        .map_err(|e| Error::Setup(format!("loading the test-only key: {e}")))?;
    let stranger = keywarden_bundle::SigningKey::from_bytes(&[7u8; 32]);
    let make = |name: &str,
                version: &str,
                board: &str,
                key: &keywarden_bundle::SigningKey|
     -> Result<()> {
        let spec = CreateSpec {
            version: version.to_owned(),
            compatible: board.to_owned(),
            created: 1_790_000_000,
            build_id: None,
            payloads: vec![("rootfs".to_owned(), rootfs.to_path_buf())],
        };
        let path = dir.join(name);
        let mut out = std::io::BufWriter::new(
            fs::File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?,
        );
        create(&spec, key, &mut out)
            .map_err(|e| Error::Setup(format!("creating test bundle {name}: {e}")))?;
        out.flush()
            .map_err(Error::io(format!("writing {}", path.display())))
    };
    make("wrong-key.kwb", next, "keywarden-qemu-x86_64", &stranger)?;
    make("wrong-board.kwb", next, "keywarden-other-x86_64", &test_key)?;
    make("older.kwb", "0.0.1", "keywarden-qemu-x86_64", &test_key)?;
    // A tampered chunk: one payload byte flipped far into the payload (after chunks the
    // installer writes first).
    let tampered = dir.join("tampered.kwb");
    let mut bytes = fs::read(good).map_err(Error::io(format!("reading {}", good.display())))?;
    let at = bytes.len() - 100_000;
    bytes[at] ^= 0x40;
    fs::write(&tampered, bytes).map_err(Error::io(format!("writing {}", tampered.display())))?;
    Ok(vec![
        ("wrong-key.kwb".into(), "unknown-signer"),
        ("wrong-board.kwb".into(), "wrong-board"),
        ("older.kwb".into(), "not-newer"),
        ("tampered.kwb".into(), "chunk-mismatch"),
    ])
}

/// Publishes `bundle` into a fresh TUF repository at `repo`; `expired` makes its timestamp
/// already expired (a freeze attack's stale metadata).
fn publish(src: &Path, repo: &Path, bundle: &Path, expired: bool) -> Result<()> {
    use keywarden_updated::remote::publish::{self, Expiry, InitKeys};
    let keys = src.join(TUF_KEYS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting a runtime for publishing"))?;
    let role_keys: Vec<PathBuf> = ["root-1", "targets", "snapshot", "timestamp"]
        .iter()
        .map(|k| keys.join(format!("{k}.pem")))
        .collect();
    runtime
        .block_on(async {
            publish::init(
                repo,
                &InitKeys {
                    root: vec![keys.join("root-1.pem")],
                    root_threshold: 1,
                    targets: keys.join("targets.pem"),
                    snapshot: keys.join("snapshot.pem"),
                    timestamp: keys.join("timestamp.pem"),
                },
                chrono::Utc::now() + chrono::Duration::days(365),
            )
            .await?;
            let mut expiry = Expiry::from_now(30, 1);
            if expired {
                expiry.timestamp = chrono::Utc::now() - chrono::Duration::hours(1);
            }
            publish::add_bundle(repo, &role_keys, bundle, &expiry).await?;
            Ok::<(), keywarden_updated::Error>(())
        })
        .map_err(|e| {
            Error::Setup(format!(
                "publishing {} into {}: {e}",
                bundle.display(),
                repo.display()
            ))
        })
}

/// Shell to write `text` to `path` in the guest.
fn write_file_cmd(path: &str, text: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    format!("mkdir -p \"$(dirname {path})\" && echo {b64} | base64 -d > {path}")
}

/// The repository settings a factory would provision, pointing at `repo` on the test server.
fn provision_cmd(port: u16, repo: &str, ca: &str, root: &str) -> String {
    let dir = "/var/lib/keywarden/identity/update";
    let settings = format!(
        "metadata-url = \"https://{HOST_NAME}:{port}/{repo}/metadata/\"\n\
         targets-url = \"https://{HOST_NAME}:{port}/{repo}/targets/\"\n\
         root = \"{dir}/root.json\"\nca = \"{dir}/ca.pem\"\n"
    );
    [
        write_file_cmd(&format!("{dir}/ca.pem"), ca),
        write_file_cmd(&format!("{dir}/root.json"), root),
        write_file_cmd(&format!("{dir}/repository.toml"), &settings),
        // A new repository means new metadata: forget the old one's.
        "rm -rf /var/lib/keywarden/update/tuf".to_owned(),
    ]
    .join(" && ")
}

/// `cargo xtask vm-update-test`: returns (passed, failed).
pub fn update_test(args: &UpdateTestArgs) -> Result<(usize, usize)> {
    crate::host::ensure_tools()?;
    let src = workspace_root();
    let image = args.image.clone().unwrap_or_else(default_image);
    require_image(&image)?;
    let dir = src.join("target/image/update-test");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut checks: Vec<Check> = Vec::new();
    let mut check = |name: String, passed: bool, detail: String| {
        check_as(TASK, &mut checks, name, passed, detail);
    };

    // The releases: the image's, the next one, and the one after.
    let current = super::workspace_version(&src)?;
    let next = bump(&current, 1)?;
    let after = bump(&current, 2)?;
    let step = Instant::now();
    let next_bundle = release(&src, &next, &src.join("target/image-next"))?;
    release(&src, &after, &src.join("target/image-after"))?;
    eprintln!(
        "{TASK}: releases {next} and {after} ready in {:.0?}",
        step.elapsed()
    );

    let www = dir.join("www");
    let bad = bad_bundles(
        &src,
        &src.join("target/image-next/rootfs.squashfs"),
        &next_bundle,
        &next,
        &www.join("bad"),
    )?;
    publish(&src, &www.join("good"), &next_bundle, false)?;
    publish(&src, &www.join("expired"), &next_bundle, true)?;
    let server = keywarden_testbus::https::StaticServer::start_for(&www, &[HOST_NAME]);
    let port = server.addr().port();
    let root_json = |repo: &str| -> Result<String> {
        let path = www.join(repo).join("metadata/1.root.json");
        fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))
    };
    let ca = server.ca_pem().to_owned();

    let disk = dir.join("disk.img");
    copy_sparse(&image, &disk)?;
    let vars = dir.join("OVMF_VARS.fd");
    fs::copy(OVMF_VARS, &vars).map_err(Error::io("copying the UEFI variables"))?;
    let boot_timeout = Duration::from_secs(300);

    // Boot 1: the factory image, slot A.
    let mut vm = Vm::start(&disk, &vars, &dir, "boot-1", args.verbose)?;
    let ready = vm.wait_ready(boot_timeout)?;
    let status = vm.settled_status()?;
    check(
        "factory image boots slot A, committed".into(),
        status["booted_slot"] == "A"
            && slot_committed(&status, "A")
            && !slot_bootable(&status, "B"),
        format!(
            "{} ; agent after {:.1} s",
            summary(&status),
            ready.as_secs_f64()
        ),
    );
    let (rc, _) = vm
        .run("systemctl is-active keywarden-updated keywarden-health-check keywarden-bless-boot")?;
    check(
        "updater, health check and bless units active".into(),
        rc == 0,
        String::new(),
    );

    // Refusals: each specific, none leaves B bootable.
    vm.run(&provision_cmd(port, "good", &ca, &root_json("good")?))?;
    for (file, code) in &bad {
        let url = format!("https://{HOST_NAME}:{port}/bad/{file}");
        let (rc, result) = vm.json(&format!("keywarden --json update install {url}"))?;
        let (_, status) = vm.json("keywarden --json update status")?;
        check(
            format!("{file} refused with {code}, slot B left unbootable"),
            rc != 0 && result["code"] == *code && !slot_bootable(&status, "B"),
            format!("exit {rc}, {}", result["code"]),
        );
    }
    vm.run(&provision_cmd(port, "expired", &ca, &root_json("expired")?))?;
    let (rc, out) = vm.run("keywarden update check")?;
    check(
        "expired repository metadata refused".into(),
        rc != 0 && out.contains("(metadata-expired)"),
        out.trim().to_owned(),
    );
    let (rc, result) = vm.json("keywarden --json update install")?;
    let (_, status) = vm.json("keywarden --json update status")?;
    check(
        "install from the expired repository refused, slot B left unbootable".into(),
        rc != 0 && !slot_bootable(&status, "B"),
        format!("exit {rc}, {}", result["code"]),
    );

    // The install A -> B from the repository.
    vm.run(&provision_cmd(port, "good", &ca, &root_json("good")?))?;
    let (rc, out) = vm.run("keywarden update check")?;
    check(
        format!("check offers {next}"),
        rc == 0 && out.contains(&next),
        out.trim().to_owned(),
    );
    let started = Instant::now();
    let (rc, result) = vm.json("keywarden --json update install")?;
    let took = started.elapsed();
    let (_, status) = vm.json("keywarden --json update status")?;
    check(
        format!("install {next} into slot B over HTTPS from the TUF repository"),
        rc == 0 && result["ok"] == true,
        format!(
            "{:.1} s, {} bytes downloaded, {} reused; {}",
            took.as_secs_f64(),
            result["downloaded"],
            result["reused"],
            result["message"]
        ),
    );
    check(
        "slot B activated on trial, A still committed".into(),
        slot_bootable(&status, "B")
            && !slot_committed(&status, "B")
            && slot_committed(&status, "A"),
        summary(&status),
    );
    let exited = vm.reboot(Duration::from_secs(120));
    check("the guest reboots".into(), exited, String::new());

    // Boot 2: slot B on trial, committed by its health check.
    let mut vm = Vm::start(&disk, &vars, &dir, "boot-2", args.verbose)?;
    vm.wait_ready(boot_timeout)?;
    // How long a boot takes to commit a new slot (from QEMU's start): the window of the cuts
    // during the commit boot below.
    let mut commit_boot = boot_timeout;
    while vm.booted_at.elapsed() < boot_timeout {
        let (_, status) = vm.json("keywarden --json update status")?;
        if slot_committed(&status, "B") {
            commit_boot = vm.booted_at.elapsed();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = vm.settled_status()?;
    check(
        format!("slot B boots {next} and its health check commits it"),
        status["booted_slot"] == "B"
            && status["booted_version"] == next.as_str()
            && slot_committed(&status, "B")
            && slot_committed(&status, "A"),
        summary(&status),
    );
    let (_, db) = vm.run("stat -c %W /var/lib/keywarden/keywarden.db")?;
    check(
        "the database on the data partition is the one from before the update".into(),
        !db.trim().is_empty() && db.trim() != "0",
        format!(
            "birth time {}; the boot committed B {:.1} s after QEMU started",
            db.trim(),
            commit_boot.as_secs_f64()
        ),
    );

    // Power cuts: every cycle publishes a newer release and cuts its install or the boot that
    // commits it; then a release whose health check fails, which must roll back by itself.
    let guest = Guest {
        disk: &disk,
        vars: &vars,
        dir: &dir,
        verbose: args.verbose,
        boot_timeout,
    };
    let releases = Releases {
        src: &src,
        repo: www.join("good"),
        work: dir.join("releases"),
        first: after.clone(),
        payloads: [
            (next.clone(), src.join("target/image-next/rootfs.squashfs")),
            (
                after.clone(),
                src.join("target/image-after/rootfs.squashfs"),
            ),
        ],
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    let plan = CutPlan {
        install: took,
        commit_boot,
        seed,
        cuts: args.power_cuts,
        db_birth: db.trim().to_owned(),
    };
    // The rollbacks first: their figures do not wait for the cuts.
    let vm = rollback(vm, &guest, &releases, 1, &mut check)?;
    let vm = unloadable(vm, &guest, &releases, 2, &mut check)?;
    let vm = power_cuts(vm, &guest, &releases, &plan, &mut check)?;
    vm.power_cut();

    let failed = checks.iter().filter(|c| !c.passed).count();
    let passed = checks.len() - failed;
    println!(
        "{TASK}: {passed} passed, {failed} failed (console logs in {})",
        dir.display()
    );
    Ok((passed, failed))
}

/// Adds a newer release to the repository at `repo`.
fn publish_next(src: &Path, repo: &Path, bundle: &Path) -> Result<()> {
    use keywarden_updated::remote::publish::{self, Expiry};
    let keys = src.join(TUF_KEYS);
    let role_keys: Vec<PathBuf> = ["root-1", "targets", "snapshot", "timestamp"]
        .iter()
        .map(|k| keys.join(format!("{k}.pem")))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting a runtime for publishing"))?;
    runtime
        .block_on(publish::add_bundle(
            repo,
            &role_keys,
            bundle,
            &Expiry::from_now(30, 1),
        ))
        .map(drop)
        .map_err(|e| Error::Setup(format!("publishing {}: {e}", bundle.display())))
}

/// A tiny deterministic generator for the cut moments (the same run every time).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// How the guest is started for each boot.
struct Guest<'a> {
    disk: &'a Path,
    vars: &'a Path,
    dir: &'a Path,
    verbose: bool,
    boot_timeout: Duration,
}

impl Guest<'_> {
    fn start(&self, name: &str) -> Result<Vm> {
        Vm::start(self.disk, self.vars, self.dir, name, self.verbose)
    }
}

/// The releases of the cut cycles: each is one of the two root file systems already built,
/// re-signed as a bundle with a higher version and published into the repository.
///
/// What this shows and what not: the device's anti-rollback compares a bundle's version with
/// the booted system's (`IMAGE_VERSION` in its os-release), so a bundle `0.1.7` carrying the
/// `0.1.1` root file system is newer than a booted `0.1.2` and is installed; the slot's saved
/// manifest then says `0.1.7` while the booted os-release says `0.1.1`. Every cycle writes the
/// root file system that differs from the booted one (so the written slot's content really
/// changes, part copied from the active slot, part downloaded). It shows installs, resumes
/// and commits of real, different root file systems under power cuts; it does not show a
/// version bump inside the image (only the `--version` releases `next` and `after` do).
struct Releases<'a> {
    src: &'a Path,
    repo: PathBuf,
    work: PathBuf,
    /// The release the cycles count up from (`after`: the cycles publish after+1, after+2, ...).
    first: String,
    /// (version in its os-release, root file system) of the two releases built.
    payloads: [(String, PathBuf); 2],
}

impl Releases<'_> {
    /// Publishes bundle version `first + n` with the payload that differs from
    /// `booted_version`, as it is or made into a TEST-ONLY broken release.
    fn publish(&self, n: u64, booted_version: &str, kind: ReleaseKind) -> Result<Published> {
        let version = bump(&self.first, n)?;
        let (payload_version, rootfs) = if self.payloads[0].0 == booted_version {
            &self.payloads[1]
        } else {
            &self.payloads[0]
        };
        fs::create_dir_all(&self.work)
            .map_err(Error::io(format!("creating {}", self.work.display())))?;
        let rootfs = match kind {
            ReleaseKind::Working => rootfs.clone(),
            broken => broken_rootfs(rootfs, &self.work, broken)?,
        };
        let bundle = self.work.join(format!("keywarden-{version}.kwb"));
        resign(self.src, &rootfs, &version, &bundle)?;
        publish_next(self.src, &self.repo, &bundle)?;
        fs::remove_file(&bundle).map_err(Error::io(format!("removing {}", bundle.display())))?;
        let bytes =
            fs::read(&rootfs).map_err(Error::io(format!("reading {}", rootfs.display())))?;
        Ok(Published {
            version,
            payload: payload_version.clone(),
            sha256: keywarden_bundle::Digest::of(&bytes).to_hex(),
            size: bytes.len() as u64,
        })
    }
}

/// What a published release is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReleaseKind {
    /// One of the built root file systems, as built.
    Working,
    /// TEST-ONLY: `keywarden-policyd` fails at every start, so the boot health check fails.
    PolicydFails,
    /// TEST-ONLY: a squashfs compressed with zstd, which Linux mounts but GRUB cannot read, so
    /// GRUB cannot load the slot's kernel at all.
    Unloadable,
}

/// A release a cycle published.
struct Published {
    /// The bundle's version.
    version: String,
    /// The version in its root file system's os-release.
    payload: String,
    /// The root file system's SHA-256 and size.
    sha256: String,
    size: u64,
}

impl Published {
    /// Shell printing whether `slot` holds this root file system, byte for byte.
    fn on_slot_cmd(&self, slot: &str) -> String {
        format!(
            "head -c {} /dev/disk/by-partlabel/root{slot} | sha256sum | grep -q ^{} && echo same || echo different",
            self.size, self.sha256
        )
    }
}

/// Signs `rootfs` as the qemu board's bundle of `version` with the TEST-ONLY key.
fn resign(src: &Path, rootfs: &Path, version: &str, out: &Path) -> Result<()> {
    use keywarden_bundle::{create, keys, CreateSpec};
    let key = keys::load_signing_key(&src.join(super::bundle::TEST_ONLY_KEY))
        .map_err(|e| Error::Setup(format!("loading the test-only key: {e}")))?;
    let spec = CreateSpec {
        version: version.to_owned(),
        compatible: "keywarden-qemu-x86_64".to_owned(),
        created: 1_790_000_000,
        build_id: None,
        payloads: vec![("rootfs".to_owned(), rootfs.to_path_buf())],
    };
    let mut writer = std::io::BufWriter::new(
        fs::File::create(out).map_err(Error::io(format!("creating {}", out.display())))?,
    );
    create(&spec, &key, &mut writer)
        .map_err(|e| Error::Setup(format!("creating bundle {version}: {e}")))?;
    writer
        .flush()
        .map_err(Error::io(format!("writing {}", out.display())))
}

/// TEST-ONLY: `rootfs` made into a broken release of `kind`:
/// - [`ReleaseKind::PolicydFails`]: `keywarden-policyd` fails at every start (a drop-in in `/etc`
///   replacing its `ExecStart` with `/bin/false`), so the policy service never answers and the
///   boot health check of a slot holding it fails;
/// - [`ReleaseKind::Unloadable`]: the same tree packed with zstd, which GRUB cannot read.
fn broken_rootfs(rootfs: &Path, work: &Path, kind: ReleaseKind) -> Result<PathBuf> {
    let tree = work.join("broken-tree");
    let out = work.join(format!("rootfs-{kind:?}.squashfs").to_lowercase());
    for old in [&tree, &out] {
        if old.is_dir() {
            fs::remove_dir_all(old).map_err(Error::io(format!("removing {}", old.display())))?;
        } else if old.exists() {
            fs::remove_file(old).map_err(Error::io(format!("removing {}", old.display())))?;
        }
    }
    crate::cmd::run(
        std::process::Command::new("unsquashfs")
            .args(["-quiet", "-no-progress", "-dest"])
            .arg(&tree)
            .arg(rootfs),
    )?;
    if kind == ReleaseKind::PolicydFails {
        let dropin = tree.join("etc/systemd/system/keywarden-policyd.service.d");
        fs::create_dir_all(&dropin).map_err(Error::io(format!("creating {}", dropin.display())))?;
        fs::write(
            dropin.join("zz-test-only-broken.conf"),
            "# TEST-ONLY (vm-update-test): a broken release; policyd never starts.\n\
             [Service]\nExecStart=\nExecStart=/bin/false\n",
        )
        .map_err(Error::io("writing the broken release's drop-in"))?;
    }
    // xz as in the image, except for the unloadable release: GRUB reads the kernel from the
    // slot's squashfs and knows no zstd.
    let comp = if kind == ReleaseKind::Unloadable {
        "zstd"
    } else {
        "xz"
    };
    crate::cmd::run(
        std::process::Command::new("mksquashfs")
            .arg(&tree)
            .arg(&out)
            .args(["-comp", comp, "-noappend", "-quiet", "-no-progress"]),
    )?;
    fs::remove_dir_all(&tree).map_err(Error::io(format!("removing {}", tree.display())))?;
    Ok(out)
}

/// A release whose kernel GRUB cannot load: installed on trial, the next start must not stop at
/// GRUB's prompt (it did, before grub.cfg handled it) but mark the slot bad and restart, and the
/// one after boots the committed slot with the cabinet working.
fn unloadable(
    mut vm: Vm,
    guest: &Guest,
    releases: &Releases,
    n: usize,
    check: &mut dyn FnMut(String, bool, String),
) -> Result<Vm> {
    let (_, before) = vm.json("keywarden --json update status")?;
    let good = before["booted_slot"].as_str().unwrap_or("?").to_owned();
    let bad = if good == "A" { "B" } else { "A" };
    let release = releases.publish(
        n as u64,
        before["booted_version"].as_str().unwrap_or(""),
        ReleaseKind::Unloadable,
    )?;
    let version = release.version;
    let (rc, result) = vm.json("keywarden --json update install")?;
    let (_, status) = vm.json("keywarden --json update status")?;
    check(
        format!("install the unloadable release {version} (TEST-ONLY: a zstd squashfs GRUB cannot read) into slot {bad}, on trial"),
        rc == 0 && result["ok"] == true && slot_bootable(&status, bad) && !slot_committed(&status, bad),
        format!("{} {}; {}", result["code"], result["message"], summary(&status)),
    );
    vm.reboot(Duration::from_secs(120));
    let name = "unloadable-1";
    let vm = guest.start(name)?;
    let restarted = vm.wait_exit(Duration::from_secs(180));
    // The console thread writes the log as QEMU prints; give it a moment after the exit.
    std::thread::sleep(Duration::from_secs(1));
    let log_path = guest.dir.join(format!("{name}.log"));
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let said = format!("keywarden: slot {bad} cannot be booted; marking it bad and restarting");
    check(
        format!("GRUB cannot load slot {bad}: it marks the slot bad and restarts instead of stopping at its prompt"),
        restarted && log.contains(&said),
        format!(
            "{}; console {}",
            if restarted { "restarted by itself" } else { "did NOT restart within 180 s" },
            log_path.display()
        ),
    );
    let mut vm = guest.start("unloadable-2")?;
    let ready = vm.wait_ready(guest.boot_timeout)?;
    let status = vm.settled_status()?;
    let (health, _) = vm.run("keywarden-updated health-check --timeout 60")?;
    let bad_slot = slot(&status, bad).cloned().unwrap_or_default();
    check(
        format!("the next start boots the committed slot {good}, the cabinet works, and slot {bad} shows unbootable"),
        status["booted_slot"] == good.as_str()
            && slot_committed(&status, &good)
            && health == 0
            && bad_slot["bootable"] == false,
        format!("agent after {:.0} s; {}", ready.as_secs_f64(), summary(&status)),
    );
    Ok(vm)
}

/// `line` without terminal escape sequences (ESC [ ... letter: the firmware's colours).
fn without_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A seed for the cut moments from the clock.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x6b65_7977_6172_6465, |d| d.as_nanos() as u64)
}

/// The cut cycles' parameters, from the measured first install and commit boot.
struct CutPlan {
    /// How long the first install (A -> B) took.
    install: Duration,
    /// From QEMU's start to the committed slot, in the first boot of a new slot.
    commit_boot: Duration,
    seed: u64,
    cuts: usize,
    /// The database's birth time (the same file must survive every cut).
    db_birth: String,
}

/// Where a power cut landed: the last update status seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CutPhase {
    /// The install was started, no chunk seen yet (TUF metadata, the bundle's head).
    Starting,
    /// Chunks fetched over HTTPS and written.
    Downloading,
    /// Chunks copied from the active slot and written.
    Writing,
    /// The final sync and read-back, then the activation.
    Activating,
    /// The new slot activated on trial, not rebooted yet.
    Activated,
    /// The boot of the new slot, before its health check committed it.
    TrialBoot,
    /// The boot of the new slot, after the commit.
    Committed,
}

impl CutPhase {
    const ALL: [CutPhase; 7] = [
        CutPhase::Starting,
        CutPhase::Downloading,
        CutPhase::Writing,
        CutPhase::Activating,
        CutPhase::Activated,
        CutPhase::TrialBoot,
        CutPhase::Committed,
    ];

    fn of_state(state: &str) -> CutPhase {
        match state {
            "downloading" => CutPhase::Downloading,
            "installing" => CutPhase::Writing,
            "verifying" => CutPhase::Activating,
            "installed" => CutPhase::Activated,
            _ => CutPhase::Starting,
        }
    }

    fn label(self) -> &'static str {
        match self {
            CutPhase::Starting => "starting (metadata, head)",
            CutPhase::Downloading => "downloading",
            CutPhase::Writing => "writing (reused chunks)",
            CutPhase::Activating => "read-back/activating",
            CutPhase::Activated => "activated, before reboot",
            CutPhase::TrialBoot => "trial boot",
            CutPhase::Committed => "committed boot",
        }
    }
}

/// The power-cut cycles. Each publishes a newer release (see [`Releases`]); two of three cut
/// its install at a random moment of the measured install time (slightly more, so some land
/// after the activation), the third lets the install complete and cuts the boot into the new
/// slot at a random moment of the measured commit boot. After each cut the guest boots again
/// and must run a committed slot with a healthy cabinet (hwd answering, policyd `ready`: its
/// database passed `quick_check`), the same database file, an idle updater; a slot whose
/// write had begun may boot only if it holds the whole new root file system, byte for byte
/// (then the activation came before the cut, whatever the last status seen said, and the cut
/// is counted as after the activation); after the activation the new slot must boot. Then the
/// cut release is installed to completion (resuming what was written) unless it is already
/// booted. Prints each cycle and the count of cuts per phase.
fn power_cuts(
    mut vm: Vm,
    guest: &Guest,
    releases: &Releases,
    plan: &CutPlan,
    check: &mut dyn FnMut(String, bool, String),
) -> Result<Vm> {
    eprintln!(
        "{TASK}: {} power cuts, seed {} (replay with --seed {}); install window {:.1} s, commit boot {:.1} s",
        plan.cuts,
        plan.seed,
        plan.seed,
        plan.install.as_secs_f64() * 1.1,
        plan.commit_boot.as_secs_f64() * 1.15
    );
    let mut rng = Lcg(plan.seed);
    // The window of the install cuts: the last whole install's duration (downloads vary with
    // the payloads), the first one's to begin with.
    let mut install_time = plan.install;
    let mut tally = std::collections::BTreeMap::<CutPhase, usize>::new();
    let mut survived = 0;
    let mut completed = 0;
    let mut resumed = 0;
    let mut failure = None;
    let started = Instant::now();
    // The last cycle's release: (version, its root file system's version, its slot).
    let mut last_release = (String::new(), String::new(), String::new());
    for cut in 0..plan.cuts {
        let (_, before) = vm.json("keywarden --json update status")?;
        let old = before["booted_slot"].as_str().unwrap_or("?").to_owned();
        let target = if old == "A" { "B" } else { "A" };
        let release = releases.publish(
            cut as u64 + 3,
            before["booted_version"].as_str().unwrap_or(""),
            ReleaseKind::Working,
        )?;
        let (version, payload) = (release.version.clone(), release.payload.clone());
        let in_boot = cut % 3 == 2;
        let (mut phase, at, progress) = if !in_boot {
            let window = install_time.mul_f64(1.1).as_millis() as u64;
            let at = Duration::from_millis(rng.below(window));
            let t0 = Instant::now();
            let (rc, out) = vm.run("keywarden update install --no-wait")?;
            if rc != 0 {
                failure = Some(format!("cut {cut}: install did not start: {}", out.trim()));
                break;
            }
            let deadline = t0 + at;
            let mut last = serde_json::Value::Null;
            while let Some(status) = vm.status_by(deadline) {
                let Some(state) = status["state"].as_str().map(str::to_owned) else {
                    continue;
                };
                last = status;
                if state == "failed" || state == "installed" {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    break;
                }
            }
            if last["state"] == "failed" {
                failure = Some(format!(
                    "cut {cut}: the install failed before the cut: {}",
                    last["last_error"]
                ));
                break;
            }
            vm.power_cut();
            let progress = format!(
                "{:.1}/{:.1} MB",
                last["bytes_done"].as_f64().unwrap_or(0.0) / 1e6,
                last["bytes_total"].as_f64().unwrap_or(0.0) / 1e6
            );
            (
                CutPhase::of_state(last["state"].as_str().unwrap_or("")),
                at,
                progress,
            )
        } else {
            // The install completes (the one after the previous cut); the boot into it is cut.
            let t0 = Instant::now();
            let (rc, result) = vm.json("keywarden --json update install")?;
            install_time = t0.elapsed();
            if rc != 0 || result["ok"] != true {
                failure = Some(format!(
                    "cut {cut}: install of {version} failed: {} {}",
                    result["code"], result["message"]
                ));
                break;
            }
            vm.reboot(Duration::from_secs(120));
            let window = plan.commit_boot.mul_f64(1.15).as_millis() as u64;
            let at = Duration::from_millis(rng.below(window));
            let mut trial = guest.start(&format!("cut-{cut}"))?;
            let deadline = trial.booted_at + at;
            let mut committed = false;
            if trial.ready_by(deadline) {
                while let Some(status) = trial.status_by(deadline) {
                    if status["booted_slot"] == target && slot_committed(&status, target) {
                        committed = true;
                        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                        break;
                    }
                }
            }
            trial.power_cut();
            let phase = if committed {
                CutPhase::Committed
            } else {
                CutPhase::TrialBoot
            };
            (phase, at, "boot".to_owned())
        };

        // The boot after the cut.
        vm = guest.start(&format!("after-cut-{cut}"))?;
        if let Err(e) = vm.wait_ready(guest.boot_timeout) {
            failure = Some(format!("cut {cut} ({}): no boot: {e}", phase.label()));
            break;
        }
        let status = vm.settled_status()?;
        let booted = status["booted_slot"].as_str().unwrap_or("?").to_owned();
        let (health, health_out) = vm.run("keywarden-updated health-check --timeout 60")?;
        let (_, birth) = vm.run("stat -c %W /var/lib/keywarden/keywarden.db")?;
        let mut problems = Vec::new();
        if !slot_committed(&status, &booted) {
            problems.push("the booted slot is not committed".to_owned());
        }
        if health != 0 {
            problems.push(format!(
                "health check: {}",
                health_out.trim().replace('\n', "; ")
            ));
        }
        if birth.trim() != plan.db_birth {
            problems.push(format!(
                "database birth time {} (was {})",
                birth.trim(),
                plan.db_birth
            ));
        }
        if status["state"] != "idle" {
            problems.push(format!("updater state {}", status["state"]));
        }
        // The status seen last is a lower bound of where the cut landed. Once writing began,
        // the target was unbootable until the install had read it back and activated it: if
        // it booted, it must hold the whole new root file system, and the cut came after the
        // activation.
        let mut seen = String::new();
        if phase >= CutPhase::Downloading && booted == target {
            let (_, same) = vm.run(&release.on_slot_cmd(target))?;
            if same.trim() != "same" {
                problems.push(format!(
                    "booted slot {target}, which does not hold the new root file system (cut while {})",
                    phase.label()
                ));
            } else if phase < CutPhase::Activated {
                seen = format!(" (last seen {}; the activation came first)", phase.label());
                phase = CutPhase::Activated;
            }
        }
        if phase >= CutPhase::Activated && booted != target {
            problems.push(format!("the activated slot {target} did not boot"));
        }
        *tally.entry(phase).or_default() += 1;
        // The next install completes: the cut one, resumed, unless it is already booted (a
        // slot's `version` is its os-release's once booted, so the slot and phase tell).
        let release_booted = phase >= CutPhase::Activating && booted == target;
        last_release = (
            version.clone(),
            payload.clone(),
            if release_booted {
                booted.clone()
            } else if booted == "A" {
                "B".to_owned()
            } else {
                "A".to_owned()
            },
        );
        let mut next_install = "already booted".to_owned();
        if problems.is_empty() && !release_booted {
            // The resume journal the cut left (chunks known to be on the slot), if any.
            let (_, journal) = vm.json("cat /var/lib/keywarden/update/install-journal.json")?;
            let journal_chunks = journal["chunks_done"].as_u64().unwrap_or(0);
            let t0 = Instant::now();
            let (rc, result) = vm.json("keywarden --json update install")?;
            if journal_chunks == 0 {
                install_time = t0.elapsed();
            }
            if rc == 0 && result["ok"] == true {
                completed += 1;
                if journal_chunks > 0 {
                    resumed += 1;
                }
                next_install = format!(
                    "completed, {} ({:.1} MB downloaded, {:.1} MB reused or resumed)",
                    if journal_chunks > 0 {
                        format!("resumed after {journal_chunks} journalled chunks")
                    } else {
                        "from the start".to_owned()
                    },
                    result["downloaded"].as_f64().unwrap_or(0.0) / 1e6,
                    result["reused"].as_f64().unwrap_or(0.0) / 1e6
                );
            } else {
                problems.push(format!(
                    "the next install failed: {} {}",
                    result["code"], result["message"]
                ));
            }
        }
        eprintln!(
            "{TASK}: cut {cut:2} {version} (root fs {payload}) into {target}: {}{seen} at {:.1} s ({progress}) -> {}; next install {next_install}{}",
            phase.label(),
            at.as_secs_f64(),
            summary(&status),
            if problems.is_empty() {
                String::new()
            } else {
                format!("; PROBLEMS: {}", problems.join("; "))
            }
        );
        if !problems.is_empty() {
            failure = Some(format!(
                "cut {cut} ({}): {}",
                phase.label(),
                problems.join("; ")
            ));
            break;
        }
        survived += 1;
    }
    let counts: Vec<String> = CutPhase::ALL
        .iter()
        .map(|p| format!("{} {}", p.label(), tally.get(p).copied().unwrap_or(0)))
        .collect();
    eprintln!(
        "{TASK}: cuts per phase: {} ({:.0} s for {} cycles, seed {})",
        counts.join(", "),
        started.elapsed().as_secs_f64(),
        plan.cuts,
        plan.seed
    );
    check(
        format!(
            "after each of {} power cuts (installs and commit boots of newer releases) the cabinet boots a working, committed slot and the next install completes",
            plan.cuts
        ),
        survived == plan.cuts,
        format!(
            "{survived} survived; {completed} cut installs completed afterwards ({resumed} resumed); per phase: {}; seed {}{}",
            counts.join(", "),
            plan.seed,
            failure.map(|f| format!("; FAILED {f}")).unwrap_or_default()
        ),
    );
    if survived < plan.cuts || plan.cuts == 0 {
        return Ok(vm);
    }

    // The last release boots and commits.
    let (last_version, last_payload, last_slot) = last_release;
    let (_, status) = vm.json("keywarden --json update status")?;
    if status["booted_slot"] != last_slot.as_str() {
        vm.reboot(Duration::from_secs(120));
        vm = guest.start("final")?;
        vm.wait_ready(guest.boot_timeout)?;
    }
    let status = vm.settled_status()?;
    check(
        format!(
            "the last release {last_version} (root fs {last_payload}) boots from slot {last_slot} and commits after the cuts"
        ),
        status["booted_slot"] == last_slot.as_str()
            && status["booted_version"] == last_payload.as_str()
            && slot_committed(&status, &last_slot),
        summary(&status),
    );
    Ok(vm)
}

/// A release whose health check fails (TEST-ONLY broken policyd, [`broken_rootfs`]) is
/// installed and rebooted into: it boots on trial until its tries are used up, each time the
/// health check fails and the guest reboots, then GRUB boots the committed slot by itself and
/// the bad slot stays marked bad.
fn rollback(
    mut vm: Vm,
    guest: &Guest,
    releases: &Releases,
    n: usize,
    check: &mut dyn FnMut(String, bool, String),
) -> Result<Vm> {
    use keywarden_updated::boot::TRY_BUDGET;
    let (_, before) = vm.json("keywarden --json update status")?;
    let good = before["booted_slot"].as_str().unwrap_or("?").to_owned();
    let bad = if good == "A" { "B" } else { "A" };
    let release = releases.publish(
        n as u64,
        before["booted_version"].as_str().unwrap_or(""),
        ReleaseKind::PolicydFails,
    )?;
    let (version, payload) = (release.version, release.payload);
    let (rc, result) = vm.json("keywarden --json update install")?;
    let (_, status) = vm.json("keywarden --json update status")?;
    check(
        format!("install the broken release {version} (TEST-ONLY: root fs {payload} with policyd failing) into slot {bad}, on trial"),
        rc == 0
            && result["ok"] == true
            && slot_bootable(&status, bad)
            && !slot_committed(&status, bad)
            && slot_committed(&status, &good),
        format!("{} {}; {}", result["code"], result["message"], summary(&status)),
    );
    let started = Instant::now();
    vm.reboot(Duration::from_secs(120));
    let mut trials = Vec::new();
    let mut fallback = None;
    for boot in 1..=usize::from(TRY_BUDGET) + 2 {
        let name = format!("rollback-{boot}");
        let mut vm = guest.start(&name)?;
        // A trial of the broken slot reboots by itself once its health check gives up, which can
        // be before the agent answers: what each boot did is read from its console (GRUB's
        // choice and tries, the health check's verdict), the fallback from the update status.
        let mut status = serde_json::Value::Null;
        if vm.ready_by(Instant::now() + guest.boot_timeout) {
            // The updater may not be on the bus yet when the agent is.
            let deadline = Instant::now() + Duration::from_secs(90);
            while let Some(s) = vm.status_by(deadline) {
                status = s;
                if status["booted_slot"].is_string() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        if status["booted_slot"] == good.as_str() {
            fallback = Some((vm, status));
            break;
        }
        let booted_at = vm.booted_at;
        let rebooted = vm.wait_exit(Duration::from_secs(400));
        let up = booted_at.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        let log = fs::read_to_string(guest.dir.join(format!("{name}.log"))).unwrap_or_default();
        let line = |pat: &str| {
            log.lines()
                .find(|l| l.contains(pat))
                .map(|l| without_escapes(l).trim().to_owned())
        };
        let chose = line("is on trial;").unwrap_or_else(|| "no trial of any slot".into());
        let verdict = line("policy: FAILED").unwrap_or_else(|| "no failed health check".into());
        let on_trial = chose.contains(&format!("slot {bad} is on trial"));
        let failed = verdict.contains("policy: FAILED");
        trials.push(format!(
            "boot {boot}: {chose}; health check: {verdict}; {} {:.0} s after QEMU started",
            if rebooted {
                "rebooted by itself"
            } else {
                "did NOT reboot"
            },
            up.as_secs_f64()
        ));
        if !(on_trial && failed && rebooted) {
            break;
        }
    }
    let took = started.elapsed();
    for line in &trials {
        eprintln!("{TASK}: rollback {line}");
    }
    check(
        format!("slot {bad} boots on trial {TRY_BUDGET} times; each time its health check fails and the guest reboots"),
        trials.len() == usize::from(TRY_BUDGET)
            && trials.iter().all(|t| t.contains(&format!("slot {bad} is on trial")) && t.contains("policy: FAILED") && t.contains("by itself")),
        trials.join(" | "),
    );
    let Some((mut vm, _)) = fallback else {
        check(
            format!("after the try budget GRUB boots slot {good} by itself"),
            false,
            format!("still booting {bad} after {} boots", trials.len()),
        );
        return guest.start("rollback-end");
    };
    let status = vm.settled_status()?;
    let (health, _) = vm.run("keywarden-updated health-check --timeout 60")?;
    let bad_slot = slot(&status, bad).cloned().unwrap_or_default();
    check(
        format!("after the try budget GRUB boots the committed slot {good} by itself, the cabinet works, and `update status --json` shows {bad} ({version}) marked bad"),
        status["booted_slot"] == good.as_str()
            && slot_committed(&status, &good)
            && health == 0
            && bad_slot["bootable"] == false
            && bad_slot["version"] == version.as_str(),
        format!(
            "{:.0} s from the reboot into {bad} to {good} up again; {}; slot {bad}: {bad_slot}",
            took.as_secs_f64(),
            summary(&status)
        ),
    );
    // The history on the data partition tells support what happened, in order.
    let (rc, history) = vm.json("keywarden --json update history --limit 3")?;
    let events: Vec<String> = history
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["event"].as_str().unwrap_or("?"),
                        e["slot"].as_str().unwrap_or("?"),
                        e["version"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rolled_back = format!("rolled-back {bad} {version}");
    check(
        format!("`update history` records the install of {version} into {bad} and its rollback"),
        rc == 0
            && events.last() == Some(&rolled_back)
            && events
                .iter()
                .any(|e| e == &format!("installed {bad} {version}")),
        format!(
            "{}; {}",
            events.join(", "),
            history
                .as_array()
                .and_then(|a| a.last())
                .map(|e| e["message"].to_string())
                .unwrap_or_default()
        ),
    );
    Ok(vm)
}
