//! Identifying people at the cabinet: badge or fingerprint, then the PIN (checked by the driver with
//! Argon2id), wrong PINs and lockouts, and the second person for a critical key.

use super::*;

impl Core {
    pub(super) fn handle_identify(&mut self, user: Option<UserId>, factor: Factor, now: &Now) {
        if let Some(why) = self.out_of_service.clone() {
            return self.deny_show("", &Denial::OutOfService(why), "cabinet", now);
        }
        let second = match &self.session {
            Session::Idle | Session::Message { .. } => None,
            Session::SecondPerson { pending, .. } => Some(pending.clone()),
            _ => {
                // Someone is mid-session: a new scan does not hijack it.
                self.feedback(Actuation::Beep("error"));
                return;
            }
        };
        let Some(user_id) = user else {
            let denial = match factor {
                Factor::Badge => Denial::UnknownBadge,
                Factor::Fingerprint => Denial::UnknownFingerprint,
            };
            return self.deny_show("", &denial, "cabinet", now);
        };
        let Some(user) = self.state.users.get(&user_id).cloned() else {
            return self.deny_show("", &Denial::UnknownBadge, "cabinet", now);
        };
        let subject = user_subject(&user.name);
        let allowed = match user.factors {
            crate::model::Factors::BadgePin => factor == Factor::Badge,
            crate::model::Factors::FingerprintPin => factor == Factor::Fingerprint,
            crate::model::Factors::AnyPin => true,
        };
        let refusal = check_user(&user, now)
            .err()
            .or_else(|| (!allowed).then_some(Denial::WrongFactor))
            .or_else(|| (!user.has_pin).then_some(Denial::NoPin));
        if let Some(denial) = refusal {
            if let Some(pending) = second {
                // The first person keeps waiting for a valid second person.
                self.deny(&user.name, &denial, &subject);
                self.session = Session::SecondPerson {
                    pending,
                    deadline: now.mono + self.window(),
                };
                self.view_changed = true;
                return;
            }
            return self.deny_show(&user.name, &denial, &subject, now);
        }
        if let Some(p) = &second {
            if p.user == user_id {
                self.deny(&user.name, &Denial::SecondPersonSame, &subject);
                return;
            }
        }
        let deadline = now.mono + self.pin_time(second.is_some());
        self.session = Session::Pin {
            user: user_id,
            factor,
            digits: Zeroizing::new(String::new()),
            second,
            notice: None,
            deadline,
        };
        self.view_changed = true;
        self.feedback(Actuation::Beep("ack"));
    }
    /// The PIN check the core asked for came back.
    pub fn handle_pin_checked(&mut self, attempt: u64, ok: bool, now: &Now) {
        let Session::CheckingPin {
            user,
            factor,
            attempt: expected,
            second,
            ..
        } = &self.session
        else {
            return;
        };
        if *expected != attempt {
            return;
        }
        let (user_id, factor, second) = (*user, *factor, second.clone());
        let Some(user) = self.state.users.get(&user_id).cloned() else {
            return self.go_idle();
        };
        if !ok {
            return self.wrong_pin(&user, factor, second, now);
        }
        let mut changes = Vec::new();
        if user.failed_pins > 0 {
            changes.push(Change::PinReset { user: user_id });
            if let Some(u) = self.state.users.get_mut(&user_id) {
                u.failed_pins = 0;
            }
        }
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Authenticated,
                actor: user.name.clone(),
                subject: user_subject(&user.name),
                detail: vec![
                    ("factor", factor.as_str().to_owned()),
                    ("second_person", second.is_some().to_string()),
                ],
            }],
            vec![],
        );
        match second {
            None => {
                self.session = Session::ChooseKey {
                    user: user_id,
                    entry: String::new(),
                    notice: None,
                    deadline: now.mono + self.session_timeout(),
                };
                self.view_changed = true;
                self.feedback(Actuation::Beep("ack"));
            }
            Some(pending) => self.decide(pending, Some(user_id), now),
        }
    }
    pub(super) fn submit_pin(&mut self, now: &Now) {
        let Session::Pin {
            user,
            factor,
            digits,
            second,
            deadline,
            ..
        } = &mut self.session
        else {
            return;
        };
        if digits.is_empty() {
            return;
        }
        self.attempt += 1;
        let pin = Zeroizing::new(std::mem::take(&mut **digits));
        let (user, factor, second, deadline) = (*user, *factor, second.take(), *deadline);
        self.effects.push_back(Effect::CheckPin {
            user,
            pin,
            attempt: self.attempt,
        });
        self.session = Session::CheckingPin {
            user,
            factor,
            attempt: self.attempt,
            second,
            deadline: deadline.max(now.mono + Duration::from_secs(10)),
        };
        self.view_changed = true;
    }
    pub(super) fn wrong_pin(
        &mut self,
        user: &crate::model::User,
        factor: Factor,
        second: Option<PendingCritical>,
        now: &Now,
    ) {
        let count = user.failed_pins + 1;
        let limit = self.state.settings.pin_attempts.max(1);
        let subject = user_subject(&user.name);
        let locked_until =
            (count >= limit).then(|| now.wall + i64::from(self.state.settings.lockout_seconds));
        if let Some(u) = self.state.users.get_mut(&user.id) {
            u.failed_pins = count;
            u.locked_until = locked_until.or(u.locked_until);
        }
        let mut changes = vec![Change::PinFailed {
            user: user.id,
            count,
            locked_until,
        }];
        let mut events = vec![Event {
            kind: EventKind::PinWrong,
            actor: user.name.clone(),
            subject: subject.clone(),
            detail: vec![
                ("count", count.to_string()),
                ("factor", factor.as_str().into()),
            ],
        }];
        if let Some(until) = locked_until {
            if self.alarms.insert((AlarmKind::PinLockout, subject.clone())) {
                changes.push(Change::RaiseAlarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    at: now.wall,
                });
                events.push(alarm_event(
                    AlarmKind::PinLockout,
                    &subject,
                    true,
                    vec![("until", until.to_string())],
                ));
                self.notices.push_back(Notice::Alarm {
                    kind: AlarmKind::PinLockout,
                    subject: subject.clone(),
                    active: true,
                });
            }
            self.commit(changes, events, vec![]);
            let denial = Denial::LockedOut(until);
            self.notices.push_back(Notice::Denied {
                code: denial.code(),
                message: denial.to_string(),
            });
            self.feedback(Actuation::Beep("alarm"));
            return self.show(denial.to_string(), now);
        }
        self.commit(changes, events, vec![]);
        let denial = Denial::WrongPin(limit - count);
        self.notices.push_back(Notice::Denied {
            code: denial.code(),
            message: denial.to_string(),
        });
        self.feedback(Actuation::Beep("error"));
        let deadline = now.mono + self.pin_time(second.is_some());
        self.session = Session::Pin {
            user: user.id,
            factor,
            digits: Zeroizing::new(String::new()),
            second,
            notice: Some(denial.to_string()),
            deadline,
        };
        self.view_changed = true;
    }
    /// How long a PIN entry may take: the session timeout, or the second person's window.
    pub(super) fn pin_time(&self, second_person: bool) -> Duration {
        if second_person {
            self.window()
        } else {
            self.session_timeout()
        }
    }
    pub(super) fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.state.settings.dual_auth_window_seconds))
    }
}
