//! An emulated fingerprint module speaking the FPM protocol, for the `sim` backend and VM tests.
//!
//! [`EmulatorCore`] is the pure module model (commands in, ack frames out). [`spawn_on_pty`] and
//! [`serve`] put it behind a pty so the driver's real [`SerialPort`](super::SerialPort) code path
//! is exercised.
//!
//! Fingers are integers ("identities"). Enrolling stores the identity of the enrolled finger in the
//! library page; a later search with the same identity matches it with score
//! `100 + identity.rem_euclid(50)`. Any identity not enrolled (by convention -1) is a finger the
//! module does not know.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use nix::errno::Errno;
use nix::pty::openpty;
use nix::sys::termios::{self, SetArg};
use nix::unistd::ttyname;

use super::protocol::{
    encode_ack, Command, Confirmation, Frame, FrameDecoder, ProtocolError, SearchHit,
    SystemParameters, DEFAULT_ADDRESS,
};

/// The emulated module's state. Pure: no IO, no clock.
#[derive(Debug, Clone)]
pub struct EmulatorCore {
    /// Library size.
    pub capacity: u16,
    /// Password VfyPwd must present.
    pub password: u32,
    /// Module address; frames for other addresses are ignored.
    pub address: u32,
    /// Library: page → identity of the enrolled finger.
    pub templates: BTreeMap<u16, i32>,
    finger: Option<i32>,
    image: Option<i32>,
    char_buffers: [Option<i32>; 2],
}

impl EmulatorCore {
    /// An empty module with `capacity` pages, `password`, at the default address.
    pub fn new(capacity: u16, password: u32) -> Self {
        EmulatorCore {
            capacity,
            password,
            address: DEFAULT_ADDRESS,
            templates: BTreeMap::new(),
            finger: None,
            image: None,
            char_buffers: [None, None],
        }
    }

    /// Puts a finger with `identity` on the sensor, or lifts it (`None`).
    pub fn set_finger(&mut self, identity: Option<i32>) {
        self.finger = identity;
    }

    /// The finger currently on the sensor.
    pub fn finger(&self) -> Option<i32> {
        self.finger
    }

    /// Handles one decoder result; returns the ack frame to send, if any.
    ///
    /// Frames for another address are ignored, as a real module does; any other bad frame or
    /// unknown instruction gets a 0x01 (packet receive error) ack.
    pub fn handle_frame(&mut self, frame: Result<Frame, ProtocolError>) -> Option<Vec<u8>> {
        match frame.and_then(|frame| Command::decode(&frame)) {
            Ok(cmd) => Some(self.handle_command(cmd)),
            Err(ProtocolError::WrongAddress { .. }) => None,
            Err(err) => {
                tracing::debug!(%err, "fingerprint emulator: bad request");
                Some(self.ack(Confirmation::PacketReceiveError, &[]))
            }
        }
    }

    /// Executes `cmd` and returns the encoded ack frame.
    pub fn handle_command(&mut self, cmd: Command) -> Vec<u8> {
        tracing::trace!(?cmd, "fingerprint emulator command");
        match cmd {
            Command::VerifyPassword(password) if password == self.password => {
                self.ack(Confirmation::Ok, &[])
            }
            Command::VerifyPassword(_) => self.ack(Confirmation::WrongPassword, &[]),
            Command::GenImg => {
                self.image = self.finger;
                match self.image {
                    Some(_) => self.ack(Confirmation::Ok, &[]),
                    None => self.ack(Confirmation::NoFinger, &[]),
                }
            }
            Command::Img2Tz { buffer } => match (buffer_index(buffer), self.image) {
                (None, _) => self.ack(Confirmation::PacketReceiveError, &[]),
                (Some(_), None) => self.ack(Confirmation::NoValidImage, &[]),
                (Some(i), Some(identity)) => {
                    self.char_buffers[i] = Some(identity);
                    self.ack(Confirmation::Ok, &[])
                }
            },
            Command::Search {
                buffer,
                start,
                count,
            } => {
                let Some(i) = buffer_index(buffer) else {
                    return self.ack(Confirmation::PacketReceiveError, &[]);
                };
                let Some(identity) = self.char_buffers[i] else {
                    return self.ack(Confirmation::NoValidImage, &[]);
                };
                let end = u32::from(start) + u32::from(count);
                let hit = self
                    .templates
                    .range(start..)
                    .find(|(&page, &stored)| u32::from(page) < end && stored == identity);
                match hit {
                    Some((&page, _)) => {
                        // rem_euclid(50) is in 0..50, so the score is in 100..150.
                        let score = 100 + identity.rem_euclid(50) as u16;
                        self.ack(Confirmation::Ok, &SearchHit { page, score }.to_bytes())
                    }
                    None => self.ack(Confirmation::NotFound, &[]),
                }
            }
            Command::RegModel => match self.char_buffers {
                [Some(a), Some(b)] if a == b => self.ack(Confirmation::Ok, &[]),
                _ => self.ack(Confirmation::MergeFail, &[]),
            },
            Command::Store { buffer, page } => {
                let Some(i) = buffer_index(buffer) else {
                    return self.ack(Confirmation::PacketReceiveError, &[]);
                };
                if page >= self.capacity {
                    return self.ack(Confirmation::PageOutOfRange, &[]);
                }
                match self.char_buffers[i] {
                    Some(identity) => {
                        self.templates.insert(page, identity);
                        self.ack(Confirmation::Ok, &[])
                    }
                    None => self.ack(Confirmation::BadTemplate, &[]),
                }
            }
            Command::DeleteChar { page, count } => {
                if u32::from(page) + u32::from(count) > u32::from(self.capacity) {
                    return self.ack(Confirmation::PageOutOfRange, &[]);
                }
                let end = u32::from(page) + u32::from(count);
                self.templates
                    .retain(|&p, _| p < page || u32::from(p) >= end);
                self.ack(Confirmation::Ok, &[])
            }
            Command::Empty => {
                self.templates.clear();
                self.ack(Confirmation::Ok, &[])
            }
            Command::ReadSysPara => {
                let params = SystemParameters {
                    status_register: 0,
                    system_id: 0,
                    capacity: self.capacity,
                    security_level: 3,
                    address: self.address,
                    packet_size_code: 2,
                    baud_multiplier: 6,
                };
                self.ack(Confirmation::Ok, &params.to_bytes())
            }
            Command::TemplateNum => {
                // At most `capacity` (a u16) pages can be stored.
                let count = u16::try_from(self.templates.len()).unwrap_or(u16::MAX);
                self.ack(Confirmation::Ok, &count.to_be_bytes())
            }
        }
    }

    fn ack(&self, code: Confirmation, data: &[u8]) -> Vec<u8> {
        encode_ack(self.address, code, data)
    }
}

fn buffer_index(buffer: u8) -> Option<usize> {
    match buffer {
        1 => Some(0),
        2 => Some(1),
        _ => None,
    }
}

fn lock(core: &Mutex<EmulatorCore>) -> MutexGuard<'_, EmulatorCore> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens a pty pair in raw mode and serves `core` on its master in a new thread.
///
/// Returns the slave's path, to be opened with [`SerialPort::open`](super::SerialPort::open), and
/// the serving thread. The thread keeps the slave open until the first request arrives, so the
/// client may open it at leisure; it ends when the client closes the slave after that (one client
/// session per pty).
pub fn spawn_on_pty(
    core: Arc<Mutex<EmulatorCore>>,
) -> io::Result<(PathBuf, JoinHandle<io::Result<()>>)> {
    let pty = openpty(None, None)?;
    let path = ttyname(&pty.slave)?;
    // Termios settings of a pty pair are shared; raw mode keeps the line discipline out of the way
    // until the client configures the port itself.
    let mut tio = termios::tcgetattr(&pty.slave)?;
    termios::cfmakeraw(&mut tio);
    termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &tio)?;
    let master = File::from(pty.master);
    let slave = pty.slave;
    let handle = thread::Builder::new()
        .name("fingerprint-emulator".into())
        .spawn(move || serve_inner(master, &core, Some(slave)))?;
    Ok((path, handle))
}

/// Serves `core` on an already-open, blocking pty master (or any byte stream) until it reports
/// end of file or, for a pty master, `EIO` (no slave open any more).
pub fn serve(port: File, core: Arc<Mutex<EmulatorCore>>) -> io::Result<()> {
    serve_inner(port, &core, None)
}

fn serve_inner(
    mut port: File,
    core: &Mutex<EmulatorCore>,
    mut slave_guard: Option<OwnedFd>,
) -> io::Result<()> {
    let mut decoder = FrameDecoder::new(lock(core).address);
    let mut buf = [0u8; 512];
    loop {
        let n = match port.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // A client has the slave open now; from here on its hangup ends the session.
        drop(slave_guard.take());
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            let reply = lock(core).handle_frame(frame);
            if let Some(reply) = reply {
                port.write_all(&reply)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::protocol::{encode_command, Ack};

    fn run(core: &mut EmulatorCore, cmd: Command) -> Ack {
        let mut decoder = FrameDecoder::new(core.address);
        decoder.push(&core.handle_command(cmd));
        let frame = decoder
            .next_frame()
            .expect("one frame")
            .expect("valid frame");
        Ack::decode(&frame).expect("an ack")
    }

    fn enroll(core: &mut EmulatorCore, page: u16, identity: i32) {
        core.set_finger(Some(identity));
        for cmd in [
            Command::GenImg,
            Command::Img2Tz { buffer: 1 },
            Command::GenImg,
            Command::Img2Tz { buffer: 2 },
            Command::RegModel,
            Command::Store { buffer: 1, page },
        ] {
            assert_eq!(run(core, cmd).code, Confirmation::Ok, "{cmd:?}");
        }
    }

    fn search(core: &mut EmulatorCore) -> Ack {
        run(core, Command::GenImg);
        run(core, Command::Img2Tz { buffer: 1 });
        run(
            core,
            Command::Search {
                buffer: 1,
                start: 0,
                count: core.capacity,
            },
        )
    }

    #[test]
    fn enrolled_finger_matches_and_others_do_not() {
        let mut core = EmulatorCore::new(10, 0);
        enroll(&mut core, 4, 42);
        assert_eq!(run(&mut core, Command::TemplateNum).template_count(), Ok(1));
        core.set_finger(Some(42));
        assert_eq!(
            search(&mut core).search_hit(),
            Ok(SearchHit {
                page: 4,
                score: 142
            })
        );
        core.set_finger(Some(-1));
        assert_eq!(search(&mut core).code, Confirmation::NotFound);
        core.set_finger(None);
        assert_eq!(run(&mut core, Command::GenImg).code, Confirmation::NoFinger);
    }

    #[test]
    fn refuses_what_a_module_refuses() {
        let mut core = EmulatorCore::new(10, 0x1234);
        assert_eq!(
            run(&mut core, Command::VerifyPassword(0)).code,
            Confirmation::WrongPassword
        );
        assert_eq!(
            run(
                &mut core,
                Command::Store {
                    buffer: 1,
                    page: 10
                }
            )
            .code,
            Confirmation::PageOutOfRange
        );
        assert_eq!(
            run(&mut core, Command::DeleteChar { page: 9, count: 2 }).code,
            Confirmation::PageOutOfRange
        );
        core.set_finger(Some(1));
        run(&mut core, Command::GenImg);
        run(&mut core, Command::Img2Tz { buffer: 1 });
        core.set_finger(Some(2));
        run(&mut core, Command::GenImg);
        run(&mut core, Command::Img2Tz { buffer: 2 });
        assert_eq!(
            run(&mut core, Command::RegModel).code,
            Confirmation::MergeFail
        );
    }

    #[test]
    fn bad_frames_get_an_error_ack_and_foreign_ones_none() {
        let mut core = EmulatorCore::new(10, 0);
        let bad = Frame {
            address: DEFAULT_ADDRESS,
            packet_id: crate::fingerprint::protocol::PacketId::Command,
            payload: vec![0x77],
        };
        let reply = core.handle_frame(Ok(bad)).expect("a reply");
        let mut decoder = FrameDecoder::new(DEFAULT_ADDRESS);
        decoder.push(&reply);
        let ack = Ack::decode(&decoder.next_frame().expect("frame").expect("valid")).expect("ack");
        assert_eq!(ack.code, Confirmation::PacketReceiveError);

        let mut foreign = FrameDecoder::new(DEFAULT_ADDRESS);
        foreign.push(&encode_command(7, &Command::GenImg));
        let frame = foreign.next_frame().expect("an error");
        assert_eq!(core.handle_frame(frame), None);
    }
}
