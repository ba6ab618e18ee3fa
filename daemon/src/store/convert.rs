//! Conversions between the persisted form ([`super::schema`]) and what the
//! daemon works with: the in-memory [`ActorRecord`] and the API's types.
//!
//! Exhaustive on purpose: a field or status added to the API or to the
//! in-memory record does not compile until the schema says how it is kept.

use atelet_api as api;

use super::schema::{
    Actor, Capabilities, Container, DurableDir, EnvVar, Event, Lifecycle, Network, NetworkMode,
    Pending, Port, Probe, PullProgress, ResourceList, Resources, Sandbox, SecurityContext,
    Snapshot, Spec, Status, Template, Volume, VolumeMount, RECORD_VERSION,
};
use super::{
    ActorRecord, ContainerRecord, NetworkRecord, PendingOp, RemoteCopy, SnapshotRecord,
    UploadStatus,
};

impl From<&ActorRecord> for Actor {
    fn from(r: &ActorRecord) -> Actor {
        Actor {
            schema_version: RECORD_VERSION.major,
            schema_minor: RECORD_VERSION.minor,
            id: r.id.clone(),
            template: Template::from(&r.template),
            spec: Spec::from(&r.spec),
            status: r.status.into(),
            status_message: r.status_message.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
            container: r.container.as_ref().map(|c| Sandbox {
                id: c.id.clone(),
                pid: c.pid,
                runsc_version: c.runsc_version.clone(),
            }),
            snapshots: r
                .snapshots
                .iter()
                .map(|s| Snapshot {
                    id: s.id.clone(),
                    created_at: s.created_at.clone(),
                    size_bytes: s.size_bytes,
                    runsc_version: s.runsc_version.clone(),
                    remote: s.remote.as_ref().map(|r| super::schema::RemoteCopy {
                        url: r.url.clone(),
                        status: r.status.as_str().to_string(),
                        error: r.error.clone(),
                        local: r.local,
                    }),
                })
                .collect(),
            exit_code: r.exit_code,
            incarnation: r.incarnation,
            snapshot_seq: r.snapshot_seq,
            pending_snapshot: r.pending_snapshot.clone(),
            pending: r.pending.map(|p| match p {
                PendingOp::Stop => Pending::Stop,
            }),
            image_digest: r.image_digest.clone(),
            network: Some(Network {
                mode: match r.network.mode {
                    api::NetworkMode::Bridge => NetworkMode::Bridge,
                    api::NetworkMode::None => NetworkMode::None,
                },
                ip: r.network.ip,
            }),
            last_active_at: r.last_active_at.clone(),
            activated_from: r.activated_from.clone(),
        }
    }
}

impl From<Actor> for ActorRecord {
    fn from(a: Actor) -> ActorRecord {
        ActorRecord {
            id: a.id,
            template: a.template.into(),
            spec: a.spec.into(),
            status: a.status.into(),
            status_message: a.status_message,
            created_at: a.created_at,
            updated_at: a.updated_at,
            container: a.container.map(|c| ContainerRecord {
                id: c.id,
                pid: c.pid,
                runsc_version: c.runsc_version,
            }),
            snapshots: a
                .snapshots
                .into_iter()
                .map(|s| SnapshotRecord {
                    id: s.id,
                    created_at: s.created_at,
                    size_bytes: s.size_bytes,
                    runsc_version: s.runsc_version,
                    remote: s.remote.map(|r| RemoteCopy {
                        url: r.url,
                        // An unknown status (a newer daemon's) is retried.
                        status: match r.status.as_str() {
                            "uploaded" => UploadStatus::Uploaded,
                            "failed" => UploadStatus::Failed,
                            _ => UploadStatus::Pending,
                        },
                        error: r.error,
                        local: r.local,
                    }),
                })
                .collect(),
            exit_code: a.exit_code,
            incarnation: a.incarnation,
            snapshot_seq: a.snapshot_seq,
            pending_snapshot: a.pending_snapshot,
            pending: a.pending.map(|p| match p {
                Pending::Stop => PendingOp::Stop,
            }),
            image_digest: a.image_digest,
            network: match a.network {
                Some(n) => NetworkRecord {
                    mode: match n.mode {
                        NetworkMode::Bridge => api::NetworkMode::Bridge,
                        NetworkMode::None => api::NetworkMode::None,
                    },
                    ip: n.ip,
                },
                // Before 1.2 every actor ran without a network.
                None => NetworkRecord::none(),
            },
            last_active_at: a.last_active_at,
            activated_from: a.activated_from,
        }
    }
}

impl From<&api::TemplateRef> for Template {
    fn from(t: &api::TemplateRef) -> Template {
        Template {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        }
    }
}

impl From<Template> for api::TemplateRef {
    fn from(t: Template) -> api::TemplateRef {
        api::TemplateRef {
            namespace: t.namespace,
            name: t.name,
        }
    }
}

impl From<&api::ActorSpec> for Spec {
    fn from(s: &api::ActorSpec) -> Spec {
        Spec {
            containers: s.containers.iter().map(Container::from).collect(),
            volumes: s
                .volumes
                .iter()
                .map(|v| Volume {
                    name: v.name.clone(),
                    durable_dir: v
                        .durable_dir
                        .as_ref()
                        .map(|api::DurableDir {}| DurableDir {}),
                })
                .collect(),
            network_mode: s.network.as_ref().map(|n| n.mode.clone()),
            lifecycle: s.lifecycle.as_ref().map(|l| Lifecycle {
                pause_after_idle_seconds: l.pause_after_idle_seconds,
                suspend_after_paused_seconds: l.suspend_after_paused_seconds,
                wake_on_connect: l.wake_on_connect,
            }),
        }
    }
}

impl From<Spec> for api::ActorSpec {
    fn from(s: Spec) -> api::ActorSpec {
        api::ActorSpec {
            containers: s.containers.into_iter().map(Into::into).collect(),
            volumes: s
                .volumes
                .into_iter()
                .map(|v| api::Volume {
                    name: v.name,
                    durable_dir: v.durable_dir.map(|DurableDir {}| api::DurableDir {}),
                })
                .collect(),
            network: s.network_mode.map(|mode| api::NetworkSpec { mode }),
            lifecycle: s.lifecycle.map(|l| api::LifecycleSpec {
                pause_after_idle_seconds: l.pause_after_idle_seconds,
                suspend_after_paused_seconds: l.suspend_after_paused_seconds,
                wake_on_connect: l.wake_on_connect,
            }),
        }
    }
}

impl From<&api::Container> for Container {
    fn from(c: &api::Container) -> Container {
        Container {
            name: c.name.clone(),
            image: c.image.clone(),
            command: c.command.clone(),
            env: c
                .env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: e.value.clone(),
                })
                .collect(),
            working_dir: c.working_dir.clone(),
            security_context: c.security_context.as_ref().map(|s| SecurityContext {
                capabilities: s.capabilities.as_ref().map(|c| Capabilities {
                    add: c.add.clone(),
                    drop: c.drop.clone(),
                }),
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
            }),
            volume_mounts: c
                .volume_mounts
                .iter()
                .map(|m| VolumeMount {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            ports: c
                .ports
                .iter()
                .map(|p| Port {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol.clone(),
                })
                .collect(),
            readiness_probe: c.readiness_probe.as_ref().map(|p| Probe {
                http_get: p.http_get.as_ref().map(|h| (h.path.clone(), h.port)),
                tcp_socket: p.tcp_socket.as_ref().map(|t| t.port),
                initial_delay_seconds: p.initial_delay_seconds,
                period_seconds: p.period_seconds,
                timeout_seconds: p.timeout_seconds,
                failure_threshold: p.failure_threshold,
            }),
            resources: c.resources.as_ref().map(|r| Resources {
                limits: r.limits.as_ref().map(ResourceList::from),
                requests: r.requests.as_ref().map(ResourceList::from),
            }),
        }
    }
}

impl From<&api::ResourceList> for ResourceList {
    fn from(l: &api::ResourceList) -> ResourceList {
        ResourceList {
            cpu: l.cpu.clone(),
            memory: l.memory.clone(),
        }
    }
}

impl From<ResourceList> for api::ResourceList {
    fn from(l: ResourceList) -> api::ResourceList {
        api::ResourceList {
            cpu: l.cpu,
            memory: l.memory,
        }
    }
}

impl From<Container> for api::Container {
    fn from(c: Container) -> api::Container {
        api::Container {
            name: c.name,
            image: c.image,
            command: c.command,
            env: c
                .env
                .into_iter()
                .map(|e| api::EnvVar {
                    name: e.name,
                    value: e.value,
                })
                .collect(),
            working_dir: c.working_dir,
            security_context: c.security_context.map(|s| api::SecurityContext {
                capabilities: s.capabilities.map(|c| api::Capabilities {
                    add: c.add,
                    drop: c.drop,
                }),
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
            }),
            volume_mounts: c
                .volume_mounts
                .into_iter()
                .map(|m| api::VolumeMount {
                    name: m.name,
                    mount_path: m.mount_path,
                    read_only: m.read_only,
                })
                .collect(),
            ports: c
                .ports
                .into_iter()
                .map(|p| api::ContainerPort {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol,
                })
                .collect(),
            readiness_probe: c.readiness_probe.map(|p| api::Probe {
                http_get: p
                    .http_get
                    .map(|(path, port)| api::HttpGetAction { path, port }),
                tcp_socket: p.tcp_socket.map(|port| api::TcpSocketAction { port }),
                initial_delay_seconds: p.initial_delay_seconds,
                period_seconds: p.period_seconds,
                timeout_seconds: p.timeout_seconds,
                failure_threshold: p.failure_threshold,
            }),
            resources: c.resources.map(|r| api::ResourceRequirements {
                limits: r.limits.map(Into::into),
                requests: r.requests.map(Into::into),
            }),
        }
    }
}

impl From<api::ActorStatus> for Status {
    fn from(s: api::ActorStatus) -> Status {
        use api::ActorStatus as A;
        match s {
            A::Created => Status::Created,
            A::Starting => Status::Starting,
            A::Running => Status::Running,
            A::Suspending => Status::Suspending,
            A::Suspended => Status::Suspended,
            A::Resuming => Status::Resuming,
            A::Stopped => Status::Stopped,
            A::Failed => Status::Failed,
            A::Pausing => Status::Pausing,
            A::Paused => Status::Paused,
            A::Unpausing => Status::Unpausing,
        }
    }
}

impl From<Status> for api::ActorStatus {
    fn from(s: Status) -> api::ActorStatus {
        use api::ActorStatus as A;
        match s {
            Status::Created => A::Created,
            Status::Starting => A::Starting,
            Status::Running => A::Running,
            Status::Suspending => A::Suspending,
            Status::Suspended => A::Suspended,
            Status::Resuming => A::Resuming,
            Status::Stopped => A::Stopped,
            Status::Failed => A::Failed,
            Status::Pausing => A::Pausing,
            Status::Paused => A::Paused,
            Status::Unpausing => A::Unpausing,
        }
    }
}

impl From<&api::Event> for Event {
    fn from(e: &api::Event) -> Event {
        Event {
            seq: e.seq,
            actor_id: e.actor_id.clone(),
            from: e.from.map(Into::into),
            to: e.to.map(Into::into),
            time: e.time.clone(),
            reason: e.reason.clone(),
            pull: e.pull.as_ref().map(|p| PullProgress {
                reference: p.reference.clone(),
                digest: p.digest.clone(),
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
            }),
        }
    }
}

impl From<Event> for api::Event {
    fn from(e: Event) -> api::Event {
        api::Event {
            seq: e.seq,
            actor_id: e.actor_id,
            from: e.from.map(Into::into),
            to: e.to.map(Into::into),
            time: e.time,
            reason: e.reason,
            pull: e.pull.map(|p| api::PullProgress {
                reference: p.reference,
                digest: p.digest,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
            }),
        }
    }
}
