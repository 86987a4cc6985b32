//! Redaction at the source: pseudonyms for people, scrubbing for free text, an allowlist for
//! configuration files.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac as _};
use regex::{Captures, Regex};
use sha2::Sha256;

/// Stable pseudonyms: HMAC-SHA256 of the normalised name under a per-device secret.
#[derive(Clone)]
pub struct Pseudonyms {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(..)")
    }
}

impl Pseudonyms {
    /// Pseudonyms under `secret` (see `DeviceKey::derive_secret`).
    pub fn new(secret: &[u8; 32]) -> Pseudonyms {
        // HMAC takes keys of any length; a 32-byte key cannot be refused.
        let mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        Pseudonyms { mac }
    }

    fn tag(&self, kind: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.trim().to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{kind}-{}", hex::encode(&digest[..5]))
    }

    /// `person-` and 10 hex digits; names differing only in case or surrounding space are the
    /// same person.
    pub fn person(&self, name: &str) -> String {
        self.tag("person", name)
    }

    /// `email-` and 10 hex digits.
    pub fn email(&self, address: &str) -> String {
        self.tag("email", address)
    }
}

/// Scrubs free text (log messages, configuration strings).
#[derive(Debug, Clone)]
pub struct Scrubber {
    pseudonyms: Pseudonyms,
    /// Lower-cased name (or name part) → pseudonym of the whole name.
    people: BTreeMap<String, String>,
    names: Option<Regex>,
    rules: Rules,
}

#[derive(Debug, Clone)]
struct Rules {
    pem: Regex,
    url: Regex,
    email: Regex,
    auth_scheme: Regex,
    assignment: Regex,
    spaced: Regex,
    hex: Regex,
    blob: Regex,
    number: Regex,
}

/// Words that announce a secret value after `=` or `:`: the value is always redacted.
const SECRET_WORDS: &str = r"password|passwd|passphrase|pass|pwd|pin|pins|pin[_-]?code|token|secret|api[_-]?key|access[_-]?key|private[_-]?key|signing[_-]?key|device[_-]?key|client[_-]?key|client[_-]?secret|authorization|auth|auth[_-]?code|cookie|session[_-]?id|credentials?|badge|badge[_-]?code|card|card[_-]?number|otp";

/// Words that announce a secret value after a space (`PIN 1234`, `password is hunter2`): the
/// value is redacted when it looks like one (a digit in it, or 8 characters or more).
const SPACED_SECRET_WORDS: &str = r"password|passphrase|pin|token|secret|badge|card|otp";

impl Rules {
    fn new() -> Rules {
        let re = |pattern: &str| {
            Regex::new(pattern).unwrap_or_else(|e| unreachable!("built-in pattern: {e}"))
        };
        Rules {
            pem: re(r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\z)"),
            url: re(
                r"(?i)\b([a-z][a-z0-9+.-]*)://(?:[^\s/?#@]*@)?([^\s/?#:@]+)(:\d+)?([/?#][^\s]*)?",
            ),
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            auth_scheme: re(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
            assignment: re(&format!(
                r#"(?i)\b((?:[a-z0-9]+[_-])*(?:{SECRET_WORDS}))(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;)}}\]]+)"#
            )),
            spaced: re(&format!(
                r#"(?i)\b((?:{SPACED_SECRET_WORDS}))(\s+(?:is\s+|was\s+)?)("[^"]+"|'[^']+'|[^\s,;]+)"#
            )),
            hex: re(r"\b[0-9A-Fa-f]{32,}\b"),
            blob: re(r"[A-Za-z0-9+/_-]{40,}={0,2}"),
            number: re(r"\b\d{8,}\b"),
        }
    }
}

impl Scrubber {
    /// A scrubber that knows `people` (display names from the database): each whole name and
    /// each part of it of 4 letters or more becomes the whole name's pseudonym.
    pub fn new<I, S>(pseudonyms: Pseudonyms, people: I) -> Scrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut map = BTreeMap::new();
        for name in people {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            let pseudonym = pseudonyms.person(name);
            map.insert(name.to_lowercase(), pseudonym.clone());
            for part in name.split_whitespace() {
                if part.chars().count() >= 4 {
                    map.entry(part.to_lowercase()).or_insert(pseudonym.clone());
                }
            }
        }
        // Longest first, so "Ann Lee" wins over "Ann".
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        let names = (!keys.is_empty())
            .then(|| {
                let alternatives: Vec<String> = keys.iter().map(|k| regex::escape(k)).collect();
                Regex::new(&format!(r"(?i)\b(?:{})\b", alternatives.join("|"))).ok()
            })
            .flatten();
        Scrubber {
            pseudonyms,
            people: map,
            names,
            rules: Rules::new(),
        }
    }

    /// The pseudonym of a person's name.
    pub fn person(&self, name: &str) -> String {
        self.people
            .get(&name.trim().to_lowercase())
            .cloned()
            .unwrap_or_else(|| self.pseudonyms.person(name))
    }

    /// The pseudonym of an e-mail address.
    pub fn email(&self, address: &str) -> String {
        self.pseudonyms.email(address)
    }

    /// `text` with people's names replaced by their pseudonyms and anything that looks like a
    /// secret removed: PEM blocks, URL credentials, paths and queries (the scheme, host and
    /// port stay), e-mail addresses (pseudonyms), `Bearer`/`Basic` credentials, the value after
    /// a secret-announcing word (`password=`, `token:`, `PIN 1234`...), hex runs of 32 digits or
    /// more, base64-like runs of 40 characters or more and digit runs of 8 or more.
    pub fn text(&self, text: &str) -> String {
        let r = &self.rules;
        let s = r.pem.replace_all(text, "[redacted: PEM block]");
        let s = r.url.replace_all(&s, |c: &Captures| {
            let port = c.get(3).map_or("", |m| m.as_str());
            let rest = c.get(4).map_or("", |m| m.as_str());
            let tail = if rest.is_empty() || rest == "/" {
                rest
            } else {
                "/[redacted]"
            };
            format!("{}://{}{port}{tail}", &c[1], &c[2])
        });
        let s = r
            .email
            .replace_all(&s, |c: &Captures| self.pseudonyms.email(&c[0]));
        let s = r.auth_scheme.replace_all(&s, "$1 [redacted]");
        let s = r.assignment.replace_all(&s, "$1$2[redacted]");
        let s = r.spaced.replace_all(&s, |c: &Captures| {
            let value = &c[3];
            let trimmed = value.trim_matches(|ch| ch == '"' || ch == '\'');
            if trimmed == "[redacted]" {
                return c[0].to_owned();
            }
            if trimmed.chars().any(|ch| ch.is_ascii_digit()) || trimmed.chars().count() >= 8 {
                format!("{}{}[redacted]", &c[1], &c[2])
            } else {
                c[0].to_owned()
            }
        });
        let s = match &self.names {
            Some(names) => names.replace_all(&s, |c: &Captures| {
                self.people
                    .get(&c[0].to_lowercase())
                    .cloned()
                    .unwrap_or_else(|| "[redacted: name]".to_owned())
            }),
            None => s,
        };
        let s = r.hex.replace_all(&s, "[redacted: hex]");
        let s = r.blob.replace_all(&s, "[redacted: blob]");
        let s = r.number.replace_all(&s, "[redacted: number]");
        s.into_owned()
    }
}

impl Scrubber {
    /// A JSON document (a report written by Keywarden itself) with every string scrubbed and
    /// every member whose name looks secret or holds PEM text (certificates, requests) removed.
    pub fn json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter(|(k, _)| {
                        let k = k.to_lowercase();
                        !["pem", "csr", "secret", "password", "token", "private"]
                            .iter()
                            .any(|w| k.contains(w))
                    })
                    .map(|(k, v)| (k, self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Configuration keys whose string values hold no secrets (board wiring, paths, hosts, kinds).
/// Their values still go through [`Scrubber::text`]; every other string becomes
/// `"[redacted]"`. Numbers, booleans and dates are kept, except under secret-looking keys.
const SAFE_STRING_KEYS: &[&str] = &[
    "model",
    "name",
    "line",
    "device",
    "device_name",
    "device-name",
    "port",
    "terminator",
    "kind",
    "compatible",
    "grubenv",
    "fw-env-config",
    "trusted",
    "A",
    "B",
    "state-dir",
    "repository-config",
    "time-zone",
    "tls",
    "alerts",
    "cabinet",
    "address",
    "host",
    "ca-file",
    "ca",
    "root",
    "client-cert",
    "client-key",
    "password-file",
    "secret-file",
    "metadata-url",
    "targets-url",
    "url",
    "layout",
    "level",
];

fn secret_key(key: &str) -> bool {
    let k = key.to_lowercase();
    let k = k.trim_end_matches("-file").trim_end_matches("_file");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "pin",
        "credential",
        "auth",
        "cookie",
        "apikey",
        "api-key",
        "api_key",
        "username",
        "user",
        "header",
        "headers",
    ]
    .iter()
    .any(|w| k == *w || k.ends_with(&format!("-{w}")) || k.ends_with(&format!("_{w}")))
}

fn redact_value(key: &str, value: &mut toml::Value, scrub: &Scrubber) {
    let secret = secret_key(key);
    match value {
        toml::Value::String(s) => {
            *s = if secret || !SAFE_STRING_KEYS.contains(&key) {
                "[redacted]".to_owned()
            } else {
                scrub.text(s)
            };
        }
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Datetime(_) => {
            if secret {
                *value = toml::Value::String("[redacted]".to_owned());
            }
        }
        toml::Value::Boolean(_) => {}
        toml::Value::Array(items) => {
            for item in items {
                redact_value(key, item, scrub);
            }
        }
        toml::Value::Table(table) => {
            if secret {
                *value = toml::Value::String("[redacted]".to_owned());
                return;
            }
            for (k, v) in table.iter_mut() {
                redact_value(k, v, scrub);
            }
        }
    }
}

/// A configuration file as support may see it: the same structure and keys, numbers and
/// booleans as they are, strings only under [`SAFE_STRING_KEYS`] (and scrubbed), everything
/// under a secret-looking key (`password`, `token`, `username`, `headers`...) replaced by
/// `"[redacted]"`. A file that does not parse is not included at all: only its size and the
/// parse error's position are, since its text may be anything.
pub fn redact_toml(text: &str, scrub: &Scrubber) -> String {
    match text.parse::<toml::Table>() {
        Ok(table) => {
            let mut value = toml::Value::Table(table);
            redact_value("", &mut value, scrub);
            toml::to_string_pretty(&value)
                .unwrap_or_else(|e| format!("# redacted copy could not be written: {e}\n"))
        }
        Err(e) => {
            let at = e
                .span()
                .map_or_else(String::new, |s| format!(" at byte {}", s.start));
            format!(
                "# not valid TOML{at}; its {} bytes are left out\n",
                text.len()
            )
        }
    }
}
