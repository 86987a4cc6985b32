//! The export file (JSON Lines): [`ExportWriter`] and [`verify_export`].

use std::borrow::Cow;
use std::io::{self, BufRead, BufWriter, Read as _, Write};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize, Serializer};

use crate::checkpoint::Checkpoint;
use crate::entry::{Digest, Entry, EntryRef};
use crate::error::VerifyError;
use crate::key::parse_public_key;
use crate::verify::{Report, Verifier};

/// The header's `format`.
pub const FORMAT: &str = "keywarden-audit";
/// The header's `version`.
pub const VERSION: u64 = 1;
/// The longest line [`verify_export`] accepts, in bytes without the newline (16 MiB). It bounds
/// the verifier's memory; the store keeps entries far smaller.
pub const MAX_LINE_LEN: usize = 16 * 1024 * 1024;

/// Serializes bytes as lowercase hex without allocating.
struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 128];
        let out = buf
            .get_mut(..self.0.len() * 2)
            .ok_or_else(|| serde::ser::Error::custom("hex value too long"))?;
        hex::encode_to_slice(self.0, out).map_err(serde::ser::Error::custom)?;
        let text = std::str::from_utf8(out).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    format: &'a str,
    version: u64,
    device_key: &'a str,
    first_seq: u64,
    prev_hash: Hex<'a>,
    exported_at_ms: i64,
}

#[derive(Serialize)]
enum RecordOut<'a> {
    #[serde(rename = "entry")]
    Entry(EntryOut<'a>),
    #[serde(rename = "checkpoint")]
    Checkpoint(CheckpointOut<'a>),
}

#[derive(Serialize)]
struct EntryOut<'a> {
    seq: u64,
    at_ms: i64,
    kind: &'a str,
    actor: &'a str,
    subject: &'a str,
    detail: &'a str,
    hash: Hex<'a>,
}

#[derive(Serialize)]
struct CheckpointOut<'a> {
    seq: u64,
    hash: Hex<'a>,
    at_ms: i64,
    signature: Hex<'a>,
}

/// Just enough of the header to tell the format and version, whatever else it holds.
#[derive(Deserialize)]
pub(crate) struct HeaderProbe<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    version: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn<'a> {
    // `format` and `version` were checked by the probe; `exported_at_ms` is informational.
    #[serde(rename = "format")]
    _format: serde::de::IgnoredAny,
    #[serde(rename = "version")]
    _version: serde::de::IgnoredAny,
    #[serde(borrow)]
    device_key: Cow<'a, str>,
    first_seq: u64,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(rename = "exported_at_ms")]
    _exported_at_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) enum RecordIn<'a> {
    #[serde(rename = "entry", borrow)]
    Entry(EntryIn<'a>),
    #[serde(rename = "checkpoint", borrow)]
    Checkpoint(CheckpointIn<'a>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryIn<'a> {
    pub(crate) seq: u64,
    pub(crate) at_ms: i64,
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) actor: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) subject: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) detail: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) hash: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointIn<'a> {
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) hash: Cow<'a, str>,
    pub(crate) at_ms: i64,
    #[serde(borrow)]
    pub(crate) signature: Cow<'a, str>,
}

/// Writes an export file: the header at construction, then entries and checkpoints in the
/// order given, one JSON object per line.
///
/// Give each checkpoint right after the entry with its seq, and end with a checkpoint covering
/// the last entry (sign one at the head when exporting), or the export will not verify. The
/// writer does not check order: it writes a damaged trail as it is, for the verifier to report.
/// Output is buffered; [`finish`](ExportWriter::finish) flushes it.
pub struct ExportWriter<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header. `device_key_hex` is the device's public key
    /// ([`DeviceKey::public_hex`](crate::DeviceKey::public_hex)); an invalid one is refused
    /// with [`io::ErrorKind::InvalidInput`]. The export holds entries from `first_seq` on
    /// (1 for the whole trail), chained after `prev_hash` ([`GENESIS`](crate::GENESIS) for
    /// seq 1). `exported_at_ms` is informational (not signed).
    pub fn new(
        out: W,
        device_key_hex: &str,
        first_seq: u64,
        prev_hash: &Digest,
        exported_at_ms: i64,
    ) -> Result<Self, io::Error> {
        parse_public_key(device_key_hex)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut writer = ExportWriter {
            out: BufWriter::new(out),
        };
        writer.line(&HeaderOut {
            format: FORMAT,
            version: VERSION,
            device_key: device_key_hex,
            first_seq,
            prev_hash: Hex(prev_hash),
            exported_at_ms,
        })?;
        Ok(writer)
    }

    /// Writes an entry line with its stored hash.
    pub fn entry(&mut self, entry: &Entry, hash: &Digest) -> Result<(), io::Error> {
        self.line(&entry_out(entry, hash))
    }

    /// Writes a checkpoint line.
    pub fn checkpoint(&mut self, cp: &Checkpoint) -> Result<(), io::Error> {
        self.line(&checkpoint_out(cp))
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, io::Error> {
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }

    fn line<T: Serialize>(&mut self, value: &T) -> Result<(), io::Error> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

/// The header line [`ExportWriter::new`] writes, without its newline: for writers that send the
/// format's lines one by one (the offsite shipper starts every connection with one).
pub fn header_line(
    device_key_hex: &str,
    first_seq: u64,
    prev_hash: &Digest,
    exported_at_ms: i64,
) -> Result<String, io::Error> {
    parse_public_key(device_key_hex).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    to_line(&HeaderOut {
        format: FORMAT,
        version: VERSION,
        device_key: device_key_hex,
        first_seq,
        prev_hash: Hex(prev_hash),
        exported_at_ms,
    })
}

/// The line [`ExportWriter::entry`] writes, without its newline.
pub fn entry_line(entry: &Entry, hash: &Digest) -> Result<String, io::Error> {
    to_line(&entry_out(entry, hash))
}

/// The line [`ExportWriter::checkpoint`] writes, without its newline.
pub fn checkpoint_line(cp: &Checkpoint) -> Result<String, io::Error> {
    to_line(&checkpoint_out(cp))
}

fn to_line<T: Serialize>(value: &T) -> Result<String, io::Error> {
    serde_json::to_string(value).map_err(io::Error::other)
}

fn entry_out<'a>(entry: &'a Entry, hash: &'a Digest) -> RecordOut<'a> {
    RecordOut::Entry(EntryOut {
        seq: entry.seq,
        at_ms: entry.at_ms,
        kind: &entry.kind,
        actor: &entry.actor,
        subject: &entry.subject,
        detail: &entry.detail,
        hash: Hex(hash),
    })
}

fn checkpoint_out(cp: &Checkpoint) -> RecordOut<'_> {
    RecordOut::Checkpoint(CheckpointOut {
        seq: cp.seq,
        hash: Hex(&cp.hash),
        at_ms: cp.at_ms,
        signature: Hex(&cp.signature),
    })
}

/// Verifies an export read from `input`, streaming: memory use is bounded (a few chunks of
/// 1 MiB and one line of at most [`MAX_LINE_LEN`]) whatever the number of entries.
///
/// The work is pipelined: this thread reads, worker threads (one per CPU, at most four) parse
/// the lines, hash the entries and check the signatures, and this thread checks the chain's
/// links and checkpoints in file order with a [`Verifier`]. The verdict and the error reported
/// (the first in the file, with its line) are those of feeding the [`Verifier`] line by line.
///
/// `trusted` is the device's known public key. With `Some`, a header naming another key fails
/// with [`VerifyError::WrongKey`]. With `None` the header's own key is used, which proves only
/// that the export is consistent with *some* key: whoever rewrites the whole file can sign it
/// with their own. A person must then compare [`Report::key_hex`] with the device's key (shown
/// by the device), and [`Report::first_seq`], [`Report::last_seq`] and [`Report::head`] with
/// what they expect (see the crate docs' limits).
pub fn verify_export<R: BufRead>(
    input: R,
    trusted: Option<&VerifyingKey>,
) -> Result<Report, VerifyError> {
    let mut lines = Lines::new(input);
    let Some((_, header)) = lines.next()? else {
        return Err(VerifyError::Malformed {
            line: 1,
            reason: "missing header line: the file is empty".to_owned(),
        });
    };
    let verifier = parse_header(header, trusted)?;
    crate::pipeline::verify_lines(lines.into_inner(), verifier)
}

impl EntryIn<'_> {
    /// The entry as the verifier takes it, and its stored hash.
    pub(crate) fn parts(&self, line_no: u64) -> Result<(EntryRef<'_>, Digest), VerifyError> {
        let hash = decode_hex::<32>(&self.hash, "hash", line_no)?;
        let entry = EntryRef {
            seq: self.seq,
            at_ms: self.at_ms,
            kind: &self.kind,
            actor: &self.actor,
            subject: &self.subject,
            detail: &self.detail,
        };
        Ok((entry, hash))
    }
}

impl CheckpointIn<'_> {
    /// The checkpoint, its hex decoded.
    pub(crate) fn checkpoint(&self, line_no: u64) -> Result<Checkpoint, VerifyError> {
        Ok(Checkpoint {
            seq: self.seq,
            hash: decode_hex::<32>(&self.hash, "hash", line_no)?,
            at_ms: self.at_ms,
            signature: decode_hex::<64>(&self.signature, "signature", line_no)?,
        })
    }
}

/// Checks the header (line 1) and starts the verifier it describes.
pub(crate) fn parse_header(
    line: &[u8],
    trusted: Option<&VerifyingKey>,
) -> Result<Verifier, VerifyError> {
    let header = parse_header_at(line, 1, trusted)?;
    Ok(Verifier::new(
        header.key,
        header.first_seq,
        header.prev_hash,
    ))
}

/// A checked header line.
pub(crate) struct Header {
    /// The key the checkpoints are checked with (the trusted one, or the header's own).
    pub(crate) key: VerifyingKey,
    pub(crate) first_seq: u64,
    pub(crate) prev_hash: Digest,
}

/// Checks a header line at `line_no`: format and version, fields, the key against `trusted`.
pub(crate) fn parse_header_at(
    line: &[u8],
    line_no: u64,
    trusted: Option<&VerifyingKey>,
) -> Result<Header, VerifyError> {
    let probe: HeaderProbe<'_> =
        serde_json::from_slice(line).map_err(|e| malformed(line_no, "not an export header", &e))?;
    if probe.format != FORMAT || probe.version != VERSION {
        return Err(VerifyError::UnsupportedFormat {
            format: probe.format.into_owned(),
            version: probe.version,
        });
    }
    let header: HeaderIn<'_> = parse_json(line, line_no)?;
    let header_key = parse_public_key(&header.device_key).map_err(|e| VerifyError::Malformed {
        line: line_no,
        reason: format!("device_key: {e}"),
    })?;
    let key = match trusted {
        Some(trusted) if *trusted != header_key => {
            return Err(VerifyError::WrongKey {
                expected: hex::encode(trusted.as_bytes()),
                found: hex::encode(header_key.as_bytes()),
            })
        }
        _ => header_key,
    };
    if header.first_seq == 0 {
        return Err(VerifyError::Malformed {
            line: line_no,
            reason: "first_seq must be at least 1".to_owned(),
        });
    }
    let prev_hash = decode_hex::<32>(&header.prev_hash, "prev_hash", line_no)?;
    Ok(Header {
        key,
        first_seq: header.first_seq,
        prev_hash,
    })
}

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(
    line: &'a [u8],
    line_no: u64,
) -> Result<T, VerifyError> {
    serde_json::from_slice(line).map_err(|e| malformed(line_no, "invalid line", &e))
}

fn malformed(line: u64, what: &str, error: &serde_json::Error) -> VerifyError {
    // serde_json counts lines within the slice; only the column is useful here.
    let reason = error
        .to_string()
        .replace(" at line 1 column ", " at column ");
    VerifyError::Malformed {
        line,
        reason: format!("{what}: {reason}"),
    }
}

pub(crate) fn decode_hex<const N: usize>(
    text: &str,
    field: &str,
    line: u64,
) -> Result<[u8; N], VerifyError> {
    if let Some(out) = decode_hex_fast(text.as_bytes()) {
        return Ok(out);
    }
    // Not valid: let the hex crate say why.
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| VerifyError::Malformed {
        line,
        reason: format!("{field}: expected {} hex digits: {e}", N * 2),
    })?;
    Ok(out)
}

/// Value of each byte as a hex digit (either case), or 0xff.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Exactly `2 * N` hex digits (either case) to bytes, by table; `None` for anything else. The
/// verifier decodes two or three values a line: the `hex` crate's per-digit matching showed in
/// its profile.
pub(crate) fn decode_hex_fast<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// Reads lines into one reused buffer, at most [`MAX_LINE_LEN`] bytes each.
pub(crate) struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    line_no: u64,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(input: R) -> Self {
        Lines {
            input,
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The input, positioned after the lines read.
    fn into_inner(self) -> R {
        self.input
    }

    /// The next line's number and content without its line ending, or `None` at the end of the
    /// input.
    pub(crate) fn next(&mut self) -> Result<Option<(u64, &[u8])>, VerifyError> {
        self.buf.clear();
        let line = self.line_no + 1;
        let limit = MAX_LINE_LEN as u64 + 1; // the content plus its newline
        let read = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| VerifyError::Read {
                line,
                reason: e.to_string(),
            })?;
        if read == 0 {
            return Ok(None);
        }
        self.line_no = line;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE_LEN {
            return Err(VerifyError::Malformed {
                line,
                reason: format!("line longer than {MAX_LINE_LEN} bytes"),
            });
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(&self.buf).is_err() {
            // Every line the writer makes ends with a newline; a broken last line without one
            // was cut off.
            return Err(VerifyError::Malformed {
                line,
                reason: "incomplete last line: the export was cut off".to_owned(),
            });
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.is_empty() {
            return Err(VerifyError::Malformed {
                line,
                reason: "empty line".to_owned(),
            });
        }
        Ok(Some((line, &self.buf)))
    }
}
