//! The Sophos Central simulator (`sophos-central-sim`) and a `sophos-tac collect` set up
//! against it, both real binaries on 127.0.0.1; with the checks the collector tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The tests' usual `[query]`: small pages and windows, fast polls and passes.
pub const DEFAULT_QUERY: &str = "lookback_secs = 7200
overlap_secs = 30
max_window_secs = 900
poll_interval_ms = 20
page_size = 37
interval_secs = 1";

/// The tests' usual `[limits]`: high enough never to slow a test.
pub const DEFAULT_LIMITS: &str = "concurrency = 2
per_second = 200
per_minute = 100000
per_hour = 1000000";

pub const SECRET: &str = "s3cr3t-Do-Not-Leak-42";

/// A running simulator (in this process, on a thread of its own), stopped on drop.
pub struct Sim {
    running: sophos_central_sim::Running,
    /// The simulator's base URL.
    pub url: String,
}

impl Sim {
    /// Starts one on a free loopback port with these flags (and the tests' secret).
    pub fn start(args: &[&str]) -> Sim {
        let mut flags = vec!["--addr", "127.0.0.1:0", "--client-secret", SECRET];
        flags.extend_from_slice(args);
        let running = sophos_central_sim::start(&flags).expect("the simulator starts");
        Sim {
            url: running.url.clone(),
            running,
        }
    }

    pub fn get(&self, path: &str) -> Value {
        // A tiny HTTP/1.0 GET, to keep the test free of an HTTP client.
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap()
    }

    /// Every row the simulator holds, as JSON text, counted.
    pub fn rows(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.get("/_sim/rows")["rows"].as_array().unwrap() {
            *m.entry(r.as_str().unwrap().to_string()).or_default() += 1;
        }
        m
    }

    /// Every SIEM API item the simulator holds, as `alert:{tenant}:{id}` or
    /// `event:{tenant}:{id}` (its document id), counted; with `until_ms`, only those
    /// visible by then.
    pub fn items(&self, visible: impl Fn(i64) -> bool) -> BTreeMap<String, usize> {
        let all = self.get("/_sim/siem");
        let mut m = BTreeMap::new();
        for (stream, kind) in [("alerts", "alert"), ("events", "event")] {
            for i in all[stream].as_array().unwrap() {
                if visible(i["visible_ms"].as_i64().unwrap()) {
                    let key = format!(
                        "{kind}:{}:{}",
                        i["tenant"].as_str().unwrap(),
                        i["id"].as_str().unwrap()
                    );
                    *m.entry(key).or_default() += 1;
                }
            }
        }
        m
    }

    /// When the last SIEM item becomes visible (ms since the epoch).
    pub fn last_item_visible_ms(&self) -> i64 {
        let all = self.get("/_sim/siem");
        ["alerts", "events"]
            .iter()
            .flat_map(|s| all[*s].as_array().unwrap().iter())
            .filter_map(|i| i["visible_ms"].as_i64())
            .max()
            .unwrap_or(0)
    }

    /// When the last row becomes visible (ms since the epoch).
    pub fn last_visible_ms(&self) -> i64 {
        self.get("/_sim/rows")["last_visible_ms"].as_i64().unwrap()
    }
}

pub struct Setup {
    /// The scratch directory (state, output, config).
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
}

impl Setup {
    /// The tests' usual configuration, with `extra` appended to `[output]`.
    pub fn new(sim: &Sim, extra: &str) -> Setup {
        Setup::with(sim, DEFAULT_QUERY, DEFAULT_LIMITS, extra)
    }

    /// A configuration with these `[query]` and `[limits]` bodies.
    pub fn with(sim: &Sim, query: &str, limits: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("collect.toml");
        let text = format!(
            r#"client_id = "demo-client"
client_secret_env = "SOPHOS_TAC_TEST_SECRET"
auth_url = "{url}/api/v2/oauth2/token"
global_url = "{url}"
state_dir = "{state}"

[query]
{query}

[limits]
{limits}

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

    /// Turns the configuration's `[output]` into the first of several `[[output]]`s (the
    /// others given in `extra`).
    pub fn several_outputs(&self) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen("\n[output]\n", "\n[[output]]\n", 1);
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
        c.arg("collect")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("SOPHOS_TAC_TEST_SECRET", SECRET)
            .env("RUST_LOG", "warn,sophos_tac=debug");
        c
    }

    /// `collect --once`: its exit status and its output (stderr, then stdout). Fails the
    /// test when it takes more than two minutes.
    pub fn once(&self) -> (i32, String) {
        let out = bounded(
            self.command(&["--once"]),
            std::time::Duration::from_secs(120),
        );
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.code().unwrap_or(-1), log)
    }

    /// Starts the collector as a service, kills it with SIGKILL after `ms`, and returns
    /// what it logged.
    pub fn kill_9_after(&self, ms: u64) -> String {
        let mut child = self
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts the collector as a service that aborts right after its `n`-th delivery,
    /// before that delivery is committed (the worst moment for a crash), or is killed
    /// with SIGKILL after `limit`; returns whether it aborted there, and what it logged.
    pub fn crash_after_deliveries(&self, n: u64, limit: std::time::Duration) -> (bool, String) {
        let mut child = self
            .command(&[])
            .env("SOPHOS_TAC_CRASH_AFTER_DELIVERIES", n.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() >= until {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let aborted = status.is_some_and(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.signal() == Some(6)
        });
        (aborted, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `collect --status`, printed.
    pub fn status(&self) -> String {
        let out = bounded(
            self.command(&["--status"]),
            std::time::Duration::from_secs(30),
        );
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `late` column of the first tenant's `--status` line.
    pub fn late_count(&self) -> i64 {
        let st = self.status();
        st.lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(5))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no late column in {st}"))
    }

    /// Every document of every output file.
    fn documents(&self) -> Vec<Value> {
        let mut docs = Vec::new();
        let out = self.dir.path().join("out");
        for e in std::fs::read_dir(out).into_iter().flatten() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for line in text.lines() {
                docs.push(
                    serde_json::from_str(line).expect("every output line is a whole document"),
                );
            }
        }
        docs
    }

    /// The `message` of every delivered Data Lake document (every output file), counted.
    pub fn delivered(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for doc in self.documents() {
            if doc["event"]["dataset"].is_string() {
                continue; // a SIEM API item's, see `delivered_items`
            }
            *m.entry(doc["message"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        m
    }

    /// Every delivered SIEM API item (every output file) as `{alert|event}:{tenant}:{id}`,
    /// counted.
    pub fn delivered_items(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for doc in self.documents() {
            let Some(kind) = doc["event"]["dataset"]
                .as_str()
                .and_then(|d| d.strip_prefix("sophos_central."))
            else {
                continue;
            };
            let key = format!(
                "{kind}:{}:{}",
                doc["organization"]["id"].as_str().unwrap(),
                doc["event"]["id"].as_str().unwrap()
            );
            *m.entry(key).or_default() += 1;
        }
        m
    }

    /// Every file the collector wrote, as bytes (logs are checked separately).
    pub fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
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

pub fn assert_exactly_once(sim: &Sim, setup: &Setup) {
    assert_same("rows", &sim.rows(), &setup.delivered());
}

/// Every item the simulator serves, in the output files, exactly once.
pub fn assert_items_exactly_once(sim: &Sim, setup: &Setup) {
    assert_same("items", &sim.items(|_| true), &setup.delivered_items());
}

/// The same multiset: nothing missing, twice or unexpected.
fn assert_same(what: &str, expected: &BTreeMap<String, usize>, got: &BTreeMap<String, usize>) {
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
        "{what}: missing {missing:?}, doubled {doubled:?}, unexpected {extra:?} (of {})",
        expected.len()
    );
    assert_eq!(
        got.values().sum::<usize>(),
        expected.values().sum::<usize>()
    );
}

/// Waits until the simulator's last SIEM item has arrived, plus half a second (two
/// minutes at most).
pub fn wait_for_every_item(sim: &Sim) {
    let until = sim.last_item_visible_ms() + 500;
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while jiff::Timestamp::now().as_millisecond() < until {
        assert!(
            std::time::Instant::now() < bound,
            "the simulator's items did not all arrive within 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn assert_no_secret(setup: &Setup, logs: &str) {
    assert!(!logs.contains(SECRET), "the secret is in the logs");
    for (path, bytes) in setup.all_files() {
        if path.ends_with("collect.toml") {
            continue;
        }
        let hit = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!hit, "the secret is in {}", path.display());
    }
}

/// A seeded xorshift generator of the tests' random moments: `rnd(n)` is in `0..n`.
pub fn rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// Waits until the simulator's last row has arrived, plus half a second (two minutes at
/// most).
pub fn wait_for_every_row(sim: &Sim) {
    let until = sim.last_visible_ms() + 500;
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while jiff::Timestamp::now().as_millisecond() < until {
        assert!(
            std::time::Instant::now() < bound,
            "the simulator's rows did not all arrive within 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs a command to its end, or kills it and fails the test after `limit`.
pub fn bounded(mut command: Command, limit: std::time::Duration) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waited.recv_timeout(limit) {
        Ok(out) => out.expect("the command's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let tail = waited
                .recv_timeout(std::time::Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| {
                    let start = o.stderr.len().saturating_sub(4000);
                    String::from_utf8_lossy(&o.stderr[start..]).into_owned()
                })
                .unwrap_or_default();
            panic!(
                "{command:?} did not finish within {limit:?}; killed it. Its log ended with:\n{tail}"
            );
        }
    }
}
