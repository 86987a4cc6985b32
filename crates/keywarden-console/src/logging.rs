//! Logging: journald on the appliance, a file if asked, else standard error unless standard
//! error is the terminal the console draws on (then nothing is logged). `RUST_LOG` filters.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// Install the global subscriber.
pub fn init(journald: bool, file: Option<&str>) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        if let Ok(layer) = tracing_journald::layer() {
            registry.with(layer).init();
            return Ok(());
        }
    }
    if let Some(path) = file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::LogFile {
                path: path.to_owned(),
                source,
            })?;
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false),
            )
            .init();
        return Ok(());
    }
    if !std::io::stderr().is_terminal() {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .init();
    }
    Ok(())
}
