//! Keeps an in-process copy of a table current: LISTEN on the channel its trigger
//! notifies, reload after every (re)connection (changes made while not listening are in
//! that reload), on every notification (a burst coalesced into one reload) and, as a
//! backstop, every `RELOAD_EVERY` (a LISTEN connection can miss a notification while
//! it reconnects). Used by the MQTT auth cache and the console users cache.
//!
//! A LISTEN connection only reads, so one whose packets vanish would wait for ever
//! without an error: the backstop round also pings it, and every reload and ping has a
//! deadline ([`ROUND_DEADLINE`]); a miss replaces the connection.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Reload even without a notification this often.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// How long a reload or the LISTEN connection's ping may take before the connection
/// is replaced (the tables are small: a reload normally takes milliseconds).
const ROUND_DEADLINE: Duration = Duration::from_secs(20);

/// `call` within [`ROUND_DEADLINE`]; a miss is an I/O time-out.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(ROUND_DEADLINE, call)
        .await
        .unwrap_or_else(|_| Err(super::timed_out(what, ROUND_DEADLINE)))
}

/// Calls `reload` as the module docs say until `stop`; `what` names the copy in logs.
pub async fn follow<F, Fut>(
    pool: PgPool,
    channel: &'static str,
    what: &'static str,
    reload: F,
    stop: CancellationToken,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    let mut backoff = Backoff::new(Duration::from_secs(10));
    loop {
        if let Err(e) = listen(&pool, channel, what, &reload, &stop, &mut backoff).await {
            tracing::warn!(cache = what, error = %e, "cannot follow changes; retrying");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One LISTEN connection's life: returns on an error, or `Ok` when stopped.
async fn listen<F, Fut>(
    pool: &PgPool,
    channel: &'static str,
    what: &'static str,
    reload: &F,
    stop: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    let mut listener = bounded("LISTEN", async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    })
    .await?;
    bounded("reload", reload()).await?;
    backoff.reset();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            n = listener.try_recv() => {
                match n? {
                    Some(_) => while listener.next_buffered().is_some() {},
                    // The connection dropped; the next receive reconnects, and this
                    // reload covers what was missed meanwhile.
                    None => tracing::warn!(cache = what, "LISTEN connection lost; reconnecting"),
                }
                bounded("reload", reload()).await?;
            }
            () = tokio::time::sleep(RELOAD_EVERY) => {
                bounded("LISTEN connection check", async {
                    sqlx::query("SELECT 1").execute(&mut listener).await.map(|_| ())
                })
                .await?;
                bounded("reload", reload()).await?;
            }
        }
    }
}
