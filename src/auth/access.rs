//! The embedded broker's access policy, in plain terms: who may connect, publish and
//! subscribe, and for which robot a publisher may write. No broker types here:
//! `broker/` turns rmqtt's packets into these calls and the verdicts back.
//!
//! Which policy applies is [`BrokerPolicy::of`] the configuration:
//!
//! **`mqtt.embedded.auth`** ([`AccessPolicy`]): go-auth's users and rules.
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
//! **No auth, `mqtt.embedded.anonymous = "robot"`** ([`RobotBinding`], the default):
//! nobody is authenticated, so each client is taken for the robot its client id names
//! (TonyPi robots connect with client id = robot id). It may publish only uplink topics
//! (those a route ingests) carrying its own id, in the topic or in the payload's
//! `robot_id` as the route says; subscribe only to its own downlink topics
//! (`commands.topics` with its id) and the broadcast topics, exactly; and never publish
//! a downlink topic, its own included. The same check applies to its Last Will. A
//! client id that is not a valid robot id (wildcards, `/`) may do nothing. fleetsink's
//! own downlink publishes do not pass through here.
//!
//! **No auth, `"unrestricted-insecure"`**: no checks at all.
//!
//! Refusals can repeat per packet, so each kind is logged at most once per 10 s; each
//! is counted in `fleetsink_mqtt_refusals_total{act, reason}`.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

use super::throttle::ConnectThrottle;
use super::{Access, Authenticator};
use crate::config::{
    AnonymousPolicy, CommandTopics, Config, EmbeddedConfig, MqttMode, RobotIdSource,
};
use crate::model::valid_robot_id;
use crate::mqtt::TopicFilter;
use crate::ratelimit::Every;
use crate::telemetry;

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
            telemetry::mqtt_refused(Act::Will.label(), Refusal::Acl.label());
            tracing::warn!(client_id = %client_id, username = %username, topic = %topic, "MQTT CONNECT refused: Last Will on a topic the client may not publish to");
            return ConnectVerdict::NotAuthorized;
        }
        ConnectVerdict::Allow
    }

    /// PUBLISH: a rule must grant write on the topic.
    pub fn may_publish(
        &self,
        username: &str,
        client_id: &str,
        addr: Option<SocketAddr>,
        topic: &str,
    ) -> bool {
        let allowed = self
            .auth
            .check_acl(username, client_id, topic, Access::Write)
            .allowed();
        if !allowed {
            telemetry::mqtt_refused(Act::Publish.label(), Refusal::Acl.label());
            if let Some(more) = PUBLISH_REFUSED.allow() {
                tracing::warn!(client_id = %client_id, username = %username, addr = %show(addr), topic = %topic, repeats_not_logged = more, "PUBLISH refused by ACL");
            }
        }
        allowed
    }

    /// SUBSCRIBE: the filter must be covered by rules granting subscribe and read.
    pub fn may_subscribe(
        &self,
        username: &str,
        client_id: &str,
        addr: Option<SocketAddr>,
        filter: &str,
    ) -> bool {
        let filter = acl_filter(filter);
        let allowed = self
            .auth
            .check_acl(username, client_id, filter, Access::Subscribe)
            .allowed()
            && self
                .auth
                .check_subscription_reads(username, client_id, filter);
        if !allowed {
            telemetry::mqtt_refused(Act::Subscribe.label(), Refusal::Acl.label());
            if let Some(more) = SUBSCRIBE_REFUSED.allow() {
                tracing::warn!(client_id = %client_id, username = %username, addr = %show(addr), filter = %filter, repeats_not_logged = more, "SUBSCRIBE refused by ACL");
            }
        }
        allowed
    }
}

/// Which access policy the embedded broker applies (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerPolicy {
    /// `mqtt.embedded.auth`: go-auth's users and rules.
    Users,
    /// No auth: each client is the robot its client id names.
    RobotBound,
    /// No auth, `anonymous = "unrestricted-insecure"`: no checks.
    Unrestricted,
}

impl BrokerPolicy {
    pub fn of(cfg: &EmbeddedConfig) -> Self {
        match (cfg.auth, cfg.anonymous) {
            (true, _) => BrokerPolicy::Users,
            (false, AnonymousPolicy::Robot) => BrokerPolicy::RobotBound,
            (false, AnonymousPolicy::UnrestrictedInsecure) => BrokerPolicy::Unrestricted,
        }
    }
}

/// The effective MQTT access policy in one sentence, for `check-config`: what a client
/// that reaches the broker may do.
pub fn describe(cfg: &Config) -> String {
    match cfg.mqtt.mode {
        MqttMode::External => "external broker: the broker decides who may publish and subscribe (README, \"MQTT security\")".into(),
        MqttMode::Embedded => describe_embedded(&cfg.mqtt.embedded, &cfg.commands.topics()),
    }
}

/// The embedded broker's policy in one sentence (also its start-up line).
pub fn describe_embedded(e: &EmbeddedConfig, commands: &CommandTopics) -> String {
    let listen = match (e.tls.only, e.tls.listen) {
        (true, Some(tls)) => format!("{tls} (TLS)"),
        (false, Some(tls)) => format!("{} and {tls} (TLS)", e.listen),
        (_, None) => e.listen.to_string(),
    };
    match BrokerPolicy::of(e) {
        BrokerPolicy::Users => format!(
            "embedded broker on {listen}, mqtt.embedded.auth = true: every client needs a username and password from mqtt_users; each PUBLISH, SUBSCRIBE and Last Will is checked against mqtt_acls"
        ),
        BrokerPolicy::RobotBound => {
            let b = RobotBinding::new(commands);
            let own: Vec<String> = b
                .per_robot
                .iter()
                .map(|(before, after)| format!("{before}{{robot_id}}{after}"))
                .chain(b.broadcast.iter().cloned())
                .collect();
            format!(
                "embedded broker on {listen} without auth, mqtt.embedded.anonymous = \"robot\": each client is the robot its client id names ({{robot_id}}); it may publish only the routes' uplink topics with its own id (in the topic or the payload's robot_id), subscribe only to {}, and never publish those; set mqtt.embedded.auth = true to require passwords",
                own.join(", ")
            )
        }
        BrokerPolicy::Unrestricted => format!(
            "embedded broker on {listen} without auth, mqtt.embedded.anonymous = \"unrestricted-insecure\": ANY client that reaches the port may publish and subscribe to anything, including commands and emergency stops for every robot"
        ),
    }
}

/// What a refused client tried (the `act` label of `fleetsink_mqtt_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Publish,
    Subscribe,
    /// A Last Will, refused at CONNECT.
    Will,
}

impl Act {
    pub fn label(self) -> &'static str {
        match self {
            Act::Publish => "publish",
            Act::Subscribe => "subscribe",
            Act::Will => "will",
        }
    }
}

/// Why a PUBLISH, SUBSCRIBE or Last Will was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client id is not a valid robot id (`[A-Za-z0-9_.:-]{1,128}`): it names no
    /// robot, so the client may do nothing.
    ClientIdNotRobotId,
    /// No route ingests the topic: it is not an uplink topic.
    NotUplink,
    /// A command, emergency-stop, config, items or broadcast topic.
    Downlink,
    /// The robot id in the topic or the payload is another robot's.
    OtherRobot,
    /// The route reads the robot id from the payload and the payload has none (or is not
    /// a JSON object, or names it twice).
    NoRobotId,
    /// A filter other than the client's own downlink topics and the broadcasts
    /// (wildcards, other robots' topics, uplink topics).
    NotOwnDownlink,
    /// With `mqtt.embedded.auth`: no rule grants it.
    Acl,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::ClientIdNotRobotId,
        Refusal::NotUplink,
        Refusal::Downlink,
        Refusal::OtherRobot,
        Refusal::NoRobotId,
        Refusal::NotOwnDownlink,
        Refusal::Acl,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::ClientIdNotRobotId => "client_id_not_robot_id",
            Refusal::NotUplink => "not_uplink",
            Refusal::Downlink => "downlink",
            Refusal::OtherRobot => "other_robot",
            Refusal::NoRobotId => "no_robot_id",
            Refusal::NotOwnDownlink => "not_own_downlink",
            Refusal::Acl => "acl",
        }
    }

    /// What the log line says.
    fn explain(self) -> &'static str {
        match self {
            Refusal::ClientIdNotRobotId => {
                "the client id is not a robot id; without auth a client must connect with its robot id as client id"
            }
            Refusal::NotUplink => "no route ingests this topic",
            Refusal::Downlink => "only fleetsink publishes commands, emergency stops and config",
            Refusal::OtherRobot => "the robot id in the topic or payload is not the client id",
            Refusal::NoRobotId => "the payload has no robot_id to check",
            Refusal::NotOwnDownlink => {
                "a robot may subscribe only to its own command topics and the broadcasts"
            }
            Refusal::Acl => "no rule grants it",
        }
    }
}

/// Counts a refusal and logs it (at most once per 10 s per act) with the client's id,
/// address and topic.
pub fn report(act: Act, why: Refusal, client_id: &str, addr: Option<SocketAddr>, topic: &str) {
    telemetry::mqtt_refused(act.label(), why.label());
    let every = match act {
        Act::Publish => &PUBLISH_REFUSED,
        Act::Subscribe => &SUBSCRIBE_REFUSED,
        Act::Will => &CONNECT_REFUSED,
    };
    if let Some(more) = every.allow() {
        tracing::warn!(act = act.label(), reason = why.label(), client_id = %client_id, addr = %show(addr), topic = %topic, repeats_not_logged = more, "MQTT {} refused: {}", act.label(), why.explain());
    }
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "-".into(), |a| a.to_string())
}

/// The route an uplink topic matched: where its robot id is, and its filter.
#[derive(Debug, Clone, Copy)]
pub struct Uplink<'a> {
    pub robot_id: RobotIdSource,
    pub filter: &'a TopicFilter,
}

/// `mqtt.embedded.anonymous = "robot"`: each client acts as the robot its client id
/// names (module docs). Built once from `commands.topics`; checking costs string
/// comparisons, and reading a payload's `robot_id` allocates only for an escaped or
/// numeric id.
#[derive(Debug, Clone)]
pub struct RobotBinding {
    /// The per-robot downlink templates, split around `{robot_id}`.
    per_robot: Vec<(String, String)>,
    /// The broadcast topics.
    broadcast: Vec<String>,
}

impl RobotBinding {
    pub fn new(topics: &CommandTopics) -> Self {
        let mut per_robot: Vec<(String, String)> = Vec::new();
        let mut broadcast: Vec<String> = Vec::new();
        for (_key, template, _) in topics.templates() {
            match template.split_once("{robot_id}") {
                Some((before, after)) => {
                    let split = (before.to_string(), after.to_string());
                    if !per_robot.contains(&split) {
                        per_robot.push(split);
                    }
                }
                None => {
                    if !broadcast.iter().any(|b| b == template) {
                        broadcast.push(template.to_string());
                    }
                }
            }
        }
        Self {
            per_robot,
            broadcast,
        }
    }

    /// The robot a per-robot downlink topic is for, if `topic` is one.
    fn downlink_robot<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.per_robot.iter().find_map(|(before, after)| {
            topic
                .strip_prefix(before.as_str())
                .and_then(|rest| rest.strip_suffix(after.as_str()))
                .filter(|id| !id.is_empty() && !id.contains('/'))
        })
    }

    /// PUBLISH (and Last Will) by `client_id` on `topic`, which matched `uplink` (the
    /// first route that matches it, if any).
    pub fn may_publish(
        &self,
        client_id: &str,
        topic: &str,
        uplink: Option<Uplink<'_>>,
        payload: &[u8],
    ) -> Result<(), Refusal> {
        if !valid_robot_id(client_id) {
            return Err(Refusal::ClientIdNotRobotId);
        }
        // A route on a fixed topic (`tonypi/commands/response`) also fits a per-robot
        // template (`tonypi/commands/{robot_id}` for a robot named "response"); such a
        // topic is the robots' reply channel, ingested and never published by fleetsink.
        let fixed = uplink.is_some_and(|u| !u.filter.levels().iter().any(|l| l == "+" || l == "#"));
        if self.broadcast.iter().any(|b| b == topic)
            || (!fixed && self.downlink_robot(topic).is_some())
        {
            return Err(Refusal::Downlink);
        }
        let Some(uplink) = uplink else {
            return Err(Refusal::NotUplink);
        };
        let own = match uplink.robot_id {
            RobotIdSource::TopicLevel(n) => topic.split('/').nth(n) == Some(client_id),
            RobotIdSource::Payload => match payload_robot_id(payload) {
                Some(id) => id == client_id,
                None => return Err(Refusal::NoRobotId),
            },
        };
        if own {
            Ok(())
        } else {
            Err(Refusal::OtherRobot)
        }
    }

    /// SUBSCRIBE by `client_id` to `filter`; `is_uplink` says whether a route ingests a
    /// topic (a robot named like a reply channel, "response", must not read every
    /// robot's replies through its "own" command topic).
    pub fn may_subscribe(
        &self,
        client_id: &str,
        filter: &str,
        is_uplink: impl FnOnce(&str) -> bool,
    ) -> Result<(), Refusal> {
        if !valid_robot_id(client_id) {
            return Err(Refusal::ClientIdNotRobotId);
        }
        let filter = acl_filter(filter);
        let own = self.broadcast.iter().any(|b| b == filter)
            || self.downlink_robot(filter) == Some(client_id);
        if own && !is_uplink(filter) {
            Ok(())
        } else {
            Err(Refusal::NotOwnDownlink)
        }
    }
}

/// The payload's `robot_id` as the decoder reads it (a string, or a number as text),
/// without building the payload's tree: `None` when the payload is not a JSON object,
/// has no string or number `robot_id`, or names it twice.
fn payload_robot_id(payload: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default, deserialize_with = "id_text")]
        robot_id: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Fields<'_>>(payload)
        .ok()
        .and_then(|f| f.robot_id)
}

fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct IdText;
    impl<'de> Visitor<'de> for IdText {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a robot id (string or number)")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(serde_json::Number::from_f64(v).map(|n| Cow::Owned(n.to_string())))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(IdText)
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
    use crate::config::{RouteConfig, routes_default};

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
    fn binding() -> RobotBinding {
        RobotBinding::new(&CommandTopics::tonypi())
    }

    /// The default routes, compiled as the pipeline compiles them.
    fn routes(extra: &[RouteConfig]) -> Vec<(TopicFilter, RobotIdSource)> {
        extra
            .iter()
            .chain(routes_default().iter())
            .map(|r| r.check().unwrap())
            .collect()
    }

    /// `client` publishes `payload` on `topic`, judged with the first route that matches.
    fn publish(
        b: &RobotBinding,
        routes: &[(TopicFilter, RobotIdSource)],
        client: &str,
        topic: &str,
        payload: &str,
    ) -> Result<(), Refusal> {
        let uplink = routes
            .iter()
            .find(|(f, _)| f.matches(topic))
            .map(|(filter, robot_id)| Uplink {
                robot_id: *robot_id,
                filter,
            });
        b.may_publish(client, topic, uplink, payload.as_bytes())
    }

    fn subscribe(b: &RobotBinding, client: &str, filter: &str) -> Result<(), Refusal> {
        let routes = routes(&[]);
        b.may_subscribe(client, filter, |t| routes.iter().any(|(f, _)| f.matches(t)))
    }

    #[test]
    fn a_robot_publishes_every_uplink_of_its_own() {
        let (b, routes) = (binding(), routes(&[]));
        for kind in [
            "sensors", "status", "servos", "job", "logs", "vision", "scan",
        ] {
            let topic = format!("tonypi/{kind}/tonypi_1");
            assert_eq!(
                publish(&b, &routes, "tonypi_1", &topic, "{}"),
                Ok(()),
                "{topic}"
            );
        }
        for topic in [
            "tonypi/battery",
            "tonypi/location",
            "tonypi/commands/response",
            "tonypi/emergency_stop/response",
        ] {
            let body = r#"{"percentage": 80, "robot_id": "tonypi_1", "nested": {"robot_id": "x"}}"#;
            assert_eq!(
                publish(&b, &routes, "tonypi_1", topic, body),
                Ok(()),
                "{topic}"
            );
        }
        // Ids as the decoder reads them: escaped strings, numbers as text.
        let escaped = r#"{"robot_id": "tonypi_\u0031"}"#;
        assert_eq!(
            publish(&b, &routes, "tonypi_1", "tonypi/battery", escaped),
            Ok(())
        );
        let numeric = r#"{"robot_id": 42}"#;
        assert_eq!(
            publish(&b, &routes, "42", "tonypi/battery", numeric),
            Ok(())
        );
    }

    #[test]
    fn a_robot_never_publishes_a_downlink_topic() {
        let (b, routes) = (binding(), routes(&[]));
        for topic in [
            "tonypi/emergency_stop/broadcast",
            "tonypi/emergency_stop/tonypi_1",
            "tonypi/emergency_stop/tonypi_2",
            "tonypi/commands/tonypi_1",
            "tonypi/commands/broadcast",
            "tonypi/config/tonypi_1",
            "tonypi/items/tonypi_2",
        ] {
            let body = r#"{"robot_id": "tonypi_1", "command": "stop"}"#;
            assert_eq!(
                publish(&b, &routes, "tonypi_1", topic, body),
                Err(Refusal::Downlink),
                "{topic}"
            );
        }
        // Even where a configured route would ingest it.
        let catch_all = RouteConfig {
            filter: "tonypi/+/+".into(),
            kind: crate::config::RouteKind::Log,
            robot_id: "topic:2".into(),
            metric_prefix: None,
            category: None,
        };
        let wide = super::tests::routes(&[catch_all]);
        assert_eq!(
            publish(&b, &wide, "tonypi_1", "tonypi/commands/tonypi_1", "{}"),
            Err(Refusal::Downlink)
        );
        assert_eq!(
            publish(&b, &routes, "tonypi_1", "tonypi/anything/tonypi_1", "{}"),
            Err(Refusal::NotUplink)
        );
    }

    #[test]
    fn a_robot_writes_no_other_robots_data() {
        let (b, routes) = (binding(), routes(&[]));
        let other = r#"{"robot_id": "tonypi_2", "percentage": 5}"#;
        assert_eq!(
            publish(&b, &routes, "tonypi_1", "tonypi/sensors/tonypi_2", "{}"),
            Err(Refusal::OtherRobot)
        );
        for topic in [
            "tonypi/battery",
            "tonypi/location",
            "tonypi/commands/response",
        ] {
            assert_eq!(
                publish(&b, &routes, "tonypi_1", topic, other),
                Err(Refusal::OtherRobot),
                "{topic}"
            );
        }
        for body in [
            r#"{"percentage": 5}"#,
            r#"{"robot_id": null}"#,
            r#"{"robot_id": {"id": "tonypi_1"}}"#,
            // The decoder keeps the last of two; the policy trusts neither.
            r#"{"robot_id": "tonypi_1", "robot_id": "tonypi_2"}"#,
            "[1, 2]",
            "not json",
        ] {
            assert_eq!(
                publish(&b, &routes, "tonypi_1", "tonypi/battery", body),
                Err(Refusal::NoRobotId),
                "{body}"
            );
        }
    }

    #[test]
    fn a_robot_subscribes_to_its_own_downlinks_and_the_broadcasts_only() {
        let b = binding();
        for filter in [
            "tonypi/commands/tonypi_1",
            "tonypi/commands/broadcast",
            "tonypi/items/tonypi_1",
            "tonypi/emergency_stop/tonypi_1",
            "tonypi/emergency_stop/broadcast",
            "tonypi/config/tonypi_1",
            "$share/g/tonypi/commands/tonypi_1",
        ] {
            assert_eq!(subscribe(&b, "tonypi_1", filter), Ok(()), "{filter}");
        }
        for filter in [
            "#",
            "tonypi/#",
            "tonypi/commands/+",
            "tonypi/+/tonypi_1",
            "tonypi/commands/tonypi_2",
            "tonypi/emergency_stop/tonypi_2",
            "tonypi/sensors/tonypi_1",
            "tonypi/battery",
            "$SYS/#",
            "$share/g/#",
        ] {
            assert_eq!(
                subscribe(&b, "tonypi_1", filter),
                Err(Refusal::NotOwnDownlink),
                "{filter}"
            );
        }
        // A robot named like the reply channel does not read every robot's replies.
        assert_eq!(
            subscribe(&b, "response", "tonypi/commands/response"),
            Err(Refusal::NotOwnDownlink)
        );
    }

    #[test]
    fn a_client_id_that_is_no_robot_id_may_do_nothing() {
        let (b, routes) = (binding(), routes(&[]));
        for id in ["+", "#", "a/b", "", "tonypi 1"] {
            assert_eq!(
                subscribe(&b, id, &format!("tonypi/commands/{id}")),
                Err(Refusal::ClientIdNotRobotId),
                "{id:?}"
            );
            assert_eq!(
                publish(&b, &routes, id, &format!("tonypi/sensors/{id}"), "{}"),
                Err(Refusal::ClientIdNotRobotId),
                "{id:?}"
            );
        }
    }

    #[test]
    fn the_downlink_set_follows_commands_topics() {
        let b = RobotBinding::new(&CommandTopics::devices());
        let routes = routes(&[]);
        assert_eq!(subscribe(&b, "gw-7", "devices/gw-7/commands"), Ok(()));
        assert_eq!(
            subscribe(&b, "gw-7", "devices/broadcast/emergency_stop"),
            Ok(())
        );
        assert_eq!(
            subscribe(&b, "gw-7", "tonypi/commands/gw-7"),
            Err(Refusal::NotOwnDownlink)
        );
        assert_eq!(
            publish(&b, &routes, "gw-7", "devices/gw-7/telemetry", "{}"),
            Ok(())
        );
        assert_eq!(
            publish(&b, &routes, "gw-7", "devices/gw-7/emergency_stop", "{}"),
            Err(Refusal::Downlink)
        );
    }

    #[test]
    fn the_policy_is_described_as_configured() {
        let mut cfg = Config::default();
        let text = describe(&cfg);
        assert!(text.contains("anonymous = \"robot\""), "{text}");
        assert!(text.contains("tonypi/emergency_stop/broadcast"), "{text}");
        cfg.mqtt.embedded.anonymous = AnonymousPolicy::UnrestrictedInsecure;
        assert!(describe(&cfg).contains("ANY client"));
        cfg.mqtt.embedded.auth = true;
        assert!(describe(&cfg).contains("mqtt.embedded.auth = true"));
        cfg.mqtt.mode = MqttMode::External;
        assert!(describe(&cfg).starts_with("external broker"));
    }

    #[test]
    fn every_refusal_has_its_zero_series() {
        for why in Refusal::ALL {
            assert!(
                telemetry::MQTT_REFUSAL_SERIES
                    .iter()
                    .any(|(_, reason)| *reason == why.label()),
                "{why:?}"
            );
        }
    }
}
