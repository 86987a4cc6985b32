//! Driving keywarden-policyd as the cabinet's people and programs do, for the policy scenarios
//! and the policy benchmark: the test site's records (provisioned over `org.keywarden.Policy1`
//! as root), a person at the cabinet (badge on the uinput reader, PIN on the uinput keypad, keys
//! in and out of slots through the gpio-sim presence lines), the console program (uid 951,
//! group `keywarden-console`) and the audit export.

use crate::board::{ids, slot_lines};
use crate::bus::{connect_as, connect_as_member, policy};
use crate::setup::Cabinet;
use crate::uinput::{key_for, KEY_INTERVAL};
use crate::{Context, Result};
use evdev::KeyCode;
use futures_util::{Stream, StreamExt};
use keywarden_dbus::names::{POLICY_BUS_NAME, POLICY_INTERFACE, POLICY_PATH};
use keywarden_dbus::policy::{KeyInfo, Options, Policy1Proxy};
use std::time::{Duration, Instant};
use zbus::zvariant::Value;

/// Someone with a badge and a PIN. Badge codes and PINs are long and distinctive, so finding
/// one in an export or a log cannot be a coincidence (a 4-digit PIN turns up in hex hashes).
#[derive(Debug, Clone, Copy)]
pub struct Person {
    /// Login name.
    pub name: &'static str,
    /// Display name (`SessionUser`).
    pub display: &'static str,
    /// Badge code.
    pub badge: &'static str,
    /// PIN.
    pub pin: &'static str,
}

/// Staff, may take key [`KEY_204`].
pub const ALICE: Person = Person {
    name: "alice",
    display: "Alice Example",
    badge: "KW-ALICE-7Q3X",
    pin: "86420975",
};
/// Staff, may take nothing.
pub const BOB: Person = Person {
    name: "bob",
    display: "Bob Example",
    badge: "KW-BOB-5M2P",
    pin: "73195208",
};
/// Staff, locked out by the denial scenario.
pub const CAROL: Person = Person {
    name: "carol",
    display: "Carol Example",
    badge: "KW-CAROL-4K8W",
    pin: "51739462",
};

/// A key: label, tag code on its fob, home slot.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Label.
    pub label: &'static str,
    /// Tag code (scanned on the badge reader to return it).
    pub tag: &'static str,
    /// Home slot, where it is placed at provisioning.
    pub slot: u32,
}

/// Alice's key, in slot 1.
pub const KEY_204: Key = Key {
    label: "204",
    tag: "TAG-A204",
    slot: 1,
};
/// The pool key, in slot 2; nobody may take it.
pub const KEY_POOL: Key = Key {
    label: "POOL",
    tag: "TAG-P002",
    slot: 2,
};
/// The reason code.
pub const REASON: &str = "MAINT";

/// Error name the bus daemon gives a message its policy refused.
pub const BUS_ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// The service as root (admin) and as the console program.
pub struct Clients {
    /// `org.keywarden.Policy1` as root.
    pub root: Policy1Proxy<'static>,
    /// `org.keywarden.Policy1` as `console` (uid 951, groups console and keywarden-console).
    pub console: Policy1Proxy<'static>,
    /// The console's connection (for `Peer.Ping`).
    pub console_conn: zbus::Connection,
}

impl Clients {
    /// Connects both.
    pub async fn connect() -> Result<Self> {
        let root = policy(&connect_as(0).await?).await?;
        let console_conn = connect_as_console().await?;
        let console = policy(&console_conn).await?;
        Ok(Clients {
            root,
            console,
            console_conn,
        })
    }

    /// Waits (polling) until `SessionState` is `want`.
    pub async fn wait_state(&self, want: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let state = self.console.session_state().await.context("SessionState")?;
            if state == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                let prompt = self.console.session_prompt().await.unwrap_or_default();
                return Err(format!(
                    "SessionState is {state:?} ({prompt:?}) after {within:?}, expected {want:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no session is in progress (idle, or a message on the display, which a new
    /// badge or tag ends).
    pub async fn wait_settled(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = self.console.session_state().await.context("SessionState")?;
            if state == "idle" || state == "message" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("a session is still in progress: {state:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The key's record (`ListAllKeys`).
    pub async fn key(&self, label: &str) -> Result<KeyInfo> {
        self.root
            .list_all_keys()
            .await
            .context("ListAllKeys")?
            .into_iter()
            .find(|k| k.label == label)
            .ok_or_else(|| format!("ListAllKeys has no key {label:?}"))
    }

    /// Adds `person` (role staff, badge, PIN) unless a user of that name exists.
    pub async fn ensure_person(&self, person: &Person) -> Result<()> {
        let users = self.root.list_users().await.context("ListUsers")?;
        if users.iter().any(|u| u.name == person.name) {
            return Ok(());
        }
        let mut options = Options::new();
        options.insert("display-name", Value::from(person.display));
        let p = &self.root;
        let name = person.name;
        p.add_user(name, "staff", &options)
            .await
            .context(format!("AddUser {name}"))?;
        p.set_pin(name, person.pin)
            .await
            .context(format!("SetPin {name}"))?;
        p.add_badge(name, person.badge)
            .await
            .context(format!("AddBadge {name}"))?;
        p.add_member("staff", name)
            .await
            .context(format!("AddMember staff {name}"))
    }

    /// Adds `key` in its home slot unless a key with that label exists.
    pub async fn ensure_key(&self, key: &Key) -> Result<()> {
        let keys = self.root.list_all_keys().await.context("ListAllKeys")?;
        if keys.iter().any(|k| k.label == key.label) {
            return Ok(());
        }
        let mut options = Options::new();
        options.insert("home-slot", Value::from(key.slot));
        self.root
            .add_key(key.label, key.tag, "unit", &options)
            .await
            .context(format!("AddKey {}", key.label))?;
        self.root
            .place_key(key.label, key.slot)
            .await
            .context(format!("PlaceKey {} {}", key.label, key.slot))
    }

    /// The site every scenario starts from: reason [`REASON`], group `staff`, [`ALICE`] with
    /// [`KEY_204`] in slot 1 and a permission for it. Idempotent.
    pub async fn ensure_site(&self) -> Result<()> {
        let p = &self.root;
        let reasons = self.console.list_reasons().await.context("ListReasons")?;
        if !reasons.iter().any(|r| r.code == REASON) {
            p.set_reason(REASON, "maintenance", 0)
                .await
                .context("SetReason")?;
        }
        let groups = p.list_groups().await.context("ListGroups")?;
        if !groups.iter().any(|g| g.name == "staff") {
            p.add_group("staff").await.context("AddGroup staff")?;
        }
        self.ensure_person(&ALICE).await?;
        self.ensure_key(&KEY_204).await?;
        let target = format!("key:{}", KEY_204.label);
        let subject = format!("user:{}", ALICE.name);
        let permissions = p.list_permissions().await.context("ListPermissions")?;
        if !permissions
            .iter()
            .any(|x| x.subject == subject && x.target == target)
        {
            p.grant(&subject, &target, "")
                .await
                .context(format!("Grant {subject} {target}"))?;
        }
        Ok(())
    }

    /// Writes the whole audit trail to a file through `ExportAudit`, checks it off the service
    /// with `keywarden_audit::verify_export` against `DevicePublicKey`, and returns its text.
    pub async fn export_verified(&self, name: &str) -> Result<String> {
        let path = std::path::Path::new("/tmp").join(format!("{name}.jsonl"));
        let file = std::fs::File::create(&path).context(format!("creating {}", path.display()))?;
        let written = self
            .root
            .export_audit(zbus::zvariant::Fd::from(&file), 1)
            .await
            .context("ExportAudit")?;
        drop(file);
        let key_hex = self
            .root
            .device_public_key()
            .await
            .context("DevicePublicKey")?;
        let key = keywarden_audit::parse_public_key(&key_hex).context("the device key")?;
        let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
        let report = keywarden_audit::verify_export(text.as_bytes(), Some(&key))
            .context("verify_export of the exported trail")?;
        if report.entries != written || written == 0 {
            return Err(format!(
                "ExportAudit wrote {written} entries, the export verifies {}",
                report.entries
            ));
        }
        Ok(text)
    }
}

/// Connects as the console program: uid 951, gid 951, groups console and keywarden-console.
pub async fn connect_as_console() -> Result<zbus::Connection> {
    connect_as_member(
        ids::CONSOLE_UID,
        ids::CONSOLE_GID,
        &[ids::CONSOLE_GID, ids::KEYWARDEN_CONSOLE_GID],
    )
    .await
}

/// One audit entry of an export (`{"entry":{...}}` lines).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Sequence number.
    pub seq: u64,
    /// `granted`, `removed`, `denied`, ...
    pub kind: String,
    /// Login name, or "".
    pub actor: String,
    /// `key:204`, `user:alice`, ...
    pub subject: String,
    /// The detail object's JSON text.
    pub detail: String,
}

/// The entries of an export.
pub fn audit_entries(export: &str) -> Result<Vec<AuditEntry>> {
    let mut entries = Vec::new();
    for line in export.lines() {
        let value: serde_json::Value = serde_json::from_str(line).context("an export line")?;
        let Some(e) = value.get("entry") else {
            continue;
        };
        let text = |field: &str| {
            e.get(field)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        entries.push(AuditEntry {
            seq: e
                .get("seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            kind: text("kind"),
            actor: text("actor"),
            subject: text("subject"),
            detail: text("detail"),
        });
    }
    Ok(entries)
}

/// Fails if any of `secrets` occurs in `text` (named `what`).
pub fn expect_absent(text: &str, secrets: &[&str], what: &str) -> Result<()> {
    match secrets.iter().find(|s| text.contains(**s)) {
        Some(s) => Err(format!("{s:?} occurs in {what}")),
        None => Ok(()),
    }
}

/// Types `code` on the badge reader, then Enter.
pub fn scan(cab: &mut Cabinet, code: &str) -> Result<()> {
    cab.badge.type_text(code)?;
    std::thread::sleep(KEY_INTERVAL);
    cab.badge.tap(KeyCode::KEY_ENTER)
}

/// Types the digits of `pin` on the keypad, without Enter.
pub fn type_digits(cab: &mut Cabinet, pin: &str) -> Result<()> {
    for c in pin.chars() {
        let (key, _) = key_for(c).ok_or_else(|| format!("no key for {c:?}"))?;
        std::thread::sleep(KEY_INTERVAL);
        cab.keypad.tap(key)?;
    }
    std::thread::sleep(KEY_INTERVAL);
    Ok(())
}

/// Types `pin` and Enter on the keypad.
pub fn type_pin(cab: &mut Cabinet, pin: &str) -> Result<()> {
    type_digits(cab, pin)?;
    cab.keypad.tap(KeyCode::KEY_ENTER)
}

/// Puts a key into slot `n` (`true`) or takes it out: the presence line.
pub fn set_present(cab: &Cabinet, n: u32, present: bool) -> Result<()> {
    cab.lines.pull(&slot_lines(n).0, present)
}

/// Whether slot `n`'s presence line reads "occupied".
pub fn present(cab: &Cabinet, n: u32) -> Result<bool> {
    Ok(cab.lines.value(&slot_lines(n).0)? == 1)
}

/// The next item of a signal stream within `within`.
pub async fn next_within<S: Stream + Unpin>(
    stream: &mut S,
    what: &str,
    within: Duration,
) -> Result<S::Item> {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(item)) => Ok(item),
        Ok(None) => Err(format!("{what}: the signal stream ended")),
        Err(_) => Err(format!("no {what} signal within {within:?}")),
    }
}

/// The D-Bus error name of a failed call.
pub fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other}"),
    }
}

/// `SessionState` values as `PropertiesChanged` announces them: precise arrival times for the
/// benchmark, where polling would add its own period.
pub struct StateStream {
    stream: zbus::fdo::PropertiesChangedStream,
}

impl StateStream {
    /// Subscribes on `conn`.
    pub async fn subscribe(conn: &zbus::Connection) -> Result<Self> {
        let props = zbus::fdo::PropertiesProxy::builder(conn)
            .destination(POLICY_BUS_NAME)
            .context("destination")?
            .path(POLICY_PATH)
            .context("path")?
            .build()
            .await
            .context("creating the Properties proxy")?;
        let stream = props
            .receive_properties_changed()
            .await
            .context("subscribing to PropertiesChanged")?;
        Ok(StateStream { stream })
    }

    /// Waits until `SessionState` changes to `want`; returns when the signal arrived.
    pub async fn wait_for(&mut self, want: &str, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let signal = next_within(&mut self.stream, "PropertiesChanged", left)
                .await
                .map_err(|e| format!("waiting for SessionState {want:?}: {e}"))?;
            let at = Instant::now();
            let args = signal.args().context("PropertiesChanged args")?;
            if args.interface_name.as_str() != POLICY_INTERFACE {
                continue;
            }
            let state = args
                .changed_properties
                .get("SessionState")
                .and_then(|v| <&str>::try_from(v).ok().map(str::to_owned));
            if state.as_deref() == Some(want) {
                return Ok(at);
            }
        }
    }
}
