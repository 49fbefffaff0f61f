//! Brute-force throttling of MQTT CONNECTs, per client address.
//!
//! Failed CONNECTs from one address are counted within a window; past a few free
//! failures, each answer to that address is delayed, growing to a cap. A success
//! clears the address. The table is bounded: when full it is cleared (an attacker
//! spraying addresses gains a reset, never memory). The delay slows guessing without
//! refusing anyone: a robot with the right password still gets in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed CONNECTs per client address within `FAILURE_WINDOW`.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failures from one address before its answers are delayed.
const FREE_FAILURES: u32 = 3;
/// How much each failure past the free ones adds to the delay.
const STEP: Duration = Duration::from_millis(500);
/// The longest delay of an answer to an address that keeps failing.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Addresses tracked at most (the table is cleared when full).
const MAX_TRACKED: usize = 10_000;

/// Failed CONNECTs by address: (failures, since when).
#[derive(Debug, Default)]
pub struct ConnectThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl ConnectThrottle {
    /// How long to wait before answering `ip` (after repeated failures).
    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        let Ok(f) = self.failures.lock() else {
            return Duration::ZERO;
        };
        match f.get(&ip) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW && *n > FREE_FAILURES => {
                (STEP * (*n - FREE_FAILURES)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            if f.len() >= MAX_TRACKED {
                f.clear();
            }
            let e = f.entry(ip).or_insert((0, Instant::now()));
            if e.1.elapsed() >= FAILURE_WINDOW {
                *e = (0, Instant::now());
            }
            e.0 = e.0.saturating_add(1);
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_delay_answers_up_to_a_cap_until_a_success() {
        let throttle = ConnectThrottle::default();
        let ip: IpAddr = [192, 0, 2, 7].into();
        for _ in 0..FREE_FAILURES {
            throttle.failed(ip);
        }
        assert_eq!(throttle.delay_for(ip), Duration::ZERO);
        throttle.failed(ip);
        assert_eq!(throttle.delay_for(ip), STEP);
        for _ in 0..100 {
            throttle.failed(ip);
        }
        assert_eq!(throttle.delay_for(ip), MAX_DELAY);
        assert_eq!(throttle.delay_for([192, 0, 2, 8].into()), Duration::ZERO);
        throttle.succeeded(ip);
        assert_eq!(throttle.delay_for(ip), Duration::ZERO);
    }
}
