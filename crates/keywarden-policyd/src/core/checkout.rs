//! Checkout: choosing a key and a reason, the decision, the grant (recorded before anything opens)
//! and the removal that closes it; a removal nobody was granted is an alarm.

use super::*;

impl Core {
    /// Pick a key by label or tag code (in `choose-key`).
    pub fn choose_key(&mut self, text: &str, now: &Now) -> Result<(), ConsoleError> {
        let Session::ChooseKey { user, .. } = self.session else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        let Some(key) = self.state.key_by_label_or_tag(text.trim()).map(|k| k.id) else {
            return Err(ConsoleError::UnknownKey(text.to_owned()));
        };
        let Some(u) = self.state.users.get(&user) else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        if let Err(denial) = key_available(&self.state, u, key, now) {
            let label = self.label(key);
            let actor = u.name.clone();
            self.deny(&actor, &denial, &key_subject(&label));
            self.set_notice(format!("{label}: {denial}"));
            return Ok(());
        }
        self.session = Session::ChooseReason {
            user,
            key,
            entry: String::new(),
            deadline: now.mono + self.session_timeout(),
        };
        self.view_changed = true;
        Ok(())
    }
    /// Pick a reason code (in `choose-reason`): the checkout is decided.
    pub fn choose_reason(&mut self, code: &str, now: &Now) -> Result<(), ConsoleError> {
        let Session::ChooseReason { user, key, .. } = self.session else {
            return Err(ConsoleError::WrongState(self.session.name()));
        };
        if !self.state.reasons.get(code).is_some_and(|r| r.active) {
            return Err(ConsoleError::UnknownReason(code.to_owned()));
        }
        self.decide(
            PendingCritical {
                user,
                key,
                reason: code.to_owned(),
            },
            None,
            now,
        );
        Ok(())
    }
    pub(super) fn decide(&mut self, pending: PendingCritical, witness: Option<UserId>, now: &Now) {
        let request = CheckoutRequest {
            user: pending.user,
            key: pending.key,
            reason: pending.reason.clone(),
            witness,
        };
        let (actor, label) = self.names(Some(pending.user), pending.key);
        let subject = key_subject(&label);
        match decide_checkout(&self.state, &request, now) {
            Decision::Deny(denials) => {
                let first = denials.first().cloned().unwrap_or(Denial::NotPermitted);
                let all: Vec<&str> = denials.iter().map(Denial::code).collect();
                self.record(
                    EventKind::Denied,
                    &actor,
                    &subject,
                    vec![
                        ("reason", first.code().to_owned()),
                        ("message", first.to_string()),
                        ("all_reasons", all.join(",")),
                        ("request_reason", pending.reason.clone()),
                    ],
                );
                self.notices.push_back(Notice::Denied {
                    code: first.code(),
                    message: first.to_string(),
                });
                self.feedback(Actuation::Beep("error"));
                self.show(format!("{label}: {first}"), now);
            }
            Decision::NeedsSecondPerson => {
                self.session = Session::SecondPerson {
                    pending,
                    deadline: now.mono + self.window(),
                };
                self.view_changed = true;
                self.feedback(Actuation::Beep("attention"));
            }
            Decision::Grant { due_at } => self.grant(pending, witness, due_at, now),
        }
    }
    pub(super) fn grant(
        &mut self,
        p: PendingCritical,
        witness: Option<UserId>,
        due_at: UnixTime,
        now: &Now,
    ) {
        let slot = self.state.slot_of(p.key);
        let release = self.state.settings.release_seconds;
        let by_slot = self.state.settings.slot_locks && slot.is_some();
        let then = match (by_slot, slot) {
            (true, Some(s)) => vec![
                Actuation::ReleaseSlot(s, release),
                Actuation::Indicator(s, "blink"),
            ],
            _ => vec![Actuation::UnlockDoor(release)],
        };
        let (actor, label) = self.names(Some(p.user), p.key);
        let mut detail = vec![
            ("reason", p.reason.clone()),
            ("due_at", due_at.to_string()),
            ("slot", slot.map(|s| s.to_string()).unwrap_or_default()),
        ];
        if let Some(w) = witness {
            detail.push(("second_person", self.user_name(w)));
        }
        self.state.loans.insert(
            p.key,
            Loan {
                id: 0,
                key: p.key,
                user: p.user,
                witness,
                reason: p.reason.clone(),
                granted_at: now.wall,
                taken_at: None,
                due_at,
                slot,
            },
        );
        self.commit(
            vec![Change::OpenLoan {
                key: p.key,
                user: p.user,
                witness,
                reason: p.reason,
                granted_at: now.wall,
                due_at,
                slot,
            }],
            vec![Event {
                kind: EventKind::Granted,
                actor,
                subject: key_subject(&label),
                detail,
            }],
            then,
        );
        self.notices.push_back(Notice::Granted {
            key: label,
            slot: if by_slot { slot.unwrap_or(0) } else { 0 },
            due_at,
        });
        let grace = if by_slot { SLOT_GRACE } else { DOOR_GRACE };
        self.session = Session::TakeKey {
            user: p.user,
            key: p.key,
            slot: if by_slot { slot } else { None },
            deadline: now.mono + self.release_time() + grace,
        };
        self.view_changed = true;
    }
    pub(super) fn taken(&mut self, user: UserId, key: KeyId, slot: Option<SlotNumber>, now: &Now) {
        let (actor, label) = self.names(Some(user), key);
        let due = self.state.loans.get(&key).map(|l| l.due_at);
        if let Some(l) = self.state.loans.get_mut(&key) {
            l.taken_at = Some(now.wall);
        }
        let from = slot.or_else(|| self.state.slot_of(key));
        let mut changes = vec![Change::TakeLoan { key, at: now.wall }];
        let mut then = Vec::new();
        if let Some(s) = from {
            self.state.slot_contents.remove(&s);
            changes.push(Change::SlotContents { slot: s, key: None });
            then.push(Actuation::Indicator(s, "off"));
        }
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Removed,
                actor,
                subject: key_subject(&label),
                detail: vec![("slot", from.map(|s| s.to_string()).unwrap_or_default())],
            }],
            then,
        );
        let due = due
            .and_then(|d| jiff::Timestamp::from_second(d).ok())
            .map(|t| t.strftime(" (due %Y-%m-%d %H:%M UTC)").to_string())
            .unwrap_or_default();
        self.show(format!("Key {label} taken{due}"), now);
    }
    pub(super) fn key_removed(&mut self, slot: SlotNumber, now: &Now) {
        match self.session.clone() {
            Session::TakeKey {
                user,
                key,
                slot: Some(s),
                ..
            } if s == slot => return self.taken(user, key, Some(slot), now),
            Session::TakeKey {
                user,
                key,
                slot: None,
                ..
            } if self.state.slot_of(key) == Some(slot) => {
                return self.taken(user, key, Some(slot), now)
            }
            Session::Return {
                wrong: Some(w),
                key,
                ..
            } if w == slot => {
                // Moving the key out of the wrong slot, as asked.
                self.state.slot_contents.remove(&slot);
                if let Session::Return { wrong, .. } = &mut self.session {
                    *wrong = None;
                }
                self.view_changed = true;
                let label = self.label(key);
                self.commit(
                    vec![Change::SlotContents { slot, key: None }],
                    vec![],
                    vec![],
                );
                self.set_alarm(
                    AlarmKind::WrongSlot,
                    key_subject(&label),
                    false,
                    vec![],
                    now,
                );
                return;
            }
            _ => {}
        }
        // Nobody was granted this slot.
        let Some(key) = self.state.slot_contents.remove(&slot) else {
            // The records already had it empty: the sensor caught up with them.
            return;
        };
        let subject = key_subject(&self.label(key));
        self.commit(
            vec![Change::SlotContents { slot, key: None }],
            vec![],
            vec![],
        );
        self.set_alarm(
            AlarmKind::UnauthorisedRemoval,
            subject,
            true,
            vec![("slot", slot.to_string())],
            now,
        );
        self.feedback(Actuation::Beep("alarm"));
    }

    /// Settle a grant that was recorded but never taken and whose session is gone (the service
    /// restarted while the slot was released, or the grant outlived every deadline): the slot
    /// sensor decides. Key still present → the grant lapsed; slot empty → the key was taken at
    /// an unknown moment, recorded now. Either way the loan no longer blocks the key.
    pub(super) fn settle_untaken(&mut self, key: KeyId, why: &'static str, now: &Now) {
        let Some(loan) = self.state.loans.get(&key).cloned() else {
            return;
        };
        let (actor, label) = self.names(Some(loan.user), key);
        let slot = loan.slot.or_else(|| self.state.slot_of(key));
        let present = slot.and_then(|s| self.sensors.get(&s).copied());
        if present == Some(false) {
            if let Some(l) = self.state.loans.get_mut(&key) {
                l.taken_at = Some(now.wall);
            }
            let mut changes = vec![Change::TakeLoan { key, at: now.wall }];
            if let Some(s) = slot {
                self.state.slot_contents.remove(&s);
                changes.push(Change::SlotContents { slot: s, key: None });
            }
            self.commit(
                changes,
                vec![Event {
                    kind: EventKind::Removed,
                    actor,
                    subject: key_subject(&label),
                    detail: vec![
                        ("slot", slot.map(|s| s.to_string()).unwrap_or_default()),
                        ("seen", why.to_owned()),
                    ],
                }],
                vec![],
            );
        } else {
            self.state.loans.remove(&key);
            self.commit(
                vec![Change::CloseLoan {
                    key,
                    at: now.wall,
                    returned_by: None,
                }],
                vec![Event {
                    kind: EventKind::GrantLapsed,
                    actor,
                    subject: key_subject(&label),
                    detail: vec![
                        ("granted_at", loan.granted_at.to_string()),
                        ("seen", why.to_owned()),
                    ],
                }],
                vec![],
            );
        }
    }
}
