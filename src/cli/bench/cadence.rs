//! When a robot publishes what: TonyPi's robot client sends sensors every 2 s, servos
//! every 3 s, location every 5 s, status every 10 s and battery every 30 s (≈ 1.17
//! messages/s per robot). Pure: the clock and the random source come from the caller.
//!
//! Real robots are not synchronised: each kind's first message falls uniformly inside
//! its first period (the fleet does not publish in lock-step bursts), and every period
//! is stretched or shrunk by up to `jitter` (a fraction). A robot that fell more than a
//! period behind (it was disconnected, or the runtime stalled) resumes from now instead
//! of publishing the missed messages in a burst, as TonyPi's polling loop does.

use std::time::{Duration, Instant};

/// What a TonyPi robot publishes, each on its own topic and period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sensors,
    Servos,
    Location,
    Status,
    Battery,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Sensors,
        Kind::Servos,
        Kind::Location,
        Kind::Status,
        Kind::Battery,
    ];

    /// TonyPi's period for this kind (`robot_client`, "matching tonypi_client.py
    /// intervals").
    pub fn period(self) -> Duration {
        Duration::from_secs(match self {
            Kind::Sensors => 2,
            Kind::Servos => 3,
            Kind::Location => 5,
            Kind::Status => 10,
            Kind::Battery => 30,
        })
    }

    /// Messages per second of one robot publishing every kind at its period.
    pub fn robot_rate() -> f64 {
        Kind::ALL
            .iter()
            .map(|k| 1.0 / k.period().as_secs_f64())
            .sum()
    }
}

/// One robot's schedule: the next due time of each kind.
pub struct Cadence {
    next: [Instant; 5],
    jitter: f64,
    rng: fastrand::Rng,
}

impl Cadence {
    /// A schedule starting at `start`, each kind's first message at a random point of
    /// its first period; `jitter` is clamped to [0, 0.9].
    pub fn new(start: Instant, jitter: f64, mut rng: fastrand::Rng) -> Cadence {
        let next = Kind::ALL.map(|k| start + k.period().mul_f64(rng.f64()));
        Cadence {
            next,
            jitter: jitter.clamp(0.0, 0.9),
            rng,
        }
    }

    /// When the next message of any kind is due.
    pub fn next_due(&self) -> Instant {
        self.next.iter().copied().min().unwrap_or_else(Instant::now)
    }

    /// The earliest kind due at or before `now`, its schedule moved on by one jittered
    /// period; `None` when nothing is due. Call until `None` to publish all that is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<Kind> {
        let (i, due) = self.earliest();
        if due > now {
            return None;
        }
        let kind = Kind::ALL[i];
        let period = self.jittered(kind.period());
        let next = due + period;
        self.next[i] = if next <= now { now + period } else { next };
        Some(kind)
    }

    /// The next kind in schedule order, whatever the clock says: the TonyPi mix in its
    /// proportions, for a robot that publishes as fast as it can.
    pub fn next_kind(&mut self) -> Kind {
        let (i, due) = self.earliest();
        let kind = Kind::ALL[i];
        self.next[i] = due + self.jittered(kind.period());
        kind
    }

    fn earliest(&self) -> (usize, Instant) {
        let mut best = (0, self.next[0]);
        for (i, &t) in self.next.iter().enumerate().skip(1) {
            if t < best.1 {
                best = (i, t);
            }
        }
        best
    }

    fn jittered(&mut self, period: Duration) -> Duration {
        period.mul_f64(1.0 + self.jitter * (2.0 * self.rng.f64() - 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message `c` publishes from `start` for `secs` seconds, with its due time.
    fn run(c: &mut Cadence, start: Instant, secs: u64) -> Vec<(Kind, Instant)> {
        let end = start + Duration::from_secs(secs);
        let mut out = Vec::new();
        loop {
            let t = c.next_due();
            if t >= end {
                return out;
            }
            while let Some(k) = c.pop_due(t) {
                out.push((k, t));
            }
        }
    }

    #[test]
    fn a_robot_publishes_each_kind_at_tonypis_period_about_1_17_messages_per_second() {
        let start = Instant::now();
        let mut c = Cadence::new(start, 0.1, fastrand::Rng::with_seed(7));
        let sent = run(&mut c, start, 3000);
        let count = |k| sent.iter().filter(|(kind, _)| *kind == k).count() as f64;
        for k in Kind::ALL {
            let want = 3000.0 / k.period().as_secs_f64();
            assert!(
                (count(k) - want).abs() <= want * 0.02 + 1.0,
                "{k:?}: {} messages in 3000 s, want ≈ {want}",
                count(k)
            );
        }
        let rate = sent.len() as f64 / 3000.0;
        assert!((rate - Kind::robot_rate()).abs() < 0.02, "rate {rate}");
        assert!((Kind::robot_rate() - 7.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn periods_are_jittered_within_the_bound() {
        let start = Instant::now();
        let mut c = Cadence::new(start, 0.2, fastrand::Rng::with_seed(3));
        let sensors: Vec<Instant> = run(&mut c, start, 400)
            .into_iter()
            .filter(|(k, _)| *k == Kind::Sensors)
            .map(|(_, t)| t)
            .collect();
        let gaps: Vec<f64> = sensors
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        assert!(lo >= 1.6 - 1e-9 && hi <= 2.4 + 1e-9, "gaps {lo}..{hi}");
        assert!(hi - lo > 0.4, "gaps should vary, got {lo}..{hi}");
    }

    #[test]
    fn a_fleet_starts_spread_over_the_first_period_not_in_lock_step() {
        let start = Instant::now();
        let firsts: Vec<f64> = (0..1000)
            .map(|seed| {
                let c = Cadence::new(start, 0.1, fastrand::Rng::with_seed(seed));
                (c.next[0] - start).as_secs_f64()
            })
            .collect();
        let min = firsts.iter().copied().fold(f64::MAX, f64::min);
        let max = firsts.iter().copied().fold(0.0, f64::max);
        assert!(
            min < 0.05 && max > 1.95 && max < 2.0,
            "first sensors {min}..{max}"
        );
    }

    #[test]
    fn a_robot_far_behind_resumes_from_now_instead_of_bursting() {
        let start = Instant::now();
        let mut c = Cadence::new(start, 0.0, fastrand::Rng::with_seed(1));
        let late = start + Duration::from_secs(120);
        let mut burst = Vec::new();
        while let Some(k) = c.pop_due(late) {
            burst.push(k);
        }
        assert_eq!(
            burst.len(),
            5,
            "one of each kind, not 2 minutes' worth: {burst:?}"
        );
        assert!(c.next_due() >= late + Duration::from_secs(2));
    }

    #[test]
    fn next_kind_yields_the_tonypi_mix_in_proportion() {
        let mut c = Cadence::new(Instant::now(), 0.1, fastrand::Rng::with_seed(9));
        let kinds: Vec<Kind> = (0..7000).map(|_| c.next_kind()).collect();
        let share = |k| kinds.iter().filter(|&&x| x == k).count() as f64 / 7000.0;
        // 1/2 : 1/3 : 1/5 : 1/10 : 1/30 of 7/6.
        assert!((share(Kind::Sensors) - 3.0 / 7.0).abs() < 0.01);
        assert!((share(Kind::Battery) - 1.0 / 35.0).abs() < 0.005);
    }
}
