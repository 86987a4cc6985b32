//! The system's part of a bundle: versions, the provisioning record, the last burn-in report,
//! disk and memory.

use std::path::Path;
use std::time::Duration;

use keywarden_diag::Scrubber;
use serde_json::{json, Map, Value};

use super::DiagPaths;

/// The Keywarden programs whose `--version` is collected.
const PROGRAMS: &[&str] = &[
    "keywarden",
    "keywarden-hwd",
    "keywarden-policyd",
    "keywarden-updated",
    "keywarden-console",
];

/// os-release fields that say which build this is (nothing else is copied).
const OS_RELEASE_FIELDS: &[&str] = &[
    "PRETTY_NAME",
    "ID",
    "VERSION_ID",
    "VERSION_CODENAME",
    "IMAGE_ID",
    "IMAGE_VERSION",
    "BUILD_ID",
];

/// `versions.json`.
pub(super) async fn versions(paths: &DiagPaths, scrub: &Scrubber, schema: Option<i64>) -> Value {
    let mut os = Map::new();
    if let Ok(text) = std::fs::read_to_string(&paths.os_release) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                if OS_RELEASE_FIELDS.contains(&k.trim()) {
                    let v = v.trim().trim_matches('"').trim_matches('\'');
                    os.insert(k.trim().to_owned(), json!(scrub.text(v)));
                }
            }
        }
    }
    let kernel = nix::sys::utsname::uname()
        .map(|u| {
            json!({
                "release": u.release().to_string_lossy(),
                "version": u.version().to_string_lossy(),
                "machine": u.machine().to_string_lossy(),
            })
        })
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let mut programs = Map::new();
    for name in PROGRAMS {
        let path = paths.programs.join(name);
        let v = if path.exists() {
            let mut cmd = tokio::process::Command::new(&path);
            cmd.arg("--version")
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null());
            match tokio::time::timeout(Duration::from_secs(5), cmd.output()).await {
                Ok(Ok(out)) if out.status.success() => {
                    json!(scrub.text(String::from_utf8_lossy(&out.stdout).trim()))
                }
                Ok(Ok(out)) => json!({ "error": format!("exit status {}", out.status) }),
                Ok(Err(e)) => json!({ "error": e.to_string() }),
                Err(_) => json!({ "error": "no answer within 5 s" }),
            }
        } else {
            json!(null)
        };
        programs.insert((*name).to_owned(), v);
    }
    json!({
        "os": os,
        "kernel": kernel,
        "programs": programs,
        "policy_service": env!("CARGO_PKG_VERSION"),
        "database_schema": schema,
    })
}

/// `device.json`: the provisioning record's public facts.
pub(super) fn device_record(identity: &Path, scrub: &Scrubber) -> Result<Value, String> {
    let path = identity.join("device.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map(|v| scrub.json(v))
            .map_err(|e| format!("{}: not JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({ "provisioned": false })),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A JSON file written by Keywarden itself, scrubbed; `None` if absent.
pub(super) fn json_file(path: &Path, scrub: &Scrubber) -> Result<Option<Value>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map(|v| Some(scrub.json(v)))
            .map_err(|e| format!("{}: not JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn disk(path: &Path) -> Value {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let block = s.fragment_size();
            json!({
                "path": path,
                "total_bytes": s.blocks() * block,
                "free_bytes": s.blocks_free() * block,
                "available_bytes": s.blocks_available() * block,
                "inodes_total": s.files(),
                "inodes_free": s.files_free(),
                "read_only": s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            })
        }
        Err(e) => json!({ "path": path, "error": e.to_string() }),
    }
}

/// `resources.json`: disk use of the data partition, the root and `/run`; memory (sysinfo(2),
/// which needs no `/proc`).
pub(super) fn resources(data_dir: &Path) -> Value {
    let memory = match nix::sys::sysinfo::sysinfo() {
        Ok(i) => {
            let (l1, l5, l15) = i.load_average();
            json!({
                "ram_total_bytes": i.ram_total(),
                "ram_unused_bytes": i.ram_unused(),
                "swap_total_bytes": i.swap_total(),
                "swap_free_bytes": i.swap_free(),
                "uptime_seconds": i.uptime().as_secs(),
                "load_average": [l1, l5, l15],
                "processes": i.process_count(),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({
        "disks": [disk(data_dir), disk(Path::new("/")), disk(Path::new("/run"))],
        "memory": memory,
    })
}
