//! Comparing our JSON with upstream's captured answers by *shape*: the same keys in the same
//! order and the same JSON types, recursively (values such as ports, hostnames and times vary).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::path::PathBuf;

/// A JSON value that remembers key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
                Ok(Json::Bool(value))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
                Ok(Json::Number(value as f64))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
                Ok(Json::Number(value as f64))
            }
            fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
                Ok(Json::Number(value))
            }
            fn visit_str<E>(self, value: &str) -> Result<Json, E> {
                Ok(Json::String(value.to_owned()))
            }
            fn visit_string<E>(self, value: String) -> Result<Json, E> {
                Ok(Json::String(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    entries.push((key, value));
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

pub(crate) fn parse(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// One captured upstream exchange from `shared/fixtures/nsqadmin/`.
pub(crate) struct Fixture {
    pub name: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub nsq_content_type: Option<String>,
    pub body: String,
}

pub(crate) fn fixture(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/nsqadmin")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("fixture {}: {err}", path.display()));
    let raw: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let header = |key: &str| raw["headers"][key].as_str().map(str::to_owned);
    Fixture {
        name: name.to_owned(),
        status: raw["status"].as_u64().expect("status") as u16,
        content_type: header("Content-Type"),
        nsq_content_type: header("X-NSQ-Content-Type"),
        body: raw["body"].as_str().expect("body").to_owned(),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Differences between `ours` and `theirs` (upstream): key lists (in order) and types must
/// match; array elements are compared position by position (the last upstream element stands
/// in for extra ones); an empty array on either side matches any array.
pub(crate) fn shape_diff(ours: &Json, theirs: &Json, path: &str, diffs: &mut Vec<String>) {
    match (ours, theirs) {
        (Json::Object(ours), Json::Object(theirs)) => {
            let our_keys: Vec<&str> = ours.iter().map(|(key, _)| key.as_str()).collect();
            let their_keys: Vec<&str> = theirs.iter().map(|(key, _)| key.as_str()).collect();
            if our_keys != their_keys {
                diffs.push(format!(
                    "{path}: keys {our_keys:?} != upstream {their_keys:?}"
                ));
                return;
            }
            for ((key, mine), (_, upstream)) in ours.iter().zip(theirs) {
                shape_diff(mine, upstream, &format!("{path}.{key}"), diffs);
            }
        }
        (Json::Array(ours), Json::Array(theirs)) => {
            if ours.is_empty() || theirs.is_empty() {
                return;
            }
            for (index, mine) in ours.iter().enumerate() {
                let upstream = &theirs[index.min(theirs.len() - 1)];
                shape_diff(mine, upstream, &format!("{path}[{index}]"), diffs);
            }
        }
        (ours, theirs) if kind(ours) == kind(theirs) => {}
        (ours, theirs) => diffs.push(format!(
            "{path}: {} != upstream {}",
            kind(ours),
            kind(theirs)
        )),
    }
}

pub(crate) fn assert_same_shape(ours: &str, fixture: &Fixture) {
    let mut diffs = Vec::new();
    shape_diff(&parse(ours), &parse(&fixture.body), "$", &mut diffs);
    assert!(
        diffs.is_empty(),
        "{} shape differs:\n{}\nours: {ours}",
        fixture.name,
        diffs.join("\n")
    );
}

#[test]
fn shape_rules() {
    let mut diffs = Vec::new();
    shape_diff(
        &parse(r#"{"a":1,"b":[{"x":"s"}],"c":null}"#),
        &parse(r#"{"a":2,"b":[{"x":"t"},{"x":"u"}],"c":null}"#),
        "$",
        &mut diffs,
    );
    assert!(diffs.is_empty(), "{diffs:?}");
    shape_diff(
        &parse(r#"{"b":1,"a":1}"#),
        &parse(r#"{"a":1,"b":1}"#),
        "$",
        &mut diffs,
    );
    assert_eq!(diffs.len(), 1, "key order matters");
    diffs.clear();
    shape_diff(&parse(r#"[1]"#), &parse(r#"["1"]"#), "$", &mut diffs);
    assert_eq!(diffs.len(), 1, "types matter");
}
