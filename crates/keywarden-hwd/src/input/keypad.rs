//! Decoder for PIN keypads that present themselves as keyboards.

use evdev::KeyCode;
use keywarden_dbus::hardware::KeypadKeyName;

/// Turns the key events of one keypad into [`KeypadKeyName`]s. Sans-IO and timeless: one key
/// press in, at most one key name out.
///
/// Accepted: top-row digits, `KEY_KP0..9` and `KEY_NUMERIC_0..9` as digits; `KEY_KPASTERISK`,
/// `KEY_NUMERIC_STAR` and shift+8 as Star; `KEY_NUMERIC_POUND` and shift+3 as Hash;
/// `KEY_ENTER`/`KEY_KPENTER` as Enter; `KEY_BACKSPACE`/`KEY_DELETE` as Clear; `KEY_ESC` as Cancel.
/// Other keys, and other shifted top-row digits, are ignored.
#[derive(Debug, Default)]
pub struct KeypadDecoder {
    left_shift: bool,
    right_shift: bool,
}

const TOP_ROW: [KeyCode; 10] = [
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

const KEYPAD: [KeyCode; 10] = [
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
];

const NUMERIC: [KeyCode; 10] = [
    KeyCode::KEY_NUMERIC_0,
    KeyCode::KEY_NUMERIC_1,
    KeyCode::KEY_NUMERIC_2,
    KeyCode::KEY_NUMERIC_3,
    KeyCode::KEY_NUMERIC_4,
    KeyCode::KEY_NUMERIC_5,
    KeyCode::KEY_NUMERIC_6,
    KeyCode::KEY_NUMERIC_7,
    KeyCode::KEY_NUMERIC_8,
    KeyCode::KEY_NUMERIC_9,
];

const DIGITS: [KeypadKeyName; 10] = [
    KeypadKeyName::Digit0,
    KeypadKeyName::Digit1,
    KeypadKeyName::Digit2,
    KeypadKeyName::Digit3,
    KeypadKeyName::Digit4,
    KeypadKeyName::Digit5,
    KeypadKeyName::Digit6,
    KeypadKeyName::Digit7,
    KeypadKeyName::Digit8,
    KeypadKeyName::Digit9,
];

impl KeypadDecoder {
    /// A decoder with no shift key held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one key event (`value`: 0 release, 1 press, 2 autorepeat); returns the key name for
    /// a press of a keypad key. Releases and repeats only update the shift state.
    pub fn handle_key(&mut self, code: KeyCode, value: i32) -> Option<KeypadKeyName> {
        match (code, value) {
            (KeyCode::KEY_LEFTSHIFT, 0 | 1) => self.left_shift = value == 1,
            (KeyCode::KEY_RIGHTSHIFT, 0 | 1) => self.right_shift = value == 1,
            _ => {}
        }
        if value != 1 || code == KeyCode::KEY_LEFTSHIFT || code == KeyCode::KEY_RIGHTSHIFT {
            return None;
        }
        let shift = self.left_shift || self.right_shift;
        let name = match code {
            KeyCode::KEY_8 if shift => Some(KeypadKeyName::Star),
            KeyCode::KEY_3 if shift => Some(KeypadKeyName::Hash),
            _ if shift && TOP_ROW.contains(&code) => None,
            KeyCode::KEY_KPASTERISK | KeyCode::KEY_NUMERIC_STAR => Some(KeypadKeyName::Star),
            KeyCode::KEY_NUMERIC_POUND => Some(KeypadKeyName::Hash),
            KeyCode::KEY_ENTER | KeyCode::KEY_KPENTER => Some(KeypadKeyName::Enter),
            KeyCode::KEY_BACKSPACE | KeyCode::KEY_DELETE => Some(KeypadKeyName::Clear),
            KeyCode::KEY_ESC => Some(KeypadKeyName::Cancel),
            _ => [TOP_ROW, KEYPAD, NUMERIC]
                .iter()
                .find_map(|row| row.iter().position(|&c| c == code))
                .map(|digit| DIGITS[digit]),
        };
        if name.is_none() {
            tracing::debug!(key = ?code, shift, "ignoring key that is not a keypad key");
        }
        name
    }
}

/// The key that the `sim` backend presses (without shift) to report `name`.
pub fn keys_for(name: KeypadKeyName) -> KeyCode {
    match name {
        KeypadKeyName::Star => KeyCode::KEY_KPASTERISK,
        KeypadKeyName::Hash => KeyCode::KEY_NUMERIC_POUND,
        KeypadKeyName::Enter => KeyCode::KEY_ENTER,
        KeypadKeyName::Clear => KeyCode::KEY_BACKSPACE,
        KeypadKeyName::Cancel => KeyCode::KEY_ESC,
        KeypadKeyName::Digit0 => KeyCode::KEY_0,
        KeypadKeyName::Digit1 => KeyCode::KEY_1,
        KeypadKeyName::Digit2 => KeyCode::KEY_2,
        KeypadKeyName::Digit3 => KeyCode::KEY_3,
        KeypadKeyName::Digit4 => KeyCode::KEY_4,
        KeypadKeyName::Digit5 => KeyCode::KEY_5,
        KeypadKeyName::Digit6 => KeyCode::KEY_6,
        KeypadKeyName::Digit7 => KeyCode::KEY_7,
        KeypadKeyName::Digit8 => KeyCode::KEY_8,
        KeypadKeyName::Digit9 => KeyCode::KEY_9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeypadKeyName as K;

    fn press(decoder: &mut KeypadDecoder, code: KeyCode) -> Option<KeypadKeyName> {
        let name = decoder.handle_key(code, 1);
        assert_eq!(decoder.handle_key(code, 2), None, "repeat of {code:?}");
        assert_eq!(decoder.handle_key(code, 0), None, "release of {code:?}");
        name
    }

    #[test]
    fn sim_keys_round_trip() {
        let mut decoder = KeypadDecoder::new();
        for &name in KeypadKeyName::ALL {
            assert_eq!(press(&mut decoder, keys_for(name)), Some(name), "{name}");
        }
    }

    #[test]
    fn digits_from_every_row() {
        let mut decoder = KeypadDecoder::new();
        for row in [TOP_ROW, KEYPAD, NUMERIC] {
            let names: Vec<_> = row.iter().map(|&code| press(&mut decoder, code)).collect();
            let expected: Vec<_> = DIGITS.iter().copied().map(Some).collect();
            assert_eq!(names, expected);
        }
    }

    #[test]
    fn symbols_and_commands() {
        let mut d = KeypadDecoder::new();
        let cases = [
            (KeyCode::KEY_KPASTERISK, K::Star),
            (KeyCode::KEY_NUMERIC_STAR, K::Star),
            (KeyCode::KEY_NUMERIC_POUND, K::Hash),
            (KeyCode::KEY_ENTER, K::Enter),
            (KeyCode::KEY_KPENTER, K::Enter),
            (KeyCode::KEY_BACKSPACE, K::Clear),
            (KeyCode::KEY_DELETE, K::Clear),
            (KeyCode::KEY_ESC, K::Cancel),
        ];
        for (code, name) in cases {
            assert_eq!(press(&mut d, code), Some(name), "{code:?}");
        }
    }

    #[test]
    fn shifted_top_row() {
        let mut d = KeypadDecoder::new();
        assert_eq!(d.handle_key(KeyCode::KEY_LEFTSHIFT, 1), None);
        assert_eq!(press(&mut d, KeyCode::KEY_8), Some(K::Star));
        assert_eq!(press(&mut d, KeyCode::KEY_3), Some(K::Hash));
        assert_eq!(press(&mut d, KeyCode::KEY_1), None);
        assert_eq!(press(&mut d, KeyCode::KEY_KP8), Some(K::Digit8));
        assert_eq!(d.handle_key(KeyCode::KEY_RIGHTSHIFT, 1), None);
        assert_eq!(d.handle_key(KeyCode::KEY_LEFTSHIFT, 0), None);
        assert_eq!(press(&mut d, KeyCode::KEY_3), Some(K::Hash));
        assert_eq!(d.handle_key(KeyCode::KEY_RIGHTSHIFT, 0), None);
        assert_eq!(press(&mut d, KeyCode::KEY_3), Some(K::Digit3));
        assert_eq!(press(&mut d, KeyCode::KEY_8), Some(K::Digit8));
    }

    #[test]
    fn other_keys_are_ignored() {
        let mut d = KeypadDecoder::new();
        for code in [
            KeyCode::KEY_A,
            KeyCode::KEY_F1,
            KeyCode::KEY_TAB,
            KeyCode::KEY_KPPLUS,
        ] {
            assert_eq!(press(&mut d, code), None, "{code:?}");
        }
    }
}
