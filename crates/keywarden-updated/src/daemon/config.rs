//! The updater's configuration: `/etc/keywarden/update.toml` (board facts, shipped in the image)
//! and, optionally, the fleet's repository settings installed by provisioning on the data
//! partition (`/var/lib/keywarden/identity/update/repository.toml`).
//!
//! Parsing is strict (`deny_unknown_fields`); every error names the file and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Default path of the board's update configuration.
pub const DEFAULT_CONFIG: &str = "/etc/keywarden/update.toml";
/// Default path of the fleet's repository settings (written by factory provisioning).
pub const DEFAULT_REPOSITORY_CONFIG: &str = "/var/lib/keywarden/identity/update/repository.toml";

/// `update.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The board string a bundle's `compatible` must equal (e.g. `keywarden-qemu-x86_64`).
    pub compatible: String,
    /// The two root slots' block devices.
    pub slots: Slots,
    /// How the bootloader is told which slot to boot.
    pub bootloader: Bootloader,
    /// Trusted bundle signing keys.
    pub keys: Keys,
    /// Where the updater keeps its journal, saved manifests and TUF metadata.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where the fleet's repository settings are looked for if `[repository]` is absent.
    #[serde(default = "default_repository_config")]
    pub repository_config: PathBuf,
    /// The repository, if the image itself names one (normally provisioning does).
    #[serde(default)]
    pub repository: Option<Repository>,
}

/// `[slots]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// Slot A's device (`/dev/disk/by-partlabel/rootA`).
    #[serde(rename = "A")]
    pub a: PathBuf,
    /// Slot B's device.
    #[serde(rename = "B")]
    pub b: PathBuf,
}

/// `[bootloader]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "kind")]
pub enum Bootloader {
    /// GRUB's environment block (x86-64 EFI image).
    Grub {
        /// The `grubenv` file on the ESP.
        grubenv: PathBuf,
    },
    /// U-Boot's environment (`fw_setenv` semantics).
    Uboot {
        /// The `fw_env.config` describing where the environment lives.
        #[serde(default = "default_fw_env_config")]
        fw_env_config: PathBuf,
    },
}

/// `[keys]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Keys {
    /// Public key files, or directories whose `*.pub` files are read.
    pub trusted: Vec<PathBuf>,
    /// Accept bundles signed with the repository's TEST-ONLY key (development images only).
    #[serde(default)]
    pub allow_test_only: bool,
}

/// `[repository]`, or the whole of `repository.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Repository {
    /// Base URL of the TUF metadata (`https://...`).
    pub metadata_url: String,
    /// Base URL of the TUF targets.
    pub targets_url: String,
    /// The trusted `root.json` (the fleet's root of trust).
    pub root: PathBuf,
    /// CA certificates (PEM) trusted for the repository's HTTPS server.
    pub ca: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/keywarden/update")
}

fn default_repository_config() -> PathBuf {
    PathBuf::from(DEFAULT_REPOSITORY_CONFIG)
}

fn default_fw_env_config() -> PathBuf {
    PathBuf::from("/etc/fw_env.config")
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        Config::parse(&text).map_err(|reason| Error::Config {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and checks the text of `update.toml`.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        if config.compatible.is_empty() {
            return Err("compatible: must not be empty".into());
        }
        if config.slots.a == config.slots.b {
            return Err(format!(
                "slots: A and B are the same device {}",
                config.slots.a.display()
            ));
        }
        if config.keys.trusted.is_empty() {
            return Err(
                "keys.trusted: no trusted keys configured (bundles are never installed unsigned)"
                    .into(),
            );
        }
        if let Some(repo) = &config.repository {
            repo.check()?;
        }
        Ok(config)
    }

    /// The repository settings: `[repository]` if present, else `repository_config` if that
    /// file exists, else `None` (no repository: installs from a URL or file only).
    pub fn repository(&self) -> Result<Option<Repository>> {
        if let Some(repo) = &self.repository {
            return Ok(Some(repo.clone()));
        }
        let path = &self.repository_config;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let repo: Repository = toml::from_str(&text)
            .map_err(|e| e.message().to_owned())
            .and_then(|r: Repository| r.check().map(|()| r))
            .map_err(|reason| Error::Config {
                path: path.clone(),
                reason,
            })?;
        Ok(Some(repo))
    }

    /// The device of `slot`.
    pub fn slot_device(&self, slot: crate::boot::Slot) -> &Path {
        match slot {
            crate::boot::Slot::A => &self.slots.a,
            crate::boot::Slot::B => &self.slots.b,
        }
    }
}

impl Repository {
    fn check(&self) -> Result<(), String> {
        for (field, url) in [
            ("metadata-url", &self.metadata_url),
            ("targets-url", &self.targets_url),
        ] {
            if !url.starts_with("https://") {
                return Err(format!(
                    "repository.{field}: {url:?} is not an https:// URL"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
compatible = "keywarden-qemu-x86_64"
[slots]
A = "/dev/disk/by-partlabel/rootA"
B = "/dev/disk/by-partlabel/rootB"
[bootloader]
kind = "grub"
grubenv = "/boot/efi/EFI/BOOT/grubenv"
[keys]
trusted = ["/usr/share/keywarden/update/keys"]
"#;

    #[test]
    fn the_image_config_parses() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.compatible, "keywarden-qemu-x86_64");
        assert_eq!(
            config.bootloader,
            Bootloader::Grub {
                grubenv: "/boot/efi/EFI/BOOT/grubenv".into()
            }
        );
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/keywarden/update"));
        assert!(!config.keys.allow_test_only);
        assert_eq!(
            config.slot_device(crate::boot::Slot::B),
            Path::new("/dev/disk/by-partlabel/rootB")
        );
    }

    #[test]
    fn the_shipped_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["config/update.toml", "../../image/boards/qemu/update.toml"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            Config::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (GOOD.replace("compatible", "compatibel"), "compatibel"),
            (
                GOOD.replace("rootB", "rootA"),
                "A and B are the same device",
            ),
            (
                GOOD.replace(r#"["/usr/share/keywarden/update/keys"]"#, "[]"),
                "no trusted keys",
            ),
            (GOOD.replace("grub\"", "lilo\""), "lilo"),
            (
                format!("{GOOD}[repository]\nmetadata-url = \"http://x\"\ntargets-url = \"https://x\"\nroot = \"/r\"\nca = \"/c\"\n"),
                "repository.metadata-url",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn the_repository_comes_from_provisioning_when_the_image_names_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(GOOD).unwrap();
        config.repository_config = dir.path().join("repository.toml");
        assert_eq!(config.repository().unwrap(), None);
        std::fs::write(
            &config.repository_config,
            "metadata-url = \"https://u/metadata\"\ntargets-url = \"https://u/targets\"\nroot = \"/r.json\"\nca = \"/ca.pem\"\n",
        )
        .unwrap();
        let repo = config.repository().unwrap().unwrap();
        assert_eq!(repo.targets_url, "https://u/targets");
        std::fs::write(&config.repository_config, "metadata-url = 3\n").unwrap();
        let err = config.repository().unwrap_err().to_string();
        assert!(err.contains("repository.toml"), "{err}");
    }
}
