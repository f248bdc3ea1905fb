//! The collector's metrics (Prometheus text format, through `prometheus-client`) and
//! its readiness.
//!
//! Counters of rows are per tenant; `sophos_tac_rows_delivered_total` and
//! `sophos_tac_rows_late_total` start from the totals kept in the state database, so
//! that they count every row the collector ever delivered, across restarts, and their
//! sum equals what the outputs hold. The other counters start at zero with the process.
//! A tenant's lag is computed when it is scraped: now minus its checkpoint.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A tenant label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// The tenant's id.
    pub tenant: String,
}

/// An output label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabel {
    /// The output's name (`[[output]] name`, by default its type).
    pub output: String,
}

/// The labels of a tenant's SIEM API stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The tenant's id.
    pub tenant: String,
    /// `alerts` or `events`.
    pub stream: String,
}

/// The labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Which endpoint: `token`, `whoami`, `tenants`, `query_run`, `query_status`,
    /// `query_results`.
    pub endpoint: String,
    /// The HTTP status, or `error` when there was no answer (connection, timeout).
    pub status: String,
}

/// The label of a retry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `rate_limited` (429), `server_error` (5xx, 408), `transport` (no answer), or
    /// `token_renewal` (401 with a token old enough to have expired).
    pub reason: String,
}

/// What the scrape-time gauges read, per tenant.
#[derive(Debug, Clone, Copy, Default)]
struct TenantTimes {
    checkpoint_ms: Option<i64>,
    last_success_ms: Option<i64>,
}

/// Why the collector is not ready, if it is not.
#[derive(Debug)]
struct Readiness {
    token: Result<(), String>,
    state: Result<(), String>,
}

/// The collector's metrics and readiness. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Rows delivered to every output, per tenant.
    pub rows_delivered: Family<TenantLabel, Counter>,
    /// Rows dropped as already delivered, per tenant.
    pub rows_duplicate: Family<TenantLabel, Counter>,
    /// Rows that are not rows (kept in `rejects.ndjson`), per tenant.
    pub rows_rejected: Family<TenantLabel, Counter>,
    /// Rows that only a late sweep caught, per tenant.
    pub rows_late: Family<TenantLabel, Counter>,
    /// API requests, per endpoint and status.
    pub api_requests: Family<ApiLabels, Counter>,
    /// API retries, per reason.
    pub api_retries: Family<ReasonLabel, Counter>,
    /// Failed tenant lanes, per tenant.
    pub tenant_failures: Family<TenantLabel, Counter>,
    /// Documents each output acknowledged.
    pub output_acknowledged: Family<OutputLabel, Counter>,
    /// Documents each output refused for good or set aside, in its dead-letter file.
    pub output_dead_letter: Family<OutputLabel, Counter>,
    /// How long each output took to acknowledge a window's documents.
    pub output_batch_seconds: Family<OutputLabel, Histogram, fn() -> Histogram>,
    /// SIEM items delivered to every output, per tenant and stream.
    pub siem_delivered: Family<StreamLabels, Counter>,
    /// SIEM items dropped as already delivered, per tenant and stream.
    pub siem_duplicate: Family<StreamLabels, Counter>,
    /// Seconds of a SIEM stream that could not be read (beyond the API's reach).
    pub siem_gap_seconds: Family<StreamLabels, Counter>,
    tenants: std::sync::Arc<Mutex<HashMap<String, TenantTimes>>>,
    /// Per (tenant, stream), how far it is read (ms).
    streams: std::sync::Arc<Mutex<HashMap<(String, String), i64>>>,
    readiness: Mutex<Readiness>,
    /// The delivery under way: its output, when it started, and how long it may take.
    delivering: Mutex<Option<(String, std::time::Instant, Duration)>>,
}

fn batch_histogram() -> Histogram {
    // 1 ms to about 4 minutes.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered, at zero; not ready until a token was obtained.
    pub fn new() -> Metrics {
        let tenants = std::sync::Arc::new(Mutex::new(HashMap::new()));
        let streams = std::sync::Arc::new(Mutex::new(HashMap::new()));
        let mut m = Metrics {
            siem_delivered: Family::default(),
            siem_duplicate: Family::default(),
            siem_gap_seconds: Family::default(),
            streams: std::sync::Arc::clone(&streams),
            rows_delivered: Family::default(),
            rows_duplicate: Family::default(),
            rows_rejected: Family::default(),
            rows_late: Family::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            tenant_failures: Family::default(),
            output_acknowledged: Family::default(),
            output_dead_letter: Family::default(),
            output_batch_seconds: Family::new_with_constructor(batch_histogram),
            tenants: std::sync::Arc::clone(&tenants),
            readiness: Mutex::new(Readiness {
                token: Err("no access token obtained yet".into()),
                state: Ok(()),
            }),
            delivering: Mutex::new(None),
            registry: Registry::default(),
        };
        let families: [(&str, &str, &Family<TenantLabel, Counter>); 5] = [
            (
                "sophos_tac_rows_delivered",
                "Rows delivered to every output, since the state directory was created",
                &m.rows_delivered,
            ),
            (
                "sophos_tac_rows_duplicate",
                "Rows dropped as already delivered, since the process started",
                &m.rows_duplicate,
            ),
            (
                "sophos_tac_rows_rejected",
                "Rows that are not rows (kept in rejects.ndjson), since the process started",
                &m.rows_rejected,
            ),
            (
                "sophos_tac_rows_late",
                "Rows that only the late sweep caught, since the state directory was created",
                &m.rows_late,
            ),
            (
                "sophos_tac_tenant_failures",
                "Tenant lanes that failed (retried next pass)",
                &m.tenant_failures,
            ),
        ];
        let mut registry = Registry::default();
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "sophos_tac_api_requests",
            "Sophos Central API requests, by endpoint and HTTP status (error: no answer)",
            m.api_requests.clone(),
        );
        registry.register(
            "sophos_tac_api_retries",
            "Sophos Central API requests retried, by reason",
            m.api_retries.clone(),
        );
        registry.register(
            "sophos_tac_output_acknowledged",
            "Documents each output acknowledged",
            m.output_acknowledged.clone(),
        );
        registry.register(
            "sophos_tac_output_dead_letter",
            "Documents each output refused for good or set aside, in its dead-letter file",
            m.output_dead_letter.clone(),
        );
        registry.register(
            "sophos_tac_output_batch_seconds",
            "Seconds each output took to acknowledge one window's documents",
            m.output_batch_seconds.clone(),
        );
        let stream_families: [(&str, &str, &Family<StreamLabels, Counter>); 3] = [
            (
                "sophos_tac_siem_items_delivered",
                "SIEM API items delivered to every output, since the state directory was created",
                &m.siem_delivered,
            ),
            (
                "sophos_tac_siem_items_duplicate",
                "SIEM API items dropped as already delivered, since the state directory was created",
                &m.siem_duplicate,
            ),
            (
                "sophos_tac_siem_gap_seconds",
                "Seconds of a SIEM API stream that could not be read: the stream was not drained for longer than the API's 24-hour reach",
                &m.siem_gap_seconds,
            ),
        ];
        for (name, help, family) in stream_families {
            registry.register(name, help, family.clone());
        }
        registry.register_collector(Box::new(TenantGauges(tenants)));
        registry.register_collector(Box::new(StreamGauges(streams)));
        #[cfg(target_os = "linux")]
        registry.register_collector(Box::new(ProcessMetrics));
        m.registry = registry;
        m
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Starts a tenant's series from the state: its totals so far, checkpoint and last
    /// success.
    pub fn restore_tenant(&self, t: &super::state::TenantStatus) {
        let label = tenant(&t.id);
        self.rows_delivered
            .get_or_create(&label)
            .inc_by(t.delivered.max(0) as u64);
        self.rows_late
            .get_or_create(&label)
            .inc_by(t.late.max(0) as u64);
        self.add_tenant(&t.id);
        lock(&self.tenants).insert(
            t.id.clone(),
            TenantTimes {
                checkpoint_ms: t.checkpoint_ms,
                last_success_ms: t.last_run_ms,
            },
        );
    }

    /// Starts a stream's series from the state: its totals so far and when it was drained.
    pub fn restore_stream(&self, s: &super::state::StreamStatus) {
        let label = stream_label(&s.tenant, &s.stream);
        self.siem_delivered
            .get_or_create(&label)
            .inc_by(s.delivered.max(0) as u64);
        self.siem_duplicate
            .get_or_create(&label)
            .inc_by(s.duplicates.max(0) as u64);
        self.siem_gap_seconds
            .get_or_create(&label)
            .inc_by(s.gap_secs.max(0) as u64);
        if let Some(drained) = s.drained_ms {
            self.stream_drained(&s.tenant, &s.stream, drained);
        }
    }

    /// Counts one committed page of a tenant's stream.
    pub fn stream_page(&self, tenant_id: &str, stream: &str, delivered: u64, duplicates: u64) {
        let label = stream_label(tenant_id, stream);
        self.siem_delivered.get_or_create(&label).inc_by(delivered);
        self.siem_duplicate.get_or_create(&label).inc_by(duplicates);
        let _created = self.siem_gap_seconds.get_or_create(&label);
    }

    /// Counts a gap of a tenant's stream.
    pub fn stream_gap(&self, tenant_id: &str, stream: &str, secs: u64) {
        let label = stream_label(tenant_id, stream);
        self.siem_gap_seconds.get_or_create(&label).inc_by(secs);
    }

    /// How far a tenant's stream is read (see [`StreamStatus::drained_ms`](super::state::StreamStatus::drained_ms)).
    pub fn stream_drained(&self, tenant_id: &str, stream: &str, drained_ms: i64) {
        lock(&self.streams).insert((tenant_id.to_string(), stream.to_string()), drained_ms);
    }

    /// Creates a tenant's counters at zero (those it does not have yet), so that they
    /// show before anything happens to it.
    pub fn add_tenant(&self, tenant_id: &str) {
        let label = tenant(tenant_id);
        for family in [
            &self.rows_delivered,
            &self.rows_duplicate,
            &self.rows_rejected,
            &self.rows_late,
            &self.tenant_failures,
        ] {
            let _created = family.get_or_create(&label);
        }
    }

    /// Counts one committed window of a tenant's.
    pub fn window(&self, tenant_id: &str, s: &super::PassSummary) {
        let label = tenant(tenant_id);
        self.rows_delivered
            .get_or_create(&label)
            .inc_by(s.counts.normalized);
        self.rows_duplicate
            .get_or_create(&label)
            .inc_by(s.duplicates);
        self.rows_rejected
            .get_or_create(&label)
            .inc_by(s.counts.rejected);
        self.rows_late.get_or_create(&label).inc_by(s.late);
    }

    /// A tenant's new checkpoint.
    pub fn checkpoint(&self, tenant_id: &str, checkpoint_ms: i64) {
        lock(&self.tenants)
            .entry(tenant_id.to_string())
            .or_default()
            .checkpoint_ms = Some(checkpoint_ms);
    }

    /// A tenant's live lane caught up with now.
    pub fn success(&self, tenant_id: &str) {
        lock(&self.tenants)
            .entry(tenant_id.to_string())
            .or_default()
            .last_success_ms = Some(jiff::Timestamp::now().as_millisecond());
    }

    /// A tenant's lane failed.
    pub fn failure(&self, tenant_id: &str) {
        self.tenant_failures.get_or_create(&tenant(tenant_id)).inc();
    }

    /// One API request's outcome: its status, or `None` when there was no answer.
    pub fn api_request(&self, endpoint: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.api_requests
            .get_or_create(&ApiLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
    }

    /// One API retry.
    pub fn api_retry(&self, reason: &str) {
        self.api_retries
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// One output's delivery of a window: documents acknowledged, new dead-letter
    /// records, and how long it took.
    pub fn output(&self, output: &str, acknowledged: u64, dead_lettered: u64, took: Duration) {
        let label = OutputLabel {
            output: output.to_string(),
        };
        self.output_acknowledged
            .get_or_create(&label)
            .inc_by(acknowledged);
        self.output_dead_letter
            .get_or_create(&label)
            .inc_by(dead_lettered);
        self.output_batch_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Creates an output's series at zero, so that they show before its first delivery.
    pub fn register_output(&self, output: &str) {
        let label = OutputLabel {
            output: output.to_string(),
        };
        let _created = self.output_acknowledged.get_or_create(&label);
        let _created = self.output_dead_letter.get_or_create(&label);
        let _created = self.output_batch_seconds.get_or_create(&label);
    }

    /// Records whether the last token request succeeded (and why not).
    pub fn token_result(&self, result: Result<(), String>) {
        lock(&self.readiness).token = result;
    }

    /// Records whether the last write to the state database succeeded (and why not).
    pub fn state_result(&self, result: Result<(), String>) {
        lock(&self.readiness).state = result;
    }

    /// Records that a delivery to `output`, which may take up to `bound`, started (or,
    /// with `None`, that it ended).
    pub fn delivering(&self, output: Option<(&str, Duration)>) {
        *lock(&self.delivering) =
            output.map(|(name, bound)| (name.to_string(), std::time::Instant::now(), bound));
    }

    /// Why the collector is stuck: a delivery under way for longer than its bound (the
    /// worst case of its timeouts and retries), for `/healthz`; `None` when it is not.
    pub fn stuck(&self) -> Option<String> {
        let d = lock(&self.delivering);
        let (output, started, bound) = d.as_ref()?;
        let took = started.elapsed();
        (took > *bound).then(|| {
            format!(
                "stuck: the delivery to output {output} has been under way for {} s, over its bound of {} s",
                took.as_secs(),
                bound.as_secs()
            )
        })
    }

    /// `Ok` when ready (a token was obtained, the state database takes writes), or
    /// the reason it is not.
    pub fn ready(&self) -> Result<(), String> {
        let r = lock(&self.readiness);
        r.token.clone().and(r.state.clone())
    }
}

fn stream_label(tenant_id: &str, stream: &str) -> StreamLabels {
    StreamLabels {
        tenant: tenant_id.to_string(),
        stream: stream.to_string(),
    }
}

fn tenant(id: &str) -> TenantLabel {
    TenantLabel {
        tenant: id.to_string(),
    }
}

/// `sophos_tac_tenant_lag_seconds` and `sophos_tac_tenant_last_success_timestamp_seconds`,
/// computed at each scrape.
#[derive(Debug)]
struct TenantGauges(std::sync::Arc<Mutex<HashMap<String, TenantTimes>>>);

impl Collector for TenantGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tenants: Vec<(String, TenantTimes)> = {
            let map = lock(&self.0);
            let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let now = jiff::Timestamp::now().as_millisecond();
        type Read = fn(&TenantTimes, i64) -> Option<f64>;
        let gauges: [(&str, &str, Read); 2] = [
            (
                "sophos_tac_tenant_lag_seconds",
                "Now minus the tenant's checkpoint: how far behind its live lane is",
                |t, now| t.checkpoint_ms.map(|c| (now - c) as f64 / 1000.0),
            ),
            (
                "sophos_tac_tenant_last_success_timestamp_seconds",
                "When the tenant's live lane last caught up with now (Unix time)",
                |t, _| t.last_success_ms.map(|s| s as f64 / 1000.0),
            ),
        ];
        for (name, help, read) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (id, times) in &tenants {
                if let Some(v) = read(times, now) {
                    let label = tenant(id);
                    ConstGauge::new(v).encode(metric.encode_family(&label)?)?;
                }
            }
        }
        Ok(())
    }
}

/// `sophos_tac_siem_lag_seconds`, computed at each scrape.
#[derive(Debug)]
struct StreamGauges(std::sync::Arc<Mutex<HashMap<(String, String), i64>>>);

impl Collector for StreamGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut streams: Vec<((String, String), i64)> =
            lock(&self.0).iter().map(|(k, v)| (k.clone(), *v)).collect();
        streams.sort();
        let now = jiff::Timestamp::now().as_millisecond();
        let mut metric = encoder.encode_descriptor(
            "sophos_tac_siem_lag_seconds",
            "Now minus how far the tenant's SIEM stream is read: how far behind it is",
            None,
            MetricType::Gauge,
        )?;
        for ((tenant, stream), drained) in streams {
            let label = StreamLabels { tenant, stream };
            ConstGauge::new((now - drained) as f64 / 1000.0)
                .encode(metric.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// `process_resident_memory_bytes`, `process_cpu_seconds_total` and
/// `process_start_time_seconds`, read from `/proc` at each scrape.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct ProcessMetrics;

#[cfg(target_os = "linux")]
impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                p.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// What `/proc` says of this process.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    start_time_seconds: f64,
}

#[cfg(target_os = "linux")]
fn process_stats() -> Option<ProcessStats> {
    // Linux reports these in USER_HZ ticks, which the kernel fixes at 100 for user space.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // Counting from `state` (field 3 of proc(5)) as 0: utime 11, stime 12, starttime 19.
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    let cpu_seconds = (ticks(11)? + ticks(12)?) / TICKS;
    let boot_time: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let resident_kib: f64 = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: resident_kib * 1024.0,
        start_time_seconds: boot_time + ticks(19)? / TICKS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_labels() {
        let m = Metrics::new();
        let status = crate::collect::state::TenantStatus {
            id: "t1".into(),
            delivered: 40,
            late: 3,
            checkpoint_ms: Some(jiff::Timestamp::now().as_millisecond() - 90_000),
            last_run_ms: Some(1_700_000_000_000),
            ..Default::default()
        };
        m.restore_tenant(&status);
        m.window(
            "t1",
            &crate::collect::PassSummary {
                counts: crate::LineCounts {
                    normalized: 2,
                    ..Default::default()
                },
                duplicates: 5,
                late: 1,
                ..Default::default()
            },
        );
        m.api_request("query_run", Some(429));
        m.api_request("whoami", None);
        m.api_retry("rate_limited");
        m.failure("t1");
        m.register_output("archive");
        m.output("archive", 2, 1, Duration::from_millis(3));
        let text = m.render();
        for line in [
            "sophos_tac_rows_delivered_total{tenant=\"t1\"} 42",
            "sophos_tac_rows_late_total{tenant=\"t1\"} 4",
            "sophos_tac_rows_duplicate_total{tenant=\"t1\"} 5",
            "sophos_tac_rows_rejected_total{tenant=\"t1\"} 0",
            "sophos_tac_tenant_failures_total{tenant=\"t1\"} 1",
            "sophos_tac_api_requests_total{endpoint=\"query_run\",status=\"429\"} 1",
            "sophos_tac_api_requests_total{endpoint=\"whoami\",status=\"error\"} 1",
            "sophos_tac_api_retries_total{reason=\"rate_limited\"} 1",
            "sophos_tac_output_acknowledged_total{output=\"archive\"} 2",
            "sophos_tac_output_dead_letter_total{output=\"archive\"} 1",
            "sophos_tac_output_batch_seconds_count{output=\"archive\"} 1",
            "sophos_tac_tenant_last_success_timestamp_seconds{tenant=\"t1\"} 1700000000",
        ] {
            assert!(text.contains(line), "{line} is not in:\n{text}");
        }
        let lag = text
            .lines()
            .find_map(|l| l.strip_prefix("sophos_tac_tenant_lag_seconds{tenant=\"t1\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a lag");
        assert!((90.0..120.0).contains(&lag), "{lag}");
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} in:\n{text}");
        }
    }

    #[test]
    fn ready_once_a_token_was_obtained_and_while_the_state_takes_writes() {
        let m = Metrics::new();
        assert_eq!(m.ready(), Err("no access token obtained yet".into()));
        m.token_result(Ok(()));
        assert_eq!(m.ready(), Ok(()));
        m.state_result(Err("state: disk I/O error".into()));
        assert_eq!(m.ready(), Err("state: disk I/O error".into()));
        m.state_result(Ok(()));
        m.token_result(Err("the credential was refused".into()));
        assert!(m.ready().is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_stats_are_plausible() {
        let p = process_stats().expect("/proc is readable");
        let now = jiff::Timestamp::now().as_second() as f64;
        assert!(p.start_time_seconds > now - 86_400.0 * 365.0 && p.start_time_seconds <= now + 1.0);
        assert!(p.resident_bytes > 1_000_000.0);
        assert!(p.cpu_seconds >= 0.0);
    }
}
