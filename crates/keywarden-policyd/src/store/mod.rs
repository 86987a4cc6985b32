//! SQLite storage (in progress).
