//! The Kafka side of `bench/kafka.sh`:
//!
//! - `kafka_bench produce BROKERS TOPIC FILE`: puts each line of FILE in TOPIC, spread
//!   over its partitions, waits for every delivery report, and prints how many were
//!   acknowledged (the reasons of the others go to stderr);
//! - `kafka_bench wait BROKERS TOPIC N`: reads TOPIC from the start until it has seen N
//!   messages, and prints how long the first message took to appear, and the time
//!   between the first and the last message's producer timestamps, in seconds (10
//!   minutes at most);
//! - `kafka_bench copy BROKERS FROM TO GROUP`: the plain copy the benchmark compares
//!   with: consumes FROM in consumer group GROUP and produces each message as it is to
//!   TO (idempotent, `acks=all`, zstd, as sophos-tac's producer), committing what it
//!   consumed every 2,000 messages without waiting for the acknowledgements (the pace of
//!   the broker and the client, not a copy safe in a crash), until it is killed (10
//!   minutes at most).

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Counts delivery reports.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("a message was not delivered: {e}");
                }
                0
            }
        };
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1..).unwrap_or_default() {
        [cmd, brokers, topic, file] if cmd == "produce" => produce(brokers, topic, file),
        [cmd, brokers, topic, n] if cmd == "wait" => wait(brokers, topic, n.parse()?),
        [cmd, brokers, from, to, group] if cmd == "copy" => copy(brokers, from, to, group),
        _ => Err("usage: kafka_bench produce BROKERS TOPIC FILE | wait BROKERS TOPIC N | copy BROKERS FROM TO GROUP".into()),
    }
}

fn produce(brokers: &str, topic: &str, file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "zstd")
        .set("message.max.bytes", "10000000")
        .create_with_context(Acks::default())?;
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    for line in reader.lines() {
        let line = line?;
        let mut record = BaseRecord::<(), _>::to(topic).payload(line.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300))?;
    let acks = producer.context();
    eprintln!(
        "{topic}: {} acknowledged, {} not",
        acks.ok.load(Ordering::Relaxed),
        acks.failed.load(Ordering::Relaxed)
    );
    println!("{}", acks.ok.load(Ordering::Relaxed));
    Ok(())
}

fn wait(brokers: &str, topic: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    // Counted by reading the topic: tansu's end offsets are not message counts once
    // batches are compressed.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-bench-counter")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let bound = started + Duration::from_secs(600);
    let (mut seen, mut first) = (0u64, None);
    // The producer's timestamps (CreateTime, ms) of the first and the last message: the
    // run's own pace, whatever this counter's fetches wait (up to fetch.wait.max.ms).
    let (mut earliest, mut latest) = (i64::MAX, i64::MIN);
    while seen < n {
        if Instant::now() > bound {
            return Err(format!("{topic}: {seen} of {n} messages within 10 minutes").into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                seen += 1;
                if let Some(ms) = m.timestamp().to_millis() {
                    earliest = earliest.min(ms);
                    latest = latest.max(ms);
                }
            }
            Some(Err(e)) => eprintln!("{topic}: {e}"),
            None => {}
        }
    }
    let first = first.unwrap_or(started);
    if earliest > latest {
        return Err(format!("{topic}: no message had a timestamp").into());
    }
    println!(
        "{:.3} {:.3}",
        (first - started).as_secs_f64(),
        ((latest - earliest).max(1) as f64) / 1000.0
    );
    Ok(())
}

fn copy(
    brokers: &str,
    from: &str,
    to: &str,
    group: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[from])?;
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("compression.level", "1")
        .set("linger.ms", "5")
        .create_with_context(Acks::default())?;
    let bound = Instant::now() + Duration::from_secs(600);
    let mut taken = 0u64;
    while Instant::now() < bound {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = message?;
        let mut record = BaseRecord::<[u8], [u8]>::to(to).payload(m.payload().unwrap_or_default());
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(1));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
        taken += 1;
        if taken.is_multiple_of(2000) {
            // Not waiting for the acknowledgements: the copy is the broker's and the
            // client's pace, not a copy that could not lose messages in a crash.
            consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Async)?;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}
