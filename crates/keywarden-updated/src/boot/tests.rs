//! Tests of boot selection: formats, each operation's effect, torn writes, a simulator of the
//! boot scripts driven by property tests, and cross-checks against `grub-editenv` and
//! `fw_printenv`/`fw_setenv`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tempfile::TempDir;

use super::env::{Entry, EnvVars};
use super::grubenv::{self, GrubStore, BLOCK_SIZE};
use super::uboot::{self, UBootStore};
use super::*;

// ---------------------------------------------------------------------------------------------
// helpers

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    let mut v = EnvVars::default();
    for (n, val) in pairs {
        v.set(n, val.as_bytes());
    }
    v
}

fn get(v: &EnvVars, name: &str) -> Option<String> {
    v.get(name).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Everything that changes when a file is written (by rename or in place).
fn fingerprint(path: &Path) -> (u32, u64, i64, i64) {
    let meta = fs::metadata(path).unwrap();
    (
        crc32fast::hash(&fs::read(path).unwrap()),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// An empty redundant U-Boot environment (two 4 KiB copies in one file), as mkenvimage makes
/// it, plus the config naming it.
fn uboot_setup(dir: &Path, redundant: bool) -> (PathBuf, UBootConfig, PathBuf) {
    let dev = dir.join("uboot-env.bin");
    let cfg = dir.join("fw_env.config");
    let mut text = format!("# test\n{} 0x0 0x1000\n", dev.display());
    if redundant {
        text.push_str(&format!("{}  0x2000\t0x1000 0x1000 1\n", dev.display()));
    }
    fs::write(&cfg, &text).unwrap();
    let config = UBootConfig::parse(&text, &cfg).unwrap();
    let mut image = vec![0u8; 0x4000];
    let base = vars(&[
        ("bootcmd", "run distro_bootcmd"),
        ("console", "ttyS2,1500000"),
    ]);
    let copy = uboot::encode(&base, 0x1000, redundant, 1, "test").unwrap();
    image[..0x1000].copy_from_slice(&copy);
    fs::write(&dev, &image).unwrap();
    (dev, config, cfg)
}

fn grub_selector(dir: &Path) -> (PathBuf, Selector<GrubStore>) {
    let path = dir.join("grubenv");
    (path.clone(), Selector::new(GrubStore::new(path)))
}

fn need_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: this cross-check needs it (apt-get install -y {package})"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Slot and the kernel command line

#[test]
fn slot_basics() {
    assert_eq!(Slot::A.other(), Slot::B);
    assert_eq!(Slot::B.other(), Slot::A);
    assert_eq!(Slot::A.partition_label(), "rootA");
    assert_eq!(Slot::B.partition_label(), "rootB");
    assert_eq!(Slot::A.to_string(), "A");
    assert_eq!("B".parse::<Slot>().unwrap(), Slot::B);
    for bad in ["", "a", "C", "A ", "AB"] {
        assert!(
            matches!(bad.parse::<Slot>(), Err(Error::BadSlot { value }) if value == bad),
            "{bad:?}"
        );
    }
}

#[test]
fn booted_slot_from_cmdline() {
    let line = "BOOT_IMAGE=/boot/vmlinuz root=PARTLABEL=rootB ro keywarden.slot=B quiet\n";
    assert_eq!(booted_slot(line).unwrap(), Slot::B);
    assert_eq!(booted_slot("keywarden.slot=A").unwrap(), Slot::A);
    assert_eq!(
        booted_slot("keywarden.slot=A x keywarden.slot=A").unwrap(),
        Slot::A
    );
    for bad in [
        "root=PARTLABEL=rootA ro",
        "",
        "keywarden.slot=",
        "keywarden.slot=C",
        "keywarden.slot=a",
        "keywarden.slot=A keywarden.slot=B",
        "xkeywarden.slot=A",
    ] {
        let err = booted_slot(bad).unwrap_err();
        assert!(matches!(err, Error::BootCmdline { .. }), "{bad:?}: {err}");
    }
    assert!(booted_slot("ro")
        .unwrap_err()
        .to_string()
        .contains("no keywarden.slot="));
}

// ---------------------------------------------------------------------------------------------
// status parsing

#[test]
fn status_defaults_and_values() {
    let st = parse_status(&EnvVars::default(), "t").unwrap();
    assert_eq!(
        st,
        BootStatus {
            a: SlotStatus {
                bootable: true,
                tries_left: None
            },
            b: SlotStatus {
                bootable: false,
                tries_left: None
            },
            order: [Slot::A, Slot::B],
        }
    );
    assert_eq!(st.next_boot(), Some(Slot::A));
    let st = parse_status(
        &vars(&[
            ("ORDER", " B\tA "),
            ("B_OK", "1"),
            ("B_TRY", "2"),
            ("A_TRY", "0"),
        ]),
        "t",
    )
    .unwrap();
    assert_eq!(st.order, [Slot::B, Slot::A]);
    assert_eq!(st.b.tries_left, Some(2));
    assert!(!st.b.is_committed());
    assert_eq!(st.a.tries_left, Some(0));
    assert_eq!(st.next_boot(), Some(Slot::B));
}

#[test]
fn status_garbage_names_variable_and_value() {
    for (name, value) in [
        ("A_OK", "yes"),
        ("B_OK", ""),
        ("A_TRY", "4"),
        ("B_TRY", "x"),
        ("ORDER", "A"),
        ("ORDER", "A A"),
        ("ORDER", "A B C"),
        ("ORDER", "a b"),
    ] {
        let err = parse_status(&vars(&[(name, value)]), "/x/grubenv").unwrap_err();
        match &err {
            Error::BootEnvValue {
                location,
                name: n,
                value: v,
                ..
            } => {
                assert_eq!(
                    (location.as_str(), n.as_str(), v.as_str()),
                    ("/x/grubenv", name, value)
                );
            }
            other => panic!("{name}={value:?}: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("/x/grubenv"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// GRUB block format

/// The bytes `grub-editenv FILE set X='a\b<newline>c' Y= Z=é=1` writes (Debian's adds the
/// WARNING comment).
fn grub_editenv_sample() -> Vec<u8> {
    let mut b = b"# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\nX=a\\\\b\\\nc\nY=\nZ=\xc3\xa9=1\n".to_vec();
    b.resize(BLOCK_SIZE, b'#');
    b
}

#[test]
fn grub_parse_escapes_and_comments() {
    let p = Path::new("/t/grubenv");
    let v = grubenv::parse(&grub_editenv_sample(), p).unwrap();
    assert_eq!(get(&v, "X").as_deref(), Some("a\\b\nc"));
    assert_eq!(get(&v, "Y").as_deref(), Some(""));
    assert_eq!(get(&v, "Z").as_deref(), Some("é=1"));
    assert!(matches!(&v.entries[0], Entry::Comment(c) if c.starts_with(b"# WARNING")));
    // Byte-exact round trip, comment included.
    assert_eq!(grubenv::serialize(&v, p).unwrap(), grub_editenv_sample());
}

#[test]
fn grub_round_trip_and_set_keeps_order() {
    let p = Path::new("/t/grubenv");
    let mut v = vars(&[
        ("saved_entry", "x"),
        ("A_OK", "1"),
        ("weird", "\\\n\\\\n\n"),
    ]);
    let block = grubenv::serialize(&v, p).unwrap();
    assert_eq!(block.len(), BLOCK_SIZE);
    assert_eq!(grubenv::parse(&block, p).unwrap(), v);
    v.set("A_OK", b"0");
    v.set("NEW", b"1");
    let names: Vec<_> = v.vars().map(|(n, _)| n.to_vec()).collect();
    assert_eq!(names, [&b"saved_entry"[..], b"A_OK", b"weird", b"NEW"]);
}

#[test]
fn grub_strict_parse() {
    let p = Path::new("/t/grubenv");
    let good = grubenv::serialize(&vars(&[("A", "1")]), p).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", good[..1000].to_vec()),
        ("long", [good.clone(), vec![b'#']].concat()),
    ];
    let mut bad_header = good.clone();
    bad_header[2] = b'g';
    cases.push(("header", bad_header));
    for (what, body) in [
        ("no =", &b"JUNK\nA=1\n"[..]),
        ("empty name", b"=1\n"),
        ("zeros", b"A=1\n\0\0\0"),
    ] {
        let mut b = b"# GRUB Environment Block\n".to_vec();
        b.extend_from_slice(body);
        b.resize(BLOCK_SIZE, b'#');
        cases.push((what, b));
    }
    // A value running into the end of the block (no newline before the end).
    let mut b = b"# GRUB Environment Block\nA=".to_vec();
    b.resize(BLOCK_SIZE, b'x');
    cases.push(("unterminated", b));
    for (what, buf) in cases {
        let err = grubenv::parse(&buf, p).unwrap_err();
        assert!(
            matches!(&err, Error::GrubEnvFormat { path, .. } if path == p),
            "{what}: {err}"
        );
    }
}

#[test]
fn grub_refuses_block_over_1024_bytes_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    sel.activate(Slot::B).unwrap();
    let before = fingerprint(&path);
    // Fill the block with an unknown variable up to exactly 1024 bytes: still fine.
    let mut v = sel.store.load().unwrap();
    let used = grubenv::serialize(&v, &path)
        .unwrap()
        .iter()
        .rposition(|&b| b != b'#')
        .unwrap()
        + 1;
    let fill = BLOCK_SIZE - used - "pad=\n".len();
    v.set("pad", "p".repeat(fill).as_bytes());
    let exact = grubenv::serialize(&v, &path).unwrap();
    assert_eq!(exact.len(), BLOCK_SIZE);
    assert_ne!(exact[BLOCK_SIZE - 1], b'#');
    // One byte more does not fit.
    v.set("pad", "p".repeat(fill + 1).as_bytes());
    let err = grubenv::serialize(&v, &path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BootEnvTooLarge {
                needed: 1025,
                capacity: 1024,
                ..
            }
        ),
        "{err}"
    );
    assert!(sel.store.store(&v).is_err());
    assert_eq!(fingerprint(&path), before);
    // A value that needs escaping counts its escaped length.
    v.set("pad", "\n".repeat(fill / 2 + 1).as_bytes());
    assert!(grubenv::serialize(&v, &path).is_err());
}

#[test]
fn grub_missing_file_is_defaults_and_first_write_creates_it() {
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    let st = sel.status().unwrap();
    assert!(st.a.is_committed() && !st.b.bootable);
    assert!(
        !sel.mark_good(Slot::A).unwrap(),
        "A is committed by default"
    );
    assert!(!path.exists());
    sel.invalidate(Slot::B).unwrap(); // B_OK defaults to 0: nothing to write
    assert!(!path.exists());
    sel.activate(Slot::B).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), BLOCK_SIZE as u64);
    assert!(!dir.path().join(".grubenv.new").exists());
}

#[test]
fn grub_creates_the_block_once_then_writes_it_in_place() {
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    // A crash while the first block was being created: a temporary file left behind.
    let tmp = dir.path().join(".grubenv.new");
    fs::write(&tmp, b"half a block").unwrap();
    sel.activate(Slot::B).unwrap();
    let ino = fs::metadata(&path).unwrap().ino();
    assert!(!tmp.exists(), "the temporary file was renamed into place");
    // From then on: the same file, overwritten in place (no FAT metadata to tear; see the
    // module documentation), and only the first sector holds variables.
    sel.mark_good(Slot::B).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        ino,
        "an in-place write, not a new file"
    );
    assert!(sel.status().unwrap().b.is_committed());
    let block = fs::read(&path).unwrap();
    assert!(
        block[512..].iter().all(|&b| b == b'#'),
        "variables past the first sector"
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["grubenv"]);
}

#[test]
fn booted_slot_from_file_and_serialised_status() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("cmdline");
    fs::write(&f, "ro keywarden.slot=B\n").unwrap();
    assert_eq!(booted_slot_from(&f).unwrap(), Slot::B);
    assert!(matches!(
        booted_slot_from(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
    let json = serde_json::to_value(parse_status(&EnvVars::default(), "t").unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "a": {"bootable": true, "tries_left": null},
            "b": {"bootable": false, "tries_left": null},
            "order": ["A", "B"],
        })
    );
}

#[test]
fn grub_corrupt_block_is_an_error_for_every_operation() {
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    fs::write(&path, vec![0u8; BLOCK_SIZE]).unwrap();
    assert!(matches!(sel.status(), Err(Error::GrubEnvFormat { .. })));
    assert!(matches!(
        sel.mark_good(Slot::A),
        Err(Error::GrubEnvFormat { .. })
    ));
    assert!(matches!(
        sel.activate(Slot::B),
        Err(Error::GrubEnvFormat { .. })
    ));
    assert_eq!(fs::read(&path).unwrap(), vec![0u8; BLOCK_SIZE]);
}

// ---------------------------------------------------------------------------------------------
// U-Boot format and config

#[test]
fn uboot_config_parse() {
    let p = Path::new("/etc/fw_env.config");
    let c = UBootConfig::parse(
        "# comment\n\n/dev/mmcblk0 0x3F8000 0x4000   # first\n/dev/mmcblk0\t4161536 16384 0x200 010\n",
        p,
    )
    .unwrap();
    assert!(c.is_redundant());
    assert_eq!(c.copies[0].offset, 0x3F8000);
    assert_eq!(c.copies[0].size, 0x4000);
    assert_eq!(c.copies[0].sector_size, None);
    assert_eq!(c.copies[1].offset, 4161536);
    assert_eq!(c.copies[1].sector_size, Some(0x200));
    assert_eq!(c.copies[1].sector_count, Some(8));
    let single = UBootConfig::parse("/dev/mmcblk0boot1 0 0x2000", p).unwrap();
    assert!(!single.is_redundant());
    for (bad, line) in [
        ("", 0),
        ("# only a comment\n", 0),
        ("/dev/x 0", 1),
        ("/dev/x 0 zz", 1),
        ("\n/dev/x 0x 0x1000", 2),
        ("/dev/x 0 0x1000 1 2 3", 1),
        ("/dev/x 0 0", 1),
        ("/dev/x 0 0x1000\n/dev/x 0x1000 0x2000", 0),
        (
            "/dev/x 0 0x1000\n/dev/x 0x1000 0x1000\n/dev/x 0x2000 0x1000",
            0,
        ),
    ] {
        match UBootConfig::parse(bad, p) {
            Err(Error::UBootConfig { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn uboot_encode_decode_round_trip() {
    let v = vars(&[
        ("bootcmd", "run a; run b"),
        ("multi", "x\ny"),
        ("A_TRY", ""),
    ]);
    for redundant in [false, true] {
        let buf = uboot::encode(&v, 256, redundant, 7, "t").unwrap();
        assert_eq!(buf.len(), 256);
        let (flags, back) = uboot::decode(&buf, redundant).unwrap();
        assert_eq!(flags, if redundant { 7 } else { 0 });
        // The empty value is not stored (fw_setenv semantics).
        assert_eq!(
            back,
            vars(&[("bootcmd", "run a; run b"), ("multi", "x\ny")])
        );
        let hl = if redundant { 5 } else { 4 };
        assert_eq!(&buf[hl..hl + 8], b"bootcmd=");
        let crc = crc32fast::hash(&buf[hl..]);
        assert_eq!(buf[..4], crc.to_le_bytes());
    }
    // Empty environment: the data is all zeros.
    let (_, empty) = uboot::decode(
        &uboot::encode(&EnvVars::default(), 64, true, 0, "t").unwrap(),
        true,
    )
    .unwrap();
    assert_eq!(empty, EnvVars::default());
    // Too large.
    let big = vars(&[("x", &"y".repeat(300))]);
    assert!(matches!(
        uboot::encode(&big, 256, true, 0, "t"),
        Err(Error::BootEnvTooLarge { capacity: 256, .. })
    ));
    // Not representable.
    assert!(matches!(
        uboot::encode(&vars(&[("x", "a\0b")]), 256, true, 0, "t"),
        Err(Error::BootEnvUnrepresentable { .. })
    ));
    // Bad CRC, garbage data with a good CRC.
    let mut buf = uboot::encode(&v, 256, true, 0, "t").unwrap();
    buf[10] ^= 1;
    assert!(uboot::decode(&buf, true).unwrap_err().contains("CRC"));
    let mut data = b"novalue\0\0".to_vec();
    data.resize(251, 0);
    let mut buf = crc32fast::hash(&data).to_le_bytes().to_vec();
    buf.push(0);
    buf.extend_from_slice(&data);
    assert!(uboot::decode(&buf, true)
        .unwrap_err()
        .contains("not name=value"));
}

#[test]
fn uboot_newer_copy_wraps() {
    assert_eq!(uboot::newer_copy(1, 2), 1);
    assert_eq!(uboot::newer_copy(2, 1), 0);
    assert_eq!(uboot::newer_copy(3, 3), 0);
    assert_eq!(uboot::newer_copy(255, 0), 1);
    assert_eq!(uboot::newer_copy(0, 255), 0);
    assert_eq!(uboot::newer_copy(254, 255), 1);
}

#[test]
fn uboot_redundant_write_alternates_and_keeps_other_vars() {
    let dir = TempDir::new().unwrap();
    let (dev, config, _) = uboot_setup(dir.path(), true);
    let mut sel = Selector::new(UBootStore::new(config));
    sel.activate(Slot::B).unwrap();
    let img = fs::read(&dev).unwrap();
    // Copy 0 (flags 1) was current: the write went to copy 1 with flags 2; copy 0 untouched.
    let (f0, v0) = uboot::decode(&img[..0x1000], true).unwrap();
    let (f1, v1) = uboot::decode(&img[0x2000..0x3000], true).unwrap();
    assert_eq!((f0, f1), (1, 2));
    assert_eq!(get(&v0, "B_OK"), None);
    assert_eq!(get(&v1, "B_OK").as_deref(), Some("1"));
    assert_eq!(get(&v1, "bootcmd").as_deref(), Some("run distro_bootcmd"));
    sel.mark_good(Slot::B).unwrap();
    let img = fs::read(&dev).unwrap();
    let (f0, v0) = uboot::decode(&img[..0x1000], true).unwrap();
    assert_eq!(f0, 3);
    assert_eq!(get(&v0, "B_TRY"), None, "commit unsets B_TRY");
    assert!(sel.status().unwrap().b.is_committed());
}

#[test]
fn uboot_torn_write_leaves_old_copy_and_both_corrupt_is_an_error() {
    let dir = TempDir::new().unwrap();
    let (dev, config, _) = uboot_setup(dir.path(), true);
    let mut sel = Selector::new(UBootStore::new(config.clone()));
    sel.activate(Slot::B).unwrap(); // copy 1 (flags 2) is now current: B preferred
                                    // A power cut in the middle of the next write: copy 0 half-written (bad CRC).
    let mut img = fs::read(&dev).unwrap();
    let mut fresh = Selector::new(UBootStore::new(config.clone()));
    assert_eq!(fresh.status().unwrap().order, [Slot::B, Slot::A]);
    let newer = uboot::encode(&vars(&[("ORDER", "A B")]), 0x1000, true, 3, "t").unwrap();
    img[..16].copy_from_slice(&newer[..16]);
    fs::write(&dev, &img).unwrap();
    let st = fresh.status().unwrap();
    assert_eq!(
        st.order,
        [Slot::B, Slot::A],
        "the intact older copy is used"
    );
    assert_eq!(st.b.tries_left, Some(3));
    // The next write goes to the torn copy again and repairs it.
    fresh.mark_good(Slot::B).unwrap();
    let img = fs::read(&dev).unwrap();
    assert_eq!(uboot::decode(&img[..0x1000], true).unwrap().0, 3);
    assert!(fresh.status().unwrap().b.is_committed());
    // Both copies corrupt: a clear error naming both, for reads and writes; nothing written.
    let mut img = fs::read(&dev).unwrap();
    img[100] ^= 0xff;
    img[0x2000 + 100] ^= 0xff;
    fs::write(&dev, &img).unwrap();
    let err = fresh.status().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UBootEnvInvalid { .. }), "{msg}");
    assert!(
        msg.contains("@0x0:") && msg.contains("@0x2000:") && msg.contains("CRC"),
        "{msg}"
    );
    assert!(matches!(
        fresh.mark_bad(Slot::B),
        Err(Error::UBootEnvInvalid { .. })
    ));
    assert_eq!(fs::read(&dev).unwrap(), img);
}

#[test]
fn uboot_single_copy_writes_in_place() {
    let dir = TempDir::new().unwrap();
    let (dev, config, _) = uboot_setup(dir.path(), false);
    let mut sel = Selector::new(UBootStore::new(config));
    sel.activate(Slot::B).unwrap();
    let img = fs::read(&dev).unwrap();
    let (_, v) = uboot::decode(&img[..0x1000], false).unwrap();
    assert_eq!(get(&v, "ORDER").as_deref(), Some("B A"));
    assert!(
        img[0x1000..].iter().all(|&b| b == 0),
        "nothing outside the copy"
    );
    let mut img = img;
    img[50] ^= 1;
    fs::write(&dev, &img).unwrap();
    assert!(matches!(sel.status(), Err(Error::UBootEnvInvalid { .. })));
}

// ---------------------------------------------------------------------------------------------
// Each operation, on both backends through the public trait

fn backends(dir: &Path) -> Vec<(String, Box<dyn BootSelector>, PathBuf)> {
    let grubenv = dir.join("grubenv");
    let (dev, _, cfg) = uboot_setup(dir, true);
    vec![
        (
            "grub".to_string(),
            open(&BootBackend::Grub {
                env_file: grubenv.clone(),
            })
            .unwrap(),
            grubenv,
        ),
        (
            "uboot".to_string(),
            open(&BootBackend::UBoot { config: cfg }).unwrap(),
            dev,
        ),
    ]
}

#[test]
fn operations_have_their_documented_effect() {
    let dir = TempDir::new().unwrap();
    for (name, mut sel, _) in backends(dir.path()) {
        let committed = SlotStatus {
            bootable: true,
            tries_left: None,
        };
        let st0 = sel.status().unwrap();
        assert_eq!(st0.a, committed, "{name}");
        sel.invalidate(Slot::B).unwrap();
        assert_eq!(sel.status().unwrap(), st0, "{name}: B_OK already 0");
        sel.activate(Slot::B).unwrap();
        let st = sel.status().unwrap();
        assert_eq!(
            st.b,
            SlotStatus {
                bootable: true,
                tries_left: Some(TRY_BUDGET)
            },
            "{name}"
        );
        assert_eq!((st.a, st.order), (committed, [Slot::B, Slot::A]), "{name}");
        assert!(sel.mark_good(Slot::B).unwrap(), "{name}");
        let st = sel.status().unwrap();
        assert_eq!(
            (st.a, st.b, st.order),
            (committed, committed, [Slot::B, Slot::A])
        );
        assert!(
            !sel.mark_good(Slot::B).unwrap(),
            "{name}: second commit writes nothing"
        );
        // Before the next install into A: A can no longer boot, B untouched.
        sel.invalidate(Slot::A).unwrap();
        let st = sel.status().unwrap();
        assert_eq!((st.a.bootable, st.a.tries_left), (false, None), "{name}");
        assert_eq!((st.b, st.order), (committed, [Slot::B, Slot::A]), "{name}");
        sel.activate(Slot::A).unwrap();
        sel.mark_bad(Slot::A).unwrap();
        let st = sel.status().unwrap();
        assert!(!st.a.bootable, "{name}");
        assert_eq!((st.b, st.order), (committed, [Slot::B, Slot::A]), "{name}");
        // Mark-bad of the preferred slot puts the other first.
        sel.mark_bad(Slot::B).unwrap();
        let st = sel.status().unwrap();
        assert_eq!(
            (st.b.bootable, st.order),
            (false, [Slot::A, Slot::B]),
            "{name}"
        );
        assert_eq!(st.next_boot(), None, "{name}");
    }
}

#[test]
fn mark_good_on_committed_slot_writes_nothing() {
    let dir = TempDir::new().unwrap();
    for (name, mut sel, file) in backends(dir.path()) {
        sel.activate(Slot::B).unwrap();
        assert!(sel.mark_good(Slot::B).unwrap());
        let before = fingerprint(&file);
        std::thread::sleep(std::time::Duration::from_millis(20));
        for _ in 0..3 {
            assert!(!sel.mark_good(Slot::B).unwrap(), "{name}");
            sel.status().unwrap();
        }
        assert_eq!(fingerprint(&file), before, "{name}: the file was touched");
    }
    // GRUB without a file at all: A is committed by default, and nothing gets created.
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    assert!(!sel.mark_good(Slot::A).unwrap());
    assert!(!path.exists());
}

#[test]
fn writes_work_on_a_half_garbled_environment() {
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    let mut v = vars(&[
        ("ORDER", "B A"),
        ("B_OK", "1"),
        ("B_TRY", "banana"),
        ("A_OK", "maybe"),
    ]);
    v.set("other", b"kept");
    fs::write(&path, grubenv::serialize(&v, &path).unwrap()).unwrap();
    let err = sel.status().unwrap_err();
    assert!(err.to_string().contains("A_OK"), "{err}");
    // The running slot B can still be committed (repairs B_TRY), and A repaired by mark_bad.
    assert!(sel.mark_good(Slot::B).unwrap());
    sel.mark_bad(Slot::A).unwrap();
    let st = sel.status().unwrap();
    assert!(st.b.is_committed() && !st.a.bootable);
    assert_eq!(st.order, [Slot::B, Slot::A]);
    let v = sel.store.load().unwrap();
    assert_eq!(get(&v, "other").as_deref(), Some("kept"));
}

// ---------------------------------------------------------------------------------------------
// A simulator of the boot scripts (grub.cfg; boot.cmd is the same algorithm)

/// One boot, statement by statement as `image/grub/grub.cfg` runs it, on the raw variables.
/// Returns the slot booted; `vars` gets the bootloader's writes (`save_env`).
fn simulate_boot(vars: &mut EnvVars) -> Slot {
    let raw = |v: &EnvVars, n: &str, d: &str| {
        v.get(n)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| d.to_string())
    };
    // set ORDER="A B" ... ; load_env ORDER A_OK A_TRY B_OK B_TRY
    let order = raw(vars, "ORDER", "A B");
    let mut a_ok = raw(vars, "A_OK", "1");
    let a_try = raw(vars, "A_TRY", "");
    let mut b_ok = raw(vars, "B_OK", "0");
    let b_try = raw(vars, "B_TRY", "");
    let mut slot: Option<String> = None;
    for s in order.split_whitespace() {
        let (ok, tr) = if s == "A" {
            (&a_ok, &a_try)
        } else {
            (&b_ok, &b_try)
        };
        if ok != "1" {
            continue;
        }
        if tr.is_empty() {
            slot = Some(s.to_string());
            break;
        }
        let left = match tr.as_str() {
            "3" => Some("2"),
            "2" => Some("1"),
            "1" => Some("0"),
            _ => None,
        };
        let Some(left) = left else {
            if s == "A" {
                a_ok = "0".into();
            } else {
                b_ok = "0".into();
            }
            // save_env A_OK B_OK
            vars.set("A_OK", a_ok.as_bytes());
            vars.set("B_OK", b_ok.as_bytes());
            continue;
        };
        let (na, nb) = if s == "A" {
            (left.to_string(), b_try.clone())
        } else {
            (a_try.clone(), left.to_string())
        };
        // save_env A_TRY B_TRY
        vars.set("A_TRY", na.as_bytes());
        vars.set("B_TRY", nb.as_bytes());
        slot = Some(s.to_string());
        break;
    }
    let slot = slot.unwrap_or_else(|| order.split_whitespace().next().unwrap_or("").to_string());
    if slot == "A" {
        Slot::A
    } else {
        Slot::B
    }
}

/// A power cycle: the bootloader runs against the stored environment.
fn boot<S: EnvStore>(sel: &mut Selector<S>) -> Slot {
    let before = sel.store.load().unwrap();
    let mut after = before.clone();
    let slot = simulate_boot(&mut after);
    if after != before {
        sel.store.store(&after).unwrap();
    }
    slot
}

#[derive(Debug, Clone)]
enum Op {
    Activate(Slot),
    MarkGood(Slot),
    MarkBad(Slot),
    Invalidate(Slot),
    /// Power cycle, health check fails (or the device is cut off before it finishes).
    Boot,
    /// Power cycle, health check passes: the updater commits the booted slot.
    BootHealthy,
}

fn slot_strategy() -> impl Strategy<Value = Slot> {
    prop_oneof![Just(Slot::A), Just(Slot::B)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => slot_strategy().prop_map(Op::Activate),
        1 => slot_strategy().prop_map(Op::MarkGood),
        1 => slot_strategy().prop_map(Op::MarkBad),
        1 => slot_strategy().prop_map(Op::Invalidate),
        3 => Just(Op::Boot),
        3 => Just(Op::BootHealthy),
    ]
}

/// Run `ops`, checking after every step the invariants of the module documentation.
fn check_ops<S: EnvStore>(
    sel: &mut Selector<S>,
    file: &Path,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let raw = |sel: &mut Selector<S>| sel.store.load().unwrap();
    for op in ops {
        let before = sel.status().unwrap();
        let env_before = raw(sel);
        let file_before = file.exists().then(|| fingerprint(file));
        match op {
            Op::Activate(s) => {
                sel.activate(*s).unwrap();
                let st = sel.status().unwrap();
                prop_assert_eq!(
                    st.slot(*s),
                    SlotStatus {
                        bootable: true,
                        tries_left: Some(3)
                    }
                );
                prop_assert_eq!(st.order, [*s, s.other()]);
                prop_assert_eq!(st.slot(s.other()), before.slot(s.other()));
            }
            Op::MarkGood(s) => {
                let wrote = sel.mark_good(*s).unwrap();
                let st = sel.status().unwrap();
                prop_assert!(st.slot(*s).is_committed());
                prop_assert_eq!(st.slot(s.other()), before.slot(s.other()));
                prop_assert_eq!(st.order, before.order);
                prop_assert_eq!(wrote, !before.slot(*s).is_committed());
                if !wrote {
                    prop_assert_eq!(file.exists().then(|| fingerprint(file)), file_before);
                }
            }
            Op::MarkBad(s) => {
                sel.mark_bad(*s).unwrap();
                let st = sel.status().unwrap();
                prop_assert!(!st.slot(*s).bootable);
                prop_assert_eq!(st.order, [s.other(), *s]);
                prop_assert_eq!(st.slot(s.other()), before.slot(s.other()));
            }
            Op::Invalidate(s) => {
                sel.invalidate(*s).unwrap();
                let st = sel.status().unwrap();
                prop_assert!(!st.slot(*s).bootable);
                prop_assert_eq!(st.slot(*s).tries_left, before.slot(*s).tries_left);
                prop_assert_eq!(st.slot(s.other()), before.slot(s.other()));
                prop_assert_eq!(st.order, before.order);
            }
            Op::Boot | Op::BootHealthy => {
                let booted = boot(sel);
                let after = sel.status().unwrap();
                let committed: Vec<Slot> = Slot::ALL
                    .into_iter()
                    .filter(|s| before.slot(*s).is_committed())
                    .collect();
                // Power cycles alone never lose a committed slot...
                for s in &committed {
                    prop_assert!(after.slot(*s).is_committed(), "lost committed {}", s);
                }
                // ...never boot an unbootable slot while a committed one exists...
                if !committed.is_empty() {
                    prop_assert!(before.slot(booted).bootable);
                }
                // ...and the ordinary boot of a committed slot (no slot before it in ORDER that
                // the bootloader has to mark bad) writes nothing.
                let ahead = before
                    .order
                    .iter()
                    .take_while(|s| **s != booted)
                    .any(|s| before.slot(*s).bootable);
                if before.slot(booted).is_committed() && !ahead {
                    prop_assert_eq!(raw(sel), env_before.clone());
                    prop_assert_eq!(file.exists().then(|| fingerprint(file)), file_before);
                }
                if matches!(op, Op::BootHealthy) {
                    let was_committed = after.slot(booted).is_committed();
                    let file_booted = file.exists().then(|| fingerprint(file));
                    let wrote = sel.mark_good(booted).unwrap();
                    prop_assert_eq!(wrote, !was_committed);
                    if was_committed {
                        prop_assert_eq!(file.exists().then(|| fingerprint(file)), file_booted);
                    }
                }
            }
        }
    }
    Ok(())
}

/// From a committed slot, activate the other and let it fail its health check `boots` times.
fn check_fallback<S: EnvStore>(
    sel: &mut Selector<S>,
    old: Slot,
    boots: usize,
) -> Result<(), TestCaseError> {
    let new = old.other();
    sel.mark_good(old).unwrap();
    sel.activate(new).unwrap();
    let mut tries = 0;
    for _ in 0..boots {
        let booted = boot(sel);
        if tries < TRY_BUDGET as usize {
            prop_assert_eq!(booted, new);
            tries += 1;
        } else {
            prop_assert_eq!(booted, old, "fell back after {} tries", tries);
        }
        prop_assert!(sel.status().unwrap().slot(old).is_committed());
    }
    let st = sel.status().unwrap();
    if boots > TRY_BUDGET as usize {
        prop_assert!(!st.slot(new).bootable, "the new slot is marked bad");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn prop_grub_invariants(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let dir = TempDir::new().unwrap();
        let (path, mut sel) = grub_selector(dir.path());
        check_ops(&mut sel, &path, &ops)?;
    }

    #[test]
    fn prop_uboot_invariants(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let dir = TempDir::new().unwrap();
        let (dev, config, _) = uboot_setup(dir.path(), true);
        let mut sel = Selector::new(UBootStore::new(config));
        check_ops(&mut sel, &dev, &ops)?;
    }

    #[test]
    fn prop_new_slot_falls_back_after_budget(
        prefix in proptest::collection::vec(op_strategy(), 0..12),
        old in slot_strategy(),
        boots in 0usize..9,
    ) {
        let dir = TempDir::new().unwrap();
        let (path, mut sel) = grub_selector(dir.path());
        check_ops(&mut sel, &path, &prefix)?;
        check_fallback(&mut sel, old, boots)?;
        let (_, config, _) = uboot_setup(dir.path(), true);
        let mut sel = Selector::new(UBootStore::new(config));
        check_ops(&mut sel, &dir.path().join("uboot-env.bin"), &prefix)?;
        check_fallback(&mut sel, old, boots)?;
    }
}

#[test]
fn simulator_matches_grub_cfg_on_fixed_cases() {
    // The factory state: A, no writes.
    let mut v = EnvVars::default();
    assert_eq!(simulate_boot(&mut v), Slot::A);
    assert_eq!(v, EnvVars::default());
    // B with one try left: boots B, B_TRY=0; the next boot marks B bad and boots A.
    let mut v = vars(&[("ORDER", "B A"), ("B_OK", "1"), ("B_TRY", "1")]);
    assert_eq!(simulate_boot(&mut v), Slot::B);
    assert_eq!(get(&v, "B_TRY").as_deref(), Some("0"));
    assert_eq!(simulate_boot(&mut v), Slot::A);
    assert_eq!(get(&v, "B_OK").as_deref(), Some("0"));
    // Nothing bootable: first in ORDER.
    let mut v = vars(&[("ORDER", "B A"), ("A_OK", "0")]);
    assert_eq!(simulate_boot(&mut v), Slot::B);
}

// ---------------------------------------------------------------------------------------------
// Cross-checks against the real tools (Debian: grub-common, libubootenv-tool)

#[test]
fn grub_editenv_reads_what_we_write_and_we_read_what_it_writes() {
    need_tool("grub-editenv", "grub-common");
    let dir = TempDir::new().unwrap();
    let (path, mut sel) = grub_selector(dir.path());
    // grub-editenv creates the block; we keep its comment and its variables.
    run(Command::new("grub-editenv").arg(&path).arg("create"));
    run(Command::new("grub-editenv")
        .arg(&path)
        .arg("set")
        .arg("saved_entry=x\\y\nz")
        .arg("A_TRY="));
    sel.activate(Slot::B).unwrap();
    let list = run(Command::new("grub-editenv").arg(&path).arg("list"));
    assert_eq!(
        list,
        "saved_entry=x\\y\nz\nA_TRY=\nB_OK=1\nB_TRY=3\nORDER=B A\n"
    );
    let v = sel.store.load().unwrap();
    assert!(matches!(&v.entries[0], Entry::Comment(c) if c.starts_with(b"# WARNING")));
    // Byte-identical to what grub-editenv writes for the same variables.
    let ours = fs::read(&path).unwrap();
    run(Command::new("grub-editenv")
        .arg(&path)
        .arg("set")
        .arg("B_TRY=3"));
    assert_eq!(fs::read(&path).unwrap(), ours);
    // grub-editenv edits our block; we read its edits.
    run(Command::new("grub-editenv")
        .arg(&path)
        .arg("set")
        .arg("B_TRY=1")
        .arg("weird=a\\\\\n"));
    assert_eq!(sel.status().unwrap().b.tries_left, Some(1));
    assert_eq!(
        get(&sel.store.load().unwrap(), "weird").as_deref(),
        Some("a\\\\\n")
    );
    sel.mark_good(Slot::B).unwrap();
    let list = run(Command::new("grub-editenv").arg(&path).arg("list"));
    assert!(
        list.contains("B_TRY=\n") && list.contains("weird=a\\\\\n\n"),
        "{list}"
    );
    // A block of ours with no comment, from scratch.
    let (path2, mut sel2) = grub_selector(&dir.path().join("sub").tap_mkdir());
    sel2.activate(Slot::A).unwrap();
    let list = run(Command::new("grub-editenv").arg(&path2).arg("list"));
    // A_OK=1 and ORDER="A B" are the defaults already: only A_TRY needed writing.
    assert_eq!(list, "A_TRY=3\n");
    sel2.mark_bad(Slot::A).unwrap();
    let list = run(Command::new("grub-editenv").arg(&path2).arg("list"));
    assert_eq!(list, "A_TRY=3\nA_OK=0\nORDER=B A\n");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn fw_printenv_reads_what_we_write_and_we_read_what_fw_setenv_writes() {
    need_tool("fw_printenv", "libubootenv-tool");
    need_tool("fw_setenv", "libubootenv-tool");
    for redundant in [true, false] {
        let dir = TempDir::new().unwrap();
        let (_, config, cfg) = uboot_setup(dir.path(), redundant);
        let printenv = || run(Command::new("fw_printenv").arg("-c").arg(&cfg));
        let mut sel = Selector::new(UBootStore::new(config.clone()));
        sel.activate(Slot::B).unwrap();
        let out = printenv();
        for line in [
            "B_OK=1",
            "B_TRY=3",
            "ORDER=B A",
            "bootcmd=run distro_bootcmd",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "redundant={redundant}: {line} not in {out}"
            );
        }
        // fw_setenv writes (to the other copy, flags + 1); we pick that copy.
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(&cfg)
            .arg("B_TRY")
            .arg("1"));
        assert_eq!(
            sel.status().unwrap().b.tries_left,
            Some(1),
            "redundant={redundant}"
        );
        // Deleting with fw_setenv = committed for us.
        run(Command::new("fw_setenv").arg("-c").arg(&cfg).arg("B_TRY"));
        assert!(sel.status().unwrap().b.is_committed());
        sel.mark_bad(Slot::B).unwrap();
        let out = printenv();
        assert!(
            out.lines().any(|l| l == "B_OK=0") && out.lines().any(|l| l == "ORDER=A B"),
            "{out}"
        );
        assert!(!out.contains("B_TRY"), "{out}");
    }
}

#[test]
fn fw_printenv_agrees_on_which_copy_is_current() {
    need_tool("fw_printenv", "libubootenv-tool");
    for (f0, f1) in [(1u8, 2u8), (2, 1), (255, 0), (0, 255), (7, 7), (254, 255)] {
        let dir = TempDir::new().unwrap();
        let (dev, config, cfg) = uboot_setup(dir.path(), true);
        let mut img = fs::read(&dev).unwrap();
        let c0 = uboot::encode(&vars(&[("which", "0")]), 0x1000, true, f0, "t").unwrap();
        let c1 = uboot::encode(&vars(&[("which", "1")]), 0x1000, true, f1, "t").unwrap();
        img[..0x1000].copy_from_slice(&c0);
        img[0x2000..0x3000].copy_from_slice(&c1);
        fs::write(&dev, &img).unwrap();
        let tool = run(Command::new("fw_printenv")
            .arg("-c")
            .arg(&cfg)
            .arg("-n")
            .arg("which"));
        let mut store = UBootStore::new(config);
        let ours = get(&store.load().unwrap(), "which").unwrap();
        assert_eq!(tool.trim(), ours, "flags {f0} and {f1}");
        // One copy torn: both use the other.
        img[0x2000 + 20] ^= 0x55;
        fs::write(&dev, &img).unwrap();
        let tool = run(Command::new("fw_printenv")
            .arg("-c")
            .arg(&cfg)
            .arg("-n")
            .arg("which"));
        assert_eq!(tool.trim(), "0");
        assert_eq!(get(&store.load().unwrap(), "which").as_deref(), Some("0"));
    }
}

// ---------------------------------------------------------------------------------------------
// image/uboot/boot.cmd in a real U-Boot (Debian's qemu_arm64 build under qemu-system-aarch64)

/// A serial console on a child process: everything it prints, and lines typed into it.
struct Console {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    log: Vec<u8>,
    seq: u32,
}

impl Console {
    fn spawn(mut cmd: Command) -> Console {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for mut out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = out.read(&mut b) {
                    if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Console {
            child,
            stdin,
            rx,
            buf: Vec::new(),
            log: Vec::new(),
            seq: 0,
        }
    }

    /// Everything up to and including `pat`; on "Hit any key" (autoboot) a key is sent.
    fn expect(&mut self, pat: &str) -> String {
        use std::io::Write;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if let Some(i) = find(&self.buf, b"Hit any key") {
                self.buf.drain(..i + 11);
                self.stdin.write_all(b" ").unwrap();
                self.stdin.flush().unwrap();
            }
            if let Some(i) = find(&self.buf, pat.as_bytes()) {
                let out: Vec<u8> = self.buf.drain(..i + pat.len()).collect();
                return String::from_utf8_lossy(&out).replace('\r', "");
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(d) => {
                    self.log.extend_from_slice(&d);
                    self.buf.extend_from_slice(&d);
                }
                Err(_) => panic!(
                    "no {pat:?} from U-Boot; console so far:\n{}",
                    String::from_utf8_lossy(&self.log)
                ),
            }
        }
    }

    /// Type `line`, return its output (up to a marker echoed after it, so that output never
    /// drifts from the command that printed it).
    fn cmd(&mut self, line: &str) -> String {
        use std::io::Write;
        self.seq += 1;
        let n = self.seq;
        // The typed line shows `"__END""_n__"`, only the echo prints `__END_n__`.
        let typed = format!("{line}; echo \"__END\"\"_{n}__\"\n");
        self.stdin.write_all(typed.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let out = self.expect(&format!("__END_{n}__"));
        self.expect("=> ");
        out
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A disk with an MBR and three FAT partitions; 2 (rootA) and 3 (rootB) hold `/boot/Image`
/// (not a real kernel: `booti` refuses it and U-Boot returns to its prompt) where `kernels`
/// says so.
fn slot_disk(dir: &Path, kernels: [bool; 2]) -> PathBuf {
    const PART_SECTORS: u64 = 4096; // 2 MiB
    let mut disk = vec![0u8; (2048 + 3 * PART_SECTORS as usize) * 512];
    let image = dir.join("Image");
    fs::write(&image, b"not a kernel").unwrap();
    for i in 0..3u64 {
        let part = dir.join(format!("part{}.img", i + 1));
        run(Command::new("mkfs.vfat").arg("-C").arg(&part).arg("2048"));
        if i > 0 && kernels[i as usize - 1] {
            run(Command::new("mmd").arg("-i").arg(&part).arg("::/boot"));
            run(Command::new("mcopy")
                .arg("-i")
                .arg(&part)
                .arg(&image)
                .arg("::/boot/Image"));
        }
        let start = 2048 + i * PART_SECTORS;
        let bytes = fs::read(&part).unwrap();
        let off = start as usize * 512;
        disk[off..off + bytes.len()].copy_from_slice(&bytes);
        let e = 0x1be + 16 * i as usize;
        disk[e + 4] = 0x0c; // FAT32 LBA
        disk[e + 8..e + 12].copy_from_slice(&(start as u32).to_le_bytes());
        disk[e + 12..e + 16].copy_from_slice(&(PART_SECTORS as u32).to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let path = dir.join("disk.img");
    fs::write(&path, disk).unwrap();
    path
}

/// Debian's qemu_arm64 U-Boot with boot.cmd compiled at 0x50000000, a slot disk with `kernels`,
/// and the environment of the flash as `UBootEnv` wrote it: `base`, then B activated. At the
/// prompt, with what distro boot would set.
fn uboot_with_b_activated(d: &Path, kernels: [bool; 2]) -> Console {
    need_tool("qemu-system-aarch64", "qemu-system-arm");
    need_tool("mkimage", "u-boot-tools");
    need_tool("mkfs.vfat", "dosfstools");
    need_tool("mcopy", "mtools");
    let firmware = Path::new("/usr/lib/u-boot/qemu_arm64/u-boot.bin");
    assert!(
        firmware.exists(),
        "{} is missing: this test needs it (apt-get install -y u-boot-qemu)",
        firmware.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/uboot/boot.cmd");
    let scr = d.join("boot.scr");
    run(Command::new("mkimage")
        .args(["-A", "arm64", "-T", "script", "-C", "none", "-d"])
        .arg(&script)
        .arg(&scr));
    let disk = slot_disk(d, kernels);

    // The environment U-Boot loads at power-on (qemu_arm64: flash bank 1, 256 KiB, single copy),
    // written by UBootEnv: B activated.
    let flash = d.join("flash1.img");
    let mut img = vec![0xffu8; 64 << 20];
    let base = vars(&[("kw_marker", "written-by-keywarden")]);
    img[..0x40000].copy_from_slice(&uboot::encode(&base, 0x40000, false, 0, "t").unwrap());
    fs::write(&flash, &img).unwrap();
    let text = format!("{} 0x0 0x40000\n", flash.display());
    let config = UBootConfig::parse(&text, Path::new("fw_env.config")).unwrap();
    let mut sel = Selector::new(UBootStore::new(config));
    sel.activate(Slot::B).unwrap();

    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a57",
        "-m",
        "1024",
        "-nographic",
    ])
    .args([
        "-nic", "none", "-monitor", "none", "-serial", "stdio", "-bios",
    ])
    .arg(firmware)
    .arg("-drive")
    .arg(format!(
        "if=pflash,unit=1,format=raw,file={}",
        flash.display()
    ))
    .arg("-drive")
    .arg(format!("if=none,format=raw,id=d0,file={}", disk.display()))
    .args(["-device", "virtio-blk-device,drive=d0", "-device"])
    .arg(format!(
        "loader,file={},addr=0x50000000,force-raw=on",
        scr.display()
    ));
    let mut con = Console::spawn(qemu);
    con.expect("=> ");
    let banner = String::from_utf8_lossy(&con.log).replace('\r', "");
    assert!(
        banner.contains("Loading Environment from Flash... OK"),
        "U-Boot did not accept our environment:\n{banner}"
    );
    distro_boot_vars(&mut con);
    con
}

/// What distro boot and the board's default environment provide (ours replaced the latter).
fn distro_boot_vars(con: &mut Console) {
    con.cmd("virtio scan; setenv devtype virtio; setenv devnum 0");
    con.cmd("setenv kernel_addr_r 0x40400000; setenv fdt_addr_r 0x48000000");
}

#[test]
fn boot_cmd_in_real_uboot_reads_our_env_and_matches_the_simulator() {
    let dir = TempDir::new().unwrap();
    let mut con = uboot_with_b_activated(dir.path(), [true, true]);
    assert!(con
        .cmd("printenv kw_marker")
        .contains("kw_marker=written-by-keywarden"));
    let out = con.cmd("source 0x50000000");
    assert!(out.contains("keywarden: booting slot B"), "{out}");
    assert!(out.contains("kernel loaded from slot B"), "{out}");
    let st = con.cmd("echo R=${ORDER}/${B_OK}/${B_TRY}/${bootargs}");
    assert!(
        st.contains("R=B A/1/2/root=PARTLABEL=rootB ") && st.contains(" keywarden.slot=B "),
        "{st}"
    );

    // Every combination of the boot-counting variables (garbage included): U-Boot's choice, its
    // writes and whether it saves agree with the simulator of grub.cfg.
    let names = ["ORDER", "A_OK", "A_TRY", "B_OK", "B_TRY"];
    let mut checked = 0;
    for order in ["A B", "B A"] {
        for a_ok in [None, Some("0"), Some("1"), Some("x")] {
            for a_try in [None, Some("3"), Some("1"), Some("0"), Some("7")] {
                for b_ok in [Some("0"), Some("1")] {
                    for b_try in [None, Some("2"), Some("0")] {
                        let vals = [Some(order), a_ok, a_try, b_ok, b_try];
                        let mut initial = EnvVars::default();
                        let mut line = String::from("setenv bootargs");
                        for (n, v) in names.iter().zip(vals) {
                            match v {
                                Some(v) => {
                                    initial.set(n, v.as_bytes());
                                    line.push_str(&format!("; setenv {n} '{v}'"));
                                }
                                None => line.push_str(&format!("; setenv {n}")),
                            }
                        }
                        let mut expected = initial.clone();
                        let slot = simulate_boot(&mut expected);
                        con.cmd(&line);
                        let out = con.cmd("source 0x50000000");
                        let what = format!("{vals:?}");
                        assert!(
                            out.contains(&format!("keywarden: booting slot {slot}")),
                            "{what}: {out}"
                        );
                        assert_eq!(
                            out.contains("Saving Environment"),
                            expected != initial,
                            "{what}: saveenv iff grub.cfg would save_env: {out}"
                        );
                        let echo = con
                            .cmd("echo R=${ORDER}/${A_OK}/${A_TRY}/${B_OK}/${B_TRY}/${bootargs}");
                        let got = echo
                            .lines()
                            .find(|l| l.starts_with("R=") && !l.contains("${"))
                            .unwrap_or_else(|| panic!("{what}: {echo}"));
                        let eff =
                            |n: &str| String::from_utf8_lossy(effective(&expected, n)).into_owned();
                        let want = format!(
                            "R={}/{}/{}/{}/{}/root=PARTLABEL=root{slot} ",
                            eff("ORDER"),
                            eff("A_OK"),
                            eff("A_TRY"),
                            eff("B_OK"),
                            eff("B_TRY")
                        );
                        assert!(got.starts_with(&want), "{what}: got {got}, want {want}");
                        assert!(got.contains(&format!(" keywarden.slot={slot} ")), "{got}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 240);
}

#[test]
fn boot_cmd_marks_a_slot_it_cannot_load_bad_and_resets_into_the_other() {
    let dir = TempDir::new().unwrap();
    // B activated on trial but holding no kernel U-Boot can load.
    let mut con = uboot_with_b_activated(dir.path(), [true, false]);
    {
        use std::io::Write;
        con.stdin.write_all(b"source 0x50000000\n").unwrap();
        con.stdin.flush().unwrap();
    }
    let out = con.expect("marking it bad and resetting");
    assert!(out.contains("keywarden: booting slot B"), "{out}");
    assert!(out.contains("keywarden: slot B cannot be booted"), "{out}");
    // The mark is saved, then the board resets (and U-Boot starts again). What is saved is not
    // read back here: QEMU's CFI flash refuses U-Boot's buffered writes ("Flash buffer write
    // timeout"), so this U-Boot's saveenv never persists; the variables written are the
    // simulator's and the updater's business, checked above and in `check_fallback`.
    let out = con.expect("resetting ...");
    assert!(out.contains("Saving Environment"), "{out}");
    con.expect("U-Boot 20");
}
