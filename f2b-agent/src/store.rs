//! Persistence in redb: active bans, per-address ban history (for ban counts and bantime
//! increment across restarts) and small agent metadata. Calls here block; the agent runs them
//! off the tokio workers (a ban manager behind a mutex, driven from `spawn_blocking`).
//!
//! Rows are compact fixed binary records (schema 2), not JSON: a restore decodes a million of
//! them at start, and a bulk ban encodes tens of thousands per request. A database written by
//! schema 1 (JSON rows, text keys) is migrated in one transaction when it is opened.
//!
//! History holds the counts of bans that have *ended* (unbanned, expired, or taken over by
//! another jail); an active ban row carries its own counts. So a ban costs one row write, not
//! three, and [`Store::history`] answers from both.

use std::path::Path;

use std::net::IpAddr;

use f2b_common::net::IpNet;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Active bans: [`net_key`] -> binary row ([`encode_ban`]).
const BANS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bans_v2");
/// Ban counts of ended bans per address: [`net_key`] -> binary row ([`HistRow`]).
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history_v2");
/// Schema 1 tables, read once by the migration and then deleted.
const BANS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("bans_v1");
const HISTORY_V1: TableDefinition<&str, u32> = TableDefinition::new("history_v1");

/// redb's page cache. Its default (1 GiB) lets the cache grow to the whole ban table; the
/// hot part (the tree's inner pages and recently written leaves) is far smaller. 8 MiB
/// against 32: bulk inserts, 1M random-order inserts and the 1M restore were as fast or
/// faster, and the agent's peak RSS under the flood bench ~20 MiB lower (bench numbers in
/// docs/architecture.md).
pub const CACHE_BYTES: usize = 8 << 20;
/// Log read positions: "<jail>\n<path>" -> JSON [`FilePos`].
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions_v1");
/// Agent metadata (schema version, per-interface XDP mode).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta_v1");

pub const SCHEMA_VERSION: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("database {0}: {1}")]
    Db(String, String),
    #[error(
        "database schema version {found} is not supported (this agent writes {SCHEMA_VERSION})"
    )]
    Schema { found: String },
}

fn db_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(what.to_string(), e.to_string())
}

/// One active ban as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBan {
    pub jail: String,
    /// Unix seconds.
    pub since: u64,
    /// Unix seconds; None = permanent.
    pub until: Option<u64>,
    /// Destination ports in scope; empty = all ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Times this address has been banned, this ban included.
    #[serde(default)]
    pub ban_count: u32,
    /// Times this address has been banned by this ban's jail, this ban included.
    #[serde(default)]
    pub jail_count: u32,
}

impl StoredBan {
    pub fn as_ref(&self) -> BanRef<'_> {
        BanRef {
            jail: &self.jail,
            since: self.since,
            until: self.until,
            ports: &self.ports,
            ban_count: self.ban_count,
            jail_count: self.jail_count,
        }
    }
}

/// A ban row to write, borrowing its jail name and ports (no allocation per ban).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRef<'a> {
    pub jail: &'a str,
    pub since: u64,
    pub until: Option<u64>,
    pub ports: &'a [u16],
    pub ban_count: u32,
    pub jail_count: u32,
}

/// A ban row as read, borrowing from the database page.
#[derive(Debug, Clone, Copy)]
pub struct BanRow<'a> {
    pub jail: &'a str,
    pub since: u64,
    pub until: Option<u64>,
    ports: &'a [u8],
    pub ban_count: u32,
    pub jail_count: u32,
}

impl BanRow<'_> {
    pub fn nports(&self) -> usize {
        self.ports.len() / 2
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
    }

    pub fn to_owned(&self) -> StoredBan {
        StoredBan {
            jail: self.jail.to_string(),
            since: self.since,
            until: self.until,
            ports: self.ports().collect(),
            ban_count: self.ban_count,
            jail_count: self.jail_count,
        }
    }
}

/// Row format version, the first byte of every ban row.
const ROW_V2: u8 = 2;
const PERMANENT: u64 = u64::MAX;
/// version, since, until, ban_count, jail_count, nports.
const ROW_FIXED: usize = 1 + 8 + 8 + 4 + 4 + 1;

/// Key of an address or prefix: family (4 or 6), prefix length, address octets (6 or 18
/// bytes; ordered by family, then prefix length, then address).
pub fn net_key(ip: &IpNet) -> NetKey {
    let mut k = NetKey {
        buf: [0; 18],
        len: 0,
    };
    match ip.addr() {
        IpAddr::V4(a) => {
            k.buf[0] = 4;
            k.buf[2..6].copy_from_slice(&a.octets());
            k.len = 6;
        }
        IpAddr::V6(a) => {
            k.buf[0] = 6;
            k.buf[2..18].copy_from_slice(&a.octets());
            k.len = 18;
        }
    }
    k.buf[1] = ip.prefix_len();
    k
}

/// An encoded [`net_key`], on the stack.
#[derive(Clone, Copy)]
pub struct NetKey {
    buf: [u8; 18],
    len: u8,
}

impl NetKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

pub fn decode_net_key(k: &[u8]) -> Option<IpNet> {
    match (k.len(), k.first()) {
        (6, Some(4)) => {
            let a: [u8; 4] = k[2..6].try_into().ok()?;
            IpNet::new(IpAddr::from(a), k[1])
        }
        (18, Some(6)) => {
            let a: [u8; 16] = k[2..18].try_into().ok()?;
            IpNet::new(IpAddr::from(a), k[1])
        }
        _ => None,
    }
}

/// Appends the binary row of `b` to `out`. Jail names longer than 255 bytes and more than
/// 255 ports are cut (neither exists in a valid config).
pub fn encode_ban(b: &BanRef<'_>, out: &mut Vec<u8>) {
    let nports = b.ports.len().min(255);
    let jail = &b.jail.as_bytes()[..b.jail.len().min(255)];
    out.reserve(ROW_FIXED + 2 * nports + 1 + jail.len());
    out.push(ROW_V2);
    out.extend_from_slice(&b.since.to_le_bytes());
    out.extend_from_slice(&b.until.unwrap_or(PERMANENT).to_le_bytes());
    out.extend_from_slice(&b.ban_count.to_le_bytes());
    out.extend_from_slice(&b.jail_count.to_le_bytes());
    out.push(nports as u8);
    for p in &b.ports[..nports] {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out.push(jail.len() as u8);
    out.extend_from_slice(jail);
}

pub fn decode_ban(v: &[u8]) -> Option<BanRow<'_>> {
    if v.len() < ROW_FIXED || v[0] != ROW_V2 {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap_or([0; 4]));
    let nports = v[ROW_FIXED - 1] as usize;
    let ports_end = ROW_FIXED + 2 * nports;
    let jail_len = *v.get(ports_end)? as usize;
    let jail = std::str::from_utf8(v.get(ports_end + 1..ports_end + 1 + jail_len)?).ok()?;
    let until = u64_at(9);
    Some(BanRow {
        jail,
        since: u64_at(1),
        until: (until != PERMANENT).then_some(until),
        ports: &v[ROW_FIXED..ports_end],
        ban_count: u32_at(17),
        jail_count: u32_at(21),
    })
}

/// Ban counts of an address's ended bans: over all jails, and per jail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistRow {
    pub all: u32,
    pub jails: Vec<(String, u32)>,
}

impl HistRow {
    pub fn decode(v: &[u8]) -> HistRow {
        let mut h = HistRow::default();
        if v.len() < 5 {
            return h;
        }
        h.all = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let mut i = 5;
        for _ in 0..v[4] {
            let Some(&n) = v.get(i) else { break };
            let n = n as usize;
            let (Some(name), Some(c)) = (v.get(i + 1..i + 1 + n), v.get(i + 1 + n..i + 5 + n))
            else {
                break;
            };
            let c = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            h.jails
                .push((String::from_utf8_lossy(name).into_owned(), c));
            i += 5 + n;
        }
        h
    }

    /// The count for `jail` in an encoded row, without decoding the rest.
    pub fn jail_in(v: &[u8], jail: &str) -> u32 {
        let mut i = 5;
        for _ in 0..v.get(4).copied().unwrap_or(0) {
            let Some(&n) = v.get(i) else { break };
            let n = n as usize;
            let (Some(name), Some(c)) = (v.get(i + 1..i + 1 + n), v.get(i + 1 + n..i + 5 + n))
            else {
                break;
            };
            if name == jail.as_bytes() {
                return u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            i += 5 + n;
        }
        0
    }

    pub fn all_in(v: &[u8]) -> u32 {
        v.get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.jails.len() * 12);
        out.extend_from_slice(&self.all.to_le_bytes());
        let n = self.jails.len().min(255);
        out.push(n as u8);
        for (j, c) in &self.jails[..n] {
            let j = &j.as_bytes()[..j.len().min(255)];
            out.push(j.len() as u8);
            out.extend_from_slice(j);
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    /// Records an ended ban: the counts never go down.
    pub fn record(&mut self, jail: &str, ban_count: u32, jail_count: u32) {
        self.all = self.all.max(ban_count);
        if jail_count == 0 {
            return;
        }
        match self.jails.iter_mut().find(|(j, _)| j == jail) {
            Some((_, c)) => *c = (*c).max(jail_count),
            None => self.jails.push((jail.to_string(), jail_count)),
        }
    }
}

/// A ban that ended in a transaction, whose counts go to history.
struct Ended {
    ip: IpNet,
    jail: String,
    ban_count: u32,
    jail_count: u32,
}

/// Where a jail stopped reading a log file: the file's identity and the offset just after
/// the last complete line that was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePos {
    pub dev: u64,
    pub ino: u64,
    /// Hash of the first `fingerprint_len` bytes of the file (0 when the file was empty).
    pub fingerprint: u64,
    pub fingerprint_len: u32,
    pub offset: u64,
}

fn pos_key(jail: &str, path: &str) -> String {
    format!("{jail}\n{path}")
}

/// Schema 1 -> 2 inside `txn`: JSON ban rows with text keys become binary rows; the history
/// rows ("ip" and "jail\nip" -> count) are merged into one binary row per address. The v1
/// tables are deleted. Returns (bans, history rows) converted.
fn migrate_v1(txn: &redb::WriteTransaction) -> Result<(usize, usize), StoreError> {
    let mut nbans = 0;
    {
        let v1 = txn
            .open_table(BANS_V1)
            .map_err(|e| db_err("open bans_v1", e))?;
        let mut v2 = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
        let mut row = Vec::new();
        for r in v1.iter().map_err(|e| db_err("iterate bans_v1", e))? {
            let (k, v) = r.map_err(|e| db_err("read bans_v1", e))?;
            match (
                k.value().parse::<IpNet>(),
                serde_json::from_slice::<StoredBan>(v.value()),
            ) {
                (Ok(ip), Ok(b)) => {
                    row.clear();
                    encode_ban(&b.as_ref(), &mut row);
                    v2.insert(net_key(&ip).as_bytes(), row.as_slice())
                        .map_err(|e| db_err("write ban", e))?;
                    nbans += 1;
                }
                _ => log::error!(
                    "database migration: skipping undecodable ban row {:?}",
                    k.value()
                ),
            }
        }
    }
    let mut rows: std::collections::BTreeMap<IpNet, HistRow> = Default::default();
    {
        let v1 = txn
            .open_table(HISTORY_V1)
            .map_err(|e| db_err("open history_v1", e))?;
        for r in v1.iter().map_err(|e| db_err("iterate history_v1", e))? {
            let (k, v) = r.map_err(|e| db_err("read history_v1", e))?;
            let key = k.value();
            let (jail, ip) = match key.rsplit_once('\n') {
                Some((j, ip)) => (Some(j), ip),
                None => (None, key),
            };
            let Ok(ip) = ip.parse::<IpNet>() else {
                continue;
            };
            let h = rows.entry(ip).or_default();
            match jail {
                Some(j) => h.record(j, 0, v.value()),
                None => h.all = h.all.max(v.value()),
            }
        }
    }
    let nhist = rows.len();
    {
        let mut v2 = txn
            .open_table(HISTORY)
            .map_err(|e| db_err("open history", e))?;
        for (ip, h) in rows {
            v2.insert(net_key(&ip).as_bytes(), h.encode().as_slice())
                .map_err(|e| db_err("write history", e))?;
        }
    }
    txn.delete_table(BANS_V1)
        .map_err(|e| db_err("delete bans_v1", e))?;
    txn.delete_table(HISTORY_V1)
        .map_err(|e| db_err("delete history_v1", e))?;
    Ok((nbans, nhist))
}

/// Writes handed to the background committer ([`Store::commit_async`]): ban rows already
/// encoded, read positions and metadata rows, owned so the caller goes on at once.
#[derive(Default)]
pub struct Pending {
    keys: Vec<NetKey>,
    rows: Vec<u8>,
    ends: Vec<usize>,
    positions: Vec<(String, String, Option<FilePos>)>,
    meta: Vec<(String, String)>,
}

impl Pending {
    pub fn put(&mut self, ip: &IpNet, ban: &BanRef<'_>) {
        self.keys.push(net_key(ip));
        encode_ban(ban, &mut self.rows);
        self.ends.push(self.rows.len());
    }

    pub fn positions(&mut self, positions: &[(String, String, Option<FilePos>)]) {
        self.positions.extend_from_slice(positions);
    }

    pub fn meta(&mut self, meta: &[(String, String)]) {
        self.meta.extend_from_slice(meta);
    }

    pub fn bans(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.positions.is_empty() && self.meta.is_empty()
    }

    fn rows(&self) -> impl Iterator<Item = (&NetKey, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.keys
            .iter()
            .zip(starts.zip(self.ends.iter().copied()))
            .map(|(k, (a, b))| (k, &self.rows[a..b]))
    }
}

/// Most batches waiting for the committer; a reader that gets further ahead waits (this
/// bounds the memory of queued rows and of one merged transaction under a ban flood).
const MAX_PENDING: usize = 4;

/// Longest a batch of read positions alone (no bans) stays in a commit that is not yet
/// durable. Such batches come after every poll of a busy log; making each one durable cost an
/// fsync per batch (a tenth of a core under a line flood). A crash loses at most this much of
/// read progress (those lines are read again), never a ban: batches with bans are durable.
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Default)]
struct Queue {
    jobs: Vec<Pending>,
    /// Jobs handed over so far, and jobs whose transaction has ended (committed or failed).
    queued: u64,
    done: u64,
    /// Jobs known to be on disk (a durable commit ended after them), and the most any
    /// [`CommitMark`] waits for.
    durable: u64,
    want: u64,
    stop: bool,
}

/// The background committer's shared state.
#[derive(Default)]
struct Committer {
    queue: std::sync::Mutex<Queue>,
    cond: std::sync::Condvar,
}

impl Committer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: std::sync::MutexGuard<'a, Queue>) -> std::sync::MutexGuard<'a, Queue> {
        self.cond.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// The committer thread: takes every waiting job, writes them in one transaction, in the
    /// order they were handed over; on stop, drains the queue first. A transaction is durable
    /// when it holds bans or metadata, when a [`CommitMark`] waits for it, on stop, or when
    /// [`DURABLE_EVERY`] has passed since the last durable one; otherwise (read positions
    /// only) it is committed without fsync and a later durable commit persists it. With
    /// nothing queued, a pending non-durable commit is made durable after [`DURABLE_EVERY`].
    fn run(&self, db: &Database) {
        let mut last_durable = std::time::Instant::now();
        loop {
            let mut g = self.lock();
            loop {
                let lagging = g.durable < g.done;
                if !g.jobs.is_empty() || g.want > g.durable || (g.stop && lagging) {
                    break;
                }
                if g.stop {
                    return;
                }
                if lagging {
                    let left = DURABLE_EVERY.saturating_sub(last_durable.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    g = self
                        .cond
                        .wait_timeout(g, left)
                        .map_or_else(|p| p.into_inner().0, |r| r.0);
                } else {
                    g = self.wait(g);
                }
            }
            let jobs = std::mem::take(&mut g.jobs);
            let upto = g.queued;
            let durable = g.stop
                || g.want > g.durable
                || jobs
                    .iter()
                    .any(|j| !j.keys.is_empty() || !j.meta.is_empty())
                || last_durable.elapsed() >= DURABLE_EVERY;
            drop(g);
            self.cond.notify_all();
            let bans: usize = jobs.iter().map(Pending::bans).sum();
            if let Err(e) = write_txn(db, &jobs, &[], durable) {
                // The bans stay enforced in the kernel; the next start adopts them from there.
                log::error!("database: committing {bans} bans and read positions: {e}");
            }
            if durable {
                last_durable = std::time::Instant::now();
            }
            let mut g = self.lock();
            g.done = upto;
            if durable {
                g.durable = upto;
            }
            drop(g);
            self.cond.notify_all();
        }
    }
}

/// See [`Store::mark`].
pub struct CommitMark {
    committer: std::sync::Arc<Committer>,
    seq: u64,
}

impl CommitMark {
    /// Waits until everything handed over before the mark is durable.
    pub fn wait(self) {
        let c = &self.committer;
        let mut g = c.lock();
        if g.durable >= self.seq {
            return;
        }
        g.want = g.want.max(self.seq);
        c.cond.notify_all();
        while g.durable < self.seq {
            g = c.wait(g);
        }
    }
}

pub struct Store {
    db: std::sync::Arc<Database>,
    committer: std::sync::Arc<Committer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Store {
    /// Waits for the committer to write what it was handed.
    fn drop(&mut self) {
        self.committer.lock().stop = true;
        self.committer.cond.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Rows [`put_rows`] inserts one by one after a cursor that served a single row, before it
/// tries a cursor again.
const PLAIN_AFTER_MISS: usize = 8;

/// Writes ban rows as consecutive `insert`s in the given order would (the last row of a key
/// wins; a ban taken over by another jail, from the table or from an earlier row of the
/// same key, ends for its old jail: its counts go to `ended`), but in key order, and rows
/// that fall into one gap of the table (new addresses above, below or between the banned
/// ones, as a bulk ban or a flood of new sources brings) through a cursor: they are spliced
/// in as a run instead of each walked down the tree (~1 us a row). Scattered rows, where a
/// cursor would serve one row per seek (which costs more than an insert), go in one by one,
/// with a cursor tried again every [`PLAIN_AFTER_MISS`] rows.
fn put_rows(
    bans: &mut redb::Table<&'static [u8], &'static [u8]>,
    rows: &mut [(&[u8], &[u8])],
    ended: &mut Vec<Ended>,
) -> Result<(), StoreError> {
    let w = |e: redb::StorageError| db_err("write ban", e);
    // Stable: rows of one key keep their order.
    rows.sort_by(|a, b| a.0.cmp(b.0));
    // The rows of one key, from `i` on.
    let group = |rows: &[(&[u8], &[u8])], i: usize| {
        let mut j = i;
        while rows.get(j + 1).is_some_and(|r| r.0 == rows[i].0) {
            j += 1;
        }
        j
    };
    // A ban (decoded from `prev`) replaced by `row` ends when the jail changes.
    let mut chain = |key: &[u8], prev: &mut Option<(String, u32, u32)>, row: &[u8]| {
        let Some(n) = decode_ban(row) else { return };
        if let Some((pj, pb, pc)) = prev.as_ref()
            && n.jail != pj
            && let Some(ip) = decode_net_key(key)
        {
            ended.push(Ended {
                ip,
                jail: pj.clone(),
                ban_count: *pb,
                jail_count: *pc,
            });
        }
        *prev = Some((n.jail.to_string(), n.ban_count, n.jail_count));
    };
    let owned = |b: &[u8]| decode_ban(b).map(|o| (o.jail.to_string(), o.ban_count, o.jail_count));
    let mut plain = 0;
    let mut i = 0;
    while i < rows.len() {
        if plain > 0 {
            let j = group(rows, i);
            for &(key, row) in &rows[i..=j] {
                let mut prev = bans
                    .insert(key, row)
                    .map_err(w)?
                    .and_then(|old| owned(old.value()));
                chain(key, &mut prev, row);
            }
            i = j + 1;
            plain -= 1;
            continue;
        }
        let mut cur = bans
            .lower_bound_mut(std::ops::Bound::Included(rows[i].0))
            .map_err(w)?;
        let mut served = 0;
        while i < rows.len() {
            let key = rows[i].0;
            let j = group(rows, i);
            let next = cur.peek_next().map_err(w)?.map(|(k, _)| k.value().cmp(key));
            let mut prev = match next {
                // Past this gap: the cursor has done what it can.
                Some(std::cmp::Ordering::Less) => break,
                Some(std::cmp::Ordering::Equal) => cur
                    .remove_next()
                    .map_err(w)?
                    .and_then(|(_, old)| owned(old.value())),
                _ => None,
            };
            if prev.is_some() || j > i {
                for &(_, row) in &rows[i..=j] {
                    chain(key, &mut prev, row);
                }
            }
            cur.insert_before(key, rows[j].1)
                .map_err(|e| db_err("write ban", e))?;
            served += 1;
            i = j + 1;
        }
        cur.close().map_err(w)?;
        if served < 2 {
            plain = PLAIN_AFTER_MISS;
        }
    }
    Ok(())
}

/// One write transaction: the jobs' positions, metadata and ban rows in order, then `dels`
/// (whose counts go to the history, as do those of a ban taken over by another jail).
fn write_txn(
    db: &Database,
    jobs: &[Pending],
    dels: &[IpNet],
    durable: bool,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(|e| db_err("begin", e))?;
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| db_err("set durability", e))?;
    }
    if jobs.iter().any(|j| !j.meta.is_empty()) {
        let mut t = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
        for (k, v) in jobs.iter().flat_map(|j| &j.meta) {
            t.insert(k.as_str(), v.as_str())
                .map_err(|e| db_err("write meta", e))?;
        }
    }
    if jobs.iter().any(|j| !j.positions.is_empty()) {
        let mut t = txn
            .open_table(POSITIONS)
            .map_err(|e| db_err("open positions", e))?;
        for (jail, path, pos) in jobs.iter().flat_map(|j| &j.positions) {
            let key = pos_key(jail, path);
            match pos {
                Some(p) => {
                    let v = serde_json::to_vec(p).map_err(|e| db_err("encode position", e))?;
                    t.insert(key.as_str(), v.as_slice())
                        .map_err(|e| db_err("write position", e))?;
                }
                None => {
                    t.remove(key.as_str())
                        .map_err(|e| db_err("delete position", e))?;
                }
            }
        }
    }
    let mut ended = Vec::new();
    if jobs.iter().any(|j| !j.keys.is_empty()) || !dels.is_empty() {
        let mut bans = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
        let mut rows: Vec<(&[u8], &[u8])> = jobs
            .iter()
            .flat_map(Pending::rows)
            .map(|(k, r)| (k.as_bytes(), r))
            .collect();
        put_rows(&mut bans, &mut rows, &mut ended)?;
        for ip in dels {
            let old = bans
                .remove(net_key(ip).as_bytes())
                .map_err(|e| db_err("delete ban", e))?;
            if let Some(old) = old
                && let Some(o) = decode_ban(old.value())
            {
                ended.push(Ended {
                    ip: *ip,
                    jail: o.jail.to_string(),
                    ban_count: o.ban_count,
                    jail_count: o.jail_count,
                });
            }
        }
    }
    if !ended.is_empty() {
        let mut hist = txn
            .open_table(HISTORY)
            .map_err(|e| db_err("open history", e))?;
        for e in ended {
            let key = net_key(&e.ip);
            let mut h = hist
                .get(key.as_bytes())
                .map_err(|e| db_err("read history", e))?
                .map(|g| HistRow::decode(g.value()))
                .unwrap_or_default();
            h.record(&e.jail, e.ban_count, e.jail_count);
            hist.insert(key.as_bytes(), h.encode().as_slice())
                .map_err(|e| db_err("write history", e))?;
        }
    }
    txn.commit().map_err(|e| db_err("commit", e))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| db_err("create directory", e))?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let db = std::sync::Arc::new(db);
        let committer = std::sync::Arc::new(Committer::default());
        let thread = {
            let (db, c) = (db.clone(), committer.clone());
            std::thread::Builder::new()
                .name("store-commit".into())
                .spawn(move || c.run(&db))
                .map_err(|e| db_err("start committer", e))?
        };
        let store = Store {
            db,
            committer,
            thread: Some(thread),
        };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
            let found = meta
                .get("schema")
                .map_err(|e| db_err("read meta", e))?
                .map(|v| v.value().to_string());
            match found.as_deref() {
                None => {}
                Some(SCHEMA_VERSION) => {}
                Some("1") => {
                    let (bans, hist) = migrate_v1(&txn)?;
                    log::info!(
                        "database: migrated schema 1 -> {SCHEMA_VERSION} ({bans} bans, {hist} history rows)"
                    );
                }
                Some(other) => {
                    return Err(StoreError::Schema {
                        found: other.to_string(),
                    });
                }
            }
            if found.as_deref() != Some(SCHEMA_VERSION) {
                meta.insert("schema", SCHEMA_VERSION)
                    .map_err(|e| db_err("write meta", e))?;
            }
            txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
            txn.open_table(HISTORY)
                .map_err(|e| db_err("open history", e))?;
            txn.open_table(POSITIONS)
                .map_err(|e| db_err("open positions", e))?;
        }
        txn.commit().map_err(|e| db_err("commit", e))
    }

    /// Number of ban rows (to size the index before a restore).
    pub fn ban_rows(&self) -> Result<usize, StoreError> {
        use redb::ReadableTableMetadata;
        self.barrier();
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
        Ok(table.len().map_err(|e| db_err("count bans", e))? as usize)
    }

    /// Every persisted ban. Rows that do not decode are reported and skipped, not fatal.
    pub fn load_bans(&self) -> Result<Vec<(IpNet, StoredBan)>, StoreError> {
        let mut out = Vec::new();
        self.for_each_ban(|ip, b| out.push((ip, b.to_owned())))?;
        Ok(out)
    }

    /// Calls `f` for every persisted ban, decoded in place (nothing kept in between, no
    /// allocation per row). Rows that do not decode are reported and skipped.
    pub fn for_each_ban(&self, mut f: impl FnMut(IpNet, BanRow<'_>)) -> Result<(), StoreError> {
        self.barrier();
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
        for row in table.iter().map_err(|e| db_err("iterate bans", e))? {
            let (k, v) = row.map_err(|e| db_err("read ban", e))?;
            match (decode_net_key(k.value()), decode_ban(v.value())) {
                (Some(ip), Some(b)) => f(ip, b),
                _ => log::error!("database: skipping undecodable ban row {:?}", k.value()),
            }
        }
        Ok(())
    }

    /// Ban counts so far for these addresses in one jail (0 when never banned there).
    pub fn history_in(&self, jail: &str, ips: &[IpNet]) -> Result<Vec<u32>, StoreError> {
        Ok(self
            .counts(jail, ips, true)?
            .into_iter()
            .map(|c| c.1)
            .collect())
    }

    /// Ban counts so far for these addresses, over all jails (0 when never banned).
    pub fn history(&self, ips: &[IpNet]) -> Result<Vec<u32>, StoreError> {
        Ok(self
            .counts("", ips, true)?
            .into_iter()
            .map(|c| c.0)
            .collect())
    }

    /// (over all jails, in `jail`) ban counts of the *ended* bans of each address, in one read
    /// transaction. The ban manager adds what its active bans carry.
    pub fn ended_counts(&self, jail: &str, ips: &[IpNet]) -> Result<Vec<(u32, u32)>, StoreError> {
        self.counts(jail, ips, false)
    }

    fn counts(
        &self,
        jail: &str,
        ips: &[IpNet],
        with_active: bool,
    ) -> Result<Vec<(u32, u32)>, StoreError> {
        if with_active {
            self.barrier();
        }
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let hist = txn
            .open_table(HISTORY)
            .map_err(|e| db_err("open history", e))?;
        let bans = if with_active {
            Some(txn.open_table(BANS).map_err(|e| db_err("open bans", e))?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(ips.len());
        for ip in ips {
            let key = net_key(ip);
            let (mut all, mut this) = match hist
                .get(key.as_bytes())
                .map_err(|e| db_err("read history", e))?
            {
                Some(g) => (
                    HistRow::all_in(g.value()),
                    HistRow::jail_in(g.value(), jail),
                ),
                None => (0, 0),
            };
            if let Some(bans) = &bans
                && let Some(g) = bans
                    .get(key.as_bytes())
                    .map_err(|e| db_err("read ban", e))?
                && let Some(b) = decode_ban(g.value())
            {
                all = all.max(b.ban_count);
                if b.jail == jail {
                    this = this.max(b.jail_count);
                }
            }
            out.push((all, this));
        }
        Ok(out)
    }

    /// In one durable transaction: writes `puts` and deletes `dels` (whose counts go to the
    /// history). Either all of it is on disk when this returns Ok, or none of it.
    pub fn apply(&self, puts: &[(IpNet, StoredBan)], dels: &[IpNet]) -> Result<(), StoreError> {
        self.commit(puts, dels, &[], &[])
    }

    /// Read positions saved for a jail: (path, position).
    pub fn positions(&self, jail: &str) -> Result<Vec<(String, FilePos)>, StoreError> {
        self.barrier();
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn
            .open_table(POSITIONS)
            .map_err(|e| db_err("open positions", e))?;
        let prefix = pos_key(jail, "");
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| db_err("iterate positions", e))? {
            let (k, v) = row.map_err(|e| db_err("read position", e))?;
            if let Some(path) = k.value().strip_prefix(prefix.as_str())
                && let Ok(p) = serde_json::from_slice::<FilePos>(v.value())
            {
                out.push((path.to_string(), p));
            }
        }
        Ok(out)
    }

    /// [`Store::apply`] plus read positions `(jail, path, Some(pos) | None = forget)` and
    /// metadata rows (e.g. a journal cursor), all in
    /// one transaction: the bans a batch of log lines caused and the position after those
    /// lines become durable together, so a restart neither rereads nor skips them.
    pub fn commit(
        &self,
        puts: &[(IpNet, StoredBan)],
        dels: &[IpNet],
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
    ) -> Result<(), StoreError> {
        let refs: Vec<(IpNet, BanRef<'_>)> = puts.iter().map(|(ip, b)| (*ip, b.as_ref())).collect();
        self.commit_refs(&refs, dels, positions, meta)
    }

    /// [`Store::commit`] with borrowed rows (the ban manager's compact index hands them out
    /// without building a `StoredBan` per ban).
    pub fn commit_refs(
        &self,
        puts: &[(IpNet, BanRef<'_>)],
        dels: &[IpNet],
        positions: &[(String, String, Option<FilePos>)],
        meta: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut job = Pending::default();
        for (ip, ban) in puts {
            job.put(ip, ban);
        }
        job.positions(positions);
        job.meta(meta);
        self.barrier();
        write_txn(&self.db, std::slice::from_ref(&job), dels, true)
    }

    /// Hands a jail batch's writes to the background committer and returns at once (the
    /// caller has enforced the bans in the kernel already). Batches are written in the order
    /// they were handed over, several in one transaction when they queue up; every other
    /// write, and every read that could see them, waits for them first ([`Store::barrier`]).
    /// A reader more than [`MAX_PENDING`] batches ahead of the disk waits here.
    pub fn commit_async(&self, job: Pending) {
        if job.is_empty() {
            return;
        }
        let c = &self.committer;
        let mut g = c.lock();
        while g.jobs.len() >= MAX_PENDING && !g.stop {
            g = c.wait(g);
        }
        g.jobs.push(job);
        g.queued += 1;
        drop(g);
        c.cond.notify_all();
    }

    /// A mark of what has been handed to the committer so far; [`CommitMark::wait`] returns
    /// once all of it is written. Taken under the ban manager's lock, waited on after it is
    /// released: `status` answers only when everything it reports is on disk.
    pub fn mark(&self) -> CommitMark {
        CommitMark {
            committer: self.committer.clone(),
            seq: self.committer.lock().queued,
        }
    }

    /// Waits until every batch handed to [`Store::commit_async`] so far has been written
    /// (or has failed and been reported).
    /// A transaction of this process sees them; one that commits durably persists them too.
    pub fn barrier(&self) {
        let c = &self.committer;
        let mut g = c.lock();
        let seq = g.queued;
        while g.done < seq {
            g = c.wait(g);
        }
    }

    /// In one durable transaction: writes `rows` and deletes `remove`, leaving the history
    /// alone. Takes back a commit whose bans never took effect (the kernel refused them).
    pub fn put_back(
        &self,
        rows: &[(IpNet, BanRef<'_>)],
        remove: &[IpNet],
    ) -> Result<(), StoreError> {
        self.barrier();
        let txn = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut bans = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
            let mut row = Vec::with_capacity(64);
            for (ip, ban) in rows {
                row.clear();
                encode_ban(ban, &mut row);
                bans.insert(net_key(ip).as_bytes(), row.as_slice())
                    .map_err(|e| db_err("write ban", e))?;
            }
            for ip in remove {
                bans.remove(net_key(ip).as_bytes())
                    .map_err(|e| db_err("delete ban", e))?;
            }
        }
        txn.commit().map_err(|e| db_err("commit", e))
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.barrier();
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
        Ok(table
            .get(key)
            .map_err(|e| db_err("read meta", e))?
            .map(|v| v.value().to_string()))
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.barrier();
        let txn = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut t = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
            t.insert(key, value).map_err(|e| db_err("write meta", e))?;
        }
        txn.commit().map_err(|e| db_err("commit", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(jail: &str, until: Option<u64>, count: u32) -> StoredBan {
        StoredBan {
            jail_count: count,
            jail: jail.into(),
            since: 100,
            until,
            ports: vec![],
            ban_count: count,
        }
    }

    #[test]
    fn bans_survive_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f2b.redb");
        let a: IpNet = "198.18.0.7".parse().unwrap();
        let b: IpNet = "fd00:f2b::/64".parse().unwrap();
        {
            let s = Store::open(&path).unwrap();
            s.apply(
                &[(a, ban("manual", Some(500), 1)), (b, ban("sshd", None, 3))],
                &[],
            )
            .unwrap();
            s.apply(&[], &[a]).unwrap();
            s.meta_set("iface:veth0", "native").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let bans = s.load_bans().unwrap();
        assert_eq!(bans, vec![(b, ban("sshd", None, 3))]);
        assert_eq!(
            s.history(&[a, b, "198.18.0.9".parse().unwrap()]).unwrap(),
            vec![1, 3, 0]
        );
        assert_eq!(
            s.meta_get("iface:veth0").unwrap().as_deref(),
            Some("native")
        );
    }

    #[test]
    fn async_commits_keep_their_order_and_are_written_before_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f2b.redb");
        let a: IpNet = "198.18.0.7".parse().unwrap();
        let b: IpNet = "fd00:f2b::9".parse().unwrap();
        let pos = FilePos {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            fingerprint_len: 64,
            offset: 0,
        };
        {
            let s = Store::open(&path).unwrap();
            // Many batches in a row: later positions win, every ban row arrives.
            for i in 0..200u64 {
                let mut job = Pending::default();
                let ip = IpNet::host(std::net::Ipv4Addr::from(0xc613_0000 + i as u32).into());
                job.put(&ip, &ban("sshd", None, 1).as_ref());
                job.positions(&[(
                    "sshd".into(),
                    "auth.log".into(),
                    Some(FilePos { offset: i, ..pos }),
                )]);
                s.commit_async(job);
            }
            // A synchronous write after them sees them: the unban of `a` is not undone by
            // the batch that banned it, and its count goes to the history.
            let mut job = Pending::default();
            job.put(&a, &ban("sshd", None, 2).as_ref());
            s.commit_async(job);
            s.apply(&[], &[a]).unwrap();
            // A read waits for what was handed over before it.
            let mut job = Pending::default();
            job.put(&b, &ban("recidive", None, 4).as_ref());
            s.commit_async(job);
            assert_eq!(s.history(&[b]).unwrap(), vec![4]);
            // The last batch is still queued when the store is dropped.
            let mut job = Pending::default();
            job.positions(&[(
                "sshd".into(),
                "auth.log".into(),
                Some(FilePos {
                    offset: 9999,
                    ..pos
                }),
            )]);
            s.commit_async(job);
        }
        let s = Store::open(&path).unwrap();
        let bans = s.load_bans().unwrap();
        assert_eq!(bans.len(), 201, "200 batch bans + b, a unbanned");
        assert!(bans.iter().all(|(ip, _)| *ip != a));
        assert_eq!(s.history(&[a]).unwrap(), vec![2]);
        assert_eq!(s.positions("sshd").unwrap()[0].1.offset, 9999);
    }

    #[test]
    fn positions_per_jail_commit_with_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f2b.redb");
        let p = FilePos {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            fingerprint_len: 64,
            offset: 1000,
        };
        let a: IpNet = "198.18.0.7".parse().unwrap();
        {
            let s = Store::open(&path).unwrap();
            s.commit(
                &[(a, ban("sshd", None, 1))],
                &[],
                &[
                    ("sshd".into(), "/var/log/auth.log".into(), Some(p)),
                    (
                        "sshd2".into(),
                        "/var/log/auth.log".into(),
                        Some(FilePos { offset: 5, ..p }),
                    ),
                ],
                &[],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.positions("sshd").unwrap(),
            vec![("/var/log/auth.log".to_string(), p)]
        );
        assert_eq!(s.positions("sshd2").unwrap()[0].1.offset, 5);
        assert_eq!(s.load_bans().unwrap().len(), 1);
        s.commit(
            &[],
            &[],
            &[("sshd".into(), "/var/log/auth.log".into(), None)],
            &[],
        )
        .unwrap();
        assert!(s.positions("sshd").unwrap().is_empty());
    }

    #[test]
    fn put_back_restores_rows_without_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("f2b.redb")).unwrap();
        let a: IpNet = "198.18.0.7".parse().unwrap();
        let b: IpNet = "198.18.0.8".parse().unwrap();
        let old = ban("sshd", Some(500), 2);
        s.apply(&[(a, old.clone())], &[]).unwrap();
        // A request that took a over into "manual" and added b, then was refused.
        s.apply(
            &[
                (a, ban("manual", Some(900), 3)),
                (b, ban("manual", None, 1)),
            ],
            &[],
        )
        .unwrap();
        s.put_back(&[(a, old.as_ref())], &[b]).unwrap();
        assert_eq!(s.load_bans().unwrap(), vec![(a, old)]);
        assert_eq!(s.history(&[b]).unwrap(), vec![0], "b never ended a ban");
    }

    #[test]
    fn second_open_of_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f2b.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(err.to_string().contains("f2b.redb"), "{err}");
    }

    /// [`put_rows`] leaves the table and the ended bans as one `insert` per row in the given
    /// order would: on seeded mixes of new keys (above, below and between the present
    /// ones), present keys, keys repeated within a batch, and jail takeovers.
    #[test]
    fn sorted_cursor_writes_equal_inserts_in_order() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const JAILS: [&str; 3] = ["manual", "sshd", "web"];
        let dir = tempfile::tempdir().unwrap();
        for round in 0..40 {
            let dbs: Vec<Database> = (0..2)
                .map(|k| Database::create(dir.path().join(format!("{round}-{k}.redb"))).unwrap())
                .collect();
            // Key space: few keys (many repeats and hits) or many (mostly new), v4 and v6.
            let space = if round % 2 == 0 { 40 } else { 5_000 };
            let key = |n: u64| {
                let ip = if n.is_multiple_of(3) {
                    IpNet::host(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(n)).into())
                } else {
                    IpNet::host(std::net::Ipv4Addr::from(0xc612_0000 + n as u32).into())
                };
                net_key(&ip)
            };
            let row = |jail: &str, count: u32| {
                let mut out = Vec::new();
                encode_ban(
                    &BanRef {
                        jail,
                        since: 1,
                        until: Some(u64::from(count) * 10),
                        ports: &[],
                        ban_count: count,
                        jail_count: count,
                    },
                    &mut out,
                );
                out
            };
            let present: Vec<(NetKey, Vec<u8>)> = (0..next() % 300)
                .map(|_| {
                    let n = next();
                    (
                        key(n % space),
                        row(JAILS[(n % 3) as usize], 1 + (n % 5) as u32),
                    )
                })
                .collect();
            let batch: Vec<(NetKey, Vec<u8>)> = (0..1 + next() % 600)
                .map(|_| {
                    let n = next();
                    (
                        key(n % space),
                        row(JAILS[(n >> 8) as usize % 3], 1 + (n % 7) as u32),
                    )
                })
                .collect();
            let mut results = Vec::new();
            for (k, db) in dbs.iter().enumerate() {
                let txn = db.begin_write().unwrap();
                let mut ended = Vec::new();
                {
                    let mut t = txn.open_table(BANS).unwrap();
                    for (key, r) in &present {
                        t.insert(key.as_bytes(), r.as_slice()).unwrap();
                    }
                    if k == 0 {
                        for (key, r) in &batch {
                            let old = t.insert(key.as_bytes(), r.as_slice()).unwrap();
                            if let Some(old) = old
                                && let Some(o) = decode_ban(old.value())
                                && decode_ban(r).is_some_and(|n| n.jail != o.jail)
                            {
                                ended.push((
                                    key.as_bytes().to_vec(),
                                    o.jail.to_string(),
                                    o.ban_count,
                                ));
                            }
                        }
                    } else {
                        let mut rows: Vec<(&[u8], &[u8])> = batch
                            .iter()
                            .map(|(k, r)| (k.as_bytes(), r.as_slice()))
                            .collect();
                        let mut e = Vec::new();
                        put_rows(&mut t, &mut rows, &mut e).unwrap();
                        ended = e
                            .into_iter()
                            .map(|e| (net_key(&e.ip).as_bytes().to_vec(), e.jail, e.ban_count))
                            .collect();
                    }
                }
                txn.commit().unwrap();
                ended.sort();
                let txn = db.begin_read().unwrap();
                let t = txn.open_table(BANS).unwrap();
                let rows: Vec<(Vec<u8>, Vec<u8>)> = t
                    .iter()
                    .unwrap()
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.value().to_vec(), v.value().to_vec())
                    })
                    .collect();
                results.push((rows, ended));
            }
            assert_eq!(results[0].0.len(), results[1].0.len(), "round {round}");
            assert!(results[0] == results[1], "round {round}");
            if round == 0 {
                assert!(!results[0].1.is_empty(), "takeovers happen");
            }
        }
    }
}
