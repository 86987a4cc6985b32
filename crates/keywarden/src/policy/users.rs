//! `keywarden user ...` and `keywarden group ...`.

use clap::{Args, Subcommand};
use keywarden_dbus::policy::{options, Factors, GroupInfo, Role, UserInfo};
use serde_json::json;

use super::{one_of, Ctx, OptionMap};
use crate::error::{call, Error};
use crate::output::yes_no;
use crate::secret;
use crate::times::{format_time_local, parse_time_or_none};

fn roles() -> impl IntoIterator<Item = &'static str> {
    Role::ALL.iter().map(|r| r.as_str())
}

fn factors() -> impl IntoIterator<Item = &'static str> {
    Factors::ALL.iter().map(|f| f.as_str())
}

/// Users: who may use the cabinet.
#[derive(Debug, Subcommand)]
pub enum User {
    /// Create a user (no PIN, badge or finger yet: see `user pin`, `user badge`).
    Add {
        /// Login name.
        name: String,
        /// What the user is.
        #[arg(long, value_parser = one_of(roles()))]
        role: String,
        #[command(flatten)]
        opts: UserOpts,
    },
    /// Change a user; options not given stay as they are.
    Update {
        /// Login name.
        name: String,
        /// What the user is.
        #[arg(long, value_parser = one_of(roles()))]
        role: Option<String>,
        #[command(flatten)]
        opts: UserOpts,
        /// Inactive users are refused at the cabinet.
        #[arg(long, value_name = "true|false")]
        active: Option<bool>,
    },
    /// Delete a user with their credentials, memberships, permissions and reservations.
    Remove {
        /// Login name.
        name: String,
    },
    /// End a user's wrong-PIN lockout now.
    Unlock {
        /// Login name.
        name: String,
    },
    /// List users.
    List,
    /// Set a user's PIN: typed twice without echo on a terminal, else one line from stdin.
    Pin {
        /// Login name.
        name: String,
    },
    /// Enroll a badge: scanned or typed twice without echo on a terminal, else one line from stdin.
    Badge {
        /// Login name.
        name: String,
    },
    /// Forget every badge of a user.
    ClearBadges {
        /// Login name.
        name: String,
    },
    /// Enroll a finger on the cabinet's sensor (the person touches it twice).
    EnrollFinger {
        /// Login name.
        name: String,
    },
    /// Delete a fingerprint template (see `user list`).
    RemoveFinger {
        /// Template id.
        template: u32,
    },
}

/// Options shared by `user add` and `user update`.
#[derive(Debug, Args)]
pub struct UserOpts {
    /// Name shown on the console and in reports.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Refused before this time (2026-12-01, "2026-12-01 08:00", RFC 3339; none = unset).
    #[arg(long, value_name = "TIME", value_parser = parse_time_or_none)]
    pub valid_from: Option<i64>,
    /// Refused from this time on (same forms as --valid-from).
    #[arg(long, value_name = "TIME", value_parser = parse_time_or_none)]
    pub valid_until: Option<i64>,
    /// Factors proven at the cabinet.
    #[arg(long, value_parser = one_of(factors()))]
    pub factors: Option<String>,
    /// Most keys out at once (0 = the site default).
    #[arg(long, value_name = "N")]
    pub max_keys_out: Option<u32>,
    /// Longest checkout in minutes (0 = the site default).
    #[arg(long, value_name = "N")]
    pub max_checkout_minutes: Option<u32>,
}

impl UserOpts {
    fn to_options(&self) -> OptionMap {
        let mut o = OptionMap::default();
        o.set(options::DISPLAY_NAME, self.display_name.clone())
            .set(options::VALID_FROM, self.valid_from)
            .set(options::VALID_UNTIL, self.valid_until)
            .set(options::FACTORS, self.factors.clone())
            .set(options::MAX_KEYS_OUT, self.max_keys_out)
            .set(options::MAX_CHECKOUT_MINUTES, self.max_checkout_minutes);
        o
    }
}

/// Groups of users, for permissions.
#[derive(Debug, Subcommand)]
pub enum Group {
    /// Create a group.
    Add {
        /// Group name.
        name: String,
    },
    /// Delete a group and its permissions (its members stay).
    Remove {
        /// Group name.
        name: String,
    },
    /// Add a user to a group.
    MemberAdd {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
    /// Take a user out of a group.
    MemberRemove {
        /// Group name.
        group: String,
        /// Login name.
        user: String,
    },
    /// List groups and their members.
    List,
}

/// Run one `user` command.
pub async fn user(ctx: &Ctx<'_>, cmd: User) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        User::Add { name, role, opts } => p
            .add_user(&name, &role, opts.to_options().get())
            .await
            .map_err(call(format!("user add {name}"))),
        User::Update {
            name,
            role,
            opts,
            active,
        } => {
            let mut o = opts.to_options();
            o.set(options::ROLE, role).set(options::ACTIVE, active);
            p.update_user(&name, o.get())
                .await
                .map_err(call(format!("user update {name}")))
        }
        User::Remove { name } => p
            .remove_user(&name)
            .await
            .map_err(call(format!("user remove {name}"))),
        User::Unlock { name } => p
            .unlock_user(&name)
            .await
            .map_err(call(format!("user unlock {name}"))),
        User::List => {
            let users = p.list_users().await.map_err(call("user list"))?;
            ctx.out.list(&users, USER_HEADERS, user_row)
        }
        User::Pin { name } => {
            let what = format!("user pin {name}");
            let pin = secret::read(&what, "PIN")?;
            p.set_pin(&name, &pin).await.map_err(call(what))
        }
        User::Badge { name } => {
            let what = format!("user badge {name}");
            let code = secret::read(&what, "badge code")?;
            p.add_badge(&name, &code).await.map_err(call(what))
        }
        User::ClearBadges { name } => p
            .clear_badges(&name)
            .await
            .map_err(call(format!("user clear-badges {name}"))),
        User::EnrollFinger { name } => {
            if !ctx.out.json {
                eprintln!("touch the cabinet's fingerprint sensor, lift, and touch again");
            }
            let template = p
                .enroll_fingerprint(&name)
                .await
                .map_err(call(format!("user enroll-finger {name}")))?;
            ctx.out.line(
                &json!({ "user": name, "template": template }),
                format!("enrolled fingerprint template {template} for {name}"),
            )
        }
        User::RemoveFinger { template } => p
            .remove_fingerprint(template)
            .await
            .map_err(call(format!("user remove-finger {template}"))),
    }
}

const USER_HEADERS: &[&str] = &[
    "NAME",
    "DISPLAY NAME",
    "ROLE",
    "ACTIVE",
    "FACTORS",
    "PIN",
    "BADGES",
    "FINGERS",
    "GROUPS",
    "VALID FROM",
    "VALID UNTIL",
    "LOCKED UNTIL",
    "KEYS OUT",
];

fn user_row(u: &UserInfo) -> Vec<String> {
    let fingers: Vec<String> = u.fingerprints.iter().map(u32::to_string).collect();
    vec![
        u.name.clone(),
        u.display_name.clone(),
        u.role.clone(),
        yes_no(u.active),
        u.factors.clone(),
        yes_no(u.has_pin),
        u.badges.to_string(),
        or_list(&fingers),
        or_list(&u.groups),
        format_time_local(u.valid_from),
        format_time_local(u.valid_until),
        format_time_local(u.locked_until),
        u.keys_out.to_string(),
    ]
}

fn or_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// Run one `group` command.
pub async fn group(ctx: &Ctx<'_>, cmd: Group) -> Result<(), Error> {
    let p = &ctx.policy;
    match cmd {
        Group::Add { name } => p
            .add_group(&name)
            .await
            .map_err(call(format!("group add {name}"))),
        Group::Remove { name } => p
            .remove_group(&name)
            .await
            .map_err(call(format!("group remove {name}"))),
        Group::MemberAdd { group, user } => p
            .add_member(&group, &user)
            .await
            .map_err(call(format!("group member-add {group} {user}"))),
        Group::MemberRemove { group, user } => p
            .remove_member(&group, &user)
            .await
            .map_err(call(format!("group member-remove {group} {user}"))),
        Group::List => {
            let groups = p.list_groups().await.map_err(call("group list"))?;
            ctx.out
                .list(&groups, &["GROUP", "MEMBERS"], |g: &GroupInfo| {
                    vec![g.name.clone(), or_list(&g.members)]
                })
        }
    }
}
