//! The embedded MQTT broker: rmqtt (pinned `=0.24.0`), wrapped here and nowhere else.
//!
//! Ingestion runs inside rmqtt's `MessagePublishCheckAcl` hook. rmqtt sends a QoS 1
//! PUBACK only after that hook returns, so with `ack = "after-commit"` the hook waits
//! until the message's batch is committed: the robot's own PUBACK means "in
//! PostgreSQL". If the message cannot be committed (shutdown deadline, intake closed)
//! the hook refuses the publish with `disconnect = true`: the robot gets no PUBACK,
//! reconnects and resends. With `ack = "on-receipt"` the hook returns once the message
//! is in the bounded queue. QoS 0 messages never wait for the commit (no PUBACK exists).
//!
//! rmqtt skips the ACL hook for sessions it marks superuser, so fleetsink never marks a
//! session superuser; it authorises everything itself.
//!
//! With `mqtt.embedded.auth`, the `ClientAuthenticate` hook checks the password against
//! `mqtt_users` and the Last Will topic against the ACL (rmqtt never ACL-checks wills:
//! a robot could otherwise plant one on another robot's command topic); the listener
//! refuses clients without a username (rmqtt's `allow_anonymous` would let them skip the
//! hook). Every PUBLISH is ACL-checked before it is ingested and every SUBSCRIBE filter
//! must be covered by rules granting subscribe and read. Repeated failed CONNECTs from
//! one address are answered slowly.
//!
//! Last Will messages bypass the ACL hook; the `MessagePublish` hook ingests those
//! (without an ack: nobody waits for one).
//!
//! rmqtt has no shutdown API: `shutdown` aborts the server task (closing the listener)
//! and kicks every session; a kick waits for that session's in-flight hook.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::{Session, SessionState};
use rmqtt::types::{
    AuthResult, ConnectInfo, From, FromType, Id, LastWill, Publish, PublishAclResult, QoS,
    SubscribeAclResult,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::{Access, Authenticator};
use crate::config::{AckMode, EmbeddedConfig};
use crate::health::Health;
use crate::mqtt::Qos;
use crate::pipeline::route::Router;
use crate::pipeline::{AckToken, Envelope, Undelivered};
use crate::ratelimit::Every;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {source}; pick another mqtt.embedded.listen or stop what uses the port"
    )]
    Bind {
        addr: SocketAddr,
        source: anyhow::Error,
    },
    #[error("cannot publish: {0}")]
    Publish(anyhow::Error),
    #[error("{0}")]
    Tls(String),
}

/// Why a publish is not acknowledged to the robot (it resends it).
#[derive(Debug, thiserror::Error)]
enum NotAcked {
    #[error("fleetsink is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Undelivered(#[from] Undelivered),
    #[error("message not committed")]
    Dropped,
}

/// The running embedded broker.
pub struct EmbeddedBroker {
    scx: ServerContext,
    server: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

struct IngestHook {
    router: Arc<Router>,
    intake: mpsc::Sender<Envelope>,
    ack: AckMode,
    health: Arc<Health>,
    /// `Some` with `mqtt.embedded.auth`.
    auth: Option<Arc<AuthHook>>,
}

/// Refusals repeat per packet: one log line per site every 10 s.
static PUBLISH_REFUSED: Every = Every::new(std::time::Duration::from_secs(10));
static SUBSCRIBE_REFUSED: Every = Every::new(std::time::Duration::from_secs(10));
static CONNECT_REFUSED: Every = Every::new(std::time::Duration::from_secs(10));

/// Failed CONNECTs per client address within `FAILURE_WINDOW`.
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Failures from one address before its answers are delayed.
const FREE_FAILURES: u32 = 3;
/// The longest delay of an answer to an address that keeps failing.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(5);
/// Addresses tracked at most (the table is cleared when full).
const MAX_TRACKED: usize = 10_000;

/// The embedded broker's authentication and ACL checks.
struct AuthHook {
    auth: Arc<Authenticator>,
    failures: std::sync::Mutex<HashMap<IpAddr, (u32, std::time::Instant)>>,
}

impl AuthHook {
    /// How long to wait before answering `ip` (after repeated failures).
    fn delay_for(&self, ip: IpAddr) -> std::time::Duration {
        let Ok(f) = self.failures.lock() else {
            return std::time::Duration::ZERO;
        };
        match f.get(&ip) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW && *n > FREE_FAILURES => {
                (std::time::Duration::from_millis(500) * (*n - FREE_FAILURES)).min(MAX_DELAY)
            }
            _ => std::time::Duration::ZERO,
        }
    }

    fn failed(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            if f.len() >= MAX_TRACKED {
                f.clear();
            }
            let e = f.entry(ip).or_insert((0, std::time::Instant::now()));
            if e.1.elapsed() >= FAILURE_WINDOW {
                *e = (0, std::time::Instant::now());
            }
            e.0 = e.0.saturating_add(1);
        }
    }

    fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&ip);
        }
    }

    /// CONNECT: a username, its password, and the Last Will topic.
    async fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let ip = info.ipaddress().map(|a| a.ip().to_canonical());
        if let Some(ip) = ip {
            let delay = self.delay_for(ip);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let result = self.decide(info).await;
        if let Some(ip) = ip {
            match result {
                AuthResult::Allow(..) => self.succeeded(ip),
                _ => self.failed(ip),
            }
        }
        result
    }

    async fn decide(&self, info: &ConnectInfo) -> AuthResult {
        let client_id = info.client_id().to_string();
        let Some(username) = info.username().map(|u| u.to_string()) else {
            if let Some(more) = CONNECT_REFUSED.allow() {
                tracing::info!(client_id = %client_id, repeats_not_logged = more, "MQTT CONNECT without a username refused (mqtt.embedded.auth)");
            }
            return AuthResult::NotAuthorized;
        };
        let password = info
            .password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        if !self.auth.check_user(&username, &password).await.allowed() {
            if let Some(more) = CONNECT_REFUSED.allow() {
                tracing::info!(client_id = %client_id, username = %username, repeats_not_logged = more, "MQTT CONNECT refused: unknown user or wrong password");
            }
            return AuthResult::BadUsernameOrPassword;
        }
        if let Some(will) = info.last_will() {
            let topic = will_topic(&will);
            if !self
                .auth
                .check_acl(&username, &client_id, &topic, Access::Write)
                .allowed()
            {
                tracing::warn!(client_id = %client_id, username = %username, topic = %topic, "MQTT CONNECT refused: Last Will on a topic the client may not publish to");
                return AuthResult::NotAuthorized;
            }
        }
        // Never a superuser session: rmqtt would skip the ACL hook, where ingestion runs.
        AuthResult::Allow(false, None)
    }

    /// SUBSCRIBE: the filter must be covered by rules granting subscribe and read.
    fn may_subscribe(&self, username: &str, client_id: &str, filter: &str) -> bool {
        self.auth
            .check_acl(username, client_id, filter, Access::Subscribe)
            .allowed()
            && self
                .auth
                .check_subscription_reads(username, client_id, filter)
    }
}

/// The filter an ACL judges: a shared subscription (`$share/<group>/<filter>`) is
/// checked on its filter, as Mosquitto does.
fn acl_filter(filter: &str) -> String {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, f)| f)
        .to_string()
}

fn will_topic(will: &LastWill<'_>) -> String {
    match will {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    }
}

impl IngestHook {
    /// The publisher's username when auth is on: payload robot ids are checked
    /// against it (without auth a username proves nothing).
    fn publisher<'s>(&self, session: &'s Session) -> Option<&'s str> {
        self.auth.as_ref().and(session.id.username.as_deref())
    }

    /// Queues one message; returns whether the robot may be acknowledged.
    async fn ingest(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
        publish: &Publish,
        wait_for_commit: bool,
    ) -> Result<(), NotAcked> {
        let topic = publish.topic.to_string();
        if self.router.find(&topic).is_none() {
            return Ok(()); // not ours (e.g. downlink commands): route it like any broker
        }
        self.health.message_received();
        let (ack, done) = if wait_for_commit {
            let (tx, rx) = oneshot::channel();
            (AckToken::Hook(tx), Some(rx))
        } else {
            (AckToken::None, None)
        };
        let env = Envelope {
            topic,
            payload: Bytes::copy_from_slice(&publish.payload),
            received_at: Utc::now(),
            client_id: client_id.map(str::to_string),
            username: username.map(str::to_string),
            ack,
        };
        if self.intake.send(env).await.is_err() {
            return Err(NotAcked::ShuttingDown);
        }
        match done {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(result) => Ok(result?),
                // Dropped without a status counts as failed.
                Err(_) => Err(NotAcked::Dropped),
            },
        }
    }
}

#[async_trait]
impl Handler for IngestHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                // An earlier handler may already have refused it.
                if let Some(HookResult::PublishAclResult(r)) = &acc
                    && r.is_rejected()
                {
                    return (false, acc);
                }
                let client_id: &str = &session.id.client_id;
                let publisher = self.publisher(session);
                if let Some(a) = &self.auth {
                    let user = publisher.unwrap_or_default();
                    let topic: &str = &publish.topic;
                    if !a
                        .auth
                        .check_acl(user, client_id, topic, Access::Write)
                        .allowed()
                    {
                        if let Some(more) = PUBLISH_REFUSED.allow() {
                            tracing::warn!(client_id = %client_id, username = %user, topic = %topic, repeats_not_logged = more, "PUBLISH refused by ACL");
                        }
                        let deny = PublishAclResult::rejected(false, Some("not authorized".into()));
                        return (false, Some(HookResult::PublishAclResult(deny)));
                    }
                }
                let wait = self.ack == AckMode::AfterCommit && publish.qos != QoS::AtMostOnce;
                match self.ingest(Some(client_id), publisher, publish, wait).await {
                    Ok(()) => (true, acc),
                    Err(e) => {
                        tracing::warn!(client_id = %session.id.client_id, reason = %e, "publish not acknowledged; the client will resend");
                        let deny = PublishAclResult::rejected(true, Some(e.to_string().into()));
                        (false, Some(HookResult::PublishAclResult(deny)))
                    }
                }
            }
            Parameter::MessagePublish(Some(session), from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                // The will's topic was ACL-checked at CONNECT.
                if let Err(e) = self
                    .ingest(
                        Some(&session.id.client_id),
                        self.publisher(session),
                        publish,
                        false,
                    )
                    .await
                {
                    tracing::warn!(client_id = %session.id.client_id, reason = %e, "last will not ingested");
                }
                (true, acc)
            }
            Parameter::ClientAuthenticate(info) => match &self.auth {
                Some(a) => (
                    false,
                    Some(HookResult::AuthResult(a.authenticate(info).await)),
                ),
                None => (true, acc),
            },
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => match &self.auth {
                Some(a) => {
                    let user = session
                        .id
                        .username
                        .as_ref()
                        .map(|u| u.to_string())
                        .unwrap_or_default();
                    let client_id = session.id.client_id.to_string();
                    let filter = acl_filter(&subscribe.topic_filter);
                    let result = if a.may_subscribe(&user, &client_id, &filter) {
                        SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                    } else {
                        if let Some(more) = SUBSCRIBE_REFUSED.allow() {
                            tracing::warn!(client_id = %client_id, username = %user, filter = %filter, repeats_not_logged = more, "SUBSCRIBE refused by ACL");
                        }
                        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                    };
                    (false, Some(HookResult::SubscribeAclResult(result)))
                }
                None => (true, acc),
            },
            _ => (true, acc),
        }
    }
}

/// A listener with the broker's settings on `addr`.
fn listener_builder(cfg: &EmbeddedConfig, addr: SocketAddr) -> Builder {
    Builder::new()
        .name("fleetsink")
        .laddr(addr)
        .reuseaddr(Some(true))
        .nodelay(true)
        // With auth, a client without a username must reach the auth hook (which
        // refuses it); rmqtt lets anonymous clients skip the hook when allowed.
        .allow_anonymous(cfg.allow_anonymous && !cfg.auth)
        .max_packet_size(cfg.max_packet_size)
        .max_inflight(
            std::num::NonZeroU16::new(cfg.max_inflight.max(1)).unwrap_or(std::num::NonZeroU16::MIN),
        )
        .max_mqueue_len(cfg.max_mqueue_len)
}

impl EmbeddedBroker {
    pub async fn start(
        cfg: &EmbeddedConfig,
        router: Arc<Router>,
        intake: mpsc::Sender<Envelope>,
        health: Arc<Health>,
        auth: Option<Arc<Authenticator>>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let scx = ServerContext::new()
            // rmqtt refuses CONNECT above 90 % CPU by default; a busy ingest host is normal.
            .busy_check_enable(false)
            .build()
            .await;
        let auth = auth.map(|auth| {
            Arc::new(AuthHook {
                auth,
                failures: std::sync::Mutex::new(HashMap::new()),
            })
        });
        let hook = IngestHook {
            router,
            intake,
            ack: cfg.ack,
            health: health.clone(),
            auth: auth.clone(),
        };
        let register = scx.extends.hook_mgr().register();
        // One handler instance per hook type; both share the queue.
        register
            .add(Type::MessagePublishCheckAcl, Box::new(hook.clone_handle()))
            .await;
        if auth.is_some() {
            register
                .add(Type::ClientAuthenticate, Box::new(hook.clone_handle()))
                .await;
            register
                .add(Type::ClientSubscribeCheckAcl, Box::new(hook.clone_handle()))
                .await;
        }
        register.add(Type::MessagePublish, Box::new(hook)).await;
        register.start().await;

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
        Ok(EmbeddedBroker {
            scx,
            server,
            local_addr,
            tls_addr,
        })
    }

    /// The plain listener's address (None with `tls.only`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The TLS listener's address, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// A handle that publishes through this broker, for as long as it runs.
    pub fn downlink(&self) -> ServerContext {
        self.scx.clone()
    }

    /// Closes the listener and disconnects every client. Call after the pipeline has
    /// drained, so waiting hooks have their answers.
    pub async fn shutdown(self) {
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

impl IngestHook {
    fn clone_handle(&self) -> IngestHook {
        IngestHook {
            router: self.router.clone(),
            intake: self.intake.clone(),
            ack: self.ack,
            health: self.health.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// Publishes from fleetsink itself (e.g. commands to `tonypi/commands/{id}`), routed to
/// subscribers like any client's message.
pub async fn publish(
    scx: &ServerContext,
    topic: &str,
    payload: Bytes,
    qos: Qos,
) -> Result<(), BrokerError> {
    let qos = match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    };
    let codec = CodecPublish {
        dup: false,
        retain: false,
        qos,
        topic: topic.into(),
        packet_id: None,
        payload,
        properties: None,
    };
    let publish = Publish::from(codec).create_time(Utc::now().timestamp_millis());
    let id = Id::new(scx.node.id(), 0, None, None, "fleetsink".into(), None);
    SessionState::forwards(scx, From::from_system(id), publish, false, None)
        .await
        .map_err(BrokerError::Publish)
}

#[cfg(test)]
mod tests {
    use super::acl_filter;

    #[test]
    fn shared_subscriptions_are_judged_on_their_filter() {
        assert_eq!(acl_filter("$share/workers/tonypi/#"), "tonypi/#");
        assert_eq!(acl_filter("tonypi/commands/r7"), "tonypi/commands/r7");
        assert_eq!(acl_filter("$SYS/broker/uptime"), "$SYS/broker/uptime");
        assert_eq!(acl_filter("$share/nogroup"), "$share/nogroup");
    }
}
