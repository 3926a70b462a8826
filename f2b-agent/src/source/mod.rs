//! Log sources: where lines come from, the first step of the data flow
//! (source -> filter -> jail -> bans).
//!
//! Synchronous on purpose: each jail's OS thread owns one source, waits on a [`Waiter`] (or
//! the journal's pipe), polls, hands every line to the filter, then commits the source's
//! checkpoints together with the bans those lines caused, so a restart neither rereads nor
//! skips lines. See docs/sources.md for the guarantees.
//!
//! - [`file::LogSource`]: files and globs, with rotation (rename + create, copytruncate,
//!   delete + recreate, truncation) detected by device + inode + fingerprint of the first bytes.
//! - [`waiter::Waiter`]: inotify on the files' directories, or polling.
//! - [`journal::JournalSource`]: systemd's journal through `journalctl -o json -f`.

pub mod file;
pub mod glob;
pub mod journal;
pub mod waiter;

pub use file::{LogSource, PollStats, SourceOptions, StartAt};
pub use journal::{JournalConfig, JournalSource};
pub use waiter::{Backend, Waiter};

#[cfg(test)]
mod tests;
