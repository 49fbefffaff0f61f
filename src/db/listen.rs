//! Keeps an in-process copy of a table current: LISTEN on the channel its trigger
//! notifies, reload after every (re)connection (changes made while not listening are in
//! that reload), on every notification (a burst coalesced into one reload) and, as a
//! backstop, every `RELOAD_EVERY` (a LISTEN connection can miss a notification while
//! it reconnects). Used by the MQTT auth cache and the console users cache.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Reload even without a notification this often.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

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
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    reload().await?;
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
                reload().await?;
            }
            () = tokio::time::sleep(RELOAD_EVERY) => reload().await?,
        }
    }
}
