//! Property tests of request decoding and validation: whatever arrives on
//! the socket, decoding and validation answer Ok or a named error, never a
//! panic; a valid request survives a round trip; a request made invalid in
//! one field is refused naming that field.
#![allow(clippy::unwrap_used)]

use atelet_api::capabilities::{parse_capability, resolve_capabilities, CapabilityEntry};
use atelet_api::{from_json_slice, validate_create, CreateActorRequest, ImageRef};
use proptest::prelude::*;
use serde_json::{json, Value};

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn cap_name() -> impl Strategy<Value = String> {
    let names: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    (
        proptest::sample::select(names),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(n, strip, lower)| {
            let n = if strip {
                n.trim_start_matches("CAP_").to_string()
            } else {
                n
            };
            if lower {
                n.to_lowercase()
            } else {
                n
            }
        })
}

/// Valid create requests.
fn valid_request() -> impl Strategy<Value = Value> {
    (
        label(),
        label(),
        proptest::collection::vec(label(), 1..4),
        proptest::collection::vec(cap_name(), 0..4),
        proptest::option::of(0i64..=4_294_967_294),
        proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,8}", "[ -~]{0,16}"), 0..3),
    )
        .prop_map(|(id, ns, names, caps, uid, env)| {
            let mut names = names;
            names.sort();
            names.dedup();
            names.retain(|n| n != "pause");
            if names.is_empty() {
                names.push("app".into());
            }
            let containers: Vec<Value> = names
                .iter()
                .map(|n| {
                    let mut sc = json!({"capabilities": {"add": caps}});
                    if let Some(u) = uid {
                        sc["runAsUser"] = json!(u);
                    }
                    json!({
                        "name": n,
                        "image": "dir:/srv/rootfs",
                        "command": ["/bin/sh", "-c", "true"],
                        "env": env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                        "securityContext": sc,
                    })
                })
                .collect();
            json!({
                "id": id,
                "template": {"namespace": ns, "name": "t"},
                "spec": {"containers": containers}
            })
        })
}

/// Arbitrary JSON, biased towards the request's own field names.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("id".to_string()),
        Just("template".to_string()),
        Just("spec".to_string()),
        Just("containers".to_string()),
        Just("name".to_string()),
        Just("image".to_string()),
        Just("securityContext".to_string()),
        Just("capabilities".to_string()),
        Just("add".to_string()),
        Just("runAsUser".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(req) = from_json_slice::<CreateActorRequest>(&bytes) {
            let _ = validate_create(&req);
        }
    }

    #[test]
    fn decoding_any_json_never_panics(v in arbitrary_json()) {
        if let Ok(req) = serde_json::from_value::<CreateActorRequest>(v) {
            let _ = validate_create(&req);
        }
    }

    #[test]
    fn valid_requests_validate_and_round_trip(v in valid_request()) {
        let req: CreateActorRequest = serde_json::from_value(v.clone()).unwrap();
        // The body decoder takes every object serde_json takes, alike.
        let strict: CreateActorRequest = from_json_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
        prop_assert_eq!(&strict, &req);
        prop_assert!(validate_create(&req).is_ok(), "{:?}", validate_create(&req));
        let again: CreateActorRequest =
            serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
        prop_assert_eq!(&again, &req);
        for c in req.spec.iter().flat_map(|s| &s.containers) {
            let set = resolve_capabilities(c.security_context.as_ref()).unwrap();
            // Defaults first, no duplicates.
            prop_assert_eq!(&set[..3], &atelet_api::capabilities::DEFAULT_CAPABILITIES[..]);
            let mut dedup = set.clone();
            dedup.sort_by_key(|c| c.index());
            dedup.dedup();
            prop_assert_eq!(dedup.len(), set.len());
        }
    }

    #[test]
    fn one_bad_field_is_refused_by_name(v in valid_request(), which in 0usize..6, junk in "[A-Z_./ ]{1,10}") {
        let mut v = v;
        let field = match which {
            0 => { v["id"] = json!(format!("X{junk}")); "id" }
            1 => { v["template"]["namespace"] = json!(format!("-{junk}")); "template.namespace" }
            2 => { v["spec"]["containers"][0]["name"] = json!("pause"); "spec.containers[0].name" }
            3 => { v["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(-1); "spec.containers[0].securityContext.runAsUser" }
            4 => { v["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = json!([format!("NOT_A_CAP{junk}")]); "spec.containers[0].securityContext.capabilities.add[0]" }
            _ => { v["spec"]["containers"][0]["image"] = json!(format!("docker://{junk}")); "spec.containers[0].image" }
        };
        let req: CreateActorRequest = serde_json::from_value(v).unwrap();
        let err = validate_create(&req).unwrap_err();
        prop_assert_eq!(err.field, field);
    }

    #[test]
    fn capability_parsing_accepts_only_real_names(s in ".{0,24}") {
        if let Ok(CapabilityEntry::Cap(c)) = parse_capability(&s) {
            prop_assert!(caps::all().contains(&c));
        }
    }

    #[test]
    fn image_references_round_trip(s in "(dir|oci|oci-archive|x):[ -~]{0,30}") {
        if let Ok(r) = ImageRef::parse(&s) {
            prop_assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
        }
    }
}
