//! The audit trail, the pure part: who made a change ([`Actor`]: a console user, the
//! admin token, an open API's caller, or a CLI subcommand's operating-system user, with
//! the HTTP peer address), what the change was ([`Entry`]: one of the [`action`]
//! names, its target, details) and the daemon's log line for it.
//!
//! The rows are written by `db::edits::audit` in the change's own transaction (an
//! `audit` row and a `logs` row of category `audit`, which TonyPi's Logs page shows),
//! so a change never commits without them; the log line (target `fleetsink::audit`)
//! follows the commit. The address is the TCP peer of the request: behind a reverse
//! proxy it is the proxy's, because forwarded headers can be forged by any client.

use std::net::IpAddr;

use serde_json::Value;

/// The action names, as stored in `audit.action` and filtered by `GET /api/v1/audit`.
pub mod action {
    /// A command to one robot or a broadcast (`commands` rows; `command_id` set).
    pub const COMMAND: &str = "command";
    pub const EMERGENCY_STOP: &str = "emergency_stop";
    pub const RESUME: &str = "resume";
    /// Settings published to a robot (and stored).
    pub const ROBOT_CONFIG: &str = "robot.config";
    pub const ALERT_CREATE: &str = "alert.create";
    pub const ALERT_ACKNOWLEDGE: &str = "alert.acknowledge";
    pub const ALERT_ACKNOWLEDGE_ALL: &str = "alert.acknowledge_all";
    pub const ALERT_RESOLVE: &str = "alert.resolve";
    pub const ALERT_DELETE: &str = "alert.delete";
    pub const THRESHOLD_SET: &str = "threshold.set";
    pub const THRESHOLD_UPDATE: &str = "threshold.update";
    pub const THRESHOLD_DELETE: &str = "threshold.delete";
    pub const THRESHOLD_INIT_DEFAULTS: &str = "threshold.init_defaults";
    pub const ROBOT_CREATE: &str = "robot.create";
    pub const ROBOT_UPDATE: &str = "robot.update";
    pub const ROBOT_DELETE: &str = "robot.delete";
    pub const CONSOLE_USER_CREATE: &str = "console_user.create";
    pub const CONSOLE_USER_UPDATE: &str = "console_user.update";
    pub const CONSOLE_USER_PASSWORD: &str = "console_user.password";
    pub const CONSOLE_USER_DELETE: &str = "console_user.delete";
    pub const MQTT_USER_CREATE: &str = "mqtt_user.create";
    pub const MQTT_USER_PASSWORD: &str = "mqtt_user.password";
    pub const MQTT_USER_DELETE: &str = "mqtt_user.delete";
    pub const MQTT_ACL_CREATE: &str = "mqtt_acl.create";
    pub const MQTT_ACL_DELETE: &str = "mqtt_acl.delete";
    pub const LOGS_CLEAR: &str = "logs.clear";
}

/// How the actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A signed-in console user.
    User,
    /// `http.admin_token`, a machine credential.
    Token,
    /// No credential is configured: the API is open (loopback only).
    Open,
    /// A CLI subcommand run on the host.
    Cli,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::Open => "open",
            ActorKind::Cli => "cli",
        }
    }
}

/// Who made a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A console user's name, `admin-token`, `unauthenticated`, or the CLI's OS user.
    pub name: String,
    pub kind: ActorKind,
    /// The HTTP request's peer; `None` for the CLI.
    pub address: Option<IpAddr>,
}

impl Actor {
    /// The operating-system user running a CLI subcommand (`$USER`, else `$LOGNAME`),
    /// or `cli` when neither is set (a bare container, a systemd unit).
    pub fn cli() -> Actor {
        let name = ["USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| "cli".to_string());
        Actor {
            name,
            kind: ActorKind::Cli,
            address: None,
        }
    }

    /// `alice from 127.0.0.1`, `root (cli)`: how log lines name the actor.
    pub fn describe(&self) -> String {
        match self.address {
            Some(a) => format!("{} from {a}", self.name),
            None => format!("{} ({})", self.name, self.kind.as_str()),
        }
    }
}

/// One change, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// One of [`action`].
    pub action: &'static str,
    /// A robot id, `broadcast`, an alert or threshold id, a user name.
    pub target: Option<String>,
    /// The robot the change concerns, for its `logs` row (TonyPi's Logs page filters by
    /// robot).
    pub robot_id: Option<String>,
    /// What happened, in words: the `logs` row's message begins with it.
    pub summary: String,
    /// What changed (never a password or its hash).
    pub details: Value,
    pub command_id: Option<String>,
}

impl Entry {
    pub fn new(action: &'static str, target: impl Into<Option<String>>, summary: String) -> Entry {
        Entry {
            action,
            target: target.into(),
            robot_id: None,
            summary,
            details: Value::Object(Default::default()),
            command_id: None,
        }
    }

    /// The robot whose log the row belongs in.
    pub fn robot(mut self, robot_id: &str) -> Entry {
        self.robot_id = Some(robot_id.to_string());
        self
    }

    pub fn details(mut self, details: Value) -> Entry {
        self.details = details;
        self
    }

    /// The message of the `logs` row and of the daemon's line.
    pub fn message(&self, actor: &Actor) -> String {
        format!("{} by {}", self.summary, actor.describe())
    }
}

/// The daemon's log line for a committed change (target `fleetsink::audit`).
pub fn log(actor: &Actor, e: &Entry) {
    let address = actor.address.map(|a| a.to_string());
    tracing::info!(
        actor = %actor.name,
        actor_kind = actor.kind.as_str(),
        address = address.as_deref(),
        action = e.action,
        target = e.target.as_deref(),
        command_id = e.command_id.as_deref(),
        "{}",
        e.message(actor)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_actor_and_address() {
        let alice = Actor {
            name: "alice".into(),
            kind: ActorKind::User,
            address: Some("127.0.0.1".parse().unwrap()),
        };
        let e = Entry::new(action::RESUME, "r1".to_string(), "resume sent to r1".into());
        assert_eq!(
            e.message(&alice),
            "resume sent to r1 by alice from 127.0.0.1"
        );
        let cli = Actor {
            name: "root".into(),
            kind: ActorKind::Cli,
            address: None,
        };
        assert_eq!(e.message(&cli), "resume sent to r1 by root (cli)");
    }
}
