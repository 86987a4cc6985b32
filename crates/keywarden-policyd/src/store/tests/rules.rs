//! The value rules on their own.

use crate::error::Error;
use crate::model::Window;
use crate::store::rules;

fn invalid<T: std::fmt::Debug>(r: crate::error::Result<T>) -> String {
    match r {
        Err(Error::Invalid { what, problem }) => format!("{what}: {problem}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn names_labels_tags_and_codes() {
    for ok in ["alice", "a", "j.doe_2-x", &"a".repeat(64)] {
        assert!(rules::login(ok).is_ok(), "{ok}");
    }
    for bad in ["", "Alice", "al ice", "alice:", "ålice", &"a".repeat(65)] {
        invalid(rules::login(bad));
    }
    for ok in ["MAINT", "A", "PEST-CTRL-2", "ABCDEFGHIJKLMNOP"] {
        assert!(rules::reason_code(ok).is_ok(), "{ok}");
    }
    for bad in ["", "maint", "MAINT_1", "ABCDEFGHIJKLMNOPQ", "M A"] {
        invalid(rules::reason_code(bad));
    }
    for ok in ["04A1-FF", "x", &"Z".repeat(64)] {
        assert!(rules::tag(ok).is_ok(), "{ok}");
    }
    for bad in ["", "04A1 FF", "04:A1", "tag_1", &"Z".repeat(65)] {
        invalid(rules::tag(bad));
    }
    for ok in ["204", "Pool gate", "Bâtiment B – cave", &"é".repeat(64)] {
        assert!(rules::label(ok).is_ok(), "{ok}");
    }
    for bad in ["", " 204", "204 ", "20\n4", &"é".repeat(65)] {
        invalid(rules::label(bad));
    }
    assert!(rules::entity_name("group name", "Night-Shift").is_ok());
    invalid(rules::entity_name("group name", "night shift"));
}

#[test]
fn text_and_badge_codes() {
    assert!(rules::text("display name", "Alice Martin", 128, false).is_ok());
    invalid(rules::text("display name", "", 128, false));
    assert!(rules::text("notes", "", 128, true).is_ok());
    invalid(rules::text("display name", "Alice\nadmin", 128, false));
    invalid(rules::text("display name", &"x".repeat(129), 128, false));
    assert!(rules::badge_code("0004217356").is_ok());
    let secret = "00\u{1b}42";
    let message = invalid(rules::badge_code(secret));
    assert!(!message.contains(secret), "never repeats the code");
    invalid(rules::badge_code(""));
}

#[test]
fn holiday_dates() {
    assert_eq!(rules::date("2025-12-25").unwrap().to_string(), "2025-12-25");
    assert!(rules::date("2024-02-29").is_ok());
    for bad in [
        "2025-02-29",
        "2025-13-01",
        "2025-12-32",
        "25-12-2025",
        "20251225",
        "2025-1-5",
        "2025-12-25T00:00",
        " 2025-12-25",
        "",
        "christmas",
    ] {
        invalid(rules::date(bad));
    }
}

#[test]
fn schedule_windows() {
    let w = |days, start, end| Window { days, start, end };
    assert!(rules::windows("office", &[]).is_ok());
    // Touching windows and windows on other days do not overlap.
    assert!(rules::windows(
        "office",
        &[
            w(0x1f, 480, 1080),
            w(0x60, 600, 720),
            w(0x1f, 1080, 1440),
            w(0x7f, 0, 1)
        ]
    )
    .is_ok());
    for (bad, why) in [
        (vec![w(0, 480, 1080)], "days"),
        (vec![w(0x80, 480, 1080)], "days"),
        (vec![w(0xff, 480, 1080)], "days"),
        (vec![w(0x01, 1080, 480)], "start < end"),
        (vec![w(0x01, 480, 480)], "start < end"),
        (vec![w(0x01, 0, 1441)], "start < end"),
        (
            vec![w(0x1f, 480, 1080), w(0x01, 1000, 1200)],
            "overlaps window 1",
        ),
        (
            vec![w(0x03, 0, 600), w(0x7e, 599, 700)],
            "overlaps window 1",
        ),
    ] {
        let message = invalid(rules::windows("office", &bad));
        assert!(message.contains(why), "{bad:?}: {message}");
    }
}
