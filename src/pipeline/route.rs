//! Routes: which topics fleetsink ingests, what kind of record each carries and where
//! the robot id comes from. Matching is first-match in configuration order.
//!
//! A topic is matched once, by the source that receives it (the embedded broker's hook
//! also uses the match to leave topics that are not ours, such as downlink commands,
//! to ordinary routing); the [`Route`] then travels in the envelope.

use std::sync::Arc;

use crate::config::{RobotIdSource, RouteConfig, RouteError, RouteKind};
use crate::mqtt::TopicFilter;

/// A route compiled from configuration.
#[derive(Debug, Clone)]
pub struct Route {
    pub filter: TopicFilter,
    pub kind: RouteKind,
    pub robot_id: RobotIdSource,
    pub metric_prefix: Option<String>,
    pub category: Option<String>,
    /// Low-cardinality label for metrics: the filter itself.
    pub label: &'static str,
}

impl Route {
    pub fn compile(cfg: &RouteConfig) -> Result<Route, RouteError> {
        let (filter, robot_id) = cfg.check()?;
        Ok(Route {
            // Routes live for the whole process; leaking the label once per route keeps
            // metric labels `&'static str` without a per-message allocation.
            label: Box::leak(cfg.filter.clone().into_boxed_str()),
            filter,
            kind: cfg.kind,
            robot_id,
            metric_prefix: cfg.metric_prefix.clone(),
            category: cfg.category.clone(),
        })
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.filter.matches(topic)
    }
}

/// A route that failed to compile, with its filter.
#[derive(Debug, thiserror::Error)]
#[error("route {filter}: {source}")]
pub struct InvalidRoute {
    pub filter: String,
    pub source: RouteError,
}

/// Compiled routes, matched in order.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// Every route's metric label, in match order.
    pub fn labels(&self) -> Vec<&'static str> {
        self.routes.iter().map(|r| r.label).collect()
    }

    pub fn new(cfgs: &[RouteConfig]) -> Result<Router, InvalidRoute> {
        let routes = cfgs
            .iter()
            .map(|c| {
                Route::compile(c)
                    .map(Arc::new)
                    .map_err(|source| InvalidRoute {
                        filter: c.filter.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Router { routes })
    }

    pub fn find(&self, topic: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(topic))
    }

    /// The distinct filters, for subscriptions.
    pub fn filters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if !out.iter().any(|f| f == r.filter.as_str()) {
                out.push(r.filter.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routes_default;

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
        assert_eq!(router.filters().len(), routes_default().len());
    }
}
