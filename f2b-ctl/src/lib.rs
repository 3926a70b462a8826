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

pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

/// Runs a parsed command line against the agent; returns the process exit code.
pub fn run(cli: &Cli, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let Some(req) = cli.command.to_request() else {
        // The only command that does not talk to the agent.
        return match &cli.command {
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
        let r = output::render(&cli.command, &data, unix_now());
        for n in &r.notes {
            let _ = writeln!(stderr, "{n}");
        }
        stdout.write_all(r.stdout.as_bytes())
    };
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
