//! Log lines that can repeat per message (a robot refused on every PUBLISH, a client
//! guessing passwords) are written at most once per period, with the number of
//! repeats left out since the previous line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rate-limited log site.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the repeats suppressed since
    /// the last one; `None` to stay quiet (this repeat is counted).
    pub fn allow(&self) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return Some(0);
        };
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.period => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_repeats_counted() {
        let e = Every::new(Duration::from_millis(200));
        assert_eq!(e.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(e.allow(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(e.allow(), Some(5));
        assert_eq!(e.allow(), None);
    }
}
