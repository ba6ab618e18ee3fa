//! Every answer the end-to-end tests read is checked against the API
//! description, `docs/openapi.yaml`: its path and method must be described
//! (or the answer must be an error), its status described for that
//! operation, and its body valid against the schema given there (each line
//! of an NDJSON stream). A control plane generates its client from that
//! file; an answer that strays from it breaks such a client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use atectl::{Observer, RawResponse};
use hyper::Method;
use serde_json::{json, Value};

/// The description, as JSON.
fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = crate::repo_root().join("docs/openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
        serde_norway::from_str(&text).expect("docs/openapi.yaml parses")
    })
}

/// The observer the test harness installs on its clients.
pub fn observer() -> Observer {
    Arc::new(|method: &Method, path: &str, resp: &RawResponse| check(method, path, resp))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The described path template that `path` matches, if any.
fn template_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let paths = spec()["paths"].as_object()?;
    let mut best: Option<(usize, &String)> = None;
    for template in paths.keys() {
        let t: Vec<&str> = template.split('/').collect();
        if t.len() != parts.len() {
            continue;
        }
        let literal = t.iter().filter(|s| !s.starts_with('{')).count();
        let fits = t
            .iter()
            .zip(&parts)
            .all(|(t, p)| t.starts_with('{') || t == p);
        if fits && best.is_none_or(|(l, _)| literal > l) {
            best = Some((literal, template));
        }
    }
    best.map(|(_, t)| t.clone())
}

/// Follows a `$ref` to its target's JSON pointer.
fn resolve(pointer: String) -> String {
    let at = spec()
        .pointer(pointer.trim_start_matches('#'))
        .unwrap_or_else(|| panic!("openapi.yaml: {pointer} does not exist"));
    match at.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(r.to_string()),
        None => pointer,
    }
}

/// Validates `instance` against the schema at JSON pointer `pointer`.
fn validate(pointer: &str, instance: &Value) -> Result<(), String> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let validator = {
        let mut cache = VALIDATORS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        cache
            .entry(pointer.to_string())
            .or_insert_with(|| {
                // The whole document is the root, so that the schema's
                // `#/components/...` references resolve.
                let mut root = spec().clone();
                // A JSON pointer in a URI fragment is percent-encoded.
                root["$ref"] = json!(pointer.replace('{', "%7B").replace('}', "%7D"));
                Arc::new(
                    jsonschema::draft202012::new(&root)
                        .unwrap_or_else(|e| panic!("openapi.yaml: schema {pointer}: {e}")),
                )
            })
            .clone()
    };
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

const ERROR_BODY: &str = "#/components/schemas/ErrorBody";

/// Checks one answer; panics (failing the test) when it strays.
pub fn check(method: &Method, path_and_query: &str, resp: &RawResponse) {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let what = format!("{method} {path_and_query} → {}", resp.status);
    let body = || -> Value {
        serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
            panic!(
                "{what}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&resp.body)
            )
        })
    };
    let operation = template_of(path).and_then(|t| {
        let m = method.as_str().to_lowercase();
        spec()["paths"][&t].get(&m).map(|_| (t, m))
    });
    let Some((template, m)) = operation else {
        // Not a described operation: it can only be an error.
        assert!(
            resp.status >= 400,
            "{what}: answered, but not in docs/openapi.yaml"
        );
        if let Err(e) = validate(ERROR_BODY, &body()) {
            panic!("{what}: error body: {e}");
        }
        return;
    };
    let responses = format!("#/paths/{}/{m}/responses", escape(&template));
    let status = resp.status.to_string();
    let described = spec()
        .pointer(&format!("{}/{status}", responses.trim_start_matches('#')))
        .is_some();
    assert!(
        described || resp.status >= 400,
        "{what}: status {status} is not described for {m} {template}"
    );
    let key = if described {
        status.as_str()
    } else {
        "default"
    };
    let response = resolve(format!("{responses}/{key}"));
    let content = spec()
        .pointer(&format!("{}/content", response.trim_start_matches('#')))
        .and_then(Value::as_object);
    let Some(content) = content else {
        assert!(
            resp.body.is_empty(),
            "{what}: a body where none is described"
        );
        return;
    };
    let media = resp
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        content.contains_key(&media),
        "{what}: content type {media:?} is not described ({:?})",
        content.keys().collect::<Vec<_>>()
    );
    let schema = format!("{response}/content/{}/schema", escape(&media));
    match media.as_str() {
        "application/json" => {
            if let Err(e) = validate(&schema, &body()) {
                panic!("{what}: {e}");
            }
        }
        "application/x-ndjson" => {
            for line in resp.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("{what}: a line is not JSON: {e}"));
                if let Err(e) = validate(&schema, &v) {
                    panic!("{what}: {e}");
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_templates() {
        assert_eq!(template_of("/v1/actors").as_deref(), Some("/v1/actors"));
        assert_eq!(
            template_of("/v1/actors/a1/resume").as_deref(),
            Some("/v1/actors/{id}/resume")
        );
        assert_eq!(template_of("/v1/nothing/here/at/all"), None);
    }

    #[test]
    fn a_body_that_strays_is_caught() {
        let ok = json!({"error": {"code": "NotFound", "message": "x"}});
        assert!(validate(ERROR_BODY, &ok).is_ok());
        let extra = json!({"error": {"code": "NotFound", "message": "x", "more": 1}});
        assert!(validate(ERROR_BODY, &extra).is_err());
        let actor = "#/components/schemas/Actor";
        assert!(validate(actor, &json!({"id": "a"})).is_err());
    }

    #[test]
    fn an_actor_with_a_network_is_described() {
        let actor = "#/components/schemas/Actor";
        let mut a = json!({
            "id": "web-1",
            "template": {"namespace": "default", "name": "web"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "dir:/srv/rootfs",
                    "ports": [
                        {"containerPort": 8080, "hostPort": 18080},
                        {"containerPort": 9090, "protocol": "TCP"}
                    ],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 1,
                        "failureThreshold": 30
                    }
                }],
                "network": {"mode": "bridge"}
            },
            "status": "RUNNING",
            "statusMessage": "",
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "sandbox": null,
            "snapshots": [],
            "latestSnapshot": null,
            "exitCode": null,
            "network": {
                "mode": "bridge",
                "ip": "10.88.0.2",
                "ports": [
                    {"container": "app", "containerPort": 8080, "protocol": "TCP", "hostPort": 18080},
                    {"container": "app", "containerPort": 9090, "protocol": "TCP", "hostPort": null}
                ]
            },
            "ready": true
        });
        validate(actor, &a).unwrap();
        // Without a network.
        let mut none = a.clone();
        none["network"] = json!({"mode": "none", "ip": null, "ports": []});
        validate(actor, &none).unwrap();
        // `network` and `ready` are always there.
        let mut missing = a.clone();
        missing.as_object_mut().unwrap().remove("ready");
        assert!(validate(actor, &missing).is_err());
        // A probe has one action.
        a["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] = json!({"port": 8080});
        assert!(validate(actor, &a).is_err());
    }
}
