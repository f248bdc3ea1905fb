//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod collect;
pub mod kafka;
pub mod servers;
pub mod syslog;

use std::path::PathBuf;

use serde_json::Value;

/// A tool a test needs is missing: under CI (`CI` set, as `.ci/run` runs) that fails the
/// test, since CI installs every tool; elsewhere the test is skipped, saying so.
pub fn missing_tool(name: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {name} ({install}; .ci/run does)"
    );
    eprintln!("SKIPPED: {name} is not installed ({install}; .ci/run does)");
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/<sub>` when it exists (it is absent outside the project's machines).
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = root().join("../shared").join(sub);
    dir.is_dir().then_some(dir)
}

/// The value at a dotted path of a document.
pub fn get<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |v, k| v.get(k))
}

/// Every leaf of a document with its dotted path, in document order.
pub fn leaves(v: &Value) -> Vec<(String, Value)> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => map
                .iter()
                .for_each(|(k, c)| walk(c, &format!("{prefix}{k}."), out)),
            other => out.push((prefix.trim_end_matches('.').to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Every line of our own fixtures: the bundled example, the extended golden input,
/// and the three documented samples (as envelopes).
pub fn fixture_lines() -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for file in [
        "examples/detections.ndjson",
        "tests/golden/extended/input.ndjson",
    ] {
        lines.extend(
            std::fs::read_to_string(root().join(file))
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    let mut samples: Vec<PathBuf> = std::fs::read_dir(root().join("tests/golden/documented"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    samples.sort();
    for path in samples {
        let sample: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        lines.push(sample["input"].to_string());
    }
    lines
}

/// SIEM API items of one stream (`alert` or `event`): ours
/// (`examples/siem-{stream}s.ndjson`), then the inputs of Elastic's pipeline tests
/// when `../shared` is there.
pub fn siem_items(stream: &str) -> Vec<String> {
    let ours =
        std::fs::read_to_string(root().join(format!("examples/siem-{stream}s.ndjson"))).unwrap();
    let mut items: Vec<String> = ours.lines().map(String::from).collect();
    if let Some(dir) = shared("golden/elastic-sophos-central") {
        for test in ["test-pipeline-activity.log", "test-user-formats.log"] {
            let text = std::fs::read_to_string(dir.join(stream).join(test)).unwrap();
            items.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
    }
    items
}

/// The `{"input", "expected"}` samples of a folder, sorted by file name.
pub fn samples(dir: &std::path::Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}
