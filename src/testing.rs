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
