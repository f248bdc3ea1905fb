//! The normalizer: runs a profile's table over one line.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::value::RawValue;

use crate::error::RejectReason;
use crate::input::{self, KeyIndex, Object, Record};
use crate::mapping::categorize::{self, Categories};
use crate::mapping::{Categorization, Convert, Field, Gate, Profile, Source, siem};
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

/// Per-field counts of values that could not take their field's type, and the count of
/// rows whose lone surrogate escapes were replaced by U+FFFD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    counts: Vec<u64>,
    lone_surrogates: u64,
}

impl Warnings {
    /// Rows kept with U+FFFD in place of a lone UTF-16 surrogate escape (`\ud800`
    /// with no partner), wherever it stood: a key, a value, an envelope's `message`.
    pub fn lone_surrogates(&self) -> u64 {
        self.lone_surrogates
    }

    /// Adds another set of counts (from the same profile) to this one.
    pub fn merge(&mut self, other: &Warnings) {
        self.lone_surrogates += other.lone_surrogates;
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
        match self.counts.get_mut(index) {
            Some(n) => *n += 1,
            // Counts made with `Warnings::default()` grow on their first warning.
            None => {
                self.counts.resize(index + 1, 0);
                self.counts[index] = 1;
            }
        }
    }
}

/// What the normalizer made of the lines of a run: the counts every path keeps
/// (`normalize` from files, the Kafka input, `collect`), each with the counts of its own
/// beside them. Every line is exactly one of normalized, rejected or blank.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Lines turned into a document.
    pub normalized: u64,
    /// Lines that are not rows.
    pub rejected: u64,
    /// Blank lines, skipped.
    pub blank: u64,
    /// Per-field counts of values that could not take their field's type (the row was
    /// kept, without the value).
    pub warnings: Warnings,
}

impl LineCounts {
    /// Counts one line's outcome.
    pub fn count(&mut self, outcome: &LineOutcome) {
        self.lines += 1;
        match outcome {
            LineOutcome::Normalized => self.normalized += 1,
            LineOutcome::Blank => self.blank += 1,
            LineOutcome::Rejected(_) => self.rejected += 1,
        }
    }

    /// Adds another run's counts (of the same profile) to these.
    pub fn merge(&mut self, other: &LineCounts) {
        self.lines += other.lines;
        self.normalized += other.normalized;
        self.rejected += other.rejected;
        self.blank += other.blank;
        self.warnings.merge(&other.warnings);
    }
}

/// A rule compiled against the profile's [`KeyIndex`].
#[derive(Debug, Clone)]
enum Step {
    Original,
    Constant(&'static str),
    Key(usize, Convert),
    FirstTime(Vec<usize>),
    FirstKey(Vec<usize>, Convert),
    KeyWhen(usize, usize, Convert),
    Nested(usize, &'static [&'static str], Convert),
    Related(Vec<usize>),
    ConstantWhen(usize, &'static str),
    Categorize(Vec<(&'static str, usize)>, Categorization),
    Labelled(usize, &'static [&'static str], &'static str, Convert),
    Either(CompiledGate, Box<Step>, Box<Step>),
}

/// A [`Gate`] compiled against the profile's [`KeyIndex`].
#[derive(Debug, Clone)]
enum CompiledGate {
    Present(usize, &'static [&'static str]),
    /// The slots, and the word in lower case.
    Contains(Vec<usize>, String),
}

/// Compiles the rule of field `i`.
fn compile(source: &Source, i: usize, fields: &[Field], keys: &mut KeyIndex) -> Step {
    let earlier = |name: &str| {
        fields[..i]
            .iter()
            .position(|f| f.name == name)
            .unwrap_or_else(|| panic!("{}: {name} must name an earlier field", fields[i].name))
    };
    match *source {
        Source::Original => Step::Original,
        Source::Constant(c) => Step::Constant(c),
        Source::Key(key, convert) => Step::Key(keys.slot(key), convert),
        Source::FirstTime(ks) => Step::FirstTime(ks.iter().map(|k| keys.slot(k)).collect()),
        Source::FirstKey(ks, convert) => {
            Step::FirstKey(ks.iter().map(|k| keys.slot(k)).collect(), convert)
        }
        Source::Nested(key, path, convert) => Step::Nested(keys.slot(key), path, convert),
        Source::KeyWhen(key, gate, convert) => {
            Step::KeyWhen(keys.slot(key), keys.slot(gate), convert)
        }
        Source::Related(names) => Step::Related(names.iter().map(|n| earlier(n)).collect()),
        Source::ConstantWhen(name, c) => Step::ConstantWhen(earlier(name), c),
        Source::Categorize(which) => Step::Categorize(
            categorize::KEYS
                .iter()
                .map(|k| (*k, keys.slot(k)))
                .collect(),
            which,
        ),
        Source::Labelled(key, path, label, convert) => {
            Step::Labelled(keys.slot(key), path, label, convert)
        }
        Source::Either(gate, then, otherwise) => {
            let gate = match gate {
                Gate::Present(key, path) => CompiledGate::Present(keys.slot(key), path),
                Gate::Contains(ks, word) => CompiledGate::Contains(
                    ks.iter().map(|k| keys.slot(k)).collect(),
                    word.to_ascii_lowercase(),
                ),
            };
            Step::Either(
                gate,
                Box::new(compile(then, i, fields, keys)),
                Box::new(compile(otherwise, i, fields, keys)),
            )
        }
    }
}

/// How a profile's documents are keyed: the rule of [`crate::sinks::document_key`],
/// applied to the text the document is written from rather than read back from it.
#[derive(Debug, Clone, Copy)]
enum KeyRule {
    /// A SIEM item's: `event.dataset` is the constant `sophos_central.{stream}`, and
    /// `event.original` the item.
    Item(&'static str),
    /// A row's: `message` is the row.
    Row,
    /// Neither: read from the document.
    Document,
}

impl KeyRule {
    fn of(fields: &[Field]) -> KeyRule {
        let original = |name: &str| {
            fields
                .iter()
                .any(|f| f.name == name && matches!(f.source, Source::Original))
        };
        let stream = fields.iter().find_map(|f| match f.source {
            Source::Constant(c) if f.name == "event.dataset" => c.strip_prefix("sophos_central."),
            _ => None,
        });
        match stream {
            Some(stream) if original("event.original") => KeyRule::Item(stream),
            _ if original("message") => KeyRule::Row,
            _ => KeyRule::Document,
        }
    }
}

/// Normalizes lines with one profile. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Normalizer {
    profile: Profile,
    keys: KeyIndex,
    steps: Vec<Step>,
    layout: Layout,
    max_line_bytes: usize,
    key_rule: KeyRule,
}

impl Normalizer {
    /// Compiles a profile.
    ///
    /// # Panics
    /// When the profile's table is inconsistent (a rule naming an unknown or a later
    /// field, or a field that is also a parent): a bug the profile tests catch.
    pub fn new(profile: Profile) -> Normalizer {
        let mut keys = KeyIndex::default();
        let fields = profile.fields();
        let steps = fields
            .iter()
            .enumerate()
            .map(|(i, field)| compile(&field.source, i, fields, &mut keys))
            .collect();
        let layout = Layout::new(fields);
        let key_rule = KeyRule::of(fields);
        Normalizer {
            profile,
            keys,
            steps,
            layout,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            key_rule,
        }
    }

    /// Sets the longest line accepted, in bytes; longer lines are rejected.
    pub fn with_max_line_bytes(mut self, max: usize) -> Normalizer {
        self.max_line_bytes = max;
        self
    }

    /// The longest line accepted, in bytes.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// The profile this normalizer runs.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Fresh, zeroed warning counts sized for this profile.
    pub fn new_warnings(&self) -> Warnings {
        Warnings {
            counts: vec![0; self.profile.fields().len()],
            lone_surrogates: 0,
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
        self.normalize_line_keyed(line, out, warnings, None)
    }

    /// As [`Normalizer::normalize_line`], and on [`LineOutcome::Normalized`] sets `key`
    /// to the document's key: [`crate::sinks::document_key`] of it, computed from the
    /// row it is written from rather than read back from the document (the same key,
    /// for less work).
    pub fn normalize_line_keyed(
        &self,
        line: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
        key: Option<&mut String>,
    ) -> LineOutcome {
        let at = out.len();
        match self.try_normalize(line, out, warnings) {
            Ok(Some(text)) => {
                if let Some(key) = key {
                    *key = match self.key_rule {
                        KeyRule::Item(stream) => crate::row::item_key(stream, &text),
                        KeyRule::Row => crate::row::key(&text),
                        KeyRule::Document => {
                            crate::sinks::document_key(&out[at..out.len().saturating_sub(1)])
                        }
                    };
                }
                LineOutcome::Normalized
            }
            Ok(None) => LineOutcome::Blank,
            Err(reason) => LineOutcome::Rejected(reason),
        }
    }

    /// Writes the line's document; gives the text it keeps whole (`message`, or
    /// `event.original`), `None` for a blank line.
    fn try_normalize<'l>(
        &self,
        line: &'l [u8],
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
    ) -> Result<Option<Cow<'l, str>>, RejectReason> {
        let Some(text) = input::line_text(line, self.max_line_bytes)? else {
            return Ok(None);
        };
        // One rule for lone surrogate escapes, wherever they stand: the row is read with
        // U+FFFD in their place, and counted. A raw row's `message` is the line as
        // written (the escape is text inside it); an envelope's is its literal with
        // `\uFFFD` in place, since a lone surrogate escape in the output document would
        // make it invalid for strict JSON parsers.
        let fixed = value::replace_lone_surrogates(text);
        let parsed = fixed.as_deref().unwrap_or(text);
        let mut replaced = fixed.is_some();
        let whole = match input::parse_line(parsed, &self.keys)? {
            Record::Raw(row) => {
                self.emit(Value::Str(Cow::Borrowed(text)), &row, out, warnings);
                Cow::Borrowed(text)
            }
            Record::Envelope { message } => {
                let inner = value::unquote(message.get())
                    .ok_or_else(|| RejectReason::BrokenEnvelope("unreadable string".into()))?;
                let inner_fixed = value::replace_lone_surrogates(&inner);
                replaced |= inner_fixed.is_some();
                let row = input::parse_envelope_row(
                    inner_fixed.as_deref().unwrap_or(&inner),
                    &self.keys,
                )?;
                self.emit(Value::Literal(message.get()), &row, out, warnings);
                // The document's `message` is the literal, which reads as `inner`.
                Cow::Owned(inner.into_owned())
            }
        };
        if replaced {
            warnings.lone_surrogates += 1;
        }
        Ok(Some(whole))
    }

    fn emit<'a>(
        &self,
        original: Value<'a>,
        row: &Object<'a>,
        out: &mut Vec<u8>,
        warnings: &mut Warnings,
    ) {
        let mut values: Vec<Option<Value>> = Vec::with_capacity(self.steps.len());
        let mut scratch = Scratch::default();
        for (i, step) in self.steps.iter().enumerate() {
            let v = eval(step, i, row, &original, &values, &mut scratch, warnings);
            values.push(v);
        }
        self.layout.write(&values, out);
    }
}

/// What the rules of one row compute once and share: its categorization, and the
/// nested objects they read, parsed once each (a SIEM alert's `data` feeds some 80
/// fields).
#[derive(Default)]
struct Scratch {
    categories: Option<Categories>,
    /// Per key slot: `None` not parsed yet, `Some(None)` not an object.
    trees: Vec<Option<Option<serde_json::Value>>>,
}

impl Scratch {
    /// The JSON text at `path` inside the row's value `raw` of key `slot` (an object,
    /// or a JSON string holding one); the value's own text for an empty path.
    fn nested(&mut self, slot: usize, raw: &str, path: &[&str]) -> Option<String> {
        if path.is_empty() {
            return Some(raw.to_owned());
        }
        self.leaf(slot, raw, path).map(serde_json::Value::to_string)
    }

    /// True when the value at `path` (the row's value itself for an empty path) holds
    /// something: not `null`, `""`, `"None"`, nor a list or an object (however written)
    /// of only such values. Read from the parsed tree, not from its text again.
    fn present(&mut self, slot: usize, raw: &str, path: &[&str]) -> bool {
        if path.is_empty() {
            return serde_json::from_str::<serde_json::Value>(raw).is_ok_and(|v| holds(&v));
        }
        self.leaf(slot, raw, path).is_some_and(holds)
    }

    /// The value at a non-empty `path` inside the row's value `raw` of key `slot`,
    /// parsing that value once.
    fn leaf(&mut self, slot: usize, raw: &str, path: &[&str]) -> Option<&serde_json::Value> {
        if self.trees.len() <= slot {
            self.trees.resize(slot + 1, None);
        }
        let tree = self.trees[slot]
            .get_or_insert_with(|| parse_tree(raw))
            .as_ref()?;
        path.iter()
            .try_fold(tree, |v, k| match (v, k.parse::<usize>()) {
                (serde_json::Value::Array(items), Ok(i)) => items.get(i),
                _ => v.get(k),
            })
    }
}

/// See [`Scratch::present`].
fn holds(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty() && s != "None",
        serde_json::Value::Array(a) => a.iter().any(holds),
        serde_json::Value::Object(o) => o.values().any(holds),
        _ => true,
    }
}

/// The value at `slot` read by [`Scratch::nested`]: an object, or a JSON string holding
/// one, parsed.
fn parse_tree(raw: &str) -> Option<serde_json::Value> {
    match raw.as_bytes().first()? {
        b'{' => serde_json::from_str(raw).ok(),
        b'"' => serde_json::from_str(&value::unquote(raw)?).ok(),
        _ => None,
    }
}

/// The value of field `i` by its compiled rule, given the fields before it.
fn eval<'a>(
    step: &Step,
    i: usize,
    row: &Object<'a>,
    original: &Value<'a>,
    values: &[Option<Value<'a>>],
    scratch: &mut Scratch,
    warnings: &mut Warnings,
) -> Option<Value<'a>> {
    let raw = |slot: usize| row.slots[slot].map(RawValue::get);
    match step {
        Step::Original => Some(original.clone()),
        Step::Constant(c) => Some(Value::Str(Cow::Borrowed(*c))),
        Step::Key(slot, convert) => warn_on_err(convert_value(raw(*slot), *convert), i, warnings),
        Step::KeyWhen(slot, gate, convert) => match raw(*gate).and_then(value::text) {
            Some(_) => warn_on_err(convert_value(raw(*slot), *convert), i, warnings),
            None => None,
        },
        Step::FirstTime(slots) => Some(Value::Time(first_time(row, slots).unwrap_or_else(|| {
            warnings.add(i);
            EventTime::now()
        }))),
        Step::FirstKey(slots, convert) => {
            let mut failed = false;
            let found = slots
                .iter()
                .find_map(|&slot| match convert_value(raw(slot), *convert) {
                    Ok(v) => v,
                    Err(kept) => {
                        failed = true;
                        kept
                    }
                });
            if found.is_none() && failed {
                warnings.add(i);
            }
            found
        }
        Step::Nested(slot, path, convert) => {
            let leaf = raw(*slot).and_then(|r| scratch.nested(*slot, r, path));
            owned_converted(leaf.as_deref(), *convert, i, warnings)
        }
        Step::Labelled(slot, path, label, convert) => {
            let text = raw(*slot).and_then(|r| scratch.nested(*slot, r, path));
            let text = text.as_deref().and_then(value::text);
            let line = text.as_deref().and_then(|t| siem::labelled(t, label));
            let literal = line.map(|l| serde_json::Value::String(l.to_owned()).to_string());
            owned_converted(literal.as_deref(), *convert, i, warnings)
        }
        Step::Either(gate, then, otherwise) => {
            let holds = match gate {
                CompiledGate::Present(slot, path) => {
                    raw(*slot).is_some_and(|r| scratch.present(*slot, r, path))
                }
                CompiledGate::Contains(slots, word) => slots.iter().any(|&slot| {
                    raw(slot)
                        .and_then(value::text)
                        .is_some_and(|t| t.to_ascii_lowercase().contains(word.as_str()))
                }),
            };
            let chosen = if holds { then } else { otherwise };
            eval(chosen, i, row, original, values, scratch, warnings)
        }
        Step::Related(fields) => related(fields.iter().filter_map(|&f| values[f].as_ref())),
        Step::ConstantWhen(field, c) => values[*field]
            .as_ref()
            .map(|_| Value::Str(Cow::Borrowed(*c))),
        Step::Categorize(keys, which) => {
            let c = scratch.categories.get_or_insert_with(|| {
                categorize::categorize(|k| {
                    keys.iter()
                        .find(|(name, _)| *name == k)
                        .and_then(|&(_, slot)| raw(slot))
                        .and_then(value::text)
                })
            });
            let list = |items: &[&'static str]| {
                Value::List(
                    items
                        .iter()
                        .map(|s| Value::Str(Cow::Borrowed(*s)))
                        .collect(),
                )
            };
            match which {
                Categorization::Category => Some(list(&c.category)),
                Categorization::Type => Some(list(&c.kind)),
                Categorization::Outcome => c.outcome.map(|o| Value::Str(Cow::Borrowed(o))),
            }
        }
    }
}

/// Converts a value computed from the row (not borrowed from it), counting a warning
/// when it cannot take the field's type.
fn owned_converted(
    raw: Option<&str>,
    convert: Convert,
    i: usize,
    warnings: &mut Warnings,
) -> Option<Value<'static>> {
    let converted = match convert_value(raw, convert) {
        Ok(v) => Ok(v.map(Value::into_owned)),
        Err(v) => Err(v.map(Value::into_owned)),
    };
    warn_on_err(converted, i, warnings)
}

/// A conversion's result: `Ok(None)` absent, `Ok(Some(v))` a value, `Err(kept)` the
/// value cannot take the field's type: a warning, and what is kept of it (usually
/// nothing).
type Converted<'a> = Result<Option<Value<'a>>, Option<Value<'a>>>;

fn warn_on_err<'a>(
    converted: Converted<'a>,
    index: usize,
    warnings: &mut Warnings,
) -> Option<Value<'a>> {
    converted.unwrap_or_else(|kept| {
        warnings.add(index);
        kept
    })
}

/// The distinct string values of `values` (lists flattened), in order.
fn related<'v, 'a: 'v>(values: impl Iterator<Item = &'v Value<'a>>) -> Option<Value<'a>> {
    let mut out: Vec<Value<'a>> = Vec::new();
    let mut push = |v: &Value<'a>| {
        if v.as_str().is_some() && !out.iter().any(|o| o.as_str() == v.as_str()) {
            out.push(v.clone());
        }
    };
    for v in values {
        match v {
            Value::List(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    (!out.is_empty()).then_some(Value::List(out))
}

/// Converts one raw value (see [`Converted`]).
fn convert_value(raw: Option<&str>, convert: Convert) -> Converted<'_> {
    let text = raw.and_then(value::text);
    let Some(text) = text else {
        return Ok(match convert {
            Convert::ListOrEmpty => Some(Value::Str(Cow::Borrowed(""))),
            _ => None,
        });
    };
    let raw = raw.unwrap_or_default();
    let owned = |s: &str| Value::Str(Cow::Owned(s.to_owned()));
    Ok(match convert {
        Convert::Text | Convert::ListOrEmpty => Some(Value::Str(text)),
        Convert::Strip2 => strip2(&text).map(owned),
        Convert::Integer => Some(Value::Long(text.parse::<i64>().map_err(|_| None)?)),
        Convert::Port => Some(Value::Long(i64::from(
            text.parse::<u16>().map_err(|_| None)?,
        ))),
        Convert::IpAddress => {
            text.parse::<IpAddr>().map_err(|_| None)?;
            Some(Value::Str(text))
        }
        Convert::Number => {
            let n: serde_json::Number = serde_json::from_str(&text).map_err(|_| None)?;
            Some(Value::Raw(Cow::Owned(n.to_string())))
        }
        Convert::Bool => Some(Value::Bool(match text.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(None),
        })),
        Convert::Time => Some(Value::Time(EventTime::parse(&text).ok_or(None)?)),
        Convert::DayFirstTime => match &*text {
            "-" => None,
            t => Some(Value::Time(day_first_time(t).ok_or(None)?)),
        },
        Convert::Object => {
            let json = if raw.starts_with('{') {
                raw.to_owned()
            } else {
                text.to_string()
            };
            match serde_json::from_str::<&serde_json::value::RawValue>(&json) {
                Ok(v) if v.get().starts_with('{') => {
                    Some(Value::Raw(Cow::Owned(value::compact(v.get()))))
                }
                _ => return Err(Some(Value::Str(text))),
            }
        }
        Convert::StringList => {
            let items = json_array(raw, &text).unwrap_or_else(|| vec![text.to_string()]);
            string_list(items)
        }
        Convert::FilePath => looks_like_path(&text).then_some(Value::Str(text)),
        Convert::FileName | Convert::Directory if !looks_like_path(&text) => None,
        Convert::FileName => {
            let name = text.rsplit(['\\', '/']).next().unwrap_or_default();
            (!name.is_empty()).then(|| owned(name))
        }
        Convert::Directory => {
            let cut = text.rfind(['\\', '/']).ok_or(None)?;
            Some(owned(if cut == 0 { &text[..1] } else { &text[..cut] }))
        }
        Convert::CommandLine => match json_array(raw, &text) {
            Some(args) => (!args.is_empty()).then(|| Value::Str(Cow::Owned(args.join(" ")))),
            None => Some(Value::Str(text)),
        },
        Convert::Args => {
            let args = json_array(raw, &text).unwrap_or_else(|| split_args(&text));
            string_list(args)
        }
        Convert::OsType => os_type(&text).map(|t| Value::Str(Cow::Borrowed(t))),
        Convert::DomainOf => match text.split_once('\\') {
            Some((domain, _)) if !domain.is_empty() => Some(owned(domain)),
            _ => None,
        },
        Convert::UserOf => {
            let user = text.split_once('\\').map_or(&*text, |(_, user)| user);
            (!user.is_empty()).then(|| owned(user))
        }
        Convert::Mac => Some(Value::Str(Cow::Owned(siem::mac(&text)))),
        Convert::SnakeCaseObjects => {
            let json = if raw.starts_with('[') { raw } else { &text };
            let list = siem::snake_case_objects(json).ok_or(None)?;
            (list != "[]").then_some(Value::Raw(Cow::Owned(list)))
        }
        // An object or list field never takes a scalar (an index would refuse the
        // document): that is left out with a warning.
        Convert::Json => match raw.as_bytes().first() {
            Some(b'[' | b'{') => {
                let compact = value::compact(raw);
                (compact != "[]" && compact != "{}").then_some(Value::Raw(Cow::Owned(compact)))
            }
            _ => return Err(None),
        },
        Convert::Severity => Some(Value::Long(siem::severity(&text).ok_or(None)?)),
        Convert::TechniqueIds
        | Convert::TechniqueNames
        | Convert::TacticIds
        | Convert::TacticNames => {
            let items = mitre(&text, convert).ok_or(None)?;
            string_list(items)
        }
    })
}

/// A list of strings; `None` when empty.
fn string_list(items: Vec<String>) -> Option<Value<'static>> {
    (!items.is_empty()).then(|| {
        Value::List(
            items
                .into_iter()
                .map(|s| Value::Str(Cow::Owned(s)))
                .collect(),
        )
    })
}

/// The elements of a JSON array of scalars given as an array or as a string
/// holding one, as text; `None` when it is not one.
fn json_array(raw: &str, text: &str) -> Option<Vec<String>> {
    let json = if raw.starts_with('[') { raw } else { text };
    if !json.trim_start().starts_with('[') {
        return None;
    }
    let items: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    Some(
        items
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) if !s.is_empty() => Some(s),
                serde_json::Value::Null | serde_json::Value::String(_) => None,
                other => Some(other.to_string()),
            })
            .collect(),
    )
}

/// Splits a command line on white space; double quotes group (and are removed).
fn split_args(line: &str) -> Vec<String> {
    let (mut args, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    args.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(cur);
    }
    args
}

fn looks_like_path(s: &str) -> bool {
    let b = s.as_bytes();
    s.starts_with('/')
        || s.starts_with("\\\\")
        || (b.len() >= 2
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/'))
}

/// ECS `os.type` for a Sophos platform name.
fn os_type(platform: &str) -> Option<&'static str> {
    let p = platform.to_ascii_lowercase();
    if p.contains("windows") {
        Some("windows")
    } else if p.contains("darwin") || p.contains("mac") || p.contains("osx") {
        Some("macos")
    } else if [
        "linux", "debian", "ubuntu", "centos", "rhel", "red hat", "redhat", "fedora", "suse",
        "amazon", "oracle", "alma", "rocky",
    ]
    .iter()
    .any(|l| p.contains(l))
    {
        Some("linux")
    } else {
        None
    }
}

/// Ids or names from the Sophos MITRE list: `[{"tactic":{"id","name","techniques":[{"id","name"}]}}]`.
fn mitre(text: &str, what: Convert) -> Option<Vec<String>> {
    let list: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: Option<&serde_json::Value>| {
        if let Some(s) = v
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty() && !out.iter().any(|o| o == s))
        {
            out.push(s.to_string());
        }
    };
    for entry in &list {
        let tactic = entry.get("tactic")?;
        match what {
            Convert::TacticIds => push(tactic.get("id")),
            Convert::TacticNames => push(tactic.get("name")),
            _ => {
                for t in tactic
                    .get("techniques")
                    .and_then(|t| t.as_array())
                    .into_iter()
                    .flatten()
                {
                    push(t.get(if what == Convert::TechniqueIds {
                        "id"
                    } else {
                        "name"
                    }));
                }
            }
        }
    }
    Some(out)
}

/// `DD/MM/YYYY HH:MM:SS` (UTC).
fn day_first_time(text: &str) -> Option<EventTime> {
    let (date, time) = text.split_once(' ')?;
    let mut parts = date.split('/');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || d.len() != 2 || m.len() != 2 || y.len() != 4 {
        return None;
    }
    EventTime::parse(&format!("{y}-{m}-{d}T{time}Z"))
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
        let text = value::text(row.slots[slot]?.get())?;
        EventTime::parse(&text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_on_spaces_with_quotes() {
        assert_eq!(
            split_args(r#""C:\Program Files\a.exe" -x  "y z" w"#),
            ["C:\\Program Files\\a.exe", "-x", "y z", "w"]
        );
        assert_eq!(split_args(r#"a "" b"#), ["a", "", "b"]);
        assert!(split_args("   ").is_empty());
    }

    #[test]
    fn paths_names_and_directories() {
        let conv = |t: &str, c| {
            convert_value(Some(&serde_json::to_string(t).unwrap()), c)
                .unwrap()
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        assert_eq!(
            conv("C:\\Program Files (x86)\\TEST.EXE", Convert::FileName).as_deref(),
            Some("TEST.EXE")
        );
        assert_eq!(
            conv("C:\\Program Files (x86)\\TEST.EXE", Convert::Directory).as_deref(),
            Some("C:\\Program Files (x86)")
        );
        assert_eq!(conv("C:\\x.EXE", Convert::Directory).as_deref(), Some("C:"));
        assert_eq!(conv("/bin", Convert::Directory).as_deref(), Some("/"));
        assert_eq!(
            conv("/usr/bin/runc", Convert::FilePath).as_deref(),
            Some("/usr/bin/runc")
        );
        assert_eq!(conv("HKEY_LOCAL_MACHINE\\Run", Convert::FilePath), None);
        assert_eq!(conv("C:", Convert::FilePath).as_deref(), Some("C:"));
    }

    #[test]
    fn os_types() {
        assert_eq!(os_type("windows"), Some("windows"));
        assert_eq!(os_type("debian"), Some("linux"));
        assert_eq!(os_type("darwin"), Some("macos"));
        assert_eq!(os_type("plan9"), None);
    }

    #[test]
    fn day_first() {
        assert_eq!(
            day_first_time("18/08/2021 03:37:25")
                .map(|t| t.rendered())
                .as_deref(),
            Some("2021-08-18T03:37:25Z")
        );
        assert_eq!(day_first_time("2021-08-18 03:37:25"), None);
    }

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
