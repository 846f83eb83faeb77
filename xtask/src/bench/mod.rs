//! `cargo xtask bench`: every benchmark, or the one `--only` names, then a
//! table, the raw results in `target/bench/results.json` and BENCHMARKS.md.
//!
//! The machines this runs on are shared and noisy, so a benchmark reports
//! each figure beside a baseline it measured in the same run, and the target
//! is usually on their ratio. A benchmark is a file beside this one and an
//! entry in [`BENCHMARKS`]: a function that measures and returns
//! [`BenchResult`]s, running its commands through [`Context::run`] so that
//! BENCHMARKS.md shows them.

mod empty_program;
mod kernel;
mod live;
mod memory;
mod micro;
mod overhead;
mod replay;
mod report;
mod restart;
mod soak;
mod storm;
mod tcpdump;

pub use memory::hold_flows;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// What `cargo xtask bench` was asked.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only this benchmark; the other results of the previous run are kept.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(BENCHMARKS.iter().map(|b| b.name)))]
    only: Option<String>,
    /// A short run for trying things out: smaller inputs, fewer and shorter rounds.
    #[arg(long)]
    quick: bool,
    /// How long the memory benchmark holds its flows (default 60, with --quick 10).
    #[arg(long, value_name = "SECONDS")]
    memory_secs: Option<u64>,
}

pub struct Benchmark {
    pub name: &'static str,
    /// What it measures, for BENCHMARKS.md.
    pub about: &'static str,
    pub needs_root: bool,
    pub run: fn(&mut Context) -> Result<Vec<BenchResult>>,
}

/// In the order they run.
const BENCHMARKS: &[Benchmark] = &[
    micro::BENCHMARK,
    replay::BENCHMARK,
    memory::BENCHMARK,
    kernel::BENCHMARK,
    overhead::BENCHMARK,
    storm::BENCHMARK,
    restart::BENCHMARK,
    soak::BENCHMARK,
];

/// One measured figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub name: String,
    pub figure: f64,
    pub unit: String,
    /// The same figure for the baseline, measured in the same run.
    pub baseline: Option<f64>,
    /// `figure / baseline`.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// Whether the target was met; None without a target.
    pub met: Option<bool>,
    pub notes: String,
}

/// A bound on a result's ratio, on its figure itself, or on how far its
/// figure lies above its baseline.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    RatioAtLeast(f64),
    RatioAtMost(f64),
    FigureAtLeast(f64),
    FigureAtMost(f64),
    /// `figure - baseline` at most this, in the figure's unit: for a
    /// baseline that is a floor every figure pays (a cost the measurement
    /// itself adds), when the verdict is on what lies above it.
    ExcessAtMost(f64),
}

impl BenchResult {
    pub fn new(name: &str, figure: f64, unit: &str) -> BenchResult {
        BenchResult {
            name: name.to_owned(),
            figure,
            unit: unit.to_owned(),
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            notes: String::new(),
        }
    }

    pub fn against(mut self, baseline: f64) -> BenchResult {
        self.baseline = Some(baseline);
        self.ratio = Some(self.figure / baseline);
        self.judge()
    }

    pub fn target(mut self, target: Target) -> BenchResult {
        self.target = Some(target);
        self.judge()
    }

    pub fn note(mut self, notes: impl Into<String>) -> BenchResult {
        self.notes = notes.into();
        self
    }

    fn judge(mut self) -> BenchResult {
        self.met = self.target.map(|target| match target {
            Target::RatioAtLeast(bound) => self.ratio.is_some_and(|r| r >= bound),
            Target::RatioAtMost(bound) => self.ratio.is_some_and(|r| r <= bound),
            Target::FigureAtLeast(bound) => self.figure >= bound,
            Target::FigureAtMost(bound) => self.figure <= bound,
            Target::ExcessAtMost(bound) => self.baseline.is_some_and(|b| self.figure - b <= bound),
        });
        self
    }
}

/// What a benchmark gets to work with, and what it records for the report.
pub struct Context {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// `target/bench`: inputs, outputs and results.
    pub out_dir: PathBuf,
    pub quick: bool,
    pub memory_duration: Duration,
    auditor: Option<PathBuf>,
    /// The commands run so far by the current benchmark, as a shell would read them.
    commands: Vec<String>,
    /// Tool → version line, for BENCHMARKS.md.
    versions: BTreeMap<String, String>,
}

impl Context {
    /// The release daemon, built on first use.
    pub fn auditor(&mut self) -> Result<PathBuf> {
        if self.auditor.is_none() {
            let auditor = crate::build(&self.root)?;
            let version = report::first_line(Command::new(&auditor).arg("--version"));
            self.version("auditor", &version);
            self.auditor = Some(auditor);
        }
        Ok(self.auditor.clone().expect("built above"))
    }

    /// Runs `command` to completion, recorded for the report; its output,
    /// and how long it took. Fails when it fails.
    pub fn run(&mut self, command: &mut Command) -> Result<(Output, Duration)> {
        let shown = self.shown(command);
        self.execute(command, shown)
    }

    /// [`Self::run`] with stdout written to `path`.
    pub fn run_into(&mut self, command: &mut Command, path: &Path) -> Result<Duration> {
        let shown = format!("{} > {}", self.shown(command), self.shown_path(path));
        command.stdout(std::fs::File::create(path)?);
        Ok(self.execute(command, shown)?.1)
    }

    fn execute(&mut self, command: &mut Command, shown: String) -> Result<(Output, Duration)> {
        self.note(&shown);
        let started = Instant::now();
        let output = command
            .output()
            .with_context(|| format!("cannot start {shown}"))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "{shown} failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok((output, elapsed))
    }

    /// Notes a command started some other way, e.g. one that keeps running.
    pub fn record(&mut self, command: &Command) {
        let shown = self.shown(command);
        self.note(&shown);
    }

    fn note(&mut self, shown: &str) {
        if !self.commands.iter().any(|c| c == shown) {
            self.commands.push(shown.to_owned());
        }
    }

    fn shown_path(&self, path: &Path) -> String {
        self.shown(&Command::new(path))
    }

    /// Adds a tool's version to BENCHMARKS.md.
    pub fn version(&mut self, tool: &str, version: &str) {
        self.versions
            .insert(tool.to_owned(), version.trim().to_owned());
    }

    /// `command` as a shell line: paths under the workspace relative to it,
    /// those under the target directory under `target/`.
    fn shown(&self, command: &Command) -> String {
        let root = format!("{}/", self.root.display());
        let target = format!("{}/", self.target_dir.display());
        let word = |word: &std::ffi::OsStr| {
            let word = word.to_string_lossy();
            shell_quote(&word.replace(&target, "target/").replace(&root, ""))
        };
        // The cargo that runs xtask is `cargo` to whoever reruns the command.
        let program = match std::env::var_os("CARGO") {
            Some(cargo) if cargo == command.get_program() => "cargo".to_owned(),
            _ => word(command.get_program()),
        };
        command
            .get_envs()
            .filter_map(|(name, value)| {
                Some(format!("{}={}", name.to_string_lossy(), word(value?)))
            })
            .chain(std::iter::once(program))
            .chain(command.get_args().map(word))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One benchmark's run, as results.json keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchRun {
    pub benchmark: String,
    pub about: String,
    pub started: String,
    /// /proc/loadavg's 1-minute figure before and after.
    pub load_before: f64,
    pub load_after: f64,
    pub quick: bool,
    pub commands: Vec<String>,
    pub results: Vec<BenchResult>,
}

/// results.json: the machine, the versions and the latest run of each benchmark.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub machine: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
    pub runs: Vec<BenchRun>,
}

pub fn bench(root: &Path, args: BenchArgs) -> Result<()> {
    let selected: Vec<&Benchmark> = BENCHMARKS
        .iter()
        .filter(|b| args.only.as_deref().is_none_or(|only| only == b.name))
        .collect();
    if selected.iter().any(|b| b.needs_root) && !crate::setup::is_root() {
        let names: Vec<&str> = selected
            .iter()
            .filter(|b| b.needs_root)
            .map(|b| b.name)
            .collect();
        bail!("{} need root (network namespaces, the eBPF program): run as root, or choose another with --only", names.join(", "));
    }
    let target_dir = crate::target_dir(root);
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let results_path = out_dir.join("results.json");
    let mut results: Results = match std::fs::read(&results_path) {
        Ok(bytes) if args.only.is_some() => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => Results::default(),
    };
    let mut context = Context {
        root: root.to_owned(),
        target_dir,
        out_dir: out_dir.clone(),
        quick: args.quick,
        memory_duration: Duration::from_secs(args.memory_secs.unwrap_or(if args.quick {
            10
        } else {
            60
        })),
        auditor: None,
        commands: Vec::new(),
        versions: BTreeMap::new(),
    };
    let mut failed = Vec::new();
    for benchmark in selected {
        eprintln!("xtask: bench {}: {}", benchmark.name, benchmark.about);
        let started = report::utc_now();
        let load_before = report::load_average();
        context.commands.clear();
        match (benchmark.run)(&mut context) {
            Ok(measured) => {
                results.runs.retain(|run| run.benchmark != benchmark.name);
                results.runs.push(BenchRun {
                    benchmark: benchmark.name.to_owned(),
                    about: benchmark.about.to_owned(),
                    started,
                    load_before,
                    load_after: report::load_average(),
                    quick: args.quick,
                    commands: std::mem::take(&mut context.commands),
                    results: measured,
                });
            }
            Err(error) => {
                eprintln!("xtask: bench {} failed: {error:#}", benchmark.name);
                failed.push(benchmark.name);
            }
        }
    }
    results.runs.sort_by_key(|run| {
        BENCHMARKS
            .iter()
            .position(|b| b.name == run.benchmark)
            .unwrap_or(usize::MAX)
    });
    results.machine = report::machine()?;
    results.versions.extend(report::versions());
    results.versions.extend(context.versions);
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    print!("{}", report::table(&results));
    std::fs::write(root.join("BENCHMARKS.md"), report::markdown(&results))?;
    eprintln!(
        "xtask: raw results in {}, summary in BENCHMARKS.md",
        results_path.display()
    );
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

/// The median of `values`, which is not empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}
