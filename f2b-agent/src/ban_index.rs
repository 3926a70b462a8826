//! The ban manager's in-memory index of active bans, built to hold a million bans in a few
//! tens of MiB: one 20-byte [`Slot`] per ban keyed by its [`IpNet`], jail names and port sets
//! interned to small ids, and the expiry order as a binary heap of (second, address) with lazy
//! deletion (an entry whose ban changed or went away is skipped when it comes up).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};

use crate::addr_table::AddrTable;
use f2b_common::net::IpNet;

use crate::store::{BanRef, BanRow, StoredBan};

/// A fast keyed hasher for address keys (SipHash costs more than the rest of an index
/// insert). Seeded per process, so an attacker choosing source addresses cannot aim at one
/// bucket without knowing the seed.
#[derive(Clone, Copy)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        FastState(std::collections::hash_map::RandomState::new().hash_one(0x5f2b_u64))
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

pub struct FastHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = fold(self.0 ^ w, K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.0 = fold(
                self.0 ^ u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59),
                K,
            );
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = fold(self.0 ^ u64::from(i), K);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0 = fold(self.0 ^ u64::from(i), K);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = fold(self.0 ^ i, K);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = fold(self.0 ^ i as u64, K);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.0, K ^ 0x2d35_8dcc_aa6c_78a5)
    }
}

pub type FastMap<K, V> = HashMap<K, V, FastState>;
pub type FastSet<K> = std::collections::HashSet<K, FastState>;

/// Unix seconds in 32 bits (good until 2106); [`PERMANENT`] marks a ban without end.
pub const PERMANENT: u32 = u32::MAX;
/// Set in [`Slot::jail`] while start-up reconciliation marks entries the kernel already holds.
const SEEN: u16 = 0x8000;

fn secs32(s: u64) -> u32 {
    s.min(u64::from(PERMANENT - 1)) as u32
}

/// One active ban (20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub since: u32,
    /// Unix second of the end, or [`PERMANENT`].
    pub until: u32,
    pub ban_count: u32,
    pub jail_count: u32,
    /// Interned jail name (index into [`Index::jail_name`]); the top bit is a scratch mark.
    jail: u16,
    /// Interned port set (0 = all ports).
    pub ports: u16,
}

impl Slot {
    /// A slot for interned ids (see [`Index::jail_id`], [`Index::ports_id`]).
    pub fn new(
        jail: u16,
        ports: u16,
        since: u64,
        until: Option<u64>,
        ban_count: u32,
        jail_count: u32,
    ) -> Slot {
        Slot {
            since: secs32(since),
            until: until.map_or(PERMANENT, secs32),
            ban_count,
            jail_count,
            jail: jail & !SEEN,
            ports,
        }
    }

    pub fn jail(&self) -> u16 {
        self.jail & !SEEN
    }
    pub fn until(&self) -> Option<u64> {
        (self.until != PERMANENT).then_some(u64::from(self.until))
    }
    pub fn set_until(&mut self, until: Option<u64>) {
        self.until = until.map_or(PERMANENT, secs32);
    }
    pub fn set_since(&mut self, since: u64) {
        self.since = secs32(since);
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub exact_v4: u64,
    pub exact_v6: u64,
    pub prefix_v4: u64,
    pub prefix_v6: u64,
}

impl Usage {
    pub fn slot(&mut self, ip: &IpNet) -> &mut u64 {
        match (ip.is_ipv4(), ip.is_host()) {
            (true, true) => &mut self.exact_v4,
            (false, true) => &mut self.exact_v6,
            (true, false) => &mut self.prefix_v4,
            (false, false) => &mut self.prefix_v6,
        }
    }
}

/// Active bans: entries `(address, slot)` in a slab (40 bytes each, freed places reused),
/// found through a hash table of 4-byte entry numbers; the expiry heap holds (second, entry
/// number), 8 bytes. A million bans cost ~60 MiB, growing with the bans held: a `HashMap` of
/// the same entries, sized up front for the map capacity so that it never had to grow (which
/// holds old and new table at once), cost 86 MiB of scattered pages however few bans it held,
/// plus 24 bytes a heap entry.
#[derive(Default)]
pub struct Index {
    hasher: FastState,
    table: AddrTable,
    entries: Vec<(IpNet, Slot)>,
    /// One bit per entry: in use.
    used: Vec<u64>,
    free: Vec<u32>,
    jails: Vec<String>,
    jail_ids: HashMap<String, u16>,
    /// Active bans per jail id.
    per_jail: Vec<u64>,
    port_sets: Vec<Box<[u16]>>,
    port_ids: HashMap<Box<[u16]>, u16>,
    /// (Unix second, entry number). An entry whose ban changed, ended, or whose place was
    /// reused is stale unless the place holds a ban ending at that second (which is then due
    /// at that second anyway).
    expiry: BinaryHeap<Reverse<(u32, u32)>>,
    pub usage: Usage,
}

impl Index {
    pub fn new() -> Index {
        let mut i = Index::default();
        i.port_sets.push(Box::new([]));
        i.port_ids.insert(Box::new([]), 0);
        i
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Room for `n` more bans: the hash table (8 bytes a bucket, lazily zeroed, so resident
    /// only where used) is sized now, so it does not grow during a flood; the entries grow
    /// with what is inserted.
    pub fn reserve(&mut self, n: usize) {
        self.table.reserve(n);
    }

    /// Starts loading the bucket where `ip` is looked up (a batch prefetches some addresses
    /// ahead of the one it works on: a million bans fit in no cache).
    pub fn prefetch(&self, ip: &IpNet) {
        self.table.prefetch(self.hasher.hash_one(ip));
    }

    fn is_used(&self, i: u32) -> bool {
        self.used
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The hash `ip` is filed under (for [`Index::prefetch_hashed`] and [`Index::get_hashed`],
    /// and as a well-mixed 64-bit hash of the address for a caller's own table).
    pub fn hash(&self, ip: &IpNet) -> u64 {
        self.hasher.hash_one(ip)
    }

    /// [`Index::prefetch`] with the hash computed already.
    pub fn prefetch_hashed(&self, h: u64) {
        self.table.prefetch(h);
    }

    /// [`Index::get`] with `h` = [`Index::hash`] of `ip`.
    pub fn get_hashed(&self, ip: &IpNet, h: u64) -> Option<&Slot> {
        let entries = &self.entries;
        self.table
            .find(h, |i| entries[i as usize].0 == *ip)
            .map(|(_, i)| &entries[i as usize].1)
    }

    fn find(&self, ip: &IpNet) -> Option<u32> {
        let h = self.hasher.hash_one(ip);
        let entries = &self.entries;
        self.table
            .find(h, |i| entries[i as usize].0 == *ip)
            .map(|(_, i)| i)
    }

    /// Inserts or replaces; returns the entry number and the previous slot.
    fn put(&mut self, ip: IpNet, slot: Slot) -> (u32, Option<Slot>) {
        if let Some(i) = self.find(&ip) {
            let e = &mut self.entries[i as usize].1;
            let old = *e;
            *e = slot;
            self.per_jail[old.jail() as usize] -= 1;
            self.per_jail[slot.jail() as usize] += 1;
            return (i, Some(old));
        }
        (self.put_new(ip, slot), None)
    }

    /// [`Index::insert`] of an address known to have no ban (the caller looked it up): no
    /// second lookup.
    pub fn insert_new(&mut self, ip: IpNet, slot: Slot) {
        debug_assert!(self.find(&ip).is_none(), "{ip} is banned already");
        let i = self.put_new(ip, slot);
        if slot.until != PERMANENT {
            self.expiry.push(Reverse((slot.until, i)));
            self.maybe_compact();
        }
    }

    fn put_new(&mut self, ip: IpNet, slot: Slot) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = (ip, slot);
                i
            }
            None => {
                self.entries.push((ip, slot));
                (self.entries.len() - 1) as u32
            }
        };
        let w = i as usize / 64;
        if self.used.len() <= w {
            self.used.resize(w + 1, 0);
        }
        self.used[w] |= 1 << (i % 64);
        let h = self.hasher.hash_one(ip);
        self.table.insert(h, i);
        *self.usage.slot(&ip) += 1;
        self.per_jail[slot.jail() as usize] += 1;
        i
    }

    /// The id of jail `name`, interned on first use.
    pub fn jail_id(&mut self, name: &str) -> u16 {
        if let Some(id) = self.jail_ids.get(name) {
            return *id;
        }
        // Ids use 15 bits; past that (32k distinct jail names) the last id is shared.
        let id = (self.jails.len() as u16).min(SEEN - 1);
        if (id as usize) == self.jails.len() {
            self.jails.push(name.to_string());
            self.per_jail.push(0);
            self.jail_ids.insert(name.to_string(), id);
        }
        id
    }

    /// The id of jail `name` if any ban ever used it.
    pub fn known_jail(&self, name: &str) -> Option<u16> {
        self.jail_ids.get(name).copied()
    }

    pub fn jail_name(&self, id: u16) -> &str {
        self.jails
            .get((id & !SEEN) as usize)
            .map_or("", String::as_str)
    }

    /// Jail names by id.
    pub fn jail_names(&self) -> &[String] {
        &self.jails
    }

    pub fn banned_in(&self, id: u16) -> u64 {
        self.per_jail.get(id as usize).copied().unwrap_or(0)
    }

    /// The id of a port set (empty = all ports), interned on first use.
    pub fn ports_id(&mut self, ports: &[u16]) -> u16 {
        if let Some(id) = self.port_ids.get(ports) {
            return *id;
        }
        if self.port_sets.len() > usize::from(u16::MAX) {
            // 65k distinct port sets do not occur (they come from jail configs and their
            // unions); widening to all ports keeps the ban rather than dropping it.
            log::error!("too many distinct port sets: banning {ports:?} on all ports");
            return 0;
        }
        let id = self.port_sets.len() as u16;
        self.port_sets.push(ports.into());
        self.port_ids.insert(ports.into(), id);
        id
    }

    pub fn ports(&self, id: u16) -> &[u16] {
        self.port_sets.get(id as usize).map_or(&[], |p| p)
    }

    pub fn get(&self, ip: &IpNet) -> Option<&Slot> {
        self.find(ip).map(|i| &self.entries[i as usize].1)
    }

    pub fn contains(&self, ip: &IpNet) -> bool {
        self.find(ip).is_some()
    }

    /// A slot for a ban by `jail` (interned here).
    pub fn slot(
        &mut self,
        jail: &str,
        since: u64,
        until: Option<u64>,
        ports: &[u16],
        ban_count: u32,
        jail_count: u32,
    ) -> Slot {
        Slot {
            since: secs32(since),
            until: until.map_or(PERMANENT, secs32),
            ban_count,
            jail_count,
            jail: self.jail_id(jail),
            ports: self.ports_id(ports),
        }
    }

    pub fn slot_of_row(&mut self, row: &BanRow<'_>) -> Slot {
        let jail = self.jail_id(row.jail);
        let ports = if row.nports() == 0 {
            0
        } else {
            let p: Vec<u16> = row.ports().collect();
            self.ports_id(&p)
        };
        Slot {
            since: secs32(row.since),
            until: row.until.map_or(PERMANENT, secs32),
            ban_count: row.ban_count,
            jail_count: row.jail_count,
            jail,
            ports,
        }
    }

    /// Inserts or replaces the ban of `ip`; returns the previous one.
    pub fn insert(&mut self, ip: IpNet, slot: Slot) -> Option<Slot> {
        let (i, old) = self.put(ip, slot);
        if slot.until != PERMANENT && old.is_none_or(|o| o.until != slot.until) {
            self.expiry.push(Reverse((slot.until, i)));
            self.maybe_compact();
        }
        old
    }

    /// [`Index::insert`] for many bans at once (a restore): while the returned [`Bulk`]
    /// lives, expiry entries are collected unordered, and the heap is rebuilt once in linear
    /// time when it is dropped, instead of sifted per ban.
    pub fn bulk(&mut self) -> Bulk<'_> {
        let heap = std::mem::take(&mut self.expiry).into_vec();
        Bulk { idx: self, heap }
    }

    pub fn remove(&mut self, ip: &IpNet) -> Option<Slot> {
        let h = self.hasher.hash_one(ip);
        let entries = &self.entries;
        let (at, i) = self.table.find(h, |i| entries[i as usize].0 == *ip)?;
        self.table.remove_at(at);
        let old = self.entries[i as usize].1;
        self.used[i as usize / 64] &= !(1 << (i % 64));
        self.free.push(i);
        self.per_jail[old.jail() as usize] -= 1;
        *self.usage.slot(ip) -= 1;
        Some(old)
    }

    /// Heap entries of bans that changed or ended are skipped lazily; rebuild when they
    /// outnumber the live ones, so memory stays proportional to the active bans.
    fn maybe_compact(&mut self) {
        if self.expiry.len() > 2 * self.len() + 4096 {
            self.expiry = self
                .numbered()
                .filter(|(_, _, s)| s.until != PERMANENT)
                .map(|(i, _, s)| Reverse((s.until, i)))
                .collect();
        }
    }

    fn live(&self, until: u32, i: u32) -> bool {
        self.is_used(i) && self.entries[i as usize].1.until == until
    }

    /// Entries in use with their numbers.
    fn numbered(&self) -> impl Iterator<Item = (u32, &IpNet, &Slot)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_used(*i as u32))
            .map(|(i, (ip, s))| (i as u32, ip, s))
    }

    /// The earliest expiry. May name a ban that changed since (the caller then wakes early
    /// and [`Index::take_due`] drops the stale entry).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.peek().map(|Reverse((u, _))| u64::from(*u))
    }

    /// Pops every ban due at `now` (and stale heap entries on the way).
    pub fn take_due(&mut self, now: u64) -> Vec<IpNet> {
        let mut due = Vec::new();
        while let Some(Reverse((u, i))) = self.expiry.peek().copied() {
            if !self.live(u, i) {
                self.expiry.pop();
                continue;
            }
            if u64::from(u) > now {
                break;
            }
            self.expiry.pop();
            due.push(self.entries[i as usize].0);
        }
        // The same ban may be in the heap twice (re-banned to the same second).
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Puts back bans [`Index::take_due`] returned that could not be expired now.
    pub fn requeue(&mut self, ips: &[IpNet]) {
        for ip in ips {
            if let Some(i) = self.find(ip) {
                let until = self.entries[i as usize].1.until;
                if until != PERMANENT {
                    self.expiry.push(Reverse((until, i)));
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &Slot)> {
        self.numbered().map(|(_, ip, s)| (ip, s))
    }

    /// Marks `ip` as already enforced (start-up reconciliation); returns its slot.
    pub fn mark_seen(&mut self, ip: &IpNet) -> Option<Slot> {
        let i = self.find(ip)?;
        let s = &mut self.entries[i as usize].1;
        s.jail |= SEEN;
        Some(*s)
    }

    /// Calls `f` with every entry not marked seen and its ports, and clears the marks.
    pub fn drain_unseen(&mut self, mut f: impl FnMut(&IpNet, &Slot, &[u16])) {
        let sets = &self.port_sets;
        let used = &self.used;
        for (i, (ip, s)) in self.entries.iter_mut().enumerate() {
            if used[i / 64] & (1 << (i % 64)) == 0 {
                continue;
            }
            if s.jail & SEEN != 0 {
                s.jail &= !SEEN;
            } else {
                f(ip, s, sets.get(s.ports as usize).map_or(&[], |p| p));
            }
        }
    }

    /// The row to persist for `slot`, borrowing the interned jail and ports.
    pub fn row(&self, slot: &Slot) -> BanRef<'_> {
        BanRef {
            jail: self.jail_name(slot.jail()),
            since: u64::from(slot.since),
            until: slot.until(),
            ports: self.ports(slot.ports),
            ban_count: slot.ban_count,
            jail_count: slot.jail_count,
        }
    }

    pub fn stored(&self, slot: &Slot) -> StoredBan {
        self.row(slot).to_stored()
    }
}

impl BanRef<'_> {
    pub fn to_stored(&self) -> StoredBan {
        StoredBan {
            jail: self.jail.to_string(),
            since: self.since,
            until: self.until,
            ports: self.ports.to_vec(),
            ban_count: self.ban_count,
            jail_count: self.jail_count,
        }
    }
}

/// See [`Index::bulk`].
pub struct Bulk<'a> {
    idx: &'a mut Index,
    heap: Vec<Reverse<(u32, u32)>>,
}

impl Bulk<'_> {
    pub fn insert(&mut self, ip: IpNet, slot: Slot) {
        let (i, old) = self.idx.put(ip, slot);
        if slot.until != PERMANENT && old.is_none_or(|o| o.until != slot.until) {
            self.heap.push(Reverse((slot.until, i)));
        }
    }

    /// [`Index::slot_of_row`] (interning) while the bulk insert runs.
    pub fn slot_of_row(&mut self, row: &BanRow<'_>) -> Slot {
        self.idx.slot_of_row(row)
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        self.idx.expiry = BinaryHeap::from(std::mem::take(&mut self.heap));
        self.idx.maybe_compact();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test address")
    }

    #[test]
    fn slot_is_compact() {
        assert_eq!(size_of::<Slot>(), 20);
        assert!(size_of::<(IpNet, Slot)>() <= 40);
    }

    #[test]
    fn interning_counts_and_rows() {
        let mut i = Index::new();
        let a = net("198.18.0.1");
        let b = net("fd00:f2b::/64");
        let s = i.slot("sshd", 100, Some(700), &[22], 2, 1);
        assert!(i.insert(a, s).is_none());
        let t = i.slot("manual", 100, None, &[], 1, 1);
        i.insert(b, t);
        let s2 = i.slot("sshd", 50, Some(900), &[22], 3, 2);
        assert_eq!(s2.jail(), s.jail(), "one id per jail name");
        assert_eq!(s2.ports, s.ports, "one id per port set");
        assert_eq!(i.insert(a, s2), Some(s));
        assert_eq!(i.len(), 2);
        assert_eq!(i.banned_in(s.jail()), 1);
        assert_eq!(i.usage.exact_v4, 1);
        assert_eq!(i.usage.prefix_v6, 1);
        let row = i.row(i.get(&a).expect("a"));
        assert_eq!(
            row.to_stored(),
            StoredBan {
                jail: "sshd".into(),
                since: 50,
                until: Some(900),
                ports: vec![22],
                ban_count: 3,
                jail_count: 2,
            }
        );
        assert_eq!(i.row(i.get(&b).expect("b")).until, None);
        assert!(i.remove(&a).is_some());
        assert_eq!(i.banned_in(s.jail()), 0);
        assert_eq!(i.usage.exact_v4, 0);
    }

    #[test]
    fn expiry_skips_changed_and_removed_bans() {
        let mut i = Index::new();
        let (a, b, c) = (net("198.18.0.1"), net("198.18.0.2"), net("198.18.0.3"));
        let s = |i: &mut Index, until| i.slot("x", 0, Some(until), &[], 1, 1);
        let sa = s(&mut i, 10);
        i.insert(a, sa);
        let sb = s(&mut i, 20);
        i.insert(b, sb);
        let sc = s(&mut i, 30);
        i.insert(c, sc);
        // a extended to 40, b removed: their old heap entries are stale.
        let sa2 = s(&mut i, 40);
        i.insert(a, sa2);
        i.remove(&b);
        assert_eq!(
            i.next_expiry(),
            Some(10),
            "a stale head may wake the timer early"
        );
        assert!(i.take_due(25).is_empty());
        assert_eq!(
            i.next_expiry(),
            Some(30),
            "stale entries dropped on the way"
        );
        assert_eq!(i.take_due(35), vec![c]);
        i.remove(&c);
        i.requeue(&[a]);
        assert_eq!(i.take_due(100), vec![a], "requeued twice, due once");
        // Permanent bans never enter the heap.
        let p = i.slot("x", 0, None, &[], 1, 1);
        i.insert(b, p);
        assert_eq!(i.next_expiry(), None);
        // A new ban in the place b's old entry left: due at its own time only.
        let d = net("198.18.0.4");
        let sd = s(&mut i, 50);
        i.insert_new(d, sd);
        assert_eq!((i.len(), i.get(&d)), (3, Some(&sd)));
        assert_eq!(i.take_due(45), Vec::<IpNet>::new());
        assert_eq!(i.take_due(50), vec![d]);
    }

    #[test]
    fn bulk_insert_keeps_counts_and_expiry_order() {
        let mut i = Index::new();
        let (a, b, c) = (net("198.18.0.1"), net("198.18.0.2"), net("fd00:f2b::/64"));
        let early = i.slot("x", 0, Some(10), &[], 1, 1);
        i.insert(a, early);
        {
            let mut bulk = i.bulk();
            let late = Slot::new(0, 0, 0, Some(30), 1, 1);
            bulk.insert(b, late);
            bulk.insert(c, Slot::new(0, 0, 0, Some(20), 1, 1));
            bulk.insert(a, Slot::new(0, 0, 0, None, 2, 2));
        }
        assert_eq!(i.len(), 3);
        assert_eq!(i.banned_in(0), 3);
        assert_eq!((i.usage.exact_v4, i.usage.prefix_v6), (2, 1));
        // a's old entry (10) is stale now; then c (20), then b (30).
        assert_eq!(i.take_due(25), vec![c]);
        i.remove(&c);
        assert_eq!(i.next_expiry(), Some(30));
        assert_eq!(i.take_due(100), vec![b]);
    }

    #[test]
    fn reconcile_marks() {
        let mut i = Index::new();
        let (a, b) = (net("198.18.0.1"), net("198.18.0.2"));
        let s = i.slot("x", 0, None, &[], 1, 1);
        i.insert(a, s);
        i.insert(b, s);
        assert_eq!(i.mark_seen(&a).map(|s| s.jail()), Some(s.jail()));
        let mut unseen = Vec::new();
        i.drain_unseen(|ip, _, _| unseen.push(*ip));
        assert_eq!(unseen, vec![b]);
        assert_eq!(i.get(&a), Some(&s), "marks cleared");
        let mut again = Vec::new();
        i.drain_unseen(|ip, _, _| again.push(*ip));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn hasher_spreads_addresses() {
        let st = FastState::default();
        let mut seen = std::collections::HashSet::new();
        for x in 0..10_000u32 {
            let ip = IpNet::host(std::net::IpAddr::from(
                (0xfd00_0f2b_0000_0000_0000_0000_0000_0000u128 | u128::from(x)).to_be_bytes(),
            ));
            seen.insert(st.hash_one(ip) >> 50);
        }
        // 10k keys into 16k top-bit buckets: a poor hash would collapse them.
        assert!(seen.len() > 4000, "{}", seen.len());
    }
}
