//! The ingest hook: rmqtt's hooks turned into envelopes on the intake queue, and the
//! access policy's verdicts (`auth::access`) turned into rmqtt's answers.
//!
//! Ingestion runs inside `MessagePublishCheckAcl`. rmqtt sends a QoS 1 PUBACK only
//! after that hook returns, so with `ack = "after-commit"` the hook waits until the
//! message's batch is committed: the robot's own PUBACK means "in PostgreSQL". If the
//! message cannot be committed (shutdown deadline, intake closed) the hook refuses the
//! publish with `disconnect = true`: the robot gets no PUBACK, reconnects and resends.
//! With `ack = "on-receipt"` the hook returns once the message is in the bounded queue.
//! QoS 0 messages never wait for the commit (no PUBACK exists). Topics no route matches
//! (downlink commands, for one) are left to ordinary routing, not ingested.
//!
//! Last Will messages bypass the ACL hook; `MessagePublish` ingests those (without an
//! ack: nobody waits for one). Their topic was checked at CONNECT.
//!
//! rmqtt skips the ACL hook for sessions it marks superuser, so no session is ever
//! marked superuser: fleetsink authorises everything itself.
//!
//! A refused PUBLISH is answered as rmqtt 0.24 allows: MQTT 5 clients get a PUBACK with
//! reason code 0x87 (not authorized); MQTT 3.1.1 has no such code, so they get a plain
//! PUBACK and the message is dropped (3.1.1 §3.3.5 allows exactly that or a disconnect).
//! fleetsink never disconnects for a refused publish: a robot reconnecting in a loop
//! would miss the emergency stops sent meanwhile. A refused SUBSCRIBE gets SUBACK 0x80
//! (3.1.1) or 0x87 (5). Either way the refusal is counted and logged (`auth::access`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, FromType, LastWill, Publish, PublishAclResult, QoS, SubscribeAclResult,
};
use tokio::sync::{mpsc, oneshot};

use crate::auth::AccessPolicy;
use crate::auth::access::{self, Act, ConnectRequest, ConnectVerdict, RobotBinding, Uplink};
use crate::config::AckMode;
use crate::health::Health;
use crate::pipeline::route::{Route, Router};
use crate::pipeline::{AckToken, Envelope, Undelivered};

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

/// The access policy the hook applies (`auth::access`, `BrokerPolicy`).
#[derive(Clone)]
pub(super) enum Guard {
    /// `mqtt.embedded.auth`: users and rules.
    Users(Arc<AccessPolicy>),
    /// No auth: each client is the robot its client id names. `allow_anonymous` says
    /// whether a client without a username may connect at all.
    Robot {
        binding: Arc<RobotBinding>,
        allow_anonymous: bool,
    },
    /// `anonymous = "unrestricted-insecure"`: no checks (the hooks below are not even
    /// registered for CONNECT and SUBSCRIBE).
    Open,
}

/// One handler instance per hook type; all share the intake queue.
#[derive(Clone)]
pub(super) struct IngestHook {
    pub router: Arc<Router>,
    pub intake: mpsc::Sender<Envelope>,
    pub ack: AckMode,
    pub health: Arc<Health>,
    pub guard: Guard,
}

/// The robot policy's view of a route.
fn uplink(route: &Route) -> Uplink<'_> {
    Uplink {
        robot_id: route.robot_id,
        filter: &route.filter,
    }
}

impl IngestHook {
    /// Registers the hook for every rmqtt hook type it answers.
    pub async fn register(self, scx: &ServerContext) {
        let register = scx.extends.hook_mgr().register();
        register
            .add(Type::MessagePublishCheckAcl, Box::new(self.clone()))
            .await;
        if !matches!(self.guard, Guard::Open) {
            register
                .add(Type::ClientAuthenticate, Box::new(self.clone()))
                .await;
            register
                .add(Type::ClientSubscribeCheckAcl, Box::new(self.clone()))
                .await;
        }
        register.add(Type::MessagePublish, Box::new(self)).await;
        register.start().await;
    }

    /// The publisher's username when auth is on: payload robot ids are checked
    /// against it (without auth a username proves nothing).
    fn publisher<'s>(&self, session: &'s Session) -> Option<&'s str> {
        match self.guard {
            Guard::Users(_) => session.id.username.as_deref(),
            _ => None,
        }
    }

    /// Queues one message of `route`; returns whether the robot may be acknowledged.
    async fn ingest(
        &self,
        route: &Arc<Route>,
        client_id: Option<&str>,
        username: Option<&str>,
        publish: &Publish,
        wait_for_commit: bool,
    ) -> Result<(), NotAcked> {
        let topic = publish.topic.to_string();
        self.health.message_received();
        let (ack, done) = if wait_for_commit {
            let (tx, rx) = oneshot::channel();
            (AckToken::Hook(tx), Some(rx))
        } else {
            (AckToken::None, None)
        };
        let env = Envelope {
            route: Some(route.clone()),
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

    /// PUBLISH: checked by the access policy, then ingested; answered once acknowledged.
    async fn on_publish(
        &self,
        session: &Session,
        publish: &Publish,
        acc: Option<HookResult>,
    ) -> ReturnType {
        // An earlier handler may already have refused it.
        if let Some(HookResult::PublishAclResult(r)) = &acc
            && r.is_rejected()
        {
            return (false, acc);
        }
        let client_id: &str = &session.id.client_id;
        let addr = session.id.remote_addr;
        let topic: &str = &publish.topic;
        let publisher = self.publisher(session);
        let route = self.router.find(topic);
        let allowed = match &self.guard {
            Guard::Users(access) => {
                access.may_publish(publisher.unwrap_or_default(), client_id, addr, topic)
            }
            Guard::Robot { binding, .. } => binding
                .may_publish(client_id, topic, route.map(|r| uplink(r)), &publish.payload)
                .map_err(|why| access::report(Act::Publish, why, client_id, addr, topic))
                .is_ok(),
            Guard::Open => true,
        };
        if !allowed {
            let deny = PublishAclResult::rejected(false, Some("not authorized".into()));
            return (false, Some(HookResult::PublishAclResult(deny)));
        }
        let Some(route) = route else {
            return (true, acc); // not ours (e.g. downlink commands): route it like any broker
        };
        let wait = self.ack == AckMode::AfterCommit && publish.qos != QoS::AtMostOnce;
        match self
            .ingest(route, Some(client_id), publisher, publish, wait)
            .await
        {
            Ok(()) => (true, acc),
            Err(e) => {
                tracing::warn!(client_id = %client_id, reason = %e, "publish not acknowledged; the client will resend");
                let deny = PublishAclResult::rejected(true, Some(e.to_string().into()));
                (false, Some(HookResult::PublishAclResult(deny)))
            }
        }
    }
}

/// CONNECT with auth, answered by the users and rules.
async fn authenticate(access: &AccessPolicy, info: &ConnectInfo) -> AuthResult {
    let username = info.username().map(|u| u.to_string());
    let will_topic = info.last_will().map(|w| will_topic(&w));
    let request = ConnectRequest {
        client_id: info.client_id(),
        username: username.as_deref(),
        password: info.password().map(|p| p.as_ref()),
        will_topic: will_topic.as_deref(),
        addr: info.ipaddress().map(|a| a.ip().to_canonical()),
    };
    match access.connect(&request).await {
        // Never a superuser session: rmqtt would skip the ACL hook, where ingestion runs.
        ConnectVerdict::Allow => AuthResult::Allow(false, None),
        ConnectVerdict::BadUsernameOrPassword => AuthResult::BadUsernameOrPassword,
        ConnectVerdict::NotAuthorized => AuthResult::NotAuthorized,
    }
}

/// CONNECT without auth, robot policy: the Last Will is checked as the client's publish
/// (rmqtt never ACL-checks wills; one on `tonypi/emergency_stop/broadcast` would
/// otherwise stop the fleet when its client drops).
fn admit_robot(
    binding: &RobotBinding,
    allow_anonymous: bool,
    router: &Router,
    info: &ConnectInfo,
) -> AuthResult {
    if info.username().is_none() && !allow_anonymous {
        return AuthResult::NotAuthorized;
    }
    if let Some(will) = info.last_will() {
        let (topic, payload): (&str, &[u8]) = match &will {
            LastWill::V3(w) => (&w.topic, &w.message),
            LastWill::V5(w) => (&w.topic, &w.message),
        };
        let client_id = info.client_id();
        if let Err(why) = binding.may_publish(
            client_id,
            topic,
            router.find(topic).map(|r| uplink(r)),
            payload,
        ) {
            access::report(Act::Will, why, client_id, info.ipaddress(), topic);
            return AuthResult::NotAuthorized;
        }
    }
    AuthResult::Allow(false, None)
}

fn will_topic(will: &LastWill<'_>) -> String {
    match will {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    }
}

#[async_trait]
impl Handler for IngestHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                self.on_publish(session, publish, acc).await
            }
            Parameter::MessagePublish(Some(session), from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                let Some(route) = self.router.find(&publish.topic) else {
                    return (true, acc);
                };
                if let Err(e) = self
                    .ingest(
                        route,
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
            Parameter::ClientAuthenticate(info) => {
                let result = match &self.guard {
                    Guard::Users(access) => authenticate(access, info).await,
                    Guard::Robot {
                        binding,
                        allow_anonymous,
                    } => admit_robot(binding, *allow_anonymous, &self.router, info),
                    Guard::Open => return (true, acc),
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let client_id: &str = &session.id.client_id;
                let addr = session.id.remote_addr;
                let filter: &str = &subscribe.topic_filter;
                let allowed = match &self.guard {
                    Guard::Users(access) => {
                        let user = session.id.username.as_deref().unwrap_or_default();
                        access.may_subscribe(user, client_id, addr, filter)
                    }
                    Guard::Robot { binding, .. } => binding
                        .may_subscribe(client_id, filter, |t| self.router.find(t).is_some())
                        .map_err(|why| access::report(Act::Subscribe, why, client_id, addr, filter))
                        .is_ok(),
                    Guard::Open => return (true, acc),
                };
                let result = if allowed {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}
