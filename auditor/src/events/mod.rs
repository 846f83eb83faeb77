//! The JSON events of interfaces.md ("Events"): one object per line for log
//! pipelines. Building them is pure; writing them is the caller's job.
//!
//! - [`events_for`] turns an exchange and its findings into a `handshake`
//!   event (for an upgrade offer) and one `alert` per finding.
//! - [`AlertRateLimiter`] caps repeated alerts and summarizes the rest.
//! - [`Event::loss`] and [`Event::stats`] report counters.
//!
//! `schema/events.schema.json` at the repository root describes every event;
//! the tests hold the two together.

mod build;
mod community_id;
mod counters;
mod http;
pub mod pretty;
mod rate_limit;
mod redact;
#[cfg(test)]
mod tests;

use std::{net::IpAddr, sync::Arc};

use serde::{Serialize, Serializer};

pub use build::{events_for, events_for_offer, EventContext};
pub use counters::{EmittedCounts, LossCounters, StatsCounters};
pub use http::{HttpRecord, RequestRecord, ResponseRecord};
pub use rate_limit::{AlertRateLimiter, RateLimitSettings};
pub use redact::{RedactionAllowlist, SECRET_FIELDS};

use crate::{
    config::Role,
    http::Quality,
    rules::{ProxyImpact, Severity},
};

/// Bumped on an incompatible change of any event.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Capture time, in nanoseconds since the Unix epoch; written as RFC
    /// 3339 in UTC with microseconds.
    #[serde(rename = "timestamp", serialize_with = "serialize_timestamp")]
    pub timestamp_ns: u64,
    schema_version: u32,
    pub host: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What follows the common fields; `event_type` names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event_type", rename_all = "lowercase")]
pub enum EventBody {
    Alert(AlertEvent),
    Handshake(HandshakeEvent),
    Loss { loss: LossCounters },
    Stats { stats: StatsCounters },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    pub flow: Arc<Flow>,
    pub http: Arc<HttpRecord>,
    pub capture: CaptureRecord,
    pub alert: Alert,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandshakeEvent {
    pub flow: Arc<Flow>,
    pub http: Arc<HttpRecord>,
    pub capture: CaptureRecord,
    pub handshake: Handshake,
}

/// The connection, client first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    pub community_id: String,
    /// The capture interface's name, when known.
    pub interface: Option<String>,
    /// The role configured for the server's port.
    #[serde(serialize_with = "serialize_role")]
    pub role: Option<Role>,
}

/// How much of the exchange was seen ([`Quality`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureRecord {
    pub complete: bool,
    pub midstream: bool,
    pub gaps: bool,
    pub truncated: bool,
    pub oversized: bool,
    pub conflicting_overlap: bool,
    pub malformed: bool,
}

impl From<Quality> for CaptureRecord {
    fn from(quality: Quality) -> CaptureRecord {
        CaptureRecord {
            complete: quality.complete,
            midstream: quality.midstream,
            gaps: quality.gap,
            truncated: quality.truncated,
            oversized: quality.oversized,
            conflicting_overlap: quality.conflicting_overlap,
            malformed: quality.malformed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub rule: &'static str,
    pub severity: Severity,
    pub actor: &'static str,
    pub spec: &'static str,
    pub message: String,
    pub remediation: &'static str,
    pub proxy_impact: &'static [ProxyImpact],
    /// Summary of a rate-limited interval: how many alerts were not emitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
    /// Summary of a rate-limited interval: the interval's length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handshake {
    /// The request's `Upgrade` elements.
    pub protocols_offered: Vec<String>,
    pub outcome: HandshakeOutcome,
    /// The 101's `Upgrade` elements joined with `, `; None unless switched
    /// to a named protocol.
    pub protocol: Option<String>,
    /// From the end of the request head to the end of the final response head.
    pub latency_us: Option<u64>,
    /// Ids of the rules raised on the exchange.
    pub rules: Vec<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HandshakeOutcome {
    /// A 101 answered the offer.
    Switched,
    /// Another final response answered it: the connection stays HTTP/1.1.
    Declined,
    /// No final response was seen.
    Incomplete,
}

impl HandshakeOutcome {
    pub const ALL: [HandshakeOutcome; 3] = [
        HandshakeOutcome::Switched,
        HandshakeOutcome::Declined,
        HandshakeOutcome::Incomplete,
    ];

    /// The name events carry.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeOutcome::Switched => "switched",
            HandshakeOutcome::Declined => "declined",
            HandshakeOutcome::Incomplete => "incomplete",
        }
    }
}

impl Event {
    fn new(timestamp_ns: u64, host: &str, body: EventBody) -> Event {
        Event {
            timestamp_ns,
            schema_version: SCHEMA_VERSION,
            host: host.to_owned(),
            body,
        }
    }

    /// A `loss` event; `counters` are the differences since the previous
    /// one ([`LossCounters::since`]).
    pub fn loss(timestamp_ns: u64, host: &str, counters: LossCounters) -> Event {
        Event::new(timestamp_ns, host, EventBody::Loss { loss: counters })
    }

    /// A `stats` event: totals since start.
    pub fn stats(timestamp_ns: u64, host: &str, counters: StatsCounters) -> Event {
        Event::new(timestamp_ns, host, EventBody::Stats { stats: counters })
    }
}

/// `2026-11-26T07:13:08.420039Z`.
fn serialize_timestamp<S: Serializer>(
    timestamp_ns: &u64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*timestamp_ns))
}

pub(crate) fn format_timestamp(timestamp_ns: u64) -> String {
    // u64 nanoseconds end in 2554, well inside what `time` represents.
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month, day) = time.to_calendar_date();
    let (hour, minute, second, microsecond) = time.to_hms_micro();
    // Every event carries one: written digit by digit rather than through
    // `format!`, several times slower. Years are 1970 to 2554: four digits.
    let mut text = String::with_capacity(27);
    for (value, width, then) in [
        (year.unsigned_abs(), 4, '-'),
        (u32::from(u8::from(month)), 2, '-'),
        (u32::from(day), 2, 'T'),
        (u32::from(hour), 2, ':'),
        (u32::from(minute), 2, ':'),
        (u32::from(second), 2, '.'),
        (microsecond, 6, 'Z'),
    ] {
        push_zero_padded(&mut text, value, width);
        text.push(then);
    }
    text
}

/// `value` in decimal, zero-padded to `width` digits (more if it needs them).
fn push_zero_padded(text: &mut String, mut value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut start = digits.len();
    while value > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    text.extend(digits[start..].iter().map(|&d| char::from(d)));
}

fn serialize_role<S: Serializer>(role: &Option<Role>, serializer: S) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => serializer.collect_str(role),
        None => serializer.serialize_none(),
    }
}
