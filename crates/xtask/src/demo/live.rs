//! The live demo at a terminal: provision a demo property with the admin CLI, then a tmux session
//! with the front-panel console (`keywarden-console`) in the top pane and the `sim>` prompt
//! (`cargo xtask demo-prompt`, [`super::prompt`]) in the bottom one. Tab switches panes. Typing
//! `quit` (or Ctrl-C, or Ctrl-D) at the prompt ends the tmux session; then every daemon stops.

use std::io::Write;
use std::process::{Command, Stdio};

use super::Stack;
use crate::error::Error;

/// A demo user: login, display name, PIN, badge code, groups.
pub struct DemoUser {
    pub name: &'static str,
    pub display: &'static str,
    pub pin: &'static str,
    pub badge: &'static str,
    pub groups: &'static [&'static str],
}

/// A demo key: label, tag code, kind, slot, notes.
pub struct DemoKey {
    pub label: &'static str,
    pub tag: &'static str,
    pub kind: &'static str,
    pub slot: u32,
    pub notes: &'static str,
}

/// The demo's people (README: "what to type").
pub const USERS: &[DemoUser] = &[
    DemoUser {
        name: "alice",
        display: "Alice Example",
        pin: "2468",
        badge: "EMP-0042",
        groups: &["staff"],
    },
    DemoUser {
        name: "bob",
        display: "Bob Driver",
        pin: "1357",
        badge: "EMP-0007",
        groups: &["staff", "drivers"],
    },
    DemoUser {
        name: "carol",
        display: "Carol Visitor",
        pin: "9753",
        badge: "EMP-0099",
        groups: &[],
    },
];

/// The demo's keys, in slots 1-4 (slots 5-8 are empty).
pub const KEYS: &[DemoKey] = &[
    DemoKey {
        label: "204",
        tag: "K-204",
        kind: "unit",
        slot: 1,
        notes: "Dog in the unit; knock first",
    },
    DemoKey {
        label: "101",
        tag: "K-101",
        kind: "unit",
        slot: 2,
        notes: "Spare for flat 101; tenant away until Friday",
    },
    DemoKey {
        label: "VAN-2",
        tag: "K-VAN2",
        kind: "vehicle",
        slot: 3,
        notes: "Fuel card in the pouch; note the mileage",
    },
    DemoKey {
        label: "MASTER-A",
        tag: "K-MA",
        kind: "master",
        slot: 4,
        notes: "Block A master: back the same day",
    },
];

/// Reasons: code, description, longest checkout in minutes (0 = site default).
const REASONS: &[(&str, &str, &str)] = &[
    ("INSP", "Inspection", "0"),
    ("MAINT", "Maintenance", "240"),
    ("SHOW", "Showing to a tenant", "60"),
];

/// Slots of the demo board.
const SLOTS: u32 = 8;

/// tmux session name.
const SESSION: &str = "keywarden-demo";

/// Provision, open the tmux session, attach this terminal to it, and return when it ends.
pub fn run(stack: &Stack) -> Result<(), Error> {
    println!("Provisioning the demo property...");
    provision(stack)?;
    let dir = stack.bus.dir();
    let socket = dir.join("tmux.sock");
    let tmux = |args: &[&str]| {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&socket).args(args);
        c
    };
    let console = format!(
        "exec '{}' --bus-address '{}' --log-file '{}'",
        stack.bin.join("keywarden-console").display(),
        stack.address,
        dir.join("console.log").display()
    );
    let xtask = std::env::current_exe().map_err(Error::io("find the xtask binary"))?;
    let prompt = format!(
        "exec '{}' demo-prompt --bus-address '{}' --keywarden '{}' --tmux-socket '{}' --console-pane '{SESSION}:0.0'",
        xtask.display(),
        stack.address,
        stack.bin.join("keywarden").display(),
        socket.display()
    );
    crate::cmd::run(&mut tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "100",
        "-y",
        "32",
        &console,
    ]))?;
    let setup: &[&[&str]] = &[
        &["split-window", "-v", "-l", "10", "-t", SESSION, &prompt],
        // When either program ends (quit, Ctrl-C, a crash), the demo ends.
        &["set-hook", "-g", "pane-exited", "kill-server"],
        &["set", "-g", "mouse", "on"],
        &["bind-key", "-n", "Tab", "select-pane", "-t", ":.+"],
        &["set", "-g", "status-style", "bg=blue,fg=white"],
        &[
            "set",
            "-g",
            "status-left",
            " keywarden demo: console above, sim> below ",
        ],
        &["set", "-g", "status-left-length", "60"],
        &[
            "set",
            "-g",
            "status-right",
            "Tab: switch pane   quit: stop the demo ",
        ],
        &["set", "-g", "status-right-length", "60"],
    ];
    for args in setup {
        crate::cmd::run(&mut tmux(args))?;
    }
    // This terminal becomes the tmux client until the session ends.
    // Inside a tmux of the person's own, nesting is fine: this server has its own socket.
    let attached = tmux(&["attach", "-t", SESSION]).env_remove("TMUX").status();
    let _ = tmux(&["kill-server"]).stderr(Stdio::null()).status();
    attached.map_err(Error::io("attach to the demo's tmux session"))?;
    println!("demo finished: every daemon is being stopped");
    Ok(())
}

/// The demo property, through the admin CLI.
fn provision(stack: &Stack) -> Result<(), Error> {
    let run = |args: &[&str], stdin: Option<&str>| -> Result<(), Error> {
        let mut cmd = stack.cli(args);
        cmd.stdout(Stdio::null()).stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: crate::cmd::display(&cmd),
            source,
        })?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .map_err(Error::io("write to keywarden"))?;
        }
        let status = child.wait().map_err(Error::io("run keywarden"))?;
        if !status.success() {
            return Err(Error::Failed {
                cmd: crate::cmd::display(&cmd),
                status,
            });
        }
        Ok(())
    };
    for (code, description, minutes) in REASONS {
        run(
            &["reason", "set", code, description, "--max-minutes", minutes],
            None,
        )?;
    }
    for group in ["staff", "drivers"] {
        run(&["group", "add", group], None)?;
    }
    for u in USERS {
        run(
            &[
                "user",
                "add",
                u.name,
                "--role",
                "staff",
                "--display-name",
                u.display,
            ],
            None,
        )?;
        run(&["user", "pin", u.name], Some(&format!("{}\n", u.pin)))?;
        run(&["user", "badge", u.name], Some(&format!("{}\n", u.badge)))?;
        for g in u.groups {
            run(&["group", "member-add", g, u.name], None)?;
        }
    }
    for k in KEYS {
        let slot = k.slot.to_string();
        run(
            &[
                "key",
                "add",
                k.label,
                "--tag",
                k.tag,
                "--kind",
                k.kind,
                "--home-slot",
                &slot,
                "--notes",
                k.notes,
            ],
            None,
        )?;
        run(&["key", "place", k.label, &slot], None)?;
    }
    run(
        &["perm", "grant", "--group", "staff", "--kind", "unit"],
        None,
    )?;
    run(
        &["perm", "grant", "--group", "drivers", "--key", "VAN-2"],
        None,
    )?;
    run(
        &["perm", "grant", "--user", "alice", "--key", "MASTER-A"],
        None,
    )?;
    // The sim cabinet starts with every slot occupied: empty the ones holding no key.
    let used = KEYS.len() as u32;
    for slot in used + 1..=SLOTS {
        run(&["sim", "slot", &slot.to_string(), "empty"], None)?;
    }
    Ok(())
}
