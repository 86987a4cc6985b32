//! The boot health check: is the cabinet working on the system that just booted?
//!
//! Healthy means: `keywarden-hwd` answers on the bus (its `Backend` property) and
//! `keywarden-policyd` answers and is in service (`Status` is `ready`). The check retries until
//! a deadline, because under a cold boot the services come up in any order. It is wired before
//! `boot-complete.target` (`keywarden-health-check.service`); `keywarden-bless-boot.service`
//! commits the slot after that target is reached. A failing check on an uncommitted slot
//! reboots (the unit's `FailureAction=reboot`), which spends one of the slot's tries; on a
//! committed slot it only reports, because rebooting cannot help there.

use std::time::{Duration, Instant};

use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::policy::Policy1Proxy;
use zbus::Connection;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `hardware` or `policy`.
    pub service: &'static str,
    /// Answered and in service.
    pub healthy: bool,
    /// What it said, or why not.
    pub detail: String,
}

/// Probes both services once.
pub async fn probe(conn: &Connection) -> Vec<Finding> {
    let hardware = match Hardware1Proxy::new(conn).await {
        Ok(proxy) => match proxy.backend().await {
            Ok(backend) => Finding {
                service: "hardware",
                healthy: true,
                detail: format!("backend {backend}"),
            },
            Err(e) => unhealthy("hardware", e),
        },
        Err(e) => unhealthy("hardware", e),
    };
    let policy = match Policy1Proxy::new(conn).await {
        Ok(proxy) => match proxy.status().await {
            Ok(status) => Finding {
                service: "policy",
                healthy: status == "ready",
                detail: format!("status {status:?}"),
            },
            Err(e) => unhealthy("policy", e),
        },
        Err(e) => unhealthy("policy", e),
    };
    vec![hardware, policy]
}

fn unhealthy(service: &'static str, e: zbus::Error) -> Finding {
    Finding {
        service,
        healthy: false,
        detail: e.to_string(),
    }
}

/// Probes every `interval` until both services are healthy or `timeout` has passed; returns
/// the last findings.
pub async fn wait_healthy(
    conn: &Connection,
    timeout: Duration,
    interval: Duration,
) -> Vec<Finding> {
    let deadline = Instant::now() + timeout;
    loop {
        let findings = probe(conn).await;
        if findings.iter().all(|f| f.healthy) || Instant::now() >= deadline {
            return findings;
        }
        tokio::time::sleep(interval).await;
    }
}
