//! The crate's error enum (owned by the store work in progress).

/// Errors of `keywarden-policyd`.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
