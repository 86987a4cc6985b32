//! Rebuilding the core's [`PolicyState`] from the database (at start and after every admin
//! change). One read transaction, so the state is a consistent snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use rusqlite::{Connection, Row};

use super::Store;
use crate::error::{Error, Result};
use crate::model::{
    Group, Key, KeyKind, Loan, Permission, PolicyState, Reason, Reservation, Schedule, Settings,
    SlotNumber, Subject, Target, User, Window,
};

impl Store {
    /// The whole policy state: every user (with groups, fingerprints, whether a PIN is set),
    /// badge hashes, keys, groups, permissions, schedules, holidays, active reason codes,
    /// reservations, open loans by key and the slot contents. `slots` is `board_slots`;
    /// a key the records place in a slot that is not on the board is left out of
    /// `slot_contents` (and logged).
    pub fn load_state(
        &self,
        settings: Settings,
        board_slots: &BTreeSet<SlotNumber>,
    ) -> Result<PolicyState> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.sql("begin reading the state"))?;
        let r = Reader {
            conn: &tx,
            store: self,
        };
        let state = PolicyState {
            users: r.users()?,
            badges: r.badges()?,
            keys: r.keys()?,
            groups: r.groups()?,
            permissions: r.permissions()?,
            schedules: r.schedules()?,
            holidays: r.holidays()?,
            reasons: r.reasons()?,
            reservations: r.reservations()?,
            loans: r.loans()?,
            slot_contents: r.slot_contents(board_slots)?,
            slots: board_slots.clone(),
            settings,
        };
        tx.finish().map_err(self.sql("end reading the state"))?;
        Ok(state)
    }
}

/// Queries over one read transaction.
struct Reader<'a> {
    conn: &'a Connection,
    store: &'a Store,
}

impl Reader<'_> {
    /// Run `sql` and map every row.
    fn rows<T>(
        &self,
        operation: &'static str,
        sql: &str,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql).map_err(self.store.sql(operation))?;
        let mut rows = stmt.query([]).map_err(self.store.sql(operation))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.store.sql(operation))? {
            out.push(f(row).map_err(|e| match e {
                Error::Sqlite { source, .. } => Error::sqlite(&self.store.path, operation, source),
                other => other,
            })?);
        }
        Ok(out)
    }

    fn users(&self) -> Result<BTreeMap<i64, User>> {
        let mut users: BTreeMap<i64, User> = self
            .rows(
                "load users",
                "SELECT id, name, display_name, role, active, valid_from, valid_until, factors,
                        max_keys_out, max_checkout_minutes, locked_until, failed_pins,
                        pin_hash IS NOT NULL
                 FROM users",
                |row| {
                    let id: i64 = get(row, 0)?;
                    Ok(User {
                        id,
                        name: get(row, 1)?,
                        display_name: get(row, 2)?,
                        role: parse("users", id, get(row, 3)?)?,
                        active: get(row, 4)?,
                        valid_from: get(row, 5)?,
                        valid_until: get(row, 6)?,
                        factors: parse("users", id, get(row, 7)?)?,
                        max_keys_out: get(row, 8)?,
                        max_checkout_minutes: get(row, 9)?,
                        locked_until: get(row, 10)?,
                        failed_pins: get(row, 11)?,
                        has_pin: get(row, 12)?,
                        fingerprints: BTreeSet::new(),
                        groups: BTreeSet::new(),
                    })
                },
            )?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        for (user, template) in self.rows(
            "load fingerprints",
            "SELECT user_id, template FROM fingerprints",
            |row| Ok((get::<i64>(row, 0)?, get::<u32>(row, 1)?)),
        )? {
            if let Some(u) = users.get_mut(&user) {
                u.fingerprints.insert(template);
            }
        }
        for (user, group) in self.rows(
            "load group members",
            "SELECT user_id, group_id FROM group_members",
            |row| Ok((get::<i64>(row, 0)?, get::<i64>(row, 1)?)),
        )? {
            if let Some(u) = users.get_mut(&user) {
                u.groups.insert(group);
            }
        }
        Ok(users)
    }

    fn badges(&self) -> Result<BTreeMap<String, i64>> {
        Ok(self
            .rows("load badges", "SELECT hash, user_id FROM badges", |row| {
                Ok((get(row, 0)?, get(row, 1)?))
            })?
            .into_iter()
            .collect())
    }

    fn keys(&self) -> Result<BTreeMap<i64, Key>> {
        Ok(self
            .rows(
                "load keys",
                "SELECT id, tag, label, kind, notes, home_slot, critical, active FROM keys",
                |row| {
                    let id: i64 = get(row, 0)?;
                    Ok(Key {
                        id,
                        tag: get(row, 1)?,
                        label: get(row, 2)?,
                        kind: parse("keys", id, get(row, 3)?)?,
                        notes: get(row, 4)?,
                        home_slot: get(row, 5)?,
                        critical: get(row, 6)?,
                        active: get(row, 7)?,
                    })
                },
            )?
            .into_iter()
            .map(|k| (k.id, k))
            .collect())
    }

    fn groups(&self) -> Result<BTreeMap<i64, Group>> {
        Ok(self
            .rows("load groups", "SELECT id, name FROM groups", |row| {
                Ok(Group {
                    id: get(row, 0)?,
                    name: get(row, 1)?,
                })
            })?
            .into_iter()
            .map(|g| (g.id, g))
            .collect())
    }

    fn permissions(&self) -> Result<Vec<Permission>> {
        self.rows(
            "load permissions",
            "SELECT id, user_id, group_id, key_id, kind, schedule_id FROM permissions ORDER BY id",
            |row| {
                let id: i64 = get(row, 0)?;
                let bad = |problem: &str| Error::BadRecord {
                    table: "permissions",
                    row: id.to_string(),
                    problem: problem.to_owned(),
                };
                let subject = match (get::<Option<i64>>(row, 1)?, get::<Option<i64>>(row, 2)?) {
                    (Some(user), None) => Subject::User(user),
                    (None, Some(group)) => Subject::Group(group),
                    _ => return Err(bad("needs exactly one of user and group")),
                };
                let target = match (get::<Option<i64>>(row, 3)?, get::<Option<String>>(row, 4)?) {
                    (Some(key), None) => Target::Key(key),
                    (None, Some(kind)) => Target::Kind(parse::<KeyKind>("permissions", id, kind)?),
                    _ => return Err(bad("needs exactly one of key and kind")),
                };
                Ok(Permission {
                    id,
                    subject,
                    target,
                    schedule: get(row, 5)?,
                })
            },
        )
    }

    fn schedules(&self) -> Result<BTreeMap<i64, Schedule>> {
        let mut schedules: BTreeMap<i64, Schedule> = self
            .rows(
                "load schedules",
                "SELECT id, name, on_holidays FROM schedules",
                |row| {
                    Ok(Schedule {
                        id: get(row, 0)?,
                        name: get(row, 1)?,
                        windows: Vec::new(),
                        on_holidays: get(row, 2)?,
                    })
                },
            )?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        for (schedule, window) in self.rows(
            "load schedule windows",
            "SELECT schedule_id, days, start_minute, end_minute FROM schedule_windows
             ORDER BY schedule_id, position",
            |row| {
                Ok((
                    get::<i64>(row, 0)?,
                    Window {
                        days: get(row, 1)?,
                        start: get(row, 2)?,
                        end: get(row, 3)?,
                    },
                ))
            },
        )? {
            if let Some(s) = schedules.get_mut(&schedule) {
                s.windows.push(window);
            }
        }
        Ok(schedules)
    }

    fn holidays(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .rows("load holidays", "SELECT date FROM holidays", |row| {
                get(row, 0)
            })?
            .into_iter()
            .collect())
    }

    fn reasons(&self) -> Result<BTreeMap<String, Reason>> {
        Ok(self
            .rows(
                "load reasons",
                "SELECT code, description, max_minutes, active FROM reasons WHERE active = 1",
                |row| {
                    Ok(Reason {
                        code: get(row, 0)?,
                        description: get(row, 1)?,
                        max_minutes: get(row, 2)?,
                        active: get(row, 3)?,
                    })
                },
            )?
            .into_iter()
            .map(|r| (r.code.clone(), r))
            .collect())
    }

    fn reservations(&self) -> Result<Vec<Reservation>> {
        self.rows(
            "load reservations",
            "SELECT id, key_id, user_id, from_at, until_at FROM reservations ORDER BY from_at, id",
            |row| {
                Ok(Reservation {
                    id: get(row, 0)?,
                    key: get(row, 1)?,
                    user: get(row, 2)?,
                    from: get(row, 3)?,
                    until: get(row, 4)?,
                })
            },
        )
    }

    fn loans(&self) -> Result<BTreeMap<i64, Loan>> {
        Ok(self
            .rows(
                "load open loans",
                "SELECT id, key_id, user_id, witness_id, reason, granted_at, taken_at, due_at, slot
                 FROM loans WHERE closed_at IS NULL",
                |row| {
                    Ok(Loan {
                        id: get(row, 0)?,
                        key: get(row, 1)?,
                        user: get(row, 2)?,
                        witness: get(row, 3)?,
                        reason: get(row, 4)?,
                        granted_at: get(row, 5)?,
                        taken_at: get(row, 6)?,
                        due_at: get(row, 7)?,
                        slot: get(row, 8)?,
                    })
                },
            )?
            .into_iter()
            .map(|l| (l.key, l))
            .collect())
    }

    fn slot_contents(&self, board: &BTreeSet<SlotNumber>) -> Result<BTreeMap<SlotNumber, i64>> {
        let mut contents = BTreeMap::new();
        for (slot, key) in self.rows(
            "load slot contents",
            "SELECT number, key_id FROM slots WHERE key_id IS NOT NULL",
            |row| Ok((get::<SlotNumber>(row, 0)?, get::<i64>(row, 1)?)),
        )? {
            if board.contains(&slot) {
                contents.insert(slot, key);
            } else {
                tracing::warn!(
                    slot,
                    key,
                    "records place a key in a slot the board does not have"
                );
            }
        }
        Ok(contents)
    }
}

/// A column, with SQLite's error kept for [`Reader::rows`] to classify.
fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, index: usize) -> Result<T> {
    row.get(index).map_err(|source| Error::Sqlite {
        operation: "read a row",
        source,
    })
}

/// A stored enum spelling.
fn parse<T>(table: &'static str, id: i64, text: String) -> Result<T>
where
    T: FromStr<Err = crate::model::UnknownName>,
{
    text.parse()
        .map_err(|e: crate::model::UnknownName| Error::BadRecord {
            table,
            row: id.to_string(),
            problem: e.to_string(),
        })
}

impl Store {
    /// Holidays as `(date, name)`, by date (the state holds only the dates).
    pub fn list_holidays(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT date, name FROM holidays ORDER BY date")
            .map_err(self.sql("list holidays"))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(self.sql("list holidays"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.sql("list holidays"))
    }
}
