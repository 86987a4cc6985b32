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
//! - power cuts (QEMU killed) at random moments of the next install and of the boot that
//!   commits it: every time the cabinet boots a working, committed slot, and the install
//!   completed afterwards (resuming what was written) boots and commits.

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
    /// Echo the guest's serial console.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A running VM with the test agent connected.
struct Vm {
    child: Child,
    agent: BufReader<UnixStream>,
    booted_at: Instant,
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
        self.agent
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(Error::io("setting the agent's read timeout"))?;
        let mut line = String::new();
        let n = self
            .agent
            .read_line(&mut line)
            .map_err(Error::io("reading from the test agent"))?;
        if n == 0 {
            return Err(Error::Setup("the test agent closed the connection".into()));
        }
        Ok(line.trim_end().to_owned())
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
    let after_bundle = release(&src, &after, &src.join("target/image-after"))?;
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
        format!("birth time {}", db.trim()),
    );

    // Power cuts during the next install (B -> A) and the boot that commits it.
    publish_next(&src, &www.join("good"), &after_bundle)?;
    vm.run("rm -rf /var/lib/keywarden/update/tuf")?;
    let mut rng = Lcg(0x6b65_7977_6172_6465);
    let mut survived = 0;
    let mut cut_log = Vec::new();
    for cut in 0..args.power_cuts {
        // Alternate: cut during the install, or during the boot into the installed slot.
        let during_boot = cut % 4 == 3;
        if during_boot {
            let (rc, _) = vm.run("keywarden update install")?;
            if rc == 0 {
                vm.reboot(Duration::from_secs(120));
                let vm2 = Vm::start(&disk, &vars, &dir, &format!("cut-{cut}"), args.verbose)?;
                std::thread::sleep(Duration::from_millis(rng.below(25_000)));
                vm2.power_cut();
            } else {
                vm.power_cut();
            }
        } else {
            vm.run("keywarden update install --no-wait")?;
            std::thread::sleep(Duration::from_millis(rng.below(12_000)));
            vm.power_cut();
        }
        vm = Vm::start(
            &disk,
            &vars,
            &dir,
            &format!("after-cut-{cut}"),
            args.verbose,
        )?;
        let ok = match vm.wait_ready(boot_timeout) {
            Ok(_) => {
                let status = vm.settled_status()?;
                let booted = status["booted_slot"].as_str().unwrap_or("?").to_owned();
                let (health, _) = vm.run("keywarden-updated health-check --timeout 60")?;
                let good = health == 0 && slot_committed(&status, &booted);
                cut_log.push(format!(
                    "{}{}: {}",
                    if during_boot { "boot" } else { "install" },
                    cut,
                    summary(&status)
                ));
                good
            }
            Err(e) => {
                cut_log.push(format!("cut {cut}: {e}"));
                false
            }
        };
        if ok {
            survived += 1;
        } else {
            break;
        }
    }
    check(
        format!(
            "after each of {} power cuts the cabinet boots a working, committed slot",
            args.power_cuts
        ),
        survived == args.power_cuts,
        format!(
            "{survived} survived; last: {}",
            cut_log.last().cloned().unwrap_or_default()
        ),
    );
    let (_, status) = vm.json("keywarden --json update status")?;
    if status["booted_version"] != after.as_str() {
        let (rc, result) = vm.json("keywarden --json update install")?;
        check(
            format!("the install of {after} interrupted by the cuts completes"),
            rc == 0 && result["ok"] == true,
            format!(
                "{} bytes downloaded, {} reused or resumed; {} {}",
                result["downloaded"], result["reused"], result["code"], result["message"]
            ),
        );
        vm.reboot(Duration::from_secs(120));
        vm = Vm::start(&disk, &vars, &dir, "final", args.verbose)?;
        vm.wait_ready(boot_timeout)?;
    }
    let status = vm.settled_status()?;
    check(
        format!("{after} boots and commits after the cuts"),
        status["booted_version"] == after.as_str()
            && slot_committed(&status, status["booted_slot"].as_str().unwrap_or("?")),
        summary(&status),
    );
    vm.power_cut();
    for line in &cut_log {
        eprintln!("{TASK}: {line}");
    }

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
