//! The ban manager: the one place where bans are decided, enforced (kernel maps), persisted
//! (redb) and expired. Every change is validated whole before anything is written, so a
//! refused request changes nothing, and a failure halfway is rolled back.
//!
//! Methods block (map syscalls, redb commits): the agent calls them from `spawn_blocking`.

use std::collections::HashMap;

use f2b_common::duration::{BanTime, parse_bantime};
use f2b_common::net::IpNet;
use f2b_common::proto::{
    BanInfo, BanResult, BanRun, BanRuns, InterfaceStatus, JailStatus, ListData, MANUAL_JAIL,
    MapUsage, StatsData, UnbanResult,
};
use f2b_common::{BanValue, MAX_PORTS, maps};

use crate::actions::{ActionEvent, Tags};
use crate::clock::{ClockPair, unix_now};
use crate::config::Action;
use crate::config::{Config, Increment, JailConfig, Ports};
use crate::jail::{FailStats, Ticket};
use crate::kernel::Kernel;
use crate::store::{BanRef, FilePos, Pending, Store, StoredBan};

#[path = "ban_index.rs"]
pub mod index;
use index::{FastSet, FastState, Index, Slot, Usage};

/// Bans and unbans of one f2b-ctl request logged one by one; the rest get one summary line
/// (a 50k-address request would otherwise spend more time logging than banning).
const LOG_EACH: usize = 16;

/// Ban requests of at least this many addresses write the kernel maps on a second thread
/// while they commit (a thread costs more than a small request's work).
const PARALLEL_COMMIT: usize = 1024;

/// Index prefetch distance: the buckets of addresses this far ahead are loaded while the
/// current one is looked up, planned or inserted (each lookup in a table of a million bans is
/// a cache miss otherwise).
const PREFETCH_AHEAD: usize = 16;

/// Threads writing the kernel maps during a restore into empty maps.
const RESTORE_WRITERS: usize = 2;

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

pub struct BanManager {
    cfg: Config,
    kernel: Kernel,
    store: Store,
    /// Active bans, compact (see [`index`]); also the expiry order and map usage.
    idx: Index,
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

/// Slots of database rows in key order. Rows of one jail and port scope follow each other,
/// so jail and ports are interned once per run of them, not looked up per row.
#[derive(Default)]
struct RowSlots {
    last: Option<(String, Vec<u16>, Slot)>,
}

impl RowSlots {
    fn slot(
        &mut self,
        row: &crate::store::BanRow<'_>,
        intern: impl FnOnce(&crate::store::BanRow<'_>) -> Slot,
    ) -> Slot {
        let mut s = match &self.last {
            Some((j, p, s)) if j == row.jail && row.ports().eq(p.iter().copied()) => *s,
            _ => {
                let s = intern(row);
                self.last = Some((row.jail.to_string(), row.ports().collect(), s));
                s
            }
        };
        s.set_since(row.since);
        s.set_until(row.until);
        s.ban_count = row.ban_count;
        s.jail_count = row.jail_count;
        s
    }
}

/// A jail ban on its way: address, index slot, ticket, ban time, (packets, bytes) kept.
/// (address, slot, ticket, bantime, kept counters, replaces an active ban).
type PlannedJailBan = (IpNet, Slot, Ticket, BanTime, (u64, u64), bool);

/// What a ban request did, compact: (address, slot, (packets, bytes)) per ban, jail names
/// by slot jail id, and each ban's position in the request. Serializes as [`BanResult`]
/// (`{"banned":[BanInfo...]}`); [`BansDone::runs`] is the answer to a `compact` request.
#[derive(Debug, Clone)]
pub struct BansDone {
    jails: Vec<String>,
    bans: Vec<(IpNet, Slot, (u64, u64))>,
    at: Vec<u32>,
}

impl BansDone {
    fn jail(&self, s: &Slot) -> &str {
        self.jails.get(s.jail() as usize).map_or("", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// The bans as runs of request positions that share every field but the address.
    pub fn runs(&self) -> BanRuns {
        let mut runs: Vec<BanRun> = Vec::new();
        for ((_, s, (packets, bytes)), &at) in self.bans.iter().zip(&self.at) {
            let jail = self.jail(s);
            if let Some(r) = runs.last_mut()
                && r.at + r.n == at
                && r.jail == jail
                && r.since == u64::from(s.since)
                && r.until == s.until()
                && r.ban_count == s.ban_count
                && (r.packets, r.bytes) == (*packets, *bytes)
            {
                r.n += 1;
                continue;
            }
            runs.push(BanRun {
                at,
                n: 1,
                jail: jail.to_string(),
                since: u64::from(s.since),
                until: s.until(),
                ban_count: s.ban_count,
                packets: *packets,
                bytes: *bytes,
            });
        }
        BanRuns { runs }
    }

    pub fn to_result(&self) -> BanResult {
        BanResult {
            banned: self
                .bans
                .iter()
                .map(|(ip, s, (packets, bytes))| BanInfo {
                    ip: ip.to_string(),
                    jail: self.jail(s).to_string(),
                    since: u64::from(s.since),
                    until: s.until(),
                    ban_count: s.ban_count,
                    packets: *packets,
                    bytes: *bytes,
                })
                .collect(),
        }
    }
}

impl serde::Serialize for BansDone {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Item<'a>(&'a BansDone, &'a (IpNet, Slot, (u64, u64)));
        impl serde::Serialize for Item<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let (ip, s, (packets, bytes)) = self.1;
                let mut st = ser.serialize_struct("BanInfo", 7)?;
                st.serialize_field("ip", &Display(ip))?;
                st.serialize_field("jail", self.0.jail(s))?;
                st.serialize_field("since", &u64::from(s.since))?;
                st.serialize_field("until", &s.until())?;
                st.serialize_field("ban_count", &s.ban_count)?;
                st.serialize_field("packets", packets)?;
                st.serialize_field("bytes", bytes)?;
                st.end()
            }
        }
        struct Display<'a>(&'a IpNet);
        impl serde::Serialize for Display<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                ser.collect_str(self.0)
            }
        }
        struct Seq<'a>(&'a BansDone);
        impl serde::Serialize for Seq<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut seq = ser.serialize_seq(Some(self.0.bans.len()))?;
                for b in &self.0.bans {
                    seq.serialize_element(&Item(self.0, b))?;
                }
                seq.end()
            }
        }
        let mut st = ser.serialize_struct("BanResult", 1)?;
        st.serialize_field("banned", &Seq(self))?;
        st.end()
    }
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

/// Why `ip` may not be banned in `jail`, if it may not: /0, a prefix shorter than the guard
/// allows without `force`, or an allowlisted address.
fn check_target(cfg: &Config, ip: &IpNet, jail: &JailConfig, force: bool) -> Result<(), String> {
    if ip.prefix_len() == 0 {
        return Err(format!(
            "refusing to ban {ip}: that is every {} address",
            if ip.is_ipv4() { "IPv4" } else { "IPv6" }
        ));
    }
    let min = if ip.is_ipv4() {
        cfg.guard.min_prefix_v4
    } else {
        cfg.guard.min_prefix_v6
    };
    if !ip.is_host() && ip.prefix_len() < min && !force {
        return Err(format!(
            "refusing to ban {ip}: prefixes shorter than /{min} need --force (guard.min_prefix_{})",
            if ip.is_ipv4() { "v4" } else { "v6" }
        ));
    }
    for allow in cfg.ignoreip.iter().chain(&jail.ignoreip) {
        if allow.contains(ip.addr()) && allow.prefix_len() <= ip.prefix_len() {
            return Err(format!(
                "refusing to ban {ip}: it is allowlisted by ignoreip {allow}"
            ));
        }
    }
    Ok(())
}

/// Requests with more addresses than this are parsed and checked by two threads.
const PARALLEL_PARSE: usize = 4096;

/// The addresses of a ban request, each checked with [`check_target`] and with its active ban
/// in `idx`, if any; the error is the one of the first refused address, as a single pass
/// would give. A large request is split in two halves done at once (the other CPU is idle
/// while a request is read).
fn parse_targets<S: AsRef<str> + Sync>(
    cfg: &Config,
    idx: &Index,
    req_ips: &[S],
    jail: &JailConfig,
    force: bool,
) -> Result<Vec<(IpNet, u64, Option<Slot>)>, String> {
    type Parsed = Vec<(IpNet, u64, Option<Slot>)>;
    let parse = |part: &[S]| -> Result<Parsed, String> {
        let mut out: Parsed = Vec::with_capacity(part.len());
        for s in part {
            let ip: IpNet = s
                .as_ref()
                .parse()
                .map_err(|e: f2b_common::net::NetParseError| e.to_string())?;
            check_target(cfg, &ip, jail, force)?;
            // Each index lookup is a cache miss in a table of a million bans: the bucket is
            // loaded while the next PREFETCH_AHEAD addresses are parsed.
            let h = idx.hash(&ip);
            idx.prefetch_hashed(h);
            out.push((ip, h, None));
            if let Some(k) = out.len().checked_sub(PREFETCH_AHEAD + 1) {
                let (a, h, slot) = &mut out[k];
                *slot = idx.get_hashed(a, *h).copied();
            }
        }
        let from = out.len().saturating_sub(PREFETCH_AHEAD + 1);
        for (a, h, slot) in &mut out[from..] {
            *slot = idx.get_hashed(a, *h).copied();
        }
        Ok(out)
    };
    if req_ips.len() < PARALLEL_PARSE {
        return parse(req_ips);
    }
    let (first, second) = req_ips.split_at(req_ips.len() / 2);
    let (a, b) = std::thread::scope(|sc| {
        let b = sc.spawn(|| parse(second));
        (parse(first), b.join())
    });
    let mut all = a?;
    all.extend(b.map_err(|_| "internal error: address parser thread panicked".to_string())??);
    Ok(all)
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

/// The kernel entry for an indexed ban (counters zero).
fn slot_value(idx: &Index, s: &Slot, clk: &ClockPair) -> BanValue {
    let mut v = BanValue::new(clk.kernel_expiry(s.until()));
    let ports = idx.ports(s.ports);
    for (i, p) in ports.iter().take(MAX_PORTS).enumerate() {
        v.ports[i] = *p;
    }
    v.nports = ports.len().min(MAX_PORTS) as u16;
    v
}

/// True when a kernel entry already enforces `want` (same port scope, same expiry within the
/// second that the Unix-second persistence rounds to).
fn same_enforcement(have: &BanValue, want: &BanValue) -> bool {
    let n = (want.nports as usize).min(MAX_PORTS);
    have.nports == want.nports
        && have.ports[..n] == want.ports[..n]
        && (have.expires_ns == 0) == (want.expires_ns == 0)
        && have.expires_ns.abs_diff(want.expires_ns) < 2_000_000_000
}

/// How long a new ban by `jail` lasts after `all` earlier bans over all jails and `this` in
/// this jail.
fn bantime_for(jail: &JailConfig, all: u32, this: u32) -> BanTime {
    let prior = if jail.increment.overalljails {
        all
    } else {
        this
    };
    match jail.bantime {
        BanTime::Permanent => BanTime::Permanent,
        BanTime::Secs(s) => BanTime::Secs(
            increased_bantime(s, prior, &jail.increment) + jitter(prior, &jail.increment),
        ),
    }
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
        // Size the index for the maps up front (up to 1Mi bans): growing a hash table holds
        // the old and the new table at once, which at a million bans is the agent's peak.
        // Untouched buckets cost no resident memory; only the control bytes are written.
        let cap = kernel.capacity;
        let want = (u64::from(cap.bans) * 2 + u64::from(cap.prefixes) * 2).min(1 << 20);
        let mut idx = Index::new();
        idx.reserve(want as usize);
        BanManager {
            cfg,
            kernel,
            store,
            idx,
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

    fn emit_unban(&self, ip: &IpNet, ban: &Slot) {
        let jail = self.idx.jail_name(ban.jail());
        if !self.has_command_actions(jail) {
            return;
        }
        let bantime = match ban.until() {
            Some(u) => u.saturating_sub(u64::from(ban.since)).to_string(),
            None => "-1".to_string(),
        };
        self.emit("unban", jail, &ip.to_string(), &bantime, 0, "");
    }

    /// Whether events of `jail` go anywhere (saves formatting them per ban when not).
    fn has_command_actions(&self, jail: &str) -> bool {
        self.actions.is_some()
            && self
                .cfg
                .jails
                .get(jail)
                .is_some_and(|j| j.actions.iter().any(|a| matches!(a, Action::Command(_))))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn kernel_mut(&mut self) -> &mut Kernel {
        &mut self.kernel
    }

    /// Makes kernel and database agree at start: what the database holds and has not expired
    /// is enforced; an unexpired kernel entry the database lacks (a ban enforced just before a
    /// crash, before its commit) is adopted into the database and reported; expired entries
    /// are removed from both. Also writes the allowlist.
    ///
    /// Rows are streamed from redb into the compact index, the kernel maps are read with batch
    /// lookups (entries that already enforce the right thing are left alone, counters
    /// included), and what is missing is written with batch updates: a million bans take a
    /// few dozen syscalls, not two million.
    pub fn reconcile(&mut self) -> Result<Reconciled, String> {
        let mut r = Reconciled::default();
        let now = unix_now();
        let clk = ClockPair::now();
        let mut dels = Vec::new();
        match self.store.ban_rows() {
            Ok(n) => self.idx.reserve(n),
            Err(e) => log::warn!("counting stored bans: {e}"),
        }
        // Nothing in the kernel maps (first start, a reboot, `stop --detach`): stream the rows
        // straight into batch writes on writer threads, so enforcement does not wait for the
        // bookkeeping (see `restore_into_empty_maps`).
        let mut kernel_empty = true;
        self.kernel
            .for_each_ban(|_, _| kernel_empty = false)
            .map_err(|e| e.to_string())?;
        let mut streamed_failed = None;
        if kernel_empty {
            streamed_failed = Some(self.restore_into_empty_maps(now, &clk, &mut dels)?);
        } else {
            let idx = &mut self.idx;
            self.store
                .for_each_ban(|ip, row| {
                    if row.until.is_some_and(|u| u <= now) {
                        dels.push(ip);
                    } else {
                        let s = idx.slot_of_row(&row);
                        idx.insert(ip, s);
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        for (ip, e) in streamed_failed.unwrap_or_default() {
            log::error!("cannot enforce stored ban {ip}: {e}");
            r.failed += 1;
        }
        r.expired = dels.len();
        if !dels.is_empty()
            && let Err(e) = self.kernel.remove_bans(&dels)
        {
            log::warn!("removing expired bans from the kernel: {e}");
        }

        let mut fixes = Vec::new();
        let mut adopt = Vec::new();
        let mut kdels = Vec::new();
        // (Skipped when the maps were empty: they hold exactly what was just streamed.)
        if !kernel_empty {
            let idx = &mut self.idx;
            self.kernel
                .for_each_ban(|ip, v| match idx.mark_seen(&ip) {
                    Some(s) => {
                        let mut want = slot_value(idx, &s, &clk);
                        if !same_enforcement(v, &want) {
                            want.packets = v.packets;
                            want.bytes = v.bytes;
                            fixes.push((ip, want));
                        }
                    }
                    None if !v.active_at(clk.boot_ns) => kdels.push(ip),
                    None => adopt.push((ip, *v)),
                })
                .map_err(|e| e.to_string())?;
        }
        r.expired += kdels.len();
        if !kdels.is_empty()
            && let Err(e) = self.kernel.remove_bans(&kdels)
        {
            log::warn!("removing expired kernel entries: {e}");
        }

        let adopt_ips: Vec<IpNet> = adopt.iter().map(|a| a.0).collect();
        let counts = self
            .store
            .ended_counts(RECOVERED_JAIL, &adopt_ips)
            .map_err(|e| e.to_string())?;
        for ((ip, v), (all, _)) in adopt.iter().zip(counts) {
            let ports = &v.ports[..(v.nports as usize).min(MAX_PORTS)];
            let until = clk.unix_from_kernel_expiry(v.expires_ns);
            let slot = self.idx.slot(RECOVERED_JAIL, now, until, ports, all + 1, 0);
            log::warn!(
                "kernel map holds {ip} with no database record (enforced before a crash?): adopted into jail {RECOVERED_JAIL}"
            );
            self.idx.insert(*ip, slot);
            self.idx.mark_seen(ip);
        }
        r.adopted = adopt.len();

        for (ip, e) in self.kernel.put_bans_each(&fixes) {
            log::error!("cannot enforce stored ban {ip}: {e}");
            r.failed += 1;
        }
        // Everything the kernel does not hold yet, in batches.
        let mut chunk: Vec<(IpNet, BanValue)> = Vec::with_capacity(crate::kernel::batch::CHUNK);
        let kernel = &mut self.kernel;
        let mut flush = |chunk: &mut Vec<(IpNet, BanValue)>, failed: &mut usize| {
            for (ip, e) in kernel.put_bans_each(chunk) {
                log::error!("cannot enforce stored ban {ip}: {e}");
                *failed += 1;
            }
            chunk.clear();
        };
        // (Skipped when the maps were empty: the restore above wrote every row.)
        self.idx.drain_unseen(|ip, s, ports| {
            if kernel_empty {
                return;
            }
            let mut v = BanValue::new(clk.kernel_expiry(s.until()));
            for (i, p) in ports.iter().take(MAX_PORTS).enumerate() {
                v.ports[i] = *p;
            }
            v.nports = ports.len().min(MAX_PORTS) as u16;
            chunk.push((*ip, v));
            if chunk.len() == crate::kernel::batch::CHUNK {
                flush(&mut chunk, &mut r.failed);
            }
        });
        flush(&mut chunk, &mut r.failed);
        r.restored = self.idx.len() - r.adopted - r.failed.min(self.idx.len() - r.adopted);

        let puts: Vec<(IpNet, BanRef<'_>)> = adopt_ips
            .iter()
            .filter_map(|ip| self.idx.get(ip).map(|s| (*ip, self.idx.row(s))))
            .collect();
        self.store
            .commit_refs(&puts, &dels, &[], &[])
            .map_err(|e| e.to_string())?;
        let allow = self.cfg.ignoreip.clone();
        self.kernel
            .sync_allowlist(&allow)
            .map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// Start with empty kernel maps (first start, a reboot, `stop --detach`): enforcement
    /// first. This thread streams the redb rows into kernel-layout chunks for
    /// [`RESTORE_WRITERS`] writer threads (the kernel's hash inserts are the largest cost, and
    /// they scale over CPUs) and keeps (address, slot) pairs; the index is built from those
    /// once the writers are done. Returns the entries the kernel refused, with why.
    fn restore_into_empty_maps(
        &mut self,
        now: u64,
        clk: &ClockPair,
        dels: &mut Vec<IpNet>,
    ) -> Result<Vec<(IpNet, crate::kernel::KernelError)>, String> {
        use crate::kernel::ExactChunk;
        const CHUNK: usize = 8192;
        let t0 = std::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel::<ExactChunk>(8);
        let rx = std::sync::Mutex::new(rx);
        let writer = self.kernel.exact_writer();
        let idx = &mut self.idx;
        let store = &self.store;
        let mut prefixes: Vec<(IpNet, BanValue)> = Vec::new();
        let mut retry: Vec<(IpNet, BanValue)> = Vec::new();
        let mut t_read = std::time::Duration::ZERO;
        let mut t_write = std::time::Duration::ZERO;
        let read = std::thread::scope(|sc| {
            let writers: Vec<_> = (0..RESTORE_WRITERS)
                .map(|_| {
                    let rx = &rx;
                    sc.spawn(move || {
                        let mut refused = Vec::new();
                        loop {
                            let chunk = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => break,
                            };
                            let Ok(chunk) = chunk else { break };
                            refused.extend(writer.write(&chunk));
                        }
                        refused
                    })
                })
                .collect();
            let mut v4 = (Vec::new(), Vec::new());
            let mut v6 = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
            let mut slots = RowSlots::default();
            let read = store.for_each_ban(|ip, row| {
                if row.until.is_some_and(|u| u <= now) {
                    dels.push(ip);
                    return;
                }
                let s = slots.slot(&row, |r| idx.slot_of_row(r));
                let v = slot_value(idx, &s, clk);
                match ip.addr() {
                    std::net::IpAddr::V4(a) if ip.is_host() => {
                        v4.0.push(a.octets());
                        v4.1.push(v);
                        if v4.0.len() == CHUNK {
                            let (k, v) = std::mem::take(&mut v4);
                            let _ = tx.send(ExactChunk::V4(k, v));
                        }
                    }
                    std::net::IpAddr::V6(a) if ip.is_host() => {
                        v6.0.push(a.octets());
                        v6.1.push(v);
                        if v6.0.len() == CHUNK {
                            let k = std::mem::replace(&mut v6.0, Vec::with_capacity(CHUNK));
                            let v = std::mem::replace(&mut v6.1, Vec::with_capacity(CHUNK));
                            let _ = tx.send(ExactChunk::V6(k, v));
                        }
                    }
                    _ => prefixes.push((ip, v)),
                }
            });
            if !v4.0.is_empty() {
                let _ = tx.send(ExactChunk::V4(v4.0, v4.1));
            }
            if !v6.0.is_empty() {
                let _ = tx.send(ExactChunk::V6(v6.0, v6.1));
            }
            drop(tx);
            t_read = t0.elapsed();
            for w in writers {
                match w.join() {
                    Ok(r) => retry.extend(r),
                    Err(_) => log::error!("restore: a kernel writer thread panicked"),
                }
            }
            t_write = t0.elapsed();
            read
        });
        read.map_err(|e| e.to_string())?;
        // Enforcement first: the index is built after the writers are done, from a second
        // read of the rows (keeping (address, slot) pairs from the first pass cost 40 MiB
        // and page faults on the reader's critical path; building it alongside the writers
        // took CPU from them: its inserts are cache misses, ~0.4 s for a million).
        {
            let mut bulk = self.idx.bulk();
            let mut slots = RowSlots::default();
            self.store
                .for_each_ban(|ip, row| {
                    if row.until.is_some_and(|u| u <= now) {
                        return;
                    }
                    let s = slots.slot(&row, |r| bulk.slot_of_row(r));
                    bulk.insert(ip, s);
                })
                .map_err(|e| e.to_string())?;
        }
        let t_index = t0.elapsed();
        // Prefix bans (LPM tries, few) and whatever a batch refused: one by one, with errors.
        retry.extend(prefixes);
        let failed = self.kernel.put_bans_each(&retry);
        log::debug!(
            "restore: rows read and streamed {t_read:?}, kernel writes done {t_write:?}, index built {t_index:?}, prefixes and retries {:?}",
            t0.elapsed() - t_index
        );
        Ok(failed)
    }

    fn check_target(&self, ip: &IpNet, jail: &JailConfig, force: bool) -> Result<(), String> {
        check_target(&self.cfg, ip, jail, force)
    }

    fn jail(&self, name: Option<&str>) -> Result<&JailConfig, String> {
        let name = name.unwrap_or(MANUAL_JAIL);
        self.cfg.jails.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.jails.keys().map(String::as_str).collect();
            format!("unknown jail {name:?} (known: {})", known.join(", "))
        })
    }

    fn capacity_check(&self, new: &[IpNet]) -> Result<(), String> {
        let mut extra = Usage::default();
        for ip in new {
            *extra.slot(ip) += 1;
        }
        self.capacity_check_extra(&extra)
    }

    /// Refuses when the maps cannot take `extra` more entries on top of the active bans.
    fn capacity_check_extra(&self, extra: &Usage) -> Result<(), String> {
        let u = self.idx.usage;
        let cap = self.kernel.capacity;
        for (used, cap, map, key) in [
            (u.exact_v4 + extra.exact_v4, cap.bans, maps::BANS_V4, "bans"),
            (u.exact_v6 + extra.exact_v6, cap.bans, maps::BANS_V6, "bans"),
            (
                u.prefix_v4 + extra.prefix_v4,
                cap.prefixes,
                maps::PREFIX_V4,
                "prefixes",
            ),
            (
                u.prefix_v6 + extra.prefix_v6,
                cap.prefixes,
                maps::PREFIX_V6,
                "prefixes",
            ),
        ] {
            if used > cap as u64 {
                return Err(format!(
                    "map {map} would be full: {used} entries needed, capacity {cap}; nothing was banned (raise `maps.{key}`)"
                ));
            }
        }
        Ok(())
    }

    /// Undoes kernel writes of a refused request: entries that existed get their old value
    /// back, new ones are removed.
    fn undo_kernel(&mut self, written: &[IpNet], before: &[(IpNet, Option<BanValue>)]) {
        let written: FastSet<IpNet> = written.iter().copied().collect();
        let mut restore = Vec::new();
        let mut remove = Vec::new();
        for (ip, b) in before.iter().filter(|(ip, _)| written.contains(ip)) {
            match b {
                Some(v) => restore.push((*ip, *v)),
                None => remove.push(*ip),
            }
        }
        for (ip, e) in self.kernel.put_bans_each(&restore) {
            log::error!("undoing ban of {ip}: {e}");
        }
        if let Err(e) = self.kernel.remove_bans(&remove) {
            log::error!("undoing {} bans: {e}", remove.len());
        }
    }

    /// Takes back the rows of a committed ban request the kernel then refused: earlier bans
    /// get their rows back, new ones lose theirs (no history: they never took effect).
    fn revert_commit(&self, planned: &[(IpNet, Slot, bool)]) {
        let mut back = Vec::new();
        let mut gone = Vec::new();
        for (ip, _, existed) in planned {
            match self.idx.get(ip) {
                Some(old) if *existed => back.push((*ip, self.idx.row(old))),
                _ => gone.push(*ip),
            }
        }
        if let Err(e) = self.store.put_back(&back, &gone) {
            // Over-banning, never a lost ban: the next start enforces these rows.
            log::error!(
                "ban refused by the kernel, but its database rows could not be taken back ({e}); they take effect at the next start"
            );
        }
    }

    /// Bans every address of the request, or none of them.
    ///
    /// Cost per address is constant: a hash set for duplicates, one read transaction for the
    /// ban history of all new addresses, batch map updates, one commit of compact rows.
    pub fn ban(&mut self, req: &BanRequest) -> Result<BanResult, String> {
        self.ban_addrs(
            &req.ips,
            req.jail.as_deref(),
            req.time.as_deref(),
            req.force,
        )
        .map(|d| d.to_result())
    }

    /// [`BanManager::ban`] for addresses borrowed from the request line, answering with
    /// the compact [`BansDone`] (serialized straight into the response, without a
    /// `BanInfo` per ban).
    pub fn ban_addrs<S: AsRef<str> + Sync>(
        &mut self,
        req_ips: &[S],
        jail: Option<&str>,
        time: Option<&str>,
        force: bool,
    ) -> Result<BansDone, String> {
        let t0 = std::time::Instant::now();
        if req_ips.is_empty() {
            return Err("ban: no address given".into());
        }
        let jail = self.jail(jail)?.clone();
        let time = match time {
            Some(t) => Some(parse_bantime(t).map_err(|e| e.to_string())?),
            None => None,
        };
        let parsed = parse_targets(&self.cfg, &self.idx, req_ips, &jail, force)?;
        let t_read = t0.elapsed();
        let mut ips = Vec::with_capacity(req_ips.len());
        // Request position of each of `ips` (a repeated address is banned once).
        let mut at: Vec<u32> = Vec::with_capacity(req_ips.len());
        let mut existing: Vec<Option<Slot>> = Vec::with_capacity(req_ips.len());
        {
            // Repeats are found by the index hash each address has already: positions in
            // `ips` by that hash, addresses compared only when the hashes' tags are equal.
            let mut seen = crate::addr_table::AddrTable::default();
            seen.reserve(parsed.len());
            for (n, (ip, h, slot)) in parsed.into_iter().enumerate() {
                if seen.find(h, |k| ips[k as usize] == ip).is_none() {
                    seen.insert(h, ips.len() as u32);
                    ips.push(ip);
                    at.push(n as u32);
                    existing.push(slot);
                }
            }
        }
        let fresh: Vec<IpNet> = ips
            .iter()
            .zip(&existing)
            .filter(|(_, e)| e.is_none())
            .map(|(ip, _)| *ip)
            .collect();
        self.capacity_check(&fresh)?;
        let t_parse = t0.elapsed();
        let mut priors = self
            .store
            .ended_counts(&jail.name, &fresh)
            .map_err(|e| format!("{e}; nothing was banned"))?
            .into_iter();
        let t_hist = t0.elapsed();

        let now = unix_now();
        let clk = ClockPair::now();
        let jail_ports = ports_of(&jail);
        let jail_id = self.idx.jail_id(&jail.name);
        let ports_id = self.idx.ports_id(&jail_ports);
        self.idx.reserve(fresh.len());
        let mut planned: Vec<(IpNet, Slot, bool)> = Vec::with_capacity(ips.len());
        let mut before: Vec<(IpNet, Option<BanValue>)> = Vec::with_capacity(ips.len());
        let mut values: Vec<(IpNet, BanValue)> = Vec::with_capacity(ips.len());
        for (ip, existing) in ips.iter().zip(&existing) {
            let (slot, old) = match *existing {
                // Already banned: extend to the later end, widen the port scope; never shorten.
                Some(old) => {
                    let until = match (old.until(), time.unwrap_or(jail.bantime)) {
                        (None, _) | (_, BanTime::Permanent) => None,
                        (Some(u), BanTime::Secs(s)) => Some(u.max(now + s)),
                    };
                    let ports = merge_ports(self.idx.ports(old.ports), &jail_ports);
                    let mut slot = old;
                    slot.set_until(until);
                    slot.ports = self.idx.ports_id(&ports);
                    (slot, self.kernel.get_ban(ip))
                }
                None => {
                    let (all, this) = priors.next().unwrap_or((0, 0));
                    let until = match time.unwrap_or_else(|| bantime_for(&jail, all, this)) {
                        BanTime::Permanent => None,
                        BanTime::Secs(s) => Some(now + s),
                    };
                    let slot = Slot::new(jail_id, ports_id, now, until, all + 1, this + 1);
                    (slot, None)
                }
            };
            let mut v = slot_value(&self.idx, &slot, &clk);
            // Counters survive a re-ban.
            if let Some(b) = &old {
                v.packets = b.packets;
                v.bytes = b.bytes;
            }
            values.push((*ip, v));
            before.push((*ip, old));
            planned.push((*ip, slot, existing.is_some()));
        }

        let t_plan = t0.elapsed();
        // The map writes (enforcement) and the durable commit, the two largest costs of a
        // bulk ban, run at once on two threads; the request is answered only when both are
        // done, and when one fails the other is undone.
        let (mut t_kernel, mut t_commit) = (t_plan, t_plan);
        let (kernel_done, committed) = {
            let rows: Vec<(IpNet, BanRef<'_>)> = planned
                .iter()
                .map(|(ip, s, _)| (*ip, self.idx.row(s)))
                .collect();
            let kernel = &mut self.kernel;
            let store = &self.store;
            if values.len() >= PARALLEL_COMMIT {
                std::thread::scope(|sc| {
                    let k = sc.spawn(|| {
                        let r = kernel.put_bans(&values);
                        (r, t0.elapsed())
                    });
                    let c = Some(store.commit_refs(&rows, &[], &[], &[]));
                    t_commit = t0.elapsed();
                    let k = k.join().map(|(r, t)| {
                        t_kernel = t;
                        r
                    });
                    let k = k.unwrap_or_else(|_| {
                        Err(crate::kernel::PutError {
                            written: ips.clone(),
                            failed: ips[0],
                            error: crate::kernel::KernelError::Map {
                                map: "bans",
                                message: "kernel writer thread panicked".into(),
                            },
                        })
                    });
                    (k, c)
                })
            } else {
                match kernel.put_bans(&values) {
                    Ok(()) => (Ok(()), Some(store.commit_refs(&rows, &[], &[], &[]))),
                    // Nothing to commit when the kernel already refused.
                    Err(e) => (Err(e), None),
                }
            }
        };
        let t_kernel_commit = t0.elapsed();
        match (kernel_done, committed) {
            (Ok(()), Some(Ok(()))) => {}
            (Ok(()), Some(Err(e))) => {
                self.undo_kernel(&ips, &before);
                return Err(format!("{e}; nothing was banned"));
            }
            (Ok(()), None) => return Err("internal error: nothing committed".into()),
            (Err(e), c) => {
                self.undo_kernel(&e.written, &before);
                if matches!(c, Some(Ok(()))) {
                    self.revert_commit(&planned);
                }
                return Err(format!("{}; nothing was banned", e.error));
            }
        }
        let actions = self.has_command_actions(&jail.name);
        let mut done = BansDone {
            jails: Vec::new(),
            bans: Vec::with_capacity(planned.len()),
            at,
        };
        let mut logged = 0usize;
        let mut new_per_jail: Vec<(u16, u64)> = Vec::new();
        for (n, ((ip, slot, existed), (v, (_, old)))) in planned
            .into_iter()
            .zip(values.iter().zip(&before))
            .enumerate()
        {
            if let Some(a) = ips.get(n + PREFETCH_AHEAD) {
                self.idx.prefetch(a);
            }
            if !existed {
                match new_per_jail.iter_mut().find(|(j, _)| *j == slot.jail()) {
                    Some((_, n)) => *n += 1,
                    None => new_per_jail.push((slot.jail(), 1)),
                }
                let jail_name = self.idx.jail_name(slot.jail());
                if actions {
                    let bantime = slot.until().map_or("-1".to_string(), |u| {
                        u.saturating_sub(u64::from(slot.since)).to_string()
                    });
                    self.emit("ban", jail_name, &ip.to_string(), &bantime, 0, "");
                }
                logged += 1;
                if logged <= LOG_EACH {
                    log::info!(target: "f2b::ban", "[{jail_name}] Ban {ip}");
                }
            }
            let counters = old.map_or((0, 0), |_| (v.1.packets, v.1.bytes));
            done.bans.push((ip, slot, counters));
            if existed {
                self.idx.insert(ip, slot);
            } else {
                // Looked up above (and the request's addresses are distinct).
                self.idx.insert_new(ip, slot);
            }
        }
        for (j, n) in new_per_jail {
            *self
                .banned_total
                .entry(self.idx.jail_name(j).to_string())
                .or_default() += n;
        }
        done.jails = self.idx.jail_names().to_vec();
        if logged > LOG_EACH {
            log::info!(
                target: "f2b::ban",
                "[{}] Ban of {} more addresses in the same request (not listed one by one)",
                jail.name,
                logged - LOG_EACH
            );
        }
        log::debug!(
            "ban of {}: parse {:?} (read {t_read:?}), history {:?}, plan {:?}, kernel and commit {:?} (kernel {:?}, commit {:?} at once), result {:?}",
            done.bans.len(),
            t_parse,
            t_hist - t_parse,
            t_plan - t_hist,
            t_kernel_commit - t_plan,
            t_kernel.saturating_sub(t_plan),
            t_commit.saturating_sub(t_plan),
            t0.elapsed() - t_kernel_commit
        );
        Ok(done)
    }

    /// Applies what a jail's reader found in one batch of lines: bans for its tickets (kernel
    /// first, at once), then one durable commit of those bans together with the read
    /// positions after the batch (a group commit under a storm). Tickets for allowlisted or
    /// own addresses are dropped with a log line; a ticket for an address already banned
    /// extends the ban when this jail's would last longer.
    ///
    /// However many tickets: one history read transaction, one batch of map writes, one
    /// commit.
    pub fn jail_batch(
        &mut self,
        jail_name: &str,
        tickets: Vec<Ticket>,
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
        stats: FailStats,
    ) -> Vec<JailBan> {
        self.jail_batch_with(jail_name, tickets, positions, meta, stats, true)
            .1
    }

    /// [`BanManager::jail_batch`] for a reader, which needs only how many bans were made:
    /// no [`JailBan`] (two strings and a ticket) per ban.
    pub fn jail_batch_count(
        &mut self,
        jail_name: &str,
        tickets: Vec<Ticket>,
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
        stats: FailStats,
    ) -> usize {
        self.jail_batch_with(jail_name, tickets, positions, meta, stats, false)
            .0
    }

    fn jail_batch_with(
        &mut self,
        jail_name: &str,
        tickets: Vec<Ticket>,
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
        stats: FailStats,
        infos: bool,
    ) -> (usize, Vec<JailBan>) {
        match self.jail_stats.get_mut(jail_name) {
            Some(s) => *s = stats,
            None => {
                self.jail_stats.insert(jail_name.to_string(), stats);
            }
        }
        if tickets.is_empty() {
            // Read positions only (a busy log without bans): nothing to plan.
            let mut job = Pending::default();
            job.positions(positions);
            job.meta(meta);
            self.store.commit_async(job);
            return (0, Vec::new());
        }
        let Some(jail) = self.cfg.jails.get(jail_name).cloned() else {
            return (0, vec![]);
        };
        let now = unix_now();
        let clk = ClockPair::now();
        let mut cands: Vec<(IpNet, Ticket)> = Vec::with_capacity(tickets.len());
        {
            let mut seen: FastSet<IpNet> =
                FastSet::with_capacity_and_hasher(tickets.len(), FastState::default());
            for t in tickets {
                let ip = IpNet::host(t.ip);
                if self.check_target(&ip, &jail, false).is_err()
                    || (jail.ignoreself && self.self_addrs.contains(&t.ip))
                {
                    log::info!("[{jail_name}] Ignore {} (allowlisted or own address)", t.ip);
                    continue;
                }
                if seen.insert(ip) {
                    cands.push((ip, t));
                }
            }
        }
        let ips: Vec<IpNet> = cands.iter().map(|c| c.0).collect();
        let ended = match self.store.ended_counts(jail_name, &ips) {
            Ok(v) => v,
            Err(e) => {
                log::error!("[{jail_name}] reading ban history: {e}");
                vec![(0, 0); ips.len()]
            }
        };
        let jail_id = self.idx.jail_id(jail_name);
        let jail_ports = ports_of(&jail);
        let ports_id = self.idx.ports_id(&jail_ports);
        let mut extra = Usage::default();
        let mut planned: Vec<PlannedJailBan> = Vec::with_capacity(cands.len());
        let mut values: Vec<(IpNet, BanValue)> = Vec::with_capacity(cands.len());
        for (n, ((ip, t), (e_all, e_this))) in cands.into_iter().zip(ended).enumerate() {
            if let Some(a) = ips.get(n + PREFETCH_AHEAD) {
                self.idx.prefetch(a);
            }
            let existing = self.idx.get(&ip).copied();
            let (all, this) = match existing {
                Some(s) if s.jail() == jail_id => {
                    (e_all.max(s.ban_count), e_this.max(s.jail_count))
                }
                Some(s) => (e_all.max(s.ban_count), e_this),
                None => (e_all, e_this),
            };
            let bantime = bantime_for(&jail, all, this);
            let until = match bantime {
                BanTime::Permanent => None,
                BanTime::Secs(s) => Some(now + s),
            };
            let mut slot = Slot::new(jail_id, ports_id, now, until, all + 1, this + 1);
            let mut counters = None;
            if let Some(old) = existing {
                // Already banned: a jail whose ban would last longer (recidive, say) takes the
                // ban over, with the wider port scope of the two; otherwise nothing changes.
                let longer = match (old.until(), until) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b > a,
                };
                if !longer {
                    log::info!("[{jail_name}] {} already banned", t.ip);
                    continue;
                }
                slot.set_since(u64::from(old.since));
                let ports = merge_ports(self.idx.ports(old.ports), &jail_ports);
                slot.ports = self.idx.ports_id(&ports);
                counters = self.kernel.get_ban(&ip);
            } else {
                let mut need = extra;
                *need.slot(&ip) += 1;
                if let Err(e) = self.capacity_check_extra(&need) {
                    log::error!("[{jail_name}] cannot ban {}: {e}", t.ip);
                    *self.ban_errors.entry(jail_name.to_string()).or_default() += 1;
                    continue;
                }
                extra = need;
            }
            let mut v = slot_value(&self.idx, &slot, &clk);
            if let Some(c) = counters {
                v.packets = c.packets;
                v.bytes = c.bytes;
            }
            values.push((ip, v));
            planned.push((
                ip,
                slot,
                t,
                bantime,
                (v.packets, v.bytes),
                existing.is_some(),
            ));
        }
        // Enforce now, in one batch; the commit below follows.
        let failed = self.kernel.put_bans_each(&values);
        if !failed.is_empty() {
            let mut bad: FastSet<IpNet> = FastSet::default();
            for (ip, e) in failed {
                log::error!("[{jail_name}] cannot ban {ip}: {e}");
                *self.ban_errors.entry(jail_name.to_string()).or_default() += 1;
                bad.insert(ip);
            }
            planned.retain(|p| !bad.contains(&p.0));
        }
        // The commit goes to the store's committer thread: the reader goes on to its next
        // lines while the disk catches up (the bans are enforced already; if the agent dies
        // before the commit, the next start adopts them from the kernel maps and rereads the
        // lines from the last committed position).
        let mut job = Pending::default();
        for p in &planned {
            job.put(&p.0, &self.idx.row(&p.1));
        }
        job.positions(positions);
        job.meta(meta);
        self.store.commit_async(job);
        let actions = self.has_command_actions(jail_name);
        let made = planned.len();
        let mut out = Vec::with_capacity(if infos { planned.len() } else { 0 });
        // One log record for the batch: one line per ban, each with its own time and level
        // (the logger prefixes every line of a ban record), written with one write().
        let mut banlog = String::with_capacity(planned.len() * (jail_name.len() + 24));
        if !planned.is_empty() {
            *self.banned_total.entry(jail_name.to_string()).or_default() += planned.len() as u64;
        }
        let order: Vec<IpNet> = planned.iter().map(|p| p.0).collect();
        for (n, (ip, slot, ticket, bantime, counters, replaces)) in planned.into_iter().enumerate()
        {
            if let Some(a) = order.get(n + PREFETCH_AHEAD) {
                self.idx.prefetch(a);
            }
            banlog.push('[');
            banlog.push_str(jail_name);
            banlog.push_str("] Ban ");
            ip.push_to(&mut banlog);
            banlog.push('\n');
            if actions {
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
            }
            if infos {
                out.push(JailBan {
                    info: self.info_of(&ip, &slot, jail_name.to_string(), counters),
                    bantime,
                    ticket,
                });
            }
            if replaces {
                self.idx.insert(ip, slot);
            } else {
                // Looked up while planning (and the batch's addresses are distinct).
                self.idx.insert_new(ip, slot);
            }
        }
        if !banlog.is_empty() {
            log::info!(target: "f2b::ban", "{}", banlog.trim_end());
        }
        (made, out)
    }

    fn info_of(&self, ip: &IpNet, s: &Slot, jail: String, (packets, bytes): (u64, u64)) -> BanInfo {
        BanInfo {
            ip: ip.to_string(),
            jail,
            since: u64::from(s.since),
            until: s.until(),
            ban_count: s.ban_count,
            packets,
            bytes,
        }
    }

    fn info(&self, ip: &IpNet, s: &Slot) -> BanInfo {
        let v = self.kernel.get_ban(ip).unwrap_or_default();
        self.info_of(
            ip,
            s,
            self.idx.jail_name(s.jail()).to_string(),
            (v.packets, v.bytes),
        )
    }

    /// The active ban of `ip` as persisted, if any.
    pub fn active(&self, ip: &IpNet) -> Option<StoredBan> {
        self.idx.get(ip).map(|s| self.idx.stored(s))
    }

    /// Number of active bans.
    pub fn active_count(&self) -> usize {
        self.idx.len()
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
        let jail_id = match jail {
            Some(j) => match self.idx.known_jail(j) {
                Some(id) => Some(id),
                None => {
                    self.jail(Some(j))?;
                    // A configured jail that never banned: nothing of it is active.
                    Some(u16::MAX)
                }
            },
            None => None,
        };
        let in_jail = |s: &Slot| jail_id.is_none_or(|j| s.jail() == j);
        let mut targets = Vec::new();
        let mut not_banned = Vec::new();
        if all {
            targets = self
                .idx
                .iter()
                .filter(|(_, s)| in_jail(s))
                .map(|(ip, _)| *ip)
                .collect();
            targets.sort();
        } else {
            let mut seen: FastSet<IpNet> = FastSet::default();
            for s in ips {
                let ip: IpNet = s
                    .parse()
                    .map_err(|e: f2b_common::net::NetParseError| e.to_string())?;
                match self.idx.get(&ip) {
                    Some(b) if in_jail(b) => {
                        if seen.insert(ip) {
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
        if let Err(e) = self.kernel.remove_bans(&targets) {
            log::error!("unban: removed from the database but the kernel map refused: {e}");
        }
        let mut unbanned = Vec::with_capacity(targets.len());
        let total = targets.len();
        for (n, ip) in targets.into_iter().enumerate() {
            if let Some(b) = self.idx.remove(&ip) {
                if n < LOG_EACH {
                    log::info!(target: "f2b::ban", "[{}] Unban {ip}", self.idx.jail_name(b.jail()));
                } else if n == LOG_EACH {
                    log::info!(target: "f2b::ban", "Unban of {} more addresses in the same request (not listed one by one)", total - LOG_EACH);
                }
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
        let jail_id = match jail {
            Some(j) => match self.idx.known_jail(j) {
                Some(id) => Some(id),
                None => return ListData { bans: vec![] },
            },
            None => None,
        };
        let mut bans: Vec<(&IpNet, &Slot)> = self
            .idx
            .iter()
            .filter(|(_, s)| jail_id.is_none_or(|j| s.jail() == j))
            .collect();
        bans.sort_by(|a, b| a.1.since.cmp(&b.1.since).then(a.0.cmp(b.0)));
        ListData {
            bans: bans.into_iter().map(|(ip, s)| self.info(ip, s)).collect(),
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
            let id = self.idx.known_jail(name);
            let banned_now = id.map_or(0, |id| self.idx.banned_in(id));
            let mut banned: Vec<String> = match (only, id) {
                (Some(_), Some(id)) => self
                    .idx
                    .iter()
                    .filter(|(_, s)| s.jail() == id)
                    .map(|(ip, _)| ip.to_string())
                    .collect(),
                _ => vec![],
            };
            banned.sort();
            out.push(JailStatus {
                name: name.clone(),
                enabled: j.enabled,
                failing_now: self.jail_stats.get(name).map_or(0, |s| s.failing_now),
                failed_total: self.jail_stats.get(name).map_or(0, |s| s.failed_total),
                banned_now,
                banned_total: self.banned_total.get(name).copied().unwrap_or(0),
                files: j.logpath.clone(),
                banned,
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
        let u = self.idx.usage;
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

    /// Unix second of the next expiry, if any ban expires. May be early (a ban that was
    /// extended or removed since): the timer then wakes, [`BanManager::expire_due`] finds
    /// nothing due and drops the stale entry.
    pub fn next_expiry(&self) -> Option<u64> {
        self.idx.next_expiry()
    }

    /// Removes every ban whose time is up; returns how many.
    pub fn expire_due(&mut self, now: u64) -> usize {
        let due = self.idx.take_due(now);
        if due.is_empty() {
            return 0;
        }
        if let Err(e) = self.store.apply(&[], &due) {
            // The kernel stops dropping on its own at expiry; retry the bookkeeping later.
            log::error!("expiring {} bans: {e}", due.len());
            self.idx.requeue(&due);
            return 0;
        }
        if let Err(e) = self.kernel.remove_bans(&due) {
            log::warn!("removing {} expired bans from the kernel: {e}", due.len());
        }
        for ip in &due {
            if let Some(b) = self.idx.remove(ip) {
                log::info!(target: "f2b::ban", "[{}] Unban {ip} (expired)", self.idx.jail_name(b.jail()));
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
    fn compact_ban_answer_is_a_ban_result() {
        let mut idx = Index::new();
        let a = idx.slot("manual", 100, Some(700), &[], 2, 1);
        let b = idx.slot("web", 50, None, &[80], 1, 1);
        let done = BansDone {
            jails: idx.jail_names().to_vec(),
            bans: vec![
                ("fd00:f2b::2:0:7".parse().expect("v6"), a, (0, 0)),
                ("198.18.0.0/24".parse().expect("v4"), b, (5, 300)),
            ],
            at: vec![0, 2],
        };
        let direct: BanResult =
            serde_json::from_slice(&serde_json::to_vec(&done).expect("encode")).expect("decode");
        assert_eq!(direct, done.to_result());
        assert_eq!(direct.banned[0].ip, "fd00:f2b::2:0:7");
        assert_eq!(direct.banned[1].jail, "web");
        assert_eq!(direct.banned[1].until, None);
        assert_eq!(direct.banned[1].packets, 5);
        assert_eq!(direct.banned[0].since, 100);
        assert_eq!(direct.banned[0].ban_count, 2);
    }

    #[test]
    fn ban_runs_join_only_neighbours_alike() {
        let mut idx = Index::new();
        let a = idx.slot("manual", 100, Some(700), &[], 1, 1);
        let b = idx.slot("manual", 100, Some(700), &[], 2, 1);
        let ip = |i: u32| IpNet::host(std::net::Ipv4Addr::from(0xc612_0000 + i).into());
        let done = BansDone {
            jails: idx.jail_names().to_vec(),
            bans: vec![
                (ip(0), a, (0, 0)),
                (ip(1), a, (0, 0)),
                (ip(2), a, (0, 0)),
                // position 3 was a repeat: a gap ends the run
                (ip(4), a, (0, 0)),
                (ip(5), b, (0, 0)),
                (ip(6), b, (1, 60)),
                (ip(7), b, (1, 60)),
            ],
            at: vec![0, 1, 2, 4, 5, 6, 7],
        };
        let r = done.runs();
        let shape: Vec<(u32, u32, u32, u64)> = r
            .runs
            .iter()
            .map(|r| (r.at, r.n, r.ban_count, r.packets))
            .collect();
        assert_eq!(
            shape,
            vec![(0, 3, 1, 0), (4, 1, 1, 0), (5, 1, 2, 0), (6, 2, 2, 1)]
        );
        assert!(
            r.runs
                .iter()
                .all(|r| r.jail == "manual" && r.since == 100 && r.until == Some(700))
        );
        // Expanded, the runs are the full answer.
        let full = done.to_result();
        let mut k = 0;
        for run in &r.runs {
            for _ in 0..run.n {
                let b = &full.banned[k];
                assert_eq!(
                    (b.ban_count, b.packets, b.bytes, b.until),
                    (run.ban_count, run.packets, run.bytes, run.until)
                );
                k += 1;
            }
        }
        assert_eq!(k, full.banned.len());
    }

    #[test]
    fn kernel_value_scope() {
        let mut idx = Index::new();
        let b = idx.slot("x", 0, None, &[22, 80], 1, 1);
        let v = slot_value(&idx, &b, &ClockPair::now());
        assert_eq!(v.expires_ns, 0);
        assert_eq!(v.nports, 2);
        assert!(v.covers_port(Some(80)) && !v.covers_port(Some(443)));
    }
}
