//! Driver against the emulator (and misbehaving fakes) over real pty pairs.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::unistd::ttyname;

use super::protocol::{encode_ack, DEFAULT_ADDRESS};
use super::*;

const CAPACITY: u16 = 20;
const PASSWORD: u32 = 0x0BAD_CAFE;

fn emulator() -> (Arc<Mutex<EmulatorCore>>, SerialPort) {
    let core = Arc::new(Mutex::new(EmulatorCore::new(CAPACITY, PASSWORD)));
    let (path, _thread) = spawn_on_pty(Arc::clone(&core)).expect("spawn emulator");
    let port = SerialPort::open(&path, 57600).expect("open emulator pty");
    (core, port)
}

fn set_finger(core: &Mutex<EmulatorCore>, finger: Option<i32>) {
    core.lock().expect("emulator lock").set_finger(finger);
}

#[test]
fn enroll_search_delete_round_trip() {
    let (core, port) = emulator();
    let mut module = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect("connect");
    assert_eq!(module.capacity(), CAPACITY);
    assert_eq!(module.template_count().expect("count"), 0);

    let user = {
        let core = Arc::clone(&core);
        thread::spawn(move || {
            set_finger(&core, Some(42));
            thread::sleep(Duration::from_millis(300));
            set_finger(&core, None);
            thread::sleep(Duration::from_millis(300));
            set_finger(&core, Some(42));
        })
    };
    module
        .enroll(3, Duration::from_secs(5), Duration::from_secs(5))
        .expect("enroll");
    user.join().expect("user thread");
    assert_eq!(module.template_count().expect("count"), 1);
    assert_eq!(core.lock().expect("lock").templates.get(&3), Some(&42));

    assert_eq!(
        module.search().expect("search"),
        SearchOutcome::Matched {
            template_id: 3,
            score: 142
        }
    );
    set_finger(&core, Some(7));
    assert_eq!(module.search().expect("search"), SearchOutcome::NoMatch);
    set_finger(&core, None);
    assert_eq!(module.search().expect("search"), SearchOutcome::NoFinger);

    module.delete(3).expect("delete");
    set_finger(&core, Some(42));
    assert_eq!(module.search().expect("search"), SearchOutcome::NoMatch);
    assert_eq!(module.template_count().expect("count"), 0);
}

#[test]
fn enroll_times_out_without_a_finger() {
    let (_core, port) = emulator();
    let mut module = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect("connect");
    let err = module
        .enroll(1, Duration::from_millis(200), Duration::from_millis(200))
        .expect_err("nobody touches the sensor");
    assert!(
        matches!(
            err,
            FingerprintError::EnrollTimeout {
                stage: EnrollStage::FirstTouch
            }
        ),
        "{err}"
    );
}

#[test]
fn wrong_password_is_reported_as_such() {
    let (_core, port) = emulator();
    let err = FingerprintModule::connect(port, DEFAULT_ADDRESS, 0).expect_err("wrong password");
    assert!(matches!(err, FingerprintError::WrongPassword), "{err}");
}

#[test]
fn template_ids_beyond_capacity_are_refused_before_talking_to_the_module() {
    let (core, port) = emulator();
    let mut module = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect("connect");
    set_finger(&core, Some(1));
    for result in [
        module.enroll(CAPACITY, Duration::from_secs(1), Duration::from_secs(1)),
        module.delete(CAPACITY),
    ] {
        assert!(
            matches!(
                result,
                Err(FingerprintError::TemplateOutOfRange {
                    id: CAPACITY,
                    capacity: CAPACITY
                })
            ),
            "{result:?}"
        );
    }
    assert!(core.lock().expect("lock").templates.is_empty());
}

/// A pty whose master answers every request with `reply` (after reading a little).
fn fake_module(reply: Option<Vec<u8>>) -> (SerialPort, thread::JoinHandle<()>) {
    let pty = openpty(None, None).expect("openpty");
    let path = ttyname(&pty.slave).expect("slave name");
    let port = SerialPort::open(&path, 57600).expect("open pty slave");
    let mut master = File::from(pty.master);
    let fake = thread::spawn(move || {
        let _slave = pty.slave;
        let mut buf = [0u8; 64];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(reply) = &reply {
                if master.write_all(reply).is_err() {
                    break;
                }
            } else {
                // Silent module: keep the master open for a while, then hang up.
                thread::sleep(Duration::from_secs(2));
                break;
            }
        }
    });
    (port, fake)
}

#[test]
fn a_garbled_reply_is_a_protocol_error() {
    let mut reply = encode_ack(DEFAULT_ADDRESS, Confirmation::Ok, &[]);
    let last = reply.len() - 1;
    reply[last] ^= 0x55;
    let (port, _fake) = fake_module(Some(reply));
    let err = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect_err("garbled");
    assert!(
        matches!(
            err,
            FingerprintError::Protocol {
                command: "VfyPwd",
                source: ProtocolError::BadChecksum { .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_parameter_block_is_a_protocol_error() {
    // Answers VfyPwd fine, then ReadSysPara with an ok ack that lacks the 16 data bytes.
    let (port, _fake) = fake_module(Some(encode_ack(DEFAULT_ADDRESS, Confirmation::Ok, &[])));
    let err = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect_err("short");
    assert!(
        matches!(
            err,
            FingerprintError::Protocol {
                command: "ReadSysPara",
                source: ProtocolError::BadPayloadLength { .. }
            }
        ),
        "{err}"
    );
}

#[test]
fn a_silent_module_times_out() {
    let (port, _fake) = fake_module(None);
    let started = Instant::now();
    let err = FingerprintModule::connect(port, DEFAULT_ADDRESS, PASSWORD).expect_err("silent");
    assert!(
        matches!(err, FingerprintError::Timeout { command: "VfyPwd" }),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}
