//! The test cabinet: what `/etc/keywarden/board.toml` (from tests/vm/rootfs/) names, and the
//! accounts of the VM's `/etc/passwd`. The gpio-sim chips are laid out from [`CHIPS`].

/// Where the initramfs puts the board file.
pub const BOARD_FILE: &str = "/etc/keywarden/board.toml";

/// The site policy file of the test cabinet (tests/vm/rootfs/etc/keywarden/policy.toml).
pub const POLICY_FILE: &str = "/etc/keywarden/policy.toml";
/// The data partition: `/init` mounts the VM's virtio disk (ext4) here, or a tmpfs without one.
pub const DATA_DIR: &str = "/var/lib/keywarden";
/// keywarden-policyd's database, on the data partition.
pub const DATABASE: &str = "/var/lib/keywarden/keywarden.db";
/// keywarden-policyd's device key (created at first start).
pub const DEVICE_KEY: &str = "/var/lib/keywarden/identity/device-key.pem";
/// keywarden-policyd's badge hashing key (created at first start).
pub const BADGE_KEY: &str = "/var/lib/keywarden/secrets/badge.key";
/// `release-seconds` in the policy file: how long a granted slot stays released.
pub const RELEASE_SECONDS: u64 = 2;
/// `pin-attempts` in the policy file: wrong PINs before a lockout.
pub const PIN_ATTEMPTS: u32 = 3;
/// Slots the policy scenarios and the policy benchmark start with empty (presence pulled down
/// before keywarden-policyd starts): free slots for returns. Slots 1 and 2 hold keys.
pub const EMPTY_FOR_POLICY: &[u32] = &[3, 4];

/// gpio-sim chips to create: (configfs name, line names). Two chips, so the daemon has to find
/// lines by name across `/dev/gpiochip*`.
pub const CHIPS: &[(&str, &[&str])] = &[
    (
        "kw-door",
        &[
            "door-lock",
            "door-sensor",
            "tamper",
            "buzzer",
            "fp-touch",
            "door-lock-fb",
        ],
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
            "slot1-lock-fb",
            "slot2-lock-fb",
            "slot3-lock-fb",
            "slot4-lock-fb",
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

/// Line names of slot `n`: (presence, lock).
pub fn slot_lines(n: u32) -> (String, String) {
    (format!("slot{n}-presence"), format!("slot{n}-lock"))
}

/// Lock outputs: all must read 0 (locked) whenever nothing was unlocked.
pub const LOCKS: &[&str] = &[
    "door-lock",
    "slot1-lock",
    "slot2-lock",
    "slot3-lock",
    "slot4-lock",
];

/// Each lock output with its feedback input: the board file's `feedback` lines, which the
/// harness's [`crate::gpiosim::Wiring`] makes follow the lock (as a lock's position switch would).
pub const FEEDBACK: &[(&str, &str)] = &[
    ("door-lock", "door-lock-fb"),
    ("slot1-lock", "slot1-lock-fb"),
    ("slot2-lock", "slot2-lock-fb"),
    ("slot3-lock", "slot3-lock-fb"),
    ("slot4-lock", "slot4-lock-fb"),
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
    /// Primary group of `keywarden`.
    pub const KEYWARDEN_GID: u32 = 900;
    /// `keywarden-hw`: the hardware service's user and primary group.
    pub const HW_UID: u32 = 901;
    /// Primary group of `keywarden-hw`.
    pub const HW_GID: u32 = 901;
    /// `intruder`: an unprivileged user with no business on the bus.
    pub const INTRUDER_UID: u32 = 950;
    /// `console`: the cabinet's console program, a member of `keywarden-console` only.
    pub const CONSOLE_UID: u32 = 951;
    /// Primary group of `console`.
    pub const CONSOLE_GID: u32 = 951;
    /// `keywarden-console`: may call keywarden-policyd's console methods.
    pub const KEYWARDEN_CONSOLE_GID: u32 = 920;
    /// Group owning `/dev/gpiochip*`.
    pub const GPIO_GID: u32 = 910;
    /// Group owning `/dev/input/event*`.
    pub const INPUT_GID: u32 = 911;
    /// Group owning serial ports.
    pub const DIALOUT_GID: u32 = 20;
}
