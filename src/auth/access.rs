//! The embedded broker's access policy, in plain terms: who may connect, publish and
//! subscribe, and for which robot an authenticated publisher may write. No broker
//! types here: `broker/` turns rmqtt's packets into these calls and the verdicts back.
//!
//! - CONNECT needs a username and its password (`mqtt_users`), and a Last Will only on
//!   a topic the client may publish to: the broker never ACL-checks wills, so a robot
//!   could otherwise plant one on another robot's command topic. Repeated failures from
//!   one address are answered slowly (`throttle.rs`).
//! - Every PUBLISH is ACL-checked (write) before it is ingested.
//! - A SUBSCRIBE filter must be covered by rules granting subscribe *and* read (the
//!   embedded broker cannot check each delivery); a shared subscription is judged on
//!   its filter, as Mosquitto does.
//! - A robot id read from a payload must be the publisher's username unless that user
//!   is a gateway (`robots.identity.gateways`): no topic ACL can see inside a payload.
//!
//! Refusals can repeat per packet, so each kind is logged at most once per 10 s.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::throttle::ConnectThrottle;
use super::{Access, Authenticator};
use crate::ratelimit::Every;

static PUBLISH_REFUSED: Every = Every::new(Duration::from_secs(10));
static SUBSCRIBE_REFUSED: Every = Every::new(Duration::from_secs(10));
static CONNECT_REFUSED: Every = Every::new(Duration::from_secs(10));

/// What a CONNECT presents.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The Last Will's topic, when the client sets one.
    pub will_topic: Option<&'a str>,
    /// The client's address, for throttling repeated failures.
    pub addr: Option<IpAddr>,
}

/// The answer to a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectVerdict {
    Allow,
    /// Unknown user or wrong password.
    BadUsernameOrPassword,
    /// No username, or a Last Will on a topic the client may not publish to.
    NotAuthorized,
}

/// The checks of `mqtt.embedded.auth`, over the cached users and rules.
pub struct AccessPolicy {
    auth: Arc<Authenticator>,
    throttle: ConnectThrottle,
}

impl AccessPolicy {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self {
            auth,
            throttle: ConnectThrottle::default(),
        }
    }

    /// CONNECT: a username, its password, and the Last Will topic; answered late to an
    /// address that keeps failing.
    pub async fn connect(&self, req: &ConnectRequest<'_>) -> ConnectVerdict {
        if let Some(ip) = req.addr {
            let delay = self.throttle.delay_for(ip);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let verdict = self.decide_connect(req).await;
        if let Some(ip) = req.addr {
            match verdict {
                ConnectVerdict::Allow => self.throttle.succeeded(ip),
                _ => self.throttle.failed(ip),
            }
        }
        verdict
    }

    async fn decide_connect(&self, req: &ConnectRequest<'_>) -> ConnectVerdict {
        let client_id = req.client_id;
        let Some(username) = req.username else {
            if let Some(more) = CONNECT_REFUSED.allow() {
                tracing::info!(client_id = %client_id, repeats_not_logged = more, "MQTT CONNECT without a username refused (mqtt.embedded.auth)");
            }
            return ConnectVerdict::NotAuthorized;
        };
        let password = req
            .password
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        if !self.auth.check_user(username, &password).await.allowed() {
            if let Some(more) = CONNECT_REFUSED.allow() {
                tracing::info!(client_id = %client_id, username = %username, repeats_not_logged = more, "MQTT CONNECT refused: unknown user or wrong password");
            }
            return ConnectVerdict::BadUsernameOrPassword;
        }
        if let Some(topic) = req.will_topic
            && !self
                .auth
                .check_acl(username, client_id, topic, Access::Write)
                .allowed()
        {
            tracing::warn!(client_id = %client_id, username = %username, topic = %topic, "MQTT CONNECT refused: Last Will on a topic the client may not publish to");
            return ConnectVerdict::NotAuthorized;
        }
        ConnectVerdict::Allow
    }

    /// PUBLISH: a rule must grant write on the topic.
    pub fn may_publish(&self, username: &str, client_id: &str, topic: &str) -> bool {
        let allowed = self
            .auth
            .check_acl(username, client_id, topic, Access::Write)
            .allowed();
        if !allowed && let Some(more) = PUBLISH_REFUSED.allow() {
            tracing::warn!(client_id = %client_id, username = %username, topic = %topic, repeats_not_logged = more, "PUBLISH refused by ACL");
        }
        allowed
    }

    /// SUBSCRIBE: the filter must be covered by rules granting subscribe and read.
    pub fn may_subscribe(&self, username: &str, client_id: &str, filter: &str) -> bool {
        let filter = acl_filter(filter);
        let allowed = self
            .auth
            .check_acl(username, client_id, filter, Access::Subscribe)
            .allowed()
            && self
                .auth
                .check_subscription_reads(username, client_id, filter);
        if !allowed && let Some(more) = SUBSCRIBE_REFUSED.allow() {
            tracing::warn!(client_id = %client_id, username = %username, filter = %filter, repeats_not_logged = more, "SUBSCRIBE refused by ACL");
        }
        allowed
    }
}

/// Whether `publisher` may write data for `robot_id` (taken from a payload): only for
/// itself, unless it is one of the `gateways`.
pub fn may_write_for(publisher: &str, robot_id: &str, gateways: &[String]) -> bool {
    robot_id == publisher || gateways.iter().any(|g| g == publisher)
}

/// The filter an ACL judges: a shared subscription (`$share/<group>/<filter>`) is
/// checked on its filter, as Mosquitto does.
fn acl_filter(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscriptions_are_judged_on_their_filter() {
        assert_eq!(acl_filter("$share/workers/tonypi/#"), "tonypi/#");
        assert_eq!(acl_filter("tonypi/commands/r7"), "tonypi/commands/r7");
        assert_eq!(acl_filter("$SYS/broker/uptime"), "$SYS/broker/uptime");
        assert_eq!(acl_filter("$share/nogroup"), "$share/nogroup");
    }

    #[test]
    fn a_publisher_writes_only_for_itself_unless_it_is_a_gateway() {
        let gateways = vec!["gw".to_string()];
        assert!(may_write_for("robot7", "robot7", &gateways));
        assert!(!may_write_for("robot7", "robot8", &gateways));
        assert!(may_write_for("gw", "robot8", &gateways));
    }
}
