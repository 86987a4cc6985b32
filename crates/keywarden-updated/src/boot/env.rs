//! The variables of a bootloader environment, in their stored order, with comment lines kept
//! (GRUB's block may carry `#` lines, e.g. Debian's "Do not edit" warning).

/// One line/entry of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `name=value` (raw bytes: unknown variables are kept byte for byte).
    Var {
        /// The name (never contains `=`).
        name: Vec<u8>,
        /// The value, unescaped.
        value: Vec<u8>,
    },
    /// A GRUB comment line, without its newline (starts with `#`).
    Comment(Vec<u8>),
}

/// An environment: entries in stored order. Setting an existing variable keeps its place; a new
/// one goes at the end (as GRUB's `grub_envblk_set` and `fw_setenv` do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvVars {
    pub(crate) entries: Vec<Entry>,
}

impl EnvVars {
    /// The value of `name`, if present (the first occurrence, as both bootloaders' lookups).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find_map(|e| match e {
            Entry::Var { name: n, value } if n.as_slice() == name.as_bytes() => {
                Some(value.as_slice())
            }
            _ => None,
        })
    }

    /// Set `name` to `value`, keeping its place if present (later duplicates are dropped).
    pub(crate) fn set(&mut self, name: &str, value: &[u8]) {
        let mut seen = false;
        self.entries.retain_mut(|e| match e {
            Entry::Var { name: n, value: v } if n.as_slice() == name.as_bytes() => {
                if seen {
                    return false;
                }
                seen = true;
                *v = value.to_vec();
                true
            }
            _ => true,
        });
        if !seen {
            self.entries.push(Entry::Var {
                name: name.as_bytes().to_vec(),
                value: value.to_vec(),
            });
        }
    }

    /// The variables (name, value) in order, comments skipped.
    pub(crate) fn vars(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Var { name, value } => Some((name.as_slice(), value.as_slice())),
            Entry::Comment(_) => None,
        })
    }
}
