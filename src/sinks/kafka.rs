//! Delivering to Kafka: one message per document, keyed by its row's key (the index
//! output's `_id`), so that a row's copies land on one partition and a compacted topic
//! keeps one.
//!
//! The producer is idempotent with `acks=all` and zstd compression (level 1) by default
//! (any librdkafka property can replace them). [`Sink::deliver`] returns once every message of
//! the batch has its delivery report: that report is the acknowledgement. A message the
//! broker refuses for good (too large, invalid) goes to the dead-letter file with the
//! broker's reason; a message that cannot be delivered in `message.timeout.ms` (a broker
//! down) fails the delivery — for `collect` the window is fetched and delivered again
//! next pass, for `normalize` the run fails, keeping the unacknowledged documents in the
//! dead-letter file. Kafka cannot take a message back: after a crash a window may be
//! produced twice (at least once), with the same keys.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde_json::{Value, json};

use crate::error::Error;
use crate::kafka::KafkaConfig;
use crate::sinks::{DeadLetter, Sink};
use crate::sync::lock;

/// The producer's defaults, before the configured properties.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("compression.type", "zstd"),
    // zstd's level 1: on our documents, in the producer's 1 MB batches, smaller than its
    // default level 3 and cheaper (BENCHMARKS.md, "Kafka").
    ("compression.level", "1"),
    // A broker that does not acknowledge within a minute fails the delivery (librdkafka
    // retries inside that time); 5 minutes is librdkafka's own default.
    ("message.timeout.ms", "60000"),
    ("linger.ms", "5"),
];

/// The Kafka sink's settings.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// Brokers, topic, TLS, SASL, properties.
    pub kafka: KafkaConfig,
    /// Where refused documents go; also, for a caller that does not deliver a failed
    /// batch again ([`super::SinkContext::replays`]), the unacknowledged ones.
    pub dead_letter: PathBuf,
}

/// Counts of what the sink did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Messages acknowledged by the brokers.
    pub delivered: u64,
    /// Documents in the dead-letter file.
    pub dead_lettered: u64,
}

/// A message's failure: the error, and the message's payload (for the dead-letter file).
type Failure = (KafkaError, Vec<u8>);

/// One message's delivery report: its index in its batch, and the outcome.
type Outcome = (usize, Result<(), Failure>);

/// A batch handed to the producer, waiting for its reports.
struct Pending {
    /// Its number, carried by each of its messages' reports.
    delivery: u64,
    /// Its documents: a failed one's report brings its payload back.
    documents: usize,
    /// Each document's key.
    keys: Vec<String>,
    /// Messages the producer took: each gets one report.
    sent: usize,
    /// Documents the producer did not take, with the reason.
    undelivered: Vec<(usize, String)>,
    /// When its reports are late (`message.timeout.ms` + 30 s after it was handed over).
    deadline: Instant,
}

/// Delivery reports, as librdkafka hands them over, and the client's last error.
struct Reports {
    /// The reports of each delivery, by its number: a report of an earlier delivery (one
    /// that gave up with messages still queued) can arrive during a later one, and is
    /// told apart by its number.
    outcomes: Mutex<BTreeMap<u64, Vec<Outcome>>>,
    /// The last error the client reported (a TLS handshake, an authentication, a
    /// connection), which a failed delivery's message gives as its likely cause.
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", "{error}: {reason}");
        let mut last = lock(&self.last_error);
        // "1/1 brokers are down" follows the error that took them down (a TLS handshake,
        // an authentication): keep that one, the likely cause.
        let consequence = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if !(consequence && last.is_some()) {
            *last = Some(reason.to_string());
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<(u64, usize)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(u64, usize)>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            // Copied only when it failed: the batch's documents are not kept meanwhile.
            Err((e, m)) => Err((e.clone(), m.payload().unwrap_or_default().to_vec())),
        };
        let (delivery, index) = *opaque;
        lock(&self.outcomes)
            .entry(delivery)
            .or_default()
            .push((index, outcome));
    }
}

/// The Kafka sink.
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    /// Keep a failed delivery's unacknowledged documents in the dead-letter file (the
    /// caller does not deliver it again).
    keep_undelivered: bool,
    producer: BaseProducer<Reports>,
    dead_letter: DeadLetter,
    stats: KafkaStats,
    /// How long a delivery may wait for its reports (`message.timeout.ms` or its alias
    /// `delivery.timeout.ms`, + a margin).
    wait: Duration,
    /// The number of the last delivery handed over, carried by each message's report.
    delivery: u64,
    /// Batches handed over and not settled yet, oldest first.
    pending: VecDeque<Pending>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("url", &self.cfg.kafka.url())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Takes delivery `delivery`'s reports out of `reports`, and drops those of the earlier
/// deliveries (ones that gave up with messages still queued): they are no longer anyone's.
/// The later deliveries' reports stay.
fn take_reports(reports: &mut BTreeMap<u64, Vec<Outcome>>, delivery: u64) -> Vec<Outcome> {
    let later = reports.split_off(&(delivery + 1));
    let mine = reports.remove(&delivery).unwrap_or_default();
    *reports = later;
    mine
}

/// Each message's outcome in a batch of `messages` messages, from its reports: `None`
/// where none came. Reports out of range or repeated are left out, never counted twice.
fn this_delivery(messages: usize, reported: Vec<Outcome>) -> Vec<Option<Result<(), Failure>>> {
    let mut outcomes: Vec<Option<Result<(), Failure>>> = vec![None; messages];
    for (i, outcome) in reported {
        if let Some(slot @ None) = outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
    }
    outcomes
}

/// Serves the producer's delivery reports after a short sleep. Not `poll(timeout)`:
/// rdkafka's `BaseProducer::poll` returns only at its deadline, however early the reports
/// come, and spins through the deadline's last millisecond (a `poll` of 1 ms is a busy
/// wait, which on a small machine takes the core the producer and the broker need).
fn wait_a_little(producer: &BaseProducer<Reports>) {
    std::thread::sleep(Duration::from_micros(200));
    producer.poll(Duration::ZERO);
}

/// Errors a broker gives for good to one message: it goes to the dead-letter file.
fn refused_for_good(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidRecord
                | MessageBatchTooLarge
        )
    )
}

fn producer(cfg: &KafkaSinkConfig) -> Result<BaseProducer<Reports>, String> {
    cfg.kafka
        .client_config(PRODUCER_DEFAULTS)
        .create_with_context(Reports {
            outcomes: Mutex::new(BTreeMap::new()),
            last_error: Mutex::new(None),
        })
        .map_err(|e| e.to_string())
}

impl KafkaSink {
    /// Creates the producer (it connects in the background).
    pub fn open(cfg: KafkaSinkConfig, context: &super::SinkContext) -> Result<KafkaSink, Error> {
        let producer = producer(&cfg).map_err(|e| Error::Write {
            path: cfg.kafka.url(),
            source: std::io::Error::other(e),
        })?;
        // The two names are one property: the one set last wins, as in librdkafka (the
        // user's properties come after the defaults).
        let timeout_ms: u64 = PRODUCER_DEFAULTS
            .iter()
            .copied()
            .chain(
                cfg.kafka
                    .properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .filter(|(k, _)| matches!(*k, "message.timeout.ms" | "delivery.timeout.ms"))
            .filter_map(|(_, v)| v.parse().ok())
            .next_back()
            .unwrap_or(300_000);
        Ok(KafkaSink {
            dead_letter: DeadLetter::new(cfg.dead_letter.clone()),
            producer,
            stats: KafkaStats::default(),
            wait: Duration::from_millis(timeout_ms) + Duration::from_secs(30),
            delivery: 0,
            pending: VecDeque::new(),
            keep_undelivered: !context.replays,
            cfg,
        })
    }

    /// What the sink did so far.
    pub fn stats(&self) -> &KafkaStats {
        &self.stats
    }

    fn err(&self, msg: String) -> Error {
        Error::Write {
            path: self.cfg.kafka.url(),
            source: std::io::Error::other(msg),
        }
    }

    fn keep(&mut self, key: &str, doc: &[u8], reason: Value) -> Result<(), Error> {
        let document: Value = serde_json::from_slice(doc)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(doc).into_owned()));
        let record = json!({ "topic": self.cfg.kafka.topic, "key": key, "reason": reason, "document": document });
        if self.dead_letter.keep(doc, &record)? {
            self.stats.dead_lettered += 1;
        }
        Ok(())
    }

    /// Fails the delivery of `documents` documents; for a caller that does not deliver
    /// it again (and so gives the batch's `lines`), the documents not acknowledged are
    /// first kept in the dead-letter file with the reason. A producer left in a fatal
    /// state (an idempotent producer whose broker lost its sequence) is replaced for the
    /// next delivery.
    fn give_up(
        &mut self,
        undelivered: &[(usize, String)],
        documents: usize,
        keys: &[String],
        lines: Option<&[&[u8]]>,
    ) -> Result<(), Error> {
        let kept = if let (true, Some(lines)) = (self.keep_undelivered, lines) {
            let path = self.dead_letter.path().to_path_buf();
            let kept = super::keep_undelivered(undelivered.len(), &path, |n| {
                let (i, reason) = &undelivered[n];
                self.keep(&keys[*i], lines[*i], json!({ "undelivered": reason }))
            });
            format!("; {kept}")
        } else {
            String::new()
        };
        let first = undelivered.first().map_or("", |(_, r)| r.as_str());
        let cause = lock(&self.producer.context().last_error)
            .take()
            .map(|e| format!("; the client's last error: {e}"))
            .unwrap_or_default();
        if let Some(fatal) = self.producer.client().fatal_error() {
            tracing::warn!(url = %self.cfg.kafka.url(), error = ?fatal, "the producer failed for good; a new one takes over");
            if let Ok(p) = producer(&self.cfg) {
                self.producer = p;
            }
        }
        Err(self.err(format!(
            "{} of {documents} messages not acknowledged: {first}{cause}{kept}",
            undelivered.len(),
        )))
    }
}

impl KafkaSink {
    /// Hands a batch's messages to the producer (waiting only while its local queue is
    /// full) and adds the batch to the pending ones; gives its documents.
    fn hand_over<'a>(
        &mut self,
        ndjson: &'a [u8],
        ids: Option<&[String]>,
    ) -> Result<Vec<&'a [u8]>, Error> {
        let (keys, lines): (Vec<String>, Vec<&[u8]>) =
            super::keyed_documents(ndjson, ids).into_iter().unzip();
        self.delivery += 1;
        let delivery = self.delivery;
        *lock(&self.producer.context().last_error) = None;
        let deadline = Instant::now() + self.wait;
        let mut undelivered: Vec<(usize, String)> = Vec::new();
        let mut sent = 0;
        for (i, line) in lines.iter().enumerate() {
            let mut record =
                BaseRecord::with_opaque_to(&self.cfg.kafka.topic, Box::new((delivery, i)))
                    .key(keys[i].as_str())
                    .payload(*line);
            loop {
                match self.producer.send(record) {
                    Ok(()) => {
                        sent += 1;
                        break;
                    }
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        // The local queue is full: let deliveries drain, then again.
                        wait_a_little(&self.producer);
                        record = back;
                    }
                    Err((e, _)) if refused_for_good(&e) => {
                        self.keep(&keys[i], line, json!(e.to_string()))?;
                        break;
                    }
                    Err((e, _)) => {
                        undelivered.push((i, e.to_string()));
                        break;
                    }
                }
            }
        }
        self.pending.push_back(Pending {
            delivery,
            documents: lines.len(),
            keys,
            sent,
            undelivered,
            deadline,
        });
        Ok(lines)
    }

    /// The outcome of a pending batch whose reports are in (or late): the messages
    /// acknowledged are counted, the ones refused for good kept in the dead-letter file,
    /// and the delivery fails if any other was not acknowledged. `lines`: the batch's
    /// documents, when the caller still has them (see [`KafkaSink::give_up`]).
    fn finish(
        &mut self,
        pending: Pending,
        reported: Vec<Outcome>,
        lines: Option<&[&[u8]]>,
    ) -> Result<(), Error> {
        let Pending {
            documents,
            keys,
            sent,
            mut undelivered,
            ..
        } = pending;
        let outcomes = this_delivery(documents, reported);
        let has_report: Vec<bool> = outcomes.iter().map(Option::is_some).collect();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let Some(outcome) = outcome else { continue };
            match outcome {
                Ok(()) => self.stats.delivered += 1,
                Err((e, payload)) if refused_for_good(&e) => {
                    self.keep(&keys[i], &payload, json!(e.to_string()))?
                }
                Err((e, _)) => undelivered.push((i, e.to_string())),
            }
        }
        if sent > has_report.iter().filter(|r| **r).count() {
            let why = format!("no delivery report within {} s", self.wait.as_secs());
            let sent_unreported = (0..documents)
                .filter(|i| !has_report[*i] && !undelivered.iter().any(|(u, _)| u == i));
            let missing: Vec<(usize, String)> = sent_unreported.map(|i| (i, why.clone())).collect();
            undelivered.extend(missing);
        }
        if undelivered.is_empty() {
            Ok(())
        } else {
            undelivered.sort();
            self.give_up(&undelivered, documents, &keys, lines)
        }
    }

    /// [`Sink::settle`], with the oldest pending batch's documents when the caller has
    /// them.
    fn settle_with(&mut self, wait: Duration, lines: Option<&[&[u8]]>) -> Result<(), Error> {
        let Some(front) = self.pending.front() else {
            return Ok(());
        };
        let (delivery, sent, deadline) = (front.delivery, front.sent, front.deadline);
        let until = (Instant::now() + wait).min(deadline);
        let reported = |p: &BaseProducer<Reports>| {
            lock(&p.context().outcomes)
                .get(&delivery)
                .map_or(0, Vec::len)
        };
        self.producer.poll(Duration::ZERO);
        while reported(&self.producer) < sent && Instant::now() < until {
            wait_a_little(&self.producer);
        }
        if reported(&self.producer) < sent && Instant::now() < deadline {
            return Ok(());
        }
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        let reported = take_reports(&mut lock(&self.producer.context().outcomes), delivery);
        let outcome = self.finish(pending, reported, lines);
        if outcome.is_err() {
            // The later batches are given up on with it: their caller reads them again.
            self.pending.clear();
        }
        outcome
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> String {
        self.cfg.kafka.url()
    }

    fn mark(&mut self) -> Result<String, Error> {
        Ok(String::new())
    }

    fn deliver(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        // Acknowledgements come in order: the batches submitted before this one first.
        while !self.pending.is_empty() {
            self.settle_with(self.wait, None)?;
        }
        let lines = self.hand_over(ndjson, ids)?;
        while !self.pending.is_empty() {
            self.settle_with(self.wait, Some(&lines))?;
        }
        Ok(())
    }

    /// Hands the messages to the producer and returns; a sink that keeps a failed
    /// batch's documents aside delivers at once.
    fn submit(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        if self.keep_undelivered {
            return self.deliver(ndjson, ids);
        }
        self.hand_over(ndjson, ids).map(drop)
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Every message sent gets one report, within `message.timeout.ms`: the oldest batch
    /// is settled once all of its messages have theirs, or when they are late.
    fn settle(&mut self, wait: Duration) -> Result<(), Error> {
        self.settle_with(wait, None)
    }

    fn repair(&mut self, _mark: &str) -> Result<(), Error> {
        Ok(())
    }

    fn dead_lettered(&self) -> u64 {
        self.stats.dead_lettered
    }

    fn report(&self) -> Option<super::SinkReport> {
        Some(super::SinkReport {
            line: format!(
                "{} acknowledged, {} refused (kept in {})",
                self.stats.delivered,
                self.stats.dead_lettered,
                self.cfg.dead_letter.display()
            ),
            warning: self.stats.dead_lettered > 0,
        })
    }

    /// Its wait for the delivery reports (`message.timeout.ms` + 30 s), and a minute
    /// for the queue to take the messages.
    fn delivery_bound(&self, _documents: usize, _bytes: usize) -> Duration {
        self.wait + Duration::from_secs(60)
    }

    /// Asks a broker for the topic's metadata: reachable, authenticated, and the topic
    /// known.
    fn check(&mut self) -> Result<(), Error> {
        let topic = self.cfg.kafka.topic.clone();
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| self.err(e.to_string()))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) => Err(self.err(format!(
                "topic {topic}: {:?}",
                t.error().map(RDKafkaErrorCode::from)
            ))),
            None => Err(self.err(format!("no topic {topic}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_message_timeout_ms_and_its_alias() {
        for (key, value, want) in [
            ("message.timeout.ms", "4000", 4),
            ("delivery.timeout.ms", "7000", 7),
        ] {
            let mut kafka = KafkaConfig::from_url("kafka://127.0.0.1:1/t", || None).unwrap();
            kafka.properties = vec![(key.into(), value.into())];
            let sink = KafkaSink::open(
                KafkaSinkConfig {
                    kafka,
                    dead_letter: std::env::temp_dir().join("unused-dead-letter.ndjson"),
                },
                &crate::sinks::SinkContext::default(),
            )
            .unwrap();
            assert_eq!(sink.wait, Duration::from_secs(want + 30), "{key}");
        }
    }

    #[test]
    fn reports_of_an_earlier_delivery_are_not_counted_for_this_one() {
        let timed_out = || {
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                b"{}".to_vec(),
            ))
        };
        let mut reports: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
        // delivery 1 gave up with messages 0..5 queued; their reports come now
        reports.insert(1, vec![(4, Ok(())), (0, timed_out())]);
        // this delivery's (2) two messages
        reports.insert(
            2,
            vec![
                (1, Ok(())),
                (1, timed_out()), // a second report for the same message
                (7, Ok(())),      // out of range: not a message of this delivery
            ],
        );
        // delivery 3, handed over after this one, is still pending
        reports.insert(3, vec![(0, Ok(()))]);
        let outcomes = this_delivery(2, take_reports(&mut reports, 2));
        assert_eq!(outcomes.len(), 2);
        assert!(
            outcomes[0].is_none(),
            "message 0 of delivery 2 has no report yet"
        );
        assert!(matches!(outcomes[1], Some(Ok(()))));
        assert_eq!(
            reports.keys().copied().collect::<Vec<_>>(),
            [3],
            "delivery 1's reports are dropped, delivery 3's kept for it"
        );
    }
}
