//! `auditor run`: live capture through the kernel program into the
//! pipeline, until SIGINT or SIGTERM.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditor_common::Counter;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    capture::{flow_key, interfaces::Interface, Capture, CaptureError, CaptureOptions},
    config::Config,
    http::HttpLimits,
    output::Sink,
    pipeline::{GateCommand, Pipeline},
    reporter::{KernelLoss, ReportSettings, Reporter},
};

/// How often idle connections are expired; every `[reporting]
/// loss_interval_secs` ticks a `loss` event is written if anything was lost,
/// and counters are logged at debug level.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// What `auditor run` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `alert`, `handshake`, `loss` and `stats` events.
    Events,
    /// Every HTTP exchange followed, for debugging the capture.
    Exchanges,
}

/// Loads and attaches the program on `interfaces`, then feeds the pipeline,
/// handing `output` to `sink`, until a stop signal.
pub async fn run<S: Sink>(
    config: &Config,
    interfaces: &[Interface],
    options: CaptureOptions,
    output: Output,
    sink: S,
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
    let mut sighup = signal(SignalKind::hangup())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut ticks = 0u32;
    let loss_every =
        u32::try_from(config.reporting.loss_interval_secs).map_or(u32::MAX, |secs| secs.max(1));
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
            _ = sighup.recv() => match pipeline.reopen_outputs() {
                Ok(()) => tracing::info!("SIGHUP: outputs reopened"),
                Err(error) => tracing::warn!(%error, "SIGHUP: the outputs named keep writing to their old files"),
            },
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
                if ticks.is_multiple_of(loss_every) {
                    pipeline.report_loss(unix_now_ns(), kernel_loss(&capture)?)?;
                    log_counters(&capture, &pipeline, tracing::Level::DEBUG)?;
                }
            }
        }
    };
    reader.drain(&mut batch);
    for record in batch.drain(..) {
        pipeline.accept(record)?;
    }
    pipeline.finish()?;
    pipeline.report_loss(unix_now_ns(), kernel_loss(&capture)?)?;
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

fn kernel_loss(capture: &Capture) -> Result<KernelLoss, CaptureError> {
    let counters = capture.counters()?;
    Ok(KernelLoss {
        ring_buffer_full: counters[&Counter::RingBufferFull],
        records_truncated: counters[&Counter::RecordsTruncated],
        undecodable_records: 0,
    })
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
