//! `telemetry` routes (`tonypi/servos/{rid}`, `tonypi/battery`, `tonypi/location`,
//! `devices/{id}/telemetry`): every numeric leaf is a metric, named by its path under
//! the route's prefix (`servos.servo_1.temperature`, `battery.voltage`).

use super::Message;
use super::json::flatten_numbers;
use crate::model::Decoded;

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let prefix = msg.route.metric_prefix.as_deref().unwrap_or_default();
    flatten_numbers(msg.obj, prefix, &mut |name, value| {
        out.push_metric(name, value, None);
    });
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::super::testing::{now, run};
    use crate::model::TsSource;

    #[test]
    fn battery_takes_robot_id_from_payload_and_prefixes_metrics() {
        let d = run(
            "tonypi/battery",
            r#"{"robot_id": "tonypi_normal", "percentage": 73.3, "voltage": 11.64, "charging": false, "timestamp": "2026-11-22T09:27:50.174489"}"#,
        )
        .unwrap();
        assert_eq!(d.robot_id, "tonypi_normal");
        let mut names: Vec<_> = d
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.value))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            names,
            vec![
                ("battery.charging", 0.0),
                ("battery.percentage", 73.3),
                ("battery.voltage", 11.64)
            ]
        );
        // Naive time read in UTC by default.
        assert_eq!(
            d.ts,
            "2026-11-22T09:27:50.174489Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
    }

    #[test]
    fn leaves_flatten_in_document_order_so_the_first_of_a_colliding_name_is_stored() {
        // The metrics insert keeps the first value of a name a message repeats.
        let d = run("tonypi/servos/r1", r#"{"a.b":5,"a":{"b":2},"c":1,"c":3}"#).unwrap();
        let got: Vec<_> = d
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.value))
            .collect();
        assert_eq!(got, vec![("a.b", 5.0), ("a.b", 2.0), ("c", 3.0)]);
    }

    #[test]
    fn servo_leaves_flatten() {
        let d = run(
            "tonypi/servos/tonypi_1",
            r#"{"servos":{"servo_1":{"id":1,"name":"head","position":500,"temperature":41.0,"voltage":7.4,"torque_enabled":true}},"servo_count":1}"#,
        )
        .unwrap();
        let names: Vec<_> = d.metrics.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"servos.servo_1.temperature"));
        assert!(names.contains(&"servos.servo_1.torque_enabled"));
        assert!(!names.iter().any(|n| n.ends_with(".name")));
        assert_eq!(d.ts_source, TsSource::Missing);
        assert_eq!(d.ts, now());
    }
}
