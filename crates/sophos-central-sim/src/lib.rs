//! `sophos-central-sim`: a local simulator of the Sophos Central APIs that
//! `sophos-tac collect` uses, for tests and demos. It listens on loopback only. A
//! library (tests run it in-process with [`start`]) and a command (`cargo run -p
//! sophos-central-sim -- --help`). It is a workspace member of its own, so that the
//! product does not depend on a web framework.
//!
//! It serves, as documented by Sophos:
//! - `POST /api/v2/oauth2/token` (client credentials; tokens expire after `--token-ttl`);
//! - `GET /whoami/v1` (a tenant, a partner or an organization, `--kind`);
//! - `GET /partner/v1/tenants` and `/organization/v1/tenants`, paged (`page`, `pageSize`);
//! - `POST /xdr-query/v1/queries/runs` (`X-Tenant-ID`), then `GET …/runs/{id}` which goes
//!   `pending` → `started` → `finished` (`result`: `succeeded`, or `failed` for
//!   `--failing-tenant`), and `GET …/runs/{id}/results?pageSize=&pageFromKey=`.
//!
//! - `GET /siem/v1/alerts` and `GET /siem/v1/events` (`X-Tenant-ID`), the SIEM API:
//!   `limit` (200 by default, 1 to 1,000, anything else 400), `cursor` (opaque, from a
//!   previous answer's `next_cursor`), `from_date` (Unix seconds; older than
//!   `--siem-reach-secs` is 400, as the real API refuses one older than 24 h) and
//!   `exclude_types` (comma-separated types); every answer has `items`, `has_more` and
//!   `next_cursor`, empty pages included.
//!
//! SIEM items: per tenant, `--siem-items` events, every fourth of them with an alert of
//! the same id (an alert and its event share it). They become visible (servable) at times
//! spread from `--siem-past-secs` ago to `--siem-future-secs` ahead; a `--siem-late-fraction`
//! of them become visible up to `--siem-late-secs` after their `created_at`. A cursor is
//! a position in the order items became visible, so an item that becomes visible late is
//! still served after it; `from_date` starts at the first item visible at or after it. A
//! cursor carries the time of its position (its last item's, or the request's once the
//! stream is drained); one older than `--siem-reach-secs` is not an error: it is restarted
//! at the oldest time the API serves, and what became visible before that is silently gone,
//! as Sophos documents. A `--siem-repeat-fraction` of pages begin with the previous page's last
//! item again (an item served twice across pages).
//!
//! Rows are generated per tenant, reaching the Data Lake at times spread from
//! `--past-secs` ago to `--future-secs` ahead (so new rows keep arriving). Most rows
//! arrive at their `calendar_time`; a `--late-fraction` of them arrive later than it,
//! by a delay drawn log-uniformly from `--late-min-secs` to `--late-secs` (minutes,
//! hours, days: their `calendar_time` is that much older than their arrival). A row's
//! `ingestion_timestamp` is its arrival. A query for `[from, to)` returns the rows that
//! have arrived and whose `calendar_time` is in it, as the Data Lake selects.
//! `GET …/results?pageTotal=true` adds `pages.total` and `pages.items`.
//!
//! SIEM faults: `--siem-failing-tenant` answers that tenant's SIEM calls with 403 (and
//! the faults below apply to SIEM calls too).
//!
//! Faults: `--throttle-rate` answers that fraction of API calls with 429 and
//! `Retry-After`, `--fail-rate` with 500 or 503, `--drop-rate` closes the connection
//! without an answer, `--slow-ms` delays every answer (tokens too), `--run-polls` makes query runs
//! slow, a `--token-ttl` shorter than the `--announced-ttl` makes tokens expire mid-run
//! (401), and `--api-refuses-tokens` answers 401 to every token it issued.
//!
//! Test hooks: `GET /_sim/rows` lists every row (as JSON text) the simulator holds;
//! `GET /_sim/siem` lists every SIEM item (stream, tenant, id, when it becomes visible);
//! `GET /_sim/stats` counts what it served, with the Data Lake calls (create, poll,
//! results) per tenant in `xdr_calls`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};

/// The simulator's settings (its command-line flags).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sophos-central-sim",
    version,
    about = "A local Sophos Central API simulator (loopback only)"
)]
pub struct Args {
    /// Address to listen on (loopback only; port 0 picks one, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Who the credential is: tenant, partner or organization.
    #[arg(long, default_value = "tenant")]
    pub kind: String,
    /// Number of tenants (for a partner or an organization).
    #[arg(long, default_value_t = 3)]
    pub tenants: usize,
    /// Rows per tenant.
    #[arg(long, default_value_t = 200)]
    pub rows: usize,
    /// The accepted client id.
    #[arg(long, default_value = "demo-client")]
    pub client_id: String,
    /// The accepted client secret.
    #[arg(long, default_value = "demo-secret")]
    pub client_secret: String,
    /// Token lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// The lifetime the token answer announces (`expires_in`), seconds; more than
    /// `--token-ttl` makes tokens expire early, mid-run (default: the real one).
    #[arg(long)]
    pub announced_ttl: Option<u64>,
    /// Oldest row time, seconds before start.
    #[arg(long, default_value_t = 3600)]
    pub past_secs: i64,
    /// Newest row time, seconds after start (rows keep arriving until then).
    #[arg(long, default_value_t = 0)]
    pub future_secs: i64,
    /// Fraction of rows that reach the Data Lake later than their `calendar_time`.
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// The longest delay of a late row, seconds.
    #[arg(long, default_value_t = 30)]
    pub late_secs: i64,
    /// The shortest delay of a late row, seconds (default: `--late-secs`, one delay
    /// for all); delays are drawn log-uniformly between the two.
    #[arg(long)]
    pub late_min_secs: Option<i64>,
    /// Fraction of rows without a `record_identifier`.
    #[arg(long, default_value_t = 0.05)]
    pub no_id_fraction: f64,
    /// Fraction of API calls answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Fraction of API calls answered 500 or 503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fraction of API calls whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// The API answers 401 to every token (the token endpoint still issues them): a
    /// credential without access to the API.
    #[arg(long)]
    pub api_refuses_tokens: bool,
    /// Delay before every answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Polls of a query run before it finishes.
    #[arg(long, default_value_t = 2)]
    pub run_polls: u32,
    /// A tenant index (0-based) whose query runs always fail.
    #[arg(long)]
    pub failing_tenant: Option<usize>,
    /// Tenants per page of the tenant listing.
    #[arg(long, default_value_t = 2)]
    pub tenant_page_size: usize,
    /// Seed of the row generator and the fault injector.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SIEM API events per tenant (every fourth also an alert, with the same id).
    #[arg(long, default_value_t = 40)]
    pub siem_items: usize,
    /// Oldest SIEM item's visibility, seconds before start.
    #[arg(long, default_value_t = 3600)]
    pub siem_past_secs: i64,
    /// Newest SIEM item's visibility, seconds after start (items keep arriving until then).
    #[arg(long, default_value_t = 0)]
    pub siem_future_secs: i64,
    /// Fraction of SIEM items that become visible later than their `created_at`.
    #[arg(long, default_value_t = 0.1)]
    pub siem_late_fraction: f64,
    /// The longest such delay, seconds.
    #[arg(long, default_value_t = 600)]
    pub siem_late_secs: i64,
    /// How far back the SIEM API serves, seconds (the real one: 24 h).
    #[arg(long, default_value_t = 86_400)]
    pub siem_reach_secs: i64,
    /// Fraction of SIEM pages that begin with the previous page's last item again.
    #[arg(long, default_value_t = 0.1)]
    pub siem_repeat_fraction: f64,
    /// A tenant index (0-based) whose SIEM API calls are refused with 403, as Sophos
    /// answers a tenant of another partner, or one with Partner Assistance off.
    #[arg(long)]
    pub siem_failing_tenant: Option<usize>,
}

/// The seeded generator of rows and faults.
struct Rng(fastrand::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn unit(&mut self) -> f64 {
        self.0.f64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(0..n.max(1))
    }
}

struct Row {
    time_ms: i64,
    visible_ms: i64,
    text: String,
}

/// A SIEM API item, with when it becomes visible.
struct Item {
    visible_ms: i64,
    id: String,
    kind: String,
    text: String,
}

/// The two SIEM streams.
const STREAMS: [&str; 2] = ["alerts", "events"];

struct Run {
    tenant: usize,
    polls: u32,
    failed: bool,
    items: Vec<String>,
}

struct Sim {
    args: Args,
    base: String,
    tenants: Vec<String>,
    rows: Vec<Vec<Row>>,
    tokens: HashMap<String, i64>,
    runs: HashMap<String, Run>,
    rng: Rng,
    stats: HashMap<&'static str, u64>,
    /// Data Lake calls per tenant id.
    xdr_calls: HashMap<String, u64>,
    /// SIEM items per stream (alerts, events), then per tenant, in the order they
    /// become visible.
    siem: [Vec<Vec<Item>>; 2],
    /// SIEM API calls per tenant id.
    siem_calls: HashMap<String, u64>,
    next_id: u64,
}

type Shared = Arc<Mutex<Sim>>;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn generate(args: &Args, tenants: &[String], rng: &mut Rng) -> Vec<Vec<Row>> {
    let start = now_ms();
    let hosts = [
        "FIN-WS-0142",
        "DC-PAR-02",
        "web-prod-03",
        "MKT-LT-0077",
        "design-mbp-12",
    ];
    let kinds = [
        (
            "COMPLIANCE-DEP-PERMISSIVE",
            "vulnerability_dep",
            "Vulnerability",
        ),
        (
            "EVENT-4625-Brute-Force-Attempt",
            "windows_event_invalid_logon_brute_force",
            "Threat",
        ),
        (
            "WIN-EXE-PRC-POWERSHELL-ENCODED-1",
            "sophos_runtime_iocs_windows",
            "Threat",
        ),
        (
            "LINUX-REVERSE-SHELL-1",
            "sophos_runtime_detections_linux",
            "Threat",
        ),
    ];
    tenants
        .iter()
        .enumerate()
        .map(|(t, tenant)| {
            (0..args.rows)
                .map(|i| {
                    let span = (args.past_secs + args.future_secs).max(1) * 1000;
                    let visible_ms =
                        start - args.past_secs * 1000 + (rng.below(span as u64) as i64);
                    let time_ms = if rng.unit() < args.late_fraction {
                        let max = args.late_secs.max(1) as f64;
                        let min =
                            args.late_min_secs
                                .unwrap_or(args.late_secs)
                                .clamp(1, args.late_secs.max(1)) as f64;
                        let delay = (min.ln() + rng.unit() * (max.ln() - min.ln())).exp();
                        visible_ms - (delay * 1000.0) as i64
                    } else {
                        visible_ms
                    };
                    let (id, query, kind) = kinds[rng.below(kinds.len() as u64) as usize];
                    let mut row = json!({
                        "calendar_time": iso(time_ms),
                        "ingestion_timestamp": iso(visible_ms),
                        "ioc_severity": 1 + rng.below(9),
                        "ioc_detection_id": id,
                        "ioc_detection_type": kind,
                        "ioc_detection_weight": 1 + rng.below(9),
                        "query_name": query,
                        "meta_hostname": hosts[rng.below(hosts.len() as u64) as usize],
                        "meta_public_ip": format!("198.51.100.{}", 1 + rng.below(254)),
                        "meta_username": format!("user{}", rng.below(50)),
                        "customer_id": tenant,
                        "endpoint_id": format!("endpoint-{t}-{}", rng.below(20)),
                        "counter": i,
                    });
                    if rng.unit() >= args.no_id_fraction {
                        row["record_identifier"] = json!(format!("{tenant}-{i:06}"));
                    }
                    Row {
                        time_ms,
                        visible_ms,
                        text: row.to_string(),
                    }
                })
                .collect()
        })
        .collect()
}

/// SIEM items per stream and tenant, sorted by the time they become visible.
fn generate_siem(args: &Args, tenants: &[String], rng: &mut Rng) -> [Vec<Vec<Item>>; 2] {
    let start = now_ms();
    let hosts = ["FIN-WS-0142", "DC-PAR-02", "web-prod-03", "MKT-LT-0077"];
    let mut alerts = Vec::new();
    let mut events = Vec::new();
    for (t, tenant) in tenants.iter().enumerate() {
        let (mut a, mut e) = (Vec::new(), Vec::new());
        for i in 0..args.siem_items {
            let span = (args.siem_past_secs + args.siem_future_secs).max(1) * 1000;
            let visible_ms = start - args.siem_past_secs * 1000 + rng.below(span as u64) as i64;
            let created_ms = if rng.unit() < args.siem_late_fraction {
                visible_ms - rng.below(args.siem_late_secs.max(1) as u64 * 1000) as i64
            } else {
                visible_ms - rng.below(3000) as i64
            };
            let when_ms = created_ms - rng.below(5000) as i64;
            let id = format!("{:08x}-{:04x}-4000-8000-{:012x}", args.seed, t, i);
            let host = hosts[rng.below(hosts.len() as u64) as usize];
            let ip = format!("10.{t}.{}.{}", rng.below(255), 1 + rng.below(254));
            let user = format!("CORP\\user{}", rng.below(50));
            let endpoint = format!("endpoint-{t}-{}", rng.below(20));
            let (kind, name, severity, group) = match i % 4 {
                0 => (
                    "Event::Endpoint::Threat::CleanedUp",
                    format!(
                        "Malware cleaned up: 'Troj/Agent-{i}' at 'C:\\Users\\Public\\x{i}.exe'"
                    ),
                    "medium",
                    "MALWARE",
                ),
                1 => (
                    "Event::Endpoint::UpdateSuccess",
                    "Update succeeded".to_string(),
                    "low",
                    "UPDATING",
                ),
                2 => (
                    "Event::Endpoint::WebControlViolation",
                    format!("Website 'site{i}.example' blocked"),
                    "low",
                    "WEB",
                ),
                _ => (
                    "Event::Endpoint::Threat::IpsInboundDetection",
                    format!(
                        "Malicious inbound network traffic blocked from remote computer at 203.0.113.{}",
                        1 + i % 250
                    ),
                    "high",
                    "RUNTIME_DETECTIONS",
                ),
            };
            let event = json!({
                "id": id, "type": kind, "name": name, "severity": severity, "group": group,
                "when": iso(when_ms), "created_at": iso(created_ms), "customer_id": tenant,
                "endpoint_id": endpoint, "endpoint_type": "computer", "location": host,
                "source": user, "source_info": { "ip": ip },
            });
            e.push(Item {
                visible_ms,
                id: id.clone(),
                kind: kind.to_string(),
                text: event.to_string(),
            });
            if i % 4 == 0 {
                let alert = json!({
                    "id": id, "event_service_event_id": id, "type": kind, "description": name,
                    "severity": severity, "when": iso(when_ms), "created_at": iso(created_ms),
                    "customer_id": tenant, "location": host, "source": user,
                    "threat": format!("Troj/Agent-{i}"), "threat_cleanable": true,
                    "data": { "endpoint_id": endpoint, "endpoint_platform": "windows", "endpoint_type": "computer",
                              "source_info": { "ip": ip }, "created_at": created_ms, "inserted_at": created_ms },
                });
                a.push(Item {
                    visible_ms,
                    id,
                    kind: kind.to_string(),
                    text: alert.to_string(),
                });
            }
        }
        a.sort_by_key(|x| x.visible_ms);
        e.sort_by_key(|x| x.visible_ms);
        alerts.push(a);
        events.push(e);
    }
    [alerts, events]
}

/// A cursor: the time of its position (when the last item it passed became visible, or
/// where it started; the request's time once drained) and how many items of the stream
/// it has passed. As Sophos's, it ages by that time: a cursor whose position is older than
/// the reach is stale.
fn encode_cursor(time_ms: i64, position: usize) -> String {
    format!("V2_CURSOR|{time_ms}|{position}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(cursor: &str) -> Option<(i64, usize)> {
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split('|');
    (parts.next()? == "V2_CURSOR").then_some(())?;
    let issued = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some((issued, position))
}

/// Serves the simulator on `listener` until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    args: Args,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let mut rng = Rng(fastrand::Rng::with_seed(args.seed));
    let n = if args.kind == "tenant" {
        1
    } else {
        args.tenants
    };
    let tenants: Vec<String> = (0..n)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", args.seed, i))
        .collect();
    let rows = generate(&args, &tenants, &mut rng);
    let siem = generate_siem(&args, &tenants, &mut rng);
    let sim = Sim {
        siem,
        siem_calls: HashMap::new(),
        args,
        base,
        tenants,
        rows,
        tokens: HashMap::new(),
        runs: HashMap::new(),
        rng,
        stats: HashMap::new(),
        xdr_calls: HashMap::new(),
        next_id: 0,
    };
    let app = Router::new()
        .route("/api/v2/oauth2/token", post(token))
        .route("/whoami/v1", get(whoami))
        .route("/partner/v1/tenants", get(tenants_page))
        .route("/organization/v1/tenants", get(tenants_page))
        .route("/xdr-query/v1/queries/runs", post(create_run))
        .route("/xdr-query/v1/queries/runs/{id}", get(run_status))
        .route("/xdr-query/v1/queries/runs/{id}/results", get(run_results))
        .route("/siem/v1/{stream}", get(siem_page))
        .route("/_sim/rows", get(all_rows))
        .route("/_sim/siem", get(all_siem))
        .route("/_sim/stats", get(stats))
        .with_state(Arc::new(Mutex::new(sim)));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// A simulator running on a thread of its own; stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a simulator on 127.0.0.1 (a free port unless `--addr` names one) with these
/// command-line flags, on a thread of its own.
pub fn start(flags: &[&str]) -> Result<Running, String> {
    let args =
        Args::try_parse_from(std::iter::once("sophos-central-sim").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
    if !args.addr.ip().is_loopback() {
        return Err("the simulator listens on loopback only".into());
    }
    let listener = std::net::TcpListener::bind(args.addr).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("sophos-central-sim".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = serve(listener, args, async {
                    let _ = stopped.await;
                })
                .await;
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(Running {
        url,
        stop: Some(stop),
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": status.canonical_reason(), "message": message })),
    )
        .into_response()
}

/// Common checks of an API call: delay, injected faults, bearer token.
async fn gate(state: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let slow = state.lock().map(|s| s.args.slow_ms).unwrap_or(0);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    let mut s = state
        .lock()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "poisoned"))?;
    *s.stats.entry("requests").or_default() += 1;
    if s.rng.unit() < s.args.drop_rate {
        *s.stats.entry("dropped").or_default() += 1;
        drop(s);
        // Unwinding out of the handler ends the connection's task: the socket closes
        // with no answer. `resume_unwind` skips the panic hook, so nothing is printed.
        std::panic::resume_unwind(Box::new("connection dropped"));
    }
    let (throttle, fail) = (s.args.throttle_rate, s.args.fail_rate);
    if s.rng.unit() < throttle {
        *s.stats.entry("429").or_default() += 1;
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        r.headers_mut()
            .insert("Retry-After", "1".parse().expect("a header value"));
        return Err(r);
    }
    if s.rng.unit() < fail {
        let status = if s.rng.below(2) == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        *s.stats.entry("5xx").or_default() += 1;
        return Err(error(status, "injected failure"));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| s.tokens.get(t)) {
        Some(_) if s.args.api_refuses_tokens => {
            *s.stats.entry("401_refused").or_default() += 1;
            Err(error(
                StatusCode::UNAUTHORIZED,
                "this credential has no access",
            ))
        }
        Some(&expiry) if expiry > now_ms() => Ok(()),
        Some(_) => {
            *s.stats.entry("401_expired").or_default() += 1;
            Err(error(StatusCode::UNAUTHORIZED, "token expired"))
        }
        None => {
            *s.stats.entry("401").or_default() += 1;
            Err(error(StatusCode::UNAUTHORIZED, "unauthorized"))
        }
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
}

async fn token(State(state): State<Shared>, Form(form): Form<TokenForm>) -> Response {
    let slow = state.lock().map(|s| s.args.slow_ms).unwrap_or(0);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    let mut s = state.lock().expect("sim state");
    *s.stats.entry("tokens").or_default() += 1;
    if form.grant_type != "client_credentials" || form.scope.as_deref() != Some("token") {
        return error(StatusCode::BAD_REQUEST, "unsupported grant");
    }
    if form.client_id != s.args.client_id || form.client_secret != s.args.client_secret {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "errorCode": "customer.validation", "message": "Invalid client credentials" }))).into_response();
    }
    s.next_id += 1;
    let nonce = s.rng.next();
    let token = format!("tok-{}-{nonce:x}", s.next_id);
    let ttl = s.args.token_ttl;
    s.tokens.insert(token.clone(), now_ms() + ttl as i64 * 1000);
    let announced = s.args.announced_ttl.unwrap_or(ttl);
    Json(json!({ "access_token": token, "errorCode": "success", "expires_in": announced, "message": "OK", "token_type": "bearer", "trackingId": "sim" })).into_response()
}

async fn whoami(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let s = state.lock().expect("sim state");
    let id = match s.args.kind.as_str() {
        "tenant" => s.tenants[0].clone(),
        _ => format!("{}-{}", s.args.kind, s.args.seed),
    };
    let mut hosts = json!({ "global": s.base });
    if s.args.kind == "tenant" {
        hosts["dataRegion"] = json!(s.base);
    }
    Json(json!({ "id": id, "idType": s.args.kind, "apiHosts": hosts })).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
}

async fn tenants_page(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let s = state.lock().expect("sim state");
    let header = if s.args.kind == "partner" {
        "x-partner-id"
    } else {
        "x-organization-id"
    };
    if headers.get(header).and_then(|v| v.to_str().ok())
        != Some(&format!("{}-{}", s.args.kind, s.args.seed))
    {
        return error(
            StatusCode::FORBIDDEN,
            "missing or wrong partner/organization id",
        );
    }
    let size = q
        .page_size
        .unwrap_or(100)
        .min(s.args.tenant_page_size)
        .max(1);
    let page = q.page.unwrap_or(1).max(1);
    let total = s.tenants.len().div_ceil(size);
    let items: Vec<Value> = s
        .tenants
        .iter()
        .enumerate()
        .skip((page - 1) * size)
        .take(size)
        .map(|(i, id)| json!({ "id": id, "name": format!("Tenant {i}"), "dataRegion": "eu01", "dataGeography": "EU", "apiHost": s.base, "status": "active" }))
        .collect();
    Json(json!({ "pages": { "current": page, "size": size, "total": total, "items": s.tenants.len(), "maxSize": 100 }, "items": items })).into_response()
}

#[derive(Deserialize)]
struct RunRequest {
    #[serde(rename = "adHocQuery")]
    ad_hoc_query: Value,
    from: String,
    to: String,
}

/// Counts a Data Lake call against the tenant it names (whatever its answer).
fn count_xdr(state: &Shared, headers: &HeaderMap) {
    let tenant = headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if let Ok(mut s) = state.lock() {
        *s.xdr_calls.entry(tenant).or_default() += 1;
    }
}

fn tenant_index(s: &Sim, headers: &HeaderMap) -> Option<usize> {
    let id = headers.get("x-tenant-id")?.to_str().ok()?;
    s.tenants.iter().position(|t| t == id)
}

async fn create_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<RunRequest>,
) -> Response {
    count_xdr(&state, &headers);
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let mut s = state.lock().expect("sim state");
    let Some(tenant) = tenant_index(&s, &headers) else {
        return error(StatusCode::BAD_REQUEST, "missing or unknown X-Tenant-ID");
    };
    if req
        .ad_hoc_query
        .get("template")
        .and_then(Value::as_str)
        .is_none()
    {
        return error(StatusCode::BAD_REQUEST, "adHocQuery.template is required");
    }
    let parse = |t: &str| t.parse::<jiff::Timestamp>().map(|t| t.as_millisecond());
    let (Ok(from), Ok(to)) = (parse(&req.from), parse(&req.to)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "from and to must be RFC 3339 times",
        );
    };
    let now = now_ms();
    let items: Vec<String> = s.rows[tenant]
        .iter()
        .filter(|r| r.time_ms >= from && r.time_ms < to && r.visible_ms <= now)
        .map(|r| r.text.clone())
        .collect();
    s.next_id += 1;
    let id = format!("run-{:06}", s.next_id);
    let failed = s.args.failing_tenant == Some(tenant);
    *s.stats.entry("runs").or_default() += 1;
    s.runs.insert(
        id.clone(),
        Run {
            tenant,
            polls: 0,
            failed,
            items,
        },
    );
    (StatusCode::CREATED, Json(json!({ "id": id, "status": "pending", "result": "notAvailable", "createdAt": iso(now) }))).into_response()
}

async fn run_status(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    count_xdr(&state, &headers);
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let mut s = state.lock().expect("sim state");
    let tenant = tenant_index(&s, &headers);
    let needed = s.args.run_polls;
    let Some(run) = s.runs.get_mut(&id).filter(|r| Some(r.tenant) == tenant) else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    run.polls += 1;
    let (status, result) = match run.polls {
        p if p >= needed && run.failed => ("finished", "failed"),
        p if p >= needed => ("finished", "succeeded"),
        1 => ("pending", "notAvailable"),
        _ => ("started", "notAvailable"),
    };
    Json(json!({ "id": id, "status": status, "result": result })).into_response()
}

#[derive(Deserialize)]
struct ResultsQuery {
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
    #[serde(rename = "pageFromKey")]
    page_from_key: Option<String>,
    #[serde(rename = "pageTotal")]
    page_total: Option<bool>,
}

async fn run_results(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Response {
    count_xdr(&state, &headers);
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let s = state.lock().expect("sim state");
    let tenant = tenant_index(&s, &headers);
    let Some(run) = s.runs.get(&id).filter(|r| Some(r.tenant) == tenant) else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    if run.polls < s.args.run_polls {
        return error(StatusCode::CONFLICT, "run not finished");
    }
    let size = q.page_size.unwrap_or(50).clamp(1, 2000);
    let start: usize = match q.page_from_key.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(k)) => k,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "bad pageFromKey"),
    };
    let page: Vec<Value> = run
        .items
        .iter()
        .skip(start)
        .take(size)
        .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
        .collect();
    let mut pages = json!({ "fromKey": start.to_string(), "size": page.len(), "maxSize": 2000 });
    if q.page_total == Some(true) {
        pages["total"] = json!(run.items.len().div_ceil(size));
        pages["items"] = json!(run.items.len());
    }
    if start + size < run.items.len() {
        pages["nextKey"] = json!((start + size).to_string());
    }
    Json(json!({ "pages": pages, "items": page })).into_response()
}

async fn all_rows(State(state): State<Shared>) -> Response {
    let s = state.lock().expect("sim state");
    let rows: Vec<&str> = s.rows.iter().flatten().map(|r| r.text.as_str()).collect();
    Json(json!({ "rows": rows, "last_visible_ms": s.rows.iter().flatten().map(|r| r.visible_ms).max() })).into_response()
}

async fn stats(State(state): State<Shared>) -> Response {
    let s = state.lock().expect("sim state");
    let mut stats = json!(s.stats);
    stats["xdr_calls"] = json!(s.xdr_calls);
    stats["siem_calls"] = json!(s.siem_calls);
    Json(stats).into_response()
}

#[derive(Deserialize)]
struct SiemQuery {
    limit: Option<String>,
    cursor: Option<String>,
    from_date: Option<String>,
    exclude_types: Option<String>,
    from_date_offset_minutes: Option<String>,
}

async fn siem_page(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(stream): Path<String>,
    Query(q): Query<SiemQuery>,
) -> Response {
    let tenant_id = headers
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    if let Ok(mut s) = state.lock() {
        *s.siem_calls.entry(tenant_id).or_default() += 1;
    }
    if let Err(r) = gate(&state, &headers).await {
        return r;
    }
    let mut s = state.lock().expect("sim state");
    let Some(which) = STREAMS.iter().position(|x| *x == stream) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    let Some(tenant) = tenant_index(&s, &headers) else {
        // The SIEM API answers a missing or wrong X-Tenant-ID with 401.
        return error(StatusCode::UNAUTHORIZED, "missing or unknown X-Tenant-ID");
    };
    if s.args.siem_failing_tenant == Some(tenant) {
        *s.stats.entry("siem_403").or_default() += 1;
        return error(
            StatusCode::FORBIDDEN,
            "Partner Assistance is off for this tenant",
        );
    }
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 200,
        Some(Ok(n @ 1..=1000)) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 1000"),
    };
    let now = now_ms();
    let reach_start = now - s.args.siem_reach_secs * 1000;
    let items = &s.siem[which][tenant];
    let first_visible_from = |from_ms: i64| items.partition_point(|i| i.visible_ms < from_ms);
    let (mut start, mut position_ms) = match (&q.cursor, &q.from_date) {
        (Some(cursor), _) => match decode_cursor(cursor) {
            // A stale cursor is restarted at the oldest time served, without a word.
            Some((time, _)) if time < reach_start => (first_visible_from(reach_start), reach_start),
            Some((time, position)) => (position.min(items.len()), time),
            None => return error(StatusCode::BAD_REQUEST, "bad cursor"),
        },
        (None, Some(from)) => match from.parse::<i64>() {
            Ok(secs) if secs * 1000 < reach_start => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "from_date must be within the last 24 hours",
                );
            }
            Ok(secs) => (first_visible_from(secs * 1000), secs * 1000),
            Err(_) => return error(StatusCode::BAD_REQUEST, "from_date must be Unix seconds"),
        },
        (None, None) => (first_visible_from(reach_start), reach_start),
    };
    let excluded: Vec<&str> = q
        .exclude_types
        .as_deref()
        .map(|t| t.split(',').collect())
        .unwrap_or_default();
    // `from_date_offset_minutes`: items of the last minutes are held back.
    let held_back = match q.from_date_offset_minutes.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(m @ 0..=1440)) => m * 60_000,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "from_date_offset_minutes must be 0 to 1440",
            );
        }
    };
    let visible = items.partition_point(|i| i.visible_ms <= now - held_back);
    // Sometimes the page begins with the last item of the page before it again.
    let repeat = start > 0 && start <= visible && q.cursor.is_some() && {
        let r = s.args.siem_repeat_fraction;
        s.rng.unit() < r
    };
    let items = &s.siem[which][tenant];
    let mut page: Vec<Value> = Vec::new();
    if repeat {
        page.push(serde_json::from_str(&items[start - 1].text).unwrap_or(Value::Null));
    }
    while start < visible && page.len() < limit {
        let item = &items[start];
        if !excluded.contains(&item.kind.as_str()) {
            page.push(serde_json::from_str(&item.text).unwrap_or(Value::Null));
        }
        position_ms = position_ms.max(item.visible_ms);
        start += 1;
    }
    let has_more = start < visible;
    *s.stats.entry("siem_pages").or_default() += 1;
    // A drained stream's cursor is at the request's time; one behind, at its last item's.
    if !has_more {
        position_ms = now - held_back;
    }
    Json(json!({ "items": page, "has_more": has_more, "next_cursor": encode_cursor(position_ms, start) }))
        .into_response()
}

async fn all_siem(State(state): State<Shared>) -> Response {
    let s = state.lock().expect("sim state");
    let mut out = json!({});
    for (which, stream) in STREAMS.iter().enumerate() {
        let items: Vec<Value> = s.siem[which]
            .iter()
            .enumerate()
            .flat_map(|(t, items)| {
                let tenant = s.tenants[t].clone();
                items.iter().map(
                    move |i| json!({ "tenant": tenant, "id": i.id, "visible_ms": i.visible_ms }),
                )
            })
            .collect();
        out[*stream] = json!(items);
    }
    Json(out).into_response()
}
