//! The live lag of `collect` with and without the late sweep, in a test binary of its
//! own so that no other test competes for the two cores while it is measured (the other
//! integration tests are the one binary `tests/it`, whose helpers it shares).

#[path = "it/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::collect::{Setup, Sim};

/// Waits for a child at most `limit`, or kills it and fails the test.
fn bounded_wait(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the collector did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The largest live lag (`now − checkpoint` as a live window starts) in a log, ms.
fn max_live_lag_ms(log: &str) -> i64 {
    log.lines()
        .filter(|l| l.contains("live lane"))
        .filter_map(|l| l.split("lag_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn live_windows_come_first_the_sweep_adds_at_most_one_interval_of_lag() {
    // 3 tenants with 3,000 rows each over the last 3 days, and a page budget of 200
    // rows: a sweep takes many windows. It is due at every pass.
    let mut lags = Vec::new();
    for horizon in ["0", "259200"] {
        let sim = Sim::start(&[
            "--kind",
            "partner",
            "--tenants",
            "3",
            "--rows",
            "3000",
            "--past-secs",
            "259000",
            "--future-secs",
            "60",
            "--run-polls",
            "1",
            "--slow-ms",
            "10",
        ]);
        let query = format!(
            "lookback_secs = 259200
page_size = 100
max_window_pages = 2
poll_interval_ms = 20
late_horizon_secs = {horizon}
late_sweep_secs = 1
interval_secs = 2"
        );
        let limits = "concurrency = 3
per_second = 20
per_minute = 100000
per_hour = 1000000";
        let setup = Setup::with(&sim, &query, limits, "");
        // The backfill first, then the service for 20 s.
        assert_eq!(setup.once().0, 0);
        let mut child = setup
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read the log while it runs, so that a full pipe never slows the collector.
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut log = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
            log
        });
        std::thread::sleep(Duration::from_secs(20));
        // SIGTERM: it stops between two windows.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let status = bounded_wait(&mut child, Duration::from_secs(30));
        assert!(
            status.success(),
            "SIGTERM stops the service with status 0: {status:?}"
        );
        let log = reader.join().unwrap();
        let sweep_windows = log
            .lines()
            .filter(|l| l.contains("window delivered") && l.contains("lane=\"sweep\""))
            .count();
        lags.push((max_live_lag_ms(&log), sweep_windows));
    }
    let [(off, _), (on, windows)] = lags[..] else {
        unreachable!()
    };
    println!(
        "largest live lag: {off} ms without the sweep, {on} ms with it ({windows} sweep windows in 20 s)"
    );
    assert!(windows > 10, "the sweep ran: {windows} windows");
    assert!(
        on <= off + 2_000 + 1_000,
        "{on} ms with the sweep against {off} ms without"
    );
}
