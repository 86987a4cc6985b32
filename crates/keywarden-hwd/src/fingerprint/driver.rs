//! Blocking driver for one fingerprint module. Meant to run on a dedicated thread.

use std::fmt;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::protocol::{encode_command, Ack, Command, Confirmation, FrameDecoder, SystemParameters};
use super::FingerprintError;

/// How long the module may take to answer most commands.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Searching a full library and erasing flash take longer on real modules.
const SLOW_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between GenImg polls while waiting for a finger to arrive or leave.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A byte link to the module: a [`SerialPort`](super::SerialPort), or anything else in tests.
pub trait Port {
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Reads what is available into `buf`, waiting up to `timeout` for the first byte.
    /// `Ok(0)` means nothing arrived in time.
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// The device path, for error messages.
    fn path(&self) -> &Path {
        Path::new("(unnamed port)")
    }
}

/// Result of one identification attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOutcome {
    /// The finger matches the template stored at `template_id`.
    Matched {
        /// Library page of the matching template.
        template_id: u16,
        /// Module's confidence score.
        score: u16,
    },
    /// A finger was read but matches no stored template.
    NoMatch,
    /// No finger on the sensor.
    NoFinger,
    /// A finger was there but the image was unusable; the user should try again.
    BadImage(Confirmation),
}

/// The step of an enrollment that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollStage {
    /// Waiting for the finger the first time.
    FirstTouch,
    /// Waiting for the finger to be lifted.
    Lift,
    /// Waiting for the finger the second time.
    SecondTouch,
}

impl fmt::Display for EnrollStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnrollStage::FirstTouch => "the first finger placement",
            EnrollStage::Lift => "the finger to be lifted",
            EnrollStage::SecondTouch => "the second finger placement",
        })
    }
}

/// A connected, password-verified fingerprint module.
///
/// Every method is one or more request/reply exchanges; none is retried, since most have side
/// effects. Nothing the module sends can make these methods panic.
#[derive(Debug)]
pub struct FingerprintModule<P: Port> {
    port: P,
    address: u32,
    decoder: FrameDecoder,
    capacity: u16,
}

impl<P: Port> FingerprintModule<P> {
    /// Verifies `password` (VfyPwd) and reads the system parameters (ReadSysPara) of the module
    /// at `address` (usually [`DEFAULT_ADDRESS`](super::protocol::DEFAULT_ADDRESS)).
    pub fn connect(port: P, address: u32, password: u32) -> Result<Self, FingerprintError> {
        let mut module = FingerprintModule {
            port,
            address,
            decoder: FrameDecoder::new(address),
            capacity: 0,
        };
        let ack = module.exchange(Command::VerifyPassword(password))?;
        match ack.code {
            Confirmation::Ok => {}
            Confirmation::WrongPassword => return Err(FingerprintError::WrongPassword),
            code => return Err(module_error(Command::VerifyPassword(password), code)),
        }
        let params = module.system_parameters()?;
        module.capacity = params.capacity;
        tracing::debug!(?params, "fingerprint module connected");
        Ok(module)
    }

    /// Library size: valid template ids are `0..capacity()`.
    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    /// Reads the module's system parameter block.
    pub fn system_parameters(&mut self) -> Result<SystemParameters, FingerprintError> {
        let cmd = Command::ReadSysPara;
        let ack = self.exchange_ok(cmd)?;
        ack.system_parameters().map_err(|e| protocol_error(cmd, e))
    }

    /// Number of templates stored.
    pub fn template_count(&mut self) -> Result<u16, FingerprintError> {
        let cmd = Command::TemplateNum;
        let ack = self.exchange_ok(cmd)?;
        ack.template_count().map_err(|e| protocol_error(cmd, e))
    }

    /// One identification attempt: capture, extract, search the whole library.
    pub fn search(&mut self) -> Result<SearchOutcome, FingerprintError> {
        match self.exchange(Command::GenImg)?.code {
            Confirmation::Ok => {}
            Confirmation::NoFinger => return Ok(SearchOutcome::NoFinger),
            Confirmation::EnrollImageFail => {
                return Ok(SearchOutcome::BadImage(Confirmation::EnrollImageFail))
            }
            code => return Err(module_error(Command::GenImg, code)),
        }
        let extract = Command::Img2Tz { buffer: 1 };
        match self.exchange(extract)?.code {
            Confirmation::Ok => {}
            code @ (Confirmation::ImageTooMessy
            | Confirmation::TooFewFeaturePoints
            | Confirmation::NoValidImage) => return Ok(SearchOutcome::BadImage(code)),
            code => return Err(module_error(extract, code)),
        }
        let search = Command::Search {
            buffer: 1,
            start: 0,
            count: self.capacity,
        };
        let ack = self.exchange(search)?;
        match ack.code {
            Confirmation::Ok => {
                let hit = ack.search_hit().map_err(|e| protocol_error(search, e))?;
                Ok(SearchOutcome::Matched {
                    template_id: hit.page,
                    score: hit.score,
                })
            }
            Confirmation::NotFound | Confirmation::NoMatch => Ok(SearchOutcome::NoMatch),
            code => Err(module_error(search, code)),
        }
    }

    /// Enrolls a finger as template `template_id` from two placements.
    ///
    /// Waits up to `timeout` for each placement and up to `lift_wait` for the finger to be lifted
    /// in between. An unusable image or placements that do not merge fail with
    /// [`FingerprintError::Module`] (Img2Tz or RegModel); the caller may simply retry.
    pub fn enroll(
        &mut self,
        template_id: u16,
        timeout: Duration,
        lift_wait: Duration,
    ) -> Result<(), FingerprintError> {
        self.check_id(template_id)?;
        self.wait_finger(true, timeout, EnrollStage::FirstTouch)?;
        self.exchange_ok(Command::Img2Tz { buffer: 1 })?;
        self.wait_finger(false, lift_wait, EnrollStage::Lift)?;
        self.wait_finger(true, timeout, EnrollStage::SecondTouch)?;
        self.exchange_ok(Command::Img2Tz { buffer: 2 })?;
        self.exchange_ok(Command::RegModel)?;
        self.exchange_ok(Command::Store {
            buffer: 1,
            page: template_id,
        })?;
        Ok(())
    }

    /// Deletes template `template_id`.
    pub fn delete(&mut self, template_id: u16) -> Result<(), FingerprintError> {
        self.check_id(template_id)?;
        self.exchange_ok(Command::DeleteChar {
            page: template_id,
            count: 1,
        })?;
        Ok(())
    }

    /// Deletes every template.
    pub fn empty(&mut self) -> Result<(), FingerprintError> {
        self.exchange_ok(Command::Empty)?;
        Ok(())
    }

    fn check_id(&self, id: u16) -> Result<(), FingerprintError> {
        if id < self.capacity {
            Ok(())
        } else {
            Err(FingerprintError::TemplateOutOfRange {
                id,
                capacity: self.capacity,
            })
        }
    }

    /// Polls GenImg until a finger is (`present`) or is not (`!present`) on the sensor.
    fn wait_finger(
        &mut self,
        present: bool,
        limit: Duration,
        stage: EnrollStage,
    ) -> Result<(), FingerprintError> {
        let deadline = Instant::now() + limit;
        loop {
            let code = self.exchange(Command::GenImg)?.code;
            match (code, present) {
                (Confirmation::Ok, true) | (Confirmation::NoFinger, false) => return Ok(()),
                // Still waiting; a failed capture means a finger is there but badly placed.
                (Confirmation::Ok | Confirmation::EnrollImageFail, false)
                | (Confirmation::NoFinger | Confirmation::EnrollImageFail, true) => {}
                (code, _) => return Err(module_error(Command::GenImg, code)),
            }
            if Instant::now() >= deadline {
                return Err(FingerprintError::EnrollTimeout { stage });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `cmd` and requires confirmation code 0x00.
    fn exchange_ok(&mut self, cmd: Command) -> Result<Ack, FingerprintError> {
        let ack = self.exchange(cmd)?;
        match ack.code {
            Confirmation::Ok => Ok(ack),
            code => Err(module_error(cmd, code)),
        }
    }

    /// Sends `cmd` and waits for its acknowledgement.
    fn exchange(&mut self, cmd: Command) -> Result<Ack, FingerprintError> {
        let name = cmd.name();
        let timeout = match cmd {
            Command::Search { .. } | Command::Empty => SLOW_RESPONSE_TIMEOUT,
            _ => RESPONSE_TIMEOUT,
        };
        let mut buf = [0u8; 64];
        // Drop anything stale (e.g. a late reply to a command that timed out).
        self.decoder.clear();
        for _ in 0..16 {
            let n = self
                .port
                .read_timeout(&mut buf, Duration::ZERO)
                .map_err(|e| self.io_error(name, e))?;
            if n == 0 {
                break;
            }
        }

        tracing::trace!(command = name, "fingerprint module request");
        self.port
            .write_all(&encode_command(self.address, &cmd))
            .map_err(|e| self.io_error(name, e))?;

        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                let frame = frame.map_err(|e| protocol_error(cmd, e))?;
                let ack = Ack::decode(&frame).map_err(|e| protocol_error(cmd, e))?;
                tracing::trace!(command = name, code = %ack.code, "fingerprint module reply");
                return Ok(ack);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(FingerprintError::Timeout { command: name });
            }
            let n = self
                .port
                .read_timeout(&mut buf, remaining)
                .map_err(|e| self.io_error(name, e))?;
            self.decoder.push(&buf[..n.min(buf.len())]);
        }
    }

    fn io_error(&self, command: &'static str, source: io::Error) -> FingerprintError {
        FingerprintError::Io {
            port: self.port.path().to_path_buf(),
            command,
            source,
        }
    }
}

fn module_error(cmd: Command, code: Confirmation) -> FingerprintError {
    FingerprintError::Module {
        command: cmd.name(),
        code,
    }
}

fn protocol_error(cmd: Command, source: super::ProtocolError) -> FingerprintError {
    FingerprintError::Protocol {
        command: cmd.name(),
        source,
    }
}
