//! Scenario and property tests of the core on simulated time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::decision::{decide_checkout, CheckoutRequest, Decision, Denial};
use super::effects::{Actuation, Change, Effect, EventKind};
use super::*;
use crate::model::*;

const ALICE: UserId = 1;
const BOB: UserId = 2;
const VERA: UserId = 3; // vendor with a validity window
const K204: KeyId = 10;
const KPOOL: KeyId = 11;
const KRX: KeyId = 12; // restricted, critical
/// 2026-11-23 (a Monday) 10:00 UTC.
const T0: UnixTime = 1_795_428_000;

fn user(id: UserId, name: &str, role: Role) -> User {
    User {
        id,
        name: name.into(),
        display_name: name.to_uppercase(),
        role,
        active: true,
        valid_from: None,
        valid_until: None,
        factors: Factors::AnyPin,
        max_keys_out: None,
        max_checkout_minutes: None,
        locked_until: None,
        failed_pins: 0,
        has_pin: true,
        fingerprints: BTreeSet::new(),
        groups: BTreeSet::new(),
    }
}

fn key(id: KeyId, label: &str, kind: KeyKind, slot: SlotNumber) -> Key {
    Key {
        id,
        tag: format!("TAG{id}"),
        label: label.into(),
        kind,
        notes: String::new(),
        home_slot: Some(slot),
        critical: false,
        active: true,
    }
}

/// A small property: alice (staff group, unit keys on weekdays 8-18, the pharmacy key), bob
/// (staff group), vera (vendor, valid for a day, pool key only); keys 204 (slot 1), Pool (slot 2),
/// RX (slot 3, restricted + critical); slots 1-6; reasons MAINT and SHOW.
fn state() -> PolicyState {
    let mut s = PolicyState::default();
    let mut alice = user(ALICE, "alice", Role::Staff);
    alice.groups.insert(1);
    alice.fingerprints.insert(7);
    let mut bob = user(BOB, "bob", Role::Staff);
    bob.groups.insert(1);
    let mut vera = user(VERA, "vera", Role::Vendor);
    vera.valid_from = Some(T0 - 3600);
    vera.valid_until = Some(T0 + 86_400);
    vera.factors = Factors::BadgePin;
    for u in [alice, bob, vera] {
        s.users.insert(u.id, u);
    }
    s.badges.insert("h-alice".into(), ALICE);
    s.badges.insert("h-bob".into(), BOB);
    s.badges.insert("h-vera".into(), VERA);
    s.groups.insert(
        1,
        Group {
            id: 1,
            name: "staff".into(),
        },
    );
    let mut rx = key(KRX, "RX", KeyKind::Restricted, 3);
    rx.critical = true;
    for k in [
        key(K204, "204", KeyKind::Unit, 1),
        key(KPOOL, "Pool", KeyKind::Amenity, 2),
        rx,
    ] {
        s.slot_contents.insert(k.home_slot.unwrap_or(0), k.id);
        s.keys.insert(k.id, k);
    }
    s.slots = (1..=6).collect();
    s.schedules.insert(
        1,
        Schedule {
            id: 1,
            name: "weekdays".into(),
            windows: vec![Window {
                days: 0b001_1111,
                start: 8 * 60,
                end: 18 * 60,
            }],
            on_holidays: false,
        },
    );
    let perms = [
        (Subject::Group(1), Target::Kind(KeyKind::Unit), Some(1)),
        (Subject::Group(1), Target::Kind(KeyKind::Amenity), None),
        (Subject::User(ALICE), Target::Key(KRX), None),
        (Subject::User(BOB), Target::Key(KRX), None),
        (Subject::User(VERA), Target::Key(KPOOL), None),
        // A kind permission never covers restricted keys.
        (Subject::User(VERA), Target::Kind(KeyKind::Restricted), None),
    ];
    for (i, (subject, target, schedule)) in perms.into_iter().enumerate() {
        s.permissions.push(Permission {
            id: i as i64 + 1,
            subject,
            target,
            schedule,
        });
    }
    for code in ["MAINT", "SHOW"] {
        s.reasons.insert(
            code.into(),
            Reason {
                code: code.into(),
                description: code.to_lowercase(),
                max_minutes: if code == "SHOW" { Some(60) } else { None },
                active: true,
            },
        );
    }
    s
}

/// Simulated clock: monotonic base plus wall seconds, Monday 10:00 local (UTC here).
struct Clock {
    base: Instant,
    elapsed: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }
    fn now(&self) -> Now {
        let wall = T0 + self.elapsed.as_secs() as i64;
        let day = (wall - T0).div_euclid(86_400);
        let minute = (10 * 60 + (wall - T0).rem_euclid(86_400) / 60) % 1440;
        Now {
            mono: self.base + self.elapsed,
            wall,
            local: LocalTime {
                weekday: (day.rem_euclid(7)) as u8,
                minute: minute as u16,
                date: format!("2026-11-{}", 23 + day),
            },
            clock_valid: true,
        }
    }
    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
    }
}

struct Rig {
    core: Core,
    clock: Clock,
    effects: Vec<Effect>,
    notices: Vec<Notice>,
}

impl Rig {
    fn new(state: PolicyState) -> Rig {
        Rig {
            core: Core::new(state, vec![], 42),
            clock: Clock::new(),
            effects: vec![],
            notices: vec![],
        }
    }
    fn drain(&mut self) {
        while let Some(e) = self.core.poll_effect() {
            // The driver's part: PINs are "1357" for everyone.
            if let Effect::CheckPin { attempt, pin, .. } = &e {
                let ok = pin.as_str() == "1357";
                let attempt = *attempt;
                self.effects.push(e);
                let now = self.clock.now();
                self.core.handle_pin_checked(attempt, ok, &now);
                continue;
            }
            self.effects.push(e);
        }
        while let Some(n) = self.core.poll_notice() {
            self.notices.push(n);
        }
    }
    fn badge(&mut self, hash: &str) {
        let now = self.clock.now();
        self.core.handle_badge(hash, &now);
        self.drain();
    }
    fn keys(&mut self, keys: &str) {
        for k in keys.split(' ') {
            let now = self.clock.now();
            self.core.handle_keypad(k, &now);
            self.drain();
        }
    }
    fn pin(&mut self, pin: &str) {
        let keys: Vec<String> = pin.chars().map(|c| c.to_string()).collect();
        self.keys(&(keys.join(" ") + " enter"));
    }
    fn login(&mut self, hash: &str) {
        self.badge(hash);
        self.pin("1357");
    }
    fn choose(&mut self, key: &str, reason: &str) {
        let now = self.clock.now();
        self.core.choose_key(key, &now).expect("choose key");
        self.drain();
        if let Session::ChooseReason { .. } = self.core.session() {
            let now = self.clock.now();
            self.core
                .choose_reason(reason, &now)
                .expect("choose reason");
            self.drain();
        }
    }
    fn slot(&mut self, slot: SlotNumber, occupied: bool) {
        let now = self.clock.now();
        self.core.handle_slot(slot, occupied, &now);
        self.drain();
    }
    fn tick(&mut self, d: Duration) {
        self.clock.advance(d);
        let now = self.clock.now();
        self.core.handle_timeout(&now);
        self.core.handle_tick(&now);
        self.drain();
    }
    fn commits(&self) -> impl Iterator<Item = &Commit> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Commit(c) => Some(c),
            _ => None,
        })
    }
    fn events(&self) -> Vec<EventKind> {
        self.commits()
            .flat_map(|c| c.events.iter().map(|e| e.kind))
            .collect()
    }
    fn denials(&self) -> Vec<&'static str> {
        self.notices
            .iter()
            .filter_map(|n| match n {
                Notice::Denied { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }
    fn opened(&self) -> Vec<Actuation> {
        self.commits()
            .flat_map(|c| c.then.iter().filter(|a| a.opens()).cloned())
            .collect()
    }
    fn alarms(&self) -> Vec<(AlarmKind, String)> {
        self.core.active_alarms().cloned().collect()
    }
}

#[test]
fn badge_pin_key_reason_releases_the_slot_after_the_grant_is_recorded() {
    let mut rig = Rig::new(state());
    rig.badge("h-alice");
    assert_eq!(rig.core.session().name(), "pin");
    rig.keys("1 3 5");
    assert_eq!(rig.core.session_view().pin_length, 3);
    rig.keys("7 enter");
    assert_eq!(rig.core.session().name(), "choose-key");
    rig.choose("204", "MAINT");
    assert_eq!(rig.core.session().name(), "take-key");
    // The one commit that opens something carries the grant's record and the open loan.
    let grant = rig
        .commits()
        .find(|c| c.then.iter().any(Actuation::opens))
        .expect("a grant");
    assert_eq!(grant.events[0].kind, EventKind::Granted);
    assert!(matches!(
        grant.changes[0],
        Change::OpenLoan {
            key: K204,
            user: ALICE,
            ..
        }
    ));
    assert_eq!(grant.then[0], Actuation::ReleaseSlot(1, 10));
    rig.slot(1, false);
    assert_eq!(rig.core.session().name(), "message");
    assert_eq!(
        rig.events(),
        vec![
            EventKind::Authenticated,
            EventKind::Granted,
            EventKind::Removed
        ]
    );
    assert_eq!(rig.core.state().loans[&K204].taken_at, Some(T0));
    assert!(rig.alarms().is_empty());
    // Due time: the site default (8 h), shortened by no one.
    assert_eq!(rig.core.state().loans[&K204].due_at, T0 + 8 * 3600);
}

#[test]
fn the_view_never_shows_pin_digits() {
    let mut rig = Rig::new(state());
    rig.badge("h-alice");
    rig.keys("9 8 7");
    let view = rig.core.session_view();
    assert_eq!(view.pin_length, 3);
    for text in [&view.prompt, &view.entry, &view.user, &view.key] {
        assert!(!text.contains("987"), "{text}");
    }
}

#[test]
fn keypad_picks_key_by_label_and_reason_by_position() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.keys("2 0 4 enter");
    assert_eq!(rig.core.session().name(), "choose-reason");
    assert!(rig.core.session_view().prompt.contains("2=SHOW"));
    rig.keys("2 enter");
    assert_eq!(rig.core.session().name(), "take-key");
    // SHOW allows 60 minutes.
    assert_eq!(rig.core.state().loans[&K204].due_at, T0 + 3600);
}

#[test]
fn unknown_badge_and_wrong_factor_are_refused_and_recorded() {
    let mut rig = Rig::new(state());
    rig.badge("h-nobody");
    assert_eq!(rig.denials(), vec!["unknown-badge"]);
    rig.tick(Duration::from_secs(6));
    let now = rig.clock.now();
    let mut s = state();
    if let Some(u) = s.users.get_mut(&ALICE) {
        u.factors = Factors::FingerprintPin;
    }
    rig.core.replace_state(s, &now);
    rig.core.handle_badge("h-alice", &now);
    rig.drain();
    assert_eq!(rig.denials(), vec!["unknown-badge", "wrong-factor"]);
    assert_eq!(rig.events(), vec![EventKind::Denied, EventKind::Denied]);
    assert!(rig.opened().is_empty());
}

#[test]
fn fingerprint_then_pin_works() {
    let mut rig = Rig::new(state());
    let now = rig.clock.now();
    rig.core.handle_fingerprint(7, &now);
    rig.drain();
    rig.pin("1357");
    assert_eq!(rig.core.session().name(), "choose-key");
}

#[test]
fn five_wrong_pins_lock_out_with_an_alarm_that_clears_when_the_lockout_ends() {
    let mut rig = Rig::new(state());
    rig.badge("h-bob");
    for i in 1..=4 {
        rig.pin("0000");
        assert_eq!(rig.core.session().name(), "pin", "try {i}");
    }
    assert!(rig.core.session_view().prompt.contains("1 tries left"));
    rig.pin("0000");
    assert_eq!(rig.core.session().name(), "message");
    assert_eq!(
        rig.alarms(),
        vec![(AlarmKind::PinLockout, "user:bob".into())]
    );
    assert_eq!(rig.core.state().users[&BOB].failed_pins, 5);
    // Locked out: even the right PIN is not asked for.
    rig.tick(Duration::from_secs(6));
    rig.badge("h-bob");
    assert_eq!(rig.denials().last(), Some(&"locked-out"));
    // 15 minutes later the lockout ends by itself.
    rig.tick(Duration::from_secs(15 * 60));
    assert!(rig.alarms().is_empty());
    assert!(rig.events().contains(&EventKind::LockoutEnded));
    rig.tick(Duration::from_secs(6));
    rig.login("h-bob");
    assert_eq!(rig.core.session().name(), "choose-key");
}

#[test]
fn a_good_pin_resets_the_wrong_pin_count() {
    let mut rig = Rig::new(state());
    rig.badge("h-bob");
    rig.pin("0000");
    rig.pin("1357");
    assert_eq!(rig.core.state().users[&BOB].failed_pins, 0);
    assert!(rig
        .commits()
        .any(|c| c.changes.contains(&Change::PinReset { user: BOB })));
}

#[test]
fn each_denial_path_opens_nothing_and_is_recorded() {
    // (who, key, reason, setup, expected code)
    type Setup = fn(&mut PolicyState);
    let cases: Vec<(&str, &str, &str, Setup, &str)> = vec![
        ("h-vera", "204", "MAINT", |_| {}, "not-permitted"),
        (
            "h-alice",
            "204",
            "MAINT",
            |s| {
                if let Some(u) = s.users.get_mut(&ALICE) {
                    u.max_keys_out = Some(0);
                }
            },
            "too-many-keys",
        ),
        (
            "h-alice",
            "204",
            "MAINT",
            |s| {
                s.holidays.insert("2026-11-23".into());
            },
            "outside-schedule",
        ),
        (
            "h-bob",
            "204",
            "MAINT",
            |s| {
                s.reservations.push(Reservation {
                    id: 1,
                    key: K204,
                    user: ALICE,
                    from: T0 - 60,
                    until: T0 + 3600,
                });
            },
            "reserved",
        ),
        (
            "h-alice",
            "204",
            "MAINT",
            |s| {
                s.slot_contents.remove(&1);
            },
            "not-in-cabinet",
        ),
        (
            "h-alice",
            "204",
            "MAINT",
            |s| {
                if let Some(k) = s.keys.get_mut(&K204) {
                    k.active = false;
                }
            },
            "key-inactive",
        ),
        (
            "h-alice",
            "204",
            "MAINT",
            |s| {
                s.loans.insert(
                    K204,
                    Loan {
                        id: 1,
                        key: K204,
                        user: BOB,
                        witness: None,
                        reason: "MAINT".into(),
                        granted_at: T0,
                        taken_at: Some(T0),
                        due_at: T0 + 60,
                        slot: Some(1),
                    },
                );
            },
            "key-out",
        ),
    ];
    for (badge, key, reason, setup, code) in cases {
        let mut s = state();
        setup(&mut s);
        let mut rig = Rig::new(s);
        rig.login(badge);
        let now = rig.clock.now();
        rig.core.choose_key(key, &now).expect("choose key");
        rig.drain();
        if rig.core.session().name() == "choose-reason" {
            rig.core.choose_reason(reason, &now).expect("reason");
            rig.drain();
        }
        assert_eq!(rig.denials(), vec![code], "{badge} {key}");
        assert!(rig.opened().is_empty(), "{code}");
        assert!(rig.events().contains(&EventKind::Denied), "{code}");
    }
}

#[test]
fn users_outside_their_validity_or_inactive_are_refused_with_the_reason() {
    for (setup, code) in [
        (
            (|u: &mut User| u.active = false) as fn(&mut User),
            "inactive",
        ),
        (|u: &mut User| u.valid_until = Some(T0), "expired"),
        (|u: &mut User| u.valid_from = Some(T0 + 1), "not-yet-valid"),
        (|u: &mut User| u.has_pin = false, "no-pin"),
    ] {
        let mut s = state();
        s.users.get_mut(&ALICE).map(setup);
        let mut rig = Rig::new(s);
        rig.badge("h-alice");
        assert_eq!(rig.denials(), vec![code]);
        assert_eq!(rig.core.session().name(), "message");
    }
}

#[test]
fn clock_not_set_refuses_checkout() {
    let mut rig = Rig::new(state());
    let mut now = rig.clock.now();
    now.clock_valid = false;
    rig.core.handle_badge("h-alice", &now);
    rig.drain();
    assert_eq!(rig.denials(), vec!["clock-not-set"]);
}

#[test]
fn out_of_service_refuses_everything_and_says_why() {
    let mut core = Core::out_of_service("database corrupt".into(), 1);
    let clock = Clock::new();
    core.handle_badge("h-alice", &clock.now());
    core.handle_tag(K204, &clock.now());
    let mut opened = false;
    while let Some(e) = core.poll_effect() {
        if let Effect::Commit(c) = e {
            opened |= c.then.iter().any(Actuation::opens);
        }
    }
    assert!(!opened);
    assert!(core.session_view().prompt.contains("database corrupt"));
}

#[test]
fn critical_key_needs_a_second_permitted_person_within_the_window() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("RX", "MAINT");
    assert_eq!(rig.core.session().name(), "second-person");
    assert!(rig.opened().is_empty());
    // Alice herself does not count.
    rig.badge("h-alice");
    assert_eq!(rig.denials(), vec!["second-person-same"]);
    // Vera may not take RX (a kind permission never covers restricted keys).
    rig.badge("h-vera");
    assert_eq!(rig.core.session().name(), "second-pin");
    rig.pin("1357");
    assert_eq!(rig.denials().last(), Some(&"second-person-not-permitted"));
    assert!(rig.opened().is_empty());
    // Bob may.
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("RX", "MAINT");
    rig.badge("h-bob");
    assert_eq!(rig.core.session().name(), "second-pin");
    rig.pin("1357");
    assert_eq!(rig.opened(), vec![Actuation::ReleaseSlot(3, 10)]);
    assert_eq!(rig.core.state().loans[&KRX].witness, Some(BOB));
}

#[test]
fn second_person_window_expires() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("RX", "MAINT");
    rig.tick(Duration::from_secs(61));
    assert_eq!(rig.core.session().name(), "idle");
    rig.badge("h-bob");
    assert_eq!(rig.core.session().name(), "pin");
    assert!(rig.opened().is_empty());
}

#[test]
fn a_grant_not_taken_lapses_and_closes_its_loan() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    rig.tick(Duration::from_secs(16));
    assert!(rig.events().contains(&EventKind::GrantLapsed));
    assert!(rig.core.state().loans.is_empty());
    assert_eq!(rig.core.state().slot_of(K204), Some(1));
}

#[test]
fn removal_without_a_grant_raises_unauthorised_removal_cleared_by_the_return() {
    let mut rig = Rig::new(state());
    rig.slot(2, false);
    assert_eq!(
        rig.alarms(),
        vec![(AlarmKind::UnauthorisedRemoval, "key:Pool".into())]
    );
    assert_eq!(rig.core.state().slot_of(KPOOL), None);
    // Removing another key while a grant is out for slot 1 is also unauthorised.
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    rig.slot(3, false);
    assert!(rig
        .alarms()
        .contains(&(AlarmKind::UnauthorisedRemoval, "key:RX".into())));
    // Pool comes back by tag: the alarm clears.
    rig.tick(Duration::from_secs(30));
    let now = rig.clock.now();
    rig.core.handle_tag(KPOOL, &now);
    rig.drain();
    let Session::Return { slot, .. } = *rig.core.session() else {
        panic!("not returning: {:?}", rig.core.session());
    };
    rig.slot(slot, true);
    assert!(!rig
        .alarms()
        .contains(&(AlarmKind::UnauthorisedRemoval, "key:Pool".into())));
}

#[test]
fn return_goes_to_a_random_free_slot_and_records_who_returned_it() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    rig.slot(1, false);
    rig.tick(Duration::from_secs(10));
    // Bob returns Alice's key.
    rig.login("h-bob");
    let now = rig.clock.now();
    rig.core.handle_tag(K204, &now);
    rig.drain();
    let Session::Return { slot, .. } = *rig.core.session() else {
        panic!("not returning");
    };
    assert!([1, 4, 5, 6].contains(&slot), "free slot, got {slot}");
    assert!(rig.opened().contains(&Actuation::ReleaseSlot(slot, 10)));
    rig.slot(slot, true);
    let returned = rig
        .commits()
        .flat_map(|c| c.events.iter())
        .find(|e| e.kind == EventKind::Returned)
        .expect("returned");
    assert_eq!(returned.actor, "bob");
    assert!(returned.detail.contains(&("taken_by", "alice".into())));
    assert!(returned.detail.contains(&("different_user", "true".into())));
    assert_eq!(rig.core.state().slot_of(K204), Some(slot));
    assert!(rig.core.state().loans.is_empty());
}

#[test]
fn random_return_slots_vary_with_the_seed() {
    let mut seen = BTreeSet::new();
    for seed in 0..40 {
        let mut s = state();
        s.slot_contents.remove(&1);
        s.loans.insert(
            K204,
            Loan {
                id: 1,
                key: K204,
                user: ALICE,
                witness: None,
                reason: "MAINT".into(),
                granted_at: T0,
                taken_at: Some(T0),
                due_at: T0 + 60,
                slot: Some(1),
            },
        );
        let mut core = Core::new(s, vec![], seed);
        let clock = Clock::new();
        core.handle_tag(K204, &clock.now());
        if let Session::Return { slot, .. } = core.session() {
            seen.insert(*slot);
        }
    }
    assert_eq!(seen, BTreeSet::from([1, 4, 5, 6]));
}

#[test]
fn wrong_slot_return_raises_an_alarm_and_prompts_until_moved() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    rig.slot(1, false);
    rig.tick(Duration::from_secs(10));
    let now = rig.clock.now();
    rig.core.handle_tag(K204, &now);
    rig.drain();
    let Session::Return { slot, .. } = *rig.core.session() else {
        panic!("not returning");
    };
    let wrong = [1, 4, 5, 6].into_iter().find(|s| *s != slot).unwrap_or(1);
    rig.slot(wrong, true);
    assert!(rig
        .alarms()
        .contains(&(AlarmKind::WrongSlot, "key:204".into())));
    assert!(rig
        .core
        .session_view()
        .prompt
        .contains(&format!("move key 204 to slot {slot}")));
    // The key is back (loan closed) but in the wrong place until moved.
    assert!(rig.core.state().loans.is_empty());
    rig.slot(wrong, false);
    assert!(rig.alarms().is_empty());
    rig.slot(slot, true);
    assert_eq!(rig.core.state().slot_of(K204), Some(slot));
    assert_eq!(rig.core.session().name(), "message");
}

#[test]
fn overdue_and_holder_expired_alarms_are_raised_once_and_cleared_by_the_return() {
    let mut rig = Rig::new(state());
    rig.login("h-vera");
    rig.choose("Pool", "MAINT");
    rig.slot(2, false);
    // Vera's validity ends in 24 h; the due time is capped to it? No: 8 h default is sooner.
    assert_eq!(rig.core.state().loans[&KPOOL].due_at, T0 + 8 * 3600);
    rig.tick(Duration::from_secs(8 * 3600 + 1));
    rig.tick(Duration::from_secs(60));
    assert_eq!(rig.alarms(), vec![(AlarmKind::Overdue, "key:Pool".into())]);
    let raised = rig
        .events()
        .iter()
        .filter(|k| **k == EventKind::AlarmRaised)
        .count();
    assert_eq!(raised, 1);
    rig.tick(Duration::from_secs(16 * 3600));
    assert!(rig
        .alarms()
        .contains(&(AlarmKind::HolderExpired, "key:Pool".into())));
    let now = rig.clock.now();
    rig.core.handle_tag(KPOOL, &now);
    rig.drain();
    let Session::Return { slot, .. } = *rig.core.session() else {
        panic!("not returning");
    };
    rig.slot(slot, true);
    assert!(rig.alarms().is_empty());
}

#[test]
fn door_forced_and_tamper_are_raised_and_cleared() {
    let mut rig = Rig::new(state());
    let now = rig.clock.now();
    rig.core.handle_door_alarm("forced", true, &now);
    rig.core.handle_tamper(true, &now);
    rig.core.handle_door_alarm("forced", true, &now);
    rig.drain();
    assert_eq!(rig.alarms().len(), 2);
    rig.core.handle_door_alarm("forced", false, &now);
    rig.core.handle_tamper(false, &now);
    rig.drain();
    assert!(rig.alarms().is_empty());
    assert_eq!(
        rig.events(),
        vec![
            EventKind::AlarmRaised,
            EventKind::AlarmRaised,
            EventKind::AlarmCleared,
            EventKind::AlarmCleared
        ]
    );
}

#[test]
fn door_cabinet_unlocks_the_door_and_closes_the_step_when_the_door_shuts() {
    let mut s = state();
    s.settings.slot_locks = false;
    let mut rig = Rig::new(s);
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    assert_eq!(rig.opened(), vec![Actuation::UnlockDoor(10)]);
    let now = rig.clock.now();
    rig.core.handle_door(true, &now);
    rig.core.handle_door(false, &now);
    rig.drain();
    assert!(rig.events().contains(&EventKind::Removed));
}

#[test]
fn a_failed_commit_says_so_and_the_session_ends() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    let now = rig.clock.now();
    rig.core.handle_commit_failed(&now);
    rig.drain();
    assert_eq!(rig.denials(), vec!["storage"]);
    assert_eq!(rig.core.session().name(), "message");
}

#[test]
fn a_scan_mid_session_does_not_hijack_it() {
    let mut rig = Rig::new(state());
    rig.login("h-alice");
    rig.badge("h-bob");
    assert_eq!(rig.core.session().name(), "choose-key");
    assert_eq!(rig.core.session_view().user, "ALICE");
}

#[test]
fn schedule_windows_respect_days_minutes_and_holidays() {
    let s = state();
    let sched = &s.schedules[&1];
    let mut clock = Clock::new();
    assert!(super::decision::schedule_open(sched, &s, &clock.now())); // Mon 10:00
    clock.advance(Duration::from_secs(8 * 3600)); // Mon 18:00: end is exclusive
    assert!(!super::decision::schedule_open(sched, &s, &clock.now()));
    clock.advance(Duration::from_secs(5 * 86_400 - 8 * 3600)); // Sat 10:00
    assert!(!super::decision::schedule_open(sched, &s, &clock.now()));
}

fn arb_request() -> impl Strategy<Value = (UserId, KeyId, &'static str, Option<UserId>, u64)> {
    (
        prop::sample::select(vec![ALICE, BOB, VERA, 99]),
        prop::sample::select(vec![K204, KPOOL, KRX, 98]),
        prop::sample::select(vec!["MAINT", "SHOW", "NOPE"]),
        prop::option::of(prop::sample::select(vec![ALICE, BOB, VERA])),
        0u64..(14 * 86_400),
    )
}

proptest! {
    /// The decision is a pure function, and a grant implies every rule holds.
    #[test]
    fn grants_satisfy_every_rule((user, key, reason, witness, offset) in arb_request()) {
        let s = state();
        let mut clock = Clock::new();
        clock.advance(Duration::from_secs(offset));
        let now = clock.now();
        let req = CheckoutRequest { user, key, reason: reason.into(), witness };
        let d1 = decide_checkout(&s, &req, &now);
        prop_assert_eq!(&d1, &decide_checkout(&s, &req, &now));
        if let Decision::Grant { due_at } = d1 {
            let u = &s.users[&user];
            prop_assert!(super::decision::check_user(u, &now).is_ok());
            prop_assert!(super::decision::permitted(&s, u, key, &now).is_ok());
            prop_assert!(s.reasons.contains_key(reason));
            prop_assert!(due_at > now.wall);
            if let Some(until) = u.valid_until { prop_assert!(due_at <= until); }
            if s.keys[&key].critical {
                let w = witness.expect("critical keys need a witness");
                prop_assert_ne!(w, user);
            }
            if s.keys[&key].kind == KeyKind::Unit {
                // Unit keys only on weekdays 08:00-18:00.
                prop_assert!(now.local.weekday < 5 && (480..1080).contains(&now.local.minute));
            }
        }
    }

    /// Whatever the hardware and people do, nothing opens without a commit carrying a grant or
    /// a return start, and the core never holds two open grants for one key.
    #[test]
    fn nothing_opens_without_its_record(ops in prop::collection::vec(0u8..12, 1..80), seed in 0u64..1000) {
        let mut rig = Rig::new(state());
        rig.core = Core::new(state(), vec![], seed);
        for op in ops {
            match op {
                0 => rig.badge("h-alice"),
                1 => rig.badge("h-bob"),
                2 => rig.badge("h-nobody"),
                3 => rig.pin("1357"),
                4 => rig.pin("0000"),
                5 => { let now = rig.clock.now(); let _ = rig.core.choose_key("204", &now); rig.drain(); }
                6 => { let now = rig.clock.now(); let _ = rig.core.choose_reason("MAINT", &now); rig.drain(); }
                7 => rig.slot((seed % 6) as u32 + 1, false),
                8 => rig.slot((seed % 6) as u32 + 1, true),
                9 => { let now = rig.clock.now(); rig.core.handle_tag(K204, &now); rig.drain(); }
                10 => rig.tick(Duration::from_secs(7)),
                _ => rig.keys("cancel"),
            }
        }
        for c in rig.commits() {
            if c.then.iter().any(Actuation::opens) {
                prop_assert!(c.events.iter().any(|e| matches!(e.kind, EventKind::Granted | EventKind::ReturnStarted)));
            }
        }
        for e in &rig.effects {
            if let Effect::Feedback(a) = e { prop_assert!(!a.opens()); }
        }
        let open_loans = rig.commits().flat_map(|c| c.changes.iter()).fold(0i32, |n, ch| match ch {
            Change::OpenLoan { .. } => n + 1,
            Change::CloseLoan { .. } => n - 1,
            _ => n,
        });
        prop_assert!((0..=1).contains(&open_loans));
    }
}

#[test]
fn denial_codes_are_distinct() {
    let all = [
        Denial::ClockNotSet,
        Denial::UnknownBadge,
        Denial::UnknownFingerprint,
        Denial::WrongFactor,
        Denial::NoPin,
        Denial::Inactive,
        Denial::NotYetValid(0),
        Denial::Expired(0),
        Denial::LockedOut(0),
        Denial::WrongPin(0),
        Denial::UnknownKey,
        Denial::KeyInactive,
        Denial::KeyOut,
        Denial::NotInCabinet,
        Denial::NotPermitted,
        Denial::OutsideSchedule,
        Denial::Reserved(0),
        Denial::TooManyKeys(0),
        Denial::UnknownReason,
        Denial::SecondPersonSame,
        Denial::SecondPersonNotPermitted,
        Denial::NoFreeSlot,
        Denial::AlreadyInCabinet,
        Denial::Storage,
        Denial::OutOfService(String::new()),
    ];
    let codes: BTreeSet<&str> = all.iter().map(Denial::code).collect();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn sensors_catching_up_with_the_records_raise_nothing() {
    let mut rig = Rig::new(state());
    rig.slot(1, true); // records: 204 is in slot 1
    rig.slot(5, false); // records: slot 5 is empty
    assert!(rig.alarms().is_empty());
    assert!(rig.events().is_empty());
}

#[test]
fn an_unidentified_key_alarm_clears_when_an_admin_places_a_key_there() {
    let mut rig = Rig::new(state());
    rig.slot(5, true);
    assert_eq!(rig.alarms(), vec![(AlarmKind::WrongSlot, "slot:5".into())]);
    let mut s = state();
    s.slot_contents.insert(5, KPOOL);
    s.slot_contents.remove(&2);
    let now = rig.clock.now();
    rig.core.replace_state(s, &now);
    rig.drain();
    assert!(rig.alarms().is_empty());
}

#[test]
fn an_absolute_curfew_caps_the_due_time() {
    let mut s = state();
    s.settings.return_by = Some(10 * 60 + 30); // 10:30; it is 10:00
    let mut rig = Rig::new(s);
    rig.login("h-alice");
    rig.choose("204", "MAINT");
    assert_eq!(rig.core.state().loans[&K204].due_at, T0 + 30 * 60);
    // Past today's curfew, the next one is tomorrow's (and the 8 h limit is sooner).
    let mut s = state();
    s.settings.return_by = Some(9 * 60);
    let now = Clock::new().now();
    assert_eq!(
        super::decision::next_local_time(&now, 9 * 60),
        T0 + 23 * 3600
    );
    let req = CheckoutRequest {
        user: ALICE,
        key: K204,
        reason: "MAINT".into(),
        witness: None,
    };
    assert_eq!(
        decide_checkout(&s, &req, &now),
        Decision::Grant {
            due_at: T0 + 8 * 3600
        }
    );
}

#[test]
fn after_a_restart_untaken_grants_are_settled_from_the_sensors() {
    // Two grants recorded before a crash, never taken: 204's key is still in slot 1, Pool's
    // slot 2 is empty now.
    let mut s = state();
    for (key, slot) in [(K204, 1), (KPOOL, 2)] {
        s.loans.insert(
            key,
            Loan {
                id: key,
                key,
                user: ALICE,
                witness: None,
                reason: "MAINT".into(),
                granted_at: T0 - 30,
                taken_at: None,
                due_at: T0 + 3600,
                slot: Some(slot),
            },
        );
    }
    let mut rig = Rig::new(s);
    rig.core.set_slot_sensor(1, true);
    rig.core.set_slot_sensor(2, false);
    let now = rig.clock.now();
    rig.core.resume(&now);
    rig.drain();
    assert_eq!(
        rig.events(),
        vec![EventKind::GrantLapsed, EventKind::Removed]
    );
    assert!(!rig.core.state().loans.contains_key(&K204));
    assert_eq!(rig.core.state().loans[&KPOOL].taken_at, Some(T0));
    assert_eq!(rig.core.state().slot_of(KPOOL), None);
    assert!(rig.opened().is_empty());
}

#[test]
fn a_stale_grant_nobody_waits_for_lapses_on_the_tick() {
    let mut s = state();
    s.loans.insert(
        K204,
        Loan {
            id: 1,
            key: K204,
            user: ALICE,
            witness: None,
            reason: "MAINT".into(),
            granted_at: T0,
            taken_at: None,
            due_at: T0 + 3600,
            slot: Some(1),
        },
    );
    let mut rig = Rig::new(s);
    rig.core.set_slot_sensor(1, true);
    rig.tick(Duration::from_secs(60));
    assert!(rig.core.state().loans.contains_key(&K204), "too early");
    rig.tick(Duration::from_secs(5 * 60));
    assert!(!rig.core.state().loans.contains_key(&K204));
    assert_eq!(rig.events(), vec![EventKind::GrantLapsed]);
}
