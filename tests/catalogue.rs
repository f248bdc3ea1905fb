//! The catalogue and the normalizer agree: every field the normalizer can emit is
//! in the catalogue with a matching JSON type, and every catalogue field can be
//! emitted. The README's field table is the generated one.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use sophos_tac::mapping::{Convert, EcsType, Field, Profile, Source};
use sophos_tac::{LineOutcome, Normalizer, catalogue};

/// Flattens a document into dotted leaf paths.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                leaves(child, &format!("{prefix}{k}."), out);
            }
        }
        other => {
            out.insert(prefix.trim_end_matches('.').to_string(), other.clone());
        }
    }
}

fn json_type_ok(field: &Field, v: &Value) -> bool {
    let scalar = |v: &Value| match field.ecs_type {
        EcsType::Long => v.is_i64(),
        EcsType::Date => v
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        EcsType::Ip => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        _ => v.is_string(),
    };
    if field.array {
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(scalar))
    } else {
        scalar(v)
    }
}

/// A row in which every key the profile reads has a valid value.
fn full_row(profile: &Profile) -> Value {
    let mut row = json!({});
    for f in profile.fields() {
        let value = match f.source {
            Source::Key(_, Convert::Integer) => json!(3),
            Source::Key(_, Convert::IpAddress) => json!("192.0.2.1"),
            Source::Key(_, Convert::Strip2) => json!("[\"https://example.com/x\"]"),
            Source::FirstTime(_) => json!("2024-01-02T03:04:05.5Z"),
            _ => json!(format!("value of {}", f.name)),
        };
        for key in f.row_keys() {
            row.as_object_mut()
                .unwrap()
                .entry(key)
                .or_insert(value.clone());
        }
    }
    row
}

fn normalize_all(lines: &[String]) -> Vec<Value> {
    let n = Normalizer::new(Profile::documented());
    let mut docs = Vec::new();
    for line in lines {
        let mut out = Vec::new();
        let mut w = n.new_warnings();
        if n.normalize_line(line.as_bytes(), &mut out, &mut w) == LineOutcome::Normalized {
            docs.push(serde_json::from_slice(&out).unwrap());
        }
    }
    docs
}

#[test]
fn every_emitted_field_is_catalogued_with_its_type_and_the_reverse() {
    let profile = Profile::documented();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut lines = vec![full_row(&profile).to_string()];
    lines.extend(
        std::fs::read_to_string(root.join("examples/detections.ndjson"))
            .unwrap()
            .lines()
            .map(String::from),
    );
    for entry in std::fs::read_dir(root.join("tests/golden/documented")).unwrap() {
        let sample: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        lines.push(sample["input"].to_string());
    }
    let docs = normalize_all(&lines);
    assert!(docs.len() >= 9);

    let mut seen = BTreeMap::new();
    for doc in &docs {
        let mut flat = BTreeMap::new();
        leaves(doc, "", &mut flat);
        for (path, value) in flat {
            let field = profile
                .field(&path)
                .unwrap_or_else(|| panic!("{path} is emitted but not in the catalogue"));
            assert!(
                json_type_ok(field, &value),
                "{path}: {value} does not fit {}",
                field.ecs_type
            );
            seen.insert(path, ());
        }
    }
    let catalogue = catalogue::json(&profile);
    for f in catalogue["fields"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        assert!(
            seen.contains_key(name),
            "{name} is in the catalogue but never emitted"
        );
    }
    assert_eq!(seen.len(), profile.fields().len());
}

#[test]
fn index_template_types_every_field() {
    let profile = Profile::documented();
    let template = catalogue::index_template(&profile, &Default::default());
    for f in profile.fields() {
        let mut node = &template["template"]["mappings"];
        for segment in f.name.split('.') {
            node = &node["properties"][segment];
        }
        assert_eq!(node["type"], f.ecs_type.name(), "{}", f.name);
    }
}

#[test]
fn readme_field_table_is_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- fields:begin -->\n", "<!-- fields:end -->");
    let start = readme
        .find(begin)
        .expect("README has a fields:begin marker")
        + begin.len();
    let stop = readme[start..]
        .find(end)
        .expect("README has a fields:end marker")
        + start;
    let table = catalogue::markdown(&Profile::documented());
    if readme[start..stop] != table {
        if std::env::var_os("SOPHOS_TAC_BLESS").is_some() {
            std::fs::write(
                &path,
                format!("{}{}{}", &readme[..start], table, &readme[stop..]),
            )
            .unwrap();
        } else {
            panic!(
                "README field table is out of date; run `SOPHOS_TAC_BLESS=1 cargo test --test catalogue` to regenerate it"
            );
        }
    }
}
