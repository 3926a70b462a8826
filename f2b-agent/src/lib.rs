//! The f2b agent: the daemon that owns the XDP program and the bans.
//!
//! Data flow inside: control requests (f2b-ctl over a Unix socket, [`control`]) and, later,
//! jails turn into ban decisions in [`bans::BanManager`], which writes them to the kernel maps
//! ([`kernel`]) and to redb ([`store`]) and removes them again when they expire. The XDP object
//! built from `f2b-ebpf` is embedded in this crate by `build.rs`, so the agent is one binary.

pub mod actions;
pub mod addr_table;
pub mod bans;
pub mod bpffs;
pub mod clock;
pub mod config;
pub mod control;
pub mod filter;
pub mod jail;
pub mod kernel;
pub mod runner;
pub mod sched;
pub mod source;
pub mod store;
pub mod testrun;

/// The compiled XDP object (f2b-ebpf), embedded at build time by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/f2b.bpf.o"));
