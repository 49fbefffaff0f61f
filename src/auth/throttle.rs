//! Brute-force throttling of MQTT CONNECTs, per client address.
//!
//! Failed CONNECTs from one address are counted within a window ([`FailureWindows`]);
//! past a few free failures, each answer to that address is delayed, growing to a cap.
//! A success clears the address. The delay slows guessing without refusing anyone: a
//! robot with the right password still gets in.

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
/// Addresses tracked at most.
const MAX_TRACKED: usize = 10_000;

/// Failures per client address within a window that starts at an address's first
/// failure; the mechanism of both the CONNECT throttle below and the console sign-in
/// throttle (`auth::console::LoginThrottle`), which differ only in what they do with the
/// count. A success clears the address. Memory is bounded: at most `MAX_TRACKED`
/// addresses; when full, expired windows are dropped and, if none has expired, the
/// oldest goes (an attacker spraying addresses never resets the others' counts).
#[derive(Debug)]
pub struct FailureWindows {
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureWindows {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `ip`'s failures in its current window and when that window ends (`None`: none).
    pub fn current(&self, ip: IpAddr, now: Instant) -> Option<(u32, Instant)> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)
            .map(|(start, n)| (*n, *start + self.window))
            .filter(|(_, end)| now < *end)
    }

    /// Counts a failure from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now < *start + self.window);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(a, _)| *a)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now >= entry.0 + self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// A success clears `ip`.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// Failed CONNECTs by address: past `FREE_FAILURES`, answers are delayed.
#[derive(Debug)]
pub struct ConnectThrottle {
    failures: FailureWindows,
}

impl Default for ConnectThrottle {
    fn default() -> Self {
        Self {
            failures: FailureWindows::new(FAILURE_WINDOW),
        }
    }
}

impl ConnectThrottle {
    /// How long to wait before answering `ip` (after repeated failures).
    pub fn delay_for(&self, ip: IpAddr) -> Duration {
        match self.failures.current(ip, Instant::now()) {
            Some((n, _)) if n > FREE_FAILURES => (STEP * (n - FREE_FAILURES)).min(MAX_DELAY),
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        self.failures.failed(ip, Instant::now());
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.succeeded(ip);
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

    #[test]
    fn memory_is_bounded_and_windows_expire() {
        let w = FailureWindows::new(FAILURE_WINDOW);
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            w.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(w.tracked() <= MAX_TRACKED);
        let ip: IpAddr = [192, 0, 2, 9].into();
        w.failed(ip, now);
        assert_eq!(w.current(ip, now), Some((1, now + FAILURE_WINDOW)));
        assert_eq!(w.current(ip, now + FAILURE_WINDOW), None);
    }
}
