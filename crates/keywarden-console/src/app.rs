//! The IO loop: the terminal (raw mode, alternate screen, restored on exit and on panic), a thread
//! reading the display's keyboard, the bus task, and one loop that feeds the [`Console`] with
//! keys, bus events and its display timer, sends its commands to the bus task and redraws.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::link::{self, Event};
use crate::model::{Command, Console, Key};

/// What the console needs to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// D-Bus address instead of the system bus.
    pub bus_address: Option<String>,
    /// Back to idle after this long without a change or a key.
    pub display_timeout: Duration,
}

/// Run until Ctrl-C on the display's keyboard, SIGTERM, SIGINT or SIGHUP. The terminal is
/// restored on return and on panic.
pub fn run(options: Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime {
            what: "start the async runtime",
            source,
        })?;
    // Installs a panic hook that restores the terminal before the panic message prints.
    let mut terminal = ratatui::try_init().map_err(|source| Error::Terminal {
        what: "enter raw mode and the alternate screen",
        source,
    })?;
    let result = runtime.block_on(drive(&mut terminal, options));
    let restored = ratatui::try_restore().map_err(|source| Error::Terminal {
        what: "restore the terminal",
        source,
    });
    result.and(restored)
}

/// The display's key, if it is one the console uses.
pub fn key_of(event: &TermEvent) -> Option<Key> {
    let TermEvent::Key(k) = event else {
        return None;
    };
    if k.kind != KeyEventKind::Press {
        return None;
    }
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        _ => Key::Other,
    })
}

async fn drive(terminal: &mut ratatui::DefaultTerminal, options: Options) -> Result<()> {
    let runtime_error = |what| move |source| Error::Runtime { what, source };
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime_error("watch SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime_error("watch SIGINT"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(runtime_error("watch SIGHUP"))?;

    let (key_tx, mut keys) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("keyboard".into())
        .spawn(move || loop {
            match ratatui::crossterm::event::read() {
                Ok(event) => {
                    if key_tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = key_tx.send(Err(e));
                    return;
                }
            }
        })
        .map_err(runtime_error("start the keyboard thread"))?;

    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let link = tokio::spawn(link::run(options.bus_address, command_rx, event_tx));

    let mut console = Console::new(options.display_timeout, Instant::now());
    // systemd: READY once the first screen is drawn; watchdog pings from this loop itself, so a
    // display that stops being drawn gets the console restarted.
    let watchdog = watchdog_period();
    let mut ready = false;
    let mut next_ping = Instant::now();
    let result = loop {
        let screen = console.screen(Instant::now());
        if let Err(source) = terminal.draw(|frame| crate::ui::draw(frame, &screen)) {
            break Err(Error::Terminal {
                what: "draw",
                source,
            });
        }
        if !ready {
            ready = true;
            if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
                tracing::warn!(error = %e, "sd_notify READY failed");
            }
        }
        if let Some(period) = watchdog {
            if Instant::now() >= next_ping {
                if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]) {
                    tracing::warn!(error = %e, "sd_notify WATCHDOG failed");
                }
                next_ping = Instant::now() + period;
            }
        }
        let deadline = match (console.poll_timeout(), watchdog) {
            (Some(at), Some(_)) => Some(at.min(next_ping)),
            (Some(at), None) => Some(at),
            (None, Some(_)) => Some(next_ping),
            (None, None) => None,
        }
        .map(tokio::time::Instant::from_std);
        tokio::select! {
            event = events.recv() => {
                let now = Instant::now();
                match event {
                    Some(Event::Published(p)) => console.handle_published(p, now),
                    Some(Event::Unavailable(why)) => console.handle_unavailable(why, now),
                    Some(Event::Keys(k)) => console.handle_keys(k),
                    Some(Event::Reasons(r)) => console.handle_reasons(r),
                    Some(Event::CallFailed(m)) => console.handle_call_failed(m, now),
                    Some(Event::Denied(code, m)) => console.handle_denied(code, m, now),
                    Some(Event::Granted(k, s, due)) => console.handle_granted(k, s, due, now),
                    Some(Event::Alarm(kind, subject, on)) => {
                        console.handle_alarm(kind, subject, on, now);
                    }
                    None => console.handle_unavailable("bus task ended".into(), now),
                }
            }
            key = keys.recv() => match key {
                Some(Ok(event)) => {
                    if let Some(k) = key_of(&event) {
                        console.handle_key(k, Instant::now());
                    }
                }
                Some(Err(source)) => break Err(Error::Terminal { what: "read a key", source }),
                None => break Ok(()),
            },
            () = sleep_until(deadline) => console.handle_timeout(Instant::now()),
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
            _ = sighup.recv() => break Ok(()),
        }
        let mut quit = false;
        while let Some(cmd) = console.poll_command() {
            if cmd == Command::Quit {
                quit = true;
            } else if command_tx.send(cmd).is_err() {
                tracing::warn!("the bus task has ended");
            }
        }
        if quit {
            break Ok(());
        }
    };
    link.abort();
    result
}

/// Half the unit's `WatchdogSec`, when systemd asks for pings.
fn watchdog_period() -> Option<std::time::Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| std::time::Duration::from_micros(usec / 2))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
