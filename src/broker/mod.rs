//! The embedded MQTT broker: rmqtt (pinned `=0.24.0`), wrapped here and nowhere else.
//! The pipeline sees only envelopes on its intake queue and the `Intake`/`Downlink`
//! abstractions (`pipeline::source`); the access policy is `auth::access`.
//!
//! - `mod.rs` (here): the server and its listeners (plain and TLS) with the library
//!   defaults fleetsink overrides (ARCHITECTURE.md, "Why rmqtt for the embedded broker").
//! - `hook.rs`: the ingest hook, where a PUBLISH becomes an envelope and the robot's
//!   PUBACK waits for the commit, and where the access checks are asked.
//! - `downlink.rs`: publishing commands to robots through the broker.
//!
//! Unless the broker is `unrestricted-insecure`, rmqtt's own `allow_anonymous` is off so
//! that every CONNECT reaches the hook (rmqtt lets anonymous clients skip it): with
//! `mqtt.embedded.auth` to refuse clients without a username, with the robot policy to
//! check their Last Will. Without auth the policy in force is logged at start-up (WARN
//! for the unrestricted broker beyond loopback).
//!
//! rmqtt has no shutdown API: `close` aborts the server task (closing the listener)
//! and kicks every session; a kick waits for that session's in-flight hook.

mod downlink;
mod hook;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::access::{self, BrokerPolicy, RobotBinding};
use crate::auth::{AccessPolicy, Authenticator};
use crate::config::{CommandTopics, EmbeddedConfig};
use crate::health::Health;
use crate::pipeline::Envelope;
use crate::pipeline::route::Router;
use crate::pipeline::source::{Downlink, Intake};
use downlink::BrokerDownlink;
use hook::{Guard, IngestHook};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {source}; pick another mqtt.embedded.listen or stop what uses the port"
    )]
    Bind {
        addr: SocketAddr,
        source: anyhow::Error,
    },
    #[error("{0}")]
    Tls(String),
}

/// The running embedded broker.
pub struct EmbeddedBroker {
    scx: ServerContext,
    server: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

/// A listener with the broker's settings on `addr`.
fn listener_builder(cfg: &EmbeddedConfig, addr: SocketAddr) -> Builder {
    Builder::new()
        .name("fleetsink")
        .laddr(addr)
        .reuseaddr(Some(true))
        .nodelay(true)
        // rmqtt lets anonymous clients skip the CONNECT hook when allowed; only the
        // unrestricted broker has nothing to check there.
        .allow_anonymous(cfg.allow_anonymous && BrokerPolicy::of(cfg) == BrokerPolicy::Unrestricted)
        .max_packet_size(cfg.max_packet_size)
        .max_inflight(
            std::num::NonZeroU16::new(cfg.max_inflight.max(1)).unwrap_or(std::num::NonZeroU16::MIN),
        )
        .max_mqueue_len(cfg.max_mqueue_len)
}

impl EmbeddedBroker {
    /// Starts the server and its listeners; ingests what the `router` matches into
    /// `intake`. With `mqtt.embedded.auth`, `auth` checks every client; without, the
    /// robot policy keeps clients off `commands` (the downlink topics).
    pub async fn start(
        cfg: &EmbeddedConfig,
        commands: &CommandTopics,
        router: Arc<Router>,
        intake: mpsc::Sender<Envelope>,
        health: Arc<Health>,
        auth: Arc<Authenticator>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let scx = ServerContext::new()
            // rmqtt refuses CONNECT above 90 % CPU by default; a busy ingest host is normal.
            .busy_check_enable(false)
            .build()
            .await;
        let policy = BrokerPolicy::of(cfg);
        let guard = match policy {
            BrokerPolicy::Users => Guard::Users(Arc::new(AccessPolicy::new(auth))),
            BrokerPolicy::RobotBound => Guard::Robot {
                binding: Arc::new(RobotBinding::new(commands)),
                allow_anonymous: cfg.allow_anonymous,
            },
            BrokerPolicy::Unrestricted => Guard::Open,
        };
        IngestHook {
            router,
            intake,
            ack: cfg.ack,
            health: health.clone(),
            guard,
        }
        .register(&scx)
        .await;

        let mut server = MqttServer::new(scx.clone());
        let mut local_addr = None;
        if !cfg.tls.only {
            let listener = listener_builder(cfg, cfg.listen)
                .bind()
                .and_then(|l| l.tcp())
                .map_err(|source| BrokerError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
                addr: cfg.listen,
                source,
            })?;
            server = server.listener_by_id(listener, addr.port());
            local_addr = Some(addr);
        }
        let mut tls_addr = None;
        if let Some(listen) = cfg.tls.listen {
            let tls = &cfg.tls;
            for (key, path) in [
                ("cert", &tls.cert),
                ("key", &tls.key),
                ("client_ca", &tls.client_ca),
            ] {
                if let Some(path) = path
                    && let Err(e) = std::fs::File::open(path)
                {
                    return Err(BrokerError::Tls(format!(
                        "mqtt.embedded.tls.{key} {}: {e}",
                        path.display()
                    )));
                }
            }
            let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
            let listener = listener_builder(cfg, listen)
                .tls_cert(path(&tls.cert))
                .tls_key(path(&tls.key))
                .tls_cross_certificate(tls.client_ca.is_some())
                .tls_client_ca_certs(path(&tls.client_ca))
                .bind()
                .map_err(|source| BrokerError::Bind {
                    addr: listen,
                    source,
                })?
                .tls()
                .map_err(|e| {
                    BrokerError::Tls(format!(
                        "cannot use mqtt.embedded.tls.cert / key{}: {e:#}; check that they are PEM files and that the key belongs to the certificate",
                        if tls.client_ca.is_some() { " / client_ca" } else { "" }
                    ))
                })?;
            let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?;
            server = server.listener_by_id(listener, addr.port());
            tls_addr = Some(addr);
        }
        let server = server.build();
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        });
        health.set_broker_connected(true);
        if let Some(addr) = local_addr {
            tracing::info!(listen = %addr, auth = cfg.auth, "embedded MQTT broker listening");
        }
        if let Some(addr) = tls_addr {
            tracing::info!(listen = %addr, auth = cfg.auth, client_certificates = cfg.tls.client_ca.is_some(), "embedded MQTT broker listening for TLS");
        }
        // Without auth, say what any client may do: on the robots' network that is the
        // whole of the broker's security.
        let exposed = [local_addr, tls_addr]
            .into_iter()
            .flatten()
            .any(|a| !a.ip().is_loopback());
        match policy {
            BrokerPolicy::Users => {}
            BrokerPolicy::Unrestricted if exposed => {
                tracing::warn!("MQTT access: {}", access::describe_embedded(cfg, commands));
            }
            BrokerPolicy::RobotBound | BrokerPolicy::Unrestricted => {
                tracing::info!("MQTT access: {}", access::describe_embedded(cfg, commands));
            }
        }
        Ok(EmbeddedBroker {
            scx,
            server,
            local_addr,
            tls_addr,
        })
    }
}

#[async_trait]
impl Intake for EmbeddedBroker {
    fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    fn downlink(&self) -> Downlink {
        Downlink::new(BrokerDownlink::new(self.scx.clone()))
    }

    /// Closes the listener and disconnects every client. Called after the pipeline has
    /// drained, so waiting hooks have their answers.
    async fn close(self: Box<Self>, _deadline: tokio::time::Instant) {
        self.server.abort();
        let entries: Vec<_> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|e| e.id())
            .collect();
        for id in entries {
            let entry = self.scx.extends.shared().await.entry(id);
            if let Ok(mut locked) = entry.try_lock().await
                && let Err(e) = locked.kick(true, true, true).await
            {
                tracing::debug!(error = %e, "kick failed");
            }
        }
        tracing::info!("embedded MQTT broker stopped");
    }
}
