use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

const COMMITTED_A: BootFacts = BootFacts {
    booted: Slot::A,
    booted_committed: true,
};

fn failure(code: &str) -> Failure {
    Failure {
        code: code.into(),
        message: format!("{code} happened"),
    }
}

fn counters(done: u64, downloaded: u64, reused: u64) -> Counters {
    Counters {
        done,
        total: 100,
        downloaded,
        reused,
    }
}

#[test]
fn install_invalidates_writes_then_activates_the_other_slot() {
    let mut core = UpdateCore::new();
    let actions = core
        .command(Command::Install(Source::Repository), COMMITTED_A, t(0))
        .unwrap();
    assert_eq!(
        actions,
        vec![
            Action::Boot(BootAction::Invalidate(Slot::B)),
            Action::StartInstall {
                source: Source::Repository,
                target: Slot::B
            }
        ]
    );
    assert_eq!(core.view().phase, Phase::Downloading);
    core.install_progress(counters(50, 50, 0), false);
    assert_eq!(core.view().phase, Phase::Downloading);
    core.install_progress(counters(80, 50, 30), false);
    assert_eq!(core.view().phase, Phase::Installing);
    core.install_progress(counters(100, 50, 50), true);
    assert_eq!(core.view().phase, Phase::Verifying);
    let actions = core.install_done(Ok(counters(100, 50, 50)), t(30));
    assert_eq!(actions, vec![Action::Boot(BootAction::Activate(Slot::B))]);
    assert_eq!(core.busy_slot(), Some(Slot::B));
    let actions = core.activation_done(Ok(()), t(31));
    let [Action::Completed { ok, code, message }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(ok);
    assert!(code.is_empty());
    assert!(
        message.contains("slot B") && message.contains("31.0 s"),
        "{message}"
    );
    assert_eq!(core.view().phase, Phase::Installed);
    assert_eq!(core.view().counters.downloaded, 50);
    assert_eq!(core.busy_slot(), None);
}

#[test]
fn booted_from_b_installs_into_a() {
    let mut core = UpdateCore::new();
    let facts = BootFacts {
        booted: Slot::B,
        booted_committed: true,
    };
    let actions = core
        .command(Command::Install(Source::File("/x.kwb".into())), facts, t(0))
        .unwrap();
    assert_eq!(actions[0], Action::Boot(BootAction::Invalidate(Slot::A)));
}

#[test]
fn no_install_while_the_booted_slot_is_on_trial() {
    let mut core = UpdateCore::new();
    let trial = BootFacts {
        booted: Slot::B,
        booted_committed: false,
    };
    let refusal = core
        .command(Command::Install(Source::Repository), trial, t(0))
        .unwrap_err();
    let Refusal::InvalidArgument(message) = refusal else {
        panic!("{refusal:?}")
    };
    assert!(message.contains("not committed"), "{message}");
    assert_eq!(core.view().phase, Phase::Idle);
}

#[test]
fn one_operation_at_a_time() {
    let mut core = UpdateCore::new();
    core.command(Command::Check, COMMITTED_A, t(0)).unwrap();
    assert!(matches!(
        core.command(Command::Install(Source::Repository), COMMITTED_A, t(1)),
        Err(Refusal::Busy(_))
    ));
    assert!(matches!(
        core.command(Command::Check, COMMITTED_A, t(1)),
        Err(Refusal::Busy(_))
    ));
    core.check_done(
        Ok(Some(Offer {
            version: "1.2.0".into(),
            size: 7,
        })),
        t(2),
    );
    assert_eq!(core.view().offer.unwrap().version, "1.2.0");
    core.command(Command::Install(Source::Repository), COMMITTED_A, t(3))
        .unwrap();
    assert!(matches!(
        core.command(Command::Check, COMMITTED_A, t(4)),
        Err(Refusal::Busy(_))
    ));
}

#[test]
fn a_failed_install_reports_its_code_once_and_never_activates() {
    let mut core = UpdateCore::new();
    core.command(Command::Install(Source::Repository), COMMITTED_A, t(0))
        .unwrap();
    let actions = core.install_done(Err(failure("chunk-mismatch")), t(5));
    let [Action::Completed { ok, code, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(!ok);
    assert_eq!(code, "chunk-mismatch");
    assert_eq!(core.view().phase, Phase::Failed);
    assert_eq!(core.view().last_error.unwrap().code, "chunk-mismatch");
    // A late duplicate report changes nothing.
    assert!(core.install_done(Ok(counters(1, 1, 0)), t(6)).is_empty());
    assert_eq!(core.view().phase, Phase::Failed);
}

#[test]
fn a_cancelled_install_is_not_activated_even_if_the_installer_finished() {
    let mut core = UpdateCore::new();
    core.command(Command::Install(Source::Repository), COMMITTED_A, t(0))
        .unwrap();
    assert_eq!(
        core.command(Command::Cancel, COMMITTED_A, t(1)).unwrap(),
        vec![Action::CancelInstall]
    );
    let actions = core.install_done(Ok(counters(100, 100, 0)), t(2));
    assert!(matches!(
        actions.as_slice(),
        [Action::Completed { ok: false, code, .. }] if code == "cancelled"
    ));
}

#[test]
fn cancel_without_an_install_is_refused() {
    let mut core = UpdateCore::new();
    assert!(matches!(
        core.command(Command::Cancel, COMMITTED_A, t(0)),
        Err(Refusal::InvalidArgument(_))
    ));
}

#[test]
fn a_failed_activation_fails_the_install() {
    let mut core = UpdateCore::new();
    core.command(Command::Install(Source::Repository), COMMITTED_A, t(0))
        .unwrap();
    core.install_done(Ok(counters(100, 100, 0)), t(1));
    assert!(matches!(
        core.command(Command::Cancel, COMMITTED_A, t(1)),
        Err(Refusal::Busy(_))
    ));
    let actions = core.activation_done(Err(failure("bootloader")), t(2));
    assert!(matches!(
        actions.as_slice(),
        [Action::Completed { ok: false, code, .. }] if code == "bootloader"
    ));
}

#[test]
fn the_slot_being_written_cannot_be_marked_good() {
    let mut core = UpdateCore::new();
    core.command(Command::Install(Source::Repository), COMMITTED_A, t(0))
        .unwrap();
    assert!(matches!(
        core.command(Command::MarkGood(SlotRef::Other), COMMITTED_A, t(1)),
        Err(Refusal::Busy(_))
    ));
    assert_eq!(
        core.command(Command::MarkGood(SlotRef::Booted), COMMITTED_A, t(1))
            .unwrap(),
        vec![Action::Boot(BootAction::MarkGood(Slot::A))]
    );
    assert_eq!(
        core.command(Command::MarkBad(SlotRef::Named(Slot::B)), COMMITTED_A, t(1))
            .unwrap(),
        vec![Action::Boot(BootAction::MarkBad(Slot::B))]
    );
}

#[test]
fn sources_parse_strictly() {
    assert_eq!(Source::parse("").unwrap(), Source::Repository);
    assert_eq!(
        Source::parse("https://updates.example/b.kwb").unwrap(),
        Source::Url("https://updates.example/b.kwb".into())
    );
    assert_eq!(
        Source::parse("/media/usb/b.kwb").unwrap(),
        Source::File("/media/usb/b.kwb".into())
    );
    for bad in [
        "http://updates.example/b.kwb",
        "ftp://x/y",
        "https://",
        "https:///path",
        "b.kwb",
        "./b.kwb",
        "/tmp/a\nb",
    ] {
        assert!(Source::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(SlotRef::parse("other").unwrap().resolve(Slot::B), Slot::A);
    assert_eq!(SlotRef::parse("booted").unwrap().resolve(Slot::B), Slot::B);
    assert_eq!(SlotRef::parse("A").unwrap().resolve(Slot::B), Slot::A);
    assert!(SlotRef::parse("a").is_err());
}

/// One step of a random run: a command from the bus or a worker's report.
#[derive(Debug, Clone)]
enum Step {
    Command(Command),
    CheckDone(bool),
    Progress(u64, bool),
    InstallDone(bool),
    ActivationDone(bool),
    /// The health check (or an admin) commits the booted slot; a reboot into the activated slot.
    Reboot,
}

fn step() -> impl Strategy<Value = Step> {
    let slot_ref = prop_oneof![
        Just(SlotRef::Booted),
        Just(SlotRef::Other),
        Just(SlotRef::Named(Slot::A)),
        Just(SlotRef::Named(Slot::B)),
    ];
    prop_oneof![
        Just(Step::Command(Command::Check)),
        Just(Step::Command(Command::Install(Source::Repository))),
        Just(Step::Command(Command::Cancel)),
        slot_ref
            .clone()
            .prop_map(|s| Step::Command(Command::MarkGood(s))),
        slot_ref.prop_map(|s| Step::Command(Command::MarkBad(s))),
        any::<bool>().prop_map(Step::CheckDone),
        (0u64..200, any::<bool>()).prop_map(|(n, v)| Step::Progress(n, v)),
        any::<bool>().prop_map(Step::InstallDone),
        any::<bool>().prop_map(Step::ActivationDone),
        Just(Step::Reboot),
    ]
}

proptest! {
    /// Whatever the order of commands and reports: the booted slot is never written, a target
    /// is invalidated before it is written and activated only after its install succeeded
    /// (and was not cancelled), every install ends with exactly one Completed, and nothing is
    /// installed while the booted slot is on trial.
    #[test]
    fn the_slot_rules_hold_in_any_order(steps in proptest::collection::vec(step(), 1..60)) {
        let mut core = UpdateCore::new();
        let mut facts = COMMITTED_A;
        // The model: the install in flight (target, installer succeeded, cancel asked).
        let mut in_flight: Option<(Slot, bool, bool)> = None;
        let mut activated: Option<Slot> = None;
        let mut now = 0;
        for step in steps {
            now += 1;
            let actions = match step {
                Step::Command(command) => core.command(command, facts, t(now)).unwrap_or_default(),
                Step::CheckDone(ok) => {
                    core.check_done(if ok { Ok(None) } else { Err(failure("tuf")) }, t(now));
                    Vec::new()
                }
                Step::Progress(n, verifying) => {
                    core.install_progress(counters(n, n, 0), verifying);
                    Vec::new()
                }
                Step::InstallDone(ok) => {
                    let result = if ok { Ok(counters(100, 100, 0)) } else { Err(failure("io")) };
                    if let Some(f) = in_flight.as_mut() {
                        f.1 = ok;
                    }
                    core.install_done(result, t(now))
                }
                Step::ActivationDone(ok) => core.activation_done(
                    if ok { Ok(()) } else { Err(failure("bootloader")) }, t(now)),
                Step::Reboot => {
                    if in_flight.is_none() {
                        if let Some(slot) = activated.take() {
                            facts = BootFacts { booted: slot, booted_committed: false };
                            core = UpdateCore::new();
                        } else {
                            facts.booted_committed = true;
                        }
                    }
                    Vec::new()
                }
            };
            for (i, action) in actions.iter().enumerate() {
                match action {
                    Action::StartInstall { target, .. } => {
                        prop_assert_ne!(*target, facts.booted);
                        prop_assert!(facts.booted_committed);
                        prop_assert!(in_flight.is_none());
                        prop_assert_eq!(
                            i.checked_sub(1).map(|p| &actions[p]),
                            Some(&Action::Boot(BootAction::Invalidate(*target)))
                        );
                        in_flight = Some((*target, false, false));
                        activated = None;
                    }
                    Action::Boot(BootAction::Activate(slot)) => {
                        let (target, succeeded, cancelled) =
                            in_flight.expect("activation without an install");
                        prop_assert_eq!(*slot, target);
                        prop_assert!(succeeded && !cancelled);
                    }
                    Action::CancelInstall => {
                        if let Some(f) = in_flight.as_mut() {
                            f.2 = true;
                        }
                    }
                    Action::Boot(BootAction::MarkGood(slot)) => {
                        prop_assert_ne!(Some(*slot), in_flight.map(|f| f.0));
                        if *slot == facts.booted {
                            facts.booted_committed = true;
                        }
                    }
                    Action::Completed { ok, .. } => {
                        let (target, _, _) = in_flight.take().expect("Completed without an install");
                        if *ok {
                            activated = Some(target);
                        }
                    }
                    Action::Boot(_) | Action::StartCheck => {}
                }
            }
        }
    }
}
