//! Threshold alerts, the pure part: which readings an alert watches, their levels, which
//! thresholds apply ([`effective`]), how one alert (per robot and metric) moves as
//! readings arrive, and its TonyPi title and message. `db::writes::alerts` reads the
//! state, runs [`Alert::observe`] over a batch's readings, and writes back.
//!
//! Rules (README, "Fleet: alerts"):
//! - a reading at or past the warning (critical) threshold opens a `warning`
//!   (`critical`) alert, or escalates an open warning to critical; each such reading
//!   bumps the alert's count;
//! - an open alert resolves once a reading is back past the warning threshold by
//!   `alerts.hysteresis_percent` of it, so a value hovering at the threshold does not
//!   flap;
//! - a crossing within `alerts.dedupe_window` of the last trigger of a resolved alert
//!   of the same level re-activates that alert (count + 1) instead of opening another,
//!   and its resolution is logged once;
//! - readings not newer than the alert's `last_reading_at` (a resend) are ignored, so
//!   redelivery never double-counts.

use chrono::{DateTime, Duration, Utc};

/// The metrics alerts watch, named as the TonyPi backend names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watched {
    Cpu,
    Memory,
    Temperature,
    Battery,
    ServoTemperature,
    ServoVoltage,
}

impl Watched {
    /// Every watched metric, in declaration order.
    pub const ALL: [Watched; 6] = [
        Watched::Cpu,
        Watched::Memory,
        Watched::Temperature,
        Watched::Battery,
        Watched::ServoTemperature,
        Watched::ServoVoltage,
    ];

    /// The metric of a TonyPi name (`metric_type`, `alert_type`).
    pub fn of_name(name: &str) -> Option<Watched> {
        Watched::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Watched::Cpu => "cpu",
            Watched::Memory => "memory",
            Watched::Temperature => "temperature",
            Watched::Battery => "battery",
            Watched::ServoTemperature => "servo_temp",
            Watched::ServoVoltage => "servo_voltage",
        }
    }

    /// Which metric (a decoded metric name) feeds which alert.
    pub fn of_metric(metric: &str) -> Option<Watched> {
        match metric {
            "system_info.cpu_percent" | "system_cpu_percent" | "cpu_percent" => Some(Watched::Cpu),
            "system_info.memory_percent" | "system_memory_percent" | "memory_percent" => {
                Some(Watched::Memory)
            }
            "system_info.temperature"
            | "system_info.cpu_temperature"
            | "cpu_temperature"
            | "system_temperature" => Some(Watched::Temperature),
            "battery.percentage" => Some(Watched::Battery),
            m if m.starts_with("servos.") && m.ends_with(".temperature") => {
                Some(Watched::ServoTemperature)
            }
            m if m.starts_with("servos.") && m.ends_with(".voltage") => Some(Watched::ServoVoltage),
            _ => None,
        }
    }

    /// Whether low values are the bad ones (battery, servo voltage).
    pub fn low_is_bad(self) -> bool {
        matches!(self, Watched::Battery | Watched::ServoVoltage)
    }

    /// The worse of two readings of the same message (the hottest servo, the lowest
    /// voltage).
    pub fn worse(self, a: f64, b: f64) -> f64 {
        if self.low_is_bad() {
            a.min(b)
        } else {
            a.max(b)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    pub fn from_name(name: &str) -> Option<Level> {
        match name {
            "warning" => Some(Level::Warning),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// A robot's thresholds for one watched metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning: f64,
    pub critical: f64,
}

/// How alerts behave (`[alerts]`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub dedupe_window: Duration,
    pub hysteresis_percent: f64,
}

/// One `alert_thresholds` row's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdRow {
    pub thresholds: Thresholds,
    pub enabled: bool,
}

/// The thresholds that apply to a robot's metric: the most specific row decides (the
/// robot's, else the fleet-wide one), else the built-in default; `None` when the deciding
/// row is disabled (no alerts for that metric at its scope).
pub fn effective(
    robot: Option<ThresholdRow>,
    fleet: Option<ThresholdRow>,
    builtin: Thresholds,
) -> Option<Thresholds> {
    match robot.or(fleet) {
        Some(row) => row.enabled.then_some(row.thresholds),
        None => Some(builtin),
    }
}

/// The built-in thresholds (`[alerts.thresholds]`), in [`Watched`]'s declaration order.
pub fn builtin(t: &crate::config::ThresholdsConfig) -> [Thresholds; 6] {
    let pair = |warning, critical| Thresholds { warning, critical };
    [
        pair(t.cpu_warning, t.cpu_critical),
        pair(t.memory_warning, t.memory_critical),
        pair(t.temperature_warning, t.temperature_critical),
        pair(t.battery_low, t.battery_critical),
        pair(t.servo_temperature_warning, t.servo_temperature_critical),
        pair(t.servo_voltage_low, t.servo_voltage_critical),
    ]
}

/// An alert's title, TonyPi's wording (`mqtt_client.py`).
pub fn title(w: Watched, robot_id: &str) -> String {
    let what = match w {
        Watched::Cpu => "High CPU Usage",
        Watched::Memory => "High Memory Usage",
        Watched::Temperature => "High Temperature",
        Watched::Battery => "Low Battery",
        Watched::ServoTemperature => "Servo Overheating",
        Watched::ServoVoltage => "Low Servo Voltage",
    };
    format!("{what} on {robot_id}")
}

/// An alert's message with the reading and the threshold it is past, TonyPi's wording.
/// The migration that gave older alerts their messages builds the same text in SQL.
pub fn message(w: Watched, value: f64, threshold: f64) -> String {
    match w {
        Watched::Cpu => format!("CPU usage is at {value:.1}% (threshold: {threshold}%)"),
        Watched::Memory => format!("Memory usage is at {value:.1}% (threshold: {threshold}%)"),
        Watched::Temperature => format!("Temperature is {value:.1}°C (threshold: {threshold}°C)"),
        Watched::Battery => format!("Battery level is at {value:.1}% (threshold: {threshold}%)"),
        Watched::ServoTemperature => {
            format!("Servo temperature is {value:.1}°C (threshold: {threshold}°C)")
        }
        Watched::ServoVoltage => {
            format!("Servo voltage is {value:.2}V (threshold: {threshold}V)")
        }
    }
}

/// Everything alert evaluation needs from the configuration.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub policy: Policy,
    /// The built-in thresholds, in [`Watched`]'s declaration order (`w as usize`).
    pub defaults: [Thresholds; 6],
    /// How long a re-triggered open alert may differ from its row (`alerts.flush_interval`).
    pub flush_every: std::time::Duration,
}

impl AlertSettings {
    pub fn from_config(cfg: &crate::config::AlertsConfig) -> Self {
        Self {
            policy: Policy {
                dedupe_window: Duration::from_std(cfg.dedupe_window)
                    .unwrap_or(Duration::minutes(5)),
                hysteresis_percent: cfg.hysteresis_percent,
            },
            defaults: builtin(&cfg.thresholds),
            flush_every: cfg.flush_interval,
        }
    }

    pub fn default_for(&self, w: Watched) -> Thresholds {
        self.defaults[w as usize]
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self::from_config(&crate::config::AlertsConfig::default())
    }
}

impl Thresholds {
    /// The level of `value`, or None when it is normal.
    pub fn level(&self, w: Watched, value: f64) -> Option<Level> {
        let past = |t: f64| {
            if w.low_is_bad() {
                value <= t
            } else {
                value >= t
            }
        };
        if past(self.critical) {
            Some(Level::Critical)
        } else if past(self.warning) {
            Some(Level::Warning)
        } else {
            None
        }
    }

    /// Whether `value` is back to normal beyond the hysteresis band.
    fn recovered(&self, w: Watched, value: f64, hysteresis_percent: f64) -> bool {
        let band = self.warning.abs() * hysteresis_percent / 100.0;
        if w.low_is_bad() {
            value > self.warning + band
        } else {
            value < self.warning - band
        }
    }

    fn of(&self, level: Level) -> f64 {
        match level {
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }
}

/// One alert row (the newest for its robot and metric), as stored and as changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// None until inserted.
    pub id: Option<i64>,
    pub level: Level,
    pub value: f64,
    pub threshold: f64,
    pub first_triggered: DateTime<Utc>,
    pub last_triggered: DateTime<Utc>,
    pub count: i32,
    pub resolved: bool,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Its resolution was logged (a re-activated alert does not log it again).
    pub resolution_logged: bool,
    /// The newest reading applied: older ones (resends) are ignored.
    pub last_reading_at: DateTime<Utc>,
}

/// Something worth a log row (category `alert`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    Opened(Level),
    Escalated,
    Resolved,
}

/// An event with the reading that caused it and the alert as it then was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventAt {
    pub event: Event,
    pub value: f64,
    pub ts: DateTime<Utc>,
    pub level: Level,
    pub threshold: f64,
    /// Identifies the alert (with the robot and metric).
    pub first_triggered: DateTime<Utc>,
}

/// The outcome of observing readings: the current alert, whether it changed, earlier
/// alerts this batch changed and then replaced with a new one (all to store), and what
/// to log, with the reading's value and time.
#[derive(Debug, Default)]
pub struct Observed {
    pub alert: Option<Alert>,
    pub changed: bool,
    pub replaced: Vec<Alert>,
    pub events: Vec<EventAt>,
}

fn event(event: Event, value: f64, ts: DateTime<Utc>, a: &Alert) -> EventAt {
    EventAt {
        event,
        value,
        ts,
        level: a.level,
        threshold: a.threshold,
        first_triggered: a.first_triggered,
    }
}

impl Alert {
    fn open(level: Level, value: f64, t: &Thresholds, ts: DateTime<Utc>) -> Alert {
        Alert {
            id: None,
            level,
            value,
            threshold: t.of(level),
            first_triggered: ts,
            last_triggered: ts,
            count: 1,
            resolved: false,
            resolved_at: None,
            resolution_logged: false,
            last_reading_at: ts,
        }
    }

    /// Applies `readings` (value, time; in time order) to `stored`, the newest alert
    /// of this robot and metric.
    pub fn observe(
        stored: Option<Alert>,
        w: Watched,
        t: &Thresholds,
        policy: &Policy,
        readings: &[(f64, DateTime<Utc>)],
    ) -> Observed {
        let mut out = Observed {
            alert: stored,
            ..Observed::default()
        };
        for &(value, ts) in readings {
            if out.alert.as_ref().is_some_and(|a| ts <= a.last_reading_at) {
                continue; // a resend
            }
            let level = t.level(w, value);
            match (&mut out.alert, level) {
                (Some(a), Some(level)) if !a.resolved => {
                    if level > a.level {
                        a.level = level;
                        a.threshold = t.of(level);
                        out.events.push(event(Event::Escalated, value, ts, a));
                    }
                    a.count += 1;
                    a.value = value;
                    a.last_triggered = ts;
                }
                (Some(a), Some(level))
                    if level == a.level && ts - a.last_triggered <= policy.dedupe_window =>
                {
                    // Crossed again soon after resolving: the same alert, once more.
                    a.resolved = false;
                    a.count += 1;
                    a.value = value;
                    a.last_triggered = ts;
                }
                (_, Some(level)) => {
                    let new = Alert::open(level, value, t, ts);
                    out.events
                        .push(event(Event::Opened(level), value, ts, &new));
                    let old = out.alert.replace(new);
                    if let Some(old) = old.filter(|_| out.changed) {
                        out.replaced.push(old);
                    }
                }
                (Some(a), None)
                    if !a.resolved && t.recovered(w, value, policy.hysteresis_percent) =>
                {
                    a.resolved = true;
                    a.resolved_at = Some(ts);
                    if !a.resolution_logged {
                        a.resolution_logged = true;
                        out.events.push(event(Event::Resolved, value, ts, a));
                    }
                }
                _ => {}
            }
            if let Some(a) = &mut out.alert {
                a.last_reading_at = ts;
                out.changed = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_the_watched_metrics_at_their_discriminants() {
        // Readings index per-message arrays by `w as usize`.
        for (i, w) in Watched::ALL.into_iter().enumerate() {
            assert_eq!(w as usize, i);
        }
    }

    fn t0() -> DateTime<Utc> {
        "2026-11-22T09:00:00Z".parse().unwrap()
    }

    fn at(s: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(s)
    }

    const POLICY: Policy = Policy {
        dedupe_window: Duration::minutes(5),
        hysteresis_percent: 5.0,
    };

    fn run(w: Watched, t: Thresholds, readings: &[(f64, i64)]) -> Observed {
        let r: Vec<_> = readings.iter().map(|&(v, s)| (v, at(s))).collect();
        Alert::observe(None, w, &t, &POLICY, &r)
    }

    #[test]
    fn metrics_map_to_alerts() {
        assert_eq!(
            Watched::of_metric("system_info.cpu_percent"),
            Some(Watched::Cpu)
        );
        assert_eq!(
            Watched::of_metric("servos.servo_3.voltage"),
            Some(Watched::ServoVoltage)
        );
        assert_eq!(Watched::of_metric("servos.servo_3.position"), None);
        assert_eq!(
            Watched::of_metric("battery.percentage"),
            Some(Watched::Battery)
        );
        assert_eq!(Watched::ServoVoltage.worse(5.4, 5.1), 5.1);
        assert_eq!(
            Watched::of_name("servo_temp"),
            Some(Watched::ServoTemperature)
        );
        assert_eq!(Watched::of_name("cpu_high"), None);
    }

    #[test]
    fn the_most_specific_row_decides_and_disabled_means_none() {
        let pair = |warning, critical| Thresholds { warning, critical };
        let row = |w, c, enabled| ThresholdRow {
            thresholds: pair(w, c),
            enabled,
        };
        let builtin = pair(70.0, 90.0);
        assert_eq!(effective(None, None, builtin), Some(builtin));
        let fleet = Some(row(60.0, 80.0, true));
        assert_eq!(effective(None, fleet, builtin), Some(pair(60.0, 80.0)));
        let robot = Some(row(50.0, 85.0, true));
        assert_eq!(effective(robot, fleet, builtin), Some(pair(50.0, 85.0)));
        assert_eq!(
            effective(Some(row(50.0, 85.0, false)), fleet, builtin),
            None
        );
        assert_eq!(effective(None, Some(row(60.0, 80.0, false)), builtin), None);
    }

    #[test]
    fn titles_and_messages_are_tonypis() {
        assert_eq!(
            title(Watched::Cpu, "tonypi_01"),
            "High CPU Usage on tonypi_01"
        );
        assert_eq!(
            message(Watched::Cpu, 85.04, 70.0),
            "CPU usage is at 85.0% (threshold: 70%)"
        );
        assert_eq!(
            message(Watched::ServoVoltage, 5.123, 5.5),
            "Servo voltage is 5.12V (threshold: 5.5V)"
        );
    }

    #[test]
    fn battery_low_then_critical_then_recovers() {
        let t = Thresholds {
            warning: 30.0,
            critical: 15.0,
        };
        let o = run(
            Watched::Battery,
            t,
            &[
                (50.0, 0),
                (29.0, 1),
                (25.0, 2),
                (14.0, 3),
                (12.0, 4),
                (31.0, 5),
                (40.0, 6),
            ],
        );
        let events: Vec<Event> = o.events.iter().map(|e| e.event).collect();
        assert_eq!(
            events,
            vec![
                Event::Opened(Level::Warning),
                Event::Escalated,
                Event::Resolved
            ]
        );
        let a = o.alert.unwrap();
        // 31 % is within the 5 % band above 30 %: resolved only at 40 %.
        assert_eq!(
            (a.level, a.count, a.resolved_at),
            (Level::Critical, 4, Some(at(6)))
        );
        assert_eq!(a.threshold, 15.0);
    }

    #[test]
    fn flapping_inside_the_window_is_one_alert_with_a_rising_count() {
        let t = Thresholds {
            warning: 70.0,
            critical: 90.0,
        };
        let readings: Vec<(f64, i64)> = (0..60)
            .map(|s| (if s % 2 == 0 { 72.0 } else { 60.0 }, s))
            .collect();
        let o = run(Watched::Cpu, t, &readings);
        let events: Vec<Event> = o.events.iter().map(|e| e.event).collect();
        assert_eq!(events, vec![Event::Opened(Level::Warning), Event::Resolved]);
        let a = o.alert.unwrap();
        assert_eq!(a.count, 30);
        assert!(a.resolved);
    }

    #[test]
    fn resends_never_count_twice_and_late_crossings_open_anew() {
        let t = Thresholds {
            warning: 70.0,
            critical: 90.0,
        };
        let first = run(Watched::Cpu, t, &[(75.0, 0), (76.0, 1)]);
        let stored = first.alert.clone();
        let again = Alert::observe(
            stored.clone(),
            Watched::Cpu,
            &t,
            &POLICY,
            &[(75.0, at(0)), (76.0, at(1))],
        );
        assert!(!again.changed && again.events.is_empty());
        assert_eq!(again.alert, stored);
        // Resolved, then a crossing after the window: a new alert.
        let later = Alert::observe(
            stored,
            Watched::Cpu,
            &t,
            &POLICY,
            &[(50.0, at(2)), (80.0, at(2 + 301))],
        );
        let events: Vec<Event> = later.events.iter().map(|e| e.event).collect();
        assert_eq!(events, vec![Event::Resolved, Event::Opened(Level::Warning)]);
        assert_eq!(later.alert.unwrap().id, None);
        assert_eq!(later.replaced.len(), 1, "the resolution is stored too");
        assert!(later.replaced[0].resolved);
    }
}
