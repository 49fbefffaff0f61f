//! What the robots send: TonyPi-shaped messages (`--mix tonypi`: status, sensors,
//! servos, battery, location and logs in the proportions robots send them) or one
//! sensor reading per message (`--mix sensors`). Each message states the rows it must
//! become, so the rows expected in PostgreSQL are known exactly, not estimated.

use chrono::{DateTime, Utc};

use super::Mix;

/// What one message contributes, so the expected rows are known exactly.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expect {
    pub metrics: u64,
    pub logs: u64,
}

impl std::ops::AddAssign for Expect {
    fn add_assign(&mut self, other: Expect) {
        self.metrics += other.metrics;
        self.logs += other.logs;
    }
}

/// Message `i` of `robot`: its topic, payload and the rows it becomes. `ts` must be
/// unique per robot, or the metric rows would collide.
pub fn message(mix: Mix, robot: &str, i: u64, ts: DateTime<Utc>) -> (String, String, Expect) {
    let ts = ts.format("%Y-%m-%dT%H:%M:%S%.6f");
    let sensor = |name: &str| {
        (
            format!("tonypi/sensors/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","sensor_type":"{name}","value":{},"unit":"°C","timestamp":"{ts}"}}"#,
                20.0 + (i % 100) as f64 / 10.0
            ),
            Expect {
                metrics: 1,
                logs: 0,
            },
        )
    };
    if mix == Mix::Sensors {
        return sensor("bench_temperature");
    }
    match i % 10 {
        0..=3 => sensor(["cpu_temperature", "distance", "light", "accel_x"][(i % 4) as usize]),
        4 | 5 => (
            "tonypi/battery".into(),
            format!(
                r#"{{"robot_id":"{robot}","percentage":{},"voltage":11.6,"charging":false,"timestamp":"{ts}"}}"#,
                50 + i % 50
            ),
            Expect {
                metrics: 3,
                logs: 0,
            },
        ),
        6 => (
            "tonypi/location".into(),
            format!(
                r#"{{"robot_id":"{robot}","x":{},"y":1.5,"z":0.0,"timestamp":"{ts}"}}"#,
                i % 1000
            ),
            Expect {
                metrics: 3,
                logs: 0,
            },
        ),
        7 => (
            format!("tonypi/status/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","status":"online","ip_address":"10.0.0.9","system_info":{{"cpu_percent":12.5,"memory_percent":40.1,"disk_usage":55.0,"temperature":48.2,"uptime":{i}}},"timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 5,
                logs: 0,
            },
        ),
        8 => (
            format!("tonypi/servos/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","servos":{{"servo_1":{{"id":1,"name":"left_hip","position":500,"temperature":41.0,"voltage":7.4,"torque_enabled":true,"alert_level":0}},"servo_2":{{"id":2,"name":"right_hip","position":480,"temperature":40.0,"voltage":7.4,"torque_enabled":true,"alert_level":0}}}},"servo_count":2,"timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 13,
                logs: 0,
            },
        ),
        _ => (
            format!("tonypi/logs/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","level":"INFO","message":"step {i}","source":"bench","timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 0,
                logs: 1,
            },
        ),
    }
}

/// The id (and MQTT client id) of load-generator robot `r`.
pub fn robot_id(prefix: &str, r: usize) -> String {
    format!("{prefix}_{r:04}")
}
