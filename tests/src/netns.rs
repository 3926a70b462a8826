//! Network namespaces and the attacker/edge veth topology, as guards that clean up on drop.

use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Interface of the edge end of the veth pair (inside the edge namespace); the agent attaches here.
pub const EDGE_IF: &str = "f2b-edge";
/// Interface of the attacker end (inside the attacker namespace).
pub const ATTACKER_IF: &str = "f2b-atk";
pub const EDGE_V4: &str = "198.18.0.1";
pub const ATTACKER_V4: &str = "198.18.0.2";
pub const EDGE_V6: &str = "fd00:f2b::1";
pub const ATTACKER_V6: &str = "fd00:f2b::2";

/// Runs `ip ARGS...` and fails with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed? `cargo xtask setup` installs it)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A name unique to this process and call: `<stem><pid>-<n>`, e.g. `f2b-v4-4242-0`.
pub fn unique_name(stem: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{stem}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace (`ip netns add`), deleted on drop.
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

    /// The namespace fd (valid while `self` lives), for `setns`.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// A second handle on the namespace (for guards that outlive a borrow of `self`).
    pub fn fd_file(&self) -> Result<File> {
        Ok(self.file.try_clone()?)
    }

    /// `ip -n <ns> ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs in this network namespace (and only that: same mount namespace,
    /// same filesystem view, unlike `ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.fd();
        // SAFETY: setns is async-signal-safe and the closure allocates nothing. `fd` stays open
        // until exec: it is owned by `self`, which outlives the spawn call, and is CLOEXEC.
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

    /// Runs `f` on a thread that has entered this network namespace. Sockets created inside
    /// stay in the namespace and may be used from any thread afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: fd is a valid namespace fd owned by self for the whole scope;
                // setns on a thread changes only that thread's network namespace.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside netns panicked"))?
        })
    }

    /// Writes a sysctl of this namespace (e.g. `net/ipv4/conf/all/rp_filter`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{key}");
        self.run(|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all(value.as_bytes())
        })?
        .with_context(|| format!("writing {path} in netns {}", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            crate::say(&format!("warning: cleanup: {e}"));
        }
    }
}

/// Two namespaces joined by a veth pair:
/// edge `f2b-edge` 198.18.0.1/24 + fd00:f2b::1/64, attacker `f2b-atk` 198.18.0.2/24 +
/// fd00:f2b::2/64. The edge routes all of 198.18.0.0/15 to the veth, so the attacker may use any
/// extra source address in that range and still get replies. Both namespaces (and with them the
/// veth pair and any XDP program on it) are removed on drop.
pub struct Topology {
    pub edge: NetNs,
    pub attacker: NetNs,
}

impl Topology {
    /// `stem` is a short tag (<= 6 chars is best) that makes namespace names recognisable.
    pub fn create(stem: &str) -> Result<Topology> {
        let base = unique_name(&format!("f2b-{stem}-"));
        let edge = NetNs::create(&format!("{base}-edge"))?;
        let attacker = NetNs::create(&format!("{base}-atk"))?;
        let t = Topology { edge, attacker };
        t.edge.ip(&[
            "link",
            "add",
            EDGE_IF,
            "type",
            "veth",
            "peer",
            "name",
            ATTACKER_IF,
            "netns",
            t.attacker.name(),
        ])?;
        for (ns, ifname, v4, v6) in [
            (&t.edge, EDGE_IF, EDGE_V4, EDGE_V6),
            (&t.attacker, ATTACKER_IF, ATTACKER_V4, ATTACKER_V6),
        ] {
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        t.edge
            .ip(&["route", "add", "198.18.0.0/15", "dev", EDGE_IF])?;
        // Replies to extra attacker addresses leave by the route above; make sure reverse-path
        // filtering (inherited from the host) cannot drop their requests before a socket sees them.
        t.edge.sysctl("net/ipv4/conf/all/rp_filter", "0")?;
        t.edge
            .sysctl(&format!("net/ipv4/conf/{EDGE_IF}/rp_filter"), "0")?;
        Ok(t)
    }

    /// Adds extra source addresses (as /32, or /128 `nodad` and deprecated) to the attacker's
    /// interface, so that the default sources stay 198.18.0.2 and fd00:f2b::2; in
    /// one `ip -batch` call. Only 198.18.0.0/15 and fd00:f2b::/64 are accepted.
    pub fn add_attacker_addrs(&self, addrs: &[IpAddr]) -> Result<()> {
        let mut batch = String::new();
        for a in addrs {
            match a {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    if o[0] != 198 || (o[1] != 18 && o[1] != 19) {
                        bail!("{a} is outside 198.18.0.0/15");
                    }
                    batch.push_str(&format!("addr add {a}/32 dev {ATTACKER_IF}\n"));
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    if s[..4] != [0xfd00, 0x0f2b, 0, 0] {
                        bail!("{a} is outside fd00:f2b::/64");
                    }
                    // Deprecated (preferred_lft 0): usable when a test binds to it, never picked
                    // as the default source, which stays fd00:f2b::2.
                    batch.push_str(&format!(
                        "addr add {a}/128 dev {ATTACKER_IF} nodad preferred_lft 0\n"
                    ));
                }
            }
        }
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), batch)?;
        let path = file.path().to_string_lossy().into_owned();
        self.attacker.ip(&["-batch", &path])
    }
}
