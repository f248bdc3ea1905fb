//! The simulator's command starts on a free loopback port, prints its URL, answers the
//! token endpoint, refuses a wrong secret, and will not listen beyond loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn post(url: &str, path: &str, form: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn the_command_serves_on_loopback_and_checks_the_secret() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sophos-central-sim"))
        .args(["--addr", "127.0.0.1:0", "--client-secret", "s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let ok = post(
        &url,
        "/api/v2/oauth2/token",
        "grant_type=client_credentials&client_id=demo-client&client_secret=s&scope=token",
    );
    assert!(
        ok.starts_with("HTTP/1.0 200") && ok.contains("access_token"),
        "{ok}"
    );
    let refused = post(
        &url,
        "/api/v2/oauth2/token",
        "grant_type=client_credentials&client_id=demo-client&client_secret=x&scope=token",
    );
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
    let _ = child.kill();
    let _ = child.wait();
    let out = Command::new(env!("CARGO_BIN_EXE_sophos-central-sim"))
        .args(["--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
