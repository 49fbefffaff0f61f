//! Failed sign-ins per client address: after `limit` failures within a minute, further
//! attempts from that address are refused (429) until the minute is over, so a
//! password cannot be guessed at the speed of the network. The counting (a window per
//! address, bounded memory) is `auth::throttle::FailureWindows`, shared with the MQTT
//! CONNECT throttle.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::throttle::FailureWindows;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct LoginThrottle {
    limit: u32,
    failures: FailureWindows,
}

impl LoginThrottle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: FailureWindows::new(WINDOW),
        }
    }

    /// `Err(wait)` when `addr` has used up its failures for this window.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.failures.current(addr, now) {
            Some((n, end)) if n >= self.limit => Err(end - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        self.failures.failed(addr, now);
    }

    /// A successful sign-in clears the address's failures.
    pub fn succeeded(&self, addr: IpAddr) {
        self.failures.succeeded(addr);
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
}
