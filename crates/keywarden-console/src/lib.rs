//! `keywarden-console`: the front-panel console of a keypad-and-display key cabinet.
//!
//! A text display on the cabinet's own screen (the local tty), a D-Bus client of
//! `org.keywarden.Policy1` only. policyd runs the session (identify → PIN → key → reason → take;
//! scan a tag → return); badge scans and keypad keys go from the hardware service to policyd
//! directly, so the console never sees PIN digits or badge codes. It shows policyd's session
//! properties, offers the key and reason lists with its own keys (arrows, Enter, Esc →
//! `ChooseKey`, `ChooseReason`, `Cancel`), shows refusals, lockouts, alarms and the slot to use,
//! and goes back to idle on policyd's timeouts and its own display timeout.
//!
//! - [`model`]: the sans-IO core (`Console`, `Screen`, `keymap`), unit-tested.
//! - [`ui`]: draws a `Screen` with ratatui.
//! - [`link`]: the bus task (properties, signals, calls; reconnects).
//! - [`app`]: the terminal and the loop merging keys, bus events and the display timer.

pub mod app;
pub mod error;
pub mod link;
pub mod logging;
pub mod model;
pub mod ui;

pub use error::{Error, Result};
