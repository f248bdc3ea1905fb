//! The integration tests, in one test binary (as ripgrep's `tests/integration`): each
//! module was a test file of its own, and one binary links once instead of seventeen
//! times. Run one module with `cargo test --test it MODULE::` (say `it kafka::`).

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
mod live_lag;
mod opensearch;
mod properties;
mod rules;
mod sekoia_coverage;
mod sekoia_rows;
mod service;
mod sink_contract;
mod syslog;
