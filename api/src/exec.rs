//! Exec: a command run in a running actor's container
//! (`POST /v1/actors/{id}/exec`), its answers, and the frames of the
//! interactive stream (docs/openapi.yaml, README "Exec and copy").
//!
//! Output is bytes; JSON carries text. A piece of output that is valid
//! UTF-8 is sent as a string; one that is not is sent base64-encoded with
//! `"…Encoding": "base64"` beside it, so that a client never gets text
//! that was silently changed.

use serde::{Deserialize, Serialize};

use crate::types::EnvVar;
use crate::validate::{ValidationError, MAX_ID};

/// Most bytes of each stream (stdout, stderr) the buffered answer keeps;
/// beyond, the output is still read (the command is not blocked) and
/// dropped, and `truncated` is set.
pub const EXEC_OUTPUT_CAP: usize = 1024 * 1024;

/// Longest `timeoutSeconds` accepted (a day): longer is a mistake, and
/// an interactive session has no timeout unless asked.
pub const MAX_EXEC_TIMEOUT_SECONDS: u64 = 86_400;

/// Most arguments of a command.
pub const MAX_EXEC_ARGS: usize = 4096;

/// Content type of the streaming answer (`Accept: application/x-ndjson`).
pub const NDJSON: &str = "application/x-ndjson";

/// Body of `POST /v1/actors/{id}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments; required, the first non-empty.
    pub command: Vec<String>,
    /// Variables set on top of the container's environment (a name the
    /// container has is replaced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Absolute working directory; default the container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `UID[:GID]` (numbers); default the container's user and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Bytes given to the command's stdin (base64), then end of file; without
    /// it stdin is empty. Not with the interactive stream, which carries
    /// stdin itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// The command is killed after this many seconds (1 to a day);
    /// default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Give the command a pseudo-terminal (interactive stream only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

/// A checked `user` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// gid, if given.
    pub gid: Option<u32>,
}

/// What an [`ExecRequest`] asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidExec {
    /// The user, if given.
    pub user: Option<ExecUser>,
    /// stdin bytes, decoded.
    pub stdin: Option<Vec<u8>>,
}

/// Checks an exec request; every message names its field.
pub fn validate_exec(req: &ExecRequest) -> Result<ValidExec, ValidationError> {
    use base64::Engine as _;
    match req.command.first() {
        None => {
            return Err(ValidationError::new(
                "command",
                "required: the program to run and its arguments",
            ))
        }
        Some(a) if a.is_empty() => {
            return Err(ValidationError::new(
                "command[0]",
                "must not be empty: it names the program to run",
            ))
        }
        Some(_) => {}
    }
    if req.command.len() > MAX_EXEC_ARGS {
        return Err(ValidationError::new(
            "command",
            format!("has more than {MAX_EXEC_ARGS} arguments"),
        ));
    }
    for (i, arg) in req.command.iter().enumerate() {
        if arg.contains('\0') {
            return Err(ValidationError::new(
                format!("command[{i}]"),
                "must not contain a NUL byte",
            ));
        }
    }
    for (i, e) in req.env.iter().enumerate() {
        if e.name.is_empty() {
            return Err(ValidationError::new(
                format!("env[{i}].name"),
                "must not be empty",
            ));
        }
        if e.name.contains('=') || e.name.contains('\0') || e.value.contains('\0') {
            return Err(ValidationError::new(
                format!("env[{i}].name"),
                "must not contain '=' (nor either part a NUL byte)",
            ));
        }
    }
    if let Some(dir) = &req.working_dir {
        if !dir.starts_with('/') || dir.contains('\0') {
            return Err(ValidationError::new(
                "workingDir",
                "must be an absolute path",
            ));
        }
        if dir.split('/').any(|c| c == "..") {
            return Err(ValidationError::new("workingDir", "must not contain '..'"));
        }
    }
    let user = req.user.as_deref().map(parse_user).transpose()?;
    if let Some(t) = req.timeout_seconds {
        if t == 0 || t > MAX_EXEC_TIMEOUT_SECONDS {
            return Err(ValidationError::new(
                "timeoutSeconds",
                format!("must be 1 to {MAX_EXEC_TIMEOUT_SECONDS} (a day)"),
            ));
        }
    }
    let stdin = req
        .stdin
        .as_deref()
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ValidationError::new("stdin", format!("is not base64: {e}")))
        })
        .transpose()?;
    Ok(ValidExec { user, stdin })
}

/// `UID[:GID]`, both numbers within 0..=2^32−2.
pub fn parse_user(text: &str) -> Result<ExecUser, ValidationError> {
    let id = |s: &str, what: &str| -> Result<u32, ValidationError> {
        s.parse::<i64>()
            .ok()
            .filter(|n| (0..=MAX_ID).contains(n) && !s.starts_with('+'))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ValidationError::new(
                    "user",
                    format!(
                        "{what} {s:?} is not a number from 0 to {MAX_ID} (the form is UID[:GID])"
                    ),
                )
            })
    };
    match text.split_once(':') {
        None => Ok(ExecUser {
            uid: id(text, "uid")?,
            gid: None,
        }),
        Some((u, g)) => Ok(ExecUser {
            uid: id(u, "uid")?,
            gid: Some(id(g, "gid")?),
        }),
    }
}

/// Output as JSON carries it: text, or base64 for bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The text or the base64.
    pub data: String,
    /// True when `data` is base64.
    pub base64: bool,
}

/// Encodes output bytes for JSON (see the module documentation).
pub fn encode_output(bytes: &[u8]) -> Encoded {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(s) => Encoded {
            data: s.to_string(),
            base64: false,
        },
        Err(_) => Encoded {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            base64: true,
        },
    }
}

/// Decodes a field [`encode_output`] made (`encoding` is `None` or `"base64"`).
pub fn decode_output(data: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match encoding {
        None => Ok(data.as_bytes().to_vec()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("bad base64 output: {e}")),
        Some(other) => Err(format!("unknown output encoding {other:?}")),
    }
}

/// The whole answer of an exec (the default mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecResult {
    /// The daemon's id of the exec (as in its log).
    pub id: String,
    /// The command's exit code; 128 + n when killed by signal n.
    pub exit_code: i32,
    /// What it wrote on stdout (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stdout: String,
    /// `"base64"` when `stdout` is base64 (the bytes are not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_encoding: Option<String>,
    /// What it wrote on stderr (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stderr: String,
    /// `"base64"` when `stderr` is base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_encoding: Option<String>,
    /// True when a stream was longer than [`EXEC_OUTPUT_CAP`] and was cut.
    pub truncated: bool,
    /// True when `timeoutSeconds` ran out and the command was killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// One line of the streaming answer: a piece of output, or the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecFrame {
    /// `stdout` or `stderr`, with `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// `"base64"` when `data` is base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The last frame: the exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// On the last frame: the timeout ran out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The exec ended without an exit code (the daemon could not read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Frame types of the interactive stream (after `101 Switching
/// Protocols`): both ways, each frame is 1 byte type, 3 zero bytes, a
/// 4-byte big-endian length, then the payload.
pub mod stream {
    /// Client → daemon: bytes for the command's stdin.
    pub const STDIN: u8 = 0;
    /// Client → daemon: end of stdin (empty payload).
    pub const STDIN_CLOSE: u8 = 4;
    /// Client → daemon: window size, payload 4 bytes: columns then rows,
    /// each big-endian u16 (tty only).
    pub const RESIZE: u8 = 5;
    /// Daemon → client: stdout (with a tty: the terminal's output).
    pub const STDOUT: u8 = 1;
    /// Daemon → client: stderr (never with a tty).
    pub const STDERR: u8 = 2;
    /// Daemon → client, last: JSON `{"exitCode": n}` ([`super::ExecFrame`]).
    pub const EXIT: u8 = 3;
    /// Largest payload of a frame either way.
    pub const MAX_PAYLOAD: usize = 1 << 20;
    /// Length of a frame header.
    pub const HEADER: usize = 8;

    /// The header of a frame of `kind` with `len` bytes of payload.
    pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
        let n = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        [kind, 0, 0, 0, n[0], n[1], n[2], n[3]]
    }

    /// A whole frame.
    pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = header(kind, payload.len()).to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// The type and payload length of a header; an error for a length
    /// over [`MAX_PAYLOAD`] or non-zero padding.
    pub fn parse_header(h: &[u8; HEADER]) -> Result<(u8, usize), String> {
        if h[1..4] != [0, 0, 0] {
            return Err("bad frame header (padding is not zero)".to_string());
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!(
                "frame of {len} bytes is over the limit of {MAX_PAYLOAD}"
            ));
        }
        Ok((h[0], len))
    }

    /// The payload of a [`RESIZE`] frame.
    pub fn resize(cols: u16, rows: u16) -> [u8; 4] {
        let c = cols.to_be_bytes();
        let r = rows.to_be_bytes();
        [c[0], c[1], r[0], r[1]]
    }

    /// Columns and rows of a [`RESIZE`] payload.
    pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
        match p {
            [c0, c1, r0, r1] => Some((
                u16::from_be_bytes([*c0, *c1]),
                u16::from_be_bytes([*r0, *r1]),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<ValidExec, String> {
        let r: ExecRequest = crate::from_json_slice(json.as_bytes()).map_err(|e| e.to_string())?;
        validate_exec(&r).map_err(|e| e.to_string())
    }

    #[test]
    fn a_command_is_required_and_checked() {
        assert!(req(r#"{"command":["id","-u"]}"#).is_ok());
        assert!(req(r#"{}"#).unwrap_err().contains("command"));
        assert!(req(r#"{"command":[]}"#)
            .unwrap_err()
            .starts_with("command:"));
        assert!(req(r#"{"command":[""]}"#)
            .unwrap_err()
            .starts_with("command[0]"));
        assert!(req(r#"{"command":["a"],"colour":1}"#)
            .unwrap_err()
            .contains("unknown field"));
    }

    #[test]
    fn users_env_dirs_timeouts_and_stdin_are_checked() {
        let v = req(r#"{"command":["a"],"user":"1000:100","stdin":"aGk="}"#).unwrap();
        assert_eq!(
            v.user,
            Some(ExecUser {
                uid: 1000,
                gid: Some(100)
            })
        );
        assert_eq!(v.stdin.as_deref(), Some(&b"hi"[..]));
        for (body, field) in [
            (r#"{"command":["a"],"user":"root"}"#, "user"),
            (r#"{"command":["a"],"user":"-1"}"#, "user"),
            (r#"{"command":["a"],"user":"1:x"}"#, "user"),
            (r#"{"command":["a"],"user":"4294967295"}"#, "user"),
            (r#"{"command":["a"],"env":[{"name":"A=B"}]}"#, "env[0].name"),
            (r#"{"command":["a"],"workingDir":"tmp"}"#, "workingDir"),
            (r#"{"command":["a"],"workingDir":"/a/../b"}"#, "workingDir"),
            (r#"{"command":["a"],"timeoutSeconds":0}"#, "timeoutSeconds"),
            (
                r#"{"command":["a"],"timeoutSeconds":86401}"#,
                "timeoutSeconds",
            ),
            (r#"{"command":["a"],"stdin":"***"}"#, "stdin"),
        ] {
            let err = req(body).unwrap_err();
            assert!(err.starts_with(field), "{body}: {err}");
        }
    }

    #[test]
    fn output_is_text_or_base64() {
        assert_eq!(
            encode_output(b"h\xc3\xa9"),
            Encoded {
                data: "hé".into(),
                base64: false
            }
        );
        let e = encode_output(b"\xff\x00");
        assert!(e.base64);
        assert_eq!(decode_output(&e.data, Some("base64")).unwrap(), b"\xff\x00");
        assert!(decode_output("x", Some("hex")).is_err());
    }

    #[test]
    fn frames_round_trip_and_bad_headers_are_refused() {
        let f = stream::frame(stream::STDOUT, b"abc");
        let h: [u8; 8] = f[..8].try_into().unwrap();
        assert_eq!(stream::parse_header(&h), Ok((stream::STDOUT, 3)));
        assert!(stream::parse_header(&[1, 1, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(stream::parse_header(&stream::header(0, stream::MAX_PAYLOAD + 1)).is_err());
        assert_eq!(
            stream::parse_resize(&stream::resize(120, 40)),
            Some((120, 40))
        );
        assert_eq!(stream::parse_resize(&[1, 2, 3]), None);
    }
}
