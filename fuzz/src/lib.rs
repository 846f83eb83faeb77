//! What the fuzz targets share: the input formats of the targets whose input
//! is not a file format of its own ([`records`], [`segments`],
//! [`conversation`]), each decoded by its target and encoded by
//! `seed_corpora` from the committed captures, and the auditor as the targets
//! run it, with limits small enough for inputs of a few kilobytes to reach.

pub mod conversation;
mod reader;
pub mod records;
pub mod segments;

use std::{collections::HashMap, io, sync::Arc};

use auditor::{
    events::RateLimitSettings,
    http::HttpLimits,
    output::{Format, LineWriter},
    pipeline::{Mode, Pipeline},
    reassembly::ReassemblyLimits,
    reporter::{ReportSettings, Reporter},
    rules::PortRole,
    segment::SegmentRef,
    source::{Input, SourceLoss},
};
pub use reader::Reader;

/// The server port of the fuzzed connections that has the role `frontend`.
pub const FRONTEND_PORT: u16 = 80;
/// The server port that has the role `backend`.
pub const BACKEND_PORT: u16 = 81;

/// Capture time of the first segment of an input: 2027, so that timestamps
/// print as dates of this century.
pub const START_NS: u64 = 1_800_000_000_000_000_000;

pub fn reassembly_limits() -> ReassemblyLimits {
    ReassemblyLimits {
        max_connections: 3,
        max_buffered_per_connection: 2048,
        max_buffered_total: 4096,
        idle_timeout_ns: 30_000_000_000,
        recent_bytes: 64,
    }
}

pub fn http_limits() -> HttpLimits {
    HttpLimits {
        max_head_bytes: 1024,
        max_headers: 24,
        switch_bytes: 16,
        switch_wait_ns: 2_000_000_000,
        large_body_bytes: 512,
        max_pipelined: 4,
        max_pending_bytes: 2048,
    }
}

/// Roles for both server ports, a name for interface 0, and a rate limit
/// and key table small enough to fill.
pub fn report_settings() -> ReportSettings {
    ReportSettings {
        host: Arc::from("fuzz"),
        roles: HashMap::from([
            (FRONTEND_PORT, PortRole::Frontend),
            (BACKEND_PORT, PortRole::Backend),
        ]),
        interface_names: HashMap::from([(0, "eth0".to_owned())]),
        rate_limit: RateLimitSettings {
            max_alerts: 2,
            interval_secs: 10,
            max_tracked_keys: 4,
        },
        ..ReportSettings::default()
    }
}

/// What every segment promises, from a capture file or a kernel record: its
/// bytes and the tail it says was not copied lie within its payload.
pub fn check_segment(segment: &SegmentRef<'_>) {
    let end = u64::from(segment.data_offset)
        + segment.data.len() as u64
        + u64::from(segment.uncopied_tail);
    assert!(
        end <= u64::from(segment.payload_len),
        "a segment's data and uncopied tail end at {end}, past its {}-byte payload",
        segment.payload_len
    );
}

const SINK_WRITES: &str = "writing to io::sink cannot fail";

/// The pipeline of `auditor run` and `auditor replay`, fed one segment or
/// record at a time, writing its events (or exchanges) to nowhere. After
/// each segment it checks the bounds the pipeline promises; at the end,
/// that nothing is left open or counted as held.
pub struct PipelineRun {
    pipeline: Pipeline<LineWriter<io::Sink>>,
    last_timestamp_ns: u64,
}

impl PipelineRun {
    /// `exchanges`: exchanges instead of events, as `--exchanges` prints
    /// them; `pretty`: events as `--format pretty` writes them.
    pub fn new(exchanges: bool, pretty: bool) -> PipelineRun {
        let format = if pretty {
            Format::Pretty { colour: true }
        } else {
            Format::Json
        };
        let mode = if exchanges {
            Mode::Exchanges
        } else {
            Mode::Events(Box::new(Reporter::new(report_settings())))
        };
        PipelineRun {
            pipeline: Pipeline::new(
                reassembly_limits(),
                http_limits(),
                mode,
                LineWriter::new(io::sink(), format),
            ),
            last_timestamp_ns: 0,
        }
    }

    pub fn accept(&mut self, input: Input<'_>) {
        if let Input::Segment(segment) = &input {
            self.last_timestamp_ns = segment.timestamp_ns;
        }
        self.pipeline.accept(input).expect(SINK_WRITES);
        self.pipeline.take_gate_commands().for_each(drop);
        let snapshot = self.pipeline.snapshot(SourceLoss::default());
        let limits = reassembly_limits();
        assert!(snapshot.connections_open <= limits.max_connections as u64);
        let held = snapshot.buffered_bytes + snapshot.http_buffered_bytes;
        assert!(
            held <= limits.max_buffered_total as u64,
            "{held} bytes held by reassembly and the HTTP layer, over the total limit"
        );
    }

    /// Ends the input as a replay ends, with a `loss` and a `stats` event.
    pub fn finish(mut self) {
        let source = SourceLoss {
            records_dropped: 1,
            records_truncated: 1,
        };
        let now = self.last_timestamp_ns;
        self.pipeline.finish().expect(SINK_WRITES);
        self.pipeline.report_loss(now, source).expect(SINK_WRITES);
        self.pipeline.report_stats(now, source).expect(SINK_WRITES);
        let snapshot = self.pipeline.snapshot(source);
        assert_eq!(snapshot.connections_open, 0, "connections left open");
        assert_eq!(
            (snapshot.buffered_bytes, snapshot.http_buffered_bytes),
            (0, 0),
            "bytes counted as held by reassembly and the HTTP layer after every connection closed"
        );
    }
}
