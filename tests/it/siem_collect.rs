//! `collect` with the SIEM API streams (`[siem] streams`) against the simulator, both real
//! binaries on 127.0.0.1: every alert and every event of every tenant exactly once,
//! beside the Data Lake rows, through faults, restarts and `kill -9`s; and an outage
//! beyond the API's 24-hour reach reported with its size.

use std::time::{Duration, Instant};

use crate::common::collect::{
    DEFAULT_LIMITS, DEFAULT_QUERY, Setup, Sim, assert_exactly_once, assert_items_exactly_once,
    assert_no_secret, rng, wait_for_every_item, wait_for_every_row,
};
use crate::common::servers::{Running, get, wait_for};

/// `[siem]` with both streams and small pages, so that a stream takes many pages.
const SIEM: &str = "\n[siem]\nstreams = [\"alerts\", \"events\"]\nlimit = 7";

#[test]
fn a_tenant_s_alerts_and_events_arrive_once_beside_its_detections() {
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "60",
        "--siem-items",
        "80",
        "--siem-repeat-fraction",
        "0.5",
    ]);
    let setup = Setup::new(&sim, SIEM);
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
    assert_items_exactly_once(&sim, &setup);
    let items = sim.items(|_| true);
    assert_eq!(items.keys().filter(|k| k.starts_with("alert:")).count(), 20);
    assert_eq!(items.keys().filter(|k| k.starts_with("event:")).count(), 80);
    // pages served an item twice, and it was delivered once: the duplicates are counted
    assert!(log.contains("page delivered"), "{log}");
    let duplicates: u64 = setup
        .status()
        .lines()
        .filter(|l| l.contains(" alerts ") || l.contains(" events "))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse::<u64>().ok())
        .sum();
    assert!(duplicates > 0, "the repeated items were not counted");
    let stats = sim.get("/_sim/stats");
    assert!(stats["siem_pages"].as_u64().unwrap() > 12, "{stats}");
    // a second pass adds nothing
    let (code, log2) = setup.once();
    assert_eq!(code, 0, "{log2}");
    assert_items_exactly_once(&sim, &setup);
    assert_exactly_once(&sim, &setup);
    // --status: both streams, drained, with their counts and no gap
    let status = setup.status();
    let lines: Vec<&str> = status
        .lines()
        .filter(|l| l.contains(" alerts ") || l.contains(" events "))
        .collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(
        lines[0].contains(" 20 ") && lines[0].contains("none"),
        "{status}"
    );
    assert!(
        lines[1].contains(" 80 ") && lines[1].contains("none"),
        "{status}"
    );
    // every document of a stream carries its profile's data set
    let docs = setup.delivered_items();
    assert_eq!(docs.len(), 100);
    assert_no_secret(&setup, &(log + &log2));
}

#[test]
fn check_reaches_both_streams_and_metrics_count_them() {
    let sim = Sim::start(&["--kind", "partner", "--tenants", "2", "--rows", "10"]);
    let port = crate::common::servers::free_port();
    let setup = Setup::new(
        &sim,
        &format!("{SIEM}\n\n[service]\nlisten = \"127.0.0.1:{port}\""),
    );
    let out = crate::common::collect::bounded(setup.command(&["--check"]), Duration::from_secs(60));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    for stream in ["siem alerts", "siem events"] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(stream) && l.contains("reached for")),
            "{report}"
        );
    }
    // the service's metrics, per tenant and stream
    let _service = Running(
        setup
            .command(&[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = wait_for(Duration::from_secs(60), "the streams' metrics", || {
        get(port, "/metrics")
            .map(|(_, body)| body)
            // both streams read once: each has its lag
            .filter(|m| {
                ["alerts", "events"].iter().all(|stream| {
                    m.lines().any(|l| {
                        l.starts_with("sophos_tac_siem_lag_seconds{")
                            && l.contains(&format!("stream=\"{stream}\""))
                    })
                })
            })
    });
    for name in [
        "sophos_tac_siem_items_delivered_total{",
        "sophos_tac_siem_items_duplicate_total{",
        "sophos_tac_siem_gap_seconds_total{",
        "sophos_tac_siem_lag_seconds{",
        "stream=\"alerts\"",
        "stream=\"events\"",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }
}

/// Three tenants of a partner, the Data Lake and both streams, items arriving (some late,
/// some served twice), 429s, 5xx, dropped connections and expiring tokens, and 20 or more
/// `kill -9`s (some between a delivery and its commit): a file output and an
/// OpenSearch-API index each hold every row, alert and event exactly once.
#[test]
fn partner_streams_and_detections_exactly_once_through_faults_and_kill_9s() {
    let server = crate::common::servers::Server::start();
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "60",
        "--past-secs",
        "600",
        "--siem-items",
        "60",
        "--siem-past-secs",
        "600",
        "--siem-future-secs",
        "10",
        "--siem-late-fraction",
        "0.3",
        "--siem-late-secs",
        "120",
        "--siem-repeat-fraction",
        "0.3",
        "--throttle-rate",
        "0.05",
        "--fail-rate",
        "0.05",
        "--drop-rate",
        "0.02",
        "--token-ttl",
        "4",
        "--announced-ttl",
        "3600",
    ]);
    let setup = Setup::with(
        &sim,
        DEFAULT_QUERY,
        DEFAULT_LIMITS,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"index\"\ntype = \"elasticsearch\"\nurl = \"{}/central\"\ninstall_template = true\nbatch_docs = 9\n{SIEM}",
            server.url
        ),
    );
    setup.several_outputs();
    let mut rnd = rng(0x9E37_79B9_7F4A_7C15);
    let mut logs = String::new();
    let (mut kills, mut mid_delivery) = (0, 0);
    let started = Instant::now();
    while kills < 22 || started.elapsed() < Duration::from_secs(12) {
        let log = if kills % 3 == 1 {
            let (aborted, log) = setup.crash_after_deliveries(1 + rnd(3), Duration::from_secs(5));
            mid_delivery += u32::from(aborted);
            log
        } else {
            setup.kill_9_after(100 + rnd(600))
        };
        logs += &log;
        kills += 1;
    }
    wait_for_every_row(&sim);
    wait_for_every_item(&sim);
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let repaired = (logs.clone() + &log)
        .matches("repairing a delivery")
        .count();
    let pages = logs.matches("page delivered").count();
    println!(
        "{kills} kills, {mid_delivery} between a delivery and its commit; {repaired} repairs; {pages} pages committed before the last run"
    );
    assert!(
        mid_delivery >= 3,
        "only {mid_delivery} crashes mid-delivery"
    );
    assert!(pages >= 10, "only {pages} pages committed while killed");
    assert_exactly_once(&sim, &setup);
    assert_items_exactly_once(&sim, &setup);
    // the index: every item by its id, and nothing else
    let items = sim.items(|_| true);
    for key in items.keys() {
        let (status, body) =
            crate::common::servers::http(&server.url, "GET", &format!("/central/_doc/{key}"), "");
        assert_eq!(status, 200, "{key} is not in the index: {body}");
    }
    let rows: usize = sim.rows().values().sum();
    assert_eq!(
        crate::common::servers::count(&server.url, "central"),
        (rows + items.len()) as u64,
        "every row and item exactly once in the index"
    );
    let stats = sim.get("/_sim/stats");
    assert!(
        stats["429"].as_u64().unwrap_or(0) > 0 && stats["dropped"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
    assert_no_secret(&setup, &(logs + &log));
}

/// An outage longer than the API's reach (here 12 s, in the simulator and the
/// collector): the next run reports the gap with its size (log, `--status`, metric), and
/// delivers every item the API can still serve, once.
#[test]
fn an_outage_beyond_the_api_s_reach_is_reported_with_its_size_and_nothing_servable_is_lost() {
    let reach = 12;
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "5",
        "--siem-items",
        "400",
        "--siem-past-secs",
        "4",
        "--siem-future-secs",
        "30",
        "--siem-late-fraction",
        "0",
        "--siem-reach-secs",
        &reach.to_string(),
    ]);
    let setup = Setup::new(
        &sim,
        &format!(
            "\n[siem]\nstreams = [\"alerts\", \"events\"]\napi_reach_secs = {reach}\nlookback_secs = {}",
            reach - 2
        ),
    );
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let first = jiff::Timestamp::now().as_millisecond();
    // The outage: 20 s without a run, more than the 12 s the API serves.
    std::thread::sleep(Duration::from_secs(20));
    let second = jiff::Timestamp::now().as_millisecond();
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let gap_line = log
        .lines()
        .find(|l| l.contains("could not be read"))
        .unwrap_or_else(|| panic!("no gap reported:\n{log}"));
    let gap: i64 = gap_line
        .split("gap_secs=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no gap_secs in {gap_line}"));
    // drained at the first run, read again from `second − reach`: about 8 s of each stream
    let expected = (second - reach * 1000 - first) / 1000;
    assert!(
        (expected - 2..=expected + 2).contains(&gap),
        "gap of {gap} s, expected about {expected} s"
    );
    let status = setup.status();
    assert!(
        status
            .lines()
            .filter(|l| l.contains(" alerts ") || l.contains(" events "))
            .all(|l| l.contains("in all; last")),
        "{status}"
    );
    // Everything visible at the first run, and everything the API still served at the
    // second, is there once; what became visible in between and aged out is not.
    let got = setup.delivered_items();
    assert!(got.values().all(|n| *n == 1), "an item twice");
    let servable =
        sim.items(|v| v <= first - 1500 || (v >= second - (reach - 1) * 1000 && v <= second));
    let missing: Vec<_> = servable
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    assert!(missing.is_empty(), "servable items missing: {missing:?}");
    let lost = sim.items(|v| v > first + 1500 && v < second - (reach + 1) * 1000);
    assert!(
        !lost.is_empty(),
        "the test's outage lost nothing: it tests nothing"
    );
    assert!(
        lost.keys().all(|k| !got.contains_key(k)),
        "an item the API no longer served was delivered: the simulator is not faithful"
    );
    println!(
        "gap {gap} s reported; {} items delivered, {} aged out during the outage",
        got.len(),
        lost.len()
    );
}

/// A tenant whose SIEM calls are refused (403: Partner Assistance off): its streams are
/// recorded as failing in `--status`, `--once` exits 3, and its Data Lake rows and the
/// other tenants' items are all delivered.
#[test]
fn a_refused_tenant_s_streams_fail_alone() {
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "30",
        "--siem-items",
        "20",
        "--siem-failing-tenant",
        "1",
    ]);
    let setup = Setup::new(&sim, SIEM);
    let (code, log) = setup.once();
    assert_eq!(code, 3, "{log}");
    assert_exactly_once(&sim, &setup);
    let refused = format!("{:08x}-0000-4000-8000-{:012x}", 1, 1);
    let expected: std::collections::BTreeMap<String, usize> = sim
        .items(|_| true)
        .into_iter()
        .filter(|(k, _)| !k.contains(&format!(":{refused}:")))
        .collect();
    assert_eq!(setup.delivered_items(), expected);
    let status = setup.status();
    let lines: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with(&refused) && (l.contains(" alerts ") || l.contains(" events ")))
        .collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(lines.iter().all(|l| l.contains("HTTP 403")), "{status}");
}

/// A crash between the first page's delivery and its commit, then a restart a little
/// later: the first run's start was kept, so the restart asks from there (the API still
/// serves it) and the oldest items are not lost.
#[test]
fn a_crash_on_the_first_page_does_not_move_the_first_run_s_start() {
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "0",
        "--siem-items",
        "400",
        "--siem-past-secs",
        "18",
        "--siem-late-fraction",
        "0",
        "--siem-repeat-fraction",
        "0",
        "--siem-reach-secs",
        "25",
    ]);
    let setup = Setup::new(
        &sim,
        "\n[siem]\nstreams = [\"events\"]\nlimit = 50\napi_reach_secs = 25\nlookback_secs = 19",
    );
    let (aborted, log) = setup.crash_after_deliveries(1, Duration::from_secs(20));
    assert!(
        aborted,
        "the first run did not die at its first delivery:\n{log}"
    );
    // 2 s later, a start 19 s back would miss the oldest 2 s of items
    std::thread::sleep(Duration::from_secs(2));
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("repairing a delivery"), "{log}");
    assert!(!log.contains("could not be read"), "no gap: {log}");
    let expected: Vec<String> = sim
        .items(|_| true)
        .into_keys()
        .filter(|k| k.starts_with("event:"))
        .collect();
    let got = setup.delivered_items();
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?} of {}",
        expected.len()
    );
    assert!(got.values().all(|n| *n == 1));
    assert_eq!(got.len(), 400);
}

/// A stream further behind than the API's reach (a backlog read two pages a pass, older
/// than the 12 s the simulator serves): the API restarts its cursor, the collector reports
/// the gap, and no item is delivered twice.
#[test]
fn a_backlog_older_than_the_reach_is_reported_as_a_gap() {
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "0",
        "--siem-items",
        "600",
        "--siem-past-secs",
        "10",
        "--siem-late-fraction",
        "0",
        "--siem-repeat-fraction",
        "0",
        "--siem-reach-secs",
        "12",
    ]);
    let setup = Setup::new(
        &sim,
        "\n[siem]\nstreams = [\"events\"]\nlimit = 5\nmax_pages = 2\napi_reach_secs = 12\nlookback_secs = 11",
    );
    let log = setup.kill_9_after(16_000);
    assert!(log.contains("could not be read"), "no gap reported:\n{log}");
    let got = setup.delivered_items();
    assert!(
        !got.is_empty() && got.values().all(|n| *n == 1),
        "an item twice"
    );
    assert!(
        got.len() < 600,
        "the backlog was read whole: the test tests nothing"
    );
    let status = setup.status();
    assert!(status.contains("in all; last"), "{status}");
}
