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

fn normalize_with(profile: Profile, line: &str) -> Option<Value> {
    let n = Normalizer::new(profile);
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    (n.normalize_line(line.as_bytes(), &mut out, &mut w) == LineOutcome::Normalized)
        .then(|| serde_json::from_slice(&out).unwrap())
}

/// Our own rows (Windows registry, logon, process, file; Linux; macOS; odd values)
/// through `--profile extended`: equal to `tests/golden/extended/expected.ndjson`,
/// key order included.
#[test]
fn golden_extended() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/extended");
    let input = std::fs::read_to_string(dir.join("input.ndjson")).unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.ndjson")).unwrap();
    let inputs: Vec<&str> = input.lines().collect();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(inputs.len(), expected.len());
    for (i, (line, want)) in inputs.iter().zip(expected).enumerate() {
        let got = normalize_with(Profile::extended(), line).unwrap();
        let want: Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, want, "row {}", i + 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key_order(&got, "", &mut a);
        key_order(&want, "", &mut b);
        assert_eq!(a, b, "row {}: key order", i + 1);
    }
}

/// `extended` is a superset of `documented`: every documented field keeps its name
/// and value, except that registry fields (and the `[""]` placeholder) appear only
/// for rows with a registry `key`.
#[test]
fn extended_is_a_superset_of_documented() {
    let lines = crate::common::fixture_lines();
    let mut compared = 0;
    for line in &lines {
        let (Some(doc), Some(ext)) = (
            normalize_with(Profile::documented(), line),
            normalize_with(Profile::extended(), line),
        ) else {
            continue;
        };
        let row: Value = serde_json::from_str(line).unwrap();
        let row = match row["message"].as_str() {
            Some(m) if m.starts_with('{') => serde_json::from_str(m).unwrap(),
            _ => row,
        };
        let registry_row = row.get("key").is_some_and(|k| !k.is_null());
        for (field, value) in crate::common::leaves(&doc) {
            let got = field.split('.').try_fold(&ext, |v, k| v.get(k));
            let placeholder = field == "registry.data.strings" && value == serde_json::json!([""]);
            if placeholder || (field.starts_with("registry.") && !registry_row) {
                assert_eq!(
                    got, None,
                    "{field}: no placeholder, no registry fields without registry data"
                );
            } else if field != "@timestamp" || row.get("calendar_time").is_some() {
                assert_eq!(got, Some(&value), "{field} differs in extended");
                compared += 1;
            }
        }
    }
    assert!(compared > 150);
}
