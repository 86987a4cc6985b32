//! `keywarden alarm ...`.

use clap::Subcommand;
use keywarden_dbus::policy::AlarmInfo;

use super::Ctx;
use crate::error::{call, Error};
use crate::output::or_empty;
use crate::times::format_time_local;

/// Alarms: door forced or held open, tamper, unauthorised removals, overdue keys, lockouts.
#[derive(Debug, Subcommand)]
pub enum Alarm {
    /// List active alarms, newest first.
    List {
        /// Also list cleared alarms.
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge an alarm (it clears when its condition ends).
    Ack {
        /// Alarm id (see `alarm list`).
        id: i64,
        /// A note recorded with the acknowledgement.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// Run one `alarm` command.
pub async fn alarm(ctx: &Ctx<'_>, cmd: Alarm) -> Result<(), Error> {
    match cmd {
        Alarm::List { all } => {
            let alarms = ctx
                .policy
                .list_alarms(!all)
                .await
                .map_err(call("alarm list"))?;
            ctx.out.list(
                &alarms,
                &[
                    "ID",
                    "KIND",
                    "SUBJECT",
                    "RAISED",
                    "CLEARED",
                    "ACKNOWLEDGED BY",
                    "NOTE",
                ],
                |a: &AlarmInfo| {
                    vec![
                        a.id.to_string(),
                        a.kind.clone(),
                        a.subject.clone(),
                        format_time_local(a.raised_at),
                        if a.cleared_at == 0 {
                            "active".to_owned()
                        } else {
                            format_time_local(a.cleared_at)
                        },
                        or_empty(&a.acknowledged_by, "-"),
                        a.note.clone(),
                    ]
                },
            )
        }
        Alarm::Ack { id, note } => ctx
            .policy
            .acknowledge_alarm(id, &note)
            .await
            .map_err(call(format!("alarm ack {id}"))),
    }
}
