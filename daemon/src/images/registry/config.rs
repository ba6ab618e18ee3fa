//! `[registries."HOST[:PORT]"]` in the config file: per registry host, the
//! credentials this node pulls with and how its TLS is checked. Every file
//! named is read when the daemon starts, so that a mistake stops the start
//! rather than the first pull.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use atelet_api::ImageRef;
use base64::Engine as _;
use serde::Deserialize;

use crate::fsutil::read_secret;

/// One `[registries."HOST[:PORT]"]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFileConfig {
    /// A Docker `config.json` (`{"auths": {"HOST": {"auth": base64 of
    /// "user:password"}}}`), mode 0600: HTTP basic credentials, or the
    /// username and password a token service takes.
    pub auth_file: Option<PathBuf>,
    /// A file holding one bearer token (mode 0600), sent as is.
    pub token_file: Option<PathBuf>,
    /// PEM certificates of CAs trusted for this host, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP, no TLS: for test registries on loopback only.
    pub insecure: Option<bool>,
}

/// How this node identifies itself to one registry. Secrets never show in
/// a debug print or a log line.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// HTTP basic (also what a token service is asked with).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, …)"),
            Credentials::Bearer(_) => f.write_str("Bearer(…)"),
        }
    }
}

/// One registry host, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Credentials.
    pub credentials: Credentials,
    /// PEM certificates (one per entry) trusted besides the system roots.
    pub ca_certificates: Vec<Vec<u8>>,
    /// Plain HTTP.
    pub insecure: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            credentials: Credentials::Anonymous,
            ca_certificates: Vec::new(),
            insecure: false,
        }
    }
}

/// Every configured registry host; a host without a table is pulled from
/// anonymously over verified TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    hosts: HashMap<String, RegistryConfig>,
}

impl Registries {
    /// Reads and checks every table; a host name that is not one, a file
    /// that cannot be read or is readable by others, or both `auth_file`
    /// and `token_file` on one host stop the start.
    pub fn from_file(tables: &BTreeMap<String, RegistryFileConfig>) -> Result<Registries, String> {
        let mut hosts = HashMap::new();
        for (host, t) in tables {
            let key = format!("registries.{host:?}");
            // The host as a registry reference names it.
            match ImageRef::parse(&format!("docker://{host}/x")) {
                Ok(r) if r.registry_host() == Some(host.as_str()) => {}
                _ => return Err(format!("{key}: {host:?} is not HOST or HOST:PORT")),
            }
            let credentials = match (&t.auth_file, &t.token_file) {
                (Some(_), Some(_)) => {
                    return Err(format!("{key}: give auth_file or token_file, not both"))
                }
                (Some(path), None) => {
                    let text = read_secret(path).map_err(|e| format!("{key}.auth_file {e}"))?;
                    basic_from_docker_config(&text, host)
                        .map_err(|e| format!("{key}.auth_file {}: {e}", path.display()))?
                }
                (None, Some(path)) => {
                    let text = read_secret(path).map_err(|e| format!("{key}.token_file {e}"))?;
                    let token = text.trim();
                    if token.is_empty() || token.contains(char::is_whitespace) {
                        return Err(format!(
                            "{key}.token_file {}: expected one token",
                            path.display()
                        ));
                    }
                    Credentials::Bearer(token.to_string())
                }
                (None, None) => Credentials::Anonymous,
            };
            let ca_certificates = match &t.ca_file {
                Some(path) => read_ca(path).map_err(|e| format!("{key}.ca_file {e}"))?,
                None => Vec::new(),
            };
            let insecure = t.insecure.unwrap_or(false);
            if insecure {
                if !ca_certificates.is_empty() {
                    return Err(format!(
                        "{key}: insecure = true is plain HTTP; a ca_file means nothing there"
                    ));
                }
                tracing::warn!(
                    registry = %host,
                    "registry {host} is insecure: images and credentials travel in plain HTTP, unauthenticated; use this for test registries on loopback only"
                );
            }
            hosts.insert(
                host.clone(),
                RegistryConfig {
                    credentials,
                    ca_certificates,
                    insecure,
                },
            );
        }
        Ok(Registries { hosts })
    }

    /// The settings of `host` (anonymous, verified TLS when it has no table).
    pub fn get(&self, host: &str) -> RegistryConfig {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}

/// The certificates of a PEM file, one entry each (the TLS client takes
/// them one at a time).
fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let certs: Vec<Vec<u8>> = text
        .match_indices(BEGIN)
        .map(|(start, _)| {
            let rest = &text[start..];
            let end = rest
                .find("-----END CERTIFICATE-----")
                .map_or(rest.len(), |e| e + "-----END CERTIFICATE-----".len());
            format!("{}\n", &rest[..end]).into_bytes()
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{shown}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The credentials a Docker `config.json` holds for `host`: its `auths`
/// entry under the host as written, or as a URL (`https://HOST`,
/// `https://HOST/v2/`), with `auth` (base64 of `user:password`) or
/// `username` and `password`.
fn basic_from_docker_config(text: &str, host: &str) -> Result<Credentials, String> {
    #[derive(Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: BTreeMap<String, AuthEntry>,
    }
    #[derive(Deserialize)]
    struct AuthEntry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|e| format!("not a Docker config.json: {e}"))?;
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| {
            let k = k
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let k = k.split('/').next().unwrap_or(k);
            k == host
        })
        .map(|(_, e)| e)
        .ok_or_else(|| format!("auths has no entry for {host}"))?;
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auths.{host:?}.auth is not base64: {e}"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| format!("auths.{host:?}.auth is not UTF-8 once decoded"))?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auths.{host:?}.auth is not user:password"))?;
            (u.to_string(), p.to_string())
        }
        (None, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => {
            return Err(format!(
                "auths.{host:?} has neither auth nor username and password"
            ))
        }
    };
    if username.is_empty() {
        return Err(format!("auths.{host:?}: the user name is empty"));
    }
    Ok(Credentials::Basic { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn tables(host: &str, t: RegistryFileConfig) -> BTreeMap<String, RegistryFileConfig> {
        BTreeMap::from([(host.to_string(), t)])
    }

    #[test]
    fn docker_config_credentials_are_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        // base64("agent:s3cr3t:with:colons")
        let auth = base64::engine::general_purpose::STANDARD.encode("agent:s3cr3t:with:colons");
        let cfg = format!(
            r#"{{"auths": {{"other:1": {{"auth": "eDp5"}}, "https://reg.example:5000/v2/": {{"auth": "{auth}"}}}}}}"#
        );
        let path = file(dir.path(), "config.json", &cfg, 0o600);
        let r = Registries::from_file(&tables(
            "reg.example:5000",
            RegistryFileConfig {
                auth_file: Some(path),
                ..Default::default()
            },
        ))
        .unwrap();
        let got = r.get("reg.example:5000");
        assert_eq!(
            got.credentials,
            Credentials::Basic {
                username: "agent".into(),
                password: "s3cr3t:with:colons".into()
            }
        );
        assert!(!format!("{got:?}").contains("s3cr3t"));
        // A host without a table: anonymous over verified TLS.
        assert_eq!(r.get("elsewhere.example"), RegistryConfig::default());
    }

    #[test]
    fn mistakes_in_the_tables_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let open = file(dir.path(), "open.json", r#"{"auths":{}}"#, 0o644);
        let token = file(dir.path(), "token", "abc\n", 0o600);
        let no_entry = file(dir.path(), "none.json", r#"{"auths":{}}"#, 0o600);
        let not_pem = file(dir.path(), "ca.pem", "hello", 0o644);
        let cases: Vec<(&str, RegistryFileConfig, &str)> = vec![
            ("bad host!", RegistryFileConfig::default(), "is not HOST"),
            (
                "h:5000",
                RegistryFileConfig {
                    auth_file: Some(open),
                    ..Default::default()
                },
                "readable by others",
            ),
            (
                "h:5000",
                RegistryFileConfig {
                    auth_file: Some(no_entry.clone()),
                    token_file: Some(token.clone()),
                    ..Default::default()
                },
                "not both",
            ),
            (
                "h:5000",
                RegistryFileConfig {
                    auth_file: Some(no_entry),
                    ..Default::default()
                },
                "no entry for h:5000",
            ),
            (
                "h:5000",
                RegistryFileConfig {
                    ca_file: Some(not_pem),
                    ..Default::default()
                },
                "no PEM certificate",
            ),
        ];
        for (host, t, want) in cases {
            let err = Registries::from_file(&tables(host, t)).unwrap_err();
            assert!(err.contains(want), "{host}: {err}");
        }
        let r = Registries::from_file(&tables(
            "h:5000",
            RegistryFileConfig {
                token_file: Some(token),
                insecure: Some(true),
                ..Default::default()
            },
        ))
        .unwrap();
        let h = r.get("h:5000");
        assert!(h.insecure);
        assert_eq!(h.credentials, Credentials::Bearer("abc".into()));
    }
}
