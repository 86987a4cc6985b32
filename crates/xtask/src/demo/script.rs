//! The scripted walkthrough (`cargo xtask demo --scripted`, and whenever the demo is not at a
//! terminal): a `keywarden hw watch` prints every hardware signal while the admin CLI provisions a
//! tiny property and then plays what happens at the cabinet: Alice's checkout (badge, PIN, key,
//! reason, take the key), Bob refused, the return (scan the tag, put the key in the slot the
//! cabinet picks), a forced door, and the audit trail's verification.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use keywarden_testbus::Daemon;

use super::Stack;
use crate::error::Error;

/// One scripted step: a title (or none), the CLI's arguments, and what to type on its stdin.
struct Step(&'static str, &'static [&'static str], Option<&'static str>);

/// Play the walkthrough on `stack`, pausing `pause` between steps.
pub fn run(stack: &Stack, pause: Duration) -> Result<(), Error> {
    let cli = |args: &[&str]| stack.cli(args);
    let _watch = Daemon(
        cli(&["hw", "watch"])
            .spawn()
            .map_err(Error::io("start keywarden hw watch"))?,
    );
    std::thread::sleep(Duration::from_millis(300));

    let steps: &[Step] = &[
        Step(
            "An administrator sets up a tiny property",
            &["reason", "set", "MAINT", "Maintenance"],
            None,
        ),
        Step(
            "",
            &[
                "user",
                "add",
                "alice",
                "--role",
                "staff",
                "--display-name",
                "Alice Example",
            ],
            None,
        ),
        Step(
            "(the PIN is read from stdin, never from the command line)",
            &["user", "pin", "alice"],
            Some("2468\n"),
        ),
        Step("", &["user", "badge", "alice"], Some("EMP-0042\n")),
        Step("", &["user", "add", "bob", "--role", "staff"], None),
        Step("", &["user", "pin", "bob"], Some("1357\n")),
        Step("", &["user", "badge", "bob"], Some("EMP-0007\n")),
        Step(
            "",
            &[
                "key",
                "add",
                "204",
                "--tag",
                "K-7F3A",
                "--kind",
                "unit",
                "--home-slot",
                "1",
                "--notes",
                "Dog in the unit; knock first",
            ],
            None,
        ),
        Step("", &["key", "place", "204", "1"], None),
        Step(
            "",
            &["perm", "grant", "--user", "alice", "--key", "204"],
            None,
        ),
        Step("", &["user", "list"], None),
        Step(
            "Alice scans her badge (typed key by key, like a USB scanner)",
            &["sim", "scan", "badge", "EMP-0042"],
            None,
        ),
        Step(
            "...and types her PIN on the keypad; policyd checks it (Argon2id)",
            &["sim", "keys", "keypad", "2", "4", "6", "8", "enter"],
            None,
        ),
        Step(
            "The console shows her session (never her PIN)",
            &["session", "status"],
            None,
        ),
        Step(
            "She picks key 204 and a reason: the grant is recorded, then slot 1 is released",
            &["session", "choose-key", "204"],
            None,
        ),
        Step("", &["session", "choose-reason", "MAINT"], None),
        Step("", &["session", "status"], None),
        Step(
            "She takes the key from slot 1",
            &["sim", "slot", "1", "empty"],
            None,
        ),
        Step(
            "Who has which key, why, and until when",
            &["key", "list"],
            None,
        ),
        Step(
            "Bob asks for key 204 while Alice has it: refused, recorded, nothing opens",
            &["sim", "scan", "badge", "EMP-0007"],
            None,
        ),
        Step(
            "",
            &["sim", "keys", "keypad", "1", "3", "5", "7", "enter"],
            None,
        ),
        Step("", &["session", "choose-key", "204"], None),
        Step("", &["session", "status"], None),
        Step("", &["session", "cancel"], None),
        Step(
            "Alice brings the key back: she scans its tag, the cabinet picks a free slot",
            &["sim", "scan", "badge", "K-7F3A"],
            None,
        ),
        Step("", &["session", "status"], None),
        Step(
            "The door is opened without a grant: a forced-door alarm",
            &["sim", "door", "open"],
            None,
        ),
        Step("", &["sim", "door", "closed"], None),
        Step("", &["alarm", "list", "--all"], None),
        Step(
            "The audit trail: every event above, hash-chained and signed",
            &["audit", "verify"],
            None,
        ),
    ];
    for Step(title, argv, stdin) in steps {
        if !title.is_empty() {
            println!("\n== {title}");
        }
        println!("$ keywarden {}", argv.join(" "));
        let mut cmd = cli(argv);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(Error::io("run keywarden"))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input
                .write_all(text.as_bytes())
                .map_err(Error::io("write to keywarden"))?;
        }
        let status = child.wait().map_err(Error::io("run keywarden"))?;
        if !status.success() {
            println!("(exit status {})", status.code().unwrap_or(-1));
        }
        // The return step: put the key into whichever slot the cabinet released.
        if argv.ends_with(&["badge", "K-7F3A"]) {
            std::thread::sleep(Duration::from_millis(300));
            if let Some(slot) = session_slot(&cli(&["--json", "session", "status"])) {
                println!("\n== ...and puts it into slot {slot}, as the blinking LED shows");
                println!("$ keywarden sim slot {slot} occupied");
                let _ = cli(&["sim", "slot", &slot.to_string(), "occupied"]).status();
            }
        }
        std::thread::sleep(pause);
    }
    println!("\ndemo finished");
    Ok(())
}

/// The `slot` field of `keywarden --json session status`.
fn session_slot(cmd: &Command) -> Option<u32> {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    let out = c.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("\"slot\"")?;
    text[at + 6..]
        .trim_start_matches([':', ' '])
        .split(|ch: char| !ch.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
