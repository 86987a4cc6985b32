//! The IO adapter: opens evdev devices, grabs them and forwards their key events.
//!
//! Decoding happens elsewhere: the reader only timestamps key events and sends them to the
//! daemon's driver loop, which owns the decoders.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use evdev::raw_stream::{EventStream, RawDevice as Device};
use evdev::{EventSummary, SynchronizationCode};
use nix::errno::Errno;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{DeviceSelector, InputError, KeyInput, RawKey};

/// Where the kernel (devtmpfs) puts evdev nodes.
const INPUT_DIR: &str = "/dev/input";

/// Opens the device `selector` names. By name, every `/dev/input/event*` node is examined and
/// exactly one must carry that name.
pub fn open_device(selector: &DeviceSelector) -> Result<Device, InputError> {
    open_device_in(Path::new(INPUT_DIR), selector)
}

fn open_device_in(dir: &Path, selector: &DeviceSelector) -> Result<Device, InputError> {
    let name = match selector {
        DeviceSelector::Path(path) => return open_node(selector, path),
        DeviceSelector::Name(name) => name,
    };
    let entries = std::fs::read_dir(dir).map_err(|source| InputError::ListDevices {
        selector: selector.clone(),
        dir: dir.to_owned(),
        source,
    })?;
    let mut nodes: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|f| f.as_bytes().starts_with(b"event"))
        })
        .collect();
    nodes.sort();
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in nodes {
        match Device::open(&path) {
            Ok(device) if device.name() == Some(name.as_str()) => found.push((path, device)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => unreadable.push(path),
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "skipping input node"),
        }
    }
    if found.len() > 1 {
        let paths = found.into_iter().map(|(path, _)| path).collect();
        return Err(InputError::Ambiguous {
            selector: selector.clone(),
            paths,
        });
    }
    let (path, device) = found.pop().ok_or_else(|| InputError::NotFound {
        selector: selector.clone(),
        unreadable,
    })?;
    tracing::debug!(%selector, path = %path.display(), "found input device");
    Ok(device)
}

fn open_node(selector: &DeviceSelector, path: &Path) -> Result<Device, InputError> {
    Device::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => InputError::NotFound {
            selector: selector.clone(),
            unreadable: Vec::new(),
        },
        io::ErrorKind::PermissionDenied => InputError::PermissionDenied {
            selector: selector.clone(),
            path: path.to_owned(),
        },
        _ => InputError::Open {
            selector: selector.clone(),
            path: path.to_owned(),
            source,
        },
    })
}

/// Grabs `device` exclusively (`EVIOCGRAB`, so its key strokes reach no console or other
/// reader) and spawns a task on the current tokio runtime that sends each key event to `tx` as a
/// [`RawKey`] tagged with `role` and the time it was read.
///
/// The task ends, releasing the grab, when the receiver is dropped or reading fails; if the device
/// disappears (`ENODEV`) it logs an error. Fails if there is no current tokio runtime.
pub fn spawn_reader(
    role: String,
    mut device: Device,
    tx: mpsc::Sender<RawKey>,
) -> Result<JoinHandle<()>, InputError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| InputError::NoRuntime { role: role.clone() })?;
    let name = device.name().unwrap_or("unnamed").to_owned();
    if let Err(source) = device.grab() {
        return Err(InputError::Grab {
            role,
            device: name,
            source,
        });
    }
    let stream = match device.into_event_stream() {
        Ok(stream) => stream,
        Err(source) => {
            return Err(InputError::Stream {
                role,
                device: name,
                source,
            })
        }
    };
    Ok(runtime.spawn(forward_keys(role, name, stream, tx)))
}

async fn forward_keys(
    role: String,
    device: String,
    mut stream: EventStream,
    tx: mpsc::Sender<RawKey>,
) {
    loop {
        match stream.next_event().await {
            Ok(event) => {
                let input = match event.destructure() {
                    EventSummary::Key(_, code, value) => KeyInput::Key { code, value },
                    EventSummary::Synchronization(_, SynchronizationCode::SYN_DROPPED, _) => {
                        tracing::warn!(%role, %device, "the kernel dropped input events (SYN_DROPPED)");
                        KeyInput::Dropped
                    }
                    _ => continue,
                };
                let key = RawKey {
                    role: role.clone(),
                    input,
                    at: Instant::now(),
                };
                if tx.send(key).await.is_err() {
                    tracing::debug!(%role, %device, "key receiver gone, stop reading");
                    return;
                }
            }
            Err(e) if e.raw_os_error() == Some(Errno::ENODEV as i32) => {
                tracing::error!(%role, %device, "input device disappeared");
                return;
            }
            Err(e) => {
                tracing::error!(%role, %device, error = %e, "reading input device failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    use evdev::uinput::VirtualDevice;
    use evdev::{AttributeSet, KeyCode, KeyEvent};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn by_name(name: &str) -> DeviceSelector {
        DeviceSelector::Name(name.to_owned())
    }

    #[test]
    fn name_not_found_in_empty_dir() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("event0"), b"not a device")?;
        std::fs::write(dir.path().join("mouse0"), b"")?;
        let err = open_device_in(dir.path(), &by_name("Badge Reader")).err();
        assert!(
            matches!(&err, Some(InputError::NotFound { unreadable, .. }) if unreadable.is_empty()),
            "{err:?}"
        );
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            r#"input device name "Badge Reader": not found"#
        );
        Ok(())
    }

    #[test]
    fn missing_dir_is_a_list_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("input");
        let err = open_device_in(&missing, &by_name("x")).err();
        assert!(
            matches!(err, Some(InputError::ListDevices { .. })),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn path_errors_name_the_selector() -> TestResult {
        let dir = tempfile::tempdir()?;
        let missing = DeviceSelector::Path(dir.path().join("missing"));
        let err = open_device(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            format!(
                "input device path {}/missing: not found",
                dir.path().display()
            )
        );

        let file = dir.path().join("event0");
        std::fs::write(&file, b"")?;
        let err = open_device(&DeviceSelector::Path(file.clone())).err();
        assert!(
            matches!(&err, Some(InputError::Open { path, .. }) if *path == file),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn error_messages() {
        let selector = by_name("Scanner");
        let paths = vec![
            PathBuf::from("/dev/input/event3"),
            PathBuf::from("/dev/input/event7"),
        ];
        let cases = [
            (
                InputError::NotFound { selector: selector.clone(), unreadable: paths.clone() },
                r#"input device name "Scanner": not found (permission denied reading /dev/input/event3, /dev/input/event7)"#,
            ),
            (
                InputError::Ambiguous { selector: selector.clone(), paths },
                r#"input device name "Scanner": several devices have that name: /dev/input/event3, /dev/input/event7"#,
            ),
            (
                InputError::PermissionDenied {
                    selector: DeviceSelector::Path("/dev/input/by-id/usb-kbd".into()),
                    path: "/dev/input/by-id/usb-kbd".into(),
                },
                "input device path /dev/input/by-id/usb-kbd: permission denied opening /dev/input/by-id/usb-kbd",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }

    /// A uinput keyboard and the `/dev/input/event*` node the kernel made for it.
    fn virtual_keyboard(
        name: &str,
    ) -> Result<(VirtualDevice, PathBuf), Box<dyn std::error::Error>> {
        let keys: AttributeSet<KeyCode> = [
            KeyCode::KEY_A,
            KeyCode::KEY_B,
            KeyCode::KEY_LEFTSHIFT,
            KeyCode::KEY_ENTER,
        ]
        .into_iter()
        .collect();
        let mut device = VirtualDevice::builder()?
            .name(name)
            .with_keys(&keys)?
            .build()?;
        let node = device
            .enumerate_dev_nodes_blocking()?
            .next()
            .ok_or("no event node")??;
        // devtmpfs creates the node asynchronously.
        for _ in 0..100 {
            if node.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok((device, node))
    }

    #[tokio::test]
    #[ignore = "needs /dev/uinput"]
    async fn reads_keys_from_a_grabbed_uinput_keyboard() -> TestResult {
        let name = format!("keywarden-test-kbd-{}", std::process::id());
        let (mut keyboard, node) = virtual_keyboard(&name)?;
        let device = open_device(&by_name(&name))?;
        let (tx, mut rx) = mpsc::channel(16);
        let before = Instant::now();
        let reader = spawn_reader("badge".to_owned(), device, tx)?;

        let mut other = Device::open(&node)?;
        let err = other.grab().err().map(|e| e.raw_os_error());
        assert_eq!(
            err,
            Some(Some(Errno::EBUSY as i32)),
            "grab must be exclusive"
        );

        keyboard.emit(&[*KeyEvent::new(KeyCode::KEY_A, 1)])?;
        keyboard.emit(&[*KeyEvent::new(KeyCode::KEY_A, 0)])?;
        for value in [1, 0] {
            let key = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?;
            let key = key.ok_or("reader ended early")?;
            assert_eq!(
                (key.role.as_str(), key.input),
                (
                    "badge",
                    KeyInput::Key {
                        code: KeyCode::KEY_A,
                        value
                    }
                )
            );
            assert!(key.at >= before);
        }

        drop(keyboard);
        tokio::time::timeout(Duration::from_secs(5), reader).await??;
        Ok(())
    }

    #[test]
    #[ignore = "needs /dev/uinput"]
    fn two_devices_with_one_name_are_ambiguous() -> TestResult {
        let name = format!("keywarden-test-twin-{}", std::process::id());
        let (_first, a) = virtual_keyboard(&name)?;
        let (_second, b) = virtual_keyboard(&name)?;
        let err = open_device(&by_name(&name)).err();
        let mut expected = vec![a, b];
        expected.sort();
        assert!(
            matches!(&err, Some(InputError::Ambiguous { paths, .. }) if *paths == expected),
            "{err:?}"
        );
        Ok(())
    }
}
