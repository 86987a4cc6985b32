//! US keyboard layout: Linux key codes plus shift state to printable ASCII, and back.
//!
//! Keyboard-wedge scanners "type" their data as a US keyboard would; the `sim` backend types badge
//! codes the same way with [`keys_for`].

use evdev::KeyCode;

/// Main-block keys: (code, unshifted, shifted).
const MAIN: &[(KeyCode, char, char)] = &[
    (KeyCode::KEY_A, 'a', 'A'),
    (KeyCode::KEY_B, 'b', 'B'),
    (KeyCode::KEY_C, 'c', 'C'),
    (KeyCode::KEY_D, 'd', 'D'),
    (KeyCode::KEY_E, 'e', 'E'),
    (KeyCode::KEY_F, 'f', 'F'),
    (KeyCode::KEY_G, 'g', 'G'),
    (KeyCode::KEY_H, 'h', 'H'),
    (KeyCode::KEY_I, 'i', 'I'),
    (KeyCode::KEY_J, 'j', 'J'),
    (KeyCode::KEY_K, 'k', 'K'),
    (KeyCode::KEY_L, 'l', 'L'),
    (KeyCode::KEY_M, 'm', 'M'),
    (KeyCode::KEY_N, 'n', 'N'),
    (KeyCode::KEY_O, 'o', 'O'),
    (KeyCode::KEY_P, 'p', 'P'),
    (KeyCode::KEY_Q, 'q', 'Q'),
    (KeyCode::KEY_R, 'r', 'R'),
    (KeyCode::KEY_S, 's', 'S'),
    (KeyCode::KEY_T, 't', 'T'),
    (KeyCode::KEY_U, 'u', 'U'),
    (KeyCode::KEY_V, 'v', 'V'),
    (KeyCode::KEY_W, 'w', 'W'),
    (KeyCode::KEY_X, 'x', 'X'),
    (KeyCode::KEY_Y, 'y', 'Y'),
    (KeyCode::KEY_Z, 'z', 'Z'),
    (KeyCode::KEY_1, '1', '!'),
    (KeyCode::KEY_2, '2', '@'),
    (KeyCode::KEY_3, '3', '#'),
    (KeyCode::KEY_4, '4', '$'),
    (KeyCode::KEY_5, '5', '%'),
    (KeyCode::KEY_6, '6', '^'),
    (KeyCode::KEY_7, '7', '&'),
    (KeyCode::KEY_8, '8', '*'),
    (KeyCode::KEY_9, '9', '('),
    (KeyCode::KEY_0, '0', ')'),
    (KeyCode::KEY_MINUS, '-', '_'),
    (KeyCode::KEY_EQUAL, '=', '+'),
    (KeyCode::KEY_LEFTBRACE, '[', '{'),
    (KeyCode::KEY_RIGHTBRACE, ']', '}'),
    (KeyCode::KEY_BACKSLASH, '\\', '|'),
    (KeyCode::KEY_SEMICOLON, ';', ':'),
    (KeyCode::KEY_APOSTROPHE, '\'', '"'),
    (KeyCode::KEY_GRAVE, '`', '~'),
    (KeyCode::KEY_COMMA, ',', '<'),
    (KeyCode::KEY_DOT, '.', '>'),
    (KeyCode::KEY_SLASH, '/', '?'),
    (KeyCode::KEY_SPACE, ' ', ' '),
];

/// Numeric keypad keys (Num Lock assumed on; shift does not change them). Some scanners are set
/// to send digits this way. Only used for decoding: [`keys_for`] uses the main block.
const KEYPAD: &[(KeyCode, char)] = &[
    (KeyCode::KEY_KP0, '0'),
    (KeyCode::KEY_KP1, '1'),
    (KeyCode::KEY_KP2, '2'),
    (KeyCode::KEY_KP3, '3'),
    (KeyCode::KEY_KP4, '4'),
    (KeyCode::KEY_KP5, '5'),
    (KeyCode::KEY_KP6, '6'),
    (KeyCode::KEY_KP7, '7'),
    (KeyCode::KEY_KP8, '8'),
    (KeyCode::KEY_KP9, '9'),
    (KeyCode::KEY_KPDOT, '.'),
    (KeyCode::KEY_KPPLUS, '+'),
    (KeyCode::KEY_KPMINUS, '-'),
    (KeyCode::KEY_KPASTERISK, '*'),
    (KeyCode::KEY_KPSLASH, '/'),
];

/// The printable ASCII character a key types with the given shift state, if any.
pub fn char_for(code: KeyCode, shift: bool) -> Option<char> {
    if let Some(&(_, plain, shifted)) = MAIN.iter().find(|(c, _, _)| *c == code) {
        return Some(if shift { shifted } else { plain });
    }
    KEYPAD.iter().find(|(c, _)| *c == code).map(|&(_, ch)| ch)
}

/// The key and shift state that type `ch`, or `None` if `ch` is not printable ASCII.
pub fn keys_for(ch: char) -> Option<(KeyCode, bool)> {
    MAIN.iter().find_map(|&(code, plain, shifted)| {
        if plain == ch {
            Some((code, false))
        } else if shifted == ch {
            Some((code, true))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_printable_ascii_char_round_trips() {
        for ch in ' '..='~' {
            let (code, shift) = keys_for(ch).unwrap_or_else(|| panic!("no key for {ch:?}"));
            assert_eq!(
                char_for(code, shift),
                Some(ch),
                "{ch:?} via {code:?} shift={shift}"
            );
        }
    }

    #[test]
    fn non_printable_chars_have_no_keys() {
        for ch in ['\n', '\t', '\r', '\0', '\u{7f}', 'é', '€'] {
            assert_eq!(keys_for(ch), None, "{ch:?}");
        }
    }

    #[test]
    fn samples() {
        assert_eq!(char_for(KeyCode::KEY_A, false), Some('a'));
        assert_eq!(char_for(KeyCode::KEY_A, true), Some('A'));
        assert_eq!(char_for(KeyCode::KEY_2, true), Some('@'));
        assert_eq!(char_for(KeyCode::KEY_SPACE, true), Some(' '));
        assert_eq!(char_for(KeyCode::KEY_KP7, true), Some('7'));
        assert_eq!(char_for(KeyCode::KEY_ENTER, false), None);
        assert_eq!(char_for(KeyCode::KEY_F5, false), None);
        assert_eq!(char_for(KeyCode::KEY_LEFTSHIFT, false), None);
        assert_eq!(keys_for('"'), Some((KeyCode::KEY_APOSTROPHE, true)));
        assert_eq!(keys_for(' '), Some((KeyCode::KEY_SPACE, false)));
    }

    proptest! {
        #[test]
        fn printable_ascii_round_trips(ch in proptest::char::range(' ', '~')) {
            let (code, shift) = keys_for(ch).ok_or_else(|| TestCaseError::fail("no key"))?;
            prop_assert_eq!(char_for(code, shift), Some(ch));
        }

        #[test]
        fn every_char_for_result_is_printable_ascii(code in 0u16..0x300, shift: bool) {
            if let Some(ch) = char_for(KeyCode::new(code), shift) {
                prop_assert!((' '..='~').contains(&ch));
            }
        }
    }
}
