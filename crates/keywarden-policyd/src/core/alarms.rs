//! Alarms: raised and cleared as audit events with their state change; the wall-clock checks
//! (overdue keys, holders past their validity, lockouts that ended).

use super::*;

impl Core {
    /// hwd raised or cleared a door alarm (`forced`, `held-open`).
    pub fn handle_door_alarm(&mut self, kind: &str, active: bool, now: &Now) {
        let kind = match kind {
            "forced" => AlarmKind::DoorForced,
            "held-open" => AlarmKind::DoorHeldOpen,
            _ => return,
        };
        self.set_alarm(kind, "door".into(), active, vec![], now);
    }
    /// The tamper switch changed.
    pub fn handle_tamper(&mut self, active: bool, now: &Now) {
        self.set_alarm(AlarmKind::Tamper, "cabinet".into(), active, vec![], now);
    }
    /// Wall-clock checks: overdue keys, holders whose validity ended, lockouts that ended.
    /// The driver calls this periodically (every few seconds) and after the clock is set.
    pub fn handle_tick(&mut self, now: &Now) {
        if !now.clock_valid || self.out_of_service.is_some() {
            return;
        }
        // Backstop: a grant untaken long after every deadline, with no session waiting for it.
        let waiting = match &self.session {
            Session::TakeKey { key, .. } => Some(*key),
            _ => None,
        };
        let limit = i64::from(self.state.settings.release_seconds) + 5 * 60;
        let stale: Vec<KeyId> = self
            .state
            .loans
            .values()
            .filter(|l| l.taken_at.is_none() && Some(l.key) != waiting)
            .filter(|l| now.wall > l.granted_at + limit)
            .map(|l| l.key)
            .collect();
        for key in stale {
            self.settle_untaken(key, "stale-grant", now);
        }
        let loans: Vec<Loan> = self.state.loans.values().cloned().collect();
        for loan in loans {
            if loan.taken_at.is_none() {
                continue;
            }
            let label = self.label(loan.key);
            let subject = key_subject(&label);
            if now.wall >= loan.due_at {
                let holder = self.user_name(loan.user);
                self.set_alarm(
                    AlarmKind::Overdue,
                    subject.clone(),
                    true,
                    vec![("holder", holder), ("due_at", loan.due_at.to_string())],
                    now,
                );
            }
            let expired = self
                .state
                .users
                .get(&loan.user)
                .and_then(|u| u.valid_until)
                .is_some_and(|until| now.wall >= until);
            if expired {
                let holder = self.user_name(loan.user);
                self.set_alarm(
                    AlarmKind::HolderExpired,
                    subject,
                    true,
                    vec![("holder", holder)],
                    now,
                );
            }
        }
        let ended: Vec<(UserId, String)> = self
            .state
            .users
            .values()
            .filter(|u| u.locked_until.is_some_and(|t| now.wall >= t))
            .map(|u| (u.id, u.name.clone()))
            .collect();
        for (id, name) in ended {
            if let Some(u) = self.state.users.get_mut(&id) {
                u.locked_until = None;
                u.failed_pins = 0;
            }
            let subject = user_subject(&name);
            let mut events = vec![Event {
                kind: EventKind::LockoutEnded,
                actor: String::new(),
                subject: subject.clone(),
                detail: vec![],
            }];
            let mut changes = vec![Change::PinReset { user: id }];
            if self
                .alarms
                .remove(&(AlarmKind::PinLockout, subject.clone()))
            {
                changes.push(Change::ClearAlarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    at: now.wall,
                });
                events.push(alarm_event(AlarmKind::PinLockout, &subject, false, vec![]));
                self.notices.push_back(Notice::Alarm {
                    kind: AlarmKind::PinLockout,
                    subject,
                    active: false,
                });
            }
            self.commit(changes, events, vec![]);
        }
    }
    pub(super) fn set_alarm(
        &mut self,
        kind: AlarmKind,
        subject: String,
        active: bool,
        detail: Vec<(&'static str, String)>,
        now: &Now,
    ) {
        let entry = (kind, subject.clone());
        let changed = if active {
            self.alarms.insert(entry)
        } else {
            self.alarms.remove(&entry)
        };
        if !changed {
            return;
        }
        let change = if active {
            Change::RaiseAlarm {
                kind,
                subject: subject.clone(),
                at: now.wall,
            }
        } else {
            Change::ClearAlarm {
                kind,
                subject: subject.clone(),
                at: now.wall,
            }
        };
        self.commit(
            vec![change],
            vec![alarm_event(kind, &subject, active, detail)],
            vec![],
        );
        self.notices.push_back(Notice::Alarm {
            kind,
            subject,
            active,
        });
        self.view_changed = true;
    }
}

pub(super) fn alarm_event(
    kind: AlarmKind,
    subject: &str,
    active: bool,
    mut detail: Vec<(&'static str, String)>,
) -> Event {
    detail.insert(0, ("alarm", kind.as_str().to_owned()));
    Event {
        kind: if active {
            EventKind::AlarmRaised
        } else {
            EventKind::AlarmCleared
        },
        actor: String::new(),
        subject: subject.to_owned(),
        detail,
    }
}
