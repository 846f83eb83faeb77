//! The counters of `loss` and `stats` events.
//!
//! Sources keep running totals; a `loss` event carries the difference
//! between the totals now and at the previous `loss` event, a `stats` event
//! the totals themselves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Event, EventBody, HandshakeOutcome};
use crate::{http::HttpStats, reassembly::ReassemblyStats, rules::Severity, source::SourceLoss};

/// What was not seen, or seen and not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LossCounters {
    /// Records the kernel program could not put in its ring buffer.
    pub kernel_drops: u64,
    /// Records whose payload the kernel program did not copy in full.
    pub truncated_records: u64,
    /// Records from the kernel program that did not decode.
    pub undecodable_records: u64,
    /// Holes in a TCP stream given up as lost, and their bytes.
    pub reassembly_gaps: u64,
    pub reassembly_gap_bytes: u64,
    /// Connections dropped to stay within the memory bounds.
    pub connections_evicted: u64,
    /// Heads over the HTTP layer's size or field-line limit: not read.
    pub http_heads_oversized: u64,
    /// Pipelined requests past the HTTP layer's bound: their place kept,
    /// their head not, their exchange not judged.
    pub http_requests_not_kept: u64,
    /// Interim responses past the HTTP layer's bound per exchange.
    pub http_interim_dropped: u64,
    /// Events dropped because the output could not keep up.
    pub output_drops: u64,
    /// Alerts over the rate limit (each counted in a summary alert too).
    pub alerts_suppressed: u64,
    /// Rate-limit keys forgotten to stay within bounds: an endpoint whose
    /// key was forgotten may get more than the limit in that interval.
    pub rate_limit_keys_evicted: u64,
}

/// Every stage's own count of what it lost, since start.
pub struct LossShares<'a> {
    pub source: SourceLoss,
    /// Records of the source the pipeline could not decode.
    pub undecodable_records: u64,
    pub reassembly: &'a ReassemblyStats,
    pub http: &'a HttpStats,
    pub output_drops: u64,
    pub alerts_suppressed: u64,
    pub rate_limit_keys_evicted: u64,
}

impl LossCounters {
    /// The totals since start, from each stage's share.
    pub fn total(shares: LossShares<'_>) -> LossCounters {
        let LossShares {
            source,
            undecodable_records,
            reassembly,
            http,
            output_drops,
            alerts_suppressed,
            rate_limit_keys_evicted,
        } = shares;
        LossCounters {
            kernel_drops: source.records_dropped,
            truncated_records: source.records_truncated,
            undecodable_records,
            reassembly_gaps: reassembly.lost_gaps,
            reassembly_gap_bytes: reassembly.lost_bytes,
            connections_evicted: reassembly.connections_evicted,
            http_heads_oversized: http.heads_oversized,
            http_requests_not_kept: http.requests_not_kept,
            http_interim_dropped: http.interim_dropped,
            output_drops,
            alerts_suppressed,
            rate_limit_keys_evicted,
        }
    }

    /// What was counted since the totals were `earlier`.
    pub fn since(&self, earlier: &LossCounters) -> LossCounters {
        LossCounters {
            kernel_drops: self.kernel_drops.saturating_sub(earlier.kernel_drops),
            truncated_records: self
                .truncated_records
                .saturating_sub(earlier.truncated_records),
            undecodable_records: self
                .undecodable_records
                .saturating_sub(earlier.undecodable_records),
            reassembly_gaps: self.reassembly_gaps.saturating_sub(earlier.reassembly_gaps),
            reassembly_gap_bytes: self
                .reassembly_gap_bytes
                .saturating_sub(earlier.reassembly_gap_bytes),
            connections_evicted: self
                .connections_evicted
                .saturating_sub(earlier.connections_evicted),
            http_heads_oversized: self
                .http_heads_oversized
                .saturating_sub(earlier.http_heads_oversized),
            http_requests_not_kept: self
                .http_requests_not_kept
                .saturating_sub(earlier.http_requests_not_kept),
            http_interim_dropped: self
                .http_interim_dropped
                .saturating_sub(earlier.http_interim_dropped),
            output_drops: self.output_drops.saturating_sub(earlier.output_drops),
            alerts_suppressed: self
                .alerts_suppressed
                .saturating_sub(earlier.alerts_suppressed),
            rate_limit_keys_evicted: self
                .rate_limit_keys_evicted
                .saturating_sub(earlier.rate_limit_keys_evicted),
        }
    }

    /// Nothing was lost: no `loss` event is needed.
    pub fn is_zero(&self) -> bool {
        *self == LossCounters::default()
    }
}

/// Totals since start, except the two gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsCounters {
    pub segments: u64,
    pub exchanges: u64,
    pub connections_opened: u64,
    /// Gauge: connections tracked now.
    pub connections_open: u64,
    /// Gauge: bytes held for connections now (out-of-order data and HTTP
    /// state), what `[reassembly] max_buffered_total` bounds.
    pub buffered_bytes: u64,
    /// `handshake` events emitted.
    pub handshakes: u64,
    /// `alert` events emitted, summaries included.
    pub alerts: u64,
    /// Findings a `[[silence]]` table kept from raising an alert, by rule.
    pub silenced: BTreeMap<&'static str, u64>,
    /// The totals `loss` events report differences of.
    pub loss: LossCounters,
}

/// The `handshake` and `alert` events emitted since start. Bounded: the
/// keys come from the rule catalogue and fixed enums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmittedCounts {
    pub handshakes: BTreeMap<HandshakeOutcome, u64>,
    /// By rule id and the severity the alert carried; summaries included.
    pub alerts: BTreeMap<(&'static str, Severity), u64>,
}

impl EmittedCounts {
    /// Counts the handshakes and alerts among `events`.
    pub fn count(&mut self, events: &[Event]) {
        for event in events {
            match &event.body {
                EventBody::Handshake(handshake) => {
                    *self
                        .handshakes
                        .entry(handshake.handshake.outcome)
                        .or_default() += 1;
                }
                EventBody::Alert(alert) => {
                    *self
                        .alerts
                        .entry((alert.alert.rule, alert.alert.severity))
                        .or_default() += 1;
                }
                EventBody::Loss { .. } | EventBody::Stats { .. } => {}
            }
        }
    }

    pub fn handshakes_total(&self) -> u64 {
        self.handshakes.values().sum()
    }

    pub fn alerts_total(&self) -> u64 {
        self.alerts.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_the_difference_of_totals() {
        let reassembly = ReassemblyStats {
            lost_gaps: 3,
            lost_bytes: 3000,
            uncopied_bytes: 10,
            connections_evicted: 1,
            ..ReassemblyStats::default()
        };
        let earlier = LossCounters::total(LossShares {
            source: SourceLoss {
                records_dropped: 5,
                ..SourceLoss::default()
            },
            undecodable_records: 0,
            reassembly: &reassembly,
            http: &HttpStats::default(),
            output_drops: 0,
            alerts_suppressed: 0,
            rate_limit_keys_evicted: 0,
        });
        let now = LossCounters {
            kernel_drops: 7,
            alerts_suppressed: 4,
            reassembly_gaps: 4,
            ..earlier
        };
        let delta = now.since(&earlier);
        assert_eq!(
            delta,
            LossCounters {
                kernel_drops: 2,
                alerts_suppressed: 4,
                reassembly_gaps: 1,
                ..LossCounters::default()
            }
        );
        assert!(!delta.is_zero());
        assert!(now.since(&now).is_zero());
    }
}
