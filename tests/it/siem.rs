//! The SIEM profiles against Elastic's `sophos_central` pipeline tests (third-party
//! fixtures in `../shared/golden/elastic-sophos-central/`, read from there and skipped
//! cleanly when that folder is absent), and their rules on our own items
//! (`examples/siem-*.ndjson`).
//!
//! For every document of every fixture, each field Elastic writes must be equal in ours,
//! except the fields that come from Elastic's agent or pipeline settings
//! (`siem::ELASTIC_ONLY`) and the listed deliberate differences (`siem::DIFFERENCES`).
//! "Equal" is equal as the field's type: dates as instants, `related.*` as sets, and a
//! one-element list as its element (an index does not tell them apart).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use sophos_tac::mapping::siem::{DIFFERENCES, ELASTIC_ONLY};
use sophos_tac::mapping::{EcsType, Profile};
use sophos_tac::{LineOutcome, Normalizer};

use crate::common::{get, leaves, root, shared};

/// Normalizes one item; panics when it is not normalized.
fn normalize(profile: &Profile, item: &str) -> (Value, u64) {
    let n = Normalizer::new(profile.clone());
    let mut out = Vec::new();
    let mut w = n.new_warnings();
    assert_eq!(
        n.normalize_line(item.as_bytes(), &mut out, &mut w),
        LineOutcome::Normalized,
        "{item}"
    );
    (serde_json::from_slice(&out).unwrap(), w.total())
}

/// The fixtures of one stream: (name, input item, Elastic's document).
fn fixtures(dir: &Path) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for test in ["test-pipeline-activity.log", "test-user-formats.log"] {
        let input = std::fs::read_to_string(dir.join(test)).unwrap();
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{test}-expected.json"))).unwrap(),
        )
        .unwrap();
        let docs = expected["expected"].as_array().unwrap();
        let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), docs.len(), "{test}: one document per line");
        for (i, (line, doc)) in lines.iter().zip(docs).enumerate() {
            out.push((format!("{test} #{}", i + 1), line.to_string(), doc.clone()));
        }
    }
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sample_event.json")).unwrap())
            .unwrap();
    let original = sample["event"]["original"].as_str().unwrap().to_string();
    out.push(("sample_event.json".into(), original, sample));
    out
}

fn elastic_only(field: &str) -> bool {
    ELASTIC_ONLY
        .iter()
        .any(|p| field == *p || field.starts_with(&format!("{p}.")))
}

fn listed(profile: &str, field: &str) -> bool {
    DIFFERENCES
        .iter()
        .any(|d| d.profile == profile && d.fields.contains(&field))
}

/// Equal as the field's type (see the module).
fn same(profile: &Profile, field: &str, ours: &Value, elastic: &Value) -> bool {
    let single = |v: &Value| match v {
        Value::Array(a) if a.len() == 1 => a[0].clone(),
        other => other.clone(),
    };
    let (ours, elastic) = (single(ours), single(elastic));
    if ours == elastic {
        return true;
    }
    let is_date = profile
        .field(field)
        .is_some_and(|f| f.ecs_type == EcsType::Date);
    if is_date {
        let instant = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
        return instant(&ours).is_some() && instant(&ours) == instant(&elastic);
    }
    if field.starts_with("related.") {
        let set = |v: &Value| -> std::collections::BTreeSet<String> {
            match v {
                Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
                other => [other.to_string()].into(),
            }
        };
        return set(&ours) == set(&elastic);
    }
    false
}

/// The leaves of a document, lists kept whole.
fn fields(doc: &Value) -> BTreeMap<String, Value> {
    leaves(doc).into_iter().collect()
}

#[derive(Default)]
struct Tally {
    equal: usize,
    different: Vec<String>,
    missing: Vec<String>,
    wrong: Vec<String>,
    added: usize,
}

fn compare(profile: &Profile, ours: &Value, elastic: &Value) -> Tally {
    let mut t = Tally::default();
    let ours_fields = fields(ours);
    let elastic_fields = fields(elastic);
    for (field, expected) in &elastic_fields {
        if elastic_only(field) {
            continue;
        }
        match ours_fields.get(field) {
            Some(v) if same(profile, field, v, expected) => t.equal += 1,
            _ if listed(profile.name(), field) => t.different.push(field.clone()),
            Some(v) => t
                .wrong
                .push(format!("{field}: ours {v}, Elastic {expected}")),
            None => t.missing.push(format!("{field} (Elastic {expected})")),
        }
    }
    t.added = ours_fields
        .keys()
        .filter(|f| !elastic_fields.contains_key(*f))
        .count();
    t
}

#[test]
fn every_field_elastic_writes_is_ours_except_the_listed_differences() {
    let Some(dir) = shared("golden/elastic-sophos-central") else {
        eprintln!("SKIPPED: ../shared/golden/elastic-sophos-central is absent");
        return;
    };
    let mut failures = Vec::new();
    let mut differing: Vec<(String, String)> = Vec::new();
    for (stream, profile) in [
        ("alert", Profile::siem_alert()),
        ("event", Profile::siem_event()),
    ] {
        for (name, input, elastic) in fixtures(&dir.join(stream)) {
            let (ours, _) = normalize(&profile, &input);
            let t = compare(&profile, &ours, &elastic);
            eprintln!(
                "{stream}/{name}: {} equal, {} deliberately different {:?}, {} missing, {} wrong, {} added by us",
                t.equal,
                t.different.len(),
                t.different,
                t.missing.len(),
                t.wrong.len(),
                t.added
            );
            differing.extend(
                t.different
                    .iter()
                    .map(|f| (profile.name().to_string(), f.clone())),
            );
            failures.extend(
                t.missing
                    .iter()
                    .chain(&t.wrong)
                    .map(|f| format!("{stream}/{name}: {f}")),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "fields Elastic writes that we miss or write otherwise, unlisted:\n{}",
        failures.join("\n")
    );
    // every listed difference shows in a fixture, or in our own inbound items (no
    // Elastic fixture has an inbound detection whose two ends differ; see
    // `an_inbound_detection_comes_from_the_remote_end_and_others_go_to_it`)
    let own = [
        ("siem-alert", "destination.ip"),
        ("siem-alert", "destination.port"),
        ("siem-event", "source.ip"),
        ("siem-event", "destination.ip"),
        ("siem-event", "related.ip"),
        // and the rules below, on our own items: `related.hash` with the application's
        // hash, a report in another form, ports out of range
        ("siem-event", "related.hash"),
        (
            "siem-alert",
            "sophos_central.alert.data.ips_threat.raw_data.message",
        ),
        (
            "siem-event",
            "sophos_central.event.ips_threat_data.raw_data.message",
        ),
        (
            "siem-alert",
            "sophos_central.alert.data.ips_threat.local_port",
        ),
        (
            "siem-alert",
            "sophos_central.alert.data.ips_threat.remote.port",
        ),
        (
            "siem-event",
            "sophos_central.event.ips_threat_data.local_port",
        ),
        (
            "siem-event",
            "sophos_central.event.ips_threat_data.remote.port",
        ),
        ("siem-event", "source.port"),
    ];
    for d in DIFFERENCES {
        for f in d.fields {
            let seen = differing.iter().any(|(p, g)| p == d.profile && g == f)
                || own.contains(&(d.profile, *f));
            assert!(
                seen,
                "{}: {f} is listed as different but is equal in every fixture",
                d.profile
            );
        }
    }
}

fn own(file: &str, profile: &Profile) -> Vec<(Value, u64)> {
    std::fs::read_to_string(root().join("examples").join(file))
        .unwrap()
        .lines()
        .map(|l| normalize(profile, l))
        .collect()
}

#[test]
fn an_inbound_detection_comes_from_the_remote_end_and_others_go_to_it() {
    for (file, profile) in [
        ("siem-alerts.ndjson", Profile::siem_alert()),
        ("siem-events.ndjson", Profile::siem_event()),
    ] {
        let docs = own(file, &profile);
        let inbound = &docs[1].0;
        assert_eq!(
            get(inbound, "source.ip"),
            Some(&json!("203.0.113.45")),
            "{file}"
        );
        assert_eq!(get(inbound, "source.port"), Some(&json!(51514)), "{file}");
        assert_eq!(
            get(inbound, "destination.ip"),
            Some(&json!("10.20.4.57")),
            "{file}"
        );
        assert_eq!(
            get(inbound, "destination.port"),
            Some(&json!(445)),
            "{file}"
        );
        // the endpoint's own address is the host's
        assert_eq!(
            get(inbound, "host.ip"),
            Some(&json!(["10.20.4.57"])),
            "{file}"
        );
        assert_eq!(
            get(inbound, "related.ip"),
            Some(&json!(["203.0.113.45", "10.20.4.57"])),
            "{file}"
        );
    }
    // not inbound: the remote end is the destination, as Elastic writes it
    let (doc, _) = normalize(
        &Profile::siem_event(),
        r#"{"id":"x","type":"Event::Endpoint::Threat::IpsOutboundDetection","source_info":{"ip":"10.9.9.9"},"ips_threat_data":{"remoteIp":"198.51.100.9","remotePort":"443","localPort":"50001","rawData":"Message  m\nLocal IP:   10.0.0.5"}}"#,
    );
    assert_eq!(get(&doc, "destination.ip"), Some(&json!("198.51.100.9")));
    assert_eq!(get(&doc, "destination.port"), Some(&json!(443)));
    assert_eq!(get(&doc, "source.ip"), Some(&json!("10.0.0.5")));
    assert_eq!(get(&doc, "source.port"), Some(&json!(50001)));
    // every address is related, the interface's as well as the endpoint's
    assert_eq!(
        get(&doc, "related.ip"),
        Some(&json!(["10.0.0.5", "198.51.100.9", "10.9.9.9"]))
    );
}

#[test]
fn one_process_fills_process_fields() {
    let events = own("siem-events.ndjson", &Profile::siem_event());
    // AMSI: its own name, path, pid and parent
    let amsi = &events[2].0;
    assert_eq!(get(amsi, "process.name"), Some(&json!("powershell.exe")));
    assert_eq!(get(amsi, "process.pid"), Some(&json!(7764)));
    assert_eq!(
        get(amsi, "process.executable"),
        Some(&json!(
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
        ))
    );
    assert_eq!(
        get(amsi, "process.parent.executable"),
        Some(&json!("C:\\Windows\\explorer.exe"))
    );
    assert!(get(amsi, "process.working_directory").is_none());
    // IPS only: the IPS process
    let ips = &events[1].0;
    assert_eq!(get(ips, "process.name"), Some(&json!("System")));
    assert_eq!(get(ips, "process.pid"), Some(&json!(4)));
    // an alert with an exploit: the exploited process, its path
    let alerts = own("siem-alerts.ndjson", &Profile::siem_alert());
    let exploit = &alerts[2].0;
    assert_eq!(get(exploit, "process.name"), Some(&json!("WINWORD.EXE")));
    assert_eq!(get(exploit, "process.pid"), Some(&json!(4312)));
    assert_eq!(
        get(exploit, "process.executable"),
        Some(&json!(
            "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"
        ))
    );
}

#[test]
fn users_hosts_severities_and_odd_values() {
    let alerts = own("siem-alerts.ndjson", &Profile::siem_alert());
    let cleaned = &alerts[0].0;
    assert_eq!(get(cleaned, "user.domain"), Some(&json!("CORP")));
    assert_eq!(get(cleaned, "user.name"), Some(&json!("jdoe")));
    assert_eq!(get(cleaned, "related.user"), Some(&json!(["jdoe"])));
    assert_eq!(get(cleaned, "host.name"), Some(&json!("WS-FINANCE-07")));
    assert_eq!(get(cleaned, "host.os.type"), Some(&json!("windows")));
    assert_eq!(get(cleaned, "event.severity"), Some(&json!(21)));
    assert_eq!(
        get(cleaned, "event.dataset"),
        Some(&json!("sophos_central.alert"))
    );
    assert_eq!(
        get(cleaned, "sophos_central.alert.data.core_remedy.items"),
        Some(
            &json!([{"type":"file","result":"SUCCESS","suspend_result":"NOT_APPLICABLE","descriptor":"C:\\Users\\jdoe\\Downloads\\invoice.exe"}])
        )
    );
    assert_eq!(
        get(cleaned, "sophos_central.alert.data.threat_id.timestamp"),
        Some(&json!("2026-11-30T09:14:05Z"))
    );
    assert_eq!(alerts[0].1, 0, "a clean alert has no warning");
    // a Linux server's alert with the older string threat_id: kept in event.original
    let linux = &alerts[3].0;
    assert_eq!(get(linux, "host.os.type"), Some(&json!("linux")));
    assert_eq!(get(linux, "user.name"), Some(&json!("root")));
    assert!(get(linux, "user.domain").is_none());
    assert!(get(linux, "sophos_central.alert.data.threat_id").is_none());
    assert!(
        get(linux, "event.original")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("5ca6696a1b1a2d0defa8b5da")
    );
    // odd values are left out with a warning each, and the item is kept
    let (odd, warnings) = &alerts[4];
    assert!(get(odd, "event.severity").is_none());
    assert!(get(odd, "host.ip").is_none());
    assert!(get(odd, "destination.port").is_none());
    assert!(get(odd, "source.port").is_none(), "port -1 is no port");
    assert_eq!(get(odd, "user.name"), Some(&json!("Jane Doe")));
    assert!(get(odd, "user.domain").is_none());
    assert_eq!(get(odd, "@timestamp"), Some(&json!("2026-11-30T13:00:00Z")));
    assert_eq!(
        get(odd, "sophos_central.alert.data.certificates"),
        Some(&json!([{"signer":"Example CA","thumbprint":"00ff"}]))
    );
    // severity, host.ip, source_info_ip, and the two bad ports, each in its ECS and its
    // sophos_central field
    assert_eq!(*warnings, 7);
    let events = own("siem-events.ndjson", &Profile::siem_event());
    let (odd, _) = &events[6];
    assert_eq!(get(odd, "event.severity"), Some(&json!(99)));
    assert_eq!(get(odd, "user.domain"), Some(&json!("LAB")));
    assert!(get(odd, "user.name").is_none());
    assert!(get(odd, "host.ip").is_none());
    assert!(get(odd, "sophos_central.event.app_certs").is_none());
    assert!(get(odd, "sophos_central.event.origin").is_none());
    assert_eq!(
        get(odd, "sophos_central.event.ips_threat_data.raw_data.message"),
        Some(&json!("connection reset by peer"))
    );
    // the sha256 of the application is a related hash (Elastic leaves it out)
    assert_eq!(
        get(&events[0].0, "related.hash"),
        Some(&json!([
            "3f786850e387550fdab836ed7e6dc881de23001b9d5f5d2f3a3fd5a8f2d6c4b1"
        ]))
    );
}

#[test]
fn every_item_of_a_page_is_normalized_or_rejected_never_lost() {
    // items are JSON objects; anything else is rejected with a reason
    let n = Normalizer::new(Profile::siem_event());
    for (line, ok) in [
        (r#"{"id":"a"}"#, true),
        ("[1,2]", false),
        (r#"{"id":"a""#, false),
        ("\"text\"", false),
    ] {
        let mut out = Vec::new();
        let mut w = n.new_warnings();
        let outcome = n.normalize_line(line.as_bytes(), &mut out, &mut w);
        assert_eq!(
            matches!(outcome, LineOutcome::Normalized),
            ok,
            "{line}: {outcome:?}"
        );
    }
}

#[test]
fn an_item_is_one_document_id_on_every_path_and_an_alert_is_not_its_event() {
    let alert = std::fs::read_to_string(root().join("examples/siem-alerts.ndjson")).unwrap();
    let event = std::fs::read_to_string(root().join("examples/siem-events.ndjson")).unwrap();
    let (alert, event) = (alert.lines().next().unwrap(), event.lines().next().unwrap());
    let key = |profile: &Profile, item: &str| {
        let n = Normalizer::new(profile.clone());
        let mut out = Vec::new();
        n.normalize_line(item.as_bytes(), &mut out, &mut n.new_warnings());
        sophos_tac::sinks::document_key(out.trim_ascii_end())
    };
    let tenant = "7d0f6a52-1c3e-4b8a-9e21-3a5b6c7d8e90";
    let id = "4c2b8f0e-7d1a-4e55-9a0b-1f3c2d4e5f60";
    assert_eq!(
        key(&Profile::siem_alert(), alert),
        format!("alert:{tenant}:{id}")
    );
    assert_eq!(
        key(&Profile::siem_event(), event),
        format!("event:{tenant}:{id}")
    );
    // the item's key, whatever made the document
    assert_eq!(
        sophos_tac::row::item_key("alert", alert),
        key(&Profile::siem_alert(), alert)
    );
}

#[test]
fn the_differences_page_is_generated() {
    let path = root().join("docs/siem-differences.md");
    let mut page = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- differences:begin -->\n", "<!-- differences:end -->");
    let start = page.find(begin).expect("a differences:begin marker") + begin.len();
    let stop = page[start..].find(end).expect("a differences:end marker") + start;
    let table = sophos_tac::catalogue::siem_differences();
    if page[start..stop] != table {
        if std::env::var_os("SOPHOS_TAC_BLESS").is_some() {
            page.replace_range(start..stop, &table);
            std::fs::write(&path, page).unwrap();
        } else {
            panic!(
                "docs/siem-differences.md is out of date; run `SOPHOS_TAC_BLESS=1 cargo test --test it siem::`"
            );
        }
    }
}

#[test]
fn a_report_in_another_form_is_read_by_its_labels_and_ports_are_ports() {
    // five labelled lines, none of Elastic's three forms: each line still gives its field
    let report = "Message       OS-LINUX reverse shell attempt\nPacket type   TCP\nRemote IP:    198.51.100.77\nRemote Port:  4444\nPID:          3121";
    for (profile, key, prefix) in [
        (
            Profile::siem_alert(),
            "data",
            "sophos_central.alert.data.ips_threat.raw_data",
        ),
        (
            Profile::siem_event(),
            "ips_threat_data",
            "sophos_central.event.ips_threat_data.raw_data",
        ),
    ] {
        let inner = if key == "data" {
            json!({ "ips_threat": { "raw_data": report, "local_port": "70000", "remote_port": "-1" } })
        } else {
            json!({ "rawData": report, "localPort": "70000", "remotePort": "-1" })
        };
        let item = json!({ "id": "x", "when": "2026-11-30T10:00:00Z", "type": "Event::Endpoint::Threat::IpsOutboundDetection", key: inner });
        let (doc, warnings) = normalize(&profile, &item.to_string());
        assert_eq!(
            get(&doc, &format!("{prefix}.message")),
            Some(&json!("OS-LINUX reverse shell attempt"))
        );
        assert_eq!(
            get(&doc, &format!("{prefix}.remote.port")),
            Some(&json!(4444))
        );
        assert_eq!(get(&doc, &format!("{prefix}.pid")), Some(&json!("3121")));
        assert!(get(&doc, &format!("{prefix}.reference")).is_none());
        // 70000 and -1 are no ports: left out (ECS and the vendor fields), with warnings
        assert!(get(&doc, "source.port").is_none() && get(&doc, "destination.port").is_none());
        assert_eq!(warnings, 4, "{doc}");
    }
}
