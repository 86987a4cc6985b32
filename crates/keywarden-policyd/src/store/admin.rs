//! Admin changes: [`Store::apply_admin`] validates an [`AdminOp`] against the rules and the
//! current records, writes it and its one audit entry (kind `admin`) in one transaction.
//!
//! The audit entry's subject names what changed (`user:alice`, `key:204`, `group:night`,
//! `schedule:office`, `holiday:2025-12-25`, `reason:MAINT`, `permission:7`, `reservation:3`,
//! `alarm:12`); its detail is a JSON object with the op name first, then the fields as given.
//! It never holds a PIN, a badge code or any hash of either.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

use super::audit::{detail_json, Appender};
use super::commit::set_slot;
use super::credentials::{check_pin_strength, hash_pin, BadgeKey};
use super::{rules, Store};
use crate::admin::{Actor, AdminOp, KeyField, SubjectName, TargetName, UserField};
use crate::core::effects::{key_subject, user_subject};
use crate::error::{Error, Result};
use crate::model::{Factors, KeyKind, Role, Settings, SlotNumber, UnixTime, Window};

/// What an admin change produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Done; nothing new to name.
    Done,
    /// A new row: the permission id (`Grant`) or reservation id (`Reserve`).
    Created(i64),
}

impl Store {
    /// Validate `op`, write it and one audit entry (kind `admin`, actor `actor.audit_name()`)
    /// in one transaction. `settings` gives the PIN rules; `at_ms` is the audit time (and, in
    /// seconds, "now" for reservations and alarm acknowledgements). Refusals are
    /// [`Error::NotFound`], [`Error::AlreadyExists`], [`Error::Invalid`], [`Error::WeakPin`]
    /// or [`Error::Conflict`], and write nothing.
    ///
    /// `SetPin` hashes with Argon2id before the transaction starts (slow: call it off the
    /// async runtime).
    pub fn apply_admin(
        &mut self,
        actor: &Actor,
        op: &AdminOp,
        settings: &Settings,
        at_ms: i64,
    ) -> Result<AdminOutcome> {
        // Pure checks and the slow hash first, outside the write lock.
        let pin_hash = match op {
            AdminOp::SetPin { pin, .. } => {
                check_pin_strength(pin, settings)?;
                Some(hash_pin(pin)?)
            }
            _ => None,
        };
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| Error::sqlite(path, "begin an admin change", e))?;
        let admin = Admin {
            conn: &tx,
            path,
            badge_key: &self.badge_key,
            actor,
            now: at_ms.div_euclid(1000),
        };
        let (outcome, record) = admin.apply(op, pin_hash)?;
        let mut appender = Appender::new(self.chain.head());
        appender.append(
            &tx,
            path,
            at_ms,
            "admin",
            &actor.audit_name(),
            &record.subject,
            &detail_json(record.detail),
        )?;
        let (chain, _) = appender.finish(&tx, path, &self.device_key, at_ms)?;
        tx.commit()
            .map_err(|e| Error::sqlite(path, "commit an admin change", e))?;
        self.chain = chain;
        Ok(outcome)
    }
}

/// The audit record of one change.
struct Record {
    subject: String,
    detail: Vec<(&'static str, Value)>,
}

impl Record {
    fn new(subject: String, op: &'static str) -> Record {
        Record {
            subject,
            detail: vec![("op", Value::from(op))],
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<Value>) -> Record {
        self.detail.push((name, value.into()));
        self
    }

    fn push(&mut self, name: &'static str, value: impl Into<Value>) {
        self.detail.push((name, value.into()));
    }
}

/// A user's editable columns.
struct UserRow {
    display_name: String,
    role: Role,
    active: bool,
    valid_from: Option<UnixTime>,
    valid_until: Option<UnixTime>,
    factors: Factors,
    max_keys_out: Option<u32>,
    max_checkout_minutes: Option<u32>,
}

/// A key's editable columns.
struct KeyRow {
    label: String,
    tag: String,
    kind: KeyKind,
    notes: String,
    home_slot: Option<SlotNumber>,
    critical: bool,
    active: bool,
}

/// One admin change inside its transaction.
struct Admin<'a> {
    conn: &'a Connection,
    path: &'a Path,
    badge_key: &'a BadgeKey,
    actor: &'a Actor,
    /// Unix seconds.
    now: UnixTime,
}

impl Admin<'_> {
    fn sql(&self, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |e| Error::sqlite(self.path, operation, e)
    }

    fn apply(&self, op: &AdminOp, pin_hash: Option<String>) -> Result<(AdminOutcome, Record)> {
        let done = |record| Ok((AdminOutcome::Done, record));
        match op {
            AdminOp::AddUser { name, role, fields } => done(self.add_user(name, *role, fields)?),
            AdminOp::UpdateUser { name, fields } => done(self.update_user(name, fields)?),
            AdminOp::RemoveUser { name } => done(self.remove_user(name)?),
            AdminOp::SetPin { user, .. } => match pin_hash {
                Some(hash) => done(self.set_pin(user, &hash)?),
                None => Err(Error::PinHash {
                    detail: "no hash computed".to_owned(),
                }),
            },
            AdminOp::AddBadge { user, code } => done(self.add_badge(user, code)?),
            AdminOp::ClearBadges { user } => done(self.clear_badges(user)?),
            AdminOp::AddFingerprint { user, template } => {
                done(self.add_fingerprint(user, *template)?)
            }
            AdminOp::RemoveFingerprint { template } => done(self.remove_fingerprint(*template)?),
            AdminOp::Unlock { user } => done(self.unlock(user)?),
            AdminOp::AddGroup { name } => done(self.add_group(name)?),
            AdminOp::RemoveGroup { name } => done(self.remove_group(name)?),
            AdminOp::AddMember { group, user } => done(self.add_member(group, user)?),
            AdminOp::RemoveMember { group, user } => done(self.remove_member(group, user)?),
            AdminOp::AddKey {
                label,
                tag,
                kind,
                fields,
            } => done(self.add_key(label, tag, *kind, fields)?),
            AdminOp::UpdateKey { label, fields } => done(self.update_key(label, fields)?),
            AdminOp::RemoveKey { label } => done(self.remove_key(label)?),
            AdminOp::PlaceKey { label, slot } => done(self.place_key(label, *slot)?),
            AdminOp::Grant {
                subject,
                target,
                schedule,
            } => self.grant(subject, target, schedule.as_deref()),
            AdminOp::Revoke { id } => done(self.revoke(*id)?),
            AdminOp::SetSchedule {
                name,
                windows,
                on_holidays,
            } => done(self.set_schedule(name, windows, *on_holidays)?),
            AdminOp::RemoveSchedule { name } => done(self.remove_schedule(name)?),
            AdminOp::AddHoliday { date, name } => done(self.add_holiday(date, name)?),
            AdminOp::RemoveHoliday { date } => done(self.remove_holiday(date)?),
            AdminOp::SetReason {
                code,
                description,
                max_minutes,
            } => done(self.set_reason(code, description, *max_minutes)?),
            AdminOp::RemoveReason { code } => done(self.remove_reason(code)?),
            AdminOp::Reserve {
                key,
                user,
                from,
                until,
            } => self.reserve(key, user, *from, *until),
            AdminOp::CancelReservation { id } => done(self.cancel_reservation(*id)?),
            AdminOp::AcknowledgeAlarm { id, note } => done(self.acknowledge_alarm(*id, note)?),
        }
    }

    // ---- lookups ----------------------------------------------------------------------------

    /// Id of the row of `table` whose `column` is `name`.
    fn id_by(&self, what: &'static str, sql: &str, name: &str) -> Result<i64> {
        self.conn
            .query_row(sql, [name], |row| row.get(0))
            .optional()
            .map_err(self.sql("look a name up"))?
            .ok_or_else(|| Error::not_found(what, name))
    }

    fn user_id(&self, name: &str) -> Result<i64> {
        self.id_by("user", "SELECT id FROM users WHERE name = ?1", name)
    }

    fn group_id(&self, name: &str) -> Result<i64> {
        self.id_by("group", "SELECT id FROM groups WHERE name = ?1", name)
    }

    fn key_id(&self, label: &str) -> Result<i64> {
        self.id_by("key", "SELECT id FROM keys WHERE label = ?1", label)
    }

    fn schedule_id(&self, name: &str) -> Result<i64> {
        self.id_by("schedule", "SELECT id FROM schedules WHERE name = ?1", name)
    }

    fn exists(&self, sql: &str, param: impl rusqlite::ToSql) -> Result<bool> {
        self.conn
            .query_row(sql, [param], |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
            .map_err(self.sql("check for a row"))
    }

    fn count(&self, sql: &str, param: impl rusqlite::ToSql) -> Result<i64> {
        self.conn
            .query_row(sql, [param], |row| row.get(0))
            .map_err(self.sql("count rows"))
    }

    /// The open loan of a key, if any (id).
    fn open_loan(&self, key: i64) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM loans WHERE key_id = ?1 AND closed_at IS NULL",
                [key],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql("look for an open loan"))
    }

    /// Refuse a slot that is not on the board (the `slots` table mirrors the board file).
    fn board_slot(&self, slot: SlotNumber) -> Result<()> {
        if self.exists("SELECT 1 FROM slots WHERE number = ?1", slot)? {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("slot {slot}"),
                "the board has no such slot",
            ))
        }
    }

    // ---- users and credentials --------------------------------------------------------------

    fn add_user(&self, name: &str, role: Role, fields: &[UserField]) -> Result<Record> {
        rules::login(name)?;
        if self.exists("SELECT 1 FROM users WHERE name = ?1", name)? {
            return Err(Error::exists("user", name));
        }
        let mut row = UserRow {
            display_name: name.to_owned(),
            role,
            active: true,
            valid_from: None,
            valid_until: None,
            factors: Factors::BadgePin,
            max_keys_out: None,
            max_checkout_minutes: None,
        };
        let mut record = Record::new(user_subject(name), "add-user")
            .with("name", name)
            .with("role", role.as_str());
        apply_user_fields(name, &mut row, fields, &mut record)?;
        self.conn
            .execute(
                "INSERT INTO users (name, display_name, role, active, valid_from, valid_until,
                                    factors, max_keys_out, max_checkout_minutes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    name,
                    row.display_name,
                    row.role.as_str(),
                    row.active,
                    row.valid_from,
                    row.valid_until,
                    row.factors.as_str(),
                    row.max_keys_out,
                    row.max_checkout_minutes
                ],
            )
            .map_err(self.sql("add a user"))?;
        Ok(record)
    }

    fn update_user(&self, name: &str, fields: &[UserField]) -> Result<Record> {
        if fields.is_empty() {
            return Err(Error::invalid(
                format!("user {name:?}"),
                "nothing to change",
            ));
        }
        let id = self.user_id(name)?;
        let mut row = self
            .conn
            .query_row(
                "SELECT display_name, role, active, valid_from, valid_until, factors,
                        max_keys_out, max_checkout_minutes
                 FROM users WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<u32>>(6)?,
                        r.get::<_, Option<u32>>(7)?,
                    ))
                },
            )
            .map_err(self.sql("read a user"))
            .and_then(|r| {
                let bad = |e: crate::model::UnknownName| Error::BadRecord {
                    table: "users",
                    row: id.to_string(),
                    problem: e.to_string(),
                };
                Ok(UserRow {
                    display_name: r.0,
                    role: r.1.parse().map_err(bad)?,
                    active: r.2,
                    valid_from: r.3,
                    valid_until: r.4,
                    factors: r.5.parse().map_err(bad)?,
                    max_keys_out: r.6,
                    max_checkout_minutes: r.7,
                })
            })?;
        let mut record = Record::new(user_subject(name), "update-user");
        apply_user_fields(name, &mut row, fields, &mut record)?;
        self.conn
            .execute(
                "UPDATE users SET display_name = ?2, role = ?3, active = ?4, valid_from = ?5,
                    valid_until = ?6, factors = ?7, max_keys_out = ?8, max_checkout_minutes = ?9
                 WHERE id = ?1",
                params![
                    id,
                    row.display_name,
                    row.role.as_str(),
                    row.active,
                    row.valid_from,
                    row.valid_until,
                    row.factors.as_str(),
                    row.max_keys_out,
                    row.max_checkout_minutes
                ],
            )
            .map_err(self.sql("update a user"))?;
        Ok(record)
    }

    /// Deactivate, and delete the credentials: badges, fingerprints (the templates on the module
    /// are listed in the record so they can be erased there), PIN. History stays.
    fn remove_user(&self, name: &str) -> Result<Record> {
        let id = self.user_id(name)?;
        let templates: Vec<u32> = {
            let mut stmt = self
                .conn
                .prepare("SELECT template FROM fingerprints WHERE user_id = ?1 ORDER BY template")
                .map_err(self.sql("list fingerprints"))?;
            let rows = stmt
                .query_map([id], |row| row.get(0))
                .map_err(self.sql("list fingerprints"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.sql("list fingerprints"))?
        };
        let badges = self
            .conn
            .execute("DELETE FROM badges WHERE user_id = ?1", [id])
            .map_err(self.sql("remove badges"))?;
        self.conn
            .execute("DELETE FROM fingerprints WHERE user_id = ?1", [id])
            .map_err(self.sql("remove fingerprints"))?;
        self.conn
            .execute(
                "UPDATE users SET active = 0, pin_hash = NULL, failed_pins = 0,
                    locked_until = NULL
                 WHERE id = ?1",
                [id],
            )
            .map_err(self.sql("deactivate a user"))?;
        Ok(Record::new(user_subject(name), "remove-user")
            .with("badges_removed", badges)
            .with("fingerprints_removed", templates))
    }

    fn set_pin(&self, user: &str, hash: &str) -> Result<Record> {
        let id = self.user_id(user)?;
        self.conn
            .execute(
                "UPDATE users SET pin_hash = ?2 WHERE id = ?1",
                params![id, hash],
            )
            .map_err(self.sql("set a PIN"))?;
        Ok(Record::new(user_subject(user), "set-pin"))
    }

    fn add_badge(&self, user: &str, code: &str) -> Result<Record> {
        let id = self.user_id(user)?;
        rules::badge_code(code)?;
        let hash = self.badge_key.hash(code);
        if self.exists("SELECT 1 FROM badges WHERE hash = ?1", &hash)? {
            return Err(Error::exists("badge", ""));
        }
        if self.exists("SELECT 1 FROM keys WHERE tag = ?1", code)? {
            return Err(Error::conflict(
                "badge",
                "a key's tag has the same code; a scan must name either a person or a key",
            ));
        }
        self.conn
            .execute(
                "INSERT INTO badges (hash, user_id) VALUES (?1, ?2)",
                params![hash, id],
            )
            .map_err(self.sql("add a badge"))?;
        let badges = self.count("SELECT count(*) FROM badges WHERE user_id = ?1", id)?;
        Ok(Record::new(user_subject(user), "add-badge").with("badges", badges))
    }

    fn clear_badges(&self, user: &str) -> Result<Record> {
        let id = self.user_id(user)?;
        let removed = self
            .conn
            .execute("DELETE FROM badges WHERE user_id = ?1", [id])
            .map_err(self.sql("remove badges"))?;
        Ok(Record::new(user_subject(user), "clear-badges").with("removed", removed))
    }

    fn add_fingerprint(&self, user: &str, template: u32) -> Result<Record> {
        let id = self.user_id(user)?;
        if self.exists("SELECT 1 FROM fingerprints WHERE template = ?1", template)? {
            return Err(Error::exists("fingerprint", template.to_string()));
        }
        self.conn
            .execute(
                "INSERT INTO fingerprints (template, user_id) VALUES (?1, ?2)",
                params![template, id],
            )
            .map_err(self.sql("add a fingerprint"))?;
        Ok(Record::new(user_subject(user), "add-fingerprint").with("template", template))
    }

    fn remove_fingerprint(&self, template: u32) -> Result<Record> {
        let owner: Option<String> = self
            .conn
            .query_row(
                "SELECT u.name FROM fingerprints f JOIN users u ON u.id = f.user_id
                 WHERE f.template = ?1",
                [template],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql("look a fingerprint up"))?;
        let owner =
            owner.ok_or_else(|| Error::not_found("fingerprint template", template.to_string()))?;
        self.conn
            .execute("DELETE FROM fingerprints WHERE template = ?1", [template])
            .map_err(self.sql("remove a fingerprint"))?;
        Ok(Record::new(user_subject(&owner), "remove-fingerprint").with("template", template))
    }

    fn unlock(&self, user: &str) -> Result<Record> {
        let id = self.user_id(user)?;
        let (failed, locked_until): (u32, Option<i64>) = self
            .conn
            .query_row(
                "SELECT failed_pins, locked_until FROM users WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(self.sql("read a lockout"))?;
        self.conn
            .execute(
                "UPDATE users SET failed_pins = 0, locked_until = NULL WHERE id = ?1",
                [id],
            )
            .map_err(self.sql("end a lockout"))?;
        Ok(Record::new(user_subject(user), "unlock")
            .with("failed_pins", failed)
            .with("locked_until", locked_until))
    }

    // ---- groups -----------------------------------------------------------------------------

    fn add_group(&self, name: &str) -> Result<Record> {
        rules::entity_name("group name", name)?;
        if self.exists("SELECT 1 FROM groups WHERE name = ?1", name)? {
            return Err(Error::exists("group", name));
        }
        self.conn
            .execute("INSERT INTO groups (name) VALUES (?1)", [name])
            .map_err(self.sql("add a group"))?;
        Ok(Record::new(format!("group:{name}"), "add-group"))
    }

    fn remove_group(&self, name: &str) -> Result<Record> {
        let id = self.group_id(name)?;
        let members = self
            .conn
            .execute("DELETE FROM group_members WHERE group_id = ?1", [id])
            .map_err(self.sql("remove group members"))?;
        let permissions = self
            .conn
            .execute("DELETE FROM permissions WHERE group_id = ?1", [id])
            .map_err(self.sql("remove group permissions"))?;
        self.conn
            .execute("DELETE FROM groups WHERE id = ?1", [id])
            .map_err(self.sql("remove a group"))?;
        Ok(Record::new(format!("group:{name}"), "remove-group")
            .with("members_removed", members)
            .with("permissions_removed", permissions))
    }

    fn add_member(&self, group: &str, user: &str) -> Result<Record> {
        let gid = self.group_id(group)?;
        let uid = self.user_id(user)?;
        let inserted = self
            .conn
            .execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![gid, uid],
            )
            .map_err(self.sql("add a group member"))?;
        if inserted == 0 {
            return Err(Error::exists("group member", format!("{user} in {group}")));
        }
        Ok(Record::new(format!("group:{group}"), "add-member").with("user", user))
    }

    fn remove_member(&self, group: &str, user: &str) -> Result<Record> {
        let gid = self.group_id(group)?;
        let uid = self.user_id(user)?;
        let removed = self
            .conn
            .execute(
                "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                params![gid, uid],
            )
            .map_err(self.sql("remove a group member"))?;
        if removed == 0 {
            return Err(Error::not_found(
                "group member",
                format!("{user} in {group}"),
            ));
        }
        Ok(Record::new(format!("group:{group}"), "remove-member").with("user", user))
    }

    // ---- keys and slots ---------------------------------------------------------------------

    fn add_key(
        &self,
        label: &str,
        tag: &str,
        kind: KeyKind,
        fields: &[KeyField],
    ) -> Result<Record> {
        let mut row = KeyRow {
            label: label.to_owned(),
            tag: tag.to_owned(),
            kind,
            notes: String::new(),
            home_slot: None,
            critical: false,
            active: true,
        };
        let mut record = Record::new(key_subject(label), "add-key")
            .with("label", label)
            .with("tag", tag)
            .with("kind", kind.as_str());
        apply_key_fields(&mut row, fields, &mut record)?;
        self.check_key_row(None, &row)?;
        self.conn
            .execute(
                "INSERT INTO keys (label, tag, kind, notes, home_slot, critical, active)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.label,
                    row.tag,
                    row.kind.as_str(),
                    row.notes,
                    row.home_slot,
                    row.critical,
                    row.active
                ],
            )
            .map_err(self.sql("add a key"))?;
        Ok(record)
    }

    fn update_key(&self, label: &str, fields: &[KeyField]) -> Result<Record> {
        if fields.is_empty() {
            return Err(Error::invalid(
                format!("key {label:?}"),
                "nothing to change",
            ));
        }
        let id = self.key_id(label)?;
        let mut row =
            self.conn
                .query_row(
                    "SELECT label, tag, kind, notes, home_slot, critical, active FROM keys
                 WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<u32>>(4)?,
                            r.get::<_, bool>(5)?,
                            r.get::<_, bool>(6)?,
                        ))
                    },
                )
                .map_err(self.sql("read a key"))
                .and_then(|r| {
                    Ok(KeyRow {
                        label: r.0,
                        tag: r.1,
                        kind: r.2.parse().map_err(|e: crate::model::UnknownName| {
                            Error::BadRecord {
                                table: "keys",
                                row: id.to_string(),
                                problem: e.to_string(),
                            }
                        })?,
                        notes: r.3,
                        home_slot: r.4,
                        critical: r.5,
                        active: r.6,
                    })
                })?;
        let was_active = row.active;
        let mut record = Record::new(key_subject(label), "update-key");
        apply_key_fields(&mut row, fields, &mut record)?;
        self.check_key_row(Some(id), &row)?;
        if was_active && !row.active {
            self.refuse_if_out(id, label, "cannot be retired while it is out")?;
        }
        self.conn
            .execute(
                "UPDATE keys SET label = ?2, tag = ?3, kind = ?4, notes = ?5, home_slot = ?6,
                    critical = ?7, active = ?8
                 WHERE id = ?1",
                params![
                    id,
                    row.label,
                    row.tag,
                    row.kind.as_str(),
                    row.notes,
                    row.home_slot,
                    row.critical,
                    row.active
                ],
            )
            .map_err(self.sql("update a key"))?;
        Ok(record)
    }

    /// Uniqueness and board checks for a key row (`id` = the key itself when updating).
    fn check_key_row(&self, id: Option<i64>, row: &KeyRow) -> Result<()> {
        let other = |sql: &str, value: &dyn rusqlite::ToSql| -> Result<Option<String>> {
            self.conn
                .query_row(sql, params![value, id.unwrap_or(-1)], |r| r.get(0))
                .optional()
                .map_err(self.sql("check a key"))
        };
        if other(
            "SELECT label FROM keys WHERE label = ?1 AND id <> ?2",
            &row.label,
        )?
        .is_some()
        {
            return Err(Error::exists("key", row.label.as_str()));
        }
        if other(
            "SELECT label FROM keys WHERE tag = ?1 AND id <> ?2",
            &row.tag,
        )?
        .is_some()
        {
            return Err(Error::exists("key tag", row.tag.as_str()));
        }
        // One reader sees both badges and key tags: a code must never be both.
        let tag_hash = self.badge_key.hash(&row.tag);
        if self.exists("SELECT 1 FROM badges WHERE hash = ?1", &tag_hash)? {
            return Err(Error::conflict(
                format!("key tag {:?}", row.tag),
                "a badge has the same code; a scan must name either a person or a key",
            ));
        }
        if let Some(slot) = row.home_slot {
            self.board_slot(slot)?;
            if let Some(holder) = other(
                "SELECT label FROM keys WHERE home_slot = ?1 AND id <> ?2",
                &slot,
            )? {
                return Err(Error::conflict(
                    format!("home slot {slot}"),
                    format!("already the home of key {holder:?}"),
                ));
            }
        }
        Ok(())
    }

    fn refuse_if_out(&self, key: i64, label: &str, problem: &str) -> Result<()> {
        match self.open_loan(key)? {
            Some(loan) => Err(Error::conflict(
                format!("key {label:?}"),
                format!("{problem} (open loan {loan})"),
            )),
            None => Ok(()),
        }
    }

    fn remove_key(&self, label: &str) -> Result<Record> {
        let id = self.key_id(label)?;
        self.refuse_if_out(id, label, "cannot be retired while it is out")?;
        self.conn
            .execute("UPDATE keys SET active = 0 WHERE id = ?1", [id])
            .map_err(self.sql("retire a key"))?;
        Ok(Record::new(key_subject(label), "remove-key"))
    }

    fn place_key(&self, label: &str, slot: SlotNumber) -> Result<Record> {
        let id = self.key_id(label)?;
        self.board_slot(slot)?;
        self.refuse_if_out(id, label, "cannot be placed while it is out")?;
        let holder: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT k.id, k.label FROM slots s JOIN keys k ON k.id = s.key_id
                 WHERE s.number = ?1",
                [slot],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.sql("read a slot"))?;
        if let Some((other, other_label)) = holder {
            if other != id {
                return Err(Error::conflict(
                    format!("slot {slot}"),
                    format!("holds key {other_label:?}"),
                ));
            }
        }
        let from: Option<u32> = self
            .conn
            .query_row("SELECT number FROM slots WHERE key_id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sql("read a slot"))?;
        set_slot(self.conn, self.path, slot, Some(id))?;
        Ok(Record::new(key_subject(label), "place-key")
            .with("slot", slot)
            .with("from_slot", from))
    }

    // ---- permissions and schedules ----------------------------------------------------------

    fn grant(
        &self,
        subject: &SubjectName,
        target: &TargetName,
        schedule: Option<&str>,
    ) -> Result<(AdminOutcome, Record)> {
        let (user, group, subject_text) = match subject {
            SubjectName::User(name) => (Some(self.user_id(name)?), None, user_subject(name)),
            SubjectName::Group(name) => (None, Some(self.group_id(name)?), format!("group:{name}")),
        };
        let (key, kind, target_text) = match target {
            TargetName::Key(label) => (Some(self.key_id(label)?), None, key_subject(label)),
            TargetName::Kind(KeyKind::Restricted) => {
                return Err(Error::invalid(
                    "permission on kind:restricted",
                    "restricted keys need a permission per key",
                ))
            }
            TargetName::Kind(kind) => (None, Some(kind.as_str()), format!("kind:{kind}")),
        };
        let schedule_id = schedule.map(|name| self.schedule_id(name)).transpose()?;
        let duplicate: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM permissions WHERE user_id IS ?1 AND group_id IS ?2
                    AND key_id IS ?3 AND kind IS ?4 AND schedule_id IS ?5",
                params![user, group, key, kind, schedule_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql("look for a permission"))?;
        if let Some(id) = duplicate {
            return Err(Error::exists(
                "permission",
                format!("{id} ({subject_text} may take {target_text})"),
            ));
        }
        self.conn
            .execute(
                "INSERT INTO permissions (user_id, group_id, key_id, kind, schedule_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user, group, key, kind, schedule_id],
            )
            .map_err(self.sql("grant a permission"))?;
        let id = self.conn.last_insert_rowid();
        let record = Record::new(format!("permission:{id}"), "grant")
            .with("subject", subject_text)
            .with("target", target_text)
            .with("schedule", schedule);
        Ok((AdminOutcome::Created(id), record))
    }

    fn revoke(&self, id: i64) -> Result<Record> {
        let described: Option<(String, String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT coalesce('user:' || u.name, 'group:' || g.name),
                        coalesce('key:' || k.label, 'kind:' || p.kind),
                        s.name
                 FROM permissions p
                 LEFT JOIN users u ON u.id = p.user_id
                 LEFT JOIN groups g ON g.id = p.group_id
                 LEFT JOIN keys k ON k.id = p.key_id
                 LEFT JOIN schedules s ON s.id = p.schedule_id
                 WHERE p.id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(self.sql("read a permission"))?;
        let (subject, target, schedule) =
            described.ok_or_else(|| Error::not_found("permission", id.to_string()))?;
        self.conn
            .execute("DELETE FROM permissions WHERE id = ?1", [id])
            .map_err(self.sql("revoke a permission"))?;
        Ok(Record::new(format!("permission:{id}"), "revoke")
            .with("subject", subject)
            .with("target", target)
            .with("schedule", schedule))
    }

    fn set_schedule(&self, name: &str, windows: &[Window], on_holidays: bool) -> Result<Record> {
        rules::entity_name("schedule name", name)?;
        rules::windows(name, windows)?;
        let existing: Option<i64> = self
            .conn
            .query_row("SELECT id FROM schedules WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sql("look a schedule up"))?;
        let id = match existing {
            Some(id) => {
                self.conn
                    .execute(
                        "UPDATE schedules SET on_holidays = ?2 WHERE id = ?1",
                        params![id, on_holidays],
                    )
                    .map_err(self.sql("update a schedule"))?;
                self.conn
                    .execute("DELETE FROM schedule_windows WHERE schedule_id = ?1", [id])
                    .map_err(self.sql("replace schedule windows"))?;
                id
            }
            None => {
                self.conn
                    .execute(
                        "INSERT INTO schedules (name, on_holidays) VALUES (?1, ?2)",
                        params![name, on_holidays],
                    )
                    .map_err(self.sql("add a schedule"))?;
                self.conn.last_insert_rowid()
            }
        };
        for (position, w) in windows.iter().enumerate() {
            self.conn
                .execute(
                    "INSERT INTO schedule_windows (schedule_id, position, days, start_minute,
                                                   end_minute)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, position as i64, w.days, w.start, w.end],
                )
                .map_err(self.sql("add a schedule window"))?;
        }
        let windows: Vec<Value> = windows
            .iter()
            .map(|w| json!({"days": w.days, "start": w.start, "end": w.end}))
            .collect();
        Ok(Record::new(format!("schedule:{name}"), "set-schedule")
            .with("created", existing.is_none())
            .with("windows", windows)
            .with("on_holidays", on_holidays))
    }

    fn remove_schedule(&self, name: &str) -> Result<Record> {
        let id = self.schedule_id(name)?;
        let users = self.count(
            "SELECT count(*) FROM permissions WHERE schedule_id = ?1",
            id,
        )?;
        if users > 0 {
            return Err(Error::conflict(
                format!("schedule {name:?}"),
                format!("used by {users} permission(s); revoke them first"),
            ));
        }
        self.conn
            .execute("DELETE FROM schedules WHERE id = ?1", [id])
            .map_err(self.sql("remove a schedule"))?;
        Ok(Record::new(format!("schedule:{name}"), "remove-schedule"))
    }

    fn add_holiday(&self, date: &str, name: &str) -> Result<Record> {
        rules::date(date)?;
        rules::text("holiday name", name, rules::MAX_TEXT, false)?;
        if self.exists("SELECT 1 FROM holidays WHERE date = ?1", date)? {
            return Err(Error::exists("holiday", date));
        }
        self.conn
            .execute(
                "INSERT INTO holidays (date, name) VALUES (?1, ?2)",
                params![date, name],
            )
            .map_err(self.sql("add a holiday"))?;
        Ok(Record::new(format!("holiday:{date}"), "add-holiday").with("name", name))
    }

    fn remove_holiday(&self, date: &str) -> Result<Record> {
        rules::date(date)?;
        let removed = self
            .conn
            .execute("DELETE FROM holidays WHERE date = ?1", [date])
            .map_err(self.sql("remove a holiday"))?;
        if removed == 0 {
            return Err(Error::not_found("holiday", date));
        }
        Ok(Record::new(format!("holiday:{date}"), "remove-holiday"))
    }

    fn set_reason(
        &self,
        code: &str,
        description: &str,
        max_minutes: Option<u32>,
    ) -> Result<Record> {
        rules::reason_code(code)?;
        rules::text("reason description", description, rules::MAX_TEXT, false)?;
        if max_minutes == Some(0) {
            return Err(Error::invalid(
                format!("reason {code} longest checkout"),
                "must be at least 1 minute",
            ));
        }
        let existed = self.exists("SELECT 1 FROM reasons WHERE code = ?1", code)?;
        self.conn
            .execute(
                "INSERT INTO reasons (code, description, max_minutes, active)
                 VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (code) DO UPDATE SET description = excluded.description,
                    max_minutes = excluded.max_minutes, active = 1",
                params![code, description, max_minutes],
            )
            .map_err(self.sql("set a reason"))?;
        Ok(Record::new(format!("reason:{code}"), "set-reason")
            .with("created", !existed)
            .with("description", description)
            .with("max_minutes", max_minutes))
    }

    fn remove_reason(&self, code: &str) -> Result<Record> {
        let retired = self
            .conn
            .execute("UPDATE reasons SET active = 0 WHERE code = ?1", [code])
            .map_err(self.sql("retire a reason"))?;
        if retired == 0 {
            return Err(Error::not_found("reason", code));
        }
        Ok(Record::new(format!("reason:{code}"), "remove-reason"))
    }

    // ---- reservations and alarms ------------------------------------------------------------

    fn reserve(
        &self,
        key: &str,
        user: &str,
        from: UnixTime,
        until: UnixTime,
    ) -> Result<(AdminOutcome, Record)> {
        let key_id = self.key_id(key)?;
        let user_id = self.user_id(user)?;
        if until <= from {
            return Err(Error::invalid(
                format!("reservation of key {key:?}"),
                "it must end after it starts",
            ));
        }
        if until <= self.now {
            return Err(Error::invalid(
                format!("reservation of key {key:?}"),
                "it ends in the past",
            ));
        }
        let clash: Option<(i64, i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, from_at, until_at FROM reservations
                 WHERE key_id = ?1 AND from_at < ?3 AND until_at > ?2
                 ORDER BY from_at LIMIT 1",
                params![key_id, from, until],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(self.sql("look for reservations"))?;
        if let Some((id, f, u)) = clash {
            return Err(Error::conflict(
                format!("reservation of key {key:?}"),
                format!("overlaps reservation {id} ({f} to {u})"),
            ));
        }
        self.conn
            .execute(
                "INSERT INTO reservations (key_id, user_id, from_at, until_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![key_id, user_id, from, until],
            )
            .map_err(self.sql("add a reservation"))?;
        let id = self.conn.last_insert_rowid();
        let record = Record::new(format!("reservation:{id}"), "reserve")
            .with("key", key)
            .with("user", user)
            .with("from", from)
            .with("until", until);
        Ok((AdminOutcome::Created(id), record))
    }

    fn cancel_reservation(&self, id: i64) -> Result<Record> {
        let found: Option<(String, String, i64, i64)> = self
            .conn
            .query_row(
                "SELECT k.label, u.name, r.from_at, r.until_at FROM reservations r
                 JOIN keys k ON k.id = r.key_id JOIN users u ON u.id = r.user_id
                 WHERE r.id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(self.sql("read a reservation"))?;
        let (key, user, from, until) =
            found.ok_or_else(|| Error::not_found("reservation", id.to_string()))?;
        self.conn
            .execute("DELETE FROM reservations WHERE id = ?1", [id])
            .map_err(self.sql("cancel a reservation"))?;
        Ok(
            Record::new(format!("reservation:{id}"), "cancel-reservation")
                .with("key", key)
                .with("user", user)
                .with("from", from)
                .with("until", until),
        )
    }

    fn acknowledge_alarm(&self, id: i64, note: &str) -> Result<Record> {
        rules::text("alarm note", note, rules::MAX_NOTES, true)?;
        let found: Option<(String, String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT kind, subject, acknowledged_by FROM alarms WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(self.sql("read an alarm"))?;
        let (kind, subject, by) = found.ok_or_else(|| Error::not_found("alarm", id.to_string()))?;
        if let Some(by) = by {
            return Err(Error::conflict(
                format!("alarm {id}"),
                format!("already acknowledged by {by}"),
            ));
        }
        self.conn
            .execute(
                "UPDATE alarms SET acknowledged_by = ?2, acknowledged_at = ?3, note = ?4
                 WHERE id = ?1",
                params![id, self.actor.audit_name(), self.now, note],
            )
            .map_err(self.sql("acknowledge an alarm"))?;
        Ok(Record::new(format!("alarm:{id}"), "acknowledge-alarm")
            .with("kind", kind)
            .with("alarm_subject", subject)
            .with("note", note))
    }
}

/// Apply user fields to `row`, recording each, then check the validity window.
fn apply_user_fields(
    name: &str,
    row: &mut UserRow,
    fields: &[UserField],
    record: &mut Record,
) -> Result<()> {
    for field in fields {
        match field {
            UserField::DisplayName(v) => {
                rules::text("display name", v, rules::MAX_TEXT, false)?;
                row.display_name = v.clone();
                record.push("display_name", v.as_str());
            }
            UserField::Role(v) => {
                row.role = *v;
                record.push("role", v.as_str());
            }
            UserField::Active(v) => {
                row.active = *v;
                record.push("active", *v);
            }
            UserField::ValidFrom(v) => {
                row.valid_from = *v;
                record.push("valid_from", *v);
            }
            UserField::ValidUntil(v) => {
                row.valid_until = *v;
                record.push("valid_until", *v);
            }
            UserField::Factors(v) => {
                row.factors = *v;
                record.push("factors", v.as_str());
            }
            UserField::MaxKeysOut(v) => {
                row.max_keys_out = *v;
                record.push("max_keys_out", *v);
            }
            UserField::MaxCheckoutMinutes(v) => {
                if *v == Some(0) {
                    return Err(Error::invalid(
                        format!("user {name:?} longest checkout"),
                        "must be at least 1 minute",
                    ));
                }
                row.max_checkout_minutes = *v;
                record.push("max_checkout_minutes", *v);
            }
        }
    }
    if let (Some(from), Some(until)) = (row.valid_from, row.valid_until) {
        if until <= from {
            return Err(Error::invalid(
                format!("user {name:?} validity"),
                format!("valid_until ({until}) must be after valid_from ({from})"),
            ));
        }
    }
    Ok(())
}

/// Apply key fields to `row`, recording each and checking the value rules.
fn apply_key_fields(row: &mut KeyRow, fields: &[KeyField], record: &mut Record) -> Result<()> {
    for field in fields {
        match field {
            KeyField::Label(v) => {
                row.label = v.clone();
                record.push("label", v.as_str());
            }
            KeyField::Tag(v) => {
                row.tag = v.clone();
                record.push("tag", v.as_str());
            }
            KeyField::Kind(v) => {
                row.kind = *v;
                record.push("kind", v.as_str());
            }
            KeyField::Notes(v) => {
                rules::text("key notes", v, rules::MAX_NOTES, true)?;
                row.notes = v.clone();
                record.push("notes", v.as_str());
            }
            KeyField::HomeSlot(v) => {
                row.home_slot = *v;
                record.push("home_slot", *v);
            }
            KeyField::Critical(v) => {
                row.critical = *v;
                record.push("critical", *v);
            }
            KeyField::Active(v) => {
                row.active = *v;
                record.push("active", *v);
            }
        }
    }
    rules::label(&row.label)?;
    rules::tag(&row.tag)?;
    Ok(())
}
