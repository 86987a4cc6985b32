//! RFC 5424 messages in RFC 5425's octet-counting framing, and the shipper's retry schedule:
//! plain functions and data, no IO.

use std::time::{Duration, Instant};

/// PRI: facility 13 ("log audit", RFC 5424 table 1), severity 6 (informational).
pub const PRI: u8 = 13 * 8 + 6;
/// APP-NAME.
pub const APP_NAME: &str = "keywarden-policyd";

/// What a message carries: its MSGID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgId {
    /// The export header starting a connection.
    Header,
    /// An audit entry.
    Audit,
    /// A signed checkpoint.
    Checkpoint,
    /// A sign of life while there is nothing to send.
    Heartbeat,
}

impl MsgId {
    /// The MSGID field.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgId::Header => "header",
            MsgId::Audit => "audit",
            MsgId::Checkpoint => "checkpoint",
            MsgId::Heartbeat => "heartbeat",
        }
    }
}

/// Appends one frame to `out`: `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG`, with
/// TIMESTAMP in UTC to the millisecond (`-` if `at_ms` is out of range) and MSG the line as it
/// is (no BOM: MSG-ANY). `hostname` is checked by the config (printable ASCII, no space) and
/// `msg` is an export line (no newline).
pub fn frame(out: &mut Vec<u8>, at_ms: i64, hostname: &str, id: MsgId, msg: &str) {
    let timestamp = jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| "-".to_owned());
    let message = format!(
        "<{PRI}>1 {timestamp} {hostname} {APP_NAME} - {} - {msg}",
        id.as_str()
    );
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// When to try next: after a failure, back off exponentially (1 s doubling to
/// [`MAX_BACKOFF`]); when idle, a heartbeat every `heartbeat`. Sans-IO: every input takes `now`.
#[derive(Debug, Clone)]
pub struct Schedule {
    heartbeat: Duration,
    last_contact: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The longest wait between attempts while the collector is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Schedule {
    /// A schedule sending a heartbeat after `heartbeat` of silence.
    pub fn new(heartbeat: Duration) -> Schedule {
        Schedule {
            heartbeat,
            last_contact: None,
            failures: 0,
            retry_at: None,
        }
    }

    /// Whether an attempt may be made now (not backing off).
    pub fn may_send(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Whether a heartbeat is due: nothing acknowledged for `heartbeat` (or ever).
    pub fn heartbeat_due(&self, now: Instant) -> bool {
        self.may_send(now)
            && self
                .last_contact
                .is_none_or(|t| now.duration_since(t) >= self.heartbeat)
    }

    /// A delivery was acknowledged.
    pub fn succeeded(&mut self, now: Instant) {
        self.last_contact = Some(now);
        self.failures = 0;
        self.retry_at = None;
    }

    /// A delivery failed: returns how long until the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = Duration::from_secs(1u64 << self.failures.min(6)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + wait);
        wait
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next time something is due when nothing new comes: the end of the back-off, else the
    /// next heartbeat.
    pub fn next_wake(&self, now: Instant) -> Instant {
        match (self.retry_at, self.last_contact) {
            (Some(t), _) => t,
            (None, Some(c)) => c + self.heartbeat,
            (None, None) => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_rfc5424() {
        let mut out = Vec::new();
        frame(
            &mut out,
            1_700_000_000_123,
            "cabinet-1",
            MsgId::Audit,
            r#"{"entry":{"seq":1}}"#,
        );
        frame(&mut out, 0, "c", MsgId::Heartbeat, "é");
        let text = String::from_utf8(out).unwrap();
        let first = r#"<110>1 2023-11-14T22:13:20.123Z cabinet-1 keywarden-policyd - audit - {"entry":{"seq":1}}"#;
        let second = "<110>1 1970-01-01T00:00:00.000Z c keywarden-policyd - heartbeat - é";
        assert_eq!(
            text,
            format!("{} {first}{} {second}", first.len(), second.len())
        );
        // The length counts octets, not characters.
        assert!(text.ends_with(&format!("{} {second}", second.chars().count() + 1)));
        let mut out = Vec::new();
        frame(&mut out, i64::MAX, "c", MsgId::Checkpoint, "x");
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(" - c keywarden-policyd - checkpoint - x"));
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_heartbeats_follow_silence() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(60));
        assert!(
            s.may_send(t0) && s.heartbeat_due(t0),
            "a heartbeat first of all"
        );
        let waits: Vec<u64> = (0..9).map(|_| s.failed(t0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!s.may_send(t0));
        assert!(!s.heartbeat_due(t0 + Duration::from_secs(59)));
        assert_eq!(s.next_wake(t0), t0 + Duration::from_secs(60));
        assert!(s.may_send(t0 + Duration::from_secs(60)));
        s.succeeded(t0);
        assert_eq!(s.failures(), 0);
        assert!(s.may_send(t0));
        assert!(!s.heartbeat_due(t0 + Duration::from_secs(59)));
        assert!(s.heartbeat_due(t0 + Duration::from_secs(60)));
        assert_eq!(s.next_wake(t0), t0 + Duration::from_secs(60));
        assert_eq!(s.failed(t0).as_secs(), 1, "back-off starts again");
    }
}
