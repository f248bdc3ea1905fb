//! `collect`: pulls Threat Analysis Center rows from Sophos Central, normalizes them
//! and delivers them, with no loss and no duplicates.
//!
//! Each pass has two lanes per tenant, live first:
//!
//! - **Live**: `[checkpoint − overlap, now)` (the first run starts at now − lookback) is
//!   queried in the XDR Data Lake, as one window when its results fit the page budget
//!   (`max_window_pages`), split into narrower windows when they do not.
//! - **Late sweep**: every `late_sweep_secs`, `[now − reach, checkpoint)` is queried
//!   again (reach = `late_horizon_secs` + `late_sweep_secs` + `overlap_secs`, never
//!   before the tenant's first window), in windows sized the same way, so that a row
//!   that reaches the Data Lake up to `late_horizon_secs` after its `calendar_time` is
//!   still delivered. Its progress is kept in the state, so a crash resumes it.
//!
//! Rows whose key (`record_identifier`, or a SHA-256 of the row) was delivered before
//! are dropped; keys live as long as any window can return their row. The others are
//! normalized and delivered to every output. The checkpoint (or the sweep's cursor)
//! moves only after every output acknowledged the whole window, in the same transaction
//! that records the keys. Before delivering, each output's mark is recorded; after a
//! crash (even `kill -9`), or when an output fails part way, the outputs are repaired
//! back to their marks, and the window is fetched again. So a crash repeats at most one
//! window's work and, with file and index outputs, never loses or duplicates a row.

pub mod check;
pub mod client;
pub mod config;
mod delivery;
mod lanes;
pub mod metrics;
mod schedule;
pub mod service;
pub mod state;
pub mod streams;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;

use crate::mapping::Profile;
use crate::normalizer::{LineCounts, Normalizer};
use crate::sync::lock;
use client::{Client, Tenant};
use config::CollectConfig;
use metrics::Metrics;
use state::State;
use window::Sizing;

use delivery::repair_pending;
pub use delivery::{Output, open_outputs};

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
    /// What the normalizer made of the other rows: `counts.normalized` documents were
    /// delivered, `counts.rejected` rows are not rows (kept in `rejects.ndjson` in the
    /// state directory), and `counts.warnings` values were left out of their documents.
    pub counts: LineCounts,
    /// Of those, rows that only a late sweep caught.
    pub late: u64,
    /// Late sweeps finished in this pass.
    pub sweeps_finished: usize,
    /// Tenants whose sweep is behind: it has been due for longer than `late_sweep_secs`.
    pub sweeps_behind: usize,
    /// SIEM API items received (their documents are in `counts`, their duplicates in
    /// `duplicates`).
    pub items: u64,
    /// Seconds of SIEM streams that could not be read (beyond the API's reach).
    pub gap_secs: u64,
    /// SIEM streams whose collection failed (retried next pass).
    pub streams_failed: usize,
}

impl PassSummary {
    fn add(&mut self, o: &PassSummary) {
        self.rows += o.rows;
        self.duplicates += o.duplicates;
        self.counts.merge(&o.counts);
        self.late += o.late;
        self.sweeps_finished += o.sweeps_finished;
        self.sweeps_behind += o.sweeps_behind;
        self.items += o.items;
        self.gap_secs += o.gap_secs;
        self.streams_failed += o.streams_failed;
    }
}

/// The two lanes of a tenant's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// From the checkpoint to now.
    Live,
    /// The late sweep, over the horizon behind the checkpoint.
    Sweep,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Live => "live",
            Lane::Sweep => "sweep",
        }
    }
}

/// A running collector: client, state, outputs and normalizer.
pub struct Collector {
    config: CollectConfig,
    client: Client,
    state: Mutex<State>,
    outputs: Mutex<Vec<Output>>,
    rejects: Mutex<std::fs::File>,
    normalizer: Normalizer,
    /// The SIEM API streams `[siem] streams` lists, each with its normalizer.
    siem: Vec<streams::StreamLane>,
    metrics: Arc<Metrics>,
    /// Per tenant, the widest window its recent results allow (learned; starts wide).
    spans: Mutex<HashMap<String, Sizing>>,
    /// True once a stop was asked for ([`Collector::stop`]; the binary asks on SIGTERM and Ctrl-C): the
    /// fetches under way are abandoned, the deliveries under way finish and are
    /// committed, and no new window starts.
    stop: tokio::sync::watch::Sender<bool>,
    /// Held for the collector's life: one collector per state directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Opens the state and the sink, and repairs a delivery a crash interrupted. Fails
    /// when another collector runs on the same state directory.
    pub fn open(config: CollectConfig) -> Result<Collector, CollectError> {
        let dir_lock = state::lock_dir(&config.file.state_dir)?;
        let state = State::open(&config.file.state_dir)?;
        let mut outputs = open_outputs(&config, false)?;
        repair_pending(&state, &mut outputs)?;
        let metrics = Arc::new(Metrics::new());
        for t in state.status()? {
            metrics.restore_tenant(&t);
        }
        for s in state.streams()? {
            metrics.restore_stream(&s);
        }
        for o in &outputs {
            metrics.register_output(&o.name);
        }
        let rejects_path = config.file.state_dir.join("rejects.ndjson");
        let rejects = crate::sinks::open_records(&rejects_path)
            .map_err(|e| CollectError::State(e.to_string()))?;
        let profile = Profile::by_name(&config.file.profile).unwrap_or_else(Profile::documented);
        Ok(Collector {
            client: Client::new(&config, Arc::clone(&metrics))?,
            normalizer: Normalizer::new(profile),
            siem: streams::lanes(&config.file.siem.streams),
            state: Mutex::new(state),
            outputs: Mutex::new(outputs),
            rejects: Mutex::new(rejects),
            metrics,
            spans: Mutex::new(HashMap::new()),
            stop: tokio::sync::watch::Sender::new(false),
            _lock: dir_lock,
            config,
        })
    }

    /// The collector's metrics and readiness.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Asks the collector to stop: the fetches under way are abandoned (nothing of them
    /// was committed), the deliveries under way finish, no new window starts, and
    /// [`Collector::run`] returns.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once a stop was asked for.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Returns once a stop is asked for.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        // The sender lives as long as `self`: an error cannot happen while we wait.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Runs `work` unless a stop is asked for first (then `None`: `work` is dropped).
    async fn unless_stopped<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, CollectError>>,
    ) -> Result<Option<T>, CollectError> {
        tokio::select! {
            biased;
            () = self.stopped() => Ok(None),
            r = work => r.map(Some),
        }
    }

    /// Discovers the tenants to collect (whoami, then the tenant listing), filtered by
    /// the allow and deny lists.
    pub async fn discover(&self) -> Result<Vec<Tenant>, CollectError> {
        let principal = self.client.whoami().await?;
        let all = self.client.tenants(&principal).await?;
        let chosen = choose_tenants(all, &self.config.file.tenants);
        tracing::info!(
            kind = principal.kind(),
            tenants = chosen.len(),
            "discovered"
        );
        let state = lock(&self.state);
        for tenant in &chosen {
            state.add_tenant(&tenant.id, &tenant.name)?;
            self.metrics.add_tenant(&tenant.id);
        }
        Ok(chosen)
    }
}

impl Collector {
    /// Runs passes until [`Collector::stop`] is called (the `sophos-tac` binary calls it
    /// on SIGTERM and Ctrl-C; the library installs no signal handler), or once. In service mode the late
    /// sweeps of a pass stop at the next pass's start (`interval_secs`), so that live
    /// windows come first; `once` runs every due sweep to its end.
    pub async fn run(self: Arc<Self>, once: bool) -> Result<PassSummary, CollectError> {
        let interval = Duration::from_secs(self.config.file.query.interval_secs.max(1));
        let endpoint = match self.config.file.service.listen {
            Some(addr) => {
                let listener = service::bind(addr).await?;
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
                Some(tokio::spawn(service::serve(listener, Arc::clone(&self))))
            }
            None => None,
        };
        let result = self.passes(once, interval).await;
        if let Some(endpoint) = endpoint {
            endpoint.abort();
        }
        result
    }

    async fn passes(
        self: &Arc<Self>,
        once: bool,
        interval: Duration,
    ) -> Result<PassSummary, CollectError> {
        loop {
            let next_pass = Instant::now() + interval;
            let deadline = (!once).then_some(next_pass);
            let summary = match self.unless_stopped(self.discover()).await {
                Ok(None) => return Ok(PassSummary::default()),
                Ok(Some(tenants)) => self.pass(&tenants, deadline).await,
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
                delivered = summary.counts.normalized,
                late = summary.late,
                rejected = summary.counts.rejected,
                warnings = summary.counts.warnings.total(),
                sweeps_finished = summary.sweeps_finished,
                sweeps_behind = summary.sweeps_behind,
                items = summary.items,
                gap_secs = summary.gap_secs,
                streams_failed = summary.streams_failed,
                "pass done"
            );
            if once || self.stopping() {
                return Ok(summary);
            }
            // Passes start every interval; the sweeps of a pass stop at the next one's
            // start, so a pass that ran them runs straight into the next.
            tokio::select! {
                _ = tokio::time::sleep_until(next_pass.into()) => {}
                () = self.stopped() => {
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

    /// Every tenant's SIEM streams from the state database.
    pub fn stream_status(
        state_dir: &std::path::Path,
    ) -> Result<Vec<state::StreamStatus>, CollectError> {
        State::open(state_dir)?.streams()
    }
}

/// The tenants the allow and deny lists (ids or names) let through, in their order.
pub fn choose_tenants(all: Vec<Tenant>, lists: &config::TenantsSection) -> Vec<Tenant> {
    let listed = |list: &[String], tenant: &Tenant| {
        list.iter().any(|x| *x == tenant.id || *x == tenant.name)
    };
    all.into_iter()
        .filter(|x| (lists.allow.is_empty() || listed(&lists.allow, x)) && !listed(&lists.deny, x))
        .collect()
}

/// A row's `calendar_time` and how late it reached the Data Lake
/// (`ingestion_timestamp − calendar_time`), when both are RFC 3339 strings; other values
/// (epochs, nulls) leave the part they concern out.
pub fn lateness(row: &str) -> (Option<Timestamp>, Option<SignedDuration>) {
    #[derive(serde::Deserialize)]
    struct Times<'a> {
        #[serde(borrow)]
        calendar_time: Option<&'a RawValue>,
        #[serde(borrow)]
        ingestion_timestamp: Option<&'a RawValue>,
    }
    let Ok(times) = serde_json::from_str::<Times>(row) else {
        return (None, None);
    };
    let time = |raw: Option<&RawValue>| -> Option<Timestamp> {
        crate::value::unquote(raw?.get())?.parse().ok()
    };
    let calendar = time(times.calendar_time);
    let late = time(times.ingestion_timestamp)
        .zip(calendar)
        .map(|(i, c)| i.duration_since(c));
    (calendar, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_reads_rfc3339_times_and_leaves_the_rest_out() {
        let row = r#"{"record_identifier":"r1","calendar_time":"2024-06-01T10:00:00.000Z","ingestion_timestamp":"2024-06-02T10:30:00Z"}"#;
        let (calendar, late) = lateness(row);
        assert_eq!(calendar, "2024-06-01T10:00:00Z".parse().ok());
        assert_eq!(late, Some(SignedDuration::from_mins(24 * 60 + 30)));
        assert_eq!(lateness(r#"{"calendar_time":"not a time"}"#), (None, None));
        assert_eq!(lateness(r#"{"calendar_time":1700000000}"#), (None, None));
        assert_eq!(lateness("[1,2]"), (None, None));
    }
}
