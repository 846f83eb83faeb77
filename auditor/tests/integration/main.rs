//! The integration tests, one binary: a module per part of the program,
//! and the support they share (aya's `test/integration-test` is the model).
//!
//! Privileged tests are `#[ignore = "needs root"]`: `cargo xtask test` runs
//! them when it is root, and libtest lists them by name otherwise.

mod support;

mod capture;
mod config;
mod daemon;
mod docs;
mod events;
mod memory;
mod metrics;
mod modules;
mod outputs;
mod packaging;
mod proxies;
mod replay;
mod replay_input;
mod replay_progress;
mod restart;
