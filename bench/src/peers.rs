//! The peers f2b is compared with: installing them (Debian packages, idempotently) and loading
//! a ban list into each inside the edge namespace, plus reading each one's drop counter.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::netns::{EDGE_IF, NetNs};

/// (package, binary it provides)
const PACKAGES: [(&str, &str); 6] = [
    ("nftables", "nft"),
    ("iptables", "iptables"),
    ("ipset", "ipset"),
    ("fail2ban", "fail2ban-client"),
    ("sqlite3", "sqlite3"),
    ("iproute2", "ip"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing peers with apt-get (after one `apt-get update` if anything is missing).
pub fn ensure_installed(ctx: &Ctx) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        ctx.progress("peers installed: nftables, iptables, ipset, fail2ban, sqlite3");
        return Ok(());
    }
    ctx.progress(&format!("installing peers: {}", missing.join(" ")));
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let st = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !st.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// Version line of a tool, for the report.
pub fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// Runs `program args` in `ns` with `input` on stdin, killed (by PID) after `timeout`.
pub fn run_in(
    ns: &NetNs,
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String> {
    let mut cmd = ns.command(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {program}"))?;
    if let Some(data) = input {
        let mut stdin = child.stdin.take().context("stdin")?;
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let out_pipe = child.stdout.take().context("stdout")?;
    let err_pipe = child.stderr.take().context("stderr")?;
    let out_t = std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let deadline = Instant::now() + timeout;
    let st = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{program} {} did not finish within {timeout:?}; killed",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    if !st.success() {
        bail!(
            "{program} {} failed ({st}): {}",
            args.join(" "),
            err.lines().take(5).collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(out)
}

/// The edge-side setups of drop path (b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    F2bXdp,
    NftNetdev,
    NftPrerouting,
    IpsetIptables,
    IptablesPerAddress,
}

impl Setup {
    pub const ALL: [Setup; 5] = [
        Setup::F2bXdp,
        Setup::NftNetdev,
        Setup::NftPrerouting,
        Setup::IpsetIptables,
        Setup::IptablesPerAddress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Setup::F2bXdp => "f2b XDP (native, veth)",
            Setup::NftNetdev => "nftables set, netdev ingress",
            Setup::NftPrerouting => "nftables set, ip prerouting",
            Setup::IpsetIptables => "ipset + 1 iptables rule (INPUT)",
            Setup::IptablesPerAddress => "iptables rule per address (fail2ban default)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Setup::F2bXdp => "f2b_xdp",
            Setup::NftNetdev => "nft_netdev",
            Setup::NftPrerouting => "nft_prerouting",
            Setup::IpsetIptables => "ipset_iptables",
            Setup::IptablesPerAddress => "iptables_per_address",
        }
    }
}

fn dotted(a: &[u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Loads `addrs` into the peer `setup` in `ns` (not for F2bXdp), bounded by `timeout`.
pub fn load(ns: &NetNs, setup: Setup, addrs: &[[u8; 4]], timeout: Duration) -> Result<()> {
    let n = addrs.len();
    match setup {
        Setup::F2bXdp => bail!("f2b is loaded through its maps"),
        Setup::NftNetdev | Setup::NftPrerouting => {
            let (family, hook) = if setup == Setup::NftNetdev {
                (
                    "netdev",
                    format!("type filter hook ingress device \"{EDGE_IF}\" priority -500;"),
                )
            } else {
                (
                    "ip",
                    "type filter hook prerouting priority -300;".to_string(),
                )
            };
            let mut s = format!(
                "table {family} f2bbench {{\n  set banned {{ type ipv4_addr; size {}; }}\n  \
                 chain c {{ {hook} policy accept; ip saddr @banned counter drop; }}\n}}\n",
                n + 1024
            );
            for chunk in addrs.chunks(20_000) {
                s.push_str(&format!("add element {family} f2bbench banned {{ "));
                for (i, a) in chunk.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(&dotted(a));
                }
                s.push_str(" }\n");
            }
            let f = tempfile::NamedTempFile::new()?;
            std::fs::write(f.path(), s)?;
            run_in(
                ns,
                "nft",
                &["-f", &f.path().to_string_lossy()],
                None,
                timeout,
            )?;
        }
        Setup::IpsetIptables => {
            let mut s = format!(
                "create f2bbench hash:ip family inet hashsize {} maxelem {}\n",
                (n / 4).next_power_of_two().max(1024),
                (n + 1024).max(65536)
            );
            for a in addrs {
                s.push_str(&format!("add f2bbench {}\n", dotted(a)));
            }
            run_in(ns, "ipset", &["restore"], Some(s.as_bytes()), timeout)?;
            run_in(
                ns,
                "iptables",
                &[
                    "-w",
                    "-I",
                    "INPUT",
                    "-m",
                    "set",
                    "--match-set",
                    "f2bbench",
                    "src",
                    "-j",
                    "DROP",
                ],
                None,
                timeout,
            )?;
        }
        Setup::IptablesPerAddress => {
            // fail2ban's iptables actions: a chain per jail jumped to from INPUT, one rule per
            // banned address (its default blocktype REJECTs; DROP here so every setup does the
            // same thing to a banned packet).
            let mut s = String::from("*filter\n:F2B-BENCH - [0:0]\n-A INPUT -j F2B-BENCH\n");
            for a in addrs {
                s.push_str(&format!("-A F2B-BENCH -s {}/32 -j DROP\n", dotted(a)));
            }
            s.push_str("-A F2B-BENCH -j RETURN\nCOMMIT\n");
            run_in(
                ns,
                "iptables-restore",
                &["-w", "--noflush"],
                Some(s.as_bytes()),
                timeout,
            )?;
        }
    }
    Ok(())
}

/// Packets the peer's drop rule(s) counted so far.
pub fn dropped(ns: &NetNs, setup: Setup) -> Result<u64> {
    let t = Duration::from_secs(120);
    match setup {
        Setup::F2bXdp => bail!("f2b's counters are read from its map"),
        Setup::NftNetdev | Setup::NftPrerouting => {
            let family = if setup == Setup::NftNetdev {
                "netdev"
            } else {
                "ip"
            };
            let out = run_in(
                ns,
                "nft",
                &["-j", "list", "chain", family, "f2bbench", "c"],
                None,
                t,
            )?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let mut sum = 0;
            sum_counters(&v, &mut sum);
            Ok(sum)
        }
        Setup::IpsetIptables | Setup::IptablesPerAddress => {
            let chain = if setup == Setup::IpsetIptables {
                "INPUT"
            } else {
                "F2B-BENCH"
            };
            let out = run_in(
                ns,
                "iptables",
                &["-w", "-L", chain, "-v", "-x", "-n"],
                None,
                t,
            )?;
            Ok(out
                .lines()
                .filter(|l| l.contains("DROP"))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum())
        }
    }
}

fn sum_counters(v: &serde_json::Value, sum: &mut u64) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "counter" {
                    *sum += x["packets"].as_u64().unwrap_or(0);
                } else {
                    sum_counters(x, sum);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| sum_counters(x, sum)),
        _ => {}
    }
}
