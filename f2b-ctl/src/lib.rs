//! f2b-ctl: the operator's handle on a running f2b agent.
//!
//! The CLI parses and validates arguments ([`cli`]), turns them into one
//! [`f2b_common::proto::Request`], sends it as a JSON line over the agent's Unix socket
//! ([`client`]) and prints the answer for a person ([`output`], [`table`]) or, with `--json`,
//! as the response's `data` for a script. Nothing is sent before every argument is valid.
//!
//! `regex` is the exception: it runs the agent's filter engine offline ([`regex`]).
//!
//! Exit codes: 0 ok, 1 the agent refused, 2 usage error, 3 the agent cannot be reached.

pub mod cli;
pub mod client;
pub mod output;
pub mod regex;
pub mod table;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use cli::Cli;
use client::Client;
use f2b_common::proto::{BanResult, BanRuns};

pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

/// Runs a parsed command line against the agent; returns the process exit code.
pub fn run(cli: &Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let with_file = match cli.command.with_file_targets() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return EXIT_USAGE;
        }
    };
    let command = with_file.as_ref().unwrap_or(&cli.command);
    if let cli::Command::Ban {
        targets,
        jail,
        time,
        force,
        file: _,
    } = command
    {
        let client = Client::new(cli.socket_path(), cli.timeout);
        let time = time.map(|t| t.to_string());
        let req = BanReq {
            ips: cli::Addrs::normalised(targets),
            jail: jail.as_deref(),
            time: time.as_deref(),
            force: *force,
        };
        return ban(&client, &req, cli.json, stdout, stderr);
    }
    let Some(req) = command.to_request() else {
        // The only command that does not talk to the agent.
        return match command {
            cli::Command::Regex(args) => regex::run(args, cli.json, stdout, stderr),
            _ => EXIT_USAGE,
        };
    };
    let client = Client::new(cli.socket_path(), cli.timeout);
    let data = match client.call(&req) {
        Ok(d) => d,
        Err(e) => {
            // Nothing sensible is left to do if stderr itself is gone.
            let _ = writeln!(stderr, "error: {e}");
            return e.exit_code();
        }
    };
    let written = if cli.json {
        writeln!(stdout, "{data}")
    } else {
        let r = output::render(command, &data, unix_now());
        for n in &r.notes {
            let _ = writeln!(stderr, "{n}");
        }
        stdout.write_all(r.stdout.as_bytes())
    };
    finish(written, stdout, stderr)
}

/// What a `ban` sends: [`f2b_common::proto::Request::Ban`] with its addresses in one buffer.
struct BanReq<'a> {
    ips: cli::Addrs,
    jail: Option<&'a str>,
    time: Option<&'a str>,
    force: bool,
}

impl BanReq<'_> {
    fn line(&self, compact: bool) -> Vec<u8> {
        f2b_common::proto::ban_request_line(
            self.ips.iter(),
            self.jail,
            self.time,
            self.force,
            compact,
        )
    }
}

/// `ban`: asks for the compact answer ([`BanRuns`], a few runs however many addresses) and
/// prints each ban from the request's own addresses, for a person or, with `--json`, as the
/// [`BanResult`] the full answer is. An agent that predates `compact` refuses the field: the
/// request is sent again without it and the full answer printed ([`ban_full`]).
fn ban(
    client: &Client,
    req: &BanReq<'_>,
    json: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let line = match client.exchange_line(req.line(true)) {
        Ok(l) => l,
        Err(e) => return fail(e, stderr),
    };
    let ips = &req.ips;
    match serde_json::from_slice::<Answer<BanRuns>>(&line) {
        Ok(Answer {
            ok: true,
            data: Some(runs),
            ..
        }) => {
            let text = if json {
                output::ban_runs_json(ips, &runs).map(|mut s| {
                    s.push('\n');
                    s
                })
            } else {
                output::ban_runs(ips, &runs, unix_now())
            };
            match text {
                Ok(t) => finish(stdout.write_all(t.as_bytes()), stdout, stderr),
                Err(reason) => fail(
                    client::CtlError::BadResponse {
                        socket: client.socket().to_path_buf(),
                        reason,
                    },
                    stderr,
                ),
            }
        }
        Ok(Answer {
            ok: false,
            error: Some(e),
            ..
        }) if e.contains("unknown field `compact`") => {
            match client.exchange_line(req.line(false)) {
                Ok(l) => ban_full(client, &l, json, stdout, stderr),
                Err(e) => fail(e, stderr),
            }
        }
        _ => ban_full(client, &line, json, stdout, stderr),
    }
}

/// A response line as far as `ban` needs it.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "T: serde::Deserialize<'de>"))]
struct Answer<T> {
    ok: bool,
    #[serde(default)]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

fn fail(e: client::CtlError, stderr: &mut dyn Write) -> u8 {
    let _ = writeln!(stderr, "error: {e}");
    e.exit_code()
}

/// Prints a full `ban` answer (or any other response). For a person the answer of a bulk
/// ban is decoded straight into [`BanResult`] rather than through a JSON tree (which cost
/// more than the agent's work for 50k addresses). Any other shape goes the general way.
fn ban_full(
    client: &Client,
    line: &[u8],
    json: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    if !json {
        match serde_json::from_slice::<Answer<BanResult>>(line) {
            Ok(Answer {
                ok: true,
                data: Some(d),
                ..
            }) => {
                let text = output::ban(&d, unix_now());
                return finish(stdout.write_all(text.as_bytes()), stdout, stderr);
            }
            Ok(Answer {
                ok: false,
                error: Some(e),
                ..
            }) => return fail(client::CtlError::Refused(e), stderr),
            _ => {}
        }
    }
    let resp = match client.decode(line) {
        Ok(r) => r,
        Err(e) => return fail(e, stderr),
    };
    if !resp.ok {
        let e = client::CtlError::Refused(
            resp.error
                .unwrap_or_else(|| "the agent refused without saying why".into()),
        );
        return fail(e, stderr);
    }
    let data = resp.data.unwrap_or(serde_json::Value::Null);
    if json {
        return finish(writeln!(stdout, "{data}"), stdout, stderr);
    }
    let r = output::render(
        &cli::Command::Ban {
            targets: vec![],
            jail: None,
            time: None,
            force: false,
            file: None,
        },
        &data,
        unix_now(),
    );
    for n in &r.notes {
        let _ = writeln!(stderr, "{n}");
    }
    finish(stdout.write_all(r.stdout.as_bytes()), stdout, stderr)
}

fn finish(written: std::io::Result<()>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    // The agent did what was asked; a closed stdout (`| head`) does not change that.
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = writeln!(stderr, "error: writing output: {e}");
            EXIT_REFUSED
        }
        _ => EXIT_OK,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
