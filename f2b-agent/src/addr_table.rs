//! An index of addresses whose records live elsewhere (a slab), by slot number, built for
//! tables of a million addresses that no cache holds: one cache line per lookup, and that
//! line can be prefetched from the hash alone. Used by a jail's failure counter and by the
//! ban index.

/// An index of addresses kept elsewhere (in a slab), by slot number: open addressing with linear probing over one array of
/// 8-byte buckets, each the hash's high 32 bits (which also give the bucket's home) and a
/// slot number. A lookup reads one cache line of buckets, where hashbrown reads two (control
/// bytes and indices are separate arrays), and that line can be prefetched from the hash
/// alone. At most 5/8 full (16 MiB for a million addresses); removal shifts the following
/// run back, so there are no tombstones.
#[derive(Default)]
pub struct AddrTable {
    buckets: Vec<u64>,
    len: usize,
}

/// A bucket is `tag << 32 | (slot + 1)`, so an empty one is 0 and a fresh array is lazily
/// zeroed memory (no resident pages until used).
const EMPTY: u64 = 0;

impl AddrTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, tag: u64) -> usize {
        tag as usize & (self.buckets.len() - 1)
    }

    /// Starts loading the bucket where hash `h` is looked for first.
    pub fn prefetch(&self, h: u64) {
        if !self.buckets.is_empty() {
            prefetch(&self.buckets, self.home(h >> 32));
        }
    }

    /// The bucket position and slot number of the entry with hash `h` for which `eq` holds.
    pub fn find(&self, h: u64, eq: impl Fn(u32) -> bool) -> Option<(usize, u32)> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = h >> 32;
        let mask = self.buckets.len() - 1;
        let mut i = self.home(tag);
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            let slot = (b as u32).wrapping_sub(1);
            if b >> 32 == tag && eq(slot) {
                return Some((i, slot));
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds slot number `slot` (below u32::MAX) under hash `h`; `h` must not be there.
    pub fn insert(&mut self, h: u64, slot: u32) {
        if (self.len + 1) * 8 > self.buckets.len() * 5 {
            self.grow_to((self.len + 1).max(self.buckets.len() * 5 / 8 + 1));
        }
        self.place((h >> 32) << 32 | u64::from(slot + 1));
        self.len += 1;
    }

    /// Room for `n` more entries without growing.
    pub fn reserve(&mut self, n: usize) {
        if (self.len + n) * 8 > self.buckets.len() * 5 {
            self.grow_to(self.len + n);
        }
    }

    /// At least room for `n` entries: doubles (or more) the array and places every entry again.
    fn grow_to(&mut self, n: usize) {
        let cap = (n * 8 / 5 + 1).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; cap]);
        for b in old.into_iter().filter(|b| *b != EMPTY) {
            self.place(b);
        }
    }

    fn place(&mut self, b: u64) {
        let mask = self.buckets.len() - 1;
        let mut i = self.home(b >> 32);
        while self.buckets[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.buckets[i] = b;
    }

    /// Empties bucket `at`, moving back the entries after it that may not be past a hole.
    pub fn remove_at(&mut self, at: usize) {
        let mask = self.buckets.len() - 1;
        let mut hole = at;
        let mut j = at;
        loop {
            j = (j + 1) & mask;
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            // The entry at j may fill the hole when its home is not between the hole and j.
            let home = self.home(b >> 32);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }
}

/// Asks the CPU to load the cache line of `items[i]`; nothing when `i` is out of bounds.
#[inline]
pub fn prefetch<T>(items: &[T], i: usize) {
    let Some(x) = items.get(i) else { return };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the language sees and cannot fault (the
    // address is in bounds anyway); SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_a_set_with_collisions_and_wraparound() {
        // Few distinct tags (many equal homes, runs across the array's end) and removals in
        // the middle of runs.
        let mut t = AddrTable::default();
        let mut m = std::collections::HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for slot in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let h = ((x % 40) | 0xffff_ffc0) << 32;
            if x.is_multiple_of(3) && !m.is_empty() {
                let (&k, &hk): (&u32, &u64) = m.iter().next().expect("an entry");
                let (at, got) = t.find(hk, |j| j == k).expect("present");
                assert_eq!(got, k);
                t.remove_at(at);
                m.remove(&k);
            } else {
                t.insert(h, slot);
                m.insert(slot, h);
            }
            assert_eq!(t.len(), m.len());
        }
        for (k, h) in &m {
            assert_eq!(t.find(*h, |j| j == *k).map(|f| f.1), Some(*k));
        }
        assert_eq!(t.find(0xffff_ffff_0000_0000, |_| true), None);
    }
}
