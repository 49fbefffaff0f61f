//! `sensor` routes (`tonypi/sensors/{rid}`): one reading per message, named by
//! `sensor_type`, with its unit (ASCII or Unicode) kept.

use super::Message;
use super::json::{number, str_field};
use crate::model::{Decoded, Reason, Unusable};

pub(super) fn decode(msg: &Message, out: &mut Decoded) -> Result<(), Unusable> {
    let Some(name) = str_field(msg.obj, &["sensor_type", "sensor", "name"]) else {
        return Err(Unusable::new(
            Reason::InvalidValue,
            "sensor reading without sensor_type",
        ));
    };
    let Some(value) = msg.obj.get("value").and_then(number) else {
        return Err(Unusable::new(
            Reason::InvalidValue,
            format!("sensor {name:?}: value is missing or not a number"),
        ));
    };
    let name = match &msg.route.metric_prefix {
        Some(p) => format!("{p}.{name}"),
        None => name,
    };
    out.push_metric(name, value, str_field(msg.obj, &["unit"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;
    use crate::model::TsSource;

    #[test]
    fn sensor_keeps_unit_in_unicode() {
        let d = run(
            "tonypi/sensors/tonypi_1",
            r#"{"sensor_type":"cpu_temperature","value":48.3,"unit":"°C","timestamp":1763803800}"#,
        )
        .unwrap();
        assert_eq!(d.metrics.len(), 1);
        assert_eq!(d.metrics[0].name, "cpu_temperature");
        assert_eq!(d.metrics[0].unit.as_deref(), Some("°C"));
        assert_eq!(
            d.ts_source,
            TsSource::Skewed,
            "2025 epoch is a year off the 2026 receive time"
        );
    }
}
