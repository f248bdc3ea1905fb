//! The simulator's SIEM API, as `siem-api.md` documents the real one: `limit` bounds,
//! `from_date` refused past the reach, a stale cursor restarted without a word,
//! `has_more` and `next_cursor` on every page (empty ones too), `exclude_types`, items
//! served again across pages, and 401/403 for a missing or refused tenant.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

fn send(url: &str, request: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.replace("{addr}", addr).as_bytes())
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn token(url: &str) -> String {
    let form = "grant_type=client_credentials&client_id=demo-client&client_secret=s&scope=token";
    let (status, body) = send(
        url,
        &format!(
            "POST /api/v2/oauth2/token HTTP/1.0\r\nHost: {{addr}}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

struct Api {
    url: String,
    token: String,
    _sim: sophos_central_sim::Running,
}

impl Api {
    fn start(flags: &[&str]) -> Api {
        let mut all = vec!["--addr", "127.0.0.1:0", "--client-secret", "s"];
        all.extend_from_slice(flags);
        let sim = sophos_central_sim::start(&all).unwrap();
        let url = sim.url.clone();
        Api {
            token: token(&url),
            url,
            _sim: sim,
        }
    }

    fn tenant(&self) -> String {
        let (_, body) = self.get("/whoami/v1", None);
        let v: Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    fn get(&self, path: &str, tenant: Option<&str>) -> (u16, String) {
        let tenant = tenant.map_or(String::new(), |t| format!("X-Tenant-ID: {t}\r\n"));
        send(
            &self.url,
            &format!(
                "GET {path} HTTP/1.0\r\nHost: {{addr}}\r\nAuthorization: Bearer {}\r\n{tenant}\r\n",
                self.token
            ),
        )
    }

    fn page(&self, stream: &str, query: &str, tenant: &str) -> Value {
        let (status, body) = self.get(&format!("/siem/v1/{stream}?{query}"), Some(tenant));
        assert_eq!(status, 200, "{query}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn limits_from_date_and_tenants_are_checked_as_the_api_does() {
    let api = Api::start(&["--siem-items", "500", "--siem-repeat-fraction", "0"]);
    let tenant = api.tenant();
    // 200 by default, 1 to 1000
    let first = api.page("events", "", &tenant);
    assert_eq!(first["items"].as_array().unwrap().len(), 200);
    assert_eq!(first["has_more"], true);
    assert!(first["next_cursor"].is_string());
    assert_eq!(
        api.page("events", "limit=1000", &tenant)["items"]
            .as_array()
            .unwrap()
            .len(),
        500
    );
    for bad in ["limit=0", "limit=1001", "limit=x"] {
        let (status, _) = api.get(&format!("/siem/v1/events?{bad}"), Some(&tenant));
        assert_eq!(status, 400, "{bad}");
    }
    // from_date: Unix seconds within the last 24 hours
    let (status, body) = api.get(
        &format!("/siem/v1/alerts?from_date={}", now_secs() - 86_400 - 120),
        Some(&tenant),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = api.get("/siem/v1/alerts?from_date=yesterday", Some(&tenant));
    assert_eq!(status, 400);
    let recent = api.page(
        "alerts",
        &format!("from_date={}", now_secs() - 600),
        &tenant,
    );
    assert!(recent["items"].as_array().unwrap().len() < 125);
    // a missing or unknown tenant is 401; an unknown stream 404
    assert_eq!(api.get("/siem/v1/events", None).0, 401);
    assert_eq!(api.get("/siem/v1/events", Some("nobody")).0, 401);
    assert_eq!(api.get("/siem/v1/other", Some(&tenant)).0, 404);
    // every alert has its event, with the same id
    let alerts = api.page("alerts", "limit=1000", &tenant);
    let events = api.page("events", "limit=1000", &tenant);
    let event_ids: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    for a in alerts["items"].as_array().unwrap() {
        assert!(event_ids.contains(&a["id"].as_str().unwrap()));
    }
}

#[test]
fn cursors_page_to_the_end_and_an_empty_page_has_a_cursor_too() {
    let api = Api::start(&["--siem-items", "45", "--siem-repeat-fraction", "0"]);
    let tenant = api.tenant();
    let mut ids = Vec::new();
    let mut query = "limit=10".to_string();
    loop {
        let page = api.page("events", &query, &tenant);
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        let cursor = page["next_cursor"]
            .as_str()
            .expect("a cursor on every page")
            .to_string();
        query = format!("limit=10&cursor={cursor}");
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(ids.len(), 45);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 45);
    // past the end: an empty page, with has_more false and a cursor
    let empty = api.page("events", &query, &tenant);
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    assert_eq!(empty["has_more"], false);
    assert!(empty["next_cursor"].is_string());
    // exclude_types leaves those types out
    let all = api.page("events", "limit=1000", &tenant);
    let kept = api.page(
        "events",
        "limit=1000&exclude_types=Event::Endpoint::UpdateSuccess",
        &tenant,
    );
    let updates = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "Event::Endpoint::UpdateSuccess")
        .count();
    assert!(updates > 0);
    assert_eq!(kept["items"].as_array().unwrap().len(), 45 - updates);
    assert!(
        kept["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] != "Event::Endpoint::UpdateSuccess")
    );
    let (status, _) = api.get("/siem/v1/events?cursor=not-a-cursor", Some(&tenant));
    assert_eq!(status, 400);
}

#[test]
fn a_stale_cursor_restarts_at_the_reach_and_late_items_come_after_the_cursor() {
    // Items become visible over 6 s; the API serves 2 s back.
    let api = Api::start(&[
        "--siem-items",
        "60",
        "--siem-past-secs",
        "0",
        "--siem-future-secs",
        "6",
        "--siem-reach-secs",
        "2",
        "--siem-repeat-fraction",
        "0",
        "--siem-late-fraction",
        "1",
        "--siem-late-secs",
        "30",
    ]);
    let tenant = api.tenant();
    let first = api.page("events", "limit=1000", &tenant);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let seen = first["items"].as_array().unwrap().len();
    std::thread::sleep(Duration::from_millis(4500));
    // the cursor is older than the reach: restarted 2 s back, what came before is gone
    let after = api.page("events", &format!("limit=1000&cursor={cursor}"), &tenant);
    let got = after["items"].as_array().unwrap().len();
    assert!(got > 0 && seen + got < 50, "first {seen}, after {got}");
    // late items (created up to 30 s before they became visible) still come by cursor
    let created_before_the_cursor = after["items"].as_array().unwrap().iter().any(|i| {
        i["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
            < now_secs() - 5
    });
    assert!(created_before_the_cursor);
}

#[test]
fn pages_serve_an_item_again_and_a_refused_tenant_is_403() {
    let api = Api::start(&["--siem-items", "100", "--siem-repeat-fraction", "1"]);
    let tenant = api.tenant();
    let first = api.page("events", "limit=10", &tenant);
    let last = first["items"][9]["id"].clone();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = api.page("events", &format!("limit=10&cursor={cursor}"), &tenant);
    assert_eq!(
        second["items"][0]["id"], last,
        "the page begins with the last item again"
    );
    let refused = Api::start(&["--siem-failing-tenant", "0"]);
    let t = refused.tenant();
    assert_eq!(refused.get("/siem/v1/alerts", Some(&t)).0, 403);
}
