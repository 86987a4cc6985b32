//! `verify_export` streams: an export far larger than anything kept in memory goes through a
//! pipe-like reader (a writer thread and a bounded channel of small chunks) and verifies. Nothing
//! ever holds the whole file; throughput is measured elsewhere, never asserted.

use std::io::{self, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use keywarden_audit::{verify_export, Chain, DeviceKey, ExportWriter, GENESIS};

const ENTRIES: u64 = 200_000;
const CHECKPOINT_EVERY: u64 = 10_000;

/// The write end: each write is sent as one chunk; blocks while the channel is full.
struct PipeWriter(SyncSender<Vec<u8>>);

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The read end.
struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // writer finished: end of input
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts a thread writing an export of `ENTRIES` entries into a pipe; returns the read end and
/// the thread, which returns the chain's head.
fn pipe_export(key: DeviceKey) -> (PipeReader, thread::JoinHandle<[u8; 32]>) {
    let (tx, rx) = sync_channel(4);
    let writer = thread::spawn(move || {
        let mut out = ExportWriter::new(PipeWriter(tx), &key.public_hex(), 1, &GENESIS, 0).unwrap();
        let mut chain = Chain::new(0, GENESIS);
        for i in 1..=ENTRIES {
            let detail = r#"{"slot":7,"badge":"0c4f19a2"}"#;
            let (entry, hash) =
                chain.append(i as i64 * 1000, "removal", "user:42", "slot:7", detail);
            out.entry(&entry, &hash).unwrap();
            if i % CHECKPOINT_EVERY == 0 {
                out.checkpoint(&key.sign_checkpoint(i, &hash, i as i64 * 1000))
                    .unwrap();
            }
        }
        out.finish().unwrap();
        chain.head().1
    });
    let reader = PipeReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
    };
    (reader, writer)
}

#[test]
fn a_large_export_verifies_through_a_pipe() {
    let key = DeviceKey::from_bytes(&[5; 32]);
    let trusted = key.verifying_key();
    let (reader, writer) = pipe_export(key);
    let report = verify_export(BufReader::new(reader), Some(&trusted)).unwrap();
    let head = writer.join().unwrap();
    assert_eq!(report.entries, ENTRIES);
    assert_eq!(report.last_seq, ENTRIES);
    assert_eq!(report.checkpoints, ENTRIES / CHECKPOINT_EVERY);
    assert_eq!(report.head, head);
}
