//! The project's two commands, `cargo xtask run` and `cargo xtask test`, with
//! `cargo xtask build`, for a first look `cargo xtask demo`,
//! `cargo xtask bench` and `cargo xtask fuzz`. Each installs what it needs
//! first.

mod bench;
mod daemon;
mod demo;
mod fuzz;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain if missing, and build the daemon with its kernel program.
    Build,
    /// Build, then start `auditor run` with the given arguments (defaults: the embedded configuration).
    Run {
        /// Arguments for `auditor run`, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, clippy (userspace and eBPF), unit tests and, with root, the privileged integration tests; then a short run of every fuzz target.
    Test,
    /// Regenerate the README's rule list and docs/rules.md from the rule catalogue.
    Readme,
    /// As root: a backup through Caddy to a backend that answers like Proxmox Backup Server, watched by the auditor, in network namespaces removed afterwards.
    Demo,
    /// Benchmarks against baselines measured in the same run: a table, target/bench/results.json and BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// The fuzz targets of fuzz/ (cargo-fuzz, nightly), each for a while on a corpus seeded from the committed captures and configurations; fails if one crashes.
    Fuzz(fuzz::FuzzArgs),
    /// For the memory benchmark: hold COUNT connections from SOURCE, stopped mid-head, until stdin closes.
    #[command(hide = true)]
    HoldFlows {
        source: std::net::Ipv4Addr,
        count: usize,
        port: u16,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Task::Build => build(&root).map(|_| ()),
        Task::Run { args } => {
            let auditor = build(&root)?;
            let status = Command::new(&auditor)
                .arg("run")
                .args(&args)
                .status()
                .with_context(|| format!("cannot start {}", auditor.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test => test(&root),
        Task::Readme => readme(&root),
        Task::Demo => demo::demo(&root),
        Task::Bench(args) => bench::bench(&root, args),
        Task::Fuzz(args) => fuzz::fuzz(&root, args),
        Task::HoldFlows {
            source,
            count,
            port,
        } => bench::hold_flows(source, count, port),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Builds the release daemon (which builds the kernel program) and returns its path.
fn build(root: &Path) -> Result<PathBuf> {
    setup::ensure_ebpf_toolchain()?;
    run(cargo(root).args(["build", "--release", "--package", "auditor"]))?;
    Ok(target_dir(root).join("release").join("auditor"))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn test(root: &Path) -> Result<()> {
    setup::ensure_ebpf_toolchain()?;
    let privileged = setup::is_root();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !privileged && in_ci {
        bail!("CI=true but not running as root: the privileged integration tests (eBPF programs, network namespaces) cannot run");
    }
    if privileged {
        setup::ensure_test_packages()?;
    }
    run(cargo(root).args(["fmt", "--all", "--check"]))?;
    run(cargo(root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    run(setup::nightly("cargo")
        .current_dir(root.join("auditor-ebpf"))
        .args(["clippy", "--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"]))?;
    let mut tests = cargo(root);
    // Not the criterion benchmarks: their harness takes no test flags, and
    // clippy above has compiled them.
    tests.args(["test", "--lib", "--bins", "--tests", "--examples"]);
    tests.args(["--", "--test-threads", "2"]);
    if privileged {
        tests.arg("--include-ignored");
    } else {
        eprintln!("xtask: not root: the privileged integration tests are reported as ignored below, by name");
    }
    let totals = run_tests(&mut tests)?;
    // Before the summary, which stays the last line.
    let fuzzed = fuzz::run_targets(root, &fuzz::TARGETS, fuzz::TEST_SECONDS);
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if totals.failed > 0 || totals.passed == 0 {
        bail!("the test suite did not pass");
    }
    fuzzed
}

#[derive(Default)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo test`, echoing its output, and adds up libtest's result lines
/// so the run ends with one summary for the whole workspace.
fn run_tests(command: &mut Command) -> Result<TestTotals> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut totals = TestTotals::default();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            for part in result.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(count) = count.parse::<u64>() else {
                    continue;
                };
                match kind {
                    "passed" => totals.passed += count,
                    "failed" => totals.failed += count,
                    "ignored" => totals.ignored += count,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && totals.failed == 0 {
        bail!("{command:?} failed with {status}");
    }
    Ok(totals)
}

/// Regenerates the README's rule list and the generated sections of
/// docs/rules.md from the catalogue: the test that checks them rewrites
/// them when `UPDATE_DOCS=1`.
fn readme(root: &Path) -> Result<()> {
    setup::ensure_ebpf_toolchain()?;
    run(cargo(root)
        .args([
            "test",
            "--quiet",
            "--package",
            "auditor",
            "--test",
            "integration",
            "docs::",
        ])
        .env("UPDATE_DOCS", "1"))
}

fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
