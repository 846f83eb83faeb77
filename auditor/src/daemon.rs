//! `auditor run`: live capture through the kernel program into the
//! pipeline, until SIGINT or SIGTERM.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use auditor_common::Counter;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::{flow_key, interfaces::Interface, Capture, CaptureError, CaptureOptions},
    config::Config,
    http::HttpLimits,
    metrics::{self, MetricsListener},
    output::Sink,
    pipeline::{GateCommand, Pipeline},
    reporter::{KernelLoss, ReportSettings, Reporter},
};

/// How often idle connections are expired; every `COUNTERS_EVERY` ticks a
/// `loss` event is written if anything was lost, and counters are logged at
/// debug level.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
const COUNTERS_EVERY: u32 = 60;

/// What `auditor run` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `alert`, `handshake`, `loss` and `stats` events.
    Events,
    /// Every HTTP exchange followed, for debugging the capture.
    Exchanges,
}

/// Loads and attaches the program on `interfaces`, then feeds the pipeline,
/// handing `output` to `sink`, until a stop signal. Scrapes of `metrics`
/// are answered meanwhile.
pub async fn run<S: Sink>(
    config: &Config,
    interfaces: &[Interface],
    options: CaptureOptions,
    output: Output,
    sink: S,
    metrics: Option<MetricsListener>,
) -> Result<(), CaptureError> {
    let mut capture = Capture::load(options)?;
    for port in &config.ports {
        capture.watch_port(port.port)?;
    }
    for interface in interfaces {
        capture.attach(interface)?;
    }
    let mut reader = capture
        .take_segment_reader()?
        .expect("a freshly loaded capture has its reader");
    tracing::info!(
        interfaces = ?interfaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
        ports = ?config.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        program_ids = ?capture.program_ids()?,
        "capture started"
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut ticks = 0u32;
    let stats_every = Duration::from_secs(config.reporting.stats_interval_secs);
    // A sleep, not an interval: `sleep` copes with any duration.
    let stats_timer = tokio::time::sleep(stats_every);
    tokio::pin!(stats_timer);
    let interface_names = interfaces
        .iter()
        .map(|i| (i.index, i.name.clone()))
        .collect();
    let reporter = (output == Output::Events)
        .then(|| Reporter::new(ReportSettings::new(config, interface_names)));
    let mut pipeline = Pipeline::new(
        config.reassembly.limits(),
        HttpLimits::default(),
        reporter,
        sink,
    );
    let mut batch = Vec::new();
    let stop_signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            read = reader.read(&mut batch) => {
                read?;
                for record in batch.drain(..) {
                    pipeline.accept(record)?;
                }
                apply_gates(&mut capture, &mut pipeline)?;
            }
            _ = housekeeping.tick() => {
                pipeline.tick(unix_now_ns())?;
                apply_gates(&mut capture, &mut pipeline)?;
                ticks += 1;
                if ticks.is_multiple_of(COUNTERS_EVERY) {
                    pipeline.report_loss(unix_now_ns(), kernel_loss(&capture.counters()?))?;
                    log_counters(&capture, &pipeline, tracing::Level::DEBUG)?;
                }
            }
            _ = &mut stats_timer, if !stats_every.is_zero() => {
                pipeline.report_stats(unix_now_ns(), kernel_loss(&capture.counters()?))?;
                stats_timer.set(tokio::time::sleep(stats_every));
            }
            connection = metrics::accept(metrics.as_ref()) => {
                let kernel = capture.counters()?;
                let snapshot = pipeline.snapshot(kernel_loss(&kernel));
                connection.respond(metrics::render(&kernel, &snapshot));
            }
        }
    };
    reader.drain(&mut batch);
    for record in batch.drain(..) {
        pipeline.accept(record)?;
    }
    pipeline.finish()?;
    pipeline.report_loss(unix_now_ns(), kernel_loss(&capture.counters()?))?;
    log_counters(&capture, &pipeline, tracing::Level::INFO)?;
    let interfaces = capture.attachments().len();
    drop(capture);
    tracing::info!(
        signal = stop_signal,
        interfaces,
        "capture stopped; detached from every interface"
    );
    Ok(())
}

fn apply_gates<S: Sink>(
    capture: &mut Capture,
    pipeline: &mut Pipeline<S>,
) -> Result<(), CaptureError> {
    for command in pipeline.take_gate_commands() {
        match command {
            GateCommand::Close {
                src,
                dst,
                resume_seq,
            } => capture.close_payload(flow_key(src, dst), resume_seq)?,
            GateCommand::Open { src, dst } => capture.open_payload(flow_key(src, dst))?,
        }
    }
    Ok(())
}

fn kernel_loss(counters: &BTreeMap<Counter, u64>) -> KernelLoss {
    KernelLoss {
        ring_buffer_full: counters[&Counter::RingBufferFull],
        records_truncated: counters[&Counter::RecordsTruncated],
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn log_counters<S: Sink>(
    capture: &Capture,
    pipeline: &Pipeline<S>,
    level: tracing::Level,
) -> Result<(), CaptureError> {
    let kernel: Vec<String> = capture
        .counters()?
        .into_iter()
        .map(|(counter, value)| format!("{}={value}", counter.name()))
        .collect();
    let stats = pipeline.stats();
    let reassembly = pipeline.reassembly_stats();
    let kernel = kernel.join(" ");
    if level == tracing::Level::INFO {
        tracing::info!(%kernel, segments = stats.segments, exchanges = stats.exchanges, undecodable = stats.undecodable_records, ?reassembly, "counters");
    } else {
        tracing::debug!(%kernel, segments = stats.segments, exchanges = stats.exchanges, undecodable = stats.undecodable_records, ?reassembly, "counters");
    }
    Ok(())
}
