//! Agent configuration: YAML read into raw serde types (unknown keys refused), then validated
//! in one step into [`Config`]. Every error names the file, the line and what was expected,
//! as `file:line: message`, and a config that fails validation changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use f2b_common::duration::{BanTime, parse_bantime};
use f2b_common::net::IpNet;
use f2b_common::proto::MANUAL_JAIL;
use serde::Deserialize;

use crate::actions::CommandAction;

/// The default configuration, embedded so the agent runs with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/f2b.yaml");
/// Default cap on addresses tracked as failing, per jail.
pub const DEFAULT_MAX_TRACKED: usize = 1 << 20;
/// Default longest log line.
pub const DEFAULT_MAXLINELEN: usize = 16 * 1024;
/// Where the agent looks for a config when --config is not given.
pub const SYSTEM_CONFIG: &str = "/etc/f2b/f2b.yaml";

/// A configuration error located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeCfg {
    #[default]
    Auto,
    Native,
    Skb,
}

impl std::str::FromStr for XdpModeCfg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "skb" => Ok(Self::Skb),
            _ => Err(format!("xdp mode {s:?}: expected auto, native or skb")),
        }
    }
}

/// Which destination ports a jail's bans cover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ports {
    #[default]
    All,
    Only(Vec<u16>),
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Port(u16),
            List(Vec<u16>),
        }
        let err = || {
            serde::de::Error::custom(format!(
                "ports: expected `all` or a list of 1 to {} port numbers (1-65535)",
                f2b_common::MAX_PORTS
            ))
        };
        match Raw::deserialize(d).map_err(|_| err())? {
            Raw::Word(w) if w == "all" => Ok(Ports::All),
            Raw::Word(_) => Err(err()),
            Raw::Port(p) if p > 0 => Ok(Ports::Only(vec![p])),
            Raw::Port(_) => Err(err()),
            Raw::List(mut l) => {
                l.sort_unstable();
                l.dedup();
                if l.is_empty() || l.len() > f2b_common::MAX_PORTS || l.contains(&0) {
                    return Err(err());
                }
                Ok(Ports::Only(l))
            }
        }
    }
}

/// A duration field (`10m`, `permanent` where allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dur(BanTime);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        let s = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a duration such as 90s, 10m, 1h, 2d, 1w or permanent",
            )
        })? {
            Raw::S(s) => s,
            Raw::N(n) => n.to_string(),
        };
        parse_bantime(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

fn finite(d: Dur, what: &str) -> Result<u64, String> {
    match d.0 {
        BanTime::Secs(s) => Ok(s),
        BanTime::Permanent => Err(format!("{what} cannot be permanent")),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIncrement {
    #[serde(default)]
    enabled: bool,
    factor: Option<f64>,
    maxtime: Option<Dur>,
    /// Bantime multipliers by previous ban count (the last repeats), instead of factor * 2^n.
    multipliers: Option<Vec<f64>>,
    /// Up to this much random time is added to an increased ban (so bans do not all end
    /// together and a botnet cannot time its return).
    rndtime: Option<Dur>,
    /// Count previous bans over all jails (true) or only this jail's (false, the default).
    overalljails: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    bantime: Option<Dur>,
    findtime: Option<Dur>,
    maxretry: Option<u32>,
    ignoreip: Option<Vec<IpNet>>,
    bantime_increment: Option<RawIncrement>,
    ports: Option<Ports>,
    ignoreself: Option<bool>,
    max_tracked: Option<usize>,
    /// Log readers wake at real-time priority (a bounded share of a CPU); see sched.rs.
    realtime: Option<bool>,
    actions: Option<Vec<RawAction>>,
}

/// `xdp` or `{command: {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawAction {
    Name(String),
    Command { command: CommandAction },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJail {
    enabled: Option<bool>,
    /// A stock filter name or an inline filter; detection is built on this (issue 3).
    filter: Option<serde_yaml::Value>,
    logpath: Option<Vec<String>>,
    backend: Option<Backend>,
    bantime: Option<Dur>,
    findtime: Option<Dur>,
    maxretry: Option<u32>,
    ignoreip: Option<Vec<IpNet>>,
    bantime_increment: Option<RawIncrement>,
    ports: Option<Ports>,
    /// Filter mode (e.g. sshd: normal, ddos, extra, aggressive).
    mode: Option<String>,
    /// Where to start in a log file with no saved position: `tail` (default) or `head`.
    start: Option<StartAt>,
    /// journalctl match expression for `backend: journal`, e.g. `_SYSTEMD_UNIT=sshd.service`.
    journalmatch: Option<String>,
    /// Longest line read; longer lines are cut, counted and reported.
    maxlinelen: Option<usize>,
    ignoreself: Option<bool>,
    max_tracked: Option<usize>,
    /// Log readers wake at real-time priority (a bounded share of a CPU); see sched.rs.
    realtime: Option<bool>,
    actions: Option<Vec<RawAction>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMaps {
    bans: Option<u32>,
    prefixes: Option<u32>,
    allow: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    min_prefix_v4: Option<u8>,
    min_prefix_v6: Option<u8>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interfaces: Option<Vec<String>>,
    xdp_mode: Option<XdpModeCfg>,
    database: Option<PathBuf>,
    socket: Option<PathBuf>,
    socket_mode: Option<String>,
    control_group: Option<String>,
    pin_dir: Option<PathBuf>,
    /// Directory of operator filters (NAME.yaml), searched before the stock ones.
    filters_dir: Option<PathBuf>,
    /// Also write the agent's log to this file (the recidive jail reads it).
    logfile: Option<PathBuf>,
    maps: Option<RawMaps>,
    guard: Option<RawGuard>,
    defaults: Option<RawDefaults>,
    jails: Option<BTreeMap<String, RawJail>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Head,
    #[default]
    Tail,
}

/// What a jail does with a ban besides the kernel map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The XDP map entry (always done; listed for clarity).
    Xdp,
    Command(CommandAction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Auto,
    Inotify,
    Polling,
    Journal,
}

/// fail2ban's bantime.increment: each further ban of an address lasts longer.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub enabled: bool,
    pub factor: f64,
    pub maxtime: u64,
    pub multipliers: Vec<f64>,
    pub rndtime: u64,
    pub overalljails: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JailConfig {
    pub name: String,
    pub enabled: bool,
    pub filter: Option<serde_yaml::Value>,
    pub logpath: Vec<String>,
    pub backend: Backend,
    pub bantime: BanTime,
    pub findtime: u64,
    pub maxretry: u32,
    pub ignoreip: Vec<IpNet>,
    pub increment: Increment,
    pub ports: Ports,
    pub mode: Option<String>,
    pub start: StartAt,
    pub journalmatch: Option<String>,
    pub maxlinelen: usize,
    /// Never ban the host's own addresses.
    pub ignoreself: bool,
    /// Most addresses tracked as failing at once (least recently seen evicted first).
    pub max_tracked: usize,
    /// The reader wakes at SCHED_FIFO priority, within a bounded share of a CPU.
    pub realtime: bool,
    pub actions: Vec<Action>,
}

impl JailConfig {
    /// True when the jail reads logs (it has a filter and somewhere to read).
    pub fn detects(&self) -> bool {
        self.enabled
            && self.filter.is_some()
            && (!self.logpath.is_empty() || self.backend == Backend::Journal)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    pub bans: u32,
    pub prefixes: u32,
    pub allow: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from (a path or "<embedded default>"), for messages.
    pub source: String,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeCfg,
    pub database: PathBuf,
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub control_group: Option<String>,
    pub pin_dir: PathBuf,
    pub filters_dir: Option<PathBuf>,
    pub logfile: Option<PathBuf>,
    pub maps: MapSizes,
    pub guard: Guard,
    /// Global allowlist: `defaults.ignoreip`, also written to the kernel allowlist.
    pub ignoreip: Vec<IpNet>,
    /// Jails by name; always includes the `manual` jail used by `f2b-ctl ban`.
    pub jails: BTreeMap<String, JailConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &name)
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
    }

    /// Loads `--config`, else /etc/f2b/f2b.yaml when present, else the embedded default.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => Config::from_file(p),
            None if Path::new(SYSTEM_CONFIG).exists() => {
                Config::from_file(Path::new(SYSTEM_CONFIG))
            }
            None => Config::embedded(),
        }
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                let mut message = e.to_string();
                // serde_yaml appends " at line L column C"; the prefix already says where.
                if let Some(i) = message.find(" at line ") {
                    message.truncate(i);
                }
                ConfigError {
                    file: file.to_string(),
                    line,
                    message,
                }
            })?
        };
        validate(raw, text, file)
    }

    pub fn jail(&self, name: &str) -> Option<&JailConfig> {
        self.jails.get(name)
    }
}

/// Line (1-based) of the first `key:` in the text, to place semantic errors.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || t.strip_prefix('"')
                    .and_then(|r| r.strip_prefix(key))
                    .is_some_and(|r| r.starts_with('"'))
        })
        .map(|i| i + 1)
}

fn validate(raw: RawConfig, text: &str, file: &str) -> Result<Config, ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        file: file.to_string(),
        line: line_of(text, key),
        message,
    };
    let d = raw.defaults.unwrap_or_default();
    let def_bantime = d.bantime.map(|b| b.0).unwrap_or(BanTime::Secs(600));
    let def_findtime = match d.findtime {
        Some(f) => finite(f, "findtime").map_err(|m| err("findtime", m))?,
        None => 600,
    };
    let def_maxretry = d.maxretry.unwrap_or(5);
    let ignoreip = d.ignoreip.unwrap_or_else(|| {
        vec![
            IpNet::host([127, 0, 0, 1].into()),
            IpNet::host(std::net::Ipv6Addr::LOCALHOST.into()),
        ]
    });
    let def_increment = increment(d.bantime_increment, None).map_err(|m| err("maxtime", m))?;
    let def_ports = d.ports.unwrap_or_default();
    let def_ignoreself = d.ignoreself.unwrap_or(true);
    let def_max_tracked = d.max_tracked.unwrap_or(DEFAULT_MAX_TRACKED);
    let def_realtime = d.realtime.unwrap_or(true);
    let def_actions = actions(d.actions.unwrap_or_default()).map_err(|m| err("actions", m))?;
    if def_maxretry == 0 {
        return Err(err("maxretry", "maxretry must be at least 1".into()));
    }

    let mut jails = BTreeMap::new();
    for (name, j) in raw.jails.unwrap_or_default() {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(err(
                &name,
                format!("jail name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        let findtime = match j.findtime {
            Some(f) => {
                finite(f, "findtime").map_err(|m| err(&name, format!("jail {name}: {m}")))?
            }
            None => def_findtime,
        };
        let maxretry = j.maxretry.unwrap_or(def_maxretry);
        if maxretry == 0 {
            return Err(err(
                &name,
                format!("jail {name}: maxretry must be at least 1"),
            ));
        }
        let inc = increment(j.bantime_increment, Some(&def_increment))
            .map_err(|m| err(&name, format!("jail {name}: {m}")))?;
        let jail = JailConfig {
            name: name.clone(),
            enabled: j.enabled.unwrap_or(true),
            filter: j.filter,
            logpath: j.logpath.unwrap_or_default(),
            backend: j.backend.unwrap_or_default(),
            bantime: j.bantime.map(|b| b.0).unwrap_or(def_bantime),
            findtime,
            maxretry,
            ignoreip: j.ignoreip.unwrap_or_default(),
            increment: inc,
            ports: j.ports.unwrap_or_else(|| def_ports.clone()),
            mode: j.mode,
            start: j.start.unwrap_or_default(),
            journalmatch: j.journalmatch,
            maxlinelen: j.maxlinelen.unwrap_or(DEFAULT_MAXLINELEN),
            ignoreself: j.ignoreself.unwrap_or(def_ignoreself),
            max_tracked: j.max_tracked.unwrap_or(def_max_tracked),
            realtime: j.realtime.unwrap_or(def_realtime),
            actions: match j.actions {
                Some(a) => actions(a).map_err(|m| err(&name, format!("jail {name}: {m}")))?,
                None => def_actions.clone(),
            },
        };
        if jail.maxlinelen < 256 || jail.max_tracked == 0 {
            return Err(err(
                &name,
                format!("jail {name}: maxlinelen must be >= 256 and max_tracked >= 1"),
            ));
        }
        if jail.backend == Backend::Journal && jail.journalmatch.is_none() {
            return Err(err(
                &name,
                format!("jail {name}: backend journal needs a journalmatch"),
            ));
        }
        jails.insert(name, jail);
    }
    // The manual jail always exists: f2b-ctl ban without --jail lands there. Its bans cover
    // every port unless the config defines the jail explicitly.
    jails
        .entry(MANUAL_JAIL.to_string())
        .or_insert_with(|| JailConfig {
            name: MANUAL_JAIL.to_string(),
            enabled: true,
            filter: None,
            logpath: vec![],
            backend: Backend::Auto,
            bantime: def_bantime,
            findtime: def_findtime,
            maxretry: def_maxretry,
            ignoreip: vec![],
            increment: def_increment.clone(),
            ports: Ports::All,
            mode: None,
            start: StartAt::Tail,
            journalmatch: None,
            maxlinelen: DEFAULT_MAXLINELEN,
            ignoreself: def_ignoreself,
            max_tracked: def_max_tracked,
            realtime: def_realtime,
            actions: def_actions.clone(),
        });

    let maps = raw.maps.unwrap_or_default();
    let maps = MapSizes {
        bans: maps.bans.unwrap_or(f2b_common::DEFAULT_MAX_BANS),
        prefixes: maps.prefixes.unwrap_or(f2b_common::DEFAULT_MAX_PREFIXES),
        allow: maps.allow.unwrap_or(f2b_common::DEFAULT_MAX_ALLOW),
    };
    for (key, v) in [
        ("bans", maps.bans),
        ("prefixes", maps.prefixes),
        ("allow", maps.allow),
    ] {
        if v == 0 || v > 1 << 26 {
            return Err(err(
                key,
                format!("maps.{key}: expected 1 to {} entries, got {v}", 1u32 << 26),
            ));
        }
    }
    let g = raw.guard.unwrap_or_default();
    let guard = Guard {
        min_prefix_v4: g.min_prefix_v4.unwrap_or(16),
        min_prefix_v6: g.min_prefix_v6.unwrap_or(32),
    };
    if guard.min_prefix_v4 == 0 || guard.min_prefix_v4 > 32 {
        return Err(err(
            "min_prefix_v4",
            "guard.min_prefix_v4: expected 1 to 32".into(),
        ));
    }
    if guard.min_prefix_v6 == 0 || guard.min_prefix_v6 > 128 {
        return Err(err(
            "min_prefix_v6",
            "guard.min_prefix_v6: expected 1 to 128".into(),
        ));
    }
    if ignoreip.len() > maps.allow as usize {
        return Err(err(
            "ignoreip",
            format!(
                "ignoreip has {} entries but maps.allow is {}",
                ignoreip.len(),
                maps.allow
            ),
        ));
    }
    let socket_mode = match raw.socket_mode {
        None => 0o600,
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                err(
                    "socket_mode",
                    format!("socket_mode {m:?}: expected octal like \"0600\""),
                )
            })?,
    };
    let interfaces = raw.interfaces.unwrap_or_else(|| vec!["eth0".into()]);
    for i in &interfaces {
        if i.is_empty() || i.len() > 15 || i.contains('/') || i.contains(char::is_whitespace) {
            return Err(err(
                "interfaces",
                format!("interface name {i:?} is not valid"),
            ));
        }
    }
    Ok(Config {
        source: file.to_string(),
        interfaces,
        xdp_mode: raw.xdp_mode.unwrap_or_default(),
        database: raw
            .database
            .unwrap_or_else(|| "/var/lib/f2b/f2b.redb".into()),
        socket: raw.socket.unwrap_or_else(|| "/run/f2b/f2b.sock".into()),
        socket_mode,
        control_group: raw.control_group,
        pin_dir: raw.pin_dir.unwrap_or_else(|| "/sys/fs/bpf/f2b".into()),
        filters_dir: raw.filters_dir,
        logfile: raw.logfile,
        maps,
        guard,
        ignoreip,
        jails,
    })
}

fn actions(raw: Vec<RawAction>) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    for a in raw {
        match a {
            RawAction::Name(n) if n == "xdp" => out.push(Action::Xdp),
            RawAction::Name(n) => {
                return Err(format!(
                    "unknown action {n:?}: expected `xdp` or `command: {{ban: ..., unban: ...}}`"
                ));
            }
            RawAction::Command { command } => {
                for (event, t) in command.templates() {
                    let bad = crate::actions::unknown_tags(t);
                    if !bad.is_empty() {
                        return Err(format!(
                            "command action {event}: unknown tag(s) {}; known: <ip> <jail> <bantime> <failures> <user>",
                            bad.iter()
                                .map(|b| format!("<{b}>"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ));
                    }
                    if t.split_whitespace().next().is_none() {
                        return Err(format!("command action {event}: empty command"));
                    }
                }
                if command.timeout == 0 {
                    return Err("command action: timeout must be at least 1 second".into());
                }
                out.push(Action::Command(command));
            }
        }
    }
    Ok(out)
}

fn increment(raw: Option<RawIncrement>, base: Option<&Increment>) -> Result<Increment, String> {
    let base = base.cloned().unwrap_or(Increment {
        enabled: false,
        factor: 1.0,
        maxtime: 7 * 86_400,
        multipliers: Vec::new(),
        rndtime: 0,
        overalljails: false,
    });
    let Some(r) = raw else { return Ok(base) };
    let factor = r.factor.unwrap_or(base.factor);
    if !(factor.is_finite() && factor > 0.0) {
        return Err(format!(
            "bantime_increment.factor must be a positive number, got {factor}"
        ));
    }
    let maxtime = match r.maxtime {
        Some(m) => finite(m, "bantime_increment.maxtime")?,
        None => base.maxtime,
    };
    let multipliers = r.multipliers.unwrap_or(base.multipliers);
    if multipliers.iter().any(|m| !(m.is_finite() && *m > 0.0)) {
        return Err("bantime_increment.multipliers must be positive numbers".into());
    }
    let rndtime = match r.rndtime {
        Some(d) => finite(d, "bantime_increment.rndtime")?,
        None => base.rndtime,
    };
    Ok(Increment {
        enabled: r.enabled,
        factor,
        maxtime,
        multipliers,
        rndtime,
        overalljails: r.overalljails.unwrap_or(base.overalljails),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.interfaces, vec!["eth0"]);
        assert_eq!(c.socket_mode, 0o600);
        let sshd = c.jail("sshd").unwrap();
        assert_eq!(sshd.maxretry, 3);
        assert_eq!(sshd.ports, Ports::Only(vec![22]));
        assert_eq!(sshd.bantime, BanTime::Secs(600));
        assert!(c.jail(MANUAL_JAIL).is_some());
        assert_eq!(c.jail(MANUAL_JAIL).unwrap().ports, Ports::All);
        assert_eq!(c.ignoreip.len(), 2);
    }

    #[test]
    fn errors_carry_file_and_line() {
        let text = "interfaces: [veth0]\ndefaults:\n  bantime: 10x\n";
        let e = Config::parse(text, "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("t.yaml:3:"), "{e}");
        assert!(e.message.contains("10x"), "{e}");

        let e = Config::parse("interfaces: [veth0]\nbogus: 1\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("bogus"), "{e}");

        let e = Config::parse("defaults:\n  ignoreip: [127.0.0.1, nope]\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("nope"), "{e}");

        let e = Config::parse("jails:\n  sshd:\n    ports: [0]\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");

        let e = Config::parse("jails:\n  \"bad name\":\n    maxretry: 1\n", "t.yaml").unwrap_err();
        assert!(e.message.contains("bad name"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");

        let e = Config::parse("maps:\n  bans: 0\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = Config::parse("socket_mode: \"999\"\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn ports_and_overrides() {
        let c = Config::parse(
            "defaults:\n  ports: [80, 443]\n  bantime: permanent\njails:\n  web: {}\n  dns:\n    ports: 53\n    bantime: 1h\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.jail("web").unwrap().ports, Ports::Only(vec![80, 443]));
        assert_eq!(c.jail("web").unwrap().bantime, BanTime::Permanent);
        assert_eq!(c.jail("dns").unwrap().ports, Ports::Only(vec![53]));
        assert_eq!(c.jail("dns").unwrap().bantime, BanTime::Secs(3600));
        assert!(Config::parse("defaults:\n  findtime: permanent\n", "t").is_err());
    }

    #[test]
    fn realtime_defaults_on_and_is_overridden_per_jail() {
        let c = Config::parse("jails:\n  a: {}\n  b:\n    realtime: false\n", "t.yaml").unwrap();
        assert!(c.jails["a"].realtime);
        assert!(!c.jails["b"].realtime);
        let c = Config::parse(
            "defaults:\n  realtime: false\njails:\n  a: {}\n  b:\n    realtime: true\n",
            "t.yaml",
        )
        .unwrap();
        assert!(!c.jails["a"].realtime);
        assert!(c.jails["b"].realtime);
        let e = Config::parse("jails:\n  a:\n    realtime: sometimes\n", "t.yaml").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn actions_and_detection_keys() {
        let c = Config::parse(
            "jails:\n  sshd:\n    filter: sshd\n    mode: aggressive\n    logpath: [/tmp/x.log]\n    start: head\n    actions:\n      - xdp\n      - command: {ban: \"/bin/echo <ip> <user>\", timeout: 3}\n",
            "t",
        )
        .unwrap();
        let j = c.jail("sshd").unwrap();
        assert!(j.detects());
        assert_eq!(j.start, StartAt::Head);
        assert_eq!(j.mode.as_deref(), Some("aggressive"));
        assert_eq!(j.actions.len(), 2);
        assert!(matches!(&j.actions[1], Action::Command(c) if c.timeout == 3 && !c.shell));
        let e = Config::parse(
            "jails:\n  sshd:\n    actions:\n      - command: {ban: \"/bin/echo <ipp>\"}\n",
            "t",
        )
        .unwrap_err();
        assert!(e.message.contains("<ipp>"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(Config::parse("jails:\n  j:\n    actions: [nftables]\n", "t").is_err());
        assert!(Config::parse("jails:\n  j:\n    backend: journal\n", "t").is_err());
        assert!(Config::parse("defaults:\n  ports: [1,2,3,4,5,6,7,8,9]\n", "t").is_err());
    }
}
