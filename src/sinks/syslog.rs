//! The syslog sink: RFC 5424 messages whose body is the ECS JSON document, over TCP
//! with octet-counting framing (RFC 6587), TLS (RFC 5425), or UDP.
//!
//! URLs: `syslog+tcp://host:port`, `syslog+tls://host:port`, `syslog+udp://host:port`.
//!
//! What "delivered" means: for TCP and TLS, the batch was written to the socket and
//! flushed — the best syslog over TCP allows, since the protocol has no
//! acknowledgement. Before each batch the sink checks that the server has not closed the
//! connection (a restarted server is noticed and reconnected to, rather than written
//! into a dead socket); if a write fails, it reconnects with exponential backoff and
//! jitter and sends the whole batch again (so a failure in the middle of a batch can
//! repeat messages, never drop them). A server that dies while a batch is in flight
//! can still lose what it had received and not yet written. UDP is fire-and-forget.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::sinks::{DeadLetter, MAX_BACKOFF, Sink, Timeouts};

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP, octet-counting framing.
    Tcp,
    /// TLS over TCP, octet-counting framing.
    Tls,
    /// UDP, one message per datagram.
    Udp,
}

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// The transport.
    pub transport: Transport,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Facility (0–23; default 16, local0).
    pub facility: u8,
    /// Severity (0–7; default 6, informational).
    pub severity: u8,
    /// APP-NAME (default `sophos-tac`).
    pub app_name: String,
    /// HOSTNAME (default: this machine's name).
    pub hostname: String,
    /// A PEM file of CA certificates to trust instead of the platform's (TLS).
    pub ca_file: Option<PathBuf>,
    /// Reconnections tried for one batch before giving up.
    pub max_retries: u32,
    /// Connecting (with the TLS handshake), and each write (default 10 s and 30 s): a
    /// receiver that accepts and never answers fails the attempt, like any failure.
    pub timeouts: Timeouts,
    /// The largest message (RFC 5424 header and document) the receiver takes whole;
    /// default 8192, rsyslog's default `maxMessageSize`. A larger one is counted and
    /// warned about once, and sent whole or kept aside (see `oversize_dead_letter`).
    pub max_message_bytes: usize,
    /// Where a message over `max_message_bytes` goes instead of the receiver: `None`
    /// sends it whole (a receiver with a smaller limit truncates or splits it), `Some`
    /// keeps it in this NDJSON file with the reason.
    pub oversize_dead_letter: Option<PathBuf>,
    /// Where a message that cannot be sent at all goes, with the reason: over UDP, one
    /// larger than a datagram takes ([`MAX_UDP_MESSAGE`] bytes), whatever
    /// `oversize_dead_letter` says (`oversize_dead_letter` is used when both are set).
    pub refused_dead_letter: Option<PathBuf>,
}

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers): a larger
/// message cannot be sent as one datagram, so it is kept in the dead-letter file.
pub const MAX_UDP_MESSAGE: usize = 65_507;

/// `EMSGSIZE`: the datagram is larger than the path takes. Never retried.
#[cfg(any(target_os = "linux", target_os = "android"))]
const EMSGSIZE: i32 = 90;
/// `EMSGSIZE` on the BSDs and macOS.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EMSGSIZE: i32 = 40;

/// rsyslog's default `maxMessageSize`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8192;

/// The default timeouts: 10 s to connect (and shake hands), 30 s for each write.
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(10),
    io: Duration::from_secs(30),
};

impl SyslogConfig {
    /// Parses `syslog+tcp://host:port` (or `+tls`, `+udp`).
    pub fn from_url(url: &str) -> Result<SyslogConfig, String> {
        crate::url::refuse_credentials(url)?;
        let u = crate::url::Url::parse(url)?;
        let transport = match u.scheme.to_ascii_lowercase().as_str() {
            "syslog+tcp" | "syslog" => Transport::Tcp,
            "syslog+tls" => Transport::Tls,
            "syslog+udp" => Transport::Udp,
            _ => {
                return Err(format!(
                    "{url}: the scheme is syslog+tcp, syslog+tls or syslog+udp"
                ));
            }
        };
        if !u.path.is_empty() || !u.query.is_empty() || u.authority.contains(',') {
            return Err(format!(
                "{url}: give one host and its port, as in syslog+tls://host:6514"
            ));
        }
        let port = u
            .port()
            .ok_or_else(|| format!("{url}: give the port, as in syslog+tls://host:6514"))?
            .parse()
            .map_err(|_| format!("{url}: bad port"))?;
        let host = u.host();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".into());
        Ok(SyslogConfig {
            transport,
            host: host.to_string(),
            port,
            facility: 16,
            severity: 6,
            app_name: "sophos-tac".into(),
            hostname,
            ca_file: None,
            max_retries: 10,
            timeouts: DEFAULT_TIMEOUTS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            oversize_dead_letter: None,
            refused_dead_letter: None,
        })
    }

    /// The URL, for messages.
    pub fn url(&self) -> String {
        let scheme = match self.transport {
            Transport::Tcp => "syslog+tcp",
            Transport::Tls => "syslog+tls",
            Transport::Udp => "syslog+udp",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// One RFC 5424 message carrying `json` as its MSG.
pub fn message(cfg: &SyslogConfig, json: &[u8]) -> Vec<u8> {
    let pri = u16::from(cfg.facility.min(23)) * 8 + u16::from(cfg.severity.min(7));
    let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ");
    let mut m = format!("<{pri}>1 {ts} {} {} - - - ", cfg.hostname, cfg.app_name).into_bytes();
    m.extend_from_slice(json);
    m
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Udp(UdpSocket),
}

impl Conn {
    /// The TCP socket under a stream connection.
    fn socket(&mut self) -> Option<&mut TcpStream> {
        match self {
            Conn::Tcp(s) => Some(s),
            Conn::Tls(s) => Some(s.get_mut()),
            Conn::Udp(_) => None,
        }
    }

    /// False when the server closed the connection (or sent something: a TLS alert).
    fn alive(&mut self) -> bool {
        let plain = matches!(self, Conn::Tcp(_));
        let Some(sock) = self.socket() else {
            return true;
        };
        if sock.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let alive = match sock.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => plain,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        };
        alive && sock.set_nonblocking(false).is_ok()
    }
}

/// Counts of what the sink did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyslogStats {
    /// Messages sent.
    pub sent: u64,
    /// Connections made (the first included).
    pub connections: u64,
    /// Messages over `max_message_bytes` (sent whole, or kept aside).
    pub oversize: u64,
    /// Of those, and of the ones that cannot be sent (over UDP's limit, or refused by the
    /// network stack), the ones kept in the dead-letter file instead of sent.
    pub dead_lettered: u64,
    /// Of those kept, the ones the network stack refused (a UDP datagram too large for
    /// the path), not counted in `oversize`.
    pub network_refused: u64,
}

/// The syslog sink.
pub struct SyslogSink {
    cfg: SyslogConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    stats: SyslogStats,
    /// Where messages over the size limit go, when asked (`oversize_dead_letter`), and
    /// those that cannot be sent (`refused_dead_letter`).
    dead_letter: Option<DeadLetter>,
    /// True when messages over `max_message_bytes` are kept aside.
    keep_oversize: bool,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    /// A sink; it connects on the first delivery.
    pub fn open(cfg: SyslogConfig) -> Result<SyslogSink, Error> {
        let tls = match cfg.transport {
            Transport::Tls => Some(tls_config(&cfg).map_err(|e| Error::Write {
                path: cfg.url(),
                source: std::io::Error::other(e),
            })?),
            _ => None,
        };
        Ok(SyslogSink {
            dead_letter: cfg
                .oversize_dead_letter
                .clone()
                .or_else(|| cfg.refused_dead_letter.clone())
                .map(DeadLetter::new),
            keep_oversize: cfg.oversize_dead_letter.is_some(),
            cfg,
            tls,
            conn: None,
            stats: SyslogStats::default(),
        })
    }

    /// What the sink did so far.
    pub fn stats(&self) -> &SyslogStats {
        &self.stats
    }

    /// Counts a message over the size limit and warns about the first; keeps it aside
    /// when asked. True when it is to be sent all the same.
    fn oversize(&mut self, frame: &[u8], doc: &[u8]) -> Result<bool, Error> {
        self.stats.oversize += 1;
        let limit = self.cfg.max_message_bytes;
        if self.stats.oversize == 1 {
            tracing::warn!(
                target = %self.cfg.url(),
                bytes = frame.len(),
                limit,
                "syslog: a message is larger than the receiver is said to take (max_message_bytes); a receiver with that limit truncates or splits it: raise the receiver's limit (rsyslog: global(maxMessageSize=\"256k\"); syslog-ng: log-msg-size(262144)) and max_message_bytes with it, or keep such documents aside (oversize dead-letter). Further ones are only counted."
            );
        }
        if !self.keep_oversize {
            return Ok(true);
        }
        let reason = format!(
            "syslog message of {} bytes, over max_message_bytes ({limit})",
            frame.len()
        );
        self.keep(doc, reason)?;
        Ok(false)
    }

    /// Keeps a document that is not sent in the dead-letter file, with the reason; with
    /// no dead-letter file, fails the delivery (nothing is dropped silently).
    fn keep(&mut self, doc: &[u8], reason: String) -> Result<(), Error> {
        let Some(dead_letter) = &mut self.dead_letter else {
            return Err(Error::Write {
                path: self.cfg.url(),
                source: std::io::Error::other(format!(
                    "{reason}, and no dead-letter file to keep it in"
                )),
            });
        };
        let record = serde_json::json!({
            "reason": reason,
            "document": String::from_utf8_lossy(doc),
        });
        if dead_letter.keep(doc, &record)? {
            self.stats.dead_lettered += 1;
        }
        Ok(())
    }

    /// A TCP connection to the first address of the host that answers within the
    /// connect timeout, with the read and write timeouts set.
    fn tcp(&self) -> std::io::Result<TcpStream> {
        use std::net::ToSocketAddrs;
        let t = self.cfg.timeouts;
        let mut last = None;
        for addr in (self.cfg.host.as_str(), self.cfg.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, t.connect) {
                Ok(s) => {
                    s.set_write_timeout(Some(t.io))?;
                    // The TLS handshake's reads; afterwards nothing is read but the
                    // liveness peek, which does not block.
                    s.set_read_timeout(Some(t.connect))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
        }))
    }

    fn connect(&mut self) -> std::io::Result<Conn> {
        let addr = (self.cfg.host.as_str(), self.cfg.port);
        self.stats.connections += 1;
        Ok(match self.cfg.transport {
            Transport::Udp => {
                let local = if self.cfg.host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let s = UdpSocket::bind(local)?;
                s.connect(addr)?;
                Conn::Udp(s)
            }
            Transport::Tcp => Conn::Tcp(self.tcp()?),
            Transport::Tls => {
                let s = self.tcp()?;
                let name = rustls::pki_types::ServerName::try_from(self.cfg.host.clone())
                    .map_err(std::io::Error::other)?;
                let config = self
                    .tls
                    .clone()
                    .ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
                let client =
                    rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
                let mut stream = rustls::StreamOwned::new(client, s);
                // Each read and write of the handshake has its timeout, and so has the
                // whole handshake: a peer that trickles bytes cannot hold it.
                let deadline = std::time::Instant::now() + self.cfg.timeouts.connect;
                while stream.conn.is_handshaking() {
                    if std::time::Instant::now() > deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the TLS handshake did not finish within {} s",
                                self.cfg.timeouts.connect.as_secs_f64()
                            ),
                        ));
                    }
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    format!(
                                        "no answer to the TLS handshake within {} s",
                                        self.cfg.timeouts.connect.as_secs_f64()
                                    ),
                                )
                            }
                            _ => e,
                        })?;
                }
                Conn::Tls(Box::new(stream))
            }
        })
    }

    /// Sends the frames; on failure, how many of them were sent before it (over UDP,
    /// each datagram that was sent; over TCP and TLS, none is known to have arrived).
    fn send_all(&mut self, frames: &[Vec<u8>]) -> Result<(), (usize, std::io::Error)> {
        if !self.conn.as_mut().is_some_and(Conn::alive) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().map_err(|e| (0, e))?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err((0, std::io::Error::other("not connected")));
        };
        let stream: &mut dyn Write = match conn {
            Conn::Udp(s) => {
                for (i, f) in frames.iter().enumerate() {
                    s.send(f).map_err(|e| (i, e))?;
                }
                return Ok(());
            }
            Conn::Tcp(s) => s,
            Conn::Tls(s) => s.as_mut(),
        };
        // Octet-counting framing (RFC 6587): "LEN SP MSG".
        let mut buf = Vec::with_capacity(frames.iter().map(|f| f.len() + 8).sum());
        for f in frames {
            buf.extend_from_slice(format!("{} ", f.len()).as_bytes());
            buf.extend_from_slice(f);
        }
        stream
            .write_all(&buf)
            .and_then(|()| stream.flush())
            .map_err(|e| (0, e))
    }
}

fn tls_config(cfg: &SyslogConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                roots
                    .add(cert.map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| e.to_string())?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Sink for SyslogSink {
    fn name(&self) -> String {
        self.cfg.url()
    }

    fn dead_lettered(&self) -> u64 {
        self.stats.dead_lettered
    }

    /// Only when messages were over the size limit, or kept aside: how many were sent
    /// whole and how many kept.
    fn report(&self) -> Option<super::SinkReport> {
        let s = &self.stats;
        let kept_in = self
            .dead_letter
            .as_ref()
            .map_or("-".into(), |d| d.path().display().to_string());
        let refused = s.network_refused.min(s.dead_lettered);
        let kept_for_size = (s.dead_lettered - refused).min(s.oversize);
        let mut parts = Vec::new();
        if s.oversize > 0 {
            parts.push(format!(
                "{} document(s) over the size limit ({} bytes: --syslog-max-bytes, max_message_bytes) or what one UDP datagram takes: {} sent whole, {kept_for_size} kept in {kept_in}",
                s.oversize,
                self.cfg.max_message_bytes,
                s.oversize - kept_for_size,
            ));
        }
        if refused > 0 {
            parts.push(format!(
                "{refused} document(s) refused by the network stack, kept in {kept_in}"
            ));
        }
        (!parts.is_empty()).then(|| super::SinkReport {
            line: parts.join("; "),
            warning: true,
        })
    }

    fn delivery_bound(&self, _documents: usize, _bytes: usize) -> Duration {
        self.cfg
            .timeouts
            .bound(self.cfg.max_retries, 1, MAX_BACKOFF)
    }

    /// Connects (and, over TLS, completes the handshake); over UDP nothing answers,
    /// so only the address is checked.
    fn check(&mut self) -> Result<(), Error> {
        let conn = self.connect().map_err(|source| Error::Write {
            path: self.cfg.url(),
            source,
        })?;
        self.conn = Some(conn);
        Ok(())
    }

    fn mark(&mut self) -> Result<String, Error> {
        Ok(String::new())
    }

    fn deliver(&mut self, ndjson: &[u8], _ids: Option<&[String]>) -> Result<(), Error> {
        let udp = self.cfg.transport == Transport::Udp;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut docs: Vec<&[u8]> = Vec::new();
        for doc in super::documents(ndjson) {
            let frame = message(&self.cfg, doc);
            if udp && frame.len() > MAX_UDP_MESSAGE {
                self.stats.oversize += 1;
                let reason = format!(
                    "syslog message of {} bytes, over the {MAX_UDP_MESSAGE} bytes one UDP datagram takes",
                    frame.len()
                );
                self.keep(doc, reason)?;
                continue;
            }
            if frame.len() > self.cfg.max_message_bytes && !self.oversize(&frame, doc)? {
                continue;
            }
            frames.push(frame);
            docs.push(doc);
        }
        // Over UDP, the datagrams already sent are not sent again on a retry.
        let mut done = 0;
        let mut attempt = 0u32;
        loop {
            match self.send_all(&frames[done..]) {
                Ok(()) => {
                    self.stats.sent += (frames.len() - done) as u64;
                    return Ok(());
                }
                Err((sent, e)) => {
                    self.stats.sent += sent as u64;
                    done += sent;
                    if udp && e.raw_os_error() == Some(EMSGSIZE) {
                        // Too large for the path (a smaller MTU limit): never retried.
                        let reason = format!(
                            "syslog message of {} bytes refused by the network stack: {e}",
                            frames[done].len()
                        );
                        self.keep(docs[done], reason)?;
                        self.stats.network_refused += 1;
                        done += 1;
                        continue;
                    }
                    self.conn = None;
                    if attempt >= self.cfg.max_retries {
                        return Err(Error::Write {
                            path: self.cfg.url(),
                            source: e,
                        });
                    }
                    let wait = (0.1 * 2f64.powi(attempt.min(8) as i32)).min(30.0)
                        * (0.5 + fastrand::f64());
                    tracing::warn!(target = %self.cfg.url(), error = %e, attempt, "syslog: reconnecting");
                    std::thread::sleep(Duration::from_secs_f64(wait));
                    attempt += 1;
                }
            }
        }
    }

    fn repair(&mut self, _mark: &str) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_run_line_counts_documents_kept_for_size_and_refused_by_the_network_apart() {
        let mut cfg = SyslogConfig::from_url("syslog+udp://127.0.0.1:9").unwrap();
        cfg.oversize_dead_letter = Some(std::env::temp_dir().join("unused-syslog-dl.ndjson"));
        let mut sink = SyslogSink::open(cfg).unwrap();
        assert_eq!(sink.report(), None, "nothing to say");
        sink.stats = SyslogStats {
            oversize: 5,
            dead_lettered: 4,
            network_refused: 2,
            ..SyslogStats::default()
        };
        let line = sink.report().unwrap().line;
        assert!(
            line.starts_with("5 document(s) over the size limit"),
            "{line}"
        );
        assert!(line.contains(": 3 sent whole, 2 kept in "), "{line}");
        assert!(
            line.contains("; 2 document(s) refused by the network stack, kept in "),
            "{line}"
        );
        sink.stats = SyslogStats {
            dead_lettered: 1,
            network_refused: 1,
            ..SyslogStats::default()
        };
        let report = sink.report().unwrap();
        assert!(report.warning);
        assert!(
            report
                .line
                .starts_with("1 document(s) refused by the network stack"),
            "{}",
            report.line
        );
    }

    #[test]
    fn urls() {
        let c = SyslogConfig::from_url("syslog+tls://logs.example:6514").unwrap();
        assert_eq!(
            (c.transport, c.host.as_str(), c.port),
            (Transport::Tls, "logs.example", 6514)
        );
        assert_eq!(
            SyslogConfig::from_url("syslog+udp://[::1]:514")
                .unwrap()
                .host,
            "::1"
        );
        assert!(SyslogConfig::from_url("syslog+tcp://host").is_err());
        assert!(SyslogConfig::from_url("http://host:1").is_err());
    }

    #[test]
    fn rfc5424_message() {
        let mut c = SyslogConfig::from_url("syslog+tcp://h:1").unwrap();
        c.hostname = "box".into();
        let m = String::from_utf8(message(&c, b"{\"a\":1}")).unwrap();
        assert!(m.starts_with("<134>1 2"), "{m}");
        assert!(m.ends_with("Z box sophos-tac - - - {\"a\":1}"), "{m}");
    }
}
