//! The late sweep and the API cost of `collect`, against the simulator: rows that reach
//! the Data Lake minutes, hours or days after their `calendar_time` are delivered
//! exactly once up to the horizon, through faults and `kill -9`s; the horizon is the
//! boundary of that guarantee; a backfill and a steady pass cost few Data Lake calls;
//! and a token that expired during a wait is renewed, while a refused one fails fast.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::collect::{
    DEFAULT_LIMITS, SECRET, Setup, Sim, assert_exactly_once, assert_no_secret, bounded, rng,
    wait_for_every_row,
};
use serde_json::Value;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `ingestion_timestamp − calendar_time` of a simulator row, in seconds.
fn lateness_secs(row: &str) -> f64 {
    let v: Value = serde_json::from_str(row).unwrap();
    let t = |k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    t("ingestion_timestamp")
        .duration_since(t("calendar_time"))
        .as_secs_f64()
}

/// The Data Lake calls the simulator served, per tenant.
fn xdr_calls(sim: &Sim) -> BTreeMap<String, u64> {
    sim.get("/_sim/stats")["xdr_calls"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn late_rows_up_to_the_horizon_are_delivered_once_through_faults_and_kills() {
    // Rows arrive over 30 s; 40% of them 1 minute to 2 days after their calendar_time.
    let sim = Sim::start(&[
        "--kind",
        "organization",
        "--tenants",
        "3",
        "--rows",
        "150",
        "--past-secs",
        "20",
        "--future-secs",
        "10",
        "--late-fraction",
        "0.4",
        "--late-min-secs",
        "60",
        "--late-secs",
        "172800",
        "--throttle-rate",
        "0.05",
        "--fail-rate",
        "0.05",
        "--drop-rate",
        "0.03",
        "--token-ttl",
        "3",
        "--announced-ttl",
        "3600",
    ]);
    // A 3-day horizon (the default), a sweep every 2 s, and a page budget of 111 rows,
    // so that the first windows are split.
    let query = "lookback_secs = 262800
overlap_secs = 30
page_size = 37
max_window_pages = 3
poll_interval_ms = 20
late_sweep_secs = 2
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "rotate_bytes = 50000");
    let mut rnd = rng(0x9E37_79B9_7F4A_7C15);
    let mut logs = String::new();
    let started = Instant::now();
    let (mut kills, mut mid_sweep) = (0, 0);
    while (started.elapsed() < Duration::from_secs(12) || kills < 20 || mid_sweep < 3)
        && started.elapsed() < Duration::from_secs(90)
    {
        logs += &setup.kill_9_after(50 + rnd(900));
        kills += 1;
        if setup.status().contains("running") {
            mid_sweep += 1;
        }
    }
    assert!(
        kills >= 20 && mid_sweep >= 3,
        "{kills} kills, {mid_sweep} of them during a sweep"
    );
    wait_for_every_row(&sim);
    // The last rows may have arrived during a sweep that had passed their time: one
    // more sweep, started after every arrival, catches them.
    let (code, log1) = setup.once();
    assert_eq!(code, 0, "{log1}");
    std::thread::sleep(Duration::from_millis(2_100));
    let (code, log2) = setup.once();
    assert_eq!(code, 0, "{log2}");
    assert!(log2.contains("late sweep started"), "{log2}");
    let stats = sim.get("/_sim/stats");
    println!(
        "{kills} kills, {mid_sweep} during a sweep; {} interrupted deliveries repaired; simulator: {stats}",
        logs.matches("repairing a delivery").count()
    );
    for fault in ["429", "5xx", "dropped", "401_expired"] {
        assert!(
            stats[fault].as_u64().unwrap_or(0) > 0,
            "no {fault}: {stats}"
        );
    }
    let late = sim
        .rows()
        .keys()
        .filter(|r| lateness_secs(r) >= 60.0)
        .count();
    assert!(late > 100, "{late} late rows");
    assert_exactly_once(&sim, &setup);
    let all = logs + &log1 + &log2;
    assert!(
        all.contains("late row caught by the sweep") && all.contains("lateness_secs="),
        "the log names late rows and their lateness"
    );
    assert!(all.contains("narrowing it"), "some windows were split");
    assert_no_secret(&setup, &all);
}

#[test]
fn the_late_horizon_is_the_boundary_of_the_guarantee() {
    // Rows arrive over the next 4 s; 60% of them 10 minutes to 4 hours late.
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "300",
        "--past-secs",
        "0",
        "--future-secs",
        "4",
        "--late-fraction",
        "0.6",
        "--late-min-secs",
        "600",
        "--late-secs",
        "14400",
    ]);
    let (horizon, sweep, overlap) = (3600.0, 1.0, 30.0);
    let query = "lookback_secs = 21600
overlap_secs = 30
poll_interval_ms = 20
late_horizon_secs = 3600
late_sweep_secs = 1
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let mut log = String::new();
    let bound = Instant::now() + Duration::from_secs(60);
    while now_ms() < sim.last_visible_ms() + 500 && Instant::now() < bound {
        let (code, l) = setup.once();
        assert_eq!(code, 0, "{l}");
        log += &l;
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for_every_row(&sim);
    std::thread::sleep(Duration::from_millis(1_100));
    let (code, l) = setup.once();
    assert_eq!(code, 0, "{l}");
    log += &l;
    let got = setup.delivered();
    let (mut inside, mut outside) = (0, 0);
    for row in sim.rows().keys() {
        let late = lateness_secs(row);
        let n = got.get(row).copied().unwrap_or(0);
        if late <= horizon {
            inside += usize::from(late > overlap);
            assert_eq!(n, 1, "a row {late:.0} s late, inside the horizon: {row}");
        } else if late > horizon + sweep + overlap + 5.0 {
            outside += 1;
            assert_eq!(
                n, 0,
                "a row {late:.0} s late, beyond the sweep's reach: {row}"
            );
        } else {
            assert!(n <= 1, "{row}");
        }
    }
    assert!(
        inside > 20 && outside > 20,
        "{inside} inside, {outside} outside"
    );
    let late_column = setup.late_count();
    // Rows that had arrived before the first pass were read by its live window; the
    // others inside the horizon, by the sweep.
    assert!(
        late_column > 20 && late_column <= inside as i64,
        "{late_column} late, {inside} inside"
    );
    assert!(log.contains("late sweep done"), "{log}");
}

#[test]
fn a_sweep_interrupted_by_a_crash_resumes_at_its_cursor() {
    // On-time rows arrive over 3 s; half the rows 2 minutes to 2 hours late.
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "200",
        "--past-secs",
        "0",
        "--future-secs",
        "3",
        "--late-fraction",
        "0.5",
        "--late-min-secs",
        "120",
        "--late-secs",
        "7200",
    ]);
    // First with the sweep off: the live windows deliver the on-time rows only.
    let query = "lookback_secs = 10800
overlap_secs = 30
page_size = 37
max_window_pages = 1
poll_interval_ms = 20
late_horizon_secs = 0
late_sweep_secs = 1
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let bound = Instant::now() + Duration::from_secs(60);
    while now_ms() < sim.last_visible_ms() + 500 && Instant::now() < bound {
        assert_eq!(setup.once().0, 0);
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_every_row(&sim);
    assert_eq!(setup.once().0, 0);
    // The late rows the live windows missed (those that had arrived before the first
    // pass were read by its backfill).
    let got = setup.delivered();
    let missed: Vec<String> = sim
        .rows()
        .into_keys()
        .filter(|r| lateness_secs(r) > 60.0 && !got.contains_key(r))
        .collect();
    assert!(missed.len() > 30, "{} late rows missed", missed.len());
    assert!(setup.status().contains(" off "));
    // Then on: the first pass schedules it, the next runs it, and crashes after its
    // third delivery, between delivery and commit.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("late_horizon_secs = 0", "late_horizon_secs = 10800"),
    )
    .unwrap();
    assert_eq!(setup.once().0, 0);
    std::thread::sleep(Duration::from_millis(1_100));
    let mut crash = setup.command(&["--once"]);
    crash.env("SOPHOS_TAC_CRASH_AFTER_DELIVERIES", "3");
    let out = bounded(crash, Duration::from_secs(120));
    assert!(!out.status.success(), "it crashed");
    let st = setup.status();
    assert!(st.contains("running"), "the sweep is still under way: {st}");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("repairing a delivery"), "{log}");
    assert!(
        !log.contains("late sweep started"),
        "it resumed, not restarted: {log}"
    );
    assert!(log.contains("late sweep done"), "{log}");
    assert_exactly_once(&sim, &setup);
    let late_column = setup.late_count() as usize;
    assert_eq!(late_column, missed.len());
}

#[test]
fn a_backfill_and_steady_passes_cost_few_data_lake_calls() {
    // 1,000 rows per tenant over 30 days; runs finish at their first poll.
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "1000",
        "--past-secs",
        "2588400",
        "--run-polls",
        "1",
    ]);
    // The default window and page settings.
    let query = "lookback_secs = 2592000
poll_interval_ms = 20
late_sweep_secs = 1
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let backfill = xdr_calls(&sim);
    println!("30-day backfill of 1,000 rows, Data Lake calls per tenant: {backfill:?}");
    assert_eq!(backfill.len(), 3);
    assert!(backfill.values().all(|&n| n <= 40), "{backfill:?}");
    let mut before = backfill;
    for pass in 0..3 {
        std::thread::sleep(Duration::from_millis(1_100));
        let (code, log) = setup.once();
        assert_eq!(code, 0, "{log}");
        assert_eq!(log.matches("late sweep done").count(), 3, "{log}");
        let after = xdr_calls(&sim);
        let cost: Vec<u64> = after.iter().map(|(t, n)| n - before[t]).collect();
        println!("steady pass {pass} with the sweep due, Data Lake calls per tenant: {cost:?}");
        assert!(cost.iter().all(|&n| n <= 10), "{cost:?}");
        before = after;
    }
    assert_exactly_once(&sim, &setup);

    // A tenant whose results overflow the page budget (3,000 rows, 5 pages of 100):
    // windows are narrowed in proportion, and nothing is lost or doubled.
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "3000",
        "--past-secs",
        "2588400",
        "--run-polls",
        "1",
    ]);
    let query = "lookback_secs = 2592000
page_size = 100
max_window_pages = 5
poll_interval_ms = 20
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let calls: u64 = xdr_calls(&sim).values().sum();
    println!(
        "30-day backfill of 3,000 rows with a 500-row budget: {calls} Data Lake calls, {} windows",
        log.matches("window delivered").count()
    );
    assert!(log.contains("narrowing it"), "{log}");
    assert!(calls <= 70, "{calls} calls");
    assert_exactly_once(&sim, &setup);
}

#[test]
fn a_token_that_expires_during_a_wait_is_renewed_and_a_refused_one_fails_fast() {
    // Tokens live 1 s and one request a second is allowed: each token has expired by
    // the time the rate limit lets the next request go.
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "40",
        "--run-polls",
        "1",
        "--token-ttl",
        "1",
        "--announced-ttl",
        "3600",
    ]);
    let limits = "per_second = 1
per_minute = 100000
per_hour = 1000000";
    let setup = Setup::with(&sim, crate::common::collect::DEFAULT_QUERY, limits, "");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let stats = sim.get("/_sim/stats");
    assert!(stats["401_expired"].as_u64().unwrap_or(0) >= 2, "{stats}");
    assert_exactly_once(&sim, &setup);

    // An API that refuses every token it issued: the collector stops at the first
    // fresh token refused, without going through its retries.
    let sim = Sim::start(&["--kind", "tenant", "--rows", "5", "--api-refuses-tokens"]);
    let setup = Setup::new(&sim, "");
    let started = Instant::now();
    let (code, log) = setup.once();
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("refuses this credential"), "{log}");
    assert!(!log.contains(SECRET));
    let tokens = sim.get("/_sim/stats")["tokens"].as_u64().unwrap();
    assert!(tokens <= 2, "{tokens} tokens fetched");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn turning_the_sweep_on_later_delivers_nothing_twice() {
    // Rows over the last hour and the next 4 s, all on time. First with the sweep off and a
    // 1-second overlap, so that keys are forgotten within seconds.
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "200",
        "--past-secs",
        "3600",
        "--future-secs",
        "4",
    ]);
    let query = "lookback_secs = 7200
overlap_secs = 1
poll_interval_ms = 20
late_horizon_secs = 0
late_sweep_secs = 1
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    // Passes for 6 s: the first windows' keys are forgotten 2 s after them.
    for _ in 0..8 {
        assert_eq!(setup.once().0, 0);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_exactly_once(&sim, &setup);
    // On, with a horizon that covers every row: the keys of the first hour are gone, so
    // the sweep must not reach back there.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("late_horizon_secs = 0", "late_horizon_secs = 7200"),
    )
    .unwrap();
    assert_eq!(setup.once().0, 0);
    std::thread::sleep(Duration::from_millis(1_100));
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("late sweep done"), "{log}");
    assert_exactly_once(&sim, &setup);
}

/// An outbreak: one tenant with 10,524 detections over the last 12 minutes (about 14 a
/// second), collected with the default window, overlap and page settings. Before windows
/// started where the previous one ended, the overlap (10 minutes, 8,000+ rows) was read
/// again by every window: 7,005 Data Lake calls for this backfill.
#[test]
fn an_outbreak_costs_calls_in_proportion_to_its_rows() {
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "10524",
        "--past-secs",
        "720",
        "--run-polls",
        "1",
        "--late-fraction",
        "0.05",
        "--late-secs",
        "300",
    ]);
    let query = "poll_interval_ms = 20
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let calls: u64 = xdr_calls(&sim).values().sum();
    let delivered: usize = setup.delivered().values().sum();
    let per_1000 = calls as f64 * 1000.0 / delivered as f64;
    println!(
        "outbreak: {delivered} rows delivered with {calls} Data Lake calls ({per_1000:.2} per 1,000 rows), {} windows",
        log.matches("window delivered").count()
    );
    assert!(delivered > 9_000, "{delivered}");
    let windows: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("window delivered") || l.contains("narrowing"))
        .collect();
    assert!(
        per_1000 <= 3.5,
        "{calls} calls for {delivered} rows; windows:\n{}",
        windows.join("\n")
    );

    // The rows that arrive late (up to 5 minutes) and a second pass: every row once, and
    // the second pass costs what its rows do: the overlap and the time since, read once.
    wait_for_every_row(&sim);
    let before = calls;
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
    let second: u64 = xdr_calls(&sim).values().sum::<u64>() - before;
    println!("outbreak: the second pass cost {second} Data Lake calls");
    assert!(second <= 15, "{second} calls for the second pass");
}

/// The same outbreak through faults (429s, 5xx, dropped connections) and `kill -9`s:
/// nothing lost, nothing doubled, and the calls stay proportional.
#[test]
fn an_outbreak_through_faults_and_kills_is_delivered_once() {
    let sim = Sim::start(&[
        "--kind",
        "tenant",
        "--rows",
        "10000",
        "--past-secs",
        "600",
        "--future-secs",
        "8",
        "--run-polls",
        "1",
        "--throttle-rate",
        "0.03",
        "--fail-rate",
        "0.03",
        "--drop-rate",
        "0.02",
        "--late-fraction",
        "0.05",
        "--late-secs",
        "20",
    ]);
    let query = "poll_interval_ms = 20
interval_secs = 1";
    let setup = Setup::with(&sim, query, DEFAULT_LIMITS, "");
    let mut rnd = rng(16);
    for _ in 0..4 {
        setup.kill_9_after(300 + rnd(1500));
    }
    wait_for_every_row(&sim);
    std::thread::sleep(Duration::from_secs(1));
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
    let calls: u64 = xdr_calls(&sim).values().sum();
    println!("outbreak through faults and 4 kill -9s: {calls} Data Lake calls for 10,000 rows");
    assert!(calls <= 120, "{calls} calls");
}
