//! The boot health check: is the cabinet working on the system that just booted?
//!
//! Healthy means: `keywarden-hwd` answers on the bus (its `Backend` property) and
//! `keywarden-policyd` answers and is in service (`Status` is `ready`). The check retries until
//! a deadline, because under a cold boot the services come up in any order, but gives up at
//! once when systemd reports a service's unit `failed` (it crashed past its restart limit, or
//! cannot start at all): no retry can help then, and waiting out the deadline would only delay
//! the rollback. It is wired before
//! `boot-complete.target` (`keywarden-health-check.service`); `keywarden-bless-boot.service`
//! commits the slot after that target is reached. A failing check on an uncommitted slot
//! reboots (the unit's `FailureAction=reboot`), which spends one of the slot's tries; on a
//! committed slot it only reports, because rebooting cannot help there.

use std::time::{Duration, Instant};

use keywarden_dbus::hardware::Hardware1Proxy;
use keywarden_dbus::policy::Policy1Proxy;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

/// The units whose services the check probes, by the finding's `service`.
const UNITS: [(&str, &str); 2] = [
    ("hardware", "keywarden-hwd.service"),
    ("policy", "keywarden-policyd.service"),
];

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait SystemdManager {
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait SystemdUnit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `hardware` or `policy`.
    pub service: &'static str,
    /// Answered and in service.
    pub healthy: bool,
    /// What it said, or why not.
    pub detail: String,
    /// Unhealthy for good: systemd reports the service's unit `failed`, so it will not come up
    /// without someone starting it again.
    pub gave_up: bool,
}

/// Probes both services once.
pub async fn probe(conn: &Connection) -> Vec<Finding> {
    let hardware = match Hardware1Proxy::new(conn).await {
        Ok(proxy) => match proxy.backend().await {
            Ok(backend) => Finding {
                service: "hardware",
                healthy: true,
                detail: format!("backend {backend}"),
                gave_up: false,
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
                gave_up: false,
            },
            Err(e) => unhealthy("policy", e),
        },
        Err(e) => unhealthy("policy", e),
    };
    let mut findings = vec![hardware, policy];
    for finding in findings.iter_mut().filter(|f| !f.healthy) {
        let Some((_, unit)) = UNITS.iter().find(|(s, _)| *s == finding.service) else {
            continue;
        };
        if let Some(state) = unit_state(conn, unit).await {
            finding.gave_up = state == "failed";
            finding.detail = format!("{}; unit {unit} {state}", finding.detail);
        }
    }
    findings
}

/// The unit's `ActiveState` as systemd reports it; `None` where systemd is not on the bus (a
/// test's private bus) or does not know the unit.
async fn unit_state(conn: &Connection, unit: &str) -> Option<String> {
    let manager = SystemdManagerProxy::new(conn).await.ok()?;
    let path = manager.get_unit(unit).await.ok()?;
    let unit = SystemdUnitProxy::builder(conn)
        .path(path)
        .ok()?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .ok()?;
    unit.active_state().await.ok()
}

fn unhealthy(service: &'static str, e: zbus::Error) -> Finding {
    Finding {
        service,
        healthy: false,
        detail: e.to_string(),
        gave_up: false,
    }
}

/// Whether probing again can change the verdict: not once every service is healthy, nor once
/// one has failed for good.
pub fn settled(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.healthy) || findings.iter().any(|f| f.gave_up)
}

/// Probes every `interval` until the findings are [`settled`] or `timeout` has passed; returns
/// the last findings.
pub async fn wait_healthy(
    conn: &Connection,
    timeout: Duration,
    interval: Duration,
) -> Vec<Finding> {
    let deadline = Instant::now() + timeout;
    loop {
        let findings = probe(conn).await;
        if settled(&findings) || Instant::now() >= deadline {
            return findings;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(healthy: bool, gave_up: bool) -> Finding {
        Finding {
            service: "policy",
            healthy,
            detail: String::new(),
            gave_up,
        }
    }

    #[test]
    fn settled_when_all_healthy_or_one_failed_for_good() {
        assert!(settled(&[finding(true, false), finding(true, false)]));
        assert!(settled(&[finding(true, false), finding(false, true)]));
        assert!(!settled(&[finding(true, false), finding(false, false)]));
        assert!(!settled(&[finding(false, false), finding(false, false)]));
    }
}
