//! `keywarden-policyd`: the policy and audit service. It decides every request from the cabinet
//! (who may take which key, when, why) and records every event in a hash-chained audit trail
//! before anything opens.
//!
//! - [`model`]: the nouns (users, keys, permissions, loans...), plain data.
//! - [`core`]: the sans-IO session, decision and alarm logic: `handle_*(.., now)` in,
//!   `poll_effect()` out, `poll_timeout()` next.
//! - [`admin`]: the closed set of admin changes.
//! - [`store`]: SQLite (WAL, `synchronous=FULL`), migrations, the audit chain, credentials.
//! - `service`, `daemon`: the D-Bus adapter and the driver loop.

pub mod admin;
pub mod core;
pub mod error;
pub mod model;
pub mod store;
