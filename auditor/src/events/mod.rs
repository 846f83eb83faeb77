//! The JSON events of docs/interfaces.md ("Events"): one object per line
//! for log pipelines. Building them is pure; writing them is the caller's
//! job.
//!
//! - [`events_for`] turns an exchange and its findings into a `handshake`
//!   event (for an upgrade offer) and one `alert` per finding.
//! - [`AlertRateLimiter`] caps repeated alerts and summarizes the rest.
//! - [`Event::loss`] and [`Event::stats`] report counters.
//! - [`ExchangeRecord`] is an exchange as `--exchanges` prints it, redacted
//!   as events are.
//!
//! `schema/events.schema.json` at the repository root describes every event;
//! the tests hold the two together.

mod build;
mod community_id;
mod counters;
mod exchange_record;
mod http;
pub mod pretty;
mod rate_limit;
mod redact;
#[cfg(test)]
mod tests;

use std::{fmt, net::IpAddr, sync::Arc};

use serde::{ser::SerializeStruct, Serialize, Serializer};
use smallvec::SmallVec;

pub use build::{events_for, events_for_offer, EventContext, Made};
pub use community_id::CommunityId;
pub use counters::{EmittedCounts, LossCounters, LossShares, StatsCounters};
pub use exchange_record::ExchangeRecord;
pub use http::{FieldElements, HttpRecord, RequestRecord, ResponseRecord};
pub use rate_limit::{AlertRateLimiter, RateLimitSettings};
pub use redact::{RedactionAllowlist, SECRET_FIELDS};

use crate::{
    http::Quality,
    rules::{PortRole, ProxyImpact, Severity},
};

/// Bumped on an incompatible change of any event.
pub const SCHEMA_VERSION: u32 = 1;

/// One JSON object: the common fields, `event_type`, then the body's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Capture time, in nanoseconds since the Unix epoch; written as RFC
    /// 3339 in UTC with microseconds ([`Timestamp`]).
    pub timestamp_ns: u64,
    schema_version: u32,
    /// Shared by every event of a host rather than copied into each.
    pub host: Arc<str>,
    pub body: EventBody,
}

/// What follows the common fields; `event_type` names the variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    Alert(AlertEvent),
    Handshake(HandshakeEvent),
    Loss { loss: LossCounters },
    Stats { stats: StatsCounters },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertEvent {
    pub flow: Arc<Flow>,
    pub http: Arc<HttpRecord>,
    pub capture: Quality,
    pub alert: Alert,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeEvent {
    pub flow: Arc<Flow>,
    pub http: Arc<HttpRecord>,
    pub capture: Quality,
    pub handshake: Handshake,
}

/// The connection, client first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    pub community_id: CommunityId,
    /// The capture interface's name, when known.
    pub interface: Option<String>,
    /// The role configured for the server's port.
    #[serde(serialize_with = "serialize_role")]
    pub role: Option<PortRole>,
}

/// An event's `capture`: how much of the exchange was seen, in the
/// schema's names and order (`gaps` for the exchange's `gap`).
struct CaptureRecord(Quality);

impl Serialize for CaptureRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let quality = &self.0;
        let mut record = serializer.serialize_struct("CaptureRecord", 7)?;
        record.serialize_field("complete", &quality.complete)?;
        record.serialize_field("midstream", &quality.midstream)?;
        record.serialize_field("gaps", &quality.gap)?;
        record.serialize_field("truncated", &quality.truncated)?;
        record.serialize_field("oversized", &quality.oversized)?;
        record.serialize_field("conflicting_overlap", &quality.conflicting_overlap)?;
        record.serialize_field("malformed", &quality.malformed)?;
        record.end()
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
    pub protocols_offered: FieldElements,
    pub outcome: HandshakeOutcome,
    /// The 101's `Upgrade` elements joined with `, `; None unless switched
    /// to a named protocol.
    pub protocol: Option<String>,
    /// From the end of the request head to the end of the final response head.
    pub latency_us: Option<u64>,
    /// Ids of the rules raised on the exchange: rarely more than two.
    pub rules: SmallVec<[&'static str; 2]>,
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
    fn new(timestamp_ns: u64, host: Arc<str>, body: EventBody) -> Event {
        Event {
            timestamp_ns,
            schema_version: SCHEMA_VERSION,
            host,
            body,
        }
    }

    /// A `loss` event; `counters` are the differences since the previous
    /// one ([`LossCounters::since`]).
    pub fn loss(timestamp_ns: u64, host: &str, counters: LossCounters) -> Event {
        Event::new(
            timestamp_ns,
            host.into(),
            EventBody::Loss { loss: counters },
        )
    }

    /// A `stats` event: totals since start.
    pub fn stats(timestamp_ns: u64, host: &str, counters: StatsCounters) -> Event {
        Event::new(
            timestamp_ns,
            host.into(),
            EventBody::Stats { stats: counters },
        )
    }
}

/// Written out rather than derived with `#[serde(flatten)]` and an
/// internally tagged body, whose machinery wraps the serializer for every
/// field of every event: the same object, field for field, cheaper.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (event_type, body_fields) = match &self.body {
            EventBody::Alert(_) => ("alert", 4),
            EventBody::Handshake(_) => ("handshake", 4),
            EventBody::Loss { .. } => ("loss", 1),
            EventBody::Stats { .. } => ("stats", 1),
        };
        let mut object = serializer.serialize_struct("Event", 4 + body_fields)?;
        object.serialize_field("timestamp", &Timestamp::of(self.timestamp_ns))?;
        object.serialize_field("schema_version", &self.schema_version)?;
        object.serialize_field("host", &self.host)?;
        object.serialize_field("event_type", event_type)?;
        match &self.body {
            EventBody::Alert(alert) => {
                object.serialize_field("flow", &alert.flow)?;
                object.serialize_field("http", &alert.http)?;
                object.serialize_field("capture", &CaptureRecord(alert.capture))?;
                object.serialize_field("alert", &alert.alert)?;
            }
            EventBody::Handshake(handshake) => {
                object.serialize_field("flow", &handshake.flow)?;
                object.serialize_field("http", &handshake.http)?;
                object.serialize_field("capture", &CaptureRecord(handshake.capture))?;
                object.serialize_field("handshake", &handshake.handshake)?;
            }
            EventBody::Loss { loss } => object.serialize_field("loss", loss)?,
            EventBody::Stats { stats } => object.serialize_field("stats", stats)?,
        }
        object.end()
    }
}

/// When an event happened, written as RFC 3339 in UTC with microseconds:
/// `2026-11-26T07:13:08.420039Z`. Every event carries one, so it is built
/// on the stack, digit by digit rather than through `format!`.
pub(crate) struct Timestamp([u8; 27]);

impl Timestamp {
    /// `timestamp_ns`: nanoseconds since the Unix epoch.
    pub(crate) fn of(timestamp_ns: u64) -> Timestamp {
        // u64 nanoseconds end in 2554, well inside what `time` represents:
        // years always have four digits.
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ns))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let (year, month, day) = time.to_calendar_date();
        let (hour, minute, second, microsecond) = time.to_hms_micro();
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        for (digits, value) in [
            (0..4, year.unsigned_abs()),
            (5..7, u32::from(u8::from(month))),
            (8..10, u32::from(day)),
            (11..13, u32::from(hour)),
            (14..16, u32::from(minute)),
            (17..19, u32::from(second)),
            (20..26, microsecond),
        ] {
            write_zero_padded(&mut text[digits], value);
        }
        Timestamp(text)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The low digits of `value` in decimal, filling `digits`.
fn write_zero_padded(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn serialize_role<S: Serializer>(
    role: &Option<PortRole>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match role {
        Some(role) => serializer.collect_str(role),
        None => serializer.serialize_none(),
    }
}
