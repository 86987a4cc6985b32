//! The policy scenarios: keywarden-policyd (as `keywarden`, database on the data partition)
//! deciding over the real hwd, real kernel devices and the real bus. A person scans a badge on the
//! uinput reader and types a PIN on the uinput keypad; the console program (uid 951, group
//! `keywarden-console`) picks the key and reason over the bus; locks are read and keys moved
//! through gpio-sim. They run after the hardware scenarios, on a cabinet with keys in slots 1
//! and 2 and slots 3 and 4 empty; each starts from the records it finds (where key 204 is, who
//! holds it) and ensures the site's base records itself.

use super::{Ctx, PROMPT, SIGNAL};
use crate::board::{ids, slot_lines, LOCKS, PIN_ATTEMPTS, RELEASE_SECONDS};
use crate::bus::{connect_as_member, policy};
use crate::gpiosim::{Sampler, Sampling};
use crate::policy::{
    audit_entries, error_name, expect_absent, next_within, present, scan, set_present, type_pin,
    Clients, Person, ALICE, BOB, BUS_ACCESS_DENIED, CAROL, KEY_204, KEY_POOL, REASON,
};
use crate::policyd::Policyd;
use crate::report::Report;
use crate::setup::progress;
use crate::{Context, Result};
use keywarden_dbus::policy::Options;
use std::time::{Duration, Instant};

/// Time limit of one policy scenario: PIN checks are Argon2id, seconds each under TCG.
const LIMIT: Duration = Duration::from_secs(120);
/// How long a PIN check may take under TCG (Argon2id, 19 MiB, t=2).
const PIN_CHECK: Duration = Duration::from_secs(30);
/// How long a state change after a bus call or a sensor change may take.
const STATE: Duration = Duration::from_secs(5);
/// The release pulse.
const RELEASE: Duration = Duration::from_secs(RELEASE_SECONDS);

/// What the policy scenarios share: the service and its clients.
pub struct Pol {
    policyd: Policyd,
    clients: Clients,
}

/// Starts keywarden-policyd next to the running hwd and runs the policy scenarios.
pub async fn run_all(report: &mut Report, ctx: &mut Ctx) {
    let mut pol = match setup(ctx).await {
        Ok(pol) => pol,
        Err(e) => {
            report.fail("policy-setup", &e);
            return;
        }
    };
    report
        .run("policy-checkout", LIMIT, checkout(ctx, &mut pol))
        .await;
    report
        .run("policy-denials", LIMIT, denials(ctx, &mut pol))
        .await;
    report
        .run("policy-wrong-slot", LIMIT, wrong_slot(ctx, &mut pol))
        .await;
    report
        .run("policy-forced-door", LIMIT, forced_door(ctx, &mut pol))
        .await;
    report
        .run("policy-console-refused", LIMIT, console_refused(&mut pol))
        .await;
    report
        .run("policy-crash", LIMIT, crash(ctx, &mut pol))
        .await;
}

async fn setup(ctx: &mut Ctx) -> Result<Pol> {
    let policyd = Policyd::start(&ctx.cab).await?;
    let clients = Clients::connect().await?;
    let status = clients.root.status().await.context("Status")?;
    if status != "ready" {
        return Err(format!("keywarden-policyd is {status:?}"));
    }
    Ok(Pol { policyd, clients })
}

/// Badge and PIN on the devices; waits for `choose-key`.
async fn login(ctx: &mut Ctx, pol: &Pol, who: &Person) -> Result<()> {
    let c = &pol.clients;
    c.wait_settled().await?;
    scan(&mut ctx.cab, who.badge)?;
    c.wait_state("pin", STATE).await?;
    type_pin(&mut ctx.cab, who.pin)?;
    c.wait_state("choose-key", PIN_CHECK).await
}

/// A whole checkout of `key` by `who`, the key taken out of its slot: returns the slot.
async fn checkout_and_take(ctx: &mut Ctx, pol: &Pol, who: &Person, key: &str) -> Result<u32> {
    let c = &pol.clients;
    login(ctx, pol, who).await?;
    c.console.choose_key(key).await.context("ChooseKey")?;
    c.wait_state("choose-reason", STATE).await?;
    c.console
        .choose_reason(REASON)
        .await
        .context("ChooseReason")?;
    c.wait_state("take-key", STATE).await?;
    let slot = c.console.session_slot().await.context("SessionSlot")?;
    let (_, lock) = slot_lines(slot);
    ctx.cab
        .lines
        .wait_value(&lock, 1, Duration::from_secs(2))
        .await?;
    set_present(&ctx.cab, slot, false)?;
    c.wait_state("message", STATE).await?;
    Ok(slot)
}

/// Returns `key` by scanning its tag and putting it where the service says: returns the slot.
async fn return_by_tag(ctx: &mut Ctx, pol: &Pol, tag: &str) -> Result<u32> {
    let c = &pol.clients;
    c.wait_settled().await?;
    scan(&mut ctx.cab, tag)?;
    c.wait_state("return-key", STATE).await?;
    let slot = c.console.session_slot().await.context("SessionSlot")?;
    let (_, lock) = slot_lines(slot);
    ctx.cab
        .lines
        .wait_value(&lock, 1, Duration::from_secs(2))
        .await?;
    set_present(&ctx.cab, slot, true)?;
    c.wait_state("message", STATE).await?;
    Ok(slot)
}

/// Provision as root; badge and PIN on the devices; key and reason as the console user; the
/// slot's lock energises and drops by itself after the release time; the key leaves the slot,
/// the session ends and the records show the holder; the exported audit trail verifies off the
/// service and records the grant and the removal, and no credential is in it or in the log.
async fn checkout(ctx: &mut Ctx, pol: &mut Pol) -> Result<()> {
    let c = &pol.clients;
    c.ensure_site().await?;
    let users = c.root.list_users().await.context("ListUsers")?;
    let alice = users
        .iter()
        .find(|u| u.name == ALICE.name)
        .ok_or("ListUsers has no alice")?;
    if !alice.has_pin || alice.badges != 1 || alice.display_name != ALICE.display {
        return Err(format!("alice as provisioned: {alice:?}"));
    }
    let mut key = c.key(KEY_204.label).await?;
    if !key.holder.is_empty() {
        return_by_tag(ctx, pol, KEY_204.tag).await?;
        key = pol.clients.key(KEY_204.label).await?;
    }
    let c = &pol.clients;
    let slot = key.slot;
    if slot == 0 || !present(&ctx.cab, slot)? {
        return Err(format!("key 204 is not in a slot: {key:?}"));
    }
    let (presence, lock) = slot_lines(slot);
    let mut granted = c.console.receive_granted().await.context("subscribing")?;

    login(ctx, pol, &ALICE).await?;
    let c = &pol.clients;
    let user = c.console.session_user().await.context("SessionUser")?;
    if user != ALICE.display {
        return Err(format!("SessionUser is {user:?}"));
    }
    let offers = c.console.list_keys().await.context("ListKeys")?;
    if !offers
        .iter()
        .any(|k| k.label == KEY_204.label && k.available)
    {
        return Err(format!("ListKeys does not offer 204: {offers:?}"));
    }
    c.console
        .choose_key(KEY_204.label)
        .await
        .context("ChooseKey")?;
    c.wait_state("choose-reason", STATE).await?;
    ctx.cab
        .lines
        .expect_value(&lock, 0, "before a reason was given")?;
    let asked = Instant::now();
    c.console
        .choose_reason(REASON)
        .await
        .context("ChooseReason")?;
    let signal = next_within(&mut granted, "Granted", SIGNAL).await?;
    let args = signal.args().context("Granted args")?;
    if (args.key.as_str(), args.slot) != (KEY_204.label, slot) {
        return Err(format!("Granted {args:?}, expected key 204 in slot {slot}"));
    }
    ctx.cab
        .lines
        .wait_value(&lock, 1, Duration::from_secs(2))
        .await?;
    let high = Instant::now();
    progress(&format!(
        "slot {slot} lock energised {:?} after ChooseReason",
        high - asked
    ));
    c.wait_state("take-key", STATE).await?;
    // hwd's pulse: high for the release time, then low by itself.
    ctx.cab.lines.wait_value(&lock, 0, RELEASE * 2).await?;
    let held = high.elapsed();
    if held < RELEASE.saturating_sub(Duration::from_millis(300)) {
        return Err(format!(
            "the lock dropped {held:?} after energising, before the {RELEASE:?} release time"
        ));
    }
    progress(&format!(
        "slot {slot} lock held {held:?}, dropped by itself"
    ));
    ctx.cab.lines.pull(&presence, false)?;
    c.wait_state("message", STATE).await?;
    let key = c.key(KEY_204.label).await?;
    if key.holder != ALICE.name || key.slot != 0 || key.taken_at == 0 || key.due_at <= key.taken_at
    {
        return Err(format!("the record after the removal: {key:?}"));
    }

    let export = c.export_verified("checkout").await?;
    let entries = audit_entries(&export)?;
    let subject = format!("key:{}", KEY_204.label);
    let grant = entries
        .iter()
        .rev()
        .find(|e| e.kind == "granted" && e.subject == subject)
        .ok_or("no granted entry for key 204 in the export")?;
    if grant.actor != ALICE.name || !grant.detail.contains(REASON) {
        return Err(format!("the grant entry: {grant:?}"));
    }
    entries
        .iter()
        .find(|e| e.kind == "removed" && e.subject == subject && e.seq > grant.seq)
        .ok_or("no removed entry for key 204 after the grant")?;
    let secrets = [ALICE.pin, ALICE.badge];
    expect_absent(&export, &secrets, "the audit export")?;
    expect_absent(&pol.policyd.log(), &secrets, "keywarden-policyd's log")
}

/// Waits for the next `Denied` and checks its reason.
async fn expect_denial(
    denied: &mut keywarden_dbus::policy::DeniedStream,
    want: &str,
    within: Duration,
) -> Result<()> {
    let signal = next_within(denied, "Denied", within).await?;
    let args = signal.args().context("Denied args")?;
    if args.reason == want {
        Ok(())
    } else {
        Err(format!("Denied {args:?}, expected reason {want:?}"))
    }
}

/// The lock lines that read 1 while the sampler ran, except `allowed`.
fn opened_besides(opened: &[(String, Instant)], allowed: &str) -> Result<()> {
    let others: Vec<&str> = opened
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != allowed)
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(format!("lock lines went high: {others:?}"))
    }
}

/// An unknown badge, a key the user may not take, and wrong PINs up to a lockout each give
/// their `Denied` reason (and the lockout its alarm), and no lock line reads 1 at any time.
async fn denials(ctx: &mut Ctx, pol: &mut Pol) -> Result<()> {
    let c = &pol.clients;
    c.ensure_site().await?;
    c.ensure_person(&BOB).await?;
    c.ensure_person(&CAROL).await?;
    c.ensure_key(&KEY_POOL).await?;
    c.root
        .unlock_user(CAROL.name)
        .await
        .context("UnlockUser carol")?;
    let pool = c.key(KEY_POOL.label).await?;
    if pool.slot == 0 {
        return Err(format!("the pool key is not in the cabinet: {pool:?}"));
    }
    let sampler = Sampler::start(&ctx.cab.lines, LOCKS, Sampling::Watch)?;
    let outcome = denial_steps(ctx, pol).await;
    let opened = sampler.finish(true)?;
    outcome?;
    opened_besides(&opened, "")?;
    let c = &pol.clients;
    c.root
        .unlock_user(CAROL.name)
        .await
        .context("UnlockUser carol")?;
    let secrets = [BOB.pin, BOB.badge, CAROL.pin, CAROL.badge, "99999999"];
    let export = c.export_verified("denials").await?;
    expect_absent(&export, &secrets, "the audit export")?;
    expect_absent(&pol.policyd.log(), &secrets, "keywarden-policyd's log")
}

async fn denial_steps(ctx: &mut Ctx, pol: &Pol) -> Result<()> {
    let c = &pol.clients;
    let mut denied = c.console.receive_denied().await.context("subscribing")?;
    let mut alarms = c
        .console
        .receive_alarm_changed()
        .await
        .context("subscribing")?;

    c.wait_settled().await?;
    scan(&mut ctx.cab, "NOBODY-9")?;
    expect_denial(&mut denied, "unknown-badge", SIGNAL).await?;
    c.wait_state("message", STATE).await?;

    login(ctx, pol, &BOB).await?;
    c.console
        .choose_key(KEY_POOL.label)
        .await
        .context("ChooseKey POOL")?;
    expect_denial(&mut denied, "not-permitted", SIGNAL).await?;
    c.wait_state("choose-key", STATE).await?;
    match c.console.choose_reason(REASON).await {
        Err(e) if error_name(&e) == "org.keywarden.Policy1.Error.WrongState" => {}
        other => return Err(format!("ChooseReason after the denial gave {other:?}")),
    }
    c.console.cancel().await.context("Cancel")?;

    c.wait_settled().await?;
    scan(&mut ctx.cab, CAROL.badge)?;
    c.wait_state("pin", STATE).await?;
    for attempt in 1..=PIN_ATTEMPTS {
        type_pin(&mut ctx.cab, "99999999")?;
        let want = if attempt < PIN_ATTEMPTS {
            "wrong-pin"
        } else {
            "locked-out"
        };
        expect_denial(&mut denied, want, PIN_CHECK).await?;
    }
    let signal = next_within(&mut alarms, "AlarmChanged", SIGNAL).await?;
    let args = signal.args().context("AlarmChanged args")?;
    let subject = format!("user:{}", CAROL.name);
    if (args.kind.as_str(), args.subject.as_str(), args.active)
        != ("pin-lockout", subject.as_str(), true)
    {
        return Err(format!(
            "AlarmChanged {args:?}, expected pin-lockout {subject}"
        ));
    }
    let users = c.root.list_users().await.context("ListUsers")?;
    let carol = users.iter().find(|u| u.name == CAROL.name);
    if carol.is_none_or(|u| u.locked_until <= 0) {
        return Err(format!("carol is not locked out: {carol:?}"));
    }
    let active = c.root.list_alarms(true).await.context("ListAlarms")?;
    if !active
        .iter()
        .any(|a| a.kind == "pin-lockout" && a.subject == subject)
    {
        return Err(format!("ListAlarms(true) has no pin-lockout: {active:?}"));
    }
    // Locked out: the badge alone is refused now, before any PIN.
    c.wait_state("message", STATE).await?;
    scan(&mut ctx.cab, CAROL.badge)?;
    expect_denial(&mut denied, "locked-out", SIGNAL).await?;
    c.wait_state("message", STATE).await
}

/// Key 204 returned by scanning its tag: a free slot is released; the key goes into another
/// free slot (wrong-slot alarm), comes out again (cleared) and into the right one (returned).
async fn wrong_slot(ctx: &mut Ctx, pol: &mut Pol) -> Result<()> {
    pol.clients.ensure_site().await?;
    let key = pol.clients.key(KEY_204.label).await?;
    if key.holder.is_empty() {
        checkout_and_take(ctx, pol, &ALICE, KEY_204.label).await?;
    }
    let c = &pol.clients;
    let records = c.root.list_slots().await.context("ListSlots")?;
    let mut free = Vec::new();
    for s in &records {
        if !s.occupied && !present(&ctx.cab, s.number)? {
            free.push(s.number);
        }
    }
    if free.len() < 2 {
        return Err(format!("fewer than two free slots: {records:?}"));
    }
    c.wait_settled().await?;
    // Only the slot the service picks may open.
    let sampler = Sampler::start(&ctx.cab.lines, LOCKS, Sampling::Watch)?;
    let outcome = wrong_slot_steps(ctx, pol, &free).await;
    let opened = sampler.finish(true)?;
    let target = outcome?;
    opened_besides(&opened, &slot_lines(target).1)
}

/// The return with a detour through a wrong slot; returns the slot the service picked.
async fn wrong_slot_steps(ctx: &mut Ctx, pol: &Pol, free: &[u32]) -> Result<u32> {
    let c = &pol.clients;
    let subject = format!("key:{}", KEY_204.label);
    let mut alarms = c
        .console
        .receive_alarm_changed()
        .await
        .context("subscribing")?;
    scan(&mut ctx.cab, KEY_204.tag)?;
    c.wait_state("return-key", STATE).await?;
    let target = c.console.session_slot().await.context("SessionSlot")?;
    if !free.contains(&target) {
        return Err(format!(
            "asked to return into slot {target}, free are {free:?}"
        ));
    }
    let (_, lock) = slot_lines(target);
    ctx.cab
        .lines
        .wait_value(&lock, 1, Duration::from_secs(2))
        .await?;
    let wrong = free.iter().copied().find(|s| *s != target).unwrap_or(0);

    set_present(&ctx.cab, wrong, true)?;
    let signal = next_within(&mut alarms, "AlarmChanged", SIGNAL).await?;
    let args = signal.args().context("AlarmChanged args")?;
    if (args.kind.as_str(), args.subject.as_str(), args.active)
        != ("wrong-slot", subject.as_str(), true)
    {
        return Err(format!(
            "AlarmChanged {args:?}, expected wrong-slot {subject} active"
        ));
    }
    let active = c.root.list_alarms(true).await.context("ListAlarms")?;
    if !active
        .iter()
        .any(|a| a.kind == "wrong-slot" && a.subject == subject)
    {
        return Err(format!("ListAlarms(true) has no wrong-slot: {active:?}"));
    }
    let prompt = c.console.session_prompt().await.context("SessionPrompt")?;
    if !prompt.contains(&format!("slot {target}")) {
        return Err(format!(
            "the prompt does not name slot {target}: {prompt:?}"
        ));
    }

    set_present(&ctx.cab, wrong, false)?;
    let signal = next_within(&mut alarms, "AlarmChanged", SIGNAL).await?;
    let args = signal.args().context("AlarmChanged args")?;
    if (args.kind.as_str(), args.subject.as_str(), args.active)
        != ("wrong-slot", subject.as_str(), false)
    {
        return Err(format!(
            "AlarmChanged {args:?}, expected wrong-slot {subject} cleared"
        ));
    }
    set_present(&ctx.cab, target, true)?;
    c.wait_state("message", STATE).await?;
    let key = c.key(KEY_204.label).await?;
    if key.slot != target || !key.holder.is_empty() {
        return Err(format!("after the return into slot {target}: {key:?}"));
    }
    let active = c.root.list_alarms(true).await.context("ListAlarms")?;
    if active.iter().any(|a| a.kind == "wrong-slot") {
        return Err(format!("a wrong-slot alarm is still active: {active:?}"));
    }
    Ok(target)
}

/// The door sensor opens while the door is locked: `AlarmChanged(door-forced, door, true)` and
/// `ListAlarms` shows it; closing clears it, and an admin acknowledges it.
async fn forced_door(ctx: &mut Ctx, pol: &mut Pol) -> Result<()> {
    let c = &pol.clients;
    ctx.cab
        .lines
        .expect_value("door-lock", 0, "before forcing the door")?;
    let mut alarms = c
        .console
        .receive_alarm_changed()
        .await
        .context("subscribing")?;
    ctx.cab.lines.pull("door-sensor", true)?;
    let raised = async {
        let signal = next_within(&mut alarms, "AlarmChanged", SIGNAL).await?;
        let args = signal.args().context("AlarmChanged args")?;
        if (args.kind.as_str(), args.subject.as_str(), args.active) != ("door-forced", "door", true)
        {
            return Err(format!(
                "AlarmChanged {args:?}, expected door-forced door active"
            ));
        }
        let active = c.root.list_alarms(true).await.context("ListAlarms")?;
        active
            .iter()
            .find(|a| a.kind == "door-forced" && a.subject == "door" && a.cleared_at == 0)
            .map(drop)
            .ok_or_else(|| format!("ListAlarms(true) has no door-forced: {active:?}"))
    }
    .await;
    ctx.cab.lines.pull("door-sensor", false)?;
    raised?;
    let signal = next_within(&mut alarms, "AlarmChanged", SIGNAL).await?;
    let args = signal.args().context("AlarmChanged args")?;
    if (args.kind.as_str(), args.active) != ("door-forced", false) {
        return Err(format!(
            "AlarmChanged {args:?} after closing, expected door-forced cleared"
        ));
    }
    let all = c.root.list_alarms(false).await.context("ListAlarms")?;
    let alarm = all
        .iter()
        .rev()
        .find(|a| a.kind == "door-forced")
        .ok_or("ListAlarms(false) has no door-forced")?;
    if alarm.cleared_at == 0 {
        return Err(format!("the door-forced alarm is not cleared: {alarm:?}"));
    }
    c.root
        .acknowledge_alarm(alarm.id, "VM test: forced on purpose")
        .await
        .context("AcknowledgeAlarm")?;
    tokio::time::sleep(PROMPT).await;
    ctx.cab
        .lines
        .expect_value("door-lock", 0, "after the forced door")
}

/// The console user may use the console (positive control) but not admin methods; another uid
/// may not even use the console. Nothing changes.
async fn console_refused(pol: &mut Pol) -> Result<()> {
    let c = &pol.clients;
    c.ensure_site().await?;
    let reasons = c
        .console
        .list_reasons()
        .await
        .context("console ListReasons")?;
    if !reasons.iter().any(|r| r.code == REASON) {
        return Err(format!("the console's ListReasons: {reasons:?}"));
    }
    let state = c.root.session_state().await.context("SessionState")?;
    match c
        .console
        .add_user("mallory", "admin", &Options::new())
        .await
    {
        Err(e) if error_name(&e) == BUS_ACCESS_DENIED => {}
        other => {
            return Err(format!(
                "the console's AddUser gave {other:?}, expected AccessDenied"
            ))
        }
    }
    let intruder = connect_as_member(ids::INTRUDER_UID, ids::INTRUDER_UID, &[]).await?;
    let intruder = policy(&intruder).await?;
    match intruder.choose_key(KEY_204.label).await {
        Err(e) if error_name(&e) == BUS_ACCESS_DENIED => {}
        other => {
            return Err(format!(
                "the intruder's ChooseKey gave {other:?}, expected AccessDenied"
            ))
        }
    }
    let users = c.root.list_users().await.context("ListUsers")?;
    if users.iter().any(|u| u.name == "mallory") {
        return Err("the refused AddUser added mallory".into());
    }
    let after = c.root.session_state().await.context("SessionState")?;
    if after != state && after != "idle" {
        return Err(format!("the session went from {state:?} to {after:?}"));
    }
    Ok(())
}

/// SIGKILL right after a grant (ChooseReason answered, slot lock energised, key not taken): the
/// lock still drops by itself (hwd's pulse); restarted, the service's chain verifies and holds
/// the grant (it was committed before the unlock was requested).
async fn crash(ctx: &mut Ctx, pol: &mut Pol) -> Result<()> {
    pol.clients.ensure_site().await?;
    let key = pol.clients.key(KEY_204.label).await?;
    if !key.holder.is_empty() {
        return_by_tag(ctx, pol, KEY_204.tag).await?;
    }
    let c = &pol.clients;
    let key = c.key(KEY_204.label).await?;
    let slot = key.slot;
    let (_, lock) = slot_lines(slot);
    let subject = format!("key:{}", KEY_204.label);
    let before = audit_entries(&c.export_verified("crash-before").await?)?;
    let grants_before = before
        .iter()
        .filter(|e| e.kind == "granted" && e.subject == subject)
        .count();

    login(ctx, pol, &ALICE).await?;
    let c = &pol.clients;
    c.console
        .choose_key(KEY_204.label)
        .await
        .context("ChooseKey")?;
    c.wait_state("choose-reason", STATE).await?;
    let watch = Sampler::start(&ctx.cab.lines, &[lock.as_str()], Sampling::FirstHigh)?;
    let asked = c
        .console
        .choose_reason(REASON)
        .await
        .context("ChooseReason");
    let high = watch.finish(asked.is_err())?;
    asked?;
    let Some((_, high_at)) = high.first() else {
        return Err(format!("slot {slot} lock never read 1 after ChooseReason"));
    };
    pol.policyd.kill()?;
    let killed = high_at.elapsed();
    progress(&format!(
        "keywarden-policyd SIGKILLed {killed:?} after slot {slot} energised"
    ));
    let dropped = ctx.cab.lines.wait_value(&lock, 0, RELEASE * 2).await?;
    progress(&format!(
        "slot {slot} lock dropped {:?} after energising, with policyd dead",
        killed + dropped
    ));

    pol.policyd.restart().await?;
    pol.clients = Clients::connect().await?;
    let c = &pol.clients;
    let status = c.root.status().await.context("Status")?;
    if status != "ready" {
        return Err(format!("the restarted service is {status:?}"));
    }
    let verified = c.root.verify_audit().await.context("VerifyAudit")?;
    let after = audit_entries(&c.export_verified("crash-after").await?)?;
    if verified.entries != after.len() as u64 {
        return Err(format!(
            "VerifyAudit counts {} entries, the export {}",
            verified.entries,
            after.len()
        ));
    }
    let grants: Vec<_> = after
        .iter()
        .filter(|e| e.kind == "granted" && e.subject == subject)
        .collect();
    let last = grants.last().ok_or("no granted entry after the restart")?;
    if grants.len() != grants_before + 1
        || last.actor != ALICE.name
        || !last.detail.contains(REASON)
    {
        return Err(format!(
            "{} grants of key 204 before the crash, {} after; the last: {last:?}",
            grants_before,
            grants.len()
        ));
    }
    // What the restarted service makes of the grant nobody took (reported, not asserted).
    let key = c.key(KEY_204.label).await?;
    progress(&format!(
        "after the restart, key 204: slot {} holder {:?} taken_at {} (present in slot {slot}: {})",
        key.slot,
        key.holder,
        key.taken_at,
        present(&ctx.cab, slot)?
    ));
    Ok(())
}
