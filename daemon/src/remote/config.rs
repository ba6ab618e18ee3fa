//! `[remote]` in the config file, and the credentials file it names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fsutil::read_secret;

/// `[remote]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFileConfig {
    /// `s3://bucket/prefix`: where this node's snapshots go.
    pub url: Option<String>,
    /// The store's endpoint (`http://127.0.0.1:3900` for a Garage on
    /// loopback); unset: AWS S3 of `region`.
    pub endpoint: Option<String>,
    /// The store's region (Garage's default is `garage`).
    pub region: Option<String>,
    /// An AWS shared-credentials file (`[default]`, `aws_access_key_id`,
    /// `aws_secret_access_key`), mode 0600.
    pub credentials_file: Option<PathBuf>,
    /// Seconds before a failed upload is tried again (default 30).
    pub retry_secs: Option<u64>,
    /// This node's ed25519 private key (PKCS#8 PEM, mode 0600): the
    /// manifests it exports and uploads are signed.
    pub signing_key: Option<PathBuf>,
    /// Public keys (SPKI PEM files) whose signatures this node accepts;
    /// when set, unsigned snapshots from elsewhere are refused.
    pub trusted_keys: Option<Vec<PathBuf>>,
}

/// Access keys, kept out of every log and debug print.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Credentials {
    pub(crate) fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

/// The resolved `[remote]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The bucket.
    pub bucket: String,
    /// Key prefix under the bucket (may be empty).
    pub prefix: String,
    /// The endpoint, if not AWS's.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// The keys.
    pub credentials: Credentials,
    /// When a failed upload is tried again.
    pub retry_after: std::time::Duration,
}

impl RemoteConfig {
    /// `None` when no `url` is set (no remote store); else every value
    /// checked, and the credentials read, so that a mistake stops the start.
    pub fn from_file(f: &RemoteFileConfig) -> Result<Option<RemoteConfig>, String> {
        let Some(url) = &f.url else {
            if f.endpoint.is_some() || f.credentials_file.is_some() {
                return Err("remote: endpoint or credentials_file given without url".to_string());
            }
            return Ok(None);
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("remote.url {url:?} must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(format!(
                "remote.url {url:?}: {bucket:?} is not a bucket name"
            ));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|s| s == "..") {
            return Err(format!("remote.url {url:?}: the prefix may not hold .."));
        }
        if let Some(e) = &f.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!(
                    "remote.endpoint {e:?} must be an http:// or https:// URL"
                ));
            }
        }
        let path = f
            .credentials_file
            .as_deref()
            .ok_or("remote.credentials_file: required with remote.url")?;
        Ok(Some(RemoteConfig {
            bucket: bucket.to_string(),
            prefix,
            endpoint: f.endpoint.clone(),
            region: f.region.clone().unwrap_or_else(|| "us-east-1".to_string()),
            credentials: read_credentials(path)?,
            retry_after: std::time::Duration::from_secs(f.retry_secs.unwrap_or(30).max(1)),
        }))
    }
}

/// Reads the `[default]` keys of an AWS shared-credentials file, which
/// must be readable by its owner only.
fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text = read_secret(path).map_err(|e| format!("remote.credentials_file {e}"))?;
    parse_credentials(&text).map_err(|e| format!("remote.credentials_file {}: {e}", path.display()))
}

/// The `[default]` profile of the shared-credentials format (INI: a
/// `[profile]` line, then `key = value` lines; `#` and `;` comments).
fn parse_credentials(text: &str) -> Result<Credentials, String> {
    let mut section = String::new();
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section != "default" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err("a line of [default] is not key = value".to_string());
        };
        match key.trim() {
            "aws_access_key_id" => id = Some(value.trim().to_string()),
            "aws_secret_access_key" => secret = Some(value.trim().to_string()),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Credentials {
            access_key_id: a,
            secret_access_key: s,
        }),
        _ => Err("[default] needs aws_access_key_id and aws_secret_access_key".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        use std::os::unix::fs::PermissionsExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    const KEYS: &str = "# keys\n[other]\naws_access_key_id = NO\n\n[default]\naws_access_key_id = GK123\naws_secret_access_key = s3cr3t\n";

    #[test]
    fn the_default_profile_is_read_and_never_shown() {
        let f = file(KEYS, 0o600);
        let c = RemoteConfig::from_file(&RemoteFileConfig {
            url: Some("s3://snaps/node-a/".into()),
            endpoint: Some("http://127.0.0.1:3900".into()),
            region: Some("garage".into()),
            credentials_file: Some(f.path().to_path_buf()),
            retry_secs: None,
            signing_key: None,
            trusted_keys: None,
        })
        .unwrap()
        .unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("snaps", "node-a"));
        assert_eq!(c.credentials.access_key_id(), "GK123");
        assert_eq!(c.credentials.secret_access_key(), "s3cr3t");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("GK123"),
            "{shown}"
        );
    }

    #[test]
    fn a_file_others_can_read_and_bad_settings_stop_the_start() {
        let open = file(KEYS, 0o644);
        let cfg = |url: &str, path: &Path| RemoteFileConfig {
            url: Some(url.into()),
            endpoint: None,
            region: None,
            credentials_file: Some(path.to_path_buf()),
            retry_secs: None,
            signing_key: None,
            trusted_keys: None,
        };
        let err = RemoteConfig::from_file(&cfg("s3://b", open.path())).unwrap_err();
        assert!(
            err.contains("readable by others") && err.contains("0644"),
            "{err}"
        );
        let ok = file(KEYS, 0o600);
        for (url, needle) in [
            ("http://b/p", "s3://"),
            ("s3://", "bucket"),
            ("s3://Bad_Bucket/p", "bucket"),
            ("s3://b/../x", ".."),
        ] {
            let err = RemoteConfig::from_file(&cfg(url, ok.path())).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
        }
        let missing = file("[default]\naws_access_key_id = A\n", 0o600);
        let err = RemoteConfig::from_file(&cfg("s3://b", missing.path())).unwrap_err();
        assert!(err.contains("aws_secret_access_key"), "{err}");
        assert_eq!(
            RemoteConfig::from_file(&RemoteFileConfig::default()).unwrap(),
            None
        );
    }
}
