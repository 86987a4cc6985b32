//! Decoder for keyboard-wedge badge and barcode scanners.
//!
//! A scanner "types" its data as key strokes, usually followed by Enter. [`WedgeDecoder`] turns
//! the key events of one device back into scans. It is sans-IO: feed it every key event with
//! [`WedgeDecoder::handle_key`], sleep until [`WedgeDecoder::poll_timeout`] and then call
//! [`WedgeDecoder::handle_timeout`]. Each scan yields at most one [`ScanOutcome`], when it ends
//! (terminator or timeout); a scan that went wrong is reported once, after the rest of its keys
//! have been swallowed.

use std::fmt;
use std::time::{Duration, Instant};

use evdev::KeyCode;

use super::keymap;

/// The key a scanner sends after its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Terminator {
    /// `KEY_ENTER` or `KEY_KPENTER`.
    #[default]
    Enter,
    /// `KEY_TAB`.
    Tab,
    /// No terminator: a scan ends when no key follows within the inter-key timeout.
    None,
}

impl Terminator {
    fn matches(self, code: KeyCode) -> bool {
        match self {
            Self::Enter => code == KeyCode::KEY_ENTER || code == KeyCode::KEY_KPENTER,
            Self::Tab => code == KeyCode::KEY_TAB,
            Self::None => false,
        }
    }
}

/// How a scanner is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WedgeConfig {
    /// The key that ends a scan.
    pub terminator: Terminator,
    /// Longest gap between two key presses of one scan. With a terminator, a longer gap rejects
    /// the scan as incomplete; without one, it ends the scan.
    pub inter_key_timeout: Duration,
    /// Most characters a scan may have; longer scans are rejected.
    pub max_length: usize,
}

impl Default for WedgeConfig {
    fn default() -> Self {
        Self {
            terminator: Terminator::Enter,
            inter_key_timeout: Duration::from_millis(50),
            max_length: 64,
        }
    }
}

/// The end of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ScanOutcome {
    /// A complete scan: the characters typed, without the terminator. Never empty.
    Scanned(String),
    /// A scan that went wrong.
    Rejected(ScanRejection),
}

/// Why a scan was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// A key that types no printable character (function key, Ctrl, a foreign terminator...).
    Garbled,
    /// More than [`WedgeConfig::max_length`] characters.
    TooLong,
    /// The keys stopped before the terminator came.
    Incomplete,
}

impl RejectKind {
    /// The reason prefix used in the `ScanRejected` signal: `garbled`, `too-long`, `incomplete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Garbled => "garbled",
            Self::TooLong => "too-long",
            Self::Incomplete => "incomplete",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected scan. Its `Display` (`"<kind>: <detail>"`) is the `ScanRejected` reason string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRejection {
    /// What went wrong.
    pub kind: RejectKind,
    /// Human-readable detail, e.g. `more than 64 chars`.
    pub detail: String,
}

impl fmt::Display for ScanRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// A scan in progress.
#[derive(Debug)]
struct Scan {
    /// Printable ASCII only, so `len()` counts characters.
    text: String,
    last_press: Instant,
    /// Set at the first fault; later keys are swallowed until the scan ends.
    failed: Option<ScanRejection>,
}

/// Turns the key events of one keyboard-wedge scanner into scans. See the module docs.
#[derive(Debug)]
pub struct WedgeDecoder {
    config: WedgeConfig,
    left_shift: bool,
    right_shift: bool,
    scan: Option<Scan>,
}

impl WedgeDecoder {
    /// A decoder with no scan in progress and no shift key held.
    pub fn new(config: WedgeConfig) -> Self {
        Self {
            config,
            left_shift: false,
            right_shift: false,
            scan: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WedgeConfig {
        &self.config
    }

    /// Feeds one key event (`value`: 0 release, 1 press, 2 autorepeat) read at `now`.
    ///
    /// Repeats are ignored, and so are Caps Lock and Num Lock. Shift keys are tracked. Any other
    /// press starts or continues a scan; if the scan in progress had already timed out, it ends
    /// first and its outcome is returned (the new key then starts a new scan).
    pub fn handle_key(&mut self, code: KeyCode, value: i32, now: Instant) -> Option<ScanOutcome> {
        let pressed = match value {
            0 => false,
            1 => true,
            _ => return None,
        };
        match code {
            KeyCode::KEY_LEFTSHIFT => self.left_shift = pressed,
            KeyCode::KEY_RIGHTSHIFT => self.right_shift = pressed,
            KeyCode::KEY_CAPSLOCK | KeyCode::KEY_NUMLOCK => return None,
            _ => {}
        }
        if !pressed {
            return None;
        }
        let expired = self.handle_timeout(now);
        if code == KeyCode::KEY_LEFTSHIFT || code == KeyCode::KEY_RIGHTSHIFT {
            if let Some(scan) = &mut self.scan {
                scan.last_press = now;
            }
            return expired;
        }
        if self.config.terminator.matches(code) {
            // After an expiry there is no scan left, so at most one outcome is returned.
            return expired.or_else(|| self.scan.take().and_then(|scan| self.finish(scan, false)));
        }
        let shift = self.left_shift || self.right_shift;
        let max_length = self.config.max_length;
        let scan = self.scan.get_or_insert_with(|| Scan {
            text: String::new(),
            last_press: now,
            failed: None,
        });
        scan.last_press = now;
        if scan.failed.is_none() {
            scan.failed = match keymap::char_for(code, shift) {
                Some(ch) if scan.text.len() < max_length => {
                    scan.text.push(ch);
                    None
                }
                Some(_) => Some(ScanRejection {
                    kind: RejectKind::TooLong,
                    detail: format!("more than {max_length} chars"),
                }),
                None => Some(ScanRejection {
                    kind: RejectKind::Garbled,
                    detail: format!(
                        "key {code:?} is not a printable character after {} chars",
                        scan.text.len()
                    ),
                }),
            };
        }
        expired
    }

    /// The kernel dropped key events at `now` (`SYN_DROPPED`): the scan in progress, or the one
    /// whose keys were lost, is rejected as garbled when it ends (terminator or timeout). Shift
    /// state is unknown after a drop, so it is reset.
    pub fn handle_dropped(&mut self, now: Instant) -> Option<ScanOutcome> {
        let expired = self.handle_timeout(now);
        self.left_shift = false;
        self.right_shift = false;
        let scan = self.scan.get_or_insert_with(|| Scan {
            text: String::new(),
            last_press: now,
            failed: None,
        });
        scan.last_press = now;
        if scan.failed.is_none() {
            scan.failed = Some(ScanRejection {
                kind: RejectKind::Garbled,
                detail: format!(
                    "key events were dropped by the kernel after {} chars",
                    scan.text.len()
                ),
            });
        }
        expired
    }

    /// Ends the scan in progress if its inter-key timeout has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ScanOutcome> {
        if now < self.poll_timeout()? {
            return None;
        }
        let scan = self.scan.take()?;
        self.finish(scan, true)
    }

    /// When [`Self::handle_timeout`] should next be called: the inter-key deadline of the scan in
    /// progress, if any. Moved by every [`Self::handle_key`] press; cleared when a scan ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let scan = self.scan.as_ref()?;
        scan.last_press.checked_add(self.config.inter_key_timeout)
    }

    fn finish(&self, scan: Scan, timed_out: bool) -> Option<ScanOutcome> {
        if let Some(rejection) = scan.failed {
            return Some(ScanOutcome::Rejected(rejection));
        }
        if scan.text.is_empty() {
            return None;
        }
        if timed_out && self.config.terminator != Terminator::None {
            return Some(ScanOutcome::Rejected(ScanRejection {
                kind: RejectKind::Incomplete,
                detail: format!(
                    "no terminator within {} ms after {} chars",
                    self.config.inter_key_timeout.as_millis(),
                    scan.text.len()
                ),
            }));
        }
        Some(ScanOutcome::Scanned(scan.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// A decoder with a simulated clock and the outcomes it produced.
    struct Harness {
        decoder: WedgeDecoder,
        now: Instant,
        outcomes: Vec<ScanOutcome>,
    }

    impl Harness {
        fn new(config: WedgeConfig) -> Self {
            Self {
                decoder: WedgeDecoder::new(config),
                now: Instant::now(),
                outcomes: Vec::new(),
            }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.outcomes.extend(self.decoder.handle_timeout(self.now));
        }

        fn event(&mut self, code: KeyCode, value: i32) {
            self.outcomes
                .extend(self.decoder.handle_key(code, value, self.now));
        }

        /// Press and release `code`, 1 ms later.
        fn tap(&mut self, code: KeyCode) {
            self.event(code, 1);
            self.advance(MS);
            self.event(code, 0);
            self.advance(MS);
        }

        /// Types `text` as a US keyboard would, `gap` between keys.
        fn type_str(&mut self, text: &str, gap: Duration) {
            for ch in text.chars() {
                let Some((code, shift)) = keymap::keys_for(ch) else {
                    panic!("untypable {ch:?}")
                };
                if shift {
                    self.event(KeyCode::KEY_LEFTSHIFT, 1);
                }
                self.event(code, 1);
                self.event(code, 0);
                if shift {
                    self.event(KeyCode::KEY_LEFTSHIFT, 0);
                }
                self.advance(gap);
            }
        }

        fn take(&mut self) -> Vec<ScanOutcome> {
            std::mem::take(&mut self.outcomes)
        }
    }

    fn scanned(s: &str) -> Vec<ScanOutcome> {
        vec![ScanOutcome::Scanned(s.to_owned())]
    }

    fn rejected(h: &mut Harness) -> Vec<String> {
        h.take()
            .into_iter()
            .map(|o| match o {
                ScanOutcome::Rejected(r) => r.to_string(),
                ScanOutcome::Scanned(s) => panic!("unexpected scan {s:?}"),
            })
            .collect()
    }

    fn with_terminator(terminator: Terminator) -> WedgeConfig {
        WedgeConfig {
            terminator,
            ..WedgeConfig::default()
        }
    }

    #[test]
    fn defaults() {
        let config = WedgeConfig::default();
        assert_eq!(config.terminator, Terminator::Enter);
        assert_eq!(config.inter_key_timeout, 50 * MS);
        assert_eq!(config.max_length, 64);
    }

    #[test]
    fn dropped_events_reject_the_scan_once_and_the_next_scan_is_clean() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str("EMP-", 2 * MS);
        h.event(KeyCode::KEY_LEFTSHIFT, 1);
        h.outcomes.extend(h.decoder.handle_dropped(h.now));
        h.type_str("0042", 2 * MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(
            rejected(&mut h),
            ["garbled: key events were dropped by the kernel after 4 chars"]
        );
        h.type_str("ok", 2 * MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("ok"), "shift was reset by the drop");
        // A drop between scans: the keys lost may have started a scan, so the next one is suspect.
        h.outcomes.extend(h.decoder.handle_dropped(h.now));
        h.type_str("42", 2 * MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(
            rejected(&mut h),
            ["garbled: key events were dropped by the kernel after 0 chars"]
        );
    }

    #[test]
    fn enter_ends_a_scan() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str("Badge-0042 x!", 2 * MS);
        assert!(h.take().is_empty());
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("Badge-0042 x!"));
        assert_eq!(h.decoder.poll_timeout(), None);
        h.type_str("2", MS);
        h.tap(KeyCode::KEY_KPENTER);
        assert_eq!(h.take(), scanned("2"));
    }

    #[test]
    fn tab_terminator() {
        let mut h = Harness::new(with_terminator(Terminator::Tab));
        h.type_str("abc", MS);
        h.tap(KeyCode::KEY_TAB);
        assert_eq!(h.take(), scanned("abc"));
        h.type_str("abc", MS);
        h.tap(KeyCode::KEY_ENTER);
        h.tap(KeyCode::KEY_TAB);
        assert_eq!(
            rejected(&mut h),
            ["garbled: key KEY_ENTER is not a printable character after 3 chars"]
        );
    }

    #[test]
    fn no_terminator_ends_at_timeout() {
        let mut h = Harness::new(with_terminator(Terminator::None));
        h.type_str("12345", 10 * MS);
        assert!(h.take().is_empty());
        let deadline = h.decoder.poll_timeout();
        assert_eq!(deadline, Some(h.now - 10 * MS + 50 * MS));
        h.advance(39 * MS);
        assert!(h.take().is_empty());
        h.advance(MS);
        assert_eq!(h.take(), scanned("12345"));
        assert_eq!(h.decoder.poll_timeout(), None);
    }

    #[test]
    fn empty_scan_is_ignored() {
        let mut h = Harness::new(WedgeConfig::default());
        h.tap(KeyCode::KEY_ENTER);
        h.tap(KeyCode::KEY_ENTER);
        h.advance(100 * MS);
        assert!(h.take().is_empty());
        assert_eq!(h.decoder.poll_timeout(), None);
    }

    #[test]
    fn timeout_mid_scan_is_incomplete() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str("ABCDEFG", MS);
        h.advance(48 * MS);
        assert!(h.take().is_empty());
        h.advance(MS);
        assert_eq!(
            rejected(&mut h),
            ["incomplete: no terminator within 50 ms after 7 chars"]
        );
        h.tap(KeyCode::KEY_ENTER);
        assert!(h.take().is_empty());
    }

    #[test]
    fn late_key_ends_the_old_scan_and_starts_a_new_one() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str("abc", MS);
        // The driver was late: no handle_timeout, the next key arrives well after the deadline.
        h.now += 200 * MS;
        let outcome = h.decoder.handle_key(KeyCode::KEY_X, 1, h.now);
        let detail = "no terminator within 50 ms after 3 chars".to_owned();
        let incomplete = ScanRejection {
            kind: RejectKind::Incomplete,
            detail,
        };
        assert_eq!(outcome, Some(ScanOutcome::Rejected(incomplete)));
        h.event(KeyCode::KEY_X, 0);
        h.type_str("yz", MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("xyz"));
    }

    #[test]
    fn garbled_scan_is_rejected_once_at_its_end() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str("abc", MS);
        h.tap(KeyCode::KEY_F5);
        h.type_str("def", MS);
        h.tap(KeyCode::KEY_F6);
        assert!(h.take().is_empty());
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(
            rejected(&mut h),
            ["garbled: key KEY_F5 is not a printable character after 3 chars"]
        );
        h.type_str("ok", MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("ok"));
    }

    #[test]
    fn garbled_scan_ended_by_timeout_is_garbled_not_incomplete() {
        let mut h = Harness::new(WedgeConfig::default());
        h.tap(KeyCode::KEY_LEFTCTRL);
        h.type_str("abc", MS);
        h.advance(100 * MS);
        assert_eq!(
            rejected(&mut h),
            ["garbled: key KEY_LEFTCTRL is not a printable character after 0 chars"]
        );
    }

    #[test]
    fn too_long_is_rejected_once() {
        let mut h = Harness::new(WedgeConfig::default());
        h.type_str(&"9".repeat(64), MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned(&"9".repeat(64)));
        h.type_str(&"9".repeat(100), MS);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(rejected(&mut h), ["too-long: more than 64 chars"]);
        h.type_str(&"9".repeat(100), MS);
        h.advance(50 * MS);
        assert_eq!(rejected(&mut h), ["too-long: more than 64 chars"]);
    }

    #[test]
    fn repeats_and_caps_lock_are_ignored() {
        let mut h = Harness::new(WedgeConfig::default());
        h.tap(KeyCode::KEY_CAPSLOCK);
        h.event(KeyCode::KEY_A, 1);
        for _ in 0..3 {
            h.advance(MS);
            h.event(KeyCode::KEY_A, 2);
        }
        h.event(KeyCode::KEY_A, 0);
        h.tap(KeyCode::KEY_CAPSLOCK);
        h.tap(KeyCode::KEY_B);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("ab"));
    }

    #[test]
    fn both_shift_keys_are_tracked() {
        let mut h = Harness::new(WedgeConfig::default());
        h.event(KeyCode::KEY_RIGHTSHIFT, 1);
        h.tap(KeyCode::KEY_A);
        h.event(KeyCode::KEY_LEFTSHIFT, 1);
        h.event(KeyCode::KEY_RIGHTSHIFT, 0);
        h.tap(KeyCode::KEY_B);
        h.event(KeyCode::KEY_LEFTSHIFT, 0);
        h.tap(KeyCode::KEY_C);
        h.event(KeyCode::KEY_LEFTSHIFT, 1);
        h.event(KeyCode::KEY_LEFTSHIFT, 2);
        h.tap(KeyCode::KEY_1);
        h.event(KeyCode::KEY_LEFTSHIFT, 0);
        h.tap(KeyCode::KEY_ENTER);
        assert_eq!(h.take(), scanned("ABc!"));
    }

    #[test]
    fn releases_do_not_extend_a_scan_but_shift_presses_do() {
        let mut h = Harness::new(WedgeConfig::default());
        h.tap(KeyCode::KEY_A);
        h.advance(40 * MS);
        h.event(KeyCode::KEY_A, 0);
        h.event(KeyCode::KEY_LEFTSHIFT, 1);
        h.advance(40 * MS);
        assert!(h.take().is_empty());
        h.event(KeyCode::KEY_LEFTSHIFT, 0);
        h.advance(10 * MS);
        assert_eq!(
            rejected(&mut h),
            ["incomplete: no terminator within 50 ms after 1 chars"]
        );
    }

    #[test]
    fn timeout_before_deadline_does_nothing() {
        let mut h = Harness::new(WedgeConfig::default());
        assert_eq!(h.decoder.handle_timeout(h.now), None);
        h.tap(KeyCode::KEY_A);
        let deadline = h.decoder.poll_timeout().unwrap_or(h.now);
        assert_eq!(h.decoder.handle_timeout(deadline - MS), None);
        assert!(h.decoder.handle_timeout(deadline).is_some());
        assert_eq!(h.decoder.handle_timeout(deadline), None);
    }

    fn any_terminator() -> impl Strategy<Value = Terminator> {
        prop_oneof![
            Just(Terminator::Enter),
            Just(Terminator::Tab),
            Just(Terminator::None)
        ]
    }

    fn any_key() -> impl Strategy<Value = KeyCode> {
        prop_oneof![
            3 => prop::sample::select(vec![
                KeyCode::KEY_A, KeyCode::KEY_Z, KeyCode::KEY_1, KeyCode::KEY_SPACE,
                KeyCode::KEY_SLASH, KeyCode::KEY_KP5, KeyCode::KEY_LEFTSHIFT,
                KeyCode::KEY_RIGHTSHIFT, KeyCode::KEY_CAPSLOCK, KeyCode::KEY_ENTER,
                KeyCode::KEY_KPENTER, KeyCode::KEY_TAB, KeyCode::KEY_F5, KeyCode::KEY_LEFTCTRL,
            ]),
            1 => (0u16..0x300).prop_map(KeyCode::new),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_events_never_panic_and_each_scan_ends_once(
            terminator in any_terminator(),
            timeout_ms in 0u32..100,
            max_length in 0usize..10,
            events in prop::collection::vec(
                (any_key(), -1i32..4, 0u32..120, any::<bool>()), 0..200),
        ) {
            let config = WedgeConfig {
                terminator,
                inter_key_timeout: timeout_ms * MS,
                max_length,
            };
            let mut decoder = WedgeDecoder::new(config);
            let mut now = Instant::now();
            for (code, value, dt, tick) in events {
                now += dt * MS;
                let outcome = if tick {
                    let was_scanning = decoder.scan.is_some();
                    let outcome = decoder.handle_timeout(now);
                    if outcome.is_some() {
                        prop_assert!(was_scanning);
                    }
                    if decoder.poll_timeout().is_some_and(|d| d <= now) {
                        prop_assert!(false, "expired scan left in place");
                    }
                    outcome
                } else {
                    let was_scanning = decoder.scan.is_some();
                    let outcome = decoder.handle_key(code, value, now);
                    if outcome.is_some() {
                        prop_assert!(was_scanning);
                        // The outcome ended the old scan: what is left (if anything) is a new
                        // scan holding at most this one key.
                        if let Some(scan) = &decoder.scan {
                            prop_assert!(scan.text.len() <= 1 && scan.last_press == now);
                        }
                    }
                    outcome
                };
                prop_assert_eq!(decoder.poll_timeout().is_some(), decoder.scan.is_some());
                if let Some(ScanOutcome::Scanned(text)) = outcome {
                    prop_assert!(!text.is_empty() && text.len() <= max_length);
                    prop_assert!(text.chars().all(|c| (' '..='~').contains(&c)));
                }
            }
        }

        #[test]
        fn typed_strings_decode_to_themselves(
            text in "[ -~]{1,64}",
            terminator in any_terminator(),
            gap_ms in 0u32..50,
        ) {
            let mut h = Harness::new(with_terminator(terminator));
            h.type_str(&text, gap_ms * MS);
            prop_assert!(h.outcomes.is_empty());
            match terminator {
                Terminator::Enter => h.tap(KeyCode::KEY_ENTER),
                Terminator::Tab => h.tap(KeyCode::KEY_TAB),
                Terminator::None => h.advance(50 * MS),
            }
            prop_assert_eq!(h.take(), scanned(&text));
            prop_assert_eq!(h.decoder.poll_timeout(), None);
        }
    }
}
