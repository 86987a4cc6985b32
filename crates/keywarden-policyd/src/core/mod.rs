//! Sans-IO core (in progress).
pub mod effects;
