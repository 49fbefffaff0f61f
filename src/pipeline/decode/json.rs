//! Reading values out of a JSON payload: numeric leaves, fields under alternative
//! names (robot versions drift: `percent` or `progress_percent`), type names for errors.

use super::tree::{Json, Object};

/// Fields that identify the message rather than measure anything.
const NOT_METRICS: [&str; 2] = ["robot_id", "timestamp"];

pub fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Calls `emit(name, value)` for every numeric or boolean leaf, in document order,
/// naming it `prefix.key.subkey`. Arrays and strings are skipped; at the top level so
/// are `robot_id` and `timestamp`. Depth is bounded by serde_json's nesting limit.
pub fn flatten_numbers(obj: &Object, prefix: &str, emit: &mut dyn FnMut(String, f64)) {
    for (k, v) in obj.iter() {
        if prefix.is_empty() && NOT_METRICS.contains(&k) {
            continue;
        }
        // Not format!: this runs for every value of every message.
        let mut name = String::with_capacity(prefix.len() + 1 + k.len());
        if !prefix.is_empty() {
            name.push_str(prefix);
            name.push('.');
        }
        name.push_str(k);
        match v {
            Json::Object(inner) => flatten_numbers(inner, &name, emit),
            other => {
                if let Some(x) = number(other) {
                    emit(name, x);
                }
            }
        }
    }
}

/// A finite number, or a boolean as 0/1.
pub fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Json::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// The first of `keys` holding a non-empty string (or a number, as text).
pub fn str_field(obj: &Object, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(k) {
        Some(Json::String(s)) if !s.is_empty() => Some(s.to_string()),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The first of `keys` holding a number (or a boolean as 0/1).
pub fn num_field(obj: &Object, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| obj.get(k).and_then(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_and_skips() {
        let v: Json = serde_json::from_str(
            r#"{"robot_id":"r","timestamp":1,"a":{"b":2,"c":true,"d":"x","e":[1]},"f":1.5}"#,
        )
        .unwrap();
        let mut got = Vec::new();
        flatten_numbers(v.as_object().unwrap(), "", &mut |n, x| got.push((n, x)));
        assert_eq!(
            got,
            vec![("a.b".into(), 2.0), ("a.c".into(), 1.0), ("f".into(), 1.5)]
        );
    }

    #[test]
    fn flatten_under_empty_keys_and_a_prefix() {
        // An object under an empty top-level key is read as the top level (its
        // robot_id skipped, its keys unprefixed); an empty key below names "b.".
        let v: Json =
            serde_json::from_str(r#"{"":{"robot_id":1,"a":2},"b":{"":3,"c":{"d":4}}}"#).unwrap();
        let mut got = Vec::new();
        flatten_numbers(v.as_object().unwrap(), "", &mut |n, x| got.push((n, x)));
        assert_eq!(
            got,
            vec![("a".into(), 2.0), ("b.".into(), 3.0), ("b.c.d".into(), 4.0)]
        );
        let mut got = Vec::new();
        flatten_numbers(v.as_object().unwrap(), "p", &mut |n, x| got.push((n, x)));
        assert_eq!(
            got,
            vec![
                ("p..robot_id".into(), 1.0),
                ("p..a".into(), 2.0),
                ("p.b.".into(), 3.0),
                ("p.b.c.d".into(), 4.0)
            ]
        );
    }

    #[test]
    fn fields_under_alternative_names() {
        let v: Json = serde_json::from_str(r#"{"percent":13.3,"qr_code":"Q","n":7}"#).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(num_field(o, &["progress_percent", "percent"]), Some(13.3));
        assert_eq!(
            str_field(o, &["qr", "qr_data", "qr_code"]).as_deref(),
            Some("Q")
        );
        assert_eq!(str_field(o, &["n"]).as_deref(), Some("7"));
        assert_eq!(str_field(o, &["missing"]), None);
    }
}
