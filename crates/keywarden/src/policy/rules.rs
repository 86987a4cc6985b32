//! `keywarden perm ...`, `schedule ...`, `holiday ...` and `reason ...`: who may take what, when,
//! and why.

use clap::{Args, Subcommand};
use keywarden_dbus::policy::{
    HolidayInfo, PermissionInfo, ReasonInfo, ScheduleInfo, WindowSpec, SUBJECT_GROUP, SUBJECT_USER,
    TARGET_KEY, TARGET_KIND,
};
use serde_json::json;

use super::keys::kinds;
use super::{one_of, Ctx};
use crate::error::{call, Error};
use crate::output::{or_empty, or_zero, yes_no};
use crate::times::{format_window, parse_date, parse_window};

/// Permissions: who may take which keys, when.
#[derive(Debug, Subcommand)]
pub enum Perm {
    /// Allow a user or group to take a key, or every key of a kind.
    Grant {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        what: What,
        /// Only during this schedule (default: at any time).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Delete a permission.
    Revoke {
        /// Permission id (see `perm list`).
        id: i64,
    },
    /// List permissions.
    List,
}

/// Who a permission is for: exactly one of `--user`, `--group`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// A user's login name.
    #[arg(long)]
    pub user: Option<String>,
    /// A group's name.
    #[arg(long)]
    pub group: Option<String>,
}

/// What a permission covers: exactly one of `--key`, `--kind`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct What {
    /// One key, by label.
    #[arg(long)]
    pub key: Option<String>,
    /// Every key of a kind (restricted keys are granted per key only).
    #[arg(long, value_parser = one_of(kinds()))]
    pub kind: Option<String>,
}

impl Who {
    /// `user:NAME` or `group:NAME`.
    pub fn wire(&self) -> String {
        match (&self.user, &self.group) {
            (Some(u), _) => format!("{SUBJECT_USER}{u}"),
            (None, Some(g)) => format!("{SUBJECT_GROUP}{g}"),
            (None, None) => String::new(),
        }
    }
}

impl What {
    /// `key:LABEL` or `kind:KIND`.
    pub fn wire(&self) -> String {
        match (&self.key, &self.kind) {
            (Some(k), _) => format!("{TARGET_KEY}{k}"),
            (None, Some(k)) => format!("{TARGET_KIND}{k}"),
            (None, None) => String::new(),
        }
    }
}

/// Weekly schedules for permissions.
#[derive(Debug, Subcommand)]
pub enum Schedule {
    /// Create or replace a schedule.
    Set {
        /// Schedule name.
        name: String,
        /// A weekly window: "mon-fri 08:00-18:00", "sat,sun 10:00-14:00", "daily 00:00-24:00"
        /// (local time; repeat for more windows).
        #[arg(long = "window", value_name = "DAYS HH:MM-HH:MM", required = true, value_parser = parse_window)]
        windows: Vec<WindowSpec>,
        /// Also open on holidays (by its windows); otherwise closed on holidays.
        #[arg(long)]
        on_holidays: bool,
    },
    /// Delete a schedule (not while a permission uses it).
    Remove {
        /// Schedule name.
        name: String,
    },
    /// List schedules.
    List,
}

/// Holidays, when schedules are closed unless they say otherwise.
#[derive(Debug, Subcommand)]
pub enum Holiday {
    /// Declare a holiday.
    Add {
        /// Local date, YYYY-MM-DD.
        #[arg(value_parser = parse_date)]
        date: String,
        /// What it is (several words are joined).
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Remove a holiday.
    Remove {
        /// Local date, YYYY-MM-DD.
        #[arg(value_parser = parse_date)]
        date: String,
    },
    /// List holidays.
    List,
}

/// Reason codes chosen at checkout.
#[derive(Debug, Subcommand)]
pub enum Reason {
    /// Create or replace a reason code.
    Set {
        /// The code ("MAINT", "12").
        code: String,
        /// What it means, shown on the console (several words are joined).
        #[arg(required = true, num_args = 1..)]
        description: Vec<String>,
        /// Longest checkout for this reason, in minutes (0 = the site default).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_minutes: u32,
    },
    /// Retire a reason code (history keeps it).
    Remove {
        /// The code.
        code: String,
    },
    /// List reason codes.
    List,
}

/// Run one `perm` command.
pub async fn perm(ctx: &Ctx<'_>, cmd: Perm) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Perm::Grant {
            who,
            what,
            schedule,
        } => {
            let (subject, target) = (who.wire(), what.wire());
            let id = p
                .grant(&subject, &target, schedule.as_deref().unwrap_or(""))
                .await
                .map_err(call(format!("perm grant {subject} {target}")))?;
            ctx.out
                .line(&json!({ "id": id }), format!("permission {id}"))
        }
        Perm::Revoke { id } => p
            .revoke(id)
            .await
            .map_err(call(format!("perm revoke {id}"))),
        Perm::List => {
            let perms = p.list_permissions().await.map_err(call("perm list"))?;
            ctx.out.list(
                &perms,
                &["ID", "SUBJECT", "TARGET", "SCHEDULE"],
                |p: &PermissionInfo| {
                    vec![
                        p.id.to_string(),
                        p.subject.clone(),
                        p.target.clone(),
                        or_empty(&p.schedule, "any time"),
                    ]
                },
            )
        }
    }
}

/// Run one `schedule` command.
pub async fn schedule(ctx: &Ctx<'_>, cmd: Schedule) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Schedule::Set {
            name,
            windows,
            on_holidays,
        } => p
            .set_schedule(&name, &windows, on_holidays)
            .await
            .map_err(call(format!("schedule set {name}"))),
        Schedule::Remove { name } => p
            .remove_schedule(&name)
            .await
            .map_err(call(format!("schedule remove {name}"))),
        Schedule::List => {
            let list = p.list_schedules().await.map_err(call("schedule list"))?;
            ctx.out.list(
                &list,
                &["NAME", "ON HOLIDAYS", "WINDOWS"],
                |s: &ScheduleInfo| {
                    let windows: Vec<String> = s.windows.iter().map(format_window).collect();
                    vec![s.name.clone(), yes_no(s.on_holidays), windows.join("; ")]
                },
            )
        }
    }
}

/// Run one `holiday` command.
pub async fn holiday(ctx: &Ctx<'_>, cmd: Holiday) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Holiday::Add { date, name } => p
            .add_holiday(&date, &name.join(" "))
            .await
            .map_err(call(format!("holiday add {date}"))),
        Holiday::Remove { date } => p
            .remove_holiday(&date)
            .await
            .map_err(call(format!("holiday remove {date}"))),
        Holiday::List => {
            let list = p.list_holidays().await.map_err(call("holiday list"))?;
            ctx.out.list(&list, &["DATE", "NAME"], |h: &HolidayInfo| {
                vec![h.date.clone(), h.name.clone()]
            })
        }
    }
}

/// Run one `reason` command.
pub async fn reason(ctx: &Ctx<'_>, cmd: Reason) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Reason::Set {
            code,
            description,
            max_minutes,
        } => p
            .set_reason(&code, &description.join(" "), max_minutes)
            .await
            .map_err(call(format!("reason set {code}"))),
        Reason::Remove { code } => p
            .remove_reason(&code)
            .await
            .map_err(call(format!("reason remove {code}"))),
        Reason::List => {
            let list = p.list_reasons().await.map_err(call("reason list"))?;
            reasons_table(ctx, &list)
        }
    }
}

/// The reason codes as a table (also `session reasons`).
pub fn reasons_table(ctx: &Ctx<'_>, list: &[ReasonInfo]) -> Result<(), Error> {
    ctx.out.list(
        list,
        &["CODE", "MAX MINUTES", "DESCRIPTION"],
        |r: &ReasonInfo| {
            vec![
                r.code.clone(),
                or_zero(r.max_minutes, "default"),
                r.description.clone(),
            ]
        },
    )
}
