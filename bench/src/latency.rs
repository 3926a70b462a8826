//! Ban latency: from the write() of the failure line that crosses maxretry to the source's
//! entry in the kernel map (the pinned F2B_BANS_V4 map read with BPF_MAP_LOOKUP_ELEM in a busy
//! loop) and to the first dropped packet (frames from that source sent through the veth in the
//! same loop; the XDP drop counter read from the pinned F2B_COUNTERS map). fail2ban
//! (pyinotify and polling backends, confined to a temp dir) measured from the same write() to
//! its timestamping ban action.

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Ctx;
use crate::loggen::{failure_line, syslog_now};
use crate::netns::{EDGE_IF, GEN_IF, NsExt, Topology};
use crate::report::{Table, opt, text};
use crate::scale::{AgentProc, Fail2ban, Unmount, bins, ctl, wait_ping};
use crate::{frames, sys};

const MAXRETRY: usize = 3;

fn trial_ip(i: usize) -> [u8; 4] {
    [198, 18, 1 + (i / 200) as u8, 1 + (i % 200) as u8]
}

fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// p-th percentile (nearest rank) of a sample.
fn pct(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[i.clamp(1, v.len()) - 1])
}

/// Lines for `ips`, `n` failures each, stamped now.
fn lines_for(ips: &[String], n: usize) -> Vec<u8> {
    let stamp = syslog_now();
    let mut buf = Vec::new();
    for (k, ip) in ips.iter().enumerate() {
        for j in 0..n {
            failure_line(&mut buf, &stamp, ip, (k * n + j) as u64);
        }
    }
    buf
}

struct Lat {
    name: String,
    trials: usize,
    to_map: Vec<f64>,
    to_drop: Vec<f64>,
    missing: usize,
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let n = if ctx.quick { 50 } else { 200 };
    let (took, left) = sys::settle(Duration::from_secs(30));
    ctx.progress(&format!(
        "latency: page cache flushed first ({:.2} s, {left} KiB dirty left)",
        took.as_secs_f64()
    ));
    let mut rows = Vec::new();
    let runs = [
        (true, Placement::Split),
        (false, Placement::Split),
        (true, Placement::SharedThread),
        (false, Placement::SharedThread),
    ];
    for (realtime, placement) in runs {
        match f2b_latency(ctx, n, realtime, placement) {
            Ok(l) => rows.push(l),
            Err(e) => {
                ctx.progress(&format!(
                    "latency: f2b (realtime: {realtime}, {placement:?}) failed: {e:#}"
                ));
                ctx.notes.push((
                    format!("Ban latency: f2b (realtime: {realtime}, {placement:?}) not measured"),
                    format!("```\n{e:#}\n```"),
                ));
            }
        }
    }
    for fifo in [false, true] {
        match wake_floor(ctx, n, fifo) {
            Ok(l) => rows.push(l),
            Err(e) => ctx.progress(&format!("latency: wake-up floor failed: {e:#}")),
        }
    }
    for backend in ["pyinotify", "polling"] {
        match fail2ban_latency(ctx, n, backend) {
            Ok(l) => rows.push(l),
            Err(e) => {
                ctx.progress(&format!("latency: fail2ban {backend} failed: {e:#}"));
                ctx.notes.push((
                    format!("Ban latency: fail2ban ({backend}) not measured"),
                    format!("```\n{e:#}\n```"),
                ));
            }
        }
    }
    let mut t = Table::new(
        "ban_latency",
        "Ban latency: failure line write() to ban enforced",
        &[
            "tool",
            "trials",
            "to ban p50 ms",
            "p99 ms",
            "min ms",
            "max ms",
            "to first drop p50 ms",
            "drop p99 ms",
            "drop max ms",
            "ratio f2b/this (p50)",
            "ratio f2b/this (p99)",
        ],
    );
    t.note = format!(
        "Before the section the page cache is flushed (`sync`, then until under 16 MiB is \
         dirty), so writeback of the logs earlier sections generated does not land in the \
         trials. One distinct IPv4 source per trial; {} earlier failures of every source are written \
         and counted first, then each trial is one write() of the line that crosses maxretry \
         ({MAXRETRY}). f2b: time until the pinned F2B_BANS_V4 map holds the source \
         (BPF_MAP_LOOKUP_ELEM in a busy loop), and until the XDP drop counter rises while the \
         same loop sends frames from that source through the veth (AF_PACKET in the generator \
         namespace, one per iteration: the frame is processed in the sender's softirq). \
         Placement: in the rows without a suffix the agent is pinned to CPU 0 together with the \
         thread that writes the line (as a log writer on the same host would be), and the \
         observing loop runs on CPU 1 at SCHED_FIFO priority 1, started right before the \
         write(): the instrument is neither preempted by other work nor by the reader it \
         measures. In the rows \"unpinned, the writer observes\" nothing is pinned and one \
         thread writes and then observes: a reader woken on that thread's CPU runs first, so \
         these rows include the reader's work after the ban (logging, the commit hand-off) \
         and are the previous sessions' method. \
         fail2ban: time until its ban action (`date +%s.%N` appended to a file, one shell per \
         ban) runs; it installs no drop rule, so \"first drop\" is not measured for it (a real \
         iptables action would add the command's own time). Machine floor: a thread blocked on \
         a Unix socket read, woken by one write() from a thread that busy-waits for it, same \
         rhythm, no f2b: what waking a sleeping thread costs on this machine (an idle vCPU of \
         a shared VM can take milliseconds to wake), the least any log reader can take; \
         measured with the woken thread at normal priority and at SCHED_FIFO priority 1. f2b's \
         log readers wake at SCHED_FIFO priority by default (jail setting `realtime: true`, \
         bounded to about 20% of a CPU: docs/config.md); the `realtime: false` row is the same \
         run at normal priority. Ratios below 1: f2b is faster.",
        MAXRETRY - 1
    );
    let f2b = rows.iter().find(|r| r.name == "f2b (inotify)").map(|r| {
        (
            pct(&r.to_map, 50.0).unwrap_or(f64::NAN),
            pct(&r.to_map, 99.0).unwrap_or(f64::NAN),
        )
    });
    for r in &rows {
        let p50 = pct(&r.to_map, 50.0);
        let p99 = pct(&r.to_map, 99.0);
        t.row(vec![
            text(if r.missing > 0 {
                format!(
                    "{} ({} of {} not banned in time)",
                    r.name, r.missing, r.trials
                )
            } else {
                r.name.clone()
            }),
            json!(r.trials),
            opt(p50),
            opt(p99),
            opt(r.to_map.iter().copied().reduce(f64::min)),
            opt(r.to_map.iter().copied().reduce(f64::max)),
            opt(pct(&r.to_drop, 50.0)),
            opt(pct(&r.to_drop, 99.0)),
            opt(r.to_drop.iter().copied().reduce(f64::max)),
            opt(f2b.zip(p50).map(|(f, p)| f.0 / p)),
            opt(f2b.zip(p99).map(|(f, p)| f.1 / p)),
        ]);
    }
    ctx.tables.push(t);
    let p99 = rows
        .iter()
        .find(|r| r.name == "f2b (inotify)")
        .and_then(|r| pct(&r.to_map, 99.0));
    let drop99 = rows
        .iter()
        .find(|r| r.name == "f2b (inotify)")
        .and_then(|r| pct(&r.to_drop, 99.0));
    ctx.targets.push(json!({"target": format!("ban latency p99 <= 1 ms (write() to kernel map entry, {n} trials)"), "value": p99, "met": p99.map(|p| p <= 1.0)}));
    ctx.targets.push(json!({"target": format!("ban latency p99 <= 1 ms (write() to first dropped packet, {n} trials)"), "value": drop99, "met": drop99.map(|p| p <= 1.0)}));
    Ok(())
}

/// The machine's own floor: a thread blocked on a read is woken by one write() from a thread
/// that then busy-waits for it, in the trials' rhythm (one every ~5 ms, threads unpinned).
/// No detection, no map: what waking a sleeping thread costs here (on a shared VM, waking an
/// idle vCPU can take milliseconds), the least any log reader can take.
/// `fifo`: the woken thread runs at SCHED_FIFO priority 1, as f2b's log readers do (their
/// `realtime` setting, on by default).
fn wake_floor(ctx: &mut Ctx, n: usize, fifo: bool) -> Result<Lat> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    ctx.progress(&format!(
        "latency: thread wake-up floor{}, {n} trials",
        if fifo { " (SCHED_FIFO)" } else { "" }
    ));
    let (mut tx, mut rx) = UnixStream::pair()?;
    let base = Instant::now();
    let woke = Arc::new(AtomicU64::new(0));
    let w = woke.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let th = std::thread::spawn(move || {
        let r = if fifo { sys::fifo() } else { Ok(()) };
        let refused = r.is_err();
        let _ = ready_tx.send(r);
        if refused {
            return;
        }
        let mut b = [0u8; 16];
        while let Ok(k) = rx.read(&mut b) {
            if k == 0 {
                break;
            }
            w.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
        }
    });
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("floor thread ended"))?
        .map_err(|e| anyhow::anyhow!("SCHED_FIFO refused: {e}"))?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        woke.store(0, Ordering::SeqCst);
        let t0 = base.elapsed().as_nanos() as u64;
        tx.write_all(b"x")?;
        let spin = Instant::now();
        while woke.load(Ordering::SeqCst) == 0 && spin.elapsed() < Duration::from_secs(2) {
            std::hint::spin_loop();
        }
        let t1 = woke.load(Ordering::SeqCst);
        if t1 > 0 {
            lat.push(t1.saturating_sub(t0) as f64 / 1e6);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(tx);
    let _ = th.join();
    Ok(Lat {
        name: if fifo {
            "machine floor: thread wake-up by write(), woken thread SCHED_FIFO (no f2b)".into()
        } else {
            "machine floor: thread wake-up by write() (no f2b)".into()
        },
        trials: n,
        missing: n - lat.len(),
        to_map: lat,
        to_drop: Vec::new(),
    })
}

fn write_all(path: &Path, buf: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(buf)?;
    Ok(())
}

/// `realtime`: the jail's `realtime` setting (on by default: the reader wakes at SCHED_FIFO
/// priority within a bounded CPU share).
fn f2b_latency(ctx: &mut Ctx, n: usize, realtime: bool, placement: Placement) -> Result<Lat> {
    let (agent_bin, ctl_bin) = bins()?;
    ctx.progress(&format!(
        "latency: f2b (realtime: {realtime}, {placement:?}), {n} trials"
    ));
    let topo = Topology::create("lat")?;
    let dir = tempfile::Builder::new()
        .prefix("f2b-bench-lat-")
        .tempdir()?;
    let d = dir.path();
    let pin = d.join("bpf");
    f2b_agent::bpffs::ensure_bpffs(&pin)?;
    let _unmount = Unmount(pin.clone());
    let sock = d.join("f2b.sock");
    let log = d.join("auth.log");
    std::fs::write(&log, "")?;
    let config = d.join("f2b.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [{EDGE_IF}]\nxdp_mode: auto\ndatabase: {d}/f2b.redb\nsocket: {d}/f2b.sock\n\
             socket_mode: \"0600\"\ncontrol_group: null\npin_dir: {d}/bpf\n\
             defaults:\n  bantime: 1h\n  findtime: 1h\n  maxretry: 5\n  ignoreip: [127.0.0.0/8, \"::1\"]\n  ports: all\n\
             jails:\n  sshd:\n    filter: sshd\n    logpath: [\"{d}/auth.log\"]\n    maxretry: {MAXRETRY}\n    realtime: {realtime}\n",
            d = d.display()
        ),
    )?;
    let alog = d.join("agent.log");
    let cpu = (placement == Placement::Split).then_some(0);
    let agent = AgentProc::spawn_on(&topo.edge, &agent_bin, &config, &alog, cpu)?;
    wait_ping(&ctl_bin, &sock, Duration::from_secs(60))
        .with_context(|| std::fs::read_to_string(&alog).unwrap_or_default())?;
    let ips: Vec<[u8; 4]> = (0..n).map(trial_ip).collect();
    let names: Vec<String> = ips.iter().map(|a| dotted(*a)).collect();
    write_all(&log, &lines_for(&names, MAXRETRY - 1))?;
    let want = (n * (MAXRETRY - 1)) as u64;
    let t0 = Instant::now();
    loop {
        let out = ctl(&ctl_bin, &sock, &["status", "sshd", "--json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["jails"][0]["failed_total"].as_u64() >= Some(want) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the agent did not count the {want} earlier failures in 30 s: {v}\n{}",
                std::fs::read_to_string(&alog).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bans = sys::obj_get(&pin.join(f2b_common::maps::BANS_V4)).context("pinned bans map")?;
    let counters =
        sys::obj_get(&pin.join(f2b_common::maps::COUNTERS)).context("pinned counters map")?;
    let (_, edge_mac) = topo.edge.link(EDGE_IF)?;
    let (gen_ifindex, gen_mac) = topo.gen_ns.link(GEN_IF)?;
    let stamp = syslog_now();
    let lines: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let mut b = Vec::new();
            failure_line(&mut b, &stamp, ip, 900_000 + i as u64);
            b
        })
        .collect();
    let frames: Vec<Vec<u8>> = ips
        .iter()
        .map(|a| frames::udp_v4(edge_mac, gen_mac, *a, [198, 18, 0, 1]))
        .collect();
    let file = std::fs::OpenOptions::new().append(true).open(&log)?;
    let probe = Probe {
        bans: bans.as_fd(),
        counters: counters.as_fd(),
        frames: &frames,
        ips: &ips,
    };
    let (lines, file) = (&lines, &file);
    let (to_map, to_drop, missing) = topo.gen_ns.run(move || -> Result<_> {
        let sock = packet_socket(gen_ifindex)?;
        let sock = sock.as_fd();
        let write_line = |i: usize| -> Result<()> {
            // One write() of the crossing line.
            // SAFETY: writing a byte buffer we own to an fd we own.
            let w = unsafe {
                libc::write(
                    file.as_raw_fd(),
                    lines[i].as_ptr() as *const libc::c_void,
                    lines[i].len(),
                )
            };
            if w != lines[i].len() as isize {
                bail!("short write to the log");
            }
            Ok(())
        };
        let mut out = Outcome::default();
        if placement == Placement::SharedThread {
            for i in 0..probe.ips.len() {
                let base = probe.drops()?;
                let t0 = Instant::now();
                write_line(i)?;
                out.add(probe.observe(i, sock, base, t0)?);
                std::thread::sleep(Duration::from_millis(5));
            }
            return Ok((out.to_map, out.to_drop, out.missing));
        }
        // Writer on CPU 0 (with the agent), observer spinning on CPU 1.
        let t0 = Instant::now();
        let go = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let base = AtomicU64::new(0);
        let (go, done, base) = (&go, &done, &base);
        std::thread::scope(|s| -> Result<()> {
            let observer = s.spawn(move || -> Result<Outcome> {
                sys::pin_thread(1)?;
                // The instrument, not the subject: at real-time priority so nothing else
                // runnable on its CPU preempts it mid-trial.
                sys::fifo().context("SCHED_FIFO for the observer")?;
                let mut out = Outcome::default();
                for i in 0..probe.ips.len() {
                    // Sleeps between trials like the writer (a thread spinning all along
                    // would lose its CPU to anything else runnable, mid-trial); ready before
                    // the writer's 5 ms are up.
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(4));
                    }
                    base.store(probe.drops()?, Ordering::SeqCst);
                    done.store(2 * i as u64 + 1, Ordering::SeqCst);
                    // Spin until the writer is about to write (its clock reading is t0).
                    let mut start;
                    let spin = Instant::now();
                    loop {
                        start = go.load(Ordering::SeqCst);
                        if start != 0 {
                            break;
                        }
                        if spin.elapsed() > Duration::from_secs(10) {
                            bail!("the writer did not start trial {i} within 10 s");
                        }
                        std::hint::spin_loop();
                    }
                    go.store(0, Ordering::SeqCst);
                    let at = t0 + Duration::from_nanos(start);
                    out.add(probe.observe(i, sock, base.load(Ordering::SeqCst), at)?);
                    done.store(2 * i as u64 + 2, Ordering::SeqCst);
                }
                Ok(out)
            });
            // Waits for the observer to reach `step` (or pass it); false when it stopped (its error is
            // what join returns) or took over 10 s.
            let reached = |step: u64, spin: bool| {
                let t = Instant::now();
                while done.load(Ordering::SeqCst) < step {
                    if observer.is_finished() || t.elapsed() > Duration::from_secs(10) {
                        return false;
                    }
                    if spin {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                true
            };
            let writer = (|| -> Result<()> {
                sys::pin_thread(0)?;
                for i in 0..probe.ips.len() {
                    if !reached(2 * i as u64 + 1, true) {
                        bail!("the observer did not get ready for trial {i}");
                    }
                    go.store(t0.elapsed().as_nanos().max(1) as u64, Ordering::SeqCst);
                    write_line(i)?;
                    if !reached(2 * i as u64 + 2, false) {
                        bail!("the observer did not finish trial {i}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })();
            let observed = observer
                .join()
                .map_err(|_| anyhow::anyhow!("observer thread panicked"))?;
            out = observed.context("observer")?;
            writer
        })?;
        Ok((out.to_map, out.to_drop, out.missing))
    })??;
    drop(agent);
    drop(topo);
    ctx.progress(&format!(
        "  f2b: p50 {:?} ms, p99 {:?} ms to the map; p99 {:?} ms to the first drop",
        pct(&to_map, 50.0),
        pct(&to_map, 99.0),
        pct(&to_drop, 99.0)
    ));
    Ok(Lat {
        name: match (realtime, placement) {
            (true, Placement::Split) => "f2b (inotify)".into(),
            (false, Placement::Split) => "f2b (inotify, realtime: false)".into(),
            (true, Placement::SharedThread) => {
                "f2b (inotify), unpinned, the writer observes".into()
            }
            (false, Placement::SharedThread) => {
                "f2b (inotify, realtime: false), unpinned, the writer observes".into()
            }
        },
        trials: n,
        to_map,
        to_drop,
        missing,
    })
}

/// Where the trial's writer and observer run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// The agent pinned to CPU 0 with the thread that writes the log line (as a local log
    /// writer would be); a second thread pinned to CPU 1 observes the map and sends the
    /// frames, spinning, so neither its wake-up nor the reader's preemption of it (the reader
    /// wakes at real-time priority on the writer's CPU) is in the measurement.
    Split,
    /// Nothing pinned; one thread writes the line, then observes and sends: when the reader
    /// wakes on that thread's CPU it runs first, so what the thread sees includes the
    /// reader's work after the ban too.
    SharedThread,
}

/// The maps and frames a trial's observer uses.
#[derive(Clone, Copy)]
struct Probe<'a> {
    bans: std::os::fd::BorrowedFd<'a>,
    counters: std::os::fd::BorrowedFd<'a>,
    frames: &'a [Vec<u8>],
    ips: &'a [[u8; 4]],
}

#[derive(Default)]
struct Outcome {
    to_map: Vec<f64>,
    to_drop: Vec<f64>,
    missing: usize,
}

impl Outcome {
    fn add(&mut self, (map, drop): (Option<f64>, Option<f64>)) {
        match (map, drop) {
            (Some(m), Some(d)) => {
                self.to_map.push(m);
                self.to_drop.push(d);
            }
            (Some(m), None) => {
                self.to_map.push(m);
                self.missing += 1;
            }
            _ => self.missing += 1,
        }
    }
}

impl Probe<'_> {
    fn drops(&self) -> Result<u64> {
        sys::percpu_sum(self.counters, f2b_common::counters::DROP_EXACT_V4)
    }

    /// Trial `i`, whose line was written at `t0`: ms until the map holds the source, and
    /// until a frame from it (one sent per iteration) is dropped. Bounded: 2 s, 10M rounds.
    fn observe(
        &self,
        i: usize,
        sock: std::os::fd::BorrowedFd<'_>,
        base: u64,
        t0: Instant,
    ) -> Result<(Option<f64>, Option<f64>)> {
        let mut val = vec![0u8; size_of::<f2b_common::BanValue>()];
        let (mut t_map, mut t_drop) = (None, None);
        let mut iters = 0u64;
        while t0.elapsed() < Duration::from_secs(2) && iters < 10_000_000 {
            iters += 1;
            if t_map.is_none() && sys::lookup_elem(self.bans, &self.ips[i], &mut val)? {
                t_map = Some(t0.elapsed().as_secs_f64() * 1e3);
            }
            // SAFETY: sending a frame we own on our socket.
            unsafe {
                libc::send(
                    sock.as_raw_fd(),
                    self.frames[i].as_ptr() as *const libc::c_void,
                    self.frames[i].len(),
                    0,
                )
            };
            if t_drop.is_none() && self.drops()? > base {
                t_drop = Some(t0.elapsed().as_secs_f64() * 1e3);
            }
            if t_map.is_some() && t_drop.is_some() {
                break;
            }
        }
        Ok((t_map, t_drop))
    }
}

fn packet_socket(ifindex: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket calls; the fd is wrapped in an OwnedFd right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: fd is a fresh socket we own.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; bind reads only what we pass.
    unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("bind AF_PACKET");
        }
    }
    Ok(sock)
}

fn fail2ban_client(d: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("fail2ban-client")
        .arg("-c")
        .arg(d.join("conf"))
        .arg("-s")
        .arg(d.join("f2b.sock"))
        .args(args)
        .output()
        .context("fail2ban-client")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn total_failed(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.split_once("Total failed:"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

fn fail2ban_latency(ctx: &mut Ctx, n: usize, backend: &str) -> Result<Lat> {
    ctx.progress(&format!("latency: fail2ban ({backend}), {n} trials"));
    let tmp = tempfile::Builder::new()
        .prefix("f2b-bench-fail2ban-lat-")
        .tempdir()?;
    let d = tmp.path();
    let conf = d.join("conf");
    std::fs::create_dir_all(conf.join("filter.d"))?;
    std::fs::create_dir_all(conf.join("action.d"))?;
    for f in ["sshd.conf", "common.conf"] {
        std::fs::copy(
            Path::new("/etc/fail2ban/filter.d").join(f),
            conf.join("filter.d").join(f),
        )
        .with_context(|| format!("copying fail2ban's filter.d/{f}"))?;
    }
    let log = d.join("auth.log");
    std::fs::write(&log, "")?;
    let stamps = d.join("stamps.txt");
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/f2b.sock\n\
             pidfile = {d}/f2b.pid\ndbfile = {d}/fail2ban.sqlite3\ndbpurgeage = 1d\n",
            d = d.display()
        ),
    )?;
    std::fs::write(
        conf.join("jail.conf"),
        format!(
            "[DEFAULT]\nbantime = 1h\nfindtime = 1h\nmaxretry = {MAXRETRY}\nbackend = {backend}\n\
             usedns = no\nignoreself = false\nignoreip = 127.0.0.1/8\n\
             [sshd]\nenabled = true\nfilter = sshd\nlogpath = {}\naction = stamp\n",
            log.display()
        ),
    )?;
    std::fs::write(
        conf.join("action.d/stamp.conf"),
        format!(
            "[Definition]\nactionstart =\nactionstop =\nactioncheck =\n\
             actionban = printf '%%s %%s\\n' \"$(date +%%s.%%N)\" <ip> >> {}\nactionunban =\n",
            stamps.display()
        ),
    )?;
    let mut f = Fail2ban::start(d)?;
    let t0 = Instant::now();
    loop {
        if fail2ban_client(d, &["status", "sshd"]).is_ok() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) || f.exited() {
            bail!(
                "fail2ban did not start: {}",
                std::fs::read_to_string(d.join("stderr.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let names: Vec<String> = (0..n).map(|i| dotted(trial_ip(i))).collect();
    // Let the backend settle on the file before the first lines.
    std::thread::sleep(Duration::from_millis(1500));
    write_all(&log, &lines_for(&names, MAXRETRY - 1))?;
    let want = (n * (MAXRETRY - 1)) as u64;
    let t0 = Instant::now();
    loop {
        let s = fail2ban_client(d, &["status", "sshd"])?;
        if total_failed(&s) >= Some(want) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("fail2ban did not count the {want} earlier failures in 60 s: {s}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let spacing = Duration::from_millis(if backend == "polling" { 250 } else { 100 });
    let stamp = syslog_now();
    let mut written = Vec::new();
    let file = std::fs::OpenOptions::new().append(true).open(&log)?;
    for (i, ip) in names.iter().enumerate() {
        let mut b = Vec::new();
        failure_line(&mut b, &stamp, ip, 900_000 + i as u64);
        let t = wall();
        (&file).write_all(&b)?;
        written.push(t);
        std::thread::sleep(spacing);
    }
    let t0 = Instant::now();
    let mut got = std::collections::HashMap::new();
    while t0.elapsed() < Duration::from_secs(30) {
        got.clear();
        for l in std::fs::read_to_string(&stamps).unwrap_or_default().lines() {
            if let Some((t, ip)) = l.split_once(' ')
                && let Ok(t) = t.parse::<f64>()
            {
                got.insert(ip.to_string(), t);
            }
        }
        if got.len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f.stop();
    let mut to_map = Vec::new();
    for (ip, w) in names.iter().zip(&written) {
        if let Some(t) = got.get(ip) {
            to_map.push((t - w) * 1e3);
        }
    }
    let missing = n - to_map.len();
    ctx.progress(&format!(
        "  fail2ban {backend}: p50 {:?} ms, p99 {:?} ms ({missing} missing)",
        pct(&to_map, 50.0),
        pct(&to_map, 99.0)
    ));
    Ok(Lat {
        name: format!(
            "fail2ban {} ({backend})",
            crate::peers::version("fail2ban-client", "--version")
        ),
        trials: n,
        to_map,
        to_drop: Vec::new(),
        missing,
    })
}
