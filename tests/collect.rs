//! `sophos-tac collect` against the Sophos Central simulator (`sophos-central-sim`),
//! both real binaries on 127.0.0.1. Every test asserts the exact multiset of rows
//! delivered: none missing, none twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "s3cr3t-Do-Not-Leak-42";

/// A running simulator, stopped on drop.
struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sophos-central-sim"))
            .args(["--addr", "127.0.0.1:0", "--client-secret", SECRET])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the simulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Sim {
            child,
            url: line.trim().to_string(),
        }
    }

    fn get(&self, path: &str) -> Value {
        // A tiny HTTP/1.0 GET, to keep the test free of an HTTP client.
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap()
    }

    /// Every row the simulator holds, as JSON text, counted.
    fn rows(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.get("/_sim/rows")["rows"].as_array().unwrap() {
            *m.entry(r.as_str().unwrap().to_string()).or_default() += 1;
        }
        m
    }

    /// When the last row becomes visible (ms since the epoch).
    fn last_visible_ms(&self) -> i64 {
        self.get("/_sim/rows")["last_visible_ms"].as_i64().unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(sim: &Sim, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("collect.toml");
        let text = format!(
            r#"client_id = "demo-client"
client_secret_env = "SOPHOS_TAC_TEST_SECRET"
auth_url = "{url}/api/v2/oauth2/token"
global_url = "{url}"
state_dir = "{state}"

[query]
lookback_secs = 7200
overlap_secs = 30
max_window_secs = 900
poll_interval_ms = 20
page_size = 37
interval_secs = 1

[limits]
concurrency = 2
per_second = 200
per_minute = 100000
per_hour = 1000000

[output]
type = "file"
path = "{out}"
{extra}
"#,
            url = sim.url,
            state = dir.path().join("state").display(),
            out = dir.path().join("out/sophos-tac.ndjson").display(),
        );
        std::fs::write(&config, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Setup { dir, config }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
        c.arg("collect")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("SOPHOS_TAC_TEST_SECRET", SECRET)
            .env("RUST_LOG", "debug");
        c
    }

    fn once(&self) -> (i32, String) {
        let out = self.command(&["--once"]).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code().unwrap_or(-1), log)
    }

    /// The `message` of every delivered document (every output file), counted.
    fn delivered(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        let out = self.dir.path().join("out");
        for e in std::fs::read_dir(out).into_iter().flatten() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for line in text.lines() {
                let doc: Value =
                    serde_json::from_str(line).expect("every output line is a whole document");
                *m.entry(doc["message"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        m
    }

    /// Every file the collector wrote, as bytes (logs are checked separately).
    fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

fn assert_exactly_once(sim: &Sim, setup: &Setup) {
    let expected = sim.rows();
    let got = setup.delivered();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let doubled: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && doubled.is_empty() && extra.is_empty(),
        "missing {missing:?}, doubled {doubled:?}, unexpected {extra:?}"
    );
    assert_eq!(
        got.values().sum::<usize>(),
        expected.values().sum::<usize>()
    );
}

fn assert_no_secret(setup: &Setup, logs: &str) {
    assert!(!logs.contains(SECRET), "the secret is in the logs");
    for (path, bytes) in setup.all_files() {
        if path.ends_with("collect.toml") {
            continue;
        }
        let hit = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!hit, "the secret is in {}", path.display());
    }
}

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
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut logs = String::new();
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(12) || kills < 10 {
        let mut child = setup
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + rnd(700)));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        logs += &String::from_utf8_lossy(&out.stderr);
        kills += 1;
    }
    // Wait until every row is visible, then catch up.
    while jiff::Timestamp::now().as_millisecond() < sim.last_visible_ms() + 500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    println!(
        "{kills} kills; {} interrupted deliveries repaired; {} windows delivered before the last pass",
        logs.matches("repairing a delivery").count(),
        logs.matches("window delivered").count()
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
