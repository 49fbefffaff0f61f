//! `vision` routes (`tonypi/vision/{rid}`): numeric leaves as metrics, and a log row
//! when something was detected.

use super::Message;
use super::json::{flatten_numbers, num_field, str_field};
use super::tree::Json;
use crate::model::Decoded;

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let prefix = msg.route.metric_prefix.as_deref().unwrap_or_default();
    flatten_numbers(msg.obj, prefix, &mut |name, value| {
        out.push_metric(name, value, None);
    });
    if msg.obj.get("detection").and_then(Json::as_bool) != Some(true) {
        return;
    }
    let label = str_field(msg.obj, &["label"]).unwrap_or_else(|| "object".into());
    let message = match num_field(msg.obj, &["confidence"]) {
        Some(c) => format!("detected {label} (confidence {c:.2})"),
        None => format!("detected {label}"),
    };
    let category = msg
        .route
        .category
        .clone()
        .unwrap_or_else(|| "vision".into());
    let row = msg.log_row(out, "INFO", category, "vision".into(), message);
    out.logs.push(row);
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;

    #[test]
    fn detections_log_and_measure() {
        let d = run(
            "tonypi/vision/r1",
            r#"{"detection":true,"label":"ball","confidence":0.875,"center_x":320,"bbox":[1,2,3,4]}"#,
        )
        .unwrap();
        let mut names: Vec<_> = d.metrics.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec!["vision.center_x", "vision.confidence", "vision.detection"]
        );
        assert_eq!(d.logs[0].message, "detected ball (confidence 0.88)");
        let d = run("tonypi/vision/r1", r#"{"detection":false}"#).unwrap();
        assert!(d.logs.is_empty());
    }
}
