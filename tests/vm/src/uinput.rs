//! uinput keyboards standing in for the cabinet's USB HID devices: a keyboard-wedge badge reader
//! (a full keyboard, as such scanners announce themselves) and a PIN keypad.

use crate::{Context, Result};
use evdev::uinput::VirtualDevice;
use evdev::{AttributeSet, EventType, InputEvent, KeyCode};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Pause before each typed key. A USB HID scanner sends at most one report per poll interval
/// (1-8 ms); typing faster than any device overflows evdev's per-client buffer (64 events, 16
/// keys), and the kernel drops events (SYN_DROPPED).
pub const KEY_INTERVAL: Duration = Duration::from_millis(2);

/// Keys of a full keyboard: every code from KEY_ESC up to KEY_MICMUTE.
const KEYBOARD_KEYS: std::ops::RangeInclusive<u16> = 1..=248;

/// Keys of a PIN keypad: top-row and keypad digits, enter, backspace, escape and a few symbols.
const KEYPAD_KEYS: &[KeyCode] = &[
    KeyCode::KEY_0,
    KeyCode::KEY_1,
    KeyCode::KEY_2,
    KeyCode::KEY_3,
    KeyCode::KEY_4,
    KeyCode::KEY_5,
    KeyCode::KEY_6,
    KeyCode::KEY_7,
    KeyCode::KEY_8,
    KeyCode::KEY_9,
    KeyCode::KEY_KP0,
    KeyCode::KEY_KP1,
    KeyCode::KEY_KP2,
    KeyCode::KEY_KP3,
    KeyCode::KEY_KP4,
    KeyCode::KEY_KP5,
    KeyCode::KEY_KP6,
    KeyCode::KEY_KP7,
    KeyCode::KEY_KP8,
    KeyCode::KEY_KP9,
    KeyCode::KEY_KPASTERISK,
    KeyCode::KEY_KPENTER,
    KeyCode::KEY_ENTER,
    KeyCode::KEY_BACKSPACE,
    KeyCode::KEY_ESC,
];

/// A virtual keyboard and its `/dev/input/eventN` node.
pub struct Keyboard {
    device: VirtualDevice,
    /// The event node the daemon opens.
    pub node: PathBuf,
}

impl Keyboard {
    /// The badge reader: a full keyboard named `name`.
    pub fn badge_reader(name: &str) -> Result<Self> {
        let keys: AttributeSet<KeyCode> = KEYBOARD_KEYS.map(KeyCode).collect();
        Self::create(name, &keys)
    }

    /// The PIN keypad named `name`.
    pub fn keypad(name: &str) -> Result<Self> {
        let keys: AttributeSet<KeyCode> = KEYPAD_KEYS.iter().copied().collect();
        Self::create(name, &keys)
    }

    fn create(name: &str, keys: &AttributeSet<KeyCode>) -> Result<Self> {
        let what = format!("creating uinput device {name:?}");
        let mut device = VirtualDevice::builder()
            .context(format!("{what}: opening /dev/uinput"))?
            .name(name)
            .with_keys(keys)
            .context(&what)?
            .build()
            .context(&what)?;
        let node = event_node(&mut device).context(&what)?;
        Ok(Keyboard { device, node })
    }

    /// Gives the event node to `gid` with mode 0660, as the image's udev rule does.
    pub fn grant(&self, gid: u32) -> Result<()> {
        chown(&self.node, None, Some(gid)).context(format!("chgrp {}", self.node.display()))?;
        std::fs::set_permissions(&self.node, std::fs::Permissions::from_mode(0o660))
            .context(format!("chmod {}", self.node.display()))
    }

    /// Presses and releases `key` (one SYN_REPORT after each).
    pub fn tap(&mut self, key: KeyCode) -> Result<()> {
        self.key(key, 1)?;
        self.key(key, 0)
    }

    /// Sends one key event (1 = press, 0 = release) and a SYN_REPORT.
    pub fn key(&mut self, key: KeyCode, value: i32) -> Result<()> {
        let event = InputEvent::new(EventType::KEY.0, key.code(), value);
        self.device
            .emit(&[event])
            .context(format!("emitting {key:?}={value}"))
    }

    /// Writes `taps` presses and releases of `key`, each followed by a SYN_REPORT, in one
    /// `write()`: far more events than evdev's per-client buffer (64 events) holds before the
    /// reader can run, so the kernel drops events and queues SYN_DROPPED for the reader.
    pub fn burst(&mut self, key: KeyCode, taps: usize) -> Result<()> {
        let syn = InputEvent::new(EventType::SYNCHRONIZATION.0, 0, 0);
        let events: Vec<InputEvent> = (0..taps)
            .flat_map(|_| {
                [
                    InputEvent::new(EventType::KEY.0, key.code(), 1),
                    syn,
                    InputEvent::new(EventType::KEY.0, key.code(), 0),
                    syn,
                ]
            })
            .collect();
        self.device
            .emit(&events)
            .context(format!("emitting a burst of {taps} {key:?} taps"))
    }

    /// Types `text` as a US keyboard would (letters, digits, `-`, space; shift for capitals),
    /// one key per [`KEY_INTERVAL`].
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        for c in text.chars() {
            std::thread::sleep(KEY_INTERVAL);
            let (key, shift) = key_for(c).ok_or_else(|| format!("cannot type {c:?}"))?;
            if shift {
                self.key(KeyCode::KEY_LEFTSHIFT, 1)?;
            }
            self.tap(key)?;
            if shift {
                self.key(KeyCode::KEY_LEFTSHIFT, 0)?;
            }
        }
        Ok(())
    }
}

/// Finds the device's `/dev/input/eventN` once devtmpfs has created it.
fn event_node(device: &mut VirtualDevice) -> std::io::Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = device.enumerate_dev_nodes_blocking()?.find_map(|n| n.ok());
        match found {
            Some(node) if node.exists() => return Ok(node),
            _ if Instant::now() > deadline => {
                return Err(std::io::Error::other("no /dev/input/event node after 5 s"))
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The key (and whether shift is held) that types `c` on a US layout. Deliberately not hwd's
/// `input::keymap`: the scenarios need an independent encoder, or a keymap bug would cancel out.
pub fn key_for(c: char) -> Option<(KeyCode, bool)> {
    const LETTERS: [KeyCode; 26] = [
        KeyCode::KEY_A,
        KeyCode::KEY_B,
        KeyCode::KEY_C,
        KeyCode::KEY_D,
        KeyCode::KEY_E,
        KeyCode::KEY_F,
        KeyCode::KEY_G,
        KeyCode::KEY_H,
        KeyCode::KEY_I,
        KeyCode::KEY_J,
        KeyCode::KEY_K,
        KeyCode::KEY_L,
        KeyCode::KEY_M,
        KeyCode::KEY_N,
        KeyCode::KEY_O,
        KeyCode::KEY_P,
        KeyCode::KEY_Q,
        KeyCode::KEY_R,
        KeyCode::KEY_S,
        KeyCode::KEY_T,
        KeyCode::KEY_U,
        KeyCode::KEY_V,
        KeyCode::KEY_W,
        KeyCode::KEY_X,
        KeyCode::KEY_Y,
        KeyCode::KEY_Z,
    ];
    const DIGITS: [KeyCode; 10] = [
        KeyCode::KEY_0,
        KeyCode::KEY_1,
        KeyCode::KEY_2,
        KeyCode::KEY_3,
        KeyCode::KEY_4,
        KeyCode::KEY_5,
        KeyCode::KEY_6,
        KeyCode::KEY_7,
        KeyCode::KEY_8,
        KeyCode::KEY_9,
    ];
    match c {
        'a'..='z' => Some((LETTERS[c as usize - 'a' as usize], false)),
        'A'..='Z' => Some((LETTERS[c as usize - 'A' as usize], true)),
        '0'..='9' => Some((DIGITS[c as usize - '0' as usize], false)),
        '-' => Some((KeyCode::KEY_MINUS, false)),
        ' ' => Some((KeyCode::KEY_SPACE, false)),
        _ => None,
    }
}
