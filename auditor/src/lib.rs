//! upgrade-auditor: watches HTTP/1.1 protocol upgrades and reports the ones
//! that break the rules proxies rely on.
//!
//! Data flows one way: [`capture`] (the kernel program) or [`replay`] (a
//! capture file) → [`segment`]s → [`reassembly`] → [`http`] exchanges →
//! [`pipeline`] → rules and events → [`output`].
//!
//! Modules depend on each other without a cycle (`tests/modules.rs` checks
//! it): each component owns its settings, [`config`] assembles them from
//! the file, and only [`daemon`] and the binary, which put the components
//! together, import [`config`].

mod addr;
pub mod capabilities;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod events;
pub mod http;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod reassembly;
pub mod replay;
pub mod reporter;
pub mod rules;
pub mod segment;
