//! Logging setup: journald on the appliance, standard error elsewhere; `RUST_LOG` filters.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Falls back to standard error if journald is unreachable.
pub fn init(journald: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        if let Ok(layer) = tracing_journald::layer() {
            registry.with(layer).init();
            return;
        }
    }
    let ansi = std::io::stderr().is_terminal();
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .init();
}
