//! `status` routes (`tonypi/status/{rid}`, `devices/{id}/status`): the robot's own state
//! (status, IP, camera URL) and its numeric `system_info` as metrics. The status-change
//! log row is the sink's: only it knows the previous status.

use super::Message;
use super::json::{flatten_numbers, str_field};
use super::tree::Json;
use crate::model::{Decoded, RobotState};

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let prefix = msg.route.metric_prefix.as_deref().unwrap_or("system_info");
    if let Some(Json::Object(info)) = msg.obj.get("system_info") {
        flatten_numbers(info, prefix, &mut |name, value| {
            out.push_metric(name, value, None);
        });
    }
    let emergency = msg.obj.get("emergency_stopped").and_then(Json::as_bool) == Some(true);
    let status = str_field(msg.obj, &["status"])
        .map(|s| s.to_ascii_lowercase())
        .or_else(|| emergency.then(|| "emergency_stopped".to_string()));
    out.state = Some(RobotState {
        status,
        ip_address: str_field(msg.obj, &["ip_address", "ip"]),
        camera_url: str_field(msg.obj, &["camera_url"]),
    });
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::super::testing::run;

    #[test]
    fn status_yields_state_and_system_metrics() {
        let d = run(
            "tonypi/status/tonypi_1",
            r#"{"robot_id":"tonypi_1","status":"online","ip_address":"10.0.0.5","camera_url":"http://10.0.0.5:8080","system_info":{"cpu_percent":12.5,"memory_percent":40,"temperature":51.2,"hostname":"pi"},"timestamp":"2026-11-22T09:29:00+01:00"}"#,
        )
        .unwrap();
        let state = d.state.unwrap();
        assert_eq!(state.status.as_deref(), Some("online"));
        assert_eq!(state.ip_address.as_deref(), Some("10.0.0.5"));
        let names: Vec<_> = d.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "system_info.cpu_percent",
                "system_info.memory_percent",
                "system_info.temperature"
            ]
        );
        assert_eq!(
            d.ts,
            "2026-11-22T08:29:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn emergency_flag_without_status() {
        let d = run("tonypi/status/r1", r#"{"emergency_stopped":true}"#).unwrap();
        assert_eq!(
            d.state.unwrap().status.as_deref(),
            Some("emergency_stopped")
        );
    }
}
