//! Real packets between the namespaces, bounded in count and time.
//!
//! ICMP echo goes through `ping` (so replies prove the full round trip); UDP goes through
//! sockets created on threads that entered the attacker (sender) and edge (receiver)
//! namespaces, so what the receiver got is exactly what XDP let through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::agent::run_bounded;
use crate::netns::NetNs;

/// Upper bound on packets one helper call may send.
pub const MAX_PACKETS: u64 = 5_000;

/// veth's XDP ring holds 256 frames; a burst longer than that is dropped by veth before XDP
/// ever sees it, so senders pause every this many packets.
const BURST: u64 = 32;

/// Outcome of a `ping` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingResult {
    pub sent: u32,
    pub received: u32,
}

impl std::fmt::Display for PingResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} replies", self.received, self.sent)
    }
}

/// `ping -c count -i 0.01 -W 1` from namespace `ns` to `dst`, optionally from source address
/// `src`: exactly `count` echo requests, then at most a second of waiting. Returns how many
/// were sent and how many were answered. Use it where replies are expected to be missing.
pub fn ping(ns: &NetNs, dst: IpAddr, src: Option<IpAddr>, count: u32) -> Result<PingResult> {
    run_ping(ns, dst, src, count, None)
}

/// Like [`ping`], but waits until `count` replies arrived or `deadline` passed
/// (`ping -w`): a late reply on a loaded machine is still counted. If requests go unanswered,
/// ping keeps sending (every 10 ms) until the deadline, so `sent` may exceed `count`; the
/// packet count stays bounded by the deadline.
pub fn ping_answered(
    ns: &NetNs,
    dst: IpAddr,
    src: Option<IpAddr>,
    count: u32,
    deadline: Duration,
) -> Result<PingResult> {
    run_ping(ns, dst, src, count, Some(deadline))
}

fn run_ping(
    ns: &NetNs,
    dst: IpAddr,
    src: Option<IpAddr>,
    count: u32,
    deadline: Option<Duration>,
) -> Result<PingResult> {
    ensure!(
        count > 0 && u64::from(count) <= MAX_PACKETS,
        "ping count {count} out of bounds"
    );
    let mut cmd = ns.command("ping");
    cmd.arg(if dst.is_ipv6() { "-6" } else { "-4" }).args([
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        "0.01",
        "-W",
        "1",
    ]);
    let mut timeout = Duration::from_secs(10) + Duration::from_millis(20 * u64::from(count));
    if let Some(d) = deadline {
        let secs = d.as_secs().clamp(1, 30);
        cmd.arg("-w").arg(secs.to_string());
        timeout += Duration::from_secs(secs);
    }
    if let Some(src) = src {
        cmd.arg("-I").arg(src.to_string());
    }
    cmd.arg(dst.to_string());
    let out = run_bounded(cmd, timeout)
        .context("running ping (iputils-ping; `cargo xtask setup` installs it)")?;
    // ping exits 1 when some replies are missing (that is an outcome), 2 on errors.
    if out.code != 0 && out.code != 1 {
        bail!("ping failed: {out}");
    }
    parse_ping(&out.stdout).with_context(|| format!("unexpected ping output: {out}"))
}

fn parse_ping(text: &str) -> Result<PingResult> {
    for line in text.lines() {
        if let Some((tx, rest)) = line.split_once(" packets transmitted, ") {
            let rx = rest.split_whitespace().next().unwrap_or("");
            return Ok(PingResult {
                sent: tx.trim().parse()?,
                received: rx.parse()?,
            });
        }
    }
    bail!("no summary line")
}

/// A UDP socket bound to `port` on all addresses of namespace `ns` (IPv6 sockets are v6-only).
pub fn udp_receiver(ns: &NetNs, port: u16, v6: bool) -> Result<UdpSocket> {
    let addr: SocketAddr = if v6 {
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    let sock = ns
        .run(move || UdpSocket::bind(addr))?
        .with_context(|| format!("binding UDP {addr} in {}", ns.name()))?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(sock)
}

/// Sends `per_source` datagrams to `dst` from each address in `sources` (None = let the kernel
/// choose), from namespace `ns`, paced so veth never drops a burst. Returns how many were sent.
pub fn udp_send(
    ns: &NetNs,
    sources: &[Option<IpAddr>],
    dst: SocketAddr,
    per_source: u32,
) -> Result<u64> {
    let total = sources.len() as u64 * u64::from(per_source);
    ensure!(
        total <= MAX_PACKETS,
        "{total} packets is more than the bound of {MAX_PACKETS}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    ns.run(|| -> Result<u64> {
        let mut sent = 0u64;
        for src in sources {
            let bind: SocketAddr = match (src, dst.is_ipv6()) {
                (Some(ip), _) => (*ip, 0).into(),
                (None, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                (None, true) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock =
                UdpSocket::bind(bind).with_context(|| format!("binding UDP sender to {bind}"))?;
            for _ in 0..per_source {
                ensure!(
                    Instant::now() < deadline,
                    "UDP sender ran past its deadline"
                );
                sock.send_to(b"f2b-test", dst)
                    .with_context(|| format!("sending from {bind} to {dst}"))?;
                sent += 1;
                if sent.is_multiple_of(BURST) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        Ok(sent)
    })?
}

/// Reads datagrams until none arrived for `settle` (at most 10 s in all); returns how many
/// arrived and from which sources.
pub fn udp_drain(sock: &UdpSocket, settle: Duration) -> Result<Vec<IpAddr>> {
    let mut from = Vec::new();
    let mut buf = [0u8; 2048];
    let hard = Instant::now() + Duration::from_secs(10);
    let mut last = Instant::now();
    while Instant::now() < hard && last.elapsed() < settle {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                from.push(peer.ip());
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receiving UDP"),
        }
    }
    Ok(from)
}

/// Sends `count` UDP datagrams from the attacker (from `src`, or the default source) to
/// `dst_ip:port` in the edge namespace and returns how many a socket there received.
pub fn udp_through(
    attacker: &NetNs,
    edge: &NetNs,
    src: Option<IpAddr>,
    dst_ip: IpAddr,
    port: u16,
    count: u32,
) -> Result<u64> {
    let rx = udp_receiver(edge, port, dst_ip.is_ipv6())?;
    udp_send(attacker, &[src], (dst_ip, port).into(), count)?;
    Ok(udp_drain(&rx, Duration::from_millis(300))?.len() as u64)
}
