//! The Sophos Central API client: OAuth2 token, whoami, tenants, XDR Data Lake
//! queries; with a per-credential rate limit and a retry policy.
//!
//! Retry policy: a 429 waits for `Retry-After` (or backs off) and retries; 5xx,
//! connection errors and timeouts back off exponentially with jitter and retry; a 401
//! is judged by the age of the token it refused: an old one (it may have expired during
//! a long `Retry-After` or rate-limit wait) is renewed and the request retried, while a
//! token renewed for this very request and refused within [`FRESH_TOKEN`] fails at
//! once (the credential is refused); any other 4xx fails at once. After `max_retries`
//! the request fails.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::collect::CollectError;
use crate::collect::config::{CollectConfig, Secret};

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

/// A token and when it was obtained.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    obtained: Instant,
    renew_at: Instant,
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

/// The client. One per credential; shared by the tenant tasks.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    auth_url: String,
    global_url: String,
    client_id: String,
    secret: Secret,
    /// The token, when it was obtained and when to renew it (before it expires).
    token: Mutex<Option<Token>>,
    limiter: Mutex<RateLimiter>,
    max_retries: u32,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl Client {
    /// A client for the configured credential (TLS verified by rustls).
    pub fn new(config: &CollectConfig) -> Result<Client, CollectError> {
        let l = &config.file.limits;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(l.request_timeout_secs.max(1)))
            .user_agent(concat!("sophos-tac/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CollectError::Config(format!("HTTP client: {e}")))?;
        let limiter = RateLimiter::new(&[
            (Duration::from_secs(1), l.per_second),
            (Duration::from_secs(60), l.per_minute),
            (Duration::from_secs(3600), l.per_hour),
            (Duration::from_secs(86_400), l.per_day),
        ]);
        Ok(Client {
            http,
            auth_url: config.file.auth_url.clone(),
            global_url: config.file.global_url.trim_end_matches('/').to_string(),
            client_id: config.file.client_id.clone(),
            secret: config.secret.clone(),
            token: Mutex::new(None),
            limiter: Mutex::new(limiter),
            max_retries: l.max_retries,
        })
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
            let sent = self
                .http
                .post(&self.auth_url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.client_id),
                    ("client_secret", self.secret.expose()),
                    ("scope", "token"),
                ])
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break r,
                Ok(r) if retryable(r.status()) && attempt < self.max_retries => {
                    tokio::time::sleep(retry_after(&r).unwrap_or_else(|| self.backoff(attempt)))
                        .await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(CollectError::Auth(format!(
                        "{}: HTTP {status}: {}",
                        self.auth_url,
                        excerpt(&body)
                    )));
                }
                Err(e) if attempt < self.max_retries => {
                    tracing::warn!(url = %self.auth_url, error = %without_url(&e), attempt, "token request failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(CollectError::Auth(format!(
                        "{}: {}",
                        self.auth_url,
                        without_url(&e)
                    )));
                }
            }
            attempt += 1;
        };
        let body: TokenResponse = response.json().await.map_err(|e| {
            CollectError::Auth(format!(
                "{}: bad token response: {}",
                self.auth_url,
                without_url(&e)
            ))
        })?;
        let ttl = Duration::from_secs(body.expires_in.unwrap_or(3600));
        let margin = Duration::from_secs(60).min(ttl / 4);
        let now = Instant::now();
        let token = Token {
            value: body.access_token,
            obtained: now,
            renew_at: now + ttl - margin,
        };
        *guard = Some(token.clone());
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
        // After a 401: fetch a new token for the next try.
        let mut renew = false;
        loop {
            // Wait for the rate limit first, then take the token, so that a renewed
            // token is sent the moment it arrives.
            self.throttle().await;
            let token = self.token(renew).await?;
            let renewed = std::mem::take(&mut renew);
            let age = token.obtained.elapsed();
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&token.value)
                .query(query);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    return r.bytes().await.map(|b| b.to_vec()).map_err(|e| {
                        CollectError::Transport(format!("{url}: {}", without_url(&e)))
                    });
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    if renewed && age < FRESH_TOKEN {
                        return Err(CollectError::Auth(format!(
                            "{url}: HTTP 401 for a token obtained {} ms before: the API refuses this credential",
                            age.as_millis()
                        )));
                    }
                    if attempt >= self.max_retries {
                        return Err(CollectError::Auth(format!(
                            "{url}: HTTP 401 after {attempt} token renewals and retries"
                        )));
                    }
                    tracing::info!(
                        url,
                        token_age_ms = age.as_millis() as u64,
                        "401: fetching a new token"
                    );
                    renew = true;
                }
                Ok(r) if retryable(r.status()) && attempt < self.max_retries => {
                    let wait = retry_after(&r).unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(
                        url,
                        status = r.status().as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(CollectError::Http {
                        url: url.to_string(),
                        status: status.as_u16(),
                        body: excerpt(&body),
                    });
                }
                Err(e) if attempt < self.max_retries => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(url, error = %without_url(&e), attempt, "request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    return Err(CollectError::Transport(format!(
                        "{url}: {}",
                        without_url(&e)
                    )));
                }
            }
            attempt += 1;
        }
    }

    async fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        query: &[(&str, String)],
    ) -> Result<Value, CollectError> {
        let bytes = self.request(Method::GET, url, headers, query, None).await?;
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
                tenants.push(Tenant {
                    id: id.into(),
                    name: t["name"].as_str().unwrap_or(id).into(),
                    api_host: host.trim_end_matches('/').into(),
                });
            }
            let total = v["pages"]["total"].as_u64().unwrap_or(1);
            if page >= total {
                return Ok(tenants);
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
            .request(Method::POST, &base, &headers, &[], Some(&body))
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
        loop {
            let mut query = vec![("pageSize", q.page_size.to_string())];
            match &key {
                Some(k) => query.push(("pageFromKey", k.clone())),
                None => query.push(("pageTotal", "true".into())),
            }
            let bytes = self
                .request(Method::GET, &results, &headers, &query, None)
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
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
}

/// `Retry-After` in seconds, when the answer has one.
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let secs: f64 = r
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(secs.clamp(0.0, 300.0)))
}

/// A transport error without its URL (the caller names it), so that no query string
/// can leak.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "…");
    }
    s
}

fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
