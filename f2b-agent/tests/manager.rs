//! The ban manager against real pinned BPF maps (in a private bpffs) and a real redb file:
//! guardrails, all-or-nothing bans, map capacity, expiry, and start-up reconciliation
//! between what the kernel enforces and what the database holds. No interface is attached;
//! packet verdicts are covered by xdp_verdict.rs and the namespace tests.

use std::path::{Path, PathBuf};

use f2b_agent::bans::{BanManager, BanRequest, RECOVERED_JAIL, Reconciled};
use f2b_agent::clock::{kernel_expiry, unix_now};
use f2b_agent::config::Config;
use f2b_agent::kernel::Kernel;
use f2b_agent::store::{Store, StoredBan};
use f2b_common::BanValue;
use f2b_common::net::IpNet;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Option<Env> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: manager tests need root (bpffs mount, BPF maps)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Env { dir })
    }
    fn pin(&self) -> PathBuf {
        self.dir.path().join("bpf")
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("f2b.redb")
    }
    fn config(&self, extra: &str) -> Config {
        let text = format!(
            "interfaces: [lo]\nmaps: {{bans: 8, prefixes: 8, allow: 8}}\ndefaults:\n  ignoreip: [127.0.0.0/8, 198.18.9.0/24]\njails:\n  web:\n    ports: [80, 443]\n    bantime: 1h\n{extra}"
        );
        Config::parse(&text, "test.yaml").expect("test config")
    }
    fn manager(&self, extra: &str) -> BanManager {
        let cfg = self.config(extra);
        let kernel = Kernel::load(&self.pin(), cfg.maps).expect("load XDP object");
        let store = Store::open(&self.db()).expect("open db");
        BanManager::new(cfg, kernel, store)
    }
    /// A second, independent handle on the same pinned maps (what the XDP program reads).
    fn kernel(&self) -> Kernel {
        Kernel::load(&self.pin(), self.config("").maps).expect("second kernel handle")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.pin().as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid path string; detaching an unmounted path just fails.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn req(ips: &[&str]) -> BanRequest {
    BanRequest {
        ips: ips.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test address")
}

fn listed(m: &BanManager) -> Vec<String> {
    let mut v: Vec<String> = m.list(None).bans.into_iter().map(|b| b.ip).collect();
    v.sort();
    v
}

fn assert_unchanged(m: &BanManager, k: &Kernel, before: &[String]) {
    assert_eq!(listed(m), before, "a refused request must change nothing");
    let mut kern: Vec<String> = k
        .all_bans()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    kern.sort();
    assert_eq!(
        kern, before,
        "kernel maps must match the database after a refusal"
    );
}

#[test]
fn guardrails_refuse_and_change_nothing() {
    let Some(env) = Env::new() else { return };
    let mut m = env.manager("");
    m.reconcile().expect("reconcile");
    let k = env.kernel();
    m.ban(&req(&["198.18.0.7"])).expect("plain ban");
    let before = vec!["198.18.0.7".to_string()];

    let cases: &[(BanRequest, &str)] = &[
        (req(&["0.0.0.0/0"]), "every IPv4"),
        (req(&["::/0"]), "every IPv6"),
        (req(&["198.0.0.0/8"]), "--force"),
        (req(&["fd00::/16"]), "--force"),
        (req(&["127.0.0.1"]), "allowlisted"),
        (req(&["198.18.9.0/25"]), "allowlisted"),
        (req(&["not-an-ip"]), "not-an-ip"),
        // One bad address spoils the whole request: the good one is not banned either.
        (req(&["198.18.0.8", "198.18.9.1"]), "allowlisted"),
        (
            BanRequest {
                jail: Some("nope".into()),
                ..req(&["198.18.0.8"])
            },
            "unknown jail",
        ),
        (
            BanRequest {
                time: Some("10x".into()),
                ..req(&["198.18.0.8"])
            },
            "10x",
        ),
    ];
    for (r, want) in cases {
        let e = m.ban(r).expect_err(&format!("{:?} must be refused", r.ips));
        assert!(
            e.contains(want),
            "{:?}: error {e:?} should mention {want:?}",
            r.ips
        );
        assert_unchanged(&m, &k, &before);
    }
    // --force lifts the minimum-prefix guard, never the /0 one.
    m.ban(&BanRequest {
        force: true,
        ..req(&["198.0.0.0/8"])
    })
    .expect("forced /8");
    assert!(
        m.ban(&BanRequest {
            force: true,
            ..req(&["0.0.0.0/0"])
        })
        .is_err()
    );
    // A prefix that merely contains an allowlisted range is accepted (the kernel allowlist wins).
    m.ban(&req(&["198.18.0.0/16"]))
        .expect("prefix around the allowlist");
}

#[test]
fn full_map_refuses_the_whole_request() {
    let Some(env) = Env::new() else { return };
    let mut m = env.manager("");
    m.reconcile().expect("reconcile");
    let k = env.kernel();
    assert_eq!(k.capacity.bans, 8);
    let nine: Vec<String> = (1..=9).map(|i| format!("198.18.0.{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let e = m.ban(&req(&nine)).expect_err("9 bans into an 8-entry map");
    assert!(
        e.contains("full") && e.contains("nothing was banned"),
        "{e}"
    );
    assert_unchanged(&m, &k, &[]);
    m.ban(&req(&nine[..8])).expect("8 fit");
    assert_eq!(k.all_bans().len(), 8);
    assert!(
        m.ban(&req(&["198.18.1.1"]))
            .expect_err("ninth")
            .contains("full")
    );
    // Re-banning an address already in the map needs no new slot.
    m.ban(&req(&["198.18.0.1"]))
        .expect("refresh of an existing ban");
    assert_eq!(m.stats().maps[0].entries, 8);
}

/// A request large enough to be parsed by two threads and written to the kernel by two
/// (20k addresses, repeats across both halves): a refused address in the second half still
/// changes nothing; accepted, every address is banned once, in the database and the kernel,
/// and the compact answer names the first position of each.
#[test]
fn large_request_is_all_or_nothing_with_repeats_across_halves() {
    let Some(env) = Env::new() else { return };
    let text = "interfaces: [lo]\nmaps: {bans: 32768, prefixes: 8, allow: 8}\ndefaults:\n  ignoreip: [127.0.0.0/8]\njails: {}\n";
    let cfg = Config::parse(text, "test.yaml").expect("test config");
    let kernel = Kernel::load(&env.pin(), cfg.maps).expect("load XDP object");
    let store = Store::open(&env.db()).expect("open db");
    let mut m = BanManager::new(cfg, kernel, store);
    m.reconcile().expect("reconcile");
    let k = Kernel::load(&env.pin(), m.config().maps).expect("second kernel handle");
    const N: usize = 20_000;
    // Distinct v6 and v4 hosts; then every 1000th address again, in the other half.
    let mut ips: Vec<String> = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                format!("fd00:f2b::2:{:x}:{:x}", i >> 16, i & 0xffff)
            } else {
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)
            }
        })
        .collect();
    let repeats: Vec<String> = (0..N).step_by(1000).map(|i| ips[i].clone()).collect();
    ips.splice(N / 4..N / 4, repeats.iter().rev().take(10).cloned());
    ips.extend(repeats.iter().take(10).cloned());
    let total = ips.len();

    let mut bad = ips.clone();
    bad.push("127.0.0.9".into());
    let e = m
        .ban_addrs(&bad, None, Some("1h"), false)
        .expect_err("allowlisted address at the end");
    assert!(e.contains("127.0.0.9") && e.contains("allowlisted"), "{e}");
    bad.pop();
    bad.insert(3 * total / 4, "not-an-ip".into());
    let e = m
        .ban_addrs(&bad, None, Some("1h"), false)
        .expect_err("bad address in the second half");
    assert!(e.contains("not-an-ip"), "{e}");
    assert_unchanged(&m, &k, &[]);

    let done = m
        .ban_addrs(&ips, None, Some("1h"), false)
        .expect("large ban");
    assert_eq!(done.len(), N);
    let mut positions = Vec::new();
    for r in done.runs().runs {
        positions.extend(r.at as usize..(r.at + r.n) as usize);
    }
    // Each address at the first position it appears, in request order.
    let mut seen = std::collections::HashSet::new();
    let want: Vec<usize> = (0..total)
        .filter(|&p| seen.insert(ips[p].clone()))
        .collect();
    assert_eq!(positions, want);
    assert_eq!(k.all_bans().len(), N);
    assert_eq!(m.list(None).bans.len(), N);
    // Again, now all known: extended in place, nothing added.
    let again = m.ban_addrs(&ips, None, Some("2h"), false).expect("re-ban");
    assert_eq!(again.len(), N);
    assert_eq!(k.all_bans().len(), N);
}

#[test]
fn jail_port_scope_expiry_and_unban() {
    let Some(env) = Env::new() else { return };
    let mut m = env.manager("");
    m.reconcile().expect("reconcile");
    let k = env.kernel();
    let r = m
        .ban(&BanRequest {
            jail: Some("web".into()),
            ..req(&["198.18.0.5", "fd00:f2b::5"])
        })
        .expect("web ban");
    let now = unix_now();
    for b in &r.banned {
        assert_eq!(b.jail, "web");
        let until = b.until.expect("1h ban is not permanent");
        assert!(
            until.abs_diff(now + 3600) <= 2,
            "bantime from the jail: {until} vs {}",
            now + 3600
        );
    }
    let v = k.get_ban(&net("198.18.0.5")).expect("in kernel");
    assert_eq!(&v.ports[..v.nports as usize], &[80, 443]);
    assert!(v.expires_ns > 0);
    m.ban(&BanRequest {
        time: Some("permanent".into()),
        ..req(&["198.18.0.6"])
    })
    .expect("permanent");
    assert_eq!(
        k.get_ban(&net("198.18.0.6")).expect("in kernel").expires_ns,
        0
    );
    m.ban(&BanRequest {
        time: Some("90s".into()),
        ..req(&["198.18.0.7"])
    })
    .expect("90s");

    // Expiry: nothing is due now; 90 s later only the 90 s ban goes, from kernel and list.
    assert_eq!(m.expire_due(unix_now()), 0);
    assert_eq!(
        m.next_expiry().map(|t| t.abs_diff(now + 90) <= 2),
        Some(true)
    );
    assert_eq!(m.expire_due(unix_now() + 91), 1);
    assert!(k.get_ban(&net("198.18.0.7")).is_none());
    assert_eq!(listed(&m), vec!["198.18.0.5", "198.18.0.6", "fd00:f2b::5"]);

    let u = m
        .unban(&["198.18.0.6".into(), "198.18.0.99".into()], false, None)
        .expect("unban");
    assert_eq!(u.unbanned, vec!["198.18.0.6"]);
    assert_eq!(u.not_banned, vec!["198.18.0.99"]);
    assert!(k.get_ban(&net("198.18.0.6")).is_none());
    let u = m
        .unban(&[], true, Some("web"))
        .expect("unban --all --jail web");
    assert_eq!(u.unbanned.len(), 2);
    assert!(listed(&m).is_empty() && k.all_bans().is_empty());
    assert!(
        m.unban(&[], false, None).is_err(),
        "neither addresses nor --all"
    );
}

#[test]
fn restart_reconciles_kernel_and_database() {
    let Some(env) = Env::new() else { return };
    {
        let mut m = env.manager("");
        m.reconcile().expect("first start");
        m.ban(&req(&["198.18.0.7", "fd00:f2b::7"])).expect("ban");
        m.ban(&BanRequest {
            time: Some("permanent".into()),
            ..req(&["198.18.1.0/24"])
        })
        .expect("prefix");
    }
    // What a crash leaves behind: an enforced ban that never reached the database, an
    // expired kernel entry, and a database ban that expired while the agent was down.
    let mut k = env.kernel();
    k.put_ban(
        &net("198.18.0.99"),
        BanValue::new(kernel_expiry(Some(unix_now() + 600))),
    )
    .expect("stray");
    k.put_ban(&net("198.18.0.98"), BanValue::new(1))
        .expect("expired stray");
    let stale = StoredBan {
        jail_count: 1,
        jail: "manual".into(),
        since: 1,
        until: Some(unix_now() - 5),
        ports: vec![],
        ban_count: 1,
    };
    Store::open(&env.db())
        .expect("db")
        .apply(&[(net("198.18.0.50"), stale)], &[])
        .expect("stale row");
    k.put_ban(
        &net("198.18.0.50"),
        BanValue::new(kernel_expiry(Some(unix_now() + 600))),
    )
    .expect("stale kernel");

    let mut m = env.manager("");
    let r = m.reconcile().expect("reconcile after crash");
    assert_eq!(
        r,
        Reconciled {
            restored: 3,
            adopted: 1,
            expired: 2,
            failed: 0
        }
    );
    assert_eq!(
        listed(&m),
        vec!["198.18.0.7", "198.18.0.99", "198.18.1.0/24", "fd00:f2b::7"]
    );
    let adopted = m
        .list(None)
        .bans
        .into_iter()
        .find(|b| b.ip == "198.18.0.99")
        .expect("adopted");
    assert_eq!(adopted.jail, RECOVERED_JAIL);
    assert!(
        adopted
            .until
            .is_some_and(|u| u.abs_diff(unix_now() + 600) <= 2)
    );
    for gone in ["198.18.0.98", "198.18.0.50"] {
        assert!(
            k.get_ban(&net(gone)).is_none(),
            "{gone} must be removed from the kernel"
        );
    }
    assert!(
        k.get_ban(&net("198.18.1.0/24"))
            .is_some_and(|v| v.expires_ns == 0)
    );
    drop(m);
    // The adoption is durable: a third start finds it in the database, not in the kernel only.
    let rows: Vec<String> = Store::open(&env.db())
        .expect("db")
        .load_bans()
        .expect("rows")
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(
        rows.contains(&"198.18.0.99".to_string()) && !rows.contains(&"198.18.0.50".to_string()),
        "{rows:?}"
    );
    // The allowlist in the kernel is the config's ignoreip.
    let _ = Path::new("");
}

#[test]
fn reload_swaps_allowlist_and_keeps_bans() {
    let Some(env) = Env::new() else { return };
    let mut m = env.manager("");
    m.reconcile().expect("reconcile");
    m.ban(&req(&["198.18.0.7"])).expect("ban");
    let mut new = env.config("  extra:\n    ports: [22]\n");
    new.ignoreip = vec![net("198.18.200.0/24")];
    let restart = m.reload(new).expect("reload");
    assert!(restart.is_empty(), "{restart:?}");
    assert_eq!(listed(&m), vec!["198.18.0.7"], "reload keeps bans");
    m.ban(&BanRequest {
        jail: Some("extra".into()),
        ..req(&["198.18.0.8"])
    })
    .expect("new jail usable");
    assert!(
        m.ban(&req(&["198.18.200.1"]))
            .expect_err("new allowlist")
            .contains("allowlisted")
    );
    m.ban(&req(&["198.18.9.1"]))
        .expect("old allowlist entry is gone");
    let stats = m.stats();
    let allow: u64 = stats
        .maps
        .iter()
        .filter(|u| u.name.starts_with("F2B_ALLOW"))
        .map(|u| u.entries)
        .sum();
    assert_eq!(allow, 1);
}

fn ticket(ip: &str, failures: u32) -> f2b_agent::jail::Ticket {
    f2b_agent::jail::Ticket {
        ip: ip.parse().expect("ip"),
        failures,
        time: unix_now() as i64,
        user: Some("root".into()),
    }
}

#[test]
fn jail_batches_ban_commit_positions_and_increment_across_restart() {
    let Some(env) = Env::new() else { return };
    let inc = "  grow:\n    bantime: 10m\n    bantime_increment: {enabled: true, factor: 1, maxtime: 1d}\n";
    let pos = f2b_agent::store::FilePos {
        dev: 1,
        ino: 2,
        fingerprint: 3,
        fingerprint_len: 10,
        offset: 4242,
    };
    let positions = vec![("grow".to_string(), "/var/log/x.log".to_string(), Some(pos))];
    {
        let mut m = env.manager(inc);
        m.reconcile().expect("reconcile");
        let stats = f2b_agent::jail::FailStats {
            failing_now: 2,
            failed_total: 9,
            ..Default::default()
        };
        let bans = m.jail_batch(
            "grow",
            vec![
                ticket("198.18.0.7", 3),
                ticket("198.18.0.7", 3),
                ticket("127.0.0.1", 3),
                ticket("198.18.9.9", 3),
            ],
            &positions,
            &[],
            stats,
        );
        // Duplicate, loopback and allowlisted tickets are dropped; one ban results.
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].info.ip, "198.18.0.7");
        assert_eq!(bans[0].info.ban_count, 1);
        let until = bans[0].info.until.expect("finite");
        assert!(until.abs_diff(unix_now() + 600) <= 2);
        let st = m.jail_status(Some("grow")).expect("status");
        assert_eq!(
            (st[0].failing_now, st[0].failed_total, st[0].banned_now),
            (2, 9, 1)
        );
        assert!(env.kernel().get_ban(&net("198.18.0.7")).is_some());
        m.unban(&["198.18.0.7".into()], false, None).expect("unban");
    }
    // Positions went to disk with the ban.
    assert_eq!(
        Store::open(&env.db())
            .expect("db")
            .positions("grow")
            .expect("positions"),
        vec![("/var/log/x.log".to_string(), pos)]
    );
    // After a restart the second ban of the same address lasts twice as long (history in redb).
    let mut m = env.manager(inc);
    m.reconcile().expect("reconcile");
    let bans = m.jail_batch(
        "grow",
        vec![ticket("198.18.0.7", 3)],
        &[],
        &[],
        Default::default(),
    );
    assert_eq!(bans[0].info.ban_count, 2);
    assert!(
        bans[0]
            .info
            .until
            .expect("finite")
            .abs_diff(unix_now() + 1200)
            <= 2
    );
}

#[test]
fn increment_counts_per_jail_unless_overalljails() {
    let Some(env) = Env::new() else { return };
    let jails = "  a:\n    bantime: 10m\n    bantime_increment: {enabled: true}\n  b:\n    bantime: 10m\n    bantime_increment: {enabled: true}\n  c:\n    bantime: 10m\n    bantime_increment: {enabled: true, overalljails: true, multipliers: [1, 3]}\n";
    let mut m = env.manager(jails);
    m.reconcile().expect("reconcile");
    let len = |b: &f2b_agent::bans::JailBan| b.info.until.expect("finite") - b.info.since;
    let one = |m: &mut BanManager, jail: &str| {
        let b = m.jail_batch(
            jail,
            vec![ticket("198.18.0.7", 3)],
            &[],
            &[],
            Default::default(),
        );
        m.unban(&["198.18.0.7".into()], false, None).expect("unban");
        b.into_iter().next().expect("a ban")
    };
    assert_eq!(len(&one(&mut m, "a")), 600);
    assert_eq!(len(&one(&mut m, "a")), 1200, "second ban in jail a");
    // Jail b has never banned it: its own count starts at zero (overalljails: false).
    let b = one(&mut m, "b");
    assert_eq!((len(&b), b.info.ban_count), (600, 3));
    // Jail c counts over all jails: three earlier bans -> the last multiplier (3).
    assert_eq!(len(&one(&mut m, "c")), 1800);
}

/// Batch writes, reads and deletes against the real maps: every map kind, counters written as
/// given, missing keys skipped on delete, and a full map refusing with how far it got.
#[test]
fn batch_update_lookup_delete_roundtrip() {
    let Some(env) = Env::new() else { return };
    let mut k = env.kernel();
    let nets: Vec<IpNet> = [
        "198.18.1.1",
        "198.18.1.2",
        "fd00:f2b::1",
        "198.18.4.0/24",
        "fd00:f2b:1::/48",
    ]
    .iter()
    .map(|s| net(s))
    .collect();
    let items: Vec<(IpNet, BanValue)> = nets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut v = BanValue::new(0);
            v.packets = i as u64 + 10;
            v.nports = 1;
            v.ports[0] = 22;
            (*n, v)
        })
        .collect();
    k.put_bans(&items).expect("batch write");
    let mut got = Vec::new();
    k.for_each_ban(|n, v| got.push((n, *v)))
        .expect("batch read");
    got.sort_by_key(|g| g.0);
    let mut want = items.clone();
    want.sort_by_key(|w| w.0);
    assert_eq!(
        got, want,
        "what was written is read back, counters included"
    );
    assert_eq!(
        k.remove_bans(&[nets[0], net("198.18.1.99"), nets[2], nets[3]])
            .expect("batch delete"),
        3,
        "the missing key is skipped, the rest removed"
    );
    let mut left: Vec<IpNet> = k.all_bans().into_iter().map(|b| b.0).collect();
    left.sort();
    assert_eq!(left, vec![nets[1], nets[4]]);
    // Capacity 8: 7 more exact v4 entries fit, the 8th does not.
    let many: Vec<(IpNet, BanValue)> = (0..10)
        .map(|i| (net(&format!("198.18.2.{i}")), BanValue::new(0)))
        .collect();
    let e = k.put_bans(&many).expect_err("map full");
    assert_eq!(e.written.len(), 7, "{e:?}");
    assert_eq!(e.failed, many[7].0);
    assert!(e.error.to_string().contains("full"), "{}", e.error);
    let failed = k.put_bans_each(&many);
    assert_eq!(
        failed.len(),
        3,
        "the entries that did not fit, and only them"
    );
    k.remove_bans(&many.iter().map(|m| m.0).collect::<Vec<_>>())
        .expect("cleanup");
}

/// A database written by schema 1 (JSON rows, text keys, history as two rows per ban) opens
/// as schema 2 with the same bans and counts, and the old tables are gone.
#[test]
fn schema_v1_database_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        {
            let meta: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta_v1");
            let bans: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("bans_v1");
            let hist: redb::TableDefinition<&str, u32> = redb::TableDefinition::new("history_v1");
            txn.open_table(meta)
                .expect("meta")
                .insert("schema", "1")
                .expect("schema");
            let mut b = txn.open_table(bans).expect("bans");
            b.insert(
                "198.18.0.7",
                br#"{"jail":"sshd","since":100,"until":5000000000,"ports":[22],"ban_count":3,"jail_count":2}"#.as_slice(),
            )
            .expect("row");
            b.insert(
                "fd00:f2b::/64",
                br#"{"jail":"manual","since":100,"until":null}"#.as_slice(),
            )
            .expect("row");
            let mut h = txn.open_table(hist).expect("hist");
            for (k, v) in [
                ("198.18.0.7", 3),
                ("sshd\n198.18.0.7", 2),
                ("198.18.0.9", 4),
                ("sshd\n198.18.0.9", 1),
                ("recidive\n198.18.0.9", 3),
            ] {
                h.insert(k, v).expect("hist row");
            }
        }
        txn.commit().expect("commit");
    }
    let s = Store::open(&path).expect("migrating open");
    let mut bans = s.load_bans().expect("load");
    bans.sort_by_key(|b| b.0);
    assert_eq!(
        bans,
        vec![
            (
                net("198.18.0.7"),
                StoredBan {
                    jail: "sshd".into(),
                    since: 100,
                    until: Some(5_000_000_000),
                    ports: vec![22],
                    ban_count: 3,
                    jail_count: 2,
                }
            ),
            (
                net("fd00:f2b::/64"),
                StoredBan {
                    jail: "manual".into(),
                    since: 100,
                    until: None,
                    ports: vec![],
                    ban_count: 0,
                    jail_count: 0,
                }
            ),
        ]
    );
    let ips = [net("198.18.0.7"), net("198.18.0.9"), net("198.18.0.10")];
    assert_eq!(s.history(&ips).expect("history"), vec![3, 4, 0]);
    assert_eq!(s.history_in("sshd", &ips).expect("history"), vec![2, 1, 0]);
    assert_eq!(
        s.history_in("recidive", &ips).expect("history"),
        vec![0, 3, 0]
    );
    assert_eq!(s.meta_get("schema").expect("meta").as_deref(), Some("2"));
    drop(s);
    // Reopening does not migrate again, and the v1 tables are gone.
    let s = Store::open(&path).expect("reopen");
    assert_eq!(s.load_bans().expect("load").len(), 2);
    drop(s);
    let db = redb::Database::open(&path).expect("raw open");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let names: Vec<String> = txn
        .list_tables()
        .expect("tables")
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("_v1") && n != "meta_v1" && n != "positions_v1"),
        "{names:?}"
    );
}

/// The history of ended bans feeds the next ban's counts (one row per address): unban, then
/// ban again in another jail, then the first jail again.
#[test]
fn history_of_ended_bans_counts_per_jail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("h.redb")).expect("open");
    let a = net("198.18.0.7");
    let ban = |jail: &str, all, this| StoredBan {
        jail: jail.into(),
        since: 1,
        until: None,
        ports: vec![],
        ban_count: all,
        jail_count: this,
    };
    s.apply(&[(a, ban("sshd", 1, 1))], &[]).expect("ban");
    assert_eq!(s.ended_counts("sshd", &[a]).expect("ended"), vec![(0, 0)]);
    assert_eq!(s.history_in("sshd", &[a]).expect("history"), vec![1]);
    s.apply(&[], &[a]).expect("unban");
    assert_eq!(s.ended_counts("sshd", &[a]).expect("ended"), vec![(1, 1)]);
    // Taken over by recidive: sshd's count goes to history at that moment.
    s.apply(&[(a, ban("sshd", 2, 2))], &[]).expect("ban");
    s.apply(&[(a, ban("recidive", 3, 1))], &[])
        .expect("takeover");
    assert_eq!(s.ended_counts("sshd", &[a]).expect("ended"), vec![(2, 2)]);
    assert_eq!(s.history(&[a]).expect("history"), vec![3]);
    assert_eq!(s.history_in("recidive", &[a]).expect("history"), vec![1]);
}

/// Creates and pins an empty LPM trie where F2B_PREFIX_V6 lives: what a version of f2b
/// before the per-length hash map left in bpffs.
fn pin_old_lpm_prefix_v6(pin_dir: &Path) {
    #[repr(C)]
    #[derive(Default)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
    const BPF_F_NO_PREALLOC: u32 = 1;
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_LPM_TRIE,
        key_size: 4 + 16,
        value_size: std::mem::size_of::<BanValue>() as u32,
        max_entries: 8,
        map_flags: BPF_F_NO_PREALLOC,
    };
    // SAFETY: bpf(2) with a valid, fully initialised attribute struct of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>(),
        )
    };
    assert!(
        fd >= 0,
        "create LPM trie: {}",
        std::io::Error::last_os_error()
    );
    let path = std::ffi::CString::new(
        pin_dir
            .join(f2b_common::maps::PREFIX_V6)
            .as_os_str()
            .as_encoded_bytes(),
    )
    .expect("pin path without NUL");
    let pin = ObjPin {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd as u32,
        file_flags: 0,
    };
    // SAFETY: as above; `path` outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &pin as *const ObjPin,
            std::mem::size_of::<ObjPin>(),
        )
    };
    assert_eq!(r, 0, "pin: {}", std::io::Error::last_os_error());
    // SAFETY: fd is ours; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

#[test]
fn v6_prefix_lengths_follow_the_map_and_an_old_lpm_pin_is_replaced() {
    let Some(env) = Env::new() else { return };
    {
        let mut m = env.manager("");
        m.reconcile().expect("first start");
        m.ban(&req(&[
            "fd00:f2b:1::/48",
            "fd00:f2b::/64",
            "fd00:f2b::1:0/112",
        ]))
        .expect("v6 prefixes");
        assert_eq!(env.kernel().v6_prefix_lengths(), vec![112, 64, 48]);
        m.unban(&["fd00:f2b::/64".into()], false, None)
            .expect("unban");
        assert_eq!(
            env.kernel().v6_prefix_lengths(),
            vec![112, 48],
            "a length no entry uses any more is no longer tried"
        );
    }
    // An older f2b's pinned LPM trie in place of the hash map: the agent replaces it and
    // writes the database's prefix bans into the new map.
    let pin = env.pin().join(f2b_common::maps::PREFIX_V6);
    std::fs::remove_file(&pin).expect("remove the hash map's pin");
    pin_old_lpm_prefix_v6(&env.pin());
    let mut m = env.manager("");
    m.reconcile().expect("start over an old pin");
    let k = env.kernel();
    for n in ["fd00:f2b:1::/48", "fd00:f2b::1:0/112"] {
        assert!(k.get_ban(&net(n)).is_some(), "{n} enforced again");
    }
    assert!(k.get_ban(&net("fd00:f2b::/64")).is_none());
    assert_eq!(k.v6_prefix_lengths(), vec![112, 48]);
}
