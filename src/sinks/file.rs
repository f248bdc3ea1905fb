//! The NDJSON file sink, with size- and time-based rotation.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sinks::Sink;

/// When the current file is rotated (renamed with a UTC time suffix and replaced
/// by a new one). Rotation happens only between acknowledged batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file reaches this many bytes.
    pub max_bytes: Option<u64>,
    /// Rotate once the file has been open this long.
    pub max_age: Option<Duration>,
}

/// Appends NDJSON batches to a file, syncing each before acknowledging it.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    len: u64,
    opened: Instant,
    rotation: Rotation,
    bound: Duration,
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.display().to_string(),
        source,
    }
}

impl FileSink {
    /// Opens (or creates) `path` for appending; its directory is created if needed.
    pub fn open(path: impl Into<PathBuf>, rotation: Rotation) -> Result<FileSink, Error> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = super::open_exclusive(&path, super::OpenMode::Append)?;
        let len = file.metadata().map_err(write_err(&path))?.len();
        Ok(FileSink {
            path,
            file,
            len,
            opened: Instant::now(),
            rotation,
            bound: Duration::from_secs(300),
        })
    }

    /// Sets how long one write and sync may take before the delivery is called stuck
    /// (default 5 minutes; a file on a hung network mount blocks without a timeout).
    pub fn with_delivery_bound(mut self, bound: Duration) -> FileSink {
        self.bound = bound;
        self
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cuts a torn last line (one without its newline, left by a process killed in the
    /// middle of a write) off the file, so that what is delivered next starts on a line
    /// of its own; returns how many bytes were cut. Every delivery ends with a newline,
    /// so a file this sink wrote never ends otherwise.
    pub fn cut_torn_tail(&mut self) -> Result<u64, Error> {
        let cut = super::cut_torn_tail(&self.file, &self.path).map_err(write_err(&self.path))?;
        self.len = self.file.metadata().map_err(write_err(&self.path))?.len();
        Ok(cut)
    }

    fn rotate(&mut self) -> Result<(), Error> {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%S%.fZ")
            .to_string();
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let rotated = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.path, &rotated).map_err(write_err(&self.path))?;
        *self = FileSink::open(self.path.clone(), self.rotation)?.with_delivery_bound(self.bound);
        Ok(())
    }
}

impl Sink for FileSink {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn delivery_bound(&self, _documents: usize, _bytes: usize) -> Duration {
        self.bound
    }

    /// The file's real length (another writer, or logrotate's `copytruncate`, may have
    /// changed it since the last delivery).
    fn mark(&mut self) -> Result<String, Error> {
        self.len = self.file.metadata().map_err(write_err(&self.path))?.len();
        Ok(format!("{}\t{}", self.len, self.path.display()))
    }

    fn deliver(&mut self, ndjson: &[u8], _ids: Option<&[String]>) -> Result<(), Error> {
        super::append_whole(&mut self.file, ndjson).map_err(write_err(&self.path))?;
        self.len = self.file.metadata().map_err(write_err(&self.path))?.len();
        Ok(())
    }

    fn repair(&mut self, mark: &str) -> Result<(), Error> {
        let Some((len, path)) = mark.split_once('\t') else {
            return Ok(());
        };
        let (Ok(len), path) = (len.parse::<u64>(), PathBuf::from(path)) else {
            return Ok(());
        };
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Write {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let current = file.metadata().map_err(write_err(&path))?.len();
        if current > len {
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(write_err(&path))?;
        }
        if path == self.path {
            self.len = self.file.metadata().map_err(write_err(&self.path))?.len();
        }
        Ok(())
    }

    /// The file was opened for appending: checks that the disk takes a sync.
    fn check(&mut self) -> Result<(), Error> {
        self.file.sync_data().map_err(write_err(&self.path))
    }

    fn committed(&mut self) -> Result<(), Error> {
        let too_big = self.rotation.max_bytes.is_some_and(|m| self.len >= m);
        let too_old = self
            .rotation
            .max_age
            .is_some_and(|m| self.opened.elapsed() >= m);
        if (too_big || too_old) && self.len > 0 {
            self.rotate()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_and_marks_follow_the_real_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.ndjson");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let mut sink = FileSink::open(&path, Rotation::default()).unwrap();
        assert_eq!(sink.cut_torn_tail().unwrap(), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(sink.cut_torn_tail().unwrap(), 0);
        // A file with no newline at all is one torn line.
        let bare = dir.path().join("bare.ndjson");
        std::fs::write(&bare, vec![b'x'; 200_000]).unwrap();
        let mut b = FileSink::open(&bare, Rotation::default()).unwrap();
        assert_eq!(b.cut_torn_tail().unwrap(), 200_000);
        // logrotate's copytruncate empties the file under the sink: the next mark is 0,
        // so a repair can never cut past what is there.
        sink.deliver(b"{\"d\":4}\n", None).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(sink.mark().unwrap(), format!("0\t{}", path.display()));
        sink.deliver(b"{\"e\":5}\n", None).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"e\":5}\n",
            "no hole, no torn line"
        );
    }

    #[test]
    fn repair_truncates_to_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(dir.path().join("out.ndjson"), Rotation::default()).unwrap();
        sink.deliver(b"{\"a\":1}\n", None).unwrap();
        let mark = sink.mark().unwrap();
        sink.deliver(b"{\"b\":2}\n{\"c\":", None).unwrap();
        sink.repair(&mark).unwrap();
        sink.deliver(b"{\"d\":4}\n", None).unwrap();
        assert_eq!(
            std::fs::read_to_string(sink.path()).unwrap(),
            "{\"a\":1}\n{\"d\":4}\n"
        );
    }

    #[test]
    fn rotates_by_size_between_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(
            dir.path().join("out.ndjson"),
            Rotation {
                max_bytes: Some(10),
                max_age: None,
            },
        )
        .unwrap();
        sink.deliver(b"{\"a\":12345}\n", None).unwrap();
        sink.committed().unwrap();
        sink.deliver(b"{\"b\":2}\n", None).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2);
        assert_eq!(std::fs::read_to_string(sink.path()).unwrap(), "{\"b\":2}\n");
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("out-") && n.ends_with(".ndjson"))
        );
    }
}
