//! Test support shared by unit tests, integration tests and benchmarks (feature
//! `testing`): the captured TonyPi traffic, loaded once.

use bytes::Bytes;

/// The capture from the public TonyPi robot simulator (see `tests/fixtures/README.md`).
const CAPTURE: &str = include_str!("../tests/fixtures/tonypi-simulator-samples.jsonl");

/// The captured messages as (topic, payload), in capture order.
pub fn fixtures() -> Vec<(String, Bytes)> {
    CAPTURE
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("fixture line is not JSON ({e}): {line}"));
            let field = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("fixture line without {k}: {line}"))
                    .to_string()
            };
            (field("topic"), Bytes::from(field("payload")))
        })
        .collect()
}

/// The capture decoded as the batcher does (received at `at`, any message age accepted),
/// `copies` times over as separate fleets: copy `k`'s robots are `<robot>_<k>`. Messages
/// that do not decode are left out.
pub fn decoded_fleets(
    copies: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<crate::model::Decoded> {
    use crate::pipeline::decode::{self, DecodeSettings};
    let router =
        crate::pipeline::route::Router::new(&crate::config::Config::default().effective_routes())
            .unwrap_or_else(|e| panic!("the default routes do not build: {e}"));
    let opts = DecodeSettings {
        // The capture is from one morning; accept its timestamps whenever this runs.
        max_clock_skew: chrono::Duration::days(3650),
        ..DecodeSettings::default()
    };
    let capture = fixtures();
    let mut out = Vec::new();
    for k in 0..copies {
        for (topic, payload) in &capture {
            let Some(route) = router.find(topic) else {
                continue;
            };
            if let Ok(mut d) = decode::decode(route, topic, payload, at, &opts) {
                d.robot_id = format!("{}_{k}", d.robot_id);
                for l in &mut d.logs {
                    l.robot_id = Some(d.robot_id.clone());
                }
                out.push(d);
            }
        }
    }
    out
}
