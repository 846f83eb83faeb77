//! upgrade-auditor: watches HTTP/1.1 protocol upgrades and reports the ones
//! that break the rules proxies rely on.
//!
//! Data flows one way: [`capture`] (the kernel program) → [`segment`]s →
//! [`pipeline`].

pub mod capture;
pub mod config;
pub mod pipeline;
pub mod reassembly;
pub mod segment;
