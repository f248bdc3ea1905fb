//! Reading rows from a Kafka topic in a consumer group, normalizing them, delivering
//! them to a sink, and committing offsets only once the sink acknowledged them.
//!
//! Source → transform → sink, with acknowledgements flowing back: messages are taken in
//! batches (up to [`SourceOptions::batch_messages`], or what arrives within
//! [`SourceOptions::batch_wait`]); each message is a line, a raw row or an envelope, as in
//! a file (a message holding several lines is read line by line). A batch is normalized
//! on [`SourceOptions::threads`] threads and [submitted](Sink::submit) to the sink in one
//! piece; while the sink delivers it (a Kafka output in the background), the next batches
//! are read and normalized. At most [`SourceOptions::in_flight`] batches are
//! unacknowledged at once, so memory is bounded by them. Acknowledgements come back in
//! order; once a batch's is in, the rejects are made durable, and the next offset of
//! each partition in the batch is committed: never an offset past a batch not yet
//! acknowledged. A crash between the two repeats the batches in flight (at least once; an
//! index's deterministic `_id` makes that exactly once). Several processes with the same
//! group share the topic's partitions; when one dies, the others take its partitions
//! over from its last commit.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
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

/// Logs the group's rebalances (which partitions this member gets and gives up), and
/// counts the commits the group refused.
#[derive(Default)]
struct Membership {
    /// Commits refused (asynchronous ones are told of in `commit_callback`).
    refused: AtomicU64,
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Partitions taken away in a rebalance: their new owner repeats the batches.
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "the group refused a commit (a rebalance): those batches will be read again");
        }
    }

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

/// How the source batches. Built from [`SourceOptions::default`], then set field by
/// field (it may gain fields).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SourceOptions {
    /// The most messages in one delivery.
    pub batch_messages: usize,
    /// How long a batch waits for more messages before it is delivered.
    pub batch_wait: Duration,
    /// How long a commit, or a lag query, may take.
    pub request_timeout: Duration,
    /// Threads that normalize a batch.
    pub threads: usize,
    /// The most batches submitted to the sink and not acknowledged yet.
    pub in_flight: usize,
}

/// Batches in flight unless told otherwise: with batches of 2,000, enough to keep a
/// producer busy while the next batch is normalized (measured in BENCHMARKS.md).
pub const DEFAULT_IN_FLIGHT: usize = 4;

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            batch_messages: 2_000,
            batch_wait: Duration::from_millis(200),
            request_timeout: Duration::from_secs(10),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            in_flight: DEFAULT_IN_FLIGHT,
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
    /// Commits the group refused (during a rebalance: another member repeats the
    /// batches).
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
        .create_with_context(Membership::default())
        .map_err(|e| err(e.to_string()))?;
    consumer
        .subscribe(&[&kafka.topic])
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(url = %kafka.url(), group, "joining the consumer group");
    let mut summary = SourceSummary::default();
    summary.counts.warnings = normalizer.new_warnings();
    let mut flight = InFlight::default();
    // Read → transform → deliver, overlapped: a thread of its own normalizes a batch
    // while this one delivers the one before and reads the next. At most two batches
    // wait for it (one in its hands, one queued); their buffers are reused.
    let outcome = std::thread::scope(|scope| -> Result<(), Error> {
        let (to_transform, batches) = crossbeam_channel::bounded::<(Batch, Part)>(1);
        let (to_deliver, normalized) = crossbeam_channel::bounded::<Normalized>(1);
        let topic = kafka.topic.as_str();
        scope.spawn(move || transformer(normalizer, topic, options.threads, batches, to_deliver));
        let (mut spare_batches, mut spare_docs): (Vec<Batch>, Vec<Part>) = (vec![], vec![]);
        let mut transforming = 0usize;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            // Deliver what is normalized; wait for it when two batches are in the
            // transform's hands, or when stopping.
            while transforming > 0 {
                let next = if transforming >= 2 || stopping {
                    normalized.recv().ok()
                } else {
                    normalized.try_recv().ok()
                };
                let Some(n) = next else {
                    if transforming >= 2 || stopping {
                        return Err(err("the transform thread stopped".into()));
                    }
                    break;
                };
                transforming -= 1;
                let Normalized { mut batch, docs } = n;
                summary.counts.merge(&docs.counts);
                for reject in &docs.rejects {
                    observer.reject(reject)?;
                }
                let submits = usize::from(!docs.out.is_empty());
                if submits > 0 {
                    sink.submit(&docs.out, Some(&docs.ids))?;
                }
                flight.push(std::mem::take(&mut batch.next), submits);
                spare_batches.push(batch);
                spare_docs.push(docs);
                // Bounded: past `in_flight` unacknowledged batches, wait for the oldest
                // (committing each as it is acknowledged).
                while flight.unacknowledged(sink.pending()) >= options.in_flight.max(1) {
                    flight.settle(sink, Duration::from_secs(1))?;
                    flight.commit(&consumer, topic, observer, &mut summary, sink.pending())?;
                }
                flight.commit(&consumer, topic, observer, &mut summary, sink.pending())?;
                observer.progress(&summary);
            }
            if stopping {
                break;
            }
            let mut batch = spare_batches.pop().unwrap_or_default();
            read(&consumer, options, stop, &mut batch, kafka);
            // What the sink acknowledged meanwhile is committed first.
            flight.settle_ready(sink)?;
            flight.commit(&consumer, topic, observer, &mut summary, sink.pending())?;
            if batch.messages.is_empty() {
                spare_batches.push(batch);
                continue;
            }
            summary.messages += batch.messages.len() as u64;
            let docs = spare_docs.pop().unwrap_or_else(|| Part::new(normalizer));
            if to_transform.send((batch, docs)).is_err() {
                return Err(err("the transform thread stopped".into()));
            }
            transforming += 1;
        }
        // Stopping: every batch in flight is acknowledged, then committed and waited for.
        while sink.pending() > 0 {
            flight.settle(sink, Duration::from_secs(1))?;
            flight.commit(&consumer, topic, observer, &mut summary, sink.pending())?;
        }
        flight.commit(&consumer, topic, observer, &mut summary, 0)?;
        flight.commit_last(&consumer, topic, &mut summary);
        Ok(())
        // (Returning drops both channels' ends here: the transform thread ends, and the
        // scope joins it.)
    });
    summary.commits_refused += consumer.context().refused.load(Ordering::Relaxed);
    outcome?;
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

/// A batch of messages as read: their payloads end to end, and where each one is.
#[derive(Default)]
struct Batch {
    /// The payloads, one after the other.
    bytes: Vec<u8>,
    /// Each message's partition, offset and payload in `bytes`.
    messages: Vec<(i32, i64, Range<usize>)>,
    /// The next offset of each partition in the batch: what its commit says.
    next: BTreeMap<i32, i64>,
}

/// Takes the next batch: up to `batch_messages` messages, or what arrives within
/// `batch_wait` of the first one (100 ms when none comes).
fn read(
    consumer: &BaseConsumer<Membership>,
    options: &SourceOptions,
    stop: &AtomicBool,
    batch: &mut Batch,
    kafka: &KafkaConfig,
) {
    batch.bytes.clear();
    batch.messages.clear();
    batch.next.clear();
    // The batch's wait starts with its first message.
    let mut first: Option<Instant> = None;
    while batch.messages.len() < options.batch_messages && !stop.load(Ordering::SeqCst) {
        let wait = match first {
            None => Duration::from_millis(100),
            Some(t) => match options.batch_wait.checked_sub(t.elapsed()) {
                Some(left) => left,
                None => break,
            },
        };
        match consumer.poll(wait) {
            // Nothing came in 100 ms: the caller settles what the sink acknowledged
            // meanwhile before it reads on. With messages taken, `None` is the batch's
            // wait running out, or an event served instead of a message (a commit's
            // answer, a rebalance): the wait's check above decides.
            None if batch.messages.is_empty() => break,
            None => {}
            Some(Err(e)) => {
                // Brokers down, a rebalance: librdkafka recovers by itself.
                tracing::warn!(url = %kafka.url(), error = %e, "consumer");
            }
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let payload = m.payload().unwrap_or_default();
                let at = batch.bytes.len();
                batch.bytes.extend_from_slice(payload);
                batch
                    .messages
                    .push((m.partition(), m.offset(), at..batch.bytes.len()));
                batch.next.insert(m.partition(), m.offset() + 1);
            }
        }
    }
}

/// The batches submitted (or, with no document, only read), oldest first, with the
/// offsets each one's commit gives.
#[derive(Default)]
struct InFlight {
    /// Each batch's next offsets, and how many submissions to the sink it made (one, or
    /// none for a batch of rejects only).
    batches: VecDeque<(BTreeMap<i32, i64>, usize)>,
    /// How many submissions they made in all.
    submitted: usize,
    /// The offsets committed so far (asynchronously), by partition.
    committed: BTreeMap<i32, i64>,
    /// A settle failed: the sink gave its pending batches up, so its pending count no
    /// longer tells what was acknowledged, and nothing more is committed.
    failed: bool,
}

impl InFlight {
    /// The batches not wholly acknowledged, when the sink has `sink_pending` submissions
    /// pending (the newest ones).
    fn unacknowledged(&self, sink_pending: usize) -> usize {
        let mut left = sink_pending;
        let mut batches = 0;
        for &(_, submits) in self.batches.iter().rev() {
            if left == 0 {
                break;
            }
            left = left.saturating_sub(submits);
            batches += usize::from(submits > 0);
        }
        batches
    }

    fn push(&mut self, next: BTreeMap<i32, i64>, submits: usize) {
        self.submitted += submits;
        self.batches.push_back((next, submits));
    }

    /// Waits up to `wait` for the sink's oldest pending batch ([`Sink::settle`]); a
    /// failure stops every later commit.
    fn settle(&mut self, sink: &mut dyn Sink, wait: Duration) -> Result<(), Error> {
        let settled = sink.settle(wait);
        self.failed |= settled.is_err();
        settled
    }

    /// Settles, without waiting, the acknowledgements that are in.
    fn settle_ready(&mut self, sink: &mut dyn Sink) -> Result<(), Error> {
        while sink.pending() > 0 {
            let before = sink.pending();
            self.settle(sink, Duration::ZERO)?;
            if sink.pending() == before {
                break;
            }
        }
        Ok(())
    }

    /// Takes the batches acknowledged so far, oldest first, when the sink has
    /// acknowledged all of their submissions but the last `sink_pending`: a batch is
    /// acknowledged once every submission of it and of every batch before it is; a batch
    /// with no document, once the ones before it are. Gives the next offsets they commit
    /// and how many they are; nothing once a settle failed.
    fn acknowledged(&mut self, sink_pending: usize) -> (BTreeMap<i32, i64>, u64) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut batches = 0;
        if self.failed {
            return (next, batches);
        }
        let mut acknowledged = self.submitted.saturating_sub(sink_pending);
        while let Some(&(_, submits)) = self.batches.front() {
            if submits > acknowledged {
                break;
            }
            acknowledged -= submits;
            self.submitted -= submits;
            if let Some((offsets, _)) = self.batches.pop_front() {
                next.extend(offsets);
                batches += 1;
            }
        }
        (next, batches)
    }

    /// Commits, asynchronously, the batches [acknowledged](InFlight::acknowledged) so
    /// far, in order, for the partitions this member still holds (a partition taken away
    /// in a rebalance is its new owner's to commit: an older offset from here would move
    /// its commit back). Rejects are made durable first.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<Membership>,
        topic: &str,
        observer: &mut dyn SourceObserver,
        summary: &mut SourceSummary,
        sink_pending: usize,
    ) -> Result<(), Error> {
        let (mut next, batches) = self.acknowledged(sink_pending);
        if next.is_empty() {
            return Ok(());
        }
        let held = held(consumer, topic);
        next.retain(|p, _| held.contains(p));
        if next.is_empty() {
            return Ok(());
        }
        observer.before_commit()?;
        // An asynchronous commit's refusal is counted by `Membership::commit_callback`.
        if commit(consumer, topic, &next, CommitMode::Async)? {
            summary.batches += batches;
        } else {
            summary.commits_refused += 1;
        }
        self.committed.extend(next);
        Ok(())
    }

    /// On leaving: commits again, and waits for it (as long as librdkafka's request
    /// timeouts allow), the last offsets of the partitions this member still holds, so
    /// that the lag read next counts them.
    fn commit_last(
        &mut self,
        consumer: &BaseConsumer<Membership>,
        topic: &str,
        summary: &mut SourceSummary,
    ) {
        let held = held(consumer, topic);
        let last: BTreeMap<i32, i64> = std::mem::take(&mut self.committed)
            .into_iter()
            .filter(|(p, _)| held.contains(p))
            .collect();
        if last.is_empty() {
            return;
        }
        if let Ok(false) = commit(consumer, topic, &last, CommitMode::Sync) {
            summary.commits_refused += 1;
        }
    }
}

/// The partitions of `topic` this member holds now (none when that cannot be read).
fn held(consumer: &BaseConsumer<Membership>, topic: &str) -> Vec<i32> {
    consumer.assignment().map_or_else(
        |_| Vec::new(),
        |tpl| {
            tpl.elements_for_topic(topic)
                .iter()
                .map(|e| e.partition())
                .collect()
        },
    )
}

/// Commits `next` offsets of `topic`'s partitions: `Ok(false)` when the group refused
/// (partitions taken away in a rebalance: their new owner repeats the batches).
fn commit(
    consumer: &BaseConsumer<Membership>,
    topic: &str,
    next: &BTreeMap<i32, i64>,
    mode: CommitMode,
) -> Result<bool, Error> {
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| Error::Write {
                path: topic.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
    }
    match consumer.commit(&offsets, mode) {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::warn!(topic, error = %e, "the group refused a commit (a rebalance): those batches will be read again");
            Ok(false)
        }
    }
}

/// A batch, normalized: the batch read (its offsets for the commit; its buffer for the
/// next read), and its documents, keys, counts and rejects in one part.
struct Normalized {
    batch: Batch,
    docs: Part,
}

/// The transform stage: normalizes each batch it is given on `threads` threads, into the
/// part that comes with it (its buffers reused), and hands it on, in order, until either
/// channel closes.
fn transformer(
    normalizer: &Normalizer,
    topic: &str,
    threads: usize,
    batches: crossbeam_channel::Receiver<(Batch, Part)>,
    normalized: crossbeam_channel::Sender<Normalized>,
) {
    let mut parts = Vec::new();
    for (batch, mut docs) in batches {
        transform_batch(normalizer, topic, &batch, threads, &mut parts);
        docs.reset(normalizer);
        for part in &mut parts {
            docs.counts.merge(&part.counts);
            docs.rejects.append(&mut part.rejects);
            docs.out.extend_from_slice(&part.out);
            docs.ids.append(&mut part.ids);
        }
        if normalized.send(Normalized { batch, docs }).is_err() {
            return;
        }
    }
}

/// What one thread made of its share of a batch (or a whole batch, its parts joined).
struct Part {
    /// Documents, each with its newline.
    out: Vec<u8>,
    /// Each document's key ([`Normalizer::normalize_line_keyed`]): the sink's id.
    ids: Vec<String>,
    counts: LineCounts,
    /// Reject records, in order.
    rejects: Vec<serde_json::Value>,
}

impl Part {
    fn new(normalizer: &Normalizer) -> Part {
        Part {
            out: Vec::new(),
            ids: Vec::new(),
            counts: LineCounts {
                warnings: normalizer.new_warnings(),
                ..LineCounts::default()
            },
            rejects: Vec::new(),
        }
    }

    /// Empties it for the next batch, keeping its buffers.
    fn reset(&mut self, normalizer: &Normalizer) {
        self.out.clear();
        self.ids.clear();
        self.rejects.clear();
        self.counts = LineCounts {
            warnings: normalizer.new_warnings(),
            ..LineCounts::default()
        };
    }
}

/// Normalizes a batch on up to `threads` threads, each taking a run of its messages, into
/// `parts` (one per run, in the batch's order; their buffers are reused).
fn transform_batch(
    normalizer: &Normalizer,
    topic: &str,
    batch: &Batch,
    threads: usize,
    parts: &mut Vec<Part>,
) {
    let share = batch.messages.len().div_ceil(threads.max(1)).max(1);
    let runs: Vec<&[(i32, i64, Range<usize>)]> = batch.messages.chunks(share).collect();
    parts.truncate(runs.len());
    while parts.len() < runs.len() {
        parts.push(Part::new(normalizer));
    }
    let bytes = &batch.bytes;
    std::thread::scope(|scope| {
        let mut work = parts.iter_mut().zip(runs);
        let first = work.next();
        let others: Vec<_> = work
            .map(|(part, run)| scope.spawn(move || transform(normalizer, topic, bytes, run, part)))
            .collect();
        if let Some((part, run)) = first {
            transform(normalizer, topic, bytes, run, part);
        }
        for other in others {
            // The normalizer never panics (fuzzed); if it did, the panic goes on here.
            if let Err(panic) = other.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// Normalizes messages' lines into `part` (emptied first), keying each document and
/// keeping each reject's record.
fn transform(
    normalizer: &Normalizer,
    topic: &str,
    bytes: &[u8],
    messages: &[(i32, i64, Range<usize>)],
    part: &mut Part,
) {
    part.reset(normalizer);
    for (partition, offset, payload) in messages {
        let payload = &bytes[payload.clone()];
        // A message "row\n" is one line, not a line and a blank one.
        let body = payload.strip_suffix(b"\n").unwrap_or(payload);
        for line in crate::input::lines(body) {
            let mut key = String::new();
            let outcome = normalizer.normalize_line_keyed(
                line,
                &mut part.out,
                &mut part.counts.warnings,
                Some(&mut key),
            );
            part.counts.count(&outcome);
            match outcome {
                LineOutcome::Normalized => part.ids.push(key),
                LineOutcome::Rejected(reason) => {
                    let origin = Origin::Kafka {
                        topic,
                        partition: *partition,
                        offset: *offset,
                    };
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    part.rejects
                        .push(crate::reject::record(&origin, &reason, line));
                }
                LineOutcome::Blank => {}
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(partition: i32, next: i64) -> BTreeMap<i32, i64> {
        BTreeMap::from([(partition, next)])
    }

    #[test]
    fn batches_are_committed_in_order_once_they_and_the_ones_before_are_acknowledged() {
        let mut flight = InFlight::default();
        flight.push(offsets(0, 10), 1);
        flight.push(offsets(1, 20), 0); // rejects only: nothing submitted
        flight.push(offsets(0, 30), 1);
        flight.push(offsets(2, 40), 1);
        assert_eq!(flight.unacknowledged(3), 3);
        // Three pending: nothing is acknowledged, so nothing is committed.
        assert_eq!(flight.acknowledged(3), (BTreeMap::new(), 0));
        // The oldest is acknowledged: it, and the batch of rejects after it.
        assert_eq!(
            flight.acknowledged(2),
            (BTreeMap::from([(0, 10), (1, 20)]), 2)
        );
        assert_eq!(flight.unacknowledged(2), 2);
        // Never past a pending batch: one pending is the newest, so only the third goes.
        assert_eq!(flight.acknowledged(1), (offsets(0, 30), 1));
        assert_eq!(flight.acknowledged(0), (offsets(2, 40), 1));
        assert_eq!(flight.acknowledged(0), (BTreeMap::new(), 0));
    }

    #[test]
    fn after_a_failed_settle_nothing_more_is_committed() {
        // A sink that fails gives its pending batches up: its pending count drops to
        // zero, which must not read as "all acknowledged".
        struct Failing;
        impl Sink for Failing {
            fn name(&self) -> String {
                "failing".into()
            }
            fn mark(&mut self) -> Result<String, Error> {
                Ok(String::new())
            }
            fn deliver(&mut self, _: &[u8], _: Option<&[String]>) -> Result<(), Error> {
                Ok(())
            }
            fn repair(&mut self, _: &str) -> Result<(), Error> {
                Ok(())
            }
            fn pending(&self) -> usize {
                0
            }
            fn settle(&mut self, _: Duration) -> Result<(), Error> {
                Err(Error::Write {
                    path: "failing".into(),
                    source: std::io::Error::other("not acknowledged"),
                })
            }
        }
        let mut flight = InFlight::default();
        flight.push(offsets(0, 10), 1);
        flight.push(offsets(0, 20), 1);
        assert!(flight.settle(&mut Failing, Duration::ZERO).is_err());
        assert_eq!(flight.acknowledged(0), (BTreeMap::new(), 0));
    }
}
