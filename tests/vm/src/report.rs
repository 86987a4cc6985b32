//! The console protocol the host (`cargo xtask vm-test`) parses, one line each:
//! `KWTEST START <name>`, `KWTEST PASS <name> <ms>`, `KWTEST FAIL <name>: <reason>`,
//! `KWTEST DONE <passed> <failed>`, and `KWBENCH <name> n=.. p50=..us p99=..us ...`.
//! A run without `DONE` is a crash as far as the host is concerned.

use crate::Result;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

/// Counts results and prints them.
#[derive(Debug, Default)]
pub struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    /// Runs one scenario under `limit` and reports it.
    pub async fn run<F: Future<Output = Result<()>>>(
        &mut self,
        name: &str,
        limit: Duration,
        scenario: F,
    ) {
        line(&format!("KWTEST START {name}"));
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, scenario).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("timed out after {limit:?}")),
        };
        match outcome {
            Ok(()) => self.pass(name, started.elapsed()),
            Err(reason) => self.fail(name, &reason),
        }
    }

    /// Reports a pass.
    pub fn pass(&mut self, name: &str, took: Duration) {
        self.passed += 1;
        line(&format!("KWTEST PASS {name} {}", took.as_millis()));
    }

    /// Reports a failure; the reason is folded onto one line.
    pub fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        let reason = reason.replace(['\n', '\r'], " | ");
        line(&format!("KWTEST FAIL {name}: {reason}"));
    }

    /// Prints the final `DONE` line; returns whether everything passed.
    pub fn done(&self) -> bool {
        line(&format!("KWTEST DONE {} {}", self.passed, self.failed));
        self.failed == 0
    }
}

/// Prints a protocol line and flushes, so it reaches the console before anything can crash.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
