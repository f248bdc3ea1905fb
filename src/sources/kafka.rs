//! Reading rows from a Kafka topic in a consumer group, normalizing them, delivering
//! them to a sink, and committing offsets only once the sink acknowledged them.
//!
//! Source → transform → sink, with acknowledgements flowing back: messages are taken in
//! batches (up to [`SourceOptions::batch_messages`], or what arrives within
//! [`SourceOptions::batch_wait`]); each message is a line, a raw row or an envelope, as in
//! a file (a message holding several lines is read line by line). The batch's documents
//! go to the sink in one delivery; once it returns, the rejects are made durable, and the
//! next offset of each partition in the batch is committed. A crash between the two
//! repeats the batch (at least once; an index's deterministic `_id` makes that exactly
//! once). Several processes with the same group share the topic's partitions; when one
//! dies, the others take its partitions over from its last commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::error::Error;
use crate::kafka::KafkaConfig;
use crate::reject::Origin;
use crate::sinks::Sink;
use crate::{LineCounts, LineOutcome, Normalizer};

/// The consumer's defaults, before the configured properties.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    // A member that dies is replaced after 10 s rather than librdkafka's 45 s.
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "2000"),
];

/// Logs the group's rebalances: which partitions this member gets and gives up.
struct Membership;

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// How the source batches.
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions {
    /// The most messages in one delivery.
    pub batch_messages: usize,
    /// How long a batch waits for more messages before it is delivered.
    pub batch_wait: Duration,
    /// How long a commit, or a lag query, may take.
    pub request_timeout: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            batch_messages: 2_000,
            batch_wait: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSummary {
    /// Messages consumed.
    pub messages: u64,
    /// What the normalizer made of their lines.
    pub counts: LineCounts,
    /// Batches delivered and committed.
    pub batches: u64,
    /// Commits the group refused (during a rebalance: another member repeats the batch).
    pub commits_refused: u64,
    /// The group's lag on the partitions this member held at the end: messages after
    /// the committed offsets; `None` when it could not be read.
    pub lag: Option<i64>,
}

/// Receives rejects and progress; makes rejects durable before offsets are committed.
pub trait SourceObserver {
    /// A rejected line, as a record: `topic`, `partition`, `offset`, `reason`, and
    /// `text` (or `text_base64`).
    fn reject(&mut self, record: &serde_json::Value) -> Result<(), Error>;
    /// Called before each commit: the rejects so far must be durable when it returns.
    fn before_commit(&mut self) -> Result<(), Error>;
    /// After each batch.
    fn progress(&mut self, _summary: &SourceSummary) {}
}

/// Joins the group, and consumes until `stop` is set; then commits what the sink
/// acknowledged and leaves the group. Fails when the sink fails (nothing of that batch
/// is committed) or the consumer cannot be created.
pub fn run(
    kafka: &KafkaConfig,
    options: &SourceOptions,
    normalizer: &Normalizer,
    sink: &mut dyn Sink,
    observer: &mut dyn SourceObserver,
    stop: &AtomicBool,
) -> Result<SourceSummary, Error> {
    let err = |msg: String| Error::Write {
        path: kafka.url(),
        source: std::io::Error::other(msg),
    };
    let group = kafka
        .group
        .clone()
        .ok_or_else(|| err("give the consumer group: kafka://host:9092/TOPIC?group=NAME".into()))?;
    let mut config = kafka.client_config(CONSUMER_DEFAULTS);
    if !kafka.properties.iter().any(|(k, _)| k == "group.id") {
        config.set("group.id", &group);
    }
    let consumer: BaseConsumer<Membership> = config
        .create_with_context(Membership)
        .map_err(|e| err(e.to_string()))?;
    consumer
        .subscribe(&[&kafka.topic])
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(url = %kafka.url(), group, "joining the consumer group");
    let mut summary = SourceSummary::default();
    summary.counts.warnings = normalizer.new_warnings();
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        out.clear();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut taken = 0;
        // The batch's wait starts with its first message.
        let mut first: Option<Instant> = None;
        while taken < options.batch_messages && !stop.load(Ordering::SeqCst) {
            let wait = match first {
                None => Duration::from_millis(100),
                Some(t) => match options.batch_wait.checked_sub(t.elapsed()) {
                    Some(left) => left,
                    None => break,
                },
            };
            match consumer.poll(wait) {
                None => {
                    if first.is_some() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    // Brokers down, a rebalance: librdkafka recovers by itself.
                    tracing::warn!(url = %kafka.url(), error = %e, "consumer");
                }
                Some(Ok(m)) => {
                    first.get_or_insert_with(Instant::now);
                    taken += 1;
                    summary.messages += 1;
                    next.insert(m.partition(), m.offset() + 1);
                    let place = (m.topic(), m.partition(), m.offset());
                    let payload = m.payload().unwrap_or_default();
                    transform(
                        normalizer,
                        payload,
                        place,
                        &mut out,
                        &mut summary.counts,
                        observer,
                    )?;
                }
            }
        }
        if next.is_empty() {
            continue;
        }
        if !out.is_empty() {
            sink.deliver(&out, None)?;
        }
        observer.before_commit()?;
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &next {
            offsets
                .add_partition_offset(&kafka.topic, *partition, Offset::Offset(*offset))
                .map_err(|e| err(e.to_string()))?;
        }
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => summary.batches += 1,
            Err(e) => {
                // Partitions taken away in a rebalance: their new owner repeats the batch.
                summary.commits_refused += 1;
                tracing::warn!(url = %kafka.url(), error = %e, "the group refused a commit (a rebalance): the batch will be read again");
            }
        }
        observer.progress(&summary);
    }
    summary.lag = lag(&consumer, &kafka.topic, options.request_timeout);
    tracing::info!(url = %kafka.url(), lag = summary.lag, "leaving the consumer group");
    // Dropping the consumer closes it: it leaves the group, and its partitions go to the
    // other members at once. With the brokers gone that could wait long: bounded.
    let (closed, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    if wait.recv_timeout(options.request_timeout).is_err() {
        tracing::warn!(url = %kafka.url(), "leaving the group took over {} s: not waiting longer (the group will drop this member after session.timeout.ms)", options.request_timeout.as_secs());
    }
    Ok(summary)
}

/// Normalizes one message's lines into `out`, reporting rejects.
fn transform(
    normalizer: &Normalizer,
    payload: &[u8],
    (topic, partition, offset): (&str, i32, i64),
    out: &mut Vec<u8>,
    counts: &mut LineCounts,
    observer: &mut dyn SourceObserver,
) -> Result<(), Error> {
    // A message "row\n" is one line, not a line and a blank one.
    let body = payload.strip_suffix(b"\n").unwrap_or(payload);
    for line in body.split(|b| *b == b'\n') {
        let outcome = normalizer.normalize_line(line, out, &mut counts.warnings);
        counts.count(&outcome);
        if let LineOutcome::Rejected(reason) = outcome {
            let origin = Origin::Kafka {
                topic,
                partition,
                offset,
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            observer.reject(&crate::reject::record(&origin, &reason, line))?;
        }
    }
    Ok(())
}

/// Messages after the committed offsets, on the partitions this member holds.
fn lag(consumer: &BaseConsumer<Membership>, topic: &str, timeout: Duration) -> Option<i64> {
    let committed = consumer.committed(timeout).ok()?;
    let mut total = 0;
    for element in committed.elements_for_topic(topic) {
        let (_, high) = consumer
            .fetch_watermarks(topic, element.partition(), timeout)
            .ok()?;
        let done = match element.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        total += (high - done).max(0);
    }
    Some(total)
}
