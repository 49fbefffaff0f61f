//! `/api/v1/openapi.json`: every route of the contract is described, and everything it
//! describes is really routed.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;
use fleetsink::config::MqttMode;

/// The admin port's routes as the README and the TonyPi routers name them.
const CONTRACT: &[(&str, &str)] = &[
    ("get", "/api/v1/robots-db/robots"),
    ("post", "/api/v1/robots-db/robots"),
    ("get", "/api/v1/robots-db/robots/{robot_id}"),
    ("put", "/api/v1/robots-db/robots/{robot_id}"),
    ("delete", "/api/v1/robots-db/robots/{robot_id}"),
    ("get", "/api/v1/robots-db/logs"),
    ("get", "/api/v1/robots-db/jobs/history"),
    ("get", "/api/v1/robots-db/stats"),
    ("get", "/api/v1/robots-db/jobs/overall-stats"),
    ("get", "/api/v1/robots-db/jobs/cumulative-stats"),
    ("get", "/api/v1/management/system/status"),
    ("get", "/api/v1/management/robots/{robot_id}/config"),
    ("put", "/api/v1/management/robots/{robot_id}/config"),
    ("get", "/api/v1/pi/perf/{robot_id}"),
    ("get", "/"),
    ("get", "/api"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/robot-data/sensors"),
    ("get", "/api/v1/robot-data/status"),
    ("get", "/api/v1/robot-data/latest/{robot_id}"),
    ("get", "/api/v1/robot-data/servos/{robot_id}"),
    ("get", "/api/v1/robot-data/job-summary/{robot_id}"),
    ("post", "/api/v1/robot-data/command"),
    ("get", "/api/v1/robots/{robot_id}/metrics"),
    ("get", "/api/v1/robots/{robot_id}/latest"),
    ("get", "/api/v1/robots/{robot_id}/commands"),
    ("get", "/api/v1/metrics/names"),
    ("get", "/api/v1/ingest-errors"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/management/command"),
    (
        "post",
        "/api/v1/management/robots/{robot_id}/emergency-stop",
    ),
    ("post", "/api/v1/management/robots/{robot_id}/resume"),
    ("post", "/api/v1/management/emergency-stop/broadcast"),
    ("post", "/api/v1/devices/{id}/commands"),
    ("get", "/api/v1/logs"),
    ("post", "/api/v1/logs"),
    ("get", "/api/v1/logs/categories"),
    ("get", "/api/v1/logs/levels"),
    ("get", "/api/v1/logs/stats"),
    ("get", "/api/v1/logs/commands"),
    ("get", "/api/v1/logs/errors"),
    ("delete", "/api/v1/logs/clear"),
    ("get", "/api/v1/logs/export/json"),
    ("get", "/api/v1/logs/export/csv"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// A path template with its parameter names erased: `/a/{x}/b` → `/a/{}/b`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_and_only_real_ones() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let (code, doc) = t.send(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let described: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete"].contains(&k.as_str()))
                .map(move |m| (m.clone(), shape(path)))
        })
        .collect();

    // Every route of the contract is described…
    let missing: Vec<_> = CONTRACT
        .iter()
        .filter(|(m, p)| !described.contains(&(m.to_string(), shape(p))))
        .collect();
    assert!(missing.is_empty(), "not in openapi.json: {missing:?}");

    // …with its responses, and its path and query parameters.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object();
            assert!(
                responses.is_some_and(|r| ["200", "201", "204"].iter().any(|c| r.contains_key(*c))),
                "{method} {path} has no success response described"
            );
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} not described"
                );
            }
        }
    }
    let query_params = |path: &str| -> Vec<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        query_params("/api/v1/robots-db/logs"),
        [
            "limit", "level", "category", "robot_id", "from", "to", "cursor"
        ]
    );
    assert_eq!(
        query_params("/api/v1/robots/{robot_id}/metrics"),
        ["name", "from", "to", "bucket"]
    );
    // Response bodies are typed from the handlers: a robot has TonyPi's fields.
    let robot = &doc["components"]["schemas"]["Robot"]["properties"];
    for field in [
        "id",
        "robot_id",
        "name",
        "status",
        "battery_threshold_low",
        "temp_threshold_critical",
        "last_seen",
        "is_active",
    ] {
        assert!(robot.get(field).is_some(), "Robot lacks {field}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Everything described is routed: no described route falls through to the
    // router's fallback (404 "not found") or is answered 405.
    for (method, path) in &described {
        let concrete = path.replace("{}", "tonypi_oa");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = (method == Method::POST || method == Method::PUT).then(|| json!({}));
        let (code, answer) = t.send(method.clone(), &concrete, body).await;
        assert_ne!(code, 405, "{method} {concrete}");
        assert!(
            !(code == 404 && answer == json!({"detail": "not found"})),
            "{method} {concrete} is described but not routed"
        );
    }

    t.stop().await;
}
