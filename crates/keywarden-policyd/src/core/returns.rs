//! Returns: a scanned tag releases a (random) free slot; the key going in closes its loan, records
//! who brought it back, and clears the alarms about it; a wrong slot is an alarm until moved.

use super::*;

impl Core {
    pub(super) fn start_return(&mut self, user: Option<UserId>, key: KeyId, now: &Now) {
        let (actor, label) = self.names(user, key);
        let subject = key_subject(&label);
        if self.state.slot_of(key).is_some() && !self.state.loans.contains_key(&key) {
            return self.deny_show(&actor, &Denial::AlreadyInCabinet, &subject, now);
        }
        let home = self
            .state
            .keys
            .get(&key)
            .and_then(|k| k.home_slot)
            .filter(|s| self.slot_free(*s));
        let target = if self.state.settings.random_return_slot || home.is_none() {
            let free: Vec<SlotNumber> = self
                .state
                .slots
                .iter()
                .copied()
                .filter(|s| self.slot_free(*s))
                .collect();
            free.into_iter().choose(&mut self.rng)
        } else {
            home
        };
        let Some(slot) = target else {
            return self.deny_show(&actor, &Denial::NoFreeSlot, &subject, now);
        };
        let release = self.state.settings.release_seconds;
        let then = if self.state.settings.slot_locks {
            vec![
                Actuation::ReleaseSlot(slot, release),
                Actuation::Indicator(slot, "blink"),
            ]
        } else {
            vec![
                Actuation::UnlockDoor(release),
                Actuation::Indicator(slot, "blink"),
            ]
        };
        self.commit(
            vec![],
            vec![Event {
                kind: EventKind::ReturnStarted,
                actor,
                subject,
                detail: vec![("slot", slot.to_string())],
            }],
            then,
        );
        let grace = if self.state.settings.slot_locks {
            SLOT_GRACE
        } else {
            DOOR_GRACE
        };
        self.session = Session::Return {
            user,
            key,
            slot,
            wrong: None,
            returned: false,
            deadline: now.mono + self.release_time() + grace,
        };
        self.view_changed = true;
    }
    pub(super) fn key_inserted(&mut self, slot: SlotNumber, now: &Now) {
        if let Session::Return {
            user,
            key,
            slot: target,
            returned,
            ..
        } = self.session.clone()
        {
            if !returned {
                self.returned(user, key, slot, now);
                if slot == target {
                    self.feedback(Actuation::Indicator(slot, "off"));
                    self.show(format!("Key {} returned, thank you", self.label(key)), now);
                } else {
                    let label = self.label(key);
                    self.set_alarm(
                        AlarmKind::WrongSlot,
                        key_subject(&label),
                        true,
                        vec![
                            ("expected", target.to_string()),
                            ("actual", slot.to_string()),
                        ],
                        now,
                    );
                    self.feedback(Actuation::Beep("attention"));
                    if let Session::Return {
                        wrong, returned, ..
                    } = &mut self.session
                    {
                        *wrong = Some(slot);
                        *returned = true;
                    }
                    self.view_changed = true;
                }
                return;
            }
            if slot == target {
                // The key moved from the wrong slot to the right one.
                self.state.slot_contents.insert(slot, key);
                self.commit(
                    vec![Change::SlotContents {
                        slot,
                        key: Some(key),
                    }],
                    vec![],
                    vec![Actuation::Indicator(slot, "off")],
                );
                self.show(format!("Key {} returned, thank you", self.label(key)), now);
                return;
            }
        }
        if self.state.slot_contents.contains_key(&slot) {
            // The records already place a key here: the sensor caught up with them.
            return;
        }
        // No return in progress: a key whose home is this slot may simply be put back
        // (fixed-slot cabinets); anything else is an unidentified key in a slot.
        let candidate = (!self.state.settings.random_return_slot)
            .then(|| {
                self.state
                    .keys
                    .values()
                    .find(|k| k.home_slot == Some(slot) && self.state.slot_of(k.id).is_none())
            })
            .flatten()
            .map(|k| k.id);
        match candidate {
            Some(key) if !self.state.slot_contents.contains_key(&slot) => {
                self.returned(None, key, slot, now)
            }
            _ => {
                self.set_alarm(
                    AlarmKind::WrongSlot,
                    slot_subject(slot),
                    true,
                    vec![("detail", "unidentified key inserted".into())],
                    now,
                );
                self.feedback(Actuation::Beep("attention"));
            }
        }
    }
    /// The key is in `slot` again: close its loan (if any), record who brought it back, clear
    /// the alarms about it.
    pub(super) fn returned(&mut self, by: Option<UserId>, key: KeyId, slot: SlotNumber, now: &Now) {
        let label = self.label(key);
        let subject = key_subject(&label);
        let loan = self.state.loans.remove(&key);
        self.state.slot_contents.insert(slot, key);
        let mut changes = vec![Change::SlotContents {
            slot,
            key: Some(key),
        }];
        let mut detail = vec![("slot", slot.to_string())];
        if let Some(l) = &loan {
            changes.insert(
                0,
                Change::CloseLoan {
                    key,
                    at: now.wall,
                    returned_by: by,
                },
            );
            detail.push(("taken_by", self.user_name(l.user)));
            detail.push(("due_at", l.due_at.to_string()));
            detail.push(("late", (now.wall > l.due_at).to_string()));
            detail.push((
                "different_user",
                by.is_some_and(|b| b != l.user).to_string(),
            ));
        } else {
            detail.push(("taken_by", String::new()));
        }
        let actor = by.map(|u| self.user_name(u)).unwrap_or_default();
        self.commit(
            changes,
            vec![Event {
                kind: EventKind::Returned,
                actor,
                subject: subject.clone(),
                detail,
            }],
            vec![],
        );
        for kind in [
            AlarmKind::Overdue,
            AlarmKind::HolderExpired,
            AlarmKind::UnauthorisedRemoval,
        ] {
            self.set_alarm(kind, subject.clone(), false, vec![], now);
        }
    }
    pub(super) fn slot_free(&self, slot: SlotNumber) -> bool {
        !self.state.slot_contents.contains_key(&slot)
            && !self.sensors.get(&slot).copied().unwrap_or(false)
    }
}
