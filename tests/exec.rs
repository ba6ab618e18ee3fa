//! Exec and copy on the real runsc: `POST /v1/actors/{id}/exec` in its
//! three modes, `atectl exec` (also `-it` in tmux), `atectl cp`, limits,
//! and exec against suspend.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use atelet_api::{ActorStatus, ExecRequest};
use atelet_e2e::{actor_request, atectl_bin, Daemon, COUNTER};

fn req(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn running(d: &Daemon, id: &str, script: &str) {
    let mut body = actor_request(id, script);
    body["spec"]["containers"][0]["securityContext"] =
        serde_json::json!({"capabilities": {"add": ["NET_ADMIN"]}});
    let a = d.create(&body).await;
    assert_eq!(a.status, ActorStatus::Running);
}

fn status_field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn buffered_exec_passes_output_exit_codes_stdin_and_limits() {
    let d = Daemon::start();
    running(&d, "ex-1", "sleep 100000").await;

    let r = d.client.exec("ex-1", &req(&["id", "-u"])).await.unwrap();
    assert_eq!(
        (r.exit_code, r.stdout.as_str(), r.truncated),
        (0, "0\n", false)
    );

    // The exec has the container's capabilities: no more than PID 1.
    let own = d
        .client
        .exec("ex-1", &req(&["cat", "/proc/self/status"]))
        .await
        .unwrap();
    let init = d
        .client
        .exec("ex-1", &req(&["cat", "/proc/1/status"]))
        .await
        .unwrap();
    assert_eq!(init.exit_code, 0);
    assert!(
        !status_field(&init.stdout, "CapBnd").is_empty(),
        "{}",
        init.stdout
    );
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(
            status_field(&own.stdout, set),
            status_field(&init.stdout, set),
            "{set}: exec {} vs init {}",
            own.stdout,
            init.stdout
        );
    }

    // A failing command's code comes through, with its stderr.
    let r = d
        .client
        .exec("ex-1", &req(&["sh", "-c", "echo oops >&2; exit 3"]))
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.stderr.as_str()), (3, "oops\n"));

    // stdin round trip.
    let mut r_in = req(&["cat"]);
    r_in.stdin = Some("aGVsbG8sIHN0ZGluCg==".into());
    let r = d.client.exec("ex-1", &r_in).await.unwrap();
    assert_eq!(r.stdout, "hello, stdin\n");

    // 3 MiB of output: 1 MiB kept, truncated.
    let r = d
        .client
        .exec(
            "ex-1",
            &req(&["sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' a"]),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert!(r.truncated);
    assert_eq!(r.stdout.len(), 1024 * 1024);

    // Output that is not UTF-8 comes base64-encoded.
    let r = d
        .client
        .exec("ex-1", &req(&["printf", "\\377\\376"]))
        .await
        .unwrap();
    assert_eq!(r.stdout_encoding.as_deref(), Some("base64"));
    assert_eq!(r.stdout, "//4=");

    // A timeout kills the command.
    let mut slow = req(&["sleep", "60"]);
    slow.timeout_seconds = Some(1);
    let t0 = Instant::now();
    let r = d.client.exec("ex-1", &slow).await.unwrap();
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, 137);
    assert!(t0.elapsed() < Duration::from_secs(10));

    // Bad input: 400, nothing runs.
    let e = d.client.exec("ex-1", &req(&[])).await.unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::InvalidArgument));
    assert!(e.to_string().contains("command"), "{e}");

    let log = d.log();
    assert!(
        log.contains("exec ended") && log.contains("id -u") && log.contains("\"exit_code\":3"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_delivers_output_before_the_command_ends() {
    let d = Daemon::start();
    running(&d, "ex-stream", "sleep 100000").await;
    let body = serde_json::to_vec(&req(&["sh", "-c", "echo one; sleep 2; echo two"])).unwrap();
    let t0 = Instant::now();
    // curl prints each line as it arrives (-N: no buffering).
    let mut child = Command::new("curl")
        .args(["-sN", "--unix-socket"])
        .arg(&d.socket)
        .args([
            "-H",
            "Accept: application/x-ndjson",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &String::from_utf8(body).unwrap(),
            "http://localhost/v1/actors/ex-stream/exec",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map(|l| (Instant::now(), l.unwrap()))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let _ = child.wait();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].1.contains(r#""data":"one\n""#), "{lines:?}");
    assert!(lines[1].1.contains(r#""data":"two\n""#), "{lines:?}");
    assert_eq!(lines[2].1, r#"{"exitCode":0}"#);
    // The first line came well before the end.
    assert!(
        lines[1].0.duration_since(lines[0].0) > Duration::from_millis(1500),
        "{:?}",
        lines
            .iter()
            .map(|(t, l)| (t.duration_since(t0), l))
            .collect::<Vec<_>>()
    );
}

/// Sends keys to a tmux session and waits until its pane shows `want`.
fn tmux_wait(session: &str, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        let pane = String::from_utf8_lossy(&out.stdout).into_owned();
        if pane.contains(want) {
            return pane;
        }
        assert!(Instant::now() < deadline, "{want:?} not seen in:\n{pane}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tmux(args: &[&str]) {
    let s = Command::new("tmux").args(args).status().unwrap();
    assert!(s.success(), "tmux {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interactive_shell_with_a_tty_in_tmux() {
    let d = Daemon::start();
    running(&d, "ex-tty", "sleep 100000").await;
    let session = format!("atelet-exec-{}", std::process::id());
    let done = d.dir.join("exit-code");
    let cmd = format!(
        "{} --socket {} exec -it ex-tty -- /bin/sh; echo \"atectl-exit=$?\" > {}; stty -a > {}.stty; sleep 100",
        atectl_bin().display(),
        d.socket.display(),
        done.display(),
        done.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    let result = std::panic::catch_unwind(|| {
        // The prompt, `/ # ` (capture-pane trims the trailing space).
        tmux_wait(&session, "/ #", Duration::from_secs(20));
        tmux(&[
            "send-keys",
            "-t",
            &session,
            "echo hel''lo-from-tty; [ -t 0 ] && echo stdin-is-a-term''inal; stty size",
            "Enter",
        ]);
        tmux_wait(&session, "hello-from-tty", Duration::from_secs(10));
        // The terminal is a host one inside gVisor (`tty` cannot name it),
        // but it is a terminal, of tmux's size.
        tmux_wait(&session, "stdin-is-a-terminal", Duration::from_secs(10));
        tmux_wait(&session, "40 120", Duration::from_secs(10));
        tmux(&["send-keys", "-t", &session, "exit 7", "Enter"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.exists() {
            assert!(Instant::now() < deadline, "atectl did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        let code = std::fs::read_to_string(&done).unwrap();
        assert_eq!(code.trim(), "atectl-exit=7");
        // Raw mode was undone: the terminal echoes and is canonical again.
        let stty = std::fs::read_to_string(done.with_extension("stty")).unwrap();
        assert!(stty.contains(" icanon") && stty.contains(" echo"), "{stty}");
    });
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn atectl_exec_passes_exit_codes_and_stdin() {
    let d = Daemon::start();
    running(&d, "ex-cli", "sleep 100000").await;
    let o = d.atectl(&[
        "exec",
        "ex-cli",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let out = Command::new(atectl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["exec", "-i", "ex-cli", "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"shout\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn atectl_cp_copies_directories_both_ways() {
    let d = Daemon::start();
    running(&d, "ex-cp", "sleep 100000").await;
    let src = d.dir.join("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(src.join("a/b/c/deep.txt"), "deep\n").unwrap();
    let big: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(src.join("a/big.bin"), &big).unwrap();
    std::fs::set_permissions(src.join("top.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();

    d.atectl_ok(&["cp", src.to_str().unwrap(), "ex-cp:/tmp/copied"]);
    let r = d
        .client
        .exec(
            "ex-cp",
            &req(&[
                "sh",
                "-c",
                "cat /tmp/copied/a/b/c/deep.txt; wc -c < /tmp/copied/a/big.bin",
            ]),
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "deep\n10485760\n", "{r:?}");

    let back = d.dir.join("back");
    d.atectl_ok(&["cp", "ex-cp:/tmp/copied", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back.join("a/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(back.join("a/b/c/deep.txt")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("top.txt")).unwrap(),
        "top\n"
    );
    let mode = std::fs::metadata(back.join("top.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);

    // Into an existing directory: under its own name.
    std::fs::create_dir_all(d.dir.join("into")).unwrap();
    d.atectl_ok(&[
        "cp",
        "ex-cp:/tmp/copied/top.txt",
        d.dir.join("into").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(d.dir.join("into/top.txt")).unwrap(),
        "top\n"
    );

    // A path that is not there: tar's own message, a non-zero exit.
    let o = d.atectl(&["cp", "ex-cp:/no/such", d.dir.join("x").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tar exited"),
        "{o:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_refuses_while_an_exec_runs_force_kills_it_and_resume_works() {
    let d = Daemon::start();
    running(&d, "ex-susp", COUNTER).await;
    // A long exec through the stream, whose client we keep.
    let mut stream = d
        .client
        .exec_stream(
            "ex-susp",
            &req(&["sh", "-c", "while true; do echo tick; sleep 0.2; done"]),
        )
        .await
        .unwrap();
    let first = atectl::read_exec_event(&mut stream).await.unwrap();
    assert!(
        matches!(first, Some(atectl::ExecEvent::Stdout(_))),
        "{first:?}"
    );

    let e = d.client.act("ex-susp", "suspend").await.unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("execs are running: exec-"), "{e}");
    assert!(e.to_string().contains("?force=true"), "{e}");
    assert_eq!(
        d.client.get("ex-susp").await.unwrap().status,
        ActorStatus::Running
    );

    let a = d.client.act("ex-susp", "suspend?force=true").await.unwrap();
    assert_eq!(a.status, ActorStatus::Suspended);
    // The exec's client was not left hanging: it got its end.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match atectl::read_exec_event(&mut stream).await {
                Ok(Some(atectl::ExecEvent::Exit(code))) => return Some(code),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, Some(Some(137)));

    // No runsc exec client is left.
    assert!(
        !d.runsc_processes().iter().any(|(_, op, _)| op == "exec"),
        "{:?}",
        d.runsc_processes()
    );
    let r = d.client.act("ex-susp", "resume").await.unwrap();
    assert_eq!(r.status, ActorStatus::Running);
    d.atectl_wait_numbers("ex-susp", |n| n.len() > 5);
    let r = d
        .client
        .exec("ex-susp", &req(&["echo", "after"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, "after\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_is_refused_where_it_cannot_run() {
    let cfg = "socket_mode = \"0666\"\n[access]\nviewer_uids = [65533]\n[limits]\nmax_execs_per_actor = 2\n";
    let d = Daemon::start_with_config(cfg, &[]);
    running(&d, "ex-no", "sleep 100000").await;

    let e = d
        .client
        .exec("ex-missing", &req(&["id"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::NotFound), "{e}");
    assert!(e.to_string().contains("ex-missing not found"), "{e}");

    // Over the limit: 409 naming it.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = d
            .client
            .exec_stream("ex-no", &req(&["sleep", "1000"]))
            .await
            .unwrap();
        let _ =
            tokio::time::timeout(Duration::from_millis(200), atectl::read_exec_event(&mut s)).await;
        held.push(s);
    }
    let e = d.client.exec("ex-no", &req(&["id"])).await.unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("max_execs_per_actor (2)"), "{e}");
    // A client that hangs up kills its exec, and frees its place.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match d.client.exec("ex-no", &req(&["true"])).await {
            Ok(r) => {
                assert_eq!(r.exit_code, 0);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let ps = d.client.exec("ex-no", &req(&["ps"])).await.unwrap();
    assert!(
        !ps.stdout
            .lines()
            .any(|l| l.trim_end().ends_with("sleep 1000")),
        "{}",
        ps.stdout
    );

    // A viewer: 403 before anything runs.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65533",
            "--regid=65533",
            "--clear-groups",
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(&d.socket)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"command":["id"]}"#,
            "http://localhost/v1/actors/ex-no/exec",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n403"), "{text}");
    assert!(text.contains("may only read"), "{text}");

    // SUSPENDED and STOPPED: 409 saying what to do.
    d.client.act("ex-no", "suspend").await.unwrap();
    let e = d.client.exec("ex-no", &req(&["id"])).await.unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::Conflict), "{e}");
    assert!(
        e.to_string()
            .contains("it is SUSPENDED (exec needs RUNNING; resume it first)"),
        "{e}"
    );
    d.client.act("ex-no", "stop").await.unwrap();
    let e = d.client.exec("ex-no", &req(&["id"])).await.unwrap_err();
    assert!(e.to_string().contains("it is STOPPED"), "{e}");
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::Conflict), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_execs_are_refused_where_the_policy_refuses_root() {
    let d = Daemon::start_with_config("[policy]\nallow_run_as_root = false\n", &[]);
    let mut body = actor_request("ex-nonroot", "sleep 100000");
    body["spec"]["containers"][0]["securityContext"] = serde_json::json!({"runAsUser": 1000});
    d.create(&body).await;
    let r = d
        .client
        .exec("ex-nonroot", &req(&["id", "-u"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, "1000\n");
    let mut root = req(&["id", "-u"]);
    root.user = Some("0".into());
    let e = d.client.exec("ex-nonroot", &root).await.unwrap_err();
    assert_eq!(e.code(), Some(atelet_api::ErrorCode::Unauthorized), "{e}");
    assert!(e.to_string().contains("may not run as root"), "{e}");
}
