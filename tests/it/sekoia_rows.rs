//! Every row of `../shared/golden/sekoia-current/*.json` (a third party's sample
//! rows, read from `../shared`, never copied here) normalizes without a reject, and
//! every documented field that the row feeds is present. Their `expected` follows
//! another mapping and is not compared. Skips cleanly when `../shared` is absent.

use crate::common::{get, samples, shared};
use serde_json::Value;
use sophos_tac::mapping::{Convert, Profile, Source};
use sophos_tac::{LineOutcome, Normalizer};

/// True when a raw value renders as text (spec: absent, null, "" and "None" do not).
fn feeds(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Null))
        && !matches!(v, Some(Value::String(s)) if s.is_empty() || s == "None")
}

#[test]
fn sekoia_rows_normalize_and_fill_every_fed_field() {
    let Some(dir) = shared("golden/sekoia-current") else {
        eprintln!("skipped: ../shared/golden/sekoia-current is absent");
        return;
    };
    let normalizer = Normalizer::new(Profile::documented());
    let samples = samples(&dir);
    assert!(!samples.is_empty());
    for (name, sample) in samples {
        let envelope = serde_json::to_string(&sample["input"]).unwrap();
        let row: Value =
            serde_json::from_str(sample["input"]["message"].as_str().unwrap()).unwrap();
        let mut out = Vec::new();
        let mut warnings = normalizer.new_warnings();
        assert_eq!(
            normalizer.normalize_line(envelope.as_bytes(), &mut out, &mut warnings),
            LineOutcome::Normalized,
            "{name}"
        );
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc["message"], sample["input"]["message"],
            "{name}: message is the row"
        );
        let mut checked = 0;
        for field in Profile::documented().fields() {
            let present = get(&doc, field.name).is_some();
            let expected = match field.source {
                Source::Original | Source::Constant(_) => true,
                Source::Key(_, Convert::ListOrEmpty) => true,
                Source::Key(key, Convert::Integer) => match row.get(key) {
                    Some(Value::Number(n)) => n.is_i64(),
                    Some(Value::String(s)) => s.parse::<i64>().is_ok(),
                    _ => false,
                },
                Source::Key(key, Convert::IpAddress) => row
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                Source::Key(key, Convert::Strip2) => row
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.chars().count() > 4),
                Source::Key(key, _) => feeds(row.get(key)),
                Source::FirstTime(_) => true,
                Source::Related(targets) => targets.iter().any(|t| get(&doc, t).is_some()),
                _ => continue,
            };
            assert_eq!(
                present, expected,
                "{name}: {} present={present}",
                field.name
            );
            checked += 1;
        }
        assert_eq!(checked, Profile::documented().fields().len());
        // The rows all carry a time: @timestamp is the first one, not now.
        assert_eq!(warnings.total(), 0, "{name}: no warning");
        let first = [
            "calendar_time",
            "unix_time",
            "ioc_unix_time",
            "ingestion_timestamp",
        ]
        .iter()
        .find_map(|k| row[*k].as_str())
        .unwrap();
        assert_eq!(
            &doc["@timestamp"].as_str().unwrap()[..19],
            &first[..19],
            "{name}"
        );
    }
}
