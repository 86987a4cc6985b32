//! Keywarden's diagnostic bundle: what support staff pull from a cabinet.
//!
//! This crate is the bundle's format and its redaction rules, nothing else: the policy service
//! decides *what* to collect (an allowlist of named sources, never a directory sweep) and feeds
//! it through [`Scrubber`] and [`redact_toml`] before a byte reaches the [`BundleBuilder`]; the
//! CLI's `keywarden diag verify` checks a bundle off the device with [`verify`].
//!
//! # Format (version 1)
//! A zstd-compressed POSIX tar (ustar) archive of regular files only, flat names
//! (`[a-z0-9._-]+`), in this order:
//! 1. `manifest.json`: [`Manifest`]: the format version, the creation time, the device's public
//!    key and serial, and per file its name, size, SHA-256 and whether it was cut to its cap;
//! 2. `manifest.sig`: 128 hex digits, the device key's ed25519 signature over
//!    [`SIGNATURE_TAG`] followed by the exact bytes of `manifest.json`;
//! 3. the files, in the manifest's order.
//!
//! Tar headers are deterministic (mode 0644, owner 0, mtime = the manifest's `created`), so the
//! same inputs give the same bytes. [`verify`] accepts a bundle only if the signature is the
//! expected device's, every listed file is present once with its size and hash, and nothing
//! else is in the archive; it reads at most [`MAX_UNPACKED`] bytes, whatever the archive claims.
//!
//! # Redaction
//! At the source, by construction: the collector selects fields, never whole tables or files
//! with secrets in them. On top of that every free text (log messages, configuration strings)
//! goes through [`Scrubber::text`] (people's names → stable pseudonyms, secret-looking
//! assignments, PEM blocks, long hex/base64 runs, URL credentials, paths and queries, e-mail
//! addresses) and every configuration file through [`redact_toml`] (strings kept only for
//! keys known to hold no secrets). Pseudonyms are an HMAC of the name under a secret derived
//! from the device key: the same person has the same pseudonym in every bundle from this
//! cabinet, and nobody without the key can test a guess.

mod bundle;
mod error;
mod redact;
mod verify;

pub use bundle::{BundleBuilder, Caps, FileEntry, Keep, Manifest, Summary, FORMAT, SIGNATURE_TAG};
pub use error::{Error, Result};
pub use redact::{redact_toml, Pseudonyms, Scrubber};
pub use verify::{verify, Verified, MAX_UNPACKED};

#[cfg(test)]
mod tests;
