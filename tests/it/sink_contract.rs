//! The contract every sink keeps, run by the same code against each one, opened by the
//! one factory (`sinks::build`) and read back from a real destination on 127.0.0.1 (as
//! Vector's component compliance tests do): a file, an OpenSearch-API index
//! (osmem-server), rsyslog over TCP, and Kafka (tansu).
//!
//! The contract, in the order the collector uses a sink:
//! 1. `check` passes on a destination that is there;
//! 2. `mark`, `deliver`, `committed`: an acknowledged delivery is in the destination;
//! 3. a delivery cut short (part of its batch written, then the process gone) is undone
//!    by `repair` with its mark on a sink opened anew, and once delivered again the
//!    destination holds each document exactly once (a file, an index: the guarantee), or
//!    at least once and nothing else (syslog, Kafka, which cannot take a message back);
//! 4. `delivery_bound` is finite and not zero; nothing was dead-lettered; `name`,
//!    `report` and the settings' `Debug` show no secret (the index's destination holds a
//!    password).
//!
//! Standard output is left out: it cannot be read back from the process that writes it
//! (`tests/it/cli.rs` checks it through the binary). A new sink gets the contract by one
//! more `Destination` and one `#[test]` below.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sophos_tac::mapping::Profile;
use sophos_tac::sinks::{FileConfig, Sink, SinkConfig, SinkContext};
use sophos_tac::{LineOutcome, Normalizer};

use crate::common::servers::{Server, free_port, http};

/// What the destination promises about a batch delivered again after a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarantee {
    /// Each document once: the repair undoes the partial delivery, or the destination
    /// knows the document by its id.
    ExactlyOnce,
    /// Each document at least once, and nothing else.
    AtLeastOnce,
}

/// A destination the contract runs against.
trait Destination {
    /// The output's settings, as a front end would resolve them.
    fn config(&self) -> SinkConfig;
    /// What it promises for a batch delivered again.
    fn guarantee(&self) -> Guarantee;
    /// The rows (each document's `message`) it holds now, counted, once the `sent`
    /// documents delivered so far (repeats included) arrived or a bounded wait ran out.
    fn held(&self, sent: usize) -> BTreeMap<String, usize>;
}

/// `n` documents from rows of our own (Windows process and registry events, Linux
/// logons), starting at row `from`, with their row keys.
fn documents(from: usize, n: usize) -> (Vec<u8>, Vec<String>, Vec<String>) {
    let normalizer = Normalizer::new(Profile::documented());
    let mut warnings = normalizer.new_warnings();
    let (mut ndjson, mut ids, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for i in from..from + n {
        let (os, name, extra) = match i % 3 {
            0 => (
                "windows",
                "Suspicious PowerShell child process",
                serde_json::json!({ "process_name": "powershell.exe", "cmd_line": "powershell -enc SQBFAFgA" }),
            ),
            1 => (
                "windows",
                "Run key persistence (clé \"Run\")",
                serde_json::json!({ "registry_key": "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" }),
            ),
            _ => (
                "linux",
                "SSH brute force then logon",
                serde_json::json!({ "logon_type": 10, "username": "root" }),
            ),
        };
        let mut row = serde_json::json!({
            "customer_id": "8e0e4d5b-0000-4000-8000-00000000c0de",
            "record_identifier": format!("contract-{i}"),
            "ioc_detection_id": format!("DET-{i}"),
            "ioc_detection_description": name,
            "ioc_detection_weight": 3 + i % 6,
            "calendar_time": format!("2026-11-30T08:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
            "meta_hostname": format!("{os}-host-{}", i % 11),
            "meta_os_type": os,
        });
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let line = row.to_string();
        let start = ndjson.len();
        let outcome = normalizer.normalize_line(line.as_bytes(), &mut ndjson, &mut warnings);
        assert!(matches!(outcome, LineOutcome::Normalized), "{outcome:?}");
        if ndjson.last() != Some(&b'\n') {
            ndjson.push(b'\n');
        }
        ids.push(sophos_tac::sinks::document_key(&ndjson[start..]));
        rows.push(line);
    }
    (ndjson, ids, rows)
}

/// The rows behind NDJSON documents, counted.
fn messages(lines: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let doc: Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
        let message = doc["message"].as_str().expect("a message").to_string();
        *m.entry(message).or_default() += 1;
    }
    m
}

/// The first `n` whole lines of an NDJSON batch.
fn first_lines(ndjson: &[u8], n: usize) -> &[u8] {
    let mut end = 0;
    for _ in 0..n {
        end += memchr_newline(&ndjson[end..]) + 1;
    }
    &ndjson[..end]
}

fn memchr_newline(b: &[u8]) -> usize {
    b.iter().position(|&c| c == b'\n').expect("whole lines")
}

/// The contract, the same for every destination.
fn contract(d: &dyn Destination) {
    let context = SinkContext {
        replays: true,
        ..SinkContext::default()
    };
    let config = d.config();
    let mut sink = sophos_tac::sinks::build(&config, &context).expect("the sink opens");
    sink.check()
        .expect("check passes on a destination that is there");

    // 2. An acknowledged delivery is in the destination.
    let (a, a_ids, a_rows) = documents(0, 6);
    let _mark = sink.mark().unwrap();
    sink.deliver(&a, Some(&a_ids)).expect("the first delivery");
    sink.committed().unwrap();
    let want_a: BTreeMap<String, usize> = a_rows.iter().map(|r| (r.clone(), 1)).collect();
    let held = d.held(6);
    match d.guarantee() {
        Guarantee::ExactlyOnce => assert_eq!(held, want_a, "{}", sink.name()),
        Guarantee::AtLeastOnce => assert_eq!(
            held.keys().collect::<Vec<_>>(),
            want_a.keys().collect::<Vec<_>>(),
            "{}",
            sink.name()
        ),
    }

    // 3. A delivery cut short, its process gone: repaired by a sink opened anew, then
    // delivered again whole.
    let (b, b_ids, b_rows) = documents(6, 9);
    let mark = sink.mark().unwrap();
    sink.deliver(first_lines(&b, 4), Some(&b_ids[..4]))
        .expect("the part delivered before the crash");
    drop(sink);
    let mut sink = sophos_tac::sinks::build(&config, &context).expect("the sink opens again");
    sink.repair(&mark).expect("the repair");
    sink.deliver(&b, Some(&b_ids))
        .expect("the batch delivered again");
    sink.committed().unwrap();
    let all: BTreeMap<String, usize> = a_rows
        .iter()
        .chain(&b_rows)
        .map(|r| (r.clone(), 1))
        .collect();
    let held = d.held(a_ids.len() + 4 + b_ids.len());
    match d.guarantee() {
        Guarantee::ExactlyOnce => assert_eq!(held, all, "{}: exactly once", sink.name()),
        Guarantee::AtLeastOnce => {
            assert_eq!(
                held.keys().collect::<Vec<_>>(),
                all.keys().collect::<Vec<_>>(),
                "{}: every document, and nothing else",
                sink.name()
            );
        }
    }

    // 4. Bounds, counts and what it shows.
    let bound = sink.delivery_bound(b_ids.len(), b.len());
    assert!(
        bound > Duration::ZERO && bound < Duration::from_secs(86_400),
        "{}: {bound:?}",
        sink.name()
    );
    assert_eq!(sink.dead_lettered(), 0, "{}", sink.name());
    let shown = format!("{} {:?}", sink.name(), sink.report().map(|r| r.line));
    assert!(!shown.contains(SECRET), "{shown}");

    // 5. Batches submitted without waiting are all acknowledged, in order, once settled:
    // `pending` never counts more than were submitted, and only goes down.
    let mut sent = a_ids.len() + 4 + b_ids.len();
    let mut rows: Vec<String> = a_rows.iter().chain(&b_rows).cloned().collect();
    for k in 0..3 {
        let (c, c_ids, c_rows) = documents(15 + 5 * k, 5);
        sink.submit(&c, Some(&c_ids)).expect("a submission");
        assert!(
            sink.pending() <= k + 1,
            "{}: {} pending",
            sink.name(),
            sink.pending()
        );
        sent += c_ids.len();
        rows.extend(c_rows);
    }
    let until = std::time::Instant::now() + sink.delivery_bound(15, 1 << 20);
    let mut last = sink.pending();
    while sink.pending() > 0 {
        assert!(
            std::time::Instant::now() < until,
            "{}: still {} pending past the delivery bound",
            sink.name(),
            sink.pending()
        );
        sink.settle(Duration::from_secs(1))
            .expect("the submitted batches are acknowledged");
        assert!(sink.pending() <= last, "{}", sink.name());
        last = sink.pending();
    }
    sink.committed().unwrap();
    let held = d.held(sent);
    let every: Vec<&String> = rows
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        every,
        "{}: every submitted document",
        sink.name()
    );
}

/// A password no sink may show.
const SECRET: &str = "contract-Pa55word-never-shown";

struct File(tempfile::TempDir);

impl Destination for File {
    fn config(&self) -> SinkConfig {
        SinkConfig::File(FileConfig {
            path: self.0.path().join("out/contract.ndjson"),
            ..FileConfig::default()
        })
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }
    fn held(&self, _sent: usize) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.0.path().join("out/contract.ndjson")).unwrap();
        messages(text.lines().map(str::to_string))
    }
}

struct Index {
    server: Server,
    index: String,
}

impl Destination for Index {
    fn config(&self) -> SinkConfig {
        let mut es = sophos_tac::sinks::EsConfig::from_url(
            &format!("{}/{}", self.server.url, self.index),
            Profile::documented(),
        )
        .unwrap();
        es.basic = Some(("contract".into(), SECRET.into()));
        es.max_retries = 2;
        es.dead_letter = std::env::temp_dir().join(format!("{}-dead-letter.ndjson", self.index));
        SinkConfig::Elasticsearch(Box::new(es))
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }
    fn held(&self, _sent: usize) -> BTreeMap<String, usize> {
        let url = &self.server.url;
        let _ = http(url, "POST", &format!("/{}/_refresh", self.index), "");
        let (status, body) = http(
            url,
            "POST",
            &format!("/{}/_search?size=1000", self.index),
            r#"{"query":{"match_all":{}},"size":1000}"#,
        );
        assert_eq!(status, 200, "{body}");
        let hits: Value = serde_json::from_str(&body).unwrap();
        messages(
            hits["hits"]["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["_source"].to_string()),
        )
    }
}

struct Syslog {
    rsyslog: crate::common::syslog::Rsyslog,
    port: u16,
}

impl Destination for Syslog {
    fn config(&self) -> SinkConfig {
        let sys = sophos_tac::sinks::SyslogConfig::from_url(&format!(
            "syslog+tcp://127.0.0.1:{}",
            self.port
        ))
        .unwrap();
        SinkConfig::Syslog(Box::new(sys))
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }
    fn held(&self, sent: usize) -> BTreeMap<String, usize> {
        let got = self.rsyslog.wait_for(sent);
        let mut m = BTreeMap::new();
        for (doc, n) in got {
            let doc: Value = serde_json::from_str(&doc).unwrap();
            *m.entry(doc["message"].as_str().unwrap().to_string())
                .or_default() += n;
        }
        m
    }
}

struct Kafka {
    broker: crate::common::kafka::Broker,
    topic: String,
}

impl Destination for Kafka {
    fn config(&self) -> SinkConfig {
        let kafka = sophos_tac::kafka::KafkaConfig::from_url(
            &format!("kafka://{}/{}", self.broker.addr(), self.topic),
            || None,
        )
        .unwrap();
        SinkConfig::Kafka(Box::new(sophos_tac::sinks::kafka::KafkaSinkConfig {
            kafka,
            dead_letter: std::env::temp_dir().join(format!("{}-dead-letter.ndjson", self.topic)),
        }))
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }
    fn held(&self, _sent: usize) -> BTreeMap<String, usize> {
        let read = crate::common::kafka::read_topic(&self.broker, &self.topic, 2);
        messages(read.into_iter().map(|m| m.payload))
    }
}

#[test]
fn a_file_keeps_the_contract() {
    contract(&File(tempfile::tempdir().unwrap()));
}

#[test]
fn an_index_keeps_the_contract() {
    let index = format!("contract-{}", std::process::id());
    contract(&Index {
        server: Server::start(),
        index,
    });
}

#[test]
fn syslog_keeps_the_contract() {
    if !crate::common::syslog::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = crate::common::syslog::Rsyslog::start(dir.path(), port, None, None);
    contract(&Syslog { rsyslog, port });
    drop(dir);
}

#[test]
fn kafka_keeps_the_contract() {
    let broker = crate::common::kafka::Broker::start();
    let topic = "contract".to_string();
    broker.create_topic(&topic, 2);
    contract(&Kafka { broker, topic });
}

/// The file's repair cuts exactly what came after the mark, even when the crash left a
/// torn last line (the factory cuts it on open, the repair then the rest).
#[test]
fn a_files_repair_after_a_torn_write_leaves_the_acknowledged_lines() {
    let d = File(tempfile::tempdir().unwrap());
    let context = SinkContext {
        replays: true,
        ..SinkContext::default()
    };
    let mut sink = sophos_tac::sinks::build(&d.config(), &context).unwrap();
    let (a, a_ids, a_rows) = documents(0, 3);
    sink.deliver(&a, Some(&a_ids)).unwrap();
    let mark = sink.mark().unwrap();
    drop(sink);
    let path = d.0.path().join("out/contract.ndjson");
    let (b, _, _) = documents(3, 2);
    let torn = &b[..b.len() - 7];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, torn))
        .unwrap();
    let mut sink = sophos_tac::sinks::build(&d.config(), &context).unwrap();
    sink.repair(&mark).unwrap();
    let want: BTreeMap<String, usize> = a_rows.iter().map(|r| (r.clone(), 1)).collect();
    assert_eq!(d.held(3), want);
    assert!(Path::new(&path).exists());
}
