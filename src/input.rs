//! Input: lines, envelopes and rows.
//!
//! A line is one of:
//! - **blank**: empty or only spaces, tabs and a carriage return; skipped;
//! - an **envelope**: a JSON object whose `message` is a string holding a JSON
//!   object (the row). Other envelope keys are ignored;
//! - a **raw row**: any other JSON object, as the XDR Data Lake returns it. A row
//!   whose `message` is a string that does not start with `{` is a raw row;
//! - a **reject**: not UTF-8, too long, not JSON, not an object, or an envelope
//!   whose `message` starts with `{` but is not a valid JSON object.
//!
//! Parsing borrows: a row is read into a table of slots, one per key the profile
//! reads, each holding the value's raw JSON text, and every other key is skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::RejectReason;

/// The line without its line ending, or `None` when it is blank.
pub fn line_text(line: &[u8], max_len: usize) -> Result<Option<&str>, RejectReason> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max_len {
        return Err(RejectReason::TooLong {
            len: line.len(),
            limit: max_len,
        });
    }
    let text = std::str::from_utf8(line).map_err(|e| RejectReason::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    if text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return Ok(None);
    }
    Ok(Some(text))
}

/// Which row keys go to which slot. Built once per profile.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    slots: rustc_hash::FxHashMap<&'static str, usize>,
}

impl KeyIndex {
    /// Adds `key` (once) and returns its slot.
    pub fn slot(&mut self, key: &'static str) -> usize {
        let next = self.slots.len();
        *self.slots.entry(key).or_insert(next)
    }

    /// How many slots a row needs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is read.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of `key`, when the profile reads it.
    pub fn slot_of(&self, key: &str) -> Option<usize> {
        self.slots.get(key).copied()
    }
}

/// A parsed JSON object: its `message` value and the slots the profile reads.
#[derive(Debug)]
pub struct Object<'a> {
    /// The raw value of the object's `message` key, when it has one.
    pub message: Option<&'a RawValue>,
    /// One raw value per slot of the [`KeyIndex`]; `None` when the key is absent.
    pub slots: Vec<Option<&'a RawValue>>,
}

/// What a non-blank line holds.
#[derive(Debug)]
pub enum Record<'a> {
    /// The line is the row itself.
    Raw(Object<'a>),
    /// The line is an envelope; `message` is the JSON string literal (quotes and
    /// escapes as written) that holds the row.
    Envelope {
        /// The envelope's `message` literal, as written in the line.
        message: &'a RawValue,
    },
}

/// Parses a line's text as an object and tells whether it is an envelope.
pub fn parse_line<'a>(text: &'a str, keys: &KeyIndex) -> Result<Record<'a>, RejectReason> {
    let object = parse_object(text, keys).map_err(|e| match e {
        ObjectError::NotAnObject(kind) => RejectReason::NotAnObject(kind),
        ObjectError::Json(e) => RejectReason::InvalidJson(e.to_string()),
    })?;
    match object.message {
        Some(message) if holds_object_text(message) => Ok(Record::Envelope { message }),
        _ => Ok(Record::Raw(object)),
    }
}

/// Parses the row held by an envelope's `message` (already unescaped).
pub fn parse_envelope_row<'a>(row: &'a str, keys: &KeyIndex) -> Result<Object<'a>, RejectReason> {
    parse_object(row, keys).map_err(|e| RejectReason::BrokenEnvelope(e.to_string()))
}

/// True when a raw value is a string whose content starts with `{` (after JSON
/// white space).
fn holds_object_text(raw: &RawValue) -> bool {
    let s = raw.get().as_bytes();
    if s.first() != Some(&b'"') {
        return false;
    }
    let mut i = 1;
    loop {
        match s.get(i..i + 2) {
            Some(b"\\n" | b"\\t" | b"\\r") => i += 2,
            _ => match s.get(i) {
                Some(b' ') => i += 1,
                Some(b'{') => return true,
                _ => return false,
            },
        }
    }
}

#[derive(Debug)]
enum ObjectError {
    NotAnObject(&'static str),
    Json(serde_json::Error),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::NotAnObject(kind) => write!(f, "it holds {kind}, not an object"),
            ObjectError::Json(e) => e.fmt(f),
        }
    }
}

fn parse_object<'a>(text: &'a str, keys: &KeyIndex) -> Result<Object<'a>, ObjectError> {
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        // Say what the line holds when it is valid JSON of another kind.
        serde_json::from_str::<IgnoredAny>(text).map_err(ObjectError::Json)?;
        return Err(ObjectError::NotAnObject(match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b'n') => "null",
            Some(b't' | b'f') => "a boolean",
            _ => "a number",
        }));
    }
    let mut object = Object {
        message: None,
        slots: vec![None; keys.len()],
    };
    let mut de = serde_json::Deserializer::from_str(text);
    ObjectSeed {
        keys,
        object: &mut object,
    }
    .deserialize(&mut de)
    .map_err(ObjectError::Json)?;
    de.end().map_err(ObjectError::Json)?;
    Ok(object)
}

struct ObjectSeed<'k, 'o, 'a> {
    keys: &'k KeyIndex,
    object: &'o mut Object<'a>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(Key(key)) = map.next_key()? {
            let slot = self.keys.slot_of(&key);
            if key == "message" {
                let raw: &'de RawValue = map.next_value()?;
                self.object.message = Some(raw);
                if let Some(slot) = slot {
                    self.object.slots[slot] = Some(raw);
                }
            } else if let Some(slot) = slot {
                self.object.slots[slot] = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The lines of `bytes`, split at each `\n` (found with `memchr`), without it: a final
/// line without one is a line too, as in [`slice::split`].
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    std::iter::from_fn(move || {
        let end = ends.next()?;
        let line = &bytes[start..end];
        start = end + 1;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeyIndex {
        let mut k = KeyIndex::default();
        k.slot("meta_hostname");
        k.slot("ioc_severity");
        k
    }

    #[test]
    fn lines_split_as_slice_split_does() {
        for bytes in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"\n\na\r\n\nbc\n"] {
            let ours: Vec<&[u8]> = lines(bytes).collect();
            let std: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
            assert_eq!(ours, std, "{bytes:?}");
        }
    }

    #[test]
    fn blank_lines() {
        assert_eq!(line_text(b"", 100), Ok(None));
        assert_eq!(line_text(b"  \t\r\n", 100), Ok(None));
        assert_eq!(line_text(b"{}\r\n", 100), Ok(Some("{}")));
    }

    #[test]
    fn limits_and_utf8() {
        assert_eq!(
            line_text(b"12345", 4),
            Err(RejectReason::TooLong { len: 5, limit: 4 })
        );
        assert_eq!(
            line_text(b"ab\xffcd", 100),
            Err(RejectReason::InvalidUtf8 { valid_up_to: 2 })
        );
    }

    #[test]
    fn raw_row_slots_and_duplicate_keys() {
        let k = keys();
        let Record::Raw(o) = parse_line(
            r#"{"meta_hostname":"a","x":[1,{"y":2}],"meta_hostname":"b"}"#,
            &k,
        )
        .unwrap() else {
            panic!("expected a raw row")
        };
        assert_eq!(o.slots[0].unwrap().get(), r#""b""#);
        assert!(o.slots[1].is_none());
    }

    #[test]
    fn escaped_keys_match() {
        let k = keys();
        let Record::Raw(o) = parse_line(r#"{"meta_host\u006eame":"a"}"#, &k).unwrap() else {
            panic!()
        };
        assert_eq!(o.slots[0].unwrap().get(), r#""a""#);
    }

    #[test]
    fn envelope_detection() {
        let k = keys();
        assert!(matches!(
            parse_line(r#"{"message":"{\"a\":1}","x":1}"#, &k),
            Ok(Record::Envelope { .. })
        ));
        assert!(matches!(
            parse_line(r#"{"message":" \n{\"a\":1}"}"#, &k),
            Ok(Record::Envelope { .. })
        ));
        assert!(matches!(
            parse_line(r#"{"message":"plain text"}"#, &k),
            Ok(Record::Raw(_))
        ));
        assert!(matches!(
            parse_line(r#"{"message":"[1,2]"}"#, &k),
            Ok(Record::Raw(_))
        ));
        assert!(matches!(
            parse_line(r#"{"message":{"a":1}}"#, &k),
            Ok(Record::Raw(_))
        ));
        assert!(matches!(
            parse_line(r#"{"message":null}"#, &k),
            Ok(Record::Raw(_))
        ));
    }

    #[test]
    fn rejects_say_why() {
        let k = keys();
        assert_eq!(
            parse_line("[1,2]", &k).unwrap_err(),
            RejectReason::NotAnObject("an array")
        );
        assert_eq!(
            parse_line("42", &k).unwrap_err(),
            RejectReason::NotAnObject("a number")
        );
        assert!(matches!(
            parse_line("{\"a\":", &k).unwrap_err(),
            RejectReason::InvalidJson(_)
        ));
        assert!(matches!(
            parse_line("{\"a\":1} x", &k).unwrap_err(),
            RejectReason::InvalidJson(_)
        ));
        assert!(matches!(
            parse_line("not json", &k).unwrap_err(),
            RejectReason::InvalidJson(_)
        ));
        assert!(matches!(
            parse_envelope_row("{\"a\":", &k).unwrap_err(),
            RejectReason::BrokenEnvelope(_)
        ));
        assert!(matches!(
            parse_envelope_row("{} []", &k).unwrap_err(),
            RejectReason::BrokenEnvelope(_)
        ));
    }
}
