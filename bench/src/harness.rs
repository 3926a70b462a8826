//! Drop path (b): a generator namespace floods an edge namespace through a veth pair with UDP
//! from banned sources; we count what the edge's drop mechanism dropped per second and what
//! the edge's softirq work cost on the CPU that does it.
//!
//! Two generators, both pinned to the last CPU (the edge's receive work runs on the same CPU:
//! veth schedules the receiving NAPI/backlog on the sending CPU, so one CPU does "generate +
//! edge", and the edge's share shows up as softirq time in /proc/stat):
//! - userspace: an AF_PACKET socket (PACKET_QDISC_BYPASS) and sendmmsg of 64 frames per call,
//!   cycling through every generator source;
//! - in-kernel: a 4-instruction XDP program (`return bpf_redirect(gen veth)`), hand-assembled
//!   and loaded with the bpf syscall, run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES:
//!   frames reach the edge veth as xdp_frames, without the skb that a socket sender builds and
//!   that native XDP on veth would copy. veth only accepts xdp_frames when the receiving end
//!   has an XDP program (or GRO), so the peers (which have none) get a 12-instruction
//!   "count and XDP_PASS" program in front; it also counts what arrived.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::Ctx;
use crate::f2bprog::F2bProg;
use crate::frames;
use crate::netns::{EDGE_IF, GEN_IF, NetNs, NsExt, Topology};
use crate::peers::{self, Setup};
use crate::report::{Stat, Table, num, opt, text};
use crate::sys;

const MAX_PACKETS: u64 = 100_000_000;
/// Generator sources (inside 198.19.0.0/16) spread evenly through every ban list.
const LIVE_SOURCES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gen {
    Userspace,
    InKernel,
}

impl Gen {
    fn name(self) -> &'static str {
        match self {
            Gen::Userspace => "userspace AF_PACKET sendmmsg",
            Gen::InKernel => "in-kernel XDP live frames",
        }
    }
}

/// One bounded flood.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    secs: f64,
    sent: u64,
    arrived: u64,
    dropped: u64,
    softirq: u64,
    total: u64,
}

impl Sample {
    fn dropped_pps(&self) -> f64 {
        self.dropped as f64 / self.secs
    }
    fn arrived_pps(&self) -> f64 {
        self.arrived as f64 / self.secs
    }
    fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.secs
    }
    /// Edge softirq ns per dropped (or, when nothing drops, arrived) packet.
    fn softirq_ns(&self) -> f64 {
        let n = if self.dropped > 0 {
            self.dropped
        } else {
            self.arrived
        };
        self.softirq as f64 / sys::user_hz() * 1e9 / n.max(1) as f64
    }
    fn softirq_share(&self) -> f64 {
        self.softirq as f64 / self.total.max(1) as f64 * 100.0
    }
}

struct Flood<'a> {
    topo: &'a Topology,
    cpu: usize,
    secs: f64,
    frames: Vec<Vec<u8>>,
    gen_ifindex: u32,
}

impl Flood<'_> {
    /// Runs one flood; `counters` returns (arrived, dropped) so far.
    fn run(&self, g: Gen, counters: &dyn Fn() -> Result<(u64, u64)>) -> Result<Sample> {
        let (a0, d0) = counters()?;
        let c0 = sys::cpu_times(self.cpu)?;
        let t0 = Instant::now();
        let sent = match g {
            Gen::Userspace => self.userspace()?,
            Gen::InKernel => self.in_kernel()?,
        };
        let secs = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(30));
        let c1 = sys::cpu_times(self.cpu)?;
        let (a1, d1) = counters()?;
        Ok(Sample {
            secs,
            sent,
            arrived: a1 - a0,
            dropped: d1 - d0,
            softirq: c1.softirq - c0.softirq,
            total: c1.total - c0.total,
        })
    }

    fn userspace(&self) -> Result<u64> {
        let (cpu, secs, frames, ifindex) = (self.cpu, self.secs, &self.frames, self.gen_ifindex);
        self.topo.gen_ns.run(move || -> Result<u64> {
            sys::pin_thread(cpu)?;
            // SAFETY: plain socket calls; the fd is wrapped in an OwnedFd right away.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
            }
            // SAFETY: fd is a fresh socket we own.
            let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_ll is plain data; setsockopt/bind read only what we pass.
            unsafe {
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_QDISC_BYPASS,
                    &one as *const _ as *const libc::c_void,
                    size_of::<libc::c_int>() as u32,
                );
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
            const BATCH: usize = 64;
            let mut iovs: Vec<libc::iovec> = frames
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                })
                .collect();
            let mut sent = 0u64;
            let mut next = 0usize;
            let t0 = Instant::now();
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                // SAFETY: mmsghdr is plain data; zero is a valid empty header.
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            while sent < MAX_PACKETS && t0.elapsed().as_secs_f64() < secs {
                for m in msgs.iter_mut() {
                    m.msg_hdr.msg_iov = &mut iovs[next];
                    m.msg_hdr.msg_iovlen = 1;
                    next = (next + 1) % iovs.len();
                }
                // SAFETY: msgs point at iovecs over frames that outlive the call.
                let n =
                    unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
                if n > 0 {
                    sent += n as u64;
                } else {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::ENOBUFS)
                        && e.raw_os_error() != Some(libc::EAGAIN)
                    {
                        return Err(e).context("sendmmsg");
                    }
                }
            }
            Ok(sent)
        })?
    }

    fn in_kernel(&self) -> Result<u64> {
        let prog = sys::load_xdp("f2b_bench_gen", &sys::redirect_insns(self.gen_ifindex))?;
        let (cpu, secs, frames) = (self.cpu, self.secs, &self.frames);
        // 16 sources spread over the ban list, one per BPF_PROG_TEST_RUN call in turn.
        let picks: Vec<&Vec<u8>> = (0..16).map(|i| &frames[i * frames.len() / 16]).collect();
        let prog = &prog;
        self.topo.gen_ns.run(move || -> Result<u64> {
            sys::pin_thread(cpu)?;
            let mut sent = 0u64;
            let mut chunk: u32 = 1 << 16;
            let t0 = Instant::now();
            let mut k = 0;
            while sent < MAX_PACKETS && t0.elapsed().as_secs_f64() < secs {
                let c0 = Instant::now();
                sys::test_run_live(prog.as_fd(), picks[k % picks.len()], chunk)?;
                k += 1;
                sent += u64::from(chunk);
                // Each call has a fixed cost of ~20 ms here (live-frame page pool setup and
                // teardown), so calls are large: aim at ~250 ms each, which also keeps the
                // time bound within a quarter second.
                let per = c0.elapsed().as_secs_f64() / f64::from(chunk);
                let left = (secs - t0.elapsed().as_secs_f64()).max(0.05);
                chunk = ((left.min(0.25) / per.max(1e-9)) as u32).clamp(1 << 14, 1 << 23);
            }
            Ok(sent)
        })?
    }
}

fn rx_packets(ns: &NetNs) -> Result<u64> {
    let out = ns.ip_out(&["-j", "-s", "link", "show", EDGE_IF])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("no rx packet count")
}

/// A hand-assembled "count, then return `verdict`" XDP program attached natively to the edge.
struct Counter {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Counter {
    fn attach(edge: &NetNs, verdict: i32) -> Result<Counter> {
        let map = sys::percpu_counter()?;
        let prog = sys::load_xdp("f2b_bench_cnt", &sys::count_insns(map.as_raw_fd(), verdict))?;
        let (idx, _) = edge.link(EDGE_IF)?;
        let pfd = prog.as_fd();
        let link = edge.run(|| sys::attach_xdp_native(pfd, idx))??;
        Ok(Counter {
            map,
            _prog: prog,
            _link: link,
        })
    }
    fn count(&self) -> Result<u64> {
        sys::percpu_sum(self.map.as_fd(), 0)
    }
}

struct Params {
    secs: f64,
    rounds: usize,
    load_timeout: Duration,
    cpu: usize,
}

fn flood_for<'a>(topo: &'a Topology, p: &Params, sources: &[[u8; 4]]) -> Result<Flood<'a>> {
    let (gen_ifindex, gen_mac) = topo.gen_ns.link(crate::netns::GEN_IF)?;
    let (_, edge_mac) = topo.edge.link(EDGE_IF)?;
    let frames = sources
        .iter()
        .map(|s| frames::udp_v4(edge_mac, gen_mac, *s, frames::EDGE4))
        .collect();
    let _ = GEN_IF;
    Ok(Flood {
        topo,
        cpu: p.cpu,
        secs: p.secs,
        frames,
        gen_ifindex,
    })
}

fn rounds(
    ctx: &Ctx,
    label: &str,
    f: &Flood<'_>,
    g: Gen,
    n: usize,
    counters: &dyn Fn() -> Result<(u64, u64)>,
) -> Result<Vec<Sample>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let s = f.run(g, counters)?;
        v.push(s);
    }
    let d = Stat::of(&v.iter().map(Sample::dropped_pps).collect::<Vec<_>>());
    let a = Stat::of(&v.iter().map(Sample::arrived_pps).collect::<Vec<_>>());
    ctx.progress(&format!(
        "    {label} [{}]: dropped {:.0} pps, arrived {:.0} pps, sent {:.0} pps, edge softirq {:.0} ns/pkt",
        g.name(),
        d.map_or(0.0, |s| s.median),
        a.map_or(0.0, |s| s.median),
        v[0].sent_pps(),
        v[0].softirq_ns()
    ));
    Ok(v)
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let p = if ctx.quick {
        Params {
            secs: 1.0,
            rounds: 1,
            load_timeout: Duration::from_secs(60),
            cpu: cpus - 1,
        }
    } else {
        Params {
            secs: 2.0,
            rounds: 3,
            load_timeout: Duration::from_secs(240),
            cpu: cpus - 1,
        }
    };
    let sizes: Vec<usize> = if ctx.quick {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 10_000, 1_000_000]
    };
    // Most rules loaded for one-rule-per-address; beyond this the load alone takes minutes.
    let per_address_cap = if ctx.quick { 10_000 } else { 100_000 };
    ctx.progress(&format!(
        "drop path (b): namespace harness, sizes {sizes:?}, {}s x {} rounds per point, generator on CPU {}",
        p.secs, p.rounds, p.cpu
    ));
    let gens = [Gen::Userspace, Gen::InKernel];

    // Ceilings: the generator against an edge that does (almost) nothing.
    let mut ceil = Table::new(
        "harness_ceiling",
        "Drop path (b): generator ceilings (edge does nothing or the least possible)",
        &[
            "generator",
            "edge",
            "sent pps",
            "arrived pps median",
            "min",
            "max",
            "edge softirq ns/pkt",
            "CPU softirq %",
        ],
    );
    ceil.note = format!(
        "Packets/s the generator pushes through the veth when the edge does nothing (no XDP, \
         no rules: the stack discards UDP to a closed port) or only a minimal XDP program that \
         counts and drops. All floods: {} s, generator and edge receive work on CPU {}, \
         median (min-max) over {} rounds.",
        p.secs, p.cpu, p.rounds
    );
    {
        let topo = Topology::create("ceil")?;
        let (_, sources) = frames::ban_list_v4(LIVE_SOURCES, LIVE_SOURCES);
        let f = flood_for(&topo, &p, &sources)?;
        let edge = &topo.edge;
        let v = rounds(
            ctx,
            "ceiling, edge without XDP",
            &f,
            Gen::Userspace,
            p.rounds,
            &|| Ok((rx_packets(edge)?, 0)),
        )?;
        ceil_row(&mut ceil, Gen::Userspace, "nothing (stack discards)", &v);
        let c = Counter::attach(edge, sys::XDP_DROP)?;
        for g in gens {
            let v = rounds(ctx, "ceiling, edge XDP_DROP", &f, g, p.rounds, &|| {
                let n = c.count()?;
                Ok((n, n))
            })?;
            ceil_row(&mut ceil, g, "minimal XDP: count + XDP_DROP", &v);
        }
    }
    ctx.tables.push(ceil);

    // Every setup at every size, with both generators.
    let mut results: Vec<(Setup, usize, Gen, Vec<Sample>)> = Vec::new();
    let mut infeasible = Vec::new();
    for setup in Setup::ALL {
        let mut my_sizes = sizes.clone();
        if setup == Setup::IptablesPerAddress {
            if !ctx.quick {
                my_sizes.retain(|&n| n <= per_address_cap);
                my_sizes.push(per_address_cap);
                my_sizes.dedup();
            }
            for &n in &sizes {
                if n > per_address_cap {
                    infeasible.push((setup, n));
                }
            }
        }
        for &n in &my_sizes {
            if setup == Setup::IptablesPerAddress && n > per_address_cap {
                continue;
            }
            ctx.progress(&format!("  {} with {n} entries", setup.name()));
            match measure_setup(ctx, &p, setup, n) {
                Ok(per_gen) => {
                    for (g, v) in per_gen {
                        results.push((setup, n, g, v));
                    }
                }
                Err(e) => {
                    ctx.progress(&format!("    failed: {e:#}"));
                    infeasible.push((setup, n));
                    ctx.notes.push((
                        format!("{} with {n} entries: not measured", setup.name()),
                        format!("```\n{e:#}\n```"),
                    ));
                }
            }
        }
    }

    for g in gens {
        let mut t = Table::new(
            &format!(
                "harness_{}",
                if g == Gen::Userspace {
                    "userspace"
                } else {
                    "inkernel"
                }
            ),
            &format!(
                "Drop path (b): packets/s dropped at the edge, {} generator",
                g.name()
            ),
            &[
                "setup",
                "entries",
                "dropped pps median",
                "min",
                "max",
                "arrived pps",
                "edge softirq ns/dropped pkt",
                "CPU softirq %",
                "ratio f2b/this",
            ],
        );
        t.note = format!(
            "Dropped = the setup's own drop counter (f2b's per-CPU counters, the nft rule \
             counter, the iptables rule packet counts) per second of flood. Arrived = what \
             reached the edge ({}). Edge softirq ns = softirq time of CPU {} / dropped packets. \
             Ratio f2b/this = f2b's median dropped pps at the same entry count / this row's.",
            if g == Gen::Userspace {
                "edge veth rx_packets, or f2b's seen counter"
            } else {
                "the count+XDP_PASS program in front of the peers, or f2b's seen counter"
            },
            p.cpu
        );
        for &(setup, n, gg, ref v) in &results {
            if gg != g {
                continue;
            }
            let d = Stat::of(&v.iter().map(Sample::dropped_pps).collect::<Vec<_>>());
            let a = Stat::of(&v.iter().map(Sample::arrived_pps).collect::<Vec<_>>());
            let si = Stat::of(&v.iter().map(Sample::softirq_ns).collect::<Vec<_>>());
            let sh = Stat::of(&v.iter().map(Sample::softirq_share).collect::<Vec<_>>());
            let f2b = median_of(&results, Setup::F2bXdp, n, g);
            t.row(vec![
                text(setup.name()),
                num(n as f64),
                opt(d.map(|s| s.median)),
                opt(d.map(|s| s.min)),
                opt(d.map(|s| s.max)),
                opt(a.map(|s| s.median)),
                opt(si.map(|s| s.median)),
                opt(sh.map(|s| s.median)),
                opt(f2b.zip(d).map(|(f, d)| f / d.median.max(1e-9))),
            ]);
        }
        for &(setup, n) in &infeasible {
            t.row(vec![
                text(setup.name()),
                num(n as f64),
                text(if setup == Setup::IptablesPerAddress && n > per_address_cap {
                    format!("not run: {n} rules is infeasible (cap {per_address_cap} rules loads in bounded time)")
                } else {
                    "not measured (see notes)".to_string()
                }),
                text(""),
                text(""),
                text(""),
                text(""),
                text(""),
                text(""),
            ]);
        }
        ctx.tables.push(t);
    }

    // Targets, per generator.
    let mut tt = Table::new(
        "harness_targets",
        "Drop path (b): targets",
        &[
            "generator",
            "comparison",
            "f2b pps",
            "peer pps",
            "ratio",
            "target",
            "met",
        ],
    );
    for g in gens {
        let f10k = median_of(&results, Setup::F2bXdp, 10_000, g);
        let ipt10k = median_of(&results, Setup::IptablesPerAddress, 10_000, g);
        target_row(
            ctx,
            &mut tt,
            g,
            "f2b vs iptables-per-address, 10k bans",
            f10k,
            ipt10k,
            10.0,
        );
        let big = *sizes.last().unwrap_or(&10_000);
        let fbig = median_of(&results, Setup::F2bXdp, big, g);
        let best = [Setup::NftNetdev, Setup::NftPrerouting, Setup::IpsetIptables]
            .iter()
            .filter_map(|&s| median_of(&results, s, big, g))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        target_row(
            ctx,
            &mut tt,
            g,
            &format!("f2b vs best nftables/ipset, {big} entries"),
            fbig,
            best,
            1.3,
        );
    }
    tt.note = format!(
        "Targets (issue 4 item 7): f2b drops >= 10x what iptables-per-address does at 10k \
         bans, and >= 1.3x the best nftables/ipset setup at 1M entries{}.",
        if ctx.quick {
            " (quick mode stops at 10k entries, so that row compares at 10k)"
        } else {
            ""
        }
    );
    ctx.tables.push(tt);
    ctx.notes.push((
        "Drop path (b): peers' versions".into(),
        format!(
            "- {}\n- {}\n- {}\n",
            peers::version("nft", "--version"),
            peers::version("iptables", "-V"),
            peers::version("ipset", "--version")
        ),
    ));
    Ok(())
}

fn target_row(
    ctx: &mut Ctx,
    t: &mut Table,
    g: Gen,
    what: &str,
    f2b: Option<f64>,
    peer: Option<f64>,
    goal: f64,
) {
    let ratio = f2b.zip(peer).map(|(a, b)| a / b.max(1e-9));
    let met = ratio.map(|r| r >= goal);
    t.row(vec![
        text(g.name()),
        text(what),
        opt(f2b),
        opt(peer),
        opt(ratio),
        text(format!(">= {goal}x")),
        text(match met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        }),
    ]);
    ctx.targets.push(json!({
        "target": format!("harness ({}): {what} >= {goal}x", g.name()),
        "value": ratio, "met": met,
    }));
}

fn median_of(
    results: &[(Setup, usize, Gen, Vec<Sample>)],
    setup: Setup,
    n: usize,
    g: Gen,
) -> Option<f64> {
    results
        .iter()
        .find(|r| r.0 == setup && r.1 == n && r.2 == g)
        .and_then(|r| Stat::of(&r.3.iter().map(Sample::dropped_pps).collect::<Vec<_>>()))
        .map(|s| s.median)
}

fn ceil_row(t: &mut Table, g: Gen, edge: &str, v: &[Sample]) {
    let a = Stat::of(&v.iter().map(Sample::arrived_pps).collect::<Vec<_>>());
    let s = Stat::of(&v.iter().map(Sample::sent_pps).collect::<Vec<_>>());
    let si = Stat::of(&v.iter().map(Sample::softirq_ns).collect::<Vec<_>>());
    let sh = Stat::of(&v.iter().map(Sample::softirq_share).collect::<Vec<_>>());
    t.row(vec![
        text(g.name()),
        text(edge),
        opt(s.map(|s| s.median)),
        opt(a.map(|s| s.median)),
        opt(a.map(|s| s.min)),
        opt(a.map(|s| s.max)),
        opt(si.map(|s| s.median)),
        opt(sh.map(|s| s.median)),
    ]);
}

/// Builds a fresh topology, loads `n` entries into `setup`, floods with both generators.
fn measure_setup(ctx: &Ctx, p: &Params, setup: Setup, n: usize) -> Result<Vec<(Gen, Vec<Sample>)>> {
    let topo = Topology::create(setup.key().split('_').next().unwrap_or("x"))?;
    let (list, sources) = frames::ban_list_v4(n, LIVE_SOURCES);
    let f = flood_for(&topo, p, &sources)?;
    let edge = &topo.edge;
    let t0 = Instant::now();
    let mut out = Vec::new();
    if setup == Setup::F2bXdp {
        let prog = F2bProg::load(f2b_common::DEFAULT_MAX_PREFIXES)?;
        prog.ban_v4(&list)?;
        let (idx, _) = edge.link(EDGE_IF)?;
        let pfd = prog.prog_fd()?;
        let _link = edge.run(|| sys::attach_xdp_native(pfd, idx))??;
        ctx.progress(&format!("    loaded in {:.2?}", t0.elapsed()));
        let counters = || Ok((prog.seen()?, prog.dropped()?));
        for g in [Gen::Userspace, Gen::InKernel] {
            out.push((g, rounds(ctx, setup.name(), &f, g, p.rounds, &counters)?));
        }
    } else {
        peers::load(edge, setup, &list, p.load_timeout)?;
        ctx.progress(&format!("    loaded in {:.2?}", t0.elapsed()));
        let v = rounds(ctx, setup.name(), &f, Gen::Userspace, p.rounds, &|| {
            Ok((rx_packets(edge)?, peers::dropped(edge, setup)?))
        })?;
        out.push((Gen::Userspace, v));
        let c = Counter::attach(edge, sys::XDP_PASS)?;
        let v = rounds(ctx, setup.name(), &f, Gen::InKernel, p.rounds, &|| {
            Ok((c.count()?, peers::dropped(edge, setup)?))
        })?;
        out.push((Gen::InKernel, v));
    }
    Ok(out)
}
