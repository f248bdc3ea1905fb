//! The integration tests, in one test binary (as ripgrep's `tests/integration`): each
//! module was a test file of its own, and one binary links once instead of sixteen
//! times. Run one module with `cargo test --test it MODULE::` (say `it kafka::`).
//! `tests/live_lag.rs` stays a binary of its own: it measures, and must run alone.

mod common;

mod catalogue;
mod cli;
mod collect;
mod deploy;
mod docs;
mod ecs_validity;
mod golden;
mod kafka;
mod late_sweep;
mod opensearch;
mod properties;
mod rules;
mod sekoia_coverage;
mod sekoia_rows;
mod service;
mod siem;
mod siem_collect;
mod sink_contract;
mod syslog;
