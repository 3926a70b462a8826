//! Clocks: bans are kept in wall-clock Unix seconds (redb, protocol) and enforced on the
//! kernel's CLOCK_BOOTTIME (what `bpf_ktime_get_boot_ns` reads in the XDP program).

use std::time::{SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; the clock ids used here always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Nanoseconds on CLOCK_BOOTTIME, the clock the XDP program compares expiries with.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Kernel expiry (boottime ns) for a ban ending at Unix second `until`; `None` = permanent = 0.
/// A time already past maps to "now", which the XDP program treats as expired.
pub fn kernel_expiry(until: Option<u64>) -> u64 {
    match until {
        None => 0,
        Some(until) => {
            let now_unix_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let boot = boottime_ns();
            let left = until
                .saturating_mul(1_000_000_000)
                .saturating_sub(now_unix_ns);
            // Never 0: that would mean permanent.
            boot.saturating_add(left).max(1)
        }
    }
}

/// Both clocks read once, for converting many expiries at the same instant (a restore of a
/// million bans) without two clock reads per ban. Same results as [`kernel_expiry`] and
/// [`unix_from_kernel_expiry`] at the moment it was taken.
#[derive(Debug, Clone, Copy)]
pub struct ClockPair {
    pub unix_ns: u64,
    pub boot_ns: u64,
}

impl ClockPair {
    pub fn now() -> ClockPair {
        ClockPair {
            unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            boot_ns: boottime_ns(),
        }
    }

    /// See [`kernel_expiry`].
    pub fn kernel_expiry(&self, until: Option<u64>) -> u64 {
        match until {
            None => 0,
            Some(until) => {
                let left = until
                    .saturating_mul(1_000_000_000)
                    .saturating_sub(self.unix_ns);
                self.boot_ns.saturating_add(left).max(1)
            }
        }
    }

    /// See [`unix_from_kernel_expiry`].
    pub fn unix_from_kernel_expiry(&self, expires_ns: u64) -> Option<u64> {
        if expires_ns == 0 {
            return None;
        }
        let now = self.unix_ns / 1_000_000_000;
        Some(if expires_ns >= self.boot_ns {
            now + (expires_ns - self.boot_ns).div_ceil(1_000_000_000)
        } else {
            now.saturating_sub((self.boot_ns - expires_ns) / 1_000_000_000)
        })
    }
}

/// Unix second at which a kernel expiry (boottime ns, non-zero) falls.
pub fn unix_from_kernel_expiry(expires_ns: u64) -> Option<u64> {
    if expires_ns == 0 {
        return None;
    }
    let boot = boottime_ns();
    let now = unix_now();
    Some(if expires_ns >= boot {
        now + (expires_ns - boot).div_ceil(1_000_000_000)
    } else {
        now.saturating_sub((boot - expires_ns) / 1_000_000_000)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_roundtrip_within_a_second() {
        let until = unix_now() + 600;
        let k = kernel_expiry(Some(until));
        assert!(k > boottime_ns());
        let back = unix_from_kernel_expiry(k).unwrap();
        assert!(back.abs_diff(until) <= 1, "{back} vs {until}");
        assert_eq!(kernel_expiry(None), 0);
        assert_eq!(unix_from_kernel_expiry(0), None);
        // A past time is expired in the kernel's eyes, but never "permanent".
        let past = kernel_expiry(Some(1));
        assert!(past != 0 && past <= boottime_ns());
    }

    #[test]
    fn clock_pair_agrees_with_the_single_conversions() {
        let c = ClockPair::now();
        let until = unix_now() + 3600;
        let a = c.kernel_expiry(Some(until));
        let b = kernel_expiry(Some(until));
        assert!(a.abs_diff(b) < 1_000_000_000, "{a} vs {b}");
        assert_eq!(c.kernel_expiry(None), 0);
        assert_eq!(c.unix_from_kernel_expiry(0), None);
        let back = c.unix_from_kernel_expiry(a).unwrap();
        assert!(back.abs_diff(until) <= 1, "{back} vs {until}");
    }
}
