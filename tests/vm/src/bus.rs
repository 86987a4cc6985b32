//! System bus clients with a chosen uid, in this (root) process.
//!
//! The bus daemon learns a client's uid from `SO_PEERCRED`, which the kernel records at
//! `connect()` from the connecting *thread's* credentials. [`connect_as`] therefore connects from
//! a short-lived helper thread that first switches its own effective uid with the raw
//! `setresuid` syscall (glibc's wrapper would switch every thread of the process), and switches
//! back before it ends; the SASL `EXTERNAL` handshake then claims the same uid.
//!
//! [`connect_as_member`] also gives that thread a group id and supplementary groups (raw
//! `setresgid` and `setgroups`, again per thread): the bus daemon takes a client's groups from
//! the socket (`SO_PEERGROUPS`) for its `<policy group=...>` rules and for
//! `GetConnectionCredentials`, which keywarden-policyd checks in every method.

use crate::{Context, Result};
use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::names::HARDWARE_BUS_NAME;
use keywarden_dbus::policy::Policy1Proxy;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use zbus::proxy::CacheProperties;

/// The system bus socket of the VM's dbus-daemon.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Connects to the system bus as `uid` (keeping this process's groups: root's, none).
pub async fn connect_as(uid: u32) -> Result<zbus::Connection> {
    let stream = std::thread::spawn(move || connect_socket_as(uid))
        .join()
        .map_err(|_| "connect thread panicked".to_owned())??;
    handshake(stream, uid).await
}

/// Connects to the system bus as `uid` with primary group `gid` and supplementary `groups`, as
/// a process of that user started by login would.
pub async fn connect_as_member(uid: u32, gid: u32, groups: &[u32]) -> Result<zbus::Connection> {
    let groups = groups.to_vec();
    let stream = std::thread::spawn(move || connect_socket_as_member(uid, gid, &groups))
        .join()
        .map_err(|_| "connect thread panicked".to_owned())??;
    handshake(stream, uid).await
}

async fn handshake(stream: UnixStream, uid: u32) -> Result<zbus::Connection> {
    stream
        .set_nonblocking(true)
        .context("making the bus socket non-blocking")?;
    let stream = tokio::net::UnixStream::from_std(stream).context("registering the bus socket")?;
    zbus::connection::Builder::unix_stream(stream)
        .user_id(uid)
        .build()
        .await
        .context(format!("bus handshake as uid {uid}"))
}

/// Runs on its own thread: changes only this thread's effective uid around `connect()`.
fn connect_socket_as(uid: u32) -> Result<UnixStream> {
    set_thread_euid(uid)?;
    let stream = UnixStream::connect(SYSTEM_BUS_SOCKET);
    set_thread_euid(0)?;
    stream.context(format!("connecting to {SYSTEM_BUS_SOCKET} as uid {uid}"))
}

/// Runs on its own thread: groups and gid first (while still root), then the uid; back in the
/// opposite order.
fn connect_socket_as_member(uid: u32, gid: u32, groups: &[u32]) -> Result<UnixStream> {
    set_thread_groups(gid, groups)?;
    let stream = connect_socket_as(uid);
    set_thread_groups(0, &[])?;
    stream
}

fn set_thread_groups(gid: u32, groups: &[u32]) -> Result<()> {
    const UNCHANGED: libc::c_long = -1;
    let list: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: raw syscalls on this thread's credentials only (glibc's wrappers would change
    // every thread); `list` outlives the call and holds `list.len()` gids.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, list.len(), list.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "setgroups({groups:?}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above, integer arguments only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setresgid,
            UNCHANGED,
            libc::c_long::from(gid),
            UNCHANGED,
        )
    };
    if rc != 0 {
        return Err(format!(
            "setresgid(-1, {gid}, -1): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn set_thread_euid(uid: u32) -> Result<()> {
    const UNCHANGED: libc::c_long = -1;
    // SAFETY: a raw syscall with integer arguments; it changes only the calling thread's
    // credentials (unlike libc::setresuid, which glibc broadcasts to every thread).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setresuid,
            UNCHANGED,
            libc::c_long::from(uid),
            UNCHANGED,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "setresuid(-1, {uid}, -1): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// A `Hardware1` proxy that does not fetch properties behind our back.
pub async fn hardware(conn: &zbus::Connection) -> Result<Hardware1Proxy<'static>> {
    Hardware1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .context("creating the Hardware1 proxy")
}

/// Waits until `org.keywarden.Hardware1` has an owner; returns its unique name.
pub async fn wait_for_hardware(conn: &zbus::Connection, within: Duration) -> Result<String> {
    wait_for_name(conn, HARDWARE_BUS_NAME, within).await
}

/// A `Policy1` proxy that does not fetch properties behind our back.
pub async fn policy(conn: &zbus::Connection) -> Result<Policy1Proxy<'static>> {
    Policy1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .context("creating the Policy1 proxy")
}

/// Waits until `name` has an owner; returns its unique name.
pub async fn wait_for_name(
    conn: &zbus::Connection,
    name: &str,
    within: Duration,
) -> Result<String> {
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .context("creating the bus proxy")?;
    let deadline = Instant::now() + within;
    loop {
        let bus_name = name.try_into().context("bus name")?;
        match dbus.get_name_owner(bus_name).await {
            Ok(owner) => return Ok(owner.to_string()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(format!("{name} has no owner after {within:?}: {e}")),
        }
    }
}
