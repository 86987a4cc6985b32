//! The value rules admin changes must follow: names, labels, tags, codes, free text, schedule
//! windows and dates. Pure functions; each error says which rule was broken and, where the value
//! is not secret, which value.

use jiff::civil::Date;

use crate::error::{Error, Result};
use crate::model::Window;

/// Longest display name, holiday name, reason description (characters).
pub const MAX_TEXT: usize = 128;
/// Longest key notes and alarm note (characters).
pub const MAX_NOTES: usize = 1024;
/// Longest badge code accepted (characters).
pub const MAX_BADGE_CODE: usize = 256;

/// Login name: 1-64 of `[a-z0-9._-]`.
pub fn login(name: &str) -> Result<()> {
    charset(
        "login name",
        name,
        64,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
        "1-64 of a-z 0-9 . _ -",
    )
}

/// Group and schedule names: 1-64 of `[A-Za-z0-9._-]` (they are typed after `group:`).
pub fn entity_name(what: &'static str, name: &str) -> Result<()> {
    charset(
        what,
        name,
        64,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "1-64 of A-Z a-z 0-9 . _ -",
    )
}

/// Reason code: 1-16 of `[A-Z0-9-]`.
pub fn reason_code(code: &str) -> Result<()> {
    charset(
        "reason code",
        code,
        16,
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-',
        "1-16 of A-Z 0-9 -",
    )
}

/// Key tag code: 1-64 of `[A-Za-z0-9-]`.
pub fn tag(tag: &str) -> Result<()> {
    charset(
        "key tag",
        tag,
        64,
        |c| c.is_ascii_alphanumeric() || c == '-',
        "1-64 of A-Z a-z 0-9 -",
    )
}

/// Key label: 1-64 characters, no control characters, no surrounding spaces.
pub fn label(label: &str) -> Result<()> {
    text("key label", label, 64, false)?;
    if label.trim() != label {
        return Err(Error::invalid(
            format!("key label {label:?}"),
            "no leading or trailing spaces",
        ));
    }
    Ok(())
}

/// Free text: at most `max` characters, no control characters (a newline in a display name
/// would forge lines in reports), empty only if `may_be_empty`.
pub fn text(what: &str, value: &str, max: usize, may_be_empty: bool) -> Result<()> {
    if value.is_empty() && !may_be_empty {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(what, format!("at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(what, "no control characters"));
    }
    Ok(())
}

/// A badge code as read: 1-256 characters, no control characters. The error never repeats it.
pub fn badge_code(code: &str) -> Result<()> {
    if code.is_empty()
        || code.chars().count() > MAX_BADGE_CODE
        || code.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "badge code",
            format!("1-{MAX_BADGE_CODE} characters, no control characters"),
        ));
    }
    Ok(())
}

/// A holiday date: exactly `YYYY-MM-DD`, a real calendar date.
pub fn date(date: &str) -> Result<Date> {
    let bad = || Error::invalid(format!("date {date:?}"), "expected a date as YYYY-MM-DD");
    let parsed: Date = date.parse().map_err(|_| bad())?;
    // jiff also accepts other ISO 8601 spellings (`20251225`); only the canonical one is stored.
    if parsed.to_string() != date {
        return Err(bad());
    }
    Ok(parsed)
}

/// A schedule's windows: each `start < end <= 1440` with a non-empty day mask within
/// bits 0-6, and no two overlapping (same day and intersecting minutes).
pub fn windows(schedule: &str, windows: &[Window]) -> Result<()> {
    let what = |i: usize, w: &Window| {
        format!(
            "schedule {schedule:?} window {} (days {:#04x}, {}-{})",
            i + 1,
            w.days,
            w.start,
            w.end
        )
    };
    for (i, w) in windows.iter().enumerate() {
        if w.days == 0 || w.days > 0x7f {
            return Err(Error::invalid(
                what(i, w),
                "days must be a non-empty mask of bits 0 (Monday) to 6 (Sunday)",
            ));
        }
        if w.start >= w.end || w.end > 1440 {
            return Err(Error::invalid(
                what(i, w),
                "minutes must satisfy start < end <= 1440",
            ));
        }
    }
    for (i, a) in windows.iter().enumerate() {
        for (j, b) in windows.iter().enumerate().skip(i + 1) {
            if a.days & b.days != 0 && a.start < b.end && b.start < a.end {
                return Err(Error::invalid(
                    what(j, b),
                    format!("overlaps window {}", i + 1),
                ));
            }
        }
    }
    Ok(())
}

fn charset(
    what: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    rule: &str,
) -> Result<()> {
    if value.is_empty() || value.chars().count() > max || !value.chars().all(allowed) {
        return Err(Error::invalid(format!("{what} {value:?}"), rule));
    }
    Ok(())
}
