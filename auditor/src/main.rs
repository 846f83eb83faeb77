use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use auditor::{
    capture::{interfaces, CaptureOptions},
    config::{Config, EventFormat, Overrides, WatchedPort},
    daemon,
    metrics::MetricsListener,
    output::{self, Destination, LineWriter, QueuedOutputs},
    pipeline::Output,
    replay,
    rules::{self, Severity},
};
use clap::{Parser, Subcommand, ValueEnum};

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
    /// Run the same pipeline over pcap or pcapng files; no privileges needed.
    Replay(ReplayArgs),
    /// List the rule catalogue.
    Rules {
        #[arg(long, value_enum, default_value_t = RulesFormat::Table)]
        format: RulesFormat,
    },
    /// Explain one rule: what it checks, the spec text, the fix, which proxies break.
    Explain {
        #[arg(value_name = "RULE_ID")]
        rule: String,
    },
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Pretty,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RulesFormat {
    Table,
    Json,
    Markdown,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Configuration file (TOML) for ports and limits; without it and without
    /// --port, every TCP connection is followed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only follow connections to or from these ports (repeatable); replaces the configuration's list.
    #[arg(long = "port", value_name = "PORT[:ROLE]")]
    ports: Vec<WatchedPort>,
    /// Exit with 1 when an alert at or above this severity was raised.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
    /// Print every HTTP exchange followed instead of events (for debugging the capture).
    #[arg(long)]
    exchanges: bool,
    /// Events as JSON lines, or for a person.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Capture files, read in the order given.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
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
    /// Where events go (repeatable): stdout, file:PATH, syslog or syslog:SOCKET;
    /// replaces the configuration's list.
    #[arg(long = "output", value_name = "SPEC")]
    outputs: Vec<Destination>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9700.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Print every HTTP exchange followed instead of events (for debugging the capture).
    #[arg(long)]
    exchanges: bool,
    /// Events on stdout as JSON lines, or for a person; other outputs always get JSON.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            interfaces: self.interfaces.clone(),
            ports: self.ports.clone(),
            destinations: self.outputs.clone(),
            format: self.format.map(EventFormat::from),
            metrics: self.metrics,
        }
    }
}

impl From<Format> for EventFormat {
    fn from(format: Format) -> EventFormat {
        match format {
            Format::Json => EventFormat::Json,
            Format::Pretty => EventFormat::Pretty,
        }
    }
}

/// `format` for stdout: colours only on a terminal.
fn stdout_format(format: EventFormat) -> output::Format {
    match format {
        EventFormat::Json => output::Format::Json,
        EventFormat::Pretty => output::Format::Pretty {
            colour: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        },
    }
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
    /// `--fail-on` was reached: exit 1.
    Threshold(Severity),
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
        Command::Replay(args) => replay(args),
        Command::Rules { format } => {
            let rules = rules::catalogue();
            print!(
                "{}",
                match format {
                    RulesFormat::Table => rules::render::table(rules),
                    RulesFormat::Json => rules::render::json(rules) + "\n",
                    RulesFormat::Markdown => rules::render::markdown(rules),
                }
            );
            Ok(())
        }
        Command::Explain { rule } => match rules::find(&rule) {
            Some(rule) => {
                print!("{}", rules::render::explain(rule));
                Ok(())
            }
            None => Err(Failure::Usage(anyhow::anyhow!(
                "no rule `{rule}`; `auditor rules` lists them"
            ))),
        },
        Command::CheckConfig { file } => check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Threshold(worst)) => {
            eprintln!("auditor: an alert of severity {worst} was raised");
            ExitCode::from(1)
        }
        Err(Failure::Usage(error)) => {
            // An invalid configuration is one line per problem.
            for line in format!("{error:#}").lines() {
                eprintln!("auditor: {line}");
            }
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
    let ports: Vec<String> = config
        .ports
        .iter()
        .map(|p| match p.role {
            Some(role) => format!("{}:{role}", p.port),
            None => p.port.to_string(),
        })
        .collect();
    let interfaces = match config.interfaces.is_empty() {
        true => "every interface that is up".to_owned(),
        false => config.interfaces.join(", "),
    };
    let outputs: Vec<String> = config
        .output
        .destinations
        .iter()
        .map(ToString::to_string)
        .collect();
    let metrics = config
        .metrics
        .listen
        .map_or("off".to_owned(), |listen| listen.to_string());
    println!("{}: valid", file.display());
    println!("  ports: {} on {interfaces}", ports.join(", "));
    println!("  outputs: {}", outputs.join(", "));
    println!(
        "  rules: {} disabled, {} with a changed severity",
        config.rules.disabled.len(),
        config.rules.severity.len()
    );
    let today = time::OffsetDateTime::now_utc().date();
    let expired = config
        .silence
        .iter()
        .filter(|s| s.has_expired(today))
        .count();
    println!(
        "  silences: {}, {expired} of them expired",
        config.silence.len()
    );
    println!("  metrics: {metrics}");
    Ok(())
}

async fn run(args: RunArgs, log_level: LogLevel) -> Result<(), Failure> {
    let source = daemon::ConfigSource {
        file: args.config.clone(),
        overrides: args.overrides(),
    };
    let config = source.load().map_err(|e| Failure::Usage(e.into()))?;
    let available = interfaces::list().context("cannot list network interfaces")?;
    let selected =
        interfaces::select(&available, &config.interfaces).map_err(|e| Failure::Usage(e.into()))?;
    let metrics = match config.metrics.listen {
        Some(address) => Some(
            MetricsListener::bind(address)
                .await
                .map_err(|e| Failure::Usage(e.into()))?,
        ),
        None => None,
    };
    let options = CaptureOptions {
        kernel_debug_log: matches!(log_level, LogLevel::Debug | LogLevel::Trace),
        max_payload_per_segment: config.capture.max_payload_per_segment,
        ring_buffer_bytes: config.capture.ring_buffer_bytes,
    };
    let output = output_of(args.exchanges);
    let sink = QueuedOutputs::open(
        &config.output.destinations,
        stdout_format(config.output.format),
        config.output.queue_capacity,
    )
    .map_err(|e| Failure::Usage(e.into()))?;
    daemon::run(source, config, &selected, options, output, sink, metrics).await?;
    Ok(())
}

/// Runs every file through one pipeline, in the order given. A file that
/// cannot be opened is a usage error; one that breaks off midway is reported
/// after what it held was processed.
fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let mut config = match &args.config {
        Some(path) => Some(Config::load(path).map_err(|e| Failure::Usage(e.into()))?),
        None => None,
    };
    if let Some(config) = config.as_mut().filter(|_| !args.ports.is_empty()) {
        config.ports = args.ports.clone();
    }
    let ports: Vec<u16> = config
        .as_ref()
        .map_or(&args.ports, |config| &config.ports)
        .iter()
        .map(|p| p.port)
        .collect();
    let config = config.unwrap_or_else(|| Config {
        ports: args.ports.clone(),
        ..Config::embedded_default()
    });
    let output = output_of(args.exchanges);
    let files = args
        .files
        .iter()
        .map(|path| replay::open(path).map_err(|e| Failure::Usage(e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    // Flushed at the end and once a second of capture time (see
    // `Pipeline::flush`): a large buffer means few writes.
    let stdout = LineWriter::new(
        std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()),
        stdout_format(args.format.into()),
    );
    let replayed = replay::run(&config, &ports, files, &args.files, output, stdout)?;
    if !replayed.silenced.is_empty() {
        let by_rule: Vec<String> = replayed
            .silenced
            .iter()
            .map(|(rule, count)| format!("{rule} {count}"))
            .collect();
        eprintln!(
            "auditor: silenced by the configuration: {}",
            by_rule.join(", ")
        );
    }
    if !replayed.broken.is_empty() {
        return Err(Failure::Runtime(anyhow::anyhow!(replayed
            .broken
            .join("; "))));
    }
    match (args.fail_on, replayed.worst) {
        (Some(threshold), Some(worst)) if worst >= threshold => Err(Failure::Threshold(worst)),
        _ => Ok(()),
    }
}

/// What `--exchanges` (or its absence) asks for.
fn output_of(exchanges: bool) -> Output {
    match exchanges {
        true => Output::Exchanges,
        false => Output::Events,
    }
}
