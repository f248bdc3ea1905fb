//! Coverage against the public parser: every leaf field of the `expected` output of
//! each `../shared/golden/sekoia-current/*.json` (read from `../shared`, never copied
//! here) is emitted by `--profile extended` with an equal value, or is listed with a
//! reason in `docs/sekoia-differences.md`. Skips cleanly when `../shared` is absent.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{get, leaves, root, samples, shared};
use serde_json::Value;
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

/// The table of deliberate differences: field → reason.
fn differences() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("docs/sekoia-differences.md")).unwrap();
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
    let Some(dir) = shared("golden/sekoia-current") else {
        eprintln!("skipped: ../shared/golden/sekoia-current is absent");
        return;
    };
    let justified_fields = differences();
    assert!(!justified_fields.is_empty());
    let normalizer = Normalizer::new(Profile::extended());
    let (mut reproduced, mut justified, mut missing) = (0, 0, Vec::new());
    let mut used = BTreeSet::new();
    for (name, sample) in samples(&dir) {
        let mut out = Vec::new();
        let mut w = normalizer.new_warnings();
        let line = sample["input"].to_string();
        assert_eq!(
            normalizer.normalize_line(line.as_bytes(), &mut out, &mut w),
            LineOutcome::Normalized,
            "{name}"
        );
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let expected = leaves(&sample["expected"]);
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
