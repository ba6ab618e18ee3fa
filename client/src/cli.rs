//! The command line of `atectl`: what each subcommand takes. Parsing only;
//! [`crate::commands`] does the work.

use std::path::PathBuf;

use atelet_api::ActorStatus;
use clap::{Args, Parser, Subcommand, ValueEnum};

use atectl::DEFAULT_SOCKET;

/// The exit codes, also shown at the end of `atectl --help`.
const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  any other error (internal error, unexpected answer, local I/O)
  2  usage error (bad flags or arguments)
  3  not found (no such actor or image)
  4  conflict (the actor exists, its status does not allow the operation,
     or the image is in use)
  5  invalid (the daemon or atectl rejected the request or the -f file)
  6  unavailable (the daemon is unreachable, runsc is missing, the node is draining,
     or `health` found the node degraded)
  7  unauthorized (not allowed on the socket, or refused by the node's policy)";

/// `atectl`: the operator's client of the atelet daemon.
#[derive(Debug, Parser)]
#[command(
    name = "atectl",
    version,
    about = "Runs, suspends and resumes actors on an atelet node.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "ATELET_SOCKET", default_value = DEFAULT_SOCKET, value_hint = clap::ValueHint::FilePath)]
    pub socket: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, one per operation of the API (a new one is a variant
/// here and a function in `commands`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an actor (and start it, unless --no-start).
    #[command(after_help = "\
Examples:
  atectl create -f counter.yaml
  atectl create counter-1 --image dir:/srv/rootfs/busybox --env A=b \\
      --cap-add NET_ADMIN --user 1000:1000 --cmd /bin/sh -c 'echo hi; sleep 1000'")]
    Create(Box<CreateArgs>),
    /// Show one actor.
    Get {
        /// The actor id.
        id: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: ListFormat,
    },
    /// List actors: ID, STATUS, TEMPLATE, SNAPSHOTS, AGE.
    #[command(visible_alias = "ls")]
    List {
        /// Only actors in this status (e.g. RUNNING).
        #[arg(long, value_parser = parse_status)]
        status: Option<ActorStatus>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: ListFormat,
    },
    /// Start a CREATED, STOPPED or FAILED actor from its image.
    Start(ActionArgs),
    /// Checkpoint a RUNNING or PAUSED actor to a snapshot and free its sandbox.
    Suspend(ActionArgs),
    /// Freeze a RUNNING actor's sandbox, keeping its memory (PAUSED).
    Pause(ActionArgs),
    /// Thaw a PAUSED actor, or restore a SUSPENDED one from its latest snapshot.
    Resume(ActionArgs),
    /// Kill an actor's sandbox, keeping its record and snapshots.
    Stop(ActionArgs),
    /// Delete an actor: its sandbox, snapshots, logs and record.
    #[command(visible_alias = "rm")]
    Delete {
        /// The actor id.
        id: String,
    },
    /// Print what an actor wrote to stdout and stderr.
    Logs {
        /// The actor id.
        id: String,
        /// Keep printing what it writes until the actor is deleted (Ctrl-C ends).
        #[arg(short, long)]
        follow: bool,
    },
    /// Print lifecycle events, one per line, as they happen.
    Events {
        /// First replay the logged events after this sequence number (0: all).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Stop after the replay instead of waiting for new events
        /// (without --since, replays everything).
        #[arg(long)]
        no_follow: bool,
        /// Output format: a readable line, or the JSON line the daemon sent.
        #[arg(short, long, value_enum, default_value_t)]
        output: EventFormat,
    },
    /// Write a snapshot of an actor to a file, as one tar, to import it on
    /// another node.
    #[command(after_help = "\
Examples:
  atectl export counter-1 -o counter-1.tar          (its latest snapshot)
  atectl export counter-1 snap-000002 -o snap.tar")]
    Export {
        /// The actor id.
        id: String,
        /// The snapshot id (default: the latest).
        #[arg(default_value = "latest")]
        snapshot: String,
        /// Where to write the tar.
        #[arg(short, long, value_name = "FILE")]
        output: std::path::PathBuf,
    },
    /// Create an actor, SUSPENDED, from a tar written by `atectl export`;
    /// `atectl resume` it then.
    #[command(after_help = "\
Example:
  atectl import counter-1.tar --id counter-1")]
    Import {
        /// The tar.
        file: std::path::PathBuf,
        /// The new actor's id.
        #[arg(long)]
        id: String,
    },
    /// List the node's image cache: DIGEST, SIZE, LAYERS, ACTORS, AGE, REFERENCE.
    Images {
        /// Output format (wide: full digests, unpack time, every actor and reference).
        #[arg(short, long, value_enum, default_value_t)]
        output: ListFormat,
    },
    /// Pull an image into the node's image cache without creating an actor
    /// (from a registry, or unpack a local layout or archive).
    #[command(after_help = "\
Examples:
  atectl pull docker://registry.internal:5000/agent:1.4
  atectl pull registry.internal:5000/agent@sha256:2f0c…")]
    Pull {
        /// The image reference.
        reference: String,
        /// Output format (wide: full digest, unpack time, every reference).
        #[arg(short, long, value_enum, default_value_t)]
        output: ListFormat,
    },
    /// Remove an unused image from the node's image cache.
    #[command(after_help = "\
Examples:
  atectl rmi sha256:2f0c…     (the full digest)
  atectl rmi 2f0c9a1b         (a prefix of the hex that names one image)")]
    Rmi {
        /// The image's digest, or a unique prefix of its hex.
        digest: String,
    },
    /// Show what running actors use: CPU (cores, over the last interval),
    /// memory against the limit, tasks, OOM kills. Refreshes on a terminal
    /// until Ctrl-C; elsewhere (or with --once) prints one table.
    #[command(after_help = "\
Examples:
  atectl top                  (every running actor, refreshed every 2 s)
  atectl top counter-1 --once (one table, CPU measured over one interval)")]
    Top {
        /// Only these actors (default: every RUNNING actor).
        ids: Vec<String>,
        /// Print one table and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between samples.
        #[arg(short = 'n', long, default_value_t = 2.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Run a command in a running actor's container; atectl exits with its
    /// exit code. -i passes stdin; -t gives it a terminal (raw mode here,
    /// restored on exit; Ctrl-C goes to the command).
    #[command(after_help = "\
Examples:
  atectl exec counter-1 -- id -u
  atectl exec -it counter-1 -- /bin/sh
  echo hi | atectl exec -i counter-1 -- cat")]
    Exec(ExecArgs),
    /// Copy a file or directory between an actor and this machine (a tar
    /// stream through exec: the actor's image needs tar).
    #[command(after_help = "\
Examples:
  atectl cp counter-1:/var/log ./logs
  atectl cp ./config counter-1:/etc/app")]
    Cp {
        /// ID:/path in an actor, or a local path.
        src: String,
        /// ID:/path in an actor, or a local path.
        dst: String,
    },
    /// Check the daemon and its runsc (exit 6 when the node is degraded).
    Health {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: DocFormat,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  atectl completion bash > /etc/bash_completion.d/atectl
  atectl completion zsh > \"${fpath[1]}/_atectl\"
  atectl completion fish > ~/.config/fish/completions/atectl.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `atectl exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID] to run as (default: the container's).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory (default: the container's).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// NAME=VALUE set for the command (repeatable).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Kill the command after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The actor id.
    pub id: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `atectl create`: from a file, or from flags for the common
/// one-container case.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The actor id (a DNS-1123 label). With -f, overrides the file's id.
    #[arg(required_unless_present = "file")]
    pub id: Option<String>,

    /// A create request as JSON or YAML ("-" reads stdin).
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath,
          conflicts_with_all = ["image", "cmd", "env", "cap_add", "cap_drop", "user", "workdir", "template", "network", "publish", "cpu", "memory"])]
    pub file: Option<PathBuf>,

    /// Image: dir:<rootfs>, oci:<layout>[:<tag>] or oci-archive:<file>[:<tag>].
    #[arg(long, required_unless_present = "file")]
    pub image: Option<String>,

    /// The command and its arguments; takes the rest of the line, so put it last.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "ARG")]
    pub cmd: Vec<String>,

    /// An environment variable NAME=VALUE (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// A capability to add, e.g. NET_ADMIN or CAP_SETUID (repeatable, or comma-separated).
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub cap_add: Vec<String>,

    /// A capability to drop, or ALL (repeatable, or comma-separated).
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub cap_drop: Vec<String>,

    /// The UID (and GID) the process starts as.
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<(i64, Option<i64>)>,

    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// The template it belongs to [default: default/<id>].
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_template)]
    pub template: Option<(String, String)>,

    /// Network mode: bridge or none [default: the node's].
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,

    /// A port to serve, HOSTPORT:CONTAINERPORT (published on the node) or
    /// CONTAINERPORT (repeatable).
    #[arg(short, long, value_name = "[HOSTPORT:]CONTAINERPORT", value_parser = parse_publish)]
    pub publish: Vec<(Option<i64>, i64)>,

    /// CPU limit, a Kubernetes quantity (500m, 0.5, 2).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu: Option<String>,

    /// Memory limit, a Kubernetes quantity (256Mi, 1G).
    #[arg(long, value_name = "QUANTITY")]
    pub memory: Option<String>,

    /// Leave the actor CREATED instead of starting it.
    #[arg(long)]
    pub no_start: bool,

    /// Output format of the created actor.
    #[arg(short, long, value_enum)]
    pub output: Option<DocFormat>,
}

/// start, suspend, resume, stop.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The actor id.
    pub id: String,
    /// Print the actor afterwards in this format instead of one line.
    #[arg(short, long, value_enum)]
    pub output: Option<DocFormat>,
}

/// How `list` and `get` print actors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// ID, STATUS, TEMPLATE, SNAPSHOTS, AGE.
    #[default]
    Table,
    /// The table plus PID, IP, PORTS (published, HOSTPORT->CONTAINERPORT),
    /// IMAGE, EXIT and MESSAGE.
    Wide,
    /// The API's JSON.
    Json,
    /// The API's JSON, as YAML.
    Yaml,
}

/// How a single document (an actor, the health report) is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DocFormat {
    /// Readable text.
    #[default]
    Text,
    /// The API's JSON.
    Json,
    /// The API's JSON, as YAML.
    Yaml,
}

/// How `events` prints each event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    /// `SEQ  TIME  ACTOR  FROM -> TO  REASON`.
    #[default]
    Text,
    /// The daemon's NDJSON line as is.
    Json,
}

fn parse_status(s: &str) -> Result<ActorStatus, String> {
    s.to_ascii_uppercase().parse()
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) => Ok((name.to_string(), value.to_string())),
        None => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0.1 to 3600")),
    }
}

fn parse_publish(s: &str) -> Result<(Option<i64>, i64), String> {
    let number = |t: &str| {
        t.parse::<i64>()
            .map_err(|_| format!("{t:?} is not a port number (expected [HOSTPORT:]CONTAINERPORT)"))
    };
    match s.split_once(':') {
        Some((host, container)) => Ok((Some(number(host)?), number(container)?)),
        None => Ok((None, number(s)?)),
    }
}

fn parse_user(s: &str) -> Result<(i64, Option<i64>), String> {
    let num = |part: &str, what: &str| {
        part.parse::<i64>()
            .map_err(|_| format!("{what} {part:?} is not a number (UID[:GID])"))
    };
    match s.split_once(':') {
        Some((uid, gid)) => Ok((num(uid, "uid")?, Some(num(gid, "gid")?))),
        None => Ok((num(s, "uid")?, None)),
    }
}

fn parse_template(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("atectl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cmd_takes_the_rest_of_the_line_hyphens_included() {
        let cli = parse(&[
            "create",
            "c1",
            "--image",
            "dir:/r",
            "--env",
            "A=b=c",
            "--cap-add",
            "NET_ADMIN,setuid",
            "--user",
            "1000:2000",
            "--cmd",
            "/bin/sh",
            "-c",
            "echo --env",
        ])
        .unwrap();
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.cmd, ["/bin/sh", "-c", "echo --env"]);
        assert_eq!(c.env, [("A".to_string(), "b=c".to_string())]);
        assert_eq!(c.cap_add, ["NET_ADMIN", "setuid"]);
        assert_eq!(c.user, Some((1000, Some(2000))));
    }

    #[test]
    fn create_needs_a_file_or_an_id_and_an_image() {
        assert!(parse(&["create", "-f", "x.yaml"]).is_ok());
        assert!(parse(&["create", "c1", "--image", "dir:/r"]).is_ok());
        let e = parse(&["create", "c1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["create", "-f", "x.yaml", "--image", "dir:/r"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for args in [
            &["create", "c1", "--image", "i", "--user", "me"][..],
            &["create", "c1", "--image", "i", "--env", "NOVALUE"],
            &["create", "c1", "--image", "i", "--template", "x"],
            &["list", "--status", "SLEEPING"],
            &["list", "-o", "xml"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn publish_takes_a_container_port_and_maybe_a_host_port() {
        assert_eq!(parse_publish("8080"), Ok((None, 8080)));
        assert_eq!(parse_publish("18080:8080"), Ok((Some(18080), 8080)));
        // Range checks are the daemon's (it names the field).
        assert_eq!(parse_publish("0"), Ok((None, 0)));
        for bad in ["x", "", "18080:", ":8080", "a:8080", "1:2:3", "80/tcp"] {
            let e = parse_publish(bad).unwrap_err();
            assert!(e.contains("[HOSTPORT:]CONTAINERPORT"), "{bad}: {e}");
        }
        assert!(parse_publish("x").unwrap_err().contains("\"x\""));
        let cli = parse(&[
            "create",
            "web",
            "--image",
            "dir:/r",
            "--network",
            "bridge",
            "-p",
            "18080:8080",
            "--publish",
            "9090",
        ])
        .unwrap();
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.publish, [(Some(18080), 8080), (None, 9090)]);
        assert_eq!(c.network.as_deref(), Some("bridge"));
        let e = parse(&["create", "web", "--image", "dir:/r", "-p", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn list_and_get_have_a_wide_table() {
        let cli = parse(&["list", "-o", "wide"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::List {
                output: ListFormat::Wide,
                ..
            }
        ));
        let cli = parse(&["get", "web", "-o", "wide"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Get {
                output: ListFormat::Wide,
                ..
            }
        ));
    }

    #[test]
    fn images_and_rmi_parse() {
        let cli = parse(&["images", "-o", "wide"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Images {
                output: ListFormat::Wide
            }
        ));
        let cli = parse(&["pull", "docker://r:5000/a:v1"]).unwrap();
        assert!(
            matches!(cli.command, Command::Pull { reference, .. } if reference == "docker://r:5000/a:v1")
        );
        let cli = parse(&["rmi", "2f0c9a1b"]).unwrap();
        assert!(matches!(cli.command, Command::Rmi { digest } if digest == "2f0c9a1b"));
        assert_eq!(parse(&["rmi"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn status_filter_takes_any_case() {
        let cli = parse(&["list", "--status", "running"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::List {
                status: Some(ActorStatus::Running),
                ..
            }
        ));
    }

    #[test]
    fn socket_comes_from_the_flag_then_the_default() {
        // ATELET_SOCKET is read by clap; this process does not set it.
        if std::env::var_os("ATELET_SOCKET").is_none() {
            assert_eq!(
                parse(&["health"]).unwrap().socket,
                PathBuf::from(DEFAULT_SOCKET)
            );
        }
        let cli = parse(&["list", "--socket", "/x.sock"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/x.sock"));
    }
}
