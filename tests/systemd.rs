//! atelet as a systemd service, tested without systemd as PID 1: socket
//! activation through `systemd-socket-activate` (the same LISTEN_FDS
//! protocol), readiness through a NOTIFY_SOCKET of the test's own, the
//! unit's hardening emulated with unshare + setpriv around a whole
//! suspend/resume cycle, and `scripts/install` into a staging root whose
//! units pass `systemd-analyze verify`.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use atelet_api::Actor;
use atelet_e2e::{
    assert_consecutive, atectl_bin, atelet_bin, numbers, repo_root, rootfs, target_dir, Daemon,
    COUNTER,
};

const WAIT: Duration = Duration::from_secs(20);

fn get(d: &Daemon, id: &str) -> Actor {
    serde_json::from_str(&d.atectl_ok(&["get", id, "-o", "json"])).unwrap()
}

/// Creates a counter, suspends and resumes it with atectl, and checks that
/// it went on counting; returns the resumed actor.
fn suspend_resume_cycle(d: &Daemon, id: &str) -> Actor {
    let image = format!("dir:{}", rootfs().display());
    let out = d.atectl_ok(&[
        "create", id, "--image", &image, "--cmd", "/bin/sh", "-c", COUNTER,
    ]);
    assert_eq!(out, format!("{id} RUNNING\n"));
    d.atectl_wait_numbers(id, |n| n.len() >= 5);
    assert_eq!(d.atectl_ok(&["suspend", id]), format!("{id} SUSPENDED\n"));
    let stood = *numbers(&d.atectl_ok(&["logs", id])).last().unwrap();
    assert_eq!(d.atectl_ok(&["resume", id]), format!("{id} RUNNING\n"));
    let after = d.atectl_wait_numbers(id, |n| n.last().is_some_and(|l| *l >= stood + 3));
    assert_consecutive(&after);
    get(d, id)
}

#[test]
fn socket_activation_serves_the_passed_socket_and_notifies_readiness() {
    // systemd's side of Type=notify: a datagram socket that hears READY=1.
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    // A runsc that writes down the environment it was given, then is runsc.
    let runsc_wrapper = notify_dir.path().join("runsc");
    std::fs::write(
        &runsc_wrapper,
        format!(
            // Written whole, then renamed: the test may read while a
            // background runsc call is starting.
            "#!/bin/sh\nenv > {0}/.env.$$ && mv {0}/.env.$$ {0}/runsc-env.$$\nexec runsc \"$@\"\n",
            notify_dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runsc_wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env: [(&str, &OsStr); 2] = [
        ("NOTIFY_SOCKET", notify_path.as_os_str()),
        ("ATELET_E2E_MARKER", OsStr::new("inherited")),
    ];

    // systemd-socket-activate binds the socket, waits for a first
    // connection (Daemon::start_under makes one), then execs atelet with it
    // as fd 3 and LISTEN_PID/LISTEN_FDS set. atelet is given the same path
    // with --socket: a daemon that ignored fd 3 would find the path served
    // and refuse to start.
    let mut d = Daemon::start_under(
        |d| {
            // It passes on only the environment named with -E.
            let mut prefix: Vec<OsString> = ["systemd-socket-activate", "-l"]
                .iter()
                .map(OsString::from)
                .collect();
            prefix.push(d.socket.clone().into_os_string());
            for var in ["PATH", "RUST_LOG", "NOTIFY_SOCKET", "ATELET_E2E_MARKER"] {
                prefix.push(format!("--setenv={var}").into());
            }
            prefix
        },
        &env,
        &["--runsc", runsc_wrapper.to_str().unwrap()],
    );
    let mut buf = [0u8; 512];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}\n{}", d.log()));
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        format!("READY=1\nSTATUS=serving {}\n", d.socket.display())
    );
    // The process systemd-socket-activate became is atelet itself.
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", d.pid())).unwrap(),
        atelet_bin().canonicalize().unwrap()
    );
    assert!(d.log().contains("\"activated\":true"), "{}", d.log());

    // The whole cycle works through the passed socket.
    suspend_resume_cycle(&d, "activated-1");
    // runsc inherits the daemon's environment, but not the activation
    // variables, which were meant for the daemon alone.
    let mut runs = 0;
    for entry in std::fs::read_dir(notify_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains("runsc-env.") {
            continue;
        }
        let env = std::fs::read_to_string(&path).unwrap();
        assert!(
            env.lines().any(|l| l == "ATELET_E2E_MARKER=inherited"),
            "{env}"
        );
        assert!(!env.contains("LISTEN_"), "{env}");
        runs += 1;
    }
    // --version, run, checkpoint, restore, delete at least.
    assert!(runs >= 5, "runsc ran {runs} times");
    d.atectl_ok(&["delete", "activated-1"]);

    // SIGTERM: STOPPING=1, and the socket stays, for systemd to hand to the
    // next start.
    assert!(d.terminate().success(), "{}", d.log());
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(d.socket.exists(), "the activated socket was removed");
}

#[test]
fn a_daemon_that_binds_its_own_socket_removes_it_at_exit() {
    let mut d = Daemon::start();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    assert!(d.log().contains("\"activated\":false"), "{}", d.log());
    assert!(d.terminate().success());
    assert!(!d.socket.exists());
}

/// The hardening options of atelet.service and how this test reproduces
/// each without systemd: mount namespaces for the Protect* paths, setpriv
/// for no_new_privs and the capabilities the kernel options take away. (The
/// seccomp filters that ProtectKernelModules/Logs also add block module and
/// syslog(2) calls, which runsc never makes.)
const EMULATED: [(&str, &str); 5] = [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "full"),
    ("ProtectHome", "read-only"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
];

const HARDEN: &str = r#"
set -e
# ProtectSystem=full: /usr, /boot, /efi, /etc; ProtectHome=read-only: /home, /root, /run/user.
for d in /usr /boot /efi /etc /home /root /run/user; do
  if [ -d "$d" ]; then mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; fi
done
exec setpriv --no-new-privs --bounding-set -sys_module,-syslog "$@"
"#;

#[test]
fn the_daemon_runs_actors_under_the_units_hardening() {
    // Every sandboxing option the unit sets is one this test reproduces.
    let unit = std::fs::read_to_string(repo_root().join("systemd/atelet.service")).unwrap();
    let hardening: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            k.starts_with("Protect")
                || k.starts_with("Private")
                || k.starts_with("Restrict")
                || [
                    "NoNewPrivileges",
                    "CapabilityBoundingSet",
                    "SystemCallFilter",
                    "MemoryDenyWriteExecute",
                    "LockPersonality",
                    "ReadOnlyPaths",
                    "InaccessiblePaths",
                ]
                .contains(k)
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let emulated: Vec<(String, String)> = EMULATED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        hardening, emulated,
        "update EMULATED and HARDEN with the unit"
    );

    let _ = rootfs(); // built outside the read-only namespace
    let d = Daemon::start_under(
        |_| {
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                HARDEN,
                "sh",
            ]
            .iter()
            .map(OsString::from)
            .collect()
        },
        &[],
        &[],
    );
    // The emulation took: no_new_privs, capabilities gone, /usr read-only.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .unwrap();
    assert_eq!(bounding & (1 << 16), 0, "CAP_SYS_MODULE is gone");
    assert_eq!(bounding & (1 << 34), 0, "CAP_SYSLOG is gone");
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", d.pid())).unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/usr") && l.contains(" ro,")),
        "{mounts}"
    );

    let actor = suspend_resume_cycle(&d, "hardened-1");
    assert_eq!(actor.snapshots.len(), 1);

    // A restart (`systemctl restart`: a new mount namespace, the
    // sandboxes left running by KillMode=process) adopts the actor: it
    // still counts, and its steps work from the new daemon.
    let mut d = d;
    let pid = actor.sandbox.as_ref().unwrap().pid;
    assert!(d.terminate().success());
    d.restart();
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(
        status.contains("NoNewPrivs:\t1"),
        "not hardened again: {status}"
    );
    let adopted = get(&d, "hardened-1");
    assert_eq!(adopted.status, atelet_api::ActorStatus::Running);
    assert_eq!(adopted.sandbox.as_ref().unwrap().pid, pid);
    let seen = numbers(&d.atectl_ok(&["logs", "hardened-1"])).len();
    d.atectl_wait_numbers("hardened-1", |n| n.len() >= seen + 3);
    assert_eq!(
        d.atectl_ok(&["suspend", "hardened-1"]),
        "hardened-1 SUSPENDED\n"
    );
    assert_eq!(
        d.atectl_ok(&["resume", "hardened-1"]),
        "hardened-1 RUNNING\n"
    );
    let all = d.atectl_wait_numbers("hardened-1", |n| n.len() >= seen + 6);
    assert_consecutive(&all);
    d.atectl_ok(&["delete", "hardened-1"]);
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn install(destdir: &Path, extra: &[&str]) -> String {
    // The binaries under test: target/debug, wherever the target dir is.
    let target = target_dir();
    run(Command::new(repo_root().join("scripts/install"))
        .args(["--destdir", destdir.to_str().unwrap(), "--profile"])
        .arg(target.file_name().unwrap())
        .arg("--no-build")
        .args(extra)
        .env("CARGO_TARGET_DIR", target.parent().unwrap()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_stages_binaries_units_and_config_that_verify() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    install(r, &[]);

    for (path, want) in [
        ("usr/local/bin/atelet", 0o755),
        ("usr/local/bin/atectl", 0o755),
        ("etc/systemd/system/atelet.service", 0o644),
        ("etc/systemd/system/atelet.socket", 0o644),
        ("etc/atelet/config.toml", 0o644),
        ("usr/local/share/doc/atelet/README.md", 0o644),
        ("usr/local/share/doc/atelet/config.toml.example", 0o644),
        ("usr/local/share/bash-completion/completions/atectl", 0o644),
        ("usr/local/share/zsh/site-functions/_atectl", 0o644),
        (
            "usr/local/share/fish/vendor_completions.d/atectl.fish",
            0o644,
        ),
    ] {
        assert_eq!(mode(&r.join(path)), want, "{path}");
    }
    let example = std::fs::read(repo_root().join("systemd/config.toml.example")).unwrap();
    assert_eq!(
        std::fs::read(r.join("etc/atelet/config.toml")).unwrap(),
        example
    );
    assert_eq!(
        std::fs::read(r.join("usr/local/bin/atectl")).unwrap(),
        std::fs::read(atectl_bin()).unwrap()
    );
    let service = std::fs::read_to_string(r.join("etc/systemd/system/atelet.service")).unwrap();
    assert!(
        service.contains("\nExecStart=/usr/local/bin/atelet --config /etc/atelet/config.toml\n")
    );
    let bash =
        std::fs::read_to_string(r.join("usr/local/share/bash-completion/completions/atectl"))
            .unwrap();
    assert!(
        bash.contains("complete -F _atectl") || bash.contains("-F _atectl"),
        "{bash}"
    );
    assert!(bash.contains("suspend"));

    // The installed units pass systemd-analyze verify (with the staged
    // binary standing in for /usr/local/bin/atelet), and so do the shipped ones.
    let verify = repo_root().join("scripts/verify-units");
    let out = run(Command::new(&verify)
        .arg(r.join("etc/systemd/system"))
        .arg(r.join("usr/local/bin/atelet")));
    assert!(out.contains("clean"), "{out}");
    run(Command::new(&verify)
        .arg(repo_root().join("systemd"))
        .arg(atelet_bin()));

    // The staged daemon reads the staged config.
    let help = run(Command::new(r.join("usr/local/bin/atelet")).arg("--help"));
    assert!(help.contains("--config"));

    // A second install keeps an edited config; another prefix moves ExecStart.
    std::fs::write(r.join("etc/atelet/config.toml"), "snapshot_retention = 9\n").unwrap();
    let out = install(r, &["--prefix", "/opt/atelet"]);
    assert!(out.contains("keeping /etc/atelet/config.toml"), "{out}");
    assert_eq!(
        std::fs::read_to_string(r.join("etc/atelet/config.toml")).unwrap(),
        "snapshot_retention = 9\n"
    );
    let service = std::fs::read_to_string(r.join("etc/systemd/system/atelet.service")).unwrap();
    assert!(service.contains("\nExecStart=/opt/atelet/bin/atelet --config"));
    assert!(r.join("opt/atelet/bin/atelet").is_file());
}
