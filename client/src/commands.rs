//! What each subcommand does: one function per verb, each a few calls into
//! [`atectl::Client`] and a rendering from [`crate::output`]. New verbs get
//! a variant in [`crate::cli::Command`] and a function here.

use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use atectl::{Client, ClientError};
use atelet_api::{Actor, ActorList, ActorStats, ActorStatus, Event, ImageList, PullImageRequest};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;

use crate::cli::{ActionArgs, Command, CreateArgs, DocFormat, EventFormat, ListFormat};
use crate::failure::{stdout_error, Failure};
use crate::output;
use crate::progress::Progress;
use crate::request;

/// Runs one subcommand against the daemon at `client`'s socket.
pub async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Create(args) => create(client, *args).await,
        Command::Get { id, output } => get(client, &id, output).await,
        Command::List { status, output } => list(client, status, output).await,
        Command::Start(a) => act(client, a, "start", "starting").await,
        Command::Suspend(a) => act(client, a, "suspend", "suspending").await,
        Command::Pause(a) => act(client, a, "pause", "pausing").await,
        Command::Resume(a) => act(client, a, "resume", "resuming").await,
        Command::Stop(a) => act(client, a, "stop", "stopping").await,
        Command::Delete { id } => delete(client, &id).await,
        Command::Logs { id, follow } => logs(client, &id, follow).await,
        Command::Events {
            since,
            no_follow,
            output,
        } => events(client, since, no_follow, output).await,
        Command::Export {
            id,
            snapshot,
            output,
        } => export(client, &id, &snapshot, &output).await,
        Command::Import { file, id } => import(client, &file, &id).await,
        Command::Images { output } => images(client, output).await,
        Command::Pull { reference, output } => pull(client, &reference, output).await,
        Command::Rmi { digest } => rmi(client, &digest).await,
        Command::Health { output } => health(client, output).await,
        Command::Exec(args) => crate::exec::exec(client, args).await,
        Command::Cp { src, dst } => crate::exec::cp(client, &src, &dst).await,
        Command::Top {
            ids,
            once,
            interval,
        } => top(client, ids, once, interval).await,
        // Needs no daemon; main answers it before connecting.
        Command::Completion { .. } => Ok(()),
    }
}

/// Writes to stdout and flushes, so that streamed output appears at once.
fn emit(text: &str) -> Result<(), Failure> {
    emit_bytes(text.as_bytes())
}

fn emit_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).map_err(stdout_error)?;
    out.flush().map_err(stdout_error)
}

/// Awaits `op` with a spinner saying `doing id` on a terminal.
async fn with_progress<T>(doing: &str, id: &str, op: impl Future<Output = T>) -> T {
    let progress = Progress::start(format!("{doing} {id}"));
    let result = op.await;
    progress.finish().await;
    result
}

fn print_actor(a: &Actor, format: Option<DocFormat>) -> Result<(), Failure> {
    emit(&match format {
        None | Some(DocFormat::Text) => output::actor_line(a),
        Some(DocFormat::Json) => output::json(a),
        Some(DocFormat::Yaml) => output::yaml(a),
    })
}

async fn create(client: &Client, args: CreateArgs) -> Result<(), Failure> {
    let body = match &args.file {
        Some(path) => {
            let (name, text) = read_input(path)?;
            let mut body = request::parse_file(&name, &text).map_err(Failure::Invalid)?;
            request::apply_overrides(&mut body, args.id.as_deref(), args.no_start);
            body
        }
        None => {
            // clap requires the id and the image without -f.
            let id = args.id.clone().unwrap_or_default();
            serde_json::to_value(request::from_flags(&id, &args))
                .map_err(|e| Failure::Invalid(e.to_string()))?
        }
    };
    let id = body["id"].as_str().unwrap_or("actor").to_string();
    let bytes = serde_json::to_vec(&body).map_err(|e| Failure::Invalid(e.to_string()))?;
    let watch = PullWatch::start(client, &id).await;
    let progress = Progress::start_with_detail(format!("creating {id}"), watch.detail());
    let actor = client.create_raw(bytes).await;
    progress.finish().await;
    watch.stop();
    print_actor(&actor?, args.output)
}

async fn pull(client: &Client, reference: &str, format: ListFormat) -> Result<(), Failure> {
    let body = serde_json::to_vec(&PullImageRequest {
        reference: reference.to_string(),
    })
    .map_err(|e| Failure::Invalid(e.to_string()))?;
    let watch = PullWatch::start(client, "").await;
    let progress = Progress::start_with_detail(format!("pulling {reference}"), watch.detail());
    let image = client.pull_image(body).await;
    progress.finish().await;
    watch.stop();
    let images = vec![image?];
    emit(&match format {
        ListFormat::Table | ListFormat::Wide => {
            output::image_table(&images, format == ListFormat::Wide, SystemTime::now())
        }
        ListFormat::Json => output::json(&images[0]),
        ListFormat::Yaml => output::yaml(&images[0]),
    })
}

/// Follows the daemon's `pulling` events of one actor's create (or, for
/// `""`, of pull requests) while it runs, keeping the latest as a line for
/// the spinner: only on a terminal, where someone watches.
struct PullWatch {
    detail: std::sync::Arc<std::sync::Mutex<String>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PullWatch {
    /// Subscribes before the request is sent (the stream starts at what is
    /// logged when it is answered), so no event of the pull is missed.
    async fn start(client: &Client, actor: &str) -> PullWatch {
        let detail = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return PullWatch { detail, task: None };
        }
        let Ok(mut body) = client.stream(Method::GET, "/v1/events?follow=true").await else {
            return PullWatch { detail, task: None };
        };
        let (actor, shown) = (actor.to_string(), detail.clone());
        let task = tokio::spawn(async move {
            let mut pending: Vec<u8> = Vec::new();
            while let Ok(Some(chunk)) = next_chunk(&mut body).await {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Ok(e) = serde_json::from_slice::<Event>(&line) else {
                        continue;
                    };
                    if let (Some(p), true) = (&e.pull, e.actor_id == actor) {
                        *shown.lock().unwrap_or_else(|p| p.into_inner()) = output::pull_progress(p);
                    }
                }
            }
        });
        PullWatch {
            detail,
            task: Some(task),
        }
    }

    fn detail(&self) -> std::sync::Arc<std::sync::Mutex<String>> {
        self.detail.clone()
    }

    fn stop(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

/// The text of a `-f` argument, and the name to use in messages.
fn read_input(path: &Path) -> Result<(String, String), Failure> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Invalid(format!("reading stdin: {e}")))?;
        return Ok(("stdin".into(), text));
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Invalid(format!("reading {name}: {e}")))?;
    Ok((name, text))
}

async fn get(client: &Client, id: &str, format: ListFormat) -> Result<(), Failure> {
    let actor = client.get(id).await?;
    emit(&match format {
        ListFormat::Table | ListFormat::Wide => output::actor_table(
            std::slice::from_ref(&actor),
            format == ListFormat::Wide,
            SystemTime::now(),
        ),
        ListFormat::Json => output::json(&actor),
        ListFormat::Yaml => output::yaml(&actor),
    })
}

async fn list(
    client: &Client,
    status: Option<ActorStatus>,
    format: ListFormat,
) -> Result<(), Failure> {
    let actors = client.list(status).await?;
    emit(&match format {
        ListFormat::Table | ListFormat::Wide => {
            output::actor_table(&actors, format == ListFormat::Wide, SystemTime::now())
        }
        // The API's own shape, so `atectl list -o json` and curl agree.
        ListFormat::Json => output::json(&ActorList { actors }),
        ListFormat::Yaml => output::yaml(&ActorList { actors }),
    })
}

async fn act(client: &Client, a: ActionArgs, action: &str, doing: &str) -> Result<(), Failure> {
    let actor = with_progress(doing, &a.id, client.act(&a.id, action)).await?;
    print_actor(&actor, a.output)
}

async fn delete(client: &Client, id: &str) -> Result<(), Failure> {
    with_progress("deleting", id, client.delete(id)).await?;
    emit(&format!("{id} deleted\n"))
}

async fn export(client: &Client, id: &str, snapshot: &str, out: &Path) -> Result<(), Failure> {
    let path = format!("/v1/actors/{id}/snapshots/{snapshot}/export");
    let mut body = client.stream(Method::GET, &path).await?;
    // Written beside the target and renamed into place when whole: an
    // export cut short never looks like one that is not.
    let tmp = out.with_extension("part");
    let io = |what: &str| {
        let what = format!("{what} {}", tmp.display());
        move |source| Failure::Io { what, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("creating"))?;
    let mut bytes = 0u64;
    let written = async {
        while let Some(chunk) = next_chunk(&mut body).await? {
            file.write_all(&chunk).map_err(io("writing"))?;
            bytes += chunk.len() as u64;
        }
        file.sync_all().map_err(io("syncing"))?;
        std::fs::rename(&tmp, out).map_err(io("renaming"))
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    eprintln!(
        "{id}: exported {snapshot} to {} ({bytes} bytes)",
        out.display()
    );
    Ok(())
}

async fn import(client: &Client, file: &Path, id: &str) -> Result<(), Failure> {
    let io = |source| Failure::Io {
        what: format!("reading {}", file.display()),
        source,
    };
    let f = tokio::fs::File::open(file).await.map_err(io)?;
    let len = f.metadata().await.map_err(io)?.len();
    let resp = client
        .upload(
            &format!("/v1/snapshots/import?id={id}"),
            "application/x-tar",
            f,
            len,
        )
        .await?;
    if !(200..300).contains(&resp.status) {
        return Err(atectl::api_error(resp.status, &resp.body).into());
    }
    let actor: Actor =
        serde_json::from_slice(&resp.body).map_err(|e| ClientError::Decode(e.to_string()))?;
    println!("{} {}", actor.id, actor.status);
    Ok(())
}

async fn logs(client: &Client, id: &str, follow: bool) -> Result<(), Failure> {
    let path = format!("/v1/actors/{id}/logs?follow={follow}");
    let mut body = client.stream(Method::GET, &path).await?;
    while let Some(chunk) = next_chunk(&mut body).await? {
        emit_bytes(&chunk)?;
    }
    Ok(())
}

async fn events(
    client: &Client,
    since: Option<u64>,
    no_follow: bool,
    format: EventFormat,
) -> Result<(), Failure> {
    // Without --since, --no-follow means "the whole log so far".
    let since = since.or(no_follow.then_some(0));
    let mut path = format!("/v1/events?follow={}", !no_follow);
    if let Some(n) = since {
        path.push_str(&format!("&since={n}"));
    }
    let mut body = client.stream(Method::GET, &path).await?;
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_event_line(&line, format)?;
        }
    }
    if !pending.is_empty() {
        print_event_line(&pending, format)?;
    }
    Ok(())
}

fn print_event_line(line: &[u8], format: EventFormat) -> Result<(), Failure> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match format {
        EventFormat::Json => {
            emit_bytes(line.strip_suffix(b"\n").unwrap_or(line))?;
            emit("\n")
        }
        EventFormat::Text => match serde_json::from_slice::<Event>(line) {
            Ok(e) => emit(&output::event_line(&e)),
            // A newer daemon's event this atectl cannot read: show it as sent.
            Err(_) => {
                emit_bytes(line)?;
                emit("\n")
            }
        },
    }
}

/// The next piece of a streamed body; `None` at its end.
async fn next_chunk(body: &mut Incoming) -> Result<Option<bytes::Bytes>, Failure> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Failure::Lost(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

async fn images(client: &Client, format: ListFormat) -> Result<(), Failure> {
    let images = client.images().await?;
    emit(&match format {
        ListFormat::Table | ListFormat::Wide => {
            output::image_table(&images, format == ListFormat::Wide, SystemTime::now())
        }
        ListFormat::Json => output::json(&ImageList { images }),
        ListFormat::Yaml => output::yaml(&ImageList { images }),
    })
}

/// Removes the image `arg` names: its full digest, or a prefix of the hex
/// of exactly one cached image (as `images` shows it).
async fn rmi(client: &Client, arg: &str) -> Result<(), Failure> {
    let digest = if arg.len() == "sha256:".len() + 64 {
        arg.to_string()
    } else {
        let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
        let matching: Vec<String> = client
            .images()
            .await?
            .into_iter()
            .map(|i| i.digest)
            .filter(|d| !hex.is_empty() && d.strip_prefix("sha256:").unwrap_or(d).starts_with(hex))
            .collect();
        match matching.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Failure::NotFound(format!(
                    "no cached image has a digest starting with {arg}"
                )))
            }
            _ => {
                return Err(Failure::Invalid(format!(
                    "{arg} names {} images: give more of the digest",
                    matching.len()
                )))
            }
        }
    };
    with_progress("removing", &digest, client.delete_image(&digest)).await?;
    emit(&format!("{digest} removed\n"))
}

/// `atectl top`: samples the actors' stats every `interval` seconds and
/// prints a table; CPU is the rate between two samples, so the first table
/// comes after one interval. On a terminal the table is redrawn in place
/// until Ctrl-C; otherwise (or with `once`) one table is printed.
async fn top(client: &Client, ids: Vec<String>, once: bool, interval: f64) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let refresh = !once && std::io::stdout().is_terminal();
    let pause = std::time::Duration::from_secs_f64(interval);
    let mut before = top_sample(client, &ids).await?;
    loop {
        tokio::time::sleep(pause).await;
        let now = top_sample(client, &ids).await?;
        let table = output::top_table(&before, &now);
        if refresh {
            // Home, clear, table: redrawn in place.
            emit(&format!("\x1b[H\x1b[2J{table}"))?;
        } else {
            return emit(&table);
        }
        before = now;
    }
}

/// The stats of `ids`, or of every RUNNING actor (then one deleted since
/// the list was read is left out; a named one that does not exist is an
/// error).
async fn top_sample(client: &Client, ids: &[String]) -> Result<Vec<ActorStats>, Failure> {
    let listed = ids.is_empty();
    let ids: Vec<String> = if listed {
        client
            .list(Some(ActorStatus::Running))
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect()
    } else {
        ids.to_vec()
    };
    let mut out = Vec::new();
    for id in ids {
        match client.stats(&id).await {
            Ok(s) => out.push(s),
            Err(e) if listed && e.code() == Some(atelet_api::ErrorCode::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn health(client: &Client, format: DocFormat) -> Result<(), Failure> {
    let h = client.health().await?;
    emit(&match format {
        DocFormat::Text => output::health_text(&h),
        DocFormat::Json => output::json(&h),
        DocFormat::Yaml => output::yaml(&h),
    })?;
    if h.status != "ok" {
        let why = match (&h.runsc.error, &h.runsc.version, &h.quarantined) {
            (Some(e), _, _) => e.clone(),
            (None, Some(_), Some(q)) => format!(
                "{} actor record(s) in quarantine: {}",
                q.count,
                q.ids.join(", ")
            ),
            _ => "runsc is unusable".to_string(),
        };
        return Err(Failure::Degraded(format!("node is {}: {why}", h.status)));
    }
    Ok(())
}

/// A hint for the most common mistake: the daemon is elsewhere or down.
pub fn hint(e: &Failure) -> Option<String> {
    match e {
        Failure::Client(ClientError::Connect { kind, .. }) => Some(match kind {
            Some(std::io::ErrorKind::PermissionDenied) => {
                "hint: the socket is for root and the atelet group".into()
            }
            _ => "hint: is atelet running? The socket is set by --socket or ATELET_SOCKET".into(),
        }),
        _ => None,
    }
}
