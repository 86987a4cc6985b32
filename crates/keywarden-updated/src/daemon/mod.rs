//! The process: configuration, the driver loop around [`crate::core::UpdateCore`], the workers.

pub mod config;
