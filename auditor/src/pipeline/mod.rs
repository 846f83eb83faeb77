//! A source's inputs → reassembly (for TCP segments) → HTTP exchanges →
//! rules and events → a sink, the same for every source. Payload-gate requests of the
//! HTTP layer come out as [`GateCommand`]s for the live capture to apply.

mod gates;

use std::{
    collections::{BTreeMap, HashMap},
    io,
};

pub use self::gates::GateCommand;
use self::gates::PayloadGates;
use crate::{
    config::Config,
    events::{EmittedCounts, Event, LossCounters, LossShares, StatsCounters},
    http::{HttpLimits, HttpOutput, HttpTracker},
    output::Sink,
    reassembly::{Emit, Reassembler, ReassemblyLimits, ReassemblyStats},
    reporter::{ReportSettings, Reporter},
    rules::Severity,
    segment::SegmentRef,
    source::{Input, SourceLoss},
    stream::{ConnectionId, StreamEvent},
};

/// How often, in capture time, idle connections and post-switch waits are checked.
const TICK_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub segments: u64,
    pub undecodable_records: u64,
    pub exchanges: u64,
}

/// Everything the pipeline counted since start, for `stats` events and the
/// metrics endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineSnapshot {
    pub stats: PipelineStats,
    pub reassembly: ReassemblyStats,
    /// Gauge: connections reassembly tracks now.
    pub connections_open: u64,
    /// Gauge: out-of-order bytes reassembly holds now.
    pub buffered_bytes: u64,
    /// Gauge: bytes the HTTP layer holds now.
    pub http_buffered_bytes: u64,
    /// With `--exchanges`, nothing.
    pub emitted: EmittedCounts,
    /// Findings silenced by configuration, by rule; with `--exchanges`, none.
    pub silenced: BTreeMap<&'static str, u64>,
    /// Totals since start of everything lost.
    pub loss: LossCounters,
}

impl PipelineSnapshot {
    /// What a `stats` event carries.
    pub fn stats_counters(&self) -> StatsCounters {
        StatsCounters {
            segments: self.stats.segments,
            exchanges: self.stats.exchanges,
            connections_opened: self.reassembly.connections_opened,
            connections_open: self.connections_open,
            buffered_bytes: self.buffered_bytes + self.http_buffered_bytes,
            handshakes: self.emitted.handshakes_total(),
            alerts: self.emitted.alerts_total(),
            silenced: self.silenced.clone(),
            loss: self.loss,
        }
    }
}

/// What a command asks the pipeline to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Rules run over every exchange, and events out.
    Events,
    /// Every exchange followed (`--exchanges`).
    Exchanges,
}

/// What the pipeline makes of the exchanges it follows.
pub enum Mode {
    /// Rules and events, by this reporter.
    Events(Box<Reporter>),
    /// The exchanges themselves.
    Exchanges,
}

pub struct Pipeline<S: Sink> {
    reassembler: Reassembler,
    http: HttpTracker,
    mode: Mode,
    sink: S,
    http_outputs: Vec<HttpOutput>,
    events: Vec<Event>,
    closed: Vec<ConnectionId>,
    gates: PayloadGates,
    next_tick_ns: u64,
    stats: PipelineStats,
    /// Bytes held for connections, out-of-order data and HTTP state alike.
    max_buffered_total: usize,
}

impl<S: Sink> Pipeline<S> {
    /// The pipeline `config` describes, writing `output` to `sink`;
    /// `interface_names` name the capture's interfaces in events.
    pub fn configured(
        config: &Config,
        output: Output,
        interface_names: HashMap<u32, String>,
        sink: S,
    ) -> Pipeline<S> {
        let mode = match output {
            Output::Events => Mode::Events(Box::new(Reporter::new(
                config.report_settings(interface_names),
            ))),
            Output::Exchanges => Mode::Exchanges,
        };
        Pipeline::new(
            config.reassembly.limits(),
            HttpLimits::default(),
            mode,
            sink,
        )
    }

    /// What `mode` makes goes to `sink`.
    pub fn new(reassembly: ReassemblyLimits, http: HttpLimits, mode: Mode, sink: S) -> Pipeline<S> {
        Pipeline {
            reassembler: Reassembler::new(reassembly),
            http: HttpTracker::new(http),
            mode,
            sink,
            http_outputs: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            gates: PayloadGates::default(),
            next_tick_ns: 0,
            stats: PipelineStats::default(),
            max_buffered_total: reassembly.max_buffered_total,
        }
    }

    /// Takes one input of a source: what it borrows (from the ring buffer
    /// or a capture file's buffer), the pipeline copies only if it keeps it.
    pub fn accept(&mut self, input: Input<'_>) -> io::Result<()> {
        match input {
            Input::Segment(segment) => self.accept_segment(segment),
            Input::Undecodable(error) => {
                self.stats.undecodable_records += 1;
                tracing::warn!(%error, "undecodable record from the source");
                Ok(())
            }
            Input::Stream(event) => self.accept_stream(&event),
        }
    }

    fn accept_segment(&mut self, segment: SegmentRef<'_>) -> io::Result<()> {
        self.stats.segments += 1;
        tracing::debug!(
            interface = ?segment.interface,
            direction = ?segment.direction,
            src = %segment.src,
            dst = %segment.dst,
            seq = segment.seq,
            ack = segment.ack,
            data_offset = segment.data_offset,
            flags = %segment.flags,
            payload_len = segment.payload_len,
            captured = segment.data.len(),
            uncopied_tail = segment.uncopied_tail,
            head = %printable_prefix(segment.data, 64),
            "segment"
        );
        self.reassemble(|reassembler, emit| reassembler.push(&segment, emit));
        self.stay_within_budget(segment.timestamp_ns);
        self.drain_outputs()?;
        self.tick_if_due(segment.timestamp_ns)
    }

    /// Bytes a source put in order itself go straight to the HTTP layer.
    fn accept_stream(&mut self, event: &StreamEvent<'_>) -> io::Result<()> {
        self.http.handle(event, &mut self.http_outputs);
        self.drain_outputs()?;
        self.tick_if_due(event.timestamp_ns())
    }

    fn tick_if_due(&mut self, now_ns: u64) -> io::Result<()> {
        if now_ns >= self.next_tick_ns {
            self.tick(now_ns)?;
        }
        Ok(())
    }

    /// The end of a batch of segments: what the sink buffered goes out.
    /// [`Self::accept`] leaves that to the caller, so that a capture file is
    /// not written a few events at a time; every other method flushes.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// Closes idle connections and ends post-switch waits as of `now_ns`.
    pub fn tick(&mut self, now_ns: u64) -> io::Result<()> {
        self.next_tick_ns = now_ns.saturating_add(TICK_NS);
        self.reassemble(|reassembler, emit| reassembler.expire(now_ns, emit));
        self.http.tick(now_ns, &mut self.http_outputs);
        if let Mode::Events(reporter) = &mut self.mode {
            reporter.expire(now_ns, &mut self.events);
        }
        self.drain_outputs()?;
        self.sink.flush()
    }

    /// The input ended: delivers what is buffered and closes everything.
    pub fn finish(&mut self) -> io::Result<()> {
        self.reassemble(|reassembler, emit| reassembler.finish(emit));
        if let Mode::Events(reporter) = &mut self.mode {
            reporter.finish(&mut self.events);
        }
        self.drain_outputs()?;
        self.sink.flush()
    }

    /// Writes a `loss` event if anything was lost since the previous one.
    pub fn report_loss(&mut self, now_ns: u64, source: SourceLoss) -> io::Result<()> {
        let totals = self.loss_totals(source);
        if let Mode::Events(reporter) = &mut self.mode {
            self.events.extend(reporter.loss(now_ns, totals));
        }
        self.drain_outputs()?;
        self.sink.flush()
    }

    /// Writes a `stats` event with the totals since start (with a reporter).
    pub fn report_stats(&mut self, now_ns: u64, source: SourceLoss) -> io::Result<()> {
        let counters = self.snapshot(source).stats_counters();
        if let Mode::Events(reporter) = &self.mode {
            self.events.push(reporter.stats(now_ns, counters));
        }
        self.drain_outputs()?;
        self.sink.flush()
    }

    /// Gives the reporter new settings (a reload); without a reporter there
    /// is nothing to change.
    pub fn replace_report_settings(&mut self, settings: ReportSettings) -> io::Result<()> {
        if let Mode::Events(reporter) = &mut self.mode {
            reporter.replace_settings(settings, &mut self.events);
        }
        self.drain_outputs()?;
        self.sink.flush()
    }

    /// The counters as of now; `source` is what the source lost.
    pub fn snapshot(&self, source: SourceLoss) -> PipelineSnapshot {
        PipelineSnapshot {
            stats: self.stats,
            reassembly: self.reassembler.stats(),
            connections_open: self.reassembler.connections() as u64,
            buffered_bytes: self.reassembler.buffered_bytes() as u64,
            http_buffered_bytes: self.http.heap_bytes() as u64,
            emitted: match &self.mode {
                Mode::Events(reporter) => reporter.emitted().clone(),
                Mode::Exchanges => EmittedCounts::default(),
            },
            silenced: match &self.mode {
                Mode::Events(reporter) => reporter.silenced().clone(),
                Mode::Exchanges => BTreeMap::new(),
            },
            loss: self.loss_totals(source),
        }
    }

    /// SIGHUP: the sink opens its files again (after logrotate moved them).
    pub fn reopen_outputs(&mut self) -> io::Result<()> {
        self.sink.reopen()
    }

    /// The highest severity of any alert raised so far.
    pub fn worst_severity(&self) -> Option<Severity> {
        match &self.mode {
            Mode::Events(reporter) => reporter.worst_severity(),
            Mode::Exchanges => None,
        }
    }

    /// Gate changes for the live capture, in the order they arose.
    pub fn take_gate_commands(&mut self) -> std::vec::Drain<'_, GateCommand> {
        self.gates.take_commands()
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    pub fn reassembly_stats(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    fn loss_totals(&self, source: SourceLoss) -> LossCounters {
        let (alerts_suppressed, rate_limit_keys_evicted) = match &self.mode {
            Mode::Events(reporter) => reporter.rate_limit_loss(),
            Mode::Exchanges => (0, 0),
        };
        LossCounters::total(LossShares {
            source,
            undecodable_records: self.stats.undecodable_records,
            reassembly: &self.reassembler.stats(),
            http: &self.http.stats(),
            output_drops: self.sink.dropped(),
            alerts_suppressed,
            rate_limit_keys_evicted,
        })
    }

    /// Over the budget, the least recently used connections are evicted:
    /// reassembly bounds its own buffers, but not what the HTTP layer holds.
    fn stay_within_budget(&mut self, now_ns: u64) {
        while self.reassembler.buffered_bytes() + self.http.heap_bytes() > self.max_buffered_total {
            let mut evicted = false;
            self.reassemble(|reassembler, emit| {
                evicted = reassembler.evict_least_recent(now_ns, emit);
            });
            if !evicted {
                break;
            }
        }
    }

    /// Runs one reassembly step with its stream events going to the HTTP layer.
    fn reassemble(&mut self, step: impl FnOnce(&mut Reassembler, &mut Emit<'_>)) {
        let Pipeline {
            reassembler,
            http,
            http_outputs,
            closed,
            ..
        } = self;
        step(reassembler, &mut |event: &StreamEvent<'_>| {
            if let StreamEvent::Closed { id, .. } = event {
                closed.push(*id);
            }
            http.handle(event, http_outputs);
        });
    }

    /// Hands what the HTTP layer and the reporter produced to the sink,
    /// without flushing it (see [`Self::flush`]).
    fn drain_outputs(&mut self) -> io::Result<()> {
        for output in self.http_outputs.drain(..) {
            match output {
                HttpOutput::Exchange(exchange) => {
                    self.stats.exchanges += 1;
                    match &mut self.mode {
                        Mode::Events(reporter) => reporter.report(&exchange, &mut self.events),
                        Mode::Exchanges => self.sink.exchange(&exchange)?,
                    }
                }
                HttpOutput::Gate(request) => self.gates.request(request, &self.reassembler),
            }
        }
        for id in self.closed.drain(..) {
            self.gates.connection_closed(id);
        }
        for event in self.events.drain(..) {
            self.sink.event(&event)?;
        }
        Ok(())
    }
}

/// The first `max` bytes with non-printable ones escaped, for the debug log.
fn printable_prefix(data: &[u8], max: usize) -> String {
    data.iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::{events::EventBody, http::Exchange, reporter::ReportSettings, stream::CloseReason};

    /// Keeps the events; `dropped` is what its destinations lost.
    #[derive(Default)]
    struct Recorded {
        events: Vec<Event>,
        dropped: u64,
    }

    impl Sink for Recorded {
        fn event(&mut self, event: &Event) -> io::Result<()> {
            self.events.push(event.clone());
            Ok(())
        }
        fn exchange(&mut self, _: &Exchange) -> io::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn dropped(&self) -> u64 {
            self.dropped
        }
    }

    const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
    const PROXMOX_101: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

    fn judging() -> Pipeline<Recorded> {
        Pipeline::new(
            ReassemblyLimits::default(),
            HttpLimits::default(),
            Mode::Events(Box::new(Reporter::new(ReportSettings::default()))),
            Recorded::default(),
        )
    }

    #[test]
    fn loss_events_count_what_the_outputs_dropped_since_the_previous_one() {
        let mut pipeline = judging();
        let output_drops = |pipeline: &Pipeline<Recorded>| -> Vec<u64> {
            pipeline
                .sink
                .events
                .iter()
                .map(|event| match &event.body {
                    EventBody::Loss { loss } => loss.output_drops,
                    other => panic!("only loss events expected: {other:?}"),
                })
                .collect()
        };
        pipeline.report_loss(1, SourceLoss::default()).unwrap();
        assert_eq!(output_drops(&pipeline), [0; 0], "nothing lost, no event");
        pipeline.sink.dropped = 7;
        pipeline.report_loss(2, SourceLoss::default()).unwrap();
        pipeline.sink.dropped = 10;
        pipeline.report_loss(3, SourceLoss::default()).unwrap();
        pipeline.report_loss(4, SourceLoss::default()).unwrap();
        assert_eq!(output_drops(&pipeline), [7, 3]);
    }

    /// What a TLS plaintext source hands over is judged as the same bytes
    /// reassembled from TCP segments are.
    #[test]
    fn bytes_in_order_are_judged_as_reassembled_segments_are() {
        use auditor_common::tcp_flags::{ACK, PSH, SYN};

        use crate::segment::{Segment, TcpFlags};

        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:8007".parse().unwrap();
        let segment = |at: u64, src, dst, seq, flags, data: &[u8]| Segment {
            timestamp_ns: at,
            interface: None,
            direction: None,
            src,
            dst,
            seq,
            ack: 0,
            flags: TcpFlags(flags),
            payload_len: data.len() as u32,
            data_offset: 0,
            data: data.to_vec(),
            uncopied_tail: 0,
            gated: false,
        };
        let mut reassembled = judging();
        for segment in [
            segment(1, client, server, 99, SYN, b""),
            segment(1, server, client, 499, SYN | ACK, b""),
            segment(2, client, server, 100, PSH | ACK, PROXMOX_OFFER),
            segment(3, server, client, 500, PSH | ACK, PROXMOX_101),
        ] {
            reassembled
                .accept(Input::Segment(segment.borrowed()))
                .unwrap();
        }
        reassembled.finish().unwrap();

        let mut streamed = judging();
        let id = ConnectionId(7);
        for event in [
            StreamEvent::Opened {
                id,
                first: client,
                second: server,
                syn_sender: Some(client),
                midstream: false,
                interface: None,
                timestamp_ns: 1,
            },
            StreamEvent::Data {
                id,
                src: client,
                offset: 0,
                bytes: PROXMOX_OFFER,
                timestamp_ns: 2,
            },
            StreamEvent::Data {
                id,
                src: server,
                offset: 0,
                bytes: PROXMOX_101,
                timestamp_ns: 3,
            },
            StreamEvent::Closed {
                id,
                reason: CloseReason::EndOfInput,
                timestamp_ns: 3,
            },
        ] {
            streamed.accept(Input::Stream(event)).unwrap();
        }
        streamed.finish().unwrap();

        let rules: Vec<&str> = streamed
            .sink
            .events
            .iter()
            .filter_map(|event| match &event.body {
                EventBody::Alert(alert) => Some(alert.alert.rule),
                _ => None,
            })
            .collect();
        assert_eq!(rules, ["upgrade-101-missing-connection-option"]);
        assert_eq!(streamed.sink.events, reassembled.sink.events);
        assert_eq!(streamed.stats().exchanges, 1);
        assert_eq!(streamed.stats().segments, 0, "no segment went through");
    }

    #[test]
    fn escapes_binary_in_the_log() {
        assert_eq!(printable_prefix(b"GET /\r\n\x00xyz", 8), "GET /\\r\\n\\x00");
    }
}
