//! `auditor replay` run as the tests run it: its exit code, its output, and
//! the JSON value of each line it printed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::daemon::AUDITOR;

pub struct Replay {
    pub code: Option<i32>,
    /// One value a line of standard output: events, or with `--exchanges`
    /// exchanges.
    pub lines: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// `auditor replay ARGS FILES`, each line of its standard output read by
/// `parse_lines`.
pub fn replay(
    args: &[&str],
    files: &[&Path],
    parse_lines: impl FnOnce(&str) -> Vec<Value>,
) -> Replay {
    let output = Command::new(AUDITOR)
        .arg("replay")
        .args(args)
        .args(files)
        .output()
        .expect("run auditor replay");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    Replay {
        code: output.status.code(),
        lines: parse_lines(&stdout),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Each line as JSON.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A capture file of `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
