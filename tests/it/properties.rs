//! Property tests: no input panics the normalizer, and every line ends up as
//! exactly one of normalized, rejected or blank.

use proptest::prelude::*;
use serde_json::{Value, json};
use sophos_tac::mapping::Profile;
use sophos_tac::pipeline::{self, Input, Observer, Options, Reject};
use sophos_tac::{Error, LineOutcome, Normalizer};

/// One row key: the key the normalizer gives a document is the one read from it.
fn check_key(n: &Normalizer, line: &[u8]) -> LineOutcome {
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    let mut key = String::new();
    let outcome = n.normalize_line_keyed(line, &mut out, &mut w, Some(&mut key));
    if outcome == LineOutcome::Normalized {
        assert_eq!(key, sophos_tac::sinks::document_key(&out[..out.len() - 1]));
    }
    outcome
}

fn check_line(n: &Normalizer, line: &[u8]) -> LineOutcome {
    check_key(n, line);
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    let outcome = n.normalize_line(line, &mut out, &mut w);
    if outcome == LineOutcome::Normalized {
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(memchr_count(&out), 1, "one document, one line");
        let doc: Value = serde_json::from_slice(&out).expect("output is JSON");
        assert_eq!(doc["event"]["kind"], "event");
        assert!(doc["message"].is_string());
        assert!(doc["@timestamp"].is_string());
    } else {
        assert!(out.is_empty(), "nothing written for {outcome:?}");
    }
    outcome
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Any JSON value, including awkward strings.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
        prop_oneof![
            Just("None"),
            Just(""),
            Just("-"),
            Just("1.2.3.4"),
            Just("::1"),
            Just("2024-01-01T00:00:00Z"),
            Just("1700000000123"),
            Just("[\"http://x\"]"),
            Just("{")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "calendar_time",
    "unix_time",
    "ioc_unix_time",
    "ingestion_timestamp",
    "ioc_severity",
    "meta_public_ip",
    "meta_username",
    "meta_hostname",
    "data",
    "ioc_detection_references",
    "description",
    "message",
    "subject_domain",
    "path",
    "type",
];

/// An object row with random values under the keys the profile reads.
fn any_row() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(KEYS), any_value()), 0..12).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

/// The keys the SIEM profiles read, top level and nested (`data.*`, `ips_threat_data.*`,
/// `amsi_threat_data.*`…).
const SIEM_KEYS: &[&str] = &[
    "id",
    "when",
    "created_at",
    "severity",
    "source",
    "type",
    "location",
    "customer_id",
    "threat",
    "threat_cleanable",
    "appCerts",
    "source_info",
    "endpoint_id",
];
const SIEM_NESTED: &[(&str, &str)] = &[
    ("data", "endpoint_platform"),
    ("data", "created_at"),
    ("data", "hmpa_exploit"),
    ("data", "ips_threat"),
    ("data", "core_remedy_items"),
    ("data", "threat_id"),
    ("data", "certificates"),
    ("data", "source_info"),
    ("ips_threat_data", "rawData"),
    ("ips_threat_data", "remotePort"),
    ("ips_threat_data", "remoteIp"),
    ("amsi_threat_data", "processId"),
    ("amsi_threat_data", "processName"),
    ("core_remedy_items", "items"),
];

/// A SIEM API item with random values under the keys the SIEM profiles read, at the top
/// and one level down (where a nested value may itself be anything).
fn any_item() -> impl Strategy<Value = Value> {
    let top = prop::collection::vec((prop::sample::select(SIEM_KEYS), any_value()), 0..10);
    let nested = prop::collection::vec((prop::sample::select(SIEM_NESTED), any_value()), 0..10);
    (top, nested).prop_map(|(top, nested)| {
        let mut item = serde_json::Map::new();
        for (k, v) in top {
            item.insert(k.to_string(), v);
        }
        for ((outer, inner), v) in nested {
            let slot = item.entry(outer.to_string()).or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
            slot[inner] = v;
        }
        Value::Object(item)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_siem_profile(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_line(&Normalizer::new(Profile::siem_alert()), &bytes);
        check_line(&Normalizer::new(Profile::siem_event()), &bytes);
    }

    #[test]
    fn every_siem_item_normalizes_to_one_document_of_its_stream(item in any_item()) {
        let line = item.to_string();
        for (profile, kind) in [(Profile::siem_alert(), "alert"), (Profile::siem_event(), "event")] {
            let n = Normalizer::new(profile);
            // A top-level `message` holding an object makes the line an envelope: not an item.
            prop_assume!(item.get("message").is_none());
            let mut out = Vec::new();
            let mut w = n.new_warnings();
            prop_assert_eq!(n.normalize_line(line.as_bytes(), &mut out, &mut w), LineOutcome::Normalized);
            let doc: Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&doc["event"]["kind"], kind);
            // the item is kept whole, whatever its values
            prop_assert_eq!(doc["event"]["original"].as_str(), Some(line.as_str()));
        }
    }

    #[test]
    fn the_normalizer_keys_every_document_as_the_document_reads(row in any_row(), item in any_item(), odd in "[\\\\\"a-z:{}]{0,12}(LONE)?") {
        // Rows and items, raw and in envelopes, with odd text in their ids: escapes,
        // colons, and a lone surrogate escape written into the JSON text (LONE).
        // `check_key` compares the normalizer's key with the document's.
        let lone = |text: String| text.replace("LONE", "\\ud800");
        let mut row = row;
        // (A row's own `message` holding an object would make it an envelope.)
        if let Some(fields) = row.as_object_mut() {
            fields.remove("message");
        }
        row["record_identifier"] = json!(odd);
        let mut item = item;
        // (A top-level `message` holding an object would make it an envelope.)
        if let Some(fields) = item.as_object_mut() {
            fields.remove("message");
        }
        item["id"] = json!(odd);
        for line in [lone(row.to_string()), json!({ "message": lone(row.to_string()) }).to_string()] {
            for profile in [Profile::documented(), Profile::extended()] {
                prop_assert_eq!(check_key(&Normalizer::new(profile), line.as_bytes()), LineOutcome::Normalized);
            }
        }
        for line in [lone(item.to_string()), json!({ "message": lone(item.to_string()) }).to_string()] {
            for profile in [Profile::siem_alert(), Profile::siem_event()] {
                prop_assert_eq!(check_key(&Normalizer::new(profile), line.as_bytes()), LineOutcome::Normalized);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_line(&Normalizer::new(Profile::documented()), &bytes);
    }

    #[test]
    fn json_like_text_never_panics(s in r#"[{}\[\]":,\\ a-z0-9.\-tfnu]{0,200}"#) {
        check_line(&Normalizer::new(Profile::documented()), s.as_bytes());
    }

    #[test]
    fn every_object_row_normalizes(row in any_row()) {
        let line = row.to_string();
        let n = Normalizer::new(Profile::documented());
        // A row whose own message looks like an object is an envelope, and may be broken.
        let looks_like_envelope = row.get("message").and_then(Value::as_str).is_some_and(|m| m.trim_start().starts_with('{'));
        let outcome = check_line(&n, line.as_bytes());
        if !looks_like_envelope {
            prop_assert_eq!(outcome, LineOutcome::Normalized);
        }
    }

    #[test]
    fn every_envelope_of_an_object_row_normalizes_to_the_same_document_as_the_row(row in any_row()) {
        let n = Normalizer::new(Profile::documented());
        prop_assume!(!row.get("message").and_then(Value::as_str).is_some_and(|m| m.trim_start().starts_with('{')));
        prop_assume!(!["calendar_time", "unix_time", "ioc_unix_time", "ingestion_timestamp"].iter().all(|k| row.get(*k).is_none()));
        let raw = row.to_string();
        let envelope = json!({ "message": raw }).to_string();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut wa, mut wb) = (n.new_warnings(), n.new_warnings());
        prop_assert_eq!(n.normalize_line(raw.as_bytes(), &mut a, &mut wa), LineOutcome::Normalized);
        prop_assert_eq!(n.normalize_line(envelope.as_bytes(), &mut b, &mut wb), LineOutcome::Normalized);
        let (da, db): (Value, Value) = (serde_json::from_slice(&a).unwrap(), serde_json::from_slice(&b).unwrap());
        // Equal unless @timestamp fell back to "now" at two different instants.
        if wa.total() == 0 {
            prop_assert_eq!(da, db);
        }
    }
}

#[derive(Default)]
struct Collect {
    rejects: Vec<u64>,
}

impl Observer for Collect {
    fn reject(&mut self, r: &Reject<'_>) -> Result<(), Error> {
        self.rejects.push(r.line);
        Ok(())
    }
    fn input_error(&mut self, e: &Error) {
        panic!("unexpected input error {e}");
    }
}

fn any_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any_row().prop_map(|r| r.to_string().into_bytes()),
        prop::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..40
        ),
        Just(Vec::new()),
        Just(b"  \r".to_vec()),
        Just(b"[1]".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_counts_add_up(lines in prop::collection::vec(any_line(), 0..60), trailing_newline in any::<bool>(), threads in 1usize..4, block in 1usize..600) {
        let mut input = lines.join(&b'\n');
        if trailing_newline && !input.is_empty() {
            input.push(b'\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, &input).unwrap();
        let expected_lines = if input.is_empty() { 0 } else { memchr_count(&input) + usize::from(!input.ends_with(b"\n")) } as u64;

        let n = Normalizer::new(Profile::documented());
        let mut out = Vec::new();
        let mut observer = Collect::default();
        let summary = pipeline::run(&n, &[Input::Path(path)], &mut out, "mem", &mut observer, &Options { threads, block_bytes: block }).unwrap();
        let summary = &summary.counts;
        prop_assert_eq!(summary.lines, expected_lines);
        prop_assert_eq!(summary.normalized + summary.rejected + summary.blank, summary.lines);
        prop_assert_eq!(memchr_count(&out) as u64, summary.normalized);
        prop_assert_eq!(observer.rejects.len() as u64, summary.rejected);
        prop_assert!(observer.rejects.windows(2).all(|w| w[0] < w[1]), "rejects in input order");
        prop_assert!(observer.rejects.iter().all(|&l| l >= 1 && l <= summary.lines));
    }
}
