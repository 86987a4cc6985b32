//! The test cabinet: what `/etc/keywarden/board.toml` (from tests/vm/rootfs/) names, and the
//! accounts of the VM's `/etc/passwd`. The gpio-sim chips are laid out from [`CHIPS`].

/// Where the initramfs puts the board file.
pub const BOARD_FILE: &str = "/etc/keywarden/board.toml";

/// gpio-sim chips to create: (configfs name, line names). Two chips, so the daemon has to find
/// lines by name across `/dev/gpiochip*`.
pub const CHIPS: &[(&str, &[&str])] = &[
    (
        "kw-door",
        &["door-lock", "door-sensor", "tamper", "buzzer", "fp-touch"],
    ),
    (
        "kw-slots",
        &[
            "slot1-presence",
            "slot1-lock",
            "slot1-led",
            "slot2-presence",
            "slot2-lock",
            "slot2-led",
            "slot3-presence",
            "slot3-lock",
            "slot3-led",
            "slot4-presence",
            "slot4-lock",
            "slot4-led",
        ],
    ),
];

/// Input lines pulled up before the daemon starts: every slot holds its key.
pub const INITIALLY_HIGH: &[&str] = &[
    "slot1-presence",
    "slot2-presence",
    "slot3-presence",
    "slot4-presence",
];

/// Lock outputs: all must read 0 (locked) whenever nothing was unlocked.
pub const LOCKS: &[&str] = &[
    "door-lock",
    "slot1-lock",
    "slot2-lock",
    "slot3-lock",
    "slot4-lock",
];

/// The badge reader's evdev name and its name on the bus.
pub const BADGE_DEVICE: &str = "Keywarden Test Badge Reader";
/// Reader name in signals.
pub const BADGE_READER: &str = "badge";
/// The board's `max_length` for the badge reader.
pub const BADGE_MAX_LENGTH: usize = 32;
/// The keypad's evdev name.
pub const KEYPAD_DEVICE: &str = "Keywarden Test Keypad";
/// Keypad name in signals.
pub const KEYPAD: &str = "keypad";
/// The fingerprint module's serial port (a symlink to a pty slave).
pub const FINGERPRINT_PORT: &str = "/dev/ttyKWFP0";

/// Accounts from tests/vm/rootfs/etc/passwd and group, copied into the initramfs.
pub mod ids {
    /// `keywarden`: the policy service's user, allowed to call the hardware service.
    pub const KEYWARDEN_UID: u32 = 900;
    /// `keywarden-hw`: the hardware service's user and primary group.
    pub const HW_UID: u32 = 901;
    /// Primary group of `keywarden-hw`.
    pub const HW_GID: u32 = 901;
    /// `intruder`: an unprivileged user with no business on the bus.
    pub const INTRUDER_UID: u32 = 950;
    /// Group owning `/dev/gpiochip*`.
    pub const GPIO_GID: u32 = 910;
    /// Group owning `/dev/input/event*`.
    pub const INPUT_GID: u32 = 911;
    /// Group owning serial ports.
    pub const DIALOUT_GID: u32 = 20;
}
