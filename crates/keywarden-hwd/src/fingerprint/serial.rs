//! A raw 8N1 serial port (real UART or pty slave) with poll-based timeouts.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{
    self, BaudRate, ControlFlags, FlushArg, InputFlags, SetArg, SpecialCharacterIndices,
};

use super::driver::Port;
use super::FingerprintError;

/// How long `write_all` waits for room in the output buffer before giving up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// An open serial port in raw mode, 8 data bits, no parity, 1 stop bit, no flow control.
///
/// The descriptor is non-blocking; reads and writes wait with `poll`.
#[derive(Debug)]
pub struct SerialPort {
    file: File,
    path: PathBuf,
}

fn baud_rate(baud: u32) -> Option<BaudRate> {
    match baud {
        9600 => Some(BaudRate::B9600),
        19200 => Some(BaudRate::B19200),
        38400 => Some(BaudRate::B38400),
        57600 => Some(BaudRate::B57600),
        115200 => Some(BaudRate::B115200),
        _ => None,
    }
}

impl SerialPort {
    /// Opens `path` (`O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC`) and configures it raw 8N1 at
    /// `baud`, discarding any stale input. Only 9600, 19200, 38400, 57600 and 115200 are accepted.
    pub fn open(path: impl AsRef<Path>, baud: u32) -> Result<Self, FingerprintError> {
        let path = path.as_ref().to_path_buf();
        let Some(rate) = baud_rate(baud) else {
            return Err(FingerprintError::UnsupportedBaudRate { port: path, baud });
        };
        // std adds O_CLOEXEC itself. O_NONBLOCK keeps open() from waiting for carrier detect.
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(&path)
        {
            Ok(file) => file,
            Err(source) => return Err(FingerprintError::Open { port: path, source }),
        };
        if let Err(errno) = configure(&file, rate) {
            return Err(FingerprintError::Configure {
                port: path,
                source: errno.into(),
            });
        }
        Ok(SerialPort { file, path })
    }

    /// The device path this port was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all of `bytes`, waiting (up to 1 s at a time) while the output buffer is full.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait_ready(&self.file, PollFlags::POLLOUT, WRITE_TIMEOUT)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "serial output buffer stayed full",
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is available into `buf`, waiting up to `timeout` for the first byte.
    ///
    /// Returns `Ok(0)` if nothing arrived in time, and an `UnexpectedEof` error if the other end
    /// hung up.
    pub fn read_with_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !wait_ready(&self.file, PollFlags::POLLIN, remaining)? {
                return Ok(0);
            }
            match self.file.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "serial port hung up",
                    ))
                }
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    if remaining.is_zero() {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Port for SerialPort {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        SerialPort::write_all(self, bytes)
    }

    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.read_with_timeout(buf, timeout)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn configure(file: &File, rate: BaudRate) -> nix::Result<()> {
    let mut tio = termios::tcgetattr(file)?;
    termios::cfmakeraw(&mut tio);
    termios::cfsetspeed(&mut tio, rate)?;
    tio.control_flags &= !(ControlFlags::CSTOPB | ControlFlags::PARENB | ControlFlags::CRTSCTS);
    tio.control_flags |= ControlFlags::CS8 | ControlFlags::CLOCAL | ControlFlags::CREAD;
    tio.input_flags &= !(InputFlags::IXON | InputFlags::IXOFF | InputFlags::IXANY);
    tio.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    tio.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    termios::tcsetattr(file, SetArg::TCSANOW, &tio)?;
    termios::tcflush(file, FlushArg::TCIOFLUSH)
}

/// Waits until `file` is ready for `events` (or reports an error/hangup, which the following read
/// or write then surfaces). Returns `false` on timeout.
fn wait_ready(file: &File, events: PollFlags, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let millis = remaining.as_micros().div_ceil(1000);
        let poll_timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), events)];
        match poll(&mut fds, poll_timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::openpty;
    use nix::unistd::ttyname;

    #[test]
    fn refuses_unsupported_baud_rates_naming_the_port() {
        let err = SerialPort::open("/dev/ttyFAKE0", 14400).expect_err("14400 is not supported");
        assert!(matches!(
            err,
            FingerprintError::UnsupportedBaudRate { baud: 14400, .. }
        ));
        assert!(err.to_string().contains("/dev/ttyFAKE0"), "{err}");
    }

    #[test]
    fn open_errors_name_the_port() {
        let err = SerialPort::open("/nonexistent/ttyS9", 57600).expect_err("no such device");
        assert!(matches!(err, FingerprintError::Open { .. }));
        assert!(err.to_string().contains("/nonexistent/ttyS9"), "{err}");
    }

    #[test]
    fn a_regular_file_is_not_a_serial_port() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let err = SerialPort::open(file.path(), 57600).expect_err("not a tty");
        assert!(matches!(err, FingerprintError::Configure { .. }), "{err}");
    }

    #[test]
    fn talks_over_a_pty_with_timeouts_and_hangup() {
        let pty = openpty(None, None).expect("openpty");
        let path = ttyname(&pty.slave).expect("slave name");
        let mut port = SerialPort::open(&path, 57600).expect("open pty slave");
        let mut master = File::from(pty.master);
        let mut buf = [0u8; 16];

        assert_eq!(
            port.read_with_timeout(&mut buf, Duration::from_millis(50))
                .expect("timeout is not an error"),
            0
        );

        // Raw mode: bytes that a cooked tty would translate come through untouched.
        let bytes = [0xEF, 0x01, b'\r', b'\n', 0x03, 0x11, 0x13, 0x7F];
        master.write_all(&bytes).expect("master write");
        let mut got = Vec::new();
        while got.len() < bytes.len() {
            let n = port
                .read_with_timeout(&mut buf, Duration::from_secs(1))
                .expect("read");
            assert_ne!(n, 0, "timed out after {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, bytes);

        port.write_all(&bytes).expect("slave write");
        let mut echo = [0u8; 8];
        master.read_exact(&mut echo).expect("master read");
        assert_eq!(echo, bytes);

        drop(master);
        drop(pty.slave);
        assert!(port
            .read_with_timeout(&mut buf, Duration::from_secs(1))
            .is_err());
    }
}
