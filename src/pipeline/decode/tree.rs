//! The parsed payload: a JSON tree that borrows its keys and strings from the payload
//! (a string without escapes costs no allocation) and keeps an object's members in a
//! vector. serde_json's `Value` allocates a `String` per key and a B-tree per object, and
//! parsing into it was the largest part of decoding (BENCHMARKS.md, "Decoding without
//! `Value`"); decoders read a handful of fields, for which a linear search is enough.
//! Log details and command replies, which keep the payload, convert back to `Value`.
//!
//! Parsing stays serde_json's (`serde_json::from_str::<Json>`): the same grammar, the
//! same nesting limit (127 levels; 128 is refused) and the same rejection of NaN and
//! out-of-range numbers. One difference from `Value`: serde_json's `raw_value` feature
//! (on in this build, for axum and sqlx) makes `Value` treat an object whose first key
//! is `$serde_json::private::RawValue` as an embedded JSON text; here it is an ordinary
//! key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::model::repeats_earlier;

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in document order, each key once: a repeated key keeps its last
/// value, as serde_json's `Map` does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The member `key` of an object; `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?.get(key)
    }

    /// The same value as serde_json's `Value` (for what is stored as JSON).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(o.to_map(&[])),
        }
    }
}

impl<'a> Object<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// As serde_json's `Map`, without the members named in `except`.
    pub fn to_map(&self, except: &[&str]) -> Map<String, Value> {
        self.iter()
            .filter(|(k, _)| !except.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }

    /// Keeps the last of each repeated key: a member is dropped when a later one repeats
    /// its key (the earlier repeats of the reversed list).
    fn from_members(mut members: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        let n = members.len();
        let superseded = repeats_earlier(n, |i| &members[n - 1 - i].0);
        if superseded.contains(&true) {
            let mut i = n;
            members.retain(|_| {
                i -= 1;
                !superseded[i]
            });
        }
        Object(members)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Json<'de>, E> {
        // serde_json's parser rejects non-finite numbers before this; `Value` would
        // make one null, and so does this.
        Ok(Number::from_f64(x).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::new();
        // A key comes through this visitor too: borrowed when it has no escapes (serde's
        // own `Cow<str>` always copies). serde_json gives every key as a string.
        while let Some(key) = map.next_key::<Json<'de>>()? {
            let Json::String(k) = key else {
                return Err(A::Error::custom("an object key that is not a string"));
            };
            members.push((k, map.next_value()?));
        }
        Ok(Json::Object(Object::from_members(members)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn borrows_plain_strings_and_copies_escaped_ones() {
        let text = r#"{"plain":"abc","esc\"aped":"a\nb"}"#;
        let j = parse(text);
        let o = j.as_object().unwrap();
        let (k0, v0) = o.iter().next().unwrap();
        assert_eq!(k0, "plain");
        assert!(matches!(v0, Json::String(Cow::Borrowed("abc"))));
        assert!(matches!(o.0[1].0, Cow::Owned(ref k) if k == "esc\"aped"));
        assert_eq!(o.get("esc\"aped"), Some(&Json::String("a\nb".into())));
    }

    #[test]
    fn repeated_keys_keep_the_last_value_as_serde_json_does() {
        for n in [3usize, 40] {
            let mut text = String::from("{");
            for i in 0..n {
                text.push_str(&format!("\"k{}\":{i},", i % 3));
            }
            text.push_str("\"z\":true}");
            let j = parse(&text);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(j.to_value(), v, "{n} members");
            assert_eq!(j.as_object().unwrap().iter().count(), 4);
        }
    }

    #[test]
    fn numbers_keep_their_kind() {
        let text = r#"[42, -7, 1.5, 18446744073709551615, 1e300]"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text).to_value(), v);
        assert!(v[0].is_u64() && v[1].is_i64() && v[2].is_f64() && v[3].is_u64());
    }

    #[test]
    fn same_errors_as_value() {
        for bad in [r#"{"x": NaN}"#, r#"{"x": 1e400}"#, "[1,]", r#"{"a":1}x"#] {
            assert!(serde_json::from_str::<Json>(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_is_limited_below_128_levels_as_for_value() {
        let nested = |depth: usize, open: &str, close: &str| {
            format!("{}1{}", open.repeat(depth), close.repeat(depth))
        };
        for (open, close) in [("[", "]"), (r#"{"k":"#, "}")] {
            let ok = nested(127, open, close);
            assert!(serde_json::from_str::<Json>(&ok).is_ok(), "{open} x 127");
            assert!(serde_json::from_str::<Value>(&ok).is_ok(), "{open} x 127");
            let deep = nested(128, open, close);
            let e = serde_json::from_str::<Json>(&deep).unwrap_err();
            assert!(e.to_string().contains("recursion limit"), "{open}: {e}");
            assert!(
                serde_json::from_str::<Value>(&deep).is_err(),
                "{open} x 129"
            );
        }
    }

    #[test]
    fn serde_jsons_raw_value_key_is_an_ordinary_key() {
        let text = r#"{"$serde_json::private::RawValue":"[1,2]","x":1}"#;
        let j = parse(text);
        let o = j.as_object().unwrap();
        assert_eq!(o.get("x"), Some(&Json::Number(1.into())));
        assert_eq!(
            o.get("$serde_json::private::RawValue"),
            Some(&Json::String("[1,2]".into()))
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "[a-z\"\\\\ é\n]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(("[a-c\"]{0,2}", inner), 0..24).prop_map(|members| {
                    // Written out by hand below, so repeated keys reach the parser.
                    Value::Array(
                        members
                            .into_iter()
                            .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Writes `v` as JSON, except that an array of [key, value] pairs built by
    /// `arb_json` is written as an object with those members, repeats included.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Array(items)
                if !items.is_empty()
                    && items.iter().all(
                        |p| matches!(p, Value::Array(kv) if kv.len() == 2 && kv[0].is_string()),
                    ) =>
            {
                out.push('{');
                for (i, p) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&p[0].to_string());
                    out.push(':');
                    write(&p[1], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    proptest! {
        #[test]
        fn parses_as_value_does(v in arb_json()) {
            let mut text = String::new();
            write(&v, &mut text);
            let expected: Value = serde_json::from_str(&text).unwrap();
            let j: Json = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(j.to_value(), expected);
        }
    }
}
