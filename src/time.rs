//! Event time: parsing the forms Sophos rows use, and formatting `@timestamp`.
//!
//! Accepted forms:
//! - RFC 3339 / ISO 8601: `YYYY-MM-DD`, then `T` or a space, then `HH:MM:SS`, then
//!   0 to 9 fraction digits after a `.`, then `Z`, a `±HH:MM` or `±HHMM` offset, or
//!   nothing (UTC);
//! - an integer epoch, as a JSON number or a string of digits: seconds, or
//!   milliseconds when the value is above 10^11.
//!
//! Output is UTC: `YYYY-MM-DDTHH:MM:SSZ` when the fraction (truncated to
//! microseconds) is zero, otherwise `YYYY-MM-DDTHH:MM:SS.ffffffZ` with exactly six
//! digits.

use jiff::{Timestamp, civil::DateTime, tz::Offset};

/// Epoch values above this are milliseconds, not seconds.
const MILLIS_ABOVE: i64 = 100_000_000_000;

/// An instant, truncated to microseconds, whose UTC year is within 0000–9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    utc: DateTime,
}

impl EventTime {
    /// Parses one of the accepted forms; `None` when `text` is none of them.
    pub fn parse(text: &str) -> Option<EventTime> {
        if let Some(epoch) = parse_epoch(text) {
            return Self::from_epoch(epoch);
        }
        Self::from_timestamp(parse_rfc3339(text.as_bytes())?)
    }

    /// The instant for an integer epoch (seconds, or milliseconds above 10^11).
    pub fn from_epoch(value: i64) -> Option<EventTime> {
        let ts = if value > MILLIS_ABOVE {
            Timestamp::from_millisecond(value).ok()?
        } else {
            Timestamp::from_second(value).ok()?
        };
        Self::from_timestamp(ts)
    }

    /// The current time, as an intake stamps the arrival of a record.
    pub fn now() -> EventTime {
        // The current time is always within the supported range.
        Self::from_timestamp(Timestamp::now()).unwrap_or(EventTime {
            utc: DateTime::constant(1970, 1, 1, 0, 0, 0, 0),
        })
    }

    fn from_timestamp(ts: Timestamp) -> Option<EventTime> {
        let utc = Offset::UTC.to_datetime(ts);
        if !(0..=9999).contains(&utc.year()) {
            return None;
        }
        let micros = utc.subsec_nanosecond() / 1000 * 1000;
        Some(EventTime {
            utc: utc.with().subsec_nanosecond(micros).build().ok()?,
        })
    }

    /// Appends the `@timestamp` text (without quotes) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let d = &self.utc;
        push_digits(out, d.year() as u32, 4);
        out.push(b'-');
        push_digits(out, d.month() as u32, 2);
        out.push(b'-');
        push_digits(out, d.day() as u32, 2);
        out.push(b'T');
        push_digits(out, d.hour() as u32, 2);
        out.push(b':');
        push_digits(out, d.minute() as u32, 2);
        out.push(b':');
        push_digits(out, d.second() as u32, 2);
        let micros = d.subsec_nanosecond() as u32 / 1000;
        if micros != 0 {
            out.push(b'.');
            push_digits(out, micros, 6);
        }
        out.push(b'Z');
    }

    /// The `@timestamp` text.
    #[cfg(test)]
    pub fn rendered(self) -> String {
        let mut out = Vec::with_capacity(27);
        self.write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// An integer epoch: an optional `-` then digits only.
fn parse_epoch(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads exactly `n` ASCII digits at `*pos`.
fn digits(bytes: &[u8], pos: &mut usize, n: usize) -> Option<i32> {
    let slice = bytes.get(*pos..*pos + n)?;
    let mut v = 0i32;
    for &b in slice {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i32::from(b - b'0');
    }
    *pos += n;
    Some(v)
}

fn expect(bytes: &[u8], pos: &mut usize, allowed: &[u8]) -> Option<u8> {
    let b = *bytes.get(*pos)?;
    if allowed.contains(&b) {
        *pos += 1;
        Some(b)
    } else {
        None
    }
}

fn parse_rfc3339(bytes: &[u8]) -> Option<Timestamp> {
    let p = &mut 0usize;
    let year = digits(bytes, p, 4)?;
    expect(bytes, p, b"-")?;
    let month = digits(bytes, p, 2)?;
    expect(bytes, p, b"-")?;
    let day = digits(bytes, p, 2)?;
    expect(bytes, p, b"Tt ")?;
    let hour = digits(bytes, p, 2)?;
    expect(bytes, p, b":")?;
    let minute = digits(bytes, p, 2)?;
    expect(bytes, p, b":")?;
    let second = digits(bytes, p, 2)?;
    let mut nanos = 0i32;
    if expect(bytes, p, b".").is_some() {
        let start = *p;
        while bytes.get(*p).is_some_and(u8::is_ascii_digit) {
            *p += 1;
        }
        let n = *p - start;
        if n == 0 || n > 9 {
            return None;
        }
        *p = start;
        nanos = digits(bytes, p, n)? * 10i32.pow((9 - n) as u32);
    }
    let offset_seconds = match bytes.get(*p) {
        None => 0,
        Some(b'Z' | b'z') => {
            *p += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            *p += 1;
            let hh = digits(bytes, p, 2)?;
            expect(bytes, p, b":");
            let mm = digits(bytes, p, 2)?;
            if hh > 23 || mm > 59 {
                return None;
            }
            let s = hh * 3600 + mm * 60;
            if sign == b'-' { -s } else { s }
        }
        Some(_) => return None,
    };
    if *p != bytes.len() {
        return None;
    }
    let dt = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Offset::from_seconds(offset_seconds)
        .ok()?
        .to_timestamp(dt)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<String> {
        EventTime::parse(s).map(|t| t.rendered())
    }

    #[test]
    fn zero_fraction_is_dropped() {
        assert_eq!(
            t("2022-11-30T09:22:11.000Z").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:11Z").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:11.000000000Z").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
    }

    #[test]
    fn fraction_has_six_digits_truncated() {
        assert_eq!(
            t("2022-11-30T09:22:22.226Z").as_deref(),
            Some("2022-11-30T09:22:22.226000Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:22.1Z").as_deref(),
            Some("2022-11-30T09:22:22.100000Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:22.123456Z").as_deref(),
            Some("2022-11-30T09:22:22.123456Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:22.123456789Z").as_deref(),
            Some("2022-11-30T09:22:22.123456Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:22.999999999Z").as_deref(),
            Some("2022-11-30T09:22:22.999999Z")
        );
        // under a microsecond truncates to zero, so no fraction
        assert_eq!(
            t("2022-11-30T09:22:22.000000900Z").as_deref(),
            Some("2022-11-30T09:22:22Z")
        );
    }

    #[test]
    fn too_many_or_no_fraction_digits_do_not_parse() {
        assert_eq!(t("2022-11-30T09:22:22.1234567891Z"), None);
        assert_eq!(t("2022-11-30T09:22:22.Z"), None);
    }

    #[test]
    fn separators_and_zones() {
        assert_eq!(
            t("2022-11-30 09:22:11").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:11").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30t09:22:11z").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T10:22:11+01:00").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T10:22:11+0100").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
        assert_eq!(
            t("2022-11-30T04:52:11.5-04:30").as_deref(),
            Some("2022-11-30T09:22:11.500000Z")
        );
        assert_eq!(
            t("2022-11-30 23:30:00-0100").as_deref(),
            Some("2022-12-01T00:30:00Z")
        );
        assert_eq!(
            t("2022-11-30T09:22:11+00:00").as_deref(),
            Some("2022-11-30T09:22:11Z")
        );
    }

    #[test]
    fn malformed_times_do_not_parse() {
        for bad in [
            "",
            "-",
            "None",
            "2022-11-30",
            "2022-11-30T09:22",
            "2022-13-01T00:00:00Z",
            "2022-02-30T00:00:00Z",
            "2022-11-30T24:00:00Z",
            "2022-11-30T09:22:11+1:00",
            "2022-11-30T09:22:11 Z",
            "2022-11-30T09:22:11Zjunk",
            "2022/11/30 09:22:11",
            "2022-11-30T09:22:11+24:00",
            "30-11-2022 09:22:11",
            "12.5",
            "1.6e9",
            "-",
            "+5",
        ] {
            assert_eq!(t(bad), None, "{bad:?} should not parse");
        }
    }

    #[test]
    fn epochs_seconds_and_millis() {
        assert_eq!(t("1669798899").as_deref(), Some("2022-11-30T09:01:39Z"));
        assert_eq!(
            t("1669798899123").as_deref(),
            Some("2022-11-30T09:01:39.123000Z")
        );
        assert_eq!(t("0").as_deref(), Some("1970-01-01T00:00:00Z"));
        // 10^11 itself is still seconds; one above is milliseconds
        assert_eq!(t("100000000000").as_deref(), Some("5138-11-16T09:46:40Z"));
        assert_eq!(
            t("100000000001").as_deref(),
            Some("1973-03-03T09:46:40.001000Z")
        );
        assert_eq!(t("-1").as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(t("99999999999999999999"), None);
    }

    #[test]
    fn out_of_range_years_do_not_parse() {
        assert_eq!(t("0000-01-01T00:30:00+01:00"), None);
        assert_eq!(t("9999-12-31T23:59:59-01:00"), None);
        assert_eq!(
            t("0000-01-01T00:00:00Z").as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
    }
}
