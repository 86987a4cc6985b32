//! The OTA bundle of the root file system (format: ota/FORMAT.md, crate keywarden-bundle): the
//! squashfs as the `rootfs` payload, signed with the manufacturer's key, or the repository's
//! TEST-ONLY key (with a warning) when none is given. Deterministic: same inputs and key, same
//! bytes (ed25519 signatures are deterministic, `created` is SOURCE_DATE_EPOCH).

use super::{Build, ImageArgs};
use crate::error::{Error, Result};
use keywarden_bundle::{
    create as create_bundle, keys, verify_file, CreateSpec, Keyring, SigningKey,
};
use std::fs;
use std::io::BufWriter;
use std::path::Path;

/// The repository's TEST-ONLY signing key.
pub const TEST_ONLY_KEY: &str = "ota/keys/test-only/test-only-signing.pem";

/// The key that signs this build's bundle: `--signing-key`, or the repository's TEST-ONLY key
/// with a warning.
pub fn signing_key(build: &Build, args: &ImageArgs) -> Result<SigningKey> {
    let key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| build.src.join(TEST_ONLY_KEY));
    let key = keys::load_signing_key(&key_path).map_err(|e| {
        Error::Setup(format!(
            "loading the bundle signing key {}: {e}",
            key_path.display()
        ))
    })?;
    if keys::is_test_only_key(&key.verifying_key()) {
        eprintln!(
            "image: WARNING: the OTA bundle is signed with the repository's TEST-ONLY key \
             ({TEST_ONLY_KEY}); pass --signing-key with the fleet's key for a real release"
        );
    }
    Ok(key)
}

/// The public half of `key` as the image's trusted bundle key file (SPKI PEM).
pub fn public_pem(key: &SigningKey) -> Result<String> {
    keys::public_key_pem(&key.verifying_key()).map_err(|e| {
        Error::Setup(format!(
            "encoding the bundle signing key's public half: {e}"
        ))
    })
}

/// Signs the root file system into `out` (written to a temporary name, renamed when complete).
pub fn create(build: &Build, rootfs: &Path, out: &Path, key: &SigningKey) -> Result<()> {
    let spec = CreateSpec {
        version: build.version.clone(),
        compatible: build.compatible(),
        created: build.epoch,
        build_id: None,
        payloads: vec![("rootfs".to_owned(), rootfs.to_path_buf())],
    };
    let partial = out.with_extension("kwb.partial");
    let file =
        fs::File::create(&partial).map_err(Error::io(format!("creating {}", partial.display())))?;
    let mut writer = BufWriter::new(file);
    create_bundle(&spec, key, &mut writer)
        .map_err(|e| Error::Setup(format!("creating the OTA bundle: {e}")))?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::Setup(format!("writing {}: {e}", partial.display())))?;
    file.sync_all()
        .map_err(Error::io(format!("syncing {}", partial.display())))?;
    // Read it back as the updater will: signature, then every chunk.
    let keyring = Keyring::from_keys([key.verifying_key()]);
    verify_file(&partial, &keyring)
        .map_err(|e| Error::Setup(format!("the bundle just made does not verify: {e}")))?;
    fs::rename(&partial, out).map_err(Error::io(format!("renaming to {}", out.display())))?;
    Ok(())
}
