//! The export verifier's pipeline: the calling thread reads the file in large chunks cut at line
//! ends; worker threads parse the lines, hash the entries and check the checkpoint signatures;
//! the calling thread feeds their results, in file order, to the [`Verifier`], which decides
//! exactly as if it had been fed line by line.
//!
//! Why this is as strict as the sequential verifier: a worker hashes each entry chained to the
//! *stored* hash of the entry line before it in the file (the first entry of a chunk is hashed
//! by the verifier itself, from its fields, on its head). The verifier only accepts an entry
//! when the previous entry line verified, and then that line's stored hash *is* the head: the
//! precomputed hash is the one the sequential verifier would compute. Any other case is refused
//! ([`EntryHash::Chained`]). Signatures do not depend on the chain, only on the key. Errors are
//! taken in file order, and a worker stops a chunk at its first bad line, so the first error in
//! the file is the one reported, with its line number.
//!
//! Memory stays bounded: at most `2 × workers` chunks of [`CHUNK`] bytes (plus one line up to
//! [`MAX_LINE_LEN`]) are in flight, and buffers are recycled.

use std::io::{BufRead, ErrorKind};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::Checkpoint;
use crate::entry::{Digest, Entry, EntryRef};
use crate::error::VerifyError;
use crate::export::{decode_hex, parse_json, RecordIn, MAX_LINE_LEN};
use crate::verify::{EntryHash, Report, Verifier};

/// Bytes read per chunk (cut back to the last line end).
pub(crate) const CHUNK: usize = 1 << 20;
/// Most worker threads.
const MAX_WORKERS: usize = 4;

/// A run of whole lines for a worker.
struct Batch {
    /// The number of the first line.
    first_line: u64,
    /// Whole lines, each ending in `\n`, except that the input's last line may lack it (then
    /// `eof` is set).
    data: Vec<u8>,
    eof: bool,
    /// A reused result vector.
    items: Vec<Item>,
}

/// A worker's finding for one line.
enum Item {
    Entry {
        seq: u64,
        stored: Digest,
        hash: Hashed,
    },
    Checkpoint {
        cp: Checkpoint,
        signature: Result<(), VerifyError>,
    },
    /// The line is bad: the verification stops here.
    Error(VerifyError),
}

/// An entry's hash as the worker left it.
enum Hashed {
    /// Chained to the previous entry line's stored hash.
    Chained { prev: Digest, hash: Digest },
    /// The first entry of its chunk: hashed by the verifier on its own head.
    Fields(Entry),
}

/// A worker's answer: the batch's findings, with the buffers back for reuse.
struct Done {
    data: Vec<u8>,
    items: Vec<Item>,
}

/// Verifies the lines after the header (line 1), read from `input`, with `verifier`.
pub(crate) fn verify_lines<R: BufRead>(
    mut input: R,
    mut verifier: Verifier,
) -> Result<Report, VerifyError> {
    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS);
    let key = *verifier.key();
    thread::scope(|scope| {
        let mut to_workers: Vec<SyncSender<Batch>> = Vec::with_capacity(workers);
        let mut from_workers: Vec<Receiver<Done>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (batch_tx, batch_rx) = sync_channel::<Batch>(2);
            let (done_tx, done_rx) = sync_channel::<Done>(2);
            scope.spawn(move || {
                // Ends when the sender is dropped (or the receiver is gone).
                while let Ok(batch) = batch_rx.recv() {
                    if done_tx.send(work(batch, &key)).is_err() {
                        break;
                    }
                }
            });
            to_workers.push(batch_tx);
            from_workers.push(done_rx);
        }
        let mut reader = ChunkReader::new(2);
        let mut sent = 0usize; // batches handed out
        let mut taken = 0usize; // batches fed to the verifier
        let mut spare: Vec<(Vec<u8>, Vec<Item>)> = Vec::new();
        let mut ended = false;
        let result = loop {
            // Keep every worker busy with up to two batches.
            while !ended && sent - taken < 2 * workers {
                let (data, items) = spare.pop().unwrap_or_default();
                match reader.next(&mut input, data) {
                    Ok(Some(batch)) => {
                        ended = batch.eof || reader.failed.is_some();
                        let batch = Batch { items, ..batch };
                        if to_workers[sent % workers].send(batch).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Ok(None) => ended = true,
                    Err(error) => {
                        // Reported after every line before it.
                        reader.failed = Some(error);
                        ended = true;
                    }
                }
            }
            if taken == sent {
                break match reader.failed.take() {
                    Some(error) => Err(error),
                    None => Ok(()),
                };
            }
            let Ok(done) = from_workers[taken % workers].recv() else {
                break Err(VerifyError::Read {
                    line: reader.line,
                    reason: "a verification thread stopped".to_owned(),
                });
            };
            taken += 1;
            if let Err(error) = feed(&mut verifier, &done.items) {
                break Err(error);
            }
            spare.push((done.data, done.items));
        };
        // Dropping the senders ends the workers; the scope joins them.
        drop(to_workers);
        result
    })?;
    verifier.finish()
}

/// Feeds a batch's findings to the verifier, in order.
fn feed(verifier: &mut Verifier, items: &[Item]) -> Result<(), VerifyError> {
    for item in items {
        match item {
            Item::Entry { seq, stored, hash } => {
                let hash = match hash {
                    Hashed::Chained { prev, hash } => EntryHash::Chained {
                        prev: *prev,
                        hash: *hash,
                    },
                    Hashed::Fields(entry) => EntryHash::Fields(EntryRef::from(entry)),
                };
                verifier.entry_hashed(*seq, hash, stored)?;
            }
            Item::Checkpoint { cp, signature } => {
                verifier.checkpoint_checked(cp, signature.clone())?;
            }
            Item::Error(error) => return Err(error.clone()),
        }
    }
    Ok(())
}

/// Parses, hashes and checks one batch.
fn work(batch: Batch, key: &VerifyingKey) -> Done {
    let Batch {
        first_line,
        data,
        eof,
        mut items,
    } = batch;
    items.clear();
    let mut prev: Option<Digest> = None;
    let mut detail_buf = String::new();
    let mut line_no = first_line;
    let mut rest = data.as_slice();
    while !rest.is_empty() {
        let (line, terminated) = match memchr::memchr(b'\n', rest) {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None => {
                let line = rest;
                rest = &[];
                (line, false)
            }
        };
        match check_line(
            line,
            line_no,
            terminated || !eof,
            &mut prev,
            key,
            &mut detail_buf,
        ) {
            Ok(item) => items.push(item),
            Err(error) => {
                items.push(Item::Error(error));
                break;
            }
        }
        line_no += 1;
    }
    Done { data, items }
}

/// One line (without its `\n`): the same checks, in the same order, as the line reader of the
/// sequential verifier, then the record.
fn check_line(
    line: &[u8],
    line_no: u64,
    terminated: bool,
    prev: &mut Option<Digest>,
    key: &VerifyingKey,
    detail_buf: &mut String,
) -> Result<Item, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed {
        line: line_no,
        reason,
    };
    if line.len() > MAX_LINE_LEN {
        return Err(malformed(format!("line longer than {MAX_LINE_LEN} bytes")));
    }
    if !terminated && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
        // Every line the writer makes ends with a newline; a broken last line without one was
        // cut off.
        return Err(malformed(
            "incomplete last line: the export was cut off".to_owned(),
        ));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(malformed("empty line".to_owned()));
    }
    if let Some(item) = std::str::from_utf8(line)
        .ok()
        .and_then(|text| fast_entry(text, detail_buf).map(|e| (text, e)))
        .and_then(|(_, e)| {
            let stored = crate::export::decode_hex_fast::<32>(e.hash.as_bytes())?;
            let detail = detail_buf.get(..e.detail_len)?;
            let entry = EntryRef {
                seq: e.seq,
                at_ms: e.at_ms,
                kind: e.kind,
                actor: e.actor,
                subject: e.subject,
                detail,
            };
            Some(entry_item(entry, stored, prev))
        })
    {
        return Ok(item);
    }
    Ok(match parse_json::<RecordIn<'_>>(line, line_no)? {
        RecordIn::Entry(e) => {
            let stored = decode_hex::<32>(&e.hash, "hash", line_no)?;
            let entry = EntryRef {
                seq: e.seq,
                at_ms: e.at_ms,
                kind: &e.kind,
                actor: &e.actor,
                subject: &e.subject,
                detail: &e.detail,
            };
            entry_item(entry, stored, prev)
        }
        RecordIn::Checkpoint(c) => {
            let cp = Checkpoint {
                seq: c.seq,
                hash: decode_hex::<32>(&c.hash, "hash", line_no)?,
                at_ms: c.at_ms,
                signature: decode_hex::<64>(&c.signature, "signature", line_no)?,
            };
            let signature = cp.verify(key);
            Item::Checkpoint { cp, signature }
        }
    })
}

/// An entry's finding: hashed on the previous entry line's stored hash, or (the first entry of
/// a chunk) kept for the verifier to hash on its head.
fn entry_item(entry: EntryRef<'_>, stored: Digest, prev: &mut Option<Digest>) -> Item {
    let hash = match prev.replace(stored) {
        Some(prev) => Hashed::Chained {
            prev,
            hash: entry.hash(&prev),
        },
        None => Hashed::Fields(Entry {
            seq: entry.seq,
            at_ms: entry.at_ms,
            kind: entry.kind.to_owned(),
            actor: entry.actor.to_owned(),
            subject: entry.subject.to_owned(),
            detail: entry.detail.to_owned(),
        }),
    };
    Item::Entry {
        seq: entry.seq,
        stored,
        hash,
    }
}

/// Cuts the input into batches of whole lines.
struct ChunkReader {
    /// The number of the next line to read.
    line: u64,
    /// Bytes read past the last line end, for the next batch.
    carry: Vec<u8>,
    /// A read or line-length error, reported once the batches before it are checked.
    failed: Option<VerifyError>,
}

impl ChunkReader {
    fn new(first_line: u64) -> Self {
        ChunkReader {
            line: first_line,
            carry: Vec::new(),
            failed: None,
        }
    }

    /// The next batch (in `buf`, recycled), `None` at the end of the input. An error comes
    /// only once the lines before it were handed out.
    fn next<R: BufRead>(
        &mut self,
        input: &mut R,
        mut buf: Vec<u8>,
    ) -> Result<Option<Batch>, VerifyError> {
        buf.clear();
        buf.append(&mut self.carry);
        // Where the current (unterminated) line starts in `buf`.
        let mut line_start = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
        let mut eof = false;
        loop {
            // The line being read is already too long: hand out the lines before it, then fail.
            if buf.len() - line_start > MAX_LINE_LEN {
                if line_start > 0 {
                    self.carry = buf.split_off(line_start);
                    return Ok(Some(self.batch(buf, false)));
                }
                let line = self.line;
                return Err(VerifyError::Malformed {
                    line,
                    reason: format!("line longer than {MAX_LINE_LEN} bytes"),
                });
            }
            let have_whole_lines = line_start > 0;
            if eof || (have_whole_lines && buf.len() >= CHUNK) {
                break;
            }
            let filled = buf.len();
            let want = if have_whole_lines {
                CHUNK
            } else {
                // One line longer than a chunk: read on, up to the longest line allowed.
                (filled + CHUNK).min(MAX_LINE_LEN + 1 + CHUNK)
            };
            buf.resize(want.max(filled + 1), 0);
            match input.read(&mut buf[filled..]) {
                Ok(0) => {
                    buf.truncate(filled);
                    eof = true;
                }
                Ok(n) => {
                    buf.truncate(filled + n);
                    if let Some(i) = memchr::memrchr(b'\n', &buf[filled..]) {
                        line_start = filled + i + 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(filled),
                Err(e) => {
                    buf.truncate(filled);
                    let error = |line| VerifyError::Read {
                        line,
                        reason: e.to_string(),
                    };
                    if line_start > 0 {
                        // The whole lines first; the error at the line being read.
                        self.carry = buf.split_off(line_start);
                        let batch = self.batch(buf, false);
                        self.failed = Some(error(self.line));
                        return Ok(Some(batch));
                    }
                    return Err(error(self.line));
                }
            }
        }
        if eof {
            if buf.is_empty() {
                return Ok(None);
            }
            return Ok(Some(self.batch(buf, true)));
        }
        self.carry = buf.split_off(line_start);
        Ok(Some(self.batch(buf, false)))
    }

    fn batch(&mut self, data: Vec<u8>, eof: bool) -> Batch {
        let first_line = self.line;
        let mut lines = memchr::memchr_iter(b'\n', &data).count() as u64;
        if eof && data.last() != Some(&b'\n') {
            lines += 1;
        }
        self.line += lines;
        Batch {
            first_line,
            data,
            eof,
            items: Vec::new(),
        }
    }
}

/// An entry line's fields as the fast path read them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FastEntry<'a> {
    pub(crate) seq: u64,
    pub(crate) at_ms: i64,
    pub(crate) kind: &'a str,
    pub(crate) actor: &'a str,
    pub(crate) subject: &'a str,
    /// Unescaped into the caller's buffer.
    pub(crate) detail_len: usize,
    pub(crate) hash: &'a str,
}

/// Reads an entry line written exactly as [`ExportWriter`](crate::ExportWriter) writes it
/// (fields in its order, no spaces, strings without escapes but `\"` and `\\`, numbers without
/// leading zeros and at most 18 digits), unescaping `detail` into `detail_buf`. `None` for
/// anything else, which then goes through serde_json: every line this accepts, serde_json
/// accepts with the same values, so the fast path changes the speed, never the verdict.
pub(crate) fn fast_entry<'a>(line: &'a str, detail_buf: &mut String) -> Option<FastEntry<'a>> {
    let mut p = Cursor(line.as_bytes(), 0);
    p.lit(b"{\"entry\":{\"seq\":")?;
    let seq = p.number()?;
    p.lit(b",\"at_ms\":")?;
    let negative = p.0.get(p.1) == Some(&b'-');
    if negative {
        p.1 += 1;
    }
    let at = i64::try_from(p.number()?).ok()?;
    let at_ms = if negative { at.checked_neg()? } else { at };
    if negative && at == 0 {
        return None; // "-0": leave it to serde_json
    }
    p.lit(b",\"kind\":\"")?;
    let kind = p.raw_str(line)?;
    p.lit(b",\"actor\":\"")?;
    let actor = p.raw_str(line)?;
    p.lit(b",\"subject\":\"")?;
    let subject = p.raw_str(line)?;
    p.lit(b",\"detail\":\"")?;
    detail_buf.clear();
    p.escaped_str(line, detail_buf)?;
    p.lit(b",\"hash\":\"")?;
    let hash = p.raw_str(line)?;
    p.lit(b"}}")?;
    (p.1 == p.0.len()).then_some(FastEntry {
        seq,
        at_ms,
        kind,
        actor,
        subject,
        detail_len: detail_buf.len(),
        hash,
    })
}

struct Cursor<'a>(&'a [u8], usize);

impl Cursor<'_> {
    fn lit(&mut self, text: &[u8]) -> Option<()> {
        let end = self.1 + text.len();
        (self.0.get(self.1..end)? == text).then(|| self.1 = end)
    }

    /// `0` or `[1-9][0-9]{0,17}`.
    fn number(&mut self) -> Option<u64> {
        let digits = self.0[self.1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 18 || (digits > 1 && self.0[self.1] == b'0') {
            return None;
        }
        let mut value = 0u64;
        for &b in &self.0[self.1..self.1 + digits] {
            value = value * 10 + u64::from(b - b'0');
        }
        self.1 += digits;
        Some(value)
    }

    /// A string's content up to its closing quote, which must come before any `\` or control
    /// character; the cursor ends past the quote.
    fn raw_str<'l>(&mut self, line: &'l str) -> Option<&'l str> {
        let start = self.1;
        let len = self.0[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.0[start + len] != b'"' {
            return None;
        }
        self.1 = start + len + 1;
        line.get(start..start + len)
    }

    /// A string with `\"` and `\\` escapes (any other escape or a control character: `None`),
    /// unescaped into `out`; the cursor ends past the closing quote.
    fn escaped_str(&mut self, line: &str, out: &mut String) -> Option<()> {
        loop {
            let start = self.1;
            let len = self.0[start..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            out.push_str(line.get(start..start + len)?);
            self.1 = start + len;
            match self.0[self.1] {
                b'"' => {
                    self.1 += 1;
                    return Some(());
                }
                b'\\' => {
                    let escaped = *self.0.get(self.1 + 1)?;
                    if escaped != b'"' && escaped != b'\\' {
                        return None;
                    }
                    out.push(escaped as char);
                    self.1 += 2;
                }
                _ => return None,
            }
        }
    }
}
