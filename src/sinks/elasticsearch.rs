//! The Elasticsearch / OpenSearch sink: `_bulk` over HTTP(S).
//!
//! Split by role, as Vector's sinks are: [`EsConfig`] (the settings), [`bulk_body`]
//! (the request builder), [`EsService`] (the HTTP call), [`classify`] (the retry
//! policy) and [`EsSink`] (the sink loop).
//!
//! Documents go in with the `create` action and a deterministic `_id` (the tenant and
//! the row's `record_identifier`, or a SHA-256 of the row), so re-delivery is
//! idempotent: a per-item 409 counts as already delivered. Every item of every bulk
//! response is looked at: 429 and 5xx items are retried (only those), with exponential
//! backoff and jitter, and so are whole requests that fail with 429, 5xx, a connection
//! error or a timeout; any other item error (a mapping or parse error, 400) is
//! permanent and goes to the dead-letter file, with the document and the server's
//! reason. Batches are limited by count and bytes; bodies can be gzip-compressed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalogue::{TemplateOptions, index_template_of};
use crate::error::Error;
use crate::mapping::Profile;
use crate::sinks::{DeadLetter, MAX_BACKOFF, Sink, Timeouts};

/// The `_id` of the probe document `--check` writes and deletes.
pub const CHECK_PROBE_ID: &str = "sophos-tac-check-probe";

/// The default timeouts: 10 s to connect, 60 s for one bulk request.
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(10),
    io: Duration::from_secs(60),
};

/// Settings of the sink.
#[derive(Clone)]
pub struct EsConfig {
    /// Base URL, e.g. `https://localhost:9200` (no index).
    pub url: String,
    /// The index (or data stream) documents go to.
    pub index: String,
    /// `Authorization: ApiKey …` (the encoded key).
    pub api_key: Option<String>,
    /// Basic auth user and password.
    pub basic: Option<(String, String)>,
    /// A PEM file of CA certificates to trust instead of the platform's.
    pub ca_file: Option<PathBuf>,
    /// Gzip request bodies.
    pub gzip: bool,
    /// At most this many documents per bulk request.
    pub batch_docs: usize,
    /// At most this many bytes per bulk request (one document larger still goes).
    pub batch_bytes: usize,
    /// Bulk requests in flight at once (default 2; each retried on its own).
    pub concurrency: usize,
    /// Retries of a failing request or item before giving up on the batch.
    pub max_retries: u32,
    /// Connecting, and one whole bulk request (default 10 s and 60 s).
    pub timeouts: Timeouts,
    /// Where permanently refused documents go (NDJSON); also, for a caller that does
    /// not deliver a failed batch again ([`super::SinkContext::replays`]), the documents
    /// of a batch given up on (after the retries, or a refused request).
    pub dead_letter: PathBuf,
    /// Install the profile's index template at start-up.
    pub install_template: Option<TemplateOptions>,
    /// The profile (for the template).
    pub profile: Profile,
    /// Other profiles whose documents the index takes too (the SIEM streams of
    /// `collect`): the template types their fields as well.
    pub also: Vec<Profile>,
}

impl EsConfig {
    /// Splits `https://host:9200/index` into the base URL and the index.
    pub fn from_url(url: &str, profile: Profile) -> Result<EsConfig, String> {
        crate::url::refuse_credentials(url)?;
        let u = crate::url::Url::parse(url)?;
        let scheme = u.scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{url}: the scheme must be http or https"));
        }
        let index = u.path;
        if index.is_empty()
            || index.contains('/')
            || !u.query.is_empty()
            || u.authority.contains(',')
        {
            return Err(format!(
                "{url}: name the index, as in https://host:9200/sophos-tac"
            ));
        }
        let host = u.authority;
        Ok(EsConfig {
            url: format!("{scheme}://{host}"),
            index: index.to_string(),
            api_key: None,
            basic: None,
            ca_file: None,
            gzip: false,
            batch_docs: 1000,
            batch_bytes: 5 * 1024 * 1024,
            concurrency: DEFAULT_CONCURRENCY,
            max_retries: 10,
            timeouts: DEFAULT_TIMEOUTS,
            dead_letter: PathBuf::from("sophos-tac-dead-letter.ndjson"),
            install_template: None,
            profile,
            also: Vec::new(),
        })
    }
}

/// Bulk requests in flight at once, by default: a cluster takes concurrent bulk
/// requests, and while one is in flight the next is built and sent.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// One document waiting for delivery.
#[derive(Debug, Clone)]
struct Doc {
    id: String,
    json: Vec<u8>,
}

/// The request builder: an NDJSON `_bulk` body of `create` actions.
pub fn bulk_body(index: &str, docs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::with_capacity(docs.iter().map(|(_, d)| d.len() + 80).sum());
    for (id, doc) in docs {
        let action = json!({ "create": { "_index": index, "_id": id } });
        body.extend_from_slice(action.to_string().as_bytes());
        body.push(b'\n');
        body.extend_from_slice(doc.strip_suffix(b"\n").unwrap_or(doc));
        body.push(b'\n');
    }
    body
}

/// What the retry policy decides for one item or one whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered (2xx), or already there (409 on `create`).
    Delivered,
    /// Worth retrying: 429, 5xx, connection errors, timeouts.
    Retry(String),
    /// Refused for good: to the dead-letter file with this reason.
    Permanent(String),
}

/// The retry policy for an HTTP status (of a request or of a bulk item).
pub fn classify(status: u16, reason: &str) -> Verdict {
    match status {
        200..=299 | 409 => Verdict::Delivered,
        429 | 500..=599 => Verdict::Retry(format!("HTTP {status}: {reason}")),
        _ => Verdict::Permanent(format!("HTTP {status}: {reason}")),
    }
}

/// The HTTP side: one agent, with the configured TLS and authentication.
pub struct EsService {
    agent: ureq::Agent,
    auth: Option<String>,
    gzip: bool,
}

/// Shows everything but the credentials (`api_key`, the basic-auth password).
impl std::fmt::Debug for EsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsConfig")
            .field("url", &crate::url::redact(&self.url))
            .field("index", &self.index)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("ca_file", &self.ca_file)
            .field("gzip", &self.gzip)
            .field("batch_docs", &self.batch_docs)
            .field("concurrency", &self.concurrency)
            .field("batch_bytes", &self.batch_bytes)
            .field("max_retries", &self.max_retries)
            .field("timeouts", &self.timeouts)
            .field("dead_letter", &self.dead_letter)
            .field("install_template", &self.install_template.is_some())
            .field("profile", &self.profile.name())
            .finish()
    }
}

/// Shows no `Authorization` header.
impl std::fmt::Debug for EsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsService")
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// The answer to one request: status and body, or a transport error.
type Answer = Result<(u16, String), String>;

impl EsService {
    /// Builds the agent (TLS verified; a CA file replaces the platform's roots).
    pub fn new(cfg: &EsConfig) -> Result<EsService, String> {
        let agent = crate::http::agent(
            cfg.ca_file.as_deref(),
            cfg.timeouts.connect,
            cfg.timeouts.io,
        )?;
        let auth = match (&cfg.api_key, &cfg.basic) {
            (Some(key), _) => Some(format!("ApiKey {key}")),
            (None, Some((user, pass))) => {
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
                ))
            }
            _ => None,
        };
        Ok(EsService {
            agent,
            auth,
            gzip: cfg.gzip,
        })
    }

    /// Sends one request; the body is gzip-compressed when configured.
    pub fn send(&self, method: &str, url: &str, content_type: &str, body: &[u8]) -> Answer {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Type", content_type);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let body = if self.gzip {
            req = req.header("Content-Encoding", "gzip");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(body)
                .and_then(|()| enc.finish())
                .map_err(|e| e.to_string())?
        } else {
            body.to_vec()
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        match self.agent.run(req) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.into_body().read_to_string().unwrap_or_default();
                Ok((status, text))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Counts of what the sink did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsStats {
    /// Documents the target now holds from us (created, or already there).
    pub delivered: u64,
    /// Of those, documents that were already there (409).
    pub already_there: u64,
    /// Documents refused for good, in the dead-letter file.
    pub dead_lettered: u64,
    /// Retries (requests and items).
    pub retries: u64,
}

/// The sink loop.
#[derive(Debug)]
pub struct EsSink {
    cfg: EsConfig,
    /// Keep a given-up batch's documents in the dead-letter file (the caller does not
    /// deliver it again).
    keep_undelivered: bool,
    service: EsService,
    dead_letter: DeadLetter,
    stats: EsStats,
}

impl EsSink {
    /// Connects (lazily) and, when asked and not only checking, installs the index
    /// template.
    pub fn open(cfg: EsConfig, context: &super::SinkContext) -> Result<EsSink, Error> {
        let service = EsService::new(&cfg).map_err(|e| Error::Write {
            path: cfg.url.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut sink = EsSink {
            service,
            dead_letter: DeadLetter::new(cfg.dead_letter.clone()),
            stats: EsStats::default(),
            keep_undelivered: !context.replays,
            cfg,
        };
        if let Some(options) = sink
            .cfg
            .install_template
            .clone()
            .filter(|_| !context.check_only)
        {
            sink.install_template(&options)?;
        }
        Ok(sink)
    }

    /// What the sink did so far.
    pub fn stats(&self) -> &EsStats {
        &self.stats
    }

    fn err(&self, msg: String) -> Error {
        Error::Write {
            path: format!("{}/{}", self.cfg.url, self.cfg.index),
            source: std::io::Error::other(msg),
        }
    }

    fn install_template(&mut self, options: &TemplateOptions) -> Result<(), Error> {
        let profiles: Vec<Profile> = std::iter::once(self.cfg.profile.clone())
            .chain(self.cfg.also.iter().cloned())
            .collect();
        let template = index_template_of(&profiles, options);
        let url = format!("{}/_index_template/{}", self.cfg.url, self.cfg.index);
        let body = template.to_string();
        let mut attempt = 0;
        loop {
            match self
                .service
                .send("PUT", &url, "application/json", body.as_bytes())
            {
                Ok((s, _)) if (200..300).contains(&s) => return Ok(()),
                Ok((s, text)) if matches!(classify(s, ""), Verdict::Permanent(_)) => {
                    return Err(self.err(format!(
                        "installing the index template: HTTP {s}: {}",
                        excerpt(&text)
                    )));
                }
                other if attempt >= self.cfg.max_retries => {
                    return Err(self.err(format!("installing the index template: {other:?}")));
                }
                _ => {
                    backoff(attempt);
                    self.stats.retries += 1;
                }
            }
            attempt += 1;
        }
    }

    fn dead_letter(&mut self, doc: &Doc, reason: &Value) -> Result<(), Error> {
        let document: Value = serde_json::from_slice(&doc.json)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&doc.json).into_owned()));
        let record = json!({ "index": self.cfg.index, "_id": doc.id, "reason": reason, "document": document });
        if self.dead_letter.keep(&doc.json, &record)? {
            self.stats.dead_lettered += 1;
        }
        Ok(())
    }

    /// Fails the delivery; for a caller that does not deliver it again, the documents
    /// not delivered are first kept in the dead-letter file with the reason.
    fn give_up(&mut self, pending: &[Doc], reason: String) -> Result<(), Error> {
        if self.keep_undelivered {
            let path = self.dead_letter.path().to_path_buf();
            let kept = super::keep_undelivered(pending.len(), &path, |i| {
                self.dead_letter(&pending[i], &json!({ "undelivered": reason }))
            });
            return Err(self.err(format!("{reason}; {kept}")));
        }
        Err(self.err(reason))
    }

    /// Delivers documents in bulk requests, up to `concurrency` at once, each retried
    /// on its own; returns once each is delivered or dead-lettered, or fails after the
    /// retries (the documents of every request given up on are the undelivered ones).
    fn deliver_docs(&mut self, docs: Vec<Doc>) -> Result<(), Error> {
        let mut docs = docs.into_iter().peekable();
        let mut batches = Vec::new();
        while docs.peek().is_some() {
            // Moved, not copied, into batches of at most batch_docs and batch_bytes
            // (a single larger document still goes, alone).
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(doc) = docs.next_if(|d| {
                batch.len() < self.cfg.batch_docs.max(1)
                    && (batch.is_empty() || bytes + d.json.len() <= self.cfg.batch_bytes)
            }) {
                bytes += doc.json.len();
                batch.push(doc);
            }
            batches.push(batch);
        }
        let mut batches = batches.into_iter().peekable();
        while batches.peek().is_some() {
            let wave: Vec<Vec<Doc>> = batches.by_ref().take(self.cfg.concurrency.max(1)).collect();
            let (service, cfg) = (&self.service, &self.cfg);
            let outcomes: Vec<Outcome> = if wave.len() == 1 {
                wave.into_iter()
                    .map(|b| send_batch(service, cfg, b))
                    .collect()
            } else {
                std::thread::scope(|scope| {
                    let running: Vec<_> = wave
                        .into_iter()
                        .map(|b| scope.spawn(move || send_batch(service, cfg, b)))
                        .collect();
                    running
                        .into_iter()
                        .map(|r| {
                            r.join().unwrap_or_else(|_| Outcome {
                                failed: Some((Vec::new(), "a bulk request's thread failed".into())),
                                ..Outcome::default()
                            })
                        })
                        .collect()
                })
            };
            // In request order: counts, dead letters, then what was given up on.
            let mut undelivered = Vec::new();
            let mut reason: Option<String> = None;
            for o in outcomes {
                self.stats.delivered += o.delivered;
                self.stats.already_there += o.already_there;
                self.stats.retries += o.retries;
                for (doc, why) in &o.dead {
                    self.dead_letter(doc, why)?;
                }
                if let Some((docs, why)) = o.failed {
                    undelivered.extend(docs);
                    reason.get_or_insert(why);
                }
            }
            if let Some(reason) = reason {
                return self.give_up(&undelivered, reason);
            }
        }
        Ok(())
    }
}

/// Sleeps before retry `attempt`: 0.1 s doubling up to 30 s, with jitter.
fn backoff(attempt: u32) {
    let base = (0.1 * 2f64.powi(attempt.min(8) as i32)).min(30.0);
    std::thread::sleep(Duration::from_secs_f64(base * (0.5 + fastrand::f64())));
}

/// What one bulk request came to, after its retries: counts, the documents refused for
/// good (with the reason), and, when it was given up on, its documents not delivered and
/// why. Computed without touching the sink, so that several run at once.
#[derive(Default)]
struct Outcome {
    delivered: u64,
    already_there: u64,
    retries: u64,
    dead: Vec<(Doc, Value)>,
    failed: Option<(Vec<Doc>, String)>,
}

/// Sends one batch as bulk requests until each document is delivered or refused for
/// good, retrying the request (429, 5xx, no answer) and the items to retry, at most
/// `max_retries` times.
fn send_batch(service: &EsService, cfg: &EsConfig, mut pending: Vec<Doc>) -> Outcome {
    let url = format!("{}/_bulk", cfg.url);
    let mut o = Outcome::default();
    let mut attempt = 0;
    while !pending.is_empty() {
        let refs: Vec<(&str, &[u8])> = pending
            .iter()
            .map(|d| (d.id.as_str(), d.json.as_slice()))
            .collect();
        let body = bulk_body(&cfg.index, &refs);
        let answer = service.send("POST", &url, "application/x-ndjson", &body);
        let retry_reason = match answer {
            Err(transport) => transport,
            Ok((status, text)) => match classify(status, &excerpt(&text)) {
                Verdict::Retry(r) => r,
                Verdict::Permanent(r) => {
                    o.failed = Some((pending, format!("bulk request refused: {r}")));
                    return o;
                }
                Verdict::Delivered => {
                    let items = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["items"].as_array().cloned());
                    let Some(items) = items.filter(|i| i.len() == pending.len()) else {
                        let reason = format!(
                            "unreadable bulk response (not {} items): {}",
                            pending.len(),
                            excerpt(&text)
                        );
                        o.failed = Some((pending, reason));
                        return o;
                    };
                    let mut again = Vec::new();
                    let mut refused: Option<String> = None;
                    for (doc, item) in pending.into_iter().zip(items) {
                        let result = item
                            .get("create")
                            .or_else(|| item.as_object().and_then(|o| o.values().next()))
                            .cloned()
                            .unwrap_or(Value::Null);
                        let status = result["status"].as_u64().unwrap_or(0) as u16;
                        let error = result.get("error").cloned().unwrap_or(Value::Null);
                        // Not the document's fault: the credential may not write to
                        // the index, or the index is missing (auto-create off).
                        if matches!(status, 401 | 403 | 404) {
                            refused.get_or_insert_with(|| {
                                format!("HTTP {status}: {}", excerpt(&error.to_string()))
                            });
                            again.push(doc);
                            continue;
                        }
                        match classify(status, &error.to_string()) {
                            Verdict::Delivered => {
                                o.delivered += 1;
                                if status == 409 {
                                    o.already_there += 1;
                                }
                            }
                            Verdict::Retry(_) => again.push(doc),
                            Verdict::Permanent(_) => o
                                .dead
                                .push((doc, json!({ "status": status, "error": error }))),
                        }
                    }
                    pending = again;
                    if let Some(reason) = refused {
                        o.failed = Some((
                            pending,
                            format!(
                                "the index refused the documents ({reason}): check the credential's privileges on the index (create_doc) and that the index exists or may be created"
                            ),
                        ));
                        return o;
                    }
                    if pending.is_empty() {
                        return o;
                    }
                    format!("{} items to retry", pending.len())
                }
            },
        };
        if attempt >= cfg.max_retries {
            let reason = format!("giving up after {attempt} retries: {retry_reason}");
            o.failed = Some((pending, reason));
            return o;
        }
        tracing::warn!(url = %url, reason = %retry_reason, attempt, "bulk retry");
        backoff(attempt);
        o.retries += 1;
        attempt += 1;
    }
    o
}

fn excerpt(s: &str) -> String {
    s.chars().take(300).collect()
}

impl Sink for EsSink {
    fn name(&self) -> String {
        format!("{}/{}", self.cfg.url, self.cfg.index)
    }

    fn dead_lettered(&self) -> u64 {
        self.stats.dead_lettered
    }

    fn report(&self) -> Option<super::SinkReport> {
        let s = &self.stats;
        Some(super::SinkReport {
            line: format!(
                "{} delivered ({} already there), {} refused (kept in {}), {} retries",
                s.delivered,
                s.already_there,
                s.dead_lettered,
                self.cfg.dead_letter.display(),
                s.retries
            ),
            warning: s.dead_lettered > 0,
        })
    }

    /// Every bulk request of the delivery (split by `batch_docs` and by `batch_bytes`),
    /// each with its retries.
    fn delivery_bound(&self, documents: usize, bytes: usize) -> Duration {
        let requests = documents.div_ceil(self.cfg.batch_docs.max(1))
            + bytes.div_ceil(self.cfg.batch_bytes.max(1))
            + 1;
        let requests = u32::try_from(requests).unwrap_or(u32::MAX);
        self.cfg
            .timeouts
            .bound(self.cfg.max_retries, 1, MAX_BACKOFF)
            .saturating_mul(requests)
    }

    /// Asks the cluster for its root (`GET /`: reachable, and the credentials taken),
    /// then proves that documents may be written to the index: one probe document
    /// (`_id` `sophos-tac-check-probe`, `event.kind` `sophos-tac-check`) goes in with
    /// `create`, as deliveries do, and is deleted again. A credential without
    /// `create_doc`, or a missing index that may not be created, is found here rather
    /// than at the first delivery.
    fn check(&mut self) -> Result<(), Error> {
        let url = format!("{}/", self.cfg.url);
        match self.service.send("GET", &url, "application/json", b"") {
            Ok((s, _)) if (200..300).contains(&s) => {}
            Ok((s @ (401 | 403), _)) => {
                return Err(self.err(format!(
                    "HTTP {s}: the cluster refuses the credentials (output.api_key_env, or output.username and output.password_env)"
                )));
            }
            Ok((s, text)) => return Err(self.err(format!("HTTP {s}: {}", excerpt(&text)))),
            Err(e) => return Err(self.err(e)),
        }
        let probe = json!({
            "@timestamp": jiff::Timestamp::now().to_string(),
            "event": { "kind": "sophos-tac-check" },
            "message": "a probe of sophos-tac collect --check, deleted at once",
        })
        .to_string();
        let body = bulk_body(&self.cfg.index, &[(CHECK_PROBE_ID, probe.as_bytes())]);
        let bulk = format!("{}/_bulk", self.cfg.url);
        let (status, text) = self
            .service
            .send("POST", &bulk, "application/x-ndjson", &body)
            .map_err(|e| self.err(e))?;
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let item = &parsed["items"][0];
        let item = item.get("create").unwrap_or(item);
        let item_status = item["status"].as_u64().unwrap_or(0);
        if !(200..300).contains(&status) || !matches!(item_status, 200..=299 | 409) {
            let shown = if (200..300).contains(&status) {
                format!(
                    "HTTP {item_status}: {}",
                    excerpt(&item["error"].to_string())
                )
            } else {
                format!("HTTP {status}: {}", excerpt(&text))
            };
            return Err(self.err(format!(
                "the index {} refuses a document ({shown}): give the credential create_doc on it, and create the index (or let it be created)",
                self.cfg.index
            )));
        }
        // Deleted from the index it went to: a data stream's backing index.
        let index = item["_index"].as_str().unwrap_or(&self.cfg.index);
        let doc = format!(
            "{}/{index}/_doc/{CHECK_PROBE_ID}?refresh=true",
            self.cfg.url
        );
        if let Ok((s, _)) = self.service.send("DELETE", &doc, "application/json", b"")
            && !(200..300).contains(&s)
            && s != 404
        {
            tracing::warn!(index = %self.cfg.index, status = s, "the --check probe document could not be deleted (a data stream, or no delete privilege): it has event.kind sophos-tac-check");
        }
        Ok(())
    }

    /// Nothing to record: re-delivery is idempotent (`create` with a fixed `_id`).
    fn mark(&mut self) -> Result<String, Error> {
        Ok(String::new())
    }

    fn deliver(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        let docs = super::keyed_documents(ndjson, ids)
            .into_iter()
            .map(|(id, line)| Doc {
                id,
                json: line.to_vec(),
            })
            .collect();
        self.deliver_docs(docs)
    }

    fn repair(&mut self, _mark: &str) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_body_is_create_actions_with_ids() {
        let body = bulk_body("idx", &[("a", b"{\"x\":1}\n"), ("b\"c", b"{\"y\":2}")]);
        let lines: Vec<Value> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({ "create": { "_index": "idx", "_id": "a" } }),
                json!({ "x": 1 }),
                json!({ "create": { "_index": "idx", "_id": "b\"c" } }),
                json!({ "y": 2 }),
            ]
        );
    }

    #[test]
    fn debug_never_shows_the_credentials() {
        let mut cfg =
            EsConfig::from_url("https://es.example:9200/idx", Profile::documented()).unwrap();
        cfg.api_key = Some("QVBJLUtFWS1zZWNyZXQ=".into());
        cfg.basic = Some(("elastic".into(), "hunter2-pass".into()));
        let service = EsService::new(&cfg).unwrap();
        for shown in [
            format!("{cfg:?}"),
            format!("{service:?}"),
            format!("{cfg:#?}"),
        ] {
            assert!(!shown.contains("QVBJLUtFWS1zZWNyZXQ="), "{shown}");
            assert!(!shown.contains("hunter2-pass"), "{shown}");
            assert!(!shown.contains("ZWxhc3RpYzpodW50ZXIyLXBhc3M="), "{shown}");
        }
        assert!(format!("{cfg:?}").contains("elastic"));
    }

    #[test]
    fn retry_policy() {
        assert_eq!(classify(201, ""), Verdict::Delivered);
        assert_eq!(classify(409, ""), Verdict::Delivered);
        assert!(matches!(classify(429, ""), Verdict::Retry(_)));
        assert!(matches!(classify(503, ""), Verdict::Retry(_)));
        assert!(matches!(
            classify(400, "mapper_parsing_exception"),
            Verdict::Permanent(_)
        ));
        assert!(matches!(classify(404, ""), Verdict::Permanent(_)));
    }

    #[test]
    fn urls_name_the_index() {
        let c = EsConfig::from_url("https://es.example:9200/sophos-tac", Profile::documented())
            .unwrap();
        assert_eq!(
            (c.url.as_str(), c.index.as_str()),
            ("https://es.example:9200", "sophos-tac")
        );
        assert!(EsConfig::from_url("https://es.example:9200", Profile::documented()).is_err());
        assert!(EsConfig::from_url("ftp://x/y", Profile::documented()).is_err());
    }

    #[test]
    fn ids_come_from_the_row() {
        assert_eq!(
            crate::sinks::document_key(br#"{"message":"{\"record_identifier\":\"r1\"}"}"#),
            "id:r1"
        );
        assert!(crate::sinks::document_key(br#"{"message":"{\"a\":1}"}"#).starts_with("sha256:"));
    }
}
