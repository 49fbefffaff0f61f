//! Routes: which topics fleetsink ingests, what kind of record each carries and where
//! the robot id comes from. Matching is first-match in configuration order.

use crate::config::{RouteConfig, RouteKind};

/// Where a message's robot id is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotIdSource {
    /// The topic level at this 0-based index.
    TopicLevel(usize),
    /// The payload's `robot_id` field.
    Payload,
}

/// A route compiled from configuration.
#[derive(Debug, Clone)]
pub struct Route {
    pub filter: String,
    levels: Vec<String>,
    pub kind: RouteKind,
    pub robot_id: RobotIdSource,
    pub metric_prefix: Option<String>,
    pub category: Option<String>,
    /// Low-cardinality label for metrics: the filter itself.
    pub label: &'static str,
}

impl Route {
    pub fn compile(cfg: &RouteConfig) -> Result<Route, String> {
        validate_filter(&cfg.filter)?;
        let levels: Vec<String> = cfg.filter.split('/').map(str::to_string).collect();
        let robot_id = match cfg.robot_id.as_str() {
            "payload" => RobotIdSource::Payload,
            other => {
                let n = other
                    .strip_prefix("topic:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("robot_id must be \"payload\" or \"topic:N\", not {other:?}")
                    })?;
                match levels.get(n).map(String::as_str) {
                    Some("+") => RobotIdSource::TopicLevel(n),
                    _ => {
                        return Err(format!(
                            "robot_id = \"topic:{n}\" must point at a '+' level of the filter"
                        ));
                    }
                }
            }
        };
        Ok(Route {
            // Routes live for the whole process; leaking the label once per route keeps
            // metric labels `&'static str` without a per-message allocation.
            label: Box::leak(cfg.filter.clone().into_boxed_str()),
            filter: cfg.filter.clone(),
            levels,
            kind: cfg.kind,
            robot_id,
            metric_prefix: cfg.metric_prefix.clone(),
            category: cfg.category.clone(),
        })
    }

    pub fn matches(&self, topic: &str) -> bool {
        topic_matches(&self.levels, topic)
    }
}

/// Compiled routes, matched in order.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(cfgs: &[RouteConfig]) -> Result<Router, String> {
        let routes = cfgs
            .iter()
            .map(|c| Route::compile(c).map_err(|e| format!("route {}: {e}", c.filter)))
            .collect::<Result<_, _>>()?;
        Ok(Router { routes })
    }

    pub fn find(&self, topic: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(topic))
    }

    /// The distinct filters, for subscriptions.
    pub fn filters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if !out.contains(&r.filter) {
                out.push(r.filter.clone());
            }
        }
        out
    }
}

fn validate_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("empty topic filter".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i != levels.len() - 1) {
            return Err("'#' must be a whole level and the last one".into());
        }
        if l.contains('+') && *l != "+" {
            return Err("'+' must be a whole level".into());
        }
    }
    Ok(())
}

/// MQTT filter matching: `+` matches one level, a trailing `#` matches the rest
/// (including nothing: `a/#` matches `a`).
fn topic_matches(filter: &[String], topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for (i, f) in filter.iter().enumerate() {
        if f == "#" {
            return i == filter.len() - 1;
        }
        match topic_levels.next() {
            Some(t) => {
                if f != "+" && f != t {
                    return false;
                }
            }
            None => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routes_default;

    fn levels(f: &str) -> Vec<String> {
        f.split('/').map(str::to_string).collect()
    }

    #[test]
    fn wildcard_matching() {
        assert!(topic_matches(
            &levels("tonypi/status/+"),
            "tonypi/status/r1"
        ));
        assert!(!topic_matches(
            &levels("tonypi/status/+"),
            "tonypi/status/r1/x"
        ));
        assert!(!topic_matches(&levels("tonypi/status/+"), "tonypi/status"));
        assert!(topic_matches(&levels("a/#"), "a"));
        assert!(topic_matches(&levels("a/#"), "a/b/c"));
        assert!(topic_matches(&levels("#"), "x/y"));
        assert!(!topic_matches(&levels("a/b"), "a/c"));
    }

    #[test]
    fn default_routes_compile_and_match() {
        let router = Router::new(&routes_default()).unwrap();
        let r = router.find("tonypi/battery").unwrap();
        assert_eq!(r.robot_id, RobotIdSource::Payload);
        assert_eq!(r.metric_prefix.as_deref(), Some("battery"));
        let r = router.find("devices/gw-7/logs").unwrap();
        assert_eq!(r.robot_id, RobotIdSource::TopicLevel(1));
        assert_eq!(
            router.find("tonypi/commands/response").unwrap().kind,
            RouteKind::Response
        );
        // Downlink commands to robots are not ingested.
        assert!(router.find("tonypi/commands/tonypi_1").is_none());
    }

    #[test]
    fn bad_routes_are_rejected() {
        let mut c = routes_default()[0].clone();
        c.robot_id = "topic:0".into();
        assert!(Route::compile(&c).unwrap_err().contains("'+'"));
        c.robot_id = "header".into();
        assert!(Route::compile(&c).is_err());
        c.robot_id = "payload".into();
        c.filter = "a/#/b".into();
        assert!(Route::compile(&c).is_err());
    }
}
