//! Reading "now" for the core: monotonic time, wall clock, local civil time in the site's zone.

use std::time::Instant;

use crate::core::{LocalTime, Now};

/// The wall clock is judged unset before this time (2026-01-01T00:00:00Z): no firmware of this
/// project predates it, so an RTC that lost power (1970, 2000) is caught.
pub const CLOCK_FLOOR: i64 = 1_767_225_600;

/// Now, in `zone`.
pub fn now(zone: &jiff::tz::TimeZone) -> Now {
    let mono = Instant::now();
    let ts = jiff::Timestamp::now();
    let local = ts.to_zoned(zone.clone());
    Now {
        mono,
        wall: ts.as_second(),
        local: LocalTime {
            weekday: local.weekday().to_monday_zero_offset() as u8,
            minute: (local.hour() as u16) * 60 + local.minute() as u16,
            date: local.date().to_string(),
        },
        clock_valid: ts.as_second() >= CLOCK_FLOOR,
    }
}

/// Milliseconds since the epoch, for audit timestamps.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_fields_are_in_range() {
        let n = now(&jiff::tz::TimeZone::UTC);
        assert!(n.local.weekday < 7);
        assert!(n.local.minute < 1440);
        assert_eq!(n.local.date.len(), 10);
        assert!(n.clock_valid, "the build machine's clock is set");
    }
}
