//! One option struct per runsc command the daemon runs, each producing its
//! argument list, so that every flag the daemon passes to runsc is spelled
//! in one place and checked by a test.
//!
//! Paths become arguments as text (non-UTF-8 bytes replaced), as runsc
//! has always been called here.

use std::path::Path;

/// The argument list of a runsc subcommand, after the global flags
/// (`Sync`, so that a step holding one across an await can move between
/// threads).
pub(crate) trait RunscArgs: Sync {
    /// The arguments, the subcommand first (it also names the process in
    /// its `ATELET_RUNSC_OP` mark).
    fn args(&self) -> Vec<String>;
}

/// The flags every runsc command of the daemon starts with: the daemon's
/// runsc root and how its sandboxes are built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlobalOpts<'a> {
    /// `--root`: where runsc keeps container state.
    pub root: &'a Path,
    /// `--platform`.
    pub platform: &'a str,
    /// `--network`.
    pub network: &'a str,
    /// `--overlay2`.
    pub overlay: &'a str,
}

impl GlobalOpts<'_> {
    /// `--root=<root>`: also how a command of a daemon from before the
    /// environment marks is recognised on its command line.
    pub(super) fn root_arg(&self) -> String {
        format!("--root={}", self.root.display())
    }

    /// The global flags, in the order runsc is given them.
    pub(super) fn args(&self) -> Vec<String> {
        vec![
            self.root_arg(),
            format!("--platform={}", self.platform),
            format!("--network={}", self.network),
            format!("--overlay2={}", self.overlay),
        ]
    }
}

/// `runsc run --detach`: boots a sandbox from a bundle; runsc exits once it
/// runs, leaving its pid in `pid_file`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOpts<'a> {
    /// The bundle directory (config.json).
    pub bundle: &'a Path,
    /// Where runsc writes the sandbox's pid.
    pub pid_file: &'a Path,
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for RunOpts<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string()];
        args.extend(detached(self.bundle, self.pid_file));
        args.push(self.container_id.to_string());
        args
    }
}

/// `runsc restore --detach`: as [`RunOpts`], from a checkpoint image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestoreOpts<'a> {
    /// The bundle directory (config.json).
    pub bundle: &'a Path,
    /// Where runsc writes the sandbox's pid.
    pub pid_file: &'a Path,
    /// The directory holding `checkpoint.img`.
    pub image_path: &'a Path,
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for RestoreOpts<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["restore".to_string()];
        args.extend(detached(self.bundle, self.pid_file));
        args.push(image_path(self.image_path));
        args.push(self.container_id.to_string());
        args
    }
}

/// `--detach --bundle <dir> --pid-file <file>`, shared by run and restore.
fn detached(bundle: &Path, pid_file: &Path) -> [String; 5] {
    [
        "--detach".to_string(),
        "--bundle".to_string(),
        bundle.to_string_lossy().into_owned(),
        "--pid-file".to_string(),
        pid_file.to_string_lossy().into_owned(),
    ]
}

fn image_path(dir: &Path) -> String {
    format!("--image-path={}", dir.display())
}

/// `runsc checkpoint`: writes the sandbox's image into `image_path`; the
/// sandbox stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointOpts<'a> {
    /// The directory runsc writes `checkpoint.img` into.
    pub image_path: &'a Path,
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for CheckpointOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec![
            "checkpoint".to_string(),
            image_path(self.image_path),
            self.container_id.to_string(),
        ]
    }
}

/// `runsc delete [--force]`: removes a container; `force` also ends a
/// sandbox that still runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeleteOpts<'a> {
    /// `--force`.
    pub force: bool,
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for DeleteOpts<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["delete".to_string()];
        if self.force {
            args.push("--force".to_string());
        }
        args.push(self.container_id.to_string());
        args
    }
}

/// `runsc state`: one container's state as JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateOpts<'a> {
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for StateOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec!["state".to_string(), self.container_id.to_string()]
    }
}

/// `runsc pause` / `runsc resume`: freeze or thaw a sandbox, its memory
/// kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreezeOpts<'a> {
    /// True: `pause`; false: `resume`.
    pub freeze: bool,
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for FreezeOpts<'_> {
    fn args(&self) -> Vec<String> {
        let verb = if self.freeze { "pause" } else { "resume" };
        vec![verb.to_string(), self.container_id.to_string()]
    }
}

/// `runsc list --format=json`: every container under the root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListOpts;

impl RunscArgs for ListOpts {
    fn args(&self) -> Vec<String> {
        vec!["list".to_string(), "--format=json".to_string()]
    }
}

/// `runsc usage`: the memory a sandbox's application uses, as JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UsageOpts<'a> {
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for UsageOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec!["usage".to_string(), self.container_id.to_string()]
    }
}

/// `runsc wait`: blocks until the container's sandbox ends and prints its
/// exit status as JSON; how a sandbox this daemon is not the parent of is
/// watched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitOpts<'a> {
    /// The container id.
    pub container_id: &'a str,
}

impl RunscArgs for WaitOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec!["wait".to_string(), self.container_id.to_string()]
    }
}

/// `runsc exec`: runs a process in a running container, writing its pid
/// inside the sandbox to `internal_pid_file`: in the foreground from its
/// process file, or, with a terminal, detached (see the `args` below).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecOpts<'a> {
    /// The OCI process JSON (args, env, cwd, user, capabilities, terminal).
    pub process_file: &'a Path,
    /// Where runsc writes the process's pid inside the sandbox.
    pub internal_pid_file: &'a Path,
    /// `--console-socket`: where runsc sends a tty's master end.
    pub console_socket: Option<&'a Path>,
    /// The container id.
    pub container_id: &'a str,
    /// With a console socket: the process, for the command line.
    pub terminal: Option<TerminalProcess<'a>>,
}

impl RunscArgs for ExecOpts<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "exec".to_string(),
            format!("--internal-pid-file={}", self.internal_pid_file.display()),
        ];
        match (self.console_socket, self.terminal) {
            // This runsc gives a terminal only to a detached exec, and a
            // detached exec loses `--process` on its way (its child is
            // started without the container id): the process goes on the
            // command line. Capabilities are then the container's, as
            // they are from the file.
            (Some(socket), Some(t)) => {
                args.push("--detach".to_string());
                args.push(format!("--console-socket={}", socket.display()));
                args.push(format!("--user={}:{}", t.uid, t.gid));
                args.push(format!("--cwd={}", t.cwd));
                for e in t.env {
                    args.push(format!("--env={e}"));
                }
                args.push(self.container_id.to_string());
                args.extend(t.args.iter().cloned());
            }
            _ => {
                args.push(format!("--process={}", self.process_file.display()));
                args.push(self.container_id.to_string());
            }
        }
        args
    }
}

/// The process of a terminal exec, for its command line (see
/// [`ExecOpts`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TerminalProcess<'a> {
    /// The command and its arguments.
    pub args: &'a [String],
    /// `NAME=value` each.
    pub env: &'a [String],
    /// The working directory.
    pub cwd: &'a str,
    /// The user.
    pub uid: u32,
    /// The group.
    pub gid: u32,
}

/// `runsc wait --pid <pid> <container>`: the exit of one process of the
/// container (a detached exec's), printed as JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitPidOpts<'a> {
    /// The container id.
    pub container_id: &'a str,
    /// The pid inside the container.
    pub pid: i32,
}

impl RunscArgs for WaitPidOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec![
            "wait".to_string(),
            format!("--pid={}", self.pid),
            self.container_id.to_string(),
        ]
    }
}

/// `runsc kill --pid <pid> <container> <signal>`: signals one process of
/// the container, by its pid inside the sandbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KillOpts<'a> {
    /// The container id.
    pub container_id: &'a str,
    /// The pid inside the sandbox.
    pub pid: i32,
    /// The signal's name (`KILL`).
    pub signal: &'a str,
}

impl RunscArgs for KillOpts<'_> {
    fn args(&self) -> Vec<String> {
        vec![
            "kill".to_string(),
            format!("--pid={}", self.pid),
            self.container_id.to_string(),
            self.signal.to_string(),
        ]
    }
}

/// `runsc --version`: run without the global flags, to probe a binary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VersionOpts;

impl VersionOpts {
    /// The whole argument list.
    pub(super) fn args(&self) -> Vec<String> {
        vec!["--version".to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a_1.f00d";

    fn argv(args: &dyn RunscArgs) -> Vec<String> {
        args.args()
    }

    #[test]
    fn global_flags() {
        let global = GlobalOpts {
            root: Path::new("/var/lib/atelet/runsc"),
            platform: "ptrace",
            network: "none",
            overlay: "root:memory",
        };
        assert_eq!(
            global.args(),
            [
                "--root=/var/lib/atelet/runsc",
                "--platform=ptrace",
                "--network=none",
                "--overlay2=root:memory"
            ]
        );
        assert_eq!(global.root_arg(), "--root=/var/lib/atelet/runsc");
    }

    #[test]
    fn run() {
        let run = RunOpts {
            bundle: Path::new("/s/bundles/a"),
            pid_file: Path::new("/s/bundles/a/a_1.f00d.pid"),
            container_id: ID,
        };
        assert_eq!(
            argv(&run),
            [
                "run",
                "--detach",
                "--bundle",
                "/s/bundles/a",
                "--pid-file",
                "/s/bundles/a/a_1.f00d.pid",
                "a_1.f00d"
            ]
        );
    }

    #[test]
    fn restore() {
        let restore = RestoreOpts {
            bundle: Path::new("/s/bundles/a"),
            pid_file: Path::new("/s/bundles/a/a_1.f00d.pid"),
            image_path: Path::new("/s/snapshots/a/snap-000001"),
            container_id: ID,
        };
        assert_eq!(
            argv(&restore),
            [
                "restore",
                "--detach",
                "--bundle",
                "/s/bundles/a",
                "--pid-file",
                "/s/bundles/a/a_1.f00d.pid",
                "--image-path=/s/snapshots/a/snap-000001",
                "a_1.f00d"
            ]
        );
    }

    #[test]
    fn checkpoint() {
        let checkpoint = CheckpointOpts {
            image_path: Path::new("/s/snapshots/a/.tmp-snap-000001"),
            container_id: ID,
        };
        assert_eq!(
            argv(&checkpoint),
            [
                "checkpoint",
                "--image-path=/s/snapshots/a/.tmp-snap-000001",
                "a_1.f00d"
            ]
        );
    }

    #[test]
    fn delete_with_and_without_force() {
        let delete = |force| {
            argv(&DeleteOpts {
                force,
                container_id: ID,
            })
        };
        assert_eq!(delete(false), ["delete", "a_1.f00d"]);
        assert_eq!(delete(true), ["delete", "--force", "a_1.f00d"]);
    }

    #[test]
    fn queries() {
        assert_eq!(argv(&StateOpts { container_id: ID }), ["state", "a_1.f00d"]);
        assert_eq!(argv(&ListOpts), ["list", "--format=json"]);
        assert_eq!(argv(&UsageOpts { container_id: ID }), ["usage", "a_1.f00d"]);
        assert_eq!(argv(&WaitOpts { container_id: ID }), ["wait", "a_1.f00d"]);
        let freeze = |freeze| FreezeOpts {
            freeze,
            container_id: ID,
        };
        assert_eq!(argv(&freeze(true)), ["pause", "a_1.f00d"]);
        assert_eq!(argv(&freeze(false)), ["resume", "a_1.f00d"]);
        assert_eq!(VersionOpts.args(), ["--version"]);
    }

    #[test]
    fn exec_and_kill() {
        let args = ["/bin/sh".to_string()];
        let env = ["TERM=xterm".to_string()];
        let t = TerminalProcess {
            args: &args,
            env: &env,
            cwd: "/",
            uid: 1000,
            gid: 1000,
        };
        let exec = |console: Option<&'static str>, terminal| {
            argv(&ExecOpts {
                process_file: Path::new("/s/execs/e1.json"),
                internal_pid_file: Path::new("/s/execs/e1.pid"),
                console_socket: console.map(Path::new),
                container_id: ID,
                terminal,
            })
        };
        assert_eq!(
            exec(None, None),
            [
                "exec",
                "--internal-pid-file=/s/execs/e1.pid",
                "--process=/s/execs/e1.json",
                "a_1.f00d"
            ]
        );
        assert_eq!(
            exec(Some("/s/execs/e1.sock"), Some(t)),
            [
                "exec",
                "--internal-pid-file=/s/execs/e1.pid",
                "--detach",
                "--console-socket=/s/execs/e1.sock",
                "--user=1000:1000",
                "--cwd=/",
                "--env=TERM=xterm",
                "a_1.f00d",
                "/bin/sh"
            ]
        );
        assert_eq!(
            argv(&WaitPidOpts {
                container_id: ID,
                pid: 7
            }),
            ["wait", "--pid=7", "a_1.f00d"]
        );
        assert_eq!(
            argv(&KillOpts {
                container_id: ID,
                pid: 7,
                signal: "KILL"
            }),
            ["kill", "--pid=7", "a_1.f00d", "KILL"]
        );
    }
}
