//! The securityContext as the actor's initial process sees it
//! (`/proc/1/status` inside the sandbox).

use std::time::Duration;

use atelet_api::capabilities::{capability_mask, resolve_capabilities};
use atelet_e2e::{actor_request, proc_status_fields, Daemon};
use serde_json::json;

const PRINT_STATUS: &str =
    "cat /proc/1/status; echo id-u=$(id -u); echo id-g=$(id -g); echo done; sleep 100000";

async fn observed(
    d: &Daemon,
    id: &str,
    security_context: Option<serde_json::Value>,
) -> std::collections::BTreeMap<String, String> {
    let mut body = actor_request(id, PRINT_STATUS);
    if let Some(sc) = security_context {
        body["spec"]["containers"][0]["securityContext"] = sc;
    }
    d.create(&body).await;
    let log = d
        .wait_log(id, Duration::from_secs(20), |l| l.contains("done"))
        .await;
    proc_status_fields(&log)
}

#[tokio::test(flavor = "multi_thread")]
async fn added_capabilities_and_run_as_reach_the_initial_process() {
    let d = Daemon::start();
    let f = observed(
        &d,
        "sc-added",
        Some(json!({
            "capabilities": {"add": ["NET_ADMIN", "setuid"]},
            "runAsUser": 1000,
            "runAsGroup": 1000
        })),
    )
    .await;
    assert_eq!(f["Uid"].split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    assert_eq!(f["Gid"].split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(f[set], "00000000200014a0", "{set}");
    }
    // The same mask the API crate computes from the names.
    let sc =
        serde_json::from_value(json!({"capabilities": {"add": ["NET_ADMIN", "setuid"]}})).unwrap();
    assert_eq!(
        capability_mask(&resolve_capabilities(Some(&sc)).unwrap()),
        0x2000_14a0
    );
    // A child exec'd as non-root loses its effective set (no ambient caps).
    assert_eq!(f["id-u"], "1000");
    assert_eq!(f["id-g"], "1000");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_security_context_gives_root_and_exactly_the_defaults() {
    let d = Daemon::start();
    let f = observed(&d, "sc-default", None).await;
    assert_eq!(f["Uid"].split_whitespace().collect::<Vec<_>>(), ["0"; 4]);
    assert_eq!(f["Gid"].split_whitespace().collect::<Vec<_>>(), ["0"; 4]);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(f[set], "0000000020000420", "{set}");
    }
    assert_eq!(f["id-u"], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_default_is_gone_inside() {
    let d = Daemon::start();
    let f = observed(
        &d,
        "sc-drop",
        Some(json!({"capabilities": {"drop": ["KILL"]}})),
    )
    .await;
    // AUDIT_WRITE | NET_BIND_SERVICE.
    assert_eq!(f["CapEff"], "0000000020000400");
}
