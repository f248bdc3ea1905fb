//! The files source: standard input and files (gzip recognised by its content), cut
//! into blocks of whole lines for [`crate::pipeline`], with memory bounded whatever a
//! line's length.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;

use crate::error::Error;
use crate::reject::REJECT_PREFIX_BYTES;

/// One input of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input.
    Stdin,
    /// A file; gzip-compressed files are recognised by their content.
    Path(PathBuf),
}

impl Input {
    /// The name used in messages and reject records: the path, or `<stdin>`.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".to_string(),
            Input::Path(p) => p.display().to_string(),
        }
    }

    /// The input's size in bytes when it is a plain (not gzip) file; `None` for
    /// stdin, a gzip file, or a file that cannot be read.
    pub fn plain_size(&self) -> Option<u64> {
        let Input::Path(p) = self else { return None };
        let mut head = [0u8; 2];
        let mut file = File::open(p).ok()?;
        let n = file.read(&mut head).ok()?;
        if n == 2 && head == [0x1f, 0x8b] {
            return None;
        }
        file.metadata().ok().map(|m| m.len())
    }

    /// Opens the input, decompressing it when it starts with the gzip magic bytes.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, Error> {
        let read_err = |source| Error::Read {
            path: self.name(),
            source,
        };
        let raw: Box<dyn Read + Send> = match self {
            Input::Stdin => Box::new(io::stdin()),
            Input::Path(p) => Box::new(File::open(p).map_err(read_err)?),
        };
        let mut reader = BufReader::with_capacity(256 * 1024, raw);
        let head = reader.fill_buf().map_err(read_err)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Box::new(MultiGzDecoder::new(reader)))
        } else {
            Ok(Box::new(reader))
        }
    }
}

/// A line over the length limit, cut down to its prefix in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LongLine {
    /// Where its (kept) prefix starts in the block.
    pub(crate) start: usize,
    /// Its true length, without its line ending.
    pub(crate) len: u64,
    /// Its bytes left out of the block.
    pub(crate) skipped: u64,
}

/// Cuts a reader into blocks of whole lines. A line over `max_line` bytes is never
/// buffered whole: once it passes the limit, only its first [`REJECT_PREFIX_BYTES`]
/// are kept and the rest is read past and counted, so that memory stays bounded by the
/// limit and the block size, whatever the input holds (a 200 MB line, a gzip bomb).
pub(crate) struct BlockSource {
    reader: Box<dyn Read + Send>,
    block_bytes: usize,
    max_line: usize,
    carry: Vec<u8>,
    eof: bool,
}

impl BlockSource {
    pub(crate) fn new(reader: Box<dyn Read + Send>, block_bytes: usize, max_line: usize) -> Self {
        BlockSource {
            reader,
            block_bytes: block_bytes.max(1),
            max_line,
            carry: Vec::new(),
            eof: false,
        }
    }

    /// Reads more input onto `buf`; false at the end of the input.
    fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let want = (self.block_bytes.saturating_sub(buf.len())).max(64 * 1024) as u64;
            match (&mut self.reader).take(want).read_to_end(buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Cuts the line that starts at `start` in `buf` (and has no newline there yet)
    /// down to its prefix (at most [`REJECT_PREFIX_BYTES`], ending on a character
    /// boundary when the line is UTF-8), reads past the rest of it, and records it;
    /// returns the prefix's length. What follows its newline is left on `buf`, after the
    /// prefix and a newline.
    fn cut_long_line(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        long: &mut Vec<LongLine>,
    ) -> io::Result<usize> {
        let mut keep = REJECT_PREFIX_BYTES.min(self.max_line);
        // A character split by the prefix's end is left out of it.
        if let Err(e) = std::str::from_utf8(&buf[start..start + keep])
            && e.error_len().is_none()
        {
            keep = e.valid_up_to();
        }
        // Bytes of the line read (its `\r` included), and its last one.
        let mut raw = (buf.len() - start) as u64;
        let mut last = buf.last().copied();
        buf.truncate(start + keep);
        let mut chunk = Vec::with_capacity(64 * 1024);
        let rest = loop {
            chunk.clear();
            if !self.fill(&mut chunk)? {
                break None;
            }
            if let Some(pos) = memchr::memchr(b'\n', &chunk) {
                if pos > 0 {
                    last = Some(chunk[pos - 1]);
                }
                raw += pos as u64;
                break Some(pos);
            }
            raw += chunk.len() as u64;
            last = chunk.last().copied();
        };
        // The line's length is counted without its line ending, as `line_text` does;
        // what was left out of the block counts every byte.
        let len = if rest.is_some() && last == Some(b'\r') {
            raw - 1
        } else {
            raw
        };
        long.push(LongLine {
            start,
            len,
            skipped: raw - keep as u64,
        });
        if let Some(pos) = rest {
            buf.push(b'\n');
            buf.extend_from_slice(&chunk[pos + 1..]);
        }
        Ok(keep)
    }

    /// Fills `buf` with the next whole lines (the last line of the input may lack
    /// its `\n`), recording in `long` the lines cut down to their prefix. Returns false
    /// when the input is exhausted.
    pub(crate) fn next_block(
        &mut self,
        buf: &mut Vec<u8>,
        long: &mut Vec<LongLine>,
    ) -> io::Result<bool> {
        buf.clear();
        long.clear();
        buf.append(&mut self.carry);
        // The start of the line being read, and how far newlines were looked for.
        let mut line_start = 0;
        let mut scanned = 0;
        loop {
            // The lines that ended in what was read stay whole (a line over the limit
            // that came in one read is at most a read long: the normalizer rejects it).
            if let Some(pos) = memchr::memrchr(b'\n', &buf[scanned..]) {
                line_start = scanned + pos + 1;
            }
            scanned = buf.len();
            // A line still open past the limit (with room for its line ending).
            if buf.len() - line_start > self.max_line.saturating_add(1) {
                let kept = self.cut_long_line(buf, line_start, long)?;
                if self.eof && !buf[line_start..].contains(&b'\n') {
                    // The input ended inside it: the prefix is the last line.
                    return Ok(true);
                }
                line_start += kept + 1;
                scanned = line_start;
                continue;
            }
            if buf.len() >= self.block_bytes || self.eof {
                if line_start > 0 {
                    self.carry.extend_from_slice(&buf[line_start..]);
                    buf.truncate(line_start);
                    return Ok(true);
                }
                if self.eof {
                    return Ok(!buf.is_empty());
                }
                // A line longer than a block (within the limit): keep reading.
            }
            self.fill(buf)?;
        }
    }
}
