//! When to try again, when to give up, and when the daily jobs are due. Sans-IO: every function
//! takes the current time (and, for jitter, a number the caller drew).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// First retry delay, seconds.
pub const RETRY_BASE: i64 = 30;
/// Longest retry delay, seconds.
pub const RETRY_CAP: i64 = 3600;
/// A message still undelivered this long after it was queued is given up (kept in the outbox
/// with `expired_at`, and logged as an error), seconds.
pub const EXPIRE_AFTER: i64 = 7 * 24 * 3600;

/// What to do with a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (Unix seconds).
    RetryAt(i64),
    /// Give up: undelivered for [`EXPIRE_AFTER`].
    Expire,
}

/// After failed attempt number `attempts` (1 = the first) of a message queued at `created_at`:
/// exponential backoff from [`RETRY_BASE`] doubling up to [`RETRY_CAP`], with "equal jitter"
/// (the delay is between half and all of the step; `jitter` in `[0, 1)` picks where), so
/// messages that failed together do not all retry at the same second.
pub fn after_failure(created_at: i64, attempts: u32, now: i64, jitter: f64) -> AfterFailure {
    if now.saturating_sub(created_at) >= EXPIRE_AFTER {
        return AfterFailure::Expire;
    }
    let doublings = attempts.saturating_sub(1).min(20);
    let step = (RETRY_BASE << doublings).min(RETRY_CAP);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let delay = step / 2 + ((step / 2) as f64 * jitter) as i64;
    AfterFailure::RetryAt(now + delay.max(1))
}

/// The local date at `now_s`.
pub fn local_date(zone: &TimeZone, now_s: i64) -> Option<Date> {
    Timestamp::from_second(now_s)
        .ok()
        .map(|t| t.to_zoned(zone.clone()).date())
}

/// Whether a daily job set for `at_minute` (after local midnight) is due at `now`: today's
/// time has passed and it has not run today. A day the device was off is not caught up: only
/// today's run is due.
pub fn daily_due(now: &Zoned, at_minute: u16, last_run: Option<Date>) -> bool {
    let minute = i32::from(now.hour()) * 60 + i32::from(now.minute());
    minute >= i32::from(at_minute) && last_run != Some(now.date())
}

/// Seconds from `now` to the next local `at_minute` (at least 1; 24 h when the zone's day is
/// odd, e.g. a skipped local time).
pub fn seconds_until(now: &Zoned, at_minute: u16) -> i64 {
    let today = now.date();
    let target = |d: Date| {
        d.at((at_minute / 60) as i8, (at_minute % 60) as i8, 0, 0)
            .to_zoned(now.time_zone().clone())
            .ok()
    };
    let mut next = target(today);
    if next.as_ref().is_none_or(|t| t <= now) {
        next = today.tomorrow().ok().and_then(target);
    }
    next.map(|t| t.timestamp().as_second() - now.timestamp().as_second())
        .unwrap_or(24 * 3600)
        .max(1)
}

/// Date as stored in the notifier's state (`YYYYMMDD`).
pub fn date_to_int(d: Date) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}

/// Back from [`date_to_int`].
pub fn date_from_int(v: i64) -> Option<Date> {
    Date::new(
        i16::try_from(v / 10_000).ok()?,
        i8::try_from(v / 100 % 100).ok()?,
        i8::try_from(v % 100).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_bounded_jitter_up_to_the_cap() {
        let t0 = 1_000_000;
        let delay = |attempts, jitter| match after_failure(t0, attempts, t0, jitter) {
            AfterFailure::RetryAt(at) => at - t0,
            AfterFailure::Expire => panic!("expired"),
        };
        assert_eq!(delay(1, 0.0), 15);
        assert_eq!(delay(1, 0.999_999), 29);
        assert_eq!(delay(2, 0.0), 30);
        assert_eq!(delay(3, 0.0), 60);
        let mut last = 0;
        for attempts in 1..40 {
            let lo = delay(attempts, 0.0);
            let hi = delay(attempts, 0.999_999);
            assert!(lo <= hi && hi <= RETRY_CAP, "{attempts}: {lo}..{hi}");
            assert!(lo >= last, "never shorter than the previous step");
            last = lo;
        }
        assert_eq!(delay(39, 0.0), RETRY_CAP / 2);
        assert_eq!(delay(39, 1.0), RETRY_CAP);
        assert_eq!(delay(5, f64::NAN), delay(5, 0.0));
        assert_eq!(delay(5, 7.0), delay(5, 1.0));
    }

    #[test]
    fn a_week_of_failures_expires_the_message() {
        let t0 = 5_000;
        assert!(matches!(
            after_failure(t0, 100, t0 + EXPIRE_AFTER - 1, 0.5),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(
            after_failure(t0, 100, t0 + EXPIRE_AFTER, 0.5),
            AfterFailure::Expire
        );
    }

    #[test]
    fn daily_jobs_run_once_a_day_after_their_time() {
        let zone = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::fixed(jiff::tz::offset(1)));
        let at = |s: &str| -> Zoned {
            jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", s)
                .expect("time")
                .to_zoned(zone.clone())
                .expect("zoned")
        };
        let m = 7 * 60 + 30;
        assert!(!daily_due(&at("2026-03-10 07:29"), m, None));
        assert!(daily_due(&at("2026-03-10 07:30"), m, None));
        let today = at("2026-03-10 07:30").date();
        assert!(!daily_due(&at("2026-03-10 23:59"), m, Some(today)));
        assert!(!daily_due(&at("2026-03-11 07:00"), m, Some(today)));
        assert!(daily_due(&at("2026-03-11 09:00"), m, Some(today)));
        assert_eq!(seconds_until(&at("2026-03-10 07:00"), m), 30 * 60);
        assert_eq!(seconds_until(&at("2026-03-10 07:30"), m), 24 * 3600);
        assert_eq!(date_from_int(date_to_int(today)), Some(today));
        assert_eq!(date_to_int(today), 20260310);
        assert_eq!(date_from_int(20261399), None);
    }
}
