//! Wake-up priority for log readers.
//!
//! A failure line is written, the reader blocked in poll() is woken, and the ban is in the
//! kernel map a few microseconds of work later. What dominates that path on a busy host is
//! not the work but the wake-up: an ordinary (SCHED_OTHER) thread woken while the CPUs run
//! builds, web workers or a flood's softirqs waits for its turn, often milliseconds. A
//! SCHED_FIFO thread preempts ordinary ones as soon as it is runnable.
//!
//! Real-time priority is also how a daemon starves a machine, so it is bounded: a reader
//! holds it only while it has budget, a token bucket refilled at [`SHARE`] of wall time up to
//! [`BURST`]. Work done at real-time priority spends the bucket; when it is empty (a flood
//! keeps the reader busy) the thread goes back to SCHED_OTHER and competes like everything
//! else, and it takes real-time priority again once the bucket has refilled. So a reader
//! uses at most about [`SHARE`] of a CPU at real-time priority on average, in bursts of
//! about [`BURST`] (a reader at real-time priority reads smaller pieces so it can
//! check its budget often), while an isolated attack line still wakes it at once.
//!
//! Where real-time priority is refused (no CAP_SYS_NICE, a cgroup without real-time runtime),
//! the reader logs it once and stays at normal priority.

use std::time::{Duration, Instant};

/// Share of wall time a reader may spend working at real-time priority, on average.
pub const SHARE: f64 = 0.2;
/// Most work done at real-time priority in one go.
pub const BURST: Duration = Duration::from_millis(20);
/// SCHED_FIFO priority: the lowest, above every ordinary thread and below the kernel's own
/// real-time threads.
const PRIORITY: i32 = 1;

/// One reader thread's scheduling state. Call [`Pacer::pace`] between batches of work
/// (before waiting, and between pieces of a backlog) and [`Pacer::woke`] right after a wait
/// returns, so waiting is not counted as work.
pub struct Pacer {
    enabled: bool,
    boosted: bool,
    /// Nanoseconds of real-time work left; refilled at SHARE of wall time, capped at BURST.
    tokens: f64,
    /// Last refill.
    last: Instant,
    /// Start of the work not yet charged.
    busy_from: Instant,
    label: String,
}

impl Pacer {
    /// `enabled`: the jail's `realtime` setting. `label` names the reader in log lines.
    pub fn new(enabled: bool, label: &str) -> Pacer {
        let now = Instant::now();
        let mut p = Pacer {
            enabled,
            boosted: false,
            tokens: BURST.as_nanos() as f64,
            last: now,
            busy_from: now,
            label: label.to_string(),
        };
        p.apply();
        p
    }

    /// Whether the thread is at real-time priority now.
    pub fn boosted(&self) -> bool {
        self.boosted
    }

    /// Charges the work done since the last call (or wake-up), refills the bucket, and moves
    /// the thread to the priority its budget allows.
    pub fn pace(&mut self) {
        let now = Instant::now();
        if self.boosted {
            self.tokens -= now.duration_since(self.busy_from).as_nanos() as f64;
        }
        let refill = now.duration_since(self.last).as_nanos() as f64 * SHARE;
        self.tokens = (self.tokens + refill).min(BURST.as_nanos() as f64);
        self.last = now;
        self.busy_from = now;
        self.apply();
    }

    /// A wait returned: work starts now.
    pub fn woke(&mut self) {
        self.busy_from = Instant::now();
    }

    fn apply(&mut self) {
        // Back to real-time priority only once a quarter of the burst has refilled, so a
        // reader at the edge of its budget does not flip on every batch.
        let want = self.enabled
            && if self.boosted {
                self.tokens > 0.0
            } else {
                self.tokens >= BURST.as_nanos() as f64 / 4.0
            };
        if want == self.boosted {
            return;
        }
        match set_fifo(want) {
            Ok(()) => self.boosted = want,
            Err(e) => {
                log::warn!(
                    "[{}] real-time priority for the log reader refused ({e}); it stays at \
                     normal priority (set realtime: false to silence this)",
                    self.label
                );
                self.enabled = false;
                self.boosted = false;
            }
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        if self.boosted {
            let _ = set_fifo(false);
        }
    }
}

/// Moves the calling thread to SCHED_FIFO (with SCHED_RESET_ON_FORK, so nothing it starts
/// inherits it) or back to SCHED_OTHER.
fn set_fifo(on: bool) -> std::io::Result<()> {
    let (policy, prio) = if on {
        (libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, PRIORITY)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter struct.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (without SCHED_RESET_ON_FORK).
pub fn current_policy() -> i32 {
    // SAFETY: plain syscall on the calling thread.
    unsafe { libc::sched_getscheduler(0) & !libc::SCHED_RESET_ON_FORK }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    // Runs on its own thread: the policy is per thread, and the test harness's threads must
    // not be left at real-time priority.
    #[test]
    fn a_busy_reader_loses_real_time_priority_and_gets_it_back_when_idle() {
        std::thread::spawn(|| {
            let mut p = Pacer::new(true, "test");
            if !p.enabled {
                // Refused here (no CAP_SYS_NICE): the reader must then stay ordinary.
                assert_eq!(current_policy(), libc::SCHED_OTHER);
                assert!(!p.boosted());
                return;
            }
            assert!(p.boosted());
            assert_eq!(current_policy(), libc::SCHED_FIFO);
            // Work without waiting past the burst: the budget runs out.
            let t = Instant::now();
            while p.boosted() && t.elapsed() < Duration::from_secs(2) {
                busy(Duration::from_millis(2));
                p.pace();
            }
            assert!(
                !p.boosted(),
                "still real-time after {:?} of work",
                t.elapsed()
            );
            assert!(t.elapsed() >= BURST, "demoted after only {:?}", t.elapsed());
            assert_eq!(current_policy(), libc::SCHED_OTHER);
            // Idle (waiting) refills the bucket; the next pace boosts again.
            std::thread::sleep(BURST.div_f64(SHARE));
            p.woke();
            p.pace();
            assert!(p.boosted());
            assert_eq!(current_policy(), libc::SCHED_FIFO);
            drop(p);
            assert_eq!(current_policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn disabled_never_touches_the_policy() {
        std::thread::spawn(|| {
            let mut p = Pacer::new(false, "test");
            p.pace();
            assert!(!p.boosted());
            assert_eq!(current_policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
