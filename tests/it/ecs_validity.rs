//! ECS validity of every profile (`documented`, `extended`, `siem-alert`,
//! `siem-event`): every field emitted outside the vendor's own `sophos.*` /
//! `sophos_central.*` exists in ECS 9.4.0 with a compatible JSON type (lists only
//! where ECS says `array`), and categorization values are ECS allowed values.
//!
//! The reference is `../shared/ecs/fields.csv` and `allowed_values.json` when present;
//! otherwise the compact table `tests/data/ecs-9.4.0-subset.tsv`, generated from them
//! (regenerate with `SOPHOS_TAC_BLESS=1 cargo test --test it ecs_validity::`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sophos_tac::mapping::{EcsType, Profile};
use sophos_tac::{LineOutcome, Normalizer};

const VERSION: &str = "9.4.0";
const CATEGORIZATION: &[&str] = &[
    "event.kind",
    "event.category",
    "event.type",
    "event.outcome",
];

#[derive(Debug, Clone, PartialEq)]
struct EcsField {
    ty: String,
    array: bool,
}

#[derive(Debug, Default, PartialEq)]
struct Reference {
    fields: BTreeMap<String, EcsField>,
    allowed: BTreeMap<String, Vec<String>>,
}

fn compact_path() -> PathBuf {
    crate::common::root().join(format!("tests/data/ecs-{VERSION}-subset.tsv"))
}

/// Every profile.
fn profiles() -> Vec<Profile> {
    Profile::NAMES
        .iter()
        .map(|n| Profile::by_name(n).unwrap())
        .collect()
}

/// A vendor field, outside ECS: `sophos.*` (Data Lake) and `sophos_central.*` (SIEM).
fn vendor(name: &str) -> bool {
    name.starts_with("sophos.") || name.starts_with("sophos_central.")
}

/// The fields our profiles can emit outside the vendor's fields.
fn our_fields() -> Vec<String> {
    let mut names: Vec<String> = profiles()
        .iter()
        .flat_map(|p| p.fields().iter().map(|f| f.name.to_string()))
        .filter(|n| !vendor(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn from_shared(dir: &Path) -> Reference {
    let mut reader = csv::Reader::from_path(dir.join("fields.csv")).unwrap();
    let mut all = BTreeMap::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        assert_eq!(&rec[0], VERSION, "fields.csv is ECS {VERSION}");
        all.insert(
            rec[3].to_string(),
            EcsField {
                ty: rec[4].to_string(),
                array: &rec[6] == "array",
            },
        );
    }
    let allowed_json: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("allowed_values.json")).unwrap())
            .unwrap();
    let mut r = Reference::default();
    for name in our_fields() {
        if let Some(f) = all.get(&name) {
            r.fields.insert(name, f.clone());
        }
    }
    for name in CATEGORIZATION {
        if let Some(v) = allowed_json.get(*name) {
            r.allowed.insert(name.to_string(), v.clone());
        }
    }
    r
}

fn to_tsv(r: &Reference) -> String {
    let mut s = format!(
        "# ECS {VERSION}: the fields sophos-tac emits outside sophos.*, and allowed categorization values.\n# Generated from shared/ecs/fields.csv and allowed_values.json by tests/it/ecs_validity.rs.\n"
    );
    for (name, f) in &r.fields {
        s += &format!(
            "field\t{name}\t{}\t{}\n",
            f.ty,
            if f.array { "array" } else { "" }
        );
    }
    for (name, values) in &r.allowed {
        s += &format!("allowed\t{name}\t{}\n", values.join(","));
    }
    s
}

fn from_tsv(text: &str) -> Reference {
    let mut r = Reference::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols[0] {
            "field" => {
                r.fields.insert(
                    cols[1].to_string(),
                    EcsField {
                        ty: cols[2].to_string(),
                        array: cols.get(3) == Some(&"array"),
                    },
                );
            }
            "allowed" => {
                r.allowed.insert(
                    cols[1].to_string(),
                    cols[2].split(',').map(String::from).collect(),
                );
            }
            other => panic!("bad line kind {other}"),
        }
    }
    r
}

fn reference() -> Reference {
    let compact = std::fs::read_to_string(compact_path()).unwrap_or_default();
    if let Some(shared) = crate::common::shared("ecs") {
        let r = from_shared(&shared);
        let generated = to_tsv(&r);
        if generated != compact {
            if std::env::var_os("SOPHOS_TAC_BLESS").is_some() {
                std::fs::write(compact_path(), &generated).unwrap();
            } else {
                panic!(
                    "{} is out of date: run `SOPHOS_TAC_BLESS=1 cargo test --test it ecs_validity::`",
                    compact_path().display()
                );
            }
        }
        r
    } else {
        eprintln!(
            "../shared/ecs is absent: using {}",
            compact_path().display()
        );
        from_tsv(&compact)
    }
}

fn compatible(ecs: &str, v: &Value) -> bool {
    match ecs {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => v.is_i64() || v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "date" => v
            .as_str()
            .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
        "ip" => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        "object" | "flattened" | "nested" => v.is_object(),
        _ => false,
    }
}

fn declared_compatible(ours: EcsType, ecs: &str) -> bool {
    matches!(
        (ours, ecs),
        (
            EcsType::Keyword | EcsType::Stored,
            "keyword" | "constant_keyword"
        ) | (EcsType::Wildcard, "wildcard" | "keyword")
            | (EcsType::Text, "match_only_text" | "text")
            | (EcsType::Long, "long")
            | (EcsType::Float, "float")
            | (EcsType::Date, "date")
            | (EcsType::Ip, "ip")
            | (EcsType::Boolean, "boolean")
            | (EcsType::Object, "object" | "flattened")
    )
}

fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        // sophos.* is ours, checked by the catalogue test.
        _ if prefix == "sophos." || prefix == "sophos_central." => {}
        Value::Object(map) => map
            .iter()
            .for_each(|(k, c)| leaves(c, &format!("{prefix}{k}."), out)),
        other => out.push((prefix.trim_end_matches('.').to_string(), other.clone())),
    }
}

/// Every input line of our fixtures, plus the shared sample rows when present.
fn fixture_lines(profile: &Profile) -> Vec<String> {
    if let Some(stream) = profile.name().strip_prefix("siem-") {
        return crate::common::siem_items(stream);
    }
    let mut lines = crate::common::fixture_lines();
    if let Some(dir) = crate::common::shared("golden/sekoia-current") {
        lines.extend(
            crate::common::samples(&dir)
                .into_iter()
                .map(|(_, s)| s["input"].to_string()),
        );
    }
    lines
}

#[test]
fn every_field_outside_sophos_is_valid_ecs() {
    let r = reference();
    for profile in profiles() {
        for f in profile.fields().iter().filter(|f| !vendor(f.name)) {
            let ecs = r.fields.get(f.name).unwrap_or_else(|| {
                panic!(
                    "{}: {} is not an ECS {VERSION} field",
                    profile.name(),
                    f.name
                )
            });
            assert!(
                declared_compatible(f.ecs_type, &ecs.ty),
                "{}: declared {} but ECS says {}",
                f.name,
                f.ecs_type,
                ecs.ty
            );
            assert!(
                !f.array || ecs.array,
                "{}: a list, but ECS does not say array",
                f.name
            );
        }
        let n = Normalizer::new(profile.clone());
        let mut checked = 0;
        for line in fixture_lines(&profile) {
            let mut out = Vec::new();
            let mut w = n.new_warnings();
            if n.normalize_line(line.as_bytes(), &mut out, &mut w) != LineOutcome::Normalized {
                continue;
            }
            let doc: Value = serde_json::from_slice(&out).unwrap();
            let mut flat = Vec::new();
            leaves(&doc, "", &mut flat);
            for (name, value) in flat.into_iter().filter(|(n, _)| !vendor(n)) {
                let ecs = r.fields.get(&name).unwrap_or_else(|| {
                    panic!("{}: emitted {name}, not an ECS field", profile.name())
                });
                let items: Vec<&Value> = match &value {
                    Value::Array(items) => {
                        assert!(ecs.array, "{name}: emitted a list, ECS says not array");
                        items.iter().collect()
                    }
                    v => vec![v],
                };
                for item in items {
                    assert!(
                        compatible(&ecs.ty, item),
                        "{name}: {item} is not a valid {}",
                        ecs.ty
                    );
                    if let Some(allowed) = r.allowed.get(&name) {
                        assert!(
                            allowed.iter().any(|a| Some(a.as_str()) == item.as_str()),
                            "{name}: {item} is not an ECS allowed value"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "{}: checked {checked} values", profile.name());
    }
}

#[test]
fn compact_table_round_trips() {
    let text = std::fs::read_to_string(compact_path()).unwrap();
    assert_eq!(to_tsv(&from_tsv(&text)), text);
}
