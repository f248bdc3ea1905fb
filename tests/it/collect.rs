//! `sophos-tac collect` against the Sophos Central simulator (`sophos-central-sim`),
//! both real binaries on 127.0.0.1. Every test asserts the exact multiset of rows
//! delivered: none missing, none twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::collect::{
    Setup, Sim, assert_exactly_once, assert_no_secret, rng, wait_for_every_row,
};

#[test]
fn tenant_once_delivers_every_row_once_and_a_second_pass_adds_nothing() {
    let sim = Sim::start(&["--kind", "tenant", "--rows", "300", "--past-secs", "5400"]);
    let setup = Setup::new(&sim, "");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
    let (code, log2) = setup.once();
    assert_eq!(code, 0, "{log2}");
    assert_exactly_once(&sim, &setup);
    assert!(log2.contains("duplicates="), "{log2}");
    assert_no_secret(&setup, &(log + &log2));
    // --status shows the tenant with a checkpoint and no error
    let out = setup.command(&["--status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.lines().count() == 2 && status.contains(" 300 ") && status.trim_end().ends_with('-'),
        "{status}"
    );
}

#[test]
fn partner_with_faults_expired_tokens_and_a_failing_tenant() {
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "5",
        "--rows",
        "120",
        "--past-secs",
        "3600",
        "--throttle-rate",
        "0.15",
        "--fail-rate",
        "0.1",
        "--token-ttl",
        "3",
        "--announced-ttl",
        "3600",
        "--failing-tenant",
        "2",
        "--slow-ms",
        "5",
        "--tenant-page-size",
        "2",
    ]);
    let setup = Setup::new(&sim, "");
    let (code, log) = setup.once();
    assert_eq!(
        code, 3,
        "one tenant failed, the others were collected: {log}"
    );
    let stats = sim.get("/_sim/stats");
    println!("simulator served: {stats}");
    assert!(
        stats["429"].as_u64().unwrap_or(0) > 0 && stats["5xx"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
    assert!(
        stats["401_expired"].as_u64().unwrap_or(0) > 0 && stats["tokens"].as_u64().unwrap_or(0) > 1,
        "tokens expired mid-run and were renewed: {stats}"
    );
    // Everything but the failing tenant's rows, exactly once.
    let failing = format!("{:08x}-0000-4000-8000-{:012x}", 1, 2);
    let expected: BTreeMap<String, usize> = sim
        .rows()
        .into_iter()
        .filter(|(r, _)| !r.contains(&failing))
        .collect();
    let got = setup.delivered();
    assert_eq!(got, expected);
    let status = String::from_utf8_lossy(&setup.command(&["--status"]).output().unwrap().stdout)
        .into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&failing) && l.contains("did not succeed: failed")),
        "{status}"
    );
    assert_no_secret(&setup, &log);
}

#[test]
fn kill_9_at_random_points_never_loses_or_doubles_a_row() {
    // Rows keep arriving for 8 s, 20% of them late (visible 3 s after their time).
    let sim = Sim::start(&[
        "--kind",
        "organization",
        "--tenants",
        "3",
        "--rows",
        "150",
        "--past-secs",
        "1800",
        "--future-secs",
        "8",
        "--late-fraction",
        "0.2",
        "--late-secs",
        "3",
        "--throttle-rate",
        "0.05",
        "--fail-rate",
        "0.05",
    ]);
    let setup = Setup::new(&sim, "rotate_bytes = 20000");
    let mut rnd = rng(0x2545_F491_4F6C_DD1D);
    let mut logs = String::new();
    let started = Instant::now();
    let mut kills = 0;
    // Runs killed after at least one committed window, and runs that died between a
    // delivery and its commit: three of the first six runs abort there on purpose, at
    // their first delivery, while rows are still arriving (a run with nothing new to
    // deliver has no delivery to die in).
    let (mut after_a_window, mut mid_window) = (0, 0);
    while started.elapsed() < Duration::from_secs(12) || kills < 10 {
        let log = if kills % 2 == 1 && kills < 6 {
            let (aborted, log) = setup.crash_after_deliveries(1, Duration::from_secs(5));
            mid_window += u32::from(aborted);
            log
        } else {
            setup.kill_9_after(50 + rnd(700))
        };
        after_a_window += u32::from(log.contains("window delivered"));
        logs += &log;
        kills += 1;
    }
    // Wait until every row is visible, then catch up.
    wait_for_every_row(&sim);
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let repaired = (logs.clone() + &log)
        .matches("repairing a delivery")
        .count() as u32;
    println!(
        "{kills} kills: {after_a_window} after a committed window, {mid_window} between a delivery and its commit; {repaired} interrupted deliveries repaired"
    );
    // The kills must have landed where they test something.
    assert!(
        after_a_window >= 4,
        "only {after_a_window} kills after a committed window"
    );
    assert!(
        mid_window >= 2,
        "only {mid_window} crashes between a delivery and its commit"
    );
    assert!(
        repaired >= mid_window,
        "{repaired} repairs for {mid_window} crashes mid-window"
    );
    assert_exactly_once(&sim, &setup);
    assert!(
        setup
            .all_files()
            .iter()
            .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("out")))
            .count()
            > 1,
        "rotation happened"
    );
    assert_no_secret(&setup, &(logs + &log));
}

#[test]
fn a_crash_between_delivery_and_checkpoint_is_repaired() {
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "80",
        "--past-secs",
        "3000",
    ]);
    let setup = Setup::new(&sim, "");
    let mut repaired = 0;
    for n in [1, 2, 3, 2, 5] {
        let out = setup
            .command(&["--once"])
            .env("SOPHOS_TAC_CRASH_AFTER_DELIVERIES", n.to_string())
            .output()
            .unwrap();
        assert!(!out.status.success(), "it crashed");
        let out = setup.command(&["--status"]).output().unwrap();
        assert!(out.status.success());
        let (_, log) = {
            // the next start repairs the interrupted delivery before anything else
            let out = setup
                .command(&["--once"])
                .env("SOPHOS_TAC_CRASH_AFTER_DELIVERIES", "1")
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        repaired += log.matches("repairing a delivery").count();
    }
    assert!(
        repaired >= 5,
        "each restart repaired the interrupted delivery ({repaired})"
    );
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("repairing a delivery"));
    assert_exactly_once(&sim, &setup);
}

#[test]
fn bad_credentials_and_config_errors_are_clear_and_leak_nothing() {
    let sim = Sim::start(&["--kind", "tenant", "--rows", "5"]);
    let setup = Setup::new(&sim, "");
    let out = setup
        .command(&["--once"])
        .env("SOPHOS_TAC_TEST_SECRET", "wrong-secret-value")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("authentication") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value"));
    let out = setup
        .command(&["--once"])
        .env_remove("SOPHOS_TAC_TEST_SECRET")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SOPHOS_TAC_TEST_SECRET"),
        "names the missing variable"
    );
    // a config readable by others is warned about
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&setup.config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, log) = setup.once();
        assert_eq!(code, 0);
        assert!(log.contains("readable by other users"), "{log}");
    }
}

/// A token answer whose `expires_in` is huge made the renewal time overflow (`--check`
/// exited 101, a panic); now the lifetime is capped and both `--check` and a pass work.
#[test]
fn a_huge_expires_in_is_capped_not_a_panic() {
    let sim = Sim::start(&["--announced-ttl", "18446744073709551615", "--rows", "20"]);
    let setup = Setup::new(&sim, "");
    let out = crate::common::collect::bounded(
        setup.command(&["--check"]),
        std::time::Duration::from_secs(60),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
}

/// Two collectors with state directories of their own and one output file: the second
/// stops at once with one line naming the file (before, the file ended with every row
/// twice, and a crash let one cut the other's committed rows).
#[test]
fn a_second_collector_on_the_same_output_file_is_refused() {
    let sim = Sim::start(&["--rows", "50", "--future-secs", "4"]);
    let first = Setup::new(&sim, "");
    let second = Setup::new(&sim, "");
    let shared_out = first.dir.path().join("out/sophos-tac.ndjson");
    let text = std::fs::read_to_string(&second.config).unwrap();
    let own_out = second.dir.path().join("out/sophos-tac.ndjson");
    std::fs::write(
        &second.config,
        text.replace(
            &own_out.display().to_string(),
            &shared_out.display().to_string(),
        ),
    )
    .unwrap();
    let mut running = first
        .command(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bound = Instant::now() + Duration::from_secs(30);
    while !shared_out.exists() {
        assert!(
            Instant::now() < bound,
            "the first collector did not open its output"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, log) = second.once();
    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(code, 2, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("another process is writing to this file"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&shared_out.display().to_string()), "{line}");
}

/// With the late sweep off, rows that arrive a little late (less than the overlap) are
/// caught by the live lanes alone, through dense windows near now and `kill -9`s (a
/// guard for windows that start where the previous one ended: where a lane read too
/// close to now is kept in the state, so a restarted collector reaches back to it).
#[test]
fn rows_a_little_late_are_caught_live_without_the_sweep_through_kills() {
    let sim = Sim::start(&[
        "--rows",
        "900",
        "--past-secs",
        "5",
        "--future-secs",
        "12",
        "--late-fraction",
        "0.3",
        "--late-min-secs",
        "1",
        "--late-secs",
        "4",
        "--no-id-fraction",
        "0.1",
    ]);
    // Windows of at most 2 pages of 37 rows: several per second of rows near now.
    let query = "lookback_secs = 600
overlap_secs = 5
max_window_pages = 2
page_size = 37
poll_interval_ms = 20
late_horizon_secs = 0
interval_secs = 1";
    let setup = Setup::with(&sim, query, crate::common::collect::DEFAULT_LIMITS, "");
    let mut rnd = rng(0x5eed);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        setup.kill_9_after(400 + rnd(1200));
    }
    wait_for_every_row(&sim);
    std::thread::sleep(Duration::from_secs(1));
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    assert_exactly_once(&sim, &setup);
}

/// The library, embedded: a collector on a current-thread runtime (which cannot move a
/// blocking delivery off its one worker) collects every row once, and a service stops
/// when told, with no signal handler of its own.
#[test]
fn the_library_collects_on_a_current_thread_runtime_and_stops_when_told() {
    use sophos_tac::collect::Collector;
    use sophos_tac::collect::config::CollectConfig;
    use std::sync::Arc;

    let sim = Sim::start(&["--kind", "tenant", "--rows", "150", "--past-secs", "3600"]);
    let setup = Setup::new(&sim, "");
    // The secret from a file: a test must not set this process's environment.
    let secret = setup.dir.path().join("secret");
    std::fs::write(&secret, crate::common::collect::SECRET).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "client_secret_env = \"SOPHOS_TAC_TEST_SECRET\"",
        &format!("client_secret_file = \"{}\"", secret.display()),
    );
    std::fs::write(&setup.config, text).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(async {
        let collector =
            Arc::new(Collector::open(CollectConfig::load(&setup.config).unwrap()).unwrap());
        tokio::time::timeout(Duration::from_secs(120), collector.run(true))
            .await
            .expect("one pass within 120 s")
            .unwrap()
    });
    assert_eq!(summary.tenants_failed, 0, "{summary:?}");
    assert_eq!(summary.counts.normalized, 150, "{summary:?}");
    assert_exactly_once(&sim, &setup);

    runtime.block_on(async {
        let collector =
            Arc::new(Collector::open(CollectConfig::load(&setup.config).unwrap()).unwrap());
        let service = tokio::spawn(Arc::clone(&collector).run(false));
        tokio::time::sleep(Duration::from_millis(300)).await;
        collector.stop();
        let result = tokio::time::timeout(Duration::from_secs(30), service)
            .await
            .expect("the service stops within 30 s of stop()")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    });
    assert_exactly_once(&sim, &setup);
}
