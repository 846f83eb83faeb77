//! upgrade-auditor: watches HTTP/1.1 protocol upgrades and reports the ones
//! that break the rules proxies rely on.
//!
//! Data flows one way: a [`source`] → ordered bytes per connection and
//! direction ([`stream`]) → [`http`] exchanges → [`rules`] → [`events`] →
//! [`output`]; the [`pipeline`] wires these stages, the same for every
//! source. Where new things go:
//!
//! - a source implements [`source::Source`], as the kernel program's ring
//!   buffer ([`capture`]) and capture files ([`replay`]) do. TCP segments
//!   ([`segment`]) go through [`reassembly`]; bytes already in order go
//!   straight to the HTTP layer.
//! - a rule goes in the file of its family under `rules/` (`upgrade`,
//!   `websocket`, `h2c`), metadata, check and tests together;
//! - an output is a [`output::Destination`], written to by the
//!   [`output::Sink`] of `auditor run`.
//!
//! Modules depend on each other without a cycle
//! (`tests/integration/modules.rs` checks it): each component owns its
//! settings, [`config`] assembles them from the file, and only [`daemon`]
//! and the binary, which put the components together, import [`config`].

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
pub mod source;
pub mod stream;
