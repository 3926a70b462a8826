//! Persistence in redb: active bans, per-address ban history (for ban counts and bantime
//! increment across restarts) and small agent metadata. Calls here block; the agent runs them
//! off the tokio workers (a ban manager behind a mutex, driven from `spawn_blocking`).

use std::path::Path;

use f2b_common::net::IpNet;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Active bans: address/CIDR text -> JSON [`StoredBan`].
const BANS: TableDefinition<&str, &[u8]> = TableDefinition::new("bans_v1");
/// How many times an address has been banned, ever.
const HISTORY: TableDefinition<&str, u32> = TableDefinition::new("history_v1");
/// Log read positions: "<jail>\n<path>" -> JSON [`FilePos`].
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions_v1");
/// Agent metadata (schema version, per-interface XDP mode).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta_v1");

pub const SCHEMA_VERSION: &str = "1";

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

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| db_err("create directory", e))?;
        }
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let store = Store { db };
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
            match found {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)
                        .map_err(|e| db_err("write meta", e))?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(found) => return Err(StoreError::Schema { found }),
            }
            txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
            txn.open_table(HISTORY)
                .map_err(|e| db_err("open history", e))?;
            txn.open_table(POSITIONS)
                .map_err(|e| db_err("open positions", e))?;
        }
        txn.commit().map_err(|e| db_err("commit", e))
    }

    /// Every persisted ban. Rows that do not decode are reported and skipped, not fatal.
    pub fn load_bans(&self) -> Result<Vec<(IpNet, StoredBan)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| db_err("iterate bans", e))? {
            let (k, v) = row.map_err(|e| db_err("read ban", e))?;
            let key = k.value();
            match (
                key.parse::<IpNet>(),
                serde_json::from_slice::<StoredBan>(v.value()),
            ) {
                (Ok(ip), Ok(ban)) => out.push((ip, ban)),
                (a, b) => log::error!(
                    "database: skipping undecodable ban row {key:?}: {}",
                    a.err()
                        .map(|e| e.to_string())
                        .or(b.err().map(|e| e.to_string()))
                        .unwrap_or_default()
                ),
            }
        }
        Ok(out)
    }

    /// Ban counts so far for these addresses in one jail (0 when never banned there).
    pub fn history_in(&self, jail: &str, ips: &[IpNet]) -> Result<Vec<u32>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn
            .open_table(HISTORY)
            .map_err(|e| db_err("open history", e))?;
        ips.iter()
            .map(|ip| {
                Ok(table
                    .get(pos_key(jail, &ip.to_string()).as_str())
                    .map_err(|e| db_err("read history", e))?
                    .map(|g| g.value())
                    .unwrap_or(0))
            })
            .collect()
    }

    /// Ban counts so far for these addresses, over all jails (0 when never banned).
    pub fn history(&self, ips: &[IpNet]) -> Result<Vec<u32>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn
            .open_table(HISTORY)
            .map_err(|e| db_err("open history", e))?;
        ips.iter()
            .map(|ip| {
                Ok(table
                    .get(ip.to_string().as_str())
                    .map_err(|e| db_err("read history", e))?
                    .map(|g| g.value())
                    .unwrap_or(0))
            })
            .collect()
    }

    /// In one durable transaction: writes `puts` (and their ban counts into history) and deletes
    /// `dels`. Either all of it is on disk when this returns Ok, or none of it.
    pub fn apply(&self, puts: &[(IpNet, StoredBan)], dels: &[IpNet]) -> Result<(), StoreError> {
        self.commit(puts, dels, &[], &[])
    }

    /// Read positions saved for a jail: (path, position).
    pub fn positions(&self, jail: &str) -> Result<Vec<(String, FilePos)>, StoreError> {
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
        let txn = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        if !meta.is_empty() {
            let mut t = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
            for (k, v) in meta {
                t.insert(k.as_str(), v.as_str())
                    .map_err(|e| db_err("write meta", e))?;
            }
        }
        if !positions.is_empty() {
            let mut t = txn
                .open_table(POSITIONS)
                .map_err(|e| db_err("open positions", e))?;
            for (jail, path, pos) in positions {
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
        {
            let mut bans = txn.open_table(BANS).map_err(|e| db_err("open bans", e))?;
            let mut hist = txn
                .open_table(HISTORY)
                .map_err(|e| db_err("open history", e))?;
            for (ip, ban) in puts {
                let key = ip.to_string();
                let v = serde_json::to_vec(ban).map_err(|e| db_err("encode ban", e))?;
                bans.insert(key.as_str(), v.as_slice())
                    .map_err(|e| db_err("write ban", e))?;
                hist.insert(key.as_str(), ban.ban_count)
                    .map_err(|e| db_err("write history", e))?;

                if ban.jail_count > 0 {
                    hist.insert(pos_key(&ban.jail, &key).as_str(), ban.jail_count)
                        .map_err(|e| db_err("write history", e))?;
                }
            }
            for ip in dels {
                bans.remove(ip.to_string().as_str())
                    .map_err(|e| db_err("delete ban", e))?;
            }
        }
        txn.commit().map_err(|e| db_err("commit", e))
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read", e))?;
        let table = txn.open_table(META).map_err(|e| db_err("open meta", e))?;
        Ok(table
            .get(key)
            .map_err(|e| db_err("read meta", e))?
            .map(|v| v.value().to_string()))
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
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
    fn second_open_of_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f2b.redb");
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(err.to_string().contains("f2b.redb"), "{err}");
    }
}
