//! Images from registries, over the OCI distribution API (through the
//! `oci-client` crate): a reference resolved to the one manifest for this
//! node's platform, its config fetched, and its layers streamed, each
//! chunk as it arrives, into the same readers and extraction as a local
//! layout's ([`super::oci::LayerReader`]).
//!
//! Nothing the registry says is trusted until checked: a manifest or index
//! fetched by digest must hash to it; a manifest fetched by tag is named by
//! its own hash from then on (the cache key and the actor's pin); the
//! config and every layer are checked against their descriptors' size and
//! digest, the layers also against the config's diff_ids, as for layouts.
//!
//! Registry answers become [`RegistryError`]s by what the client can do
//! about them: a name the registry does not know (fix the reference), a
//! refusal of this node's credentials (fix the node's `[registries]`), a
//! registry that cannot be reached or fails (try again later).

pub mod config;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

pub use self::config::{Credentials, Registries, RegistryConfig, RegistryFileConfig};
use super::oci::{
    check_blob, media_type, parse_index, pick_from_index, Blob, Descriptor, Digest, Layer,
    OciError, MAX_JSON_BLOB,
};

/// How deep indexes may nest (as for layouts).
const MAX_INDEX_DEPTH: usize = 4;

/// Chunks of a layer buffered between the download and the extraction.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A TCP connect that takes longer means the registry is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A registry that sends nothing for this long is given up on.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of talking to a registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The registry does not know the repository, tag or digest.
    #[error("registry {host}: {reference} was not found ({detail})")]
    NotFound {
        /// `host[:port]`.
        host: String,
        /// What was asked for.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry refused this node's credentials (or their absence).
    #[error("registry {host} refused access to {repository} ({detail}); check [registries.\"{host}\"] in the node's config")]
    Denied {
        /// `host[:port]`.
        host: String,
        /// The repository.
        repository: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry cannot be reached, timed out, or failed (5xx, 429).
    #[error("registry {host} is unavailable, try again later: {detail}")]
    Unavailable {
        /// `host[:port]`.
        host: String,
        /// What happened.
        detail: String,
    },
    /// The registry answered something the distribution spec does not
    /// allow (or content that fails its digest).
    #[error("registry {host}: {detail}")]
    Protocol {
        /// `host[:port]`.
        host: String,
        /// What was wrong.
        detail: String,
    },
    /// The HTTP client could not be built from the host's settings.
    #[error("registry {host}: setting up the client: {detail}")]
    Client {
        /// `host[:port]`.
        host: String,
        /// What failed.
        detail: String,
    },
}

/// What the client should do about a registry error, for the one place
/// that turns errors into statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFault {
    /// The reference (or the image it names) is wrong: 400.
    Reference,
    /// The registry refused the node's credentials: 403.
    Credentials,
    /// Try again later: 503.
    Unavailable,
    /// This daemon failed: 500.
    Daemon,
}

impl RegistryError {
    /// Whose fault it is.
    pub fn fault(&self) -> RegistryFault {
        match self {
            RegistryError::NotFound { .. } | RegistryError::Protocol { .. } => {
                RegistryFault::Reference
            }
            RegistryError::Denied { .. } => RegistryFault::Credentials,
            RegistryError::Unavailable { .. } => RegistryFault::Unavailable,
            RegistryError::Client { .. } => RegistryFault::Daemon,
        }
    }
}

/// A registry reference, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`.
    pub host: String,
    /// Repository.
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Digest, which wins over the tag.
    pub digest: Option<String>,
}

impl RegistryRef {
    /// The same repository, at `digest`.
    pub fn at(&self, digest: &Digest) -> RegistryRef {
        RegistryRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    fn client_ref(&self) -> Reference {
        match &self.digest {
            Some(d) => {
                Reference::with_digest(self.host.clone(), self.repository.clone(), d.clone())
            }
            None => Reference::with_tag(
                self.host.clone(),
                self.repository.clone(),
                self.tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        }
    }

    fn at_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.host.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    fn shown(&self) -> String {
        let mut s = format!("{}/{}", self.host, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The manifest a reference resolved to on this node.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedManifest {
    /// Its descriptor (digest, size and media type as fetched).
    pub desc: Descriptor,
    /// Its bytes, checked against `desc`.
    pub bytes: Vec<u8>,
}

/// How far one pull is, shared between the download tasks that count and
/// whoever reports it.
#[derive(Debug)]
pub struct PullState {
    /// The reference as given.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Bytes of config and layers the manifest lists.
    pub total: u64,
    done: AtomicU64,
    finished: AtomicBool,
    wake: tokio::sync::Notify,
}

impl PullState {
    pub(crate) fn new(reference: &str, digest: &Digest, total: u64) -> PullState {
        PullState {
            reference: reference.to_string(),
            digest: digest.to_string(),
            total,
            done: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Bytes received so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether the pull has ended (either way).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits until the pull ends or `period` passes.
    pub async fn wait(&self, period: Duration) {
        let notified = self.wake.notified();
        if self.is_finished() {
            return;
        }
        let _ = tokio::time::timeout(period, notified).await;
    }

    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }
}

/// Told when a pull starts; reports its progress (the service logs
/// `pulling` events from it).
pub type PullObserver = Arc<dyn Fn(Arc<PullState>) + Send + Sync>;

/// The registries this node pulls from: their settings, and one HTTP
/// client per host (so tokens are reused across pulls).
pub struct RegistryClients {
    registries: Registries,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl std::fmt::Debug for RegistryClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClients")
            .field("registries", &self.registries)
            .finish_non_exhaustive()
    }
}

/// Enough of a manifest or index to tell which it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl RegistryClients {
    /// Clients for `registries` (built on first use).
    pub fn new(registries: Registries) -> RegistryClients {
        RegistryClients {
            registries,
            clients: Mutex::default(),
        }
    }

    fn client(&self, host: &str) -> Result<(Arc<Client>, RegistryAuth), RegistryError> {
        let settings = self.registries.get(host);
        let auth = match &settings.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(host) {
            return Ok((c.clone(), auth));
        }
        let config = ClientConfig {
            protocol: if settings.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: settings
                .ca_certificates
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            // Indexes are resolved here, against the host's platform.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = Arc::new(Client::try_from(config).map_err(|e| RegistryError::Client {
            host: host.to_string(),
            detail: e.to_string(),
        })?);
        clients.insert(host.to_string(), client.clone());
        Ok((client, auth))
    }

    fn warn_if_insecure(&self, host: &str) {
        if self.registries.get(host).insecure {
            tracing::warn!(registry = %host, "pulling from {host} over plain HTTP (insecure = true): no TLS, nothing authenticates the registry");
        }
    }

    /// Resolves `r` to the manifest for this node: an index (or manifest
    /// list) is followed to the entry for linux and this architecture.
    pub(crate) async fn resolve(
        &self,
        r: &RegistryRef,
    ) -> Result<ResolvedManifest, ImagePullError> {
        self.warn_if_insecure(&r.host);
        let (client, auth) = self.client(&r.host)?;
        let accept = [
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST,
            media_type::OCI_INDEX,
            media_type::DOCKER_LIST,
        ];
        let (bytes, _) = client
            .pull_manifest_raw(&r.client_ref(), &auth, &accept)
            .await
            .map_err(|e| classify(r, &r.shown(), e))?;
        let digest = Digest::of(&bytes);
        if let Some(want) = &r.digest {
            if *want != digest.to_string() {
                return Err(OciError::Mismatch {
                    what: "manifest".to_string(),
                    digest: Digest::parse(want)?,
                    expected: "that digest".to_string(),
                    actual: digest.to_string(),
                }
                .into());
            }
        }
        let mut desc = Descriptor {
            media_type: kind_of(&bytes, &digest)?,
            digest: digest.to_string(),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let mut bytes = bytes;
        for _ in 0..MAX_INDEX_DEPTH {
            match desc.media_type.as_str() {
                media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => {
                    return Ok(ResolvedManifest { desc, bytes })
                }
                _ => {
                    let what = format!("index {}", desc.digest);
                    let index = parse_index(&what, &bytes)?;
                    let entry = pick_from_index(&index, None, &what)?;
                    if entry.size > MAX_JSON_BLOB {
                        return Err(OciError::Invalid(format!(
                            "{what}: manifest {} has {} bytes, more than the {MAX_JSON_BLOB} accepted",
                            entry.digest, entry.size
                        ))
                        .into());
                    }
                    let (next, _) = client
                        .pull_manifest_raw(&r.at_digest(&entry.digest), &auth, &accept)
                        .await
                        .map_err(|e| classify(r, &format!("{what} → {}", entry.digest), e))?;
                    check_blob(
                        &format!("manifest {} of {what}", entry.digest),
                        &entry,
                        &next,
                    )?;
                    bytes = next;
                    desc = entry;
                }
            }
        }
        Err(OciError::Invalid(format!("indexes nest more than {MAX_INDEX_DEPTH} deep")).into())
    }

    /// Fetches a small blob (the config) whole, checked against `desc`.
    pub(crate) async fn fetch_small(
        &self,
        r: &RegistryRef,
        what: &str,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ImagePullError> {
        if desc.size > MAX_JSON_BLOB {
            return Err(OciError::Invalid(format!(
                "{what} {} has {} bytes, more than the {MAX_JSON_BLOB} accepted",
                desc.digest, desc.size
            ))
            .into());
        }
        let (client, auth) = self.client(&r.host)?;
        client.store_auth_if_needed(&r.host, &auth).await;
        let mut stream = client
            .pull_blob_stream(&r.client_ref(), &blob_descriptor(desc))
            .await
            .map_err(|e| classify(r, &format!("{what} {}", desc.digest), e))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| classify_io(r, &format!("{what} {}", desc.digest), &e))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > desc.size {
                break;
            }
        }
        check_blob(what, desc, &bytes)?;
        Ok(bytes)
    }

    /// Starts the download of a layer on the runtime `rt`; gives a
    /// blocking reader of its bytes as they arrive. A failure of the
    /// download is kept in `failure` (the reader only sees an I/O error),
    /// so that the pull answers with what actually went wrong.
    pub(crate) fn open_layer(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        r: &RegistryRef,
        layer: &Layer,
        progress: Arc<PullState>,
        failure: Arc<Mutex<Option<RegistryError>>>,
    ) -> Blob {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ()>>(CHUNKS_IN_FLIGHT);
        let this = self.clone();
        let r = r.clone();
        let desc = OciDescriptor {
            digest: layer.digest.to_string(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let what = format!("layer {} ({})", layer.index, layer.digest);
        let fail = failure.clone();
        let record = move |e: RegistryError| {
            let mut slot = fail.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        rt.spawn(async move {
            let (client, auth) = match this.client(&r.host) {
                Ok(c) => c,
                Err(e) => {
                    record(e);
                    let _ = tx.send(Err(())).await;
                    return;
                }
            };
            client.store_auth_if_needed(&r.host, &auth).await;
            let mut stream = match client.pull_blob_stream(&r.client_ref(), &desc).await {
                Ok(s) => s,
                Err(e) => {
                    record(classify(&r, &what, e));
                    let _ = tx.send(Err(())).await;
                    return;
                }
            };
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        progress.add(bytes.len() as u64);
                        // The reader is gone: the unpack stopped.
                        if tx.send(Ok(bytes)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        record(classify_io(&r, &what, &e));
                        let _ = tx.send(Err(())).await;
                        return;
                    }
                }
            }
        });
        Box::new(ChunkReader {
            rx,
            chunk: Bytes::new(),
        })
    }
}

/// An error of a pull: the registry's, or the image's (as for layouts).
#[derive(Debug, thiserror::Error)]
pub enum ImagePullError {
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// What it sent is not a usable image.
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// The blocking side of a layer download.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, ()>>,
    chunk: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(())) => {
                    return Err(io::Error::other("the layer's download failed"));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

fn blob_descriptor(desc: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// Whether a fetched manifest is an image manifest or an index: its
/// `mediaType`, else its shape (OCI makes the field optional).
fn kind_of(bytes: &[u8], digest: &Digest) -> Result<String, OciError> {
    let kind: Kind = serde_json::from_slice(bytes)
        .map_err(|e| OciError::Invalid(format!("manifest {digest}: {e}")))?;
    match kind.media_type.as_deref() {
        Some(
            m @ (media_type::OCI_MANIFEST
            | media_type::DOCKER_MANIFEST
            | media_type::OCI_INDEX
            | media_type::DOCKER_LIST),
        ) => Ok(m.to_string()),
        Some(other) => Err(OciError::Invalid(format!(
            "manifest {digest} has mediaType {other:?}, which is not an image manifest or index"
        ))),
        None if kind.manifests.is_some() => Ok(media_type::OCI_INDEX.to_string()),
        None => Ok(media_type::OCI_MANIFEST.to_string()),
    }
}

/// A registry's error code or status, as what the client can do about it.
fn classify(r: &RegistryRef, what: &str, e: OciDistributionError) -> RegistryError {
    let host = r.host.clone();
    let by_status = |code: u16, detail: String| match code {
        404 => RegistryError::NotFound {
            host: host.clone(),
            reference: what.to_string(),
            detail,
        },
        401 | 403 => RegistryError::Denied {
            host: host.clone(),
            repository: r.repository.clone(),
            detail,
        },
        429 | 500..=599 => RegistryError::Unavailable {
            host: host.clone(),
            detail,
        },
        _ => RegistryError::Protocol {
            host: host.clone(),
            detail,
        },
    };
    match e {
        OciDistributionError::UnauthorizedError { .. } => {
            by_status(401, "401 Unauthorized".to_string())
        }
        OciDistributionError::AuthenticationFailure(m) => {
            by_status(401, format!("the token service said: {}", short(&m)))
        }
        OciDistributionError::ImageManifestNotFoundError(m) => by_status(404, short(&m)),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let detail = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, short(&e.message)))
                .collect::<Vec<_>>()
                .join("; ");
            let status = if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::ManifestBlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                404
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                401
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                429
            } else {
                400
            };
            by_status(status, detail)
        }
        OciDistributionError::ServerError { code, message, .. } => {
            by_status(code, format!("HTTP {code}: {}", short(&message)))
        }
        OciDistributionError::RequestError(e) => match e.status() {
            Some(s) => by_status(s.as_u16(), e.to_string()),
            // Not connected, timed out, cut off: try again later.
            None => RegistryError::Unavailable {
                host,
                detail: error_chain(&e),
            },
        },
        OciDistributionError::IoError(e) => RegistryError::Unavailable {
            host,
            detail: e.to_string(),
        },
        other => RegistryError::Protocol {
            host,
            detail: short(&other.to_string()),
        },
    }
}

/// An error in a blob's byte stream: the client's own digest check
/// failing (content that is not the blob), or the transfer failing.
fn classify_io(r: &RegistryRef, what: &str, e: &io::Error) -> RegistryError {
    let digest_failed = e
        .get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
    if digest_failed {
        RegistryError::Protocol {
            host: r.host.clone(),
            detail: format!("{what}: the content does not match its digest: {e}"),
        }
    } else {
        RegistryError::Unavailable {
            host: r.host.clone(),
            detail: format!("{what}: the transfer failed: {e}"),
        }
    }
}

/// The error with its causes (reqwest's own text says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Registry text in messages is bounded: it is another server's to choose.
fn short(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> RegistryRef {
        RegistryRef {
            host: "127.0.0.1:5000".into(),
            repository: "agent".into(),
            tag: Some("v1".into()),
            digest: None,
        }
    }

    #[test]
    fn registry_answers_are_classified_by_what_the_client_can_do() {
        let server = |code: u16| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: "m".into(),
        };
        let cases = [
            (server(404), RegistryFault::Reference),
            (server(401), RegistryFault::Credentials),
            (server(403), RegistryFault::Credentials),
            (server(500), RegistryFault::Unavailable),
            (server(503), RegistryFault::Unavailable),
            (server(429), RegistryFault::Unavailable),
            (server(418), RegistryFault::Reference),
            (
                OciDistributionError::UnauthorizedError { url: "u".into() },
                RegistryFault::Credentials,
            ),
            (
                OciDistributionError::AuthenticationFailure("no".into()),
                RegistryFault::Credentials,
            ),
            (
                OciDistributionError::IoError(io::Error::other("reset")),
                RegistryFault::Unavailable,
            ),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            let got = classify(&r(), "127.0.0.1:5000/agent:v1", e);
            assert_eq!(got.fault(), want, "{shown} → {got}");
            assert!(got.to_string().contains("127.0.0.1:5000"), "{got}");
        }
        let denied = classify(
            &r(),
            "x",
            OciDistributionError::UnauthorizedError { url: "u".into() },
        );
        assert!(denied.to_string().contains("registries.\"127.0.0.1:5000\""));
    }

    #[test]
    fn a_manifest_says_what_it_is_by_media_type_or_shape() {
        let d = Digest::of(b"x");
        let kind = |j: &str| kind_of(j.as_bytes(), &d);
        assert_eq!(
            kind(r#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            media_type::OCI_INDEX
        );
        assert_eq!(
            kind(r#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            media_type::OCI_MANIFEST
        );
        assert_eq!(
            kind(&format!(r#"{{"mediaType":"{}"}}"#, media_type::DOCKER_LIST)).unwrap(),
            media_type::DOCKER_LIST
        );
        assert!(
            kind(r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#)
                .unwrap_err()
                .to_string()
                .contains("not an image manifest")
        );
        assert!(kind("not json").is_err());
    }

    #[test]
    fn long_registry_text_is_cut() {
        let s = "é".repeat(400);
        let cut = short(&s);
        assert!(cut.len() <= 304 && cut.ends_with('…'), "{}", cut.len());
    }
}
