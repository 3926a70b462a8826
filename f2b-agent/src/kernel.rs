//! The kernel side as the agent sees it: loading the embedded XDP object with its maps pinned
//! under a bpffs directory, attaching it to interfaces through pinned bpf_links (so the program
//! and the bans outlive the agent), and typed access to the ban, allowlist and counter maps.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, IterableMap, MapData, MapError, MapInfo, MapType, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{Xdp, XdpMode, xdp::XdpLink};
use aya::{Ebpf, EbpfLoader};
use f2b_common::net::IpNet;
use f2b_common::{AllowValue, BanValue, counters, maps};

use crate::config::{MapSizes, XdpModeCfg};

#[path = "batch.rs"]
pub mod batch;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("loading the XDP object: {0}")]
    Load(String),
    #[error("attaching XDP to {iface}: {message}")]
    Attach { iface: String, message: String },
    #[error("map {map} is full ({capacity} entries): raise `maps.{key}` in the config")]
    MapFull {
        map: &'static str,
        capacity: u32,
        key: &'static str,
    },
    #[error("map {map}: {message}")]
    Map { map: &'static str, message: String },
}

/// Whether the program runs in the driver or in the generic (skb) path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Skb,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "skb" => Some(Self::Skb),
            _ => None,
        }
    }
}

/// A kernel map key for an address or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapKey {
    V4([u8; 4], u32),
    V6([u8; 16], u32),
}

fn map_key(net: &IpNet) -> MapKey {
    match net.addr() {
        IpAddr::V4(a) => MapKey::V4(a.octets(), net.prefix_len() as u32),
        IpAddr::V6(a) => MapKey::V6(a.octets(), net.prefix_len() as u32),
    }
}

fn map_err(map: &'static str, key: &'static str, capacity: u32, e: MapError) -> KernelError {
    if let MapError::SyscallError(s) = &e
        && matches!(
            s.io_error.raw_os_error(),
            Some(libc::E2BIG) | Some(libc::ENOSPC)
        )
    {
        return KernelError::MapFull { map, capacity, key };
    }
    KernelError::Map {
        map,
        message: e.to_string(),
    }
}

fn io_map_err(map: &'static str, key: &'static str, capacity: u32, e: io::Error) -> KernelError {
    if matches!(e.raw_os_error(), Some(libc::E2BIG) | Some(libc::ENOSPC)) {
        return KernelError::MapFull { map, capacity, key };
    }
    KernelError::Map {
        map,
        message: e.to_string(),
    }
}

/// Entries of one exact-ban map from which [`Kernel::put_bans`] splits the writes over
/// [`writer_threads`] threads (a thread costs tens of microseconds; a jail's batch under a
/// flood stays on its own thread).
const SPLIT_MIN: usize = 8192;

/// Threads that write one large batch: two when this process may run on two CPUs or more
/// (more would only contend with the redb commit that runs beside the map writes).
fn writer_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(2)
    })
}

/// A batch write that stopped at `failed`: the entries in `written` are in the kernel now.
#[derive(Debug)]
pub struct PutError {
    pub written: Vec<IpNet>,
    pub failed: IpNet,
    pub error: KernelError,
}

/// Ban entries sorted by the map they go to, keys in kernel layout.
#[derive(Default)]
struct Groups {
    v4: (Vec<[u8; 4]>, Vec<BanValue>, Vec<IpNet>),
    v6: (Vec<[u8; 16]>, Vec<BanValue>, Vec<IpNet>),
    p4: (Vec<Key<[u8; 4]>>, Vec<BanValue>, Vec<IpNet>),
    p6: (Vec<Key<[u8; 16]>>, Vec<BanValue>, Vec<IpNet>),
}

impl Groups {
    fn of(items: &[(IpNet, BanValue)]) -> Groups {
        let mut g = Groups::default();
        for (net, v) in items {
            match map_key(net) {
                MapKey::V4(a, 32) => push(&mut g.v4, a, *v, *net),
                MapKey::V6(a, 128) => push(&mut g.v6, a, *v, *net),
                MapKey::V4(a, l) => push(&mut g.p4, Key::new(l, a), *v, *net),
                MapKey::V6(a, l) => push(&mut g.p6, Key::new(l, a), *v, *net),
            }
        }
        g
    }
}

fn push<K>(g: &mut (Vec<K>, Vec<BanValue>, Vec<IpNet>), k: K, v: BanValue, net: IpNet) {
    g.0.push(k);
    g.1.push(v);
    g.2.push(net);
}

fn io_map_err_like(e: &KernelError) -> KernelError {
    match e {
        KernelError::MapFull { map, capacity, key } => KernelError::MapFull {
            map,
            capacity: *capacity,
            key,
        },
        other => KernelError::Map {
            map: "bans",
            message: other.to_string(),
        },
    }
}

/// Before version 0.2 of the map layout, F2B_PREFIX_V6 was an LPM trie. A pinned one of that
/// type cannot be reused by the program, which now expects a hash map: its pin is removed so
/// the loader creates the new map. Nothing is lost: prefix bans come only from `f2b-ctl ban`,
/// which commits them before it answers, and the start-up reconciliation writes every
/// unexpired ban of the database back into the maps.
fn migrate_prefix_v6(pin_dir: &Path) {
    let pin = pin_dir.join(maps::PREFIX_V6);
    let Ok(info) = MapInfo::from_pin(&pin) else {
        return;
    };
    if matches!(info.map_type(), Ok(MapType::LpmTrie)) {
        match std::fs::remove_file(&pin) {
            Ok(()) => log::warn!(
                "{}: pinned LPM trie of an older f2b replaced by the per-length hash map; \
                 its IPv6 prefix bans are written again from the database",
                pin.display()
            ),
            Err(e) => log::error!("{}: cannot remove the old pin: {e}", pin.display()),
        }
    }
}

/// Adds the length of IPv6 prefix key `k` to a length set (bit `l` of word `l / 64`).
fn add_len(set: &mut [u64; 2], k: &Key<[u8; 16]>) {
    let l = k.prefix_len();
    if l < 128 {
        set[(l / 64) as usize] |= 1 << (l % 64);
    }
}

/// True when a map type refuses batch operations (older kernels for LPM tries).
fn batch_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(524) // ENOTSUPP
    )
}

pub struct Kernel {
    ebpf: Ebpf,
    bans_v4: HashMap<MapData, [u8; 4], BanValue>,
    bans_v6: HashMap<MapData, [u8; 16], BanValue>,
    prefix_v4: LpmTrie<MapData, [u8; 4], BanValue>,
    /// Hash map keyed like an LPM trie (see f2b-ebpf's F2B_PREFIX_V6).
    prefix_v6: HashMap<MapData, Key<[u8; 16]>, BanValue>,
    /// The IPv6 prefix lengths in use, as the XDP program reads them.
    prefix_v6_lens: Array<MapData, [u64; 2]>,
    /// What `prefix_v6_lens` holds.
    v6_lens: [u64; 2],
    allow_v4: LpmTrie<MapData, [u8; 4], AllowValue>,
    allow_v6: LpmTrie<MapData, [u8; 16], AllowValue>,
    counters: PerCpuArray<MapData, u64>,
    pin_dir: PathBuf,
    /// Capacities as the kernel has them (a pinned map keeps the size it was created with).
    pub capacity: MapSizes,
    /// Interfaces the program is attached to, with the mode each got.
    pub attached: Vec<(String, AttachedMode)>,
}

fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

impl Kernel {
    /// Loads the embedded XDP object, reusing maps already pinned in `pin_dir`.
    pub fn load(pin_dir: &Path, sizes: MapSizes) -> Result<Kernel, KernelError> {
        crate::bpffs::ensure_bpffs(pin_dir).map_err(|source| KernelError::Bpffs {
            path: pin_dir.display().to_string(),
            source,
        })?;
        migrate_prefix_v6(pin_dir);
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(pin_dir)
            .map_max_entries(maps::BANS_V4, sizes.bans)
            .map_max_entries(maps::BANS_V6, sizes.bans)
            .map_max_entries(maps::PREFIX_V4, sizes.prefixes)
            .map_max_entries(maps::PREFIX_V6, sizes.prefixes)
            .map_max_entries(maps::ALLOW_V4, sizes.allow)
            .map_max_entries(maps::ALLOW_V6, sizes.allow);
        let mut ebpf = loader
            .load(crate::EBPF_OBJECT)
            .map_err(|e| KernelError::Load(format!("{e:#}")))?;
        let capacity_of = |name: &str| -> u32 {
            MapInfo::from_pin(pin_dir.join(name))
                .map(|i| i.max_entries())
                .unwrap_or(0)
        };
        let capacity = MapSizes {
            bans: capacity_of(maps::BANS_V4),
            prefixes: capacity_of(maps::PREFIX_V4),
            allow: capacity_of(maps::ALLOW_V4),
        };
        if capacity != sizes {
            log::warn!(
                "pinned maps in {} keep their sizes {:?}; the configured {:?} applies after `f2b-ctl stop --detach` and a restart",
                pin_dir.display(),
                capacity,
                sizes
            );
        }
        fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
            ebpf: &mut Ebpf,
            name: &'static str,
        ) -> Result<T, KernelError> {
            let m = ebpf
                .take_map(name)
                .ok_or_else(|| KernelError::Load(format!("map {name} missing from the object")))?;
            T::try_from(m).map_err(|e| KernelError::Map {
                map: name,
                message: e.to_string(),
            })
        }
        let bans_v4 = take(&mut ebpf, maps::BANS_V4)?;
        let bans_v6 = take(&mut ebpf, maps::BANS_V6)?;
        let prefix_v4 = take(&mut ebpf, maps::PREFIX_V4)?;
        let prefix_v6 = take(&mut ebpf, maps::PREFIX_V6)?;
        let prefix_v6_lens = take(&mut ebpf, maps::PREFIX_V6_LENS)?;
        let allow_v4 = take(&mut ebpf, maps::ALLOW_V4)?;
        let allow_v6 = take(&mut ebpf, maps::ALLOW_V6)?;
        let counters = take(&mut ebpf, maps::COUNTERS)?;
        let prog: &mut Xdp = ebpf
            .program_mut(maps::PROGRAM)
            .ok_or_else(|| KernelError::Load(format!("program {} missing", maps::PROGRAM)))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{e}")))?;
        prog.load()
            .map_err(|e| KernelError::Load(format!("verifier: {e:#}")))?;
        Ok(Kernel {
            ebpf,
            bans_v4,
            bans_v6,
            prefix_v4,
            prefix_v6,
            prefix_v6_lens,
            v6_lens: [0; 2],
            allow_v4,
            allow_v6,
            counters,
            pin_dir: pin_dir.to_path_buf(),
            capacity,
            attached: Vec::new(),
        })
        .and_then(|mut k| {
            // Pinned maps from a previous run: the lengths their prefixes use.
            k.refresh_v6_lens()?;
            Ok(k)
        })
    }

    fn program(&mut self) -> Result<&mut Xdp, KernelError> {
        self.ebpf
            .program_mut(maps::PROGRAM)
            .ok_or_else(|| KernelError::Load("program missing".into()))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{e}")))
    }

    /// Attaches to `iface`. An existing pinned link (from an earlier run) is updated in place
    /// to this program, so enforcement never has a gap; otherwise a new link is created in the
    /// requested mode (`auto`: native, then skb with a warning) and pinned.
    /// `previous` is the mode recorded for a pinned link.
    pub fn attach(
        &mut self,
        iface: &str,
        want: XdpModeCfg,
        previous: Option<&str>,
    ) -> Result<AttachedMode, KernelError> {
        let attach_err = |message: String| KernelError::Attach {
            iface: iface.to_string(),
            message,
        };
        let pin = link_pin(&self.pin_dir, iface);
        if pin.exists() {
            let prev_mode = previous.and_then(AttachedMode::parse);
            let mode_ok = matches!(
                (want, prev_mode),
                (XdpModeCfg::Auto, Some(_))
                    | (XdpModeCfg::Native, Some(AttachedMode::Native))
                    | (XdpModeCfg::Skb, Some(AttachedMode::Skb))
            );
            let reused = if mode_ok {
                self.update_pinned_link(&pin).map_err(|e| {
                    log::warn!(
                        "{iface}: pinned XDP link {} unusable ({e}); attaching anew",
                        pin.display()
                    );
                })
            } else {
                Err(())
            };
            if let (Ok(()), Some(mode)) = (reused, prev_mode) {
                log::info!(
                    "{iface}: XDP program replaced in the pinned link ({} mode)",
                    mode.as_str()
                );
                self.attached.push((iface.to_string(), mode));
                return Ok(mode);
            }
            // The old link is unusable or of the wrong mode: detach it before attaching anew.
            if let Ok(old) = PinnedLink::from_pin(&pin) {
                if let Ok(fd) = old.unpin() {
                    drop(fd);
                }
            } else {
                let _ = std::fs::remove_file(&pin);
            }
        }
        let tries: &[(XdpMode, AttachedMode)] = match want {
            XdpModeCfg::Auto => &[
                (XdpMode::Driver, AttachedMode::Native),
                (XdpMode::Skb, AttachedMode::Skb),
            ],
            XdpModeCfg::Native => &[(XdpMode::Driver, AttachedMode::Native)],
            XdpModeCfg::Skb => &[(XdpMode::Skb, AttachedMode::Skb)],
        };
        let mut last = String::new();
        for (i, (mode, got)) in tries.iter().enumerate() {
            let prog = self.program()?;
            match prog.attach(iface, *mode) {
                Ok(id) => {
                    let link = prog.take_link(id).map_err(|e| attach_err(e.to_string()))?;
                    let fd: FdLink = link.try_into().map_err(|e| {
                        attach_err(format!(
                            "the kernel gave a netlink attachment, not a bpf_link ({e}); cannot pin"
                        ))
                    })?;
                    fd.pin(&pin).map_err(|e| {
                        attach_err(format!("pinning link at {}: {e}", pin.display()))
                    })?;
                    if i > 0 {
                        log::warn!(
                            "{iface}: native XDP unavailable ({last}); running in skb (generic) mode"
                        );
                    }
                    log::info!("{iface}: XDP attached in {} mode", got.as_str());
                    self.attached.push((iface.to_string(), *got));
                    return Ok(*got);
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        Err(attach_err(last))
    }

    fn update_pinned_link(&mut self, pin: &Path) -> Result<(), String> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
        let fd: FdLink = pinned.into();
        let link = XdpLink::try_from(fd).map_err(|e| e.to_string())?;
        let prog = self.program().map_err(|e| e.to_string())?;
        let id = prog.attach_to_link(link).map_err(|e| format!("{e:#}"))?;
        // Keep the link out of the program's link table: dropping the program must not
        // detach it. The pin keeps it alive.
        let _ = prog.take_link(id).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Detaches from every interface and removes the pinned links and maps: enforcement ends.
    pub fn detach_and_unpin(pin_dir: &Path) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(pin_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ours = name.starts_with("link_") || maps::ALL.contains(&name.as_str());
            if !ours {
                continue;
            }
            std::fs::remove_file(&p)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// The IPv6 prefix lengths the XDP program tries, longest first (as the map holds them).
    pub fn v6_prefix_lengths(&self) -> Vec<u32> {
        let w = self.prefix_v6_lens.get(&0, 0).unwrap_or_default();
        (0..128u32)
            .rev()
            .filter(|l| w[(l / 64) as usize] & (1 << (l % 64)) != 0)
            .collect()
    }

    /// Adds prefix lengths to the set the XDP program tries (before entries of those lengths
    /// are written, so no entry is ever invisible to it).
    fn mark_v6_lens(
        &mut self,
        keys: impl IntoIterator<Item = Key<[u8; 16]>>,
    ) -> Result<(), KernelError> {
        let mut want = self.v6_lens;
        keys.into_iter().for_each(|k| add_len(&mut want, &k));
        self.write_v6_lens(want)
    }

    /// Recomputes the set of IPv6 prefix lengths from the map (after removals, and at load
    /// for pinned maps), so the program stops trying lengths no entry uses any more.
    fn refresh_v6_lens(&mut self) -> Result<(), KernelError> {
        let mut want = [0u64; 2];
        batch::lookup_all::<Key<[u8; 16]>, BanValue>(self.fds()[3].0, |ks, _| {
            ks.iter().for_each(|k| add_len(&mut want, k));
        })
        .map_err(|e| KernelError::Map {
            map: maps::PREFIX_V6,
            message: e.to_string(),
        })?;
        self.write_v6_lens(want)
    }

    fn write_v6_lens(&mut self, want: [u64; 2]) -> Result<(), KernelError> {
        if want == self.v6_lens {
            return Ok(());
        }
        self.prefix_v6_lens
            .set(0, want, 0)
            .map_err(|e| KernelError::Map {
                map: maps::PREFIX_V6_LENS,
                message: e.to_string(),
            })?;
        self.v6_lens = want;
        Ok(())
    }

    /// Writes a ban entry. Counters of an existing entry are kept.
    pub fn put_ban(&mut self, net: &IpNet, mut value: BanValue) -> Result<(), KernelError> {
        let cap = self.capacity;
        match map_key(net) {
            MapKey::V4(a, 32) => {
                if let Ok(old) = self.bans_v4.get(&a, 0) {
                    value.packets = old.packets;
                    value.bytes = old.bytes;
                }
                self.bans_v4
                    .insert(a, value, 0)
                    .map_err(|e| map_err(maps::BANS_V4, "bans", cap.bans, e))
            }
            MapKey::V6(a, 128) => {
                if let Ok(old) = self.bans_v6.get(&a, 0) {
                    value.packets = old.packets;
                    value.bytes = old.bytes;
                }
                self.bans_v6
                    .insert(a, value, 0)
                    .map_err(|e| map_err(maps::BANS_V6, "bans", cap.bans, e))
            }
            MapKey::V4(a, l) => {
                let k = Key::new(l, a);
                if let Ok(old) = self.prefix_v4.get(&k, 0) {
                    value.packets = old.packets;
                    value.bytes = old.bytes;
                }
                self.prefix_v4
                    .insert(&k, value, 0)
                    .map_err(|e| map_err(maps::PREFIX_V4, "prefixes", cap.prefixes, e))
            }
            MapKey::V6(a, l) => {
                let k = Key::new(l, a);
                if let Ok(old) = self.prefix_v6.get(&k, 0) {
                    value.packets = old.packets;
                    value.bytes = old.bytes;
                }
                self.mark_v6_lens([k])?;
                self.prefix_v6
                    .insert(k, value, 0)
                    .map_err(|e| map_err(maps::PREFIX_V6, "prefixes", cap.prefixes, e))
            }
        }
    }

    /// Removes a ban entry; Ok(false) when it was not there.
    pub fn remove_ban(&mut self, net: &IpNet) -> Result<bool, KernelError> {
        let r = match map_key(net) {
            MapKey::V4(a, 32) => self.bans_v4.remove(&a),
            MapKey::V6(a, 128) => self.bans_v6.remove(&a),
            MapKey::V4(a, l) => self.prefix_v4.remove(&Key::new(l, a)),
            MapKey::V6(a, l) => {
                let r = self.prefix_v6.remove(&Key::new(l, a));
                self.refresh_v6_lens()?;
                r
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(KernelError::Map {
                map: "bans",
                message: e.to_string(),
            }),
        }
    }

    /// Reads a ban entry (for its counters).
    pub fn get_ban(&self, net: &IpNet) -> Option<BanValue> {
        match map_key(net) {
            MapKey::V4(a, 32) => self.bans_v4.get(&a, 0).ok(),
            MapKey::V6(a, 128) => self.bans_v6.get(&a, 0).ok(),
            MapKey::V4(a, l) => self.prefix_v4.get(&Key::new(l, a), 0).ok(),
            MapKey::V6(a, l) => self.prefix_v6.get(&Key::new(l, a), 0).ok(),
        }
    }

    /// Every ban entry in the kernel maps.
    pub fn all_bans(&self) -> Vec<(IpNet, BanValue)> {
        let mut out = Vec::new();
        if let Err(e) = self.for_each_ban(|n, v| out.push((n, *v))) {
            log::error!("reading the ban maps: {e}");
        }
        out
    }

    fn fds(&self) -> [(BorrowedFd<'_>, &'static str, &'static str, u32); 4] {
        let c = self.capacity;
        [
            (
                IterableMap::map(&self.bans_v4).fd().as_fd(),
                maps::BANS_V4,
                "bans",
                c.bans,
            ),
            (
                IterableMap::map(&self.bans_v6).fd().as_fd(),
                maps::BANS_V6,
                "bans",
                c.bans,
            ),
            (
                IterableMap::map(&self.prefix_v4).fd().as_fd(),
                maps::PREFIX_V4,
                "prefixes",
                c.prefixes,
            ),
            (
                IterableMap::map(&self.prefix_v6).fd().as_fd(),
                maps::PREFIX_V6,
                "prefixes",
                c.prefixes,
            ),
        ]
    }

    /// Writes many ban entries with `BPF_MAP_UPDATE_BATCH` (a few syscalls instead of one or
    /// two per entry), stopping at the first failure. Values are written as given, counters
    /// included: a caller re-banning an address passes the counters it read.
    pub fn put_bans(&mut self, items: &[(IpNet, BanValue)]) -> Result<(), PutError> {
        let g = Groups::of(items);
        // The program must see a length before the entries that use it.
        if !g.p6.0.is_empty() {
            self.mark_v6_lens(g.p6.0.iter().copied())
                .map_err(|error| PutError {
                    written: Vec::new(),
                    failed: g.p6.2[0],
                    error,
                })?;
        }
        let fds = self.fds();
        let mut written = Vec::new();
        // `split`: a large batch of this (exact-ban hash) map is written by parallel
        // threads. `trie`: an LPM trie that may not take batches is written entry by entry.
        macro_rules! group {
            ($grp:expr, $i:expr, split: $split:expr, trie: $trie:expr) => {{
                let (keys, vals, nets) = &$grp;
                let (fd, map, key, cap) = fds[$i];
                if !keys.is_empty() {
                    let parts = if $split && keys.len() >= SPLIT_MIN {
                        writer_threads()
                    } else {
                        1
                    };
                    let r = match batch::update_parts(fd, keys, vals, parts) {
                        Err(e) if $trie && e.failed == 0 && batch_unsupported(&e.error) => {
                            one_by_one(fd, keys, vals).map_err(batch::PartsError::from)
                        }
                        r => r,
                    };
                    if let Err(e) = r {
                        for r in e.applied {
                            written.extend_from_slice(&nets[r]);
                        }
                        return Err(PutError {
                            written,
                            failed: nets[e.failed],
                            error: io_map_err(map, key, cap, e.error),
                        });
                    }
                    written.extend_from_slice(nets);
                }
            }};
        }
        group!(g.v4, 0, split: true, trie: false);
        group!(g.v6, 1, split: true, trie: false);
        group!(g.p4, 2, split: false, trie: true);
        group!(g.p6, 3, split: false, trie: false);
        Ok(())
    }

    /// Like [`Kernel::put_bans`], but goes on after a failed entry: returns the entries that
    /// could not be written, with why (map full, ...). For restores and jail batches, where
    /// one refused entry must not stop the others.
    pub fn put_bans_each(&mut self, items: &[(IpNet, BanValue)]) -> Vec<(IpNet, KernelError)> {
        let mut failed = Vec::new();
        let mut rest: Vec<(IpNet, BanValue)> = items.to_vec();
        loop {
            match self.put_bans(&rest) {
                Ok(()) => return failed,
                Err(e) => {
                    let mut done: std::collections::HashSet<IpNet> =
                        e.written.iter().copied().collect();
                    done.insert(e.failed);
                    let full = matches!(e.error, KernelError::MapFull { .. });
                    let same_map = |n: &IpNet| {
                        n.is_ipv4() == e.failed.is_ipv4() && n.is_host() == e.failed.is_host()
                    };
                    rest.retain(|(n, _)| {
                        if done.contains(n) {
                            return false;
                        }
                        // A full map refuses the rest of its entries too: fail them at once
                        // instead of one syscall round each.
                        if full && same_map(n) {
                            failed.push((*n, io_map_err_like(&e.error)));
                            return false;
                        }
                        true
                    });
                    failed.push((e.failed, e.error));
                }
            }
        }
    }

    /// Batch writers for the two exact-ban hash maps that threads can share: a restore of a
    /// million bans spreads the kernel's hash inserts (its largest cost) over the CPUs.
    pub fn exact_writer(&self) -> ExactWriter<'_> {
        let fds = self.fds();
        ExactWriter {
            v4: fds[0].0,
            v6: fds[1].0,
        }
    }

    /// Removes many ban entries with `BPF_MAP_DELETE_BATCH`; missing ones are skipped.
    /// Returns how many were removed.
    pub fn remove_bans(&mut self, nets: &[IpNet]) -> Result<usize, KernelError> {
        let mut g = Groups::default();
        for n in nets {
            match map_key(n) {
                MapKey::V4(a, 32) => g.v4.0.push(a),
                MapKey::V6(a, 128) => g.v6.0.push(a),
                MapKey::V4(a, l) => g.p4.0.push(Key::new(l, a)),
                MapKey::V6(a, l) => g.p6.0.push(Key::new(l, a)),
            }
        }
        let fds = self.fds();
        let err = |i: usize, e: io::Error| KernelError::Map {
            map: fds[i].1,
            message: e.to_string(),
        };
        let mut removed = 0;
        if !g.v4.0.is_empty() {
            removed += batch::delete(fds[0].0, &g.v4.0).map_err(|e| err(0, e))?;
        }
        if !g.v6.0.is_empty() {
            removed += batch::delete(fds[1].0, &g.v6.0).map_err(|e| err(1, e))?;
        }
        let p6 = !g.p6.0.is_empty();
        if p6 {
            removed += batch::delete(fds[3].0, &g.p6.0).map_err(|e| err(3, e))?;
        }
        // Prefix bans are few; an LPM trie's batch delete is not on every kernel.
        for k in g.p4.0 {
            removed += usize::from(self.prefix_v4.remove(&k).is_ok());
        }
        if p6 {
            self.refresh_v6_lens()?;
        }
        Ok(removed)
    }

    /// Calls `f` for every ban entry in the kernel maps, reading the hash maps with
    /// `BPF_MAP_LOOKUP_BATCH` (thousands of entries per syscall) and nothing kept in between.
    pub fn for_each_ban(&self, mut f: impl FnMut(IpNet, &BanValue)) -> Result<(), KernelError> {
        let fds = self.fds();
        let err = |i: usize, e: io::Error| KernelError::Map {
            map: fds[i].1,
            message: e.to_string(),
        };
        batch::lookup_all::<[u8; 4], BanValue>(fds[0].0, |ks, vs| {
            for (k, v) in ks.iter().zip(vs) {
                f(IpNet::host(IpAddr::from(*k)), v);
            }
        })
        .map_err(|e| err(0, e))?;
        batch::lookup_all::<[u8; 16], BanValue>(fds[1].0, |ks, vs| {
            for (k, v) in ks.iter().zip(vs) {
                f(IpNet::host(IpAddr::from(*k)), v);
            }
        })
        .map_err(|e| err(1, e))?;
        for (k, v) in self.prefix_v4.iter().flatten() {
            if let Some(n) = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8) {
                f(n, &v);
            }
        }
        batch::lookup_all::<Key<[u8; 16]>, BanValue>(fds[3].0, |ks, vs| {
            for (k, v) in ks.iter().zip(vs) {
                if let Some(n) = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8) {
                    f(n, v);
                }
            }
        })
        .map_err(|e| err(3, e))?;
        Ok(())
    }

    /// Makes the kernel allowlist exactly `want`.
    pub fn sync_allowlist(&mut self, want: &[IpNet]) -> Result<(), KernelError> {
        let cap = self.capacity.allow;
        let have: Vec<IpNet> = self
            .allow_v4
            .keys()
            .flatten()
            .filter_map(|k| IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8))
            .chain(
                self.allow_v6
                    .keys()
                    .flatten()
                    .filter_map(|k| IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8)),
            )
            .collect();
        for n in want {
            match map_key(n) {
                MapKey::V4(a, l) => self
                    .allow_v4
                    .insert(&Key::new(l, a), 1, 0)
                    .map_err(|e| map_err(maps::ALLOW_V4, "allow", cap, e))?,
                MapKey::V6(a, l) => self
                    .allow_v6
                    .insert(&Key::new(l, a), 1, 0)
                    .map_err(|e| map_err(maps::ALLOW_V6, "allow", cap, e))?,
            }
        }
        for n in have.iter().filter(|n| !want.contains(n)) {
            let _ = match map_key(n) {
                MapKey::V4(a, l) => self.allow_v4.remove(&Key::new(l, a)),
                MapKey::V6(a, l) => self.allow_v6.remove(&Key::new(l, a)),
            };
        }
        Ok(())
    }

    /// Global counters summed over CPUs, by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (i, name) in counters::NAMES.iter().enumerate() {
            let sum = self
                .counters
                .get(&(i as u32), 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0);
            out.insert(name.to_string(), sum);
        }
        out
    }
}

/// Exact (host) ban entries in kernel layout, bound for one hash map.
pub enum ExactChunk {
    V4(Vec<[u8; 4]>, Vec<BanValue>),
    V6(Vec<[u8; 16]>, Vec<BanValue>),
}

impl ExactChunk {
    pub fn len(&self) -> usize {
        match self {
            ExactChunk::V4(k, _) => k.len(),
            ExactChunk::V6(k, _) => k.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries from `from` on, as ban items (to retry one by one).
    fn items_from(&self, from: usize) -> Vec<(IpNet, BanValue)> {
        fn tail<K: Copy + Into<IpAddr>>(
            k: &[K],
            v: &[BanValue],
            from: usize,
        ) -> Vec<(IpNet, BanValue)> {
            k.iter()
                .zip(v)
                .skip(from)
                .map(|(k, v)| (IpNet::host((*k).into()), *v))
                .collect()
        }
        match self {
            ExactChunk::V4(k, v) => tail(k, v, from),
            ExactChunk::V6(k, v) => tail(k, v, from),
        }
    }
}

/// See [`Kernel::exact_writer`]. Only borrows the map fds, so it is `Send + Sync`.
#[derive(Clone, Copy)]
pub struct ExactWriter<'a> {
    v4: BorrowedFd<'a>,
    v6: BorrowedFd<'a>,
}

impl ExactWriter<'_> {
    /// Writes the chunk with `BPF_MAP_UPDATE_BATCH`. When the kernel refuses an entry, the
    /// entries not written (the refused one first) come back, for [`Kernel::put_bans_each`]
    /// to retry one by one and report.
    pub fn write(&self, chunk: &ExactChunk) -> Vec<(IpNet, BanValue)> {
        let r = match chunk {
            ExactChunk::V4(k, v) => batch::update(self.v4, k, v),
            ExactChunk::V6(k, v) => batch::update(self.v6, k, v),
        };
        match r {
            Ok(()) => Vec::new(),
            Err(e) => chunk.items_from(e.done),
        }
    }
}

/// Per-entry writes, for maps that refuse batches; same error contract as [`batch::update`].
fn one_by_one<K: aya::Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    vals: &[BanValue],
) -> Result<(), batch::BatchError> {
    for (i, (k, v)) in keys.iter().zip(vals).enumerate() {
        batch::update(fd, std::slice::from_ref(k), std::slice::from_ref(v))
            .or_else(|e| {
                if batch_unsupported(&e.error) {
                    update_elem(fd, k, v)
                } else {
                    Err(e.error)
                }
            })
            .map_err(|error| batch::BatchError { done: i, error })?;
    }
    Ok(())
}

/// `BPF_MAP_UPDATE_ELEM` on a raw fd.
fn update_elem<K, V>(fd: BorrowedFd<'_>, k: &K, v: &V) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut attr = Attr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: k as *const K as u64,
        value: v as *const V as u64,
        flags: 0,
    };
    // SAFETY: attr is a complete bpf_attr prefix for BPF_MAP_UPDATE_ELEM (cmd 2); key and
    // value point at values of the map's key and value types, borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            2 as libc::c_long,
            &mut attr as *mut Attr,
            size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
