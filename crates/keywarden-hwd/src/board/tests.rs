use super::*;

const MINIMAL: &str = r#"
model = "m"
[door]
lock = { line = "door-lock" }
sensor = { line = "door-sensor" }
"#;

fn err(text: &str) -> String {
    Board::from_toml(text).unwrap_err().to_string()
}

#[test]
fn the_demo_board_parses_with_locks_first() {
    let board = Board::from_toml(include_str!("../../boards/sim-demo.toml")).unwrap();
    assert_eq!(board.slots.len(), 8);
    assert_eq!(board.held_open, Duration::from_secs(30));
    let outputs: Vec<OutputId> = board.outputs().into_iter().map(|(id, _)| id).collect();
    let first_non_lock = outputs.iter().position(|id| !id.is_lock()).unwrap();
    assert!(
        outputs[first_non_lock..].iter().all(|id| !id.is_lock()),
        "{outputs:?}"
    );
    let fp = board.fingerprint.unwrap();
    assert!(fp.touch.active_low);
    assert_eq!(fp.address, 0xFFFF_FFFF);
    assert_eq!(board.readers[0].wedge.max_length, 32);
}

#[test]
fn minimal_board_has_defaults() {
    let board = Board::from_toml(MINIMAL).unwrap();
    assert_eq!(board.held_open, Duration::from_secs(60));
    assert_eq!(board.door_sensor.debounce, Duration::from_millis(20));
    assert_eq!(board.door_lock.debounce, Duration::ZERO);
    assert_eq!(board.door_lock.field, "door.lock.line");
}

#[test]
fn missing_door_lock_is_refused_naming_the_field() {
    let e = err("model = \"m\"\n[door]\nsensor = { line = \"s\" }\n");
    assert!(e.contains("missing field `lock`"), "{e}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn a_line_used_twice_names_both_fields() {
    let e = err(&format!(
        "{MINIMAL}\n[[slot]]\nnumber = 1\npresence = {{ line = \"door-sensor\" }}\n"
    ));
    assert_eq!(
        e,
        r#"slot[0].presence.line: line "door-sensor" is already used by door.sensor.line"#
    );
}

#[test]
fn unknown_fields_and_bad_values_are_refused_by_name() {
    let e = err(&MINIMAL.replace("[door]", "[door]\nhold_open_seconds = 5"));
    assert!(e.contains("unknown field `hold_open_seconds`"), "{e}");
    let e = err(&MINIMAL.replace("[door]", "[door]\nheld_open_seconds = 0"));
    assert_eq!(e, "door.held_open_seconds: must be 1..=3600");
    let e = err(&MINIMAL.replace(
        "sensor = { line = \"door-sensor\" }",
        "sensor = { line = \"door-sensor\", debounce_ms = 5000 }",
    ));
    assert_eq!(
        e,
        "door.sensor.debounce_ms: 5000 ms is over the 1000 ms limit"
    );
    let e = err(&MINIMAL.replace(
        "lock = { line = \"door-lock\" }",
        "lock = { line = \"door-lock\", debounce_ms = 5 }",
    ));
    assert_eq!(e, "door.lock.debounce_ms: outputs are not debounced");
    let e = err(&MINIMAL.replace("lock = { line = \"door-lock\" }", "lock = { line = \"\" }"));
    assert_eq!(e, "door.lock.line: line name is empty");
}

#[test]
fn slots_need_unique_numbers_from_one() {
    let slot =
        |n: u32, l: &str| format!("\n[[slot]]\nnumber = {n}\npresence = {{ line = \"{l}\" }}\n");
    let e = err(&format!("{MINIMAL}{}{}", slot(2, "a"), slot(2, "b")));
    assert_eq!(
        e,
        "slot[1].number: slot number 2 is already used by slot[0]"
    );
    let e = err(&format!("{MINIMAL}{}", slot(0, "a")));
    assert_eq!(e, "slot[0].number: slot numbers start at 1");
}

#[test]
fn readers_need_a_device_and_a_known_terminator() {
    let reader = |extra: &str| format!("{MINIMAL}\n[[reader]]\nname = \"badge\"\n{extra}\n");
    assert_eq!(
        err(&reader("")),
        "reader[0]: needs `device` (a path) or `device_name`"
    );
    assert_eq!(
        err(&reader("device_name = \"x\"\nterminator = \"newline\"")),
        r#"reader[0].terminator: "newline" is not one of "enter", "tab", "none""#
    );
    assert_eq!(
        err(&reader(
            "device_name = \"x\"\ndevice = \"/dev/input/event0\""
        )),
        "reader[0]: give `device` or `device_name`, not both"
    );
    assert_eq!(
        err(&reader("device_name = \"x\"\nmax_length = 0")),
        "reader[0].max_length: must be 1..=256"
    );
    let two = format!(
        "{}\n[[keypad]]\nname = \"badge\"\ndevice_name = \"k\"\n",
        reader("device_name = \"x\"")
    );
    assert_eq!(
        err(&two),
        r#"keypad[0].name: name "badge" is already used by reader[0].name"#
    );
}

#[test]
fn syntax_errors_say_where() {
    let e = err("model = \"m\"\n[door\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn lock_feedback_lines_are_inputs_and_may_not_reuse_a_line() {
    let text = r#"
model = "m"
[door]
lock = { line = "door-lock", feedback = { line = "door-fb", active_low = true, debounce_ms = 15 } }
sensor = { line = "door-sensor" }
[[slot]]
number = 1
presence = { line = "p1" }
lock = { line = "l1", feedback = { line = "l1-fb" } }
[[slot]]
number = 2
presence = { line = "p2" }
lock = { line = "l2" }
"#;
    let board = Board::from_toml(text).unwrap();
    let fb = board.door_lock_feedback.as_ref().unwrap();
    assert_eq!(
        (fb.field.as_str(), fb.name.as_str(), fb.active_low),
        ("door.lock.feedback.line", "door-fb", true)
    );
    assert_eq!(fb.debounce, Duration::from_millis(15));
    assert_eq!(
        board.slots[0].lock_feedback.as_ref().unwrap().debounce,
        Duration::from_millis(20),
        "inputs' default debounce"
    );
    assert_eq!(board.slots[1].lock_feedback, None);
    let feedback: Vec<InputId> = board.feedback().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        feedback,
        [
            InputId::LockFeedback(OutputId::DoorLock),
            InputId::LockFeedback(OutputId::SlotLock(1))
        ]
    );
    assert!(board
        .inputs()
        .iter()
        .any(|(id, _)| *id == InputId::LockFeedback(OutputId::SlotLock(1))));

    let e = err(&text.replace("\"l1-fb\"", "\"p2\""));
    assert_eq!(
        e,
        r#"slot[1].presence.line: line "p2" is already used by slot[0].lock.feedback.line"#
    );
    let e = err(&text.replace("\"door-fb\"", "\"door-lock\""));
    assert_eq!(
        e,
        r#"door.lock.feedback.line: line "door-lock" is already used by door.lock.line"#
    );
    let e = err(&text.replace("{ line = \"l1-fb\" }", "{ line = \"l1-fb\", pull = 1 }"));
    assert!(e.contains("unknown field `pull`"), "{e}");
}
