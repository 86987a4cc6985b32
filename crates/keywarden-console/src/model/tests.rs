use super::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn published(state: &str) -> Published {
    Published {
        state: state.into(),
        status: "ready".into(),
        ..Published::default()
    }
}

fn key(label: &str, available: bool, slot: u32) -> KeyRow {
    KeyRow {
        label: label.into(),
        kind: "unit".into(),
        notes: format!("notes of {label}"),
        status: if available { "available" } else { "out" }.into(),
        available,
        slot,
    }
}

fn reason(code: &str) -> ReasonRow {
    ReasonRow {
        code: code.into(),
        description: format!("{code} work"),
        max_minutes: 0,
    }
}

fn commands(c: &mut Console) -> Vec<Command> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

/// A console that has seen policyd idle.
fn idle(t0: Instant) -> Console {
    let mut c = Console::new(TIMEOUT, t0);
    c.handle_published(published("idle"), t0);
    c
}

#[test]
fn before_policyd_answers_the_screen_says_service_unavailable() {
    let t0 = Instant::now();
    let c = Console::new(TIMEOUT, t0);
    assert!(matches!(c.screen(t0).body, Body::Unavailable { .. }));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn idle_shows_policyds_prompt_or_out_of_service() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("idle");
    p.prompt = "Scan your badge".into();
    c.handle_published(p.clone(), t0);
    assert_eq!(
        c.screen(t0).body,
        Body::Idle {
            prompt: "Scan your badge".into()
        }
    );
    p.status = "database corrupt: bad page".into();
    c.handle_published(p, t0);
    assert_eq!(
        c.screen(t0).body,
        Body::OutOfService {
            why: "database corrupt: bad page".into()
        }
    );
}

#[test]
fn pin_screen_carries_only_the_number_of_digits() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("pin");
    p.user = "Alice".into();
    p.pin_length = 3;
    p.prompt = "Enter your PIN, then Enter".into();
    c.handle_published(p, t0);
    let screen = c.screen(t0);
    assert_eq!(
        screen.body,
        Body::Pin {
            user: "Alice".into(),
            digits: 3,
            second: false,
            prompt: "Enter your PIN, then Enter".into()
        }
    );
    // Esc cancels; arrows and Enter do nothing on the PIN screen.
    assert_eq!(keymap(&screen, Key::Enter), None);
    assert_eq!(keymap(&screen, Key::Other), None);
    assert_eq!(
        keymap(&screen, Key::Esc),
        Some(Action::Send(Command::Cancel))
    );
}

#[test]
fn entering_choose_key_asks_for_the_list_and_starts_on_the_first_available_key() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    assert!(commands(&mut c).is_empty());
    c.handle_published(published("choose-key"), t0);
    assert_eq!(commands(&mut c), vec![Command::ListKeys]);
    c.handle_keys(vec![
        key("101", false, 0),
        key("204", true, 1),
        key("305", true, 2),
    ]);
    let Body::PickKey { cursor, keys, .. } = c.screen(t0).body else {
        panic!("not the key list");
    };
    assert_eq!((cursor, keys.len()), (1, 3));

    c.handle_key(Key::Down, t0);
    c.handle_key(Key::Down, t0); // stays on the last row
    c.handle_key(Key::Enter, t0);
    assert_eq!(commands(&mut c), vec![Command::ChooseKey("305".into())]);
    c.handle_key(Key::Home, t0);
    c.handle_key(Key::Up, t0);
    c.handle_key(Key::Enter, t0);
    assert_eq!(commands(&mut c), vec![Command::ChooseKey("101".into())]);
    c.handle_key(Key::Esc, t0);
    assert_eq!(commands(&mut c), vec![Command::Cancel]);
}

#[test]
fn a_refusal_notice_on_the_key_list_refreshes_the_list() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("choose-key");
    p.prompt = "Type the key's label".into();
    c.handle_published(p.clone(), t0);
    c.handle_keys(vec![key("204", true, 1)]);
    let _ = commands(&mut c);
    // The keypad's digits change the entry only: no new list.
    p.entry = "20".into();
    c.handle_published(p.clone(), t0);
    assert!(commands(&mut c).is_empty());
    p.entry.clear();
    p.prompt = "204: key is out. Type the key's label".into();
    c.handle_published(p, t0);
    assert_eq!(commands(&mut c), vec![Command::ListKeys]);
}

#[test]
fn reasons_are_picked_by_code() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("choose-reason");
    p.key = "204".into();
    p.notes = "Dog in the unit".into();
    c.handle_published(p, t0);
    assert_eq!(commands(&mut c), vec![Command::ListReasons]);
    c.handle_reasons(vec![reason("INSP"), reason("MAINT")]);
    c.handle_key(Key::End, t0);
    let screen = c.screen(t0);
    let Body::PickReason { notes, cursor, .. } = &screen.body else {
        panic!("not the reason list");
    };
    assert_eq!((notes.as_str(), *cursor), ("Dog in the unit", 1));
    assert_eq!(
        keymap(&screen, Key::Enter),
        Some(Action::Send(Command::ChooseReason("MAINT".into())))
    );
    // An empty list offers nothing to pick.
    c.handle_reasons(vec![]);
    assert_eq!(keymap(&c.screen(t0), Key::Enter), None);
    assert_eq!(keymap(&c.screen(t0), Key::Down), None);
}

#[test]
fn take_key_shows_the_slot_and_the_due_time_of_its_grant() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    c.handle_granted("204".into(), 1, 1_800_000_000, t0);
    let mut p = published("take-key");
    p.key = "204".into();
    p.slot = 1;
    c.handle_published(p.clone(), t0);
    let screen = c.screen(t0);
    assert!(matches!(
        screen.body,
        Body::TakeKey {
            slot: 1,
            due: Some(1_800_000_000),
            ..
        }
    ));
    // Nothing to cancel once released.
    assert_eq!(keymap(&screen, Key::Esc), None);
    // Another key's grant is not this one's.
    p.key = "305".into();
    c.handle_published(p, t0);
    assert!(matches!(c.screen(t0).body, Body::TakeKey { due: None, .. }));
}

#[test]
fn a_message_that_policyd_signalled_as_a_refusal_is_a_denial_and_a_lockout_is_a_lockout() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("message");
    p.prompt = "badge not recognised".into();
    // The signal may come before or after the property change.
    c.handle_published(p.clone(), t0);
    assert!(matches!(c.screen(t0).body, Body::Message { .. }));
    c.handle_denied("unknown-badge".into(), "badge not recognised".into(), t0);
    assert_eq!(
        c.screen(t0).body,
        Body::Denied {
            message: "badge not recognised".into()
        }
    );

    c.handle_published(published("idle"), t0);
    c.handle_denied(
        "locked-out".into(),
        "locked out until 2026-11-23 16:00 UTC".into(),
        t0,
    );
    p.prompt = "locked out until 2026-11-23 16:00 UTC".into();
    c.handle_published(p.clone(), t0);
    assert!(matches!(c.screen(t0).body, Body::Lockout { .. }));

    // A plain result with no refusal behind it.
    p.prompt = "Key 204 taken".into();
    c.handle_published(p, t0);
    assert!(matches!(c.screen(t0).body, Body::Message { .. }));
}

#[test]
fn alarms_banner_counts_policyds_alarms_and_names_the_ones_it_has_seen() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("idle");
    p.active_alarms = 2;
    c.handle_published(p.clone(), t0);
    assert_eq!(c.screen(t0).alarms.as_deref(), Some("ALARM: 2 active"));
    c.handle_alarm("door-forced".into(), "door".into(), true, t0);
    assert_eq!(
        c.screen(t0).alarms.as_deref(),
        Some("ALARM: 2 active: door forced (door)")
    );
    c.handle_alarm("door-forced".into(), "door".into(), false, t0);
    p.active_alarms = 0;
    c.handle_published(p, t0);
    assert_eq!(c.screen(t0).alarms, None);
}

#[test]
fn display_goes_back_to_idle_by_itself_and_wakes_on_a_key_or_a_change() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    assert_eq!(c.poll_timeout(), None, "idle has nothing to time out");
    let mut p = published("pin");
    p.user = "Alice".into();
    c.handle_published(p.clone(), t0);
    assert_eq!(c.poll_timeout(), Some(t0 + TIMEOUT));
    c.handle_timeout(t0 + TIMEOUT - Duration::from_millis(1));
    assert!(matches!(c.screen(t0).body, Body::Pin { .. }));

    let t1 = t0 + TIMEOUT;
    c.handle_timeout(t1);
    let screen = c.screen(t1);
    assert!(screen.asleep);
    assert!(matches!(screen.body, Body::Idle { .. }));
    assert_eq!(commands(&mut c), vec![Command::Refresh]);
    assert_eq!(c.poll_timeout(), None);
    // The same state read again does not wake it...
    c.handle_published(p.clone(), t1);
    assert!(c.screen(t1).asleep);
    // ...a key does (and re-reads policyd)...
    c.handle_key(Key::Other, t1);
    assert!(matches!(c.screen(t1).body, Body::Pin { .. }));
    assert_eq!(commands(&mut c), vec![Command::Refresh]);
    // ...and so does a change from policyd.
    c.handle_timeout(t1 + TIMEOUT);
    assert!(c.screen(t1 + TIMEOUT).asleep);
    p.pin_length = 1;
    c.handle_published(p, t1 + TIMEOUT);
    assert!(matches!(
        c.screen(t1 + TIMEOUT).body,
        Body::Pin { digits: 1, .. }
    ));
}

#[test]
fn a_failed_call_is_shown_until_the_display_timeout() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    c.handle_published(published("choose-key"), t0);
    c.handle_call_failed("key 204: no key labelled or tagged \"204\"".into(), t0);
    assert!(c.screen(t0).error.is_some());
    assert_eq!(c.poll_timeout(), Some(t0 + TIMEOUT));
    c.handle_timeout(t0 + TIMEOUT);
    assert_eq!(c.screen(t0 + TIMEOUT).error, None);
}

#[test]
fn losing_policyd_shows_service_unavailable_and_its_return_starts_afresh() {
    let t0 = Instant::now();
    let mut c = idle(t0);
    c.handle_published(published("choose-key"), t0);
    c.handle_keys(vec![key("204", true, 1)]);
    c.handle_unavailable("keywarden-policyd is not running".into(), t0);
    let screen = c.screen(t0);
    assert_eq!(
        screen.body,
        Body::Unavailable {
            detail: "keywarden-policyd is not running".into()
        }
    );
    assert_eq!(keymap(&screen, Key::Enter), None);
    let _ = commands(&mut c);
    c.handle_published(published("idle"), t0);
    assert!(matches!(c.screen(t0).body, Body::Idle { .. }));
}

#[test]
fn ctrl_c_quits_on_every_screen() {
    let t0 = Instant::now();
    let c = Console::new(TIMEOUT, t0);
    assert_eq!(
        keymap(&c.screen(t0), Key::Quit),
        Some(Action::Send(Command::Quit))
    );
}

#[test]
fn rendered_screens_show_the_slot_and_never_more_than_asterisks_for_the_pin() {
    use ratatui::backend::TestBackend;
    let render = |screen: &Screen| {
        let mut t = ratatui::Terminal::new(TestBackend::new(80, 20)).unwrap();
        t.draw(|f| crate::ui::draw(f, screen)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    };
    let t0 = Instant::now();
    let mut c = idle(t0);
    let mut p = published("pin");
    p.user = "Alice".into();
    p.pin_length = 4;
    p.prompt = "Enter your PIN, then Enter".into();
    c.handle_published(p, t0);
    let text = render(&c.screen(t0));
    assert!(text.contains("PIN: * * * *"), "{text}");

    let mut p = published("take-key");
    p.key = "204".into();
    p.slot = 3;
    p.notes = "Dog in the unit".into();
    p.active_alarms = 1;
    c.handle_published(p, t0);
    let text = render(&c.screen(t0));
    assert!(text.contains("Take key 204 from slot 3."), "{text}");
    assert!(text.contains("Notes: Dog in the unit"), "{text}");
    assert!(text.contains("ALARM: 1 active"), "{text}");
}
