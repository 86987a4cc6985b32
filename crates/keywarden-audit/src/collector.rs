//! The offsite collector's copy: the messages a cabinet shipped to a syslog collector, one per
//! line, as the collector wrote them (with rsyslog: a template of `%msg%\n`, one file per
//! cabinet).
//!
//! Each message is one line of the export format (see the crate docs) or a heartbeat:
//!
//! - a **header** line starts every connection: `first_seq` is the next entry the cabinet sends
//!   on it, `prev_hash` the hash that entry chains after, `exported_at_ms` when it was sent;
//! - **entry** and **checkpoint** lines as in an export;
//! - a **heartbeat** line (`{"heartbeat":{"at_ms":...,"head_seq":...}}`) when the cabinet had
//!   nothing to send, so the collector sees it is alive.
//!
//! Delivery is at least once: after an outage the cabinet resends from the last batch the
//! collector acknowledged, so the copy holds duplicates. [`verify_collector_copy`] reads it in
//! file order and:
//!
//! - skips heartbeats;
//! - takes the first header as the copy's start (the copy must begin with one; a later header
//!   must name the same key, must not go back, and its `prev_hash` must agree with the chain);
//! - drops an entry line whose seq it has seen, if the line is byte-identical to the first one;
//!   a different line with the same seq is [`VerifyError::ConflictingDuplicate`];
//! - drops a checkpoint for a seq already passed if its signature is valid and it matches the
//!   chain there (checkpoints are signed, so a resent one need not be byte-identical);
//! - feeds everything else to the [`Verifier`], which checks the hash links, the order and
//!   every signature as for an export.
//!
//! A live copy usually ends with entries not yet covered by a checkpoint (the cabinet signs one
//! at the end of every batch it ships, but the last batch may have been cut by an outage): the
//! [`CollectorReport`] gives the signed part and names the unsigned tail, which is not verified.
//! Memory is bounded by the records since the last header (one batch), not by the copy's size.

use std::collections::BTreeMap;
use std::io::BufRead;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::entry::Digest;
use crate::error::VerifyError;
use crate::export::{parse_header_at, parse_json, Lines, RecordIn};
use crate::verify::{Report, Verifier};

/// A heartbeat message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// When it was sent, ms since the Unix epoch (the cabinet's clock).
    pub at_ms: i64,
    /// The cabinet's audit head at that time.
    pub head_seq: u64,
}

/// A heartbeat line, without its newline.
pub fn heartbeat_line(at_ms: i64, head_seq: u64) -> String {
    // Two integers: serialising cannot fail.
    format!(r#"{{"heartbeat":{{"at_ms":{at_ms},"head_seq":{head_seq}}}}}"#)
}

/// What a line of a collector copy is, with its time (the cabinet's clock), for tools that look
/// at the end of a copy without verifying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A connection's header.
    Header {
        /// `exported_at_ms`.
        at_ms: i64,
        /// `first_seq`.
        first_seq: u64,
    },
    /// An audit entry.
    Entry {
        /// Its seq.
        seq: u64,
        /// Its time.
        at_ms: i64,
    },
    /// A signed checkpoint.
    Checkpoint {
        /// Its seq.
        seq: u64,
        /// When it was signed.
        at_ms: i64,
    },
    /// A heartbeat.
    Heartbeat(Heartbeat),
}

impl LineKind {
    /// The line's time, ms since the Unix epoch (cabinet clock).
    pub fn at_ms(&self) -> i64 {
        match *self {
            LineKind::Header { at_ms, .. }
            | LineKind::Entry { at_ms, .. }
            | LineKind::Checkpoint { at_ms, .. } => at_ms,
            LineKind::Heartbeat(h) => h.at_ms,
        }
    }

    /// The highest seq the line tells of (entry, checkpoint, heartbeat's head), if any.
    pub fn seq(&self) -> Option<u64> {
        match *self {
            LineKind::Header { .. } => None,
            LineKind::Entry { seq, .. } | LineKind::Checkpoint { seq, .. } => Some(seq),
            LineKind::Heartbeat(h) => Some(h.head_seq),
        }
    }
}

/// Just enough of any line to tell what it is.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    heartbeat: Option<Heartbeat>,
    #[serde(default)]
    entry: Option<SeqAt>,
    #[serde(default)]
    checkpoint: Option<SeqAt>,
    #[serde(default)]
    format: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    first_seq: Option<u64>,
    #[serde(default)]
    exported_at_ms: Option<i64>,
}

#[derive(Deserialize)]
struct SeqAt {
    seq: u64,
    at_ms: i64,
}

/// What `line` (without its newline) is, or `None` if it is none of the copy's lines.
pub fn classify_line(line: &[u8]) -> Option<LineKind> {
    let probe: Probe = serde_json::from_slice(line).ok()?;
    if let Some(h) = probe.heartbeat {
        return Some(LineKind::Heartbeat(h));
    }
    if let Some(e) = probe.entry {
        return Some(LineKind::Entry {
            seq: e.seq,
            at_ms: e.at_ms,
        });
    }
    if let Some(c) = probe.checkpoint {
        return Some(LineKind::Checkpoint {
            seq: c.seq,
            at_ms: c.at_ms,
        });
    }
    match (probe.format, probe.first_seq, probe.exported_at_ms) {
        (Some(_), Some(first_seq), Some(at_ms)) => Some(LineKind::Header { at_ms, first_seq }),
        _ => None,
    }
}

/// What verifying a collector copy established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorReport {
    /// The signed part: from the first header's `first_seq` to the last entry covered by a
    /// checkpoint, every link and signature checked.
    pub verified: Report,
    /// Entries after the last checkpoint (`(first, last)` seq): present in the copy but not yet
    /// signed, so not verified. `None` when the copy ends signed.
    pub unsigned_tail: Option<(u64, u64)>,
    /// Duplicate lines dropped (resends after an outage).
    pub duplicates: u64,
    /// Header lines (one per connection).
    pub headers: u64,
    /// Heartbeat lines.
    pub heartbeats: u64,
    /// The last heartbeat, if any.
    pub last_heartbeat: Option<Heartbeat>,
}

/// An entry seen since the window's floor: its line's digest (to tell a resend from an edit) and
/// its hash (to check a resent checkpoint).
#[derive(Debug, Clone, Copy)]
struct Seen {
    line: Option<Digest>,
    hash: Digest,
}

/// The state at the last checkpoint fed, to report the signed part of a copy with a tail.
#[derive(Debug, Clone, Copy)]
struct Signed {
    seq: u64,
    hash: Digest,
    checkpoints: u64,
}

/// Sans-IO reader of a collector copy: feed it lines in file order, then
/// [`finish`](CollectorReader::finish). See the [module docs](self) for the rules.
/// Errors are sticky, as the [`Verifier`]'s.
#[derive(Debug)]
pub struct CollectorReader {
    trusted: Option<VerifyingKey>,
    verifier: Option<Verifier>,
    key: Option<VerifyingKey>,
    first_seq: u64,
    /// The last entry fed to the verifier (`first_seq - 1` before any).
    last_seq: u64,
    /// The current header's `first_seq`: no entry below it may follow.
    floor: u64,
    /// Entries from `floor - 1` on, by seq.
    window: BTreeMap<u64, Seen>,
    checkpoints: u64,
    signed: Option<Signed>,
    duplicates: u64,
    headers: u64,
    heartbeats: u64,
    last_heartbeat: Option<Heartbeat>,
    failed: Option<VerifyError>,
}

impl CollectorReader {
    /// A reader checking signatures with `trusted` (the device's key); `None` uses the first
    /// header's key (see [`verify_export`](crate::verify_export) for what that proves).
    pub fn new(trusted: Option<VerifyingKey>) -> CollectorReader {
        CollectorReader {
            trusted,
            verifier: None,
            key: None,
            first_seq: 0,
            last_seq: 0,
            floor: 0,
            window: BTreeMap::new(),
            checkpoints: 0,
            signed: None,
            duplicates: 0,
            headers: 0,
            heartbeats: 0,
            last_heartbeat: None,
            failed: None,
        }
    }

    /// Feeds line `line_no` (1-based), without its newline.
    pub fn line(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.step(line_no, line);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn step(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        match classify_line(line) {
            Some(LineKind::Heartbeat(h)) => {
                self.heartbeats += 1;
                self.last_heartbeat = Some(h);
                Ok(())
            }
            Some(LineKind::Header { .. }) => self.header(line_no, line),
            _ => self.record(line_no, line),
        }
    }

    fn header(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        self.headers += 1;
        let header = parse_header_at(line, line_no, self.trusted.as_ref())?;
        let Some(key) = self.key else {
            // The copy's start.
            self.key = Some(header.key);
            self.first_seq = header.first_seq;
            self.last_seq = header.first_seq - 1;
            self.floor = header.first_seq;
            self.window.insert(
                header.first_seq - 1,
                Seen {
                    line: None,
                    hash: header.prev_hash,
                },
            );
            self.verifier = Some(Verifier::new(
                header.key,
                header.first_seq,
                header.prev_hash,
            ));
            return Ok(());
        };
        if header.key != key {
            return Err(VerifyError::WrongKey {
                expected: hex::encode(key.as_bytes()),
                found: hex::encode(header.key.as_bytes()),
            });
        }
        if header.first_seq < self.floor {
            // Resends start at the last acknowledged batch, which never goes back.
            return Err(VerifyError::OutOfOrder {
                previous: self.floor,
                found: header.first_seq,
            });
        }
        if let Some(seen) = self.window.get(&(header.first_seq - 1)) {
            if seen.hash != header.prev_hash {
                return Err(VerifyError::Malformed {
                    line: line_no,
                    reason: format!(
                        "header's prev_hash disagrees with the chain at entry {}",
                        header.first_seq - 1
                    ),
                });
            }
        }
        self.floor = header.first_seq;
        // Keep the entry the new batch chains after; older ones cannot come again.
        self.window = self.window.split_off(&(self.floor - 1));
        Ok(())
    }

    fn record(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let Some(verifier) = self.verifier.as_mut() else {
            return Err(VerifyError::Malformed {
                line: line_no,
                reason: "a record before any header line: the copy must start with one \
                         (join a rotated copy to the file before it)"
                    .to_owned(),
            });
        };
        match parse_json::<RecordIn<'_>>(line, line_no)? {
            RecordIn::Entry(e) => {
                let (entry, hash) = e.parts(line_no)?;
                let digest: Digest = Sha256::digest(line).into();
                if entry.seq < self.floor {
                    return Err(VerifyError::OutOfOrder {
                        previous: self.last_seq,
                        found: entry.seq,
                    });
                }
                if entry.seq <= self.last_seq {
                    if let Some(seen) = self.window.get(&entry.seq) {
                        return match seen.line {
                            Some(first) if first == digest => {
                                self.duplicates += 1;
                                Ok(())
                            }
                            _ => Err(VerifyError::ConflictingDuplicate {
                                seq: entry.seq,
                                line: line_no,
                            }),
                        };
                    }
                }
                verifier.entry_ref(entry, &hash)?;
                if entry.seq == self.last_seq + 1 {
                    self.last_seq = entry.seq;
                    self.window.insert(
                        entry.seq,
                        Seen {
                            line: Some(digest),
                            hash,
                        },
                    );
                }
                Ok(())
            }
            RecordIn::Checkpoint(c) => {
                let cp = c.checkpoint(line_no)?;
                if cp.seq < self.last_seq {
                    let Some(seen) = self.window.get(&cp.seq) else {
                        return Err(VerifyError::OutOfOrder {
                            previous: self.last_seq,
                            found: cp.seq,
                        });
                    };
                    cp.verify(&verifier_key(self.key)?)?;
                    if cp.hash != seen.hash {
                        return Err(VerifyError::CheckpointMismatch { seq: cp.seq });
                    }
                    self.duplicates += 1;
                    return Ok(());
                }
                verifier.checkpoint(&cp)?;
                if cp.seq == self.last_seq {
                    self.checkpoints += 1;
                    self.signed = Some(Signed {
                        seq: cp.seq,
                        hash: cp.hash,
                        checkpoints: self.checkpoints,
                    });
                }
                Ok(())
            }
        }
    }

    /// The verdict: the copy started with a header, holds at least one signed entry, and
    /// everything read agrees; entries after the last checkpoint are reported, not verified.
    pub fn finish(self) -> Result<CollectorReport, VerifyError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(verifier) = self.verifier else {
            return Err(VerifyError::Empty);
        };
        let report = |verified| CollectorReport {
            verified,
            unsigned_tail: None,
            duplicates: self.duplicates,
            headers: self.headers,
            heartbeats: self.heartbeats,
            last_heartbeat: self.last_heartbeat,
        };
        match verifier.finish() {
            Ok(verified) => Ok(report(verified)),
            Err(VerifyError::UnsignedTail {
                last_checkpoint: Some(_),
                last_entry,
            }) => {
                let Some(signed) = self.signed else {
                    return Err(VerifyError::UnsignedTail {
                        last_checkpoint: None,
                        last_entry,
                    });
                };
                if signed.seq < self.first_seq {
                    // Only the checkpoint of the entry before the copy: nothing in it is signed.
                    return Err(VerifyError::UnsignedTail {
                        last_checkpoint: None,
                        last_entry,
                    });
                }
                let verified = Report {
                    entries: signed.seq + 1 - self.first_seq,
                    first_seq: self.first_seq,
                    last_seq: signed.seq,
                    checkpoints: signed.checkpoints,
                    head: signed.hash,
                    key_hex: self
                        .key
                        .map(|k| hex::encode(k.as_bytes()))
                        .unwrap_or_default(),
                };
                let mut out = report(verified);
                out.unsigned_tail = Some((signed.seq + 1, last_entry));
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }
}

fn verifier_key(key: Option<VerifyingKey>) -> Result<VerifyingKey, VerifyError> {
    key.ok_or(VerifyError::Empty)
}

/// Verifies a collector copy read from `input` (see the [module docs](self)), streaming.
pub fn verify_collector_copy<R: BufRead>(
    input: R,
    trusted: Option<&VerifyingKey>,
) -> Result<CollectorReport, VerifyError> {
    let mut lines = Lines::new(input);
    let mut reader = CollectorReader::new(trusted.copied());
    while let Some((line_no, line)) = lines.next()? {
        reader.line(line_no, line)?;
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{checkpoint_line, entry_line, header_line, Chain, DeviceKey, Entry, GENESIS};

    const T: i64 = 1_700_000_000_000;

    /// A trail of `n` entries and the hashes, seq 1..=n.
    fn trail(n: u64) -> Vec<(Entry, Digest)> {
        let mut chain = Chain::new(0, GENESIS);
        (0..n)
            .map(|i| {
                chain.append(
                    T + i as i64,
                    "admin",
                    "uid:0",
                    "user:1",
                    r#"{"x":"é\u007f"}"#,
                )
            })
            .collect()
    }

    fn key() -> DeviceKey {
        DeviceKey::from_bytes(&[7; 32])
    }

    /// What the shipper sends for entries `from..=to` after acknowledged `from - 1`: a header,
    /// the entries, a checkpoint at `to`.
    fn batch(t: &[(Entry, Digest)], from: u64, to: u64, signed: bool) -> Vec<String> {
        let k = key();
        let prev = if from == 1 {
            GENESIS
        } else {
            t[from as usize - 2].1
        };
        let mut out = vec![header_line(&k.public_hex(), from, &prev, T).unwrap()];
        for (e, h) in &t[from as usize - 1..to as usize] {
            out.push(entry_line(e, h).unwrap());
        }
        if signed {
            let (e, h) = &t[to as usize - 1];
            out.push(checkpoint_line(&k.sign_checkpoint(to, h, e.at_ms)).unwrap());
        }
        out
    }

    fn verify(lines: &[String]) -> Result<CollectorReport, VerifyError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify_collector_copy(text.as_bytes(), Some(&key().verifying_key()))
    }

    #[test]
    fn resends_heartbeats_and_headers_are_read_through() {
        let t = trail(30);
        let mut copy = batch(&t, 1, 10, true);
        copy.push(heartbeat_line(T + 5, 10));
        // A batch cut by an outage (no checkpoint), then resent whole and further.
        copy.extend(batch(&t, 11, 20, false).into_iter().take(6));
        copy.extend(batch(&t, 11, 25, true));
        copy.extend(batch(&t, 26, 30, true));
        copy.push(heartbeat_line(T + 9, 30));
        let r = verify(&copy).expect("verifies");
        assert_eq!((r.verified.first_seq, r.verified.last_seq), (1, 30));
        assert_eq!(r.verified.entries, 30);
        assert_eq!(r.verified.head, t[29].1);
        assert_eq!(r.unsigned_tail, None);
        assert_eq!(r.duplicates, 5);
        assert_eq!((r.headers, r.heartbeats), (4, 2));
        assert_eq!(
            r.last_heartbeat,
            Some(Heartbeat {
                at_ms: T + 9,
                head_seq: 30
            })
        );
    }

    #[test]
    fn a_copy_may_start_later_and_end_unsigned() {
        let t = trail(20);
        let mut copy = batch(&t, 5, 12, true);
        copy.extend(batch(&t, 13, 20, false));
        let r = verify(&copy).expect("verifies");
        assert_eq!((r.verified.first_seq, r.verified.last_seq), (5, 12));
        assert_eq!(r.verified.entries, 8);
        assert_eq!(r.unsigned_tail, Some((13, 20)));
    }

    #[test]
    fn a_resent_checkpoint_may_be_signed_anew() {
        let t = trail(10);
        let k = key();
        let mut copy = batch(&t, 1, 10, true);
        copy.extend(batch(&t, 1, 10, false));
        copy.push(checkpoint_line(&k.sign_checkpoint(5, &t[4].1, T + 99)).unwrap());
        copy.push(checkpoint_line(&k.sign_checkpoint(10, &t[9].1, T + 99)).unwrap());
        let r = verify(&copy).expect("verifies");
        assert_eq!(r.verified.last_seq, 10);
        assert_eq!(r.duplicates, 11);
        // The same checkpoint forged over another hash is caught.
        copy.push(checkpoint_line(&k.sign_checkpoint(5, &t[5].1, T)).unwrap());
        assert_eq!(
            verify(&copy),
            Err(VerifyError::CheckpointMismatch { seq: 5 })
        );
    }

    #[test]
    fn an_edited_duplicate_is_tampering() {
        let t = trail(10);
        let mut copy = batch(&t, 1, 10, true);
        let mut resend = batch(&t, 3, 10, true);
        resend[2] = resend[2].replace("uid:0", "uid:1");
        copy.extend(resend);
        // Line 14: the copy's header, 10 entries, a checkpoint, the resend's header and entry 3.
        assert_eq!(
            verify(&copy),
            Err(VerifyError::ConflictingDuplicate { seq: 4, line: 15 })
        );
    }

    #[test]
    fn order_and_gaps_are_checked_after_deduplication() {
        let t = trail(10);
        let mut swapped = batch(&t, 1, 10, true);
        swapped.swap(3, 4);
        assert_eq!(
            verify(&swapped),
            Err(VerifyError::OutOfOrder {
                previous: 4,
                found: 3
            })
        );
        let mut gap = batch(&t, 1, 10, true);
        gap.remove(4);
        assert_eq!(
            verify(&gap),
            Err(VerifyError::MissingEntries {
                expected: 4,
                found: 5
            })
        );
        // An entry from before the batch it follows.
        let mut back = batch(&t, 1, 6, true);
        back.extend(batch(&t, 7, 10, true));
        back.insert(10, back[2].clone());
        assert_eq!(
            verify(&back),
            Err(VerifyError::OutOfOrder {
                previous: 7,
                found: 2
            })
        );
        // A header going back.
        let mut header_back = batch(&t, 5, 10, true);
        header_back.extend(batch(&t, 3, 10, true));
        assert!(matches!(
            verify(&header_back),
            Err(VerifyError::OutOfOrder {
                previous: 5,
                found: 3
            })
        ));
    }

    #[test]
    fn a_copy_must_start_with_a_header_of_the_trusted_key() {
        let t = trail(5);
        let copy = batch(&t, 1, 5, true);
        assert!(matches!(
            verify(&copy[1..]),
            Err(VerifyError::Malformed { line: 1, .. })
        ));
        let other = DeviceKey::from_bytes(&[8; 32]);
        let mut foreign = copy.clone();
        foreign[0] = header_line(&other.public_hex(), 1, &GENESIS, T).unwrap();
        assert!(matches!(
            verify(&foreign),
            Err(VerifyError::WrongKey { .. })
        ));
        let mut bad_prev = copy.clone();
        bad_prev.push(header_line(&key().public_hex(), 3, &GENESIS, T).unwrap());
        assert!(matches!(
            verify(&bad_prev),
            Err(VerifyError::Malformed { line: 8, .. })
        ));
        assert_eq!(verify(&[heartbeat_line(T, 0)]), Err(VerifyError::Empty));
    }

    #[test]
    fn lines_are_classified() {
        let t = trail(2);
        let b = batch(&t, 1, 2, true);
        assert_eq!(
            classify_line(b[0].as_bytes()),
            Some(LineKind::Header {
                at_ms: T,
                first_seq: 1
            })
        );
        assert_eq!(
            classify_line(b[2].as_bytes()),
            Some(LineKind::Entry {
                seq: 2,
                at_ms: T + 1
            })
        );
        assert_eq!(
            classify_line(b[3].as_bytes()).map(|k| (k.seq(), k.at_ms())),
            Some((Some(2), T + 1))
        );
        assert_eq!(
            classify_line(heartbeat_line(T, 7).as_bytes()),
            Some(LineKind::Heartbeat(Heartbeat {
                at_ms: T,
                head_seq: 7
            }))
        );
        assert_eq!(classify_line(b"hello"), None);
    }
}
