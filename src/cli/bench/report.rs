//! What `fleetsink bench` reports: connections, msg/s published and acknowledged in the
//! measurement window, publish→PUBACK latency of every message published in it
//! (p50/p99/p99.9/max), messages lost or duplicated over MQTT and in PostgreSQL, the
//! daemon's memory, and CPU per acknowledged message of the daemon, PostgreSQL and the
//! generator. `Display` is the human table; `Serialize` is `--json`, for scripts.
//!
//! Lost and duplicated are the delivery guarantee made visible: all must be 0.

use std::fmt;

use serde::Serialize;

/// One run's result.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// "fleet" or "saturated".
    pub shape: &'static str,
    pub broker: String,
    /// The options that shaped the load, as one line.
    pub settings: String,
    pub connections: Connections,
    pub warmup_secs: f64,
    pub window_secs: f64,
    pub published: Throughput,
    pub acked: Throughput,
    /// Fleet shape: messages that fell due while the robot's window was full (not sent).
    pub held_back: u64,
    /// Of the messages published in the window; `None` when none was acknowledged.
    pub latency_ms: Option<Latency>,
    pub mqtt: MqttLoss,
    /// Time from the end of the window until the last PUBACK (or the drain timeout).
    pub drain_secs: f64,
    pub database: Option<Database>,
    pub daemon: Option<Daemon>,
    pub postgres: Option<Postgres>,
    /// The load generator itself.
    pub generator: Option<Cpu>,
    pub rss_trace: Vec<TracePoint>,
    /// With `--per-second`: the window's latency by second of publish.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_by_second: Vec<SecondLatency>,
}

/// The publish→PUBACK latency of the messages published in one second of the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SecondLatency {
    /// Seconds since the window's first sample's second.
    pub second: u32,
    pub latency_ms: Latency,
}

/// Latency by second of publish: `samples` as (Unix second, µs), in any order. Tells a
/// steady tail (every second alike) from bursts (a few slow seconds, e.g. PostgreSQL's
/// autovacuum or a checkpoint).
pub fn by_second(samples: &mut [(u32, u32)]) -> Vec<SecondLatency> {
    samples.sort_unstable_by_key(|s| s.0);
    let Some(first) = samples.first().map(|s| s.0) else {
        return Vec::new();
    };
    samples
        .chunk_by(|a, b| a.0 == b.0)
        .filter_map(|chunk| {
            let mut us: Vec<u32> = chunk.iter().map(|s| s.1).collect();
            Some(SecondLatency {
                second: chunk[0].0 - first,
                latency_ms: Latency::from_samples(&mut us)?,
            })
        })
        .collect()
}

#[derive(Debug, Default, Serialize)]
pub struct Connections {
    pub target: usize,
    pub connected: usize,
    /// Robots that never connected before the window opened.
    pub failed: usize,
    pub reconnects: u64,
    /// From the first connection attempt until all were connected (or given up on).
    pub ramp_secs: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Throughput {
    pub in_window: u64,
    pub per_sec: f64,
    /// Including ramp, warm-up and drain.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples_us` (sorted in place), in milliseconds.
    pub fn from_samples(samples_us: &mut [u32]) -> Option<Latency> {
        let n = samples_us.len();
        if n == 0 {
            return None;
        }
        samples_us.sort_unstable();
        let rank = |p: f64| {
            let i = (p * n as f64).ceil() as usize;
            f64::from(samples_us[i.clamp(1, n) - 1]) / 1000.0
        };
        Some(Latency {
            samples: n,
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: rank(1.0),
        })
    }
}

#[derive(Debug, Default, Serialize)]
pub struct MqttLoss {
    /// Published, never acknowledged by the end of the drain.
    pub lost: u64,
    /// PUBACKs for a packet id that was not in flight.
    pub duplicated: u64,
}

/// The exact comparison of the rows stored with the messages sent.
#[derive(Debug, Default, Serialize)]
pub struct Database {
    pub published: u64,
    pub acked: u64,
    /// Messages of this run found as rows.
    pub stored: u64,
    /// Acknowledged messages with no row.
    pub lost: u64,
    /// Rows beyond one per message sent (a second row for a message, or a row of these
    /// robots in the run's time range that no message of the run explains).
    pub duplicated: u64,
    /// Stored though never acknowledged (harmless: the PUBACK was lost, or the drain
    /// timed out after the commit).
    pub stored_unacked: u64,
    /// Seconds from the first publish until every acknowledged message was in
    /// PostgreSQL (`None`: not within `--wait-timeout`).
    pub committed_secs: Option<f64>,
    /// Acknowledged messages / `committed_secs`: the committed rate of a saturated run,
    /// whatever the broker acknowledges on (external mode: on receipt).
    pub committed_per_sec: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Daemon {
    pub pid: u32,
    pub rss_before_mb: Option<f64>,
    pub rss_peak_mb: f64,
    /// (peak − before) / connections.
    pub rss_per_connection_kb: Option<f64>,
    /// In the window.
    pub cpu: Option<Cpu>,
    /// CPU from before the robots connected until every message was committed, per
    /// message stored (with `--database-url`, once all were committed; with several
    /// daemons sharing the traffic, this one's CPU over all of them: too low).
    pub us_per_stored: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Postgres {
    pub postmaster_pid: u32,
    /// The cluster's processes at the end of the window.
    pub processes: usize,
    pub cpu: Cpu,
}

/// CPU used during the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// CPU seconds per second of window.
    pub cores: f64,
    /// CPU microseconds per message acknowledged in the window.
    pub us_per_msg: f64,
}

impl Cpu {
    pub fn new(cpu_secs: f64, window_secs: f64, acked_in_window: u64) -> Cpu {
        Cpu {
            cores: cpu_secs / window_secs.max(1e-9),
            us_per_msg: cpu_secs * 1e6 / acked_in_window.max(1) as f64,
        }
    }
}

/// One `--rss-every` sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TracePoint {
    pub secs: u64,
    pub rss_kib: u64,
    pub published: u64,
    pub acked: u64,
}

fn mb(x: f64) -> String {
    format!("{x:.1} MB")
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} cores = {:.1} µs per acked message",
            self.cores, self.us_per_msg
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.connections;
        writeln!(
            f,
            "fleetsink bench: {} shape, {}",
            self.shape, self.settings
        )?;
        writeln!(f, "{:<14} {}", "broker", self.broker)?;
        writeln!(
            f,
            "{:<14} target {}, connected {}, failed {}, reconnects {} (ramp {:.1} s)",
            "connections", c.target, c.connected, c.failed, c.reconnects, c.ramp_secs
        )?;
        writeln!(
            f,
            "{:<14} {:.1} s, after {:.1} s of warm-up",
            "window", self.window_secs, self.warmup_secs
        )?;
        for (name, t) in [
            ("published", &self.published),
            ("acknowledged", &self.acked),
        ] {
            writeln!(
                f,
                "{name:<14} {:.0} msg/s ({} in the window; {} in the run)",
                t.per_sec, t.in_window, t.total
            )?;
        }
        if self.held_back > 0 {
            writeln!(
                f,
                "{:<14} {} due messages not sent: the robot's in-flight window was full",
                "held back", self.held_back
            )?;
        }
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "{:<14} p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} messages: every one published in the window)",
                "publish→PUBACK", l.p50, l.p99, l.p999, l.max, l.samples
            )?,
            None => writeln!(
                f,
                "{:<14} no message of the window was acknowledged",
                "publish→PUBACK"
            )?,
        }
        writeln!(
            f,
            "{:<14} lost {} (never acknowledged; drained for {:.1} s), duplicated {} (PUBACKs for nothing in flight)",
            "MQTT", self.mqtt.lost, self.drain_secs, self.mqtt.duplicated
        )?;
        if let Some(d) = &self.database {
            writeln!(
                f,
                "{:<14} {} of {} messages stored ({} acknowledged): lost {}, duplicated {}, stored but not acknowledged {}",
                "PostgreSQL",
                d.stored,
                d.published,
                d.acked,
                d.lost,
                d.duplicated,
                d.stored_unacked
            )?;
            match (d.committed_secs, d.committed_per_sec) {
                (Some(s), Some(r)) => writeln!(
                    f,
                    "{:<14} all acknowledged messages in PostgreSQL {s:.2} s after the first publish = {r:.0} msg/s",
                    "committed"
                )?,
                _ => writeln!(
                    f,
                    "{:<14} not every acknowledged message was in PostgreSQL by --wait-timeout",
                    "committed"
                )?,
            }
        }
        if let Some(d) = &self.daemon {
            let before = d.rss_before_mb.map_or("?".into(), mb);
            let per = d
                .rss_per_connection_kb
                .map_or(String::new(), |k| format!(", {k:.1} KB per connection"));
            writeln!(
                f,
                "{:<14} pid {}: RSS peak {} ({before} before the robots connected{per})",
                "daemon",
                d.pid,
                mb(d.rss_peak_mb)
            )?;
            if let Some(cpu) = &d.cpu {
                let run = d.us_per_stored.map_or(String::new(), |us| {
                    format!(
                        "; {us:.1} µs per stored message from before the robots connected to the last commit"
                    )
                });
                writeln!(f, "{:<14} {cpu}{run}", "daemon CPU")?;
            }
        }
        if let Some(p) = &self.postgres {
            writeln!(
                f,
                "{:<14} {} (postmaster pid {} and its {} processes)",
                "PostgreSQL CPU", p.cpu, p.postmaster_pid, p.processes
            )?;
        }
        if let Some(g) = &self.generator {
            writeln!(f, "{:<14} {g}", "generator CPU")?;
        }
        if !self.latency_by_second.is_empty() {
            writeln!(
                f,
                "   s  messages   p50 (ms)   p99 (ms)   max (ms)   by second of publish"
            )?;
            for s in &self.latency_by_second {
                let l = &s.latency_ms;
                writeln!(
                    f,
                    "{:>4} {:>9} {:>10.1} {:>10.1} {:>10.1}",
                    s.second, l.samples, l.p50, l.p99, l.max
                )?;
            }
        }
        if !self.rss_trace.is_empty() {
            writeln!(f, "   t (s)   RSS (MB)   published       acked")?;
            for p in &self.rss_trace {
                writeln!(
                    f,
                    "{:>8} {:>10.1} {:>11} {:>11}",
                    p.secs,
                    p.rss_kib as f64 / 1024.0,
                    p.published,
                    p.acked
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        // 1..=1000 ms.
        let mut s: Vec<u32> = (1..=1000).rev().map(|ms| ms * 1000).collect();
        let l = Latency::from_samples(&mut s).expect("samples");
        assert_eq!(
            l,
            Latency {
                samples: 1000,
                p50: 500.0,
                p99: 990.0,
                p999: 999.0,
                max: 1000.0
            }
        );
        let mut one = vec![2500];
        let l = Latency::from_samples(&mut one).expect("one sample");
        assert_eq!((l.p50, l.p999, l.max), (2.5, 2.5, 2.5));
        assert_eq!(Latency::from_samples(&mut []), None);
    }

    #[test]
    fn a_single_slow_message_shows_in_p999_and_max_but_not_p99() {
        let mut s = vec![3_000u32; 10_000];
        s[1234] = 900_000;
        let l = Latency::from_samples(&mut s).expect("samples");
        assert_eq!((l.p99, l.p999, l.max), (3.0, 3.0, 900.0));
        s.iter_mut().take(20).for_each(|x| *x = 50_000);
        let l = Latency::from_samples(&mut s).expect("samples");
        assert_eq!(l.p999, 50.0, "0.2 % slow messages reach p99.9");
    }

    #[test]
    fn cpu_per_message_divides_by_acknowledged_messages() {
        let c = Cpu::new(3.0, 30.0, 60_000);
        assert!((c.cores - 0.1).abs() < 1e-12);
        assert!((c.us_per_msg - 50.0).abs() < 1e-9);
        assert_eq!(
            Cpu::new(1.0, 10.0, 0).us_per_msg,
            1e6,
            "no division by zero"
        );
    }

    #[test]
    fn latency_by_second_groups_by_second_of_publish() {
        // Second 100: 1..=100 ms; second 102: one 7 ms sample; none in second 101.
        let mut s: Vec<(u32, u32)> = (1..=100).map(|ms| (100, ms * 1000)).collect();
        s.insert(40, (102, 7000));
        let by = by_second(&mut s);
        assert_eq!(by.len(), 2, "a second without samples has no line");
        assert_eq!(by[0].second, 0);
        assert_eq!(
            (
                by[0].latency_ms.samples,
                by[0].latency_ms.p50,
                by[0].latency_ms.p99
            ),
            (100, 50.0, 99.0)
        );
        assert_eq!(by[1].second, 2);
        assert_eq!((by[1].latency_ms.samples, by[1].latency_ms.max), (1, 7.0));
        assert!(by_second(&mut []).is_empty());
    }

    #[test]
    fn the_table_and_the_json_carry_the_same_figures() {
        let r = Report {
            shape: "fleet",
            broker: "mqtt://127.0.0.1:1883".into(),
            settings: "2000 robots".into(),
            latency_ms: Some(Latency {
                samples: 7,
                p50: 1.5,
                p99: 9.26,
                p999: 12.0,
                max: 20.0,
            }),
            database: Some(Database {
                published: 10,
                acked: 10,
                stored: 10,
                committed_secs: Some(2.0),
                committed_per_sec: Some(5.0),
                ..Database::default()
            }),
            generator: Some(Cpu::new(0.5, 10.0, 100)),
            ..Report::default()
        };
        let text = r.to_string();
        assert!(text.contains("p99 9.3 ms"), "{text}");
        assert!(text.contains("10 of 10 messages stored"), "{text}");
        assert!(text.contains("0.05 cores = 5000.0 µs"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&r).expect("serialises")).expect("JSON");
        assert_eq!(json["latency_ms"]["p99"], 9.26);
        assert_eq!(json["database"]["lost"], 0);
        assert_eq!(json["daemon"], serde_json::Value::Null);
    }
}
