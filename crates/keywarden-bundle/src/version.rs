//! Bundle versions and their order, for anti-rollback.
//!
//! A version is `MAJOR.MINOR.PATCH` with an optional `-PRERELEASE` (Semantic Versioning 2.0.0
//! without build metadata: a `+` part would make two different strings compare equal, and the
//! updater needs "newer than" to be exact). The order is SemVer's precedence: numbers compare
//! numerically, left to right; a release is newer than any of its pre-releases
//! (`1.2.0-rc.1 < 1.2.0`); pre-release identifiers compare left to right, numeric ones
//! numerically and below alphanumeric ones, alphanumeric ones by ASCII, and a shorter list that
//! is a prefix of a longer one is older (`1.2.0-rc < 1.2.0-rc.1`). Numbers have no leading zeros,
//! so every version has one spelling and two versions are equal exactly when their strings are.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// The longest version string accepted.
pub const MAX_VERSION_LEN: usize = 64;

/// A bundle version (see the module doc for the syntax and the order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// MAJOR.
    pub major: u64,
    /// MINOR.
    pub minor: u64,
    /// PATCH.
    pub patch: u64,
    /// The pre-release identifiers (empty for a release).
    pub pre: Vec<PreId>,
}

/// One dot-separated pre-release identifier. Numeric identifiers sort before alphanumeric ones
/// (the derived order, by variant then value, is SemVer's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PreId {
    /// Digits only, no leading zero.
    Numeric(u64),
    /// `[0-9A-Za-z-]+` with at least one non-digit.
    Alpha(String),
}

impl Version {
    /// Parses a version string.
    pub fn parse(text: &str) -> Result<Version, Error> {
        let bad = |reason: &str| Error::InvalidVersion {
            version: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.len() > MAX_VERSION_LEN {
            return Err(bad("longer than 64 characters"));
        }
        if text.contains('+') {
            return Err(bad(
                "build metadata (+...) is not allowed: it does not order versions",
            ));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = numbers[..] else {
            return Err(bad("expected MAJOR.MINOR.PATCH"));
        };
        let number = |part: &str| {
            numeric(part)
                .ok_or_else(|| bad("MAJOR, MINOR and PATCH must be numbers without leading zeros"))
        };
        let (major, minor, patch) = (number(major)?, number(minor)?, number(patch)?);
        let mut ids = Vec::new();
        if let Some(pre) = pre {
            for id in pre.split('.') {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(bad(
                        "pre-release identifiers are non-empty [0-9A-Za-z-] separated by dots",
                    ));
                }
                if id.bytes().all(|b| b.is_ascii_digit()) {
                    ids.push(PreId::Numeric(numeric(id).ok_or_else(|| {
                        bad("numeric pre-release identifiers have no leading zeros")
                    })?));
                } else {
                    ids.push(PreId::Alpha(id.to_owned()));
                }
            }
        }
        Ok(Version {
            major,
            minor,
            patch,
            pre: ids,
        })
    }

    /// A release (no pre-release part).
    pub fn is_release(&self) -> bool {
        self.pre.is_empty()
    }
}

/// A decimal number without a leading zero that fits in a u64.
fn numeric(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                PreId::Numeric(n) => write!(f, "{n}")?,
                PreId::Alpha(s) => f.write_str(s)?,
            }
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn semver_precedence_example_is_in_order() {
        // The example list of SemVer 2.0.0 section 11, then some of our own.
        let list = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for pair in list.windows(2) {
            let (a, b) = (
                Version::parse(pair[0]).unwrap(),
                Version::parse(pair[1]).unwrap(),
            );
            assert!(a < b, "{a} < {b}");
            assert!(b > a, "{b} > {a}");
        }
    }

    #[test]
    fn invalid_versions_are_refused() {
        for text in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.3-",
            "1.2.3-rc..1",
            "1.2.3-rc.01",
            "1.2.3+build.5",
            "1.2.3-rc+5",
            "v1.2.3",
            "1.2.3-r c",
            "1.2.-3",
            "18446744073709551616.0.0",
            &format!("1.2.3-{}", "a".repeat(60)),
        ] {
            assert!(
                matches!(Version::parse(text), Err(Error::InvalidVersion { .. })),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn serde_uses_the_string() {
        let v = Version::parse("2.0.0-rc.3").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#""2.0.0-rc.3""#);
        let back: Version = serde_json::from_str(r#""2.0.0-rc.3""#).unwrap();
        assert_eq!(back, v);
        assert!(serde_json::from_str::<Version>(r#""2.0""#).is_err());
    }

    fn version() -> impl Strategy<Value = String> {
        (
            0u64..4,
            0u64..4,
            0u64..4,
            proptest::collection::vec(
                prop_oneof![(0u64..3).prop_map(|n| n.to_string()), "[a-c][a-c-]{0,2}",],
                0..3,
            ),
        )
            .prop_map(|(a, b, c, pre)| {
                if pre.is_empty() {
                    format!("{a}.{b}.{c}")
                } else {
                    format!("{a}.{b}.{c}-{}", pre.join("."))
                }
            })
    }

    proptest! {
        #[test]
        fn parse_display_round_trips_and_equality_is_string_equality(a in version(), b in version()) {
            let (va, vb) = (Version::parse(&a).unwrap(), Version::parse(&b).unwrap());
            prop_assert_eq!(va.to_string(), a.clone());
            prop_assert_eq!(va.cmp(&vb) == Ordering::Equal, a == b);
            prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
        }

        #[test]
        fn order_is_transitive(a in version(), b in version(), c in version()) {
            let mut v = [Version::parse(&a).unwrap(), Version::parse(&b).unwrap(), Version::parse(&c).unwrap()];
            v.sort();
            prop_assert!(v[0] <= v[1] && v[1] <= v[2] && v[0] <= v[2]);
        }
    }
}
