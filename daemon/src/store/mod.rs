//! The sled store: actor records and the event log.
//!
//! Every write of a record goes with the event it causes in one sled
//! transaction, and is flushed before the caller goes on, so that what the
//! API answered is what a restarted daemon finds.
//!
//! What is written is the persisted form of [`schema`], converted from and
//! to the in-memory [`ActorRecord`] here, so that the API's types can
//! change without making stored records unreadable. A record that cannot be
//! read at start is moved aside into the `quarantine` tree (kept, not
//! deleted) and the others load; one written by a newer major layout stops
//! the start instead (see [`schema`] for the rule).

mod convert;
mod quarantine;
pub(crate) mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use atelet_api::{
    Actor, ActorNetwork, ActorSpec, ActorStatus, Event, NetworkMode, PublishedPort, SandboxInfo,
    SnapshotInfo, TemplateRef,
};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::broadcast;

pub(crate) use schema::Version;

/// Events kept in sled; older ones are trimmed at start.
const EVENTS_KEPT: u64 = 100_000;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A record or an event could not be (de)serialised.
    #[error("store: record {key}: {source}")]
    Codec {
        /// The key.
        key: String,
        /// serde's message.
        source: serde_json::Error,
    },
    /// A record was written by a daemon of a newer major layout: reading
    /// it could misread it, so the daemon does not start on it.
    #[error("store: record {key} has schema version {found}, newer than the {supported} this atelet reads: it was written by a newer atelet, which must be run on this state dir")]
    Schema {
        /// The key.
        key: String,
        /// Its version.
        found: Version,
        /// What this daemon reads.
        supported: Version,
    },
    /// A record is not in any layout this daemon knows (corrupt).
    #[error("store: record {key} cannot be read: {detail}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// `insert_new` found the id taken.
    #[error("actor {0} already exists")]
    Exists(String),
}

/// The runsc container that runs (or is being started for) an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRecord {
    /// runsc container id: `<actor>_<incarnation>.<node>` (see `service::container_id`).
    pub id: String,
    /// Sandbox pid, once runsc reported it.
    pub pid: Option<i32>,
    /// runsc version that runs it.
    pub runsc_version: String,
}

/// A committed snapshot, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    /// Directory name under the actor's snapshot dir.
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// runsc version that wrote it.
    pub runsc_version: String,
    /// Its copy in the remote store, when the node has one.
    pub remote: Option<RemoteCopy>,
}

impl SnapshotRecord {
    /// True when its files are on this node (a snapshot of an actor made
    /// from a remote URL is not, until a resume downloads it).
    pub(crate) fn is_local(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.local)
    }
}

/// Where a snapshot stands with the remote store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteCopy {
    /// Its URL, once it is there.
    pub url: Option<String>,
    /// Upload pending, done, or failed (retried later).
    pub status: UploadStatus,
    /// Why the last upload failed.
    pub error: String,
    /// The files are on this node too.
    pub local: bool,
}

/// The upload of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadStatus {
    /// To be uploaded.
    Pending,
    /// In the remote store, manifest and all.
    Uploaded,
    /// The last try failed; it is tried again.
    Failed,
}

impl UploadStatus {
    /// As the API writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Uploaded => "uploaded",
            UploadStatus::Failed => "failed",
        }
    }
}

/// Operations that are not visible as a status of their own, recorded so
/// that crash recovery can finish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingOp {
    /// The sandbox is being killed for a stop.
    Stop,
}

/// What the store keeps per actor, as the service works with it (sled
/// holds its [`schema::Actor`] form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActorRecord {
    /// The actor id.
    pub id: String,
    /// As created.
    pub template: TemplateRef,
    /// As created.
    pub spec: ActorSpec,
    /// Lifecycle status.
    pub status: ActorStatus,
    /// Why.
    pub status_message: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The current or in-flight runsc container.
    pub container: Option<ContainerRecord>,
    /// Committed snapshots, oldest first.
    pub snapshots: Vec<SnapshotRecord>,
    /// Last exit code of a sandbox.
    pub exit_code: Option<i32>,
    /// Counts sandboxes started, for unique container ids.
    pub incarnation: u64,
    /// Counts snapshots taken, for unique snapshot ids.
    pub snapshot_seq: u64,
    /// The snapshot a SUSPENDING actor is writing.
    pub pending_snapshot: Option<String>,
    /// A stop in progress.
    pub pending: Option<PendingOp>,
    /// Manifest digest of the cached image the actor was last started
    /// from (`None` for `dir:` images and older records): the image cache
    /// keeps it while the record exists.
    pub image_digest: Option<String>,
    /// Its network: the mode decided at create and the address it holds.
    pub network: NetworkRecord,
    /// RFC 3339: when last seen busy, started or woken (see `activity`).
    pub last_active_at: Option<String>,
    /// `paused` or `suspended`: where the last activation came from.
    pub activated_from: Option<String>,
}

/// An actor's network as recorded: the mode is decided once, at create
/// (the node default may change later), and the address is held for the
/// actor's whole life (also in the IPAM tree, written in the same
/// transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetworkRecord {
    /// `bridge` or `none`.
    pub mode: NetworkMode,
    /// The address (bridge).
    pub ip: Option<std::net::Ipv4Addr>,
}

impl NetworkRecord {
    /// No network: loopback only.
    pub(crate) fn none() -> NetworkRecord {
        NetworkRecord {
            mode: NetworkMode::None,
            ip: None,
        }
    }
}

impl ActorRecord {
    /// A new CREATED record.
    pub(crate) fn new(
        id: String,
        template: TemplateRef,
        spec: ActorSpec,
        now: String,
    ) -> ActorRecord {
        ActorRecord {
            id,
            template,
            spec,
            status: ActorStatus::Created,
            status_message: String::new(),
            created_at: now.clone(),
            updated_at: now,
            container: None,
            snapshots: Vec::new(),
            exit_code: None,
            incarnation: 0,
            snapshot_seq: 0,
            pending_snapshot: None,
            pending: None,
            image_digest: None,
            network: NetworkRecord::none(),
            last_active_at: None,
            activated_from: None,
        }
    }

    /// The API view of the record.
    pub(crate) fn to_api(&self) -> Actor {
        let sandbox = match (&self.container, self.status) {
            (
                Some(ContainerRecord {
                    id,
                    pid: Some(pid),
                    runsc_version,
                }),
                ActorStatus::Running
                | ActorStatus::Suspending
                | ActorStatus::Pausing
                | ActorStatus::Paused
                | ActorStatus::Unpausing,
            ) => Some(SandboxInfo {
                pid: *pid,
                runsc_version: runsc_version.clone(),
                container_id: id.clone(),
            }),
            _ => None,
        };
        Actor {
            id: self.id.clone(),
            template: self.template.clone(),
            spec: self.spec.clone(),
            status: self.status,
            status_message: self.status_message.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            sandbox,
            snapshots: self
                .snapshots
                .iter()
                .map(|s| SnapshotInfo {
                    id: s.id.clone(),
                    created_at: s.created_at.clone(),
                    size_bytes: s.size_bytes,
                    remote: s.remote.as_ref().and_then(|r| r.url.clone()),
                    upload_status: s.remote.as_ref().map(|r| r.status.as_str().to_string()),
                    upload_error: s
                        .remote
                        .as_ref()
                        .filter(|r| r.status == UploadStatus::Failed)
                        .map(|r| r.error.clone()),
                    local: s.is_local(),
                })
                .collect(),
            latest_snapshot: self.snapshots.last().map(|s| s.id.clone()),
            exit_code: self.exit_code,
            network: ActorNetwork {
                mode: self.network.mode,
                ip: self.network.ip.map(|ip| ip.to_string()),
                ports: self
                    .spec
                    .containers
                    .iter()
                    .flat_map(|c| {
                        c.ports.iter().map(|p| PublishedPort {
                            container: c.name.clone(),
                            container_port: u16::try_from(p.container_port).unwrap_or(0),
                            protocol: "TCP".to_string(),
                            host_port: p.host_port.and_then(|h| u16::try_from(h).ok()),
                        })
                    })
                    .collect(),
            },
            ready: self.status == ActorStatus::Running,
            last_active_at: self.last_active_at.clone(),
            activated_from: self.activated_from.clone(),
        }
    }
}

/// A status change to record with a write.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    /// Before (`None`: created).
    pub from: Option<ActorStatus>,
    /// After (`None`: deleted).
    pub to: Option<ActorStatus>,
    /// Why.
    pub reason: String,
}

/// What the store keeps in memory per actor, so that counts and lookups
/// across all actors (health, metrics, the policy's `max_actors`, image
/// users) do not decode every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Lifecycle status.
    pub status: ActorStatus,
    /// Bytes of its committed snapshots.
    pub snapshot_bytes: u64,
    /// The image digest it was created from.
    pub image_digest: Option<String>,
    /// Its network mode.
    pub network: NetworkMode,
    /// The address it holds (bridge).
    pub ip: Option<std::net::Ipv4Addr>,
    /// Its sandbox's memory limit, for the policy's `max_memory_commit`.
    pub memory_limit: Option<u64>,
}

impl Summary {
    fn of(rec: &ActorRecord) -> Summary {
        Summary {
            memory_limit: atelet_api::SandboxResources::of(&rec.spec)
                .limits
                .memory_bytes,
            status: rec.status,
            snapshot_bytes: rec.snapshots.iter().map(|s| s.size_bytes).sum(),
            image_digest: rec.image_digest.clone(),
            network: rec.network.mode,
            ip: rec.network.ip,
        }
    }
}

/// The sled database of one daemon.
pub(crate) struct Store {
    db: sled::Db,
    actors: sled::Tree,
    events: sled::Tree,
    /// Next event sequence number; the mutex orders writes and broadcasts.
    next_seq: Mutex<u64>,
    /// Where written events are announced to live streams.
    feed: broadcast::Sender<Event>,
    /// Highest sequence number written.
    last_seq: AtomicU64,
    /// A summary of every record, kept in step with the writes.
    index: Mutex<HashMap<String, Summary>>,
    /// Records that could not be read at start, moved aside under their key.
    quarantine: sled::Tree,
    /// Its keys, sorted (it only changes at start).
    quarantined: Vec<String>,
    /// IPAM: address (4 bytes) → the actor holding it; written in the same
    /// transaction as the record that names the address, so that an address
    /// is never held twice, whenever the daemon is killed.
    ipam: sled::Tree,
    /// Where the next address search starts: addresses are handed out in
    /// turn rather than the lowest free first, so that a just-freed address
    /// (still in peers' ARP caches and conntrack) is not reused at once.
    ipam_cursor: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Reads the record under `key`, of any layout this daemon knows.
fn decode(key: &[u8], bytes: &[u8]) -> Result<ActorRecord, StoreError> {
    let key_text = || String::from_utf8_lossy(key).into_owned();
    let stored = schema::decode_actor(bytes).map_err(|e| match e {
        schema::DecodeError::Newer { found, supported } => StoreError::Schema {
            key: key_text(),
            found,
            supported,
        },
        schema::DecodeError::Invalid(detail) => StoreError::Invalid {
            key: key_text(),
            detail,
        },
    })?;
    if stored.id.as_bytes() != key {
        return Err(StoreError::Invalid {
            key: key_text(),
            detail: format!("it names actor {:?}", stored.id),
        });
    }
    Ok(stored.into())
}

/// The bytes of a record, in the current layout.
fn encode(rec: &ActorRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&schema::Actor::from(rec)).map_err(|source| StoreError::Codec {
        key: rec.id.clone(),
        source,
    })
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub(crate) fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(16 * 1024 * 1024)
            .open()?;
        let actors = db.open_tree("actors")?;
        let events = db.open_tree("events")?;
        let next = match events.last()? {
            Some((k, _)) => seq_of(&k) + 1,
            None => 1,
        };
        // Trim the log to its newest EVENTS_KEPT entries.
        if next > EVENTS_KEPT {
            let cut = (next - EVENTS_KEPT).to_be_bytes();
            let old: Vec<sled::IVec> = events.range(..cut).keys().collect::<Result<_, _>>()?;
            for k in old {
                events.remove(k)?;
            }
        }
        let quarantine = db.open_tree(quarantine::TREE)?;
        let (index, quarantined) = quarantine::load(&actors, &quarantine)?;
        let ipam = db.open_tree("ipam")?;
        reconcile_ipam(&ipam, &index, &quarantined)?;
        db.flush()?;
        let (feed, _) = broadcast::channel(1024);
        Ok(Store {
            db,
            actors,
            events,
            next_seq: Mutex::new(next),
            feed,
            last_seq: AtomicU64::new(next - 1),
            ipam,
            ipam_cursor: std::sync::atomic::AtomicU32::new(0),
            index: Mutex::new(index),
            quarantine,
            quarantined,
        })
    }

    /// One record.
    pub(crate) fn get(&self, id: &str) -> Result<Option<ActorRecord>, StoreError> {
        match self.actors.get(id.as_bytes())? {
            Some(bytes) => decode(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Whether the id is taken, without decoding: by a record, or by one
    /// in quarantine (whose files are kept, and whose id is not reused
    /// while it is there).
    pub(crate) fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.actors.contains_key(id.as_bytes())?
            || self.quarantine.contains_key(id.as_bytes())?)
    }

    /// The keys of the records in quarantine (unreadable at start), sorted.
    pub(crate) fn quarantined(&self) -> &[String] {
        &self.quarantined
    }

    /// Whether actor `id`'s record is in quarantine: what it owns (files,
    /// a sandbox) is left as it is.
    pub(crate) fn is_quarantined(&self, id: &str) -> bool {
        self.quarantined
            .binary_search_by(|k| k.as_str().cmp(id))
            .is_ok()
    }

    /// All records, sorted by id.
    pub(crate) fn list(&self) -> Result<Vec<ActorRecord>, StoreError> {
        self.actors
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// Visits the records in id order without collecting them; `visit`
    /// returns false to stop.
    pub(crate) fn for_each(
        &self,
        mut visit: impl FnMut(ActorRecord) -> bool,
    ) -> Result<(), StoreError> {
        for kv in self.actors.iter() {
            let (k, v) = kv?;
            if !visit(decode(&k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.lock_index().len()
    }

    /// The in-memory summary of every record.
    pub(crate) fn summaries(&self) -> Vec<(String, Summary)> {
        self.lock_index()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, HashMap<String, Summary>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a new record; fails when the id is taken.
    pub(crate) async fn insert_new(
        &self,
        rec: &ActorRecord,
        reason: &str,
    ) -> Result<(), StoreError> {
        if self.contains(&rec.id)? {
            return Err(StoreError::Exists(rec.id.clone()));
        }
        self.write(
            &rec.id,
            Some(rec),
            Some(Transition {
                from: None,
                to: Some(rec.status),
                reason: reason.to_string(),
            }),
        )
        .await
    }

    /// Writes a record; `transition` (if any) is logged as an event in the
    /// same transaction. Durable when this returns.
    pub(crate) async fn save(
        &self,
        rec: &ActorRecord,
        transition: Option<Transition>,
    ) -> Result<(), StoreError> {
        self.write(&rec.id, Some(rec), transition).await
    }

    /// Removes a record, logging its deletion.
    pub(crate) async fn remove(
        &self,
        id: &str,
        from: ActorStatus,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write(
            id,
            None,
            Some(Transition {
                from: Some(from),
                to: None,
                reason: reason.to_string(),
            }),
        )
        .await
    }

    async fn write(
        &self,
        id: &str,
        rec: Option<&ActorRecord>,
        transition: Option<Transition>,
    ) -> Result<(), StoreError> {
        let value = rec.map(encode).transpose()?;
        let old_ip = self.lock_index().get(id).and_then(|s| s.ip);
        let new_ip = rec.and_then(|r| r.network.ip);
        let event = {
            let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
            let event = transition.map(|t| Event {
                seq: *next,
                actor_id: id.to_string(),
                from: t.from,
                to: t.to,
                time: now_rfc3339(),
                reason: t.reason,
                pull: None,
            });
            let event_bytes = event
                .as_ref()
                .map(|e| serde_json::to_vec(&schema::Event::from(e)).map(|b| (e.seq, b)))
                .transpose()
                .map_err(|source| StoreError::Codec {
                    key: id.to_string(),
                    source,
                })?;
            let res: Result<(), TransactionError<String>> =
                (&self.actors, &self.events, &self.ipam).transaction(|(actors, events, ipam)| {
                    if old_ip != new_ip {
                        if let Some(ip) = old_ip {
                            ipam.remove(&ip.octets())?;
                        }
                        if let Some(ip) = new_ip {
                            if let Some(holder) = ipam.get(ip.octets())? {
                                if holder.as_ref() != id.as_bytes() {
                                    return Err(ConflictableTransactionError::Abort(format!(
                                        "address {ip} is held by actor {}",
                                        String::from_utf8_lossy(&holder)
                                    )));
                                }
                            }
                            ipam.insert(&ip.octets(), id.as_bytes())?;
                        }
                    }
                    match &value {
                        Some(v) => {
                            actors.insert(id.as_bytes(), v.as_slice())?;
                        }
                        None => {
                            actors.remove(id.as_bytes())?;
                        }
                    }
                    if let Some((seq, bytes)) = &event_bytes {
                        events.insert(&seq.to_be_bytes(), bytes.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<String>>(())
                });
            match res {
                Ok(()) => {}
                Err(TransactionError::Storage(e)) => return Err(e.into()),
                Err(TransactionError::Abort(why)) => {
                    return Err(StoreError::Invalid {
                        key: id.to_string(),
                        detail: why,
                    })
                }
            }
            if let Some(e) = &event {
                *next += 1;
                self.last_seq.store(e.seq, Ordering::SeqCst);
            }
            match rec {
                Some(r) => self.lock_index().insert(id.to_string(), Summary::of(r)),
                None => self.lock_index().remove(id),
            };
            event
        };
        self.db.flush_async().await?;
        if let Some(e) = event {
            // Nobody listening is fine.
            let _ = self.feed.send(e);
        }
        Ok(())
    }

    /// Logs a `pulling` event: progress of an image pull, which changes no
    /// record. Pulls log a few of these (throttled by the caller), so the
    /// event log replays them like any other.
    pub(crate) async fn log_pull(
        &self,
        actor_id: &str,
        pull: atelet_api::PullProgress,
    ) -> Result<(), StoreError> {
        let event = {
            let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
            let event = Event {
                seq: *next,
                actor_id: actor_id.to_string(),
                from: None,
                to: None,
                time: now_rfc3339(),
                reason: "pulling".to_string(),
                pull: Some(pull),
            };
            let bytes = serde_json::to_vec(&schema::Event::from(&event)).map_err(|source| {
                StoreError::Codec {
                    key: format!("event {}", event.seq),
                    source,
                }
            })?;
            self.events
                .insert(event.seq.to_be_bytes(), bytes.as_slice())?;
            *next += 1;
            self.last_seq.store(event.seq, Ordering::SeqCst);
            event
        };
        self.db.flush_async().await?;
        let _ = self.feed.send(event);
        Ok(())
    }

    /// A free address of `subnet` for a new actor, or `None` when every
    /// one is held. Callers serialise allocation with the insert of the
    /// record that takes it (the create's admission lock); the insert's
    /// transaction refuses an address held by another actor anyway.
    pub(crate) fn free_ip(
        &self,
        subnet: &crate::network::Subnet,
    ) -> Result<Option<std::net::Ipv4Addr>, StoreError> {
        let n = subnet.capacity();
        if n == 0 {
            return Ok(None);
        }
        let start = self.ipam_cursor.load(Ordering::SeqCst) % n;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(ip) = subnet.host(i) else { continue };
            if !self.ipam.contains_key(ip.octets())? {
                self.ipam_cursor.store(i + 1, Ordering::SeqCst);
                return Ok(Some(ip));
            }
        }
        Ok(None)
    }

    /// The actors that hold an address (records in quarantine included).
    pub(crate) fn ip_holders(&self) -> HashSet<String> {
        self.ipam
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect()
    }

    /// Addresses held: one per bridged actor, records in quarantine
    /// included (health, and whether the node's bridge is still needed).
    pub(crate) fn ips_held(&self) -> usize {
        self.ipam.len()
    }

    /// Events with a sequence number above `since`, oldest first, at most `limit`.
    pub(crate) fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let start = since.saturating_add(1).to_be_bytes();
        self.events
            .range(start..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice::<schema::Event>(&v)
                    .map(Event::from)
                    .map_err(|source| StoreError::Codec {
                        key: format!("event {}", seq_of(&k)),
                        source,
                    })
            })
            .collect()
    }

    /// The highest event sequence number written so far.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::SeqCst)
    }

    /// New events as they are written (after they are durable).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.feed.subscribe()
    }

    /// Flushes everything; called at shutdown.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Makes the IPAM tree say what the records say (they are the truth: both
/// are written in one transaction, so this only repairs a tree older than
/// its records, or one edited by hand). An address two records name is
/// kept by the first and reported.
fn reconcile_ipam(
    ipam: &sled::Tree,
    index: &HashMap<String, Summary>,
    quarantined: &[String],
) -> Result<(), StoreError> {
    let mut wanted: HashMap<[u8; 4], &str> = HashMap::new();
    let mut ids: Vec<&String> = index.keys().collect();
    ids.sort();
    for id in ids {
        if let Some(ip) = index.get(id).and_then(|s| s.ip) {
            if let Some(first) = wanted.insert(ip.octets(), id) {
                tracing::error!(address = %ip, actor = %id, holder = %first, "two actor records name one address; the first keeps it");
                wanted.insert(ip.octets(), first);
            }
        }
    }
    for kv in ipam.iter() {
        let (k, v) = kv?;
        let keep = <[u8; 4]>::try_from(k.as_ref())
            .ok()
            .and_then(|a| wanted.get(&a))
            .is_some_and(|id| id.as_bytes() == v.as_ref());
        // A record in quarantine cannot say what it holds: what it held
        // stays its own (its sandbox may still run on that address).
        let claimed = <[u8; 4]>::try_from(k.as_ref())
            .ok()
            .is_some_and(|a| wanted.contains_key(&a));
        let quarantined_holder = !claimed && quarantined.iter().any(|q| q.as_bytes() == v.as_ref());
        if quarantined_holder {
            continue;
        }
        if !keep {
            ipam.remove(k)?;
        }
    }
    for (ip, id) in wanted {
        ipam.insert(ip, id.as_bytes())?;
    }
    Ok(())
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(b)
}

/// Current time, RFC 3339 with milliseconds, UTC.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;
