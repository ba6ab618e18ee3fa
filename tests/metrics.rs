//! `GET /metrics`: the counters move when actors are suspended and resumed.

use std::collections::BTreeMap;

use atelet_e2e::{actor_request, Daemon};
use hyper::Method;

/// `name{labels} value` lines → value.
async fn scrape(d: &Daemon) -> BTreeMap<String, f64> {
    let resp = d.client.raw(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp
        .content_type
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_and_resume_move_the_counters() {
    let d = Daemon::start();
    d.create(&actor_request("m1", "sleep 100000")).await;
    let before = scrape(&d).await;
    assert_eq!(get(&before, r#"atelet_actors{status="RUNNING"}"#), 1.0);
    assert_eq!(
        get(
            &before,
            r#"atelet_operations_total{op="create",result="ok"}"#
        ),
        1.0
    );

    d.client.act("m1", "suspend").await.unwrap();
    let mid = scrape(&d).await;
    assert_eq!(get(&mid, r#"atelet_actors{status="SUSPENDED"}"#), 1.0);
    assert_eq!(get(&mid, r#"atelet_actors{status="RUNNING"}"#), 0.0);
    assert!(get(&mid, "atelet_snapshot_bytes") > 0.0);
    assert!(get(&mid, "atelet_snapshot_written_bytes_total") > 0.0);

    d.client.act("m1", "resume").await.unwrap();
    d.client.act("m1", "resume").await.unwrap_err(); // 409: counted as an error
    let after = scrape(&d).await;
    for op in ["suspend", "resume"] {
        let ok = format!(r#"atelet_operations_total{{op="{op}",result="ok"}}"#);
        assert_eq!(get(&after, &ok) - get(&before, &ok), 1.0, "{op}");
        let count = format!(r#"atelet_operation_duration_seconds_count{{op="{op}"}}"#);
        assert_eq!(get(&after, &count) - get(&before, &count), 1.0, "{op}");
        let sum = format!(r#"atelet_operation_duration_seconds_sum{{op="{op}"}}"#);
        assert!(get(&after, &sum) > 0.0, "{op}");
    }
    assert_eq!(
        get(
            &after,
            r#"atelet_operations_total{op="resume",result="error"}"#
        ),
        1.0
    );
    assert_eq!(get(&after, r#"atelet_actors{status="RUNNING"}"#), 1.0);
}
