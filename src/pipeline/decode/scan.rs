//! `scan` routes (`tonypi/scan/{rid}`): a log row (category `scan`), and the scanned item
//! for the robot's active job (`last_item`). Field names drift: `qr`, `qr_data` or
//! `qr_code`; `station` or `station_name`.

use serde_json::{Map, Value};

use super::Message;
use super::json::str_field;
use crate::model::Decoded;

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let qr = str_field(msg.obj, &["qr", "qr_data", "qr_code"]);
    let station = str_field(msg.obj, &["station", "station_name"]);
    let message = match (&qr, &station) {
        (Some(q), Some(s)) => format!("scanned {q} at {s}"),
        (Some(q), None) => format!("scanned {q}"),
        (None, Some(s)) => format!("scan at {s}"),
        (None, None) => "scan".to_string(),
    };
    let mut item = Map::new();
    if let Some(q) = qr {
        item.insert("qr".into(), Value::String(q));
    }
    if let Some(s) = station {
        item.insert("station".into(), Value::String(s));
    }
    item.insert("timestamp".into(), Value::String(out.ts.to_rfc3339()));
    out.scan = Some(Value::Object(item));
    let row = msg.log_row(out, "INFO", "scan".into(), "scanner".into(), message);
    out.logs.push(row);
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;

    #[test]
    fn scans_accept_every_field_name() {
        let d = run(
            "tonypi/scan/tonypi_1",
            r#"{"qr_code":"QR1","station_name":"A"}"#,
        )
        .unwrap();
        assert_eq!(d.logs[0].message, "scanned QR1 at A");
        assert_eq!(d.scan.as_ref().unwrap()["qr"], "QR1");
        let d = run("tonypi/scan/tonypi_1", r#"{"qr":"QR2"}"#).unwrap();
        assert_eq!(d.logs[0].message, "scanned QR2");
    }
}
