//! Signed snapshot manifests: which snapshots a node accepts from
//! elsewhere (imports, `restoreFrom.url`).
//!
//! With `[remote] signing_key` (an ed25519 private key in PKCS#8 PEM, as
//! `openssl genpkey -algorithm ed25519` writes it; mode 0600), the node
//! signs the manifest of every snapshot it exports or uploads: a
//! `manifest.sig` beside it holds the signature of the manifest's exact
//! bytes and the id of the key. With `[remote] trusted_keys` (public keys
//! in SPKI PEM, as `openssl pkey -pubout` writes them), the node accepts
//! only manifests signed by one of them: an unsigned manifest or a bad
//! signature is refused by name, before anything else is read. The
//! manifest holds the sha256 of every file, so its signature covers them.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::fsutil::{hex, read_secret, sha256_hex};

/// The signature file of a manifest.
pub(crate) const SIGNATURE: &str = "manifest.sig";

/// `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureFile {
    /// `ed25519`.
    algorithm: String,
    /// The first 16 hex digits of the sha256 of the public key.
    key_id: String,
    /// The signature of the manifest's bytes, hex.
    signature: String,
}

/// The node's keys.
#[derive(Default, Clone)]
pub struct Trust {
    signing: Option<SigningKey>,
    trusted: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("signs", &self.signing.is_some())
            .field(
                "trusted",
                &self.trusted.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartialEq for Trust {
    fn eq(&self, other: &Self) -> bool {
        self.signing.as_ref().map(SigningKey::verifying_key)
            == other.signing.as_ref().map(SigningKey::verifying_key)
            && self.trusted == other.trusted
    }
}

impl Eq for Trust {}

/// The id of a public key.
fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

impl Trust {
    /// Reads the keys; a private key others may read, or a key file that
    /// is not a key, stops the start.
    pub fn from_files(signing_key: Option<&Path>, trusted: &[PathBuf]) -> Result<Trust, String> {
        let signing = match signing_key {
            None => None,
            Some(path) => {
                let shown = path.display();
                let pem = read_secret(path).map_err(|e| format!("remote.signing_key {e}"))?;
                Some(SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                    format!("remote.signing_key {shown}: not an ed25519 private key in PKCS#8 PEM ({e})")
                })?)
            }
        };
        let trusted = trusted
            .iter()
            .map(|path| {
                let shown = path.display();
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("remote.trusted_keys {shown}: {e}"))?;
                let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
                    format!("remote.trusted_keys {shown}: not an ed25519 public key in PEM ({e})")
                })?;
                Ok((key_id(&key), key))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Trust { signing, trusted })
    }

    /// The signature file of `manifest`, when this node signs.
    pub(crate) fn sign(&self, manifest: &[u8]) -> Option<Vec<u8>> {
        let key = self.signing.as_ref()?;
        let file = SignatureFile {
            algorithm: "ed25519".to_string(),
            key_id: key_id(&key.verifying_key()),
            signature: hex(&key.sign(manifest).to_bytes()),
        };
        serde_json::to_vec_pretty(&file).ok()
    }

    /// Accepts `manifest` with its signature file `sig` (if any), or says
    /// why not. Without trusted keys, anything is accepted.
    pub(crate) fn check(&self, manifest: &[u8], sig: Option<&[u8]>) -> Result<(), String> {
        if self.trusted.is_empty() {
            return Ok(());
        }
        let Some(sig) = sig else {
            return Err(format!(
                "the manifest is not signed, and this node accepts only manifests signed by its trusted_keys ({})",
                self.ids()
            ));
        };
        let file: SignatureFile =
            serde_json::from_slice(sig).map_err(|e| format!("{SIGNATURE} cannot be read: {e}"))?;
        if file.algorithm != "ed25519" {
            return Err(format!(
                "{SIGNATURE}: unknown algorithm {:?}",
                file.algorithm
            ));
        }
        let Some((_, key)) = self.trusted.iter().find(|(id, _)| *id == file.key_id) else {
            return Err(format!(
                "the manifest is signed by key {}, which is not among this node's trusted_keys ({})",
                file.key_id,
                self.ids()
            ));
        };
        let bytes: Vec<u8> = (0..file.signature.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(file.signature.get(i..i + 2)?, 16).ok())
            .collect();
        let signature = <[u8; 64]>::try_from(bytes.as_slice())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .map_err(|_| format!("{SIGNATURE}: the signature is not 64 bytes of hex"))?;
        key.verify(manifest, &signature).map_err(|_| {
            format!(
                "the manifest's signature by key {} is bad: the manifest was changed, or signed by another key",
                file.key_id
            )
        })
    }

    fn ids(&self) -> String {
        self.trusted
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};

    /// A key pair written as openssl would, private mode 0600.
    fn keys(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let key = SigningKey::from_bytes(&[seed; 32]);
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        std::fs::write(&private, pem.as_bytes()).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pub_pem = key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        std::fs::write(&public, pub_pem).unwrap();
        (private, public)
    }

    #[test]
    fn signed_by_a_trusted_key_passes_everything_else_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a_key, a_pub) = keys(dir.path(), "a", 1);
        let (b_key, _) = keys(dir.path(), "b", 2);
        let a = Trust::from_files(Some(&a_key), &[]).unwrap();
        let b = Trust::from_files(Some(&b_key), &[]).unwrap();
        let reader = Trust::from_files(None, &[a_pub]).unwrap();
        let manifest = br#"{"version":1}"#;
        let sig = a.sign(manifest).unwrap();
        reader.check(manifest, Some(&sig)).unwrap();
        let err = reader.check(manifest, None).unwrap_err();
        assert!(err.contains("not signed"), "{err}");
        let err = reader.check(br#"{"version":2}"#, Some(&sig)).unwrap_err();
        assert!(err.contains("bad"), "{err}");
        let err = reader
            .check(manifest, Some(&b.sign(manifest).unwrap()))
            .unwrap_err();
        assert!(err.contains("not among"), "{err}");
        // Without trusted keys, nothing is required.
        Trust::default().check(manifest, None).unwrap();
        assert!(Trust::default().sign(manifest).is_none());
    }

    #[test]
    fn a_private_key_others_can_read_or_a_file_that_is_no_key_stops_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keys(dir.path(), "a", 1);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Trust::from_files(Some(&key), &[]).unwrap_err();
        assert!(err.contains("readable by others"), "{err}");
        let err = Trust::from_files(None, &[dir.path().join("nope")]).unwrap_err();
        assert!(err.contains("trusted_keys"), "{err}");
        let err = Trust::from_files(None, std::slice::from_ref(&key)).unwrap_err();
        assert!(err.contains("not an ed25519 public key"), "{err}");
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Trust::from_files(Some(&public), &[]).unwrap_err();
        assert!(err.contains("not an ed25519 private key"), "{err}");
    }
}
