use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use auditor::{
    capture::{interfaces, Capture, CaptureError, CaptureOptions},
    config::{Config, WatchedPort},
    pipeline::Pipeline,
};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "auditor",
    version,
    about = "Watches HTTP/1.1 protocol upgrades and reports the ones that break the rules proxies rely on"
)]
struct Cli {
    /// Log verbosity on stderr; `debug` also turns on the kernel program's own log.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture live traffic with the eBPF program until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to watch (repeatable); replaces the configuration's list.
    #[arg(long = "interface", value_name = "IF")]
    interfaces: Vec<String>,
    /// Port to watch, optionally with its proxy role (repeatable); replaces the configuration's list.
    #[arg(long = "port", value_name = "PORT[:ROLE]")]
    ports: Vec<WatchedPort>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Exit codes, as documented in the README.
enum Failure {
    /// Bad command line, configuration or interface name: exit 2.
    Usage(anyhow::Error),
    /// The capture could not start or broke down: exit 3.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::Runtime(error.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    let result = match cli.command {
        Command::Run(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Failure::from)
            .and_then(|runtime| runtime.block_on(run(args, cli.log_level))),
        Command::CheckConfig { file } => check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(error)) => {
            eprintln!("auditor: {error:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("auditor: {error:#}");
            ExitCode::from(3)
        }
    }
}

fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    // aya's own loader chatter stays at info; the kernel program's records
    // (forwarded by aya-log) follow the chosen level.
    let filter = format!("{level},aya=info,aya_obj=info");
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
}

fn check_config(file: &std::path::Path) -> Result<(), Failure> {
    let config = Config::load(file).map_err(|e| Failure::Usage(e.into()))?;
    println!(
        "{}: valid ({} ports, {})",
        file.display(),
        config.ports.len(),
        if config.interfaces.is_empty() {
            "every interface that is up".to_owned()
        } else {
            format!("interfaces {}", config.interfaces.join(", "))
        }
    );
    Ok(())
}

async fn run(args: RunArgs, log_level: LogLevel) -> Result<(), Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Failure::Usage(e.into()))?,
        None => Config::embedded_default(),
    };
    if !args.interfaces.is_empty() {
        config.interfaces = args.interfaces;
    }
    if !args.ports.is_empty() {
        config.ports = args.ports;
    }
    let available = interfaces::list().context("cannot list network interfaces")?;
    let selected =
        interfaces::select(&available, &config.interfaces).map_err(|e| Failure::Usage(e.into()))?;

    let mut capture = Capture::load(CaptureOptions {
        kernel_debug_log: matches!(log_level, LogLevel::Debug | LogLevel::Trace),
    })?;
    for port in &config.ports {
        capture.watch_port(port.port)?;
    }
    for interface in &selected {
        capture.attach(interface)?;
    }
    let mut reader = capture
        .take_segment_reader()?
        .expect("a freshly loaded capture has its reader");
    tracing::info!(
        interfaces = ?selected.iter().map(|i| &i.name).collect::<Vec<_>>(),
        ports = ?config.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        program_ids = ?capture.program_ids()?,
        "capture started"
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut stats_tick = tokio::time::interval(Duration::from_secs(60));
    let mut pipeline = Pipeline::default();
    let mut batch = Vec::new();
    let stop_signal = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            read = reader.read(&mut batch) => {
                read.map_err(CaptureError::from)?;
                batch.drain(..).for_each(|record| pipeline.accept(record));
            }
            _ = stats_tick.tick() => log_counters(&capture, &pipeline, tracing::Level::DEBUG)?,
        }
    };
    reader.drain(&mut batch);
    batch.drain(..).for_each(|record| pipeline.accept(record));
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

fn log_counters(
    capture: &Capture,
    pipeline: &Pipeline,
    level: tracing::Level,
) -> Result<(), Failure> {
    let kernel: Vec<String> = capture
        .counters()?
        .into_iter()
        .map(|(counter, value)| format!("{}={value}", counter.name()))
        .collect();
    let stats = pipeline.stats();
    if level == tracing::Level::INFO {
        tracing::info!(kernel = %kernel.join(" "), segments = stats.segments, undecodable = stats.undecodable_records, "counters");
    } else {
        tracing::debug!(kernel = %kernel.join(" "), segments = stats.segments, undecodable = stats.undecodable_records, "counters");
    }
    Ok(())
}
