//! What to say, and to whom: alerts made from audit entries, the daily keys-out list and the
//! inactivity check, and their routing to destinations. Sans-IO: plain values in, outbox rows
//! out; times come in as parameters.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::config::NotifyConfig;
use crate::model::AlarmKind;

/// What an alert is about; each destination picks the kinds it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    /// An alarm was raised or cleared.
    Alarm(AlarmKind),
    /// The daily list of keys out.
    KeysOut,
    /// A user has not used the cabinet for `inactive-days`.
    InactiveUser,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 10] = [
        AlertKind::Alarm(AlarmKind::DoorHeldOpen),
        AlertKind::Alarm(AlarmKind::DoorForced),
        AlertKind::Alarm(AlarmKind::Tamper),
        AlertKind::Alarm(AlarmKind::UnauthorisedRemoval),
        AlertKind::Alarm(AlarmKind::WrongSlot),
        AlertKind::Alarm(AlarmKind::Overdue),
        AlertKind::Alarm(AlarmKind::PinLockout),
        AlertKind::Alarm(AlarmKind::HolderExpired),
        AlertKind::KeysOut,
        AlertKind::InactiveUser,
    ];

    /// The name in the config file and in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Alarm(kind) => kind.as_str(),
            AlertKind::KeysOut => "keys-out",
            AlertKind::InactiveUser => "inactive-user",
        }
    }

    /// From its name.
    pub fn parse(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Chain position.
    pub seq: u64,
    /// Audit time, ms.
    pub at_ms: i64,
    /// `alarm-raised`, `granted`, `admin`...
    pub kind: String,
    /// Login name, admin caller, or empty.
    pub actor: String,
    /// `door`, `key:204`, `user:alice`...
    pub subject: String,
    /// JSON object.
    pub detail: String,
}

/// One alert, rendered once for every channel: a title and a text for e-mail, a JSON body for
/// webhooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Kind (routing).
    pub kind: AlertKind,
    /// One line (e-mail subject).
    pub title: String,
    /// Plain text (e-mail body).
    pub text: String,
    /// Webhook body fields (the sender adds `id`).
    pub data: Value,
}

/// An open loan for the keys-out list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLoan {
    /// Key label.
    pub key: String,
    /// Holder's login name.
    pub holder: String,
    /// Holder's display name.
    pub holder_name: String,
    /// Reason code.
    pub reason: String,
    /// Taken at, Unix seconds.
    pub since: i64,
    /// Due back, Unix seconds.
    pub due: i64,
}

/// A message for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Alert kind name.
    pub alert: &'static str,
    /// `email` or `webhook`.
    pub channel: Channel,
    /// Address or URL.
    pub destination: String,
    /// `{"title", "text", "data"}`.
    pub payload: String,
}

/// How a message leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// SMTP.
    Email,
    /// HTTPS POST.
    Webhook,
}

impl Channel {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// From the stored name.
    pub fn parse(name: &str) -> Option<Channel> {
        match name {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

fn local(zone: &TimeZone, unix_s: i64) -> String {
    match Timestamp::from_second(unix_s) {
        Ok(t) => t
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => unix_s.to_string(),
    }
}

fn rfc3339(unix_ms: i64) -> String {
    Timestamp::from_millisecond(unix_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix_ms.to_string())
}

/// The alert an audit entry produces, if any: `alarm-raised` and `alarm-cleared` entries do
/// (the alarm kind is the detail's `alarm`); nothing else does.
pub fn from_entry(cabinet: &str, zone: &TimeZone, entry: &AuditEntry) -> Option<Alert> {
    let raised = match entry.kind.as_str() {
        "alarm-raised" => true,
        "alarm-cleared" => false,
        _ => return None,
    };
    let detail: Map<String, Value> = serde_json::from_str(&entry.detail).unwrap_or_default();
    let alarm: AlarmKind = detail.get("alarm")?.as_str()?.parse().ok()?;
    let state = if raised { "raised" } else { "cleared" };
    let title = if raised {
        format!("[Keywarden {cabinet}] ALARM {alarm}: {}", entry.subject)
    } else {
        format!("[Keywarden {cabinet}] cleared {alarm}: {}", entry.subject)
    };
    let when = local(zone, entry.at_ms.div_euclid(1000));
    let mut text = format!(
        "Cabinet {cabinet}: alarm {alarm} {state}.\nSubject: {}\nWhen: {when}\n",
        entry.subject
    );
    for (name, value) in detail.iter().filter(|(n, _)| n.as_str() != "alarm") {
        let value = match value {
            Value::String(s) if name.ends_with("_at") => s
                .parse::<i64>()
                .map(|t| local(zone, t))
                .unwrap_or_else(|_| s.clone()),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("{}: {value}\n", name.replace('_', " ")));
    }
    text.push_str(&format!("Audit entry: {}\n", entry.seq));
    Some(Alert {
        kind: AlertKind::Alarm(alarm),
        title,
        text,
        data: json!({
            "cabinet": cabinet,
            "alert": alarm.as_str(),
            "state": state,
            "subject": entry.subject,
            "at": rfc3339(entry.at_ms),
            "audit_seq": entry.seq,
            "detail": detail,
        }),
    })
}

/// The daily list of keys out at `now` (`day` is the local date it is for).
pub fn keys_out(
    cabinet: &str,
    zone: &TimeZone,
    day: &str,
    loans: &[OpenLoan],
    now_s: i64,
) -> Alert {
    let overdue = loans.iter().filter(|l| now_s >= l.due).count();
    let title = format!(
        "[Keywarden {cabinet}] keys out on {day}: {} ({overdue} overdue)",
        loans.len()
    );
    let mut text = format!("Cabinet {cabinet}: keys out at {}.\n\n", local(zone, now_s));
    if loans.is_empty() {
        text.push_str("No key is out.\n");
    }
    let mut rows = Vec::new();
    for l in loans {
        let late = now_s >= l.due;
        text.push_str(&format!(
            "{}{}: {} ({}), reason {}, since {}, due {}\n",
            if late { "OVERDUE " } else { "" },
            l.key,
            l.holder_name,
            l.holder,
            l.reason,
            local(zone, l.since),
            local(zone, l.due),
        ));
        rows.push(json!({
            "key": l.key,
            "holder": l.holder,
            "holder_name": l.holder_name,
            "reason": l.reason,
            "since": rfc3339(l.since * 1000),
            "due": rfc3339(l.due * 1000),
            "overdue": late,
        }));
    }
    Alert {
        kind: AlertKind::KeysOut,
        title,
        text,
        data: json!({
            "cabinet": cabinet,
            "alert": "keys-out",
            "day": day,
            "at": rfc3339(now_s * 1000),
            "keys": rows,
        }),
    }
}

/// One user found inactive.
pub fn inactive_user(
    cabinet: &str,
    zone: &TimeZone,
    user: &str,
    display_name: &str,
    last_activity_ms: i64,
    days: u32,
) -> Alert {
    let last = local(zone, last_activity_ms.div_euclid(1000));
    Alert {
        kind: AlertKind::InactiveUser,
        title: format!("[Keywarden {cabinet}] inactive user {user}: no activity for {days} days"),
        text: format!(
            "Cabinet {cabinet}: user {display_name} ({user}) has not used the cabinet for {days} \
             days or more (last activity {last}). Consider deactivating the account.\n"
        ),
        data: json!({
            "cabinet": cabinet,
            "alert": "inactive-user",
            "user": user,
            "display_name": display_name,
            "last_activity": rfc3339(last_activity_ms),
            "inactive_days": days,
        }),
    }
}

/// The outbox rows for `alert`: one per e-mail recipient and per webhook that takes its kind.
pub fn route(config: &NotifyConfig, alert: &Alert) -> Vec<Outgoing> {
    let payload = json!({"title": alert.title, "text": alert.text, "data": alert.data}).to_string();
    let emails = config
        .email
        .iter()
        .filter(|e| e.alerts.contains(&alert.kind))
        .map(|e| (Channel::Email, e.to.clone()));
    let hooks = config
        .webhooks
        .iter()
        .filter(|w| w.alerts.contains(&alert.kind))
        .map(|w| (Channel::Webhook, w.url.clone()));
    emails
        .chain(hooks)
        .map(|(channel, destination)| Outgoing {
            alert: alert.kind.as_str(),
            channel,
            destination,
            payload: payload.clone(),
        })
        .collect()
}

/// A stored payload, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// E-mail subject.
    pub title: String,
    /// E-mail body.
    pub text: String,
    /// Webhook body (without `id`).
    pub data: Map<String, Value>,
}

impl Payload {
    /// Parse a stored payload.
    pub fn parse(text: &str) -> Option<Payload> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(Payload {
            title: v.get("title")?.as_str()?.to_owned(),
            text: v.get("text")?.as_str()?.to_owned(),
            data: v.get("data")?.as_object()?.clone(),
        })
    }

    /// The webhook body: `data` with the row's dedupe `id` first.
    pub fn webhook_body(&self, id: &str) -> String {
        let mut body = Map::new();
        body.insert("id".into(), Value::String(id.to_owned()));
        body.extend(self.data.clone());
        Value::Object(body).to_string()
    }
}

/// The stable dedupe id of an outbox row: the same on every attempt, different across
/// cabinets and across databases (the creation time is part of it).
pub fn dedupe_id(cabinet: &str, row_id: i64, created_at: i64) -> String {
    format!("kw-{cabinet}-{row_id}-{created_at}")
}

/// Counts per alert kind (for logs).
pub fn tally(rows: &[Outgoing]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.alert).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> NotifyConfig {
        Config::parse(
            r#"
[notify]
cabinet = "lobby"
[notify.smtp]
host = "mail.example.com"
from = "kw@example.com"
[[notify.email]]
to = "guard@example.com"
alerts = ["door-forced", "keys-out"]
[[notify.email]]
to = "boss@example.com"
alerts = ["overdue"]
[[notify.webhook]]
url = "https://hooks.example.com/kw"
alerts = ["all"]
"#,
        )
        .expect("parse")
        .notify
        .expect("notify")
    }

    fn entry(kind: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            seq: 42,
            at_ms: 1_800_000_000_000,
            kind: kind.into(),
            actor: String::new(),
            subject: "key:204".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn alarms_become_alerts_and_nothing_else_does() {
        let z = TimeZone::UTC;
        let e = entry(
            "alarm-raised",
            r#"{"alarm":"overdue","holder":"alice","due_at":"1800000000"}"#,
        );
        let a = from_entry("lobby", &z, &e).expect("alert");
        assert_eq!(a.kind, AlertKind::Alarm(AlarmKind::Overdue));
        assert_eq!(a.title, "[Keywarden lobby] ALARM overdue: key:204");
        assert!(a.text.contains("holder: alice\n"), "{}", a.text);
        assert!(
            a.text.contains("due at: 2027-01-15 08:00 UTC"),
            "{}",
            a.text
        );
        assert_eq!(a.data["state"], "raised");
        assert_eq!(a.data["audit_seq"], 42);
        assert_eq!(a.data["detail"]["holder"], "alice");
        let c = from_entry(
            "lobby",
            &z,
            &entry("alarm-cleared", r#"{"alarm":"overdue"}"#),
        )
        .expect("cleared");
        assert_eq!(c.data["state"], "cleared");
        assert!(c.title.contains("cleared overdue"));
        for (kind, detail) in [
            ("granted", r#"{"alarm":"overdue"}"#),
            ("admin", "{}"),
            ("alarm-raised", r#"{"alarm":"fire"}"#),
            ("alarm-raised", "not json"),
        ] {
            assert_eq!(
                from_entry("lobby", &z, &entry(kind, detail)),
                None,
                "{kind}"
            );
        }
    }

    #[test]
    fn routing_follows_each_destinations_kinds() {
        let c = config();
        let z = TimeZone::UTC;
        let forced = from_entry(
            "lobby",
            &z,
            &entry("alarm-raised", r#"{"alarm":"door-forced"}"#),
        )
        .expect("alert");
        let rows = route(&c, &forced);
        let dests: Vec<(Channel, &str)> = rows
            .iter()
            .map(|r| (r.channel, r.destination.as_str()))
            .collect();
        assert_eq!(
            dests,
            [
                (Channel::Email, "guard@example.com"),
                (Channel::Webhook, "https://hooks.example.com/kw")
            ]
        );
        let overdue = from_entry(
            "lobby",
            &z,
            &entry("alarm-raised", r#"{"alarm":"overdue"}"#),
        )
        .expect("alert");
        let rows = route(&c, &overdue);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].destination, "boss@example.com");
        let tamper = from_entry("lobby", &z, &entry("alarm-raised", r#"{"alarm":"tamper"}"#))
            .expect("alert");
        assert_eq!(route(&c, &tamper).len(), 1);
        let p = Payload::parse(&rows[1].payload).expect("payload");
        assert_eq!(p.title, overdue.title);
        let body: Value = serde_json::from_str(&p.webhook_body("kw-lobby-1-5")).expect("json");
        assert_eq!(body["id"], "kw-lobby-1-5");
        assert_eq!(body["alert"], "overdue");
    }

    #[test]
    fn keys_out_lists_every_loan_and_flags_the_overdue_ones() {
        let loans = [
            OpenLoan {
                key: "204".into(),
                holder: "alice".into(),
                holder_name: "Alice".into(),
                reason: "MAINT".into(),
                since: 1000,
                due: 5000,
            },
            OpenLoan {
                key: "M1".into(),
                holder: "bob".into(),
                holder_name: "Bob".into(),
                reason: "CLEAN".into(),
                since: 2000,
                due: 9000,
            },
        ];
        let a = keys_out("lobby", &TimeZone::UTC, "1970-01-01", &loans, 6000);
        assert_eq!(
            a.title,
            "[Keywarden lobby] keys out on 1970-01-01: 2 (1 overdue)"
        );
        assert!(
            a.text.contains("OVERDUE 204: Alice (alice), reason MAINT"),
            "{}",
            a.text
        );
        assert!(
            a.text.contains("\nM1: Bob (bob), reason CLEAN"),
            "{}",
            a.text
        );
        assert_eq!(a.data["keys"][0]["overdue"], true);
        assert_eq!(a.data["keys"][1]["overdue"], false);
        let none = keys_out("lobby", &TimeZone::UTC, "1970-01-01", &[], 6000);
        assert!(none.text.contains("No key is out."));
    }
}
