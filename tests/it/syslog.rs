//! Delivery to a real rsyslog (Debian's `rsyslog` and `rsyslog-gnutls`, installed by
//! `.ci/run`) listening on loopback ports and writing what it receives to a file:
//! every row arrives and parses back to the same JSON, over TCP (also across a restart
//! of rsyslog between batches, and while it is down), TLS and UDP.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::servers::free_port;
use crate::common::syslog::{Rsyslog, available};
use serde_json::Value;
use sophos_tac::sinks::{Sink, SyslogConfig, SyslogSink};

/// `n` normalized documents (NDJSON), each distinct, with non-ASCII and escapes.
fn documents(n: usize) -> Vec<u8> {
    let normalizer = sophos_tac::Normalizer::new(sophos_tac::mapping::Profile::extended());
    let mut out = Vec::new();
    let mut w = normalizer.new_warnings();
    for i in 0..n {
        let row = serde_json::json!({
            "record_identifier": format!("r-{i}"),
            "calendar_time": "2024-03-05T10:00:00Z",
            "meta_hostname": format!("hôte-{i}"),
            "process_cmd_line": format!("\"C:\\\\Windows\\\\cmd.exe\" /c echo {i}"),
            "ioc_severity": i % 10,
        });
        normalizer.normalize_line(row.to_string().as_bytes(), &mut out, &mut w);
    }
    out
}

fn expected(ndjson: &[u8]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let doc: Value = serde_json::from_slice(line).unwrap();
        *m.entry(doc.to_string()).or_default() += 1;
    }
    m
}

fn sink(url: &str) -> SyslogSink {
    let mut cfg = SyslogConfig::from_url(url).unwrap();
    cfg.max_retries = 30;
    SyslogSink::open(cfg).unwrap()
}

#[test]
fn tcp_delivers_every_row_across_restarts() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start(dir.path(), port, None, None);
    let mut sink = sink(&format!("syslog+tcp://127.0.0.1:{port}"));
    let docs = documents(1500);
    let lines: Vec<&[u8]> = docs.split_inclusive(|b| *b == b'\n').collect();
    let batch = |range: std::ops::Range<usize>| lines[range].concat();
    sink.deliver(&batch(0..500), None).unwrap();
    rsyslog.wait_for(500);
    // Restarted between batches: the sink notices the closed connection and reconnects.
    rsyslog.stop();
    rsyslog = Rsyslog::start(dir.path(), port, None, None);
    sink.deliver(&batch(500..1000), None).unwrap();
    rsyslog.wait_for(1000);
    // Down when a batch comes: the sink retries with backoff until it is back.
    rsyslog.stop();
    let restart = std::thread::spawn({
        let dir = dir.path().to_path_buf();
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            Rsyslog::start(&dir, port, None, None)
        }
    });
    sink.deliver(&batch(1000..1500), None).unwrap();
    let rsyslog = restart.join().unwrap();
    assert_eq!(rsyslog.wait_for(1500), expected(&docs));
    assert!(sink.stats().connections >= 3);
}

#[test]
fn udp_delivers() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, udp) = (free_port(), free_port());
    let rsyslog = Rsyslog::start(dir.path(), port, Some(udp), None);
    let docs = documents(50);
    sink(&format!("syslog+udp://127.0.0.1:{udp}"))
        .deliver(&docs, None)
        .unwrap();
    assert_eq!(rsyslog.wait_for(50), expected(&docs));
}

#[test]
fn tls_delivers_with_a_private_ca() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::common::servers::private_ca(d);
    let port = free_port();
    let rsyslog = Rsyslog::start(
        d,
        port,
        None,
        Some((
            &d.join("ca.pem"),
            &d.join("server.pem"),
            &d.join("server.key"),
        )),
    );
    let mut cfg = SyslogConfig::from_url(&format!("syslog+tls://localhost:{port}")).unwrap();
    cfg.ca_file = Some(d.join("ca.pem"));
    let docs = documents(300);
    SyslogSink::open(cfg).unwrap().deliver(&docs, None).unwrap();
    assert_eq!(rsyslog.wait_for(300), expected(&docs));
    // Without the CA, the certificate is refused: TLS is verified.
    let mut untrusted = SyslogConfig::from_url(&format!("syslog+tls://localhost:{port}")).unwrap();
    untrusted.max_retries = 0;
    assert!(
        SyslogSink::open(untrusted)
            .unwrap()
            .deliver(&docs, None)
            .is_err()
    );
}

#[test]
fn normalize_sends_to_syslog_from_the_command_line() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(dir.path(), port, None, None);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/detections.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_sophos-tac"))
        .args([
            "normalize",
            "-q",
            "--rejects",
            "/dev/null",
            "-o",
            &format!("syslog+tcp://127.0.0.1:{port}"),
            example.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "3 rejects: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = Command::new(env!("CARGO_BIN_EXE_sophos-tac"))
        .args([
            "normalize",
            "-q",
            "--rejects",
            "/dev/null",
            example.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let want = expected(&file.stdout);
    let got = rsyslog.wait_for(6);
    // @timestamp and message are the same; compare whole documents.
    assert_eq!(got, want);
}

/// A stock rsyslog (default `maxMessageSize`, 8k) and documents of about 12 KB: the sink
/// warns once and counts them; sent whole they arrive cut, and with
/// `--syslog-oversize dead-letter` they are kept aside with the reason while the others
/// arrive whole.
#[test]
fn documents_over_a_stock_rsyslog_size_are_warned_about_and_can_be_kept_aside() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 10 rows, 4 of them with a 12 KB command line.
    let mut rows = String::new();
    for i in 0..10 {
        let cmd = if i % 3 == 0 {
            "x".repeat(12_000)
        } else {
            format!("cmd {i}")
        };
        rows += &serde_json::json!({
            "record_identifier": format!("big-{i}"),
            "calendar_time": "2024-03-05T10:00:00Z",
            "process_cmd_line": cmd,
        })
        .to_string();
        rows.push('\n');
    }
    let input = dir.path().join("rows.ndjson");
    std::fs::write(&input, rows).unwrap();
    let run = |port: u16, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sophos-tac"))
            .args(["normalize", "--profile", "extended", "-o"])
            .arg(format!("syslog+tcp://127.0.0.1:{port}"))
            .args(extra)
            .arg(&input)
            .output()
            .unwrap()
    };
    // Sent whole: a warning, a count, and a receiver that cuts them.
    let stock = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start_sized(stock.path(), port, None, None, None);
    let out = run(port, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("larger than the receiver").count(),
        1,
        "warned once: {err}"
    );
    assert!(
        err.contains("4 document(s) over the size limit (8192 bytes: --syslog-max-bytes, max_message_bytes) or what one UDP datagram takes: 4 sent whole, 0 kept in"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    rsyslog.stop();
    let text = std::fs::read_to_string(&rsyslog.out).unwrap_or_default();
    let whole = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l.trim()).is_ok())
        .count();
    assert_eq!(
        whole,
        6,
        "the 6 small ones arrive whole, the 4 large ones cut: {}",
        text.len()
    );
    // Kept aside: the large ones are in the dead-letter file, the others arrive whole.
    let aside = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start_sized(aside.path(), port, None, None, None);
    let dead = aside.path().join("oversize.ndjson");
    let out = run(
        port,
        &[
            "--syslog-oversize",
            "dead-letter",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "documents kept aside: {err}");
    let got = rsyslog.wait_for(6);
    assert_eq!(got.values().sum::<usize>(), 6);
    let kept: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 4);
    for k in &kept {
        assert!(
            k["reason"]
                .as_str()
                .unwrap()
                .contains("over max_message_bytes (8192)")
        );
        let doc: Value = serde_json::from_str(k["document"].as_str().unwrap()).unwrap();
        assert!(doc["message"].as_str().unwrap().contains("big-"));
    }
}
