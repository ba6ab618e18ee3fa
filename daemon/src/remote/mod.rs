//! The remote snapshot store: snapshots that leave the node, in any
//! S3-compatible object store (AWS S3, MinIO, Garage), through the
//! `object_store` crate (its own SigV4 signing, retries, rustls).
//!
//! A snapshot goes up as objects under
//! `s3://BUCKET/PREFIX/<node>/<actor>.<generation>/<snapshot>/` (the
//! generation tells apart actors that reuse an id: the digits of the
//! record's creation time): each file of the local
//! snapshot (the checkpoint image, the origin) in parts of [`PART_BYTES`],
//! each part a zstd frame (compressed, or stored when it would not shrink:
//! see [`pack`]) and named with its sha256 in the
//! manifest; then `manifest.json`, written last. The manifest is the
//! commit point: a snapshot whose manifest is not there does not exist for
//! any reader, however many of its parts are.
//!
//! A download fetches the manifest, then each part, checks the part's
//! sha256 before it is decompressed and each file's sha256 once whole, and
//! writes the files into a pending local snapshot, which the caller commits.

mod config;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use config::{RemoteConfig, RemoteFileConfig};

use crate::fsutil::{hex, sha256_hex};
use crate::snapshots::{Manifest, Origin, Pending, MANIFEST};
use crate::trust::{Trust, SIGNATURE};

/// Bytes of a snapshot file per part, before compression: large enough
/// that a part's request costs little next to its bytes, small enough
/// that a part in memory (raw and compressed) is cheap and a failed part
/// is cheap to send again.
pub(crate) const PART_BYTES: usize = 8 << 20;

/// Layout of the remote manifest; a newer major is refused.
const REMOTE_VERSION: u32 = 1;

/// Errors of the remote store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    /// The store answered with an error or could not be reached.
    #[error("remote store: {0}")]
    Store(String),
    /// The store has no object of that name.
    #[error("remote store: not found: {0}")]
    NotFound(String),
    /// What was fetched is not what its manifest says.
    #[error("remote snapshot {url}: {detail}")]
    Corrupt {
        /// The snapshot.
        url: String,
        /// What does not match.
        detail: String,
    },
    /// The URL names no snapshot of this store.
    #[error("{0}")]
    BadUrl(String),
    /// Reading or writing local files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl RemoteError {
    /// True when the snapshot is not there (no manifest).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, RemoteError::NotFound(_))
    }
}

fn store_err(e: object_store::Error) -> RemoteError {
    match e {
        object_store::Error::NotFound { path, .. } => RemoteError::NotFound(path),
        other => RemoteError::Store(other.to_string()),
    }
}

/// One part of a file of a remote snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part {
    /// Object name, relative to the snapshot's prefix.
    pub key: String,
    /// Bytes of the file it holds (before compression).
    pub raw_size: u64,
    /// Bytes of the object (compressed).
    pub size: u64,
    /// sha256 of the object.
    pub sha256: String,
}

/// One file of a remote snapshot and its parts, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteFile {
    /// File name in the snapshot.
    pub name: String,
    /// Its parts.
    pub parts: Vec<Part>,
}

/// `manifest.json` of a remote snapshot: the local manifest (file sizes
/// and sha256), what the snapshot was taken of, and the parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteManifest {
    /// [`REMOTE_VERSION`].
    pub version: u32,
    /// How parts are compressed (`zstd`).
    pub compression: String,
    /// The snapshot's own manifest, as on the node that took it.
    pub snapshot: Manifest,
    /// What it was taken of, and what a restore needs.
    pub origin: Origin,
    /// Each file's parts.
    pub files: Vec<RemoteFile>,
    /// RFC 3339.
    pub uploaded_at: String,
}

/// A remote snapshot store.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    retry_after: Duration,
}

impl Remote {
    /// A client of the configured store; nothing is sent yet.
    pub(crate) fn new(config: &RemoteConfig) -> Result<Remote, RemoteError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(config.credentials.access_key_id())
            .with_secret_access_key(config.credentials.secret_access_key())
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(store_err)?;
        Ok(Remote {
            store: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            retry_after: config.retry_after,
        })
    }

    /// When a failed upload is tried again.
    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The object key of a snapshot's prefix.
    fn key(&self, node: &str, actor: &str, snapshot: &str) -> String {
        [self.prefix.as_str(), node, actor, snapshot]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The generation of an actor record in keys: the digits of its
    /// creation time (RFC 3339), unique per id on a node.
    pub(crate) fn generation(created_at: &str) -> String {
        created_at.chars().filter(char::is_ascii_digit).collect()
    }

    /// The URL of a snapshot: `s3://BUCKET/KEY`.
    pub(crate) fn url(&self, node: &str, actor: &str, snapshot: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(node, actor, snapshot))
    }

    /// The key a URL names, if it is of this store's bucket.
    fn key_of(&self, url: &str) -> Result<String, RemoteError> {
        let rest = url
            .strip_prefix("s3://")
            .and_then(|r| r.strip_prefix(&self.bucket))
            .and_then(|r| r.strip_prefix('/'))
            .filter(|k| !k.is_empty() && !k.split('/').any(|s| s.is_empty() || s == ".."))
            // Only this node's fleet: its own prefix.
            .filter(|k| {
                self.prefix.is_empty()
                    || k.strip_prefix(self.prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .ok_or_else(|| {
                RemoteError::BadUrl(format!(
                    "{url:?} is not a snapshot of this node's store (s3://{}/{}…)",
                    self.bucket,
                    if self.prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", self.prefix)
                    }
                ))
            })?;
        Ok(rest.trim_end_matches('/').to_string())
    }

    /// Uploads the committed local snapshot in `dir` (with `manifest` and
    /// `origin`), parts first, manifest last; answers its URL.
    pub(crate) async fn upload(
        &self,
        node: &str,
        generation: &str,
        dir: &Path,
        manifest: &Manifest,
        origin: &Origin,
        trust: &Trust,
    ) -> Result<String, RemoteError> {
        let actor = format!("{}.{generation}", manifest.actor_id);
        let key = self.key(node, &actor, &manifest.snapshot_id);
        let mut files = Vec::new();
        for f in &manifest.files {
            let parts = self.upload_file(&key, &dir.join(&f.name), &f.name).await?;
            // The manifest goes last as the commit point: never over a
            // file that was not sent whole.
            let sent: u64 = parts.iter().map(|p| p.raw_size).sum();
            if sent != f.size {
                return Err(RemoteError::Io {
                    what: format!("uploading {}", f.name),
                    source: std::io::Error::other(format!(
                        "sent {sent} bytes, the manifest says {}",
                        f.size
                    )),
                });
            }
            files.push(RemoteFile {
                name: f.name.clone(),
                parts,
            });
        }
        let remote = RemoteManifest {
            version: REMOTE_VERSION,
            compression: "zstd".to_string(),
            snapshot: manifest.clone(),
            origin: origin.clone(),
            files,
            uploaded_at: crate::store::now_rfc3339(),
        };
        let bytes = serde_json::to_vec_pretty(&remote).map_err(|e| RemoteError::Io {
            what: "encoding the remote manifest".to_string(),
            source: std::io::Error::other(e),
        })?;
        // The signature goes before the manifest, so that whoever sees
        // the manifest finds it.
        if let Some(sig) = trust.sign(&bytes) {
            self.put(&format!("{key}/{SIGNATURE}"), Bytes::from(sig))
                .await?;
        }
        self.put(&format!("{key}/{MANIFEST}"), Bytes::from(bytes))
            .await?;
        Ok(self.url(node, &actor, &manifest.snapshot_id))
    }

    async fn get(&self, key: &str) -> Result<Bytes, RemoteError> {
        self.store
            .get(&ObjectPath::from(key))
            .await
            .map_err(store_err)?
            .bytes()
            .await
            .map_err(store_err)
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(store_err)
    }

    /// Sends one file in parts: a blocking reader packs and hashes the
    /// next part while the previous one is sent.
    async fn upload_file(
        &self,
        key: &str,
        path: &Path,
        name: &str,
    ) -> Result<Vec<Part>, RemoteError> {
        let (tx, mut rx) = mpsc::channel::<Result<(Bytes, u64, String), RemoteError>>(2);
        let p = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || {
            let io = |source| RemoteError::Io {
                what: format!("reading {}", p.display()),
                source,
            };
            let mut file = match std::fs::File::open(&p) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(io(e)));
                    return;
                }
            };
            let mut buf = vec![0u8; PART_BYTES];
            loop {
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(io(e)));
                        return;
                    }
                };
                if n == 0 {
                    return;
                }
                let packed = pack(&buf[..n]);
                let sha256 = sha256_hex(&packed);
                if tx
                    .blocking_send(Ok((Bytes::from(packed), n as u64, sha256)))
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut parts = Vec::new();
        while let Some(next) = rx.recv().await {
            let (packed, raw_size, sha256) = next?;
            let part_key = format!("parts/{name}.{:05}.zst", parts.len());
            let part = Part {
                key: part_key.clone(),
                raw_size,
                size: packed.len() as u64,
                sha256,
            };
            self.put(&format!("{key}/{part_key}"), packed).await?;
            parts.push(part);
        }
        reader.await.map_err(|e| RemoteError::Io {
            what: format!("reading {}", path.display()),
            source: std::io::Error::other(e),
        })?;
        Ok(parts)
    }

    /// The manifest of the snapshot at `url`, checked for its layout and,
    /// when `trust` requires, its signature.
    pub(crate) async fn manifest(
        &self,
        url: &str,
        trust: &Trust,
    ) -> Result<RemoteManifest, RemoteError> {
        let key = self.key_of(url)?;
        let bytes = self.get(&format!("{key}/{MANIFEST}")).await?;
        let corrupt = |detail: String| RemoteError::Corrupt {
            url: url.to_string(),
            detail,
        };
        let signature = match self.get(&format!("{key}/{SIGNATURE}")).await {
            Ok(sig) => Some(sig),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        trust
            .check(&bytes, signature.as_deref())
            .map_err(|e| corrupt(format!("not accepted: {e}")))?;
        #[derive(Deserialize)]
        struct Head {
            version: u32,
        }
        let head: Head =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if head.version != REMOTE_VERSION {
            return Err(corrupt(format!(
                "manifest version {}, this atelet reads {REMOTE_VERSION}",
                head.version
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("manifest: {e}")))
    }

    /// Downloads the files of `remote` (at `url`) into `pending`, each part
    /// checked against its sha256 before it is decompressed, each file
    /// against the snapshot's own manifest once whole.
    pub(crate) async fn download(
        &self,
        url: &str,
        remote: &RemoteManifest,
        pending: &Pending,
    ) -> Result<(), RemoteError> {
        let key = self.key_of(url)?;
        let corrupt = |detail: String| RemoteError::Corrupt {
            url: url.to_string(),
            detail,
        };
        for wanted in &remote.snapshot.files {
            let Some(file) = remote.files.iter().find(|f| f.name == wanted.name) else {
                return Err(corrupt(format!("no parts for {}", wanted.name)));
            };
            if wanted.name.contains('/') || wanted.name.starts_with('.') {
                return Err(corrupt(format!("a file named {:?}", wanted.name)));
            }
            let path = pending.dir.join(&wanted.name);
            let (tx, rx) = mpsc::channel::<(Part, Bytes)>(2);
            let (p, most) = (path.clone(), wanted.size);
            let writer = tokio::task::spawn_blocking(move || write_parts(&p, rx, most));
            let mut fetched = Ok(());
            for part in &file.parts {
                let bytes = match self.get(&format!("{key}/{}", part.key)).await {
                    Ok(b) => b,
                    Err(e) => {
                        fetched = Err(e);
                        break;
                    }
                };
                if tx.send((part.clone(), bytes)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let written = writer.await.map_err(|e| RemoteError::Io {
                what: format!("writing {}", path.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
            let (size, sha) = match written {
                Ok(w) => w,
                Err(PartsError::Mismatch(key)) => {
                    return Err(corrupt(format!(
                        "part {key} does not match its sha256 in the manifest"
                    )))
                }
                Err(PartsError::Io(source)) => {
                    fetched?;
                    return Err(RemoteError::Io {
                        what: format!("writing {}", path.display()),
                        source,
                    });
                }
            };
            fetched?;
            if size != wanted.size || sha != wanted.sha256 {
                return Err(corrupt(format!(
                    "{} has {size} bytes and sha256 {sha} once whole, the manifest says {} and {}",
                    wanted.name, wanted.size, wanted.sha256
                )));
            }
        }
        Ok(())
    }

    /// Removes every object of the snapshot at `url` (manifest first, so
    /// that it stops existing for readers before its parts go).
    pub(crate) async fn delete(&self, url: &str) -> Result<(), RemoteError> {
        use futures_util::TryStreamExt;
        let key = self.key_of(url)?;
        match self
            .store
            .delete(&ObjectPath::from(format!("{key}/{MANIFEST}")))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
        let prefix = ObjectPath::from(key.as_str());
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store_err)?;
        for o in objects {
            match self.store.delete(&o.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }
}

/// Bytes of each sample [`pack`] compresses to judge a part.
const SAMPLE_BYTES: usize = 16 << 10;

/// Samples per part.
const SAMPLES: usize = 4;

/// One part as a zstd frame: compressed when a few samples of it shrink
/// by at least 5 %, otherwise stored in raw blocks. A checkpoint image of
/// this runsc is already compressed (flate) by runsc itself; compressing
/// it again costs far more time (pure-Rust zstd does about 55 MB/s here)
/// than it saves in bytes, while a part of raw blocks costs a copy. Both
/// are ordinary zstd frames: readers need not know which was chosen.
fn pack(part: &[u8]) -> Vec<u8> {
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};
    let sample: Vec<u8> = if part.len() <= SAMPLES * SAMPLE_BYTES {
        part.to_vec()
    } else {
        let step = (part.len() - SAMPLE_BYTES) / (SAMPLES - 1);
        (0..SAMPLES)
            .flat_map(|i| &part[i * step..i * step + SAMPLE_BYTES])
            .copied()
            .collect()
    };
    let packed = compress_to_vec(&sample[..], CompressionLevel::Fastest);
    if packed.len() * 100 > sample.len() * 95 {
        return compress_to_vec(part, CompressionLevel::Uncompressed);
    }
    if sample.len() == part.len() {
        return packed;
    }
    compress_to_vec(part, CompressionLevel::Fastest)
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Why [`write_parts`] stopped.
#[derive(Debug)]
enum PartsError {
    /// A part (its key) is not what the manifest says.
    Mismatch(String),
    /// Writing, or a part that does not decode or inflates too far.
    Io(std::io::Error),
}

impl From<std::io::Error> for PartsError {
    fn from(e: std::io::Error) -> Self {
        PartsError::Io(e)
    }
}

/// Checks each part received against its size and sha256 (before it is
/// decoded) and decompresses it into a new file at `path` (mode 0600), at
/// most `most` bytes (what the manifest says the file has: a part that
/// inflates beyond is refused before it fills the disk); answers the
/// file's size and sha256. On this thread, so that the next part is
/// fetched meanwhile.
fn write_parts(
    path: &Path,
    mut rx: mpsc::Receiver<(Part, Bytes)>,
    most: u64,
) -> Result<(u64, String), PartsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while let Some((meta, part)) = rx.blocking_recv() {
        if part.len() as u64 != meta.size || sha256_hex(&part) != meta.sha256 {
            return Err(PartsError::Mismatch(meta.key));
        }
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&part[..])
            .map_err(|e| std::io::Error::other(format!("zstd: {e}")))?;
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > most {
                return Err(PartsError::Io(std::io::Error::other(format!(
                    "the parts inflate past the {most} bytes the manifest says"
                ))));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
    }
    Ok((size, hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(prefix: &str) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("c");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let config = RemoteConfig::from_file(&RemoteFileConfig {
            url: Some(format!("s3://snaps/{prefix}")),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            credentials_file: Some(creds),
            retry_secs: None,
            signing_key: None,
            trusted_keys: None,
        })
        .unwrap()
        .unwrap();
        Remote::new(&config).unwrap()
    }

    #[test]
    fn urls_name_node_actor_and_snapshot_and_only_this_bucket_is_read() {
        let r = remote("fleet/a");
        let url = r.url("n1", "counter", "snap-000002");
        assert_eq!(url, "s3://snaps/fleet/a/n1/counter/snap-000002");
        assert_eq!(r.key_of(&url).unwrap(), "fleet/a/n1/counter/snap-000002");
        assert_eq!(remote("").url("n1", "c", "s"), "s3://snaps/n1/c/s");
        for bad in [
            "s3://other/fleet/a/n1/c/s",
            "s3://snaps",
            "s3://snaps/",
            "s3://snaps/a/../b",
            "s3://snaps//a",
            "s3://snaps/fleet/b/n1/c/s",
            "s3://snaps/fleet/aa/n1/c/s",
            "http://snaps/a",
        ] {
            assert!(
                matches!(r.key_of(bad), Err(RemoteError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn parts_round_trip_through_zstd_compressed_or_stored() {
        // A part that compresses, and one that does not (sha256 chained:
        // as random as a checkpoint image runsc compressed already).
        let raw: Vec<u8> = (0..(3 * 1024 * 1024u32)).map(|i| (i % 251) as u8).collect();
        let mut noise = Vec::with_capacity(PART_BYTES);
        let mut block = Sha256::digest(b"seed");
        while noise.len() < PART_BYTES {
            noise.extend_from_slice(&block);
            block = Sha256::digest(block);
        }
        let packed = pack(&raw);
        assert!(packed.len() < raw.len() / 4, "{}", packed.len());
        let stored = pack(&noise);
        assert!(
            stored.len() >= noise.len() && stored.len() < noise.len() + noise.len() / 100,
            "{}",
            stored.len()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (tx, rx) = mpsc::channel(2);
        let p = path.clone();
        let most = (2 * raw.len() + noise.len()) as u64;
        let writer = std::thread::spawn(move || write_parts(&p, rx, most));
        let part = |b: &[u8]| {
            let meta = Part {
                key: "k".into(),
                raw_size: 0,
                size: b.len() as u64,
                sha256: hex(&Sha256::digest(b)),
            };
            (meta, Bytes::copy_from_slice(b))
        };
        tx.blocking_send(part(&packed)).unwrap();
        tx.blocking_send(part(&stored)).unwrap();
        tx.blocking_send(part(&packed)).unwrap();
        drop(tx);
        let (size, sha) = writer.join().unwrap().unwrap();
        let mut both = raw.clone();
        both.extend_from_slice(&noise);
        both.extend_from_slice(&raw);
        assert_eq!(size, both.len() as u64);
        assert_eq!(sha, hex(&Sha256::digest(&both)));
        assert_eq!(std::fs::read(&path).unwrap(), both);

        // A part that is not what the manifest says is never decoded.
        let (tx, rx) = mpsc::channel(2);
        let p = dir.path().join("g");
        let writer = std::thread::spawn(move || write_parts(&p, rx, most));
        let (meta, _) = part(&packed);
        tx.blocking_send((meta, Bytes::from(stored))).unwrap();
        drop(tx);
        assert!(matches!(
            writer.join().unwrap(),
            Err(PartsError::Mismatch(k)) if k == "k"
        ));
    }
}
