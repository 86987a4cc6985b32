//! Reading a bundle from a stream: the header and manifest first (verified before any payload
//! byte is read), then the payloads chunk by chunk, each verified before it is handed out.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::{io, Error, Result};
use crate::keys::Keyring;
use crate::manifest::{Digest, Header, Manifest, VerifiedManifest, HEADER_LEN};

/// One verified chunk, borrowed from the reader until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The payload's index in the manifest.
    pub payload: usize,
    /// The payload's name.
    pub name: &'a str,
    /// The chunk's index within the payload.
    pub index: u64,
    /// Where the chunk's bytes go: the offset within the payload (and so within the slot).
    pub offset: u64,
    /// The bytes, whose SHA-256 is the manifest's for this chunk.
    pub data: &'a [u8],
}

/// Reads a bundle from any byte stream (a file, an HTTPS response body) and hands out its
/// payloads one verified chunk at a time.
///
/// [`open`](BundleReader::open) reads and verifies the header and manifest; no payload byte is
/// read before the signature has been checked against the keyring. Then
/// [`next_chunk`](BundleReader::next_chunk) returns each chunk in bundle order, after checking
/// its hash, so the caller can write it at once; at the end it checks that nothing follows.
/// [`resume`](BundleReader::resume) continues on a new stream from any chunk boundary.
///
/// Errors are sticky: after `next_chunk` failed it returns the same error again.
#[derive(Debug)]
pub struct BundleReader<R> {
    inner: R,
    verified: VerifiedManifest,
    /// The next chunk: payload index and chunk index.
    payload: usize,
    chunk: u64,
    /// The whole-payload hash, when this payload was read from its first byte.
    whole: Option<Sha256>,
    buf: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    Reading,
    Done,
    Failed(Error),
}

/// Reads the header and the manifest bytes (no verification beyond the header's own rules).
fn read_head(reader: &mut impl Read) -> Result<(Header, Vec<u8>)> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_up_to(reader, &mut head).map_err(io("read the bundle header"))?;
    if got < 8 {
        // Too short even for the magic: name what there is.
        return Err(if head[..got] == crate::MAGIC[..got] {
            Error::TruncatedHeader { len: got as u64 }
        } else {
            Error::BadMagic
        });
    }
    if head[..8] != crate::MAGIC {
        return Err(Error::BadMagic);
    }
    if got < HEADER_LEN {
        return Err(Error::TruncatedHeader { len: got as u64 });
    }
    let header = Header::parse(&head)?;
    let mut manifest = vec![0u8; header.manifest_len as usize];
    let got_manifest = read_up_to(reader, &mut manifest).map_err(io("read the manifest"))?;
    if got_manifest < manifest.len() {
        return Err(Error::TruncatedHeader {
            len: (HEADER_LEN + got_manifest) as u64,
        });
    }
    Ok((header, manifest))
}

/// Fills as much of `buf` as the stream has; fewer bytes only at its end.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: Read> BundleReader<R> {
    /// Reads the header and the manifest from `reader` and verifies them against `keyring`:
    /// a trusted key at all, magic, format, manifest length, a trusted signer, the signature,
    /// then the manifest's content. The stream is left at the first payload byte.
    pub fn open(mut reader: R, keyring: &Keyring) -> Result<BundleReader<R>> {
        if keyring.is_empty() {
            return Err(Error::NoTrustedKeys);
        }
        let (header, manifest) = read_head(&mut reader)?;
        let verified = header.verify(&manifest, keyring)?;
        Ok(BundleReader::at(reader, verified, 0, 0))
    }

    /// Continues reading a bundle whose manifest was verified before (by `open` on an earlier
    /// stream) from chunk `chunk` of payload `payload`; `reader` must start at
    /// [`VerifiedManifest::chunk_offset`]`(payload, chunk)` of the bundle (an HTTP range request,
    /// a seek). The whole-payload hash is not checked for a payload resumed in its middle; its
    /// chunks' hashes still are.
    pub fn resume(
        reader: R,
        verified: VerifiedManifest,
        payload: usize,
        chunk: u64,
    ) -> Result<BundleReader<R>> {
        if verified.chunk_offset(payload, chunk).is_none() {
            return Err(Error::NoSuchChunk {
                payload,
                index: chunk,
            });
        }
        Ok(BundleReader::at(reader, verified, payload, chunk))
    }

    fn at(inner: R, verified: VerifiedManifest, payload: usize, chunk: u64) -> BundleReader<R> {
        let max_chunk = verified
            .manifest()
            .payloads
            .iter()
            .map(|p| p.chunk_size)
            .max()
            .unwrap_or(0);
        BundleReader {
            inner,
            verified,
            payload,
            chunk,
            whole: (chunk == 0).then(Sha256::new),
            buf: vec![0u8; max_chunk as usize],
            state: State::Reading,
        }
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        self.verified.manifest()
    }

    /// The verified manifest with the bundle's layout (offsets for resuming).
    pub fn verified(&self) -> &VerifiedManifest {
        &self.verified
    }

    /// Where the next chunk is: (payload index, chunk index), the resume point if the stream
    /// breaks now.
    pub fn position(&self) -> (usize, u64) {
        (self.payload, self.chunk)
    }

    /// The underlying stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next verified chunk, or `None` after the last one, once it is known that no byte
    /// follows ([`Error::TrailingData`]). A chunk whose hash differs from the manifest's is
    /// [`Error::ChunkMismatch`], a stream that ends early [`Error::Truncated`], both naming the
    /// payload and the chunk.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>> {
        match &self.state {
            State::Reading => {}
            State::Done => return Ok(None),
            State::Failed(e) => return Err(e.clone()),
        }
        match self.advance() {
            Ok(Some(len)) => {
                let manifest = self.verified.manifest();
                let p = &manifest.payloads[self.payload];
                let index = self.chunk;
                self.chunk += 1;
                Ok(Some(Chunk {
                    payload: self.payload,
                    name: &p.name,
                    index,
                    offset: index * u64::from(p.chunk_size),
                    data: &self.buf[..len],
                }))
            }
            Ok(None) => {
                self.state = State::Done;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Reads and checks the next chunk into `buf`; its length, or `None` at a clean end.
    fn advance(&mut self) -> Result<Option<usize>> {
        loop {
            let payloads = &self.verified.manifest().payloads;
            let Some(p) = payloads.get(self.payload) else {
                let mut probe = [0u8; 1];
                return match read_up_to(&mut self.inner, &mut probe)
                    .map_err(io("read the bundle"))?
                {
                    0 => Ok(None),
                    _ => Err(Error::TrailingData),
                };
            };
            if self.chunk == p.chunk_count() {
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
                continue;
            }
            let len = p.chunk_len(self.chunk) as usize;
            let got = read_up_to(&mut self.inner, &mut self.buf[..len])
                .map_err(io(format!("read payload {} chunk {}", p.name, self.chunk)))?;
            if got < len {
                return Err(Error::Truncated {
                    payload: p.name.clone(),
                    index: self.chunk,
                });
            }
            if Digest::of(&self.buf[..len]) != p.chunks[self.chunk as usize] {
                return Err(Error::ChunkMismatch {
                    payload: p.name.clone(),
                    index: self.chunk,
                });
            }
            if let Some(whole) = &mut self.whole {
                whole.update(&self.buf[..len]);
            }
            return Ok(Some(len));
        }
    }
}

/// Verifies a whole bundle file against `keyring`: signature, every chunk, the whole-payload
/// hashes, and that nothing follows the last payload. Returns the verified manifest.
pub fn verify_file(path: &Path, keyring: &Keyring) -> Result<VerifiedManifest> {
    let file = File::open(path).map_err(io(format!("open bundle {}", path.display())))?;
    let mut reader = BundleReader::open(file, keyring)?;
    while reader.next_chunk()?.is_some() {}
    Ok(reader.verified)
}

/// A bundle's header and manifest read WITHOUT checking the signature, for inspection only:
/// nothing in it can be trusted. Never install from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header (the signer it names is only a claim).
    pub header: Header,
    /// The manifest, parsed and checked against the format's rules, but not verified.
    pub manifest: Manifest,
}

/// Reads a bundle's header and manifest without verifying the signature (see [`Unverified`]).
pub fn read_unverified(mut reader: impl Read) -> Result<Unverified> {
    let (header, manifest) = read_head(&mut reader)?;
    Ok(Unverified {
        manifest: Manifest::from_bytes(&manifest)?,
        header,
    })
}

/// [`read_unverified`] on a file.
pub fn inspect_file(path: &Path) -> Result<Unverified> {
    let file = File::open(path).map_err(io(format!("open bundle {}", path.display())))?;
    read_unverified(file)
}
