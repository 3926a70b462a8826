//! Start-up with empty kernel maps (a reboot, `f2b-ctl stop --detach`): every unexpired
//! database ban is written back, by the writer threads of the restore path, with its expiry
//! and port scope; expired rows are removed. Real pinned maps in a private bpffs and a real
//! redb file; needs root.

use std::collections::BTreeMap;

use f2b_agent::bans::{BanManager, BanRequest, Reconciled};
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
            eprintln!("SKIP: restore tests need root (bpffs mount, BPF maps)");
            return None;
        }
        Some(Env {
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }
    fn config(&self) -> Config {
        let text = "interfaces: [lo]\nmaps: {bans: 32768, prefixes: 64, allow: 8}\n\
                    defaults:\n  ignoreip: [127.0.0.0/8]\n\
                    jails:\n  web:\n    ports: [80, 443]\n    bantime: 1h\n";
        Config::parse(text, "test.yaml").expect("test config")
    }
    fn manager(&self) -> BanManager {
        let cfg = self.config();
        let kernel = Kernel::load(&self.dir.path().join("bpf"), cfg.maps).expect("load");
        let store = Store::open(&self.dir.path().join("f2b.redb")).expect("open db");
        BanManager::new(cfg, kernel, store)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pin = self.dir.path().join("bpf");
        if let Ok(c) = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid path string; detaching an unmounted path just fails.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn v6(i: u32) -> String {
    format!("fd00:f2b::3:{:x}:{:x}", i >> 16, i & 0xffff)
}

/// Kernel entries without counters and with expiry in whole seconds, by address.
fn kernel_state(m: &mut BanManager) -> BTreeMap<IpNet, (u64, Vec<u16>)> {
    m.kernel_mut()
        .all_bans()
        .into_iter()
        .map(|(ip, v): (IpNet, BanValue)| {
            let ports = v.ports[..v.nports as usize].to_vec();
            (ip, (v.expires_ns / 1_000_000_000, ports))
        })
        .collect()
}

#[test]
fn empty_maps_get_every_unexpired_ban_back() {
    let Some(env) = Env::new() else { return };
    // More v6 addresses than one writer chunk, a few of every other kind.
    let many: Vec<String> = (0..20_000).map(v6).collect();
    let before;
    {
        let mut m = env.manager();
        m.reconcile().expect("first start");
        m.ban(&BanRequest {
            ips: many.clone(),
            ..Default::default()
        })
        .expect("bulk");
        m.ban(&BanRequest {
            ips: vec!["198.18.0.7".into(), "198.18.0.8".into()],
            jail: Some("web".into()),
            ..Default::default()
        })
        .expect("web");
        m.ban(&BanRequest {
            ips: vec!["198.18.1.0/24".into(), "fd00:f2b::/64".into()],
            time: Some("permanent".into()),
            ..Default::default()
        })
        .expect("prefixes");
        before = kernel_state(&mut m);
        assert_eq!(before.len(), 20_004);
    }
    // A row that expired while the agent was down.
    Store::open(&env.dir.path().join("f2b.redb"))
        .expect("db")
        .apply(
            &[(
                "198.18.0.50".parse().expect("ip"),
                StoredBan {
                    jail: "manual".into(),
                    since: 1,
                    until: Some(f2b_agent::clock::unix_now() - 5),
                    ports: vec![],
                    ban_count: 1,
                    jail_count: 1,
                },
            )],
            &[],
        )
        .expect("stale row");
    Kernel::detach_and_unpin(&env.dir.path().join("bpf")).expect("unpin");

    let mut m = env.manager();
    assert!(kernel_state(&mut m).is_empty(), "fresh maps");
    let r = m.reconcile().expect("restore");
    assert_eq!(
        r,
        Reconciled {
            restored: 20_004,
            adopted: 0,
            expired: 1,
            failed: 0
        }
    );
    let after = kernel_state(&mut m);
    assert_eq!(after.len(), before.len());
    for (ip, (exp, ports)) in &before {
        let (e2, p2) = after.get(ip).unwrap_or_else(|| panic!("{ip} not restored"));
        assert_eq!(p2, ports, "{ip}: port scope");
        // The database keeps Unix seconds; the kernel expiry is rebuilt from them.
        assert!(e2.abs_diff(*exp) <= 2, "{ip}: expiry {e2} vs {exp}");
    }
    assert_eq!(
        after[&"198.18.0.7".parse::<IpNet>().expect("ip")].1,
        [80, 443]
    );
    assert_eq!(after[&"198.18.1.0/24".parse::<IpNet>().expect("ip")].0, 0);
    assert_eq!(m.active_count(), 20_004);
    assert!(m.active(&"198.18.0.50".parse().expect("ip")).is_none());
    assert!(
        m.next_expiry().is_some(),
        "the expiry order is rebuilt with the index"
    );
    drop(m);
    let rows = Store::open(&env.dir.path().join("f2b.redb"))
        .expect("db")
        .load_bans()
        .expect("rows");
    assert_eq!(rows.len(), 20_004, "the expired row is deleted");
}
