//! What people type for times, dates and weekly windows, and how the CLI prints them back.
//!
//! - A time (`--from`, `--valid-until`, ...): RFC 3339 with `Z` or an offset
//!   (`2026-12-01T08:00:00Z`, `2026-12-01T08:00:00+02:00`), or local time in the device's time zone:
//!   a date (`2026-12-01`, midnight) or a date and time (`2026-12-01 08:00`, `2026-12-01T08:00:30`).
//! - A date (holidays): `YYYY-MM-DD`.
//! - A weekly window (schedules): `DAYS HH:MM-HH:MM`, where DAYS is a comma-separated list of
//!   days (`mon`, `tuesday`, ...), ranges (`mon-fri`, `fri-mon` wraps), `daily`, `weekdays` or
//!   `weekends`, and the times run from 00:00 to 24:00 with the start before the end.
//!
//! The parsers are pure (the time zone is a parameter); the `*_local` wrappers use the system's.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use keywarden_dbus::policy::{WindowSpec, EVERY_DAY, MINUTES_PER_DAY};

/// Why a time, date or window could not be read. The messages follow clap's
/// "invalid value 'X' for '--opt <T>': " prefix, so they do not repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not one of the accepted time forms.
    #[error("expected RFC 3339 (2026-12-01T08:00:00Z, or with an offset such as +02:00), a local date (2026-12-01) or a local date and time (2026-12-01 08:00)")]
    TimeForm,
    /// The right form, but no such day or time of day.
    #[error("no such date or time of day")]
    NoSuchTime,
    /// The local time does not exist or cannot be placed in the time zone.
    #[error("cannot place this local time in time zone {0}")]
    Zone(String),
    /// Not `YYYY-MM-DD`, or no such day.
    #[error("expected a date YYYY-MM-DD, such as 2026-12-25")]
    Date,
    /// A window without its two parts.
    #[error("expected DAYS HH:MM-HH:MM, such as \"mon-fri 08:00-18:00\"")]
    WindowForm,
    /// An unknown day name.
    #[error("unknown day {0:?}: use mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, daily, weekdays or weekends")]
    Day(String),
    /// A time range without its dash.
    #[error("invalid time range {0:?}: use HH:MM-HH:MM, such as 08:00-18:00")]
    Range(String),
    /// Not `HH:MM` from 00:00 to 24:00.
    #[error("invalid time of day {0:?}: use HH:MM from 00:00 to 24:00")]
    TimeOfDay(String),
    /// The end is not after the start.
    #[error("the window ends at {end}, not after its start {start}; split a window that crosses midnight in two")]
    Backwards {
        /// Start as typed.
        start: String,
        /// End as typed.
        end: String,
    },
}

/// Parse a time as the CLI accepts it (see the module doc) into Unix seconds, reading local times
/// in `tz`.
pub fn parse_time(text: &str, tz: &TimeZone) -> Result<i64, ParseError> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts.as_second());
    }
    let shape: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    let civil = match shape.as_str() {
        "dddd-dd-dd" => {
            Date::strptime("%Y-%m-%d", text).map(|d| d.to_datetime(jiff::civil::time(0, 0, 0, 0)))
        }
        "dddd-dd-dd dd:dd" => DateTime::strptime("%Y-%m-%d %H:%M", text),
        "dddd-dd-ddTdd:dd" => DateTime::strptime("%Y-%m-%dT%H:%M", text),
        "dddd-dd-dd dd:dd:dd" => DateTime::strptime("%Y-%m-%d %H:%M:%S", text),
        "dddd-dd-ddTdd:dd:dd" => DateTime::strptime("%Y-%m-%dT%H:%M:%S", text),
        _ => return Err(ParseError::TimeForm),
    }
    .map_err(|_| ParseError::NoSuchTime)?;
    civil
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_second())
        .map_err(|_| ParseError::Zone(tz.iana_name().unwrap_or("(unnamed)").to_owned()))
}

/// [`parse_time`] in the system's time zone, for clap.
pub fn parse_time_local(text: &str) -> Result<i64, ParseError> {
    parse_time(text, &TimeZone::system())
}

/// [`parse_time_local`], or 0 ("unset") for `none`, for options that can be cleared.
pub fn parse_time_or_none(text: &str) -> Result<i64, ParseError> {
    if text.trim() == "none" {
        return Ok(0);
    }
    parse_time_local(text)
}

/// A time for a table: `YYYY-MM-DD HH:MM` in `tz`, or `-` for 0 (unset).
pub fn format_time(seconds: i64, tz: &TimeZone) -> String {
    if seconds == 0 {
        return "-".to_owned();
    }
    match Timestamp::from_second(seconds) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => format!("@{seconds}"),
    }
}

/// [`format_time`] in the system's time zone.
pub fn format_time_local(seconds: i64) -> String {
    format_time(seconds, &TimeZone::system())
}

/// A holiday date: exactly `YYYY-MM-DD`, a real day. Returns it unchanged.
pub fn parse_date(text: &str) -> Result<String, ParseError> {
    let text = text.trim();
    let date = Date::strptime("%Y-%m-%d", text).map_err(|_| ParseError::Date)?;
    let canonical = date.strftime("%Y-%m-%d").to_string();
    if canonical != text {
        return Err(ParseError::Date);
    }
    Ok(canonical)
}

const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Day index (0 = Monday) of a day name, short or long, any case.
fn day_index(name: &str) -> Option<usize> {
    let name = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|(short, long)| name == *short || name == *long)
}

/// The day mask of one comma-separated item: a day, a range or a named set.
fn day_item(item: &str) -> Result<u8, ParseError> {
    match item.to_ascii_lowercase().as_str() {
        "daily" => return Ok(EVERY_DAY),
        "weekdays" => return Ok(0b001_1111),
        "weekends" => return Ok(0b110_0000),
        _ => {}
    }
    let unknown = || ParseError::Day(item.to_owned());
    match item.split_once('-') {
        None => day_index(item).map(|d| 1 << d).ok_or_else(unknown),
        Some((from, to)) => {
            let from = day_index(from).ok_or_else(unknown)?;
            let to = day_index(to).ok_or_else(unknown)?;
            let mut mask = 0u8;
            let mut day = from;
            loop {
                mask |= 1 << day;
                if day == to {
                    return Ok(mask);
                }
                day = (day + 1) % 7;
            }
        }
    }
}

/// Minutes after midnight of `HH:MM` (00:00 to 24:00).
fn minute_of_day(text: &str) -> Result<u16, ParseError> {
    let bad = || ParseError::TimeOfDay(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    let minute = h * 60 + m;
    if m >= 60 || minute > MINUTES_PER_DAY {
        return Err(bad());
    }
    Ok(minute)
}

/// Parse a weekly window (`mon-fri 08:00-18:00`, `sat,sun 10:00-14:00`, `daily 00:00-24:00`).
pub fn parse_window(text: &str) -> Result<WindowSpec, ParseError> {
    let mut parts = text.split_whitespace();
    let (Some(days), Some(range), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::WindowForm);
    };
    let mut mask = 0u8;
    for item in days.split(',') {
        mask |= day_item(item)?;
    }
    let (start_text, end_text) = range
        .split_once('-')
        .ok_or_else(|| ParseError::Range(range.to_owned()))?;
    let start = minute_of_day(start_text)?;
    let end = minute_of_day(end_text)?;
    if end <= start {
        return Err(ParseError::Backwards {
            start: start_text.to_owned(),
            end: end_text.to_owned(),
        });
    }
    Ok(WindowSpec {
        days: mask,
        start,
        end,
    })
}

/// A window as [`parse_window`] reads it: runs of three or more days as ranges (`mon-fri`),
/// every day as `daily`.
pub fn format_window(w: &WindowSpec) -> String {
    let days = if w.days & EVERY_DAY == EVERY_DAY {
        "daily".to_owned()
    } else {
        let mut items = Vec::new();
        let mut day = 0;
        while day < 7 {
            if w.days & (1 << day) == 0 {
                day += 1;
                continue;
            }
            let first = day;
            while day + 1 < 7 && w.days & (1 << (day + 1)) != 0 {
                day += 1;
            }
            match day - first {
                0 => items.push(DAYS[first].0.to_owned()),
                1 => items.push(format!("{},{}", DAYS[first].0, DAYS[day].0)),
                _ => items.push(format!("{}-{}", DAYS[first].0, DAYS[day].0)),
            }
            day += 1;
        }
        if items.is_empty() {
            "never".to_owned()
        } else {
            items.join(",")
        }
    };
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{days} {}-{}", hm(w.start), hm(w.end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::{self, TimeZone};

    fn plus_two() -> TimeZone {
        TimeZone::fixed(tz::offset(2))
    }

    #[test]
    fn times_in_every_accepted_form() {
        let tz = plus_two();
        // 2026-12-01T08:00:00Z
        let utc = 1_796_112_000;
        for (text, want) in [
            ("2026-12-01T08:00:00Z", utc),
            ("2026-12-01T08:00Z", utc),
            ("2026-12-01T10:00:00+02:00", utc),
            ("2026-12-01T08:00:00.5Z", utc),
            ("2026-12-01 10:00", utc),
            ("2026-12-01T10:00", utc),
            ("2026-12-01 10:00:00", utc),
            ("2026-12-01T10:00:30", utc + 30),
            ("2026-12-01", utc - 10 * 3600),
            (" 2026-12-01 ", utc - 10 * 3600),
        ] {
            assert_eq!(parse_time(text, &tz), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        let tz = plus_two();
        for text in [
            "tomorrow",
            "20261201",
            "2026-12-01 8:00",
            "1796112000",
            "",
            "2026-12-01 10:00 +02",
        ] {
            let err = parse_time(text, &tz).unwrap_err();
            assert_eq!(err, ParseError::TimeForm, "{text}");
            assert_eq!(
                err.to_string(),
                "expected RFC 3339 (2026-12-01T08:00:00Z, or with an offset such as +02:00), a local date (2026-12-01) or a local date and time (2026-12-01 08:00)"
            );
        }
        for text in [
            "2026-02-30",
            "2026-13-01 08:00",
            "2026-12-01 24:00",
            "2026-12-01T08:61",
        ] {
            let err = parse_time(text, &tz).unwrap_err();
            assert_eq!(err.to_string(), "no such date or time of day", "{text}");
        }
    }

    #[test]
    fn none_clears_a_time() {
        assert_eq!(parse_time_or_none("none"), Ok(0));
        assert_eq!(
            parse_time_or_none("2026-12-01T08:00:00Z"),
            Ok(1_796_112_000)
        );
    }

    #[test]
    fn times_print_in_the_zone_and_unset_as_a_dash() {
        let tz = plus_two();
        assert_eq!(format_time(1_796_112_000, &tz), "2026-12-01 10:00");
        assert_eq!(format_time(0, &tz), "-");
        assert_eq!(format_time(i64::MAX, &tz), format!("@{}", i64::MAX));
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2026-12-25"), Ok("2026-12-25".to_owned()));
        for text in [
            "2026-12-5",
            "20261225",
            "2026-02-30",
            "25/12/2026",
            "2026-12-25T00:00",
        ] {
            let err = parse_date(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                "expected a date YYYY-MM-DD, such as 2026-12-25",
                "{text}"
            );
        }
    }

    #[test]
    fn windows_in_every_accepted_form() {
        for (text, days, start, end) in [
            ("mon-fri 08:00-18:00", 0b001_1111, 480, 1080),
            ("sat,sun 10:00-14:00", 0b110_0000, 600, 840),
            ("daily 00:00-24:00", 0b111_1111, 0, 1440),
            ("Monday,WED 07:30-07:31", 0b000_0101, 450, 451),
            ("fri-mon 22:00-24:00", 0b111_0001, 1320, 1440),
            ("weekdays,sun  09:00-12:00", 0b101_1111, 540, 720),
            ("weekends 00:00-00:01", 0b110_0000, 0, 1),
        ] {
            assert_eq!(
                parse_window(text),
                Ok(WindowSpec { days, start, end }),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (text, message) in [
            ("mon-fri", r#"expected DAYS HH:MM-HH:MM, such as "mon-fri 08:00-18:00""#),
            ("mon-fri 08:00-18:00 extra", r#"expected DAYS HH:MM-HH:MM, such as "mon-fri 08:00-18:00""#),
            ("", r#"expected DAYS HH:MM-HH:MM, such as "mon-fri 08:00-18:00""#),
            ("mon-fry 08:00-18:00", r#"unknown day "mon-fry": use mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, daily, weekdays or weekends"#),
            ("mon,,tue 08:00-18:00", r#"unknown day "": use mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, daily, weekdays or weekends"#),
            ("mon 0800", r#"invalid time range "0800": use HH:MM-HH:MM, such as 08:00-18:00"#),
            ("mon 8:00-18:00", r#"invalid time of day "8:00": use HH:MM from 00:00 to 24:00"#),
            ("mon 08:00-24:01", r#"invalid time of day "24:01": use HH:MM from 00:00 to 24:00"#),
            ("mon 08:60-09:00", r#"invalid time of day "08:60": use HH:MM from 00:00 to 24:00"#),
            ("mon 22:00-06:00", "the window ends at 06:00, not after its start 22:00; split a window that crosses midnight in two"),
            ("mon 08:00-08:00", "the window ends at 08:00, not after its start 08:00; split a window that crosses midnight in two"),
        ] {
            assert_eq!(parse_window(text).unwrap_err().to_string(), message, "{text}");
        }
    }

    #[test]
    fn windows_print_as_they_are_typed() {
        for text in [
            "mon-fri 08:00-18:00",
            "sat,sun 10:00-14:00",
            "daily 00:00-24:00",
            "mon,wed 07:30-07:31",
            "mon-wed,fri 09:00-17:00",
            "sun 00:00-00:01",
        ] {
            let w = parse_window(text).unwrap();
            assert_eq!(format_window(&w), text);
        }
        let none = WindowSpec {
            days: 0,
            start: 0,
            end: 60,
        };
        assert_eq!(format_window(&none), "never 00:00-01:00");
    }
}
