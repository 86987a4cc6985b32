//! `keywarden-updated` as a process on a real `dbus-daemon` with the shipped bus policy: slots are
//! files, the bootloader is a GRUB environment block file, the booted slot comes from a
//! command-line file. Each test drives it through `org.keywarden.Update1` as an admin would and
//! checks the slot bytes and the environment the bootloader will read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use keywarden_bundle::{create, keys, CreateSpec, SigningKey};
use keywarden_dbus::update::Update1Proxy;
use keywarden_testbus::{binary, wait_for_name, workspace_root, Daemon, PrivateBus};
use keywarden_updated::boot::{BootSelector, GrubEnv, Slot};

const BOARD: &str = "keywarden-test-x86_64";
const SLOT_SIZE: u64 = 8 << 20;
const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    bus: PrivateBus,
    daemon: Daemon,
    dir: PathBuf,
}

impl Rig {
    /// Stops the updater and starts it again booted from `booted` running `version` (a reboot,
    /// as far as the updater can tell: the environment file is what the bootloader left).
    async fn reboot_into(&mut self, booted: Slot, version: &str) {
        drop(self.daemon.0.kill());
        drop(self.daemon.0.wait());
        write_cmdline(&self.dir, booted);
        std::fs::write(
            self.path("os-release"),
            format!("ID=debian\nIMAGE_VERSION={version}\n"),
        )
        .unwrap();
        let conn = self.bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let start = std::time::Instant::now();
        // The bus drops the dead process's name when it sees its socket close.
        while dbus
            .name_has_owner("org.keywarden.Update1".try_into().unwrap())
            .await
            .unwrap()
        {
            assert!(start.elapsed() < WAIT, "the old updater's name stays");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.daemon = spawn_updater(&self.bus, &self.dir);
        wait_for_name(&conn, "org.keywarden.Update1", WAIT).await;
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn grubenv(&self) -> GrubEnv {
        GrubEnv::new(self.path("grubenv"))
    }
}

fn test_key() -> SigningKey {
    keys::load_signing_key(&workspace_root().join("ota/keys/test-only/test-only-signing.pem"))
        .expect("test-only key")
}

/// A release: a bundle of 1 MiB of `payload(seed)` for this board at `version`, signed by the
/// test key.
fn release(dir: &Path, name: &str, seed: u8, version: &str) -> PathBuf {
    bundle(
        dir,
        name,
        &payload(seed, 1 << 20),
        version,
        BOARD,
        &test_key(),
    )
}

/// A bundle of `payload` for `board` at `version`, signed by `key`.
fn bundle(
    dir: &Path,
    name: &str,
    payload: &[u8],
    version: &str,
    board: &str,
    key: &SigningKey,
) -> PathBuf {
    let payload_path = dir.join(format!("{name}.payload"));
    std::fs::write(&payload_path, payload).unwrap();
    let spec = CreateSpec {
        version: version.into(),
        compatible: board.into(),
        created: 1_790_000_000,
        build_id: None,
        payloads: vec![("rootfs".into(), payload_path)],
    };
    let path = dir.join(format!("{name}.kwb"));
    let mut out = std::fs::File::create(&path).unwrap();
    create(&spec, key, &mut out).unwrap();
    path
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Starts the updater booted from `booted` (`trial`: that slot not committed yet).
async fn rig(booted: Slot, trial: bool) -> Rig {
    let bus = PrivateBus::start(
        &["crates/keywarden-updated/dbus/org.keywarden.Update1.conf"],
        &["root"],
        &["keywarden-admin"],
    );
    let dir = bus.dir().join("device");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::copy(
        workspace_root().join("ota/keys/test-only/test-only-signing.pub"),
        dir.join("keys/test-only.pub"),
    )
    .unwrap();
    // The factory: A holds a system, B garbage.
    std::fs::write(dir.join("slotA"), payload(1, SLOT_SIZE as usize)).unwrap();
    std::fs::write(dir.join("slotB"), vec![0x5a; SLOT_SIZE as usize]).unwrap();
    write_cmdline(&dir, booted);
    std::fs::write(dir.join("os-release"), "ID=debian\nIMAGE_VERSION=0.1.0\n").unwrap();
    let mut env = GrubEnv::new(dir.join("grubenv"));
    if booted == Slot::B {
        env.activate(Slot::B).unwrap();
        if !trial {
            env.mark_good(Slot::B).unwrap();
        }
    } else if trial {
        env.activate(Slot::A).unwrap();
    }
    let config = format!(
        "compatible = \"{BOARD}\"\nstate-dir = \"{d}/state\"\nrepository-config = \"{d}/none.toml\"\n\
         [slots]\nA = \"{d}/slotA\"\nB = \"{d}/slotB\"\n\
         [bootloader]\nkind = \"grub\"\ngrubenv = \"{d}/grubenv\"\n\
         [keys]\ntrusted = [\"{d}/keys\"]\nallow-test-only = true\n",
        d = dir.display()
    );
    std::fs::write(dir.join("update.toml"), config).unwrap();
    let daemon = spawn_updater(&bus, &dir);
    let conn = bus.connect().await;
    wait_for_name(&conn, "org.keywarden.Update1", WAIT).await;
    Rig { bus, daemon, dir }
}

fn write_cmdline(dir: &Path, booted: Slot) {
    std::fs::write(
        dir.join("cmdline"),
        format!("root=x ro keywarden.slot={booted} quiet\n"),
    )
    .unwrap();
}

fn spawn_updater(bus: &PrivateBus, dir: &Path) -> Daemon {
    Daemon(
        Command::new(binary("keywarden-updated"))
            .arg("--config")
            .arg(dir.join("update.toml"))
            .arg("--cmdline")
            .arg(dir.join("cmdline"))
            .arg("--os-release")
            .arg(dir.join("os-release"))
            .args(["--bus-address", &bus.address])
            .args(["--admin-group", &keywarden_testbus::current_group()])
            .spawn()
            .expect("start keywarden-updated"),
    )
}

/// A proxy that reads properties from the service each time (no cache filled by signals, which
/// could lag behind the `Completed` signal).
async fn proxy(conn: &zbus::Connection) -> Update1Proxy<'static> {
    Update1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

/// Installs `source` and waits for `Completed`: (ok, code, message).
async fn install(proxy: &Update1Proxy<'_>, source: &Path) -> (bool, String, String) {
    let mut completed = proxy.receive_completed().await.unwrap();
    proxy.install(&source.display().to_string()).await.unwrap();
    let signal = tokio::time::timeout(WAIT, completed.next())
        .await
        .expect("Completed within a minute")
        .expect("signal stream");
    let args = signal.args().unwrap();
    (args.ok, args.code.clone(), args.message.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn install_from_a_file_writes_the_other_slot_and_activates_it() {
    let rig = rig(Slot::A, false).await;
    let conn = rig.bus.connect().await;
    let proxy = proxy(&conn).await;
    assert_eq!(proxy.booted_slot().await.unwrap(), "A");
    assert_eq!(proxy.booted_version().await.unwrap(), "0.1.0");
    let slots = proxy.slots().await.unwrap();
    assert!(slots[0].committed && slots[0].bootable, "{slots:?}");
    assert!(!slots[1].bootable, "{slots:?}");

    // Half the payload is the active slot's first half: reused, not read from the bundle.
    let mut new = payload(1, 4 << 20);
    new[(2 << 20)..].copy_from_slice(&payload(2, 2 << 20));
    let b = bundle(&rig.dir, "next", &new, "0.2.0", BOARD, &test_key());
    let (ok, code, message) = install(&proxy, &b).await;
    assert!(ok, "{code}: {message}");
    assert_eq!(proxy.state().await.unwrap(), "installed");
    assert!(proxy.bytes_reused().await.unwrap() >= 2 << 20);
    let slot_b = std::fs::read(rig.path("slotB")).unwrap();
    assert_eq!(&slot_b[..new.len()], &new[..]);
    let status = rig.grubenv().status().unwrap();
    assert!(
        status.b.bootable && status.b.tries_left == Some(3),
        "{status:?}"
    );
    assert_eq!(status.order, [Slot::B, Slot::A]);
    assert!(
        status.a.is_committed(),
        "the fallback stays committed: {status:?}"
    );
    let slots = proxy.slots().await.unwrap();
    assert_eq!(slots[1].version, "0.2.0", "{slots:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_bundles_name_the_reason_and_leave_the_slot_unbootable() {
    let rig = rig(Slot::A, false).await;
    let conn = rig.bus.connect().await;
    let proxy = proxy(&conn).await;
    let data = payload(3, 1 << 20);
    let stranger = SigningKey::from_bytes(&[9u8; 32]);
    let good = bundle(&rig.dir, "good", &data, "0.2.0", BOARD, &test_key());
    let mut tampered = std::fs::read(&good).unwrap();
    let at = tampered.len() - 1000;
    tampered[at] ^= 1;
    let tampered_path = rig.path("tampered.kwb");
    std::fs::write(&tampered_path, tampered).unwrap();
    let cases = [
        (
            bundle(&rig.dir, "older", &data, "0.0.9", BOARD, &test_key()),
            "not-newer",
        ),
        (
            bundle(&rig.dir, "same", &data, "0.1.0", BOARD, &test_key()),
            "not-newer",
        ),
        (
            bundle(
                &rig.dir,
                "board",
                &data,
                "0.2.0",
                "keywarden-other-x86_64",
                &test_key(),
            ),
            "wrong-board",
        ),
        (
            bundle(&rig.dir, "stranger", &data, "0.2.0", BOARD, &stranger),
            "unknown-signer",
        ),
        (tampered_path, "chunk-mismatch"),
    ];
    for (path, expected) in cases {
        let (ok, code, message) = install(&proxy, &path).await;
        assert!(!ok, "{} was installed", path.display());
        assert_eq!(code, expected, "{}: {message}", path.display());
        assert_eq!(proxy.state().await.unwrap(), "failed");
        assert_eq!(proxy.last_error().await.unwrap().0, expected);
        let status = rig.grubenv().status().unwrap();
        assert!(
            !status.b.bootable,
            "{}: B bootable after a refusal",
            path.display()
        );
        assert!(status.a.is_committed());
        assert_eq!(status.next_boot(), Some(Slot::A));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_installed_while_the_booted_slot_is_on_trial() {
    let rig = rig(Slot::B, true).await;
    let conn = rig.bus.connect().await;
    let proxy = proxy(&conn).await;
    let b = release(&rig.dir, "next", 4, "0.2.0");
    let err = proxy.install(&b.display().to_string()).await.unwrap_err();
    assert!(err.to_string().contains("not committed"), "{err}");
    let before = std::fs::read(rig.path("slotA")).unwrap();
    assert_eq!(before, payload(1, SLOT_SIZE as usize), "slot A untouched");
    // The health check's commit: then installs are allowed, into A.
    proxy.mark_good("booted").await.unwrap();
    let status = rig.grubenv().status().unwrap();
    assert!(status.b.is_committed(), "{status:?}");
    let (ok, code, message) = install(&proxy, &b).await;
    assert!(ok, "{code}: {message}");
    assert_eq!(rig.grubenv().status().unwrap().order, [Slot::A, Slot::B]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_and_missing_repository_are_specific_errors() {
    let rig = rig(Slot::A, false).await;
    let conn = rig.bus.connect().await;
    let proxy = proxy(&conn).await;
    for (source, needle) in [
        ("http://updates.example/x.kwb", "only https://"),
        ("relative.kwb", "absolute path"),
    ] {
        let err = proxy.install(source).await.unwrap_err().to_string();
        assert!(
            err.contains("InvalidArgument") && err.contains(needle),
            "{err}"
        );
    }
    let err = proxy.mark_good("C").await.unwrap_err().to_string();
    assert!(err.contains("InvalidArgument"), "{err}");
    let err = proxy.check().await.unwrap_err().to_string();
    assert!(err.contains("NotConfigured"), "{err}");
    let err = proxy.cancel().await.unwrap_err().to_string();
    assert!(err.contains("no install is running"), "{err}");
    // The factory state (no environment file: A committed, B never installed): marking B bad
    // and committing A change nothing, so nothing is written at all.
    proxy.mark_bad("B").await.unwrap();
    proxy.mark_good("A").await.unwrap();
    assert!(
        !rig.path("grubenv").exists(),
        "an environment was written though nothing changed"
    );
    // Marking the booted slot bad does write: the next boot goes to B (whatever it holds).
    proxy.mark_bad("booted").await.unwrap();
    let status = rig.grubenv().status().unwrap();
    assert!(!status.a.bootable, "{status:?}");
    assert_eq!(status.order, [Slot::B, Slot::A]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_object_matches_the_committed_xml() {
    let rig = rig(Slot::A, false).await;
    let conn = rig.bus.connect().await;
    let xml = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination("org.keywarden.Update1")
        .unwrap()
        .path("/org/keywarden/Update1")
        .unwrap()
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    keywarden_dbus::xml::check_against_committed("org.keywarden.Update1", &xml).unwrap();
}

/// (event, slot, version) of each history record, oldest first.
async fn history(proxy: &Update1Proxy<'_>) -> Vec<(String, String, String)> {
    proxy
        .history(0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.slot, e.version))
        .collect()
}

fn records(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(e, s, v)| (e.to_string(), s.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_follows_installs_commits_and_a_rollback_across_restarts() {
    let mut rig = rig(Slot::A, false).await;
    let conn = rig.bus.connect().await;
    let proxy = proxy(&conn).await;
    assert!(
        history(&proxy).await.is_empty(),
        "a factory device has no history"
    );

    // A refused bundle and a good one into B.
    let older = release(&rig.dir, "older", 3, "0.0.9");
    let (ok, code, _) = install(&proxy, &older).await;
    assert!(!ok && code == "not-newer");
    let next = release(&rig.dir, "next", 4, "0.2.0");
    let (ok, code, message) = install(&proxy, &next).await;
    assert!(ok, "{code}: {message}");
    let failed = proxy.history(0).await.unwrap()[1].clone();
    assert_eq!(
        (failed.event.as_str(), failed.code.as_str()),
        ("install-failed", "not-newer")
    );
    let expected = [
        ("install-started", "B", ""),
        ("install-failed", "B", ""),
        ("install-started", "B", ""),
        ("installed", "B", "0.2.0"),
    ];
    assert_eq!(history(&proxy).await, records(&expected));

    // The reboot into B on trial: no outcome yet, then the health check's commit.
    rig.reboot_into(Slot::B, "0.2.0").await;
    let proxy = self::proxy(&conn).await;
    assert_eq!(history(&proxy).await, records(&expected));
    proxy.mark_good("booted").await.unwrap();
    let mut expected = expected.to_vec();
    expected.extend([("marked-good", "B", "0.2.0"), ("committed", "B", "0.2.0")]);
    assert_eq!(history(&proxy).await, records(&expected));
    // What the bless unit does at every ordinary boot changes nothing, and is not history; nor
    // is marking bad a slot that is not bootable.
    proxy.mark_good("booted").await.unwrap();
    rig.reboot_into(Slot::B, "0.2.0").await;
    let proxy = self::proxy(&conn).await;
    proxy.mark_good("booted").await.unwrap();
    assert_eq!(history(&proxy).await, records(&expected));

    // 0.3.0 into A, which never passes its trial: the bootloader gives up on A and boots B.
    let third = release(&rig.dir, "third", 5, "0.3.0");
    let (ok, code, message) = install(&proxy, &third).await;
    assert!(ok, "{code}: {message}");
    rig.grubenv().mark_bad(Slot::A).unwrap();
    rig.reboot_into(Slot::B, "0.2.0").await;
    let proxy = self::proxy(&conn).await;
    expected.extend([
        ("install-started", "A", ""),
        ("installed", "A", "0.3.0"),
        ("rolled-back", "A", "0.3.0"),
    ]);
    assert_eq!(history(&proxy).await, records(&expected));
    let last = proxy.history(1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert!(
        last[0].message.contains("slot B (0.2.0) runs"),
        "{}",
        last[0].message
    );

    // Kept on the data partition: a restart shows the same records, and nothing new.
    rig.reboot_into(Slot::B, "0.2.0").await;
    let proxy = self::proxy(&conn).await;
    assert_eq!(history(&proxy).await, records(&expected));
}
