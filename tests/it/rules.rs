//! One test per rule of `shared/spec/documented-profile.md`, through the public API.

use crate::common::get;
use serde_json::{Value, json};
use sophos_tac::{LineOutcome, Normalizer, RejectReason, mapping::Profile};

struct Normalized {
    doc: Value,
    text: String,
    warnings: Vec<(String, u64)>,
}

fn normalizer() -> Normalizer {
    Normalizer::new(Profile::documented())
}

fn run(line: &str) -> Result<Normalized, LineOutcome> {
    let n = normalizer();
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    match n.normalize_line(line.as_bytes(), &mut out, &mut w) {
        LineOutcome::Normalized => {
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.ends_with('\n') && !text[..text.len() - 1].contains('\n'),
                "one line per document"
            );
            let fields = n.profile().fields();
            Ok(Normalized {
                doc: serde_json::from_str(&text).unwrap(),
                text,
                warnings: w
                    .nonzero()
                    .map(|(i, c)| (fields[i].name.to_string(), c))
                    .collect(),
            })
        }
        other => {
            assert!(out.is_empty(), "nothing is written for {other:?}");
            Err(other)
        }
    }
}

/// A raw row with a valid time plus `extra`.
fn row(extra: Value) -> String {
    let mut r = json!({ "calendar_time": "2024-01-02T03:04:05Z" });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    r.to_string()
}

fn doc(extra: Value) -> Value {
    run(&row(extra)).unwrap().doc
}

fn reject(line: &str) -> RejectReason {
    match run(line) {
        Err(LineOutcome::Rejected(r)) => r,
        other => panic!(
            "expected a reject for {:?}, got {:?}",
            line.chars().take(80).collect::<String>(),
            other.map(|n| n.text.len())
        ),
    }
}

// ---- Input forms ----

#[test]
fn envelope_message_is_the_row_and_other_envelope_keys_are_ignored() {
    let inner = row(json!({ "meta_hostname": "h1" }));
    let n =
        run(&json!({ "message": inner, "meta_hostname": "outer", "x": 1 }).to_string()).unwrap();
    assert_eq!(n.doc["host"]["name"], "h1");
    assert_eq!(n.doc["message"], inner);
}

#[test]
fn raw_row_message_is_the_line_without_its_ending() {
    let line = row(json!({ "meta_hostname": "h1" }));
    for ending in ["", "\n", "\r\n"] {
        let n = run(&format!("{line}{ending}")).unwrap();
        assert_eq!(n.doc["message"], line.as_str());
    }
}

#[test]
fn raw_row_message_keeps_its_insignificant_whitespace() {
    let line = "{ \"calendar_time\" : \"2024-01-02T03:04:05Z\",  \"meta_hostname\": \"h\" }";
    assert_eq!(run(line).unwrap().doc["message"], line);
}

#[test]
fn raw_row_whose_own_message_is_plain_text() {
    let line = row(json!({ "message": "User logged on", "meta_username": "bob" }));
    let n = run(&line).unwrap();
    assert_eq!(n.doc["message"], line.as_str());
    assert_eq!(n.doc["user"]["name"], "bob");
}

#[test]
fn message_holding_non_object_json_is_a_raw_row() {
    for m in [json!("[1,2]"), json!("42"), json!({ "a": 1 }), json!(null)] {
        let line = row(json!({ "message": m, "meta_hostname": "h" }));
        assert_eq!(run(&line).unwrap().doc["host"]["name"], "h");
    }
}

#[test]
fn envelope_whose_message_starts_with_brace_but_is_broken_is_a_reject() {
    for m in ["{", "{\"a\":", "{\"a\":1} trailing", "  {oops}"] {
        let line = json!({ "message": m }).to_string();
        assert!(
            matches!(reject(&line), RejectReason::BrokenEnvelope(_)),
            "{m:?}"
        );
    }
}

#[test]
fn blank_lines_are_skipped() {
    for line in ["", "\n", "   ", "\t\r\n"] {
        assert_eq!(run(line).err(), Some(LineOutcome::Blank));
    }
}

#[test]
fn lines_that_are_not_rows_are_rejects() {
    assert!(matches!(reject("not json"), RejectReason::InvalidJson(_)));
    assert!(matches!(reject("{\"a\":1"), RejectReason::InvalidJson(_)));
    assert!(matches!(
        reject("{\"a\":1}{\"b\":2}"),
        RejectReason::InvalidJson(_)
    ));
    assert_eq!(reject("[1]"), RejectReason::NotAnObject("an array"));
    assert_eq!(reject("\"s\""), RejectReason::NotAnObject("a string"));
    assert_eq!(reject("null"), RejectReason::NotAnObject("null"));
    assert_eq!(reject("3"), RejectReason::NotAnObject("a number"));
}

#[test]
fn invalid_utf8_and_overlong_lines_are_rejects() {
    let n = normalizer().with_max_line_bytes(10);
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    assert_eq!(
        n.normalize_line(b"{\"a\":\"\xff\"}", &mut out, &mut w),
        LineOutcome::Rejected(RejectReason::InvalidUtf8 { valid_up_to: 6 })
    );
    assert_eq!(
        n.normalize_line(b"{\"aaaaaaaaaa\":1}", &mut out, &mut w),
        LineOutcome::Rejected(RejectReason::TooLong { len: 16, limit: 10 })
    );
    assert!(out.is_empty());
}

#[test]
fn deep_nesting_is_valid_json_and_does_not_crash() {
    // Deeply nested values are skipped or copied without recursion.
    let deep = format!(
        "{{\"a\":{}{},\"meta_hostname\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000),
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let n = run(&deep).unwrap();
    assert_eq!(n.doc["host"]["name"].as_str().map(str::len), Some(10_000));
    let unbalanced = format!("{{\"a\":{}", "[".repeat(10_000));
    assert!(matches!(reject(&unbalanced), RejectReason::InvalidJson(_)));
}

// ---- Rendering a raw value ----

#[test]
fn absent_null_empty_and_none_leave_the_field_out() {
    for v in [json!(null), json!(""), json!("None")] {
        let d = doc(json!({ "meta_hostname": v, "meta_username": v }));
        assert!(d.get("host").is_none(), "{v}");
        assert!(d.get("user").is_none(), "{v}");
        assert!(d.get("related").is_none(), "{v}");
    }
    assert!(doc(json!({})).get("host").is_none());
}

#[test]
fn strings_are_not_trimmed() {
    assert_eq!(
        doc(json!({ "meta_hostname": "  h  " }))["host"]["name"],
        "  h  "
    );
}

#[test]
fn numbers_render_as_written() {
    let line = r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":2.4075,"host_identifier":-0.50,"meta_os_version":1e3,"ioc_detection_cvss":4}"#;
    let d = run(line).unwrap().doc;
    assert_eq!(d["host"]["name"], "2.4075");
    assert_eq!(d["host"]["id"], "-0.50");
    assert_eq!(d["host"]["os"]["version"], "1e3");
    assert_eq!(d["sophos"]["threat_center"]["cvss"], "4");
}

#[test]
fn booleans_render_as_text() {
    let d = doc(json!({ "meta_hostname": true, "host_identifier": false }));
    assert_eq!(d["host"]["name"], "true");
    assert_eq!(d["host"]["id"], "false");
}

#[test]
fn objects_and_arrays_render_as_compact_json() {
    let line = r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":{ "a" : [ 1, "x y" ] },"host_identifier":[ ]}"#;
    let d = run(line).unwrap().doc;
    assert_eq!(d["host"]["name"], r#"{"a":[1,"x y"]}"#);
    assert_eq!(d["host"]["id"], "[]");
}

#[test]
fn escaped_quotes_backslashes_and_non_ascii_survive() {
    let v = "C:\\Users\\\"Zoë\"\\日本\t\u{1F600}";
    let n = run(&row(json!({ "meta_username": v, "path": v }))).unwrap();
    assert_eq!(n.doc["user"]["name"], v);
    assert_eq!(n.doc["registry"]["path"], v);
    assert_eq!(n.doc["related"]["user"], json!([v]));
    // \u escapes in the input decode to the same text
    let line = r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_username":"Zo\u00eb \"q\" \\"}"#;
    assert_eq!(run(line).unwrap().doc["user"]["name"], "Zoë \"q\" \\");
}

// ---- Every field of the table ----

#[test]
fn every_text_field_comes_from_its_key() {
    let table = [
        ("event.reason", "description"),
        ("event.code", "ioc_detection_id"),
        ("user.name", "meta_username"),
        ("registry.path", "path"),
        ("registry.key", "key"),
        ("registry.data.type", "type"),
        ("source.mac", "meta_mac_address"),
        ("source.geo.country_iso_code", "meta_public_ip_country_code"),
        ("source.geo.postal_code", "meta_public_ip_postal"),
        ("source.geo.city_name", "meta_public_ip_city"),
        ("source.geo.country_name", "meta_public_ip_country"),
        ("source.address", "meta_public_ip"),
        ("host.name", "meta_hostname"),
        ("host.id", "host_identifier"),
        ("host.os.name", "meta_os_name"),
        ("host.os.version", "meta_os_version"),
        ("host.domain", "subject_domain"),
        ("vulnerability.description", "ioc_detection_description"),
        ("sophos.threat_center.cvss", "ioc_detection_cvss"),
        ("sophos.threat_center.id", "endpoint_id"),
        (
            "sophos.threat_center.detection_attack",
            "ioc_detection_attack",
        ),
        ("sophos.threat_center.query.source", "query_source"),
        ("sophos.threat_center.query.action", "osquery_action"),
        (
            "sophos.threat_center.query.pack_version",
            "meta_query_pack_version",
        ),
        ("sophos.threat_center.query.name", "query_name"),
        ("sophos.threat_center.endpoint.type", "meta_endpoint_type"),
    ];
    for (field, key) in table {
        let d = doc(json!({ key: "v-1" }));
        assert_eq!(get(&d, field), Some(&json!("v-1")), "{field} from {key}");
        let d = doc(json!({ key: null }));
        assert_eq!(get(&d, field), None, "{field} absent when {key} is null");
        assert_eq!(
            Profile::documented().field(field).unwrap().row_keys(),
            vec![key]
        );
    }
}

#[test]
fn event_kind_is_always_event() {
    assert_eq!(doc(json!({}))["event"], json!({ "kind": "event" }));
}

#[test]
fn severity_takes_integers_and_integer_strings() {
    for (v, want) in [
        (json!(4), 4),
        (json!("5"), 5),
        (json!(-1), -1),
        (json!("+3"), 3),
        (json!("007"), 7),
        (json!(0), 0),
    ] {
        let n = run(&row(json!({ "ioc_severity": v }))).unwrap();
        assert_eq!(n.doc["event"]["severity"], want, "{v}");
        assert!(n.warnings.is_empty());
    }
}

#[test]
fn severity_that_is_not_an_integer_is_dropped_with_a_warning() {
    for v in [
        json!("high"),
        json!(4.5),
        json!("4.0"),
        json!(" 4"),
        json!(true),
        json!([4]),
        json!("99999999999999999999"),
    ] {
        let n = run(&row(json!({ "ioc_severity": v, "meta_hostname": "h" }))).unwrap();
        assert!(n.doc["event"].get("severity").is_none(), "{v}");
        assert_eq!(n.doc["host"]["name"], "h", "the rest of the row is kept");
        assert_eq!(n.warnings, vec![("event.severity".to_string(), 1)], "{v}");
    }
    // absent is not a warning
    for v in [json!(null), json!("None"), json!("")] {
        assert!(
            run(&row(json!({ "ioc_severity": v })))
                .unwrap()
                .warnings
                .is_empty()
        );
    }
}

#[test]
fn severity_is_written_as_a_json_integer() {
    let n = run(&row(json!({ "ioc_severity": "5" }))).unwrap();
    assert!(n.text.contains(r#""severity":5"#));
}

#[test]
fn source_ip_only_when_valid_and_address_always() {
    for ip in [
        "1.2.3.4",
        "2001:db8::1",
        "::1",
        "fe80::1:2",
        "::ffff:192.0.2.1",
        "2001:DB8::A",
    ] {
        let n = run(&row(json!({ "meta_public_ip": ip }))).unwrap();
        assert_eq!(n.doc["source"]["ip"], ip);
        assert_eq!(n.doc["source"]["address"], ip);
        assert_eq!(n.doc["related"]["ip"], json!([ip]));
        assert!(n.warnings.is_empty());
    }
    for bad in [
        "-",
        "1.2.3",
        "1.2.3.256",
        "01.2.3.4",
        "1.2.3.4 ",
        "fe80::1%eth0",
        "example.com",
        "1.2.3.4/24",
    ] {
        let n = run(&row(json!({ "meta_public_ip": bad }))).unwrap();
        assert!(n.doc["source"].get("ip").is_none(), "{bad}");
        assert_eq!(n.doc["source"]["address"], bad);
        assert!(n.doc.get("related").is_none());
        assert_eq!(n.warnings, vec![("source.ip".to_string(), 1)], "{bad}");
    }
}

#[test]
fn source_mac_is_unchanged() {
    assert_eq!(
        doc(json!({ "meta_mac_address": "01-02-03-04-05-06" }))["source"]["mac"],
        "01-02-03-04-05-06"
    );
}

#[test]
fn host_domain_keeps_a_dash() {
    assert_eq!(doc(json!({ "subject_domain": "-" }))["host"]["domain"], "-");
}

#[test]
fn registry_data_strings_is_always_a_one_element_list() {
    assert_eq!(
        doc(json!({ "data": " A  B " }))["registry"]["data"]["strings"],
        json!([" A  B "])
    );
    assert_eq!(
        doc(json!({ "data": 12 }))["registry"]["data"]["strings"],
        json!(["12"])
    );
    assert_eq!(
        doc(json!({}))["registry"],
        json!({ "data": { "strings": [""] } })
    );
    assert_eq!(
        doc(json!({ "data": null }))["registry"]["data"]["strings"],
        json!([""])
    );
    assert_eq!(
        doc(json!({ "data": "None" }))["registry"]["data"]["strings"],
        json!([""])
    );
}

#[test]
fn vulnerability_reference_cuts_two_characters_each_side() {
    let cases = [
        (json!("[\"http://a\"]"), Some("http://a")),
        (json!(""), None),
        (json!("["), None),
        (json!("[]"), None),
        (json!("[\"]"), None),
        (json!("[\"\"]"), None),
        (json!("[\"x\"]"), Some("x")),
        (json!("[\"é\"]"), Some("é")),
        (json!("[\"日本語\"]"), Some("日本語")),
        (json!("[\"a\",\"b\"]"), Some("a\",\"b")),
        (json!(["http://b"]), Some("http://b")),
    ];
    for (v, want) in cases {
        let d = doc(json!({ "ioc_detection_references": v }));
        assert_eq!(
            get(&d, "vulnerability.reference").and_then(Value::as_str),
            want,
            "{v}"
        );
    }
}

#[test]
fn related_fields_follow_their_sources() {
    let d = doc(json!({ "meta_public_ip": "1.2.3.4", "meta_username": "u" }));
    assert_eq!(d["related"], json!({ "ip": ["1.2.3.4"], "user": ["u"] }));
    let d = doc(json!({ "meta_username": "u" }));
    assert_eq!(d["related"], json!({ "user": ["u"] }));
}

#[test]
fn empty_parents_are_left_out() {
    let n = run(&row(
        json!({ "meta_os_name": null, "meta_hostname": null, "ioc_detection_cvss": "" }),
    ))
    .unwrap();
    for parent in [
        "host",
        "user",
        "source",
        "vulnerability",
        "sophos",
        "related",
    ] {
        assert!(n.doc.get(parent).is_none(), "{parent}");
    }
    assert!(!n.text.contains("{}"));
    let d = doc(json!({ "meta_os_version": "10" }));
    assert_eq!(d["host"], json!({ "os": { "version": "10" } }));
}

#[test]
fn output_key_order_follows_the_table() {
    let n = run(&row(json!({ "related_x": 1, "meta_username": "u", "meta_hostname": "h", "ioc_severity": 1, "query_name": "q" }))).unwrap();
    let keys: Vec<&str> = n
        .doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "message",
            "event",
            "@timestamp",
            "user",
            "registry",
            "host",
            "sophos",
            "related"
        ]
    );
}

// ---- Time ----

fn ts(extra: Value) -> (Value, Vec<(String, u64)>) {
    let n = run(&extra.to_string()).unwrap();
    (n.doc["@timestamp"].clone(), n.warnings)
}

#[test]
fn timestamp_takes_the_first_key_that_parses() {
    let keys = [
        "calendar_time",
        "unix_time",
        "ioc_unix_time",
        "ingestion_timestamp",
    ];
    for (i, key) in keys.iter().enumerate() {
        let mut row = json!({ *key: format!("2024-01-0{}T00:00:00Z", i + 1) });
        for later in &keys[i + 1..] {
            row[*later] = json!("2030-01-01T00:00:00Z");
        }
        for earlier in &keys[..i] {
            row[*earlier] = json!("not a time");
        }
        assert_eq!(ts(row).0, format!("2024-01-0{}T00:00:00Z", i + 1), "{key}");
    }
}

#[test]
fn timestamp_forms() {
    let cases = [
        (json!("2022-11-30T09:22:11.000Z"), "2022-11-30T09:22:11Z"),
        (
            json!("2022-11-30T09:22:22.226Z"),
            "2022-11-30T09:22:22.226000Z",
        ),
        (
            json!("2022-11-30T09:22:22.226123Z"),
            "2022-11-30T09:22:22.226123Z",
        ),
        (
            json!("2022-11-30T09:22:22.226123999Z"),
            "2022-11-30T09:22:22.226123Z",
        ),
        (json!("2022-11-30 09:22:11"), "2022-11-30T09:22:11Z"),
        (json!("2022-11-30T11:22:11+02:00"), "2022-11-30T09:22:11Z"),
        (json!("2022-11-30T06:52:11-0230"), "2022-11-30T09:22:11Z"),
        (json!(1669800131), "2022-11-30T09:22:11Z"),
        (json!("1669800131"), "2022-11-30T09:22:11Z"),
        (json!(1669800131042u64), "2022-11-30T09:22:11.042000Z"),
        (json!("1669800131042"), "2022-11-30T09:22:11.042000Z"),
    ];
    for (v, want) in cases {
        assert_eq!(
            ts(json!({ "calendar_time": v })),
            (json!(want), vec![]),
            "{v}"
        );
    }
}

#[test]
fn timestamp_falls_back_to_now_with_a_warning() {
    let before = jiff::Timestamp::now();
    let (t, w) =
        ts(json!({ "calendar_time": "yesterday", "unix_time": 1.5, "ioc_unix_time": null }));
    let after = jiff::Timestamp::now();
    let t: jiff::Timestamp = t.as_str().unwrap().parse().unwrap();
    assert!(
        t >= before.round(jiff::Unit::Second).unwrap() - jiff::SignedDuration::from_secs(1)
            && t <= after
    );
    assert_eq!(w, vec![("@timestamp".to_string(), 1)]);
}

/// Lone UTF-16 surrogate escapes (`\ud800` with no partner) follow one rule in every
/// position: the row is kept, mapped values read U+FFFD in their place, the row is
/// counted, and a raw row's `message` is the line as written.
#[test]
fn lone_surrogates_are_read_as_replacement_characters_in_every_position() {
    let n = normalizer();
    let cases = [
        // a mapped value
        (
            r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":"h\ud800x"}"#,
            Some("h\u{FFFD}x"),
        ),
        // an unmapped value
        (
            r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":"h","zz":"\udc00"}"#,
            Some("h"),
        ),
        // a key name
        (
            r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":"h","k\ud800":1}"#,
            Some("h"),
        ),
        // two lone halves in the wrong order
        (
            r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":"\udc00\ud800"}"#,
            Some("\u{FFFD}\u{FFFD}"),
        ),
        // an envelope's message literal itself
        (
            r#"{"message":"{\"calendar_time\":\"2024-01-02T03:04:05Z\",\"meta_hostname\":\"h\ud800x\"}"}"#,
            Some("h\u{FFFD}x"),
        ),
        // an escape inside the envelope's row
        (
            r#"{"message":"{\"calendar_time\":\"2024-01-02T03:04:05Z\",\"meta_hostname\":\"h\\ud800x\"}"}"#,
            Some("h\u{FFFD}x"),
        ),
    ];
    for (line, host) in cases {
        let mut out = Vec::new();
        let mut w = n.new_warnings();
        assert_eq!(
            n.normalize_line(line.as_bytes(), &mut out, &mut w),
            LineOutcome::Normalized,
            "{line}"
        );
        assert_eq!(w.lone_surrogates(), 1, "{line}");
        let doc: Value = serde_json::from_slice(&out).expect("the document is valid JSON");
        assert_eq!(
            get(&doc, "host.name").and_then(Value::as_str),
            host,
            "{line}"
        );
        if !line.starts_with(r#"{"message""#) {
            assert_eq!(
                doc["message"], line,
                "a raw row's message is the line as written"
            );
        } else {
            let message = doc["message"].as_str().unwrap();
            assert!(
                message.contains("h\u{FFFD}x") || message.contains(r"h\ud800x"),
                "{message}"
            );
        }
    }
    // A proper pair is a character, not a warning.
    let mut w = n.new_warnings();
    let line = r#"{"calendar_time":"2024-01-02T03:04:05Z","meta_hostname":"\ud83d\ude00"}"#;
    assert_eq!(
        n.normalize_line(line.as_bytes(), &mut Vec::new(), &mut w),
        LineOutcome::Normalized
    );
    assert_eq!(w.lone_surrogates(), 0);
}
