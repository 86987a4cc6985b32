//! The bus side: one task that keeps a connection to the bus and to `org.keywarden.Policy1`,
//! turns its property changes and signals into [`Event`]s for the main loop, and makes the calls
//! the console asks for. It reconnects by itself: when the bus or policyd goes away the main loop
//! is told ([`Event::Unavailable`]) and the task retries every second.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use keywarden_dbus::names::{POLICY_BUS_NAME, POLICY_INTERFACE, POLICY_PATH};
use keywarden_dbus::policy::Policy1Proxy;
use tokio::sync::mpsc;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedValue;

use crate::model::{Command, KeyRow, Published, ReasonRow};

/// Something from the bus side.
#[derive(Debug)]
pub enum Event {
    /// policyd's properties, freshly read.
    Published(Published),
    /// The bus or policyd cannot be reached.
    Unavailable(String),
    /// `ListKeys` answered.
    Keys(Vec<KeyRow>),
    /// `ListReasons` answered.
    Reasons(Vec<ReasonRow>),
    /// A call was refused or failed.
    CallFailed(String),
    /// `Denied(reason, message)`.
    Denied(String, String),
    /// `Granted(key, slot, due)`.
    Granted(String, u32, i64),
    /// `AlarmChanged(kind, subject, active)`.
    Alarm(String, String, bool),
}

/// What the display says while policyd's name has no owner.
const NOT_RUNNING: &str = "keywarden-policyd is not running";

/// How long to wait before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

/// Run the bus side until `commands` closes. `address` = None: the system bus.
pub async fn run(
    address: Option<String>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        let conn = match connect(address.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot connect to the bus: {e}");
                if events
                    .send(Event::Unavailable(format!("no bus: {e}")))
                    .is_err()
                {
                    return;
                }
                if !wait_retry(&mut commands).await {
                    return;
                }
                continue;
            }
        };
        match serve(&conn, &mut commands, &events).await {
            Ok(Ended::Closed) => return,
            Ok(Ended::Lost(why)) | Err(Lost(why)) => {
                tracing::warn!("lost keywarden-policyd: {why}");
                if events.send(Event::Unavailable(why)).is_err() {
                    return;
                }
                if !wait_retry(&mut commands).await {
                    return;
                }
            }
        }
    }
}

/// Sleep before a retry, dropping the commands meanwhile (nothing to send them to). False when
/// the console has gone.
async fn wait_retry(commands: &mut mpsc::UnboundedReceiver<Command>) -> bool {
    let sleep = tokio::time::sleep(RETRY);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            cmd = commands.recv() => if cmd.is_none() { return false },
        }
    }
}

async fn connect(address: Option<&str>) -> zbus::Result<zbus::Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)?.build().await,
        None => zbus::Connection::system().await,
    }
}

enum Ended {
    /// The console is closing.
    Closed,
    /// policyd or the bus went away.
    Lost(String),
}

/// A bus failure that ends this connection.
struct Lost(String);

impl From<zbus::Error> for Lost {
    fn from(e: zbus::Error) -> Lost {
        Lost(e.to_string())
    }
}

/// Serve one connection: wait for policyd and follow it across restarts (zbus matches the
/// signals against whoever owns the name now).
async fn serve(
    conn: &zbus::Connection,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<Ended, Lost> {
    let policy = Policy1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let props = PropertiesProxy::builder(conn)
        .destination(POLICY_BUS_NAME)?
        .path(POLICY_PATH)?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut owner = policy.inner().receive_owner_changed().await?;
    let mut changed = props.receive_properties_changed().await?;
    let mut denied = policy.receive_denied().await?;
    let mut granted = policy.receive_granted().await?;
    let mut alarms = policy.receive_alarm_changed().await?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let name = zbus::names::BusName::try_from(POLICY_BUS_NAME).map_err(zbus::Error::from)?;
    let mut up = dbus.name_has_owner(name).await.map_err(zbus::Error::from)?;
    if up {
        publish(&props, events).await?;
    } else {
        send(events, Event::Unavailable(NOT_RUNNING.into()))?;
    }
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Ok(Ended::Closed) };
                // Nothing to ask while policyd is away; the display already says so.
                if up {
                    execute(&policy, &props, cmd, events).await?;
                }
            }
            new_owner = owner.next() => match new_owner {
                Some(Some(_)) => {
                    up = true;
                    publish(&props, events).await?;
                }
                Some(None) => {
                    up = false;
                    send(events, Event::Unavailable(NOT_RUNNING.into()))?;
                }
                None => return Ok(Ended::Lost("the bus connection closed".into())),
            },
            signal = changed.next() => {
                let Some(signal) = signal else {
                    return Ok(Ended::Lost("the bus connection closed".into()));
                };
                let ours = signal
                    .args()
                    .is_ok_and(|a| a.interface_name.as_str() == POLICY_INTERFACE);
                if ours {
                    publish(&props, events).await?;
                }
            }
            signal = denied.next() => {
                let Some(signal) = signal else {
                    return Ok(Ended::Lost("the bus connection closed".into()));
                };
                if let Ok(a) = signal.args() {
                    send(events, Event::Denied(a.reason.clone(), a.message.clone()))?;
                }
            }
            signal = granted.next() => {
                let Some(signal) = signal else {
                    return Ok(Ended::Lost("the bus connection closed".into()));
                };
                if let Ok(a) = signal.args() {
                    send(events, Event::Granted(a.key.clone(), a.slot, a.due))?;
                }
            }
            signal = alarms.next() => {
                let Some(signal) = signal else {
                    return Ok(Ended::Lost("the bus connection closed".into()));
                };
                if let Ok(a) = signal.args() {
                    send(events, Event::Alarm(a.kind.clone(), a.subject.clone(), a.active))?;
                }
            }
        }
    }
}

fn send(events: &mpsc::UnboundedSender<Event>, event: Event) -> Result<(), Lost> {
    events
        .send(event)
        .map_err(|_| Lost("the console has gone".into()))
}

/// Make one call the console asked for. A refused call is shown on the display; a bus failure
/// ends the connection.
async fn execute(
    policy: &Policy1Proxy<'_>,
    props: &PropertiesProxy<'_>,
    cmd: Command,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), Lost> {
    let failed = |what: &str, e: zbus::Error| -> Result<Event, Lost> {
        match e {
            zbus::Error::MethodError(_, Some(message), _) => {
                Ok(Event::CallFailed(format!("{what}: {message}")))
            }
            zbus::Error::MethodError(name, None, _) => {
                Ok(Event::CallFailed(format!("{what}: {name}")))
            }
            other => Err(Lost(format!("{what}: {other}"))),
        }
    };
    let event = match cmd {
        Command::Refresh => return publish(props, events).await,
        Command::Quit => return Ok(()),
        Command::ListKeys => match policy.list_keys().await {
            Ok(keys) => Event::Keys(
                keys.into_iter()
                    .map(|k| KeyRow {
                        label: k.label,
                        kind: k.kind,
                        notes: k.notes,
                        status: k.status,
                        available: k.available,
                        slot: k.slot,
                    })
                    .collect(),
            ),
            Err(e) => failed("list keys", e)?,
        },
        Command::ListReasons => match policy.list_reasons().await {
            Ok(reasons) => Event::Reasons(
                reasons
                    .into_iter()
                    .map(|r| ReasonRow {
                        code: r.code,
                        description: r.description,
                        max_minutes: r.max_minutes,
                    })
                    .collect(),
            ),
            Err(e) => failed("list reasons", e)?,
        },
        Command::ChooseKey(label) => match policy.choose_key(&label).await {
            Ok(()) => return Ok(()),
            Err(e) => failed(&format!("key {label}"), e)?,
        },
        Command::ChooseReason(code) => match policy.choose_reason(&code).await {
            Ok(()) => return Ok(()),
            Err(e) => failed(&format!("reason {code}"), e)?,
        },
        Command::Cancel => match policy.cancel().await {
            Ok(()) => return Ok(()),
            Err(e) => failed("cancel", e)?,
        },
    };
    send(events, event)
}

/// Read every property (one `GetAll`) and hand them to the console.
async fn publish(
    props: &PropertiesProxy<'_>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), Lost> {
    let iface = InterfaceName::from_static_str_unchecked(POLICY_INTERFACE);
    let all = props.get_all(iface).await.map_err(zbus::Error::from)?;
    send(events, Event::Published(published(&all)))
}

/// The properties as a [`Published`]; a missing or mistyped property reads as empty or 0.
pub fn published(all: &HashMap<String, OwnedValue>) -> Published {
    let text = |name: &str| {
        all.get(name)
            .and_then(|v| v.downcast_ref::<&str>().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let number = |name: &str| {
        all.get(name)
            .and_then(|v| v.downcast_ref::<u32>().ok())
            .unwrap_or_default()
    };
    Published {
        state: text("SessionState"),
        user: text("SessionUser"),
        prompt: text("SessionPrompt"),
        key: text("SessionKey"),
        notes: text("SessionNotes"),
        slot: number("SessionSlot"),
        entry: text("SessionEntry"),
        pin_length: number("PinLength"),
        active_alarms: number("ActiveAlarms"),
        status: text("Status"),
    }
}
