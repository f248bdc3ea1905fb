//! The integration page's three samples: output must equal `expected` as JSON,
//! with the same key order.

use std::path::Path;

use serde_json::Value;
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

/// Every object key path, in document order.
fn key_order(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = format!("{prefix}{k}");
            out.push(path.clone());
            key_order(child, &format!("{path}."), out);
        }
    }
}

fn normalize(line: &str) -> Value {
    let n = Normalizer::new(Profile::documented());
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    assert_eq!(
        n.normalize_line(line.as_bytes(), &mut out, &mut w),
        LineOutcome::Normalized
    );
    assert_eq!(w.total(), 0, "the samples raise no warning");
    assert_eq!(out.last(), Some(&b'\n'));
    serde_json::from_slice(&out).expect("output is one JSON document")
}

fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/documented")
        .join(name);
    let sample: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let expected = &sample["expected"];

    // As an envelope, the way the page's samples are given.
    let envelope = serde_json::to_string(&sample["input"]).unwrap();
    let got = normalize(&envelope);
    assert_eq!(&got, expected, "{name}: envelope output differs");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    key_order(&got, "", &mut a);
    key_order(expected, "", &mut b);
    assert_eq!(a, b, "{name}: key order differs");

    // As the raw row the Data Lake returns: the same document.
    let raw = sample["input"]["message"].as_str().unwrap();
    assert_eq!(&normalize(raw), expected, "{name}: raw-row output differs");
}

#[test]
fn golden_ioc_view_query() {
    check("ioc_view_query.json");
}

#[test]
fn golden_ioc_view_query1() {
    check("ioc_view_query1.json");
}

#[test]
fn golden_ioc_view_query2() {
    check("ioc_view_query2.json");
}
