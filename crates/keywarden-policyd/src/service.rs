//! The D-Bus surface: `org.keywarden.Policy1`.
//!
//! A thin adapter. Every method first asks the bus who the caller is (uid and groups,
//! `GetConnectionCredentials`) and checks it against the method's audience (console or admin),
//! whatever the bus policy says; then it parses its arguments into a [`Request`] and hands it to
//! the driver loop, which owns the core and the store. Properties read the [`Published`] view the
//! loop updates after every turn.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::policy::{
    AlarmInfo, AuditReport, GroupInfo, HolidayInfo, KeyChoice, KeyInfo, PermissionInfo,
    PolicyError, ReasonInfo, ReservationInfo, ScheduleInfo, SlotInfo, UserInfo, WindowSpec,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Fd;
use zbus::{interface, Connection};
use zeroize::Zeroizing;

use crate::admin::{Actor, AdminOp};
use crate::core::SessionView;
use crate::wire::{self, Options};

/// Who may call what: root always; console methods also the console and admin groups; admin
/// methods also the admin group.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Group ids of `keywarden-admin` (and any configured alias).
    pub admin_gids: BTreeSet<u32>,
    /// Group ids of `keywarden-console`.
    pub console_gids: BTreeSet<u32>,
}

/// A method's audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Console and staff operations.
    Console,
    /// Admin and report operations.
    Admin,
}

impl Access {
    /// Whether a caller with `uid` and `gids` may call a method for `audience`.
    pub fn allows(&self, uid: u32, gids: &[u32], audience: Audience) -> bool {
        if uid == 0 {
            return true;
        }
        let in_any = |set: &BTreeSet<u32>| gids.iter().any(|g| set.contains(g));
        match audience {
            Audience::Admin => in_any(&self.admin_gids),
            Audience::Console => in_any(&self.admin_gids) || in_any(&self.console_gids),
        }
    }

    /// The caller's identity if allowed; `AccessDenied` otherwise (also when the bus cannot
    /// tell). Groups come from the bus (`UnixGroupIDs`), else from the user database.
    pub async fn check(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
        audience: Audience,
    ) -> Result<Actor, PolicyError> {
        let caller = keywarden_dbus::caller::identify(conn, header)
            .await
            .map_err(PolicyError::AccessDenied)?;
        let (uid, gids) = (caller.uid, caller.gids);
        let actor = Actor {
            uid,
            name: caller.name,
        };
        if self.allows(uid, &gids, audience) {
            Ok(actor)
        } else {
            tracing::warn!(uid, sender = ?header.sender(), what, "refused caller");
            Err(PolicyError::AccessDenied(format!(
                "uid {uid} ({}) may not call {what}",
                actor.name
            )))
        }
    }
}

/// A console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCommand {
    /// `ChooseKey`.
    ChooseKey(String),
    /// `ChooseReason`.
    ChooseReason(String),
    /// `Cancel`.
    Cancel,
}

/// A listing, answered from the in-memory state or the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `ListKeys` (console).
    KeyChoices,
    /// `ListReasons`.
    Reasons,
    /// `ListUsers`.
    Users,
    /// `ListGroups`.
    Groups,
    /// `ListAllKeys`.
    AllKeys,
    /// `ListSlots`.
    Slots,
    /// `ListPermissions`.
    Permissions,
    /// `ListSchedules`.
    Schedules,
    /// `ListHolidays`.
    Holidays,
    /// `ListReservations`.
    Reservations,
    /// `ListAlarms(active_only)`.
    Alarms(bool),
}

/// What a caller asked the driver loop to do.
#[derive(Debug)]
pub enum Request {
    /// An admin change.
    Admin(Actor, AdminOp),
    /// A console command.
    Console(ConsoleCommand),
    /// A listing.
    List(Listing),
    /// A fingerprint template id not used by anyone, for `user` (who must exist).
    FreeTemplate(String),
    /// Write the audit export to this file.
    Export(std::fs::File, u64),
    /// Verify the stored chain.
    Verify,
}

/// The driver loop's answer.
#[derive(Debug)]
pub enum Reply {
    /// Done.
    Done,
    /// A new id.
    Id(i64),
    /// A template id.
    Template(u32),
    /// A count of entries.
    Count(u64),
    /// Audit verification.
    Audit(AuditReport),
    /// `ListKeys`.
    KeyChoices(Vec<KeyChoice>),
    /// `ListReasons`.
    Reasons(Vec<ReasonInfo>),
    /// `ListUsers`.
    Users(Vec<UserInfo>),
    /// `ListGroups`.
    Groups(Vec<GroupInfo>),
    /// `ListAllKeys`.
    AllKeys(Vec<KeyInfo>),
    /// `ListSlots`.
    Slots(Vec<SlotInfo>),
    /// `ListPermissions`.
    Permissions(Vec<PermissionInfo>),
    /// `ListSchedules`.
    Schedules(Vec<ScheduleInfo>),
    /// `ListHolidays`.
    Holidays(Vec<HolidayInfo>),
    /// `ListReservations`.
    Reservations(Vec<ReservationInfo>),
    /// `ListAlarms`.
    Alarms(Vec<AlarmInfo>),
}

/// A request with the channel its answer goes back on.
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Reply, PolicyError>>,
}

/// What the properties show, published by the driver loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The session as the console sees it.
    pub session: SessionView,
    /// Active alarms.
    pub active_alarms: u32,
    /// `ready` or why nothing opens.
    pub status: String,
    /// Device public key (hex).
    pub device_key: String,
}

/// Shared, published view.
pub type SharedPublished = Arc<Mutex<Published>>;

/// Reports running at once; more wait their turn (each holds a blocking thread and a
/// read-only connection).
pub const MAX_CONCURRENT_REPORTS: usize = 2;

/// What `Report` needs: the database file (opened read-only for each report, on the blocking
/// pool, never in the driver loop) and the site's time zone for tables.
#[derive(Debug, Clone)]
pub struct ReportSource {
    database: PathBuf,
    zone: jiff::tz::TimeZone,
    permits: Arc<Semaphore>,
}

impl ReportSource {
    /// Reports on `database`, tables in `zone`.
    pub fn new(database: PathBuf, zone: jiff::tz::TimeZone) -> Self {
        ReportSource {
            database,
            zone,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REPORTS)),
        }
    }

    /// Run `query` into `out` on the blocking pool; `now_ms` is the report's "now".
    pub async fn run(
        &self,
        query: crate::reports::Query,
        out: std::fs::File,
        now_ms: i64,
    ) -> Result<u64, PolicyError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PolicyError::NotReady("the policy service is shutting down".into()))?;
        let source = self.clone();
        let kind = query.kind;
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::reports::run_to_file(&source.database, &query, now_ms, &source.zone, out)
        })
        .await
        .map_err(|e| PolicyError::Storage(format!("report task failed: {e}")))?;
        match &result {
            Ok(rows) => tracing::info!(
                report = %kind,
                rows,
                ms = started.elapsed().as_millis() as u64,
                "report written"
            ),
            Err(e) => tracing::warn!(report = %kind, error = %e, "report failed"),
        }
        result.map_err(PolicyError::from)
    }
}

/// `org.keywarden.Policy1` at `/org/keywarden/Policy1`.
pub struct PolicyService {
    calls: mpsc::Sender<Call>,
    published: SharedPublished,
    access: Access,
    hardware: Hardware1Proxy<'static>,
    reports: Option<ReportSource>,
    diag: crate::diag::DiagSource,
}

macro_rules! expect_reply {
    ($reply:expr, $variant:ident) => {
        match $reply {
            Reply::$variant(v) => Ok(v),
            other => Err(PolicyError::Storage(format!(
                "internal: unexpected reply {other:?}"
            ))),
        }
    };
}

impl PolicyService {
    /// A service handing requests to the driver loop over `calls`.
    /// `reports` is `None` when the service is out of service (no usable database).
    pub fn new(
        calls: mpsc::Sender<Call>,
        published: SharedPublished,
        access: Access,
        hardware: Hardware1Proxy<'static>,
        reports: Option<ReportSource>,
        diag: crate::diag::DiagSource,
    ) -> Self {
        PolicyService {
            calls,
            published,
            access,
            hardware,
            reports,
            diag,
        }
    }

    async fn call(&self, request: Request) -> Result<Reply, PolicyError> {
        let (reply, answer) = oneshot::channel();
        let gone = || PolicyError::NotReady("the policy service is shutting down".into());
        self.calls
            .send(Call { request, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Check the caller, then run the admin change built by `op`.
    async fn admin(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
        op: impl FnOnce() -> Result<AdminOp, PolicyError>,
    ) -> Result<Reply, PolicyError> {
        let actor = self
            .access
            .check(conn, header, what, Audience::Admin)
            .await?;
        let op = op()?;
        tracing::info!(actor = %actor.audit_name(), what, "admin change");
        self.call(Request::Admin(actor, op)).await
    }

    async fn list(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
        audience: Audience,
        listing: Listing,
    ) -> Result<Reply, PolicyError> {
        self.access.check(conn, header, what, audience).await?;
        self.call(Request::List(listing)).await
    }

    async fn console(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
        command: ConsoleCommand,
    ) -> Result<(), PolicyError> {
        self.access
            .check(conn, header, what, Audience::Console)
            .await?;
        self.call(Request::Console(command)).await.map(drop)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[interface(name = "org.keywarden.Policy1")]
impl PolicyService {
    // ---- console ----

    #[zbus(out_args("keys"))]
    async fn list_keys(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<KeyChoice>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListKeys",
                Audience::Console,
                Listing::KeyChoices,
            )
            .await?;
        expect_reply!(reply, KeyChoices)
    }

    #[zbus(out_args("reasons"))]
    async fn list_reasons(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<ReasonInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListReasons",
                Audience::Console,
                Listing::Reasons,
            )
            .await?;
        expect_reply!(reply, Reasons)
    }

    async fn choose_key(
        &self,
        key: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.console(conn, &header, "ChooseKey", ConsoleCommand::ChooseKey(key))
            .await
    }

    async fn choose_reason(
        &self,
        code: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.console(
            conn,
            &header,
            "ChooseReason",
            ConsoleCommand::ChooseReason(code),
        )
        .await
    }

    async fn cancel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.console(conn, &header, "Cancel", ConsoleCommand::Cancel)
            .await
    }

    // ---- users and credentials ----

    async fn add_user(
        &self,
        name: String,
        role: String,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AddUser", || {
            Ok(AdminOp::AddUser {
                name,
                role: wire::role(&role)?,
                fields: wire::user_fields(&options, false)?,
            })
        })
        .await
        .map(drop)
    }

    async fn update_user(
        &self,
        name: String,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "UpdateUser", || {
            Ok(AdminOp::UpdateUser {
                name,
                fields: wire::user_fields(&options, true)?,
            })
        })
        .await
        .map(drop)
    }

    async fn remove_user(
        &self,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveUser", || {
            Ok(AdminOp::RemoveUser { name })
        })
        .await
        .map(drop)
    }

    async fn unlock_user(
        &self,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "UnlockUser", || {
            Ok(AdminOp::Unlock { user: name })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("users"))]
    async fn list_users(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<UserInfo>, PolicyError> {
        let reply = self
            .list(conn, &header, "ListUsers", Audience::Admin, Listing::Users)
            .await?;
        expect_reply!(reply, Users)
    }

    async fn set_pin(
        &self,
        user: String,
        pin: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        let pin = Zeroizing::new(pin);
        self.admin(conn, &header, "SetPin", || {
            Ok(AdminOp::SetPin { user, pin })
        })
        .await
        .map(drop)
    }

    async fn add_badge(
        &self,
        user: String,
        code: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        let code = Zeroizing::new(code);
        self.admin(conn, &header, "AddBadge", || {
            Ok(AdminOp::AddBadge { user, code })
        })
        .await
        .map(drop)
    }

    async fn clear_badges(
        &self,
        user: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "ClearBadges", || {
            Ok(AdminOp::ClearBadges { user })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("template"))]
    async fn enroll_fingerprint(
        &self,
        user: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u32, PolicyError> {
        let actor = self
            .access
            .check(conn, &header, "EnrollFingerprint", Audience::Admin)
            .await?;
        let template = expect_reply!(
            self.call(Request::FreeTemplate(user.clone())).await?,
            Template
        )?;
        self.hardware
            .enroll_fingerprint(template)
            .await
            .map_err(|e| PolicyError::Hardware(format!("enrolling template {template}: {e}")))?;
        self.call(Request::Admin(
            actor,
            AdminOp::AddFingerprint { user, template },
        ))
        .await?;
        Ok(template)
    }

    async fn remove_fingerprint(
        &self,
        template: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveFingerprint", || {
            Ok(AdminOp::RemoveFingerprint { template })
        })
        .await?;
        if let Err(e) = self.hardware.delete_fingerprint(template).await {
            tracing::warn!(template, error = %e, "template forgotten but not deleted from the module");
        }
        Ok(())
    }

    // ---- groups ----

    async fn add_group(
        &self,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AddGroup", || Ok(AdminOp::AddGroup { name }))
            .await
            .map(drop)
    }

    async fn remove_group(
        &self,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveGroup", || {
            Ok(AdminOp::RemoveGroup { name })
        })
        .await
        .map(drop)
    }

    async fn add_member(
        &self,
        group: String,
        user: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AddMember", || {
            Ok(AdminOp::AddMember { group, user })
        })
        .await
        .map(drop)
    }

    async fn remove_member(
        &self,
        group: String,
        user: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveMember", || {
            Ok(AdminOp::RemoveMember { group, user })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("groups"))]
    async fn list_groups(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<GroupInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListGroups",
                Audience::Admin,
                Listing::Groups,
            )
            .await?;
        expect_reply!(reply, Groups)
    }

    // ---- keys and slots ----

    async fn add_key(
        &self,
        label: String,
        tag: String,
        kind: String,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AddKey", || {
            Ok(AdminOp::AddKey {
                label,
                tag,
                kind: wire::kind(&kind)?,
                fields: wire::key_fields(&options, false)?,
            })
        })
        .await
        .map(drop)
    }

    async fn update_key(
        &self,
        label: String,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "UpdateKey", || {
            Ok(AdminOp::UpdateKey {
                label,
                fields: wire::key_fields(&options, true)?,
            })
        })
        .await
        .map(drop)
    }

    async fn remove_key(
        &self,
        label: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveKey", || {
            Ok(AdminOp::RemoveKey { label })
        })
        .await
        .map(drop)
    }

    async fn place_key(
        &self,
        label: String,
        slot: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "PlaceKey", || {
            Ok(AdminOp::PlaceKey { label, slot })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("keys"))]
    async fn list_all_keys(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<KeyInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListAllKeys",
                Audience::Admin,
                Listing::AllKeys,
            )
            .await?;
        expect_reply!(reply, AllKeys)
    }

    #[zbus(out_args("slots"))]
    async fn list_slots(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<SlotInfo>, PolicyError> {
        let reply = self
            .list(conn, &header, "ListSlots", Audience::Admin, Listing::Slots)
            .await?;
        expect_reply!(reply, Slots)
    }

    // ---- permissions and schedules ----

    #[zbus(out_args("id"))]
    async fn grant(
        &self,
        subject: String,
        target: String,
        schedule: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<i64, PolicyError> {
        let reply = self
            .admin(conn, &header, "Grant", || {
                Ok(AdminOp::Grant {
                    subject: wire::subject(&subject)?,
                    target: wire::target(&target)?,
                    schedule: (!schedule.is_empty()).then_some(schedule),
                })
            })
            .await?;
        expect_reply!(reply, Id)
    }

    async fn revoke(
        &self,
        id: i64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "Revoke", || Ok(AdminOp::Revoke { id }))
            .await
            .map(drop)
    }

    #[zbus(out_args("permissions"))]
    async fn list_permissions(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<PermissionInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListPermissions",
                Audience::Admin,
                Listing::Permissions,
            )
            .await?;
        expect_reply!(reply, Permissions)
    }

    async fn set_schedule(
        &self,
        name: String,
        windows: Vec<WindowSpec>,
        on_holidays: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "SetSchedule", || {
            Ok(AdminOp::SetSchedule {
                name,
                windows: wire::windows(&windows),
                on_holidays,
            })
        })
        .await
        .map(drop)
    }

    async fn remove_schedule(
        &self,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveSchedule", || {
            Ok(AdminOp::RemoveSchedule { name })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("schedules"))]
    async fn list_schedules(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<ScheduleInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListSchedules",
                Audience::Admin,
                Listing::Schedules,
            )
            .await?;
        expect_reply!(reply, Schedules)
    }

    async fn add_holiday(
        &self,
        date: String,
        name: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AddHoliday", || {
            Ok(AdminOp::AddHoliday { date, name })
        })
        .await
        .map(drop)
    }

    async fn remove_holiday(
        &self,
        date: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveHoliday", || {
            Ok(AdminOp::RemoveHoliday { date })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("holidays"))]
    async fn list_holidays(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<HolidayInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListHolidays",
                Audience::Admin,
                Listing::Holidays,
            )
            .await?;
        expect_reply!(reply, Holidays)
    }

    async fn set_reason(
        &self,
        code: String,
        description: String,
        max_minutes: u32,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "SetReason", || {
            Ok(AdminOp::SetReason {
                code,
                description,
                max_minutes: (max_minutes != 0).then_some(max_minutes),
            })
        })
        .await
        .map(drop)
    }

    async fn remove_reason(
        &self,
        code: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "RemoveReason", || {
            Ok(AdminOp::RemoveReason { code })
        })
        .await
        .map(drop)
    }

    // ---- reservations and alarms ----

    #[zbus(out_args("id"))]
    async fn reserve(
        &self,
        key: String,
        user: String,
        from: i64,
        until: i64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<i64, PolicyError> {
        let reply = self
            .admin(conn, &header, "Reserve", || {
                Ok(AdminOp::Reserve {
                    key,
                    user,
                    from,
                    until,
                })
            })
            .await?;
        expect_reply!(reply, Id)
    }

    async fn cancel_reservation(
        &self,
        id: i64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "CancelReservation", || {
            Ok(AdminOp::CancelReservation { id })
        })
        .await
        .map(drop)
    }

    #[zbus(out_args("reservations"))]
    async fn list_reservations(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<ReservationInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListReservations",
                Audience::Admin,
                Listing::Reservations,
            )
            .await?;
        expect_reply!(reply, Reservations)
    }

    #[zbus(out_args("alarms"))]
    async fn list_alarms(
        &self,
        active_only: bool,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<AlarmInfo>, PolicyError> {
        let reply = self
            .list(
                conn,
                &header,
                "ListAlarms",
                Audience::Admin,
                Listing::Alarms(active_only),
            )
            .await?;
        expect_reply!(reply, Alarms)
    }

    async fn acknowledge_alarm(
        &self,
        id: i64,
        note: String,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), PolicyError> {
        self.admin(conn, &header, "AcknowledgeAlarm", || {
            Ok(AdminOp::AcknowledgeAlarm { id, note })
        })
        .await
        .map(drop)
    }

    // ---- audit ----

    #[zbus(out_args("entries"))]
    async fn export_audit(
        &self,
        fd: Fd<'_>,
        from_seq: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u64, PolicyError> {
        self.access
            .check(conn, &header, "ExportAudit", Audience::Admin)
            .await?;
        let file = fd
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| PolicyError::InvalidArgument(format!("unusable file descriptor: {e}")))?;
        let reply = self.call(Request::Export(file, from_seq)).await?;
        expect_reply!(reply, Count)
    }

    #[zbus(out_args("report"))]
    async fn verify_audit(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<AuditReport, PolicyError> {
        self.access
            .check(conn, &header, "VerifyAudit", Audience::Admin)
            .await?;
        let reply = self.call(Request::Verify).await?;
        expect_reply!(reply, Audit)
    }

    #[zbus(out_args("key"))]
    async fn device_public_key(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, PolicyError> {
        self.access
            .check(conn, &header, "DevicePublicKey", Audience::Admin)
            .await?;
        Ok(self.view().device_key.clone())
    }

    // ---- reports ----

    #[zbus(out_args("rows"))]
    async fn report(
        &self,
        kind: String,
        fd: Fd<'_>,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u64, PolicyError> {
        let actor = self
            .access
            .check(conn, &header, "Report", Audience::Admin)
            .await?;
        let query = wire::report_query(&kind, &options)?;
        let Some(reports) = &self.reports else {
            return Err(PolicyError::NotReady(self.view().status.clone()));
        };
        let file = fd
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| PolicyError::InvalidArgument(format!("unusable file descriptor: {e}")))?;
        tracing::info!(actor = %actor.audit_name(), report = %query.kind, "report");
        // The report's "now" (overdue flags); the query itself never reads a clock.
        let now_ms = crate::daemon::clock::now_ms();
        reports.run(query, file, now_ms).await
    }

    // ---- support ----

    #[zbus(out_args("size", "manifest"))]
    async fn diagnostic_bundle(
        &self,
        fd: Fd<'_>,
        options: Options,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(u64, String), PolicyError> {
        let actor = self
            .access
            .check(conn, &header, "DiagnosticBundle", Audience::Admin)
            .await?;
        let now = crate::daemon::clock::now_ms().div_euclid(1000);
        let request = wire::diag_request(&options, now)?;
        let file = fd
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| PolicyError::InvalidArgument(format!("unusable file descriptor: {e}")))?;
        tracing::info!(actor = %actor.audit_name(), "diagnostic bundle");
        // The chain's verdict comes from the driver's own store (it signs its head first, as
        // VerifyAudit does); out of service, the reason is the verdict.
        let audit = match self.call(Request::Verify).await {
            Ok(Reply::Audit(r)) => Ok((r.entries, r.checkpoints, r.head)),
            Ok(other) => Err(format!("internal: unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let facts = crate::diag::Facts {
            status: self.view().status.clone(),
            audit,
        };
        match self.diag.write(conn, facts, request, file).await {
            Ok(Some(summary)) => {
                let manifest = serde_json::to_string(&summary.manifest)
                    .map_err(|e| PolicyError::Storage(format!("manifest: {e}")))?;
                Ok((summary.compressed_bytes, manifest))
            }
            Ok(None) => Err(PolicyError::Conflict(
                "a diagnostic bundle is being built; try again when it is done".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    // ---- signals ----

    /// A request was refused.
    #[zbus(signal)]
    pub async fn denied(
        emitter: &SignalEmitter<'_>,
        reason: &str,
        message: &str,
    ) -> zbus::Result<()>;

    /// A checkout was granted.
    #[zbus(signal)]
    pub async fn granted(
        emitter: &SignalEmitter<'_>,
        key: &str,
        slot: u32,
        due: i64,
    ) -> zbus::Result<()>;

    /// An alarm was raised or cleared.
    #[zbus(signal)]
    pub async fn alarm_changed(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        subject: &str,
        active: bool,
    ) -> zbus::Result<()>;

    // ---- properties ----

    #[zbus(property)]
    async fn session_state(&self) -> String {
        self.view().session.state.to_owned()
    }

    #[zbus(property)]
    async fn session_user(&self) -> String {
        self.view().session.user.clone()
    }

    #[zbus(property)]
    async fn session_prompt(&self) -> String {
        self.view().session.prompt.clone()
    }

    #[zbus(property)]
    async fn session_key(&self) -> String {
        self.view().session.key.clone()
    }

    #[zbus(property)]
    async fn session_notes(&self) -> String {
        self.view().session.notes.clone()
    }

    #[zbus(property)]
    async fn session_slot(&self) -> u32 {
        self.view().session.slot
    }

    #[zbus(property)]
    async fn session_entry(&self) -> String {
        self.view().session.entry.clone()
    }

    #[zbus(property)]
    async fn pin_length(&self) -> u32 {
        self.view().session.pin_length
    }

    #[zbus(property)]
    async fn active_alarms(&self) -> u32 {
        self.view().active_alarms
    }

    #[zbus(property)]
    async fn status(&self) -> String {
        self.view().status.clone()
    }
}

/// The crate's errors as D-Bus errors, in this one place: caller misuse keeps its kind, storage
/// faults are `Storage`, a broken chain is `AuditBroken`.
impl From<crate::error::Error> for PolicyError {
    fn from(e: crate::error::Error) -> PolicyError {
        use crate::error::Error as E;
        let message = e.to_string();
        match e {
            E::NotFound { .. } => PolicyError::NotFound(message),
            E::AlreadyExists { .. } => PolicyError::AlreadyExists(message),
            E::Invalid { .. } => PolicyError::InvalidArgument(message),
            E::WeakPin { .. } => PolicyError::WeakPin(message),
            E::Conflict { .. } => PolicyError::Conflict(message),
            E::AuditVerify(_) => PolicyError::AuditBroken(message),
            E::OutOfService => PolicyError::NotReady(message),
            E::Bus { .. } => PolicyError::Hardware(message),
            _ => PolicyError::Storage(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_by_audience() {
        let access = Access {
            admin_gids: BTreeSet::from([800]),
            console_gids: BTreeSet::from([801]),
        };
        assert!(access.allows(0, &[], Audience::Admin));
        assert!(access.allows(1000, &[5, 800], Audience::Admin));
        assert!(access.allows(1000, &[800], Audience::Console));
        assert!(access.allows(1000, &[801], Audience::Console));
        assert!(!access.allows(1000, &[801], Audience::Admin));
        assert!(!access.allows(1000, &[5], Audience::Console));
        assert!(!access.allows(900, &[], Audience::Console));
    }
}
