//! Whole-system tests: a real agent attached with XDP to a veth in a network namespace, bans
//! made with the real f2b-ctl, real packets from an attacker namespace, and both sides checked:
//! what got through, and what the kernel counters (`f2b-ctl stats --json`) say.
//!
//! Each test skips (with the reason on stderr) when not root or without netns support;
//! otherwise every failure is a failure. The tests of this binary run one at a time
//! ([`f2b_integration::serial`]).
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Result, ensure};
use f2b_integration::netns::{ATTACKER_V4, ATTACKER_V6, EDGE_IF, EDGE_V4, EDGE_V6};
use f2b_integration::traffic::{
    ping, ping_answered, udp_drain, udp_receiver, udp_send, udp_through,
};
use f2b_integration::{Fixture, TestConfig, skip_unless_capable};
use serde_json::Value;

const N: u32 = 20;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs f2b-ctl and requires exit 0.
fn ctl_ok(fx: &Fixture, args: &[&str]) -> Result<String> {
    let out = fx.agent.ctl(args)?;
    ensure!(
        out.code == 0,
        "`f2b-ctl {}` should succeed: {out}",
        args.join(" ")
    );
    Ok(out.stdout)
}

/// Every ping answered (the path works) / none answered (it is dropped).
fn expect_pings(
    fx: &Fixture,
    dst: &str,
    src: Option<&str>,
    answered: bool,
    when: &str,
) -> Result<()> {
    let (r, ok) = if answered {
        let r = ping_answered(
            &fx.net.attacker,
            ip(dst),
            src.map(ip),
            N,
            Duration::from_secs(5),
        )?;
        (r, r.received == N)
    } else {
        let r = ping(&fx.net.attacker, ip(dst), src.map(ip), N)?;
        (r, r.sent == N && r.received == 0)
    };
    let want = if answered { N } else { 0 };
    ensure!(
        ok,
        "{when}: ping {dst} from {}: expected {want}/{N} replies, got {r}",
        src.unwrap_or("default source")
    );
    Ok(())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn ban_v4_drops_and_unban_passes() -> Result<()> {
    skip_unless_capable!("ban_v4_drops_and_unban_passes");
    let fx = Fixture::start("v4", &TestConfig::default())?;

    // The agent reports where it attached and in which mode.
    let status = fx.agent.ctl_json(&["status"])?;
    let ifaces = status["interfaces"].as_array().cloned().unwrap_or_default();
    ensure!(
        ifaces
            .iter()
            .any(|i| i["name"] == EDGE_IF && (i["mode"] == "native" || i["mode"] == "skb")),
        "status should list {EDGE_IF} with mode native|skb: {status}"
    );

    expect_pings(&fx, EDGE_V4, None, true, "before any ban")?;
    let c0 = fx.agent.counters()?;
    ensure!(
        c0.get("seen") >= u64::from(N),
        "seen counter did not count the pings: {c0:?}"
    );

    ctl_ok(&fx, &["ban", ATTACKER_V4])?;
    ensure!(fx.agent.banned()? == strs(&[ATTACKER_V4]), "list after ban");
    expect_pings(&fx, EDGE_V4, None, false, "after ban")?;
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_exact_v4") >= u64::from(N),
        "dropped_exact_v4 should grow by >= {N}: before {c0:?}, after {c1:?}"
    );
    // Per-ban packet counters.
    let list = fx.agent.ctl_json(&["list"])?;
    let pk = list["bans"][0]["packets"].as_u64().unwrap_or(0);
    ensure!(
        pk >= u64::from(N),
        "ban's packet counter should be >= {N}: {list}"
    );

    ctl_ok(&fx, &["unban", ATTACKER_V4])?;
    ensure!(fx.agent.banned()?.is_empty(), "list after unban");
    expect_pings(&fx, EDGE_V4, None, true, "after unban")?;
    let c2 = fx.agent.counters()?;
    ensure!(
        c2.get("dropped_exact_v4") == c1.get("dropped_exact_v4"),
        "nothing may be dropped after unban: {c1:?} -> {c2:?}"
    );
    ensure!(
        c2.delta(&c1, "passed") >= u64::from(N),
        "passed should grow after unban: {c2:?}"
    );
    fx.pass()
}

#[test]
fn ban_v6_drops_and_unban_passes() -> Result<()> {
    skip_unless_capable!("ban_v6_drops_and_unban_passes");
    let fx = Fixture::start("v6", &TestConfig::default())?;
    expect_pings(&fx, EDGE_V6, None, true, "before any ban")?;
    let c0 = fx.agent.counters()?;
    ctl_ok(&fx, &["ban", ATTACKER_V6])?;
    ensure!(fx.agent.banned()? == strs(&[ATTACKER_V6]), "list after ban");
    expect_pings(&fx, EDGE_V6, None, false, "after ban")?;
    // IPv4 from the same host is not affected.
    expect_pings(&fx, EDGE_V4, None, true, "IPv4 while only IPv6 is banned")?;
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_exact_v6") >= u64::from(N),
        "dropped_exact_v6 should grow by >= {N}: {c0:?} -> {c1:?}"
    );
    ensure!(
        c1.get("dropped_exact_v4") == c0.get("dropped_exact_v4"),
        "no v4 drops: {c1:?}"
    );
    ctl_ok(&fx, &["unban", ATTACKER_V6])?;
    expect_pings(&fx, EDGE_V6, None, true, "after unban")?;
    fx.pass()
}

#[test]
fn cidr_bans_drop_the_whole_prefix() -> Result<()> {
    skip_unless_capable!("cidr_bans_drop_the_whole_prefix");
    let fx = Fixture::start("cidr", &TestConfig::default())?;
    fx.net
        .add_attacker_addrs(&[ip("198.18.2.2"), ip("fd00:f2b::2:2")])?;
    expect_pings(&fx, EDGE_V4, Some("198.18.2.2"), true, "v4 before ban")?;
    expect_pings(&fx, EDGE_V6, Some("fd00:f2b::2:2"), true, "v6 before ban")?;
    let c0 = fx.agent.counters()?;

    ctl_ok(&fx, &["ban", "198.18.2.0/24", "fd00:f2b::2:0/112"])?;
    let mut want = strs(&["198.18.2.0/24", "fd00:f2b::2:0/112"]);
    want.sort();
    ensure!(
        fx.agent.banned()? == want,
        "list after prefix ban: {:?}",
        fx.agent.banned()?
    );
    expect_pings(
        &fx,
        EDGE_V4,
        Some("198.18.2.2"),
        false,
        "v4 source inside the banned /24",
    )?;
    expect_pings(
        &fx,
        EDGE_V6,
        Some("fd00:f2b::2:2"),
        false,
        "v6 source inside the banned /112",
    )?;
    // Sources outside the prefixes still pass.
    expect_pings(
        &fx,
        EDGE_V4,
        Some(ATTACKER_V4),
        true,
        "v4 source outside the prefix",
    )?;
    expect_pings(
        &fx,
        EDGE_V6,
        Some(ATTACKER_V6),
        true,
        "v6 source outside the prefix",
    )?;
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_prefix_v4") >= u64::from(N),
        "dropped_prefix_v4: {c0:?} -> {c1:?}"
    );
    ensure!(
        c1.delta(&c0, "dropped_prefix_v6") >= u64::from(N),
        "dropped_prefix_v6: {c0:?} -> {c1:?}"
    );

    ctl_ok(&fx, &["unban", "198.18.2.0/24", "fd00:f2b::2:0/112"])?;
    ensure!(fx.agent.banned()?.is_empty(), "list after unban");
    expect_pings(&fx, EDGE_V4, Some("198.18.2.2"), true, "v4 after unban")?;
    expect_pings(&fx, EDGE_V6, Some("fd00:f2b::2:2"), true, "v6 after unban")?;
    fx.pass()
}

#[test]
fn allowlist_wins_over_a_prefix_ban() -> Result<()> {
    skip_unless_capable!("allowlist_wins_over_a_prefix_ban");
    let cfg = TestConfig {
        extra_ignoreip: vec!["198.18.3.3".into()],
        ..TestConfig::default()
    };
    let fx = Fixture::start("allow", &cfg)?;
    fx.net
        .add_attacker_addrs(&[ip("198.18.3.2"), ip("198.18.3.3")])?;

    // A ban of the allowlisted address itself is refused, and nothing changes.
    let out = fx.agent.ctl(&["ban", "198.18.3.3"])?;
    ensure!(
        out.code == 1 && !out.stderr.trim().is_empty(),
        "ban of an ignoreip address must be refused: {out}"
    );
    ensure!(
        fx.agent.banned()?.is_empty(),
        "refused ban changed the list"
    );

    let c0 = fx.agent.counters()?;
    ctl_ok(&fx, &["ban", "198.18.3.0/24"])?;
    expect_pings(
        &fx,
        EDGE_V4,
        Some("198.18.3.2"),
        false,
        "banned, not allowlisted",
    )?;
    expect_pings(
        &fx,
        EDGE_V4,
        Some("198.18.3.3"),
        true,
        "banned by prefix but allowlisted",
    )?;
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_prefix_v4") >= u64::from(N),
        "dropped_prefix_v4: {c0:?} -> {c1:?}"
    );
    ensure!(
        c1.delta(&c0, "passed_allowlist") >= u64::from(N),
        "passed_allowlist: {c0:?} -> {c1:?}"
    );
    fx.pass()
}

#[test]
fn port_scoped_jail_drops_only_its_ports() -> Result<()> {
    skip_unless_capable!("port_scoped_jail_drops_only_its_ports");
    let fx = Fixture::start("port", &TestConfig::default())?;
    let (atk, edge) = (&fx.net.attacker, &fx.net.edge);
    ensure!(
        udp_through(atk, edge, None, ip(EDGE_V4), 5353, N)? == u64::from(N),
        "UDP 5353 before ban"
    );

    let c0 = fx.agent.counters()?;
    ctl_ok(&fx, &["ban", ATTACKER_V4, "--jail", "dns"])?;
    let got = udp_through(atk, edge, None, ip(EDGE_V4), 5353, N)?;
    ensure!(
        got == 0,
        "UDP to the jail's port 5353 should be dropped, {got}/{N} arrived"
    );
    let got = udp_through(atk, edge, None, ip(EDGE_V4), 5354, N)?;
    ensure!(
        got == u64::from(N),
        "UDP to port 5354 (outside the jail) should pass, {got}/{N} arrived"
    );
    // ICMP has no port: a port-scoped ban does not cover it.
    expect_pings(&fx, EDGE_V4, None, true, "ICMP under a port-scoped ban")?;
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_exact_v4") == u64::from(N),
        "dropped_exact_v4 should grow by exactly {N}: {c0:?} -> {c1:?}"
    );
    ensure!(
        c1.delta(&c0, "passed_port_scope") >= u64::from(2 * N),
        "passed_port_scope: {c0:?} -> {c1:?}"
    );
    fx.pass()
}

#[test]
fn sigkill_keeps_enforcing_and_restart_keeps_the_ban() -> Result<()> {
    skip_unless_capable!("sigkill_keeps_enforcing_and_restart_keeps_the_ban");
    let mut fx = Fixture::start("kill", &TestConfig::default())?;
    ctl_ok(&fx, &["ban", ATTACKER_V4, "--time", "1h"])?;
    expect_pings(&fx, EDGE_V4, None, false, "after ban")?;

    let c0 = fx.agent.counters()?;
    fx.agent.sigkill()?;
    expect_pings(
        &fx,
        EDGE_V4,
        None,
        false,
        "while the agent is dead (SIGKILL)",
    )?;
    let out = fx.agent.ctl(&["ping"])?;
    ensure!(
        out.code == 3,
        "f2b-ctl against a dead agent should exit 3 (unreachable): {out}"
    );

    fx.agent.restart()?;
    ensure!(
        fx.agent.banned()? == strs(&[ATTACKER_V4]),
        "list after restart should still show the ban"
    );
    expect_pings(&fx, EDGE_V4, None, false, "after restart")?;
    // The pinned counters saw the drops of the downtime and those after the restart.
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "dropped_exact_v4") >= u64::from(2 * N),
        "dropped_exact_v4 across the crash: {c0:?} -> {c1:?}"
    );
    let list = fx.agent.ctl_json(&["list"])?;
    ensure!(
        !list["bans"][0]["until"].is_null(),
        "a 1h ban keeps its expiry across restart: {list}"
    );

    ctl_ok(&fx, &["unban", ATTACKER_V4])?;
    expect_pings(
        &fx,
        EDGE_V4,
        None,
        true,
        "after unban on the restarted agent",
    )?;
    fx.pass()
}

#[test]
fn thousand_bans_in_one_call_are_enforced_after_restart() -> Result<()> {
    skip_unless_capable!("thousand_bans_in_one_call_are_enforced_after_restart");
    let mut fx = Fixture::start("k1", &TestConfig::default())?;
    // 198.18.4.0 .. 198.18.7.231
    let addrs: Vec<IpAddr> = (0..1000u32)
        .map(|i| {
            IpAddr::from(std::net::Ipv4Addr::from(
                (198u32 << 24 | 18 << 16 | 4 << 8) + i,
            ))
        })
        .collect();
    fx.net.add_attacker_addrs(&addrs)?;
    let texts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut args = vec!["ban", "--time", "1h"];
    args.extend(texts.iter().map(String::as_str));
    ctl_ok(&fx, &args)?;
    ensure!(
        fx.agent.banned()?.len() == 1000,
        "list should show 1000 bans"
    );

    let port = 7000;
    let sources: Vec<Option<IpAddr>> = addrs.iter().copied().map(Some).collect();

    // A clean stop leaves enforcement in place.
    let st = fx.agent.sigterm_and_wait(Duration::from_secs(30))?;
    ensure!(st.success(), "SIGTERM should be a clean exit, got {st}");
    let rx = udp_receiver(&fx.net.edge, port, false)?;
    udp_send(
        &fx.net.attacker,
        &sources[..10],
        (ip(EDGE_V4), port).into(),
        1,
    )?;
    let got = udp_drain(&rx, Duration::from_millis(300))?;
    ensure!(
        got.is_empty(),
        "while the agent is stopped, banned sources got through: {got:?}"
    );

    fx.agent.restart()?;
    ensure!(
        fx.agent.banned()?.len() == 1000,
        "list after restart should show 1000 bans"
    );

    // Positive control: an unbanned source reaches the receiver.
    udp_send(
        &fx.net.attacker,
        &[Some(ip(ATTACKER_V4))],
        (ip(EDGE_V4), port).into(),
        1,
    )?;
    let got = udp_drain(&rx, Duration::from_millis(300))?;
    ensure!(
        got == vec![ip(ATTACKER_V4)],
        "control packet from {ATTACKER_V4}: got {got:?}"
    );

    let c0 = fx.agent.counters()?;
    let sent = udp_send(&fx.net.attacker, &sources, (ip(EDGE_V4), port).into(), 1)?;
    ensure!(sent == 1000, "sent {sent}");
    let got = udp_drain(&rx, Duration::from_millis(500))?;
    let c1 = fx.agent.counters()?;
    ensure!(
        got.is_empty(),
        "{} of 1000 banned sources got through, e.g. {:?}",
        got.len(),
        got.first()
    );
    ensure!(
        c1.delta(&c0, "dropped_exact_v4") == 1000,
        "dropped_exact_v4 should grow by exactly 1000: {c0:?} -> {c1:?}"
    );
    fx.pass()
}

#[test]
fn bad_ctl_input_is_refused_and_changes_nothing() -> Result<()> {
    skip_unless_capable!("bad_ctl_input_is_refused_and_changes_nothing");
    let fx = Fixture::start("bad", &TestConfig::default())?;
    ctl_ok(&fx, &["ban", "198.18.0.9"])?;
    let before = fx.agent.banned()?;
    ensure!(before == strs(&["198.18.0.9"]), "setup ban: {before:?}");

    let cases: &[&[&str]] = &[
        &["ban", "not-an-ip"],
        &["ban", "198.18.0.300"],
        &["ban", "0.0.0.0/0"],
        &["ban", "0.0.0.0/0", "--force"],
        &["ban", "::/0", "--force"],
        &["ban", "198.0.0.0/8"],
        &["ban", "fd00::/16"],
        &["ban", "127.0.0.1"],
        &["ban", "::1"],
        &["ban", "198.18.0.7", "--jail", "no-such-jail"],
        &["ban", "198.18.0.7", "--time", "10x"],
        &["ban", "198.18.0.7", "--time", "0s"],
        &["ban", "198.18.0.7", "not-an-ip"],
        &["unban", "not-an-ip"],
        &["unban", "--all", "--jail", "no-such-jail"],
        &["frobnicate"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let out = fx.agent.ctl(args)?;
        let clear = !out.stderr.trim().is_empty() && !out.stderr.contains("panicked");
        if !(out.code == 1 || out.code == 2) || !clear {
            failures.push(format!(
                "`f2b-ctl {}`: expected exit 1 or 2 with a message on stderr, got {out}",
                args.join(" ")
            ));
        }
        let now = fx.agent.banned()?;
        if now != before {
            failures.push(format!(
                "`f2b-ctl {}` changed the ban list: {before:?} -> {now:?}",
                args.join(" ")
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "bad input handling:\n{}",
        failures.join("\n")
    );
    fx.pass()
}

#[test]
fn garbage_on_the_socket_gets_an_error_and_the_connection_survives() -> Result<()> {
    skip_unless_capable!("garbage_on_the_socket_gets_an_error_and_the_connection_survives");
    let fx = Fixture::start("raw", &TestConfig::default())?;
    let stream = UnixStream::connect(fx.agent.socket())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut ask = |line: &str| -> Result<Value> {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        let mut resp = String::new();
        r.read_line(&mut resp)?;
        ensure!(
            !resp.is_empty(),
            "agent closed the connection after {line:?}"
        );
        Ok(serde_json::from_str(&resp)?)
    };
    for bad in [
        "this is not json",
        "{\"cmd\":\"explode\"}",
        "{\"cmd\":\"ban\",\"ips\":\"198.18.0.2\"}",
        "{\"cmd\":\"ban\",\"ips\":[\"0.0.0.0/0\"],\"force\":true}",
        "[1,2,3]",
    ] {
        let v = ask(bad)?;
        ensure!(v["ok"] == false, "{bad:?} should get ok:false, got {v}");
        ensure!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad:?}: no error text: {v}"
        );
    }
    let v = ask("{\"cmd\":\"ping\"}")?;
    ensure!(
        v["ok"] == true,
        "ping on the same connection after garbage: {v}"
    );
    ensure!(
        fx.agent.banned()?.is_empty(),
        "garbage changed the ban list"
    );
    fx.pass()
}

#[test]
fn non_root_client_can_read_but_not_ban() -> Result<()> {
    skip_unless_capable!("non_root_client_can_read_but_not_ban");
    let cfg = TestConfig {
        socket_mode: "0666".into(),
        ..TestConfig::default()
    };
    let fx = Fixture::start("user", &cfg)?;
    let nobody = 65534;
    let out = fx.agent.ctl_as(nobody, nobody, &["ban", ATTACKER_V4])?;
    let msg = out.stderr.to_lowercase();
    ensure!(
        out.code == 1
            && ["permission", "denied", "not allowed", "root"]
                .iter()
                .any(|w| msg.contains(w)),
        "a non-root ban should be refused with exit 1 and a permission message: {out}"
    );
    let out = fx.agent.ctl_as(nobody, nobody, &["unban", "--all"])?;
    ensure!(
        out.code == 1,
        "a non-root unban --all should be refused: {out}"
    );
    let out = fx.agent.ctl_as(nobody, nobody, &["list", "--json"])?;
    ensure!(out.code == 0, "a non-root client may list: {out}");
    let out = fx.agent.ctl_as(nobody, nobody, &["stats"])?;
    ensure!(out.code == 0, "a non-root client may read stats: {out}");
    ensure!(
        fx.agent.banned()?.is_empty(),
        "the refused ban changed the list"
    );
    expect_pings(&fx, EDGE_V4, None, true, "after the refused ban")?;
    fx.pass()
}

#[test]
fn stop_detach_removes_program_and_pins() -> Result<()> {
    skip_unless_capable!("stop_detach_removes_program_and_pins");
    let mut fx = Fixture::start("det", &TestConfig::default())?;
    ctl_ok(&fx, &["ban", ATTACKER_V4])?;
    expect_pings(&fx, EDGE_V4, None, false, "after ban")?;
    let pins = walk(fx.agent.pin_dir());
    ensure!(
        !pins.is_empty(),
        "the agent pinned nothing under {}",
        fx.agent.pin_dir().display()
    );

    ctl_ok(&fx, &["stop", "--detach"])?;
    let st = fx.agent.wait_exit(Duration::from_secs(30))?;
    ensure!(st.success(), "agent exit after stop --detach: {st}");
    expect_pings(
        &fx,
        EDGE_V4,
        None,
        true,
        "after stop --detach (program removed)",
    )?;
    let pins = walk(fx.agent.pin_dir());
    ensure!(pins.is_empty(), "pins left after stop --detach: {pins:?}");
    let link = std::process::Command::new("ip")
        .args(["-n", fx.agent.ns_name(), "link", "show", "dev", EDGE_IF])
        .output()?;
    let link = String::from_utf8_lossy(&link.stdout);
    ensure!(
        !link.contains("xdp"),
        "an XDP program is still attached: {link}"
    );
    fx.pass()
}

/// Every file under `dir`, recursively, except the iterators every bpffs mount starts with.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if !matches!(e.file_name().to_str(), Some("maps.debug" | "progs.debug")) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn agent_mounts_bpffs_on_its_pin_dir() -> Result<()> {
    skip_unless_capable!("agent_mounts_bpffs_on_its_pin_dir");
    let fx = Fixture::start_with("mnt", &TestConfig::default(), |o| o.mount_bpffs = false)?;
    ensure!(
        f2b_integration::agent::is_bpffs(fx.agent.pin_dir()),
        "the agent should have mounted a bpffs on {}",
        fx.agent.pin_dir().display()
    );
    ctl_ok(&fx, &["ban", ATTACKER_V4])?;
    expect_pings(
        &fx,
        EDGE_V4,
        None,
        false,
        "after ban (agent-mounted pin dir)",
    )?;
    fx.pass()
}

#[test]
fn expired_ban_stops_dropping_while_the_agent_is_down() -> Result<()> {
    skip_unless_capable!("expired_ban_stops_dropping_while_the_agent_is_down");
    let mut fx = Fixture::start("exp", &TestConfig::default())?;
    ctl_ok(&fx, &["ban", ATTACKER_V4, "--time", "3s"])?;
    expect_pings(&fx, EDGE_V4, None, false, "right after a 3s ban")?;
    let c0 = fx.agent.counters()?;
    fx.agent.sigkill()?;
    // The kernel entry carries its own expiry: no agent is needed to end the ban.
    std::thread::sleep(Duration::from_secs(4));
    expect_pings(
        &fx,
        EDGE_V4,
        None,
        true,
        "after the ban expired, agent down",
    )?;
    fx.agent.restart()?;
    ensure!(
        fx.agent.banned()?.is_empty(),
        "the restarted agent should drop the expired ban"
    );
    let c1 = fx.agent.counters()?;
    ensure!(
        c1.delta(&c0, "passed_expired") >= u64::from(N),
        "passed_expired should count the pings to the expired entry: {c0:?} -> {c1:?}"
    );
    expect_pings(&fx, EDGE_V4, None, true, "after restart")?;
    fx.pass()
}
