//! Rendering a raw row value as text, the documented profile's "text" rule.
//!
//! | raw value                        | text                              |
//! |----------------------------------|-----------------------------------|
//! | absent, `null`, `""`, `"None"`   | absent (the field is left out)    |
//! | a string                         | itself, unescaped, not trimmed    |
//! | a number                         | its JSON text as written (`2.4075`)|
//! | `true` / `false`                 | `"true"` / `"false"`              |
//! | an object or an array            | its compact JSON text             |

use std::borrow::Cow;

/// The text of a raw value (valid JSON text, such as a
/// [`RawValue`](serde_json::value::RawValue)'s), or `None` when it renders as absent.
pub fn text(raw: &str) -> Option<Cow<'_, str>> {
    let s = raw;
    let rendered = match s.as_bytes().first()? {
        b'"' => unquote(s)?,
        b'n' => return None,
        b't' => Cow::Borrowed("true"),
        b'f' => Cow::Borrowed("false"),
        b'{' | b'[' => Cow::Owned(compact(s)),
        _ => Cow::Borrowed(s),
    };
    match &*rendered {
        "" | "None" => None,
        _ => Some(rendered),
    }
}

/// The unescaped content of a JSON string literal (quotes included in `lit`).
/// Borrows when the literal has no escape.
pub fn unquote(lit: &str) -> Option<Cow<'_, str>> {
    let inner = lit.get(1..lit.len().checked_sub(1)?)?;
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        Some(Cow::Borrowed(inner))
    } else {
        serde_json::from_str::<String>(lit).ok().map(Cow::Owned)
    }
}

/// `text` (JSON text) with every lone UTF-16 surrogate escape — a `\uD800`–`\uDBFF`
/// not followed by a `\uDC00`–`\uDFFF`, or the latter alone — replaced by `\uFFFD`,
/// which has the same length; `None` when there is none (the common case, found with
/// one `memmem` scan). JSON allows such escapes, but they stand for no character.
pub fn replace_lone_surrogates(text: &str) -> Option<String> {
    memchr::memmem::find(text.as_bytes(), b"\\u")?;
    let bytes = text.as_bytes();
    let hex = |at: usize| -> Option<u16> {
        let digits = bytes.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let unicode = |at: usize| -> Option<u16> {
        (bytes.get(at..at + 2)? == b"\\u")
            .then(|| hex(at + 2))
            .flatten()
    };
    let mut lone = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unicode(i) {
            Some(0xD800..=0xDBFF) if matches!(unicode(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            Some(0xD800..=0xDFFF) => {
                lone.push(i);
                i += 6;
            }
            Some(_) => i += 6,
            None => i += 2,
        }
    }
    if lone.is_empty() {
        return None;
    }
    let mut out = text.to_string();
    for at in lone {
        out.replace_range(at..at + 6, "\\uFFFD");
    }
    Some(out)
}

/// Removes the insignificant white space of valid JSON text, leaving strings,
/// numbers and key order exactly as written.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(json: &str) -> Option<String> {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(json).unwrap();
        text(raw.get()).map(Cow::into_owned)
    }

    #[test]
    fn absent_values() {
        assert_eq!(render("null"), None);
        assert_eq!(render(r#""""#), None);
        assert_eq!(render(r#""None""#), None);
    }

    #[test]
    fn none_is_only_absent_when_exact() {
        assert_eq!(render(r#""none""#).as_deref(), Some("none"));
        assert_eq!(render(r#"" None""#).as_deref(), Some(" None"));
    }

    #[test]
    fn strings_are_not_trimmed_and_dash_is_kept() {
        assert_eq!(
            render(r#"" NOEXECUTE=OPTIN ""#).as_deref(),
            Some(" NOEXECUTE=OPTIN ")
        );
        assert_eq!(render(r#""-""#).as_deref(), Some("-"));
    }

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        let fix = replace_lone_surrogates;
        assert_eq!(fix(r#"{"a":"x\ud800y"}"#).unwrap(), r#"{"a":"x\uFFFDy"}"#);
        assert_eq!(
            fix(r#"{"a":"\udc00\ud800"}"#).unwrap(),
            r#"{"a":"\uFFFD\uFFFD"}"#
        );
        assert_eq!(
            fix(r#"{"a":"\ud83d\ude00 \u00e9"}"#),
            None,
            "a pair and a BMP escape"
        );
        assert_eq!(
            fix(r#"{"a":"\\ud800"}"#),
            None,
            "an escaped backslash, then text"
        );
        assert_eq!(fix(r#"{"a":"\\\ud800"}"#).unwrap(), r#"{"a":"\\\uFFFD"}"#);
        assert_eq!(
            fix(r#"{"a":"\ud800"#).unwrap().len(),
            r#"{"a":"\ud800"#.len()
        );
        assert_eq!(fix("plain"), None);
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(
            render(r#""C:\\Windows\\\"x\"""#).as_deref(),
            Some(r#"C:\Windows\"x""#)
        );
        assert_eq!(render(r#""caf\u00e9""#).as_deref(), Some("café"));
        assert_eq!(render(r#""日本語""#).as_deref(), Some("日本語"));
    }

    #[test]
    fn numbers_keep_their_text() {
        assert_eq!(render("4").as_deref(), Some("4"));
        assert_eq!(render("2.4075").as_deref(), Some("2.4075"));
        assert_eq!(render("-477.0565").as_deref(), Some("-477.0565"));
        assert_eq!(render("1e5").as_deref(), Some("1e5"));
        assert_eq!(render("0").as_deref(), Some("0"));
    }

    #[test]
    fn booleans() {
        assert_eq!(render("true").as_deref(), Some("true"));
        assert_eq!(render("false").as_deref(), Some("false"));
    }

    #[test]
    fn containers_become_compact_json() {
        assert_eq!(render(r#"[ "a", 1 ]"#).as_deref(), Some(r#"["a",1]"#));
        assert_eq!(
            render(r#"{ "k" : "a b\" c" , "n" : [ ] }"#).as_deref(),
            Some(r#"{"k":"a b\" c","n":[]}"#)
        );
        assert_eq!(render("[]").as_deref(), Some("[]"));
    }
}
