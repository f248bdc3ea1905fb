//! The catalogue and the normalizer agree: every field the normalizer can emit is
//! in the catalogue with a matching JSON type, and every catalogue field can be
//! emitted. The README's field table is the generated one.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use sophos_tac::mapping::{Convert, EcsType, Field, Profile, Source};
use sophos_tac::{LineOutcome, Normalizer, catalogue};

/// Flattens a document into dotted leaf paths.
fn leaves(v: &Value, prefix: &str, profile: &Profile, out: &mut BTreeMap<String, Value>) {
    let here = prefix.trim_end_matches('.');
    let object_field = profile
        .field(here)
        .is_some_and(|f| f.ecs_type == EcsType::Object);
    match v {
        Value::Object(map) if !object_field => {
            for (k, child) in map {
                leaves(child, &format!("{prefix}{k}."), profile, out);
            }
        }
        other => {
            out.insert(here.to_string(), other.clone());
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
        EcsType::Boolean => v.is_boolean(),
        EcsType::Float => v.is_number(),
        // A nested JSON string that does not parse stays a string (with a warning).
        EcsType::Object => v.is_object() || v.is_string(),
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
            Source::Key(_, Convert::Integer) | Source::FirstKey(_, Convert::Integer) => json!(3),
            Source::Key(_, Convert::Number) => json!(4.5),
            Source::Key(_, Convert::Bool) => json!("1"),
            Source::Key(_, Convert::Time) => json!("2024-01-02T03:04:05Z"),
            Source::Key(_, Convert::DayFirstTime) => json!("02/01/2024 03:04:05"),
            Source::Key(_, Convert::Object) => json!("{\"a\":1}"),
            Source::Key(_, Convert::StringList) => json!("[\"x\",\"y\"]"),
            Source::Key(_, Convert::OsType) => json!("windows"),
            Source::Key(
                _,
                Convert::TechniqueIds
                | Convert::TechniqueNames
                | Convert::TacticIds
                | Convert::TacticNames,
            ) => {
                json!(
                    "[{\"tactic\":{\"id\":\"TA0002\",\"name\":\"Execution\",\"techniques\":[{\"id\":\"T1059\",\"name\":\"Cmd\"}]}}]"
                )
            }
            Source::FirstKey(
                _,
                Convert::FilePath
                | Convert::FileName
                | Convert::Directory
                | Convert::CommandLine
                | Convert::Args,
            ) => json!("C:\\dir\\a.exe -x"),
            Source::Nested(_, path, _) => {
                let mut v = json!("nested value");
                for k in path.iter().rev() {
                    v = match k.parse::<usize>() {
                        Ok(_) => json!([v]),
                        Err(_) => json!({ *k: v }),
                    };
                }
                v
            }
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

fn normalize_all(profile: &Profile, lines: &[String]) -> Vec<Value> {
    let n = Normalizer::new(profile.clone());
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
    for profile in Profile::NAMES.iter().map(|n| Profile::by_name(n).unwrap()) {
        check_catalogue(&profile);
    }
}

fn check_catalogue(profile: &Profile) {
    let mut lines = vec![full_row(profile).to_string()];
    match profile.name().strip_prefix("siem-") {
        Some(stream) => lines.extend(crate::common::siem_items(stream)),
        None => lines.extend(crate::common::fixture_lines()),
    }
    let docs = normalize_all(profile, &lines);
    assert!(docs.len() >= 9);

    let mut seen = BTreeMap::new();
    for doc in &docs {
        let mut flat = BTreeMap::new();
        leaves(doc, "", profile, &mut flat);
        for (path, value) in flat {
            let field = profile.field(&path).unwrap_or_else(|| {
                panic!(
                    "{}: {path} is emitted but not in the catalogue",
                    profile.name()
                )
            });
            assert!(
                json_type_ok(field, &value),
                "{path}: {value} does not fit {}",
                field.ecs_type
            );
            seen.insert(path, ());
        }
    }
    let catalogue = catalogue::json(profile);
    for f in catalogue["fields"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        assert!(
            seen.contains_key(name),
            "{}: {name} is in the catalogue but never emitted",
            profile.name()
        );
    }
    assert_eq!(seen.len(), profile.fields().len());
}

#[test]
fn index_template_types_every_field() {
    for profile in Profile::NAMES.iter().map(|n| Profile::by_name(n).unwrap()) {
        check_template(&profile);
    }
}

fn check_template(profile: &Profile) {
    let template = catalogue::index_template(profile, &Default::default());
    for f in profile.fields() {
        let mut node = &template["template"]["mappings"];
        for segment in f.name.split('.') {
            node = &node["properties"][segment];
        }
        assert_eq!(node["type"], f.ecs_type.name(), "{}", f.name);
    }
}

#[test]
fn readme_field_tables_are_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fields.md");
    let mut readme = std::fs::read_to_string(&path).unwrap();
    let mut stale = Vec::new();
    for (marker, profile) in [
        ("fields", Profile::documented()),
        ("fields-extended", Profile::extended()),
        ("fields-siem-alert", Profile::siem_alert()),
        ("fields-siem-event", Profile::siem_event()),
    ] {
        let (begin, end) = (
            format!("<!-- {marker}:begin -->\n"),
            format!("<!-- {marker}:end -->"),
        );
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("README has a {marker}:begin marker"))
            + begin.len();
        let stop = readme[start..]
            .find(&end)
            .unwrap_or_else(|| panic!("README has a {marker}:end marker"))
            + start;
        let table = catalogue::markdown(&profile);
        if readme[start..stop] != table {
            stale.push(marker);
            readme.replace_range(start..stop, &table);
        }
    }
    if !stale.is_empty() {
        if std::env::var_os("SOPHOS_TAC_BLESS").is_some() {
            std::fs::write(&path, readme).unwrap();
        } else {
            panic!(
                "README field tables {stale:?} are out of date; run `SOPHOS_TAC_BLESS=1 cargo test --test it catalogue::` to regenerate them"
            );
        }
    }
}
