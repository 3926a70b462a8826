//! `cargo xtask demo`: bans, end to end, between two network namespaces.
//!
//! The demo builds the same world as the integration tests (f2b-integration's guards): an
//! "attacker" and an "edge" namespace joined by a veth pair, the release agent on the edge with
//! the default config (config/f2b.yaml; only the sshd jail's log file, interface, socket, db
//! and pin dir point into a temp dir). First a ban by hand with f2b-ctl; then the real thing:
//! a small login service on the edge's port 22 logs failed logins the way sshd does, the
//! attacker guesses passwords, the sshd jail reads the log and bans it, and XDP drops it.
//! Everything is removed again when the demo ends, fails or is interrupted with Ctrl-C.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
        "start f2b-agent on the edge with the default config (config/f2b.yaml)",
    )?;
    if std::path::Path::new("/etc/f2b/f2b.yaml").exists() {
        say(
            "  note: /etc/f2b/f2b.yaml exists on this machine; the agent reads it instead of the embedded default",
        );
    }
    let mut opts = AgentOptions::new(&[EDGE_IF]);
    opts.ready_timeout = Duration::from_secs(30);
    let default = std::fs::read_to_string(crate::root().join("config/f2b.yaml"))
        .context("reading config/f2b.yaml")?;
    if !default.contains("/var/log/auth.log") {
        bail!("config/f2b.yaml no longer names /var/log/auth.log; update the demo");
    }
    opts.config = Some(
        default
            .replace("/var/log/auth.log", "{dir}/auth.log")
            .replace("/run/f2b/f2b.sock", "{dir}/f2b.sock")
            .replace("/var/lib/f2b/f2b.redb", "{dir}/f2b.redb")
            .replace("/sys/fs/bpf/f2b", "{dir}/bpf"),
    );
    let mut agent = Agent::start(&bins, &net.edge, opts)?;
    say(&format!(
        "  f2b-agent --config {dir}/f2b.yaml --iface {EDGE_IF}  (pid {pid})",
        dir = agent.dir().display(),
        pid = agent.pid().unwrap_or(0),
    ));
    say("  the config is config/f2b.yaml with the sshd jail reading {dir}/auth.log instead of");
    say("  /var/log/auth.log, and socket, database and pin dir in the same temp dir");
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
        "detection: a login service on the edge's port 22 logs failures like sshd",
    )?;
    let auth_log = agent.dir().join("auth.log");
    let service = LoginService::start(&net, &auth_log)?;
    say(&format!(
        "  the service writes lines like \"Failed password for root from {ATTACKER_V4} port N ssh2\" to {}",
        auth_log.display()
    ));
    say(
        "  the default sshd jail bans after 3 failures (maxretry: 3), on port 22 only (ports: [22])",
    );
    let mut banned_after = None;
    for attempt in 1..=6 {
        check_interrupt()?;
        let outcome = try_login(&net, &format!("root hunter{attempt}"))?;
        say(&format!("  attacker login attempt {attempt}: {outcome}"));
        if banned_after.is_none() && outcome.starts_with("no answer") {
            banned_after = Some(attempt - 1);
        }
        if banned_after.is_none() {
            wait_for_ban_or_failures(&agent, attempt)?;
        }
    }
    let Some(n) = banned_after else {
        bail!("the attacker was never cut off");
    };
    say(&format!(
        "  -> after {n} failed logins the jail banned {ATTACKER_V4}: its SYNs are dropped by XDP"
    ));
    ctl(&agent, &["status", "sshd"])?;
    ctl(&agent, &["list"])?;
    say("  the ban is scoped to port 22: the attacker's pings still pass");
    traffic(&net, true)?;
    say("  what the agent logged:");
    let log = agent.log_text();
    print!(
        "{}",
        indent(
            &log.lines()
                .filter(|l| l.contains("[sshd]"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    );
    println!();
    drop(service);

    step(
        8,
        "stop the agent and remove the XDP program and pins (stop --detach)",
    )?;
    ctl(&agent, &["stop", "--detach"])?;
    let st = agent.wait_exit(Duration::from_secs(30))?;
    say(&format!("  agent exited ({st})"));

    step(9, "clean up")?;
    drop(agent);
    let names = format!("{} and {}", net.edge.name(), net.attacker.name());
    drop(net);
    say(&format!(
        "  removed namespaces {names} and the demo's temp dir"
    ));
    say("\n=== demo done ===");
    Ok(())
}

/// A tiny line-based login service on the edge: each connection sends "USER PASSWORD", gets
/// "Permission denied", and the service appends an sshd-style failure line to its log.
struct LoginService {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoginService {
    fn start(net: &Topology, log: &Path) -> Result<LoginService> {
        let addr: SocketAddr = format!("{EDGE_V4}:22").parse()?;
        let listener = net.edge.run(|| TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let log: PathBuf = log.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut pid = 4000;
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        pid += 1;
                        let _ = serve_login(conn, peer, &log, pid);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(LoginService {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LoginService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_login(conn: TcpStream, peer: SocketAddr, log: &Path, pid: u32) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&conn).take(256).read_line(&mut line)?;
    let user = line.split_whitespace().next().unwrap_or("-").to_string();
    (&conn).write_all(b"Permission denied\n")?;
    let stamp = std::process::Command::new("date")
        .args(["-u", "+%b %e %H:%M:%S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(
        f,
        "{stamp} edge sshd[{pid}]: Failed password for {user} from {} port {} ssh2",
        peer.ip(),
        peer.port()
    )
}

/// One login attempt from the attacker namespace, bounded to about a second.
fn try_login(net: &Topology, creds: &str) -> Result<String> {
    let addr: SocketAddr = format!("{EDGE_V4}:22").parse()?;
    let creds = creds.to_string();
    net.attacker
        .run(move || -> std::io::Result<String> {
            let conn = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(c) => c,
                Err(e) => return Ok(format!("no answer ({e})")),
            };
            conn.set_read_timeout(Some(Duration::from_secs(1)))?;
            (&conn).write_all(format!("{creds}\n").as_bytes())?;
            let mut reply = String::new();
            BufReader::new(&conn).read_line(&mut reply)?;
            Ok(format!("connected, password refused ({})", reply.trim()))
        })?
        .map_err(Into::into)
}

/// After a failed login, waits (bounded) until the jail has counted it or banned.
fn wait_for_ban_or_failures(agent: &Agent, failures: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = agent.ctl_json(&["status", "sshd"])?;
        let j = &v["jails"][0];
        if j["failed_total"].as_u64().unwrap_or(0) >= failures
            || j["banned_now"].as_u64().unwrap_or(0) > 0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the sshd jail did not count the failed login: {j}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
