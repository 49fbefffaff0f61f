//! The test harness, by concern; `use crate::helpers::*;` brings all of it.
//!
//! - [`servers`]: what a test runs against — fresh databases on the shared PostgreSQL,
//!   PostgreSQL clusters of its own, Mosquitto processes (whose log is a test's view of
//!   what the broker did).
//! - [`app`]: fleetsink under test — `spawn_app` in-process on a fresh database, or a
//!   [`Daemon`] child process for signal tests.
//! - [`clients`]: what talks to it — MQTT robots that see their PUBACKs and SUBACKs, HTTP.
//! - [`blackhole`]: a TCP proxy that makes database connections go silent (no RST).
//! - [`waits`]: waiting on observable state (a port, a row count, a flag) instead of
//!   sleeping; the one fixed wait asserts that something does *not* happen.
//!
//! Isolation is by construction: every port is free (or 0), every name unique, every
//! test gets its own database, so tests run in parallel and runs can overlap.
//! `scripts/test.sh` provides the shared PostgreSQL server and the binaries' paths in
//! `FLEETSINK_TEST_*` variables.

mod app;
mod blackhole;
mod clients;
mod servers;
mod waits;

use std::net::SocketAddr;

pub use app::*;
pub use blackhole::*;
pub use clients::*;
pub use servers::*;
pub use waits::*;

/// A loopback port nothing listens on right now, for a server a test starts later
/// (a child daemon, Mosquitto, PostgreSQL). Taken below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): a port from that range (what binding port 0
/// gives) can be taken meanwhile as the source port of any test's outgoing connection,
/// and the server then fails to bind. Tests running at once pick at random, and each
/// checks that nothing listens there.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if low > 11_000 {
        for _ in 0..100 {
            let port = fastrand::u16(10_000..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}
