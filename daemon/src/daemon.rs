//! Start-up and shut-down of the daemon process.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::time::Duration;

use anyhow::{anyhow, Context};
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, LogFormat};
use crate::metrics::Metrics;
use crate::network::Network;
use crate::reaper::Reaper;
use crate::runsc::{Runsc, RunscConfig, Runtime};
use crate::service::{ActorService, ServiceConfig};
use crate::store::Store;
use crate::systemd::ActivatedSocket;

/// How often actor logs are checked against `log_max_bytes`.
const LOG_ROTATION_INTERVAL: Duration = Duration::from_secs(5);

/// How long shutdown waits for lifecycle steps in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Sets up logging: text on a terminal, JSON otherwise (or as configured);
/// `RUST_LOG` picks the levels.
pub fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    // Colours only on a terminal: `--log-format text` under systemd must not
    // put escape codes into the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Running sandboxes are left
/// running when it returns. `activated` is the socket systemd passed, if
/// any; otherwise the daemon binds (and at exit removes) its own.
pub async fn run(config: Config, activated: Option<ActivatedSocket>) -> anyhow::Result<()> {
    let state = &config.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state)
        .with_context(|| format!("creating state dir {}", state.display()))?;
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", state.display()))?;

    // One daemon per state dir.
    let lock_path = state.join("atelet.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let mut lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow!(
            "state dir {} is in use by another atelet ({e})",
            state.display()
        )
    })?;
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;

    let reaper = Reaper::start().context("becoming the child subreaper")?;
    let metrics = Metrics::new();
    let store = Store::open(&state.join("db")).context("opening the store")?;
    let runsc_root = state.join("runsc");
    std::fs::create_dir_all(&runsc_root)?;
    let runsc = Runsc::new(
        RunscConfig {
            path: config.runsc_path.clone(),
            root: runsc_root,
            platform: config.platform.clone(),
            network: config.runsc_network.clone(),
            overlay: config.overlay.clone(),
            timeout: config.runsc_timeout,
            freezer: Some(
                std::path::Path::new(crate::config::CGROUP_ROOT)
                    .join("freezer")
                    .join(config.cgroups_parent.trim_start_matches('/')),
            ),
        },
        reaper.clone(),
        metrics.clone(),
    );
    let info = runsc.info();
    match &info.version {
        Some(v) => tracing::info!(path = %info.path, version = %v, "runsc found"),
        None => tracing::warn!(
            path = %info.path,
            error = info.error.as_deref().unwrap_or(""),
            "runsc is not available: lifecycle calls will answer 503 until it is installed"
        ),
    }
    let node = crate::service::node_id(state)?;
    let network = Network::new(config.network.clone(), state, &node, reaper)
        .await
        .context("setting up actor networking")?;
    let remote = match &config.remote {
        Some(r) => {
            let remote = crate::remote::Remote::new(r).context("setting up the remote store")?;
            tracing::info!(bucket = %r.bucket, prefix = %r.prefix, endpoint = r.endpoint.as_deref().unwrap_or("AWS"), "remote snapshot store");
            Some(std::sync::Arc::new(remote))
        }
        None => None,
    };
    let cgroups =
        crate::cgroups::Cgroups::new(crate::config::CGROUP_ROOT.into(), &config.cgroups_parent)?;
    if !cgroups.available() {
        tracing::warn!(root = %cgroups.root().display(), "no cgroup v1 memory controller: actors' limits cannot be enforced or observed here");
    } else if let Err(e) = cgroups.ensure_parent() {
        tracing::warn!(error = %e, "cannot create the actors' parent cgroup; runsc will try at each start");
    }
    let svc = ActorService::new(
        ServiceConfig {
            cgroups: std::sync::Arc::new(cgroups),
            remote,
            trust: std::sync::Arc::new(config.trust.clone()),
            state_dir: state.clone(),
            snapshot_retention: config.snapshot_retention,
            log_max_bytes: config.log_max_bytes,
            metrics,
            policy: config.policy.clone(),
            network: Some(std::sync::Arc::new(network)),
            registries: config.registries.clone(),
            max_execs_per_actor: config.max_execs_per_actor,
            tiering: config.tiering,
        },
        store,
        runsc,
    )?;

    // Before recovery makes ports of paused and suspended actors waking.
    svc.wake_on_connect();
    let report = svc.reconcile().await.context("crash recovery")?;
    tracing::info!(
        adopted = report.adopted.len(),
        resolved = ?report.resolved,
        removed_containers = ?report.removed_containers,
        removed_dirs = report.removed_dirs.len(),
        removed_cgroups = report.removed_cgroups.len(),
        errors = ?report.errors,
        deferred = report.deferred,
        "recovered state"
    );
    svc.end_orphaned_execs().await;
    svc.start_uploads();
    svc.start_tiering();
    if report.list_failed {
        let svc = svc.clone();
        tokio::spawn(async move { svc.reconcile_deferred().await });
    }

    {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOG_ROTATION_INTERVAL);
            loop {
                tick.tick().await;
                svc.rotate_logs().await;
            }
        });
    }

    let (listener, socket, owns_socket) = match activated {
        Some(a) => {
            if a.passed > 1 {
                tracing::warn!(
                    passed = a.passed,
                    "systemd passed more than one socket; serving the first"
                );
            }
            let path = a.path.clone().unwrap_or_else(|| config.socket.clone());
            let listener = crate::http::server::from_activated(a.listener)
                .context("using the socket passed by systemd")?;
            (listener, path, false)
        }
        None => {
            let listener = crate::http::server::bind(
                &config.socket,
                config.socket_mode,
                config.access.socket_gid,
            )
            .with_context(|| format!("binding {}", config.socket.display()))?;
            (listener, config.socket.clone(), true)
        }
    };
    tracing::info!(
        socket = %socket.display(),
        activated = !owns_socket,
        state_dir = %state.display(),
        "serving"
    );
    crate::systemd::notify_ready(&format!("serving {}", socket.display()));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        crate::systemd::notify_stopping();
    };
    crate::http::server::serve(
        listener,
        svc.clone(),
        std::sync::Arc::new(config.access.clone()),
        config.limits,
        shutdown,
    )
    .await;

    tracing::info!("shutting down; sandboxes keep running");
    if !svc.drain(DRAIN_TIMEOUT).await {
        tracing::warn!("lifecycle steps still in flight at exit; recovery will resolve them");
    }
    // A socket passed by systemd is systemd's: it stays for the next start.
    if owns_socket {
        let _ = std::fs::remove_file(&config.socket);
    }
    drop(lock);
    Ok(())
}
