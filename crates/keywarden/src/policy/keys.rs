//! `keywarden key ...`, `keywarden slot ...` and `keywarden reserve ...`.

use clap::Subcommand;
use keywarden_dbus::policy::{options, KeyInfo, KeyKind, ReservationInfo, SlotInfo};
use serde_json::json;

use super::{one_of, Ctx, OptionMap};
use crate::error::{call, Error};
use crate::output::{or_empty, or_zero, yes_no};
use crate::times::{format_time_local, parse_time_local};

/// The key kinds, for clap.
pub fn kinds() -> impl IntoIterator<Item = &'static str> {
    KeyKind::ALL.iter().map(|k| k.as_str())
}

/// Keys (or key rings) in the cabinet.
#[derive(Debug, Subcommand)]
pub enum Key {
    /// Create a key; it is in the cabinet once placed (`key place`) or returned.
    Add {
        /// What staff call it ("204", "Pool gate").
        label: String,
        /// The tag code on its fob.
        #[arg(long)]
        tag: String,
        /// What it opens.
        #[arg(long, value_parser = one_of(kinds()))]
        kind: String,
        /// Notes and restrictions shown at checkout.
        #[arg(long)]
        notes: Option<String>,
        /// Its fixed slot (1-based).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "floating")]
        home_slot: Option<u32>,
        /// No fixed slot: it goes back to any free slot (the default).
        #[arg(long)]
        floating: bool,
        /// Checkout needs a second authorised person.
        #[arg(long)]
        critical: bool,
    },
    /// Change a key; options not given stay as they are.
    Update {
        /// The key's current label.
        label: String,
        /// A new label.
        #[arg(long = "label", value_name = "LABEL")]
        new_label: Option<String>,
        /// A new tag code.
        #[arg(long)]
        tag: Option<String>,
        /// A new kind.
        #[arg(long, value_parser = one_of(kinds()))]
        kind: Option<String>,
        /// New notes ("" clears them).
        #[arg(long)]
        notes: Option<String>,
        /// A new fixed slot (1-based).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "floating")]
        home_slot: Option<u32>,
        /// Make it floating: no fixed slot.
        #[arg(long)]
        floating: bool,
        /// Whether checkout needs a second authorised person.
        #[arg(long, value_name = "true|false")]
        critical: Option<bool>,
        /// Inactive keys cannot be taken.
        #[arg(long, value_name = "true|false")]
        active: Option<bool>,
    },
    /// Delete a key with its permissions and reservations.
    Remove {
        /// Label.
        label: String,
    },
    /// Record that a key is in a slot (loading the cabinet, correcting the records).
    Place {
        /// Label.
        label: String,
        /// Slot number (1-based).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        slot: u32,
    },
    /// List every key and where it is.
    List,
}

/// Slots, as the records see them.
#[derive(Debug, Subcommand)]
pub enum Slot {
    /// List every slot and the key in it.
    List,
}

/// Reservations: a key booked for a user during a time window.
#[derive(Debug, Subcommand)]
pub enum Reserve {
    /// Book a key for a user.
    Add {
        /// Key label.
        key: String,
        /// Login name.
        user: String,
        /// Start (2026-12-01, "2026-12-01 08:00", RFC 3339).
        #[arg(long, value_name = "TIME", value_parser = parse_time_local)]
        from: i64,
        /// End, exclusive (same forms as --from).
        #[arg(long, value_name = "TIME", value_parser = parse_time_local)]
        until: i64,
    },
    /// Cancel a reservation.
    Cancel {
        /// Reservation id (see `reserve list`).
        id: i64,
    },
    /// List current and future reservations.
    List,
}

fn home_slot(home_slot: Option<u32>, floating: bool) -> Option<u32> {
    if floating {
        Some(0)
    } else {
        home_slot
    }
}

/// Run one `key` command.
pub async fn key(ctx: &Ctx<'_>, cmd: Key) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Key::Add {
            label,
            tag,
            kind,
            notes,
            home_slot: slot,
            floating,
            critical,
        } => {
            let mut o = OptionMap::default();
            o.set(options::NOTES, notes)
                .set(options::HOME_SLOT, home_slot(slot, floating))
                .set(options::CRITICAL, critical.then_some(true));
            p.add_key(&label, &tag, &kind, o.get())
                .await
                .map_err(call(format!("key add {label}")))
        }
        Key::Update {
            label,
            new_label,
            tag,
            kind,
            notes,
            home_slot: slot,
            floating,
            critical,
            active,
        } => {
            let mut o = OptionMap::default();
            o.set(options::LABEL, new_label)
                .set(options::TAG, tag)
                .set(options::KIND, kind)
                .set(options::NOTES, notes)
                .set(options::HOME_SLOT, home_slot(slot, floating))
                .set(options::CRITICAL, critical)
                .set(options::ACTIVE, active);
            p.update_key(&label, o.get())
                .await
                .map_err(call(format!("key update {label}")))
        }
        Key::Remove { label } => p
            .remove_key(&label)
            .await
            .map_err(call(format!("key remove {label}"))),
        Key::Place { label, slot } => p
            .place_key(&label, slot)
            .await
            .map_err(call(format!("key place {label} {slot}"))),
        Key::List => {
            let keys = p.list_all_keys().await.map_err(call("key list"))?;
            ctx.out.list(
                &keys,
                &[
                    "LABEL", "TAG", "KIND", "SLOT", "HOME", "CRITICAL", "ACTIVE", "HOLDER",
                    "TAKEN", "DUE", "NOTES",
                ],
                key_row,
            )
        }
    }
}

fn key_row(k: &KeyInfo) -> Vec<String> {
    vec![
        k.label.clone(),
        k.tag.clone(),
        k.kind.clone(),
        or_zero(k.slot, "-"),
        or_zero(k.home_slot, "floating"),
        yes_no(k.critical),
        yes_no(k.active),
        or_empty(&k.holder, "-"),
        format_time_local(k.taken_at),
        format_time_local(k.due_at),
        k.notes.clone(),
    ]
}

/// Run one `slot` command.
pub async fn slot(ctx: &Ctx<'_>, cmd: Slot) -> Result<(), Error> {
    match cmd {
        Slot::List => {
            let slots = ctx.policy.list_slots().await.map_err(call("slot list"))?;
            ctx.out
                .list(&slots, &["SLOT", "OCCUPIED", "KEY"], |s: &SlotInfo| {
                    vec![
                        s.number.to_string(),
                        yes_no(s.occupied),
                        or_empty(&s.key, "-"),
                    ]
                })
        }
    }
}

/// Run one `reserve` command.
pub async fn reserve(ctx: &Ctx<'_>, cmd: Reserve) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Reserve::Add {
            key,
            user,
            from,
            until,
        } => {
            let id = p
                .reserve(&key, &user, from, until)
                .await
                .map_err(call(format!("reserve add {key} {user}")))?;
            ctx.out
                .line(&json!({ "id": id }), format!("reservation {id}"))
        }
        Reserve::Cancel { id } => p
            .cancel_reservation(id)
            .await
            .map_err(call(format!("reserve cancel {id}"))),
        Reserve::List => {
            let list = p.list_reservations().await.map_err(call("reserve list"))?;
            ctx.out.list(
                &list,
                &["ID", "KEY", "USER", "FROM", "UNTIL"],
                |r: &ReservationInfo| {
                    vec![
                        r.id.to_string(),
                        r.key.clone(),
                        r.user.clone(),
                        format_time_local(r.from),
                        format_time_local(r.until),
                    ]
                },
            )
        }
    }
}
