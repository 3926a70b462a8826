//! The test world itself, without an agent: if these fail, the enforcement tests cannot mean
//! anything. Namespaces come up, traffic passes both ways, extra source addresses work, and
//! everything is gone after drop.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use f2b_integration::netns::{EDGE_V4, EDGE_V6};
use f2b_integration::traffic::{ping_answered, udp_through};
use f2b_integration::{Topology, serial, skip_unless_capable};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn topology_passes_traffic_and_cleans_up() -> Result<()> {
    skip_unless_capable!("topology_passes_traffic_and_cleans_up");
    let _serial = serial();
    let names;
    {
        let t = Topology::create("topo")?;
        names = [t.edge.name().to_string(), t.attacker.name().to_string()];
        let r = ping_answered(&t.attacker, ip(EDGE_V4), None, 5, Duration::from_secs(5))?;
        ensure!(r.received == 5, "v4 ping without any XDP: {r}");
        let r = ping_answered(&t.attacker, ip(EDGE_V6), None, 5, Duration::from_secs(5))?;
        ensure!(r.received == 5, "v6 ping without any XDP: {r}");
        t.add_attacker_addrs(&[ip("198.18.9.9"), ip("fd00:f2b::9:9")])?;
        let r = ping_answered(
            &t.attacker,
            ip(EDGE_V4),
            Some(ip("198.18.9.9")),
            5,
            Duration::from_secs(5),
        )?;
        ensure!(r.received == 5, "v4 ping from an extra source: {r}");
        let r = ping_answered(
            &t.attacker,
            ip(EDGE_V6),
            Some(ip("fd00:f2b::9:9")),
            5,
            Duration::from_secs(5),
        )?;
        ensure!(r.received == 5, "v6 ping from an extra source: {r}");
        let got = udp_through(
            &t.attacker,
            &t.edge,
            Some(ip("198.18.9.9")),
            ip(EDGE_V4),
            9999,
            50,
        )?;
        ensure!(got == 50, "UDP: {got}/50");
        let got = udp_through(&t.attacker, &t.edge, None, ip(EDGE_V6), 9999, 50)?;
        ensure!(got == 50, "UDP v6: {got}/50");
        ensure!(
            t.add_attacker_addrs(&[ip("203.0.113.1")]).is_err(),
            "addresses outside 198.18.0.0/15 are refused"
        );
    }
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        ensure!(!list.contains(&n), "namespace {n} left behind");
    }
    Ok(())
}
