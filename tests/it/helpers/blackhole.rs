//! A TCP proxy between fleetsink and PostgreSQL that can stop forwarding without
//! closing anything: the network fault of a firewall or NAT that loses its state, where
//! packets vanish and no RST ever comes. Every socket stays open; bytes already read are
//! held, and reading stops, so both peers simply hear nothing. Healing forwards what was
//! held, as TCP's retransmissions would once the path is back.
//!
//! [`BlackHoleProxy::lose_reply_to_next_batch_commit`] makes the outcome of a COMMIT
//! unknown to fleetsink: the black hole starts right after a COMMIT that ends a large
//! transaction (a batch) is forwarded, so PostgreSQL commits it and its answer is held.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A transaction that sends at least this much between BEGIN and COMMIT is a batch
/// (its inserts carry the rows' arrays; upkeep transactions send a few hundred bytes).
const BATCH_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flowing,
    BlackHole,
    /// Flowing until a batch's COMMIT has been forwarded, then `BlackHole`.
    HoleAfterBatchCommit,
}

/// The proxy; it stops (and drops every connection) when dropped.
pub struct BlackHoleProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHoleProxy {
    /// A proxy on a free loopback port forwarding to the PostgreSQL of `db_url`.
    pub async fn start(db_url: &str) -> BlackHoleProxy {
        let url = url::Url::parse(db_url).unwrap();
        let upstream: SocketAddr =
            format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
                .parse()
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(watch::Sender::new(Mode::Flowing));
        let task = tokio::spawn(accept(listener, upstream, mode.clone()));
        BlackHoleProxy { addr, mode, task }
    }

    /// `db_url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, db_url: &str) -> String {
        let mut url = url::Url::parse(db_url).unwrap();
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }

    /// Stops forwarding in both directions, closing nothing.
    pub fn black_hole(&self) {
        self.mode.send_replace(Mode::BlackHole);
    }

    /// Forwards again, what was held first.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Flowing);
    }

    /// Lets the next batch's COMMIT reach PostgreSQL, then black-holes everything.
    pub fn lose_reply_to_next_batch_commit(&self) {
        self.mode.send_replace(Mode::HoleAfterBatchCommit);
    }

    /// Whether the black hole is on (after [`Self::lose_reply_to_next_batch_commit`]:
    /// whether a batch's COMMIT went through).
    pub fn is_black_hole(&self) -> bool {
        *self.mode.borrow() == Mode::BlackHole
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mode: Arc<watch::Sender<Mode>>) {
    // Dropped with this task: every pump is aborted and its sockets closed.
    let mut pumps = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mode = mode.clone();
        pumps.spawn(async move {
            // A new connection gets no further than the proxy while the hole lasts.
            if mode
                .subscribe()
                .wait_for(|m| *m != Mode::BlackHole)
                .await
                .is_err()
            {
                return;
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (client_rx, client_tx) = client.into_split();
            let (server_rx, server_tx) = server.into_split();
            tokio::join!(
                pump(client_rx, server_tx, mode.clone(), true),
                pump(server_rx, client_tx, mode, false),
            );
        });
        while pumps.try_join_next().is_some() {}
    }
}

/// Copies `from` to `to` while the mode allows, holding what it read otherwise;
/// `to_server` watches the client's side for a batch's COMMIT.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: Arc<watch::Sender<Mode>>,
    to_server: bool,
) {
    let mut modes = mode.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes sent since the transaction's BEGIN.
    let mut in_tx = 0usize;
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let chunk = &buf[..n];
        if to_server {
            if contains(chunk, b"BEGIN") {
                in_tx = 0;
            }
            in_tx += n;
            let commit = contains(chunk, b"COMMIT");
            if commit && in_tx >= BATCH_BYTES && *modes.borrow() == Mode::HoleAfterBatchCommit {
                // Hole first, so the answer cannot slip through; this COMMIT goes on.
                mode.send_replace(Mode::BlackHole);
                if to.write_all(chunk).await.is_err() {
                    return;
                }
                continue;
            }
        }
        if modes.wait_for(|m| *m != Mode::BlackHole).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

fn contains(chunk: &[u8], word: &[u8]) -> bool {
    chunk.windows(word.len()).any(|w| w == word)
}
