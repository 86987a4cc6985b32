//! `keywarden-policyd`: the policy and audit service. It decides every request from the cabinet
//! (who may take which key, when, why) and records every event in a hash-chained audit trail
//! before anything opens.
//!
//! - [`model`]: the nouns (users, keys, permissions, loans...), plain data.
//! - [`core`]: the sans-IO session, decision and alarm logic: `handle_*(.., now)` in,
//!   `poll_effect()` out, `poll_timeout()` next.
//! - [`admin`]: the closed set of admin changes.
//! - [`store`]: SQLite (WAL, `synchronous=FULL`), migrations, the audit chain, credentials.
//! - [`config`]: the site policy file.
//! - [`service`], [`wire`]: the D-Bus adapter and its conversions.
//! - [`reports`]: read-only queries over the records, on their own connection.
//! - [`notify`]: alerts and notifications from a persistent outbox (e-mail, webhooks).
//! - [`offsite`]: the audit copy shipped to a syslog collector over TLS.
//! - [`daemon`]: the driver loop, the only place with clocks, IO and randomness.

pub mod admin;
pub mod config;
pub mod core;
pub mod daemon;
pub mod diag;
pub mod error;
pub mod logging;
pub mod model;
pub mod notify;
pub mod offsite;
pub mod reports;
pub mod service;
pub mod store;
pub mod wire;
