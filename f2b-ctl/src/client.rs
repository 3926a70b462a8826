//! The control-socket client: one request line out, one response line back.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use f2b_common::proto::{Request, Response};

/// Longest response line read. A `list` of a million bans is a few hundred MiB of JSON;
/// anything past this is not an answer from the agent.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// Why a request got no usable answer. The exit code follows the contract in DESIGN.md.
#[derive(Debug)]
pub enum CtlError {
    /// No answer: the socket is missing or refuses us, or the agent did not reply in time.
    Unreachable { socket: PathBuf, reason: String },
    /// The agent answered `{"ok":false,"error":...}`.
    Refused(String),
    /// The agent answered something that is not a protocol response.
    BadResponse { socket: PathBuf, reason: String },
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Refused(_) | CtlError::BadResponse { .. } => 1,
            CtlError::Unreachable { .. } => 3,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Unreachable { socket, reason } => {
                write!(
                    f,
                    "cannot reach the f2b agent at {}: {reason}",
                    socket.display()
                )
            }
            CtlError::Refused(msg) => f.write_str(msg),
            CtlError::BadResponse { socket, reason } => {
                write!(
                    f,
                    "the agent at {} sent an invalid response: {reason}",
                    socket.display()
                )
            }
        }
    }
}

impl std::error::Error for CtlError {}

pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Client {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `req` and returns the `data` of a successful response (`Null` when absent).
    pub fn call(&self, req: &Request) -> Result<serde_json::Value, CtlError> {
        let resp = self.exchange(req)?;
        if resp.ok {
            Ok(resp.data.unwrap_or(serde_json::Value::Null))
        } else {
            Err(CtlError::Refused(resp.error.unwrap_or_else(|| {
                "the agent refused without saying why".into()
            })))
        }
    }

    /// Sends `req` and reads back one response, whatever its `ok`.
    pub fn exchange(&self, req: &Request) -> Result<Response, CtlError> {
        let buf = self.exchange_raw(req)?;
        self.decode(&buf)
    }

    /// Decodes a response line as [`Client::exchange_raw`] returned it.
    pub fn decode(&self, line: &[u8]) -> Result<Response, CtlError> {
        serde_json::from_slice(line).map_err(|e| CtlError::BadResponse {
            socket: self.socket.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends `req` and returns the response line undecoded (for a caller that decodes a
    /// large answer straight into its type, without a JSON tree first).
    pub fn exchange_raw(&self, req: &Request) -> Result<Vec<u8>, CtlError> {
        let line = serde_json::to_vec(req).map_err(|e| CtlError::BadResponse {
            socket: self.socket.clone(),
            reason: format!("encoding request: {e}"),
        })?;
        self.exchange_line(line)
    }

    /// Sends one encoded request (`line`, without its newline) and returns the response line
    /// undecoded.
    pub fn exchange_line(&self, mut line: Vec<u8>) -> Result<Vec<u8>, CtlError> {
        let unreachable = |reason: String| CtlError::Unreachable {
            socket: self.socket.clone(),
            reason,
        };
        let bad = |reason: String| CtlError::BadResponse {
            socket: self.socket.clone(),
            reason,
        };

        let mut stream = UnixStream::connect(&self.socket).map_err(|e| {
            unreachable(format!(
                "{}{}",
                os_message(&e),
                connect_hint(&self.socket, &e)
            ))
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| unreachable(os_message(&e)))?;

        line.push(b'\n');
        stream.write_all(&line).map_err(|e| {
            unreachable(match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                    "the request was not accepted within {}",
                    crate::output::span(self.timeout.as_secs())
                ),
                _ => format!("sending the request: {}", os_message(&e)),
            })
        })?;

        let mut reader = BufReader::new(stream).take(MAX_RESPONSE_BYTES);
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                return Err(unreachable(
                    "the agent closed the connection without a response".into(),
                ));
            }
            Ok(_) if buf.last() != Some(&b'\n') => {
                return Err(if buf.len() as u64 >= MAX_RESPONSE_BYTES {
                    bad(format!("response longer than {MAX_RESPONSE_BYTES} bytes"))
                } else {
                    unreachable("the connection closed in the middle of the response".into())
                });
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(unreachable(format!(
                    "no response within {} (is the agent overloaded or stuck?)",
                    crate::output::span(self.timeout.as_secs())
                )));
            }
            Err(e) => {
                return Err(unreachable(format!(
                    "reading the response: {}",
                    os_message(&e)
                )));
            }
        }
        Ok(buf)
    }
}

/// The OS error text without Rust's " (os error N)" suffix.
fn os_message(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

fn connect_hint(socket: &Path, e: &io::Error) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    // connect(2) says "Connection refused" for a directory or plain file too.
    if let Ok(m) = std::fs::metadata(socket)
        && !m.file_type().is_socket()
    {
        return " (the path exists but is not a socket: check --socket / F2B_SOCKET)";
    }
    match e.kind() {
        io::ErrorKind::NotFound => " (is f2b-agent running?)",
        io::ErrorKind::ConnectionRefused => {
            " (nothing listens on the socket: is f2b-agent running?)"
        }
        io::ErrorKind::PermissionDenied => {
            " (the socket is open to root and the agent's control group only)"
        }
        _ => "",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn os_message_strips_code() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(os_message(&e), "No such file or directory");
        assert_eq!(os_message(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn exit_codes() {
        let p = PathBuf::from("/x");
        assert_eq!(CtlError::Refused("no".into()).exit_code(), 1);
        assert_eq!(
            CtlError::BadResponse {
                socket: p.clone(),
                reason: String::new()
            }
            .exit_code(),
            1
        );
        let e = CtlError::Unreachable {
            socket: p,
            reason: "gone".into(),
        };
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.to_string(), "cannot reach the f2b agent at /x: gone");
    }
}
