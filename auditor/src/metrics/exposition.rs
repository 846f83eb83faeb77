//! The counters in the Prometheus text exposition format, version 0.0.4.

use std::{collections::BTreeMap, fmt::Write as _};

use auditor_common::Counter;

use crate::{
    events::{HandshakeOutcome, LossCounters},
    pipeline::PipelineSnapshot,
    reassembly::ReassemblyStats,
};

/// What a scrape's `Content-Type` says.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, from the kernel program's counters and the pipeline's.
pub fn render(kernel: &BTreeMap<Counter, u64>, pipeline: &PipelineSnapshot) -> String {
    let mut text = Exposition::default();
    for (&counter, &value) in kernel {
        text.counter(
            &format!("auditor_kernel_{}_total", counter.name()),
            kernel_help(counter),
            value,
        );
    }
    text.counter(
        "auditor_segments_total",
        "Segments the daemon received from the kernel program.",
        pipeline.stats.segments,
    );
    text.counter(
        "auditor_exchanges_total",
        "HTTP request-response exchanges followed.",
        pipeline.stats.exchanges,
    );
    reassembly(&mut text, &pipeline.reassembly);
    text.gauge(
        "auditor_connections_open",
        "Connections reassembly tracks now.",
        pipeline.connections_open,
    );
    text.gauge(
        "auditor_reassembly_buffered_bytes",
        "Out-of-order bytes reassembly holds now.",
        pipeline.buffered_bytes,
    );
    text.gauge(
        "auditor_http_buffered_bytes",
        "Bytes the HTTP layer holds now: partial heads, requests awaiting responses, bytes kept across a switch.",
        pipeline.http_buffered_bytes,
    );

    text.family(
        "auditor_handshakes_total",
        "counter",
        "handshake events emitted, by outcome.",
    );
    for outcome in HandshakeOutcome::ALL {
        let count = pipeline.emitted.handshakes.get(&outcome).copied();
        text.sample(
            "auditor_handshakes_total",
            &[("outcome", outcome.name())],
            count.unwrap_or(0),
        );
    }
    text.family(
        "auditor_alerts_total",
        "counter",
        "alert events emitted, by rule and severity; rate-limit summaries included.",
    );
    for (&(rule, severity), &count) in &pipeline.emitted.alerts {
        text.sample(
            "auditor_alerts_total",
            &[("rule", rule), ("severity", &severity.to_string())],
            count,
        );
    }
    text.family(
        "auditor_alerts_silenced_total",
        "counter",
        "Findings a [[silence]] table of the configuration kept from raising an alert, by rule.",
    );
    for (&rule, &count) in &pipeline.silenced {
        text.sample("auditor_alerts_silenced_total", &[("rule", rule)], count);
    }
    loss(&mut text, &pipeline.loss);
    text.text
}

fn kernel_help(counter: Counter) -> &'static str {
    match counter {
        Counter::PacketsSeen => "Packets the kernel program looked at.",
        Counter::SegmentsMatched => "TCP segments to or from a watched port.",
        Counter::RecordsEmitted => "Records the kernel program put in the ring buffer.",
        Counter::PayloadBytesCopied => "Payload bytes the kernel program copied into records.",
        Counter::RecordsTruncated => "Records whose payload was not copied in full.",
        Counter::RingBufferFull => "Records dropped because the ring buffer was full.",
        Counter::SkippedVlanDepth => "Packets skipped: more VLAN tags than the program follows.",
        Counter::SkippedIpv6ExtensionChain => {
            "Packets skipped: an IPv6 extension header chain too long to follow."
        }
        Counter::SkippedIpFragment => "IP fragments skipped.",
        Counter::SkippedMalformed => "Packets skipped as malformed.",
    }
}

fn reassembly(text: &mut Exposition, stats: &ReassemblyStats) {
    // No `..`: a new field must be given a metric, or left out here on purpose.
    let ReassemblyStats {
        connections_opened,
        connections_evicted: _,
        connections_idled,
        lost_gaps: _,
        lost_bytes: _,
        uncopied_bytes,
        conflicting_overlaps,
        out_of_window_segments,
        buffer_overflows,
    } = *stats;
    // Evictions and lost gaps are loss: `auditor_loss_*`.
    for (name, help, value) in [
        (
            "auditor_connections_opened_total",
            "Connections reassembly started to follow.",
            connections_opened,
        ),
        (
            "auditor_connections_idled_total",
            "Connections closed after the idle timeout.",
            connections_idled,
        ),
        (
            "auditor_reassembly_uncopied_bytes_total",
            "Payload bytes on the wire the kernel program did not copy on purpose.",
            uncopied_bytes,
        ),
        (
            "auditor_reassembly_conflicting_overlaps_total",
            "Retransmissions whose bytes differed from what was already seen.",
            conflicting_overlaps,
        ),
        (
            "auditor_reassembly_out_of_window_segments_total",
            "Segments too far from the expected sequence number to buffer.",
            out_of_window_segments,
        ),
        (
            "auditor_reassembly_buffer_overflows_total",
            "Times the out-of-order buffer bounds forced reassembly to give up bytes.",
            buffer_overflows,
        ),
    ] {
        text.counter(name, help, value);
    }
}

fn loss(text: &mut Exposition, loss: &LossCounters) {
    let LossCounters {
        kernel_drops,
        truncated_records,
        undecodable_records,
        reassembly_gaps,
        reassembly_gap_bytes,
        connections_evicted,
        http_heads_oversized,
        http_requests_not_kept,
        http_interim_dropped,
        output_drops,
        alerts_suppressed,
        rate_limit_keys_evicted,
    } = *loss;
    for (kind, help, value) in [
        (
            "kernel_drops",
            "Records the kernel program could not put in its ring buffer.",
            kernel_drops,
        ),
        (
            "truncated_records",
            "Records whose payload the kernel program did not copy in full.",
            truncated_records,
        ),
        (
            "undecodable_records",
            "Records from the kernel program that did not decode.",
            undecodable_records,
        ),
        (
            "reassembly_gaps",
            "Holes in TCP streams given up as lost.",
            reassembly_gaps,
        ),
        (
            "reassembly_gap_bytes",
            "Bytes of the holes in TCP streams given up as lost.",
            reassembly_gap_bytes,
        ),
        (
            "connections_evicted",
            "Connections dropped to stay within the memory bounds.",
            connections_evicted,
        ),
        (
            "http_heads_oversized",
            "Heads over the HTTP layer's size or field-line limit, not read.",
            http_heads_oversized,
        ),
        (
            "http_requests_not_kept",
            "Pipelined requests past the HTTP layer's bound, whose exchanges were not judged.",
            http_requests_not_kept,
        ),
        (
            "http_interim_dropped",
            "Interim responses past the HTTP layer's bound per exchange.",
            http_interim_dropped,
        ),
        (
            "output_drops",
            "Events dropped because an output could not keep up.",
            output_drops,
        ),
        (
            "alerts_suppressed",
            "Alerts over the rate limit (each counted in a summary alert).",
            alerts_suppressed,
        ),
        (
            "rate_limit_keys_evicted",
            "Rate-limit keys forgotten to stay within bounds.",
            rate_limit_keys_evicted,
        ),
    ] {
        text.counter(&format!("auditor_loss_{kind}_total"), help, value);
    }
}

/// Text being written: each family's `# HELP` and `# TYPE` lines, then its
/// samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value)))
                .collect();
            let _ = write!(self.text, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Backslash, double quote and line feed escaped, as the format requires.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events::EmittedCounts, pipeline::PipelineStats, rules::Severity};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn samples_follow_their_help_and_type_lines() {
        let mut text = Exposition::default();
        text.counter("auditor_segments_total", "Segments.", 7);
        text.gauge("auditor_connections_open", "Now.", 2);
        text.family("auditor_handshakes_total", "counter", "By outcome.");
        text.sample("auditor_handshakes_total", &[("outcome", "switched")], 1);
        text.sample(
            "auditor_alerts_total",
            &[("rule", "a-b"), ("severity", "error")],
            3,
        );
        assert_eq!(
            lines(&text.text),
            [
                "# HELP auditor_segments_total Segments.",
                "# TYPE auditor_segments_total counter",
                "auditor_segments_total 7",
                "# HELP auditor_connections_open Now.",
                "# TYPE auditor_connections_open gauge",
                "auditor_connections_open 2",
                "# HELP auditor_handshakes_total By outcome.",
                "# TYPE auditor_handshakes_total counter",
                "auditor_handshakes_total{outcome=\"switched\"} 1",
                "auditor_alerts_total{rule=\"a-b\",severity=\"error\"} 3",
            ]
        );
    }

    #[test]
    fn label_values_and_help_texts_are_escaped() {
        assert_eq!(
            escape_label_value("C:\\dir \"quoted\"\nnext"),
            "C:\\\\dir \\\"quoted\\\"\\nnext"
        );
        let mut text = Exposition::default();
        text.family("m", "counter", "back\\slash \"quotes\" stay\nnext");
        text.sample("m", &[("l", "a\"b\\c\nd")], 0);
        assert_eq!(
            lines(&text.text),
            [
                "# HELP m back\\\\slash \"quotes\" stay\\nnext",
                "# TYPE m counter",
                "m{l=\"a\\\"b\\\\c\\nd\"} 0",
            ]
        );
    }

    #[test]
    fn every_stage_and_every_loss_is_exposed() {
        let kernel: BTreeMap<Counter, u64> = Counter::ALL.into_iter().zip(1..).collect();
        let mut emitted = EmittedCounts::default();
        emitted.handshakes.insert(HandshakeOutcome::Declined, 4);
        emitted.alerts.insert(
            ("upgrade-101-missing-connection-option", Severity::Error),
            2,
        );
        let snapshot = PipelineSnapshot {
            stats: PipelineStats {
                segments: 50,
                undecodable_records: 1,
                exchanges: 5,
            },
            reassembly: ReassemblyStats {
                connections_opened: 6,
                connections_idled: 2,
                uncopied_bytes: 1000,
                ..ReassemblyStats::default()
            },
            connections_open: 3,
            buffered_bytes: 120,
            http_buffered_bytes: 300,
            emitted,
            silenced: BTreeMap::from([("ws-key-invalid", 7)]),
            loss: LossCounters {
                kernel_drops: 6,
                undecodable_records: 1,
                alerts_suppressed: 9,
                ..LossCounters::default()
            },
        };
        let text = render(&kernel, &snapshot);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "auditor_kernel_packets_seen_total 1",
                "auditor_kernel_segments_matched_total 2",
                "auditor_kernel_records_emitted_total 3",
                "auditor_kernel_payload_bytes_copied_total 4",
                "auditor_kernel_records_truncated_total 5",
                "auditor_kernel_ring_buffer_full_total 6",
                "auditor_kernel_skipped_vlan_depth_total 7",
                "auditor_kernel_skipped_ipv6_extension_chain_total 8",
                "auditor_kernel_skipped_ip_fragment_total 9",
                "auditor_kernel_skipped_malformed_total 10",
                "auditor_segments_total 50",
                "auditor_exchanges_total 5",
                "auditor_connections_opened_total 6",
                "auditor_connections_idled_total 2",
                "auditor_reassembly_uncopied_bytes_total 1000",
                "auditor_reassembly_conflicting_overlaps_total 0",
                "auditor_reassembly_out_of_window_segments_total 0",
                "auditor_reassembly_buffer_overflows_total 0",
                "auditor_connections_open 3",
                "auditor_reassembly_buffered_bytes 120",
                "auditor_http_buffered_bytes 300",
                "auditor_handshakes_total{outcome=\"switched\"} 0",
                "auditor_handshakes_total{outcome=\"declined\"} 4",
                "auditor_handshakes_total{outcome=\"incomplete\"} 0",
                "auditor_alerts_total{rule=\"upgrade-101-missing-connection-option\",severity=\"error\"} 2",
                "auditor_alerts_silenced_total{rule=\"ws-key-invalid\"} 7",
                "auditor_loss_kernel_drops_total 6",
                "auditor_loss_truncated_records_total 0",
                "auditor_loss_undecodable_records_total 1",
                "auditor_loss_reassembly_gaps_total 0",
                "auditor_loss_reassembly_gap_bytes_total 0",
                "auditor_loss_connections_evicted_total 0",
                "auditor_loss_http_heads_oversized_total 0",
                "auditor_loss_http_requests_not_kept_total 0",
                "auditor_loss_http_interim_dropped_total 0",
                "auditor_loss_output_drops_total 0",
                "auditor_loss_alerts_suppressed_total 9",
                "auditor_loss_rate_limit_keys_evicted_total 0",
            ]
        );
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(
            families,
            samples.len() - 2,
            "one family per sample but the labelled ones"
        );
        assert!(text.contains(
            "# HELP auditor_kernel_ring_buffer_full_total Records dropped because the ring buffer was full.\n\
             # TYPE auditor_kernel_ring_buffer_full_total counter\n"
        ));
        assert!(text.contains("# TYPE auditor_connections_open gauge\n"));
        assert!(text.ends_with('\n'));
    }
}
