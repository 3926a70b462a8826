//! The ban manager: the one place where bans are decided, enforced (kernel maps), persisted
//! (redb) and expired. Every change is validated whole before anything is written, so a
//! refused request changes nothing, and a failure halfway is rolled back.
//!
//! Methods block (map syscalls, redb commits): the agent calls them from `spawn_blocking`.

use std::collections::{BTreeSet, HashMap};

use f2b_common::duration::{BanTime, parse_bantime};
use f2b_common::net::IpNet;
use f2b_common::proto::{
    BanInfo, BanResult, InterfaceStatus, JailStatus, ListData, MANUAL_JAIL, MapUsage, StatsData,
    UnbanResult,
};
use f2b_common::{BanValue, MAX_PORTS, maps};

use crate::actions::{ActionEvent, Tags};
use crate::clock::{boottime_ns, kernel_expiry, unix_from_kernel_expiry, unix_now};
use crate::config::Action;
use crate::config::{Config, Increment, JailConfig, Ports};
use crate::jail::{FailStats, Ticket};
use crate::kernel::{Kernel, KernelError};
use crate::store::{FilePos, Store, StoredBan};

/// Jail given to kernel entries found without a database record at start.
pub const RECOVERED_JAIL: &str = "recovered";

/// A ban request as the control path hands it over (strings still unparsed).
#[derive(Debug, Clone, Default)]
pub struct BanRequest {
    pub ips: Vec<String>,
    pub jail: Option<String>,
    pub time: Option<String>,
    pub force: bool,
}

/// What start-up reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub restored: usize,
    pub adopted: usize,
    pub expired: usize,
    pub failed: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    exact_v4: u64,
    exact_v6: u64,
    prefix_v4: u64,
    prefix_v6: u64,
}

impl Usage {
    fn slot(&mut self, ip: &IpNet) -> &mut u64 {
        match (ip.is_ipv4(), ip.is_host()) {
            (true, true) => &mut self.exact_v4,
            (false, true) => &mut self.exact_v6,
            (true, false) => &mut self.prefix_v4,
            (false, false) => &mut self.prefix_v6,
        }
    }
}

pub struct BanManager {
    cfg: Config,
    kernel: Kernel,
    store: Store,
    active: HashMap<IpNet, StoredBan>,
    /// (until, ip) of every non-permanent ban: the next expiry is the first element.
    expiry: BTreeSet<(u64, IpNet)>,
    usage: Usage,
    banned_total: HashMap<String, u64>,
    /// Detection counters per jail, as its reader thread last reported them.
    jail_stats: HashMap<String, FailStats>,
    /// The host's own addresses (never banned by jails with `ignoreself`).
    self_addrs: Vec<std::net::IpAddr>,
    /// Bans a jail decided but could not enforce (map full, kernel error), per jail.
    ban_errors: HashMap<String, u64>,
    /// Where ban/unban events go for the jails' command actions.
    actions: Option<std::sync::mpsc::Sender<ActionEvent>>,
}

/// A ban a jail made, as handed to its actions.
#[derive(Debug, Clone)]
pub struct JailBan {
    pub info: BanInfo,
    pub bantime: BanTime,
    pub ticket: Ticket,
}

/// The host's own addresses, from getifaddrs (in the agent's network namespace).
pub fn host_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return out;
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: p is a valid node of the list returned by getifaddrs.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
            let fam = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if fam == libc::AF_INET {
                // SAFETY: family AF_INET means the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(std::net::IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if fam == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    out.sort();
    out.dedup();
    out
}

fn ports_of(jail: &JailConfig) -> Vec<u16> {
    match &jail.ports {
        Ports::All => vec![],
        Ports::Only(p) => p.clone(),
    }
}

/// Union of two port scopes (empty = all ports); more than MAX_PORTS widens to all.
fn merge_ports(a: &[u16], b: &[u16]) -> Vec<u16> {
    if a.is_empty() || b.is_empty() {
        return vec![];
    }
    let mut v: Vec<u16> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    if v.len() > MAX_PORTS { vec![] } else { v }
}

fn kernel_value(ban: &StoredBan) -> BanValue {
    let mut v = BanValue::new(kernel_expiry(ban.until));
    for (i, p) in ban.ports.iter().take(MAX_PORTS).enumerate() {
        v.ports[i] = *p;
    }
    v.nports = ban.ports.len().min(MAX_PORTS) as u16;
    v
}

/// bantime.increment as fail2ban defines it: after n previous bans, a ban lasts
/// bantime * factor * 2^n (n capped at 20), or bantime * multipliers[n] (the last multiplier
/// repeats) when multipliers are given; at most maxtime. Random extra time (rndtime) is added
/// by the caller, see [`jitter`].
pub fn increased_bantime(base: u64, prior_bans: u32, inc: &Increment) -> u64 {
    if !inc.enabled || prior_bans == 0 {
        return base;
    }
    let mult = match inc.multipliers.last() {
        Some(last) => *inc.multipliers.get(prior_bans as usize).unwrap_or(last),
        None => (1u64 << prior_bans.min(20)) as f64 * inc.factor,
    };
    let secs = (base as f64 * mult).min(inc.maxtime as f64);
    (secs as u64).max(1)
}

/// Up to `rndtime` seconds of random extra time for an increased ban (0 when the increment
/// did not apply).
pub fn jitter(prior_bans: u32, inc: &Increment) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if !inc.enabled || prior_bans == 0 || inc.rndtime == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::boottime_ns());
    h.finish() % (inc.rndtime + 1)
}

impl BanManager {
    pub fn new(cfg: Config, kernel: Kernel, store: Store) -> BanManager {
        BanManager {
            cfg,
            kernel,
            store,
            active: HashMap::new(),
            expiry: BTreeSet::new(),
            usage: Usage::default(),
            banned_total: HashMap::new(),
            jail_stats: HashMap::new(),
            self_addrs: host_addresses(),
            ban_errors: HashMap::new(),
            actions: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Sends ban/unban events of jails with command actions to `tx` from now on.
    pub fn set_action_sink(&mut self, tx: std::sync::mpsc::Sender<ActionEvent>) {
        self.actions = Some(tx);
    }

    /// Queues `event` for the command actions of `jail` (start/stop/ban/unban).
    pub fn emit(
        &self,
        event: &'static str,
        jail: &str,
        ip: &str,
        bantime: &str,
        failures: u32,
        user: &str,
    ) {
        let Some(tx) = &self.actions else { return };
        let Some(j) = self.cfg.jails.get(jail) else {
            return;
        };
        let actions: Vec<_> = j
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Command(c) => Some(c.clone()),
                Action::Xdp => None,
            })
            .collect();
        if actions.is_empty() {
            return;
        }
        let tags = Tags {
            ip: ip.to_string(),
            jail: jail.to_string(),
            bantime: bantime.to_string(),
            failures: failures.to_string(),
            user: user.to_string(),
        };
        let _ = tx.send(ActionEvent {
            event,
            actions,
            tags,
        });
    }

    fn emit_unban(&self, ip: &IpNet, ban: &StoredBan) {
        let bantime = match ban.until {
            Some(u) => u.saturating_sub(ban.since).to_string(),
            None => "-1".to_string(),
        };
        self.emit("unban", &ban.jail, &ip.to_string(), &bantime, 0, "");
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    fn track(&mut self, ip: IpNet, ban: StoredBan) {
        if let Some(old) = self.active.get(&ip) {
            if let Some(u) = old.until {
                self.expiry.remove(&(u, ip));
            }
        } else {
            *self.usage.slot(&ip) += 1;
        }
        if let Some(u) = ban.until {
            self.expiry.insert((u, ip));
        }
        self.active.insert(ip, ban);
    }

    fn untrack(&mut self, ip: &IpNet) -> Option<StoredBan> {
        let old = self.active.remove(ip)?;
        if let Some(u) = old.until {
            self.expiry.remove(&(u, *ip));
        }
        *self.usage.slot(ip) -= 1;
        Some(old)
    }

    /// Makes kernel and database agree at start: what the database holds and has not expired
    /// is enforced; an unexpired kernel entry the database lacks (a ban enforced just before a
    /// crash, before its commit) is adopted into the database and reported; expired entries
    /// are removed from both. Also writes the allowlist.
    pub fn reconcile(&mut self) -> Result<Reconciled, String> {
        let mut r = Reconciled::default();
        let now = unix_now();
        let boot = boottime_ns();
        let mut dels = Vec::new();
        let mut puts = Vec::new();
        for (ip, ban) in self.store.load_bans().map_err(|e| e.to_string())? {
            if ban.until.is_some_and(|u| u <= now) {
                dels.push(ip);
                let _ = self.kernel.remove_ban(&ip);
                r.expired += 1;
            } else {
                self.track(ip, ban);
            }
        }
        for (ip, v) in self.kernel.all_bans() {
            if self.active.contains_key(&ip) {
                continue;
            }
            if !v.active_at(boot) {
                let _ = self.kernel.remove_ban(&ip);
                r.expired += 1;
                continue;
            }
            let count = self.store.history(&[ip]).map_err(|e| e.to_string())?[0] + 1;
            let ports = v.ports[..(v.nports as usize).min(MAX_PORTS)].to_vec();
            let ban = StoredBan {
                jail_count: 0,
                jail: RECOVERED_JAIL.into(),
                since: now,
                until: unix_from_kernel_expiry(v.expires_ns),
                ports,
                ban_count: count,
            };
            log::warn!(
                "kernel map holds {ip} with no database record (enforced before a crash?): adopted into jail {RECOVERED_JAIL}"
            );
            puts.push((ip, ban.clone()));
            self.track(ip, ban);
            r.adopted += 1;
        }
        let bans: Vec<(IpNet, StoredBan)> =
            self.active.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (ip, ban) in &bans {
            match self.kernel.put_ban(ip, kernel_value(ban)) {
                Ok(()) => r.restored += 1,
                Err(e) => {
                    log::error!("cannot enforce stored ban {ip}: {e}");
                    r.failed += 1;
                }
            }
        }
        r.restored -= r.adopted.min(r.restored);
        self.store.apply(&puts, &dels).map_err(|e| e.to_string())?;
        let allow = self.cfg.ignoreip.clone();
        self.kernel
            .sync_allowlist(&allow)
            .map_err(|e| e.to_string())?;
        Ok(r)
    }

    fn check_target(&self, ip: &IpNet, jail: &JailConfig, force: bool) -> Result<(), String> {
        if ip.prefix_len() == 0 {
            return Err(format!(
                "refusing to ban {ip}: that is every {} address",
                if ip.is_ipv4() { "IPv4" } else { "IPv6" }
            ));
        }
        let min = if ip.is_ipv4() {
            self.cfg.guard.min_prefix_v4
        } else {
            self.cfg.guard.min_prefix_v6
        };
        if !ip.is_host() && ip.prefix_len() < min && !force {
            return Err(format!(
                "refusing to ban {ip}: prefixes shorter than /{min} need --force (guard.min_prefix_{})",
                if ip.is_ipv4() { "v4" } else { "v6" }
            ));
        }
        for allow in self.cfg.ignoreip.iter().chain(&jail.ignoreip) {
            if allow.contains(ip.addr()) && allow.prefix_len() <= ip.prefix_len() {
                return Err(format!(
                    "refusing to ban {ip}: it is allowlisted by ignoreip {allow}"
                ));
            }
        }
        Ok(())
    }

    fn jail(&self, name: Option<&str>) -> Result<&JailConfig, String> {
        let name = name.unwrap_or(MANUAL_JAIL);
        self.cfg.jails.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.jails.keys().map(String::as_str).collect();
            format!("unknown jail {name:?} (known: {})", known.join(", "))
        })
    }

    fn capacity_check(&self, new: &[IpNet]) -> Result<(), String> {
        let mut u = self.usage;
        for ip in new {
            *u.slot(ip) += 1;
        }
        let cap = self.kernel.capacity;
        for (used, cap, map, key) in [
            (u.exact_v4, cap.bans, maps::BANS_V4, "bans"),
            (u.exact_v6, cap.bans, maps::BANS_V6, "bans"),
            (u.prefix_v4, cap.prefixes, maps::PREFIX_V4, "prefixes"),
            (u.prefix_v6, cap.prefixes, maps::PREFIX_V6, "prefixes"),
        ] {
            if used > cap as u64 {
                return Err(format!(
                    "map {map} would be full: {used} entries needed, capacity {cap}; nothing was banned (raise `maps.{key}`)"
                ));
            }
        }
        Ok(())
    }

    /// Bans every address of the request, or none of them.
    pub fn ban(&mut self, req: &BanRequest) -> Result<BanResult, String> {
        if req.ips.is_empty() {
            return Err("ban: no address given".into());
        }
        let jail = self.jail(req.jail.as_deref())?.clone();
        let time = match &req.time {
            Some(t) => Some(parse_bantime(t).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut ips = Vec::with_capacity(req.ips.len());
        for s in &req.ips {
            let ip: IpNet = s
                .parse()
                .map_err(|e: f2b_common::net::NetParseError| e.to_string())?;
            self.check_target(&ip, &jail, req.force)?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let new: Vec<IpNet> = ips
            .iter()
            .filter(|ip| !self.active.contains_key(ip))
            .copied()
            .collect();
        self.capacity_check(&new)?;

        let now = unix_now();
        let mut planned = Vec::with_capacity(ips.len());
        for ip in &ips {
            let ban = match self.active.get(ip) {
                // Already banned: extend to the later end, widen the port scope; never shorten.
                Some(old) => {
                    let until = match (old.until, time.unwrap_or(jail.bantime)) {
                        (None, _) | (_, BanTime::Permanent) => None,
                        (Some(u), BanTime::Secs(s)) => Some(u.max(now + s)),
                    };
                    StoredBan {
                        until,
                        ports: merge_ports(&old.ports, &ports_of(&jail)),
                        ..old.clone()
                    }
                }
                None => {
                    let (auto, all, this) = self.jail_bantime(&jail, ip);
                    let until = match time.unwrap_or(auto) {
                        BanTime::Permanent => None,
                        BanTime::Secs(s) => Some(now + s),
                    };
                    StoredBan {
                        jail: jail.name.clone(),
                        since: now,
                        until,
                        ports: ports_of(&jail),
                        ban_count: all + 1,
                        jail_count: this + 1,
                    }
                }
            };
            planned.push((*ip, ban));
        }

        // Kernel first (enforcement), then the durable commit; undo the kernel on failure.
        let mut written: Vec<(IpNet, Option<BanValue>)> = Vec::with_capacity(planned.len());
        let mut failure: Option<KernelError> = None;
        for (ip, ban) in &planned {
            let before = self.kernel.get_ban(ip);
            match self.kernel.put_ban(ip, kernel_value(ban)) {
                Ok(()) => written.push((*ip, before)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let committed = match failure {
            Some(e) => Err(format!("{e}; nothing was banned")),
            None => self
                .store
                .apply(&planned, &[])
                .map_err(|e| format!("{e}; nothing was banned")),
        };
        if let Err(e) = committed {
            for (ip, before) in written.into_iter().rev() {
                let _ = match before {
                    Some(v) => self.kernel.put_ban(&ip, v),
                    None => self.kernel.remove_ban(&ip).map(|_| ()),
                };
            }
            return Err(e);
        }
        let mut banned = Vec::with_capacity(planned.len());
        for (ip, ban) in planned {
            if !self.active.contains_key(&ip) {
                *self.banned_total.entry(ban.jail.clone()).or_default() += 1;
                let bantime = ban.until.map_or("-1".to_string(), |u| {
                    u.saturating_sub(ban.since).to_string()
                });
                self.emit("ban", &ban.jail, &ip.to_string(), &bantime, 0, "");
                log::info!(target: "f2b::ban", "[{}] Ban {ip}", ban.jail);
            }
            banned.push(self.info(&ip, &ban));
            self.track(ip, ban);
        }
        Ok(BanResult { banned })
    }

    /// Applies what a jail's reader found in one batch of lines: bans for its tickets (kernel
    /// first, at once), then one durable commit of those bans together with the read
    /// positions after the batch (a group commit under a storm). Tickets for allowlisted or
    /// own addresses are dropped with a log line; a ticket for an address already banned
    /// extends the ban when this jail's would last longer.
    pub fn jail_batch(
        &mut self,
        jail_name: &str,
        tickets: Vec<Ticket>,
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
        stats: FailStats,
    ) -> Vec<JailBan> {
        self.jail_stats.insert(jail_name.to_string(), stats);
        let Some(jail) = self.cfg.jails.get(jail_name).cloned() else {
            return vec![];
        };
        let now = unix_now();
        let mut planned: Vec<(IpNet, StoredBan, Ticket, BanTime)> = Vec::new();
        for t in tickets {
            let ip = IpNet::host(t.ip);
            if self.check_target(&ip, &jail, false).is_err()
                || (jail.ignoreself && self.self_addrs.contains(&t.ip))
            {
                log::info!("[{jail_name}] Ignore {} (allowlisted or own address)", t.ip);
                continue;
            }
            if planned.iter().any(|p| p.0 == ip) {
                continue;
            }
            let existing = self.active.get(&ip).cloned();
            let (bantime, all, this) = self.jail_bantime(&jail, &ip);
            let until = match bantime {
                BanTime::Permanent => None,
                BanTime::Secs(s) => Some(now + s),
            };
            let mut ban = StoredBan {
                jail: jail_name.to_string(),
                since: now,
                until,
                ports: ports_of(&jail),
                ban_count: all + 1,
                jail_count: this + 1,
            };
            if let Some(old) = &existing {
                // Already banned: a jail whose ban would last longer (recidive, say) takes the
                // ban over, with the wider port scope of the two; otherwise nothing changes.
                let longer = match (old.until, until) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b > a,
                };
                if !longer {
                    log::info!("[{jail_name}] {} already banned", t.ip);
                    continue;
                }
                ban.since = old.since;
                ban.ports = merge_ports(&old.ports, &ban.ports);
            }
            let mut needed: Vec<IpNet> = planned
                .iter()
                .map(|p| p.0)
                .filter(|p| !self.active.contains_key(p))
                .collect();
            if existing.is_none() {
                needed.push(ip);
            }
            if let Err(e) = self.capacity_check(&needed) {
                log::error!("[{jail_name}] cannot ban {}: {e}", t.ip);
                *self.ban_errors.entry(jail_name.to_string()).or_default() += 1;
                continue;
            }
            // Enforce now; the commit below follows within the same batch.
            if let Err(e) = self.kernel.put_ban(&ip, kernel_value(&ban)) {
                log::error!("[{jail_name}] cannot ban {}: {e}", t.ip);
                *self.ban_errors.entry(jail_name.to_string()).or_default() += 1;
                continue;
            }
            planned.push((ip, ban, t, bantime));
        }
        let puts: Vec<(IpNet, StoredBan)> = planned.iter().map(|p| (p.0, p.1.clone())).collect();
        if let Err(e) = self.store.commit(&puts, &[], positions, meta) {
            // The bans stay enforced; the next start adopts them from the kernel maps.
            log::error!(
                "[{jail_name}] committing {} bans and read positions: {e}",
                puts.len()
            );
        }
        let mut out = Vec::with_capacity(planned.len());
        for (ip, ban, ticket, bantime) in planned {
            *self.banned_total.entry(jail_name.to_string()).or_default() += 1;
            log::info!(target: "f2b::ban", "[{jail_name}] Ban {ip}");
            let secs = match bantime {
                BanTime::Secs(s) => s.to_string(),
                BanTime::Permanent => "-1".to_string(),
            };
            self.emit(
                "ban",
                jail_name,
                &ip.to_string(),
                &secs,
                ticket.failures,
                ticket.user.as_deref().unwrap_or(""),
            );
            let info = self.info(&ip, &ban);
            self.track(ip, ban);
            out.push(JailBan {
                info,
                bantime,
                ticket,
            });
        }
        out
    }

    /// (bans over all jails, bans in `jail`) so far for `ip`.
    fn priors(&self, jail: &str, ip: &IpNet) -> (u32, u32) {
        let all = self.store.history(&[*ip]).map(|h| h[0]);
        let this = self.store.history_in(jail, &[*ip]).map(|h| h[0]);
        match (all, this) {
            (Ok(a), Ok(j)) => (a, j),
            (a, j) => {
                log::error!(
                    "[{jail}] reading ban history of {ip}: {:?} {:?}",
                    a.as_ref().err(),
                    j.as_ref().err()
                );
                (a.unwrap_or(0), j.unwrap_or(0))
            }
        }
    }

    /// How long a new ban of `ip` by `jail` lasts, from its history and the jail's increment.
    fn jail_bantime(&self, jail: &JailConfig, ip: &IpNet) -> (BanTime, u32, u32) {
        let (all, this) = self.priors(&jail.name, ip);
        let prior = if jail.increment.overalljails {
            all
        } else {
            this
        };
        let t = match jail.bantime {
            BanTime::Permanent => BanTime::Permanent,
            BanTime::Secs(s) => BanTime::Secs(
                increased_bantime(s, prior, &jail.increment) + jitter(prior, &jail.increment),
            ),
        };
        (t, all, this)
    }

    fn info(&self, ip: &IpNet, ban: &StoredBan) -> BanInfo {
        let v = self.kernel.get_ban(ip).unwrap_or_default();
        BanInfo {
            ip: ip.to_string(),
            jail: ban.jail.clone(),
            since: ban.since,
            until: ban.until,
            ban_count: ban.ban_count,
            packets: v.packets,
            bytes: v.bytes,
        }
    }

    /// Removes the given bans (or all, optionally of one jail).
    pub fn unban(
        &mut self,
        ips: &[String],
        all: bool,
        jail: Option<&str>,
    ) -> Result<UnbanResult, String> {
        if all != ips.is_empty() {
            return Err("unban: give addresses or --all, not both or neither".into());
        }
        if let Some(j) = jail
            && !self.cfg.jails.contains_key(j)
            && !self.active.values().any(|b| b.jail == j)
        {
            self.jail(Some(j))?;
        }
        let mut targets = Vec::new();
        let mut not_banned = Vec::new();
        if all {
            targets = self
                .active
                .iter()
                .filter(|(_, b)| jail.is_none_or(|j| b.jail == j))
                .map(|(ip, _)| *ip)
                .collect();
            targets.sort();
        } else {
            for s in ips {
                let ip: IpNet = s
                    .parse()
                    .map_err(|e: f2b_common::net::NetParseError| e.to_string())?;
                match self.active.get(&ip) {
                    Some(b) if jail.is_none_or(|j| b.jail == j) => {
                        if !targets.contains(&ip) {
                            targets.push(ip)
                        }
                    }
                    _ => not_banned.push(ip.to_string()),
                }
            }
        }
        // Durable first: an unban that is not on disk would come back after a restart.
        self.store
            .apply(&[], &targets)
            .map_err(|e| format!("{e}; nothing was unbanned"))?;
        let mut unbanned = Vec::with_capacity(targets.len());
        for ip in targets {
            if let Err(e) = self.kernel.remove_ban(&ip) {
                log::error!(
                    "unban {ip}: removed from the database but the kernel map refused: {e}"
                );
            }
            if let Some(b) = self.untrack(&ip) {
                log::info!(target: "f2b::ban", "[{}] Unban {ip}", b.jail);
                self.emit_unban(&ip, &b);
            }
            unbanned.push(ip.to_string());
        }
        Ok(UnbanResult {
            unbanned,
            not_banned,
        })
    }

    pub fn list(&self, jail: Option<&str>) -> ListData {
        let mut bans: Vec<(&IpNet, &StoredBan)> = self
            .active
            .iter()
            .filter(|(_, b)| jail.is_none_or(|j| b.jail == j))
            .collect();
        bans.sort_by(|a, b| a.1.since.cmp(&b.1.since).then(a.0.cmp(b.0)));
        ListData {
            bans: bans.into_iter().map(|(ip, b)| self.info(ip, b)).collect(),
        }
    }

    pub fn jail_status(&self, only: Option<&str>) -> Result<Vec<JailStatus>, String> {
        if let Some(j) = only {
            self.jail(Some(j))?;
        }
        let mut out = Vec::new();
        for (name, j) in &self.cfg.jails {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let mut banned: Vec<String> = self
                .active
                .iter()
                .filter(|(_, b)| &b.jail == name)
                .map(|(ip, _)| ip.to_string())
                .collect();
            banned.sort();
            out.push(JailStatus {
                name: name.clone(),
                enabled: j.enabled,
                failing_now: self.jail_stats.get(name).map_or(0, |s| s.failing_now),
                failed_total: self.jail_stats.get(name).map_or(0, |s| s.failed_total),
                banned_now: banned.len() as u64,
                banned_total: self.banned_total.get(name).copied().unwrap_or(0),
                files: j.logpath.clone(),
                banned: if only.is_some() { banned } else { vec![] },
                evicted: self.jail_stats.get(name).map_or(0, |s| s.evicted),
                ban_errors: self.ban_errors.get(name).copied().unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub fn interfaces(&self) -> Vec<InterfaceStatus> {
        self.kernel
            .attached
            .iter()
            .map(|(n, m)| InterfaceStatus {
                name: n.clone(),
                mode: m.as_str().into(),
            })
            .collect()
    }

    pub fn stats(&self) -> StatsData {
        let cap = self.kernel.capacity;
        let u = self.usage;
        let allow = self.cfg.ignoreip.iter().filter(|n| n.is_ipv4()).count() as u64;
        let allow6 = self.cfg.ignoreip.len() as u64 - allow;
        let m = |name: &str, entries: u64, capacity: u32| MapUsage {
            name: name.into(),
            entries,
            capacity: capacity as u64,
        };
        StatsData {
            counters: self.kernel.counters(),
            maps: vec![
                m(maps::BANS_V4, u.exact_v4, cap.bans),
                m(maps::BANS_V6, u.exact_v6, cap.bans),
                m(maps::PREFIX_V4, u.prefix_v4, cap.prefixes),
                m(maps::PREFIX_V6, u.prefix_v6, cap.prefixes),
                m(maps::ALLOW_V4, allow, cap.allow),
                m(maps::ALLOW_V6, allow6, cap.allow),
            ],
        }
    }

    /// Unix second of the next expiry, if any ban expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(u, _)| *u)
    }

    /// Removes every ban whose time is up; returns how many.
    pub fn expire_due(&mut self, now: u64) -> usize {
        let due: Vec<IpNet> = self
            .expiry
            .iter()
            .take_while(|(u, _)| *u <= now)
            .map(|(_, ip)| *ip)
            .collect();
        if due.is_empty() {
            return 0;
        }
        if let Err(e) = self.store.apply(&[], &due) {
            // The kernel stops dropping on its own at expiry; retry the bookkeeping later.
            log::error!("expiring {} bans: {e}", due.len());
            return 0;
        }
        for ip in &due {
            let _ = self.kernel.remove_ban(ip);
            if let Some(b) = self.untrack(ip) {
                log::info!(target: "f2b::ban", "[{}] Unban {ip} (expired)", b.jail);
                self.emit_unban(ip, &b);
            }
        }
        due.len()
    }

    /// Applies a new, already validated configuration: jails, guardrails, allowlist. Bans stay.
    /// Returns the settings that only take effect after a restart.
    pub fn reload(&mut self, new: Config) -> Result<Vec<String>, String> {
        let mut restart = Vec::new();
        for (what, changed) in [
            ("database", new.database != self.cfg.database),
            (
                "socket",
                new.socket != self.cfg.socket || new.socket_mode != self.cfg.socket_mode,
            ),
            ("pin_dir", new.pin_dir != self.cfg.pin_dir),
            ("maps", new.maps != self.cfg.maps),
            (
                "interfaces",
                new.interfaces != self.cfg.interfaces || new.xdp_mode != self.cfg.xdp_mode,
            ),
        ] {
            if changed {
                restart.push(what.to_string());
            }
        }
        self.kernel
            .sync_allowlist(&new.ignoreip)
            .map_err(|e| e.to_string())?;
        self.cfg = Config {
            database: self.cfg.database.clone(),
            socket: self.cfg.socket.clone(),
            socket_mode: self.cfg.socket_mode,
            pin_dir: self.cfg.pin_dir.clone(),
            maps: self.cfg.maps,
            interfaces: self.cfg.interfaces.clone(),
            xdp_mode: self.cfg.xdp_mode,
            ..new
        };
        Ok(restart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_merge() {
        assert_eq!(merge_ports(&[22], &[80]), vec![22, 80]);
        assert_eq!(merge_ports(&[22], &[]), Vec::<u16>::new());
        assert_eq!(
            merge_ports(&[1, 2, 3, 4, 5], &[6, 7, 8, 9]),
            Vec::<u16>::new()
        );
        assert_eq!(merge_ports(&[22, 80], &[80]), vec![22, 80]);
    }

    #[test]
    fn bantime_increment() {
        let off = Increment {
            enabled: false,
            factor: 1.0,
            maxtime: 86_400,
            multipliers: vec![],
            rndtime: 0,
            overalljails: false,
        };
        assert_eq!(increased_bantime(600, 3, &off), 600);
        let on = Increment {
            enabled: true,
            factor: 1.0,
            maxtime: 86_400,
            multipliers: vec![],
            rndtime: 0,
            overalljails: false,
        };
        assert_eq!(increased_bantime(600, 0, &on), 600);
        assert_eq!(increased_bantime(600, 1, &on), 1200);
        assert_eq!(increased_bantime(600, 2, &on), 2400);
        assert_eq!(increased_bantime(600, 30, &on), 86_400);
        let f = Increment {
            enabled: true,
            factor: 3.0,
            maxtime: 86_400,
            multipliers: vec![],
            rndtime: 0,
            overalljails: false,
        };
        assert_eq!(increased_bantime(600, 1, &f), 3600);
        // Multipliers by previous ban count; the last one repeats; maxtime still caps.
        let m = Increment {
            multipliers: vec![1.0, 5.0, 30.0],
            ..on.clone()
        };
        assert_eq!(increased_bantime(600, 1, &m), 3000);
        assert_eq!(increased_bantime(600, 2, &m), 18_000);
        assert_eq!(increased_bantime(600, 9, &m), 18_000);
        assert_eq!(increased_bantime(3600, 2, &m), 86_400);
        // rndtime: bounded extra time, only when the increment applies.
        let r = Increment {
            rndtime: 30,
            ..on.clone()
        };
        assert_eq!(jitter(0, &r), 0);
        assert_eq!(jitter(1, &off), 0);
        assert!((0..200).all(|_| jitter(2, &r) <= 30));
        assert!(
            (0..200).any(|_| jitter(2, &r) > 0),
            "rndtime adds something sometimes"
        );
    }

    #[test]
    fn kernel_value_scope() {
        let b = StoredBan {
            jail_count: 1,
            jail: "x".into(),
            since: 0,
            until: None,
            ports: vec![22, 80],
            ban_count: 1,
        };
        let v = kernel_value(&b);
        assert_eq!(v.expires_ns, 0);
        assert_eq!(v.nports, 2);
        assert!(v.covers_port(Some(80)) && !v.covers_port(Some(443)));
    }
}
