//! Reading a bundle from a stream: the header and manifest first (verified before any payload
//! byte is read), then the payloads chunk by chunk, each verified before it is handed out.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::cursor::{ChunkCursor, Next};
use crate::error::{io, Error, Result};
use crate::keys::Keyring;
use crate::manifest::{Header, Manifest, VerifiedManifest, HEADER_LEN};

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
/// [`resume`](BundleReader::resume) continues on a new stream from any chunk boundary. The
/// logic is [`ChunkCursor`]'s; this is its blocking-I/O adapter.
///
/// Errors are sticky: after `next_chunk` failed it returns the same error again.
#[derive(Debug)]
pub struct BundleReader<R> {
    inner: R,
    cursor: ChunkCursor,
    buf: Vec<u8>,
    done: bool,
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

/// Fills as much of `buf` as the stream has; fewer bytes only at its end (retrying
/// interrupted reads). Public for installers that read a bundle's header from their own streams.
pub fn read_up_to<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
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
        Ok(BundleReader::with_cursor(
            reader,
            ChunkCursor::new(verified),
        ))
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
        let cursor = ChunkCursor::resume(verified, payload, chunk)?;
        Ok(BundleReader::with_cursor(reader, cursor))
    }

    fn with_cursor(inner: R, cursor: ChunkCursor) -> BundleReader<R> {
        BundleReader {
            inner,
            buf: vec![0u8; cursor.max_chunk_len()],
            cursor,
            done: false,
        }
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        self.cursor.verified().manifest()
    }

    /// The verified manifest with the bundle's layout (offsets for resuming).
    pub fn verified(&self) -> &VerifiedManifest {
        self.cursor.verified()
    }

    /// Where the next chunk is: (payload index, chunk index), the resume point if the stream
    /// breaks now.
    pub fn position(&self) -> (usize, u64) {
        self.cursor.position()
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
        let pos = match self.cursor.next_step()? {
            Next::End if self.done => return Ok(None),
            Next::End => {
                let mut probe = [0u8; 1];
                let got = read_up_to(&mut self.inner, &mut probe)
                    .map_err(|e| self.cursor.fail(io("read the bundle")(e)))?;
                if got != 0 {
                    return Err(self.cursor.fail(Error::TrailingData));
                }
                self.done = true;
                return Ok(None);
            }
            Next::Chunk(pos) => pos,
        };
        let got = match read_up_to(&mut self.inner, &mut self.buf[..pos.len]) {
            Ok(got) => got,
            Err(e) => {
                let name = &self.manifest().payloads[pos.payload].name;
                let what = format!("read payload {name} chunk {}", pos.index);
                return Err(self.cursor.fail(io(what)(e)));
            }
        };
        if got < pos.len {
            return Err(self.cursor.truncated());
        }
        self.cursor.accept(&self.buf[..pos.len])?;
        Ok(Some(Chunk {
            payload: pos.payload,
            name: &self.cursor.verified().manifest().payloads[pos.payload].name,
            index: pos.index,
            offset: pos.offset,
            data: &self.buf[..pos.len],
        }))
    }
}

/// Verifies a whole bundle file against `keyring`: signature, every chunk, the whole-payload
/// hashes, and that nothing follows the last payload. Returns the verified manifest.
pub fn verify_file(path: &Path, keyring: &Keyring) -> Result<VerifiedManifest> {
    let file = File::open(path).map_err(io(format!("open bundle {}", path.display())))?;
    let mut reader = BundleReader::open(file, keyring)?;
    while reader.next_chunk()?.is_some() {}
    Ok(reader.cursor.verified().clone())
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
