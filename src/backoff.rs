//! Capped exponential backoff with jitter: the one retry schedule for everything that
//! waits for PostgreSQL or a broker to come back.
//!
//! Delays double from 100 ms up to the cap. Each delay is drawn from its upper half
//! ("equal jitter"), so many fleetsink instances, or many robots behind them, that lost
//! the same server at the same moment do not retry in lockstep.

use std::time::Duration;

const INITIAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: INITIAL.min(max),
            max,
        }
    }

    /// The next pause: in `[d/2, d]` where `d` doubles each call up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = ceiling / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms).min(ceiling - half)
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.next = INITIAL.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let ceilings = [100u64, 200, 400, 500, 500, 500];
        for c in ceilings {
            let d = b.next_delay().as_millis() as u64;
            assert!((c / 2..=c).contains(&d), "{d} ms not in [{}, {c}]", c / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_cap_below_the_start_is_respected() {
        let mut b = Backoff::new(Duration::from_millis(10));
        for _ in 0..5 {
            assert!(b.next_delay() <= Duration::from_millis(10));
        }
    }
}
