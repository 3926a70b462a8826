//! Scale: bans/s inserted through `f2b-ctl ban` (many addresses per call, i.e. the agent's
//! batch path), time from agent start to all persisted bans enforced (the kernel map holding
//! them all, observed from outside through the pinned map), agent memory, and fail2ban
//! restoring its bans from its sqlite database for comparison.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Ctx;
use crate::netns::{EDGE_IF, NetNs, Topology};
use crate::report::{Plot, Series, Stat, Table, num, text};
use crate::sys;

pub(crate) fn bins() -> Result<(PathBuf, PathBuf)> {
    // F2B_BENCH_BIN_DIR: another build's binaries under the same bench (A/B comparisons).
    let dir = std::env::var_os("F2B_BENCH_BIN_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
        PathBuf::from,
    );
    let a = dir.join("f2b-agent");
    let c = dir.join("f2b-ctl");
    if !a.is_file() || !c.is_file() {
        bail!(
            "release binaries missing in {} (`cargo build --release -p f2b-agent -p f2b-ctl`; \
             `cargo xtask bench` does it)",
            dir.display()
        );
    }
    Ok((a, c))
}

/// v6 address number `i` inside fd00:f2b::/64 (fd00:f2b::2:0:0 + i).
fn addr6(i: u32) -> String {
    format!("fd00:f2b::2:{:x}:{:x}", i >> 16, i & 0xffff)
}

pub(crate) struct AgentProc {
    child: Option<Child>,
}

impl AgentProc {
    pub(crate) fn spawn(ns: &NetNs, bin: &Path, config: &Path, log: &Path) -> Result<AgentProc> {
        Self::spawn_on(ns, bin, config, log, None)
    }

    /// Like [`AgentProc::spawn`], pinned to `cpu` with taskset when given.
    pub(crate) fn spawn_on(
        ns: &NetNs,
        bin: &Path,
        config: &Path,
        log: &Path,
        cpu: Option<usize>,
    ) -> Result<AgentProc> {
        let logf = std::fs::File::create(log)?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = ns.command("taskset");
                t.args(["-c", &c.to_string()]).arg(bin);
                t
            }
            None => ns.command(bin),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("spawning f2b-agent")?;
        Ok(AgentProc { child: Some(child) })
    }
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }
    fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        if let Some(c) = self.child.as_mut() {
            loop {
                if c.try_wait()?.is_some() {
                    self.child = None;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("f2b-agent did not exit within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // By PID, our own child only.
            // SAFETY: kill on a PID we spawned and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn ctl(ctl: &Path, sock: &Path, args: &[&str]) -> Result<std::process::Output> {
    let (sub, rest) = args.split_first().context("no subcommand")?;
    let out = Command::new(ctl)
        .arg(sub)
        .arg("--socket")
        .arg(sock)
        .args(rest)
        .output()
        .context("running f2b-ctl")?;
    Ok(out)
}

pub(crate) fn wait_ping(ctlbin: &Path, sock: &Path, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    loop {
        if sock.exists() && ctl(ctlbin, sock, &["ping"])?.status.success() {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > timeout {
            bail!("agent did not answer ping within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    f2b_scale(ctx)?;
    if let Err(e) = fail2ban_restore(ctx) {
        ctx.progress(&format!("fail2ban restore failed: {e:#}"));
        ctx.notes.push((
            "fail2ban restore: not measured".into(),
            format!("```\n{e:#}\n```"),
        ));
    }
    Ok(())
}

fn f2b_scale(ctx: &mut Ctx) -> Result<()> {
    let (agent_bin, ctl_bin) = bins()?;
    let total: u32 = if ctx.quick { 200_000 } else { 1_000_000 };
    let chunk: u32 = 50_000;
    ctx.progress(&format!(
        "scale: {total} bans via f2b-ctl ({chunk} per call), restart, restore"
    ));
    let topo = Topology::create("scale")?;
    let dir = tempfile::Builder::new()
        .prefix("f2b-bench-scale-")
        .tempdir()?;
    let d = dir.path();
    let pin = d.join("bpf");
    f2b_agent::bpffs::ensure_bpffs(&pin)?;
    let _unmount = Unmount(pin.clone());
    let sock = d.join("f2b.sock");
    let config = d.join("f2b.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [{EDGE_IF}]\nxdp_mode: auto\ndatabase: {d}/f2b.redb\nsocket: {d}/f2b.sock\n\
             socket_mode: \"0600\"\ncontrol_group: null\npin_dir: {d}/bpf\n\
             maps:\n  bans: 1048576\n  prefixes: 1024\n  allow: 256\n\
             guard:\n  min_prefix_v4: 16\n  min_prefix_v6: 32\n\
             defaults:\n  bantime: 1d\n  findtime: 10m\n  maxretry: 5\n  ignoreip: [127.0.0.0/8, \"::1\"]\n  ports: all\n\
             jails:\n  dns:\n    enabled: true\n    ports: [5353]\n",
            d = d.display()
        ),
    )?;
    let log = d.join("agent.log");
    let mut agent = AgentProc::spawn(&topo.edge, &agent_bin, &config, &log)?;
    let first_ready = wait_ping(&ctl_bin, &sock, Duration::from_secs(60))
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    ctx.progress(&format!("  agent up in {first_ready:.2}s (empty db)"));

    // Single-address bans: one request each (the per-request floor).
    let mut single = Vec::new();
    for i in 0..100u32 {
        let a = addr6(total + i);
        let t0 = Instant::now();
        let out = ctl(&ctl_bin, &sock, &["ban", &a, "--time", "1d"])?;
        if !out.status.success() {
            bail!(
                "f2b-ctl ban failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        single.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let _ = ctl(&ctl_bin, &sock, &["unban", "--all"])?;

    // Bulk: `chunk` addresses per f2b-ctl call. The addresses are formatted before the clock
    // starts: the bench's own string formatting (~2.5 ms per call) is not insertion time.
    let calls: Vec<Vec<String>> = (0..total)
        .step_by(chunk as usize)
        .map(|a| (a..(a + chunk).min(total)).map(addr6).collect())
        .collect();
    let mut per_call = Vec::new();
    let mut series = Vec::new();
    let t_all = Instant::now();
    let mut done = 0u32;
    for addrs in &calls {
        let n = addrs.len() as u32;
        let mut args = vec!["ban", "--time", "1d"];
        args.extend(addrs.iter().map(String::as_str));
        let t0 = Instant::now();
        let out = ctl(&ctl_bin, &sock, &args)?;
        if !out.status.success() {
            bail!(
                "f2b-ctl ban ({n} addresses) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let s = t0.elapsed().as_secs_f64();
        per_call.push(f64::from(n) / s);
        done += n;
        series.push((t_all.elapsed().as_secs_f64(), f64::from(done)));
    }
    let insert_secs = t_all.elapsed().as_secs_f64();
    let rate = f64::from(total) / insert_secs;
    ctx.progress(&format!(
        "  {total} bans in {insert_secs:.2}s = {rate:.0} bans/s"
    ));
    let (rss1, hwm1) = sys::rss_kib(agent.pid())?;

    // Restart: detach (removes program and pins), start again on the same db, watch the map.
    let out = ctl(&ctl_bin, &sock, &["stop", "--detach"])?;
    if !out.status.success() {
        bail!(
            "f2b-ctl stop --detach failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    agent.wait_exit(Duration::from_secs(60))?;
    drop(agent);
    let log2 = d.join("agent2.log");
    let map_path = pin.join(f2b_common::maps::BANS_V6);
    let _ = std::fs::remove_file(&sock);
    let t0 = Instant::now();
    let agent = AgentProc::spawn(&topo.edge, &agent_bin, &config, &log2)?;
    let mut restore = vec![(0.0, 0.0)];
    let mut enforced = None;
    let mut hwm_during = 0u64;
    let deadline = Duration::from_secs(if ctx.quick { 60 } else { 180 });
    // Counting a map of a million entries (BPF_MAP_LOOKUP_BATCH) takes the better part of a
    // second of CPU; polled back to back it kept one of the two CPUs busy while the agent
    // restored. So the poll looks up a sample of SAMPLE persisted keys spread over all of
    // them (a few hundred microseconds), and counts the whole map only once every sampled
    // key is there: "enforced" is still the first time the full count reaches `total`.
    const SAMPLE: u32 = 1024;
    let sample: Vec<[u8; 16]> = (0..SAMPLE)
        .map(|i| {
            let n = (u64::from(i) * u64::from(total - 1) / u64::from(SAMPLE - 1)) as u32;
            addr6(n)
                .parse::<std::net::Ipv6Addr>()
                .map(|a| a.octets())
                .unwrap_or_default()
        })
        .collect();
    let mut value = vec![0u8; size_of::<f2b_common::BanValue>()];
    while t0.elapsed() < deadline {
        if let Ok((_, h)) = sys::rss_kib(agent.pid()) {
            hwm_during = hwm_during.max(h);
        }
        if let Ok(fd) = sys::obj_get(&map_path) {
            let mut present = 0u32;
            for k in &sample {
                if sys::lookup_elem(fd.as_fd(), k, &mut value)? {
                    present += 1;
                }
            }
            let t = t0.elapsed().as_secs_f64();
            if present < SAMPLE {
                restore.push((t, f64::from(present) * f64::from(total) / f64::from(SAMPLE)));
            } else {
                let n = sys::count_entries(fd.as_fd(), 16, size_of::<f2b_common::BanValue>())?;
                restore.push((t, n as f64));
                if n >= u64::from(total) {
                    enforced = Some(t);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready =
        wait_ping(&ctl_bin, &sock, Duration::from_secs(60)).map(|_| t0.elapsed().as_secs_f64());
    let (rss2, hwm2) = sys::rss_kib(agent.pid())?;
    ctx.progress(&format!(
        "  restore: {total} bans enforced after {:?} s, ping after {:?} s",
        enforced,
        ready.as_ref().ok()
    ));
    let restored_line = std::fs::read_to_string(&log2)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("restored from the database"))
        .unwrap_or("")
        .to_string();
    let rate_met = f64::from(total) / t_all_secs(insert_secs) >= 500_000.0;
    let restore_met = enforced.is_some_and(|e| e <= 1.0);
    let mut agent = agent;
    if !rate_met {
        ctx.progress(
            "  profiling the agent during one more 50k-address f2b-ctl ban (insert target missed)",
        );
        // The maps hold `total` bans already, and more would not fit: lift the first chunk
        // and ban it again, so the profiled request does the whole work of a fresh ban.
        let addrs: Vec<String> = (0..chunk).map(addr6).collect();
        let mut args = vec!["unban"];
        args.extend(addrs.iter().map(String::as_str));
        let out = ctl(&ctl_bin, &sock, &args)?;
        if !out.status.success() {
            bail!(
                "f2b-ctl unban before the profile failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (r, prof) = profile(agent.pid(), d, || {
            let mut args = vec!["ban", "--time", "1d"];
            args.extend(addrs.iter().map(String::as_str));
            ctl(&ctl_bin, &sock, &args)
        });
        let out = r?;
        if !out.status.success() {
            bail!(
                "f2b-ctl ban (profiled) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ctx.notes.push((
            "Profile: agent during a 50k-address `f2b-ctl ban` (insert target missed)".into(),
            format!("`perf record -e cpu-clock -g -p AGENT` (no hardware PMU on this VM: `perf stat -e instructions` is not supported), `perf report --no-children --sort dso,symbol`, entries >= 1.5%:\n\n```\n{prof}\n```"),
        ));
    }
    if !restore_met {
        ctx.progress("  profiling a third agent start (restore target missed)");
        let _ = ctl(&ctl_bin, &sock, &["stop", "--detach"])?;
        agent.wait_exit(Duration::from_secs(60))?;
        let _ = std::fs::remove_file(&sock);
        let a3 = AgentProc::spawn(&topo.edge, &agent_bin, &config, &d.join("agent3.log"))?;
        let (r, prof) = profile(a3.pid(), d, || {
            wait_ping(&ctl_bin, &sock, Duration::from_secs(120))
        });
        r?;
        ctx.notes.push((
            "Profile: agent start restoring all bans (restore target missed)".into(),
            format!("perf attached right after spawn (it misses the first ~300 ms), until the control socket answers; `perf report --no-children --sort dso,symbol`, entries >= 1.5%:\n\n```\n{prof}\n```"),
        ));
        drop(a3);
    }
    drop(agent);
    drop(topo);

    let single_stat = Stat::of(&single).context("no single bans")?;
    let call_stat = Stat::of(&per_call).context("no calls")?;
    let mut t = Table::new(
        "scale_f2b",
        "Scale: f2b inserts, restore and memory",
        &["measure", "value", "median", "min", "max", "unit"],
    );
    t.note = format!(
        "Addresses are fd00:f2b::2:x:y (IPv6, inside fd00:f2b::/64), bantime 1d. Inserts go \
         through `f2b-ctl ban` with {chunk} addresses per call (one request, one redb commit, \
         acknowledged after the commit); the whole-run time is the calls back to back (from \
         spawning each f2b-ctl to its exit, output read), addresses formatted beforehand. Restore: `f2b-ctl stop --detach` (program and pins \
         removed), then a new agent on the same db; \"enforced\" is when the pinned \
         F2B_BANS_V6 map, polled from outside every 5 ms (a lookup of 1024 sampled keys; once \
         all are there, a full count with BPF_MAP_LOOKUP_BATCH), holds all {total}. \
         Agent log: `{restored_line}`"
    );
    t.row(vec![
        text("bans inserted"),
        num(f64::from(total)),
        num(f64::from(total)),
        num(f64::from(total)),
        num(f64::from(total)),
        text("bans"),
    ]);
    t.row(vec![
        text("bulk insert rate, whole run"),
        num(rate),
        num(call_stat.median),
        num(call_stat.min),
        num(call_stat.max),
        text("bans/s (per-call stats)"),
    ]);
    t.row(vec![
        text("single-address f2b-ctl ban, wall time per call"),
        num(single_stat.median),
        num(single_stat.median),
        num(single_stat.min),
        num(single_stat.max),
        text("ms"),
    ]);
    t.row(vec![
        text("agent start to all bans enforced (map full)"),
        opt_f(enforced),
        opt_f(enforced),
        opt_f(enforced),
        opt_f(enforced),
        text("s"),
    ]);
    t.row(vec![
        text("agent start to control socket answering"),
        opt_f(ready.as_ref().ok().copied()),
        opt_f(ready.as_ref().ok().copied()),
        opt_f(ready.as_ref().ok().copied()),
        opt_f(ready.as_ref().ok().copied()),
        text("s"),
    ]);
    t.row(vec![
        text("agent VmRSS after inserts"),
        num(rss1 as f64 / 1024.0),
        num(rss1 as f64 / 1024.0),
        num(rss1 as f64 / 1024.0),
        num(rss1 as f64 / 1024.0),
        text("MiB"),
    ]);
    t.row(vec![
        text("agent VmHWM after inserts"),
        num(hwm1 as f64 / 1024.0),
        num(hwm1 as f64 / 1024.0),
        num(hwm1 as f64 / 1024.0),
        num(hwm1 as f64 / 1024.0),
        text("MiB"),
    ]);
    t.row(vec![
        text("agent VmRSS after restore"),
        num(rss2 as f64 / 1024.0),
        num(rss2 as f64 / 1024.0),
        num(rss2 as f64 / 1024.0),
        num(rss2 as f64 / 1024.0),
        text("MiB"),
    ]);
    t.row(vec![
        text("agent VmHWM after restore"),
        num(hwm2.max(hwm_during) as f64 / 1024.0),
        num(hwm2.max(hwm_during) as f64 / 1024.0),
        num(hwm2.max(hwm_during) as f64 / 1024.0),
        num(hwm2.max(hwm_during) as f64 / 1024.0),
        text("MiB"),
    ]);
    ctx.tables.push(t);

    let full = total >= 1_000_000;
    let suffix = if full {
        ""
    } else {
        " (quick: fewer than 1M bans)"
    };
    ctx.targets.push(json!({"target": format!(">= 500k bans/s inserted (f2b-ctl batches){suffix}"), "value": rate, "met": rate >= 500_000.0}));
    ctx.targets.push(json!({"target": format!("1M persisted bans enforced <= 1 s after start{suffix}"), "value": enforced, "met": enforced.map(|e| e <= 1.0)}));
    let hwm_mib = hwm2.max(hwm1).max(hwm_during) as f64 / 1024.0;
    ctx.targets.push(json!({"target": format!("agent RSS <= 256 MiB with 1M bans (VmHWM, bans only; bans + tracked sources: the flood target){suffix}"), "value": hwm_mib, "met": hwm_mib <= 256.0}));
    ctx.f2b_restore = Some((total, enforced));
    ctx.plots.push(Plot {
        file: "scale_insert.png".into(),
        title: "f2b: bans inserted over time (f2b-ctl batches)".into(),
        x_label: "seconds since first call".into(),
        y_label: "bans acknowledged".into(),
        series: vec![Series {
            name: "f2b".into(),
            points: std::iter::once((0.0, 0.0)).chain(series).collect(),
        }],
    });
    ctx.plots.push(Plot {
        file: "scale_restore.png".into(),
        title: "f2b: entries in the kernel map after agent start (restore from redb)".into(),
        x_label: "seconds since agent start".into(),
        y_label: "bans in F2B_BANS_V6 (estimated from a 1024-key sample until complete)".into(),
        series: vec![Series {
            name: "f2b".into(),
            points: restore,
        }],
    });
    Ok(())
}

/// Samples `pid` with `perf record -e cpu-clock -g` (no hardware PMU on this VM) while `f`
/// runs, and returns the top of `perf report` (or why there is no profile).
fn profile<T>(pid: u32, dir: &Path, f: impl FnOnce() -> Result<T>) -> (Result<T>, String) {
    let data = dir.join(format!("perf-{pid}.data"));
    let child = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return (
            f(),
            "perf not available (apt-get install linux-perf)".into(),
        );
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = f();
    // SAFETY: SIGINT to the PID of our own perf child, which then writes its data and exits.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "1.5",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("perf report failed: {e}"),
    };
    (r, text)
}

fn t_all_secs(x: f64) -> f64 {
    x.max(1e-9)
}

fn opt_f(x: Option<f64>) -> serde_json::Value {
    x.map(num).unwrap_or(serde_json::Value::Null)
}

pub(crate) struct Unmount(pub(crate) PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// fail2ban confined to a temp dir: its own config dir, socket, pid file, sqlite db and log;
/// started in the foreground as our child and stopped by its PID.
pub(crate) struct Fail2ban {
    child: Option<Child>,
}

impl Fail2ban {
    pub(crate) fn start(dir: &Path) -> Result<Fail2ban> {
        let child = Command::new("fail2ban-client")
            .arg("-c")
            .arg(dir.join("conf"))
            .arg("-s")
            .arg(dir.join("f2b.sock"))
            .arg("-p")
            .arg(dir.join("f2b.pid"))
            .args(["-x", "-f", "start"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log"))?)
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()
            .context("spawning fail2ban-client -f start")?;
        Ok(Fail2ban { child: Some(child) })
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill on the PID of our own unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lines(p: &Path) -> usize {
    std::fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

fn fail2ban_restore(ctx: &mut Ctx) -> Result<()> {
    let n: usize = if ctx.quick { 1_000 } else { 10_000 };
    ctx.progress(&format!(
        "scale: fail2ban restoring {n} bans from its sqlite db"
    ));
    let tmp = tempfile::Builder::new()
        .prefix("f2b-bench-fail2ban-")
        .tempdir()?;
    let d = tmp.path();
    let conf = d.join("conf");
    std::fs::create_dir_all(conf.join("filter.d"))?;
    std::fs::create_dir_all(conf.join("action.d"))?;
    let banned = d.join("banned.txt");
    std::fs::write(d.join("bench.log"), "")?;
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/f2b.sock\n\
             pidfile = {d}/f2b.pid\ndbfile = {d}/fail2ban.sqlite3\ndbpurgeage = 1d\ndbmaxmatches = 10\n",
            d = d.display()
        ),
    )?;
    std::fs::write(
        conf.join("jail.conf"),
        format!(
            "[DEFAULT]\nbantime = 1d\nfindtime = 10m\nmaxretry = 5\nbackend = polling\n\
             [bench]\nenabled = true\nfilter = bench\nlogpath = {d}/bench.log\naction = bench\n",
            d = d.display()
        ),
    )?;
    std::fs::write(
        conf.join("filter.d/bench.conf"),
        "[Definition]\nfailregex = ^fail from <HOST>$\n",
    )?;
    // Like fail2ban's dummy action: one shell command per ban, appending to a file.
    std::fs::write(
        conf.join("action.d/bench.conf"),
        format!(
            "[Definition]\nactionstart =\nactionstop =\nactioncheck =\n\
             actionban = printf '%%s\\n' <ip> >> {}\nactionunban =\n",
            banned.display()
        ),
    )?;
    // First start creates the schema and the jail row.
    let db = d.join("fail2ban.sqlite3");
    {
        let mut f = Fail2ban::start(d)?;
        let t0 = Instant::now();
        while !db.exists() || !jail_row(&db) {
            if t0.elapsed() > Duration::from_secs(60) || f.exited() {
                bail!(
                    "fail2ban did not create its db: {}",
                    std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        f.stop();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut sql = String::from("BEGIN;\n");
    for i in 0..n {
        let ip = format!("198.19.{}.{}", i / 256, i % 256);
        sql.push_str(&format!(
            "INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) VALUES('bench','{ip}',{now},86400,1,'{{}}');\n\
             INSERT OR REPLACE INTO bips(ip, jail, timeofban, bantime, bancount, data) VALUES('{ip}','bench',{now},86400,1,'{{}}');\n"
        ));
    }
    sql.push_str("COMMIT;\n");
    let mut child = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .spawn()
        .context("sqlite3")?;
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(sql.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("sqlite3 insert failed");
    }
    let _ = std::fs::remove_file(&banned);
    let timeout = Duration::from_secs(if ctx.quick { 120 } else { 600 });
    let t0 = Instant::now();
    let mut f = Fail2ban::start(d)?;
    let mut series = vec![(0.0, 0.0)];
    let mut first = None;
    let mut done = None;
    while t0.elapsed() < timeout {
        let c = lines(&banned);
        let t = t0.elapsed().as_secs_f64();
        if c > 0 && first.is_none() {
            first = Some(t);
        }
        if series.last().is_none_or(|p| p.1 != c as f64) {
            series.push((t, c as f64));
        }
        if c >= n {
            done = Some(t);
            break;
        }
        if f.exited() {
            bail!(
                "fail2ban exited during restore: {}",
                std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = lines(&banned);
    f.stop();
    ctx.progress(&format!(
        "  fail2ban: {got}/{n} bans restored, all after {done:?} s (first after {first:?} s)"
    ));
    let mut t = Table::new(
        "scale_restore",
        "Scale: restoring persisted bans at start, f2b vs fail2ban",
        &[
            "tool",
            "bans",
            "start to all enforced s",
            "bans/s",
            "ratio f2b/fail2ban (bans/s)",
        ],
    );
    t.note = format!(
        "fail2ban {} with a polling jail and a one-shell-command-per-ban action (like its \
         dummy action; iptables actions also run one command per ban), confined to a temp dir \
         (own config dir, socket, pid file, sqlite db). Time from spawning `fail2ban-client -f \
         start` until the action has run for every ban in the db (first ban after {} s). \
         f2b: from spawning the agent until its kernel map holds every persisted ban.",
        crate::peers::version("fail2ban-client", "--version"),
        first.map_or("—".into(), |x| format!("{x:.2}"))
    );
    let f2b = ctx.f2b_restore;
    let f2b_rate = f2b.and_then(|(n, e)| e.map(|e| f64::from(n) / e));
    let f2b_rate_fail2ban = done.map(|x| n as f64 / x);
    if let Some((fn_, fe)) = f2b {
        t.row(vec![
            text("f2b"),
            num(f64::from(fn_)),
            opt_f(fe),
            opt_f(f2b_rate),
            text(""),
        ]);
    }
    t.row(vec![
        text("fail2ban"),
        num(n as f64),
        match done {
            Some(x) => num(x),
            None => text(format!("not done after {timeout:?} ({got} restored)")),
        },
        opt_f(f2b_rate_fail2ban),
        opt_f(f2b_rate.zip(f2b_rate_fail2ban).map(|(a, b)| a / b)),
    ]);
    ctx.tables.push(t);
    let f2b_series = ctx
        .plots
        .iter()
        .find(|p| p.file == "scale_restore.png")
        .map(|p| p.series[0].points.clone());
    let mut s = vec![Series {
        name: format!("fail2ban, {n} bans"),
        points: series,
    }];
    if let Some(p) = f2b_series {
        s.insert(
            0,
            Series {
                name: "f2b".into(),
                points: p,
            },
        );
    }
    ctx.plots.push(Plot {
        file: "restore_vs_fail2ban.png".into(),
        title: "Bans enforced after start: f2b vs fail2ban".into(),
        x_label: "seconds since start".into(),
        y_label: "bans enforced".into(),
        series: s,
    });
    Ok(())
}

fn jail_row(db: &Path) -> bool {
    Command::new("sqlite3")
        .arg(db)
        .arg("SELECT count(*) FROM jails WHERE name='bench';")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
        .unwrap_or(false)
}
