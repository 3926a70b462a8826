//! Flood: (1) bans/s inserted by a jail (maxretry 1) fed a log of failures from N distinct
//! sources; (2) the highest sustained rate of failure lines from N distinct sources that the
//! agent (pinned to one CPU) follows without growing lag, stepping the offered rate up; (3)
//! the agent's memory (VmHWM) holding those bans plus N tracked failing sources.
//! Sources are data only (100.64.0.0/10): no packet carries them.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Ctx;
use crate::loggen::{failure_line, syslog_now};
use crate::netns::{EDGE_IF, Topology};
use crate::report::{Plot, Series, Stat, Table, num, opt, text};
use crate::scale::{AgentProc, Unmount, bins, ctl, wait_ping};
use crate::sys;

/// Source number `i` after `base`, from 100.64.0.0 on.
fn v4_u32(base: u32, i: u32) -> u32 {
    (100u32 << 24 | 64 << 16) + base + i
}

fn v4(base: u32, i: u32) -> String {
    let a = v4_u32(base, i);
    format!(
        "{}.{}.{}.{}",
        a >> 24,
        (a >> 16) & 0xff,
        (a >> 8) & 0xff,
        a & 0xff
    )
}

/// Lines for sources `first..first+n` (modulo `pool`), plus each line's end offset.
fn gen_lines(first: u64, n: u64, pool: u64, base: u32) -> (Vec<u8>, Vec<usize>) {
    let stamp = syslog_now();
    let mut buf = Vec::with_capacity(n as usize * 96);
    let mut ends = Vec::with_capacity(n as usize);
    for k in first..first + n {
        failure_line(&mut buf, &stamp, &v4(base, (k % pool) as u32), k);
        ends.push(buf.len());
    }
    (buf, ends)
}

/// (failed_total, failing_now) of a jail; retried (bounded) while the agent does not answer.
fn status_failed(ctl_bin: &Path, sock: &Path, jail: &str) -> Result<(u64, u64)> {
    let mut tries = 0;
    let v: serde_json::Value = loop {
        let out = ctl(ctl_bin, sock, &["status", jail, "--json"])?;
        match serde_json::from_slice(&out.stdout) {
            Ok(v) => break v,
            Err(e) if tries >= 50 => {
                bail!(
                    "status --json: {e}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            }
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let j = &v["jails"][0];
    Ok((
        j["failed_total"].as_u64().unwrap_or(0),
        j["failing_now"].as_u64().unwrap_or(0),
    ))
}

struct Step {
    offered: f64,
    written_rate: f64,
    processed_rate: f64,
    lag_med: f64,
    lag_max: f64,
    lag_end: f64,
    follows: bool,
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let q = ctx.quick;
    let pool: u64 = if q { 200_000 } else { 1_000_000 };
    let nbans: u64 = if q { 20_000 } else { 1_000_000 };
    let step_secs = if q { 1.0 } else { 2.0 };
    let rates: &[f64] = if q {
        &[100e3, 300e3, 1e6]
    } else {
        &[
            100e3, 200e3, 300e3, 400e3, 500e3, 600e3, 800e3, 1e6, 1.3e6, 1.6e6,
        ]
    };
    let (agent_bin, ctl_bin) = bins()?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (agent_cpu, writer_cpu) = (0usize, ncpu - 1);
    ctx.progress(&format!(
        "flood: {nbans} bans via a jail, then failure lines from {pool} sources at rising rates"
    ));
    let topo = Topology::create("flood")?;
    let dir = tempfile::Builder::new()
        .prefix("f2b-bench-flood-")
        .tempdir()?;
    let d = dir.path();
    let pin = d.join("bpf");
    f2b_agent::bpffs::ensure_bpffs(&pin)?;
    let _unmount = Unmount(pin.clone());
    let sock = d.join("f2b.sock");
    let banlog = d.join("banflood.log");
    let floodlog = d.join("flood.log");
    std::fs::write(&banlog, "")?;
    std::fs::write(&floodlog, "")?;
    let config = d.join("f2b.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [{EDGE_IF}]\nxdp_mode: auto\ndatabase: {d}/f2b.redb\nsocket: {d}/f2b.sock\n\
             socket_mode: \"0600\"\ncontrol_group: null\npin_dir: {d}/bpf\n\
             maps:\n  bans: 1048576\n  prefixes: 1024\n  allow: 256\n\
             defaults:\n  bantime: 1d\n  findtime: 1h\n  maxretry: 5\n  ignoreip: [127.0.0.0/8, \"::1\"]\n  ports: all\n\
             jails:\n  banflood:\n    filter: sshd\n    logpath: [\"{d}/banflood.log\"]\n    maxretry: 1\n\
             \x20 flood:\n    filter: sshd\n    logpath: [\"{d}/flood.log\"]\n    maxretry: 1000\n    max_tracked: 1048576\n",
            d = d.display()
        ),
    )?;
    let alog = d.join("agent.log");
    let agent = AgentProc::spawn_on(&topo.edge, &agent_bin, &config, &alog, Some(agent_cpu))?;
    wait_ping(&ctl_bin, &sock, Duration::from_secs(60))
        .with_context(|| std::fs::read_to_string(&alog).unwrap_or_default())?;

    // (2) Flood steps.
    let mut steps = Vec::new();
    let mut plot_lag = Vec::new();
    let run_t0 = Instant::now();
    let mut next_src: u64 = 0;
    let (mut base_failed, _) = status_failed(&ctl_bin, &sock, "flood")?;
    for &rate in rates {
        let nlines = (rate * step_secs) as u64;
        let (buf, ends) = gen_lines(next_src, nlines, pool, 0);
        next_src += nlines;
        // Writer: appends on schedule, records (seconds, lines written).
        let progress: Mutex<Vec<(f64, u64)>> = Mutex::new(vec![(0.0, 0)]);
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let step_t0 = Instant::now();
        let offset = run_t0.elapsed().as_secs_f64();
        std::thread::scope(|s| -> Result<()> {
            let w = s.spawn(|| -> Result<()> {
                sys::pin_thread(writer_cpu)?;
                let mut f = std::fs::OpenOptions::new().append(true).open(&floodlog)?;
                let mut written = 0usize;
                let limit = Duration::from_secs_f64(step_secs * 4.0);
                while written < ends.len() && step_t0.elapsed() < limit {
                    let t = step_t0.elapsed().as_secs_f64();
                    let target = ((rate * t) as usize).min(ends.len());
                    if target > written {
                        let from = if written == 0 { 0 } else { ends[written - 1] };
                        f.write_all(&buf[from..ends[target - 1]])?;
                        written = target;
                        if let Ok(mut p) = progress.lock() {
                            p.push((step_t0.elapsed().as_secs_f64(), written as u64));
                        }
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            });
            // Sample the agent's progress until the writer is done and the agent drained
            // (bounded).
            let drain_limit = Duration::from_secs_f64(step_secs * 4.0 + 20.0);
            loop {
                let (f, _) = status_failed(&ctl_bin, &sock, "flood")?;
                let t = step_t0.elapsed().as_secs_f64();
                let p = f.saturating_sub(base_failed);
                samples.push((t, p));
                let finished = done.load(std::sync::atomic::Ordering::Relaxed);
                if (finished && p >= ends.len() as u64) || step_t0.elapsed() > drain_limit {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
            Ok(())
        })?;
        let prog = progress.into_inner().unwrap_or_default();
        let write_end = prog.last().map_or(step_secs, |p| p.0);
        let written_total = prog.last().map_or(0, |p| p.1);
        // Time line k was written: first progress record with written >= k.
        let write_time = |k: u64| -> f64 {
            let i = prog.partition_point(|p| p.1 < k);
            prog.get(i).map_or(write_end, |p| p.0)
        };
        let mut lags = Vec::new();
        for &(t, p) in &samples {
            if t > write_end {
                break;
            }
            let written_at_t = prog[prog.partition_point(|x| x.0 <= t).saturating_sub(1)].1;
            let lag = if p >= written_at_t {
                0.0
            } else {
                (t - write_time(p + 1)).max(0.0)
            };
            lags.push((t, lag));
            plot_lag.push((offset + t, lag * 1e3));
        }
        let processed_end = samples
            .iter()
            .take_while(|s| s.0 <= write_end)
            .last()
            .map_or(0, |s| s.1);
        let lag_vals: Vec<f64> = lags.iter().map(|l| l.1).collect();
        let st = Stat::of(&lag_vals);
        let lag_end = lags.last().map_or(f64::NAN, |l| l.1);
        let half: Vec<f64> = lags
            .iter()
            .filter(|l| l.0 <= write_end / 2.0)
            .map(|l| l.1)
            .collect();
        let lag_mid = half.iter().copied().fold(0.0, f64::max);
        // Follows: lag at the end of the step under 0.25 s and not grown by over 0.1 s since
        // the first half of the step.
        let follows = lag_end <= 0.25 && lag_end <= lag_mid + 0.1;
        let drained = samples.last().map_or(0, |s| s.1) >= written_total;
        let step = Step {
            offered: rate,
            written_rate: written_total as f64 / write_end.max(1e-9),
            processed_rate: processed_end as f64 / write_end.max(1e-9),
            lag_med: st.map_or(f64::NAN, |s| s.median),
            lag_max: st.map_or(f64::NAN, |s| s.max),
            lag_end,
            follows: follows && drained,
        };
        ctx.progress(&format!(
            "  offered {:.0} lines/s: written {:.0}/s, processed {:.0}/s during the step, lag end {:.3} s max {:.3} s -> {}",
            step.offered,
            step.written_rate,
            step.processed_rate,
            step.lag_end,
            step.lag_max,
            if step.follows { "follows" } else { "lag grows" }
        ));
        base_failed += samples.last().map_or(0, |s| s.1);
        let stop = !step.follows;
        steps.push(step);
        if stop {
            break;
        }
    }
    // (1) Bans via a jail (after the flood steps, so a ban backlog cannot disturb them).
    // Sources from 100.80.0.0 on, apart from the flood steps' pool.
    let ban_base = 1 << 20;
    let (buf, _) = gen_lines(0, nbans, nbans, ban_base);
    let map = sys::obj_get(&pin.join(f2b_common::maps::BANS_V4)).context("pinned bans map")?;
    let t0 = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&banlog)?;
        for c in buf.chunks(1 << 22) {
            f.write_all(c)?;
        }
    }
    drop(buf);
    let write_secs = t0.elapsed().as_secs_f64();
    let mut ban_series = vec![(0.0, 0.0)];
    let mut bans_done = None;
    let deadline = Duration::from_secs(if q { 20 } else { 120 });
    let vsize = size_of::<f2b_common::BanValue>();
    let mut last = 0;
    // The jail bans in log order (one thread, one batch after the other), so progress is
    // read off the sources of the log's lines: the last line's source is looked up every
    // 1 ms (one BPF_MAP_LOOKUP_ELEM), and every 50 ms a binary search over the lines'
    // sources (~20 lookups) gives how far the jail is, for the plot. The time taken is when
    // the last source is in; a full count (BPF_MAP_LOOKUP_BATCH over the whole map, ~0.1 s)
    // right after must find all of them. Before, that full count ran every 250 ms from the
    // start: a 250 ms resolution, its own ~0.1 s counted, and the batch lookup takes the
    // buckets' locks the agent's writes need.
    let key = |k: u64| v4_u32(ban_base, k as u32).to_be_bytes();
    let mut val = vec![0u8; vsize];
    let mut has = |k: u64| sys::lookup_elem(map.as_fd(), &key(k), &mut val);
    let mut next_sample = Duration::from_millis(50);
    while t0.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        if has(nbans - 1)? {
            // The time is when the last source was seen; the count taken after it must
            // find them all (else the wait goes on, and a later time is taken).
            let t = t0.elapsed().as_secs_f64();
            let c = sys::count_entries(map.as_fd(), 4, vsize)?;
            ban_series.push((t, c as f64));
            last = c;
            if c >= nbans {
                bans_done = Some(t);
                break;
            }
        } else if t0.elapsed() >= next_sample {
            next_sample = t0.elapsed() + Duration::from_millis(50);
            // Lines before `lo` have their source in the map (as far as order holds).
            let (mut lo, mut hi) = (0u64, nbans - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if has(mid)? {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            ban_series.push((t0.elapsed().as_secs_f64(), lo as f64));
            last = lo;
        }
    }
    let ban_rate = Some(
        bans_done.map_or(last as f64 / t0.elapsed().as_secs_f64(), |t| {
            nbans as f64 / t
        }),
    );
    ctx.progress(&format!(
        "  {last}/{nbans} jail bans in the kernel map after {:.1} s ({ban_rate:?} bans/s)",
        t0.elapsed().as_secs_f64()
    ));

    // (3) Make sure every source of the pool failed once, then memory.
    if next_src < pool {
        let (buf, _) = gen_lines(next_src, pool - next_src, pool, 0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&floodlog)?;
        f.write_all(&buf)?;
        let want = pool - next_src;
        let t0 = Instant::now();
        loop {
            let (f, _) = status_failed(&ctl_bin, &sock, "flood")?;
            if f.saturating_sub(base_failed) >= want || t0.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, tracked) = status_failed(&ctl_bin, &sock, "flood")?;
    let bans_now = sys::count_entries(map.as_fd(), 4, vsize)?;
    let (rss, hwm) = sys::rss_kib(agent.pid())?;
    drop(agent);
    drop(topo);

    let mut t = Table::new(
        "flood_bans",
        "Flood: bans inserted by a jail (maxretry 1)",
        &["measure", "value", "unit"],
    );
    t.note = format!(
        "{nbans} sshd failure lines from {nbans} distinct IPv4 sources (100.80.0.0 on, data \
         only) appended to the jail's log in 4 MiB writes (took {write_secs:.2} s); the time \
         until the pinned F2B_BANS_V4 map holds them all (bounded: 120 s, 20 s in quick): \
         the time the last line's source is in (looked up every 1 ms; the jail bans in \
         log order), confirmed by a full count (BPF_MAP_LOOKUP_BATCH) right after; the \
         plot's points in between are the log position up to which the sources are in the \
         map (a binary search of lookups every 50 ms). (A full count every 250 ms instead \
         gave 250 ms resolution, counted its own ~0.1 s, and its bucket locks slowed the \
         agent's writes.) Runs after the flood steps. Agent \
         pinned to CPU {agent_cpu}."
    );
    t.row(vec![
        text("bans in the kernel map"),
        json!(last),
        text("bans"),
    ]);
    t.row(vec![
        text("log appended to all bans enforced"),
        opt(bans_done),
        text("s"),
    ]);
    t.row(vec![
        text(if bans_done.is_some() {
            "bans/s via the jail"
        } else {
            "bans/s via the jail (not all done by the deadline: bans so far / time)"
        }),
        opt(ban_rate),
        text("bans/s"),
    ]);
    ctx.tables.push(t);

    let mut t = Table::new(
        "flood_follow",
        "Flood: failure lines/s followed on one core",
        &[
            "offered lines/s",
            "written lines/s",
            "processed lines/s (during step)",
            "lag median ms",
            "lag max ms",
            "lag at end of step ms",
            "follows",
        ],
    );
    t.note = format!(
        "Agent pinned to CPU {agent_cpu}, writer to CPU {writer_cpu}. Each step appends sshd \
         \"Failed password\" lines (one source each, cycling through {pool} distinct IPv4 \
         sources, maxretry 1000 so nothing is banned) for {step_secs} s at the offered rate, \
         in writes every 0.5 ms. Progress: the jail's failed_total from `f2b-ctl status flood \
         --json` every ~50 ms; lag of a sample = sample time - time the last processed line \
         was written (0 when caught up). A step \"follows\" when the lag at its end is <= 250 \
         ms, has not grown by more than 100 ms since the first half of the step, and the \
         backlog drains afterwards. Steps stop at the first that does not follow."
    );
    for s in &steps {
        t.row(vec![
            num(s.offered),
            num(s.written_rate),
            num(s.processed_rate),
            num(s.lag_med * 1e3),
            num(s.lag_max * 1e3),
            num(s.lag_end * 1e3),
            text(if s.follows { "yes" } else { "no (lag grows)" }),
        ]);
    }
    ctx.tables.push(t);
    // The step's offered rate, when the writer kept it within 1% (999,725 written of 1M
    // offered is the 1M step, not a miss of it by 275 lines/s).
    let best = steps
        .iter()
        .filter(|s| s.follows && s.written_rate >= 0.99 * s.offered)
        .map(|s| s.offered)
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    let capacity = steps
        .last()
        .filter(|s| !s.follows)
        .map(|s| s.processed_rate);

    let mut t = Table::new(
        "flood_memory",
        "Agent memory with bans and tracked failing sources",
        &["measure", "value", "unit"],
    );
    t.note = "After the flood: the agent holds the jail bans above and one tracked failing \
              source per distinct flood address (maxretry not reached). VmRSS/VmHWM from \
              /proc/PID/status."
        .into();
    t.row(vec![
        text("bans in the kernel map"),
        json!(bans_now),
        text("bans"),
    ]);
    t.row(vec![
        text("tracked failing sources (failing_now of jail flood)"),
        json!(tracked),
        text("sources"),
    ]);
    t.row(vec![
        text("agent VmRSS"),
        num(rss as f64 / 1024.0),
        text("MiB"),
    ]);
    t.row(vec![
        text("agent VmHWM"),
        num(hwm as f64 / 1024.0),
        text("MiB"),
    ]);
    ctx.tables.push(t);

    let sfx = if q { " (quick: smaller sizes)" } else { "" };
    ctx.targets.push(json!({"target": format!("flood >= 1M lines/s followed on one core (offered rate of the highest step followed, the writer within 1% of it){sfx}"), "value": best, "met": best.map(|b| b >= 1e6).or(Some(false))}));
    if let Some(c) = capacity {
        ctx.notes.push((
            "Flood: processing capacity".into(),
            format!(
                "In the first step that did not follow, the agent processed {c:.0} lines/s \
                 while the writer was running: its backlogged capacity on one core."
            ),
        ));
    }
    ctx.targets.push(json!({"target": format!(">= 500k bans/s inserted via a jail under a flood{sfx}"), "value": ban_rate, "met": ban_rate.map(|r| r >= 500_000.0)}));
    let hwm_mib = hwm as f64 / 1024.0;
    ctx.targets.push(json!({"target": format!("agent RSS <= 256 MiB with {bans_now} bans + {tracked} tracked sources (VmHWM){sfx}"), "value": hwm_mib, "met": hwm_mib <= 256.0}));
    ctx.plots.push(Plot {
        file: "flood_lag.png".into(),
        title: "Flood: lag while the offered rate steps up".into(),
        x_label: "seconds since the first step (steps back to back, drain in between)".into(),
        y_label: "lag ms".into(),
        series: vec![Series {
            name: "f2b lag".into(),
            points: plot_lag,
        }],
    });
    ctx.plots.push(Plot {
        file: "flood_bans.png".into(),
        title: "Flood: bans in the kernel map after the jail's log is appended".into(),
        x_label: "seconds since the first write".into(),
        y_label: "bans".into(),
        series: vec![Series {
            name: "f2b".into(),
            points: ban_series,
        }],
    });
    if bans_done.is_none() && last == 0 {
        bail!("no jail ban reached the kernel map");
    }
    Ok(())
}
