//! Pure codec for the FPM UART protocol: bytes in, frames and typed values out. No IO, no clock.
//!
//! Both directions are here: the host side (`encode_command`, [`Ack`] parsing) used by the driver,
//! and the module side ([`Command::decode`], [`encode_ack`]) used by the emulator.

use std::fmt;

/// The two bytes that start every frame.
pub const HEADER: [u8; 2] = [0xEF, 0x01];
/// The module address modules ship with.
pub const DEFAULT_ADDRESS: u32 = 0xFFFF_FFFF;
/// The password modules ship with.
pub const DEFAULT_PASSWORD: u32 = 0;
/// Largest payload accepted in a frame (the largest data packet size a module can be set to).
pub const MAX_PAYLOAD: usize = 256;
/// Header (2) + address (4) + packet id (1) + length (2).
const PREFIX_LEN: usize = 9;
const CHECKSUM_LEN: usize = 2;

/// Why bytes from the wire could not be turned into a frame or a typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame checksum does not match its contents.
    #[error("bad checksum: frame says {found:#06x}, contents sum to {computed:#06x}")]
    BadChecksum {
        /// Checksum computed over the received packet id, length and payload.
        computed: u16,
        /// Checksum carried in the frame.
        found: u16,
    },
    /// The frame is addressed to (or comes from) another module address.
    #[error("frame address {found:#010x} does not match module address {expected:#010x}")]
    WrongAddress {
        /// Address this decoder was created for.
        expected: u32,
        /// Address carried in the frame.
        found: u32,
    },
    /// The length field is below the minimum or above [`MAX_PAYLOAD`] + 2.
    #[error("frame length field {0} is out of range (3..=258)")]
    BadLength(u16),
    /// The packet identifier byte is not one the protocol defines.
    #[error("unknown packet identifier {0:#04x}")]
    UnknownPacketId(u8),
    /// A well-formed frame of the wrong kind (e.g. a data packet where an ack was expected).
    #[error("expected a {expected:?} packet, got a {found:?} packet")]
    UnexpectedPacket {
        /// Packet kind the caller needed.
        expected: PacketId,
        /// Packet kind received.
        found: PacketId,
    },
    /// A command frame carries an instruction code this codec does not know.
    #[error("unknown instruction {0:#04x}")]
    UnknownInstruction(u8),
    /// A payload is shorter or longer than its instruction or reply requires.
    #[error("{what} payload has {found} bytes, expected {expected}")]
    BadPayloadLength {
        /// Which instruction or reply was being parsed.
        what: &'static str,
        /// Number of bytes required.
        expected: usize,
        /// Number of bytes present.
        found: usize,
    },
}

/// Packet identifier byte: what kind of packet a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketId {
    /// 0x01: host → module instruction.
    Command,
    /// 0x02: data packet, more follow.
    Data,
    /// 0x07: module → host acknowledgement (confirmation code + data).
    Ack,
    /// 0x08: last data packet.
    EndOfData,
}

impl PacketId {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            PacketId::Command => 0x01,
            PacketId::Data => 0x02,
            PacketId::Ack => 0x07,
            PacketId::EndOfData => 0x08,
        }
    }

    fn from_code(code: u8) -> Result<Self, ProtocolError> {
        match code {
            0x01 => Ok(PacketId::Command),
            0x02 => Ok(PacketId::Data),
            0x07 => Ok(PacketId::Ack),
            0x08 => Ok(PacketId::EndOfData),
            other => Err(ProtocolError::UnknownPacketId(other)),
        }
    }
}

/// One decoded frame whose header, address, length and checksum were valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Module address carried in the frame.
    pub address: u32,
    /// Packet kind.
    pub packet_id: PacketId,
    /// Payload, without length and checksum.
    pub payload: Vec<u8>,
}

fn checksum(packet_id: u8, length: u16, payload: &[u8]) -> u16 {
    let [hi, lo] = length.to_be_bytes();
    payload
        .iter()
        .chain([packet_id, hi, lo].iter())
        .fold(0u16, |sum, &b| sum.wrapping_add(u16::from(b)))
}

/// Encodes one frame. `payload` must not exceed [`MAX_PAYLOAD`] (all payloads built here are short).
fn encode_frame(address: u32, packet_id: PacketId, payload: &[u8]) -> Vec<u8> {
    // Payloads built in this module are at most 17 bytes, so this cannot truncate.
    let length = (payload.len() + CHECKSUM_LEN) as u16;
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&address.to_be_bytes());
    out.push(packet_id.code());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(packet_id.code(), length, payload).to_be_bytes());
    out
}

/// Incremental frame decoder for one direction of the link.
///
/// Feed received bytes with [`push`](Self::push), then call [`next_frame`](Self::next_frame) until
/// it returns `None`. Bytes before a header are skipped silently. On an invalid frame the error is
/// returned once and decoding resumes at the next header after the bad frame's first byte, so the
/// sequence of results depends only on the byte stream, not on how it was split into chunks.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    address: u32,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder accepting only frames carrying `address`.
    pub fn new(address: u32) -> Self {
        FrameDecoder {
            address,
            buf: Vec::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Drops everything buffered (e.g. stale bytes before a new command).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next complete frame or frame error, or `None` if more bytes are needed.
    #[must_use]
    pub fn next_frame(&mut self) -> Option<Result<Frame, ProtocolError>> {
        // Resynchronise: drop everything before the first header (keep a trailing 0xEF).
        match self.buf.windows(2).position(|w| w == HEADER) {
            Some(start) => {
                self.buf.drain(..start);
            }
            None => {
                let keep = usize::from(self.buf.last() == Some(&HEADER[0]));
                let len = self.buf.len();
                self.buf.drain(..len - keep);
                return None;
            }
        }
        if self.buf.len() < PREFIX_LEN {
            return None;
        }
        let address = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        let pid_code = self.buf[6];
        let length = u16::from_be_bytes([self.buf[7], self.buf[8]]);
        let early = if address != self.address {
            Some(ProtocolError::WrongAddress {
                expected: self.address,
                found: address,
            })
        } else if !(3..=(MAX_PAYLOAD + CHECKSUM_LEN) as u16).contains(&length) {
            Some(ProtocolError::BadLength(length))
        } else {
            PacketId::from_code(pid_code).err()
        };
        if let Some(err) = early {
            self.buf.drain(..1);
            return Some(Err(err));
        }
        let total = PREFIX_LEN + usize::from(length);
        if self.buf.len() < total {
            return None;
        }
        let payload = &self.buf[PREFIX_LEN..total - CHECKSUM_LEN];
        let found = u16::from_be_bytes([self.buf[total - 2], self.buf[total - 1]]);
        let computed = checksum(pid_code, length, payload);
        if computed != found {
            self.buf.drain(..1);
            return Some(Err(ProtocolError::BadChecksum { computed, found }));
        }
        let frame = PacketId::from_code(pid_code).map(|packet_id| Frame {
            address,
            packet_id,
            payload: payload.to_vec(),
        });
        self.buf.drain(..total);
        Some(frame)
    }
}

/// An instruction the driver sends and the emulator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// 0x13 VfyPwd: unlock the module with its 4-byte password.
    VerifyPassword(u32),
    /// 0x01 GenImg: capture a finger image into the image buffer.
    GenImg,
    /// 0x02 Img2Tz: extract features from the image into char buffer 1 or 2.
    Img2Tz {
        /// Char buffer number (1 or 2).
        buffer: u8,
    },
    /// 0x04 Search: look up a char buffer in library pages `start..start + count`.
    Search {
        /// Char buffer number (1 or 2).
        buffer: u8,
        /// First library page searched.
        start: u16,
        /// Number of pages searched.
        count: u16,
    },
    /// 0x05 RegModel: merge char buffers 1 and 2 into a template.
    RegModel,
    /// 0x06 Store: write the template in a char buffer to a library page.
    Store {
        /// Char buffer number (1 or 2).
        buffer: u8,
        /// Library page (template id).
        page: u16,
    },
    /// 0x0C DeleteChar: delete `count` templates starting at `page`.
    DeleteChar {
        /// First library page deleted.
        page: u16,
        /// Number of pages deleted.
        count: u16,
    },
    /// 0x0D Empty: delete every template.
    Empty,
    /// 0x0F ReadSysPara: read the 16-byte system parameter block.
    ReadSysPara,
    /// 0x1D TemplateNum: number of stored templates.
    TemplateNum,
}

impl Command {
    /// The instruction code.
    pub fn instruction(&self) -> u8 {
        match self {
            Command::VerifyPassword(_) => 0x13,
            Command::GenImg => 0x01,
            Command::Img2Tz { .. } => 0x02,
            Command::Search { .. } => 0x04,
            Command::RegModel => 0x05,
            Command::Store { .. } => 0x06,
            Command::DeleteChar { .. } => 0x0C,
            Command::Empty => 0x0D,
            Command::ReadSysPara => 0x0F,
            Command::TemplateNum => 0x1D,
        }
    }

    /// The datasheet name of the instruction, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Command::VerifyPassword(_) => "VfyPwd",
            Command::GenImg => "GenImg",
            Command::Img2Tz { .. } => "Img2Tz",
            Command::Search { .. } => "Search",
            Command::RegModel => "RegModel",
            Command::Store { .. } => "Store",
            Command::DeleteChar { .. } => "DeleteChar",
            Command::Empty => "Empty",
            Command::ReadSysPara => "ReadSysPara",
            Command::TemplateNum => "TemplateNum",
        }
    }

    /// The command payload: instruction code followed by big-endian parameters.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = vec![self.instruction()];
        match *self {
            Command::VerifyPassword(password) => out.extend_from_slice(&password.to_be_bytes()),
            Command::Img2Tz { buffer } => out.push(buffer),
            Command::Search {
                buffer,
                start,
                count,
            } => {
                out.push(buffer);
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
            }
            Command::Store { buffer, page } => {
                out.push(buffer);
                out.extend_from_slice(&page.to_be_bytes());
            }
            Command::DeleteChar { page, count } => {
                out.extend_from_slice(&page.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
            }
            Command::GenImg
            | Command::RegModel
            | Command::Empty
            | Command::ReadSysPara
            | Command::TemplateNum => {}
        }
        out
    }

    /// Parses a command frame (module side).
    pub fn decode(frame: &Frame) -> Result<Command, ProtocolError> {
        expect_packet(frame, PacketId::Command)?;
        let (&instruction, params) =
            frame
                .payload
                .split_first()
                .ok_or(ProtocolError::BadPayloadLength {
                    what: "command",
                    expected: 1,
                    found: 0,
                })?;
        let (what, expected) = match instruction {
            0x13 => ("VfyPwd", 4),
            0x01 => ("GenImg", 0),
            0x02 => ("Img2Tz", 1),
            0x04 => ("Search", 5),
            0x05 => ("RegModel", 0),
            0x06 => ("Store", 3),
            0x0C => ("DeleteChar", 4),
            0x0D => ("Empty", 0),
            0x0F => ("ReadSysPara", 0),
            0x1D => ("TemplateNum", 0),
            other => return Err(ProtocolError::UnknownInstruction(other)),
        };
        if params.len() != expected {
            return Err(ProtocolError::BadPayloadLength {
                what,
                expected,
                found: params.len(),
            });
        }
        let u16_at = |i: usize| u16::from_be_bytes([params[i], params[i + 1]]);
        Ok(match instruction {
            0x13 => Command::VerifyPassword(u32::from_be_bytes([
                params[0], params[1], params[2], params[3],
            ])),
            0x01 => Command::GenImg,
            0x02 => Command::Img2Tz { buffer: params[0] },
            0x04 => Command::Search {
                buffer: params[0],
                start: u16_at(1),
                count: u16_at(3),
            },
            0x05 => Command::RegModel,
            0x06 => Command::Store {
                buffer: params[0],
                page: u16_at(1),
            },
            0x0C => Command::DeleteChar {
                page: u16_at(0),
                count: u16_at(2),
            },
            0x0D => Command::Empty,
            0x0F => Command::ReadSysPara,
            _ => Command::TemplateNum,
        })
    }
}

/// Encodes `cmd` as a command frame for the module at `address` (host side).
pub fn encode_command(address: u32, cmd: &Command) -> Vec<u8> {
    encode_frame(address, PacketId::Command, &cmd.payload())
}

/// Encodes an acknowledgement frame: confirmation code followed by `data` (module side).
/// `data` must be at most [`MAX_PAYLOAD`] - 1 bytes.
pub fn encode_ack(address: u32, code: Confirmation, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + data.len());
    payload.push(code.code());
    payload.extend_from_slice(data);
    encode_frame(address, PacketId::Ack, &payload)
}

fn expect_packet(frame: &Frame, expected: PacketId) -> Result<(), ProtocolError> {
    if frame.packet_id == expected {
        Ok(())
    } else {
        Err(ProtocolError::UnexpectedPacket {
            expected,
            found: frame.packet_id,
        })
    }
}

/// Confirmation code: the first payload byte of every acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// 0x00: command executed.
    Ok,
    /// 0x01: the module could not receive the packet.
    PacketReceiveError,
    /// 0x02: no finger on the sensor.
    NoFinger,
    /// 0x03: the finger image could not be captured.
    EnrollImageFail,
    /// 0x06: the image is too messy to extract features.
    ImageTooMessy,
    /// 0x07: too few feature points in the image.
    TooFewFeaturePoints,
    /// 0x08: the finger does not match.
    NoMatch,
    /// 0x09: no matching template found in the library.
    NotFound,
    /// 0x0A: the two char buffers could not be merged into a template.
    MergeFail,
    /// 0x0B: library page number out of range.
    PageOutOfRange,
    /// 0x0C: template could not be read from the library, or is invalid.
    BadTemplate,
    /// 0x10: deleting templates failed.
    DeleteFail,
    /// 0x11: clearing the library failed.
    EmptyFail,
    /// 0x13: wrong password.
    WrongPassword,
    /// 0x15: no valid image in the image buffer.
    NoValidImage,
    /// 0x18: flash write error.
    FlashWriteError,
    /// Any other code.
    Other(u8),
}

impl Confirmation {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Confirmation::Ok => 0x00,
            Confirmation::PacketReceiveError => 0x01,
            Confirmation::NoFinger => 0x02,
            Confirmation::EnrollImageFail => 0x03,
            Confirmation::ImageTooMessy => 0x06,
            Confirmation::TooFewFeaturePoints => 0x07,
            Confirmation::NoMatch => 0x08,
            Confirmation::NotFound => 0x09,
            Confirmation::MergeFail => 0x0A,
            Confirmation::PageOutOfRange => 0x0B,
            Confirmation::BadTemplate => 0x0C,
            Confirmation::DeleteFail => 0x10,
            Confirmation::EmptyFail => 0x11,
            Confirmation::WrongPassword => 0x13,
            Confirmation::NoValidImage => 0x15,
            Confirmation::FlashWriteError => 0x18,
            Confirmation::Other(code) => code,
        }
    }

    /// A lowercase human description.
    pub fn description(self) -> &'static str {
        match self {
            Confirmation::Ok => "ok",
            Confirmation::PacketReceiveError => "module could not receive the packet",
            Confirmation::NoFinger => "no finger on the sensor",
            Confirmation::EnrollImageFail => "failed to capture the finger image",
            Confirmation::ImageTooMessy => "finger image too messy",
            Confirmation::TooFewFeaturePoints => "too few feature points in the finger image",
            Confirmation::NoMatch => "finger does not match",
            Confirmation::NotFound => "no matching template found",
            Confirmation::MergeFail => "failed to merge the two finger images into a template",
            Confirmation::PageOutOfRange => "template page out of range",
            Confirmation::BadTemplate => "template unreadable or invalid",
            Confirmation::DeleteFail => "failed to delete the template",
            Confirmation::EmptyFail => "failed to clear the template library",
            Confirmation::WrongPassword => "wrong module password",
            Confirmation::NoValidImage => "no valid finger image",
            Confirmation::FlashWriteError => "flash write error",
            Confirmation::Other(_) => "unknown confirmation code",
        }
    }
}

impl From<u8> for Confirmation {
    fn from(code: u8) -> Self {
        match code {
            0x00 => Confirmation::Ok,
            0x01 => Confirmation::PacketReceiveError,
            0x02 => Confirmation::NoFinger,
            0x03 => Confirmation::EnrollImageFail,
            0x06 => Confirmation::ImageTooMessy,
            0x07 => Confirmation::TooFewFeaturePoints,
            0x08 => Confirmation::NoMatch,
            0x09 => Confirmation::NotFound,
            0x0A => Confirmation::MergeFail,
            0x0B => Confirmation::PageOutOfRange,
            0x0C => Confirmation::BadTemplate,
            0x10 => Confirmation::DeleteFail,
            0x11 => Confirmation::EmptyFail,
            0x13 => Confirmation::WrongPassword,
            0x15 => Confirmation::NoValidImage,
            0x18 => Confirmation::FlashWriteError,
            other => Confirmation::Other(other),
        }
    }
}

impl fmt::Display for Confirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {:#04x})", self.description(), self.code())
    }
}

/// A parsed acknowledgement: confirmation code plus instruction-specific data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Confirmation code.
    pub code: Confirmation,
    /// Bytes after the confirmation code.
    pub data: Vec<u8>,
}

impl Ack {
    /// Parses an acknowledgement frame (host side).
    pub fn decode(frame: &Frame) -> Result<Ack, ProtocolError> {
        expect_packet(frame, PacketId::Ack)?;
        let (&code, data) = frame
            .payload
            .split_first()
            .ok_or(ProtocolError::BadPayloadLength {
                what: "ack",
                expected: 1,
                found: 0,
            })?;
        Ok(Ack {
            code: Confirmation::from(code),
            data: data.to_vec(),
        })
    }

    fn data_exact<const N: usize>(&self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        <[u8; N]>::try_from(self.data.as_slice()).map_err(|_| ProtocolError::BadPayloadLength {
            what,
            expected: N,
            found: self.data.len(),
        })
    }

    /// The data of a successful Search reply.
    pub fn search_hit(&self) -> Result<SearchHit, ProtocolError> {
        let d = self.data_exact::<4>("Search reply")?;
        Ok(SearchHit {
            page: u16::from_be_bytes([d[0], d[1]]),
            score: u16::from_be_bytes([d[2], d[3]]),
        })
    }

    /// The data of a successful ReadSysPara reply.
    pub fn system_parameters(&self) -> Result<SystemParameters, ProtocolError> {
        let d = self.data_exact::<16>("ReadSysPara reply")?;
        let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
        Ok(SystemParameters {
            status_register: u16_at(0),
            system_id: u16_at(2),
            capacity: u16_at(4),
            security_level: u16_at(6),
            address: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            packet_size_code: u16_at(12),
            baud_multiplier: u16_at(14),
        })
    }

    /// The data of a successful TemplateNum reply.
    pub fn template_count(&self) -> Result<u16, ProtocolError> {
        let d = self.data_exact::<2>("TemplateNum reply")?;
        Ok(u16::from_be_bytes(d))
    }
}

/// A Search match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchHit {
    /// Library page (template id) that matched.
    pub page: u16,
    /// Match confidence score reported by the module.
    pub score: u16,
}

impl SearchHit {
    /// The 4 ack data bytes (module side).
    pub fn to_bytes(self) -> [u8; 4] {
        let [p0, p1] = self.page.to_be_bytes();
        let [s0, s1] = self.score.to_be_bytes();
        [p0, p1, s0, s1]
    }
}

/// The 16-byte system parameter block returned by ReadSysPara.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemParameters {
    /// Status register bits (busy, pass, password verified, image buffer valid).
    pub status_register: u16,
    /// System identifier code.
    pub system_id: u16,
    /// Fingerprint library size: valid template ids are `0..capacity`.
    pub capacity: u16,
    /// Matching security level (1..=5).
    pub security_level: u16,
    /// Module address.
    pub address: u32,
    /// Data packet size code: 0 = 32, 1 = 64, 2 = 128, 3 = 256 bytes.
    pub packet_size_code: u16,
    /// Baud rate as a multiple of 9600.
    pub baud_multiplier: u16,
}

impl SystemParameters {
    /// The 16 ack data bytes (module side).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..2].copy_from_slice(&self.status_register.to_be_bytes());
        out[2..4].copy_from_slice(&self.system_id.to_be_bytes());
        out[4..6].copy_from_slice(&self.capacity.to_be_bytes());
        out[6..8].copy_from_slice(&self.security_level.to_be_bytes());
        out[8..12].copy_from_slice(&self.address.to_be_bytes());
        out[12..14].copy_from_slice(&self.packet_size_code.to_be_bytes());
        out[14..16].copy_from_slice(&self.baud_multiplier.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ADDR: u32 = DEFAULT_ADDRESS;

    fn decode_all(decoder: &mut FrameDecoder) -> Vec<Result<Frame, ProtocolError>> {
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    fn decode_chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Result<Frame, ProtocolError>> {
        let mut decoder = FrameDecoder::new(ADDR);
        let mut out = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut prev = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            decoder.push(&bytes[prev..cut]);
            out.extend(decode_all(&mut decoder));
            prev = cut;
        }
        out
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            any::<u32>().prop_map(Command::VerifyPassword),
            Just(Command::GenImg),
            any::<u8>().prop_map(|buffer| Command::Img2Tz { buffer }),
            (any::<u8>(), any::<u16>(), any::<u16>()).prop_map(|(buffer, start, count)| {
                Command::Search {
                    buffer,
                    start,
                    count,
                }
            }),
            Just(Command::RegModel),
            (any::<u8>(), any::<u16>()).prop_map(|(buffer, page)| Command::Store { buffer, page }),
            (any::<u16>(), any::<u16>())
                .prop_map(|(page, count)| Command::DeleteChar { page, count }),
            Just(Command::Empty),
            Just(Command::ReadSysPara),
            Just(Command::TemplateNum),
        ]
    }

    #[test]
    fn encodes_gen_img_as_in_the_datasheet() {
        assert_eq!(
            encode_command(ADDR, &Command::GenImg),
            [0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x03, 0x01, 0x00, 0x05]
        );
    }

    #[test]
    fn encodes_verify_password_as_in_the_datasheet() {
        assert_eq!(
            encode_command(ADDR, &Command::VerifyPassword(0)),
            [0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x07, 0x13, 0, 0, 0, 0, 0x00, 0x1B]
        );
    }

    #[test]
    fn skips_garbage_and_rejects_bad_frames_specifically() {
        let good = encode_ack(ADDR, Confirmation::Ok, &[]);
        let mut bad_sum = good.clone();
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 0xFF;
        let other_addr = encode_ack(0x1234_5678, Confirmation::Ok, &[]);
        let mut too_long = good.clone();
        too_long[7..9].copy_from_slice(&259u16.to_be_bytes());
        let mut bad_pid = good.clone();
        bad_pid[6] = 0x05;

        let mut stream = vec![0x00, 0xEF, 0x02, 0x99];
        for part in [&bad_sum, &other_addr, &too_long, &bad_pid, &good] {
            stream.extend_from_slice(part);
        }
        let mut decoder = FrameDecoder::new(ADDR);
        decoder.push(&stream);
        let results = decode_all(&mut decoder);
        assert!(matches!(results[0], Err(ProtocolError::BadChecksum { .. })));
        assert_eq!(
            results[1],
            Err(ProtocolError::WrongAddress {
                expected: ADDR,
                found: 0x1234_5678
            })
        );
        assert_eq!(results[2], Err(ProtocolError::BadLength(259)));
        assert_eq!(results[3], Err(ProtocolError::UnknownPacketId(0x05)));
        let frame = results[4].clone().expect("good frame decodes");
        assert_eq!(
            Ack::decode(&frame),
            Ok(Ack {
                code: Confirmation::Ok,
                data: vec![]
            })
        );
        assert_eq!(results.len(), 5);
    }

    #[test]
    fn confirmation_codes_round_trip() {
        for code in 0..=u8::MAX {
            let c = Confirmation::from(code);
            assert_eq!(c.code(), code);
            assert!(!c.description().is_empty());
        }
        assert_eq!(
            Confirmation::NoFinger.to_string(),
            "no finger on the sensor (code 0x02)"
        );
    }

    #[test]
    fn typed_acks_round_trip() {
        let params = SystemParameters {
            status_register: 4,
            system_id: 9,
            capacity: 1000,
            security_level: 3,
            address: ADDR,
            packet_size_code: 2,
            baud_multiplier: 6,
        };
        let ack = Ack {
            code: Confirmation::Ok,
            data: params.to_bytes().to_vec(),
        };
        assert_eq!(ack.system_parameters(), Ok(params));
        let hit = SearchHit {
            page: 3,
            score: 142,
        };
        let ack = Ack {
            code: Confirmation::Ok,
            data: hit.to_bytes().to_vec(),
        };
        assert_eq!(ack.search_hit(), Ok(hit));
        assert_eq!(
            ack.template_count(),
            Err(ProtocolError::BadPayloadLength {
                what: "TemplateNum reply",
                expected: 2,
                found: 4
            })
        );
    }

    #[test]
    fn unknown_instruction_is_an_error() {
        let frame = Frame {
            address: ADDR,
            packet_id: PacketId::Command,
            payload: vec![0x42],
        };
        assert_eq!(
            Command::decode(&frame),
            Err(ProtocolError::UnknownInstruction(0x42))
        );
    }

    proptest! {
        #[test]
        fn every_command_round_trips(cmd in command(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
            let bytes = encode_command(ADDR, &cmd);
            let results = decode_chunked(&bytes, &cuts);
            prop_assert_eq!(results.len(), 1);
            let frame = results[0].clone().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Command::decode(&frame), Ok(cmd));
        }

        #[test]
        fn acks_round_trip(code in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..MAX_PAYLOAD)) {
            let bytes = encode_ack(ADDR, Confirmation::from(code), &data);
            let mut decoder = FrameDecoder::new(ADDR);
            decoder.push(&bytes);
            let frame = decoder.next_frame().and_then(Result::ok);
            prop_assert!(frame.is_some());
            let ack = frame.as_ref().map(Ack::decode);
            prop_assert_eq!(ack, Some(Ok(Ack { code: Confirmation::from(code), data })));
        }

        #[test]
        fn a_frame_split_anywhere_decodes_the_same(cmd in command(), split in any::<usize>()) {
            let bytes = encode_command(ADDR, &cmd);
            prop_assert_eq!(decode_chunked(&bytes, &[split]), decode_chunked(&bytes, &[]));
        }

        #[test]
        fn byte_soup_in_any_chunks_never_panics_and_decodes_the_same(
            soup in prop::collection::vec(
                prop_oneof![
                    any::<u8>().prop_map(|b| vec![b]),
                    Just(HEADER.to_vec()),
                    command().prop_map(|c| encode_command(ADDR, &c)),
                ],
                0..40,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let bytes: Vec<u8> = soup.concat();
            prop_assert_eq!(decode_chunked(&bytes, &cuts), decode_chunked(&bytes, &[]));
        }
    }
}
