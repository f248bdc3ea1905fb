//! Coverage against the public parser: every leaf field of the `expected` output of
//! each `../shared/golden/sekoia-current/*.json` (read from `../shared`, never copied
//! here) is emitted by `--profile extended` with an equal value, or is listed with a
//! reason in `docs/sekoia-differences.md`. Skips cleanly when `../shared` is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, c)| leaves(c, &format!("{prefix}{k}."), out)),
        other => out.push((prefix.trim_end_matches('.').to_string(), other.clone())),
    }
}

fn get<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |v, k| v.get(k))
}

/// The table of deliberate differences: field → reason.
fn differences() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sekoia-differences.md"),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (field, rest) = l.split_once("` |")?;
            Some((field.to_string(), rest.trim().to_string()))
        })
        .collect()
}

#[test]
fn extended_reproduces_or_justifies_every_public_parser_field() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/sekoia-current");
    if !dir.is_dir() {
        eprintln!("skipped: ../shared/golden/sekoia-current is absent");
        return;
    }
    let justified_fields = differences();
    assert!(!justified_fields.is_empty());
    let normalizer = Normalizer::new(Profile::extended());
    let (mut reproduced, mut justified, mut missing) = (0, 0, Vec::new());
    let mut used = BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let sample: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut out = Vec::new();
        let mut w = normalizer.new_warnings();
        let line = sample["input"].to_string();
        assert_eq!(
            normalizer.normalize_line(line.as_bytes(), &mut out, &mut w),
            LineOutcome::Normalized,
            "{name}"
        );
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let mut expected = Vec::new();
        leaves(&sample["expected"], "", &mut expected);
        for (field, value) in expected.into_iter().filter(|(f, _)| f != "message") {
            if get(&doc, &field) == Some(&value) {
                reproduced += 1;
            } else if justified_fields.contains_key(&field) {
                justified += 1;
                used.insert(field);
            } else {
                missing.push(format!(
                    "{name}: {field} = {value} (ours: {:?})",
                    get(&doc, &field)
                ));
            }
        }
    }
    let total = reproduced + justified + missing.len();
    println!(
        "public parser fields: {total}: reproduced {reproduced}, justified {justified}, missing {}",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "fields neither reproduced nor justified:\n{}",
        missing.join("\n")
    );
    let stale: Vec<&String> = justified_fields
        .keys()
        .filter(|f| !used.contains(*f))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/sekoia-differences.md lists fields that no longer differ: {stale:?}"
    );
    assert!(
        reproduced * 10 >= total * 8,
        "most fields are reproduced exactly ({reproduced}/{total})"
    );
}
