//! The project's two commands, `cargo xtask run` and `cargo xtask test`, and
//! `cargo xtask build`. Each installs what it needs first.

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
    /// Formatting, clippy (userspace and eBPF), unit tests and, with root, the privileged integration tests.
    Test,
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
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join("release").join("auditor"))
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
    run(cargo(root)
        .current_dir(root.join("auditor-ebpf"))
        .args([
            "+nightly",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"]))?;
    let mut tests = cargo(root);
    tests.args(["test", "--", "--test-threads", "2"]);
    if privileged {
        tests.arg("--include-ignored");
    } else {
        eprintln!("xtask: not root: the privileged integration tests are reported as ignored below, by name");
    }
    run(&mut tests)
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
