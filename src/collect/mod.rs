//! `collect`: pulls Threat Analysis Center rows from Sophos Central, normalizes them
//! and delivers them, with no loss and no duplicates.
//!
//! For each tenant, windows of `[checkpoint − overlap, min(checkpoint + max_window, now))`
//! (the first run starts at now − lookback) are queried in the XDR Data Lake. Rows whose
//! key (`record_identifier`, or a SHA-256 of the row) was delivered before are dropped;
//! the others are normalized and delivered to the sink. The checkpoint moves only after
//! the sink acknowledged the whole window, in the same transaction that records the
//! keys. Before delivering, the sink's mark is recorded; after a crash (even `kill -9`)
//! the sink is repaired back to that mark on restart, and the window is fetched again.
//! So a crash repeats at most one window's work and, with a file sink, never loses or
//! duplicates a row.

pub mod client;
pub mod config;
pub mod state;

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::mapping::Profile;
use crate::normalizer::{LineOutcome, Normalizer};
use crate::sinks::{EsSink, FileSink, Rotation, Sink, StdoutSink, SyslogSink};
use client::{Client, Principal, Tenant};
use config::CollectConfig;
use state::State;

/// What can go wrong while collecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The credential was refused, or the token endpoint failed.
    #[error("authentication: {0}")]
    Auth(String),
    /// An API answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A connection error or timeout, after the retries.
    #[error("{0}")]
    Transport(String),
    /// An API answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A query run did not succeed.
    #[error("query run {run} did not succeed: {result}")]
    QueryFailed {
        /// The run id.
        run: String,
        /// Its result (`failed`, `timedOut`, …).
        result: String,
    },
    /// The state database failed.
    #[error("state: {0}")]
    State(String),
    /// The sink failed.
    #[error("{0}")]
    Sink(#[from] crate::Error),
}

/// The counts of one pass over the tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Tenants collected without error.
    pub tenants_ok: usize,
    /// Tenants whose collection failed (they are retried next pass).
    pub tenants_failed: usize,
    /// Rows received from the API.
    pub rows: u64,
    /// Rows dropped as already delivered.
    pub duplicates: u64,
    /// Documents delivered.
    pub delivered: u64,
    /// Rows that are not rows (kept in `rejects.ndjson` in the state directory).
    pub rejected: u64,
}

/// A running collector: client, state, sink and normalizer.
pub struct Collector {
    config: CollectConfig,
    client: Client,
    state: Mutex<State>,
    sink: Mutex<Box<dyn Sink>>,
    rejects: Mutex<std::fs::File>,
    normalizer: Normalizer,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Collector {
    /// Opens the state and the sink, and repairs a delivery a crash interrupted.
    pub fn open(config: CollectConfig) -> Result<Collector, CollectError> {
        let state = State::open(&config.file.state_dir)?;
        let o = &config.file.output;
        let mut sink: Box<dyn Sink> = match o.kind.as_str() {
            "stdout" => Box::new(StdoutSink),
            "elasticsearch" => Box::new(EsSink::open(config.elasticsearch()?)?),
            "syslog" => Box::new(SyslogSink::open(config.syslog()?)?),
            _ => {
                let rotation = Rotation {
                    max_bytes: o.rotate_bytes,
                    max_age: o.rotate_secs.map(Duration::from_secs),
                };
                Box::new(FileSink::open(
                    o.path.clone().unwrap_or_default(),
                    rotation,
                )?)
            }
        };
        for (id, mark) in state.pending()? {
            tracing::warn!(sink = %sink.name(), "repairing a delivery interrupted by a crash");
            sink.repair(&mark)?;
            state.drop_pending(id)?;
        }
        let rejects_path = config.file.state_dir.join("rejects.ndjson");
        let rejects = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rejects_path)
            .map_err(|e| CollectError::State(format!("{}: {e}", rejects_path.display())))?;
        let profile = Profile::by_name(&config.file.profile).unwrap_or_else(Profile::documented);
        Ok(Collector {
            client: Client::new(&config)?,
            normalizer: Normalizer::new(profile),
            state: Mutex::new(state),
            sink: Mutex::new(sink),
            rejects: Mutex::new(rejects),
            config,
        })
    }

    /// Discovers the tenants to collect (whoami, then the tenant listing), filtered by
    /// the allow and deny lists.
    pub async fn discover(&self) -> Result<Vec<Tenant>, CollectError> {
        let principal = self.client.whoami().await?;
        let all = self.client.tenants(&principal).await?;
        let t = &self.config.file.tenants;
        let listed = |list: &[String], tenant: &Tenant| {
            list.iter().any(|x| *x == tenant.id || *x == tenant.name)
        };
        let chosen: Vec<Tenant> = all
            .into_iter()
            .filter(|x| (t.allow.is_empty() || listed(&t.allow, x)) && !listed(&t.deny, x))
            .collect();
        let kind = match principal {
            Principal::Tenant { .. } => "tenant",
            Principal::Partner(_) => "partner",
            Principal::Organization(_) => "organization",
        };
        tracing::info!(kind, tenants = chosen.len(), "discovered");
        let state = lock(&self.state);
        for tenant in &chosen {
            state.add_tenant(&tenant.id, &tenant.name)?;
        }
        Ok(chosen)
    }

    /// One pass: every tenant, up to `limits.concurrency` at a time, each until it is
    /// caught up. A failing tenant is recorded and skipped; the others go on.
    pub async fn pass(self: &Arc<Self>, tenants: &[Tenant]) -> PassSummary {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.file.limits.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for tenant in tenants.iter().cloned() {
            let (me, permits) = (Arc::clone(self), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = me.collect_tenant(&tenant).await;
                (tenant, result)
            });
        }
        let mut summary = PassSummary::default();
        while let Some(joined) = tasks.join_next().await {
            let (tenant, result) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // A task that panicked: count it; its tenant is retried next pass.
                    summary.tenants_failed += 1;
                    tracing::error!(error = %e, "a tenant task failed");
                    continue;
                }
            };
            match result {
                Ok(s) => {
                    summary.tenants_ok += 1;
                    summary.rows += s.rows;
                    summary.duplicates += s.duplicates;
                    summary.delivered += s.delivered;
                    summary.rejected += s.rejected;
                }
                Err(e) => {
                    summary.tenants_failed += 1;
                    tracing::error!(tenant = %tenant.id, name = %tenant.name, error = %e, "tenant failed; it will be retried");
                    let _ = lock(&self.state).record_error(&tenant.id, &e.to_string());
                }
            }
        }
        summary
    }

    /// Collects one tenant until its checkpoint reaches now.
    async fn collect_tenant(&self, tenant: &Tenant) -> Result<PassSummary, CollectError> {
        let q = &self.config.file.query;
        let overlap = SignedDuration::from_secs(q.overlap_secs as i64);
        let max_window = SignedDuration::from_secs(q.max_window_secs as i64);
        let sql = self.config.sql();
        let mut total = PassSummary::default();
        loop {
            let now = Timestamp::now();
            let checkpoint = lock(&self.state)
                .checkpoint(&tenant.id)?
                .and_then(|ms| Timestamp::from_millisecond(ms).ok());
            let lookback = SignedDuration::from_secs(q.lookback_secs as i64);
            let (from, to) = window(checkpoint, now, lookback, overlap, max_window);
            let rows = self.client.query(tenant, &sql, from, to, q).await?;
            // Delivery blocks (file sync, HTTP with retries): off the async workers.
            let s = tokio::task::block_in_place(|| self.deliver(tenant, &rows, to))?;
            tracing::info!(tenant = %tenant.id, from = %from, to = %to, rows = s.rows, duplicates = s.duplicates, delivered = s.delivered, rejected = s.rejected, "window delivered");
            total.rows += s.rows;
            total.duplicates += s.duplicates;
            total.delivered += s.delivered;
            total.rejected += s.rejected;
            if to >= now {
                return Ok(total);
            }
        }
    }

    /// Dedups, normalizes and delivers one window's rows, then moves the checkpoint.
    fn deliver(
        &self,
        tenant: &Tenant,
        rows: &[Box<RawValue>],
        to: Timestamp,
    ) -> Result<PassSummary, CollectError> {
        let mut s = PassSummary {
            rows: rows.len() as u64,
            ..PassSummary::default()
        };
        let mut keys: Vec<(String, i64)> = Vec::new();
        let mut in_window = HashSet::new();
        let mut out = Vec::new();
        // A stable id per delivered document: the tenant and the row's key.
        let mut ids: Vec<String> = Vec::new();
        let mut warnings = self.normalizer.new_warnings();
        {
            let state = lock(&self.state);
            for row in rows {
                let key = row_key(row.get());
                if !in_window.insert(key.clone()) || state.seen(&tenant.id, &key)? {
                    s.duplicates += 1;
                    continue;
                }
                match self
                    .normalizer
                    .normalize_line(row.get().as_bytes(), &mut out, &mut warnings)
                {
                    LineOutcome::Normalized => {
                        s.delivered += 1;
                        ids.push(format!("{}:{key}", tenant.id));
                    }
                    LineOutcome::Blank => {}
                    LineOutcome::Rejected(reason) => {
                        s.rejected += 1;
                        let record = serde_json::json!({ "tenant": tenant.id, "reason": reason.to_string(), "text": row.get() });
                        let mut rejects = lock(&self.rejects);
                        writeln!(rejects, "{record}")
                            .and_then(|()| rejects.sync_data())
                            .map_err(|e| CollectError::State(format!("rejects.ndjson: {e}")))?;
                    }
                }
                keys.push((key, to.as_millisecond()));
            }
        }
        // One delivery at a time: mark, deliver (durable), then commit.
        let mut sink = lock(&self.sink);
        let outbox = if out.is_empty() {
            None
        } else {
            let mark = sink.mark()?;
            let id = lock(&self.state).begin_delivery(&tenant.id, &mark)?;
            sink.deliver(&out, Some(&ids))?;
            crash_point();
            Some(id)
        };
        lock(&self.state).commit_delivery(
            outbox,
            &tenant.id,
            &keys,
            to.as_millisecond(),
            self.config.file.query.overlap_secs as i64 * 1000,
        )?;
        sink.committed()?;
        Ok(s)
    }

    /// Runs passes until stopped (Ctrl-C / SIGTERM), or once.
    pub async fn run(self: Arc<Self>, once: bool) -> Result<PassSummary, CollectError> {
        let interval = Duration::from_secs(self.config.file.query.interval_secs.max(1));
        loop {
            let summary = match self.discover().await {
                Ok(tenants) => self.pass(&tenants).await,
                Err(e) if once => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "discovery failed; retrying next pass");
                    PassSummary::default()
                }
            };
            tracing::info!(
                ok = summary.tenants_ok,
                failed = summary.tenants_failed,
                rows = summary.rows,
                duplicates = summary.duplicates,
                delivered = summary.delivered,
                rejected = summary.rejected,
                "pass done"
            );
            if once {
                return Ok(summary);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown() => {
                    tracing::info!("stopping");
                    return Ok(summary);
                }
            }
        }
    }

    /// Every tenant's status from the state database.
    pub fn status(state_dir: &std::path::Path) -> Result<Vec<state::TenantStatus>, CollectError> {
        State::open(state_dir)?.status()
    }
}

async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next window of a tenant: `[checkpoint − overlap, checkpoint + max_window)`, or
/// from `now − lookback` on the first run; never older than 30 days (what the Data
/// Lake keeps), never past now.
fn window(
    checkpoint: Option<Timestamp>,
    now: Timestamp,
    lookback: SignedDuration,
    overlap: SignedDuration,
    max_window: SignedDuration,
) -> (Timestamp, Timestamp) {
    let oldest = now - SignedDuration::from_hours(24 * 30);
    let (from, base) = match checkpoint {
        Some(c) => (c - overlap, c),
        None => (now - lookback, now - lookback),
    };
    // After a long outage the checkpoint may be older than the Data Lake's 30 days.
    let (from, base) = (from.max(oldest), base.max(oldest));
    (from, (base + max_window).min(now))
}

/// A fault-injection point for crash tests: with `SOPHOS_TAC_CRASH_AFTER_DELIVERIES=N`,
/// the process aborts after its N-th delivery, before that delivery is committed —
/// the worst moment for a crash. Unset, it does nothing.
fn crash_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DELIVERIES: AtomicU64 = AtomicU64::new(0);
    if let Some(n) = std::env::var("SOPHOS_TAC_CRASH_AFTER_DELIVERIES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && DELIVERIES.fetch_add(1, Ordering::SeqCst) + 1 >= n
    {
        std::process::abort();
    }
}

/// A row's dedup key: its `record_identifier`, or a SHA-256 of its JSON text.
pub fn row_key(row: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        record_identifier: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Id>(row) {
        Ok(Id {
            record_identifier: Some(id),
        }) if !id.is_empty() => format!("id:{id}"),
        _ => {
            let digest = Sha256::digest(row.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let (h, m) = (SignedDuration::from_hours(1), SignedDuration::from_mins(10));
        let day = SignedDuration::from_hours(24);
        // first run: from now − lookback, one max_window long
        assert_eq!(window(None, now, day, m, h), (now - day, now - day + h));
        // then from the checkpoint minus the overlap, capped at now
        let c = now - SignedDuration::from_mins(30);
        assert_eq!(window(Some(c), now, day, m, h), (c - m, now));
        // a checkpoint older than 30 days restarts at the oldest the Data Lake keeps
        let old = now - SignedDuration::from_hours(24 * 60);
        let oldest = now - SignedDuration::from_hours(24 * 30);
        let (from, to) = window(Some(old), now, day, m, h);
        assert_eq!((from, to), (oldest, oldest + h));
        assert!(from < to);
    }

    #[test]
    fn keys_prefer_the_record_identifier() {
        assert_eq!(row_key(r#"{"a":1,"record_identifier":"abc"}"#), "id:abc");
        assert!(row_key(r#"{"a":1}"#).starts_with("sha256:"));
        assert_eq!(row_key(r#"{"a":1}"#), row_key(r#"{"a":1}"#));
        assert_ne!(row_key(r#"{"a":1}"#), row_key(r#"{"a":2}"#));
        assert!(row_key(r#"{"record_identifier":""}"#).starts_with("sha256:"));
    }
}
