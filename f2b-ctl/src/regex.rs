//! `f2b-ctl regex`: runs a filter over a log file (or one line) offline, like fail2ban-regex.
//!
//! Uses the agent's own engine (`f2b_agent::filter`), so what it reports is what the agent
//! would count. No socket, no agent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use f2b_agent::filter::date::rfc3339;
use f2b_agent::filter::{Filter, FilterSpec, LineMatch};

use crate::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE};

/// Arguments of `f2b-ctl regex`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RegexArgs {
    /// A log file to read, or else one log line.
    #[arg(value_name = "LOG_FILE|LINE")]
    pub input: String,

    /// A stock filter name (sshd, nginx-http-auth, ...) or a path to a filter file.
    #[arg(value_name = "FILTER")]
    pub filter: String,

    /// The filter mode (sshd: normal, ddos, extra, aggressive).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Where operator filters (NAME.yaml) are looked up before the stock ones.
    #[arg(long, value_name = "DIR")]
    pub filter_dir: Option<PathBuf>,
}

/// Counts of a run, and the hosts with how many lines each.
#[derive(Debug, Default)]
struct Summary {
    read: u64,
    matched: u64,
    ignored: u64,
    missed: u64,
    no_date: u64,
    hosts: BTreeMap<String, u64>,
}

pub fn run(args: &RegexArgs, json: bool, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let spec = if args.filter.contains('/') || args.filter.ends_with(".yaml") {
        FilterSpec::Path(PathBuf::from(&args.filter))
    } else {
        FilterSpec::Name(args.filter.clone())
    };
    let filter = match Filter::load_from(&spec, args.mode.as_deref(), args.filter_dir.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return EXIT_USAGE;
        }
    };
    let now = unix_now();
    let mut sum = Summary::default();
    let path = Path::new(&args.input);
    let result = if path.is_file() {
        match std::fs::File::open(path) {
            Ok(f) => each_line(BufReader::new(f), |n, l| {
                one(&filter, n, l, now, json, &mut sum, stdout)
            }),
            Err(e) => {
                let _ = writeln!(stderr, "error: {}: {e}", path.display());
                return EXIT_USAGE;
            }
        }
    } else {
        one(&filter, 1, &args.input, now, json, &mut sum, stdout)
    };
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return EXIT_OK;
        }
        let _ = writeln!(stderr, "error: {e}");
        return EXIT_REFUSED;
    }
    if !json {
        let _ = summary(&filter, &sum, stdout);
    }
    EXIT_OK
}

/// Feeds each line (newline and CR removed, invalid UTF-8 replaced) with its number.
fn each_line(
    mut r: impl BufRead,
    mut f: impl FnMut(u64, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        n += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        f(n, &String::from_utf8_lossy(&buf))?;
    }
}

fn one(
    filter: &Filter,
    n: u64,
    line: &str,
    now: i64,
    json: bool,
    sum: &mut Summary,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    sum.read += 1;
    match filter.match_line(line, now) {
        LineMatch::Miss => sum.missed += 1,
        LineMatch::Ignored => sum.ignored += 1,
        LineMatch::Failure(f) => {
            sum.matched += 1;
            if f.time.is_none() {
                sum.no_date += 1;
            }
            *sum.hosts.entry(f.host.clone()).or_default() += 1;
            if json {
                let m = JsonMatch {
                    lineno: n,
                    host: &f.host,
                    time: f.time.map(rfc3339),
                    failregex: f.failregex,
                };
                let v = serde_json::to_string(&m).map_err(std::io::Error::other)?;
                writeln!(out, "{v}")?;
            }
        }
    }
    Ok(())
}

/// One `--json` line; fields in this order.
#[derive(serde::Serialize)]
struct JsonMatch<'a> {
    lineno: u64,
    host: &'a str,
    time: Option<String>,
    failregex: usize,
}

fn summary(filter: &Filter, s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Filter: {}{} ({} failregex)",
        filter.name(),
        filter
            .mode()
            .map(|m| format!(" [mode {m}]"))
            .unwrap_or_default(),
        filter.failregex_count()
    )?;
    writeln!(
        out,
        "Lines: {} read, {} matched, {} ignored, {} missed",
        s.read, s.matched, s.ignored, s.missed
    )?;
    if s.no_date > 0 {
        writeln!(
            out,
            "Date: no timestamp recognised in {} matched lines",
            s.no_date
        )?;
    }
    if s.hosts.is_empty() {
        return writeln!(out, "Hosts: none");
    }
    writeln!(out, "Hosts: {}", s.hosts.len())?;
    let mut hosts: Vec<(&String, &u64)> = s.hosts.iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (h, c) in hosts {
        writeln!(out, "  {c:>6}  {h}")?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
