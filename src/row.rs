//! A row's keys: the one key every path gives a row (the index's `_id`, the Kafka
//! message key), and the collector's dedup key.
//!
//! **The row key** is computed from the row alone, so that a row delivered by any path —
//! a file into an index, `collect` into an index, `collect` into Kafka and a consumer
//! group into an index — is one document:
//!
//! - `{customer_id}:{record_identifier}` when the row has both (Sophos rows do: the
//!   tenant's id, and the Data Lake's id of the row);
//! - `id:{record_identifier}` when it has no `customer_id`;
//! - `sha256:{digest of the row's JSON text}` when it has no `record_identifier`.
//!
//! Rows that carry their `customer_id` (the Data Lake's do, and the collector's default
//! `SELECT *` keeps it) cannot collide across tenants: a key with a `record_identifier`
//! carries its tenant, and a digest covers the whole row, `customer_id` included. A row
//! without one (a `query.sql` that leaves it out) is keyed by its `record_identifier`
//! alone, and the collector warns about it. A `customer_id` holding a `:` (never a
//! Sophos one) and a key over [`MAX_KEY_BYTES`] (a hostile identifier) are replaced by a
//! `sha256:` digest, so that no two rows share a key by their punctuation and an index,
//! which refuses an `_id` over 512 bytes, takes every key.

use sha2::{Digest, Sha256};

/// The longest row key kept as it is.
pub const MAX_KEY_BYTES: usize = 256;

#[derive(serde::Deserialize)]
struct Ids<'a> {
    #[serde(borrow)]
    record_identifier: Option<std::borrow::Cow<'a, str>>,
    /// Read as it stands, so that an odd value (not a string) leaves the row's other
    /// key as it was rather than failing the whole read.
    #[serde(borrow)]
    customer_id: Option<&'a serde_json::value::RawValue>,
}

fn ids(row: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<Ids>(row) {
        Ok(ids) => (
            ids.record_identifier
                .filter(|s| !s.is_empty())
                .map(|s| s.into_owned()),
            customer_of(ids.customer_id),
        ),
        // Not an object with string ids: the digest of its text.
        Err(_) => (None, None),
    }
}

/// A `customer_id` as it stands in a row or an item: a non-empty string, else none.
fn customer_of(raw: Option<&serde_json::value::RawValue>) -> Option<String> {
    raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .filter(|s| !s.is_empty())
}

/// `[{stream}:]{customer}:{id}`, the key of one tenant's row or item, or its digest: when
/// a `:` in the customer or the stream would let two keys meet by their punctuation, and
/// when it is over [`MAX_KEY_BYTES`].
fn tenant_key(stream: Option<&str>, customer: &str, id: &str) -> String {
    let prefix = stream.map_or(String::new(), |s| format!("{s}:"));
    if customer.contains(':') || stream.is_some_and(|s| s.contains(':')) {
        return digest(&format!("{}\0{prefix}{customer}\0{id}", customer.len()));
    }
    bounded(format!("{prefix}{customer}:{id}"))
}

/// The key, or its digest when it is over [`MAX_KEY_BYTES`].
fn bounded(key: String) -> String {
    if key.len() > MAX_KEY_BYTES {
        digest(&key)
    } else {
        key
    }
}

fn digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The row key of a row (its JSON text): see the [module](self).
pub fn key(row: &str) -> String {
    match ids(row) {
        (Some(id), Some(customer)) => tenant_key(None, &customer, &id),
        (Some(id), None) => bounded(format!("id:{id}")),
        (None, _) => digest(row),
    }
}

/// The row key of a Sophos Central SIEM API item (its JSON text) of `stream` (`alert`
/// or `event`): `{stream}:{customer_id}:{id}`, so that an alert and its event, which
/// share an id, are two documents, and one item is one document on every path. As for
/// rows, a `customer_id` holding a `:` or a key over [`MAX_KEY_BYTES`] is digested, and
/// an item without an `id` is keyed by the digest of its text.
pub fn item_key(stream: &str, item: &str) -> String {
    item_key_of(stream, item, None)
}

/// [`item_key`], with the tenant a collector polled standing in for a `customer_id` the
/// item lacks (never in Sophos's items), so that two tenants' items with one id are two
/// documents.
pub fn item_key_of(stream: &str, item: &str, tenant: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    struct ItemIds<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        customer_id: Option<&'a serde_json::value::RawValue>,
    }
    let Ok(ids) = serde_json::from_str::<ItemIds>(item) else {
        return digest(item);
    };
    let Some(id) = ids.id.filter(|s| !s.is_empty()) else {
        return digest(item);
    };
    let customer = customer_of(ids.customer_id)
        .or_else(|| tenant.map(String::from))
        .unwrap_or_default();
    tenant_key(Some(stream), &customer, &id)
}

/// The collector's dedup key of a row, kept per tenant in its state: `id:` and its
/// `record_identifier`, or `sha256:` and a digest of its JSON text when it has none (or
/// the row is not an object with a string id). Unchanged since the first release, so that
/// an upgraded collector still knows the rows it delivered.
pub fn dedup_key(row: &str) -> String {
    match ids(row).0 {
        Some(id) => format!("id:{id}"),
        None => digest(row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_key_carries_its_stream_tenant_and_id() {
        let item = r#"{"id":"e1","customer_id":"c-1","when":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(item_key("alert", item), "alert:c-1:e1");
        // an alert and its event share the id, not the key
        assert_ne!(item_key("alert", item), item_key("event", item));
        // the same item written otherwise is the same key
        assert_eq!(
            item_key("alert", r#"{ "customer_id" : "c-1", "id" : "e1" }"#),
            "alert:c-1:e1"
        );
        // another tenant's item with the same id is another document
        assert_ne!(
            item_key("alert", r#"{"id":"e1","customer_id":"c-2"}"#),
            item_key("alert", item)
        );
        assert_eq!(item_key("event", r#"{"id":"e1"}"#), "event::e1");
        assert!(item_key("event", r#"{"name":"no id"}"#).starts_with("sha256:"));
        assert!(item_key("event", "[1]").starts_with("sha256:"));
        assert_ne!(
            item_key("event", r#"{"id":"c","customer_id":"a:b"}"#),
            item_key("event", r#"{"id":"b:c","customer_id":"a"}"#)
        );
        // a collector's tenant stands in for a missing customer_id, not for one given
        assert_eq!(
            item_key_of("event", r#"{"id":"e1"}"#, Some("t9")),
            "event:t9:e1"
        );
        assert_eq!(item_key_of("event", item, Some("t9")), "event:c-1:e1");
        let long = format!(r#"{{"id":"{}","customer_id":"c"}}"#, "x".repeat(600));
        assert!(item_key("event", &long).starts_with("sha256:"));
    }

    #[test]
    fn the_row_key_carries_the_tenant_and_the_id_or_digests_the_row() {
        let row = r#"{"record_identifier":"r1","customer_id":"c-1","a":1}"#;
        assert_eq!(key(row), "c-1:r1");
        // the same row written differently is the same key
        assert_eq!(
            key(r#"{ "customer_id": "c-1", "record_identifier": "r1" }"#),
            "c-1:r1"
        );
        // another tenant's row with the same id is another document
        assert_ne!(
            key(r#"{"record_identifier":"r1","customer_id":"c-2"}"#),
            key(row)
        );
        assert_eq!(key(r#"{"record_identifier":"r1"}"#), "id:r1");
        assert!(key(r#"{"a":1,"customer_id":"c-1"}"#).starts_with("sha256:"));
        assert_ne!(
            key(r#"{"a":1,"customer_id":"c-1"}"#),
            key(r#"{"a":1,"customer_id":"c-2"}"#)
        );
        assert!(key("[1,2]").starts_with("sha256:"));
        // a customer_id that is not a string is left out, the id kept
        assert_eq!(
            key(r#"{"record_identifier":"r1","customer_id":7}"#),
            "id:r1"
        );
        assert_eq!(
            dedup_key(r#"{"record_identifier":"r1","customer_id":7}"#),
            "id:r1"
        );
        assert!(key(r#"{"record_identifier":"","customer_id":"c"}"#).starts_with("sha256:"));
        // whatever the other values (an epoch calendar_time, nulls)
        assert_eq!(
            key(
                r#"{"record_identifier":"a","customer_id":"c","calendar_time":1700000000,"x":null}"#
            ),
            "c:a"
        );
        // a customer_id with a ':' cannot make two rows one key
        assert_ne!(
            key(r#"{"record_identifier":"c","customer_id":"a:b"}"#),
            key(r#"{"record_identifier":"b:c","customer_id":"a"}"#)
        );
        // a hostile identifier is digested to a key an index takes
        let long = format!(
            r#"{{"record_identifier":"{}","customer_id":"c"}}"#,
            "x".repeat(600)
        );
        let k = key(&long);
        assert!(k.starts_with("sha256:") && k.len() == 71, "{k}");
    }

    #[test]
    fn the_dedup_key_is_as_it_was() {
        assert_eq!(
            dedup_key(r#"{"a":1,"record_identifier":"abc","customer_id":"c"}"#),
            "id:abc"
        );
        assert!(dedup_key(r#"{"a":1}"#).starts_with("sha256:"));
        assert_eq!(dedup_key(r#"{"a":1}"#), dedup_key(r#"{"a":1}"#));
        assert_ne!(dedup_key(r#"{"a":1}"#), dedup_key(r#"{"a":2}"#));
        assert!(dedup_key(r#"{"record_identifier":""}"#).starts_with("sha256:"));
        assert_eq!(
            dedup_key(
                r#"{"record_identifier":"a","calendar_time":1700000000,"ingestion_timestamp":null}"#
            ),
            "id:a"
        );
    }
}
