//! The generator: a large property's history, produced by driving the real core and store.
//! This file is part of the cache key: editing it regenerates the cached database.

use std::collections::{BTreeSet, BinaryHeap};
use std::fs;
use std::io::BufWriter;
use std::path::Path;
use std::time::{Duration, Instant};

use keywarden_audit::DeviceKey;
use keywarden_policyd::admin::{Actor, AdminOp, KeyField, SubjectName, TargetName, UserField};
use keywarden_policyd::core::effects::Effect;
use keywarden_policyd::core::{Core, LocalTime, Now, Session};
use keywarden_policyd::model::{
    Factors, KeyKind, Role, Settings, SlotNumber, UnixTime, UserId, Window,
};
use keywarden_policyd::store::{BadgeKey, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Args, BoxError};

/// 2016-11-01T00:00:00Z: ten years of history up to the present.
pub const START: UnixTime = 1_477_958_400;
/// Ten years (with leap days).
const SPAN: UnixTime = 3653 * 86_400;
const SLOTS: u32 = 1100;
const DEVICE_SEED: [u8; 32] = [0x42; 32];
const BADGE_SEED: [u8; 32] = [0x24; 32];

/// A date, `YYYY-MM-DD` (UTC).
pub fn date_of(t: UnixTime) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| t.to_string())
}

// ---------------------------------------------------------------------------------------------

/// Generates the database and its export into `dir`, through a temporary directory.
pub fn generate(args: &Args, dir: &Path) -> Result<(), BoxError> {
    let tmp = args
        .tmp
        .join(format!("keywarden-bench-{}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    let result = generate_in(args, &tmp, dir);
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn generate_in(args: &Args, tmp: &Path, dir: &Path) -> Result<(), BoxError> {
    let db_tmp = tmp.join("keywarden.db");
    println!(
        "generating {} audit events in {} (cache: {})",
        args.events,
        db_tmp.display(),
        dir.display()
    );
    let store = Store::open(
        &db_tmp,
        DeviceKey::from_bytes(&DEVICE_SEED),
        BadgeKey::from_bytes(&BADGE_SEED),
    )?;
    let started = Instant::now();
    let mut sim = Sim::setup(store, args.seed, args.events)?;
    let setup_time = started.elapsed();
    println!(
        "property set up in {:.1} s: {} users, {} keys, {} slots",
        setup_time.as_secs_f64(),
        sim.users.len(),
        sim.keys.len(),
        SLOTS
    );
    let first_at = START;
    let gen_started = Instant::now();
    sim.run()?;
    let gen_time = gen_started.elapsed();
    let (head, _) = sim.store.audit_head();
    let rate = head as f64 / gen_time.as_secs_f64();
    println!(
        "generated {head} events in {:.0} s ({rate:.0} events/s), simulated up to {}",
        gen_time.as_secs_f64(),
        date_of(sim.t)
    );

    // Export with the real exporter, straight to the cache directory.
    fs::create_dir_all(dir)?;
    let export = dir.join("audit.jsonl");
    let t0 = Instant::now();
    let file = fs::File::create(&export)?;
    let written =
        sim.store
            .export_audit(BufWriter::with_capacity(1 << 20, file), 1, sim.t * 1000)?;
    println!(
        "exported {written} entries ({:.1} MB) in {:.1} s",
        fs::metadata(&export)?.len() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let device_key = sim.store.device_public_hex();
    let last_at = sim.t;
    drop(sim);

    // Fold the WAL into the database, then move it to disk.
    {
        let conn = rusqlite::Connection::open(&db_tmp)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA journal_mode = DELETE")?;
    }
    fs::copy(&db_tmp, dir.join("keywarden.db"))?;
    fs::write(
        dir.join("meta.txt"),
        format!(
            "events={head}\ndevice_key={device_key}\nfirst_at={first_at}\nlast_at={last_at}\n\
             generation={rate:.0} events/s ({:.0} s, tmpfs, no Argon2)\n",
            gen_time.as_secs_f64()
        ),
    )?;
    Ok(())
}

/// How a user behaves.
struct SimUser {
    id: UserId,
    badge_hash: String,
    /// Keys this user normally takes.
    usual: Vec<usize>,
    /// Picked this often relative to others.
    weight: u32,
    role: Role,
}

struct SimKey {
    label: String,
}

/// A key out, to be brought back at `at`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PendingReturn {
    at: std::cmp::Reverse<UnixTime>,
    key: i64,
    user: UserId,
}

struct Sim {
    store: Store,
    core: Core,
    rng: StdRng,
    users: Vec<SimUser>,
    /// Cumulative weights for picking a user.
    cumulative: Vec<u32>,
    keys: Vec<SimKey>,
    reasons: Vec<&'static str>,
    settings: Settings,
    board: BTreeSet<SlotNumber>,
    returns: BinaryHeap<PendingReturn>,
    /// Simulated wall clock, Unix seconds.
    t: UnixTime,
    mono0: Instant,
    target: u64,
    /// Last PIN-check attempt number the core asked about.
    pending_pin: Option<u64>,
    admin: Actor,
    day_cache: (i64, String),
    /// When `handle_tick` last ran.
    last_tick: UnixTime,
}

const REASONS: &[(&str, &str, Option<u32>)] = &[
    ("MAINT", "maintenance work order", Some(480)),
    ("CLEAN", "housekeeping", Some(240)),
    ("SHOW", "showing to a prospect", Some(120)),
    ("INSPECT", "inspection", Some(240)),
    ("MOVE", "move in or out", None),
    ("VALET", "valet parking", Some(180)),
    ("DELIVER", "delivery access", Some(60)),
    ("EMERG", "emergency", None),
];

const GROUPS: &[&str] = &[
    "maintenance",
    "housekeeping",
    "front-desk",
    "security",
    "valet",
    "management",
    "contractors",
];

impl Sim {
    fn setup(mut store: Store, seed: u64, target: u64) -> Result<Sim, BoxError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let settings = Settings::default();
        let board: BTreeSet<SlotNumber> = (1..=SLOTS).collect();
        store.sync_slots(&board)?;
        let admin = Actor {
            uid: 0,
            name: "root".into(),
        };
        let mut at_ms = (START - 30 * 86_400) * 1000;
        let mut apply = |store: &mut Store, op: AdminOp| -> Result<(), BoxError> {
            at_ms += 1000;
            store.apply_admin(&admin, &op, &settings, at_ms)?;
            Ok(())
        };

        // Schedules, reasons, groups.
        apply(
            &mut store,
            AdminOp::SetSchedule {
                name: "day".into(),
                windows: vec![Window {
                    days: 0b011_1111,
                    start: 7 * 60,
                    end: 19 * 60,
                }],
                on_holidays: false,
            },
        )?;
        apply(
            &mut store,
            AdminOp::SetSchedule {
                name: "office".into(),
                windows: vec![Window {
                    days: 0b001_1111,
                    start: 8 * 60,
                    end: 18 * 60,
                }],
                on_holidays: false,
            },
        )?;
        for (code, description, max) in REASONS {
            apply(
                &mut store,
                AdminOp::SetReason {
                    code: (*code).into(),
                    description: (*description).into(),
                    max_minutes: *max,
                },
            )?;
        }
        for g in GROUPS {
            apply(&mut store, AdminOp::AddGroup { name: (*g).into() })?;
        }

        // Keys: 780 units, 20 masters, 60 vehicles, 120 amenities, 20 restricted (5 critical),
        // each in its home slot; slots 1001-1100 start empty.
        let mut keys = Vec::new();
        let mut plan: Vec<(String, KeyKind, bool)> = Vec::new();
        for floor in 1..=26 {
            for unit in 1..=30 {
                plan.push((format!("{floor}{unit:02}"), KeyKind::Unit, false));
            }
        }
        for i in 1..=20 {
            plan.push((format!("M{i:02}"), KeyKind::Master, false));
        }
        for i in 1..=60 {
            plan.push((format!("VAN-{i:02}"), KeyKind::Vehicle, false));
        }
        for i in 1..=120 {
            plan.push((format!("AM{i:03}"), KeyKind::Amenity, false));
        }
        for i in 1..=20 {
            plan.push((format!("RX{i:02}"), KeyKind::Restricted, i <= 5));
        }
        for (i, (label, kind, critical)) in plan.into_iter().enumerate() {
            let slot = i as u32 + 1;
            let mut fields = vec![KeyField::HomeSlot(Some(slot))];
            if critical {
                fields.push(KeyField::Critical(true));
            }
            if i % 7 == 0 {
                fields.push(KeyField::Notes("resident has a dog".into()));
            }
            apply(
                &mut store,
                AdminOp::AddKey {
                    label: label.clone(),
                    tag: format!("T{:08X}", 0x1000_0000u32 + slot * 7919),
                    kind,
                    fields,
                },
            )?;
            apply(
                &mut store,
                AdminOp::PlaceKey {
                    label: label.clone(),
                    slot,
                },
            )?;
            keys.push((label, kind, critical));
        }

        // Users: 5 admins, 15 managers, 250 staff, 30 vendors.
        let mut plan_users: Vec<(String, Role, &str)> = Vec::new();
        for i in 1..=5 {
            plan_users.push((format!("admin{i}"), Role::Admin, "management"));
        }
        for i in 1..=15 {
            plan_users.push((format!("manager{i:02}"), Role::Manager, "management"));
        }
        let staff_groups = [
            ("maintenance", 70),
            ("housekeeping", 90),
            ("front-desk", 40),
            ("security", 20),
            ("valet", 30),
        ];
        for (group, n) in staff_groups {
            for i in 1..=n {
                plan_users.push((format!("{group}{i:02}"), Role::Staff, group));
            }
        }
        for i in 1..=30 {
            plan_users.push((format!("vendor{i:02}"), Role::Vendor, "contractors"));
        }
        let mut users = Vec::new();
        for (n, (name, role, group)) in plan_users.into_iter().enumerate() {
            let mut fields = vec![
                UserField::DisplayName(format!("{} {}", capitalise(&name), n + 1)),
                UserField::Factors(Factors::AnyPin),
            ];
            if role == Role::Vendor {
                // Each contractor works here for a year or two somewhere in the ten.
                let from = START + rng.random_range(0..SPAN - 400 * 86_400);
                let until = from + rng.random_range(180..730) * 86_400;
                fields.push(UserField::ValidFrom(Some(from)));
                fields.push(UserField::ValidUntil(Some(until)));
            }
            apply(
                &mut store,
                AdminOp::AddUser {
                    name: name.clone(),
                    role,
                    fields,
                },
            )?;
            apply(
                &mut store,
                AdminOp::AddMember {
                    group: group.into(),
                    user: name.clone(),
                },
            )?;
            let code = format!("BADGE{:06}", 100_000 + n * 37);
            apply(
                &mut store,
                AdminOp::AddBadge {
                    user: name.clone(),
                    code: code.clone().into(),
                },
            )?;
            // Every user needs a PIN set (the core refuses a user without one); this is the
            // real Argon2id hash, once per user. The simulated person always knows it, so the
            // value itself never matters again.
            apply(
                &mut store,
                AdminOp::SetPin {
                    user: name.clone(),
                    pin: format!("{}", 258_013 + n * 7).into(),
                },
            )?;
            users.push((name, role, group, store.badge_hash(&code)));
        }

        // Permissions.
        let mut grant =
            |store: &mut Store, subject: SubjectName, target: TargetName, sched: Option<&str>| {
                apply(
                    store,
                    AdminOp::Grant {
                        subject,
                        target,
                        schedule: sched.map(str::to_owned),
                    },
                )
            };
        let group = |g: &str| SubjectName::Group(g.into());
        for (g, kind, sched) in [
            ("maintenance", KeyKind::Unit, Some("day")),
            ("maintenance", KeyKind::Master, Some("office")),
            ("maintenance", KeyKind::Amenity, None),
            ("housekeeping", KeyKind::Unit, Some("day")),
            ("housekeeping", KeyKind::Amenity, Some("day")),
            ("front-desk", KeyKind::Unit, None),
            ("front-desk", KeyKind::Amenity, None),
            ("security", KeyKind::Master, None),
            ("security", KeyKind::Amenity, None),
            ("valet", KeyKind::Vehicle, None),
            ("management", KeyKind::Unit, None),
            ("management", KeyKind::Master, None),
            ("management", KeyKind::Vehicle, None),
            ("management", KeyKind::Amenity, None),
            ("contractors", KeyKind::Amenity, Some("office")),
        ] {
            grant(&mut store, group(g), TargetName::Kind(kind), sched)?;
        }
        for (label, kind, _) in &keys {
            if *kind == KeyKind::Restricted {
                for m in 1..=15 {
                    if (label.len() + m) % 3 == 0 {
                        grant(
                            &mut store,
                            SubjectName::User(format!("manager{m:02}")),
                            TargetName::Key(label.clone()),
                            None,
                        )?;
                    }
                }
            }
        }

        let state = store.load_state(settings.clone(), &board)?;
        let alarms = store.active_alarms()?;
        let sim_keys: Vec<SimKey> = keys
            .iter()
            .map(|(label, _, _)| SimKey {
                label: label.clone(),
            })
            .collect();
        let kind_of = |i: usize| keys[i].1;
        let by_kinds = |kinds: &[KeyKind]| -> Vec<usize> {
            (0..keys.len())
                .filter(|&i| kinds.contains(&kind_of(i)))
                .collect()
        };
        let mut sim_users = Vec::new();
        for (name, role, group, badge_hash) in users {
            let id = state.user_named(&name).map(|u| u.id).unwrap_or(0);
            let (usual, weight) = match group {
                "maintenance" => (by_kinds(&[KeyKind::Unit, KeyKind::Master]), 6),
                "housekeeping" => (by_kinds(&[KeyKind::Unit, KeyKind::Amenity]), 5),
                "front-desk" => (by_kinds(&[KeyKind::Unit, KeyKind::Amenity]), 4),
                "security" => (by_kinds(&[KeyKind::Master, KeyKind::Amenity]), 3),
                "valet" => (by_kinds(&[KeyKind::Vehicle]), 8),
                "contractors" => (by_kinds(&[KeyKind::Amenity]), 1),
                _ => (
                    by_kinds(&[KeyKind::Unit, KeyKind::Master, KeyKind::Restricted]),
                    2,
                ),
            };
            sim_users.push(SimUser {
                id,
                badge_hash,
                usual,
                weight,
                role,
            });
        }
        let cumulative = sim_users
            .iter()
            .scan(0, |acc, u| {
                *acc += u.weight;
                Some(*acc)
            })
            .collect();
        let mut core = Core::new(state, alarms, seed);
        for slot in &board {
            core.set_slot_sensor(*slot, *slot <= sim_keys.len() as u32);
        }
        Ok(Sim {
            store,
            core,
            rng,
            users: sim_users,
            cumulative,
            keys: sim_keys,
            reasons: REASONS.iter().map(|r| r.0).collect(),
            settings,
            board,
            returns: BinaryHeap::new(),
            t: START,
            mono0: Instant::now(),
            target,
            pending_pin: None,
            admin: Actor {
                uid: 0,
                name: "root".into(),
            },
            day_cache: (i64::MIN, String::new()),
            last_tick: START,
        })
    }

    fn events(&self) -> u64 {
        self.store.audit_head().0
    }

    /// "Now" at the simulated time.
    fn now(&mut self) -> Now {
        let t = self.t;
        let day = t.div_euclid(86_400);
        if self.day_cache.0 != day {
            self.day_cache = (day, date_of(t));
        }
        Now {
            mono: self.mono0 + Duration::from_secs((t - START + 86_400 * 60) as u64),
            wall: t,
            local: LocalTime {
                // 1970-01-01 was a Thursday (3 with Monday = 0).
                weekday: ((day + 3).rem_euclid(7)) as u8,
                minute: (t.rem_euclid(86_400) / 60) as u16,
                date: self.day_cache.1.clone(),
            },
            clock_valid: true,
        }
    }

    /// Advance the clock by `secs` (plus a little jitter).
    fn wait(&mut self, secs: i64) {
        self.t += secs.max(1);
    }

    /// Perform the core's effects like the daemon's driver: commits through the store (at the
    /// simulated time), feedback ignored, PIN checks remembered for the caller to answer.
    fn drain(&mut self) -> Result<(), BoxError> {
        while let Some(effect) = self.core.poll_effect() {
            match effect {
                Effect::Commit(commit) => {
                    let at_ms = self.t * 1000 + self.rng.random_range(0..1000);
                    self.store.commit(&commit, at_ms)?;
                }
                Effect::Feedback(_) => {}
                Effect::CheckPin { attempt, .. } => self.pending_pin = Some(attempt),
            }
        }
        while self.core.poll_notice().is_some() {}
        Ok(())
    }

    /// Time passes: session deadlines, and the wall-clock checks once a simulated minute (the
    /// daemon runs them every few seconds; minutes are plenty for overdue keys and lockouts).
    fn settle(&mut self) -> Result<(), BoxError> {
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|d| d <= now.mono) {
            self.core.handle_timeout(&now);
        }
        if self.t >= self.last_tick + 60 {
            self.last_tick = self.t;
            self.core.handle_tick(&now);
        }
        self.drain()
    }

    fn run(&mut self) -> Result<(), BoxError> {
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut last_admin_week = START / (7 * 86_400);
        let mut visits = 0u64;
        while self.events() < self.target {
            // Spread the remaining events over the remaining time; busier by day.
            let done = self.events().max(1);
            let per_visit = done as f64 / visits.max(1) as f64;
            let remaining_visits = ((self.target - done) as f64 / per_visit.max(1.0)).max(1.0);
            let mean_gap = ((START + SPAN - self.t).max(60) as f64 / remaining_visits).max(1.0);
            let hour = self.t.rem_euclid(86_400) / 3600;
            let factor = if (7..19).contains(&hour) { 0.6 } else { 2.5 };
            let gap = -(1.0 - self.rng.random::<f64>()).ln() * mean_gap * factor;
            let next = self.t + gap.round().max(1.0) as i64;

            // Returns due before the next visit.
            while let Some(r) = self.returns.peek() {
                if r.at.0 > next {
                    break;
                }
                let r = self.returns.pop().ok_or("return queue")?;
                self.t = self.t.max(r.at.0);
                self.return_key(r.key, r.user)?;
            }
            self.t = self.t.max(next);
            self.settle()?;

            let week = self.t / (7 * 86_400);
            if week != last_admin_week {
                last_admin_week = week;
                self.admin_change()?;
            }
            self.visit()?;
            visits += 1;

            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let n = self.events();
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "  {n:>10} events ({:.1}%), {:.0} events/s, simulated {}, {} keys out",
                    100.0 * n as f64 / self.target as f64,
                    n as f64 / secs,
                    date_of(self.t),
                    self.core.state().loans.len()
                );
            }
        }
        Ok(())
    }

    fn pick_user(&mut self) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = self.rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }

    /// Badge in, PIN; `Ok(true)` if the session reached key choice.
    fn authenticate(&mut self, u: usize) -> Result<bool, BoxError> {
        let hash = self.users[u].badge_hash.clone();
        let now = self.now();
        self.core.handle_badge(&hash, &now);
        self.drain()?;
        // Now and then someone forgets their PIN: wrong tries, sometimes up to a lockout.
        let wrong = match self.rng.random_range(0..1000) {
            0..=3 => 5,
            4..=40 => 1,
            41..=50 => 2,
            _ => 0,
        };
        for i in 0..=wrong {
            if !matches!(self.core.session(), Session::Pin { .. }) {
                return Ok(false);
            }
            self.wait(4);
            let now = self.now();
            for d in ["2", "5", "8", "0", "1", "3"] {
                self.core.handle_keypad(d, &now);
            }
            self.core.handle_keypad("enter", &now);
            self.drain()?;
            let Some(attempt) = self.pending_pin.take() else {
                return Ok(false);
            };
            // Instead of Argon2: the simulated person typed the right PIN or not.
            self.wait(1);
            let now = self.now();
            self.core.handle_pin_checked(attempt, i == wrong, &now);
            self.drain()?;
        }
        Ok(matches!(self.core.session(), Session::ChooseKey { .. }))
    }

    fn visit(&mut self) -> Result<(), BoxError> {
        let now = self.now();
        let roll = self.rng.random_range(0..10_000);
        match roll {
            0..=59 => {
                // A badge nobody has.
                let code = format!("{:064x}", self.rng.random::<u64>());
                self.core.handle_badge(&code, &now);
                return self.drain();
            }
            60..=99 => {
                self.core.handle_scan_rejected("badge", "garbled", &now);
                return self.drain();
            }
            100..=114 => {
                self.core.handle_door_alarm("held-open", true, &now);
                self.drain()?;
                let d = self.rng.random_range(30..600);
                self.wait(d);
                let now = self.now();
                self.core.handle_door_alarm("held-open", false, &now);
                return self.drain();
            }
            115..=116 => {
                self.core.handle_tamper(true, &now);
                self.drain()?;
                let d = self.rng.random_range(10..120);
                self.wait(d);
                let now = self.now();
                self.core.handle_tamper(false, &now);
                return self.drain();
            }
            _ => {}
        }
        let u = self.pick_user();
        if !self.authenticate(u)? {
            return Ok(());
        }
        // Usually a key of their trade; sometimes any key (refused: not permitted, out, ...).
        let k = if self.rng.random_range(0..100) < 92 && !self.users[u].usual.is_empty() {
            let usual = &self.users[u].usual;
            usual[self.rng.random_range(0..usual.len())]
        } else {
            self.rng.random_range(0..self.keys.len())
        };
        self.wait(5);
        let now = self.now();
        let label = self.keys[k].label.clone();
        self.core.choose_key(&label, &now)?;
        self.drain()?;
        if !matches!(self.core.session(), Session::ChooseReason { .. }) {
            let now = self.now();
            self.core.cancel(&now);
            return self.drain();
        }
        let reason = self.reasons[self.rng.random_range(0..self.reasons.len())];
        self.wait(3);
        let now = self.now();
        self.core.choose_reason(reason, &now)?;
        self.drain()?;
        if matches!(self.core.session(), Session::SecondPerson { .. }) {
            // A second manager vouches (sometimes nobody comes and the window runs out).
            let second = (0..self.users.len())
                .filter(|&i| self.users[i].role == Role::Manager && i != u)
                .nth(self.rng.random_range(0..14));
            match second {
                Some(s) if self.rng.random_range(0..10) > 0 => {
                    self.wait(20);
                    self.authenticate_second(s)?;
                }
                _ => {
                    self.wait(90);
                    self.settle()?;
                    return Ok(());
                }
            }
        }
        let Session::TakeKey { key, slot, .. } = self.core.session().clone() else {
            return Ok(());
        };
        if self.rng.random_range(0..100) == 0 {
            // Granted but never taken: the grant lapses.
            self.wait(120);
            return self.settle();
        }
        self.wait(4);
        let now = self.now();
        let slot = slot.ok_or("grant without a slot on a slot cabinet")?;
        self.core.handle_slot(slot, false, &now);
        self.drain()?;
        // Back after minutes to hours; some late (overdue alarms), a few after days.
        let keep = match self.rng.random_range(0..1000) {
            0..=9 => self.rng.random_range(86_400..5 * 86_400),
            10..=59 => self.rng.random_range(8 * 3600..20 * 3600),
            _ => self.rng.random_range(300..4 * 3600),
        };
        self.returns.push(PendingReturn {
            at: std::cmp::Reverse(self.t + keep),
            key,
            user: self.users[u].id,
        });
        Ok(())
    }

    /// The second person for a critical key: badge and PIN into the pending checkout.
    fn authenticate_second(&mut self, s: usize) -> Result<(), BoxError> {
        let hash = self.users[s].badge_hash.clone();
        let now = self.now();
        self.core.handle_badge(&hash, &now);
        self.drain()?;
        if !matches!(self.core.session(), Session::Pin { .. }) {
            return Ok(());
        }
        self.wait(4);
        let now = self.now();
        for d in ["1", "9", "7", "3"] {
            self.core.handle_keypad(d, &now);
        }
        self.core.handle_keypad("enter", &now);
        self.drain()?;
        if let Some(attempt) = self.pending_pin.take() {
            self.wait(1);
            let now = self.now();
            self.core.handle_pin_checked(attempt, true, &now);
            self.drain()?;
        }
        Ok(())
    }

    fn return_key(&mut self, key: i64, user: UserId) -> Result<(), BoxError> {
        self.settle()?;
        if !self.core.state().loans.contains_key(&key) {
            return Ok(());
        }
        let now = self.now();
        if !matches!(self.core.session(), Session::Idle | Session::Message { .. }) {
            self.core.cancel(&now);
            self.drain()?;
        }
        // Mostly an anonymous tag scan; sometimes the holder (or a colleague) logs in first.
        if self.rng.random_range(0..10) == 0 {
            let u = self
                .users
                .iter()
                .position(|x| x.id == user)
                .unwrap_or_else(|| self.pick_user());
            if !self.authenticate(u)? {
                // Refused (validity ended, locked out): the key goes back by its tag anyway.
                let now = self.now();
                self.core.cancel(&now);
                self.drain()?;
            }
        }
        self.wait(3);
        let now = self.now();
        self.core.handle_tag(key, &now);
        self.drain()?;
        let Session::Return { slot, .. } = self.core.session().clone() else {
            // Not started: try again in an hour, so no key stays out for ever.
            self.returns.push(PendingReturn {
                at: std::cmp::Reverse(self.t + 3600),
                key,
                user,
            });
            return Ok(());
        };
        self.wait(5);
        if self.rng.random_range(0..100) == 0 {
            // Into the wrong slot first, then moved.
            let state = self.core.state();
            let wrong = self
                .board
                .iter()
                .copied()
                .filter(|s| *s != slot && !state.slot_contents.contains_key(s))
                .nth(self.rng.random_range(0..20));
            if let Some(w) = wrong {
                let now = self.now();
                self.core.handle_slot(w, true, &now);
                self.drain()?;
                self.wait(10);
                let now = self.now();
                self.core.handle_slot(w, false, &now);
                self.drain()?;
                self.wait(5);
            }
        }
        let now = self.now();
        self.core.handle_slot(slot, true, &now);
        self.drain()
    }

    /// Weekly: an admin edits a key's notes (a recorded admin change), then the driver reloads
    /// the state as after any admin change.
    fn admin_change(&mut self) -> Result<(), BoxError> {
        let k = self.rng.random_range(0..self.keys.len());
        let op = AdminOp::UpdateKey {
            label: self.keys[k].label.clone(),
            fields: vec![KeyField::Notes(format!("checked {}", date_of(self.t)))],
        };
        self.store
            .apply_admin(&self.admin, &op, &self.settings, self.t * 1000)?;
        let state = self.store.load_state(self.settings.clone(), &self.board)?;
        let now = self.now();
        self.core.replace_state(state, &now);
        self.drain()
    }
}

fn capitalise(name: &str) -> String {
    let letters: String = name.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let mut c = letters.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
