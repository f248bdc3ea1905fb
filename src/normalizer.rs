//! The normalizer: runs a profile's table over one line.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::value::RawValue;

use crate::error::RejectReason;
use crate::input::{self, KeyIndex, Object, Record};
use crate::mapping::{Convert, Field, Profile, Source};
use crate::output::{Layout, Value};
use crate::time::EventTime;
use crate::value;

/// The default longest line accepted, in bytes (without its line ending).
pub const DEFAULT_MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// What became of one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// One document was appended to the output.
    Normalized,
    /// The line was blank; nothing was written.
    Blank,
    /// The line is not a row; nothing was written.
    Rejected(RejectReason),
}

/// Per-field counts of values that could not take their field's type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    counts: Vec<u64>,
}

impl Warnings {
    /// Adds another set of counts (from the same profile) to this one.
    pub fn merge(&mut self, other: &Warnings) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The count for the field at `index` in the profile's table.
    pub fn get(&self, index: usize) -> u64 {
        self.counts.get(index).copied().unwrap_or(0)
    }

    /// The total over all fields.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(field index, count)` for every field with at least one warning.
    pub fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n > 0)
    }

    fn add(&mut self, index: usize) {
        self.counts[index] += 1;
    }
}

/// A rule compiled against the profile's [`KeyIndex`].
#[derive(Debug, Clone)]
enum Step {
    Original,
    Constant(&'static str),
    Key(usize, Convert),
    FirstTime(Vec<usize>),
    ListOf(usize),
}

/// Normalizes lines with one profile. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Normalizer {
    profile: Profile,
    keys: KeyIndex,
    steps: Vec<Step>,
    layout: Layout,
    max_line_bytes: usize,
}

impl Normalizer {
    /// Compiles a profile.
    ///
    /// # Panics
    /// When the profile's table is inconsistent (a `ListOf` naming an unknown or a
    /// later field, or a field that is also a parent): a bug the profile tests catch.
    pub fn new(profile: Profile) -> Normalizer {
        let mut keys = KeyIndex::default();
        let fields = profile.fields();
        let steps = fields
            .iter()
            .enumerate()
            .map(|(i, field)| match field.source {
                Source::Original => Step::Original,
                Source::Constant(c) => Step::Constant(c),
                Source::Key(key, convert) => Step::Key(keys.slot(key), convert),
                Source::FirstTime(ks) => Step::FirstTime(ks.iter().map(|k| keys.slot(k)).collect()),
                Source::ListOf(name) => {
                    let target = fields[..i].iter().position(|f| f.name == name);
                    Step::ListOf(target.unwrap_or_else(|| {
                        panic!("{}: ListOf({name}) must name an earlier field", field.name)
                    }))
                }
            })
            .collect();
        let layout = Layout::new(fields);
        Normalizer {
            profile,
            keys,
            steps,
            layout,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Sets the longest line accepted, in bytes; longer lines are rejected.
    pub fn with_max_line_bytes(mut self, max: usize) -> Normalizer {
        self.max_line_bytes = max;
        self
    }

    /// The profile this normalizer runs.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Fresh, zeroed warning counts sized for this profile.
    pub fn new_warnings(&self) -> Warnings {
        Warnings {
            counts: vec![0; self.profile.fields().len()],
        }
    }

    /// Normalizes one line (with or without its line ending). On
    /// [`LineOutcome::Normalized`] one document and a `\n` are appended to `out`;
    /// otherwise `out` is left as it was. Never panics, whatever the bytes.
    pub fn normalize_line(
        &self,
        line: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
    ) -> LineOutcome {
        match self.try_normalize(line, out, warnings) {
            Ok(true) => LineOutcome::Normalized,
            Ok(false) => LineOutcome::Blank,
            Err(reason) => LineOutcome::Rejected(reason),
        }
    }

    fn try_normalize(
        &self,
        line: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
    ) -> Result<bool, RejectReason> {
        let Some(text) = input::line_text(line, self.max_line_bytes)? else {
            return Ok(false);
        };
        match input::parse_line(text, &self.keys)? {
            Record::Raw(row) => self.emit(Value::Str(Cow::Borrowed(text)), &row, out, warnings),
            Record::Envelope { message } => {
                let inner = value::unquote(message.get())
                    .ok_or_else(|| RejectReason::BrokenEnvelope("unreadable string".into()))?;
                let row = input::parse_envelope_row(&inner, &self.keys)?;
                self.emit(Value::Literal(message.get()), &row, out, warnings);
            }
        }
        Ok(true)
    }

    fn emit(
        &self,
        original: Value<'_>,
        row: &Object<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
    ) {
        let fields = self.profile.fields();
        let mut values: Vec<Option<Value>> = Vec::with_capacity(fields.len());
        for (i, step) in self.steps.iter().enumerate() {
            let v = match step {
                Step::Original => Some(original.clone()),
                Step::Constant(c) => Some(Value::Str(Cow::Borrowed(*c))),
                Step::Key(slot, convert) => {
                    convert_value(row.slots[*slot], *convert, &fields[i], i, warnings)
                }
                Step::FirstTime(slots) => {
                    Some(Value::Time(first_time(row, slots).unwrap_or_else(|| {
                        warnings.add(i);
                        EventTime::now()
                    })))
                }
                Step::ListOf(target) => values[*target].clone(),
            };
            values.push(v);
        }
        self.layout.write(&values, out);
    }
}

fn convert_value<'a>(
    raw: Option<&'a RawValue>,
    convert: Convert,
    _field: &Field,
    index: usize,
    warnings: &mut Warnings,
) -> Option<Value<'a>> {
    let text = raw.and_then(value::text);
    match convert {
        Convert::Text => text.map(Value::Str),
        Convert::ListOrEmpty => Some(Value::Str(text.unwrap_or(Cow::Borrowed("")))),
        Convert::Strip2 => strip2(&text?).map(|s| Value::Str(Cow::Owned(s.to_owned()))),
        Convert::Integer => {
            let text = text?;
            let parsed = text.parse::<i64>().ok();
            if parsed.is_none() {
                warnings.add(index);
            }
            parsed.map(Value::Long)
        }
        Convert::IpAddress => {
            let text = text?;
            if text.parse::<IpAddr>().is_ok() {
                Some(Value::Str(text))
            } else {
                warnings.add(index);
                None
            }
        }
    }
}

/// Python's `s[2:-2]` on Unicode characters; `None` when that is empty.
pub(crate) fn strip2(s: &str) -> Option<&str> {
    let mut starts = s.char_indices().map(|(i, _)| i);
    let start = starts.nth(2)?;
    let mut ends = s.char_indices().rev().map(|(i, _)| i);
    let end = ends.nth(1)?;
    (start < end).then(|| &s[start..end])
}

fn first_time(row: &Object<'_>, slots: &[usize]) -> Option<EventTime> {
    slots.iter().find_map(|&slot| {
        let text = value::text(row.slots[slot]?)?;
        EventTime::parse(&text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip2_is_python_slicing_on_chars() {
        assert_eq!(strip2(""), None);
        assert_eq!(strip2("a"), None);
        assert_eq!(strip2("ab"), None);
        assert_eq!(strip2("abc"), None);
        assert_eq!(strip2("abcd"), None);
        assert_eq!(strip2("abcde"), Some("c"));
        assert_eq!(strip2("[\"http://a\"]"), Some("http://a"));
        assert_eq!(strip2("[\"é日本\"]"), Some("é日本"));
        assert_eq!(strip2("ééxéé"), Some("x"));
        assert_eq!(strip2("[]"), None);
    }
}
