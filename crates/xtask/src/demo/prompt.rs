//! `cargo xtask demo-prompt` (hidden; started by the live demo in its bottom pane): a `sim>`
//! prompt where a person plays the cabinet's hardware. Each line becomes one `keywarden` CLI
//! command on the demo's bus (printed before it runs), or keys for the console's pane.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use super::live::{KEYS, USERS};
use crate::error::Error;

/// Options of the hidden `demo-prompt` task.
#[derive(clap::Args)]
pub struct PromptArgs {
    /// The demo's bus.
    #[arg(long)]
    bus_address: String,
    /// The `keywarden` CLI binary.
    #[arg(long)]
    keywarden: PathBuf,
    /// The demo's tmux server socket.
    #[arg(long)]
    tmux_socket: PathBuf,
    /// The console's tmux pane.
    #[arg(long)]
    console_pane: String,
}

/// What a line typed at the prompt does.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Nothing (an empty line).
    Nothing,
    /// Print the help.
    Help,
    /// End the demo.
    Quit,
    /// Run `keywarden ARGS`.
    Cli(Vec<String>),
    /// Send keys (tmux key names) to the console's pane.
    Console(Vec<String>),
    /// Not understood: say why.
    Error(String),
}

/// The help text.
pub fn help() -> String {
    let mut text = String::from(
        "The cabinet's hardware (simulated):
  badge NAME|CODE     scan a badge: alice, bob, carol, or any code
  keys TEXT           press keypad keys: digits, * (clear), # (enter); e.g. keys 2468#
                      also the words enter, clear, cancel; e.g. keys cancel
  tag LABEL|CODE      scan a key's tag to return it: e.g. tag 204
  take N / put N      take the key out of slot N / put a key into slot N
  door open|close     open or close the cabinet door
  tamper on|off       the tamper switch
The console's own buttons (or press Tab and use the arrow keys, Enter and Esc there):
  up, down, enter, esc
Looking around (admin CLI):
  status  loans  alarms  audit  users
help, quit (or Ctrl-C / Ctrl-D)
People: ",
    );
    let people: Vec<String> = USERS
        .iter()
        .map(|u| format!("{} (badge {}, PIN {})", u.name, u.badge, u.pin))
        .collect();
    text.push_str(&people.join(", "));
    text.push_str("\nKeys: ");
    let keys: Vec<String> = KEYS
        .iter()
        .map(|k| format!("{} (slot {}, tag {})", k.label, k.slot, k.tag))
        .collect();
    text.push_str(&keys.join(", "));
    text
}

/// Parse one line.
pub fn parse(line: &str) -> Line {
    let words: Vec<&str> = line.split_whitespace().collect();
    let cli = |args: &[&str]| Line::Cli(args.iter().map(|a| a.to_string()).collect());
    let Some((&verb, rest)) = words.split_first() else {
        return Line::Nothing;
    };
    match (verb, rest) {
        ("help" | "?", _) => Line::Help,
        ("quit" | "exit", _) => Line::Quit,
        ("badge", [who]) => {
            let code = USERS
                .iter()
                .find(|u| u.name == *who)
                .map_or(*who, |u| u.badge);
            cli(&["sim", "scan", "badge", code])
        }
        ("tag", [what]) => {
            let code = KEYS
                .iter()
                .find(|k| k.label == *what)
                .map_or(*what, |k| k.tag);
            cli(&["sim", "scan", "badge", code])
        }
        ("keys", tokens) if !tokens.is_empty() => {
            let mut args = vec!["sim".to_owned(), "keys".into(), "keypad".into()];
            for t in tokens {
                if ["enter", "clear", "cancel"].contains(t) {
                    args.push((*t).to_owned());
                    continue;
                }
                for c in t.chars() {
                    if !(c.is_ascii_digit() || c == '*' || c == '#') {
                        return Line::Error(format!(
                            "the keypad has 0-9, * and # (and enter, clear, cancel), not {c:?}"
                        ));
                    }
                    args.push(c.to_string());
                }
            }
            Line::Cli(args)
        }
        ("take" | "put", [n]) if n.parse::<u32>().is_ok() => {
            let state = if verb == "take" { "empty" } else { "occupied" };
            cli(&["sim", "slot", n, state])
        }
        ("door", ["open"]) => cli(&["sim", "door", "open"]),
        ("door", ["close" | "closed" | "shut"]) => cli(&["sim", "door", "closed"]),
        ("tamper", [s @ ("on" | "off")]) => cli(&["sim", "tamper", s]),
        ("status", []) => cli(&["session", "status"]),
        ("loans", []) => cli(&["key", "list"]),
        ("alarms", []) => cli(&["alarm", "list", "--all"]),
        ("audit", []) => cli(&["audit", "verify"]),
        ("users", []) => cli(&["user", "list"]),
        ("up" | "down" | "enter" | "esc", []) => {
            let key = match verb {
                "up" => "Up",
                "down" => "Down",
                "enter" => "Enter",
                _ => "Escape",
            };
            Line::Console(vec![key.to_owned()])
        }
        _ => Line::Error(format!("not understood: {line:?} (type help)")),
    }
}

/// What the prompt says first: a checkout and a return, step by step.
pub const QUICK_START: &str = "\
Checkout: badge alice, keys 2468# (her PIN), pick 204 on the console (Tab, Down, Enter, or here:
          keys 204#), pick a reason (Enter, or keys 1#), then take 1 (the slot the console names).
Return:   tag 204, then put N with the slot the console names.   help: everything.  quit: stop.";

/// Run the prompt until `quit` or the end of input, then end the demo's tmux session.
pub fn run(args: &PromptArgs) -> Result<(), Error> {
    println!("{QUICK_START}");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("sim> ");
        std::io::stdout()
            .flush()
            .map_err(Error::io("write the prompt"))?;
        let Some(line) = lines.next() else { break };
        let line = line.map_err(Error::io("read a line"))?;
        match parse(&line) {
            Line::Nothing => {}
            Line::Help => println!("{}", help()),
            Line::Quit => break,
            Line::Error(why) => println!("{why}"),
            Line::Cli(cli_args) => {
                println!("  $ keywarden {}", cli_args.join(" "));
                let status = Command::new(&args.keywarden)
                    .arg("--bus-address")
                    .arg(&args.bus_address)
                    .args(&cli_args)
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    Ok(s) => println!("  (exit status {})", s.code().unwrap_or(-1)),
                    Err(e) => println!("  cannot run keywarden: {e}"),
                }
            }
            Line::Console(keys) => {
                let _ = Command::new("tmux")
                    .arg("-S")
                    .arg(&args.tmux_socket)
                    .args(["send-keys", "-t", &args.console_pane])
                    .args(&keys)
                    .status();
            }
        }
    }
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&args.tmux_socket)
        .arg("kill-server")
        .status();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Line {
        Line::Cli(args.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn lines_become_the_cli_commands_a_person_means() {
        assert_eq!(
            parse("badge alice"),
            cli(&["sim", "scan", "badge", "EMP-0042"])
        );
        assert_eq!(
            parse("badge XYZ-1"),
            cli(&["sim", "scan", "badge", "XYZ-1"])
        );
        assert_eq!(parse("tag 204"), cli(&["sim", "scan", "badge", "K-204"]));
        assert_eq!(
            parse("keys 24#"),
            cli(&["sim", "keys", "keypad", "2", "4", "#"])
        );
        assert_eq!(
            parse("keys 2 4 enter"),
            cli(&["sim", "keys", "keypad", "2", "4", "enter"])
        );
        assert_eq!(parse("take 3"), cli(&["sim", "slot", "3", "empty"]));
        assert_eq!(parse("put 5"), cli(&["sim", "slot", "5", "occupied"]));
        assert_eq!(parse("door close"), cli(&["sim", "door", "closed"]));
        assert_eq!(parse("  "), Line::Nothing);
        assert_eq!(parse("down"), Line::Console(vec!["Down".into()]));
        assert_eq!(parse("quit"), Line::Quit);
        assert!(matches!(parse("keys 12a"), Line::Error(_)));
        assert!(matches!(parse("take x"), Line::Error(_)));
        assert!(matches!(parse("fly"), Line::Error(_)));
    }
}
