//! One way to say where documents go ([`SinkConfig`]) and one way to open it
//! ([`build`]).
//!
//! Every front end resolves into a [`SinkConfig`]: `normalize`'s `-o` URL and flags, and
//! each of `collect`'s `[[output]]` tables. [`build`] opens it, told by a
//! [`SinkContext`] what the caller can do. Adding a sink is one file in `sinks/`, one
//! variant here and one arm in [`build`].

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::sinks::{FileSink, Rotation, Sink, StdoutSink};

/// Where documents go, with every setting of that output.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkConfig {
    /// Standard output.
    Stdout,
    /// An NDJSON file.
    File(FileConfig),
    /// An Elasticsearch or OpenSearch index.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(Box<crate::sinks::EsConfig>),
    /// A syslog server (TCP, TLS or UDP).
    #[cfg(feature = "syslog")]
    Syslog(Box<crate::sinks::SyslogConfig>),
    /// A Kafka topic.
    #[cfg(feature = "kafka")]
    Kafka(Box<crate::sinks::kafka::KafkaSinkConfig>),
}

/// The file output's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    /// The file (its directory is created when missing).
    pub path: PathBuf,
    /// When it is rotated (between acknowledged deliveries).
    pub rotation: Rotation,
    /// How long one write and sync may take before the delivery is called stuck
    /// (default five minutes).
    pub delivery_bound: Option<Duration>,
}

/// What the caller of a sink can do; it decides what a sink does when a delivery fails,
/// and what opening it may change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkContext {
    /// The caller delivers a failed batch again: `collect` fetches the window again, the
    /// Kafka input reads its messages again. Then a sink keeps nothing of a failed
    /// delivery aside. Without it (`normalize` from files, which reads each line once),
    /// the index and Kafka sinks keep the documents a failed delivery leaves undelivered
    /// in the dead-letter file, with the reason, before the error is returned (a file
    /// or syslog sink has no such file for them: the error is the caller's to report).
    pub replays: bool,
    /// Only checking (`collect --check`): opening changes nothing at the destination
    /// (no index template is installed).
    pub check_only: bool,
}

impl SinkConfig {
    /// The output's name for messages (URLs redacted).
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Stdout => "<stdout>".to_string(),
            SinkConfig::File(f) => f.path.display().to_string(),
            #[cfg(feature = "elasticsearch")]
            SinkConfig::Elasticsearch(es) => {
                crate::url::redact(&format!("{}/{}", es.url, es.index))
            }
            #[cfg(feature = "syslog")]
            SinkConfig::Syslog(sys) => sys.url(),
            #[cfg(feature = "kafka")]
            SinkConfig::Kafka(k) => k.kafka.url(),
        }
    }

    /// The file this output writes, if it is a file: no other writer of the same
    /// process may name it.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            SinkConfig::File(f) => Some(&f.path),
            _ => None,
        }
    }

    /// How many bytes of documents a caller that streams into the sink (see
    /// [`crate::sinks::SinkWriter`]) gathers before one delivery.
    pub fn batch_bytes(&self) -> usize {
        match self {
            #[cfg(feature = "elasticsearch")]
            SinkConfig::Elasticsearch(es) => es.batch_bytes,
            #[cfg(feature = "kafka")]
            SinkConfig::Kafka(_) => 1024 * 1024,
            _ => 256 * 1024,
        }
    }
}

/// Opens the sink `config` describes. A file is appended to, a last line a killed
/// writer left torn cut first (its delivery was never acknowledged, so its caller
/// delivers it again; every delivery ends with a newline), unless only checking.
pub fn build(config: &SinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, Error> {
    Ok(match config {
        SinkConfig::Stdout => Box::new(StdoutSink),
        SinkConfig::File(f) => {
            let mut file = FileSink::open(f.path.clone(), f.rotation)?;
            if let Some(bound) = f.delivery_bound {
                file = file.with_delivery_bound(bound);
            }
            // Only checking: the file is left as it is.
            let cut = if context.check_only {
                0
            } else {
                file.cut_torn_tail()?
            };
            if cut > 0 {
                tracing::warn!(file = %f.path.display(), bytes = cut, "cut a torn last line (a run was stopped in the middle of a write); its delivery is made again");
            }
            Box::new(file)
        }
        #[cfg(feature = "elasticsearch")]
        SinkConfig::Elasticsearch(es) => {
            Box::new(crate::sinks::EsSink::open((**es).clone(), context)?)
        }
        #[cfg(feature = "syslog")]
        SinkConfig::Syslog(sys) => Box::new(crate::sinks::SyslogSink::open((**sys).clone())?),
        #[cfg(feature = "kafka")]
        SinkConfig::Kafka(k) => Box::new(crate::sinks::KafkaSink::open((**k).clone(), context)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_output_is_appended_to_and_its_torn_tail_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.ndjson");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let config = SinkConfig::File(FileConfig {
            path: path.clone(),
            ..FileConfig::default()
        });
        assert_eq!(config.path(), Some(path.as_path()));
        let mut sink = build(&config, &SinkContext::default()).unwrap();
        sink.deliver(b"{\"c\":3}\n", None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"c\":3}\n"
        );
        // Only checking, a torn tail is left as it is.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"d\":"))
            .unwrap();
        let checking = SinkContext {
            check_only: true,
            ..SinkContext::default()
        };
        drop(sink);
        drop(build(&config, &checking).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"c\":3}\n{\"d\":"
        );
        let _sink = build(&config, &SinkContext::default()).unwrap();
        match build(&config, &SinkContext::default()) {
            Err(Error::Locked { path: p }) => assert_eq!(p, path),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a second writer of one file"),
        }
    }

    #[test]
    fn a_file_output_takes_its_delivery_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = SinkConfig::File(FileConfig {
            path: dir.path().join("out.ndjson"),
            delivery_bound: Some(Duration::from_secs(7)),
            ..FileConfig::default()
        });
        let sink = build(&config, &SinkContext::default()).unwrap();
        assert_eq!(sink.delivery_bound(1, 1), Duration::from_secs(7));
    }
}
