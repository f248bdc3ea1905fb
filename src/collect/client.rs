//! The Sophos Central API client: OAuth2 token, whoami, tenants, XDR Data Lake
//! queries; with a per-credential rate limit and a retry policy.
//!
//! Retry policy: a 429 waits for `Retry-After` (or backs off) and retries; 5xx,
//! connection errors and timeouts back off exponentially with jitter and retry; a 401
//! is judged by the age of the token it refused: an old one (it may have expired during
//! a long `Retry-After` or rate-limit wait) is renewed and the request retried, while a
//! token renewed for this very request and refused within [`FRESH_TOKEN`] fails at
//! once (the credential is refused); any other 4xx fails at once. After `max_retries`
//! retries, or `max_retries` token renewals (counted apart, so that tokens expiring
//! during the backoff of other retries do not spend the retries), the request fails.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::collect::CollectError;
use crate::collect::config::{CollectConfig, Secret};
use crate::collect::metrics::Metrics;

/// Who the credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A single tenant, with its data region URL.
    Tenant {
        /// Tenant id.
        id: String,
        /// Data region API host.
        data_region: String,
    },
    /// A partner (many tenants).
    Partner(String),
    /// An organization (many tenants).
    Organization(String),
}

impl Principal {
    /// `tenant`, `partner` or `organization`.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Tenant { .. } => "tenant",
            Principal::Partner(_) => "partner",
            Principal::Organization(_) => "organization",
        }
    }
}

/// A tenant to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its API host (data region).
    pub api_host: String,
}

/// A token younger than this when it was sent, renewed for the request it was refused
/// on, means the credential itself is refused: no further renewal is tried.
pub const FRESH_TOKEN: Duration = Duration::from_secs(1);

/// What a Data Lake query over one window returned.
#[derive(Debug)]
pub enum Fetched {
    /// Every row of the window, from every page.
    Rows(Vec<Box<RawValue>>),
    /// The window holds more rows than its budget: split it. `total` is the run's row
    /// count when the API gave it (`pages.items`, asked for with `pageTotal=true`).
    TooMany {
        /// The run's row count, when known.
        total: Option<u64>,
    },
}

/// Where a SIEM API page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiemStart<'a> {
    /// After the items a cursor (a previous page's `next_cursor`) passed.
    Cursor(&'a str),
    /// At this time (Unix seconds): the first run, at most 24 hours back.
    FromDate(i64),
}

/// One page of a SIEM API stream.
#[derive(Debug, Deserialize)]
pub struct SiemPage {
    /// The items, as the API wrote them.
    pub items: Vec<Box<RawValue>>,
    /// True when another page is ready now.
    #[serde(default)]
    pub has_more: bool,
    /// Where the next page starts (every answer has one, the API says).
    pub next_cursor: Option<String>,
}

/// A token and when it was obtained.
#[derive(Clone)]
struct Token {
    value: String,
    obtained: Instant,
    renew_at: Instant,
}

/// Shows when, never the token itself.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"***")
            .field("obtained", &self.obtained)
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

/// Limits requests to N per window, for several windows at once.
#[derive(Debug)]
struct RateLimiter {
    windows: Vec<(Duration, u32, VecDeque<Instant>)>,
}

impl RateLimiter {
    fn new(limits: &[(Duration, u32)]) -> RateLimiter {
        RateLimiter {
            windows: limits
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|&(d, n)| (d, n, VecDeque::new()))
                .collect(),
        }
    }

    /// How long to wait before the next request may go; records it when zero.
    fn try_acquire(&mut self, now: Instant) -> Duration {
        let mut wait = Duration::ZERO;
        for (span, max, sent) in &mut self.windows {
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= *span)
            {
                sent.pop_front();
            }
            if let Some(oldest) = sent.front().filter(|_| sent.len() >= *max as usize) {
                wait = wait.max(*span - now.duration_since(*oldest));
            }
        }
        if wait.is_zero() {
            for (_, _, sent) in &mut self.windows {
                sent.push_back(now);
            }
        }
        wait
    }
}

/// The largest answer body read (a results page of 2,000 large rows fits easily).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// An HTTP method the APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// What a request carries.
#[derive(Debug)]
enum Payload {
    Empty,
    Json(Vec<u8>),
    Form(Vec<(&'static str, String)>),
}

/// One HTTP answer: status, `Retry-After`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn text(&self) -> String {
        excerpt(&String::from_utf8_lossy(&self.body))
    }
}

/// The client. One per credential; shared by the tenant tasks.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    auth_url: String,
    global_url: String,
    client_id: String,
    secret: Secret,
    /// The token, when it was obtained and when to renew it (before it expires).
    token: Mutex<Option<Token>>,
    limiter: Mutex<RateLimiter>,
    max_retries: u32,
    metrics: std::sync::Arc<Metrics>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl Client {
    /// A client for the configured credential (TLS verified by rustls), counting its
    /// requests and retries in `metrics`.
    pub fn new(
        config: &CollectConfig,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Client, CollectError> {
        let l = &config.file.limits;
        let agent = crate::http::agent(
            None,
            Duration::from_secs(10),
            Duration::from_secs(l.request_timeout_secs.max(1)),
        )
        .map_err(|e| CollectError::Config(format!("HTTP client: {e}")))?;
        let limiter = RateLimiter::new(&[
            (Duration::from_secs(1), l.per_second),
            (Duration::from_secs(60), l.per_minute),
            (Duration::from_secs(3600), l.per_hour),
            (Duration::from_secs(86_400), l.per_day),
        ]);
        Ok(Client {
            agent,
            auth_url: config.file.auth_url.clone(),
            global_url: config.file.global_url.trim_end_matches('/').to_string(),
            client_id: config.file.client_id.clone(),
            secret: config.secret.clone(),
            token: Mutex::new(None),
            limiter: Mutex::new(limiter),
            max_retries: l.max_retries,
            metrics,
        })
    }

    /// The metrics label of a URL this client calls.
    fn endpoint(&self, url: &str) -> &'static str {
        if url == self.auth_url {
            "token"
        } else if url.ends_with("/whoami/v1") {
            "whoami"
        } else if url.ends_with("/tenants") {
            "tenants"
        } else if url.ends_with("/results") {
            "query_results"
        } else if url.ends_with("/queries/runs") {
            "query_run"
        } else if url.contains("/queries/runs/") {
            "query_status"
        } else if url.ends_with("/siem/v1/alerts") {
            "siem_alerts"
        } else if url.ends_with("/siem/v1/events") {
            "siem_events"
        } else {
            "other"
        }
    }

    /// Counts a retry, by its reason.
    fn retrying(&self, status: Option<u16>) {
        self.metrics.api_retry(match status {
            Some(429) => "rate_limited",
            Some(401) => "token_renewal",
            Some(_) => "server_error",
            None => "transport",
        });
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = 0.5 * 2f64.powi(attempt.min(6) as i32);
        Duration::from_secs_f64(base.min(30.0) * (0.5 + fastrand::f64()))
    }

    async fn throttle(&self) {
        loop {
            let wait = self.limiter.lock().await.try_acquire(Instant::now());
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Obtains an access token (or checks the one held is still valid): the first
    /// step of `--check`.
    pub async fn authenticate(&self) -> Result<(), CollectError> {
        self.token(false).await.map(|_| ())
    }

    /// A valid access token, fetched or renewed as needed: a minute (at most a quarter
    /// of its lifetime) before it expires, or when `force`d after a 401.
    async fn token(&self, force: bool) -> Result<Token, CollectError> {
        let mut guard = self.token.lock().await;
        if let Some(token) = guard.as_ref()
            && !force
            && Instant::now() < token.renew_at
        {
            return Ok(token.clone());
        }
        let mut attempt = 0;
        let response = loop {
            self.throttle().await;
            let form = vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", self.client_id.clone()),
                ("client_secret", self.secret.expose().to_string()),
                ("scope", "token".to_string()),
            ];
            let sent = self
                .exchange(Method::Post, &self.auth_url, &[], &[], Payload::Form(form))
                .await;
            match sent {
                Ok(r) if r.ok() => break r,
                Ok(r) if retryable(r.status) && attempt < self.max_retries => {
                    self.retrying(Some(r.status));
                    tokio::time::sleep(r.retry_after.unwrap_or_else(|| self.backoff(attempt)))
                        .await;
                }
                Ok(r) => {
                    let refused = if matches!(r.status, 400 | 401 | 403) {
                        ": the credential was refused (check client_id and the client secret)"
                    } else {
                        ""
                    };
                    let message = format!(
                        "{}: HTTP {}{refused}: {}",
                        self.auth_url,
                        r.status,
                        r.text()
                    );
                    self.metrics.token_result(Err(message.clone()));
                    return Err(CollectError::Auth(message));
                }
                Err(e) if attempt < self.max_retries => {
                    tracing::warn!(url = %self.auth_url, error = %e, attempt, "token request failed; retrying");
                    self.retrying(None);
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => {
                    let message = format!("{}: {e}", self.auth_url);
                    self.metrics.token_result(Err(message.clone()));
                    return Err(CollectError::Auth(message));
                }
            }
            attempt += 1;
        };
        let body: TokenResponse = serde_json::from_slice(&response.body).map_err(|e| {
            CollectError::Auth(format!("{}: bad token response: {e}", self.auth_url))
        })?;
        let ttl = token_lifetime(body.expires_in);
        let margin = Duration::from_secs(60).min(ttl / 4);
        let now = Instant::now();
        let token = Token {
            value: body.access_token,
            obtained: now,
            renew_at: now + ttl - margin,
        };
        *guard = Some(token.clone());
        self.metrics.token_result(Ok(()));
        tracing::debug!(expires_in = ttl.as_secs(), "new access token");
        Ok(token)
    }

    /// Sends one API request with the rate limit, the retry policy and the token.
    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, CollectError> {
        let mut attempt = 0;
        // Token renewals after a 401 have a budget of their own: with tokens that expire
        // during the backoff of other retries, each retry would otherwise spend two.
        let mut renewals = 0;
        // After a 401: fetch a new token for the next try.
        let mut renew = false;
        loop {
            // Wait for the rate limit first, then take the token, so that a renewed
            // token is sent the moment it arrives.
            self.throttle().await;
            let token = self.token(renew).await?;
            let renewed = std::mem::take(&mut renew);
            let age = token.obtained.elapsed();
            let mut all_headers: Vec<(&str, String)> =
                vec![("Authorization", format!("Bearer {}", token.value))];
            all_headers.extend(headers.iter().map(|(k, v)| (*k, (*v).to_string())));
            let payload = match body {
                Some(b) => Payload::Json(serde_json::to_vec(b).unwrap_or_default()),
                None => Payload::Empty,
            };
            match self
                .exchange(method, url, &all_headers, query, payload)
                .await
            {
                Ok(r) if r.ok() => return Ok(r.body),
                Ok(r) if r.status == 401 => {
                    if renewed && age < FRESH_TOKEN {
                        let message = format!(
                            "{url}: HTTP 401 for a token obtained {} ms before: the API refuses this credential",
                            age.as_millis()
                        );
                        self.metrics.token_result(Err(message.clone()));
                        return Err(CollectError::Auth(message));
                    }
                    if renewals >= self.max_retries {
                        return Err(CollectError::Auth(format!(
                            "{url}: HTTP 401 after {renewals} token renewals"
                        )));
                    }
                    renewals += 1;
                    tracing::info!(
                        url,
                        token_age_ms = age.as_millis() as u64,
                        "401: fetching a new token"
                    );
                    self.retrying(Some(401));
                    renew = true;
                    continue;
                }
                Ok(r) if retryable(r.status) && attempt < self.max_retries => {
                    let wait = r.retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(
                        url,
                        status = r.status,
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "retrying"
                    );
                    self.retrying(Some(r.status));
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => {
                    return Err(CollectError::Http {
                        url: url.to_string(),
                        status: r.status,
                        body: r.text(),
                    });
                }
                Err(e) if attempt < self.max_retries => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(url, error = %e, attempt, "request failed; retrying");
                    self.retrying(None);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(CollectError::Transport(format!("{url}: {e}"))),
            }
            attempt += 1;
        }
    }

    /// One HTTP exchange, run on Tokio's blocking pool (ureq is synchronous): the
    /// answer whatever its status, or why there is none (connection, timeout, body).
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        query: &[(&str, String)],
        payload: Payload,
    ) -> Result<Answer, String> {
        let agent = self.agent.clone();
        let endpoint = self.endpoint(url);
        let url = url.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let run = move || -> Result<Answer, ureq::Error> {
            let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let response = match method {
                Method::Get => {
                    let mut req = agent.get(&url).query_pairs(pairs);
                    for (k, v) in &headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    req.call()
                }
                Method::Post => {
                    let mut req = agent.post(&url).query_pairs(pairs);
                    for (k, v) in &headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    match &payload {
                        Payload::Empty => req.send_empty(),
                        Payload::Json(b) => {
                            req.header("Content-Type", "application/json").send(&b[..])
                        }
                        Payload::Form(f) => req.send_form(f.iter().map(|(k, v)| (*k, v.as_str()))),
                    }
                }
            }?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after);
            let body = response
                .into_body()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()?;
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        let answer = match tokio::task::spawn_blocking(run).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the request's thread failed: {e}")),
        };
        let status = answer.as_ref().ok().map(|a| a.status);
        self.metrics.api_request(endpoint, status);
        answer
    }

    async fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        query: &[(&str, String)],
    ) -> Result<Value, CollectError> {
        let bytes = self.request(Method::Get, url, headers, query, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| CollectError::Protocol(format!("{url}: {e}")))
    }

    /// `GET /whoami/v1`.
    pub async fn whoami(&self) -> Result<Principal, CollectError> {
        let url = format!("{}/whoami/v1", self.global_url);
        let v = self.get_json(&url, &[], &[]).await?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        match v["idType"].as_str() {
            Some("tenant") => {
                let region = v["apiHosts"]["dataRegion"].as_str().ok_or_else(|| {
                    CollectError::Protocol(format!("{url}: no apiHosts.dataRegion"))
                })?;
                crate::url::refuse_plain_http(region, false, "apiHosts.dataRegion")
                    .map_err(|e| CollectError::Protocol(format!("{url}: {e}")))?;
                Ok(Principal::Tenant {
                    id,
                    data_region: region.trim_end_matches('/').to_string(),
                })
            }
            Some("partner") => Ok(Principal::Partner(id)),
            Some("organization") => Ok(Principal::Organization(id)),
            other => Err(CollectError::Protocol(format!(
                "{url}: unknown idType {other:?}"
            ))),
        }
    }

    /// The tenants of a partner or an organization, every page.
    pub async fn tenants(&self, principal: &Principal) -> Result<Vec<Tenant>, CollectError> {
        let (path, header, id) = match principal {
            Principal::Tenant { id, data_region } => {
                return Ok(vec![Tenant {
                    id: id.clone(),
                    name: id.clone(),
                    api_host: data_region.clone(),
                }]);
            }
            Principal::Partner(id) => ("partner", "X-Partner-ID", id),
            Principal::Organization(id) => ("organization", "X-Organization-ID", id),
        };
        let url = format!("{}/{path}/v1/tenants", self.global_url);
        let mut tenants = Vec::new();
        let mut page = 1u64;
        loop {
            let v = self
                .get_json(
                    &url,
                    &[(header, id)],
                    &[
                        ("page", page.to_string()),
                        ("pageSize", "100".into()),
                        ("pageTotal", "true".into()),
                    ],
                )
                .await?;
            for t in v["items"].as_array().into_iter().flatten() {
                let (Some(id), Some(host)) = (t["id"].as_str(), t["apiHost"].as_str()) else {
                    continue;
                };
                // The token goes to this host: never in clear.
                crate::url::refuse_plain_http(host, false, "a tenant's apiHost")
                    .map_err(|e| CollectError::Protocol(format!("{url}: {e}")))?;
                tenants.push(Tenant {
                    id: id.into(),
                    name: t["name"].as_str().unwrap_or(id).into(),
                    api_host: host.trim_end_matches('/').into(),
                });
            }
            let total = v["pages"]["total"].as_u64().unwrap_or(1);
            if page >= total || v["items"].as_array().is_none_or(Vec::is_empty) {
                return Ok(tenants);
            }
            if page >= MAX_PAGES {
                return Err(CollectError::Protocol(format!(
                    "{url}: still more tenants after {MAX_PAGES} pages (pages.total {total})"
                )));
            }
            page += 1;
        }
    }

    /// Runs a Data Lake query for `[from, to)` and returns every row of every page, or
    /// [`Fetched::TooMany`] as soon as it is clear that the run holds more than
    /// `max_rows` rows (from the first page's `pages.items`, or after `max_rows` rows
    /// with more to come): the caller splits the window. `None` reads every page.
    pub async fn query(
        &self,
        tenant: &Tenant,
        sql: &str,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        q: &crate::collect::config::QuerySection,
        max_rows: Option<u64>,
    ) -> Result<Fetched, CollectError> {
        let base = format!("{}/xdr-query/v1/queries/runs", tenant.api_host);
        let headers = [("X-Tenant-ID", tenant.id.as_str())];
        let body = json!({ "adHocQuery": { "template": sql }, "from": from.to_string(), "to": to.to_string() });
        let created = self
            .request(Method::Post, &base, &headers, &[], Some(&body))
            .await?;
        let created: Value = serde_json::from_slice(&created)
            .map_err(|e| CollectError::Protocol(format!("{base}: {e}")))?;
        let id = created["id"]
            .as_str()
            .ok_or_else(|| CollectError::Protocol(format!("{base}: no run id")))?
            .to_string();
        let run_url = format!("{base}/{id}");
        let started = Instant::now();
        loop {
            let v = self.get_json(&run_url, &headers, &[]).await?;
            if v["status"] == "finished" {
                match v["result"].as_str() {
                    Some("succeeded") => break,
                    other => {
                        return Err(CollectError::QueryFailed {
                            run: id,
                            result: other.unwrap_or("unknown").to_string(),
                        });
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(q.query_timeout_secs) {
                return Err(CollectError::QueryFailed {
                    run: id,
                    result: format!("still {} after {} s", v["status"], q.query_timeout_secs),
                });
            }
            tokio::time::sleep(Duration::from_millis(q.poll_interval_ms)).await;
        }
        #[derive(Deserialize)]
        struct Page {
            items: Vec<Box<RawValue>>,
            pages: Option<Value>,
        }
        let results = format!("{run_url}/results");
        let mut rows = Vec::new();
        let mut key: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("pageSize", q.page_size.to_string())];
            match &key {
                Some(k) => query.push(("pageFromKey", k.clone())),
                None => query.push(("pageTotal", "true".into())),
            }
            let bytes = self
                .request(Method::Get, &results, &headers, &query, None)
                .await?;
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| CollectError::Protocol(format!("{results}: {e}")))?;
            let total = page.pages.as_ref().and_then(|p| p["items"].as_u64());
            if key.is_none()
                && let (Some(max), Some(total)) = (max_rows, total)
                && total > max
            {
                return Ok(Fetched::TooMany { total: Some(total) });
            }
            rows.extend(page.items);
            key = page
                .pages
                .as_ref()
                .and_then(|p| p["nextKey"].as_str())
                .map(String::from);
            match (&key, max_rows) {
                (None, _) => return Ok(Fetched::Rows(rows)),
                (Some(_), Some(max)) if rows.len() as u64 >= max => {
                    return Ok(Fetched::TooMany { total: None });
                }
                _ => {}
            }
        }
        Err(CollectError::Protocol(format!(
            "{results}: still a nextKey after {MAX_PAGES} pages"
        )))
    }
}

impl Client {
    /// One page of a tenant's SIEM API stream (`alerts` or `events`):
    /// `GET {apiHost}/siem/v1/{stream}` with `X-Tenant-ID`, `limit` and the cursor or
    /// `from_date`; `exclude_types` and `from_date_offset_minutes` when set.
    pub async fn siem_page(
        &self,
        tenant: &Tenant,
        stream: &str,
        start: SiemStart<'_>,
        limit: u32,
        exclude_types: &[String],
        offset_minutes: u32,
    ) -> Result<SiemPage, CollectError> {
        let url = format!("{}/siem/v1/{stream}", tenant.api_host);
        let headers = [("X-Tenant-ID", tenant.id.as_str())];
        let mut query = vec![("limit", limit.to_string())];
        match start {
            SiemStart::Cursor(c) => query.push(("cursor", c.to_string())),
            SiemStart::FromDate(secs) => query.push(("from_date", secs.to_string())),
        }
        if !exclude_types.is_empty() {
            query.push(("exclude_types", exclude_types.join(",")));
        }
        if offset_minutes > 0 {
            query.push(("from_date_offset_minutes", offset_minutes.to_string()));
        }
        let bytes = self
            .request(Method::Get, &url, &headers, &query, None)
            .await?;
        let mut page: SiemPage = serde_json::from_slice(&bytes)
            .map_err(|e| CollectError::Protocol(format!("{url}: {e}")))?;
        // An empty cursor is no cursor.
        page.next_cursor = page.next_cursor.filter(|c| !c.is_empty());
        if page.has_more && page.next_cursor.is_none() {
            return Err(CollectError::Protocol(format!(
                "{url}: has_more without a next_cursor"
            )));
        }
        Ok(page)
    }
}

/// The longest wait a `Retry-After` is taken for; a longer one waits this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The longest a token is kept before it is renewed, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// The most pages one listing or one query run is read for: a server whose `nextKey` or
/// `pages.total` never ends cannot keep the collector reading.
const MAX_PAGES: u64 = 10_000;

/// A `Retry-After` in seconds (RFC 9110 also allows an HTTP date: that, and anything
/// not a finite number, is ignored and the usual backoff applies), at most
/// [`MAX_RETRY_AFTER`].
fn retry_after(value: &str) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok().filter(|s| s.is_finite())?;
    Some(Duration::from_secs_f64(
        secs.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// How long a token is used: `expires_in` (default one hour), at least a second and at
/// most [`MAX_TOKEN_LIFETIME`].
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    Duration::from_secs(
        expires_in
            .unwrap_or(3600)
            .clamp(1, MAX_TOKEN_LIFETIME.as_secs()),
    )
}

fn retryable(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status)
}

fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_shown_by_debug() {
        let now = Instant::now();
        let token = Token {
            value: "eyJhbGciOi-secret-token".into(),
            obtained: now,
            renew_at: now,
        };
        let shown = format!("{token:?} {:?}", Some(&token));
        assert!(!shown.contains("secret-token"), "{shown}");
    }

    #[test]
    fn odd_numbers_from_the_api_are_bounded() {
        for odd in [
            "NaN",
            "inf",
            "-inf",
            "",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "1e400",
        ] {
            assert_eq!(retry_after(odd), None, "{odd}");
        }
        assert_eq!(retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("-5"), Some(Duration::ZERO));
        assert_eq!(retry_after("1e12"), Some(MAX_RETRY_AFTER));
        // finite, but past what a Duration holds
        assert_eq!(retry_after("1e20"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("1.7976931348623157e308"), Some(MAX_RETRY_AFTER));
        assert_eq!(token_lifetime(Some(u64::MAX)), MAX_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(Some(0)), Duration::from_secs(1));
        assert_eq!(token_lifetime(None), Duration::from_secs(3600));
        // the renewal time of the longest lifetime is a valid instant
        let _ = Instant::now() + token_lifetime(Some(u64::MAX));
    }

    #[test]
    fn rate_limiter_honours_every_window() {
        let mut l = RateLimiter::new(&[(Duration::from_secs(1), 2), (Duration::from_secs(60), 3)]);
        let t0 = Instant::now();
        assert!(l.try_acquire(t0).is_zero());
        assert!(l.try_acquire(t0).is_zero());
        assert!(
            l.try_acquire(t0) > Duration::from_millis(900),
            "third in the same second waits"
        );
        let t1 = t0 + Duration::from_millis(1100);
        assert!(l.try_acquire(t1).is_zero());
        let t2 = t0 + Duration::from_millis(2500);
        let wait = l.try_acquire(t2);
        assert!(
            wait > Duration::from_secs(50),
            "the minute window is full: {wait:?}"
        );
    }
}
