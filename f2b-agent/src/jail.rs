//! Failure counting per jail (fail2ban's FailManager): `maxretry` failures of one address
//! within `findtime`, counted on the log line's own time, make a [`Ticket`] (a ban decision).
//! Memory is bounded: at most `max_tracked` addresses are tracked per jail, and the one seen
//! least recently is evicted first, so a flood of spoofed sources cannot exhaust memory.
//! Plain synchronous code: it runs on the jail's reader thread, in the per-line path.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// foldhash rather than std's SipHash: several times cheaper per lookup on a 17-byte key,
/// and still seeded per process, which matters here because the keys are chosen by
/// attackers (spoofed sources): an unkeyed hash such as FxHash would let them aim at one
/// bucket chain. Already in the tree (hashbrown uses it).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Failure times kept inline up to this many (maxretry defaults to 5), so tracking an
/// address costs no allocation of its own; larger maxretry spills to the heap.
const INLINE: usize = 6;

/// The failure times of one address within findtime, oldest first.
#[derive(Debug)]
enum Times {
    Inline { len: u8, t: [i64; INLINE] },
    Heap(Vec<i64>),
}

impl Times {
    fn new() -> Times {
        Times::Inline {
            len: 0,
            t: [0; INLINE],
        }
    }

    fn as_slice(&self) -> &[i64] {
        match self {
            Times::Inline { len, t } => &t[..usize::from(*len)],
            Times::Heap(v) => v,
        }
    }

    /// Inserts keeping the order (lines may arrive slightly out of order).
    fn insert(&mut self, time: i64) {
        let pos = self
            .as_slice()
            .iter()
            .rposition(|t| *t <= time)
            .map_or(0, |p| p + 1);
        match self {
            Times::Inline { len, t } if usize::from(*len) < INLINE => {
                let n = usize::from(*len);
                t.copy_within(pos..n, pos + 1);
                t[pos] = time;
                *len += 1;
            }
            Times::Inline { len, t } => {
                let mut v = t[..usize::from(*len)].to_vec();
                v.insert(pos, time);
                *self = Times::Heap(v);
            }
            Times::Heap(v) => v.insert(pos, time),
        }
    }

    /// Drops the `k` oldest.
    fn drop_front(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        match self {
            Times::Inline { len, t } => {
                let n = usize::from(*len);
                t.copy_within(k..n, 0);
                *len = (n - k) as u8;
            }
            Times::Heap(v) => {
                v.drain(..k);
            }
        }
    }
}

/// A ban decision: `failures` failures of `ip`, the last at `time` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub ip: IpAddr,
    pub failures: u32,
    pub time: i64,
    /// User name captured by the filter on the last failure, if any (for actions).
    pub user: Option<String>,
}

#[derive(Debug)]
struct Entry {
    /// Failure times within findtime, oldest first (at most maxretry are kept).
    times: Times,
    /// Recency stamp, matched against the LRU queue.
    seq: u64,
}

/// Counters shown by `f2b-ctl status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FailStats {
    pub failing_now: u64,
    pub failed_total: u64,
    pub evicted: u64,
    pub too_old: u64,
}

pub struct FailManager {
    maxretry: u32,
    findtime: i64,
    max_tracked: usize,
    entries: Map<IpAddr, Entry>,
    /// (seq, ip) in touch order; stale pairs (seq no longer current) are skipped lazily.
    lru: VecDeque<(u64, IpAddr)>,
    seq: u64,
    stats: FailStats,
}

impl FailManager {
    pub fn new(maxretry: u32, findtime_secs: u64, max_tracked: usize) -> FailManager {
        FailManager {
            maxretry: maxretry.max(1),
            findtime: findtime_secs as i64,
            max_tracked: max_tracked.max(1),
            entries: Map::default(),
            lru: VecDeque::new(),
            seq: 0,
            stats: FailStats::default(),
        }
    }

    /// Changes the thresholds (reload); tracked failures are kept.
    pub fn set_limits(&mut self, maxretry: u32, findtime_secs: u64, max_tracked: usize) {
        self.maxretry = maxretry.max(1);
        self.findtime = findtime_secs as i64;
        self.max_tracked = max_tracked.max(1);
        while self.entries.len() > self.max_tracked {
            self.evict_one();
        }
    }

    pub fn stats(&self) -> FailStats {
        FailStats {
            failing_now: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// Records a failure of `ip` at `time` (the log line's time) as read at `now`.
    /// Returns a ticket when this failure reaches maxretry within findtime; the address's
    /// count then starts again from zero.
    pub fn add_failure(
        &mut self,
        ip: IpAddr,
        time: i64,
        now: i64,
        user: Option<&str>,
    ) -> Option<Ticket> {
        if time <= now - self.findtime {
            // Older than findtime when read (e.g. a backlog after downtime): does not count.
            self.stats.too_old += 1;
            return None;
        }
        self.stats.failed_total += 1;
        self.seq += 1;
        let seq = self.seq;
        if self.entries.len() >= self.max_tracked && !self.entries.contains_key(&ip) {
            self.evict_one();
        }
        let e = self.entries.entry(ip).or_insert_with(|| Entry {
            times: Times::new(),
            seq,
        });
        e.seq = seq;
        e.times.insert(time);
        let ts = e.times.as_slice();
        let newest = ts.last().copied().unwrap_or(time);
        let stale = ts
            .iter()
            .take_while(|t| **t <= newest - self.findtime)
            .count();
        let over = (ts.len() - stale).saturating_sub(self.maxretry as usize);
        e.times.drop_front(stale + over);
        let n = e.times.as_slice().len() as u32;
        if n >= self.maxretry {
            self.entries.remove(&ip);
            return Some(Ticket {
                ip,
                failures: n,
                time,
                user: user.map(str::to_string),
            });
        }
        self.lru.push_back((seq, ip));
        if self.lru.len() > 2 * self.entries.len() + 64 {
            self.compact();
        }
        None
    }

    /// Forgets an address (it was banned or unbanned by hand).
    pub fn forget(&mut self, ip: &IpAddr) {
        self.entries.remove(ip);
    }

    fn evict_one(&mut self) {
        while let Some((seq, ip)) = self.lru.pop_front() {
            if self.entries.get(&ip).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&ip);
                self.stats.evicted += 1;
                return;
            }
        }
        // The queue only lacks entries touched once before their ticket; drop any one.
        if let Some(ip) = self.entries.keys().next().copied() {
            self.entries.remove(&ip);
            self.stats.evicted += 1;
        }
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.lru
            .retain(|(seq, ip)| entries.get(ip).is_some_and(|e| e.seq == *seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    #[test]
    fn maxretry_within_findtime_makes_a_ticket() {
        let mut f = FailManager::new(3, 600, 100);
        assert_eq!(f.add_failure(ip(1), 1000, 1000, None), None);
        assert_eq!(f.add_failure(ip(1), 1100, 1100, None), None);
        let t = f
            .add_failure(ip(1), 1200, 1200, Some("root"))
            .expect("third failure bans");
        assert_eq!(
            (t.ip, t.failures, t.time, t.user.as_deref()),
            (ip(1), 3, 1200, Some("root"))
        );
        // Counting starts again after a ticket.
        assert_eq!(f.add_failure(ip(1), 1201, 1201, None), None);
        assert_eq!(f.stats().failed_total, 4);
    }

    #[test]
    fn failures_spread_wider_than_findtime_do_not_ban() {
        let mut f = FailManager::new(3, 600, 100);
        assert_eq!(f.add_failure(ip(2), 0, 0, None), None);
        assert_eq!(f.add_failure(ip(2), 500, 500, None), None);
        // 0 falls out of the window (1000 - 600 = 400): only 500 and 1000 remain.
        assert_eq!(f.add_failure(ip(2), 1000, 1000, None), None);
        assert!(f.add_failure(ip(2), 1050, 1050, None).is_some());
    }

    #[test]
    fn lines_older_than_findtime_when_read_do_not_count() {
        let mut f = FailManager::new(2, 600, 100);
        let now = 10_000;
        assert_eq!(f.add_failure(ip(3), now - 700, now, None), None);
        assert_eq!(f.add_failure(ip(3), now - 650, now, None), None);
        assert_eq!(f.stats().too_old, 2);
        assert_eq!(f.stats().failing_now, 0);
        assert_eq!(f.add_failure(ip(3), now - 10, now, None), None);
        assert!(f.add_failure(ip(3), now, now, None).is_some());
    }

    #[test]
    fn memory_is_bounded_and_least_recent_goes_first() {
        let mut f = FailManager::new(2, 600, 3);
        for i in 1..=3 {
            f.add_failure(ip(i), 100, 100, None);
        }
        // Touch 1 so that 2 is now the least recently seen.
        f.add_failure(ip(9), 100, 100, None);
        assert_eq!(f.stats().failing_now, 3);
        assert_eq!(f.stats().evicted, 1);
        // 1 was evicted (oldest); a second failure of it starts from one again.
        assert_eq!(f.add_failure(ip(1), 101, 101, None), None);
        // 3 is still tracked: its second failure bans.
        assert!(f.add_failure(ip(3), 101, 101, None).is_some());
        // A flood of distinct sources never grows the table past the cap.
        for i in 0..10_000u32 {
            let a = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            f.add_failure(a, 200, 200, None);
            assert!(f.stats().failing_now <= 3);
        }
        assert!(
            f.lru.len() <= 2 * 3 + 64 + 1,
            "LRU queue stays bounded: {}",
            f.lru.len()
        );
    }

    #[test]
    fn maxretry_above_the_inline_capacity_and_out_of_order_times() {
        let n = INLINE as u32 + 3;
        let mut f = FailManager::new(n, 600, 100);
        // Out of order: 1000 + (k * 7 mod n), all within findtime.
        for k in 0..n - 1 {
            let t = 1000 + i64::from(k * 7 % n);
            assert_eq!(f.add_failure(ip(5), t, 1100, None), None, "failure {k}");
        }
        let t = f
            .add_failure(ip(5), 1001, 1100, None)
            .expect("n-th failure bans");
        assert_eq!(t.failures, n);
        // The window slides on the newest time: old ones fall out even when spilled.
        let mut g = FailManager::new(n, 10, 100);
        for k in 0..n - 1 {
            g.add_failure(ip(6), 1000 + i64::from(k), 1000, None);
        }
        assert_eq!(g.add_failure(ip(6), 1012, 1012, None), None);
    }
}
