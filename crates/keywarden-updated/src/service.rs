//! The D-Bus surface: `org.keywarden.Update1`.
//!
//! A thin adapter. Every method first asks the bus who the caller is and lets only root and
//! the admin group through, whatever the bus policy says; then it parses its arguments into a
//! [`Command`] and hands it to the driver loop, which owns the core, and waits for the answer.
//! Properties read the [`Published`] view the loop updates.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use keywarden_dbus::update::{UpdateError, UpdateHistoryEntry, UpdateSlot};
use tokio::sync::{mpsc, oneshot};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use crate::core::{Command, Refusal, SlotRef, Source};

/// The driver loop's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done (or started, for `Install`).
    Done,
    /// `Check`: available, version, size.
    Offer(bool, String, u64),
}

/// A command with the channel its answer goes back on.
#[derive(Debug)]
pub struct Call {
    /// The command.
    pub command: Command,
    /// Who asked, for the log.
    pub caller: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Reply, UpdateError>>,
}

/// What the properties show, published by the driver loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// `State`.
    pub state: String,
    /// `BytesDone`.
    pub bytes_done: u64,
    /// `BytesTotal`.
    pub bytes_total: u64,
    /// `BytesDownloaded`.
    pub bytes_downloaded: u64,
    /// `BytesReused`.
    pub bytes_reused: u64,
    /// `BootedSlot`.
    pub booted_slot: String,
    /// `BootedVersion`.
    pub booted_version: String,
    /// `Slots`.
    pub slots: Vec<UpdateSlot>,
    /// `LastError`.
    pub last_error: (String, String),
}

/// The published view, shared between the loop and the interface.
pub type SharedPublished = Arc<Mutex<Published>>;

/// The update history as `History` returns it (oldest first), kept up to date by the loop.
pub type SharedHistory = Arc<Mutex<Vec<UpdateHistoryEntry>>>;

/// `org.keywarden.Update1`.
#[derive(Debug)]
pub struct UpdateService {
    admin_gids: BTreeSet<u32>,
    calls: mpsc::Sender<Call>,
    published: SharedPublished,
    history: SharedHistory,
}

impl UpdateService {
    /// A service letting root and members of `admin_gids` call, handing commands to `calls`,
    /// showing `published` and `history`.
    pub fn new(
        admin_gids: BTreeSet<u32>,
        calls: mpsc::Sender<Call>,
        published: SharedPublished,
        history: SharedHistory,
    ) -> Self {
        UpdateService {
            admin_gids,
            calls,
            published,
            history,
        }
    }

    async fn authorise(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        what: &str,
    ) -> Result<String, UpdateError> {
        let caller = keywarden_dbus::caller::identify(conn, header)
            .await
            .map_err(UpdateError::AccessDenied)?;
        if caller.is_root_or_in(&self.admin_gids) {
            Ok(format!("{} (uid {})", caller.name, caller.uid))
        } else {
            tracing::warn!(uid = caller.uid, what, "refused caller");
            Err(UpdateError::AccessDenied(format!(
                "uid {} ({}) may not call {what}: root and keywarden-admin only",
                caller.uid, caller.name
            )))
        }
    }

    async fn call(&self, caller: String, command: Command) -> Result<Reply, UpdateError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call {
                command,
                caller,
                reply,
            })
            .await
            .map_err(|_| UpdateError::Failed("the updater is shutting down".into()))?;
        answer
            .await
            .map_err(|_| UpdateError::Failed("the updater is shutting down".into()))?
    }

    fn published(&self) -> Published {
        match self.published.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A core refusal as a bus error.
pub fn refusal(r: Refusal) -> UpdateError {
    match r {
        Refusal::Busy(m) => UpdateError::Busy(m),
        Refusal::InvalidArgument(m) => UpdateError::InvalidArgument(m),
    }
}

#[interface(name = "org.keywarden.Update1")]
impl UpdateService {
    #[zbus(out_args("available", "version", "size"))]
    async fn check(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(bool, String, u64), UpdateError> {
        let caller = self.authorise(conn, &header, "Check").await?;
        match self.call(caller, Command::Check).await? {
            Reply::Offer(available, version, size) => Ok((available, version, size)),
            Reply::Done => Ok((false, String::new(), 0)),
        }
    }

    async fn install(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        source: &str,
    ) -> Result<(), UpdateError> {
        let caller = self.authorise(conn, &header, "Install").await?;
        let source = Source::parse(source).map_err(refusal)?;
        self.call(caller, Command::Install(source)).await.map(drop)
    }

    async fn cancel(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), UpdateError> {
        let caller = self.authorise(conn, &header, "Cancel").await?;
        self.call(caller, Command::Cancel).await.map(drop)
    }

    async fn mark_good(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        slot: &str,
    ) -> Result<(), UpdateError> {
        let caller = self.authorise(conn, &header, "MarkGood").await?;
        let slot = SlotRef::parse(slot).map_err(refusal)?;
        self.call(caller, Command::MarkGood(slot)).await.map(drop)
    }

    async fn mark_bad(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        slot: &str,
    ) -> Result<(), UpdateError> {
        let caller = self.authorise(conn, &header, "MarkBad").await?;
        let slot = SlotRef::parse(slot).map_err(refusal)?;
        self.call(caller, Command::MarkBad(slot)).await.map(drop)
    }

    #[zbus(out_args("entries"))]
    async fn history(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        limit: u32,
    ) -> Result<Vec<UpdateHistoryEntry>, UpdateError> {
        self.authorise(conn, &header, "History").await?;
        let history = match self.history.lock() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let skip = match limit {
            0 => 0,
            n => history.len().saturating_sub(n),
        };
        Ok(history.into_iter().skip(skip).collect())
    }

    /// See the interface XML.
    #[zbus(signal)]
    pub async fn completed(
        emitter: &SignalEmitter<'_>,
        ok: bool,
        code: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn state(&self) -> String {
        self.published().state
    }

    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.published().bytes_done
    }

    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.published().bytes_total
    }

    #[zbus(property)]
    fn bytes_downloaded(&self) -> u64 {
        self.published().bytes_downloaded
    }

    #[zbus(property)]
    fn bytes_reused(&self) -> u64 {
        self.published().bytes_reused
    }

    #[zbus(property)]
    fn booted_slot(&self) -> String {
        self.published().booted_slot
    }

    #[zbus(property)]
    fn booted_version(&self) -> String {
        self.published().booted_version
    }

    #[zbus(property)]
    fn slots(&self) -> Vec<UpdateSlot> {
        self.published().slots
    }

    #[zbus(property)]
    fn last_error(&self) -> (String, String) {
        self.published().last_error
    }
}
