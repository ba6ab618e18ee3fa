//! The routing table: method + path + query → a typed [`Route`]. Nothing
//! here knows about the actor service; handlers take it from here.

use std::borrow::Cow;

use atelet_api::{ActorStatus, ErrorCode, Op};
use hyper::Method;

use super::error::ApiError;

/// Every request the API understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v1/healthz`.
    Healthz,
    /// `POST /v1/actors`.
    CreateActor,
    /// `GET /v1/actors[?status=S]`.
    ListActors {
        /// Filter.
        status: Option<ActorStatus>,
    },
    /// `GET /v1/actors/{id}`.
    GetActor(String),
    /// `POST /v1/actors/{id}/{start|suspend|resume|stop}`, and
    /// `DELETE /v1/actors/{id}` ([`Op::Delete`]).
    Act(String, Op),
    /// `GET /v1/actors/{id}/logs[?follow=true]`.
    Logs {
        /// The actor.
        id: String,
        /// Keep streaming what is appended.
        follow: bool,
    },
    /// `GET /v1/actors/{id}/stats`.
    Stats(String),
    /// `GET /metrics`.
    Metrics,
    /// `GET /v1/images`.
    ListImages,
    /// `POST /v1/images`: pull (or unpack) an image into the cache.
    PullImage,
    /// `DELETE /v1/images/{digest}`.
    DeleteImage(String),
    /// `POST /v1/actors/{id}/suspend?wait=uploaded[&force=true]`: answered
    /// once the snapshot is in the remote store.
    SuspendUploaded {
        /// The actor.
        id: String,
        /// Kill its running execs first.
        force: bool,
    },
    /// `POST /v1/actors/{id}/suspend?force=true`: kills the actor's
    /// running execs, then suspends.
    SuspendForced(String),
    /// `POST /v1/actors/{id}/exec`: a command in the actor's container.
    Exec(String),
    /// `DELETE /v1/actors/{id}?keepRemote=true`: its remote snapshots stay.
    DeleteKeepRemote(String),
    /// `GET /v1/actors/{id}/snapshots/{snapshot}/export`: one tar.
    ExportSnapshot {
        /// The actor.
        id: String,
        /// A snapshot id or `latest`.
        snapshot: String,
    },
    /// `POST /v1/snapshots/import?id=NEW`: a tar of an export.
    ImportSnapshot {
        /// The new actor's id.
        id: String,
    },
    /// `GET /v1/events[?since=N][&follow=false]`.
    Events {
        /// Replay events after this sequence number first.
        since: Option<u64>,
        /// Keep streaming new events (default true).
        follow: bool,
    },
}

impl Route {
    /// True for routes that change state (logged at info level).
    pub(crate) fn is_mutation(&self) -> bool {
        matches!(
            self,
            Route::CreateActor
                | Route::Act(..)
                | Route::SuspendUploaded { .. }
                | Route::SuspendForced(_)
                | Route::Exec(_)
                | Route::DeleteKeepRemote(_)
                | Route::DeleteImage(_)
                | Route::PullImage
                | Route::ImportSnapshot { .. }
        )
    }

    /// True for routes only peers with full access may use: every
    /// mutation, and an export, which hands out an actor's whole memory.
    pub(crate) fn needs_full_access(&self) -> bool {
        self.is_mutation() || matches!(self, Route::ExportSnapshot { .. })
    }
}

/// Parses a request line into a route.
pub(crate) fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, ApiError> {
    let params = Query::parse(query)?;
    if path == "/metrics" {
        return match *method {
            Method::GET => params.only(&[], Route::Metrics),
            _ => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no route for {method} {path}"),
            )),
        };
    }
    // Split at the literal slashes first, then decode each segment: an
    // escaped `%2F` is part of its segment (an id that fails validation),
    // never a separator that routes the request elsewhere.
    let decoded: Vec<Cow<'_, str>> = path
        .strip_prefix("/v1/")
        .map(|p| {
            p.trim_end_matches('/')
                .split('/')
                .map(decode_segment)
                .collect()
        })
        .transpose()?
        .unwrap_or_default();
    let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no route for {method} {path}"));
    let route = match (method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => params.only(&[], Route::Healthz)?,
        (&Method::POST, ["actors"]) => params.only(&[], Route::CreateActor)?,
        (&Method::GET, ["actors"]) => {
            let status = params
                .get("status")
                .map(|s| {
                    s.parse::<ActorStatus>().map_err(|e| {
                        ApiError::new(ErrorCode::InvalidArgument, format!("status: {e}"))
                    })
                })
                .transpose()?;
            params.only(&["status"], Route::ListActors { status })?
        }
        (&Method::GET, ["actors", id]) => params.only(&[], Route::GetActor(id.to_string()))?,
        (&Method::DELETE, ["actors", id]) => {
            let route = match params.flag("keepRemote", false)? {
                true => Route::DeleteKeepRemote(id.to_string()),
                false => Route::Act(id.to_string(), Op::Delete),
            };
            params.only(&["keepRemote"], route)?
        }
        (&Method::POST, ["actors", id, "exec"]) => params.only(&[], Route::Exec(id.to_string()))?,
        (&Method::POST, ["actors", id, "suspend"]) => {
            let force = params.flag("force", false)?;
            let route = match params.get("wait") {
                None if force => Route::SuspendForced(id.to_string()),
                None => Route::Act(id.to_string(), Op::Suspend),
                Some("uploaded") => Route::SuspendUploaded {
                    id: id.to_string(),
                    force,
                },
                Some(v) => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("wait: {v:?} is not uploaded (the only thing a suspend waits for)"),
                    ))
                }
            };
            params.only(&["wait", "force"], route)?
        }
        (&Method::POST, ["actors", id, action]) => {
            let op = Op::from_action(action).ok_or_else(not_found)?;
            params.only(&[], Route::Act(id.to_string(), op))?
        }
        (&Method::GET, ["actors", id, "logs"]) => {
            let follow = params.flag("follow", false)?;
            params.only(
                &["follow"],
                Route::Logs {
                    id: id.to_string(),
                    follow,
                },
            )?
        }
        (&Method::GET, ["actors", id, "stats"]) => {
            params.only(&[], Route::Stats(id.to_string()))?
        }
        (&Method::GET, ["actors", id, "snapshots", snapshot, "export"]) => params.only(
            &[],
            Route::ExportSnapshot {
                id: id.to_string(),
                snapshot: snapshot.to_string(),
            },
        )?,
        (&Method::POST, ["snapshots", "import"]) => {
            let id = params.get("id").ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    "id: required (the new actor's id, ?id=NAME)",
                )
            })?;
            params.only(&["id"], Route::ImportSnapshot { id: id.to_string() })?
        }
        (&Method::GET, ["images"]) => params.only(&[], Route::ListImages)?,
        (&Method::POST, ["images"]) => params.only(&[], Route::PullImage)?,
        (&Method::DELETE, ["images", digest]) => {
            params.only(&[], Route::DeleteImage(digest.to_string()))?
        }
        (&Method::GET, ["events"]) => {
            let since = params
                .get("since")
                .map(|s| {
                    s.parse::<u64>().map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidArgument,
                            format!("since: {s:?} is not a sequence number"),
                        )
                    })
                })
                .transpose()?;
            let follow = params.flag("follow", true)?;
            params.only(&["since", "follow"], Route::Events { since, follow })?
        }
        _ => return Err(not_found()),
    };
    Ok(route)
}

/// Decodes the percent-escapes of one path segment (RFC 3986 §2.1), so
/// that `/v1/actors/%C3%BC` names the id `ü` (and is refused naming it) as
/// a client that escapes its path means. An escape that is not `%` and two
/// hex digits, or bytes that are not UTF-8 once decoded, are refused: the
/// segment means nothing the API could look up.
fn decode_segment(segment: &str) -> Result<Cow<'_, str>, ApiError> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        match (
            bytes.get(i + 1).and_then(|&h| hex(h)),
            bytes.get(i + 2).and_then(|&l| hex(l)),
        ) {
            (Some(h), Some(l)) => {
                // Two hex digits: at most 0xff.
                out.push(((h << 4) | l) as u8);
                i += 3;
            }
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "path segment {segment:?} has a '%' that is not followed by two hex digits"
                    ),
                ))
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("path segment {segment:?} is not UTF-8 once percent-decoded"),
        )
    })
}

/// A parsed query string (no percent-decoding: no parameter needs it).
struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Result<Query<'a>, ApiError> {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        Ok(Query { pairs })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("{key}: {v:?} is not true or false"),
            )),
        }
    }

    /// Refuses parameters the route does not take.
    fn only(&self, allowed: &[&str], route: Route) -> Result<Route, ApiError> {
        match self.pairs.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("unknown query parameter {k:?}"),
            )),
            None => Ok(route),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str, query: Option<&str>) -> Result<Route, ErrorCode> {
        route(&method, path, query).map_err(|e| e.code)
    }

    #[test]
    fn the_table() {
        assert_eq!(r(Method::GET, "/v1/healthz", None), Ok(Route::Healthz));
        assert_eq!(r(Method::GET, "/metrics", None), Ok(Route::Metrics));
        assert_eq!(r(Method::POST, "/v1/actors", None), Ok(Route::CreateActor));
        assert_eq!(
            r(Method::GET, "/v1/actors", Some("status=RUNNING")),
            Ok(Route::ListActors {
                status: Some(ActorStatus::Running)
            })
        );
        assert_eq!(
            r(Method::GET, "/v1/actors/a1", None),
            Ok(Route::GetActor("a1".into()))
        );
        assert_eq!(
            r(Method::POST, "/v1/actors/a1/suspend", None),
            Ok(Route::Act("a1".into(), Op::Suspend))
        );
        assert_eq!(
            r(Method::DELETE, "/v1/actors/a1", None),
            Ok(Route::Act("a1".into(), Op::Delete))
        );
        assert_eq!(
            r(Method::POST, "/v1/actors/a1/exec", None),
            Ok(Route::Exec("a1".into()))
        );
        assert_eq!(
            r(Method::POST, "/v1/actors/a1/suspend", Some("force=true")),
            Ok(Route::SuspendForced("a1".into()))
        );
        assert_eq!(
            r(
                Method::POST,
                "/v1/actors/a1/suspend",
                Some("wait=uploaded&force=1")
            ),
            Ok(Route::SuspendUploaded {
                id: "a1".into(),
                force: true
            })
        );
        assert!(Route::Exec("a".into()).needs_full_access());
        assert_eq!(
            r(Method::GET, "/v1/actors/a1/stats", None),
            Ok(Route::Stats("a1".into()))
        );
        assert_eq!(
            r(Method::GET, "/v1/actors/a1/logs", Some("follow=true")),
            Ok(Route::Logs {
                id: "a1".into(),
                follow: true
            })
        );
        assert_eq!(r(Method::GET, "/v1/images", None), Ok(Route::ListImages));
        assert_eq!(
            r(Method::DELETE, "/v1/images/sha256:ab12", None),
            Ok(Route::DeleteImage("sha256:ab12".into()))
        );
        assert_eq!(
            r(Method::GET, "/v1/events", Some("since=5&follow=false")),
            Ok(Route::Events {
                since: Some(5),
                follow: false
            })
        );
    }

    #[test]
    fn unknown_routes_and_methods_are_not_found() {
        assert_eq!(
            r(Method::GET, "/v2/healthz", None),
            Err(ErrorCode::NotFound)
        );
        assert_eq!(
            r(Method::POST, "/v1/healthz", None),
            Err(ErrorCode::NotFound)
        );
        assert_eq!(
            r(Method::POST, "/v1/actors/a/explode", None),
            Err(ErrorCode::NotFound)
        );
        assert_eq!(r(Method::GET, "/", None), Err(ErrorCode::NotFound));
        assert_eq!(r(Method::POST, "/v1/images", None), Ok(Route::PullImage));
        assert_eq!(r(Method::PUT, "/v1/images", None), Err(ErrorCode::NotFound));
    }

    proptest::proptest! {
        #[test]
        fn any_request_line_routes_or_errors_without_panicking(
            m in 0usize..5,
            path in "(/v1/|/)?[a-zA-Z0-9/._%-]{0,40}",
            query in proptest::option::of("[a-z=&0-9%-]{0,30}"),
        ) {
            let method = [Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH][m].clone();
            let _ = route(&method, &path, query.as_deref());
        }
    }

    #[test]
    fn path_segments_are_percent_decoded_after_the_split() {
        assert_eq!(
            r(Method::GET, "/v1/actors/%61%62-1", None),
            Ok(Route::GetActor("ab-1".into()))
        );
        // Decoded, then validated by the service like any id (400 naming "ü").
        assert_eq!(
            r(Method::GET, "/v1/actors/%C3%BC", None),
            Ok(Route::GetActor("ü".into()))
        );
        // An escaped slash stays inside its segment: it routes nowhere else.
        assert_eq!(
            r(Method::GET, "/v1/actors/a%2Fb", None),
            Ok(Route::GetActor("a/b".into()))
        );
        assert_eq!(
            r(Method::GET, "/v1/actors/a%2flogs", None),
            Ok(Route::GetActor("a/logs".into()))
        );
        assert_eq!(
            r(Method::POST, "/v1/actors/a%2Fstart", None),
            Err(ErrorCode::NotFound)
        );
        assert_eq!(
            r(Method::DELETE, "/v1/actors/%2E%2E%2Fimages", None),
            Ok(Route::Act("../images".into(), Op::Delete))
        );
        // Every segment is decoded alike.
        assert_eq!(
            r(Method::POST, "/v1/actors/a/%73tart", None),
            Ok(Route::Act("a".into(), Op::Start))
        );
        assert_eq!(
            r(Method::DELETE, "/v1/images/sha256%3Aab12", None),
            Ok(Route::DeleteImage("sha256:ab12".into()))
        );
    }

    #[test]
    fn bad_escapes_and_invalid_utf8_are_invalid_arguments() {
        for path in [
            "/v1/actors/%FF",
            "/v1/actors/%C3",
            "/v1/actors/a%",
            "/v1/actors/a%4",
            "/v1/actors/%ZZ",
            "/v1/actors/%+1",
        ] {
            let err = route(&Method::GET, path, None).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{path}: {err:?}");
            assert!(err.message.contains("path segment"), "{path}: {err:?}");
        }
    }

    #[test]
    fn bad_query_parameters_are_invalid() {
        assert_eq!(
            r(Method::GET, "/v1/actors", Some("status=running")),
            Err(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            r(Method::GET, "/v1/actors", Some("colour=red")),
            Err(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            r(Method::GET, "/v1/events", Some("since=-1")),
            Err(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            r(Method::GET, "/v1/actors/a/logs", Some("follow=maybe")),
            Err(ErrorCode::InvalidArgument)
        );
    }
}
