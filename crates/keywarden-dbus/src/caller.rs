//! Who is calling: the uid, name and groups of a method call's sender, asked of the bus
//! (`GetConnectionCredentials`), for the per-method checks every service makes whatever its bus
//! policy file says.

use zbus::message::Header;
use zbus::Connection;

/// A caller as the bus and the user database describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The sender's uid.
    pub uid: u32,
    /// The user name, or the uid as text if the user database does not know it.
    pub name: String,
    /// Group ids: from the bus (`UnixGroupIDs`), else from the user database.
    pub gids: Vec<u32>,
}

impl Caller {
    /// Whether the caller is root or a member of one of `gids`.
    pub fn is_root_or_in(&self, gids: &std::collections::BTreeSet<u32>) -> bool {
        self.uid == 0 || self.gids.iter().any(|g| gids.contains(g))
    }
}

/// Identifies the sender of the message with `header`. The error says why it cannot be told
/// (no sender, the bus refused, no uid): callers refuse the call then.
pub async fn identify(conn: &Connection, header: &Header<'_>) -> Result<Caller, String> {
    let sender = header
        .sender()
        .ok_or_else(|| "message has no sender".to_owned())?;
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| format!("cannot ask the bus about caller {sender}: {e}"))?;
    let creds = dbus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(|e| format!("cannot identify caller {sender}: {e}"))?;
    let uid = creds
        .unix_user_id()
        .ok_or_else(|| format!("no uid for caller {sender}"))?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    let gids: Vec<u32> = match creds.unix_group_ids() {
        Some(g) => g.clone(),
        None => user
            .as_ref()
            .and_then(|u| {
                let name = std::ffi::CString::new(u.name.clone()).ok()?;
                nix::unistd::getgrouplist(&name, u.gid).ok()
            })
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default(),
    };
    Ok(Caller {
        uid,
        name: user.map(|u| u.name).unwrap_or_else(|| uid.to_string()),
        gids,
    })
}

/// The gids of the named groups that exist on this system, and the names that do not exist
/// (a group that does not exist has no members to let in; callers log the missing ones).
pub fn group_ids(names: &[String]) -> (std::collections::BTreeSet<u32>, Vec<String>) {
    let mut found = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for name in names {
        match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => {
                found.insert(group.gid.as_raw());
            }
            _ => missing.push(name.clone()),
        }
    }
    (found, missing)
}
