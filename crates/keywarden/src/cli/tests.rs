use clap::Parser;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("keywarden").chain(args.iter().copied()))
}

#[test]
fn clap_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn user_add_takes_role_options_and_times() {
    let cli = parse(&[
        "--json",
        "user",
        "add",
        "bob",
        "--role",
        "vendor",
        "--display-name",
        "Bob Smith",
        "--valid-until",
        "2026-12-01T08:00:00Z",
        "--max-keys-out",
        "2",
    ])
    .unwrap();
    assert!(cli.json);
    let Top::User(User::Add { name, role, opts }) = cli.command else {
        panic!("not user add: {cli:?}");
    };
    assert_eq!((name.as_str(), role.as_str()), ("bob", "vendor"));
    assert_eq!(opts.display_name.as_deref(), Some("Bob Smith"));
    assert_eq!(opts.valid_until, Some(1_796_112_000));
    assert_eq!(opts.valid_from, None);
    assert_eq!(opts.max_keys_out, Some(2));
}

#[test]
fn user_add_refuses_unknown_roles_and_bad_times() {
    let err = parse(&["user", "add", "bob", "--role", "boss"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    assert!(
        err.to_string()
            .contains("[possible values: admin, manager, staff, vendor]"),
        "{err}"
    );

    let err = parse(&[
        "user",
        "add",
        "bob",
        "--role",
        "staff",
        "--valid-from",
        "soon",
    ])
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid value 'soon' for '--valid-from <TIME>': expected RFC 3339"),
        "{err}"
    );

    let err = parse(&["user", "add", "bob"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn user_update_clears_with_none_and_sets_active() {
    let cli = parse(&[
        "user",
        "update",
        "bob",
        "--valid-until",
        "none",
        "--active",
        "false",
    ])
    .unwrap();
    let Top::User(User::Update {
        opts, active, role, ..
    }) = cli.command
    else {
        panic!("not user update: {cli:?}");
    };
    assert_eq!(opts.valid_until, Some(0));
    assert_eq!(active, Some(false));
    assert_eq!(role, None);
}

#[test]
fn user_pin_takes_no_pin_on_the_command_line() {
    assert!(parse(&["user", "pin", "bob"]).is_ok());
    let err = parse(&["user", "pin", "bob", "1234"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
}

#[test]
fn perm_grant_needs_exactly_one_subject_and_one_target() {
    let cli = parse(&[
        "perm",
        "grant",
        "--group",
        "cleaners",
        "--kind",
        "amenity",
        "--schedule",
        "office",
    ])
    .unwrap();
    let Top::Perm(Perm::Grant {
        who,
        what,
        schedule,
    }) = cli.command
    else {
        panic!("not perm grant: {cli:?}");
    };
    assert_eq!(who.wire(), "group:cleaners");
    assert_eq!(what.wire(), "kind:amenity");
    assert_eq!(schedule.as_deref(), Some("office"));

    let cli = parse(&["perm", "grant", "--user", "bob", "--key", "204"]).unwrap();
    let Top::Perm(Perm::Grant {
        who,
        what,
        schedule,
    }) = cli.command
    else {
        panic!("not perm grant: {cli:?}");
    };
    assert_eq!(
        (who.wire().as_str(), what.wire().as_str()),
        ("user:bob", "key:204")
    );
    assert_eq!(schedule, None);

    for args in [
        &[
            "perm", "grant", "--user", "bob", "--group", "g", "--key", "204",
        ][..],
        &[
            "perm", "grant", "--user", "bob", "--key", "204", "--kind", "unit",
        ],
        &["perm", "grant", "--key", "204"],
        &["perm", "grant", "--user", "bob"],
    ] {
        assert!(parse(args).is_err(), "{args:?}");
    }
}

#[test]
fn key_add_and_update_options() {
    let cli = parse(&[
        "key",
        "add",
        "204",
        "--tag",
        "T-0001",
        "--kind",
        "unit",
        "--home-slot",
        "3",
        "--critical",
    ])
    .unwrap();
    let Top::Key(Key::Add {
        label,
        tag,
        kind,
        home_slot,
        floating,
        critical,
        notes,
    }) = cli.command
    else {
        panic!("not key add: {cli:?}");
    };
    assert_eq!(
        (label.as_str(), tag.as_str(), kind.as_str()),
        ("204", "T-0001", "unit")
    );
    assert_eq!(
        (home_slot, floating, critical, notes),
        (Some(3), false, true, None)
    );

    assert!(parse(&[
        "key",
        "add",
        "204",
        "--tag",
        "T",
        "--kind",
        "unit",
        "--home-slot",
        "3",
        "--floating"
    ])
    .is_err());
    assert!(parse(&[
        "key",
        "add",
        "204",
        "--tag",
        "T",
        "--kind",
        "unit",
        "--home-slot",
        "0"
    ])
    .is_err());
    assert!(parse(&["key", "add", "204", "--tag", "T", "--kind", "door"]).is_err());

    let cli = parse(&[
        "key",
        "update",
        "204",
        "--label",
        "204A",
        "--critical",
        "false",
        "--floating",
    ])
    .unwrap();
    let Top::Key(Key::Update {
        label,
        new_label,
        critical,
        floating,
        active,
        ..
    }) = cli.command
    else {
        panic!("not key update: {cli:?}");
    };
    assert_eq!(
        (label.as_str(), new_label.as_deref()),
        ("204", Some("204A"))
    );
    assert_eq!((critical, floating, active), (Some(false), true, None));
}

#[test]
fn schedule_set_reads_every_window() {
    let cli = parse(&[
        "schedule",
        "set",
        "office",
        "--window",
        "mon-fri 08:00-18:00",
        "--window",
        "sat 09:00-12:00",
        "--on-holidays",
    ])
    .unwrap();
    let Top::Schedule(Schedule::Set {
        name,
        windows,
        on_holidays,
    }) = cli.command
    else {
        panic!("not schedule set: {cli:?}");
    };
    assert_eq!(name, "office");
    assert_eq!(windows.len(), 2);
    assert_eq!(
        (windows[0].days, windows[0].start, windows[0].end),
        (0b001_1111, 480, 1080)
    );
    assert!(on_holidays);

    let err = parse(&["schedule", "set", "office"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    let err = parse(&["schedule", "set", "office", "--window", "mon 18:00-08:00"]).unwrap_err();
    assert!(err.to_string().contains("not after its start"), "{err}");
}

#[test]
fn holiday_and_reason_join_their_words() {
    let cli = parse(&["holiday", "add", "2026-12-25", "Christmas", "Day"]).unwrap();
    let Top::Holiday(Holiday::Add { date, name }) = cli.command else {
        panic!("not holiday add: {cli:?}");
    };
    assert_eq!(
        (date.as_str(), name.join(" ").as_str()),
        ("2026-12-25", "Christmas Day")
    );
    assert!(parse(&["holiday", "add", "25.12.2026", "Christmas"]).is_err());

    let cli = parse(&[
        "reason",
        "set",
        "MAINT",
        "Maintenance",
        "work",
        "--max-minutes",
        "120",
    ])
    .unwrap();
    let Top::Reason(Reason::Set {
        code,
        description,
        max_minutes,
    }) = cli.command
    else {
        panic!("not reason set: {cli:?}");
    };
    assert_eq!(
        (code.as_str(), description.join(" ").as_str(), max_minutes),
        ("MAINT", "Maintenance work", 120)
    );
}

#[test]
fn audit_verify_key_needs_a_file() {
    assert!(parse(&["audit", "verify"]).is_ok());
    assert!(parse(&["audit", "verify", "x.jsonl", "--key", "ab"]).is_ok());
    assert!(parse(&["audit", "verify", "--collector", "c.log", "--key", "ab"]).is_ok());
    let err = parse(&["audit", "verify", "x.jsonl", "--collector", "c.log"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    let err = parse(&["audit", "verify", "--key", "ab"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn reserve_add_needs_both_times() {
    let cli = parse(&[
        "reserve",
        "add",
        "204",
        "bob",
        "--from",
        "2026-12-01T08:00:00Z",
        "--until",
        "2026-12-01T10:00:00+02:00",
    ])
    .unwrap();
    let Top::Reserve(Reserve::Add { from, until, .. }) = cli.command else {
        panic!("not reserve add: {cli:?}");
    };
    assert_eq!(until - from, 0);
    assert!(parse(&[
        "reserve",
        "add",
        "204",
        "bob",
        "--from",
        "2026-12-01T08:00:00Z"
    ])
    .is_err());
}

#[test]
fn hw_commands_are_unchanged() {
    let cli = parse(&["hw", "release", "3", "10"]).unwrap();
    assert!(matches!(
        cli.command,
        Top::Hw(Hw::Release {
            slot: 3,
            seconds: 10
        })
    ));
    let cli = parse(&["sim", "finger", "-1"]).unwrap();
    assert!(matches!(cli.command, Top::Sim(Sim::Finger { id: -1 })));
}

#[test]
fn repo_add_takes_repeated_keys_and_bounded_days() {
    let cli = parse(&[
        "repo",
        "add",
        "REPO",
        "b.kwb",
        "--bundle-key",
        "prod.pub",
        "--key",
        "targets.pem",
        "--key",
        "snapshot.pem",
    ])
    .unwrap();
    let Top::Repo(Repo::Add {
        key,
        expires_days,
        timestamp_days,
        ..
    }) = cli.command
    else {
        panic!("not repo add: {cli:?}");
    };
    assert_eq!(key.len(), 2);
    assert_eq!((expires_days, timestamp_days), (90, 7));
    // No bundle key, no signing key, zero days: usage errors.
    assert!(parse(&["repo", "add", "R", "b.kwb", "--key", "t.pem"]).is_err());
    assert!(parse(&["repo", "add", "R", "b.kwb", "--bundle-key", "p.pub"]).is_err());
    assert!(parse(&[
        "repo",
        "add",
        "R",
        "b.kwb",
        "--bundle-key",
        "p.pub",
        "--key",
        "t.pem",
        "--expires-days",
        "0"
    ])
    .is_err());
}

#[test]
fn repo_rotate_keys_takes_only_the_non_root_roles() {
    let args = |role: &'static str| {
        parse(&[
            "repo",
            "rotate-keys",
            "R",
            "--root-key",
            "root.pem",
            "--role",
            role,
            "--new-key",
            "n.pem",
            "--threshold",
            "1",
            "--root-expires",
            "2027-12-01",
        ])
    };
    for role in ["timestamp", "snapshot", "targets"] {
        assert!(args(role).is_ok(), "{role}");
    }
    assert!(args("root").is_err());
}
