//! The API description (`docs/openapi.yaml`) and the router agree: every
//! route the router knows is described there, and every operation described
//! there is routed. A control plane generates its client from that file,
//! so a route missing from it, or described but not served, is a bug.

use std::collections::BTreeSet;

use hyper::Method;

use atelet_api::Op;

use super::router::{route, Route};

const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// (method, path template) of every operation in the description.
fn described() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_norway::from_str(OPENAPI).expect("openapi.yaml parses");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("path item") {
            if ["get", "post", "put", "delete", "patch", "head"].contains(&key.as_str()) {
                ops.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The path template a route answers, and its method. Exhaustive: a new
/// route does not compile until it is placed here (and so checked).
fn template(route: &Route) -> (Method, &'static str) {
    match route {
        Route::Healthz => (Method::GET, "/v1/healthz"),
        Route::CreateActor => (Method::POST, "/v1/actors"),
        Route::ListActors { .. } => (Method::GET, "/v1/actors"),
        Route::GetActor(_) => (Method::GET, "/v1/actors/{id}"),
        Route::Act(_, Op::Delete) => (Method::DELETE, "/v1/actors/{id}"),
        Route::Act(_, Op::Start) => (Method::POST, "/v1/actors/{id}/start"),
        Route::Act(_, Op::Suspend) => (Method::POST, "/v1/actors/{id}/suspend"),
        Route::Act(_, Op::Resume) => (Method::POST, "/v1/actors/{id}/resume"),
        Route::Act(_, Op::Pause) => (Method::POST, "/v1/actors/{id}/pause"),
        Route::Act(_, Op::Stop) => (Method::POST, "/v1/actors/{id}/stop"),
        Route::Logs { .. } => (Method::GET, "/v1/actors/{id}/logs"),
        Route::Stats(_) => (Method::GET, "/v1/actors/{id}/stats"),
        Route::Metrics => (Method::GET, "/metrics"),
        Route::ListImages => (Method::GET, "/v1/images"),
        Route::PullImage => (Method::POST, "/v1/images"),
        Route::DeleteImage(_) => (Method::DELETE, "/v1/images/{digest}"),
        Route::Events { .. } => (Method::GET, "/v1/events"),
        Route::ExportSnapshot { .. } => {
            (Method::GET, "/v1/actors/{id}/snapshots/{snapshot}/export")
        }
        Route::ImportSnapshot { .. } => (Method::POST, "/v1/snapshots/import"),
        Route::SuspendUploaded { .. } | Route::SuspendForced(_) => {
            (Method::POST, "/v1/actors/{id}/suspend")
        }
        Route::Exec(_) => (Method::POST, "/v1/actors/{id}/exec"),
        Route::DeleteKeepRemote(_) => (Method::DELETE, "/v1/actors/{id}"),
    }
}

/// The query a sample of `path` needs (the import names its actor so).
fn query(path: &str) -> Option<&'static str> {
    (path == "/v1/snapshots/import").then_some("id=a2")
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "a1")
        .replace("{snapshot}", "latest")
        .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
}

#[test]
fn every_described_operation_is_routed_to_the_route_it_describes() {
    let ops = described();
    assert!(ops.len() >= 14, "{ops:?}");
    for (method, path) in &ops {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = route(&m, &concrete(path), query(path))
            .unwrap_or_else(|e| panic!("{method} {path} is described but not routed: {e:?}"));
        let (rm, rp) = template(&r);
        assert_eq!((rm.as_str(), rp), (method.as_str(), path.as_str()));
    }
}

#[test]
fn every_route_is_described() {
    let ops = described();
    // One request per route; `template` makes sure every variant has one.
    let samples = [
        "GET /v1/healthz",
        "POST /v1/actors",
        "GET /v1/actors",
        "GET /v1/actors/{id}",
        "DELETE /v1/actors/{id}",
        "POST /v1/actors/{id}/start",
        "POST /v1/actors/{id}/suspend",
        "POST /v1/actors/{id}/resume",
        "POST /v1/actors/{id}/stop",
        "GET /v1/actors/{id}/logs",
        "GET /metrics",
        "GET /v1/images",
        "POST /v1/images",
        "DELETE /v1/images/{digest}",
        "GET /v1/events",
        "GET /v1/actors/{id}/snapshots/{snapshot}/export",
        "POST /v1/snapshots/import",
        "POST /v1/actors/{id}/suspend?wait=uploaded",
        "DELETE /v1/actors/{id}?keepRemote=true",
        "POST /v1/actors/{id}/suspend?force=true",
        "POST /v1/actors/{id}/exec",
    ];
    let mut seen = std::collections::HashSet::new();
    for s in samples {
        let (method, target) = s.split_once(' ').expect("sample");
        let (path, q) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, query(target)),
        };
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = route(&m, &concrete(path), q).expect("sample routes");
        let (rm, rp) = template(&r);
        assert!(
            ops.contains(&(rm.to_string(), rp.to_string())),
            "{rm} {rp} is routed but not in docs/openapi.yaml"
        );
        seen.insert(std::mem::discriminant(&r));
    }
    // Every Route variant had a sample (Act counts once per action above).
    assert_eq!(seen.len(), 17, "a route has no sample here");
}

/// The object schemas of the description and the wire types agree: every
/// field a type serialises is a property of its schema, and the schema
/// requires exactly the fields the type always writes (an `Option` without
/// `skip_serializing_if` is written as null, so it is required). A client
/// generated from the file must read every answer and be able to write
/// every request.
mod schemas {
    use std::collections::BTreeSet;

    use atelet_api as api;
    use serde::Serialize;
    use serde_json::Value;

    use super::OPENAPI;

    fn doc() -> Value {
        serde_norway::from_str(OPENAPI).expect("openapi.yaml parses")
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    fn json(v: &impl Serialize) -> Value {
        serde_json::to_value(v).expect("serialises")
    }

    /// `minimal` has every optional field unset, `full` every one set.
    fn agree(name: &str, minimal: Value, full: Value) {
        let doc = doc();
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(schema["type"], "object", "{name}");
        assert_eq!(
            schema["additionalProperties"],
            Value::Bool(false),
            "{name}: additionalProperties"
        );
        let properties = keys(&schema["properties"]);
        assert_eq!(properties, keys(&full), "{name}: properties");
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| s.as_str().expect("a name").to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(required, keys(&minimal), "{name}: required");
    }

    fn enum_values(name: &str) -> Vec<Value> {
        doc()["components"]["schemas"][name]["enum"]
            .as_array()
            .expect("an enum")
            .clone()
    }

    fn port(host: Option<i64>, protocol: Option<&str>) -> api::ContainerPort {
        api::ContainerPort {
            container_port: 8080,
            host_port: host,
            protocol: protocol.map(str::to_string),
        }
    }

    fn probe_full() -> api::Probe {
        api::Probe {
            http_get: Some(api::HttpGetAction {
                path: Some("/healthz".into()),
                port: 8080,
            }),
            tcp_socket: Some(api::TcpSocketAction { port: 8080 }),
            initial_delay_seconds: Some(0),
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            failure_threshold: Some(3),
        }
    }

    fn container(full: bool) -> api::Container {
        api::Container {
            name: "app".into(),
            image: "dir:/srv/rootfs".into(),
            command: if full {
                vec!["/bin/sh".into()]
            } else {
                Vec::new()
            },
            env: if full {
                vec![api::EnvVar {
                    name: "A".into(),
                    value: "b".into(),
                }]
            } else {
                Vec::new()
            },
            working_dir: full.then(|| "/".into()),
            security_context: full.then(api::SecurityContext::default),
            volume_mounts: if full {
                vec![api::VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    read_only: true,
                }]
            } else {
                Vec::new()
            },
            ports: if full {
                vec![port(Some(18080), Some("TCP"))]
            } else {
                Vec::new()
            },
            readiness_probe: full.then(probe_full),
            resources: full.then(resources_full),
        }
    }

    fn resources_full() -> api::ResourceRequirements {
        api::ResourceRequirements {
            limits: Some(list_full()),
            requests: Some(list_full()),
        }
    }

    fn list_full() -> api::ResourceList {
        api::ResourceList {
            cpu: Some("500m".into()),
            memory: Some("64Mi".into()),
        }
    }

    fn stats(full: bool) -> api::ActorStats {
        let n = |v: f64| full.then_some(v);
        api::ActorStats {
            id: "a1".into(),
            status: api::ActorStatus::Running,
            time: "2026-01-01T00:00:00Z".into(),
            cpu_seconds: n(1.5),
            cpu_limit: n(0.5),
            memory_bytes: full.then_some(1 << 20),
            memory_limit_bytes: full.then_some(64 << 20),
            pids: full.then_some(25),
            oom_kills: full.then_some(0),
        }
    }

    #[test]
    fn resources_and_stats_are_described_as_they_serialise() {
        agree(
            "ResourceRequirements",
            json(&api::ResourceRequirements::default()),
            json(&resources_full()),
        );
        agree(
            "ResourceList",
            json(&api::ResourceList::default()),
            json(&list_full()),
        );
        agree("ActorStats", json(&stats(false)), json(&stats(true)));
    }

    fn spec(full: bool) -> api::ActorSpec {
        api::ActorSpec {
            containers: vec![container(full)],
            volumes: if full {
                vec![api::Volume {
                    name: "data".into(),
                    durable_dir: Some(api::DurableDir {}),
                }]
            } else {
                Vec::new()
            },
            network: full.then(|| api::NetworkSpec {
                mode: "bridge".into(),
            }),
            lifecycle: full.then_some(api::LifecycleSpec {
                pause_after_idle_seconds: Some(60),
                suspend_after_paused_seconds: Some(600),
                wake_on_connect: Some(true),
            }),
        }
    }

    fn actor(full: bool) -> api::Actor {
        api::Actor {
            id: "a1".into(),
            template: api::TemplateRef {
                namespace: "default".into(),
                name: "t".into(),
            },
            spec: spec(full),
            status: api::ActorStatus::Running,
            status_message: String::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            sandbox: None,
            snapshots: Vec::new(),
            latest_snapshot: None,
            exit_code: None,
            network: network(full),
            ready: full,
            last_active_at: full.then(|| "2026-01-01T00:00:01Z".into()),
            activated_from: full.then(|| "paused".into()),
        }
    }

    fn network(full: bool) -> api::ActorNetwork {
        api::ActorNetwork {
            mode: if full {
                api::NetworkMode::Bridge
            } else {
                api::NetworkMode::None
            },
            ip: full.then(|| "10.88.0.2".to_string()),
            ports: if full {
                vec![published(Some(18080))]
            } else {
                Vec::new()
            },
        }
    }

    fn published(host: Option<u16>) -> api::PublishedPort {
        api::PublishedPort {
            container: "app".into(),
            container_port: 8080,
            protocol: "TCP".into(),
            host_port: host,
        }
    }

    #[test]
    fn the_actor_record_is_described_as_it_serialises() {
        agree("Actor", json(&actor(false)), json(&actor(true)));
        agree("ActorNetwork", json(&network(false)), json(&network(true)));
        agree(
            "PublishedPort",
            json(&published(None)),
            json(&published(Some(1))),
        );
    }

    #[test]
    fn the_create_request_is_described_as_it_serialises() {
        agree("ActorSpec", json(&spec(false)), json(&spec(true)));
        agree("Container", json(&container(false)), json(&container(true)));
        agree(
            "NetworkSpec",
            json(&api::NetworkSpec {
                mode: "none".into(),
            }),
            json(&api::NetworkSpec {
                mode: "none".into(),
            }),
        );
        agree(
            "ContainerPort",
            json(&port(None, None)),
            json(&port(Some(1), Some("TCP"))),
        );
        agree("Probe", json(&api::Probe::default()), json(&probe_full()));
        agree(
            "HttpGetAction",
            json(&api::HttpGetAction {
                path: None,
                port: 1,
            }),
            json(&api::HttpGetAction {
                path: Some("/".into()),
                port: 1,
            }),
        );
        let tcp = json(&api::TcpSocketAction { port: 1 });
        agree("TcpSocketAction", tcp.clone(), tcp);
        let pull = api::PullProgress {
            reference: "docker://r:5000/a:v1".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            bytes_done: 1,
            bytes_total: 2,
        };
        let event = |pull: Option<api::PullProgress>| api::Event {
            seq: 1,
            actor_id: "a".into(),
            from: None,
            to: None,
            time: "2026-12-05T00:00:00Z".into(),
            reason: "pulling".into(),
            pull,
        };
        agree(
            "Event",
            json(&event(None)),
            json(&event(Some(pull.clone()))),
        );
        agree("PullProgress", json(&pull), json(&pull));
        let req = json(&api::PullImageRequest {
            reference: "docker://r:5000/a:v1".into(),
        });
        agree("PullImageRequest", req.clone(), req);
    }

    #[test]
    fn network_modes_are_the_ones_the_api_knows() {
        let described = enum_values("NetworkMode");
        let known: Vec<Value> = [api::NetworkMode::Bridge, api::NetworkMode::None]
            .iter()
            .map(json)
            .collect();
        assert_eq!(described, known);
        for mode in &described {
            let name = mode.as_str().expect("a name");
            let parsed: api::NetworkMode = name.parse().expect("a mode the API parses");
            assert_eq!(parsed.as_str(), name);
        }
    }
}
