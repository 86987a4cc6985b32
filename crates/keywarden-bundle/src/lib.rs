//! Keywarden's OTA update bundles: the format, creating and signing them, inspecting them, and
//! verifying them while they stream in.
//!
//! A bundle is a fixed 112-byte header (magic `KWBUNDLE`, format version, manifest length, the
//! signer's ed25519 public key, the signature), the manifest (compact JSON, at most
//! [`MAX_MANIFEST_LEN`] bytes, signed byte for byte), then the payloads' bytes one after the
//! other. The manifest gives each payload's size, SHA-256 and the SHA-256 of each
//! [`CHUNK_SIZE`] chunk, so an installer reading from the network checks the signature before
//! the first payload byte, checks each chunk before writing it, and can resume at any chunk
//! boundary (every offset follows from the manifest). The byte layout, the rules and the order
//! of the checks are in `ota/FORMAT.md`.
//!
//! - [`create`] writes a bundle from a [`CreateSpec`] and a signing key (deterministic).
//! - [`BundleReader`] reads one from any stream: [`BundleReader::open`] verifies the manifest
//!   against a [`Keyring`], [`BundleReader::next_chunk`] hands out verified chunks,
//!   [`BundleReader::resume`] continues from a chunk on a new stream.
//! - [`verify_file`] checks a whole file; [`inspect_file`] reads the manifest without a key
//!   (unverified, for people).
//! - [`keys`]: key files (PKCS#8 PEM private, SPKI PEM or hex public) and [`keys::generate`].
//! - [`Version`]: the version order used for anti-rollback.
//!
//! The header and manifest functions ([`Header::parse`], [`Header::verify`],
//! [`VerifiedManifest::check_chunk`]) and [`ChunkCursor`] (which chunk comes next, and the check
//! of its bytes) do no I/O: `BundleReader` is their blocking adapter, and an async installer
//! drives them with its own streams the same way.
//!
//! An empty keyring never means "accept anything": every bundle is refused with
//! [`Error::NoTrustedKeys`].

mod create;
mod cursor;
mod error;
pub mod keys;
mod manifest;
mod read;
mod version;

pub use create::{create, CreateSpec};
pub use cursor::{ChunkCursor, ChunkPos, Next};
pub use error::{Error, Result};
pub use keys::Keyring;
pub use manifest::{
    chunk_count, Digest, Header, Manifest, Payload, VerifiedManifest, CHUNK_SIZE, FORMAT_VERSION,
    HEADER_LEN, MAGIC, MAX_CHUNK_SIZE, MAX_MANIFEST_LEN, MAX_PAYLOADS, MIN_CHUNK_SIZE,
};
pub use read::{
    inspect_file, read_unverified, read_up_to, verify_file, BundleReader, Chunk, Unverified,
};
pub use version::{PreId, Version};

/// The signing key type (re-exported from `ed25519-dalek`).
pub use ed25519_dalek::{SigningKey, VerifyingKey};
