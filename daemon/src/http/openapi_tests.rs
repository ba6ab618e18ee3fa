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
        Route::Act(_, Op::Stop) => (Method::POST, "/v1/actors/{id}/stop"),
        Route::Logs { .. } => (Method::GET, "/v1/actors/{id}/logs"),
        Route::Metrics => (Method::GET, "/metrics"),
        Route::ListImages => (Method::GET, "/v1/images"),
        Route::DeleteImage(_) => (Method::DELETE, "/v1/images/{digest}"),
        Route::Events { .. } => (Method::GET, "/v1/events"),
    }
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "a1")
        .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
}

#[test]
fn every_described_operation_is_routed_to_the_route_it_describes() {
    let ops = described();
    assert!(ops.len() >= 14, "{ops:?}");
    for (method, path) in &ops {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = route(&m, &concrete(path), None)
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
        "DELETE /v1/images/{digest}",
        "GET /v1/events",
    ];
    let mut seen = std::collections::HashSet::new();
    for s in samples {
        let (method, path) = s.split_once(' ').expect("sample");
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = route(&m, &concrete(path), None).expect("sample routes");
        let (rm, rp) = template(&r);
        assert!(
            ops.contains(&(rm.to_string(), rp.to_string())),
            "{rm} {rp} is routed but not in docs/openapi.yaml"
        );
        seen.insert(std::mem::discriminant(&r));
    }
    // Every Route variant had a sample (Act counts once per action above).
    assert_eq!(seen.len(), 10, "a route has no sample here");
}
