//! RAUC (Debian's `rauc` package) installing the same payload into a raw slot backed by a
//! file: the comparison figure of the install benchmark.
//!
//! Set up once per run, all in the bench's temporary directory: a TEST-ONLY self-signed
//! certificate and key (openssl, made here, thrown away with the directory), a `plain` bundle
//! made by `rauc bundle` with the payload as the image of slot class `rootfs` (`verity` bundles
//! need dm-verity, which these machines' kernels lack; a plain bundle's signature covers the
//! whole bundle, so RAUC hashes every byte before it writes), a `system.conf` with two `raw`
//! slots (files next to ours) and `bootloader=noop`, and `rauc service` on a private
//! `dbus-daemon` (`DBUS_SYSTEM_BUS_ADDRESS`) with `--override-boot-slot=A`, so each
//! `rauc install` writes slot B. Timed: `rauc install` (the client returns when the service
//! reports the result) plus an fdatasync of the slot file, so RAUC is timed to data on the
//! disk like `dd conv=fdatasync` and our installer (which syncs and reads back).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `rauc service` on its private bus.
pub struct Rauc {
    bus: Child,
    service: Child,
    bus_address: String,
    conf: PathBuf,
    bundle: PathBuf,
    slot_b: PathBuf,
}

impl Drop for Rauc {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why RAUC cannot be measured here, if it cannot.
pub fn unavailable() -> Option<String> {
    let found = Command::new("rauc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Some("`rauc` is not installed (tests/setup-host.sh installs it)".to_owned());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("`rauc install` mounts the bundle on a loop device: needs root".to_owned());
    }
    None
}

impl Rauc {
    /// Makes the key, the bundle of `payload` and the configuration in `dir`, starts the bus
    /// and the service. Returns the version string of RAUC too.
    pub fn setup(dir: &Path, payload: &Path, size: u64) -> Result<(Rauc, String), String> {
        let dir = dir.join("rauc");
        let content = dir.join("content");
        fs::create_dir_all(&content).map_err(|e| format!("creating {dir:?}: {e}"))?;
        let version = run(Command::new("rauc").arg("--version"))?
            .trim()
            .to_owned();
        let (cert, key) = (
            dir.join("test-only.cert.pem"),
            dir.join("test-only.key.pem"),
        );
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/O=Keywarden bench/CN=TEST-ONLY rauc signer"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
        // The payload as the bundle's image (a hard link where possible: no second copy).
        let image = content.join("rootfs.img");
        if fs::hard_link(payload, &image).is_err() {
            fs::copy(payload, &image).map_err(|e| format!("copying the payload: {e}"))?;
        }
        fs::write(
            content.join("manifest.raucm"),
            "[update]\ncompatible=keywarden-bench\nversion=1.1.0\n\n[bundle]\nformat=plain\n\n\
             [image.rootfs]\nfilename=rootfs.img\n",
        )
        .map_err(|e| format!("writing the manifest: {e}"))?;
        let bundle = dir.join("bench.raucb");
        run(Command::new("rauc")
            .arg("bundle")
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .arg(&content)
            .arg(&bundle))?;
        let (slot_a, slot_b) = (dir.join("slotA.img"), dir.join("slotB.img"));
        for slot in [&slot_a, &slot_b] {
            let file = fs::File::create(slot).map_err(|e| format!("creating {slot:?}: {e}"))?;
            file.set_len(size)
                .map_err(|e| format!("sizing {slot:?}: {e}"))?;
        }
        fs::create_dir_all(dir.join("mnt")).map_err(|e| format!("mount prefix: {e}"))?;
        fs::create_dir_all(dir.join("data")).map_err(|e| format!("data directory: {e}"))?;
        let conf = dir.join("system.conf");
        fs::write(
            &conf,
            format!(
                "[system]\ncompatible=keywarden-bench\nbootloader=noop\nmountprefix={mnt}\n\
                 bundle-formats=plain\ndata-directory={data}\n\n[keyring]\npath={cert}\n\n\
                 [slot.rootfs.0]\ndevice={a}\ntype=raw\nbootname=A\n\n\
                 [slot.rootfs.1]\ndevice={b}\ntype=raw\nbootname=B\n",
                mnt = dir.join("mnt").display(),
                data = dir.join("data").display(),
                cert = cert.display(),
                a = slot_a.display(),
                b = slot_b.display(),
            ),
        )
        .map_err(|e| format!("writing system.conf: {e}"))?;

        // A private system bus that lets anyone own and call anything (it is ours alone).
        let socket = dir.join("bus.sock");
        let bus_conf = dir.join("bus.conf");
        fs::write(
            &bus_conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n\
                 <type>system</type>\n<listen>unix:path={}</listen>\n<auth>EXTERNAL</auth>\n\
                 <policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>\
                 <allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy>\n\
                 </busconfig>\n",
                socket.display()
            ),
        )
        .map_err(|e| format!("writing the bus configuration: {e}"))?;
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", bus_conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting dbus-daemon: {e}"))?;
        let bus_address = format!("unix:path={}", socket.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = fs::File::create(dir.join("service.log"))
            .map_err(|e| format!("creating the service log: {e}"))?;
        let service = Command::new("rauc")
            .arg("service")
            .arg(format!("--conf={}", conf.display()))
            .arg("--override-boot-slot=A")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting rauc service: {e}"))?;
        let rauc = Rauc {
            bus,
            service,
            bus_address,
            conf,
            bundle,
            slot_b,
        };
        // Ready when `rauc status` gets an answer from the service.
        let mut last = String::new();
        while Instant::now() < deadline + Duration::from_secs(10) {
            match run(Command::new("rauc")
                .arg("status")
                .arg(format!("--conf={}", rauc.conf.display()))
                .env("DBUS_SYSTEM_BUS_ADDRESS", &rauc.bus_address))
            {
                Ok(_) => return Ok((rauc, version)),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "rauc service did not answer: {last} (see {})",
            dir.join("service.log").display()
        ))
    }

    /// One timed `rauc install` of the bundle into slot B, plus the fdatasync of the slot.
    pub fn install(&self) -> Result<Duration, String> {
        let started = Instant::now();
        run(Command::new("rauc")
            .arg("install")
            .arg(format!("--conf={}", self.conf.display()))
            .arg(&self.bundle)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address))?;
        fs::OpenOptions::new()
            .write(true)
            .open(&self.slot_b)
            .and_then(|f| f.sync_data())
            .map_err(|e| format!("syncing {:?}: {e}", self.slot_b))?;
        Ok(started.elapsed())
    }

    /// Slot B holds `payload` (RAUC really wrote it).
    pub fn check(&self, payload: &[u8]) -> Result<(), String> {
        let written = fs::read(&self.slot_b).map_err(|e| format!("reading slot B: {e}"))?;
        if written.len() >= payload.len() && &written[..payload.len()] == payload {
            Ok(())
        } else {
            Err("slot B does not hold the payload after `rauc install`".to_owned())
        }
    }

    /// Empties slot B (so each install writes every byte anew).
    pub fn reset(&self, size: u64) -> Result<(), String> {
        let file = fs::File::create(&self.slot_b).map_err(|e| format!("slot B: {e}"))?;
        file.set_len(size).map_err(|e| format!("slot B: {e}"))
    }
}
