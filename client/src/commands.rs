//! What each subcommand does: one function per verb, each a few calls into
//! [`atectl::Client`] and a rendering from [`crate::output`]. New verbs get
//! a variant in [`crate::cli::Command`] and a function here.

use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use atectl::{Client, ClientError};
use atelet_api::{Actor, ActorList, ActorStatus, Event, ImageList};
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
        Command::Resume(a) => act(client, a, "resume", "resuming").await,
        Command::Stop(a) => act(client, a, "stop", "stopping").await,
        Command::Delete { id } => delete(client, &id).await,
        Command::Logs { id, follow } => logs(client, &id, follow).await,
        Command::Events {
            since,
            no_follow,
            output,
        } => events(client, since, no_follow, output).await,
        Command::Images { output } => images(client, output).await,
        Command::Rmi { digest } => rmi(client, &digest).await,
        Command::Health { output } => health(client, output).await,
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
    let actor = with_progress("creating", &id, client.create_raw(bytes)).await?;
    print_actor(&actor, args.output)
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
