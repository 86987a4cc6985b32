//! Writing a bundle's payload into the inactive slot. See the crate documentation.

mod source;

pub use source::{BundleSource, FileSource};
