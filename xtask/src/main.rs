//! Project tasks: `cargo xtask setup | build | run | demo | test | bench`.
//!
//! `setup` installs what a fresh Debian machine lacks for building the XDP object and running
//! the namespace tests (LLVM 22 dev files, bpf-linker built against them, nightly rust-src,
//! iproute2, ping), checking first so that it is quick when nothing is missing. Every other
//! command runs it first, so a fresh clone needs no manual step.

mod demo;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "f2b project tasks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing system packages, bpf-linker and nightly rust-src (idempotent).
    Setup,
    /// Build f2b-agent (with the embedded XDP object) and f2b-ctl in release mode.
    Build,
    /// Build, then run the agent in the foreground with the given arguments.
    Run {
        /// Arguments for f2b-agent (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show a ban in action between two network namespaces this command creates and removes.
    Demo,
    /// Everything CI checks: fmt, clippy (host and eBPF), unit, XDP verdict and namespace tests.
    Test,
    /// Benchmarks side by side with nftables, ipset, iptables and fail2ban: writes
    /// bench/REPORT.md, bench/results.json and bench/*.png.
    Bench {
        /// Reduced set (smaller sizes, one round each), under 5 minutes.
        #[arg(long)]
        quick: bool,
        /// Write REPORT.md, results.json and the plots to this directory instead of bench/.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Build => setup::run().and_then(|()| build_release()),
        Cmd::Run { args } => setup::run().and_then(|()| run_agent(&args)),
        Cmd::Demo => setup::run()
            .and_then(|()| build_release())
            .and_then(|()| demo::run()),
        Cmd::Test => setup::run().and_then(|()| test()),
        Cmd::Bench { quick, out } => bench(quick, out.as_deref()),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `cargo` from PATH (the rustup proxy, so `+nightly` works), in the workspace root.
fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    c
}

/// Runs a command, failing with its rendering when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = render(cmd);
    let st = cmd.status().with_context(|| format!("running {shown}"))?;
    if !st.success() {
        bail!("`{shown}` failed ({st})");
    }
    Ok(())
}

pub fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn build_release() -> Result<()> {
    println!("==> cargo build --release -p f2b-agent -p f2b-ctl");
    run_cmd(cargo().args(["build", "--release", "-p", "f2b-agent", "-p", "f2b-ctl"]))
}

fn run_agent(args: &[String]) -> Result<()> {
    build_release()?;
    let bin = root().join("target/release/f2b-agent");
    println!("==> {} {}", bin.display(), args.join(" "));
    // The agent handles Ctrl-C itself (clean exit, enforcement stays); keep xtask alive to
    // report how it ended.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    // SAFETY: restores the default SIGINT disposition in the child; async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let st = cmd
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !st.success() {
        bail!("f2b-agent exited with {st}");
    }
    Ok(())
}

fn bench(quick: bool, out: Option<&std::path::Path>) -> Result<()> {
    setup::run()?;
    // The scale section runs the release agent and f2b-ctl binaries.
    build_release()?;
    let mut c = cargo();
    c.args(["run", "--release", "-p", "f2b-bench", "--"]);
    if quick {
        c.arg("--quick");
    }
    if let Some(o) = out {
        // Relative to where xtask was started, not to the workspace root cargo runs in.
        let o = std::env::current_dir()?.join(o);
        c.arg("--out").arg(o);
    }
    println!("==> {}", render(&c));
    run_cmd(&mut c)
}

/// A command for the f2b-ebpf crate with the environment scrubbed of what the outer cargo
/// (stable, host target) set, as f2b-agent's build.rs does when it builds the XDP object.
fn ebpf_cargo(toolchain: &str) -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{toolchain}"));
    c.current_dir(root().join("f2b-ebpf"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let drop = (k.starts_with("CARGO") && k != "CARGO_HOME")
            || k.starts_with("__CARGO")
            || k.starts_with("RUSTC")
            || k.starts_with("RUSTUP_TOOLCHAIN")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS";
        if drop {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// One CI step.
struct Step {
    name: &'static str,
    cmd: Command,
}

fn test() -> Result<()> {
    let root = root();
    let debug = root.join("target/debug");
    let mut steps = Vec::new();
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    steps.push(Step {
        name: "rustfmt (workspace)",
        cmd: c,
    });
    let mut c = ebpf_cargo("nightly");
    c.args(["fmt", "--", "--check"]);
    steps.push(Step {
        name: "rustfmt (f2b-ebpf)",
        cmd: c,
    });
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(Step {
        name: "clippy (workspace)",
        cmd: c,
    });
    let mut c = ebpf_cargo("nightly");
    c.args([
        "clippy",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])
    .env("CARGO_TARGET_DIR", root.join("target/xtask-ebpf-clippy"));
    steps.push(Step {
        name: "clippy (f2b-ebpf, bpfel-unknown-none)",
        cmd: c,
    });
    let mut c = cargo();
    c.args(["build", "-p", "f2b-agent", "-p", "f2b-ctl"]);
    steps.push(Step {
        name: "build f2b-agent and f2b-ctl for the namespace tests",
        cmd: c,
    });
    let mut c = cargo();
    // The namespace tests serialise themselves (one agent at a time per test binary).
    c.args(["test", "--workspace"])
        .env("F2B_AGENT_BIN", debug.join("f2b-agent"))
        .env("F2B_CTL_BIN", debug.join("f2b-ctl"));
    steps.push(Step {
        name: "tests (unit, XDP verdicts, f2b-ctl, namespace integration)",
        cmd: c,
    });
    // Smoke check of the benchmark harness: no thresholds, output kept out of bench/.
    let mut c = cargo();
    c.args(["xtask", "bench", "--quick", "--out"])
        .arg(root.join("target/bench-smoke"));
    steps.push(Step {
        name: "bench harness smoke (cargo xtask bench --quick, into target/bench-smoke)",
        cmd: c,
    });

    let started = Instant::now();
    let mut results = Vec::new();
    let total = steps.len();
    for (i, mut step) in steps.into_iter().enumerate() {
        println!("\n==== [{}/{total}] {} ====", i + 1, step.name);
        println!("$ {}", render(&step.cmd));
        let t = Instant::now();
        let ok = match step.cmd.status() {
            Ok(st) => st.success(),
            Err(e) => {
                eprintln!("cannot run: {e}");
                false
            }
        };
        let secs = t.elapsed().as_secs_f64();
        println!(
            "==== {} {} ({secs:.1}s) ====",
            if ok { "PASS" } else { "FAIL" },
            step.name
        );
        results.push((step.name, ok, secs));
    }
    println!("\n==== summary ====");
    for (name, ok, secs) in &results {
        println!("{:4}  {name} ({secs:.1}s)", if *ok { "ok" } else { "FAIL" });
    }
    let failed: Vec<_> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    let secs = started.elapsed().as_secs();
    if failed.is_empty() {
        println!(
            "xtask test: all {total} steps passed in {}m{:02}s",
            secs / 60,
            secs % 60
        );
        Ok(())
    } else {
        bail!(
            "{} of {total} steps failed: {}",
            failed.len(),
            failed.join(", ")
        )
    }
}
