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
use crate::auth::access::{ConnectRequest, ConnectVerdict};
use crate::config::AckMode;
use crate::health::Health;
use crate::pipeline::route::Router;
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

/// One handler instance per hook type; all share the intake queue.
#[derive(Clone)]
pub(super) struct IngestHook {
    pub router: Arc<Router>,
    pub intake: mpsc::Sender<Envelope>,
    pub ack: AckMode,
    pub health: Arc<Health>,
    /// `Some` with `mqtt.embedded.auth`.
    pub access: Option<Arc<AccessPolicy>>,
}

impl IngestHook {
    /// Registers the hook for every rmqtt hook type it answers.
    pub async fn register(self, scx: &ServerContext) {
        let register = scx.extends.hook_mgr().register();
        register
            .add(Type::MessagePublishCheckAcl, Box::new(self.clone()))
            .await;
        if self.access.is_some() {
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
        self.access.as_ref().and(session.id.username.as_deref())
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
        let Some(route) = self.router.find(&topic) else {
            return Ok(()); // not ours (e.g. downlink commands): route it like any broker
        };
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

    /// PUBLISH: ACL-checked (with auth), then ingested; answered once acknowledged.
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
        let publisher = self.publisher(session);
        if let Some(access) = &self.access
            && !access.may_publish(publisher.unwrap_or_default(), client_id, &publish.topic)
        {
            let deny = PublishAclResult::rejected(false, Some("not authorized".into()));
            return (false, Some(HookResult::PublishAclResult(deny)));
        }
        let wait = self.ack == AckMode::AfterCommit && publish.qos != QoS::AtMostOnce;
        match self.ingest(Some(client_id), publisher, publish, wait).await {
            Ok(()) => (true, acc),
            Err(e) => {
                tracing::warn!(client_id = %client_id, reason = %e, "publish not acknowledged; the client will resend");
                let deny = PublishAclResult::rejected(true, Some(e.to_string().into()));
                (false, Some(HookResult::PublishAclResult(deny)))
            }
        }
    }
}

/// CONNECT, answered by the access policy.
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
            Parameter::ClientAuthenticate(info) => match &self.access {
                Some(access) => (
                    false,
                    Some(HookResult::AuthResult(authenticate(access, info).await)),
                ),
                None => (true, acc),
            },
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => match &self.access {
                Some(access) => {
                    let user = session.id.username.as_deref().unwrap_or_default();
                    let result = if access.may_subscribe(
                        user,
                        &session.id.client_id,
                        &subscribe.topic_filter,
                    ) {
                        SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                    } else {
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
