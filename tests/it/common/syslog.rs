//! A real rsyslog (Debian's `rsyslog` and `rsyslog-gnutls`, installed by `.ci/run`) on
//! loopback ports, writing each message it receives to a file.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

pub fn available() -> bool {
    if Path::new(RSYSLOGD).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install rsyslog (apt-get install rsyslog rsyslog-gnutls)"
    );
    eprintln!("skipped: {RSYSLOGD} is not installed (apt-get install rsyslog rsyslog-gnutls)");
    false
}

/// An rsyslogd in the foreground with its own configuration, stopped on drop.
pub struct Rsyslog {
    child: Child,
    pub out: PathBuf,
}

impl Rsyslog {
    /// `tls`: the (ca, cert, key) files for a TLS listener.
    pub fn start(
        dir: &Path,
        port: u16,
        udp_port: Option<u16>,
        tls: Option<(&Path, &Path, &Path)>,
    ) -> Rsyslog {
        Rsyslog::start_sized(dir, port, udp_port, tls, Some("1m"))
    }

    /// As `start`, with `maxMessageSize` set, or left at rsyslog's default (8k).
    pub fn start_sized(
        dir: &Path,
        port: u16,
        udp_port: Option<u16>,
        tls: Option<(&Path, &Path, &Path)>,
        max_message_size: Option<&str>,
    ) -> Rsyslog {
        let out = dir.join("out.log");
        let mut conf = format!("global(workDirectory=\"{}\"", dir.display());
        if let Some(size) = max_message_size {
            conf += &format!(" maxMessageSize=\"{size}\"");
        }
        if let Some((ca, cert, key)) = tls {
            conf += &format!(
                " defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                ca.display(),
                cert.display(),
                key.display()
            );
        }
        conf += ")\n";
        conf += if tls.is_some() {
            "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
        } else {
            "module(load=\"imtcp\")\n"
        };
        conf += &format!(
            "template(name=\"raw\" type=\"string\" string=\"%msg%\\n\")\nruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n",
            out.display()
        );
        conf +=
            &format!("input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"r\")\n");
        if let Some(u) = udp_port {
            conf += &format!(
                "module(load=\"imudp\")\ninput(type=\"imudp\" port=\"{u}\" address=\"127.0.0.1\" ruleset=\"r\")\n"
            );
        }
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(RSYSLOGD)
            .args([
                "-n",
                "-f",
                conf_path.to_str().unwrap(),
                "-i",
                dir.join("rsyslog.pid").to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd starts");
        let r = Rsyslog { child, out };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rsyslogd did not listen on {port}");
    }

    /// Stops rsyslogd (SIGTERM: it writes what it has received, then exits).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// The JSON documents written so far, counted. A last line without its newline is
    /// still being written (rsyslog writes asynchronously): left for the next read.
    pub fn received(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        for line in whole.lines() {
            let doc: Value =
                serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
            *m.entry(doc.to_string()).or_default() += 1;
        }
        m
    }

    /// Waits until `n` documents were written (rsyslog writes asynchronously).
    pub fn wait_for(&self, n: usize) -> BTreeMap<String, usize> {
        for _ in 0..100 {
            let got = self.received();
            if got.values().sum::<usize>() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.received()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
