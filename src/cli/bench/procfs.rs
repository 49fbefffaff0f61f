//! What the bench reads from `/proc` (Linux): CPU time of the daemon, of a PostgreSQL
//! cluster and of the generator itself, and resident memory, sampled over the run.
//!
//! CPU is `utime + stime` from `/proc/PID/stat`, all threads of the process, in clock
//! ticks of `USER_HZ`, which the kernel fixes at 100 per second for user space on every
//! architecture it supports except alpha; a 30 s window is therefore measured to 0.03 %.
//! A PostgreSQL cluster is its postmaster and every process whose parent it is (backends,
//! WAL writer, checkpointer, autovacuum); a backend that exits inside the window is
//! still counted, through the postmaster's `cutime + cstime` (the CPU of reaped
//! children).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::Shared;
use super::report::TracePoint;

const USER_HZ: u64 = 100;

/// The fields of `/proc/PID/stat` the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime, in ticks.
    pub own_ticks: u64,
    /// cutime + cstime (waited-for children), in ticks.
    pub children_ticks: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        own_ticks: num(11)? + num(12)?,
        children_ticks: num(13)? + num(14)?,
    })
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn ticks(t: u64) -> Duration {
    Duration::from_micros(t * 1_000_000 / USER_HZ)
}

/// CPU time used so far by process `pid` (all its threads).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    stat(pid).map(|s| ticks(s.own_ticks))
}

/// The parent of process `pid` (a backend's parent is its cluster's postmaster).
pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.ppid)
}

/// CPU time used so far by the PostgreSQL cluster whose postmaster is `postmaster`, and
/// how many child processes it has now. `None` if the postmaster is not visible here.
pub fn cluster_cpu(postmaster: u32) -> Option<(Duration, usize)> {
    let master = stat(postmaster)?;
    let mut total = master.own_ticks + master.children_ticks;
    let mut children = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(s) = stat(pid)
            && s.ppid == postmaster
        {
            total += s.own_ticks;
            children += 1;
        }
    }
    Some((ticks(total), children))
}

/// The resident set of `pid` in KiB (`VmRSS`); `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The soft limit on open files of `pid` (`Max open files` in `/proc/PID/limits`);
/// `None` when unreadable or unlimited.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    parse_open_files(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// Samples one process's RSS every 200 ms: the peak and, with `every`, a timeline of RSS
/// beside messages published and acknowledged (e.g. through a PostgreSQL outage).
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    trace: Arc<Mutex<Vec<TracePoint>>>,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub fn spawn(
        pid: u32,
        every: Option<Duration>,
        started: Instant,
        shared: Arc<Shared>,
    ) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let trace = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (peak_kib, trace) = (peak_kib.clone(), trace.clone());
            async move {
                let mut next_trace = started;
                loop {
                    if let Some(kib) = rss_kib(pid) {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                        if let Some(every) = every
                            && Instant::now() >= next_trace
                        {
                            next_trace += every;
                            trace.lock().await.push(TracePoint {
                                secs: started.elapsed().as_secs(),
                                rss_kib: kib,
                                published: shared.published.load(Ordering::Relaxed),
                                acked: shared.acked.load(Ordering::Relaxed),
                            });
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        RssSampler {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (postgres: a (b) c) S 99 4242 4242 0 -1 4194560 1 0 0 0 \
                    150 50 7 3 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 99,
                own_ticks: 200,
                children_ticks: 10
            })
        );
        assert_eq!(ticks(200), Duration::from_secs(2));
        assert_eq!(parse_stat("12 (x) S"), None);
    }

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63324                63324                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert!(open_files_limit(std::process::id()).is_some_and(|n| n > 0));
    }

    #[test]
    fn this_process_is_visible_with_cpu_rss_and_a_parent() {
        let me = std::process::id();
        // Burn a little CPU so the tick counter is not still 0.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_cpu(me).is_some());
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        let parent = parent(me).expect("a parent");
        let (_, children) = cluster_cpu(parent).expect("the parent is visible");
        assert!(children >= 1, "this process is a child of its parent");
    }
}
