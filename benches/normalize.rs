//! Microbenchmarks: normalizing one row of each kind, and the two JSON libraries
//! compared on the two hot steps (parsing a row, escaping the `message`).
//! Each benchmark states its bytes, so criterion reports MB/s, and checks its result.

use std::fmt;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use sophos_tac::input::{self, KeyIndex, Record};
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

const EXAMPLE: &str = include_str!("../examples/detections.ndjson");

/// The valid rows of the bundled example: registry, logon (envelope), process,
/// Linux, macOS, registry Run key.
fn rows() -> Vec<(&'static str, &'static str)> {
    let names = [
        "registry",
        "logon_envelope",
        "process",
        "linux",
        "macos",
        "registry_run",
    ];
    EXAMPLE
        .lines()
        .filter(|l| !l.is_empty())
        .take(6)
        .zip(names)
        .map(|(l, n)| (n, l))
        .collect()
}

fn normalize_row(c: &mut Criterion) {
    let normalizer = Normalizer::new(Profile::documented());
    let mut group = c.benchmark_group("normalize_row");
    for (name, line) in rows() {
        group.throughput(Throughput::Bytes(line.len() as u64));
        let mut out = Vec::with_capacity(8192);
        let mut warnings = normalizer.new_warnings();
        group.bench_with_input(BenchmarkId::from_parameter(name), line, |b, line| {
            b.iter(|| {
                out.clear();
                let outcome = normalizer.normalize_line(line.as_bytes(), &mut out, &mut warnings);
                assert_eq!(outcome, LineOutcome::Normalized);
                out.len()
            })
        });
    }
    group.finish();
}

fn keys() -> KeyIndex {
    let mut keys = KeyIndex::default();
    for f in Profile::documented().fields() {
        for k in f.row_keys() {
            keys.slot(k);
        }
    }
    keys
}

/// The same row visitor as `sophos_tac::input`, written against sonic-rs, to compare.
struct SonicSeed<'k> {
    keys: &'k KeyIndex,
    found: usize,
}

impl<'de> DeserializeSeed<'de> for SonicSeed<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SonicSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<usize, M::Error> {
        while let Some(key) = map.next_key::<&'de str>()? {
            if self.keys.slot_of(key).is_some() {
                let v: sonic_rs::LazyValue<'de> = map.next_value()?;
                self.found += v.as_raw_str().len().min(1);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(self.found)
    }
}

fn parse(c: &mut Criterion) {
    let keys = keys();
    // Raw rows only (no envelope): the parse step alone.
    let raw: Vec<&str> = rows()
        .into_iter()
        .filter(|(n, _)| *n != "logon_envelope")
        .map(|(_, l)| l)
        .collect();
    let bytes: usize = raw.iter().map(|l| l.len()).sum();
    let mut group = c.benchmark_group("parse_rows");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            raw.iter()
                .map(|l| match input::parse_line(l, &keys) {
                    Ok(Record::Raw(o)) => o.slots.iter().filter(|s| s.is_some()).count(),
                    _ => panic!("rows parse"),
                })
                .sum::<usize>()
        })
    });
    group.bench_function("sonic_rs", |b| {
        b.iter(|| {
            raw.iter()
                .map(|l| {
                    let mut de = sonic_rs::Deserializer::from_str(l);
                    let n = SonicSeed {
                        keys: &keys,
                        found: 0,
                    }
                    .deserialize(&mut de)
                    .expect("rows parse");
                    de.end().expect("one value");
                    n
                })
                .sum::<usize>()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("escape_message");
    group.throughput(Throughput::Bytes(bytes as u64));
    let mut out = Vec::with_capacity(16384);
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            out.clear();
            for l in &raw {
                serde_json::to_writer(&mut out, l).unwrap();
            }
            out.len()
        })
    });
    group.bench_function("sonic_rs", |b| {
        b.iter(|| {
            out.clear();
            for l in &raw {
                sonic_rs::to_writer(&mut out, l).unwrap();
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, normalize_row, parse);
criterion_main!(benches);
