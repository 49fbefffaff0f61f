//! Any topic and payload from the network goes through routing and decoding without a
//! panic, and whatever decoding accepts is something the writer can store.
//!
//! Input: the topic up to the first NUL byte, the payload after it (no NUL: the topic
//! is one of the default routes' example topics, picked by the first byte).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleetsink::config::Config;
use fleetsink::pipeline::batch::decode_envelope;
use fleetsink::pipeline::decode::DecodeSettings;
use fleetsink::pipeline::route::Router;
use fleetsink::pipeline::{AckToken, Envelope};
use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "tonypi/status/tonypi_01",
    "tonypi/sensors/tonypi_01",
    "tonypi/servos/tonypi_01",
    "tonypi/battery",
    "tonypi/location",
    "tonypi/logs/tonypi_01",
    "tonypi/job/tonypi_01",
    "tonypi/scan/tonypi_01",
    "tonypi/vision/tonypi_01",
    "tonypi/commands/response",
    "tonypi/emergency_stop/response",
    "devices/dev1/telemetry",
    "devices/dev1/status",
    "devices/dev1/logs",
    "devices/dev1/jobs",
];

fn router() -> &'static Router {
    static R: OnceLock<Router> = OnceLock::new();
    R.get_or_init(|| Router::new(&Config::default().effective_routes()).expect("default routes"))
}

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => match data.split_first() {
            Some((pick, rest)) => (TOPICS[*pick as usize % TOPICS.len()].to_string(), rest),
            None => return,
        },
    };
    let received_at: DateTime<Utc> = Utc::now();
    let env = Envelope {
        route: router().find(&topic).cloned(),
        topic,
        payload: Bytes::copy_from_slice(payload),
        received_at,
        client_id: None,
        username: None,
        ack: AckToken::None,
    };
    let item = decode_envelope(env, &DecodeSettings::default());
    if let Ok(d) = &item.decoded {
        assert!(!d.robot_id.is_empty(), "accepted without a robot id");
        for m in &d.metrics {
            assert!(
                m.value.is_finite(),
                "non-finite metric {} = {}",
                m.name,
                m.value
            );
        }
    }
});
