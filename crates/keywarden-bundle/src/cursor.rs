//! The sans-IO core of reading payloads: which chunk comes next, how long it is, and the check
//! of its bytes. [`BundleReader`](crate::BundleReader) drives it with blocking reads; an async
//! installer drives it with its own.

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{Digest, VerifiedManifest};

/// A chunk's place: which payload, which chunk, where it goes, how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPos {
    /// The payload's index in the manifest.
    pub payload: usize,
    /// The chunk's index within the payload.
    pub index: u64,
    /// Its offset within the payload (and so within the target slot).
    pub offset: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// What the stream holds next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Next {
    /// Read exactly `len` bytes and pass them to [`ChunkCursor::accept`]; if the stream ends
    /// first, report [`ChunkCursor::truncated`].
    Chunk(ChunkPos),
    /// Every payload is complete: the stream must end here (a further byte is
    /// [`Error::TrailingData`]).
    End,
}

/// The position in a bundle's payloads and the check of each chunk, with no I/O.
///
/// Call [`next_step`](ChunkCursor::next_step) to learn what to read, read that many bytes, and give them
/// to [`accept`](ChunkCursor::accept), which checks their hash before the caller may write them.
/// Finishing a payload read from its first byte also checks its whole-payload hash. Errors are
/// sticky: after one, every call returns it again.
#[derive(Debug, Clone)]
pub struct ChunkCursor {
    verified: VerifiedManifest,
    payload: usize,
    chunk: u64,
    /// The whole-payload hash, when this payload is being read from its first byte.
    whole: Option<Sha256>,
    failed: Option<Error>,
}

impl ChunkCursor {
    /// A cursor at the first byte of the first payload.
    pub fn new(verified: VerifiedManifest) -> ChunkCursor {
        ChunkCursor {
            verified,
            payload: 0,
            chunk: 0,
            whole: Some(Sha256::new()),
            failed: None,
        }
    }

    /// A cursor at chunk `chunk` of payload `payload` (a resumed download; the stream must start
    /// at [`VerifiedManifest::chunk_offset`]`(payload, chunk)`). A payload resumed in its middle
    /// gets no whole-payload check; its chunks' hashes are still checked.
    pub fn resume(verified: VerifiedManifest, payload: usize, chunk: u64) -> Result<ChunkCursor> {
        if verified.chunk_offset(payload, chunk).is_none() {
            return Err(Error::NoSuchChunk {
                payload,
                index: chunk,
            });
        }
        Ok(ChunkCursor {
            verified,
            payload,
            chunk,
            whole: (chunk == 0).then(Sha256::new),
            failed: None,
        })
    }

    /// The verified manifest.
    pub fn verified(&self) -> &VerifiedManifest {
        &self.verified
    }

    /// The next chunk to read as (payload index, chunk index): the resume point if the stream
    /// breaks now.
    pub fn position(&self) -> (usize, u64) {
        (self.payload, self.chunk)
    }

    /// The largest chunk of the bundle (the buffer a reader needs).
    pub fn max_chunk_len(&self) -> usize {
        self.verified
            .manifest()
            .payloads
            .iter()
            .map(|p| p.chunk_size as usize)
            .max()
            .unwrap_or(0)
    }

    /// What to read next. Moving past the end of a payload checks its whole-payload hash
    /// ([`Error::PayloadMismatch`]).
    pub fn next_step(&mut self) -> Result<Next> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.settle() {
            Ok(next) => Ok(next),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Checks `data` as the chunk [`next_step`](ChunkCursor::next_step) announced and moves past it. On
    /// `Ok` the bytes are the manifest's and may be written at the returned offset; otherwise
    /// [`Error::ChunkMismatch`] (or [`Error::SizeMismatch`] if `data` has the wrong length).
    pub fn accept(&mut self, data: &[u8]) -> Result<ChunkPos> {
        let pos = match self.next_step()? {
            Next::Chunk(pos) => pos,
            Next::End => return Err(self.fail(Error::TrailingData)),
        };
        let p = &self.verified.manifest().payloads[pos.payload];
        let error = if data.len() != pos.len {
            Some(Error::SizeMismatch {
                payload: p.name.clone(),
                expected: pos.len as u64,
                actual: data.len() as u64,
            })
        } else if Digest::of(data) != p.chunks[pos.index as usize] {
            Some(Error::ChunkMismatch {
                payload: p.name.clone(),
                index: pos.index,
            })
        } else {
            None
        };
        if let Some(e) = error {
            return Err(self.fail(e));
        }
        if let Some(whole) = &mut self.whole {
            whole.update(data);
        }
        self.chunk += 1;
        Ok(pos)
    }

    /// The stream ended inside or before the announced chunk: records and returns
    /// [`Error::Truncated`] naming it.
    pub fn truncated(&mut self) -> Error {
        let payloads = &self.verified.manifest().payloads;
        let e = match payloads.get(self.payload) {
            Some(p) => Error::Truncated {
                payload: p.name.clone(),
                index: self.chunk,
            },
            None => Error::TrailingData,
        };
        self.fail(e)
    }

    /// Records an error found by the caller (an I/O error, trailing data) so that later calls
    /// return it; returns it.
    pub fn fail(&mut self, e: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
        }
        e
    }

    /// Moves past finished (and empty) payloads, checking their whole-payload hashes.
    fn settle(&mut self) -> Result<Next> {
        loop {
            let Some(p) = self.verified.manifest().payloads.get(self.payload) else {
                return Ok(Next::End);
            };
            if self.chunk < p.chunk_count() {
                return Ok(Next::Chunk(ChunkPos {
                    payload: self.payload,
                    index: self.chunk,
                    offset: self.chunk * u64::from(p.chunk_size),
                    len: p.chunk_len(self.chunk) as usize,
                }));
            }
            if let Some(whole) = self.whole.take() {
                if Digest(whole.finalize().into()) != p.sha256 {
                    return Err(Error::PayloadMismatch {
                        payload: p.name.clone(),
                    });
                }
            }
            self.payload += 1;
            self.chunk = 0;
            self.whole = Some(Sha256::new());
        }
    }
}
