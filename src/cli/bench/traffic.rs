//! What a bench robot publishes: TonyPi's topics and payload shapes, as its robot
//! client sends them (`robot_client/simulator.py`; the captured fixtures show the bytes):
//! Python's `json.dumps` spacing, naive ISO timestamps, six servos, the status with its
//! `system_info`, and the robot id inside the payload on `tonypi/location` and
//! `tonypi/battery`, whose topics carry none. Pure: values come from the robot's own
//! random source.
//!
//! Invariant the database check relies on: every message becomes exactly one `metrics`
//! row, keyed by (robot, payload timestamp, set of names); the caller gives each message
//! of a robot a distinct timestamp, so a message is identified by (robot, timestamp).
//! Timestamps are naive UTC, like TonyPi's `datetime.now()` on a robot whose clock is
//! UTC: the daemon must read naive times as UTC (`ingest.naive_timezone`, the default).

use std::io::Write;

use chrono::{DateTime, Datelike, Timelike};

use super::cadence::Kind;

/// TonyPi's sensor readings (one per message) and their units, in the order its client
/// sends them.
const SENSORS: [(&str, &str); 15] = [
    ("accelerometer_x", "m/s^2"),
    ("accelerometer_y", "m/s^2"),
    ("accelerometer_z", "m/s^2"),
    ("gyroscope_x", "deg/s"),
    ("gyroscope_y", "deg/s"),
    ("gyroscope_z", "deg/s"),
    ("ultrasonic_distance", "cm"),
    ("cpu_temperature", "C"),
    ("light_sensor_dark", "bool"),
    ("light_level", "%"),
    ("system_cpu_percent", "%"),
    ("system_memory_percent", "%"),
    ("system_disk_usage", "%"),
    ("system_temperature", "C"),
    ("system_uptime", "s"),
];

/// A robot's own levels, as TonyPi's simulator draws them once per robot in its normal
/// mode (`_get_base_temperature`, `cpu_base`, `memory_base`).
#[derive(Debug, Clone, Copy)]
struct Levels {
    temperature: f64,
    cpu: f64,
    memory: f64,
}

/// A reading of sensor `name` of [`SENSORS`] at `t_s` (seconds since the epoch), as
/// TonyPi's simulator gives it (`read_sensors`, `get_system_info`): the temperatures
/// swing ±5 °C around the robot's level over a minute, so a robot near 55 °C crosses the
/// 60 °C warning now and then as a real one would; CPU and memory stay far below their
/// thresholds. `uniform`: any value from 0 to 100 for every sensor (the generator
/// before; the watched readings then open and resolve alerts all the time, a worst
/// case for alert evaluation).
fn sensor_value(
    name: &str,
    r: &mut fastrand::Rng,
    levels: Option<Levels>,
    t_s: f64,
    uptime_s: f64,
) -> f64 {
    let between = |r: &mut fastrand::Rng, lo: f64, hi: f64| lo + (hi - lo) * r.f64();
    let Some(l) = levels else {
        return 100.0 * r.f64();
    };
    match name {
        "accelerometer_x" | "accelerometer_y" => between(r, -0.5, 0.5),
        "accelerometer_z" => between(r, 9.5, 10.0),
        "gyroscope_x" | "gyroscope_y" | "gyroscope_z" => between(r, -10.0, 10.0),
        "ultrasonic_distance" => 100.0 - 50.0 * (t_s / 8.0).sin() + between(r, -10.0, 10.0),
        "cpu_temperature" | "system_temperature" => {
            l.temperature + 5.0 * (t_s / 30.0).sin() + between(r, -2.0, 2.0)
        }
        "light_sensor_dark" => 0.0,
        "light_level" => 60.0 + 20.0 * (t_s / 60.0).sin() + between(r, -5.0, 5.0),
        "system_cpu_percent" => l.cpu + between(r, -5.0, 5.0),
        "system_memory_percent" => l.memory + between(r, -3.0, 3.0),
        "system_disk_usage" => between(r, 35.0, 55.0),
        "system_uptime" => uptime_s,
        _ => 100.0 * r.f64(),
    }
}

const SERVO_NAMES: [&str; 6] = [
    "Left Hip",
    "Left Knee",
    "Right Hip",
    "Right Knee",
    "Head Pan",
    "Head Tilt",
];

/// The id (and MQTT client id) of bench robot `n` (from 1): `bench-00001`.
pub fn robot_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n:05}")
}

/// One robot's topics and the state its payloads evolve from.
pub struct RobotTraffic {
    id: String,
    sensors_topic: String,
    servos_topic: String,
    status_topic: String,
    next_sensor: usize,
    battery: f64,
    /// Microseconds since the epoch of the robot's first message (its `uptime` base).
    started_us: Option<i64>,
    rng: fastrand::Rng,
    /// The robot's levels; `None`: sensor readings uniform from 0 to 100
    /// ([`sensor_value`]).
    levels: Option<Levels>,
}

impl RobotTraffic {
    pub fn new(id: String, mut rng: fastrand::Rng, uniform_sensors: bool) -> RobotTraffic {
        RobotTraffic {
            sensors_topic: format!("tonypi/sensors/{id}"),
            servos_topic: format!("tonypi/servos/{id}"),
            status_topic: format!("tonypi/status/{id}"),
            next_sensor: rng.usize(..SENSORS.len()),
            battery: 70.0 + 30.0 * rng.f64(),
            started_us: None,
            levels: (!uniform_sensors).then(|| Levels {
                temperature: 40.0 + 15.0 * rng.f64(),
                cpu: 15.0 + 20.0 * rng.f64(),
                memory: 40.0 + 20.0 * rng.f64(),
            }),
            id,
            rng,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn topic(&self, kind: Kind) -> &str {
        match kind {
            Kind::Sensors => &self.sensors_topic,
            Kind::Servos => &self.servos_topic,
            Kind::Status => &self.status_topic,
            Kind::Location => "tonypi/location",
            Kind::Battery => "tonypi/battery",
        }
    }

    /// Appends the JSON payload of a `kind` message stamped `ts_us` (µs since the epoch).
    pub fn payload(&mut self, kind: Kind, ts_us: i64, out: &mut Vec<u8>) {
        let started = *self.started_us.get_or_insert(ts_us);
        let id = &self.id;
        let r = &mut self.rng;
        // Writing to a Vec cannot fail.
        let _ = match kind {
            Kind::Sensors => {
                let (name, unit) = SENSORS[self.next_sensor];
                self.next_sensor = (self.next_sensor + 1) % SENSORS.len();
                let uptime_s = (ts_us - started) as f64 / 1e6;
                let value = sensor_value(name, r, self.levels, ts_us as f64 / 1e6, uptime_s);
                write!(
                    out,
                    r#"{{"robot_id": "{id}", "sensor_type": "{name}", "value": {value:.2}, "timestamp": ""#
                )
                .and_then(|()| write_ts(out, ts_us))
                .and_then(|()| write!(out, r#"", "unit": "{unit}"}}"#))
            }
            Kind::Servos => {
                let mut w = write!(out, r#"{{"robot_id": "{id}", "servos": {{"#);
                for (i, name) in SERVO_NAMES.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    w = w.and_then(|()| {
                        write!(
                            out,
                            r#"{sep}"servo_{n}": {{"id": {n}, "name": "{name}", "position": {:.1}, "temperature": {:.1}, "voltage": {:.2}, "torque_enabled": true, "alert_level": "normal", "target_position": 0.0}}"#,
                            6.0 * r.f64() - 3.0,
                            44.0 + 6.0 * r.f64(),
                            4.8 + 0.4 * r.f64(),
                            n = i + 1,
                        )
                    });
                }
                w.and_then(|()| write!(out, r#"}}, "servo_count": 6, "timestamp": ""#))
                    .and_then(|()| write_ts(out, ts_us))
                    .and_then(|()| out.write_all(b"\"}"))
            }
            Kind::Status => {
                let temp = 45.0 + 10.0 * r.f64();
                write!(out, r#"{{"robot_id": "{id}", "status": "online", "timestamp": ""#)
                    .and_then(|()| write_ts(out, ts_us))
                    .and_then(|()| {
                        write!(
                            out,
                            r#"", "system_info": {{"platform": "Linux-6.1.0-rpi7-rpi-v8-aarch64-with-glibc2.36", "cpu_percent": {:.1}, "memory_percent": {:.1}, "disk_usage": 41.7, "temperature": {temp:.1}, "cpu_temperature": {temp:.1}, "uptime": {:.3}, "hardware_mode": false, "hardware_sdk": false}}, "hardware_available": false, "ip_address": "192.0.2.2", "camera_url": "http://192.0.2.2:8081/?action=stream", "emergency_stopped": false, "emergency_reason": null}}"#,
                            15.0 + 20.0 * r.f64(),
                            40.0 + 20.0 * r.f64(),
                            (ts_us - started) as f64 / 1e6,
                        )
                    })
            }
            Kind::Location => write!(
                out,
                r#"{{"robot_id": "{id}", "x": {:.2}, "y": {:.2}, "z": 0.0, "timestamp": ""#,
                10.0 * r.f64(),
                10.0 * r.f64()
            )
            .and_then(|()| write_ts(out, ts_us))
            .and_then(|()| out.write_all(b"\"}")),
            Kind::Battery => {
                self.battery = (self.battery - 0.06).max(5.0);
                write!(
                    out,
                    r#"{{"robot_id": "{id}", "percentage": {:.1}, "voltage": {:.2}, "charging": false, "timestamp": ""#,
                    self.battery,
                    9.0 + self.battery / 100.0 * 3.6
                )
                .and_then(|()| write_ts(out, ts_us))
                .and_then(|()| out.write_all(b"\"}"))
            }
        };
    }
}

/// A naive ISO 8601 time with microseconds, as Python's `datetime.isoformat()` writes it.
fn write_ts(out: &mut Vec<u8>, ts_us: i64) -> std::io::Result<()> {
    let t = DateTime::from_timestamp_micros(ts_us)
        .unwrap_or_default()
        .naive_utc();
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1000
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use fleetsink::config::routes_default;
    use fleetsink::pipeline::decode::{DecodeSettings, decode};
    use fleetsink::pipeline::route::Router;

    use super::*;

    #[test]
    fn every_kind_decodes_to_one_row_of_its_robot_at_the_sent_timestamp() {
        let router = Router::new(&routes_default()).expect("built-in routes compile");
        let mut robot =
            RobotTraffic::new(robot_id("bench", 42), fastrand::Rng::with_seed(1), false);
        assert_eq!(robot.id(), "bench-00042");
        let ts_us = Utc::now().timestamp_micros();
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            let mut payload = Vec::new();
            robot.payload(kind, ts_us + i as i64, &mut payload);
            let topic = robot.topic(kind);
            let route = router.find(topic).expect("a built-in route");
            let d = decode(
                route,
                topic,
                &payload,
                Utc::now(),
                &DecodeSettings::default(),
            )
            .unwrap_or_else(|e| panic!("{kind:?} {}: {e:?}", String::from_utf8_lossy(&payload)));
            assert_eq!(d.robot_id, "bench-00042", "{kind:?}");
            assert_eq!(d.ts.timestamp_micros(), ts_us + i as i64, "{kind:?}");
            assert!(!d.metrics.is_empty(), "{kind:?} has no metric values");
        }
    }

    #[test]
    fn payloads_have_tonypis_shape_and_size() {
        let mut robot = RobotTraffic::new(robot_id("bench", 1), fastrand::Rng::with_seed(2), false);
        let mut servos = Vec::new();
        robot.payload(Kind::Servos, 1_795_000_000_123_456, &mut servos);
        let v: serde_json::Value = serde_json::from_slice(&servos).expect("JSON");
        assert_eq!(v["servos"].as_object().map(|s| s.len()), Some(6));
        assert_eq!(v["servos"]["servo_6"]["name"], "Head Tilt");
        assert_eq!(v["timestamp"], "2026-11-18T11:06:40.123456");
        // The captured servos message is 1,062 bytes; ours must be of that order.
        assert!(
            (900..1200).contains(&servos.len()),
            "{} bytes",
            servos.len()
        );
        assert_eq!(robot.topic(Kind::Battery), "tonypi/battery");
        let mut battery = Vec::new();
        robot.payload(Kind::Battery, 1, &mut battery);
        let v: serde_json::Value = serde_json::from_slice(&battery).expect("JSON");
        assert_eq!(v["robot_id"], "bench-00001", "the topic has no robot id");
    }

    /// The highest value of each sensor over `n` messages of robot `robot`.
    fn highest(robot: &mut RobotTraffic, n: i64) -> std::collections::HashMap<String, f64> {
        let mut top = std::collections::HashMap::new();
        for i in 0..n {
            let mut p = Vec::new();
            robot.payload(Kind::Sensors, 1_795_000_000_000_000 + i * 2_000_000, &mut p);
            let v: serde_json::Value = serde_json::from_slice(&p).expect("JSON");
            let name = v["sensor_type"].as_str().unwrap_or_default().to_string();
            let value = v["value"].as_f64().expect("a number");
            let t = top.entry(name).or_insert(f64::MIN);
            *t = value.max(*t);
        }
        top
    }

    #[test]
    fn sensor_readings_stay_in_tonypis_ranges_unless_uniform() {
        for seed in 0..20 {
            let mut robot = RobotTraffic::new("r".into(), fastrand::Rng::with_seed(seed), false);
            let top = highest(&mut robot, 1_500);
            // Below the default CPU (70 %) and memory (75 %) warnings; temperatures at
            // most 7 °C above a level of 40-55 °C, as TonyPi's simulator gives them.
            assert!(top["system_cpu_percent"] < 41.0, "{top:?}");
            assert!(top["system_memory_percent"] < 64.0, "{top:?}");
            for t in ["cpu_temperature", "system_temperature"] {
                assert!((40.0..62.0).contains(&top[t]), "{t}: {top:?}");
            }
        }
        let mut uniform = RobotTraffic::new("r".into(), fastrand::Rng::with_seed(1), true);
        let top = highest(&mut uniform, 1_500);
        assert!(top["system_cpu_percent"] > 90.0, "{top:?}");
    }

    #[test]
    fn sensor_messages_cycle_through_tonypis_fifteen_readings() {
        let mut robot = RobotTraffic::new("r".into(), fastrand::Rng::with_seed(3), false);
        let names: std::collections::HashSet<String> = (0..15)
            .map(|i| {
                let mut p = Vec::new();
                robot.payload(Kind::Sensors, i, &mut p);
                let v: serde_json::Value = serde_json::from_slice(&p).expect("JSON");
                v["sensor_type"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(names.len(), 15);
    }
}
