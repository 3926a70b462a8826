//! The bench's world: a generator namespace and an edge namespace joined by a veth pair, as
//! guards that delete what they created on drop. The namespace guard itself is the
//! integration tests' (tests/src/netns.rs); the bench's topology differs (a /15 for floods of
//! many sources, no reverse-path filtering). Only 198.18.0.0/15 and fd00:f2b::/64 are used on
//! the wire.

use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

pub const EDGE_IF: &str = "f2b-edge";
pub const GEN_IF: &str = "f2b-gen";

pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

pub fn ip(args: &[&str]) -> Result<Output> {
    run_ok(Command::new("ip").args(args))
}

/// The integration tests' namespace guard (create, `ip -n`, commands and threads inside,
/// deleted on drop), plus what only the bench needs from it.
pub use f2b_integration::netns::NetNs;

pub trait NsExt {
    /// `ip -n NS ARGS...`, returning its output.
    fn ip_out(&self, args: &[&str]) -> Result<Output>;
    /// (ifindex, MAC) of `ifname` in this namespace.
    fn link(&self, ifname: &str) -> Result<(u32, [u8; 6])>;
}

impl NsExt for NetNs {
    fn ip_out(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn link(&self, ifname: &str) -> Result<(u32, [u8; 6])> {
        let out = self.ip_out(&["-j", "link", "show", ifname])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let l = &v[0];
        let idx = l["ifindex"].as_u64().context("no ifindex")? as u32;
        let mac_s = l["address"].as_str().context("no address")?;
        let mut mac = [0u8; 6];
        for (m, p) in mac.iter_mut().zip(mac_s.split(':')) {
            *m = u8::from_str_radix(p, 16)?;
        }
        Ok((idx, mac))
    }
}

/// gen `f2b-gen` 198.18.0.2/15 + fd00:f2b::2/64  <-veth->  edge `f2b-edge` 198.18.0.1/15 +
/// fd00:f2b::1/64. Dropped in field order: edge first, then gen.
pub struct Topology {
    pub edge: NetNs,
    pub gen_ns: NetNs,
}

impl Topology {
    pub fn create(tag: &str) -> Result<Topology> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!("f2b-bench-{tag}-{}-{n}", std::process::id());
        let edge = NetNs::create(&format!("{base}-e"))?;
        let gen_ns = NetNs::create(&format!("{base}-g"))?;
        let t = Topology { edge, gen_ns };
        t.edge.ip(&[
            "link",
            "add",
            EDGE_IF,
            "type",
            "veth",
            "peer",
            "name",
            GEN_IF,
            "netns",
            t.gen_ns.name(),
        ])?;
        for (ns, ifname, v4, v6) in [
            (&t.edge, EDGE_IF, "198.18.0.1/15", "fd00:f2b::1/64"),
            (&t.gen_ns, GEN_IF, "198.18.0.2/15", "fd00:f2b::2/64"),
        ] {
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["addr", "add", v4, "dev", ifname])?;
            ns.ip(&["-6", "addr", "add", v6, "dev", ifname, "nodad"])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        // Floods come from many sources; keep reverse-path filtering from interfering.
        for key in ["all", EDGE_IF] {
            let path = format!("/proc/sys/net/ipv4/conf/{key}/rp_filter");
            t.edge.run(|| std::fs::write(&path, "0"))??;
        }
        Ok(t)
    }
}
