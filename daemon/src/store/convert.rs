//! Conversions between the persisted form ([`super::schema`]) and what the
//! daemon works with: the in-memory [`ActorRecord`] and the API's types.
//!
//! Exhaustive on purpose: a field or status added to the API or to the
//! in-memory record does not compile until the schema says how it is kept.

use atelet_api as api;

use super::schema::{
    Actor, Capabilities, Container, DurableDir, EnvVar, Event, Pending, Sandbox, SecurityContext,
    Snapshot, Spec, Status, Template, Volume, VolumeMount, RECORD_VERSION,
};
use super::{ActorRecord, ContainerRecord, PendingOp, SnapshotRecord};

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
        }
    }
}
