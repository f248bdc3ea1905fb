//! Delivery to a real OpenSearch-API server on 127.0.0.1 (`osmem-server`, from PyPI,
//! installed into `target/osmem-venv` on first use), directly and through a
//! fault-injecting HTTP proxy of our own (429s, 503s, dropped connections, per-item
//! 429s). Every assertion queries the index (`_count`, `_search`): every row is there
//! exactly once, and what the index refuses for good is in the dead-letter file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::collect::bounded;
use crate::common::servers::{
    Server, count, http, lock_with_timeout, osmem_venv, read_headers, read_response,
};

use serde_json::{Value, json};

#[test]
fn a_left_over_lock_file_never_hangs_and_a_held_lock_times_out_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osmem-venv.lock");
    // What a killed run leaves: the file, with nobody holding it.
    std::fs::write(&path, b"").unwrap();
    let held = lock_with_timeout(&path, Duration::from_secs(5), "test").unwrap();
    // Held (by another open file, as another process would): a bounded wait, a message.
    let started = Instant::now();
    let err = lock_with_timeout(&path, Duration::from_millis(500), "another test").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("another test") && err.contains("osmem-venv.lock"),
        "{err}"
    );
    drop(held);
    lock_with_timeout(&path, Duration::from_secs(5), "test").unwrap();
    // The virtualenv lives in Cargo's scratch directory of the target directory in use.
    assert!(osmem_venv().starts_with(env!("CARGO_TARGET_TMPDIR")));
}

/// Which `_bulk` requests the proxy spoils (every n-th; 0 = never).
#[derive(Clone, Copy, Default)]
struct Faults {
    too_many: u64,
    unavailable: u64,
    drop: u64,
    item_429: u64,
}

/// A fault-injecting HTTP proxy in front of the server; counts what it did.
struct Proxy {
    url: String,
    injected: Arc<AtomicU64>,
}

fn proxy(upstream: &str, faults: Faults) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let injected = Arc::new(AtomicU64::new(0));
    let (count, inj) = (Arc::new(AtomicU64::new(0)), Arc::clone(&injected));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, count, inj) = (upstream.clone(), Arc::clone(&count), Arc::clone(&inj));
            std::thread::spawn(move || {
                let _ = serve(stream, &upstream, faults, &count, &inj);
            });
        }
    });
    Proxy { url, injected }
}

fn serve(
    client: TcpStream,
    upstream: &str,
    f: Faults,
    count: &AtomicU64,
    injected: &AtomicU64,
) -> Option<()> {
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let headers = read_headers(&mut reader)?;
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut client = client;
    let bulk = request_line.contains("/_bulk");
    let n = if bulk {
        count.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    };
    let hit = |every: u64| bulk && every > 0 && n % every == 0;
    let respond = |client: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = client.write_all(body);
    };
    if hit(f.drop) {
        injected.fetch_add(1, Ordering::SeqCst);
        return client.shutdown(std::net::Shutdown::Both).ok();
    }
    if hit(f.too_many) {
        injected.fetch_add(1, Ordering::SeqCst);
        respond(
            &mut client,
            "429 Too Many Requests",
            "Retry-After: 0\r\n",
            b"{\"error\":\"too many\"}",
        );
        return Some(());
    }
    if hit(f.unavailable) {
        injected.fetch_add(1, Ordering::SeqCst);
        respond(
            &mut client,
            "503 Service Unavailable",
            "",
            b"{\"error\":\"unavailable\"}",
        );
        return Some(());
    }
    let mut up = TcpStream::connect(upstream).ok()?;
    write!(up, "{}", request_line).ok()?;
    for (k, v) in headers.iter().filter(|(k, _)| k != "connection") {
        write!(up, "{k}: {v}\r\n").ok()?;
    }
    write!(up, "Connection: close\r\n\r\n").ok()?;
    up.write_all(&body).ok()?;
    let (status, resp_headers, mut resp) = read_response(&mut BufReader::new(up))?;
    if hit(f.item_429) && status == 200 {
        // Mark the first created item as throttled: it is in the index, so the retry
        // must count its 409 as delivered.
        let mut v: Value = serde_json::from_slice(&resp).ok()?;
        if let Some(item) = v["items"]
            .as_array_mut()
            .and_then(|items| items.iter_mut().find(|i| i["create"]["status"] == 201))
        {
            item["create"]["status"] = json!(429);
            item["create"]["error"] =
                json!({ "type": "es_rejected_execution_exception", "reason": "injected" });
            v["errors"] = json!(true);
            injected.fetch_add(1, Ordering::SeqCst);
        }
        resp = serde_json::to_vec(&v).ok()?;
    }
    let ctype = resp_headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or("application/json".to_string(), |(_, v)| v.clone());
    let _ = write!(
        client,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.len()
    );
    client.write_all(&resp).ok()
}

/// `n` realistic rows with unique record identifiers (a few without one).
fn rows(n: usize, dir: &std::path::Path) -> PathBuf {
    let path = dir.join("rows.ndjson");
    let mut text = String::new();
    for i in 0..n {
        let mut row = json!({
            "calendar_time": format!("2024-03-0{}T10:{:02}:{:02}Z", 1 + i % 9, i / 60 % 60, i % 60),
            "meta_hostname": format!("host-{}", i % 37),
            "meta_public_ip": format!("198.51.100.{}", i % 250 + 1),
            "ioc_severity": i % 10,
            "ioc_detection_id": "WIN-EXE-PRC-POWERSHELL-ENCODED-1",
            "counter": i,
        });
        if i % 50 != 7 {
            row["record_identifier"] = json!(format!("rec-{i:06}"));
        }
        text += &row.to_string();
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn normalize(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
    c.arg("normalize").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = bounded(c, Duration::from_secs(300));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn normalize_to_opensearch_is_complete_and_idempotent() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = rows(2000, dir.path());
    let target = format!("{}/sophos-tac", server.url);
    let dl = dir.path().join("dead.ndjson");
    let args = [
        "-o",
        &target,
        "--install-template",
        "--dead-letter",
        dl.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let (code, err) = normalize(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2000 delivered (0 already there), 0 refused"),
        "{err}"
    );
    assert_eq!(count(&server.url, "sophos-tac"), 2000);
    // The template is there and typed the fields.
    let (status, body) = http(&server.url, "GET", "/sophos-tac/_mapping", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"ip\""), "{body}");
    // Sending the same rows again adds nothing: every item is a 409, counted as delivered.
    let (code, err) = normalize(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2000 delivered (2000 already there)"), "{err}");
    assert_eq!(count(&server.url, "sophos-tac"), 2000);
    assert!(!dl.exists());
}

/// Eight bulk requests in flight at once, through 429s, 503s, dropped connections and
/// per-item 429s: each is retried on its own, every row is there once, and sending again
/// adds nothing.
#[test]
fn concurrent_bulk_requests_through_faults_lose_nothing_and_double_nothing() {
    let server = Server::start();
    let proxy = proxy(
        &server.url,
        Faults {
            too_many: 4,
            unavailable: 6,
            drop: 9,
            item_429: 3,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let input = rows(2000, dir.path());
    let target = format!("{}/concurrent", proxy.url);
    let dl = dir.path().join("dead.ndjson");
    let args = [
        "-o",
        &target,
        "--batch-docs",
        "40",
        "--bulk-concurrency",
        "8",
        "--dead-letter",
        dl.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let (code, err) = normalize(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        proxy.injected.load(Ordering::SeqCst) >= 10,
        "faults were injected"
    );
    assert_eq!(count(&server.url, "concurrent"), 2000);
    assert!(!dl.exists(), "nothing was refused for good");
    let (code, err) = normalize(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2000 delivered (2000 already there)"), "{err}");
    assert_eq!(count(&server.url, "concurrent"), 2000);
    // out of range is refused by the flag
    let (code, _) = normalize(
        &[
            "-o",
            &target,
            "--bulk-concurrency",
            "0",
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
}

#[test]
fn faults_lose_nothing_and_double_nothing() {
    let server = Server::start();
    let proxy = proxy(
        &server.url,
        Faults {
            too_many: 3,
            unavailable: 5,
            drop: 7,
            item_429: 2,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let input = rows(3000, dir.path());
    let target = format!("{}/faulty", proxy.url);
    let dl = dir.path().join("dead.ndjson");
    let (code, err) = normalize(
        &[
            "-o",
            &target,
            "--gzip",
            "--batch-docs",
            "100",
            "--dead-letter",
            dl.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        proxy.injected.load(Ordering::SeqCst) >= 10,
        "faults were injected"
    );
    assert_eq!(count(&server.url, "faulty"), 3000);
    assert!(!dl.exists(), "nothing was refused for good");
    // A sample of rows is findable by its id.
    for id in ["id:rec-000000", "id:rec-001234", "id:rec-002999"] {
        let (_, body) = http(&server.url, "GET", &format!("/faulty/_doc/{id}"), "");
        assert!(body.contains("\"found\":true"), "{id}: {body}");
    }
}

#[test]
fn permanent_refusals_go_to_the_dead_letter_file_with_the_reason() {
    let server = Server::start();
    // An index where host.name must be a number: rows with a host name are refused.
    let (status, body) = http(
        &server.url,
        "PUT",
        "/strict",
        r#"{"mappings":{"properties":{"host":{"properties":{"name":{"type":"long"}}}}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.ndjson");
    std::fs::write(&input, "{\"record_identifier\":\"a\",\"meta_hostname\":\"web-1\",\"calendar_time\":1700000000}\n{\"record_identifier\":\"b\",\"calendar_time\":1700000000}\n{\"record_identifier\":\"c\",\"meta_hostname\":\"42\",\"calendar_time\":1700000000}\n").unwrap();
    let dl = dir.path().join("dead.ndjson");
    let (code, err) = normalize(
        &[
            "-o",
            &format!("{}/strict", server.url),
            "--dead-letter",
            dl.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "refusals give exit 1: {err}");
    assert!(err.contains("1 refused"), "{err}");
    assert_eq!(count(&server.url, "strict"), 2);
    let dead: Vec<Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["_id"], "id:a");
    assert_eq!(dead[0]["reason"]["status"], 400);
    assert!(
        dead[0]["reason"]["error"]
            .to_string()
            .contains("mapper_parsing_exception"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["document"]["host"]["name"], "web-1");
}

#[test]
fn credentials_never_reach_the_output() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let input = rows(10, dir.path());
    let (code, err) = normalize(
        &[
            "-o",
            &format!("{}/auth", server.url),
            input.to_str().unwrap(),
        ],
        &[
            ("SOPHOS_TAC_ES_USER", "elastic"),
            ("SOPHOS_TAC_ES_PASSWORD", "pa55-Never-Printed"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("pa55-Never-Printed"));
    let (code, err) = normalize(
        &[
            "-o",
            "http://127.0.0.1:9/none",
            "--retries",
            "2",
            "--dead-letter",
            dir.path().join("kept.ndjson").to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[("SOPHOS_TAC_ES_API_KEY", "key-Never-Printed")],
    );
    assert_eq!(code, 2, "an unreachable target is an error: {err}");
    assert!(!err.contains("key-Never-Printed"), "{err}");
    // …and what could not be delivered is kept, with the reason.
    let kept = std::fs::read_to_string(dir.path().join("kept.ndjson")).unwrap_or_default();
    assert_eq!(kept.lines().count(), 10, "{kept}");
    assert!(kept.contains("giving up after 2 retries") && !kept.contains("key-Never-Printed"));
}

/// The collector path: `collect` against the simulator, into OpenSearch through the
/// fault proxy, `kill -9`ed at random points while rows arrive, 30% of them a minute to
/// a day late (so the late sweep delivers them); afterwards the index holds every row
/// exactly once, whether the live window or the sweep saw it first.
#[test]
fn collect_into_opensearch_survives_kill_9() {
    let server = Server::start();
    let proxy = proxy(
        &server.url,
        Faults {
            too_many: 4,
            unavailable: 6,
            drop: 0,
            item_429: 3,
        },
    );
    let sim = crate::common::collect::Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "3",
        "--rows",
        "120",
        "--past-secs",
        "20",
        "--future-secs",
        "5",
        "--late-fraction",
        "0.3",
        "--late-min-secs",
        "60",
        "--late-secs",
        "86400",
    ]);
    let sim_url = sim.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "client_id = \"demo-client\"\nclient_secret_env = \"SIM_SECRET\"\nauth_url = \"{sim_url}/api/v2/oauth2/token\"\nglobal_url = \"{sim_url}\"\nstate_dir = \"{}\"\n\n[query]\nlookback_secs = 90000\noverlap_secs = 20\npage_size = 50\nmax_window_pages = 2\npoll_interval_ms = 20\nlate_sweep_secs = 2\ninterval_secs = 1\n\n[limits]\nper_second = 200\nper_minute = 100000\n\n[output]\ntype = \"elasticsearch\"\nurl = \"{}/collected\"\ninstall_template = true\nbatch_docs = 25\n",
            dir.path().join("state").display(),
            proxy.url
        ),
    )
    .unwrap();
    let run = |once: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
        c.args(["collect", "--config", config.to_str().unwrap()])
            .env("SIM_SECRET", crate::common::collect::SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if once {
            c.arg("--once");
        }
        c
    };
    for i in 0..8u64 {
        let mut child = run(false).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(150 + (i * 137) % 600));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Every row has arrived 6 s after the start; two passes 2 s apart then finish the
    // sweep under way and run one that started after the last arrival.
    std::thread::sleep(Duration::from_secs(6));
    for _ in 0..2 {
        let out = bounded(run(true), Duration::from_secs(300));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(2_100));
    }
    assert_eq!(
        count(&server.url, "collected"),
        360,
        "every row exactly once"
    );
}

/// Two outputs at once, an archive file and an OpenSearch index behind the fault proxy,
/// with the collector `kill -9`ed at random moments while rows arrive (some late, for
/// the sweep): each output ends with every row exactly once.
#[test]
fn two_outputs_each_hold_every_row_exactly_once_after_kill_9() {
    let server = Server::start();
    let proxy = proxy(
        &server.url,
        Faults {
            too_many: 5,
            unavailable: 7,
            drop: 0,
            item_429: 4,
        },
    );
    let sim = crate::common::collect::Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "120",
        "--past-secs",
        "20",
        "--future-secs",
        "5",
        "--late-fraction",
        "0.2",
        "--late-min-secs",
        "60",
        "--late-secs",
        "3600",
        "--fail-rate",
        "0.05",
    ]);
    let setup = crate::common::collect::Setup::with(
        &sim,
        "lookback_secs = 90000\noverlap_secs = 20\npage_size = 50\nmax_window_pages = 2\npoll_interval_ms = 20\nlate_sweep_secs = 2\ninterval_secs = 1",
        crate::common::collect::DEFAULT_LIMITS,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"siem\"\ntype = \"elasticsearch\"\nurl = \"{}/detections\"\nbatch_docs = 25\n",
            proxy.url
        ),
    );
    setup.several_outputs();
    let mut rnd = crate::common::collect::rng(5);
    for _ in 0..8 {
        let _ = setup.kill_9_after(150 + rnd(700));
    }
    crate::common::collect::wait_for_every_row(&sim);
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..2 {
        let (code, log) = setup.once();
        assert_eq!(code, 0, "{log}");
        std::thread::sleep(Duration::from_millis(2_100));
    }
    crate::common::collect::assert_exactly_once(&sim, &setup);
    let expected: usize = sim.rows().values().sum();
    assert_eq!(count(&server.url, "detections"), expected as u64);
    assert!(
        proxy.injected.load(Ordering::SeqCst) > 0,
        "no fault injected"
    );
}

/// With the index down, a pass delivers nothing anywhere: the checkpoint stays, and the
/// archive file, which took the window first, is cut back. Once the index is back,
/// both hold every row exactly once.
#[test]
fn an_output_down_holds_the_checkpoint_and_nothing_is_lost() {
    let sim = crate::common::collect::Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "60",
    ]);
    let port = crate::common::servers::free_port();
    let setup = crate::common::collect::Setup::with(
        &sim,
        crate::common::collect::DEFAULT_QUERY,
        crate::common::collect::DEFAULT_LIMITS,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"siem\"\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:{port}/detections\"\nmax_retries = 2\n"
        ),
    );
    setup.several_outputs();
    let (code, log) = setup.once();
    assert_eq!(code, 3, "the tenants fail while the index is down: {log}");
    assert!(log.contains("an output failed"), "{log}");
    // The empty windows before the first row are committed; the first window with
    // rows is not (the simulator's rows start an hour before it started).
    let first_row = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let status = setup.status();
    for line in status.lines().skip(1) {
        // tenant, name (two words: "Tenant 0"), checkpoint, lag, delivered
        let words: Vec<&str> = line.split_whitespace().collect();
        let checkpoint: jiff::Timestamp = words[3].parse().unwrap();
        assert!(
            checkpoint <= first_row,
            "the checkpoint moved past a row:\n{status}"
        );
        assert_eq!(words[5], "0", "delivered:\n{status}");
        assert!(
            line.contains("Connection refused"),
            "the last error:\n{status}"
        );
    }
    assert_eq!(
        setup.delivered().values().sum::<usize>(),
        0,
        "the archive was cut back"
    );
    let server = Server::start_on(port);
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    crate::common::collect::assert_exactly_once(&sim, &setup);
    let expected: usize = sim.rows().values().sum();
    assert_eq!(count(&server.url, "detections"), expected as u64);
}

/// `collect --check` proves that it may write to the index: a probe document goes in
/// and is deleted (the index holds nothing after it), and an index that refuses
/// documents (a key without `create_doc`: per-item 403) is a PROBLEM line saying so.
#[test]
fn check_proves_it_may_write_to_the_index_and_leaves_nothing() {
    let server = Server::start();
    let refusing = crate::common::servers::refusing_bulk_server(403);
    let sim = crate::common::collect::Sim::start(&["--rows", "5"]);
    for (url, ok) in [
        (format!("{}/probe-idx", server.url), true),
        (format!("http://127.0.0.1:{refusing}/probe-idx"), false),
    ] {
        let setup = crate::common::collect::Setup::new(&sim, "");
        let text = std::fs::read_to_string(&setup.config).unwrap();
        let out = setup.dir.path().join("out/sophos-tac.ndjson");
        let text = text.replace(
            &format!("type = \"file\"\npath = \"{}\"", out.display()),
            &format!("type = \"elasticsearch\"\nurl = \"{url}\""),
        );
        std::fs::write(&setup.config, text).unwrap();
        let out = bounded(setup.command(&["--check"]), Duration::from_secs(60));
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = report
            .lines()
            .find(|l| l.contains("output elasticsearch"))
            .unwrap_or_else(|| panic!("{report}"));
        if ok {
            assert!(line.starts_with("ok "), "{report}");
            let _ = http(&server.url, "POST", "/probe-idx/_refresh", "");
            let (_, count) = http(&server.url, "GET", "/probe-idx/_count", "");
            let count: Value = serde_json::from_str(&count).unwrap();
            assert_eq!(count["count"], 0, "the probe was deleted: {count}");
        } else {
            assert!(line.starts_with("PROBLEM "), "{report}");
            assert!(line.contains("refuses a document (HTTP 403"), "{line}");
            assert!(line.contains("create_doc"), "{line}");
            assert_eq!(out.status.code(), Some(2));
        }
    }
}
