//! System bus clients with a chosen uid, in this (root) process.
//!
//! The bus daemon learns a client's uid from `SO_PEERCRED`, which the kernel records at
//! `connect()` from the connecting *thread's* credentials. [`connect_as`] therefore connects from
//! a short-lived helper thread that first switches its own effective uid with the raw
//! `setresuid` syscall (glibc's wrapper would switch every thread of the process), and switches
//! back before it ends; the SASL `EXTERNAL` handshake then claims the same uid.

use crate::{Context, Result};
use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::names::HARDWARE_BUS_NAME;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use zbus::proxy::CacheProperties;

/// The system bus socket of the VM's dbus-daemon.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Connects to the system bus as `uid`.
pub async fn connect_as(uid: u32) -> Result<zbus::Connection> {
    let stream = std::thread::spawn(move || connect_socket_as(uid))
        .join()
        .map_err(|_| "connect thread panicked".to_owned())??;
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
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .context("creating the bus proxy")?;
    let deadline = Instant::now() + within;
    loop {
        let name = HARDWARE_BUS_NAME.try_into().context("bus name")?;
        match dbus.get_name_owner(name).await {
            Ok(owner) => return Ok(owner.to_string()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => {
                return Err(format!(
                    "{HARDWARE_BUS_NAME} has no owner after {within:?}: {e}"
                ))
            }
        }
    }
}
