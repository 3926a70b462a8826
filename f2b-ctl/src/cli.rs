//! Command line: clap definitions, client-side validation and the mapping to [`Request`].
//!
//! Validation happens while clap parses (value parsers), so a bad address, duration or
//! combination of arguments is a usage error (exit 2) that names the argument, and nothing
//! is ever sent to the agent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use f2b_common::duration::{BanTime, parse_bantime, parse_secs};
use f2b_common::net::IpNet;
use f2b_common::proto::Request;

/// Where the agent listens unless `--socket` or `F2B_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/f2b/f2b.sock";

/// Environment variable that replaces [`DEFAULT_SOCKET`] (`--socket` still wins).
pub const SOCKET_ENV: &str = "F2B_SOCKET";

/// Operator CLI for the f2b agent.
#[derive(Debug, Parser)]
#[command(
    name = "f2b-ctl",
    version,
    about = "Operator CLI for the f2b agent",
    after_help = "Exit codes: 0 ok, 1 the agent refused, 2 usage error, 3 the agent cannot be reached."
)]
pub struct Cli {
    /// Unix socket of the agent [default: $F2B_SOCKET, else /run/f2b/f2b.sock].
    // Not clap's `env`: an empty F2B_SOCKET would then be an error instead of "unset".
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print the response data as one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for the agent to answer (90s, 2m, ...).
    #[arg(
        long,
        global = true,
        value_name = "DUR",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The socket to use: `--socket`, else a non-empty `F2B_SOCKET`, else [`DEFAULT_SOCKET`].
    pub fn socket_path(&self) -> PathBuf {
        resolve_socket(self.socket.as_deref(), std::env::var_os(SOCKET_ENV))
    }
}

fn resolve_socket(flag: Option<&std::path::Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    match (flag, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the agent answers (prints "pong").
    Ping,

    /// Show interfaces and jails, or one jail in detail.
    Status {
        /// Show only this jail, with its banned addresses.
        #[arg(value_name = "JAIL", value_parser = parse_jail)]
        jail: Option<String>,
    },

    /// Ban addresses or prefixes by hand.
    Ban {
        /// IPv4/IPv6 addresses or CIDR prefixes.
        #[arg(
            value_name = "IP|CIDR",
            required_unless_present = "file",
            value_parser = parse_target
        )]
        targets: Vec<IpNet>,

        /// Also ban the addresses/prefixes listed in FILE (`-`: standard input), separated
        /// by whitespace or newlines; `#` starts a comment. All go in one request.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,

        /// Jail the ban belongs to (default: "manual").
        #[arg(long, short, value_name = "J", value_parser = parse_jail)]
        jail: Option<String>,

        /// Ban duration: 90s, 10m, 1h, 2d, 1w or permanent (default: the jail's bantime).
        #[arg(long, short, value_name = "DUR", value_parser = parse_time)]
        time: Option<BanTime>,

        /// Allow prefixes shorter than the agent's configured minimum (never /0).
        #[arg(long)]
        force: bool,
    },

    /// Lift bans: the given addresses/prefixes, or --all.
    #[command(
        group(ArgGroup::new("what").args(["targets", "all"]).required(true)),
        override_usage = "f2b-ctl unban [OPTIONS] <IP|CIDR>...\n       f2b-ctl unban [OPTIONS] --all"
    )]
    Unban {
        /// IPv4/IPv6 addresses or CIDR prefixes.
        #[arg(value_name = "IP|CIDR", value_parser = parse_target)]
        targets: Vec<IpNet>,

        /// Lift every ban (of --jail only, when given).
        #[arg(long, conflicts_with = "targets")]
        all: bool,

        /// Only lift bans of this jail.
        #[arg(long, short, value_name = "J", value_parser = parse_jail)]
        jail: Option<String>,
    },

    /// List active bans.
    List {
        /// Only bans of this jail.
        #[arg(long, short, value_name = "J", value_parser = parse_jail)]
        jail: Option<String>,
    },

    /// Kernel counters and BPF map usage.
    Stats,

    /// Make the agent reread its configuration.
    Reload,

    /// Test a filter on a log file or one line, offline (no agent needed), like
    /// fail2ban-regex. With --json: one object per matched line.
    Regex(crate::regex::RegexArgs),

    /// Stop the agent. Bans stay enforced by the XDP program unless --detach.
    Stop {
        /// Also detach the XDP program and remove the pinned maps: enforcement ends.
        #[arg(long)]
        detach: bool,
    },
}

impl Command {
    /// The request this command sends (None for `regex`, which runs offline). Addresses go
    /// in normalised form (host bits cleared, IPv4-mapped IPv6 as IPv4), each once, in the
    /// order given.
    pub fn to_request(&self) -> Option<Request> {
        Some(match self {
            Command::Ping => Request::Ping {},
            Command::Status { jail } => Request::Status { jail: jail.clone() },
            Command::Ban {
                targets,
                jail,
                time,
                force,
                file: _,
            } => Request::Ban {
                ips: normalise(targets),
                jail: jail.clone(),
                time: time.map(|t| t.to_string()),
                force: *force,
                compact: true,
            },
            Command::Unban { targets, all, jail } => Request::Unban {
                ips: normalise(targets),
                all: *all,
                jail: jail.clone(),
            },
            Command::List { jail } => Request::List { jail: jail.clone() },
            Command::Stats => Request::Stats {},
            Command::Reload => Request::Reload {},
            Command::Stop { detach } => Request::Stop { detach: *detach },
            Command::Regex(_) => return None,
        })
    }
}

impl Command {
    /// The command with the addresses of `ban --file` read and added to its targets (after
    /// those on the command line). A bad address is a usage error naming the file and line.
    pub fn with_file_targets(&self) -> Result<Option<Command>, String> {
        let Command::Ban {
            targets,
            jail,
            time,
            force,
            file: Some(path),
        } = self
        else {
            return Ok(None);
        };
        let shown = path.display();
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("reading addresses from standard input: {e}"))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| format!("reading {shown}: {e}"))?
        };
        let mut all = targets.clone();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            for word in line.split_whitespace() {
                let net = parse_target(word)
                    .map_err(|e| format!("{shown}:{}: invalid address {word:?}: {e}", n + 1))?;
                all.push(net);
            }
        }
        if all.is_empty() {
            return Err(format!("{shown}: no address to ban"));
        }
        Ok(Some(Command::Ban {
            targets: all,
            jail: jail.clone(),
            time: *time,
            force: *force,
            file: None,
        }))
    }
}

fn normalise(targets: &[IpNet]) -> Vec<String> {
    Addrs::normalised(targets)
        .iter()
        .map(str::to_string)
        .collect()
}

/// The addresses of a request in normalised form (host bits cleared, IPv4-mapped IPv6 as
/// IPv4), each once, in the order given: one text buffer and the end of each address in it,
/// not a `String` per address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addrs {
    text: String,
    ends: Vec<usize>,
}

impl Addrs {
    pub fn normalised(targets: &[IpNet]) -> Addrs {
        let mut seen: f2b_agent::bans::index::FastSet<IpNet> =
            f2b_agent::bans::index::FastSet::with_capacity_and_hasher(
                targets.len(),
                Default::default(),
            );
        let mut a = Addrs {
            text: String::with_capacity(targets.len() * 24),
            ends: Vec::with_capacity(targets.len()),
        };
        for n in targets {
            if seen.insert(*n) {
                n.push_to(&mut a.text);
                a.ends.push(a.text.len());
            }
        }
        a
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Address number `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = self.text.get(start..end).unwrap_or("");
            start = end;
            s
        })
    }
}

/// Parses the command line as [`Cli::parse_from`] does (same result; a usage error, help or
/// version prints and exits the same way, because clap then parses the whole line), but
/// reads the addresses of a `ban` itself. Clap keeps a type-erased, reference-counted value
/// and an owned copy of the raw text per value, which for a 50k-address ban cost more than
/// everything else f2b-ctl does: here clap sees the options and only the first address.
pub fn parse_args(args: Vec<std::ffi::OsString>) -> Cli {
    match parse_ban_fast(&args) {
        Some(cli) => cli,
        None => Cli::parse_from(args),
    }
}

/// The fast `ban` parse of [`parse_args`]; None when the line is not a `ban` whose options
/// this recognises, when an address is invalid, or when clap refuses the rest: the caller
/// then lets clap parse (and report on) the whole line.
fn parse_ban_fast(args: &[std::ffi::OsString]) -> Option<Cli> {
    // Options that take the next argument as their value, global ones included.
    const VALUED: [&str; 5] = ["--jail", "--time", "--file", "--socket", "--timeout"];
    let mut i = 1;
    loop {
        let a = args.get(i)?.to_str()?;
        if a == "ban" {
            break;
        }
        match a {
            "--socket" | "--timeout" => i += 2,
            "--json" => i += 1,
            _ if a.starts_with("--socket=") || a.starts_with("--timeout=") => i += 1,
            _ => return None,
        }
    }
    let mut kept: Vec<std::ffi::OsString> = args.get(..=i)?.to_vec();
    let mut targets = Vec::with_capacity(args.len() - i);
    let mut positional_only = false;
    i += 1;
    while let Some(arg) = args.get(i) {
        let a = arg.to_str()?;
        if positional_only || !a.starts_with('-') || a == "-" {
            targets.push(parse_target(a).ok()?);
            if targets.len() == 1 {
                // Clap still sees one address: `ban` requires one unless --file is given.
                kept.push(arg.clone());
            }
            i += 1;
            continue;
        }
        let takes_value = if a == "--" {
            positional_only = true;
            false
        } else if a.starts_with("--") {
            VALUED.contains(&a)
        } else {
            // Short options: -j, -t and -f take a value, in this or the next argument.
            match a.as_bytes().get(1) {
                Some(b'j' | b't' | b'f') => a.len() == 2,
                _ => return None,
            }
        };
        kept.push(arg.clone());
        if takes_value {
            kept.push(args.get(i + 1)?.clone());
            i += 1;
        }
        i += 1;
    }
    let mut cli = Cli::try_parse_from(kept).ok()?;
    match &mut cli.command {
        Command::Ban { targets: t, .. } => *t = targets,
        _ => return None,
    }
    Some(cli)
}

/// An address or prefix; /0 is refused because it would ban (or name) the whole Internet.
pub fn parse_target(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|e: f2b_common::net::NetParseError| e.to_string())?;
    if net.prefix_len() == 0 {
        let family = if net.is_ipv4() { "IPv4" } else { "IPv6" };
        return Err(format!(
            "{net} covers every {family} address; a /0 prefix is refused"
        ));
    }
    Ok(net)
}

fn parse_time(s: &str) -> Result<BanTime, String> {
    parse_bantime(s).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_secs(s).map(Duration::from_secs).map_err(|_| {
        format!("bad timeout {s:?}: expected a non-zero duration such as 5s, 30s or 2m")
    })
}

fn parse_jail(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a jail name cannot be empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("f2b-ctl").chain(args.iter().copied()))
    }

    fn req(args: &[&str]) -> Request {
        parse(args).unwrap().command.to_request().unwrap()
    }

    fn usage_err(args: &[&str]) -> clap::Error {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        e
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn maps_every_subcommand() {
        assert_eq!(req(&["ping"]), Request::Ping {});
        assert_eq!(req(&["status"]), Request::Status { jail: None });
        assert_eq!(
            req(&["status", "sshd"]),
            Request::Status {
                jail: Some("sshd".into())
            }
        );
        assert_eq!(req(&["list"]), Request::List { jail: None });
        assert_eq!(
            req(&["list", "--jail", "sshd"]),
            Request::List {
                jail: Some("sshd".into())
            }
        );
        assert_eq!(req(&["stats"]), Request::Stats {});
        assert_eq!(req(&["reload"]), Request::Reload {});
        assert_eq!(req(&["stop"]), Request::Stop { detach: false });
        assert_eq!(req(&["stop", "--detach"]), Request::Stop { detach: true });
    }

    #[test]
    fn ban_normalises_and_maps_options() {
        assert_eq!(
            req(&[
                "ban",
                "198.18.0.7",
                "198.18.1.9/24",
                "::ffff:198.18.0.9",
                "[fd00:f2b::1]",
                "198.18.0.7",
                "--jail",
                "sshd",
                "--time",
                "3600s",
                "--force"
            ]),
            Request::Ban {
                ips: vec![
                    "198.18.0.7".into(),
                    "198.18.1.0/24".into(),
                    "198.18.0.9".into(),
                    "fd00:f2b::1".into()
                ],
                jail: Some("sshd".into()),
                time: Some("1h".into()),
                force: true,
                compact: true,
            }
        );
        assert_eq!(
            req(&["ban", "fd00:f2b::/48", "-t", "permanent"]),
            Request::Ban {
                ips: vec!["fd00:f2b::/48".into()],
                jail: None,
                time: Some("permanent".into()),
                force: false,
                compact: true,
            }
        );
    }

    #[test]
    fn ban_file_adds_targets_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("f2b-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(
            &good,
            "# blocklist\n198.18.0.9\n\n  fd00:f2b::1 198.18.1.9/24 # two\n198.18.0.7\n",
        )
        .unwrap();
        let cli = parse(&[
            "ban",
            "198.18.0.7",
            "--file",
            good.to_str().unwrap(),
            "-t",
            "1h",
        ])
        .unwrap();
        let cmd = cli.command.with_file_targets().unwrap().unwrap();
        assert_eq!(
            cmd.to_request().unwrap(),
            Request::Ban {
                ips: vec![
                    "198.18.0.7".into(),
                    "198.18.0.9".into(),
                    "fd00:f2b::1".into(),
                    "198.18.1.0/24".into()
                ],
                jail: None,
                time: Some("1h".into()),
                force: false,
                compact: true,
            }
        );
        // --file alone is enough; without it an address is required.
        let only = parse(&["ban", "-f", good.to_str().unwrap()]).unwrap();
        assert!(only.command.with_file_targets().unwrap().is_some());
        usage_err(&["ban", "--time", "1h"]);
        // No file: nothing to add.
        let plain = parse(&["ban", "198.18.0.7"]).unwrap();
        assert!(plain.command.with_file_targets().unwrap().is_none());
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "198.18.0.1\n198.18.0.2 nope\n").unwrap();
        let cli = parse(&["ban", "--file", bad.to_str().unwrap()]).unwrap();
        let e = cli.command.with_file_targets().unwrap_err();
        assert!(e.contains("bad.txt:2:") && e.contains("\"nope\""), "{e}");
        std::fs::write(&bad, "0.0.0.0/0\n").unwrap();
        let e = cli.command.with_file_targets().unwrap_err();
        assert!(e.contains("/0 prefix is refused"), "{e}");
        std::fs::write(&bad, "# nothing\n").unwrap();
        assert!(cli.command.with_file_targets().is_err());
        let missing = parse(&["ban", "--file", "/nonexistent/f2b/list"]).unwrap();
        assert!(missing.command.with_file_targets().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The fast `ban` parse gives what clap gives for the whole line, and leaves every line
    /// it does not fully understand (or clap refuses) to clap.
    #[test]
    fn fast_ban_parse_is_claps() {
        let os = |args: &[&str]| -> Vec<std::ffi::OsString> {
            std::iter::once("f2b-ctl")
                .chain(args.iter().copied())
                .map(Into::into)
                .collect()
        };
        let same = [
            &["ban", "198.18.0.7"][..],
            &[
                "ban",
                "198.18.0.7",
                "fd00:f2b::1",
                "198.18.1.9/24",
                "198.18.0.7",
            ],
            &[
                "--json",
                "ban",
                "-t",
                "1h",
                "198.18.0.7",
                "--jail",
                "sshd",
                "::ffff:1.2.3.4",
            ],
            &[
                "--socket",
                "/x",
                "--timeout=2m",
                "ban",
                "1.2.3.4",
                "-jsshd",
                "--force",
                "5.6.7.8",
            ],
            &[
                "ban",
                "1.2.3.4",
                "--time=1d",
                "--socket=/y",
                "--json",
                "5.6.7.8",
                "--timeout",
                "9s",
            ],
            &["ban", "-f", "/some/file"],
            &["ban", "--file", "/some/file", "-t", "permanent", "1.2.3.4"],
            &["ban", "-j", "sshd", "--", "1.2.3.4", "5.6.7.8"],
            &["ban", "1.2.3.4", "--", "[fd00:f2b::9]"],
        ];
        for args in same {
            let fast = parse_ban_fast(&os(args)).unwrap_or_else(|| panic!("{args:?}"));
            let clap = parse(args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{args:?}");
        }
        // Not taken (clap decides, and reports the same errors as before).
        for args in [
            &["ban"][..],
            &["ban", "not-an-ip"],
            &["ban", "1.2.3.4", "0.0.0.0/0"],
            &["ban", "1.2.3.4", "--time", "10x"],
            &["ban", "1.2.3.4", "--bogus"],
            &["ban", "1.2.3.4", "-h"],
            &["ban", "1.2.3.4", "-"],
            &["ban", "1.2.3.4", "--jail"],
            &["ban", "1.2.3.4", "--jail", ""],
            &["--help"],
            &["unban", "1.2.3.4"],
            &["list"],
            &["--socket"],
        ] {
            assert!(parse_ban_fast(&os(args)).is_none(), "{args:?}");
        }
        // Valid lines the fast path leaves alone still parse.
        let cli = parse_args(os(&["unban", "1.2.3.4", "--json"]));
        assert!(cli.json);
        let cli = parse_args(os(&["ban", "1.2.3.4", "5.6.7.8", "--force"]));
        let Command::Ban { targets, force, .. } = &cli.command else {
            panic!("{cli:?}")
        };
        assert!(*force);
        assert_eq!(targets.len(), 2);
    }

    #[test]
    fn addrs_are_normalised_once_each_in_order() {
        let t: Vec<IpNet> = [
            "198.18.1.9/24",
            "::ffff:198.18.0.9",
            "fd00:f2b::1",
            "198.18.0.9",
            "198.18.1.0/24",
        ]
        .iter()
        .map(|s| parse_target(s).unwrap())
        .collect();
        let a = Addrs::normalised(&t);
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            ["198.18.1.0/24", "198.18.0.9", "fd00:f2b::1"]
        );
        assert_eq!(a.get(1), Some("198.18.0.9"));
        assert_eq!(a.get(3), None);
        assert!(Addrs::normalised(&[]).is_empty());
    }

    #[test]
    fn unban_forms() {
        assert_eq!(
            req(&["unban", "198.18.0.7", "-j", "manual"]),
            Request::Unban {
                ips: vec!["198.18.0.7".into()],
                all: false,
                jail: Some("manual".into())
            }
        );
        assert_eq!(
            req(&["unban", "--all"]),
            Request::Unban {
                ips: vec![],
                all: true,
                jail: None
            }
        );
    }

    #[test]
    fn global_options_before_and_after_subcommand() {
        for args in [
            &["--json", "--socket", "/x", "list"][..],
            &["list", "--json", "--socket", "/x"][..],
            &["--socket=/x", "list", "--json"][..],
        ] {
            let cli = parse(args).unwrap();
            assert!(cli.json, "{args:?}");
            assert_eq!(cli.socket, Some(PathBuf::from("/x")), "{args:?}");
        }
        let cli = parse(&["ping", "--timeout", "2m"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(120));
        assert!(!cli.json);
    }

    #[test]
    fn socket_precedence() {
        let flag = std::path::Path::new("/flag");
        assert_eq!(
            resolve_socket(Some(flag), Some("/env".into())),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_socket(None, Some("/env".into())),
            PathBuf::from("/env")
        );
        assert_eq!(
            resolve_socket(None, Some("".into())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(resolve_socket(None, None), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn refuses_bad_addresses_naming_the_argument() {
        let e = usage_err(&["ban", "not-an-ip"]).to_string();
        assert!(e.contains("not-an-ip") && e.contains("IP|CIDR"), "{e}");
        let e = usage_err(&["ban", "198.18.0.7", "1.2.3.4/33"]).to_string();
        assert!(e.contains("/33"), "{e}");
        for whole in ["0.0.0.0/0", "::/0", "10.1.2.3/0"] {
            let e = usage_err(&["ban", whole]).to_string();
            assert!(e.contains("/0 prefix is refused"), "{whole}: {e}");
            usage_err(&["unban", whole]);
        }
    }

    #[test]
    fn refuses_bad_durations() {
        let e = usage_err(&["ban", "198.18.0.7", "--time", "10x"]).to_string();
        assert!(e.contains("--time") && e.contains("10x"), "{e}");
        usage_err(&["ban", "198.18.0.7", "--time", "0s"]);
        usage_err(&["ping", "--timeout", "permanent"]);
    }

    #[test]
    fn regex_is_offline() {
        let cli = parse(&[
            "regex",
            "/var/log/auth.log",
            "sshd",
            "--mode",
            "aggressive",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Regex(a) = &cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(a.input, "/var/log/auth.log");
        assert_eq!(a.filter, "sshd");
        assert_eq!(a.mode.as_deref(), Some("aggressive"));
        assert_eq!(cli.command.to_request(), None);
        usage_err(&["regex", "only-one-arg"]);
    }

    #[test]
    fn refuses_bad_combinations() {
        let e = usage_err(&["unban"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = usage_err(&["unban", "198.18.0.7", "--all"]);
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(
            usage_err(&["ban"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        usage_err(&["ban", "198.18.0.7", "--jail", ""]);
        usage_err(&["status", "a", "b"]);
        usage_err(&["explode"]);
        usage_err(&[]);
    }
}
