//! The service endpoint (`[service] listen`): a small HTTP/1.1 server for Prometheus and
//! orchestrators.
//!
//! - `GET /metrics`: the metrics, in the Prometheus text format;
//! - `GET /healthz`: 200 while the collector runs its loop (503 once it is stopping);
//! - `GET /readyz`: 200 once an access token was obtained and while the state database
//!   takes writes; 503 with a one-line reason otherwise.
//!
//! Requests are parsed by `httparse`; every connection is answered once and closed. A
//! client gets 5 seconds to send its request, and a request head may be 8 KiB.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::collect::{CollectError, Collector};

/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Connections answered at once; past that, new ones wait in the listen backlog (and a
/// client that holds one open without a request is dropped after a timeout).
pub const MAX_CONNECTIONS: usize = 32;

/// Listens on `addr` (failing at once when it is taken).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CollectError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CollectError::Config(format!("service.listen {addr}: {e}")))
}

/// Answers requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, collector: Arc<Collector>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // The semaphore is never closed: an error cannot happen.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let collector = Arc::clone(&collector);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = answer(stream, &collector).await {
                        tracing::debug!(error = %e, "service endpoint: a request failed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "service endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A response: status, content type, body.
type Response = (u16, &'static str, String);

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn answer(mut stream: TcpStream, collector: &Collector) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() <= MAX_HEAD {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    let (response, head_only) = match read {
        Err(_) => (
            (408, TEXT, "the request did not arrive within 5 s\n".into()),
            false,
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {
                    let method = request.method.unwrap_or("GET");
                    let path = request.path.unwrap_or("/");
                    (route(method, path, collector), method == "HEAD")
                }
                Ok(httparse::Status::Partial) if head.len() > MAX_HEAD => (
                    (431, TEXT, "the request head is over 8 KiB\n".into()),
                    false,
                ),
                Ok(httparse::Status::Partial) | Err(_) => {
                    ((400, TEXT, "not an HTTP request\n".into()), false)
                }
            }
        }
    };
    let (status, content_type, body) = response;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    // A client that does not read the answer is dropped too, freeing its place.
    tokio::time::timeout(READ_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not read the answer within 5 s",
        ))
    })
}

fn route(method: &str, target: &str, collector: &Collector) -> Response {
    if method != "GET" && method != "HEAD" {
        return (405, TEXT, "only GET and HEAD\n".into());
    }
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => (200, METRICS, collector.metrics().render()),
        "/healthz" if collector.stopping() => (503, TEXT, "stopping\n".into()),
        "/healthz" => match collector.metrics().stuck() {
            Some(stuck) => (503, TEXT, format!("{}\n", one_line(&stuck))),
            None => (200, TEXT, "ok\n".into()),
        },
        "/readyz" => match ready(collector) {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(reason) => (503, TEXT, format!("not ready: {}\n", one_line(&reason))),
        },
        "/" => (
            200,
            TEXT,
            "sophos-tac collect: /metrics /healthz /readyz\n".into(),
        ),
        _ => (
            404,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Ready: a token was obtained, the last write to the state database succeeded, and
/// the state directory takes a new file now.
fn ready(collector: &Collector) -> Result<(), String> {
    collector.metrics().ready()?;
    let dir = &collector.config.file.state_dir;
    // A name of its own per probe: parallel probes must not remove each other's file.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".readyz-probe-{}-{n}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("the state directory {} takes no writes: {e}", dir.display()))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
