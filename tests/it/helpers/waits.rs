//! Waiting on what a test can observe — a port accepting, a row count, a flag, a log
//! line — instead of sleeping for a guessed time: a fixed sleep is either too short on a
//! loaded machine (a flaky test) or longer than needed everywhere else (a slow suite).
//!
//! Every wait has a deadline and fails naming the caller's line and what it waited for.
//! The one fixed wait is [`assert_holds_for`], for assertions that something does *not*
//! happen within a time (no duplicate lands, no ack goes out), which no event can show.

use std::net::SocketAddr;
use std::panic::Location;
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How often waits look again: short against the tests' timings, long enough not to
/// load the machine.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns true; after `timeout` the test fails with `what`,
/// naming the caller's line.
#[track_caller]
pub fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> impl Future<Output = ()> + use<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    let what = what.to_string();
    async move {
        let until = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < until,
                "{caller}: gave up after {timeout:?} waiting until {what}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Polls `read` until it returns `want`; after `timeout` the test fails showing the
/// last value read, naming the caller's line. For state written a little after the
/// messages that caused it were acknowledged (an open alert's count and latest value,
/// kept in memory for `alerts.flush_interval`).
#[track_caller]
pub fn wait_for_eq<T, F, Fut>(
    timeout: Duration,
    want: T,
    mut read: F,
) -> impl Future<Output = ()> + use<T, F, Fut>
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let caller = Location::caller();
    async move {
        let until = Instant::now() + timeout;
        loop {
            let got = read().await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "{caller}: gave up after {timeout:?}: last read {got:?}, want {want:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Asserts that `check` stays true for the whole of `period`; fails naming the caller's
/// line and `what` as soon as it does not. The test spends `period` in full: use it only
/// where the assertion is that something does not happen within a time.
#[track_caller]
pub fn assert_holds_for<F, Fut>(
    period: Duration,
    what: &str,
    mut check: F,
) -> impl Future<Output = ()> + use<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    let what = what.to_string();
    async move {
        let until = Instant::now() + period;
        loop {
            assert!(
                check().await,
                "{caller}: no longer true within {period:?}: {what}"
            );
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits until something listens on `addr`.
#[track_caller]
pub fn wait_for_port(addr: SocketAddr) -> impl Future<Output = ()> {
    wait_until(
        Duration::from_secs(15),
        &format!("something listens on {addr}"),
        move || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
}

/// The value of `query`, a single bigint (typically a `count(*)`).
pub async fn count(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_string()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls `query` (a single bigint) until it returns at least `want` or 30 s pass;
/// returns the last value, for the caller to assert on.
pub async fn wait_count(pool: &PgPool, query: &str, want: i64) -> i64 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(pool, query).await;
        if n >= want || Instant::now() > until {
            return n;
        }
        tokio::time::sleep(POLL).await;
    }
}
