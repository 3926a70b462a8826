//! f2b's benchmarks, side by side with the tools operators run today (nftables, ipset,
//! iptables, fail2ban), in one run: `cargo xtask bench [--quick]` (or, as root from the
//! workspace root, `cargo run --release -p f2b-bench -- [--quick] [--only SECTION]`).
//!
//! Sections: drop path (a) per-packet XDP cost via BPF_PROG_TEST_RUN ([`xdpcost`]); drop path
//! (b) packets/s dropped between two network namespaces with a userspace and an in-kernel
//! generator ([`harness`]); scale: ban inserts, restore of 1M persisted bans, agent memory, and
//! fail2ban restoring its bans ([`scale`]). Every number lands in bench/REPORT.md and
//! bench/results.json. These are measurements, never tests: nothing here asserts a speed.
//! Traffic only flows inside namespaces created here, on 198.18.0.0/15 and fd00:f2b::/64, and
//! every traffic loop is bounded in packets and time.

mod f2bprog;
mod frames;
mod harness;
mod netns;
mod peers;
mod png;
mod report;
mod scale;
mod sys;
mod xdpcost;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use report::{Plot, Table, text};

/// One section of the run: fills the context's tables, plots, targets and notes.
type Section = fn(&mut Ctx) -> Result<()>;

pub struct Ctx {
    pub quick: bool,
    pub tables: Vec<Table>,
    pub plots: Vec<Plot>,
    /// `{target, value, met}` for issue 4's targets.
    pub targets: Vec<Value>,
    /// Free-form findings (profiles, caps, skipped parts), rendered as sections.
    pub notes: Vec<(String, String)>,
    pub start: Instant,
    pub out_dir: PathBuf,
    /// (bans, seconds from agent start to all enforced), for the fail2ban comparison.
    pub f2b_restore: Option<(u32, Option<f64>)>,
}

impl Ctx {
    pub fn progress(&self, msg: &str) {
        eprintln!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("f2b-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only.extend(args.next()),
            "-h" | "--help" => {
                println!("f2b-bench [--quick] [--only xdp|harness|scale]...");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench needs root (BPF, network namespaces, nftables/iptables)");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut ctx = Ctx {
        quick,
        tables: Vec::new(),
        plots: Vec::new(),
        targets: Vec::new(),
        notes: Vec::new(),
        start: Instant::now(),
        out_dir: root.clone(),
        f2b_restore: None,
    };
    ctx.progress(&format!(
        "f2b bench ({}), results in {}",
        if quick { "quick" } else { "full" },
        root.display()
    ));
    peers::ensure_installed(&ctx)?;
    let want = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let sections: [(&str, Section); 3] = [
        ("xdp", xdpcost::run),
        ("harness", harness::run),
        ("scale", scale::run),
    ];
    let mut failed = Vec::new();
    for (name, f) in sections {
        if !want(name) {
            continue;
        }
        if let Err(e) = f(&mut ctx) {
            ctx.progress(&format!("section {name} failed: {e:#}"));
            ctx.notes.push((
                format!("Section `{name}` failed"),
                format!("The section stopped with an error; its rows are missing or partial:\n\n```\n{e:#}\n```"),
            ));
            failed.push(name);
        }
    }
    not_measured(&mut ctx);
    write_outputs(&ctx)?;
    ctx.progress(&format!(
        "wrote {} and {}",
        root.join("REPORT.md").display(),
        root.join("results.json").display()
    ));
    if !failed.is_empty() {
        bail!("sections failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Comparisons that need the detection pipeline (log sources, filters, jails fed from logs).
fn not_measured(ctx: &mut Ctx) {
    let mut t = Table::new(
        "not_measured",
        "Not measured yet: detection not landed",
        &["comparison (issue 4)", "status", "why"],
    );
    let why = "detection not landed: the filter engine (f2b-agent/src/filter) and log \
               sources (f2b-agent/src/source) are on main, but the agent does not yet wire \
               sources -> filters -> jails -> bans; these comparisons wait for that wiring";
    for item in [
        "2. filter throughput: f2b filter lines/s vs fail2ban-regex vs grep -cE",
        "3. ban latency: failure line write() -> kernel map entry / first drop, vs fail2ban (pyinotify, polling)",
        "5. bans/s inserted via a jail under a flood; agent RSS with 1M tracked failing sources",
        "6. flood: sustained failure lines/s from 1M sources followed on one core",
    ] {
        t.row(vec![text(item), text("not measured yet"), text(why)]);
    }
    for target in [
        "filter engine >= 150x fail2ban-regex and >= 1.0x grep -cE",
        "ban latency p99 <= 1 ms",
        "agent RSS <= 256 MiB with 1M bans + 1M tracked sources (the tracked-sources half)",
        "flood >= 1M lines/s followed on one core",
    ] {
        ctx.targets.push(json!({"target": target, "value": null, "met": null, "why": "not measured yet: detection not landed"}));
    }
    ctx.tables.push(t);
}

fn write_outputs(ctx: &Ctx) -> Result<()> {
    let mut md = String::new();
    md.push_str("# f2b benchmark report\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask bench{}` (f2b-bench). Machine: {}; kernel {}; {} CPUs. \
         Run took {:.0} s. How to read this: docs/bench.md. Every number here is also in \
         bench/results.json. Benchmarks, not tests: nothing asserts a speed.\n\n",
        if ctx.quick { " --quick" } else { "" },
        machine(),
        uname(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ctx.start.elapsed().as_secs_f64()
    ));
    md.push_str("## Targets (issue 4, item 7)\n\n| target | value | status |\n|---|---|---|\n");
    for t in &ctx.targets {
        let value = match &t["value"] {
            Value::Null => "—".to_string(),
            v => report::fmt_cell(v),
        };
        let status = match &t["met"] {
            Value::Bool(true) => "met".to_string(),
            Value::Bool(false) => "**not met**".to_string(),
            _ => t["why"].as_str().unwrap_or("not measured").to_string(),
        };
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            t["target"].as_str().unwrap_or(""),
            value,
            status
        ));
    }
    md.push('\n');
    md.push_str("## Results\n\n");
    for t in &ctx.tables {
        md.push_str(&t.markdown());
    }
    let mut plots_json = Vec::new();
    if !ctx.plots.is_empty() {
        md.push_str("## Plots\n\n");
    }
    for p in &ctx.plots {
        let path = ctx.out_dir.join(&p.file);
        let pts: Vec<Vec<(f64, f64)>> = p.series.iter().map(|s| s.points.clone()).collect();
        let (xmax, ymax) = png::plot(&path, &pts)?;
        let legend: Vec<String> = p
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} = {}", png::COLOUR_NAMES[i % 6], s.name))
            .collect();
        md.push_str(&format!(
            "### {}\n\n![{}]({})\n\nx: {} from 0 to {}; y: {} from 0 to {}; ticks at tenths. {}.\n\n",
            p.title,
            p.title,
            p.file,
            p.x_label,
            report::fmt_num(xmax),
            p.y_label,
            report::fmt_num(ymax),
            legend.join(", ")
        ));
        plots_json.push(json!({
            "file": p.file, "title": p.title, "x": p.x_label, "y": p.y_label,
            "series": p.series.iter().map(|s| json!({"name": s.name, "points": s.points})).collect::<Vec<_>>(),
        }));
    }
    for (title, body) in &ctx.notes {
        md.push_str(&format!("## {title}\n\n{body}\n\n"));
    }
    std::fs::write(ctx.out_dir.join("REPORT.md"), md)?;
    let j = json!({
        "quick": ctx.quick,
        "machine": machine(),
        "kernel": uname(),
        "seconds": ctx.start.elapsed().as_secs_f64(),
        "targets": ctx.targets,
        "tables": ctx.tables.iter().map(Table::json).collect::<Vec<_>>(),
        "plots": plots_json,
        "notes": ctx.notes.iter().map(|(t, b)| json!({"title": t, "body": b})).collect::<Vec<_>>(),
    });
    std::fs::write(
        ctx.out_dir.join("results.json"),
        serde_json::to_string_pretty(&j)?,
    )?;
    Ok(())
}

fn uname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
