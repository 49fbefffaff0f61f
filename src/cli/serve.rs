//! `fleetsink serve` (the default): runs the daemon until SIGTERM or SIGINT, and speaks
//! systemd's notify protocol.
//!
//! `READY=1` only once the database is migrated (`App::start` did it) and the broker
//! side is up, so `systemctl start` returns when fleetsink can take messages.
//! `WATCHDOG=1` only while the pipeline progresses or idles by choice
//! (`fleetsink::watchdog`): a stalled pipeline stops feeding it and systemd restarts
//! fleetsink. `STOPPING=1` as the drain begins, which `TimeoutStopSec` bounds. Outside
//! systemd every notification is a no-op.

use std::sync::Arc;
use std::time::Duration;

use fleetsink::app::App;
use fleetsink::config::Config;
use fleetsink::health::Health;
use fleetsink::watchdog::Verdict;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // systemd: the drain has begun (TimeoutStopSec bounds it).
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        signal.cancel();
    });
    // Longer than the longest gap between two database attempts that the deadlines
    // allow (backoff, then acquire, then a batch transaction): a database outage is
    // retried, and readiness reports it; only a call that outlives its deadline stalls.
    let db = &cfg.database;
    let stall_after = cfg
        .mqtt
        .external
        .keep_alive
        .saturating_mul(2)
        .max(Duration::from_secs(60))
        .max(db.retry_backoff_max + db.connect_timeout + db.commit_timeout * 2);
    let app = App::start(cfg, shutdown.clone()).await?;
    notify_ready(&app, &shutdown).await;
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(feed_watchdog(
            app.health(),
            interval,
            stall_after,
            shutdown.clone(),
        ));
    }
    app.stopped().await;
    Ok(())
}

/// systemd `Type=notify`: READY=1 once the database is up (App::start migrated it) and
/// the broker side is up (the embedded broker listens, or the external broker accepted
/// the connection).
async fn notify_ready(app: &App, shutdown: &CancellationToken) {
    let health = app.health();
    while !health.readiness().broker_connected {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("ingesting")]);
}

/// `WATCHDOG=1` every half `interval` while the pipeline progresses or idles by choice;
/// nothing once it is stalled, so systemd restarts it (`fleetsink::watchdog`).
async fn feed_watchdog(
    health: Arc<Health>,
    interval: Duration,
    stall_after: Duration,
    shutdown: CancellationToken,
) {
    let mut stalled = false;
    loop {
        match health.progress.verdict(stall_after) {
            Verdict::Alive => {
                if stalled {
                    tracing::info!("pipeline progressing again; feeding the systemd watchdog");
                    stalled = false;
                }
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            Verdict::Stalled(why) => {
                if !stalled {
                    tracing::error!(reason = %why, "pipeline stalled; no longer feeding the systemd watchdog, which will restart fleetsink");
                    let status = format!("stalled: {why}");
                    let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                    stalled = true;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval / 2) => {}
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
