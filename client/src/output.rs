//! How atectl shows things: the actor table, documents as JSON or YAML,
//! event lines and the health report. Pure functions from values to text,
//! so that what an operator reads is unit-tested.

use std::time::{Duration, SystemTime};

use atelet_api::{Actor, ActorStats, ActorStatus, Event, Health, Image, PullProgress};
use serde::Serialize;

/// Columns of `list`: ID, STATUS, TEMPLATE, SNAPSHOTS, AGE; `wide` adds
/// PID, IP (the actor's address on the node's bridge), PORTS (the published
/// ones, `HOSTPORT->CONTAINERPORT`), IMAGE, EXIT and MESSAGE. Columns are
/// padded to their widest cell and separated by three spaces; an empty
/// cell shows `-`.
pub fn actor_table(actors: &[Actor], wide: bool, now: SystemTime) -> String {
    let mut header = vec!["ID", "STATUS", "TEMPLATE", "SNAPSHOTS", "AGE"];
    if wide {
        header.extend(["PID", "IP", "PORTS", "IMAGE", "EXIT", "MESSAGE"]);
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for a in actors {
        let mut row = vec![
            a.id.clone(),
            a.status.to_string(),
            format!("{}/{}", a.template.namespace, a.template.name),
            a.snapshots.len().to_string(),
            age_since(&a.created_at, now),
        ];
        if wide {
            row.extend([
                a.sandbox.as_ref().map_or("-".into(), |s| s.pid.to_string()),
                a.network.ip.clone().unwrap_or_else(|| "-".into()),
                published_ports(a),
                a.spec
                    .containers
                    .first()
                    .map_or("-".into(), |c| c.image.clone()),
                a.exit_code.map_or("-".into(), |c| c.to_string()),
                one_line(&a.status_message),
            ]);
        }
        rows.push(row);
    }
    render(&rows)
}

/// The ports an actor publishes on the node, `HOSTPORT->CONTAINERPORT`
/// comma-separated in spec order (`18080->8080,2222->22`); `-` when none.
/// Ports that are not published are reachable only at the actor's own IP.
pub fn published_ports(a: &Actor) -> String {
    let published: Vec<String> = a
        .network
        .ports
        .iter()
        .filter_map(|p| p.host_port.map(|h| format!("{h}->{}", p.container_port)))
        .collect();
    if published.is_empty() {
        "-".into()
    } else {
        published.join(",")
    }
}

/// Columns of `images`: DIGEST (the first 12 hex digits, enough for
/// `rmi`), SIZE, LAYERS, ACTORS (how many), AGE, REFERENCE (the first, and
/// how many more); `wide` shows the full digest, UNPACK time, and every
/// actor and reference.
pub fn image_table(images: &[Image], wide: bool, now: SystemTime) -> String {
    let header = if wide {
        vec![
            "DIGEST",
            "SIZE",
            "LAYERS",
            "UNPACK",
            "AGE",
            "ACTORS",
            "REFERENCES",
        ]
    } else {
        vec!["DIGEST", "SIZE", "LAYERS", "ACTORS", "AGE", "REFERENCE"]
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    for i in images {
        let hex = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
        rows.push(if wide {
            vec![
                i.digest.clone(),
                human_bytes(i.size_bytes),
                i.layers.to_string(),
                format!("{}ms", i.unpack_ms),
                age_since(&i.created_at, now),
                list(&i.actors),
                list(&i.references),
            ]
        } else {
            let reference = match i.references.as_slice() {
                [] => "-".to_string(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{})", rest.len()),
            };
            vec![
                hex.chars().take(12).collect(),
                human_bytes(i.size_bytes),
                i.layers.to_string(),
                i.actors.len().to_string(),
                age_since(&i.created_at, now),
                reference,
            ]
        });
    }
    render(&rows)
}

/// `atectl top`: ACTOR, STATUS, CPU (cores used between the samples
/// `before` and `now`), CPU LIMIT, MEMORY, MEM LIMIT, MEM% (of the limit),
/// PIDS, OOM. A number the daemon could not read shows as `-`.
pub fn top_table(before: &[ActorStats], now: &[ActorStats]) -> String {
    let header = [
        "ACTOR",
        "STATUS",
        "CPU",
        "CPU LIMIT",
        "MEMORY",
        "MEM LIMIT",
        "MEM%",
        "PIDS",
        "OOM",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let dash = || "-".to_string();
    for s in now {
        let cpu = before
            .iter()
            .find(|b| b.id == s.id)
            .and_then(|b| cpu_rate(b, s))
            .map_or_else(dash, |r| format!("{r:.2}"));
        let percent = match (s.memory_bytes, s.memory_limit_bytes) {
            (Some(m), Some(l)) if l > 0 => format!("{:.0}%", m as f64 * 100.0 / l as f64),
            _ => dash(),
        };
        rows.push(vec![
            s.id.clone(),
            s.status.to_string(),
            cpu,
            s.cpu_limit.map_or_else(dash, |c| format!("{c:.2}")),
            s.memory_bytes.map_or_else(dash, human_bytes),
            s.memory_limit_bytes.map_or_else(dash, human_bytes),
            percent,
            s.pids.map_or_else(dash, |p| p.to_string()),
            s.oom_kills.map_or_else(dash, |k| k.to_string()),
        ]);
    }
    render(&rows)
}

/// Cores used between two samples of one actor: CPU seconds over wall
/// seconds (from the samples' own times). `None` without both numbers,
/// or when the sandbox changed in between (its counter went back).
pub fn cpu_rate(before: &ActorStats, now: &ActorStats) -> Option<f64> {
    let (c0, c1) = (before.cpu_seconds?, now.cpu_seconds?);
    let t0 = humantime::parse_rfc3339_weak(&before.time).ok()?;
    let t1 = humantime::parse_rfc3339_weak(&now.time).ok()?;
    let wall = t1.duration_since(t0).ok()?.as_secs_f64();
    (wall > 0.0 && c1 >= c0).then(|| (c1 - c0) / wall)
}

/// Bytes in powers of 1024, one decimal below 10 (`950B`, `2.1MiB`, `34MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A status message may hold runsc's multi-line stderr; a table cell may not.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "-".into()
    } else {
        joined
    }
}

/// The age of a resource created at `rfc3339`, as `kubectl` shows it:
/// two significant units while they matter (`3m12s`, `5h4m`, `2d3h`), then one.
pub fn age_since(rfc3339: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339_weak(rfc3339) {
        // A clock that went back shows 0s rather than nothing.
        Ok(t) => short_duration(now.duration_since(t).unwrap_or_default()),
        Err(_) => "?".into(),
    }
}

/// See [`age_since`].
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if s < 600 && !s.is_multiple_of(60) {
        format!("{m}m{}s", s % 60)
    } else if s < 3 * 3600 {
        format!("{m}m")
    } else if s < 8 * 3600 && !m.is_multiple_of(60) {
        format!("{h}h{}m", m % 60)
    } else if s < 2 * 86_400 {
        format!("{h}h")
    } else if s < 8 * 86_400 && !h.is_multiple_of(24) {
        format!("{days}d{}h", h % 24)
    } else if days < 365 {
        format!("{days}d")
    } else {
        format!("{}y{}d", days / 365, days % 365)
    }
}

/// One line for a finished operation: `counter-1 SUSPENDED`.
pub fn actor_line(a: &Actor) -> String {
    format!("{} {}\n", a.id, a.status)
}

/// A serialisable value as pretty JSON (with a final newline).
pub fn json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        // Only a map with non-string keys fails; none of the API types has one.
        format!("{{\"error\": \"serialising output: {e}\"}}")
    });
    text.push('\n');
    text
}

/// A serialisable value as YAML.
pub fn yaml<T: Serialize>(value: &T) -> String {
    serde_norway::to_string(value).unwrap_or_else(|e| format!("error: serialising output: {e}\n"))
}

/// `#SEQ  TIME  ACTOR  FROM -> TO  REASON`; a new actor comes from `-`,
/// a deleted one goes to `-`.
pub fn event_line(e: &Event) -> String {
    let status = |s: Option<ActorStatus>| s.map_or("-".to_string(), |s| s.to_string());
    if let Some(p) = &e.pull {
        let actor = if e.actor_id.is_empty() {
            "-"
        } else {
            &e.actor_id
        };
        return format!("#{}  {}  {}  {}\n", e.seq, e.time, actor, pull_progress(p));
    }
    format!(
        "#{}  {}  {}  {} -> {}  {}\n",
        e.seq,
        e.time,
        e.actor_id,
        status(e.from),
        status(e.to),
        one_line(&e.reason)
    )
}

/// `pulling REF 1.2 MiB/3.4 MiB (35%)`.
pub fn pull_progress(p: &PullProgress) -> String {
    let pct = (p.bytes_done.saturating_mul(100))
        .checked_div(p.bytes_total)
        .unwrap_or(100)
        .min(100);
    format!(
        "pulling {} {}/{} ({pct}%)",
        one_line(&p.reference),
        human_bytes(p.bytes_done),
        human_bytes(p.bytes_total)
    )
}

/// The health report as a few aligned lines.
pub fn health_text(h: &Health) -> String {
    let runsc = match (&h.runsc.version, &h.runsc.error) {
        (Some(v), _) => format!("{v} ({})", h.runsc.path),
        (None, Some(e)) => format!("unusable ({}): {}", h.runsc.path, one_line(e)),
        (None, None) => format!("unusable ({})", h.runsc.path),
    };
    let counts: Vec<String> = h
        .actors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let actors = if counts.is_empty() {
        "none".to_string()
    } else {
        counts.join(", ")
    };
    let quarantined = match &h.quarantined {
        Some(q) => format!(
            "records: {} in quarantine ({})\n",
            q.count,
            q.ids.join(", ")
        ),
        None => String::new(),
    };
    format!(
        "status:  {}\nrunsc:   {runsc}\nactors:  {actors}\n{quarantined}",
        h.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn actor(id: &str, status: &str, created_at: &str, snapshots: usize) -> Actor {
        let snaps: Vec<serde_json::Value> = (0..snapshots)
            .map(|i| json!({"id": format!("snap-{i:06}"), "createdAt": created_at, "sizeBytes": 1}))
            .collect();
        serde_json::from_value(json!({
            "id": id,
            "template": {"namespace": "default", "name": "counter"},
            "spec": {"containers": [{"name": "app", "image": "dir:/r"}]},
            "status": status,
            "statusMessage": "",
            "createdAt": created_at,
            "updatedAt": created_at,
            "sandbox": if status == "RUNNING" { json!({"pid": 42, "runscVersion": "v", "containerId": "c"}) } else { json!(null) },
            "snapshots": snaps,
            "latestSnapshot": null,
            "exitCode": null,
            "network": {"mode": "none", "ip": null, "ports": []},
            "ready": status == "RUNNING"
        }))
        .unwrap()
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn the_table_has_its_columns_aligned() {
        let now = at("2026-01-01T01:00:00Z");
        let actors = [
            actor("counter-1", "RUNNING", "2026-01-01T00:59:15.250Z", 0),
            actor("a", "SUSPENDED", "2025-12-30T00:00:00Z", 12),
        ];
        assert_eq!(
            actor_table(&actors, false, now),
            "\
ID          STATUS      TEMPLATE          SNAPSHOTS   AGE
counter-1   RUNNING     default/counter   0           44s
a           SUSPENDED   default/counter   12          2d1h
"
        );
        let wide = actor_table(&actors, true, now);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(
            lines[0].ends_with("AGE    PID   IP   PORTS   IMAGE    EXIT   MESSAGE"),
            "{wide}"
        );
        assert!(
            lines[1].ends_with("44s    42    -    -       dir:/r   -      -"),
            "{wide}"
        );
        assert!(
            lines[2].ends_with("2d1h   -     -    -       dir:/r   -      -"),
            "{wide}"
        );
    }

    /// An actor on the bridge at `ip` with `ports` (container, host).
    fn on_bridge(mut a: Actor, ip: &str, ports: &[(u16, Option<u16>)]) -> Actor {
        a.network = serde_json::from_value(json!({
            "mode": "bridge",
            "ip": ip,
            "ports": ports
                .iter()
                .map(|(c, h)| json!({"container": "app", "containerPort": c, "protocol": "TCP", "hostPort": h}))
                .collect::<Vec<_>>(),
        }))
        .unwrap();
        a
    }

    #[test]
    fn the_wide_table_shows_the_ip_and_the_published_ports() {
        let now = at("2026-01-01T01:00:00Z");
        let created = "2026-01-01T00:59:00Z";
        let actors = [
            on_bridge(
                actor("web", "RUNNING", created, 0),
                "10.88.0.2",
                &[(8080, Some(18080)), (9090, None), (22, Some(2222))],
            ),
            on_bridge(
                actor("inner", "SUSPENDED", created, 1),
                "10.88.0.3",
                &[(80, None)],
            ),
            actor("plain", "STOPPED", created, 0),
        ];
        assert_eq!(
            actor_table(&actors, true, now),
            "\
ID      STATUS      TEMPLATE          SNAPSHOTS   AGE   PID   IP          PORTS                  IMAGE    EXIT   MESSAGE
web     RUNNING     default/counter   0           60s   42    10.88.0.2   18080->8080,2222->22   dir:/r   -      -
inner   SUSPENDED   default/counter   1           60s   -     10.88.0.3   -                      dir:/r   -      -
plain   STOPPED     default/counter   0           60s   -     -           -                      dir:/r   -      -
"
        );
        // The narrow table has neither.
        let narrow = actor_table(&actors, false, now);
        assert!(!narrow.contains("10.88.0.2"), "{narrow}");
        assert!(!narrow.contains("->"), "{narrow}");
    }

    #[test]
    fn an_empty_list_is_just_the_header() {
        assert_eq!(
            actor_table(&[], false, SystemTime::now()),
            "ID   STATUS   TEMPLATE   SNAPSHOTS   AGE\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 4 * 60, "5h4m"),
            (47 * 3600, "47h"),
            (2 * 86_400 + 3 * 3600, "2d3h"),
            (30 * 86_400, "30d"),
            (400 * 86_400, "1y35d"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
        assert_eq!(age_since("yesterday", SystemTime::now()), "?");
        // A creation time in the future (clock skew) is not an error.
        assert_eq!(
            age_since("2030-01-01T00:00:00Z", at("2026-01-01T00:00:00Z")),
            "0s"
        );
    }

    #[test]
    fn multi_line_messages_stay_on_one_line() {
        let mut a = actor("x", "FAILED", "2026-01-01T00:00:00Z", 0);
        a.status_message = "start failed: runsc:\n  exit status 1\n".into();
        a.exit_code = Some(137);
        let t = actor_table(&[a], true, at("2026-01-01T00:00:01Z"));
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .ends_with("137    start failed: runsc: exit status 1"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 2);
    }

    fn image(digest_hex: &str, refs: &[&str], actors: &[&str]) -> Image {
        serde_json::from_value(json!({
            "digest": format!("sha256:{digest_hex}"),
            "references": refs,
            "sizeBytes": 2_200_000,
            "layers": 1,
            "createdAt": "2026-01-01T00:58:00Z",
            "unpackMs": 41,
            "actors": actors,
        }))
        .unwrap()
    }

    #[test]
    fn the_image_table_shows_short_digests_and_counts() {
        let now = at("2026-01-01T01:00:00Z");
        let hex = "2f0c9a1b7d3e".to_string() + &"0".repeat(52);
        let images = [
            image(
                &hex,
                &["oci:/var/lib/images/busybox:latest", "oci-archive:/b.tar"],
                &["a", "b"],
            ),
            image(&"f".repeat(64), &[], &[]),
        ];
        assert_eq!(
            image_table(&images, false, now),
            "\
DIGEST         SIZE     LAYERS   ACTORS   AGE   REFERENCE
2f0c9a1b7d3e   2.1MiB   1        2        2m    oci:/var/lib/images/busybox:latest (+1)
ffffffffffff   2.1MiB   1        0        2m    -
"
        );
        let wide = image_table(&images[..1], true, now);
        assert!(wide.starts_with("DIGEST"), "{wide}");
        assert!(wide.contains(&format!("sha256:{hex}")), "{wide}");
        assert!(wide.contains("41ms"), "{wide}");
        assert!(
            wide.contains("   a,b      oci:/var/lib/images/busybox:latest,oci-archive:/b.tar"),
            "{wide}"
        );
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(950), "950B");
        assert_eq!(human_bytes(2_200_000), "2.1MiB");
        assert_eq!(human_bytes(35 * 1024 * 1024), "35MiB");
        assert_eq!(human_bytes(3 << 30), "3.0GiB");
    }

    #[test]
    fn events_read_as_transitions() {
        let e: Event = serde_json::from_value(json!({
            "seq": 7, "actorId": "c1", "from": "RUNNING", "to": "SUSPENDING",
            "time": "2026-01-01T00:00:00.000Z", "reason": "suspend"
        }))
        .unwrap();
        assert_eq!(
            event_line(&e),
            "#7  2026-01-01T00:00:00.000Z  c1  RUNNING -> SUSPENDING  suspend\n"
        );
        let created = Event {
            from: None,
            to: Some(ActorStatus::Created),
            ..e.clone()
        };
        assert!(event_line(&created).contains("  - -> CREATED  "));
        let deleted = Event { to: None, ..e };
        assert!(event_line(&deleted).contains("  RUNNING -> -  "));
    }

    #[test]
    fn health_lists_only_the_statuses_in_use() {
        let mut h: Health = serde_json::from_value(json!({
            "status": "ok",
            "runsc": {"path": "/usr/bin/runsc", "version": "0.0~20221219.0"},
            "actors": {"RUNNING": 2, "SUSPENDED": 1, "FAILED": 0}
        }))
        .unwrap();
        assert_eq!(
            health_text(&h),
            "status:  ok\nrunsc:   0.0~20221219.0 (/usr/bin/runsc)\nactors:  2 RUNNING, 1 SUSPENDED\n"
        );
        h.status = "degraded".into();
        h.runsc.version = None;
        h.runsc.error = Some("not found on PATH".into());
        h.actors.clear();
        assert_eq!(
            health_text(&h),
            "status:  degraded\nrunsc:   unusable (/usr/bin/runsc): not found on PATH\nactors:  none\n"
        );
        h.quarantined = Some(atelet_api::Quarantined {
            count: 2,
            ids: vec!["a".into(), "b".into()],
        });
        assert!(
            health_text(&h).ends_with("actors:  none\nrecords: 2 in quarantine (a, b)\n"),
            "{}",
            health_text(&h)
        );
    }

    #[test]
    fn documents_come_out_as_the_apis_json_or_as_yaml() {
        let a = actor("c1", "RUNNING", "2026-01-01T00:00:00Z", 1);
        let back: Actor = serde_json::from_str(&json(&a)).unwrap();
        assert_eq!(back, a);
        let back: Actor = serde_norway::from_str(&yaml(&a)).unwrap();
        assert_eq!(back, a);
        assert!(yaml(&a).contains("status: RUNNING\n"));
    }
}
