//! `collect` as a service people can watch: `/metrics`, `/healthz` and `/readyz` on the
//! `[service] listen` address, scraped by a real Prometheus server (Debian's
//! `prometheus` package, which `.ci/run` installs) and checked by `promtool`; `--check`;
//! and a graceful stop on SIGTERM at random moments. All against the simulator, on
//! 127.0.0.1.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::collect::{
    SECRET, Setup, Sim, assert_exactly_once, bounded, rng, wait_for_every_row,
};
use crate::common::servers::{Running, free_port, get, wait_for};

/// The sum of a metric's samples in a Prometheus text exposition.
fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Lines in the collector's output files.
fn output_lines(setup: &Setup) -> usize {
    setup.delivered().values().sum()
}

/// The collector as a service, its log in `collect.log` of the scratch directory.
fn start(setup: &Setup) -> Running {
    let log = std::fs::File::create(setup.dir.path().join("collect.log")).unwrap();
    setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Running)
        .expect("the collector starts")
}

/// Sends SIGTERM; returns the exit status and how long it took, failing the test past
/// `limit`.
fn terminate(child: &mut Running, limit: Duration) -> (Option<i32>, Duration) {
    let child = &mut child.0;
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_for(limit, "the collector to exit after SIGTERM", || {
        child.try_wait().unwrap()
    });
    (status.code(), sent.elapsed())
}

/// A `[query]` for these tests: one window per tenant, no late sweep.
const ONE_WINDOW: &str = "lookback_secs = 7200
overlap_secs = 30
poll_interval_ms = 20
page_size = 500
late_horizon_secs = 0
interval_secs = 1";

fn listen(port: u16) -> String {
    format!("\n[service]\nlisten = \"127.0.0.1:{port}\"\n")
}

#[test]
fn readiness_health_and_metrics_that_agree_with_the_output() {
    // Every answer of the simulator takes 700 ms: the first token takes that long.
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "60",
        "--slow-ms",
        "700",
    ]);
    let port = free_port();
    let setup = Setup::with(
        &sim,
        ONE_WINDOW,
        crate::common::collect::DEFAULT_LIMITS,
        &listen(port),
    );
    let mut child = start(&setup);
    let (status, body) = wait_for(Duration::from_secs(30), "/readyz to answer", || {
        get(port, "/readyz")
    });
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: no access token obtained yet\n"),
        "before the first token"
    );
    assert_eq!(get(port, "/healthz"), Some((200, "ok\n".into())));
    wait_for(Duration::from_secs(30), "/readyz to be 200", || {
        (get(port, "/readyz")? == (200, "ready\n".into())).then_some(())
    });
    let expected: usize = sim.rows().values().sum();
    wait_for(Duration::from_secs(90), "every row in the output", || {
        (output_lines(&setup) == expected).then_some(())
    });
    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sum_of(&metrics, "sophos_tac_rows_delivered_total"),
        expected as f64,
        "{metrics}"
    );
    assert_eq!(
        sum_of(&metrics, "sophos_tac_output_acknowledged_total"),
        expected as f64
    );
    assert!(sum_of(&metrics, "sophos_tac_api_requests_total") >= 8.0);
    for name in [
        "sophos_tac_rows_duplicate_total{tenant=",
        "sophos_tac_rows_rejected_total{tenant=",
        "sophos_tac_rows_late_total{tenant=",
        "sophos_tac_api_requests_total{endpoint=\"token\",status=\"200\"}",
        "sophos_tac_api_requests_total{endpoint=\"query_results\",status=\"200\"}",
        "sophos_tac_tenant_lag_seconds{tenant=",
        "sophos_tac_tenant_last_success_timestamp_seconds{tenant=",
        "sophos_tac_tenant_failures_total{tenant=",
        "sophos_tac_output_dead_letter_total{output=\"file\"} 0",
        "sophos_tac_output_batch_seconds_bucket{output=\"file\",le=",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(name), "no {name} in\n{metrics}");
    }
    promtool_check(&metrics);
    let (code, took) = terminate(&mut child, Duration::from_secs(20));
    assert_eq!(code, Some(0), "SIGTERM exits 0 (took {took:?})");
}

/// `promtool check metrics` finds no problem (skipped, saying so, without promtool).
fn promtool_check(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        crate::common::missing_tool("promtool", "apt-get install prometheus");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server, stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts one scraping `target` every second, or `None` without the binary.
    fn start(dir: &Path, target: u16) -> Option<Prometheus> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sophos-tac\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ok()?;
        let p = Prometheus { child, port };
        wait_for(Duration::from_secs(60), "Prometheus to be ready", || {
            (get(p.port, "/-/ready")?.0 == 200).then_some(())
        });
        Some(p)
    }

    /// The value of an instant query that returns one sample.
    fn query(&self, expr: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", expr.replace(' ', "%20"));
        let (status, body) = get(self.port, &path)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then_some(())?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// A real Prometheus scrapes the collector, which is `kill -9`ed and restarted once
/// while rows arrive: `sum(sophos_tac_rows_delivered_total)` ends equal to the rows in
/// the output file, because the delivered counters start from the state's totals.
#[test]
fn prometheus_sees_every_delivered_row_across_restarts() {
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "80",
        "--past-secs",
        "10",
        "--future-secs",
        "6",
        "--fail-rate",
        "0.1",
    ]);
    let port = free_port();
    let setup = Setup::with(
        &sim,
        ONE_WINDOW,
        crate::common::collect::DEFAULT_LIMITS,
        &listen(port),
    );
    let Some(prometheus) = Prometheus::start(setup.dir.path(), port) else {
        crate::common::missing_tool("prometheus", "apt-get install prometheus");
        return;
    };
    let child = start(&setup);
    std::thread::sleep(Duration::from_secs(3));
    drop(child); // SIGKILL, mid-run
    let mut child = start(&setup);
    wait_for_every_row(&sim);
    let expected: usize = sim.rows().values().sum();
    wait_for(Duration::from_secs(90), "every row in the output", || {
        (output_lines(&setup) == expected).then_some(())
    });
    assert_exactly_once(&sim, &setup);
    let seen = wait_for(
        Duration::from_secs(60),
        "Prometheus to see every delivered row",
        || {
            let v = prometheus.query("sum(sophos_tac_rows_delivered_total)")?;
            (v == expected as f64).then_some(v)
        },
    );
    assert_eq!(seen, expected as f64);
    let up = prometheus.query("up{job=\"sophos-tac\"}");
    assert_eq!(up, Some(1.0));
    let (code, _) = terminate(&mut child, Duration::from_secs(20));
    assert_eq!(code, Some(0));
}

/// `--check`: the right secret passes every check and sends no Data Lake query; a
/// wrong secret and an unreachable output each give one clear line and exit 2, and the
/// secret shows nowhere.
#[test]
fn check_tells_what_is_wrong_in_seconds_without_the_secret() {
    let sim = Sim::start(&["--kind", "partner", "--tenants", "3"]);
    let setup = Setup::new(&sim, "");
    let out = bounded(setup.command(&["--check"]), Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "ok       access token: obtained from",
        "ok       whoami: a partner credential",
        "ok       tenants: 3 to collect, of 3: Tenant 0 (",
        "ok       state directory: ",
        "ok       output file: ",
        "no problem found",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let stats = sim.get("/_sim/stats");
    assert_eq!(
        stats["xdr_calls"],
        serde_json::json!({}),
        "--check sends no Data Lake query: {stats}"
    );

    // A wrong secret.
    let wrong = "Wr0ng-But-Also-Secret-99";
    let mut command = setup.command(&["--check"]);
    command.env("SOPHOS_TAC_TEST_SECRET", wrong);
    let out = bounded(command, Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].starts_with("PROBLEM  access token: ")
            && problems[0].contains("HTTP 401: the credential was refused"),
        "{text}"
    );
    assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");

    // A second output that nothing answers.
    let dead = free_port();
    let setup = Setup::new(
        &sim,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"siem\"\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:{dead}/detections\"\n"
        ),
    );
    setup.several_outputs();
    let out = bounded(setup.command(&["--check"]), Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].starts_with(&format!(
            "PROBLEM  output siem: http://127.0.0.1:{dead}/detections: "
        )),
        "{text}"
    );
    assert!(text.contains("ok       output archive: "), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

/// SIGTERM at random moments, under faults and slow answers, while rows arrive: each
/// stop exits 0 within the documented bound, and in the end every row is in the output
/// exactly once.
#[test]
fn sigterm_at_random_moments_stops_cleanly_and_loses_nothing() {
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "150",
        "--past-secs",
        "20",
        "--future-secs",
        "8",
        "--throttle-rate",
        "0.1",
        "--fail-rate",
        "0.1",
        "--slow-ms",
        "30",
    ]);
    let setup = Setup::new(&sim, "");
    let mut rnd = rng(11);
    let mut slowest = Duration::ZERO;
    for round in 0..10 {
        let mut child = start(&setup);
        std::thread::sleep(Duration::from_millis(200 + rnd(1500)));
        // Documented bound (docs/operations.md): 5 s plus the delivery under way.
        let (code, took) = terminate(&mut child, Duration::from_secs(30));
        let log = std::fs::read_to_string(setup.dir.path().join("collect.log")).unwrap();
        assert_eq!(code, Some(0), "round {round}: exit status; log:\n{log}");
        assert!(
            took < Duration::from_secs(5),
            "round {round}: took {took:?}"
        );
        slowest = slowest.max(took);
    }
    wait_for_every_row(&sim);
    for _ in 0..2 {
        let (code, log) = setup.once();
        assert!(code == 0, "{log}");
    }
    assert_exactly_once(&sim, &setup);
    eprintln!("10 SIGTERMs; the slowest stop took {slowest:?}");
}

/// A file output that never takes its writes (a FIFO whose reader reads nothing, as a
/// hung network mount would): `/healthz` turns 503 once the delivery is stuck past its
/// bound, and SIGTERM still ends the process within the stop bound (10 s).
#[test]
fn a_stuck_delivery_turns_healthz_503_and_sigterm_still_ends_the_process() {
    let sim = Sim::start(&["--kind", "tenant", "--rows", "400"]);
    let port = free_port();
    let setup = Setup::with(
        &sim,
        ONE_WINDOW,
        crate::common::collect::DEFAULT_LIMITS,
        &format!("timeout_secs = 1\n{}", listen(port)),
    );
    let fifo = setup.dir.path().join("stuck.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let out = setup.dir.path().join("out/sophos-tac.ndjson");
    let text = text.replace(&out.display().to_string(), &fifo.display().to_string());
    std::fs::write(&setup.config, text).unwrap();
    // The reader opens the FIFO (so that the collector's open returns) and never reads:
    // the collector's writes block once the pipe's 64 KiB are full.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo))
    };
    let mut collector = start(&setup);
    let health = wait_for(Duration::from_secs(60), "/healthz to say stuck", || {
        get(port, "/healthz").filter(|(status, _)| *status == 503)
    });
    assert!(health.1.contains("stuck"), "{health:?}");
    assert!(health.1.contains("over its bound of 1 s"), "{health:?}");
    let (code, took) = terminate(&mut collector, Duration::from_secs(30));
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    assert_eq!(code, Some(2));
    let log = std::fs::read_to_string(setup.dir.path().join("collect.log")).unwrap();
    assert!(
        log.contains("still under way after the stop bound"),
        "{log}"
    );
    drop(reader.join());
}

/// A hundred clients that connect and send nothing hold at most the endpoint's 32
/// places (before, 300 idle ones held 300 descriptors), and readiness probes sent in
/// parallel all agree (before, their shared probe file made some answer 503).
#[test]
fn the_endpoint_holds_few_connections_and_parallel_probes_agree() {
    let sim = Sim::start(&["--rows", "20"]);
    let port = free_port();
    let setup = Setup::with(
        &sim,
        ONE_WINDOW,
        crate::common::collect::DEFAULT_LIMITS,
        &listen(port),
    );
    let collector = start(&setup);
    wait_for(Duration::from_secs(30), "/readyz to say ready", || {
        get(port, "/readyz").filter(|(status, _)| *status == 200)
    });
    let pid = collector.0.id();
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = descriptors();
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let during = descriptors();
    assert!(
        during <= before + 32 + 8,
        "{during} descriptors with 100 idle clients, {before} before"
    );
    drop(idle);
    let probes: Vec<_> = (0..24)
        .map(|_| std::thread::spawn(move || get(port, "/readyz")))
        .collect();
    for probe in probes {
        let (status, body) = probe.join().unwrap().expect("an answer");
        assert_eq!(status, 200, "{body}");
    }
}
