//! Where bundles come from: a TUF repository (`tough`) over HTTPS (ureq, rustls with `ring`)
//! that names the bundle for this board, and ranged HTTPS reads of the bundle itself.
//!
//! - [`https`]: the one HTTPS client (the fleet's CA only, timeouts) and [`HttpSource`], a
//!   [`crate::install::BundleSource`] made of `Range: bytes=OFFSET-` requests.
//! - [`tuf`]: [`UpdateClient::check`] loads the repository's metadata with `tough` (rollback,
//!   freeze, mix-and-match, endless-data and root-rotation checks) and returns the newest
//!   [`Offer`] for this board; [`Offer::check_head`] binds the downloaded header and manifest to
//!   the offer before any payload byte is used.
//! - [`publish`]: creating and updating the repository from bundles, re-signing the timestamp,
//!   rotating the root keys (see `ota/REPOSITORY.md`).
//!
//! Threads: [`UpdateClient::check`] and the [`publish`] functions are async (`tough` is) and must
//! run inside a tokio runtime (the transport uses its blocking pool); one check at a time per
//! datastore. [`HttpSource`] and [`HttpsClient`] are blocking, for the installer's thread.

pub mod https;
pub mod publish;
pub mod tuf;

pub use https::{HttpSource, HttpsClient, HttpsConfig};
pub use tuf::{Offer, RemoteConfig, TargetDigest, UpdateClient};
