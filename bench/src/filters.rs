//! Filter throughput: lines/s of f2b's filter engine on one core (host and time extracted)
//! vs `fail2ban-regex` with fail2ban's filter of the same name, vs `LC_ALL=C grep -cE` with an
//! equivalent pattern (the ceiling of a plain regex scan), on seeded generated logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use f2b_agent::filter::{Filter, FilterSpec};
use serde_json::json;

use crate::Ctx;
use crate::loggen;
use crate::report::{Stat, Table, num, text};
use crate::sys;

/// One corpus and filter.
struct Case {
    filter: &'static str,
    file: &'static str,
    /// An extended regex (grep -E) matching the failure lines of the generated shapes.
    grep: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        filter: "sshd",
        file: "auth.log",
        grep: r#"sshd\[[0-9]+\]: (error: (PAM: )?)?(Failed (password|keyboard-interactive/pam|none) for|[Ii]nvalid user|User [^ ]+ from [^ ]+ not allowed because|Authentication failure for|maximum authentication attempts exceeded for|Received disconnect from [^ ]+ port [0-9]+:3: .*Auth fail)"#,
    },
    Case {
        filter: "nginx-botsearch",
        file: "nginx-access.log",
        grep: r#""(GET|POST|HEAD) //?(roundcube|mail|extmail|horde|webmail|v-?webmail|(typo3/|xampp/|admin/)?(pma|(php)?[Mm]y[Aa]dmin)|wp-(login|signup|admin)\.php|cgi-bin|mysqladmin)[^ ]* [^ ]+" 404 "#,
    },
    Case {
        filter: "nginx-http-auth",
        file: "nginx-error.log",
        grep: r#"\[error\] [0-9]+#[0-9]+: \*[0-9]+ user "[^"]*":? (password mismatch|was not found in "[^"]*"), client: "#,
    },
    Case {
        filter: "nginx-limit-req",
        file: "nginx-error.log",
        grep: r#"\] [0-9]+#[0-9]+: \*[0-9]+ limiting requests, excess: [0-9.]+ by zone "[^"]+", client: "#,
    },
];

fn ctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/f2b-ctl")
}

/// The CPU everything timed here is pinned to (the last one).
fn cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// Byte offset where line number `subset` (0-based) starts: the end of the first `subset` lines.
fn subset_end(b: &[u8], subset: usize) -> usize {
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'\n')
        .nth(subset.saturating_sub(1))
        .map_or(b.len(), |(i, _)| i + 1)
}

/// Failures in `text` by f2b's engine: (failures, failures before byte `subset_end`).
/// The engine is driven as the agent drives it: `Filter::scan` over 64 KiB buffers of complete
/// lines (what the log reader hands over), host and time extracted for every failure. The
/// text and the subset's end are made once, outside the timed passes.
fn f2b_count(filter: &Filter, text: &str, subset_end: usize, now: i64) -> (u64, u64) {
    const CHUNK: usize = 64 * 1024;
    let b = text.as_bytes();
    let mut failures = 0u64;
    let mut in_subset = 0u64;
    let mut base = 0usize;
    while base < b.len() {
        let mut end = (base + CHUNK).min(b.len());
        if end < b.len() {
            end = b[base..end]
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(end, |p| base + p + 1);
        }
        let chunk = &text[base..end];
        filter.scan(chunk, now, &mut |f, off| {
            // Host and time are extracted: touch them so nothing is optimised away.
            std::hint::black_box((f.ip, f.time));
            failures += 1;
            if base + off < subset_end {
                in_subset += 1;
            }
        });
        base = end;
    }
    (failures, in_subset)
}

/// "Lines: 3 lines, 0 ignored, 2 matched, 1 missed" and "[processed in 0.01 sec]".
fn parse_fail2ban_regex(out: &str) -> Option<(u64, u64, f64)> {
    let l = out.lines().find(|l| l.starts_with("Lines: "))?;
    let nums: Vec<u64> = l
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse().ok())
        .collect();
    let secs = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("[processed in "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|x| x.parse().ok())?;
    Some((*nums.first()?, *nums.get(2)?, secs))
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let q = ctx.quick;
    // Timed passes: at least `rounds`, and more until `budget` seconds have passed.
    let (auth_n, nginx_n, subset, rounds, budget) = if q {
        (200_000u64, 100_000u64, 50_000usize, 3, 0.5)
    } else {
        (1_000_000, 300_000, 200_000, 5, 4.0)
    };
    let dir = tempfile::Builder::new()
        .prefix("f2b-bench-filter-")
        .tempdir()?;
    // F2B_BENCH_KEEP=1 keeps the generated logs (their directory is printed).
    let d = if std::env::var_os("F2B_BENCH_KEEP").is_some() {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    let d = d.as_path();
    ctx.progress(&format!(
        "filter: generating auth.log ({auth_n} lines) and nginx logs ({nginx_n} lines each)"
    ));
    std::fs::write(d.join("auth.log"), loggen::auth_log(auth_n, 0x5eed_0001))?;
    std::fs::write(
        d.join("nginx-access.log"),
        loggen::nginx_access(nginx_n, 0x5eed_0002),
    )?;
    std::fs::write(
        d.join("nginx-error.log"),
        loggen::nginx_error(nginx_n, 0x5eed_0003),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let cpu = cpu();
    let f2b_ver = crate::peers::version("fail2ban-client", "--version");

    let mut tput = Table::new(
        "filter_throughput",
        "Filter throughput: lines/s on one core",
        &[
            "filter",
            "file",
            "lines",
            "f2b engine lines/s (median)",
            "min",
            "max",
            "f2b-ctl regex lines/s",
            "fail2ban-regex lines/s",
            "grep -cE lines/s (median)",
            "grep min",
            "grep max",
            "ratio f2b/fail2ban-regex",
            "ratio f2b/grep",
        ],
    );
    tput.note = format!(
        "Everything pinned to CPU {cpu}. f2b engine: `f2b_agent::filter::Filter::scan` over 64 KiB buffers of lines \
         (stock filter, default mode; the failure's address and time are extracted) over the \
         file's lines in memory, after a warm-up, passes alternating with grep's runs until \
         both have {rounds} and {budget} s have passed (median, min, max: a median over many \
         short passes, so that this shared VM's slow spells of a few hundred ms, which come \
         and go and slow everything on a CPU by up to 2x, weigh alike on both). \
         f2b-ctl regex: wall time of `f2b-ctl regex FILE FILTER` once (process start, file \
         read, report). fail2ban-regex ({f2b_ver}): `fail2ban-regex --print-no-missed` with \
         /etc/fail2ban/filter.d/FILTER.conf on the first {subset} lines of the same file (it \
         is slow: ~{subset} lines take seconds); lines/s from its own \"processed in\" time. \
         grep: `LC_ALL=C grep -cE PATTERN FILE` wall time, one run after each f2b pass \
         (patterns in bench/src/filters.rs). Ratios use medians."
    );
    let mut counts = Table::new(
        "filter_counts",
        "Filter matches: f2b vs fail2ban-regex vs grep",
        &[
            "filter",
            "file",
            "lines",
            "f2b matched (all lines)",
            "grep -cE matched (all lines)",
            "subset lines",
            "f2b matched (subset)",
            "fail2ban-regex matched (subset)",
            "f2b-ctl regex matched (all lines)",
            "agree",
        ],
    );
    counts.note = "Matched = failure lines (fail2ban-regex's \"matched\"; f2b's failures, \
                   ignoreregex hits excluded). \"agree\" compares f2b with fail2ban-regex on \
                   the subset, and f2b with grep and f2b-ctl regex on the whole file."
        .into();
    let mut min_vs_f2b: Option<f64> = None;
    let mut min_vs_grep: Option<f64> = None;
    let mut sshd_ratios = (None, None);
    for case in &CASES {
        let path = d.join(case.file);
        let data = std::fs::read(&path)?;
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        ctx.progress(&format!(
            "filter: {} on {} ({lines} lines)",
            case.filter, case.file
        ));
        let filter = Filter::load(&FilterSpec::Name(case.filter.into()), None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let log = String::from_utf8_lossy(&data);
        let sub_end = subset_end(log.as_bytes(), subset);
        // Timed on one pinned thread, alternating with grep on the same CPU (grep's wall
        // time, the thread waiting meanwhile), so both see the same share of this shared
        // VM's slow spells; passes go on until both have `rounds` and `budget` has passed.
        let grep_cmd = || {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "grep", "-cE", case.grep])
                .arg(&path)
                .env("LC_ALL", "C");
            c
        };
        type Passes = (Vec<f64>, (u64, u64), Vec<f64>, Option<u64>);
        let (f2b_rates, (matched, matched_sub), grep_rates, grep_count) =
            std::thread::scope(|s| {
                s.spawn(|| -> Result<Passes> {
                    sys::pin_thread(cpu)?;
                    let warm = f2b_count(&filter, &log, sub_end, now);
                    let (mut rates, mut grep_rates, mut grep_count) =
                        (Vec::new(), Vec::new(), None);
                    let start = Instant::now();
                    while rates.len() < rounds
                        || (start.elapsed().as_secs_f64() < budget && rates.len() < 500)
                    {
                        let t = Instant::now();
                        let c = f2b_count(&filter, &log, sub_end, now);
                        rates.push(lines as f64 / t.elapsed().as_secs_f64());
                        if c != warm {
                            bail!("f2b count changed between passes");
                        }
                        let t = Instant::now();
                        let out = grep_cmd().output().context("grep")?;
                        grep_rates.push(lines as f64 / t.elapsed().as_secs_f64());
                        grep_count = String::from_utf8_lossy(&out.stdout)
                            .trim()
                            .parse::<u64>()
                            .ok();
                    }
                    Ok((rates, warm, grep_rates, grep_count))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("filter thread panicked"))?
            })?;
        let f2b = Stat::of(&f2b_rates).context("no f2b rounds")?;

        // f2b-ctl regex, whole process.
        let (ctl_rate, ctl_matched) = {
            let t = Instant::now();
            let out = Command::new("taskset")
                .args(["-c", &cpu.to_string()])
                .arg(ctl_bin())
                .arg("regex")
                .arg(&path)
                .arg(case.filter)
                .output()
                .context("f2b-ctl regex")?;
            let secs = t.elapsed().as_secs_f64();
            let s = String::from_utf8_lossy(&out.stdout);
            let m = s
                .lines()
                .find(|l| l.starts_with("Lines:"))
                .and_then(|l| l.split(',').nth(1))
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse::<u64>().ok());
            if out.status.success() {
                (Some(lines as f64 / secs), m)
            } else {
                (None, None)
            }
        };

        let grep = Stat::of(&grep_rates).context("no grep rounds")?;

        // fail2ban-regex on the subset.
        let sub_path = d.join(format!("{}.subset", case.file));
        let sub_lines = subset.min(lines);
        if !sub_path.exists() {
            let end = data
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(sub_lines - 1)
                .map_or(data.len(), |(i, _)| i + 1);
            std::fs::write(&sub_path, &data[..end])?;
        }
        let conf = format!("/etc/fail2ban/filter.d/{}.conf", case.filter);
        let (fb_rate, fb_matched) = if Path::new(&conf).exists() {
            let out = Command::new("taskset")
                .args([
                    "-c",
                    &cpu.to_string(),
                    "fail2ban-regex",
                    "--print-no-missed",
                ])
                .arg(&sub_path)
                .arg(&conf)
                .output()
                .context("fail2ban-regex")?;
            let s = String::from_utf8_lossy(&out.stdout);
            match parse_fail2ban_regex(&s) {
                Some((n, m, secs)) => (Some(n as f64 / secs.max(1e-3)), Some(m)),
                None => {
                    ctx.notes.push((
                        format!("fail2ban-regex {}: output not understood", case.filter),
                        format!(
                            "```\n{}\n{}\n```",
                            s.lines().rev().take(10).collect::<Vec<_>>().join("\n"),
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    ));
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let r_fb = fb_rate.map(|r| f2b.median / r);
        let r_grep = f2b.median / grep.median;
        min_vs_f2b = match (min_vs_f2b, r_fb) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        min_vs_grep = Some(min_vs_grep.map_or(r_grep, |a: f64| a.min(r_grep)));
        if case.filter == "sshd" {
            sshd_ratios = (r_fb, Some(r_grep));
        }
        ctx.progress(&format!(
            "  f2b {:.0} lines/s ({matched} matched), grep {:.0} lines/s ({grep_count:?}), \
             fail2ban-regex {fb_rate:?} lines/s ({fb_matched:?} of {sub_lines}, f2b {matched_sub})",
            f2b.median, grep.median
        ));
        tput.row(vec![
            text(case.filter),
            text(case.file),
            json!(lines),
            num(f2b.median),
            num(f2b.min),
            num(f2b.max),
            crate::report::opt(ctl_rate),
            crate::report::opt(fb_rate),
            num(grep.median),
            num(grep.min),
            num(grep.max),
            crate::report::opt(r_fb),
            num(r_grep),
        ]);
        let agree_fb = fb_matched.map(|m| m == matched_sub);
        let agree_grep = grep_count.map(|g| g == matched);
        let agree_ctl = ctl_matched.map(|c| c == matched);
        let verdict = match (agree_fb, agree_grep, agree_ctl) {
            (Some(true), Some(true), Some(true)) => "yes".to_string(),
            _ => format!(
                "fail2ban-regex: {}, grep: {}, f2b-ctl: {}",
                yn(agree_fb),
                yn(agree_grep),
                yn(agree_ctl)
            ),
        };
        counts.row(vec![
            text(case.filter),
            text(case.file),
            json!(lines),
            json!(matched),
            json!(grep_count),
            json!(sub_lines),
            json!(matched_sub),
            json!(fb_matched),
            json!(ctl_matched),
            text(verdict),
        ]);
    }
    ctx.tables.push(tput);
    ctx.tables.push(counts);
    ctx.targets.push(json!({
        "target": "filter engine >= 150x fail2ban-regex lines/s (sshd on auth.log)",
        "value": sshd_ratios.0, "met": sshd_ratios.0.map(|r| r >= 150.0)}));
    ctx.targets.push(json!({
        "target": "filter engine >= 150x fail2ban-regex lines/s (worst of the 4 filters)",
        "value": min_vs_f2b, "met": min_vs_f2b.map(|r| r >= 150.0)}));
    ctx.targets.push(json!({
        "target": "filter engine >= 1.0x grep -cE lines/s (sshd on auth.log)",
        "value": sshd_ratios.1, "met": sshd_ratios.1.map(|r| r >= 1.0)}));
    ctx.targets.push(json!({
        "target": "filter engine >= 1.0x grep -cE lines/s (worst of the 4 filters)",
        "value": min_vs_grep, "met": min_vs_grep.map(|r| r >= 1.0)}));
    Ok(())
}

fn yn(x: Option<bool>) -> &'static str {
    match x {
        Some(true) => "agree",
        Some(false) => "**differ**",
        None => "not measured",
    }
}
