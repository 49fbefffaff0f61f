//! Failed sign-ins per client address: after `limit` failures within a minute, further
//! attempts from that address are refused (429) until the minute is over, so a
//! password cannot be guessed at the speed of the network. Memory is bounded: at most
//! `MAX_ADDRESSES` addresses are tracked; beyond that, expired entries are dropped, and
//! if none has expired the oldest window goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct LoginThrottle {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginThrottle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `addr` has used up its failures for this window.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&addr) {
            Some((start, n)) if *n >= self.limit && now < *start + WINDOW => {
                Err(*start + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            map.retain(|_, (start, _)| now < *start + WINDOW);
            if map.len() >= MAX_ADDRESSES
                && let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(a, _)| *a)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(addr).or_insert((now, 0));
        if now >= entry.0 + WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// A successful sign-in clears the address's failures.
    pub fn succeeded(&self, addr: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_limit_wait_out_the_minute() {
        let t = LoginThrottle::new(3);
        let a: IpAddr = "10.0.0.7".parse().unwrap();
        let b: IpAddr = "10.0.0.8".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check(a, now).is_ok());
            t.failed(a, now);
        }
        let wait = t.check(a, now + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.check(b, now).is_ok(), "another address is not affected");
        assert!(
            t.check(a, now + WINDOW).is_ok(),
            "the next minute starts afresh"
        );
        t.succeeded(a);
        assert!(t.check(a, now).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(1);
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
