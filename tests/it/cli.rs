//! End-to-end tests: the real binary, in a scratch directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sophos-tac"))
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/detections.ndjson")
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let input = stdin.unwrap_or_default().to_vec();
    run_streamed(args, move |w| w.write_all(&input)).0
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn docs(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// A generated input: valid rows of several kinds, with bad and blank lines mixed in.
fn corpus(lines: usize) -> String {
    let mut s = String::new();
    for i in 0..lines {
        match i % 50 {
            7 => s.push_str("{\"broken\":\n"),
            13 => s.push('\n'),
            29 => s.push_str(&format!("{{\"message\":\"{{\\\"meta_hostname\\\":\\\"env-{i}\\\",\\\"ioc_unix_time\\\":{}}}\"}}\n", 1_700_000_000 + i)),
            _ => s.push_str(&format!(
                "{{\"meta_hostname\":\"host-{i}\",\"calendar_time\":\"2024-02-01T10:{:02}:{:02}.{:03}Z\",\"ioc_severity\":{},\"meta_public_ip\":\"10.{}.{}.{}\",\"meta_username\":\"u{i}\",\"data\":\"d\\\"{i}\"}}\n",
                i / 60 % 60, i % 60, i % 1000, i % 10, i % 256, i / 256 % 256, i % 200
            )),
        }
    }
    s
}

#[test]
fn example_runs_end_to_end() {
    let out = run(&["normalize", example().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "rejects give exit 1");
    let docs = docs(&out);
    assert_eq!(docs.len(), 6);
    assert!(docs.iter().all(|d| d["event"]["kind"] == "event"));
    let err = text(&out.stderr);
    for line in [8, 9, 10] {
        assert!(
            err.contains(&format!("detections.ndjson:{line}: ")),
            "{err}"
        );
    }
    assert!(
        err.contains("10 lines read: 6 normalized, 3 rejected, 1 blank"),
        "{err}"
    );
    assert!(err.contains("event.severity 1, source.ip 1"), "{err}");
}

#[test]
fn stdin_dash_and_no_file_are_the_same() {
    let input = std::fs::read(example()).unwrap();
    let a = run(&["normalize"], Some(&input));
    let b = run(&["normalize", "-"], Some(&input));
    let c = run(&["normalize", example().to_str().unwrap()], None);
    assert_eq!(a.stdout, c.stdout);
    assert_eq!(b.stdout, c.stdout);
    assert!(text(&a.stderr).contains("<stdin>:8: "));
}

#[test]
fn gzip_input_is_recognised_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("rows.ndjson.whatever");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(example()).unwrap()).unwrap();
    enc.finish().unwrap();
    let plain = run(&["normalize", "-q", example().to_str().unwrap()], None);
    let zipped = run(&["normalize", "-q", gz.to_str().unwrap()], None);
    assert_eq!(zipped.stdout, plain.stdout);
    assert_eq!(zipped.status.code(), Some(1));
    // gzip on stdin too
    let bytes = std::fs::read(&gz).unwrap();
    assert_eq!(run(&["normalize", "-q"], Some(&bytes)).stdout, plain.stdout);
}

#[test]
fn rejects_file_keeps_every_bad_line_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let bad_utf8: &[u8] = b"{\"a\":\"\xff\xfe\"}";
    let first_line: &[u8] = b"{\"meta_hostname\":\"ok\",\"calendar_time\":1700000000}\r\n";
    let mut bytes = first_line.to_vec();
    bytes.extend_from_slice(bad_utf8);
    bytes.extend_from_slice(b"\r\n[1,2]\n\n   \n{\"message\":\"{oops\"}");
    std::fs::write(&input, &bytes).unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let out = run(
        &[
            "normalize",
            input.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !text(&out.stderr).contains("in.ndjson:2"),
        "rejects go to the file, not stderr"
    );
    assert!(text(&out.stderr).contains("6 lines read: 1 normalized, 3 rejected, 2 blank"));
    let records: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["line"], 2);
    assert_eq!(records[0]["offset"], first_line.len());
    assert_eq!(records[0]["reason"], "invalid UTF-8 at byte 6");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(records[0]["text_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bad_utf8);
    assert_eq!(records[1]["line"], 3);
    assert_eq!(records[1]["text"], "[1,2]");
    assert_eq!(records[2]["line"], 6);
    assert_eq!(records[2]["text"], "{\"message\":\"{oops\"}");
    assert!(
        records[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("envelope message is not a valid JSON object")
    );
    assert!(records.iter().all(|r| r["file"] == input.to_str().unwrap()));
}

#[test]
fn output_file_and_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.ndjson");
    let out = run(
        &[
            "normalize",
            "-q",
            "-o",
            out_path.to_str().unwrap(),
            example().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.stdout.is_empty());
    assert!(!text(&out.stderr).contains("lines read"));
    assert_eq!(
        std::fs::read_to_string(out_path).unwrap().lines().count(),
        6
    );
}

#[test]
fn clean_input_exits_zero() {
    let out = run(
        &["normalize"],
        Some(b"{\"meta_hostname\":\"a\",\"calendar_time\":\"2024-01-01T00:00:00Z\"}\n\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("2 lines read: 1 normalized, 0 rejected, 1 blank"));
}

#[test]
fn output_is_byte_identical_whatever_the_threads_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.ndjson");
    std::fs::write(&input, corpus(20_000)).unwrap();
    let path = input.to_str().unwrap();
    let reference = run(&["normalize", "-j", "1", path], None);
    assert_eq!(docs(&reference).len(), 20_000 - 400 - 400);
    let ref_err = text(&reference.stderr);
    assert!(
        ref_err.contains("20000 lines read: 19200 normalized, 400 rejected, 400 blank"),
        "{ref_err}"
    );
    for (threads, block) in [("2", "1048576"), ("4", "4096"), ("3", "1"), ("1", "777")] {
        let out = run(
            &["normalize", "-j", threads, "--block-bytes", block, path],
            None,
        );
        assert!(
            out.stdout == reference.stdout,
            "threads={threads} block={block}: output differs"
        );
        assert_eq!(
            text(&out.stderr),
            ref_err,
            "threads={threads} block={block}: reports differ"
        );
    }
}

#[test]
fn unreadable_input_is_named_and_the_others_still_run() {
    let out = run(
        &[
            "normalize",
            "/nonexistent/rows.ndjson",
            example().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("sophos-tac: /nonexistent/rows.ndjson: No such file or directory"),
        "{err}"
    );
    assert_eq!(docs(&out).len(), 6);
}

#[test]
fn full_disk_is_an_error_naming_the_output() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let out = run(
        &["normalize", "-o", "/dev/full", example().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("sophos-tac: /dev/full: No space left on device"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn broken_pipe_is_reported_not_silent() {
    let mut child = bin()
        .args(["normalize", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = corpus(50_000);
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("sophos-tac: <stdout>: Broken pipe"), "{err}");
}

#[test]
fn fields_catalogue_and_template() {
    let md = run(&["fields"], None);
    assert!(text(&md.stdout).starts_with("| Field | Type |"));
    let json: Value =
        serde_json::from_slice(&run(&["fields", "--format", "json"], None).stdout).unwrap();
    assert_eq!(json["profile"], "documented");
    assert_eq!(json["fields"].as_array().unwrap().len(), 35);
    let t: Value = serde_json::from_slice(
        &run(
            &[
                "fields",
                "--index-template",
                "--data-stream",
                "--index-pattern",
                "logs-sophos-*",
            ],
            None,
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(t["index_patterns"], serde_json::json!(["logs-sophos-*"]));
    assert_eq!(t["data_stream"], serde_json::json!({}));
    assert_eq!(
        t["template"]["mappings"]["properties"]["source"]["properties"]["ip"]["type"],
        "ip"
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    assert_eq!(
        run(&["normalize", "--threads", "0"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["normalize", "--profile", "nope"], None).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["fields", "--data-stream"], None).status.code(),
        Some(2)
    );
}

/// Runs the binary with a pseudo-terminal as stdout and stderr (`script`), and
/// returns what the terminal showed.
fn on_terminal(args: &str) -> Option<String> {
    let cmd = format!("{} {args} > /dev/null", env!("CARGO_BIN_EXE_sophos-tac"));
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(text(&out.stdout))
}

#[test]
fn progress_bar_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, corpus(20_000)).unwrap();
    let Some(shown) = on_terminal(&format!(
        "normalize --progress always --rejects /dev/null {}",
        input.display()
    )) else {
        eprintln!("skipped: no `script` command (util-linux)");
        return;
    };
    assert!(
        shown.contains("MiB/"),
        "a bar with the total size: {shown:?}"
    );
    assert!(shown.contains("lines read"));
    // auto: this input is under 64 MiB, so no bar
    let auto = on_terminal(&format!(
        "normalize --rejects /dev/null {}",
        input.display()
    ))
    .unwrap();
    assert!(!auto.contains("MiB"), "no bar for a small input: {auto:?}");
    // not a terminal: never a bar, even when asked
    let piped = run(
        &[
            "normalize",
            "--progress",
            "always",
            "--rejects",
            "/dev/null",
            input.to_str().unwrap(),
        ],
        None,
    );
    assert!(!text(&piped.stderr).contains("MiB"));
}

/// Regression: with two binaries in the package, the README's first command
/// (`cargo run --release -- normalize …`) needs `default-run`.
#[test]
fn readme_cargo_run_picks_sophos_tac() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == "default-run = \"sophos-tac\""),
        "Cargo.toml must set default-run"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- normalize examples/detections.ndjson"));
}

/// No error or log line shows a password: a URL holding one is refused (the message
/// shows it redacted and names the environment variables), and a password given the
/// right way never reaches stderr, with or without `-v`. Errors are one line, each
/// cause once.
#[test]
fn passwords_never_reach_stderr_and_errors_are_one_line() {
    const PASSWORD: &str = "Pa55-w0rd-Never-Shown";
    let example = example();
    let example = example.to_str().unwrap();
    for verbose in [&[][..], &["-v"][..]] {
        let url = format!("http://elastic:{PASSWORD}@127.0.0.1:1/idx");
        let out = bin()
            .args(["normalize", "-o", &url, "--retries", "1"])
            .args(verbose)
            .arg(example)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
        assert!(
            err.contains("http://***@127.0.0.1:1/idx") && err.contains("SOPHOS_TAC_ES_PASSWORD"),
            "{err}"
        );
        // The same password from the environment, against a server that is not there,
        // in a scratch directory: the undelivered documents go to the dead-letter file
        // there, private, and the failing line says how many and where.
        let scratch = tempfile::tempdir().unwrap();
        let out = bin()
            .current_dir(scratch.path())
            .args([
                "normalize",
                "-o",
                "http://127.0.0.1:1/idx",
                "--retries",
                "1",
            ])
            .args(verbose)
            .arg(example)
            .env("SOPHOS_TAC_ES_USER", "elastic")
            .env("SOPHOS_TAC_ES_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with("sophos-tac: http://127.0.0.1:1/idx: giving up after 1 retries"),
            "{last}"
        );
        assert_eq!(last.matches("127.0.0.1:1/idx").count(), 1, "{last}");
        assert_eq!(last.matches("giving up").count(), 1, "{last}");
        assert!(
            last.ends_with("; 6 undelivered documents kept in sophos-tac-dead-letter.ndjson"),
            "{last}"
        );
        let kept = scratch.path().join("sophos-tac-dead-letter.ndjson");
        assert_eq!(std::fs::read_to_string(&kept).unwrap().lines().count(), 6);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // A syslog URL with credentials is refused the same way.
    let out = bin()
        .args([
            "normalize",
            "-o",
            &format!("syslog+tls://u:{PASSWORD}@127.0.0.1:6514"),
        ])
        .arg(example)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        out.status.code() == Some(2) && !err.contains(PASSWORD),
        "{err}"
    );
}

/// Runs `normalize` on `input` (fed through stdin by a thread, in chunks, so that the
/// test holds no copy of it) and returns its output and its peak RSS in bytes, read from
/// `/proc` while it runs (`VmHWM` only grows).
fn run_streamed(
    args: &[&str],
    mut feed: impl FnMut(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (Output, u64) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = feed(&mut pipe);
    });
    let status = format!("/proc/{}/status", child.id());
    let watcher = std::thread::spawn(move || {
        let mut peak = 0u64;
        // Bounded: the child ends (and its /proc entry goes) within the test's time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let Ok(s) = std::fs::read_to_string(&status) else {
                break;
            };
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb * 1024);
            }
            if s.contains("State:\tZ") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out, watcher.join().unwrap())
}

#[test]
fn a_200_mb_line_and_a_gzip_bomb_keep_memory_flat_and_the_reject_small() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let args = [
        "normalize",
        "--max-line-bytes",
        "1000",
        "--rejects",
        rejects.to_str().unwrap(),
    ];
    const LINE: usize = 200 * 1024 * 1024;
    let feed = |w: &mut dyn Write| -> std::io::Result<()> {
        w.write_all(b"{\"meta_hostname\":\"before\"}\n")?;
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..LINE / chunk.len() {
            w.write_all(&chunk)?;
        }
        w.write_all(b"\n{\"meta_hostname\":\"after\"}\n")
    };
    let (out, peak) = run_streamed(&args, feed);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let hosts: Vec<Value> = docs(&out)
        .iter()
        .map(|d| d["host"]["name"].clone())
        .collect();
    assert_eq!(hosts, ["before", "after"]);
    let kept = std::fs::read_to_string(&rejects).unwrap();
    let record: Value = serde_json::from_str(kept.trim()).unwrap();
    assert_eq!(record["line"], 2);
    assert_eq!(
        record["reason"],
        format!("line is {LINE} bytes, over the limit of 1000 bytes")
    );
    assert!(
        kept.len() < 4096,
        "the reject keeps a prefix: {} bytes",
        kept.len()
    );
    assert_eq!(record["text_truncated"], true);
    assert_eq!(record["text"].as_str().map(str::len), Some(1000));
    // Before: 608 MB. A flat run is the binary, its buffers (3 × threads blocks of
    // 1 MiB and their output) and the allocator's slack.
    assert!(
        peak < 64 << 20,
        "peak RSS {peak} bytes for a {LINE}-byte line"
    );

    // The same line as a gzip bomb: 200 MB from about 200 kB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"{\"meta_hostname\":\"before\"}\n").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..LINE / chunk.len() {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(b"\n").unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (out, peak) = run_streamed(&args, move |w| w.write_all(&bomb));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(docs(&out).len(), 1);
    assert!(peak < 64 << 20, "peak RSS {peak} bytes for a gzip bomb");
}

/// A receiver that accepts and never answers: the TLS handshake times out (it waited
/// forever before), and so does a plain TCP receiver that never reads, so that the run
/// ends with one line naming the output.
#[test]
fn a_receiver_that_never_answers_fails_within_the_timeouts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, holds every connection open, reads and writes nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let url = format!("syslog+tls://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = run(
        &[
            "normalize",
            example().to_str().unwrap(),
            "-o",
            &url,
            "--retries",
            "0",
            "--connect-timeout",
            "1",
        ],
        None,
    );
    let took = started.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(err.contains("TLS handshake"), "{err}");

    // Plain TCP, 30 MB of documents: the writes block once the socket buffers are full.
    let big: String = (0..30_000)
        .map(|i| {
            format!(
                "{{\"meta_hostname\":\"h{i}\",\"data\":\"{}\"}}\n",
                "x".repeat(1000)
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let out = run(
        &[
            "normalize",
            "-o",
            &format!("syslog+tcp://127.0.0.1:{port}"),
            "--retries",
            "0",
            "--timeout",
            "1",
            "--syslog-max-bytes",
            "4096",
        ],
        Some(big.as_bytes()),
    );
    let took = started.elapsed();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("sophos-tac: syslog+tcp://127.0.0.1:{port}: "))
            && (last.contains("timed out") || last.contains("Resource temporarily unavailable")),
        "{err}"
    );
}

#[test]
fn per_item_401_403_404_fail_the_delivery_instead_of_dead_lettering_documents() {
    for status in [401, 403, 404] {
        let port = crate::common::servers::refusing_bulk_server(status);
        let scratch = tempfile::tempdir().unwrap();
        let out = bin()
            .current_dir(scratch.path())
            .args(["normalize", "-o", &format!("http://127.0.0.1:{port}/idx")])
            .arg(example())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let last = err.lines().last().unwrap();
        assert!(
            last.contains(&format!("the index refused the documents (HTTP {status}")),
            "{last}"
        );
        // Kept as undelivered (to send again), not as documents refused for good.
        let kept =
            std::fs::read_to_string(scratch.path().join("sophos-tac-dead-letter.ndjson")).unwrap();
        assert_eq!(kept.lines().count(), 6);
        assert!(
            kept.lines().all(|l| l.contains("\"undelivered\"")),
            "{kept}"
        );
    }
}

/// A 70 KB document between two small ones over UDP: it cannot be one datagram, so it is
/// kept in the dead-letter file with the reason (before: EMSGSIZE, exit 2, the first
/// small one sent three times and the last never).
#[test]
fn a_document_over_a_udp_datagram_is_kept_aside_and_the_others_sent_once() {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = receiver.local_addr().unwrap().port();
    let input = format!(
        "{{\"meta_hostname\":\"first\"}}\n{{\"meta_hostname\":\"big\",\"data\":\"{}\"}}\n{{\"meta_hostname\":\"last\"}}\n",
        "x".repeat(70_000)
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut child = bin()
        .current_dir(scratch.path())
        .args([
            "normalize",
            "-o",
            &format!("syslog+udp://127.0.0.1:{port}"),
            "--retries",
            "2",
            "--syslog-max-bytes",
            "200000",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = receiver.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got.len(), 2, "{got:?} {err}");
    assert!(
        got[0].contains("\"first\"") && got[1].contains("\"last\""),
        "{got:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 kept in sophos-tac-dead-letter.ndjson"),
        "{err}"
    );
    let kept =
        std::fs::read_to_string(scratch.path().join("sophos-tac-dead-letter.ndjson")).unwrap();
    assert_eq!(kept.lines().count(), 1);
    assert!(
        kept.contains("over the 65507 bytes one UDP datagram takes"),
        "{kept}"
    );
}

/// Consuming Kafka, `--rejects` is appended to: a restart must not erase the rejects of
/// offsets already committed (before, the file was started anew at every start). No
/// broker is needed: the member waits for one until SIGTERM.
#[test]
fn the_kafka_input_appends_to_its_rejects_file() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let earlier = "{\"topic\":\"raw\",\"partition\":0,\"offset\":7,\"reason\":\"invalid JSON\",\"text\":\"{\"}\n";
    // ... and a record torn by a kill, which is cut.
    std::fs::write(&rejects, format!("{earlier}{{\"topic\":\"raw\",\"parti")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = bin()
        .current_dir(dir.path())
        .args([
            "normalize",
            "-q",
            "--input",
            &format!("kafka://127.0.0.1:{port}/raw?group=g"),
            "--rejects",
            rejects.to_str().unwrap(),
            "-o",
            dir.path().join("out.ndjson").to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("the Kafka member did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "stopped by SIGTERM, cleanly: {err}");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap(), earlier);
}
