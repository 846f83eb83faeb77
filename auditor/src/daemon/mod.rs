//! `auditor run`: live capture through the kernel program into the
//! pipeline, until SIGINT or SIGTERM. SIGHUP reloads the configuration.

mod reload;

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{Instant, Interval, MissedTickBehavior},
};

pub use self::reload::ConfigSource;
use crate::{
    capabilities::{self, PrivilegeError},
    capture::{
        flow_key, interfaces::Interface, source_loss, Capture, CaptureError, CaptureOptions,
        SegmentReader,
    },
    config::{Config, ReportingSettings},
    metrics::{self, MetricsListener},
    output::Sink,
    pipeline::{GateCommand, Output, Pipeline},
    source::Source,
};

/// How often idle connections are expired.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The running daemon: what the loop's branches act on.
struct Running<S: Sink> {
    /// Where SIGHUP reads the configuration again.
    source: ConfigSource,
    /// The configuration in force, restart-only settings as at start.
    config: Config,
    capture: Capture,
    pipeline: Pipeline<S>,
    loss_timer: Interval,
}

/// Loads and attaches the program on `interfaces` with `config` (read from
/// `source`), drops every capability, then feeds the pipeline, handing
/// `output` to `sink`, until a stop signal. Scrapes of `metrics` are
/// answered meanwhile.
pub async fn run<S: Sink>(
    source: ConfigSource,
    config: Config,
    interfaces: &[Interface],
    options: CaptureOptions,
    output: Output,
    sink: S,
    metrics: Option<MetricsListener>,
) -> Result<(), DaemonError> {
    // Before anything is logged: a signal that comes earlier than its
    // handler ends the process (SIGHUP too, by default).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut capture = Capture::load(options)?;
    // Every hook first, then the ports: each port is watched on all of
    // them at once, so that no connection is seen in one direction only
    // while the hooks are attached one after the other.
    for interface in interfaces {
        capture.attach(interface)?;
    }
    for port in &config.ports {
        capture.watch_port(port.port)?;
    }
    let mut reader = capture
        .take_segment_reader()?
        .expect("a freshly loaded capture has its reader");
    let bounding_set_cleared = capabilities::drop_all()?;
    tracing::info!(
        interfaces = ?interfaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
        ports = ?config.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        program_ids = ?capture.program_ids()?,
        ring_buffer_bytes = capture.ring_buffer_bytes(),
        max_payload_per_segment = options.max_payload_per_segment,
        "capture started"
    );
    tracing::info!(
        bounding_set_cleared,
        "dropped every capability: the loaded program needs none"
    );

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let stats_every = Duration::from_secs(config.reporting.stats_interval_secs);
    // A sleep, not an interval: `sleep` copes with any duration.
    let stats_timer = tokio::time::sleep(stats_every);
    tokio::pin!(stats_timer);
    let mut running = Running {
        pipeline: Pipeline::configured(&config, output, interface_names(&capture), sink),
        loss_timer: loss_timer(&config.reporting),
        source,
        config,
        capture,
    };
    let stop_signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = sighup.recv() => {
                // What was captured before the signal is judged by the
                // configuration in force then.
                running.accept(&mut reader)?;
                running.reload()?;
                running.reopen_outputs();
            }
            waited = reader.wait() => {
                waited?;
                running.accept(&mut reader)?;
            }
            _ = housekeeping.tick() => running.housekeeping()?,
            _ = running.loss_timer.tick() => running.report_loss(tracing::Level::DEBUG)?,
            _ = &mut stats_timer, if !stats_every.is_zero() => {
                running.report_stats()?;
                stats_timer.set(tokio::time::sleep(stats_every));
            }
            connection = metrics::accept(metrics.as_ref()) => {
                let kernel = running.capture.counters()?;
                let snapshot = running.pipeline.snapshot(source_loss(&kernel));
                connection.respond(metrics::render(&kernel, &snapshot));
            }
        }
    };
    running.accept(&mut reader)?;
    running.pipeline.finish()?;
    running.report_loss(tracing::Level::INFO)?;
    let interfaces = running.capture.attachments().len();
    drop(running);
    tracing::info!(
        signal = stop_signal,
        interfaces,
        "capture stopped; detached from every interface"
    );
    Ok(())
}

impl<S: Sink> Running<S> {
    /// Every record waiting in the ring buffer, then the gates they call for.
    fn accept(&mut self, reader: &mut SegmentReader) -> Result<(), DaemonError> {
        reader.feed(|input| self.pipeline.accept(input))?;
        self.pipeline.flush()?;
        self.apply_gates()
    }

    /// After logrotate moved the files. Each file output's writer thread
    /// opens its file again and logs how that went, so that an open that
    /// hangs does not hold up capture.
    fn reopen_outputs(&mut self) {
        if let Err(error) = self.pipeline.reopen_outputs() {
            tracing::warn!(%error, "SIGHUP: an output keeps writing to its old file");
        }
    }

    fn housekeeping(&mut self) -> Result<(), DaemonError> {
        self.pipeline.tick(unix_now_ns())?;
        self.apply_gates()
    }

    /// A `loss` event if anything was lost since the last one; the counters
    /// in the log at `level`.
    fn report_loss(&mut self, level: tracing::Level) -> Result<(), DaemonError> {
        self.pipeline
            .report_loss(unix_now_ns(), source_loss(&self.capture.counters()?))?;
        log_counters(&self.capture, &self.pipeline, level)
    }

    fn report_stats(&mut self) -> Result<(), DaemonError> {
        let source = source_loss(&self.capture.counters()?);
        Ok(self.pipeline.report_stats(unix_now_ns(), source)?)
    }

    fn apply_gates(&mut self) -> Result<(), DaemonError> {
        for command in self.pipeline.take_gate_commands() {
            match command {
                GateCommand::Close {
                    src,
                    dst,
                    resume_seq,
                } => self.capture.close_payload(flow_key(src, dst), resume_seq)?,
                GateCommand::Open { src, dst } => self.capture.open_payload(flow_key(src, dst))?,
            }
        }
        Ok(())
    }
}

/// Names of the interfaces the program is attached to, by index.
fn interface_names(capture: &Capture) -> HashMap<u32, String> {
    capture
        .attachments()
        .map(|a| (a.index, a.interface.clone()))
        .collect()
}

/// Ticks every `loss_interval_secs`, the first time one interval from now.
fn loss_timer(settings: &ReportingSettings) -> Interval {
    // Zero is refused by validation; a zero period would make tokio panic.
    let period = Duration::from_secs(settings.loss_interval_secs.max(1));
    let mut timer = tokio::time::interval_at(Instant::now() + period, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
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
) -> Result<(), DaemonError> {
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
