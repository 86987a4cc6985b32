//! `keywarden-qemu-board`: the devices of the `qemu` board, for the appliance image booted in
//! QEMU (`cargo xtask vm`). TEST-ONLY: it is installed only by the qemu board's overlay
//! (`image/boards/qemu/`), never on a real cabinet.
//!
//! It creates the very devices a real board has, from the kernel's own simulators: the gpio-sim
//! chips with the named lines of `/etc/keywarden/board.toml` (the VM harness's test cabinet),
//! with each lock's feedback line wired to follow its lock output (a thread, `gpiosim::Wiring`),
//! the uinput badge reader and keypad, and the fingerprint module's port (a pty served by the
//! module emulator, linked at `/dev/ttyKWFP0`). It then tells systemd it is ready and keeps
//! running: uinput devices and the emulator live as long as this process does. udev gives the
//! device nodes their groups (`60-keywarden.rules`), exactly as on a real board.

use keywarden_vmtest::board::{BADGE_DEVICE, CHIPS, FEEDBACK, INITIALLY_HIGH, KEYPAD_DEVICE};
use keywarden_vmtest::fingerprint::FingerprintPort;
use keywarden_vmtest::gpiosim::{SimLines, Wiring};
use keywarden_vmtest::uinput::Keyboard;
use std::process::ExitCode;

fn main() -> ExitCode {
    match build() {
        Ok(board) => {
            if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
                eprintln!("keywarden-qemu-board: sd_notify READY failed: {e}");
            }
            // Hold the devices until systemd stops us.
            let _board = board;
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("keywarden-qemu-board: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that must stay open for the devices to stay.
struct Board {
    _wiring: Wiring,
    _lines: SimLines,
    _badge: Keyboard,
    _keypad: Keyboard,
    _fingerprint: FingerprintPort,
}

fn build() -> keywarden_vmtest::Result<Board> {
    let lines = SimLines::create(CHIPS)?;
    for line in INITIALLY_HIGH {
        lines.pull(line, true)?;
    }
    println!("gpio-sim chips: {}", lines.chip_names().join(", "));
    let wiring = Wiring::start(&lines, FEEDBACK)?;
    println!("lock feedback lines follow their locks");
    let badge = Keyboard::badge_reader(BADGE_DEVICE)?;
    let keypad = Keyboard::keypad(KEYPAD_DEVICE)?;
    println!(
        "uinput: badge reader {}, keypad {}",
        badge.node.display(),
        keypad.node.display()
    );
    let fingerprint = FingerprintPort::open()?;
    println!(
        "fingerprint module emulator on {}",
        fingerprint.slave_path.display()
    );
    Ok(Board {
        _wiring: wiring,
        _lines: lines,
        _badge: badge,
        _keypad: keypad,
        _fingerprint: fingerprint,
    })
}
