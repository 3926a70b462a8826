//! The bench's world: a generator namespace and an edge namespace joined by a veth pair, as
//! guards that delete what they created on drop. Kept apart from the integration tests'
//! helpers (tests/src/netns.rs, which this follows) so that the bench does not break while the
//! tests change. Only 198.18.0.0/15 and fd00:f2b::/64 are used on the wire.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
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

pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    pub fn create(name: &str) -> Result<NetNs> {
        ip(&["netns", "add", name])?;
        let path = format!("/run/netns/{name}");
        match File::open(&path) {
            Ok(file) => Ok(NetNs {
                name: name.to_string(),
                file,
            }),
            Err(e) => {
                let _ = ip(&["netns", "del", name]);
                Err(e).with_context(|| format!("opening {path}"))
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs in this network namespace (same mount namespace as the bench).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; fd is owned by self, which outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `f` on a thread that entered this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.file.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: fd is a valid namespace fd for the whole scope; setns on a thread
                // changes only that thread.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside netns panicked"))?
        })
    }

    /// (ifindex, MAC) of `ifname` in this namespace.
    pub fn link(&self, ifname: &str) -> Result<(u32, [u8; 6])> {
        let out = self.ip(&["-j", "link", "show", ifname])?;
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

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: cleanup: {e}");
        }
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
