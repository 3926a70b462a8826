//! `cargo xtask demo`: a ban, end to end, between two network namespaces.
//!
//! The demo builds the same world as the integration tests (f2b-integration's guards): an
//! "attacker" and an "edge" namespace joined by a veth pair, the release agent on the edge with
//! its embedded default config (only interface, socket, db and pin dir point into a temp dir).
//! Everything is removed again when the demo ends, fails or is interrupted with Ctrl-C.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use f2b_integration::agent::AgentOptions;
use f2b_integration::netns::{ATTACKER_IF, ATTACKER_V4, EDGE_IF, EDGE_V4};
use f2b_integration::traffic::{ping, ping_answered};
use f2b_integration::{Agent, Bins, Topology};

/// Pings per traffic round.
const N: u32 = 10;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C / SIGTERM set a flag instead of killing xtask, so the guards can clean up.
fn catch_signals() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe); the sigaction struct is
    // fully initialised (zeroed, then the fields we use).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

fn say(s: &str) {
    println!("{s}");
}

fn step(n: u32, s: &str) -> Result<()> {
    check_interrupt()?;
    println!("\n--- step {n}: {s}");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs f2b-ctl against the demo agent and shows what was typed and what it printed.
fn ctl(agent: &Agent, args: &[&str]) -> Result<()> {
    check_interrupt()?;
    println!("  $ f2b-ctl {}", args.join(" "));
    let out = agent.ctl(args)?;
    check_interrupt()?;
    print!("{}", indent(&out.stdout));
    if !out.stderr.trim().is_empty() {
        print!("{}", indent(&out.stderr));
    }
    if out.code != 0 {
        bail!("`f2b-ctl {}` exited {}", args.join(" "), out.code);
    }
    Ok(())
}

fn traffic(net: &Topology, expect_pass: bool) -> Result<()> {
    check_interrupt()?;
    say(&format!(
        "  attacker ({ATTACKER_V4}) pings the edge ({EDGE_V4}) {N} times ..."
    ));
    let dst = EDGE_V4.parse::<IpAddr>()?;
    let r = if expect_pass {
        ping_answered(&net.attacker, dst, None, N, Duration::from_secs(5))?
    } else {
        ping(&net.attacker, dst, None, N)?
    };
    // Ctrl-C reaches ping too; report the interruption, not a short count.
    check_interrupt()?;
    let verdict = match (r.received, expect_pass) {
        (x, true) if x == N => "traffic passes",
        (0, false) => "traffic is dropped by XDP before the edge's kernel sees it",
        _ => "UNEXPECTED",
    };
    say(&format!(
        "  -> {}/{} replies: {verdict}",
        r.received, r.sent
    ));
    if verdict == "UNEXPECTED" {
        bail!(
            "expected {} replies, got {r}",
            if expect_pass { "all" } else { "no" }
        );
    }
    Ok(())
}

pub fn run() -> Result<()> {
    catch_signals();
    if let Some(reason) = f2b_integration::skip_reason() {
        bail!("the demo needs root and network namespaces: {reason}");
    }
    let bins = Bins::locate_in(&crate::root().join("target/release"))?;

    say("\n=== f2b demo: banning an attacker with XDP ===");
    say(
        "Everything happens in two network namespaces created for this demo and removed at the end.",
    );
    step(1, "create the namespaces")?;
    let net = Topology::create("demo").context("creating the demo namespaces")?;
    say(&format!(
        "  '{}' (attacker, {ATTACKER_IF} {ATTACKER_V4}) <--veth--> '{}' (edge, {EDGE_IF} {EDGE_V4})",
        net.attacker.name(),
        net.edge.name()
    ));

    step(
        2,
        "start f2b-agent on the edge with its embedded default config",
    )?;
    if std::path::Path::new("/etc/f2b/f2b.yaml").exists() {
        say(
            "  note: /etc/f2b/f2b.yaml exists on this machine; the agent reads it instead of the embedded default",
        );
    }
    let mut opts = AgentOptions::new(&[EDGE_IF]);
    opts.ready_timeout = Duration::from_secs(30);
    let mut agent = Agent::start(&bins, &net.edge, opts)?;
    say(&format!(
        "  f2b-agent --iface {EDGE_IF} --socket {sock} --db {dir}/f2b.redb --pin-dir {dir}/bpf  (pid {pid})",
        sock = agent.socket().display(),
        dir = agent.dir().display(),
        pid = agent.pid().unwrap_or(0),
    ));
    say("  (every f2b-ctl call below also gets --socket pointing at that socket)");
    say("  agent log:");
    print!("{}", indent(agent.log_text().trim_end()));

    step(3, "before any ban, the attacker reaches the edge")?;
    traffic(&net, true)?;

    step(4, "ban the attacker's address")?;
    ctl(&agent, &["ban", ATTACKER_V4])?;
    ctl(&agent, &["list"])?;

    step(5, "the same traffic again")?;
    traffic(&net, false)?;
    ctl(&agent, &["stats"])?;
    say("  ... and once more: the drop counters climb");
    traffic(&net, false)?;
    ctl(&agent, &["stats"])?;
    ctl(&agent, &["list"])?;

    step(6, "unban")?;
    ctl(&agent, &["unban", ATTACKER_V4])?;
    traffic(&net, true)?;

    step(
        7,
        "stop the agent and remove the XDP program and pins (stop --detach)",
    )?;
    ctl(&agent, &["stop", "--detach"])?;
    let st = agent.wait_exit(Duration::from_secs(30))?;
    say(&format!("  agent exited ({st})"));

    step(8, "clean up")?;
    drop(agent);
    let names = format!("{} and {}", net.edge.name(), net.attacker.name());
    drop(net);
    say(&format!(
        "  removed namespaces {names} and the demo's temp dir"
    ));
    say("\n=== demo done ===");
    Ok(())
}
