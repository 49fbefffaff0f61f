//! Fleet pages answered from a snapshot once the fleet is large (README, "Scaling").
//!
//! `robot-data/status` and `management/robots` list every robot: at 10,000 robots each
//! takes ~0.13 s to compute while the fleet is quiet and 0.3–0.5 s while it writes, and
//! TonyPi's UI asks for them every 5 s from every open page. A page that listed at least
//! `http.page_snapshot_robots` robots last time is answered from that computation while
//! it is at most `http.page_max_stale` old. A request finding it due
//! ([`Page::refresh_at`]: older than [`REFRESH_AFTER`] and [`REFRESH_COST`] times what it
//! took to compute, at most half of `max_stale`) starts a background refresh, which
//! repeats each time the page is due again while anybody asked for it within
//! `max_stale`. So however many browsers poll, a page is computed one at a time, its
//! refreshes take at most a twentieth of the wall clock (at 10,000 robots writing, one
//! every few seconds), requests are answered without waiting for them, and a page
//! polled every 5 s is about one refresh old, not one poll old. Requests still wait for
//! a computation when there is no snapshot to serve: the first, the first after an API
//! write, after `max_stale` without requests, and every request for a small page (as
//! before; those waiting meanwhile share the next computation).
//!
//! A change made through this daemon's API to the robots (`robots-db`, `management`
//! routes) drops both snapshots at once ([`FleetPages::invalidate`], by the router); what
//! else changes the pages (robots reporting, a robot's answer to a command, the offline
//! sweep, another instance, the CLI) shows within a refresh, at most `max_stale`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::http::error::ApiError;
use crate::http::to_json_sized;

/// A snapshot younger than this is served without starting a refresh.
pub const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// Nor is one younger than this many times its computation took: refreshing a page
/// takes at most 1/20 of a core however many clients poll it.
pub const REFRESH_COST: u32 = 20;

/// When a page is served from its snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// Pages that listed at least this many robots (`http.page_snapshot_robots`).
    pub min_robots: usize,
    /// The oldest snapshot served (`http.page_max_stale`); zero: never.
    pub max_stale: Duration,
}

/// A computed page: its JSON and how many robots it lists.
pub struct Computed {
    pub body: Bytes,
    pub robots: usize,
}

impl Computed {
    /// `page` as JSON ([`to_json_sized`], about `size_hint` bytes), listing `robots`
    /// robots.
    pub fn json<T: serde::Serialize>(
        page: &T,
        robots: usize,
        size_hint: usize,
    ) -> Result<Computed, ApiError> {
        Ok(Computed {
            body: to_json_sized(page, size_hint)?,
            robots,
        })
    }
}

/// The snapshots of the fleet pages.
pub struct FleetPages {
    pub status: Arc<Snapshot>,
    pub managed_robots: Arc<Snapshot>,
}

impl FleetPages {
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self {
            status: Arc::new(Snapshot::new(policy)),
            managed_robots: Arc::new(Snapshot::new(policy)),
        }
    }

    /// Drops every snapshot: the next request computes its page.
    pub fn invalidate(&self) {
        self.status.invalidate();
        self.managed_robots.invalidate();
    }
}

#[derive(Clone)]
struct Page {
    body: Bytes,
    robots: usize,
    /// When its computation started: it shows every change committed before.
    started: Instant,
    took: Duration,
    generation: u64,
}

impl Page {
    /// When the page is due for a refresh: after [`REFRESH_AFTER`] and [`REFRESH_COST`]
    /// times its computation, but by half of `max_stale`, so that a refresh ends before
    /// the snapshot may no longer be served.
    fn refresh_at(&self, max_stale: Duration) -> Instant {
        let after = REFRESH_AFTER.max(self.took.saturating_mul(REFRESH_COST));
        self.started + after.min(max_stale / 2)
    }
}

/// One page's last computation; at most one computation of it at a time.
pub struct Snapshot {
    policy: SnapshotPolicy,
    last: Mutex<Option<Page>>,
    computing: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    /// The last request, in nanoseconds since `epoch`.
    asked: AtomicU64,
    epoch: Instant,
    /// Bumped by [`Snapshot::invalidate`]; a page computed under an older one is not
    /// served.
    generation: AtomicU64,
}

impl Snapshot {
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self {
            policy,
            last: Mutex::new(None),
            computing: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            asked: AtomicU64::new(0),
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
        }
    }

    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The page: from the snapshot when it may be (module docs), else computed by
    /// `compute` (once for all the requests that wait meanwhile).
    pub async fn get<F, Fut>(self: &Arc<Self>, compute: F) -> Result<Bytes, ApiError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Computed, ApiError>> + Send + 'static,
    {
        let asked = Instant::now();
        self.asked_at(asked);
        if let Some(page) = self.servable(asked) {
            if asked >= page.refresh_at(self.policy.max_stale)
                && !self.refreshing.swap(true, Ordering::SeqCst)
            {
                tokio::spawn(Arc::clone(self).keep_fresh(compute));
            }
            return Ok(page.body);
        }
        let _one = self.computing.lock().await;
        // Computed while this request waited: served if it may be now, or if it started
        // after the request was made (as good as new).
        if let Some(page) = self.servable(Instant::now()) {
            return Ok(page.body);
        }
        if let Some(page) = self.last()
            && page.started > asked
            && page.generation == self.generation()
        {
            return Ok(page.body);
        }
        self.compute_and_keep(&compute).await
    }

    /// Refreshes the page, then again each time it is due ([`Page::refresh_at`]) for as
    /// long as it was asked for within `max_stale`: a client polling every few seconds
    /// then gets a page about one refresh old, not one poll old. Ends when nobody asked
    /// for that long, the page got small, or a computation failed (the snapshot stays
    /// until `max_stale`; the next request that finds it due starts again).
    async fn keep_fresh<F, Fut>(self: Arc<Self>, compute: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Computed, ApiError>>,
    {
        let _done = Refreshing(&self.refreshing);
        loop {
            let due = Instant::now();
            let computed = {
                let _one = self.computing.lock().await;
                // A request computed it while this refresh waited: nothing to do.
                match self.last() {
                    Some(page) if page.started >= due => Ok(page.body),
                    _ => self.compute_and_keep(&compute).await,
                }
            };
            if let Err(e) = computed {
                tracing::warn!(
                    ?e,
                    "a fleet page's refresh failed; its snapshot is served until it is too old"
                );
                return;
            }
            // Dropped by an API write meanwhile: the next request computes.
            let Some(page) = self.last() else { return };
            if page.robots < self.policy.min_robots {
                return;
            }
            tokio::time::sleep_until(page.refresh_at(self.policy.max_stale)).await;
            let idle = Instant::now().saturating_duration_since(self.last_asked());
            if idle > self.policy.max_stale {
                return;
            }
        }
    }

    /// Computes the page and keeps it; the caller holds `computing`.
    async fn compute_and_keep<F, Fut>(&self, compute: &F) -> Result<Bytes, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Computed, ApiError>>,
    {
        let generation = self.generation();
        let started = Instant::now();
        let computed = compute().await?;
        let page = Page {
            body: computed.body,
            robots: computed.robots,
            started,
            took: started.elapsed(),
            generation,
        };
        let body = page.body.clone();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(page);
        Ok(body)
    }

    /// The snapshot, when it may be served at `now` without computing.
    fn servable(&self, now: Instant) -> Option<Page> {
        let page = self.last()?;
        let large = page.robots >= self.policy.min_robots;
        let young = now.saturating_duration_since(page.started) <= self.policy.max_stale;
        let current = page.generation == self.generation();
        (large && young && current && !self.policy.max_stale.is_zero()).then_some(page)
    }

    fn asked_at(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        self.asked
            .fetch_max(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn last_asked(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.asked.load(Ordering::SeqCst))
    }

    fn last(&self) -> Option<Page> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// Clears the refresh flag however the refresh ends.
struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    type Compute = std::pin::Pin<Box<dyn Future<Output = Result<Computed, ApiError>> + Send>>;

    /// A page computation that counts its calls, takes `takes`, lists `robots` robots
    /// and answers with its call number.
    fn page(
        calls: &Arc<AtomicUsize>,
        robots: usize,
        takes: Duration,
    ) -> impl Fn() -> Compute + Send + Sync + 'static {
        let calls = Arc::clone(calls);
        move || {
            let calls = Arc::clone(&calls);
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(takes).await;
                Ok(Computed {
                    body: Bytes::from(n.to_string()),
                    robots,
                })
            })
        }
    }

    fn snapshot(min_robots: usize, max_stale_secs: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot::new(SnapshotPolicy {
            min_robots,
            max_stale: Duration::from_secs(max_stale_secs),
        }))
    }

    async fn body(s: &Arc<Snapshot>, calls: &Arc<AtomicUsize>, robots: usize) -> String {
        let b = s
            .get(page(calls, robots, Duration::from_millis(100)))
            .await
            .expect("page");
        String::from_utf8(b.to_vec()).expect("utf-8")
    }

    /// Lets spawned refreshes run to completion (time is paused: sleeps end at once).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_page_is_computed_for_every_request() {
        let (s, calls) = (snapshot(1000, 10), Arc::new(AtomicUsize::new(0)));
        assert_eq!(body(&s, &calls, 999).await, "1");
        assert_eq!(body(&s, &calls, 999).await, "2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_page_is_served_from_its_snapshot_and_refreshed_behind() {
        let (s, calls) = (snapshot(1000, 10), Arc::new(AtomicUsize::new(0)));
        assert_eq!(body(&s, &calls, 1000).await, "1");
        // Not due (it took 100 ms: due after 20 × 100 ms = 2 s): served, nothing computed.
        assert_eq!(body(&s, &calls, 1000).await, "1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Older: still served at once, one refresh starts for all the requests.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(body(&s, &calls, 1000).await, "1");
        assert_eq!(body(&s, &calls, 1000).await, "1");
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
        assert_eq!(body(&s, &calls, 1000).await, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_that_takes_long_is_refreshed_less_often() {
        let (s, calls) = (snapshot(1, 60), Arc::new(AtomicUsize::new(0)));
        let slow = || page(&calls, 10, Duration::from_millis(200));
        assert_eq!(
            s.get(slow()).await.map(|b| b.to_vec()).ok(),
            Some(b"1".to_vec())
        );
        // 200 ms to compute: not refreshed before 20 × 200 ms = 4 s.
        tokio::time::advance(Duration::from_secs(3)).await;
        s.get(slow()).await.expect("page");
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no refresh at 3 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        s.get(slow()).await.expect("page");
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed at 4 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_page_is_refreshed_within_half_of_max_stale() {
        let (s, calls) = (snapshot(1, 4), Arc::new(AtomicUsize::new(0)));
        let slow = || page(&calls, 10, Duration::from_secs(1));
        s.get(slow()).await.expect("page");
        // 20 × 1 s would be past max_stale (4 s): due at 2 s instead, served meanwhile.
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(s.get(slow()).await.expect("page"), "1");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed at 2.5 s");
        assert_eq!(s.get(slow()).await.expect("page"), "2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_polled_page_is_kept_fresh_and_left_alone_once_nobody_asks() {
        let (s, calls) = (snapshot(1, 10), Arc::new(AtomicUsize::new(0)));
        // 100 ms to compute: due every 2 s. A client polls every 5 s for 20 s.
        for _ in 0..5 {
            body(&s, &calls, 10).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let polled = calls.load(Ordering::SeqCst);
        assert!(
            polled >= 8,
            "refreshed every ~2 s while polled, not once per poll: {polled}"
        );
        // Nobody asks: the refreshes stop within max_stale (10 s) and a bit.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let idle = calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            idle,
            "no refresh without requests"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_snapshot_and_the_next_due_request_tries_again() {
        let s = snapshot(1, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = {
            let calls = Arc::clone(&calls);
            move || -> Compute {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Box::pin(async move {
                    if n == 2 {
                        return Err(ApiError::new(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "down",
                        ));
                    }
                    Ok(Computed {
                        body: Bytes::from(n.to_string()),
                        robots: 10,
                    })
                })
            }
        };
        let flaky = Arc::new(flaky);
        let get = |s: &Arc<Snapshot>| {
            let f = Arc::clone(&flaky);
            let s = Arc::clone(s);
            async move { s.get(move || f()).await.expect("page") }
        };
        assert_eq!(get(&s).await, "1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            get(&s).await,
            "1",
            "due: served, refresh 2 starts and fails"
        );
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(get(&s).await, "1", "the snapshot stays; refresh 3 starts");
        settle().await;
        assert_eq!(get(&s).await, "3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_older_than_max_stale_is_computed_again_before_answering() {
        let (s, calls) = (snapshot(1000, 10), Arc::new(AtomicUsize::new(0)));
        assert_eq!(body(&s, &calls, 1000).await, "1");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(body(&s, &calls, 1000).await, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_makes_the_next_request_compute() {
        let (s, calls) = (snapshot(1000, 10), Arc::new(AtomicUsize::new(0)));
        assert_eq!(body(&s, &calls, 1000).await, "1");
        s.invalidate();
        assert_eq!(body(&s, &calls, 1000).await, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_computed_before_an_invalidation_is_not_served_after_it() {
        let (s, calls) = (snapshot(1, 10), Arc::new(AtomicUsize::new(0)));
        let s2 = Arc::clone(&s);
        let c2 = Arc::clone(&calls);
        // The first computation is under way when the change is made.
        let first = tokio::spawn(async move { body(&s2, &c2, 5).await });
        tokio::task::yield_now().await;
        s.invalidate();
        assert_eq!(first.await.expect("task"), "1");
        assert_eq!(body(&s, &calls, 5).await, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_waiting_for_a_computation_share_it() {
        let (s, calls) = (snapshot(1000, 10), Arc::new(AtomicUsize::new(0)));
        // The first computation runs; two more requests arrive meanwhile (at the instant
        // it started: the clock is paused): they wait, the first of them computes again,
        // and the other is answered with that computation, which started after it asked.
        let a = tokio::spawn({
            let (s, c) = (Arc::clone(&s), Arc::clone(&calls));
            async move { body(&s, &c, 10).await }
        });
        tokio::task::yield_now().await;
        let b = tokio::spawn({
            let (s, c) = (Arc::clone(&s), Arc::clone(&calls));
            async move { body(&s, &c, 10).await }
        });
        let c = tokio::spawn({
            let (s, c) = (Arc::clone(&s), Arc::clone(&calls));
            async move { body(&s, &c, 10).await }
        });
        assert_eq!(a.await.expect("a"), "1");
        let (b, c) = (b.await.expect("b"), c.await.expect("c"));
        assert_eq!((b.as_str(), c.as_str()), ("2", "2"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_stale_zero_turns_snapshots_off() {
        let (s, calls) = (snapshot(1, 0), Arc::new(AtomicUsize::new(0)));
        assert_eq!(body(&s, &calls, 5000).await, "1");
        assert_eq!(body(&s, &calls, 5000).await, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_computation_answers_its_error_and_keeps_nothing() {
        let s = snapshot(1, 10);
        let failed = s
            .get(|| async {
                Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "down",
                ))
            })
            .await;
        assert!(failed.is_err());
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(body(&s, &calls, 5).await, "1");
    }
}
