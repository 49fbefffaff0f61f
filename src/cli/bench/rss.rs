//! `--watch-pid`: samples the watched process's resident memory (`VmRSS` in
//! `/proc/PID/status`) every 200 ms, keeping the peak and, with `--rss-every`, a
//! timeline of RSS next to messages published and acked (e.g. through a PostgreSQL
//! outage, where fleetsink's memory must stay bounded).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::Progress;
use super::report::TracePoint;

pub struct Sampler {
    peak_kib: Arc<AtomicU64>,
    trace: Arc<Mutex<Vec<TracePoint>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`; timeline points every `every` seconds (at least 1) from
    /// `started`, when given.
    pub fn spawn(
        pid: u32,
        every: Option<u64>,
        started: Instant,
        progress: Arc<Progress>,
    ) -> Sampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let trace = Arc::new(Mutex::new(Vec::new()));
        let every = every.map(|s| Duration::from_secs(s.max(1)));
        let task = tokio::spawn({
            let (peak_kib, trace) = (peak_kib.clone(), trace.clone());
            async move {
                let mut next_trace = started;
                loop {
                    if let Some(kib) = rss_kib(pid).await {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                        if let Some(every) = every
                            && Instant::now() >= next_trace
                        {
                            next_trace += every;
                            trace.lock().await.push(TracePoint {
                                secs: started.elapsed().as_secs(),
                                rss_kib: kib,
                                published: progress.published.load(Ordering::Relaxed),
                                acked: progress.acked.load(Ordering::Relaxed),
                            });
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Sampler {
            peak_kib,
            trace,
            task,
        }
    }

    /// Stops sampling: the peak (KiB) and the timeline.
    pub async fn finish(self) -> (u64, Vec<TracePoint>) {
        self.task.abort();
        let trace = self.trace.lock().await.clone();
        (self.peak_kib.load(Ordering::Relaxed), trace)
    }
}

/// The process's resident set in KiB; `None` once it is gone.
async fn rss_kib(pid: u32) -> Option<u64> {
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
        .await
        .ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
}
