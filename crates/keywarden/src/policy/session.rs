//! `keywarden session ...`: the console session, as the console program sees it (status, key
//! and reason lists, choosing, cancelling). For testing a cabinet from a shell.

use clap::Subcommand;
use keywarden_dbus::policy::KeyChoice;
use serde::Serialize;

use super::rules::reasons_table;
use super::Ctx;
use crate::error::{call, Error};
use crate::output::{or_empty, or_zero, yes_no};

/// The console session.
#[derive(Debug, Subcommand)]
pub enum Session {
    /// Show the session's state, user, prompt, chosen key, slot, and the service's status.
    Status,
    /// Choose a key by label or tag code (state choose-key).
    ChooseKey {
        /// Label or tag code.
        key: String,
    },
    /// Choose the reason code (state choose-reason).
    ChooseReason {
        /// Reason code.
        code: String,
    },
    /// End the session.
    Cancel,
    /// List the keys the session's user may see, with their status.
    Keys,
    /// List the reason codes.
    Reasons,
}

/// The `session status` record, with the property names in snake case.
#[derive(Debug, Serialize)]
struct Status {
    state: String,
    user: String,
    prompt: String,
    key: String,
    notes: String,
    slot: u32,
    entry: String,
    pin_length: u32,
    active_alarms: u32,
    status: String,
}

/// As many asterisks as PIN digits entered, or `-`.
fn pin_mask(len: u32) -> String {
    match usize::try_from(len) {
        Ok(0) | Err(_) => "-".to_owned(),
        Ok(n) => "*".repeat(n.min(64)),
    }
}

/// Run one `session` command.
pub async fn session(ctx: &Ctx<'_>, cmd: Session) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Session::Status => {
            let read = |name: &str| call(format!("session status: read {name}"));
            let s = Status {
                state: p.session_state().await.map_err(read("SessionState"))?,
                user: p.session_user().await.map_err(read("SessionUser"))?,
                prompt: p.session_prompt().await.map_err(read("SessionPrompt"))?,
                key: p.session_key().await.map_err(read("SessionKey"))?,
                notes: p.session_notes().await.map_err(read("SessionNotes"))?,
                slot: p.session_slot().await.map_err(read("SessionSlot"))?,
                entry: p.session_entry().await.map_err(read("SessionEntry"))?,
                pin_length: p.pin_length().await.map_err(read("PinLength"))?,
                active_alarms: p.active_alarms().await.map_err(read("ActiveAlarms"))?,
                status: p.status().await.map_err(read("Status"))?,
            };
            let lines = [
                ("state", s.state.clone()),
                ("user", or_empty(&s.user, "-")),
                ("prompt", s.prompt.clone()),
                ("key", or_empty(&s.key, "-")),
                ("notes", or_empty(&s.notes, "-")),
                ("slot", or_zero(s.slot, "-")),
                ("entry", or_empty(&s.entry, "-")),
                ("pin", pin_mask(s.pin_length)),
                ("alarms", s.active_alarms.to_string()),
                ("status", s.status.clone()),
            ];
            ctx.out.record(&s, &lines)
        }
        Session::ChooseKey { key } => p
            .choose_key(&key)
            .await
            .map_err(call(format!("session choose-key {key}"))),
        Session::ChooseReason { code } => p
            .choose_reason(&code)
            .await
            .map_err(call(format!("session choose-reason {code}"))),
        Session::Cancel => p.cancel().await.map_err(call("session cancel")),
        Session::Keys => {
            let keys = p.list_keys().await.map_err(call("session keys"))?;
            ctx.out.list(
                &keys,
                &["LABEL", "KIND", "STATUS", "AVAILABLE", "SLOT", "NOTES"],
                |k: &KeyChoice| {
                    vec![
                        k.label.clone(),
                        k.kind.clone(),
                        k.status.clone(),
                        yes_no(k.available),
                        or_zero(k.slot, "-"),
                        k.notes.clone(),
                    ]
                },
            )
        }
        Session::Reasons => {
            let list = p.list_reasons().await.map_err(call("session reasons"))?;
            reasons_table(ctx, &list)
        }
    }
}
