//! Failure counting per jail (fail2ban's FailManager): `maxretry` failures of one address
//! within `findtime`, counted on the log line's own time, make a [`Ticket`] (a ban decision).
//! Memory is bounded: at most `max_tracked` addresses are tracked per jail, and the one seen
//! least recently is evicted first, so a flood of spoofed sources cannot exhaust memory.
//! Plain synchronous code: it runs on the jail's reader thread, in the per-line path.

use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::addr_table::{AddrTable, prefetch};

/// foldhash rather than std's SipHash: several times cheaper per lookup on a 17-byte key,
/// and still seeded per process, which matters here because the keys are chosen by
/// attackers (spoofed sources): an unkeyed hash such as FxHash would let them aim at one
/// bucket chain.
type Hasher = foldhash::fast::RandomState;

/// Failure times kept inline in a tracked address's slot (maxretry defaults to 5, and at
/// most maxretry - 1 times wait for the next failure); more spill to the [`Spill`] arena.
const INLINE: usize = 4;

/// "No slot": the end of the LRU list, or no spilled times.
const NIL: u32 = u32::MAX;

/// One tracked address, 48 bytes: the address, its failure times within findtime (Unix
/// seconds, oldest first), and its place in the least-recently-seen list.
#[derive(Clone, Copy)]
struct Slot {
    addr: [u8; 16],
    times: [u32; INLINE],
    /// Neighbours in the LRU list (towards the most and the least recently seen).
    newer: u32,
    older: u32,
    /// Offset of the times' chunk in [`Spill`] when they outgrew `times`, else NIL.
    spill: u32,
    len: u16,
    v6: bool,
    /// Size class of the spilled chunk.
    class: u8,
}

impl Slot {
    #[cfg(test)]
    fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::from(self.addr)
        } else {
            IpAddr::from([self.addr[0], self.addr[1], self.addr[2], self.addr[3]])
        }
    }
}

fn key(ip: &IpAddr) -> ([u8; 16], bool) {
    match ip {
        IpAddr::V4(a) => {
            let mut k = [0; 16];
            k[..4].copy_from_slice(&a.octets());
            (k, false)
        }
        IpAddr::V6(a) => (a.octets(), true),
    }
}

/// A log line's time as stored: Unix seconds in a u32 (up to 2106; earlier than 1970 is
/// older than any findtime anyway).
fn secs(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

/// Failure times of addresses with more than [`INLINE`] of them, in one arena of u16 units:
/// a chunk of size class `c` is `16 << c` units (32 bytes at class 0), freed chunks reused per
/// class; no allocation header or `Vec` per address (a `Vec` each cost ~72 bytes for 5-7
/// times). A chunk holds the count, then, when findtime fits in 16 bits ("narrow", the usual
/// case), the oldest time (two units) and every time as its distance from it (one unit: the
/// times kept are all within findtime of the newest); else every time in two units.
#[derive(Default)]
struct Spill {
    data: Vec<u16>,
    free: Vec<Vec<u32>>,
}

/// Largest size class: its chunks hold 65535 times (the count is a u16), narrow or not.
const MAX_CLASS: u8 = 13;

impl Spill {
    fn units(class: u8) -> usize {
        16 << class
    }

    /// Units a chunk of `n` times needs.
    fn need(n: usize, narrow: bool) -> usize {
        if narrow { 3 + n } else { 1 + 2 * n }
    }

    /// The smallest class for `n` times, if any.
    fn class_for(n: usize, narrow: bool) -> Option<u8> {
        let need = Self::need(n, narrow);
        (0..=MAX_CLASS).find(|c| Self::units(*c) >= need)
    }

    /// A chunk of `class`, or None when the arena would pass u32 offsets.
    fn alloc(&mut self, class: u8) -> Option<u32> {
        if let Some(off) = self.free.get_mut(usize::from(class)).and_then(Vec::pop) {
            return Some(off);
        }
        let off = self.data.len();
        let end = off + Self::units(class);
        if end >= NIL as usize {
            return None;
        }
        self.data.resize(end, 0);
        Some(off as u32)
    }

    fn release(&mut self, off: u32, class: u8) {
        let c = usize::from(class);
        if self.free.len() <= c {
            self.free.resize_with(c + 1, Vec::new);
        }
        self.free[c].push(off);
    }

    /// Appends the times of the chunk at `off` to `out`.
    fn decode(&self, off: u32, narrow: bool, out: &mut Vec<u32>) {
        let d = &self.data[off as usize..];
        let n = usize::from(d[0]);
        if narrow {
            let base = u32::from(d[1]) | (u32::from(d[2]) << 16);
            out.extend(d[3..3 + n].iter().map(|x| base + u32::from(*x)));
        } else {
            out.extend(
                d[1..1 + 2 * n]
                    .chunks_exact(2)
                    .map(|w| u32::from(w[0]) | (u32::from(w[1]) << 16)),
            );
        }
    }

    /// Writes `times` (oldest first; narrow: all within 65535 s of the first) to the chunk at
    /// `off`, which has room for them.
    fn encode(&mut self, off: u32, narrow: bool, times: &[u32]) {
        let d = &mut self.data[off as usize..];
        d[0] = times.len() as u16;
        if narrow {
            let base = times.first().copied().unwrap_or(0);
            d[1] = base as u16;
            d[2] = (base >> 16) as u16;
            for (x, t) in d[3..].iter_mut().zip(times) {
                *x = (t - base) as u16;
            }
        } else {
            for (w, t) in d[1..].chunks_exact_mut(2).zip(times) {
                w[0] = *t as u16;
                w[1] = (t >> 16) as u16;
            }
        }
    }
}

/// Stores `times` (oldest first) as slot `s`'s: inline when they fit and nothing is spilled
/// yet, else in a spill chunk of the class they need (moving there from a smaller one). At
/// the arena's limit the oldest times that do not fit are left out. Returns how many times
/// the slot now holds and how many of the oldest were left out.
fn store_spilled(spill: &mut Spill, s: &mut Slot, times: &[u32], narrow: bool) -> (u32, usize) {
    if s.spill == NIL && times.len() <= INLINE {
        s.times[..times.len()].copy_from_slice(times);
        s.len = times.len() as u16;
        return (times.len() as u32, 0);
    }
    let fits = |class: u8| Spill::units(class) >= Spill::need(times.len(), narrow);
    if s.spill == NIL || !fits(s.class) {
        let next = Spill::class_for(times.len(), narrow).and_then(|c| Some((c, spill.alloc(c)?)));
        match next {
            Some((c, off)) => {
                if s.spill != NIL {
                    spill.release(s.spill, s.class);
                }
                s.spill = off;
                s.class = c;
            }
            None if s.spill == NIL => {
                // Not even a first chunk: the newest INLINE times stay inline.
                let cut = times.len() - INLINE;
                s.times.copy_from_slice(&times[cut..]);
                s.len = INLINE as u16;
                return (INLINE as u32, cut);
            }
            None => {}
        }
    }
    let room = if narrow {
        Spill::units(s.class) - 3
    } else {
        (Spill::units(s.class) - 1) / 2
    };
    let cut = times.len().saturating_sub(room);
    let kept = &times[cut..];
    spill.encode(s.spill, narrow, kept);
    s.len = kept.len().min(usize::from(u16::MAX)) as u16;
    (kept.len() as u32, cut)
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

/// Counters shown by `f2b-ctl status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FailStats {
    pub failing_now: u64,
    pub failed_total: u64,
    pub evicted: u64,
    pub too_old: u64,
}

/// Tracked addresses live in a slab of fixed 48-byte slots linked into a least-recently-seen
/// list by index, found through a hash table of slot indices (4 bytes a bucket): about 60
/// bytes an address, so a million failing sources cost ~60 MiB, and touching or evicting
/// one is O(1) with no allocation.
pub struct FailManager {
    maxretry: u32,
    findtime: i64,
    max_tracked: usize,
    hasher: Hasher,
    table: AddrTable,
    slots: Vec<Slot>,
    /// Freed slots, chained through `older`.
    free: u32,
    /// Most and least recently seen.
    newest: u32,
    oldest: u32,
    /// Times of addresses with more than INLINE of them (large maxretry), and how they are
    /// encoded there (findtime < 65536 s).
    spill: Spill,
    narrow: bool,
    /// Reused while a spilled address's times change.
    scratch: Vec<u32>,
    stats: FailStats,
}

impl FailManager {
    pub fn new(maxretry: u32, findtime_secs: u64, max_tracked: usize) -> FailManager {
        FailManager {
            maxretry: maxretry.max(1),
            findtime: findtime_secs as i64,
            max_tracked: max_tracked.clamp(1, NIL as usize - 1),
            hasher: Hasher::default(),
            table: AddrTable::default(),
            slots: Vec::new(),
            free: NIL,
            newest: NIL,
            oldest: NIL,
            spill: Spill::default(),
            narrow: findtime_secs < 1 << 16,
            scratch: Vec::new(),
            stats: FailStats::default(),
        }
    }

    /// Changes the thresholds (reload); tracked failures are kept.
    pub fn set_limits(&mut self, maxretry: u32, findtime_secs: u64, max_tracked: usize) {
        self.maxretry = maxretry.max(1);
        self.findtime = findtime_secs as i64;
        self.max_tracked = max_tracked.clamp(1, NIL as usize - 1);
        while self.table.len() > self.max_tracked {
            self.evict_one();
        }
        let narrow = findtime_secs < 1 << 16;
        if narrow != self.narrow {
            self.recode(narrow);
        }
    }

    /// Re-encodes every spilled address's times for a findtime on the other side of 65536 s
    /// (a reload). Narrow needs the times kept within 65535 s of each other: older ones
    /// than that are beyond the new findtime anyway and go now.
    fn recode(&mut self, narrow: bool) {
        let mut v = std::mem::take(&mut self.scratch);
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.spill == NIL {
                continue;
            }
            v.clear();
            self.spill.decode(s.spill, self.narrow, &mut v);
            self.spill.release(s.spill, s.class);
            let newest = v.last().copied().unwrap_or(0);
            if narrow {
                v.retain(|t| newest - t < 1 << 16);
            }
            let s = &mut self.slots[i];
            s.spill = NIL;
            let (n, cut) = store_spilled(&mut self.spill, s, &v, narrow);
            v.drain(..cut);
            debug_assert_eq!(n as usize, v.len());
        }
        self.narrow = narrow;
        self.scratch = v;
    }

    pub fn stats(&self) -> FailStats {
        FailStats {
            failing_now: self.table.len() as u64,
            ..self.stats
        }
    }

    fn find(&self, k: &([u8; 16], bool)) -> (u64, Option<u32>) {
        let h = self.hasher.hash_one(k);
        let slots = &self.slots;
        let i = self
            .table
            .find(h, |i| {
                let s = &slots[i as usize];
                s.addr == k.0 && s.v6 == k.1
            })
            .map(|(_, i)| i);
        (h, i)
    }

    /// The first step of [`FailManager::prefetch`], a failure earlier: starts loading the
    /// bucket where `ip` would be found.
    pub fn prefetch_bucket(&self, ip: &IpAddr) {
        self.table.prefetch(self.hasher.hash_one(key(ip)));
    }

    /// Starts loading what [`FailManager::add_failure`] of `ip` will touch besides its slot
    /// (its neighbours in the LRU list, its spilled times), so that these cache misses (a
    /// million tracked sources do not fit in any cache) overlap the matching of the next
    /// line. Only a hint: calling it or not changes nothing else.
    pub fn prefetch(&self, ip: &IpAddr) {
        let (_, Some(i)) = self.find(&key(ip)) else {
            return;
        };
        let s = &self.slots[i as usize];
        for n in [s.newer, s.older] {
            if n != NIL {
                prefetch(&self.slots, n as usize);
            }
        }
        if s.spill != NIL {
            prefetch(&self.spill.data, s.spill as usize);
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
        let k = key(&ip);
        let (h, found) = self.find(&k);
        let i = match found {
            Some(i) => {
                self.unlink(i);
                i
            }
            None if self.maxretry == 1 => {
                // A first failure is already a ban: nothing to track.
                return Some(Ticket {
                    ip,
                    failures: 1,
                    time,
                    user: user.map(str::to_string),
                });
            }
            None => {
                if self.table.len() >= self.max_tracked {
                    self.evict_one();
                }
                self.alloc(h, k)
            }
        };
        self.push_newest(i);
        let n = self.insert_time(i, secs(time));
        if n >= self.maxretry {
            self.remove(i);
            return Some(Ticket {
                ip,
                failures: n,
                time,
                user: user.map(str::to_string),
            });
        }
        None
    }

    /// Adds `t` to slot `i`'s times in order (lines may arrive slightly out of order), drops
    /// those older than findtime before the newest and those beyond maxretry; returns how
    /// many remain.
    fn insert_time(&mut self, i: u32, t: u32) -> u32 {
        let (findtime, maxretry) = (self.findtime, self.maxretry as usize);
        let keep = |ts: &[u32]| -> usize {
            let newest = i64::from(ts.last().copied().unwrap_or(0));
            let stale = ts
                .iter()
                .take_while(|x| i64::from(**x) <= newest - findtime)
                .count();
            stale + (ts.len() - stale).saturating_sub(maxretry)
        };
        let s = &mut self.slots[i as usize];
        if s.spill == NIL && usize::from(s.len) < INLINE {
            let n = usize::from(s.len);
            let pos = s.times[..n]
                .iter()
                .rposition(|x| *x <= t)
                .map_or(0, |p| p + 1);
            s.times.copy_within(pos..n, pos + 1);
            s.times[pos] = t;
            let drop = keep(&s.times[..=n]);
            s.times.copy_within(drop..=n, 0);
            s.len = (n + 1 - drop) as u16;
            return u32::from(s.len);
        }
        // Spilled, or about to: the times are decoded, changed and stored again (in a chunk of
        // the class they need).
        let mut v = std::mem::take(&mut self.scratch);
        v.clear();
        if s.spill == NIL {
            v.extend_from_slice(&s.times[..usize::from(s.len)]);
        } else {
            self.spill.decode(s.spill, self.narrow, &mut v);
        }
        let pos = v.iter().rposition(|x| *x <= t).map_or(0, |p| p + 1);
        v.insert(pos, t);
        let drop = keep(&v);
        v.drain(..drop);
        let (n, _) = store_spilled(&mut self.spill, s, &v, self.narrow);
        self.scratch = v;
        n
    }

    fn alloc(&mut self, h: u64, k: ([u8; 16], bool)) -> u32 {
        let slot = Slot {
            addr: k.0,
            times: [0; INLINE],
            newer: NIL,
            older: NIL,
            spill: NIL,
            len: 0,
            v6: k.1,
            class: 0,
        };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].older;
            self.slots[i as usize] = slot;
            i
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.table.insert(h, i);
        i
    }

    /// Drops slot `i` from the table, the LRU list and its spilled times.
    fn remove(&mut self, i: u32) {
        let s = self.slots[i as usize];
        let h = self.hasher.hash_one((s.addr, s.v6));
        if let Some((at, _)) = self.table.find(h, |j| j == i) {
            self.table.remove_at(at);
        }
        self.unlink(i);
        if s.spill != NIL {
            self.spill.release(s.spill, s.class);
        }
        let slot = &mut self.slots[i as usize];
        slot.spill = NIL;
        slot.older = self.free;
        self.free = i;
    }

    fn unlink(&mut self, i: u32) {
        let (newer, older) = {
            let s = &self.slots[i as usize];
            (s.newer, s.older)
        };
        match newer {
            NIL if self.newest == i => self.newest = older,
            NIL => {}
            n => self.slots[n as usize].older = older,
        }
        match older {
            NIL if self.oldest == i => self.oldest = newer,
            NIL => {}
            o => self.slots[o as usize].newer = newer,
        }
        let s = &mut self.slots[i as usize];
        s.newer = NIL;
        s.older = NIL;
    }

    fn push_newest(&mut self, i: u32) {
        let old = self.newest;
        {
            let s = &mut self.slots[i as usize];
            s.newer = NIL;
            s.older = old;
        }
        if old != NIL {
            self.slots[old as usize].newer = i;
        } else {
            self.oldest = i;
        }
        self.newest = i;
    }

    /// Forgets an address (it was banned or unbanned by hand).
    pub fn forget(&mut self, ip: &IpAddr) {
        if let (_, Some(i)) = self.find(&key(ip)) {
            self.remove(i);
        }
    }

    fn evict_one(&mut self) {
        if self.oldest != NIL {
            self.remove(self.oldest);
            self.stats.evicted += 1;
        }
    }

    /// The tracked addresses, least recently seen first (tests and diagnostics).
    #[cfg(test)]
    fn tracked(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        let mut i = self.oldest;
        while i != NIL {
            out.push(self.slots[i as usize].ip());
            i = self.slots[i as usize].newer;
        }
        out
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
        assert_eq!(f.tracked().len(), 3);
        assert!(f.slots.len() <= 3, "slots are reused: {}", f.slots.len());
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

    /// The slab/list/table against a plain model (a Vec in recency order), over a long
    #[test]
    fn spilled_times_survive_a_findtime_change_across_16_bits() {
        let mut f = FailManager::new(50, 600, 10);
        for k in 0..30 {
            assert_eq!(f.add_failure(ip(1), 10_000 + k, 10_100, None), None);
        }
        f.set_limits(50, 100_000, 10);
        for k in 30..40 {
            assert_eq!(f.add_failure(ip(1), 10_000 + k, 10_100, None), None);
        }
        f.set_limits(50, 600, 10);
        for k in 40..49 {
            assert_eq!(f.add_failure(ip(1), 10_000 + k, 10_100, None), None);
        }
        let t = f.add_failure(ip(1), 10_049, 10_100, None);
        assert_eq!(t.map(|t| t.failures), Some(50));
    }

    #[test]
    fn spilled_times_grow_through_size_classes_and_slide() {
        // 99 failures of each of two addresses (interleaved, so their chunks move past each
        // other in the arena), in order, then out of order; the 100th makes the ticket.
        let mut f = FailManager::new(100, 1000, 10);
        for k in 0..99 {
            for a in [1, 2] {
                let t = 10_000 + if k % 7 == 3 { k - 2 } else { k };
                assert_eq!(f.add_failure(ip(a), t, 10_100, None), None, "{a} {k}");
            }
        }
        let t = f
            .add_failure(ip(1), 10_099, 10_100, None)
            .map(|t| t.failures);
        assert_eq!(t, Some(100));
        // The window slides: 999 s later only the newest of ip(2)'s failures still count.
        assert_eq!(f.add_failure(ip(2), 11_097, 11_097, None), None);
        let n = f.slots[f.find(&key(&ip(2))).1.expect("tracked") as usize].len;
        assert_eq!(n, 2, "only 10098 is within 1000 s of 11097");
        f.forget(&ip(2));
        assert_eq!(f.stats().failing_now, 0);
    }

    /// pseudo-random run with eviction, spills, forgets, out-of-order and old times.
    #[test]
    fn matches_a_plain_model_under_churn() {
        struct Model {
            maxretry: usize,
            findtime: i64,
            cap: usize,
            v: Vec<(IpAddr, Vec<i64>)>,
        }
        impl Model {
            fn add(&mut self, ip: IpAddr, t: i64, now: i64) -> Option<u32> {
                if t <= now - self.findtime {
                    return None;
                }
                let mut times = match self.v.iter().position(|e| e.0 == ip) {
                    Some(p) => self.v.remove(p).1,
                    None => {
                        if self.v.len() >= self.cap {
                            self.v.remove(0);
                        }
                        Vec::new()
                    }
                };
                let pos = times.iter().rposition(|x| *x <= t).map_or(0, |p| p + 1);
                times.insert(pos, t);
                let newest = *times.last().unwrap();
                times.retain(|x| *x > newest - self.findtime);
                let over = times.len().saturating_sub(self.maxretry);
                times.drain(..over);
                if times.len() >= self.maxretry {
                    return Some(times.len() as u32);
                }
                self.v.push((ip, times));
                None
            }
        }
        for (maxretry, cap, findtime) in [
            (3u32, 50usize, 100i64),
            (9, 20, 100),
            (1, 10, 100),
            (40, 8, 100),
            (40, 100, 100_000),
        ] {
            let mut f = FailManager::new(maxretry, findtime as u64, cap);
            let mut m = Model {
                maxretry: maxretry as usize,
                findtime,
                cap,
                v: Vec::new(),
            };
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut now = 1_000;
            for step in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let r = (x % 97) as u8;
                let ip = if r.is_multiple_of(5) {
                    IpAddr::from([0xfd, 0, 0x0f, 0x2b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, r])
                } else {
                    ip(r)
                };
                if x.is_multiple_of(50) {
                    f.forget(&ip);
                    m.v.retain(|e| e.0 != ip);
                    continue;
                }
                now += (x >> 20) as i64 % 3;
                let t = now - (x >> 30) as i64 % 120;
                let got = f.add_failure(ip, t, now, None).map(|t| t.failures);
                assert_eq!(got, m.add(ip, t, now), "step {step} maxretry {maxretry}");
                let order: Vec<IpAddr> = m.v.iter().map(|e| e.0).collect();
                assert_eq!(f.tracked(), order, "step {step}");
            }
            assert_eq!(f.stats().failing_now as usize, m.v.len());
        }
    }
}
