//! The whole lifecycle driven with the `atectl` binary alone — create from
//! a YAML file and from flags, list (table and `-o json`), suspend, resume,
//! logs, events, delete — and the exit status of each class of error.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atelet_api::{ActorList, ActorStatus, Event};
use atelet_e2e::{assert_consecutive, atectl_bin, numbers, rootfs, Daemon, COUNTER};

const WAIT: Duration = Duration::from_secs(20);

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs atectl and expects it to fail with `code`, nothing on stdout and
/// one `atectl: …` line on stderr; returns that line.
fn fails(d: &Daemon, args: &[&str], code: i32) -> String {
    let o = d.atectl(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "atectl {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("atectl: "), "{err}");
    err
}

/// The table's rows, each split on whitespace, header first.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], id: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[0] == id)
        .unwrap_or_else(|| panic!("no row {id} in {rows:?}"))
}

fn list_json(d: &Daemon, extra: &[&str]) -> ActorList {
    let args: Vec<&str> = ["list", "-o", "json"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    serde_json::from_str(&d.atectl_ok(&args)).unwrap()
}

fn write_counter_yaml(dir: &Path, id: &str) -> String {
    let path = dir.join(format!("{id}.yaml"));
    std::fs::write(
        &path,
        format!(
            "# An actor that counts.\nid: {id}\ntemplate: {{namespace: default, name: counter}}\nspec:\n  containers:\n  - name: app\n    image: dir:{}\n    command: [/bin/sh, -c, '{COUNTER}']\n",
            rootfs().display()
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn the_whole_lifecycle_through_atectl_alone() {
    let d = Daemon::start();
    let health = d.atectl_ok(&["health"]);
    assert!(health.starts_with("status:  ok\n"), "{health}");
    assert!(health.contains("actors:  none"), "{health}");

    // Create: from a YAML file, and from flags (left CREATED).
    let yaml = write_counter_yaml(&d.dir, "ctl-counter-1");
    assert_eq!(
        d.atectl_ok(&["create", "-f", &yaml]),
        "ctl-counter-1 RUNNING\n"
    );
    let image = format!("dir:{}", rootfs().display());
    let created = d.atectl_ok(&[
        "create",
        "flags-1",
        "--image",
        &image,
        "--env",
        "GREETING=hi there",
        "--cap-add",
        "NET_ADMIN,setuid",
        "--user",
        "1000:1000",
        "--no-start",
        "--cmd",
        "/bin/sh",
        "-c",
        "echo $GREETING",
    ]);
    assert_eq!(created, "flags-1 CREATED\n");

    // list: the table, and -o json agreeing with it.
    let rows = table(&d.atectl_ok(&["list"]));
    assert_eq!(rows[0], ["ID", "STATUS", "TEMPLATE", "SNAPSHOTS", "AGE"]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        &row(&rows, "ctl-counter-1")[..4],
        ["ctl-counter-1", "RUNNING", "default/counter", "0"]
    );
    assert_eq!(
        &row(&rows, "flags-1")[..4],
        ["flags-1", "CREATED", "default/flags-1", "0"]
    );
    assert!(row(&rows, "flags-1")[4].ends_with('s'), "{rows:?}");
    let list = list_json(&d, &[]);
    let ids: Vec<&str> = list.actors.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["ctl-counter-1", "flags-1"]);
    let flags = &list.actors[1];
    assert_eq!(flags.status, ActorStatus::Created);
    let c = &flags.spec.containers[0];
    assert_eq!(c.image, image);
    assert_eq!(c.command, ["/bin/sh", "-c", "echo $GREETING"]);
    assert_eq!(c.env[0].name, "GREETING");
    assert_eq!(c.env[0].value, "hi there");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(1000));
    assert_eq!(sc.run_as_group, Some(1000));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().add,
        ["NET_ADMIN", "setuid"]
    );
    let wide = table(&d.atectl_ok(&["list", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "ID",
            "STATUS",
            "TEMPLATE",
            "SNAPSHOTS",
            "AGE",
            "PID",
            "IP",
            "PORTS",
            "IMAGE",
            "EXIT",
            "MESSAGE"
        ]
    );
    let pid: i32 = row(&wide, "ctl-counter-1")[5].parse().unwrap();
    // No network asked for: no address, nothing published.
    assert_eq!(&row(&wide, "ctl-counter-1")[6..8], ["-", "-"], "{wide:?}");
    assert_eq!(
        Some(pid),
        list.actors[0].sandbox.as_ref().map(|s| s.pid),
        "{wide:?}"
    );

    // Suspend: one snapshot, shown in the table and in the status filter.
    let before = d.atectl_wait_numbers("ctl-counter-1", |n| n.len() >= 5);
    assert_eq!(
        d.atectl_ok(&["suspend", "ctl-counter-1"]),
        "ctl-counter-1 SUSPENDED\n"
    );
    let stood = *numbers(&d.atectl_ok(&["logs", "ctl-counter-1"]))
        .last()
        .unwrap();
    assert!(stood >= *before.last().unwrap());
    let rows = table(&d.atectl_ok(&["list"]));
    assert_eq!(
        &row(&rows, "ctl-counter-1")[..4],
        ["ctl-counter-1", "SUSPENDED", "default/counter", "1"]
    );
    let suspended = list_json(&d, &["--status", "suspended"]);
    assert_eq!(suspended.actors.len(), 1);
    assert_eq!(suspended.actors[0].id, "ctl-counter-1");
    assert_eq!(suspended.actors[0].snapshots.len(), 1);

    // A transition not allowed from the status: 4, the daemon's words.
    let err = fails(&d, &["suspend", "ctl-counter-1"], 4);
    assert_eq!(
        err,
        "atectl: cannot suspend actor ctl-counter-1: it is SUSPENDED (suspend needs RUNNING or PAUSED)\n"
    );

    // Resume: the counter goes on from where it stood.
    assert_eq!(
        d.atectl_ok(&["resume", "ctl-counter-1"]),
        "ctl-counter-1 RUNNING\n"
    );
    let after = d.atectl_wait_numbers("ctl-counter-1", |n| {
        n.last().is_some_and(|last| *last >= stood + 3)
    });
    assert_consecutive(&after);
    let err = fails(&d, &["resume", "ctl-counter-1"], 4);
    assert_eq!(
        err,
        "atectl: cannot resume actor ctl-counter-1: it is RUNNING (resume needs PAUSED, SUSPENDED or FAILED with a committed snapshot and no sandbox)\n"
    );
    let yaml_doc = d.atectl_ok(&["get", "ctl-counter-1", "-o", "yaml"]);
    assert!(yaml_doc.contains("\nstatus: RUNNING\n"), "{yaml_doc}");
    let one = table(&d.atectl_ok(&["get", "ctl-counter-1"]));
    assert_eq!(one.len(), 2);
    assert_eq!(
        &one[1][..4],
        ["ctl-counter-1", "RUNNING", "default/counter", "1"]
    );

    // The event log, as JSON lines and as text.
    let events: Vec<Event> = d
        .atectl_ok(&["events", "--no-follow", "-o", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counter: Vec<(Option<ActorStatus>, Option<ActorStatus>)> = events
        .iter()
        .filter(|e| e.actor_id == "ctl-counter-1")
        .map(|e| (e.from, e.to))
        .collect();
    use ActorStatus::*;
    assert_eq!(
        counter,
        [
            (None, Some(Created)),
            (Some(Created), Some(Starting)),
            (Some(Starting), Some(Running)),
            (Some(Running), Some(Suspending)),
            (Some(Suspending), Some(Suspended)),
            (Some(Suspended), Some(Resuming)),
            (Some(Resuming), Some(Running)),
        ]
    );
    let since = events[3].seq.to_string();
    let text = d.atectl_ok(&["events", "--since", &since, "--no-follow"]);
    assert_eq!(text.lines().count(), events.len() - 4, "{text}");
    assert!(
        text.contains("  ctl-counter-1  SUSPENDED -> RESUMING  "),
        "{text}"
    );

    // Delete; then the actor is not found (3).
    assert_eq!(
        d.atectl_ok(&["delete", "ctl-counter-1"]),
        "ctl-counter-1 deleted\n"
    );
    assert_eq!(d.atectl_ok(&["rm", "flags-1"]), "flags-1 deleted\n");
    assert_eq!(table(&d.atectl_ok(&["list"])).len(), 1);
    assert!(list_json(&d, &[]).actors.is_empty());
    assert_eq!(
        fails(&d, &["get", "ctl-counter-1"], 3),
        "atectl: actor ctl-counter-1 not found\n"
    );
    fails(&d, &["delete", "ctl-counter-1"], 3);
    fails(&d, &["logs", "ctl-counter-1"], 3);
}

#[test]
fn each_class_of_error_has_its_exit_status() {
    let d = Daemon::start();
    let image = format!("dir:{}", rootfs().display());

    // 5: refused by the daemon's validation, with its message naming the field.
    let err = fails(&d, &["create", "Bad_Id", "--image", &image], 5);
    assert!(
        err.starts_with("atectl: id: \"Bad_Id\" is not a DNS-1123 label"),
        "{err}"
    );
    let err = fails(
        &d,
        &["create", "c1", "--image", &image, "--cap-add", "CAP_FLY"],
        5,
    );
    assert!(err.contains("CAP_FLY"), "{err}");
    // An unknown field in a file is the daemon's to refuse, not a parser's.
    let file = d.dir.join("bad.yaml");
    std::fs::write(
        &file,
        format!("id: c1\ntemplate: {{namespace: default, name: t}}\nspec:\n  containers:\n  - name: app\n    image: {image}\n    imagePullPolicy: Always\n"),
    )
    .unwrap();
    let err = fails(&d, &["create", "-f", file.to_str().unwrap()], 5);
    assert!(err.contains("imagePullPolicy"), "{err}");
    // 5 too: a file atectl cannot read or parse.
    std::fs::write(&file, "id: [unclosed\n").unwrap();
    let err = fails(&d, &["create", "-f", file.to_str().unwrap()], 5);
    assert!(err.contains("bad.yaml: not valid YAML"), "{err}");
    fails(&d, &["create", "-f", "/nonexistent/x.yaml"], 5);

    // 4: the id is taken.
    d.atectl_ok(&[
        "create",
        "c1",
        "--image",
        &image,
        "--no-start",
        "--cmd",
        "true",
    ]);
    let err = fails(&d, &["create", "c1", "--image", &image, "--cmd", "true"], 4);
    assert!(err.contains("c1"), "{err}");
    // 3: no such actor, for every verb that names one.
    for verb in [
        "get", "start", "suspend", "resume", "stop", "delete", "logs",
    ] {
        fails(&d, &[verb, "nobody"], 3);
    }

    // 2: usage, from clap, before anything is sent.
    for args in [
        &["list", "-o", "xml"][..],
        &["create", "c2"],
        &["frobnicate"],
        &["create", "c2", "--image", &image, "--user", "root"],
    ] {
        let o = d.atectl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(
        d.atectl_ok(&["list", "--status", "CREATED"])
            .lines()
            .count(),
        2
    );

    // 6: no daemon on the socket; from ATELET_SOCKET as well as --socket.
    let o = Command::new(atectl_bin())
        .args(["--socket", "/nonexistent/atelet.sock", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("/nonexistent/atelet.sock"), "{err}");
    let o = Command::new(atectl_bin())
        .arg("health")
        .env("ATELET_SOCKET", d.dir.join("nothing-here.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let o = Command::new(atectl_bin())
        .args(["list", "-o", "json"])
        .env("ATELET_SOCKET", &d.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "ATELET_SOCKET is used: {}", stderr(&o));

    // 7: a user outside the socket's group (mode 0660) may not connect.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(atectl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .arg("list")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
}

/// Reads `child`'s stdout lines on a thread, so that a test can wait for a
/// line with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no line from {what}: {e}"))
}

#[test]
fn events_and_logs_follow_until_the_actor_goes() {
    let d = Daemon::start();
    // Follows from the start of the log: no event can fall before it.
    let mut events = Command::new(atectl_bin())
        .args(["events", "--since", "0", "-o", "json"])
        .env("ATELET_SOCKET", &d.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let event_lines = lines_of(&mut events);

    let yaml = write_counter_yaml(&d.dir, "ctl-follow-1");
    d.atectl_ok(&["create", "-f", &yaml]);
    let mut logs = Command::new(atectl_bin())
        .args(["logs", "-f", "ctl-follow-1"])
        .env("ATELET_SOCKET", &d.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log_lines = lines_of(&mut logs);
    let first: Vec<u64> = (0..5)
        .map(|_| next_line(&log_lines, "logs -f").trim().parse().unwrap())
        .collect();
    assert_eq!(first, [0, 1, 2, 3, 4]);

    d.atectl_ok(&["delete", "ctl-follow-1"]);
    // logs -f ends by itself once the actor is deleted.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = logs.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "logs -f did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    // events saw the actor come and go, live.
    let mut seen = Vec::new();
    loop {
        let ev: Event = serde_json::from_str(&next_line(&event_lines, "events")).unwrap();
        assert_eq!(ev.actor_id, "ctl-follow-1");
        let gone = ev.to.is_none();
        seen.push((ev.from, ev.to));
        if gone {
            break;
        }
    }
    assert_eq!(seen.first(), Some(&(None, Some(ActorStatus::Created))));
    assert!(seen.contains(&(Some(ActorStatus::Starting), Some(ActorStatus::Running))));
    assert!(
        events.try_wait().unwrap().is_none(),
        "events keeps following"
    );
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn progress_shows_on_a_terminal_and_not_in_a_pipe() {
    let d = Daemon::start();
    let image = format!("dir:{}", rootfs().display());
    d.atectl_ok(&[
        "create",
        "ctl-progress-1",
        "--image",
        &image,
        "--cmd",
        "sleep",
        "1000",
    ]);
    // `script` gives atectl a terminal for stdout and stderr alike.
    let cmd = format!(
        "{} --socket {} suspend ctl-progress-1",
        atectl_bin().display(),
        d.socket.display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("suspending ctl-progress-1…"), "{screen:?}");
    // The spinner line is erased before the result.
    assert!(
        screen.ends_with("\x1b[2Kctl-progress-1 SUSPENDED\r\n"),
        "{screen:?}"
    );
    // Piped: the result alone (ok() also checks that stderr is empty).
    assert_eq!(
        d.atectl_ok(&["resume", "ctl-progress-1"]),
        "ctl-progress-1 RUNNING\n"
    );
}
