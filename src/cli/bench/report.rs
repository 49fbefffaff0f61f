//! What `fleetsink bench` prints: throughput published and committed, rows expected /
//! found / lost / duplicated, the probe's publish→commit latency percentiles, and with
//! `--watch-pid` the peak RSS (and the `--rss-every` timeline). Lost and duplicated
//! rows are the delivery guarantee made visible: both must be 0.

use std::fmt;

/// One run's result; `Display` is the printed report.
#[derive(Debug, Default)]
pub struct Report {
    pub published: u64,
    pub acked: u64,
    pub publish_secs: f64,
    pub committed_secs: Option<f64>,
    pub metrics_expected: u64,
    pub metrics_found: u64,
    pub logs_expected: u64,
    pub logs_found: u64,
    pub latencies_ms: Vec<f64>,
    pub peak_rss_kib: Option<u64>,
    pub rss_trace: Vec<TracePoint>,
    pub args: String,
}

/// One `--rss-every` sample.
#[derive(Debug, Clone, Copy)]
pub struct TracePoint {
    pub secs: u64,
    pub rss_kib: u64,
    pub published: u64,
    pub acked: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "bench: {}", self.args)?;
        writeln!(
            f,
            "published {} messages in {:.2} s = {:.0} msg/s ({} acked by the broker)",
            self.published,
            self.publish_secs,
            self.published as f64 / self.publish_secs.max(1e-9),
            self.acked
        )?;
        if let Some(secs) = self.committed_secs {
            writeln!(
                f,
                "committed all in {:.2} s = {:.0} msg/s",
                secs,
                self.published as f64 / secs.max(1e-9)
            )?;
        }
        if self.metrics_expected + self.logs_expected > 0 {
            let lost = self.metrics_expected.saturating_sub(self.metrics_found)
                + self.logs_expected.saturating_sub(self.logs_found);
            let dup = self.metrics_found.saturating_sub(self.metrics_expected)
                + self.logs_found.saturating_sub(self.logs_expected);
            writeln!(
                f,
                "rows: metrics {}/{} logs {}/{}; lost {lost}, duplicated {dup}",
                self.metrics_found, self.metrics_expected, self.logs_found, self.logs_expected
            )?;
        }
        if !self.latencies_ms.is_empty() {
            let mut l = self.latencies_ms.clone();
            l.sort_by(f64::total_cmp);
            let pct = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
            writeln!(
                f,
                "publish→commit latency (probe, {} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.len(),
                pct(0.5),
                pct(0.99),
                pct(1.0)
            )?;
        }
        if let Some(kib) = self.peak_rss_kib {
            writeln!(
                f,
                "peak RSS of watched process: {:.1} MB",
                kib as f64 / 1024.0
            )?;
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
