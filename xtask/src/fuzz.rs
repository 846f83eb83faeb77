//! `cargo xtask fuzz [--seconds N] [TARGET...]`: the coverage-guided fuzz
//! targets of `fuzz/` (cargo-fuzz, libFuzzer, on the nightly toolchain),
//! each run for N seconds on its corpus under `fuzz/corpus/`, seeded first
//! from the committed captures and configurations. Fails when a target
//! crashes; libFuzzer leaves the input in `fuzz/artifacts/TARGET/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::builder::PossibleValuesParser;

use crate::{run, setup};

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Every target of fuzz/Cargo.toml, in the order they run.
pub const TARGETS: [&str; 5] = ["capture", "records", "segments", "rules", "config"];

/// How long `cargo xtask test` runs each target.
pub const TEST_SECONDS: u64 = 12;

/// The targets that read HTTP, which get fuzz/http.dict.
const HTTP_TARGETS: [&str; 3] = ["records", "segments", "rules"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// How long each target runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The targets to run, all of them when none is named.
    #[arg(value_parser = PossibleValuesParser::new(TARGETS))]
    targets: Vec<String>,
}

pub fn fuzz(root: &Path, args: FuzzArgs) -> Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    run_targets(root, &targets, args.seconds)
}

/// What one target's run came to, from libFuzzer's output.
struct Outcome {
    target: String,
    /// How long `cargo fuzz run` took: the time asked for, or until the
    /// crash.
    seconds: u64,
    executions: Option<u64>,
    /// libFuzzer's `cov:` (code edges reached) and `ft:` (features: edges
    /// with hit counts, comparisons…) of its last status line.
    cov: Option<u64>,
    ft: Option<u64>,
    corpus_files: usize,
    /// Inputs libFuzzer saved because they crashed the target (at most
    /// one: it stops at the first).
    crashes: Vec<PathBuf>,
    log: PathBuf,
}

/// Installs cargo-fuzz if needed, builds the targets, seeds their corpora and
/// runs each for `seconds`, then prints a table; fails if any crashed.
pub fn run_targets(root: &Path, targets: &[&str], seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    run(cargo_fuzz(root).arg("build"))?;
    seed(root)?;
    let logs = fuzz_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut outcomes = Vec::new();
    for &target in targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let outcome = run_target(root, target, seconds, &logs)?;
        println!("{}", summary(&outcome));
        outcomes.push(outcome);
    }
    println!("\n| target | seconds | executions | cov | ft | corpus files | crashes |");
    println!("|---|---|---|---|---|---|---|");
    for outcome in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            outcome.target,
            outcome.seconds,
            figure(outcome.executions),
            figure(outcome.cov),
            figure(outcome.ft),
            outcome.corpus_files,
            outcome.crashes.len(),
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| !outcome.crashes.is_empty())
        .map(|outcome| outcome.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo-fuzz").arg("--version").output();
    if matches!(&installed, Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION))
    {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// `cargo fuzz` on the nightly toolchain, for the crate in fuzz/, its
/// artifacts in fuzz/target.
fn cargo_fuzz(root: &Path) -> Command {
    let mut command = setup::nightly("cargo");
    command
        .current_dir(root)
        .arg("fuzz")
        // The targets never load the kernel program: the auditor's build
        // script need not build it (with the fuzzing flags, it could not).
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("CARGO_TARGET_DIR");
    command
}

/// Writes the seeds of every target into fuzz/corpus from the committed
/// captures (auditor/tests/data) and configurations (the embedded default
/// and packaging/*/config.toml), with the seed_corpora program `cargo fuzz
/// build` built beside the targets.
fn seed(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    for entry in fs::read_dir(root.join("auditor/tests/data"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.contains(".pcap") {
            files.push(format!("auditor/tests/data/{name}"));
        }
    }
    files.push("auditor/src/config/default.toml".to_owned());
    for entry in fs::read_dir(root.join("packaging"))? {
        let config = entry?.path().join("config.toml");
        if config.is_file() {
            let relative = config.strip_prefix(root).expect("found under the root");
            files.push(relative.to_string_lossy().into_owned());
        }
    }
    files.sort();
    let seeder = root
        .join("fuzz/target")
        .join(host_triple()?)
        .join("release/seed_corpora");
    run(Command::new(&seeder)
        .current_dir(root)
        .arg("fuzz/corpus")
        .args(&files))
}

fn host_triple() -> Result<String> {
    let out = setup::nightly("rustc")
        .arg("-vV")
        .output()
        .context("cannot run the nightly rustc")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("the nightly's `rustc -vV` names no host")
}

fn run_target(root: &Path, target: &str, seconds: u64, logs: &Path) -> Result<Outcome> {
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let before = artifact_names(&artifacts);
    let log = logs.join(format!("{target}.log"));
    let log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = cargo_fuzz(root);
    command
        .args(["run", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1");
    if HTTP_TARGETS.contains(&target) {
        command.arg(format!("-dict={}", fuzz_dir.join("http.dict").display()));
    }
    let started = Instant::now();
    let status = command
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    let seconds = started.elapsed().as_secs();
    let output = fs::read_to_string(&log)?;
    let crashes: Vec<PathBuf> = artifact_names(&artifacts)
        .into_iter()
        .filter(|name| !before.contains(name))
        .map(|name| artifacts.join(name))
        .collect();
    if !status.success() {
        let tail: Vec<&str> = output.lines().rev().take(60).collect();
        eprintln!(
            "xtask: {target} failed ({status}); the end of {}:",
            log.display()
        );
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        if crashes.is_empty() {
            bail!("fuzz target {target} failed without a crash input ({status})");
        }
    }
    let status_line = output
        .lines()
        .rfind(|line| line.starts_with('#') && line.contains(" cov: "));
    let field = |name: &str| -> Option<u64> {
        let mut words = status_line?.split_whitespace();
        words.find(|word| *word == name)?;
        words.next()?.parse().ok()
    };
    let executions = output
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units: "))
        .and_then(|count| count.trim().parse().ok())
        .or_else(|| status_line?.split_whitespace().next()?[1..].parse().ok());
    Ok(Outcome {
        target: target.to_owned(),
        seconds,
        executions,
        cov: field("cov:"),
        ft: field("ft:"),
        corpus_files: fs::read_dir(&corpus)?.count(),
        crashes,
        log,
    })
}

fn artifact_names(dir: &Path) -> Vec<std::ffi::OsString> {
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default()
}

fn summary(outcome: &Outcome) -> String {
    let crashes = match outcome.crashes.as_slice() {
        [] => "no crash".to_owned(),
        inputs => format!(
            "CRASHED on {}",
            inputs
                .iter()
                .map(|input| input.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "xtask: fuzz {}: {} s, {} executions, cov {}, ft {}, {} corpus files, {crashes} (log: {})",
        outcome.target,
        outcome.seconds,
        figure(outcome.executions),
        figure(outcome.cov),
        figure(outcome.ft),
        outcome.corpus_files,
        outcome.log.display()
    )
}

fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_owned(), |value| value.to_string())
}
