//! Route configuration (`[[routes]]`) and the built-in TonyPi and generic routes.
//!
//! These are plain data; [`RouteConfig::check`] validates one, and `pipeline::route`
//! compiles the checked parts into the router.

use serde::{Deserialize, Serialize};

use super::Config;
use crate::mqtt::{TopicFilter, TopicFilterError};

/// Where a message's robot id is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotIdSource {
    /// The topic level at this 0-based index.
    TopicLevel(usize),
    /// The payload's `robot_id` field.
    Payload,
}

/// Why a route is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Filter(#[from] TopicFilterError),
    #[error("robot_id must be \"payload\" or \"topic:N\", not {0:?}")]
    RobotIdSyntax(String),
    #[error("robot_id = \"topic:{0}\" must point at a '+' level of the filter")]
    RobotIdLevel(usize),
}

/// What a route's messages mean (README, "Topics").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    Status,
    Sensor,
    Telemetry,
    Job,
    Log,
    Vision,
    Scan,
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// MQTT topic filter, wildcards allowed.
    pub filter: String,
    pub kind: RouteKind,
    /// `"topic:N"` (0-based topic level) or `"payload"` (the `robot_id` field).
    pub robot_id: String,
    /// Prepended to metric names: `battery` gives `battery.voltage`.
    #[serde(default)]
    pub metric_prefix: Option<String>,
    /// Log category for `log`/`response` routes (defaults: `robot_<source>`, `command`).
    #[serde(default)]
    pub category: Option<String>,
}

impl RouteConfig {
    /// Validates the filter and the robot-id source.
    pub fn check(&self) -> Result<(TopicFilter, RobotIdSource), RouteError> {
        let filter = TopicFilter::parse(&self.filter)?;
        let source = match self.robot_id.as_str() {
            "payload" => RobotIdSource::Payload,
            other => {
                let n = other
                    .strip_prefix("topic:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| RouteError::RobotIdSyntax(other.to_string()))?;
                if filter.levels().get(n).map(String::as_str) != Some("+") {
                    return Err(RouteError::RobotIdLevel(n));
                }
                RobotIdSource::TopicLevel(n)
            }
        };
        Ok((filter, source))
    }

    fn new(filter: &str, kind: RouteKind, robot_id: &str) -> RouteConfig {
        RouteConfig {
            filter: filter.into(),
            kind,
            robot_id: robot_id.into(),
            metric_prefix: None,
            category: None,
        }
    }

    fn prefix(self, prefix: &str) -> RouteConfig {
        RouteConfig {
            metric_prefix: Some(prefix.into()),
            ..self
        }
    }

    fn category(self, category: &str) -> RouteConfig {
        RouteConfig {
            category: Some(category.into()),
            ..self
        }
    }
}

/// The TonyPi routes and the generic device routes (README, "Topics").
pub fn routes_default() -> Vec<RouteConfig> {
    use RouteKind::*;
    let route = RouteConfig::new;
    vec![
        route("tonypi/status/+", Status, "topic:2"),
        route("tonypi/sensors/+", Sensor, "topic:2"),
        route("tonypi/servos/+", Telemetry, "topic:2"),
        route("tonypi/battery", Telemetry, "payload").prefix("battery"),
        route("tonypi/location", Telemetry, "payload").prefix("location"),
        route("tonypi/job/+", Job, "topic:2"),
        route("tonypi/logs/+", Log, "topic:2"),
        route("tonypi/vision/+", Vision, "topic:2").prefix("vision"),
        route("tonypi/scan/+", Scan, "topic:2"),
        route("tonypi/commands/response", Response, "payload").category("command"),
        route("tonypi/emergency_stop/response", Response, "payload").category("emergency"),
        route("devices/+/telemetry", Telemetry, "topic:1"),
        route("devices/+/status", Status, "topic:1"),
        route("devices/+/logs", Log, "topic:1"),
        route("devices/+/jobs", Job, "topic:1"),
    ]
}

impl Config {
    /// The routes in match order: configured ones first, then the defaults.
    pub fn effective_routes(&self) -> Vec<RouteConfig> {
        let mut routes = self.routes.clone();
        if self.default_routes {
            routes.extend(routes_default());
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_check() {
        for r in routes_default() {
            r.check().unwrap_or_else(|e| panic!("{}: {e}", r.filter));
        }
    }

    #[test]
    fn bad_routes_are_rejected() {
        let mut c = routes_default()[0].clone();
        c.robot_id = "topic:0".into();
        assert_eq!(c.check().unwrap_err(), RouteError::RobotIdLevel(0));
        c.robot_id = "header".into();
        assert!(matches!(c.check(), Err(RouteError::RobotIdSyntax(_))));
        c.robot_id = "payload".into();
        c.filter = "a/#/b".into();
        assert_eq!(
            c.check().unwrap_err(),
            RouteError::Filter(TopicFilterError::MisplacedHash)
        );
    }
}
