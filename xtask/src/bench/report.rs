//! The machine and the tools a run used, and the results as a table for
//! the terminal and as BENCHMARKS.md.

use std::{collections::BTreeMap, fmt::Write as _, process::Command};

use anyhow::Result;

use super::{BenchResult, Results, Target};

pub fn machine() -> Result<BTreeMap<String, String>> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let memory_kib: f64 = field(&meminfo, "MemTotal")
        .trim_end_matches(" kB")
        .parse()
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|release| {
            release
                .lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(BTreeMap::from([
        ("cpu".to_owned(), field(&cpuinfo, "model name")),
        (
            "cores (nproc)".to_owned(),
            first_line(&mut Command::new("nproc")),
        ),
        (
            "memory".to_owned(),
            format!("{:.1} GiB", memory_kib / 1024.0 / 1024.0),
        ),
        (
            "kernel".to_owned(),
            first_line(Command::new("uname").arg("-r")),
        ),
        ("os".to_owned(), os),
    ]))
}

/// The versions every run depends on; benchmarks add their own tools'.
pub fn versions() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "rustc".to_owned(),
        first_line(Command::new("rustc").arg("-V")),
    )])
}

/// The first line `command` prints, or why there is none.
pub fn first_line(command: &mut Command) -> String {
    match command.output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        _ => format!("unavailable ({command:?} failed)"),
    }
}

pub fn utc_now() -> String {
    first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `1,234,567` from 100 up, three significant digits below.
fn figure(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() < 100.0 {
        let decimals = if value.abs() >= 10.0 {
            1
        } else if value.abs() >= 1.0 {
            2
        } else {
            3
        };
        return format!("{value:.decimals$}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

fn target(result: &BenchResult) -> String {
    match result.target {
        None => "—".to_owned(),
        Some(Target::RatioAtLeast(bound)) => format!("ratio ≥ {}", figure(bound)),
        Some(Target::RatioAtMost(bound)) => format!("ratio ≤ {}", figure(bound)),
        Some(Target::FigureAtLeast(bound)) => format!("≥ {} {}", figure(bound), result.unit),
        Some(Target::FigureAtMost(bound)) => format!("≤ {} {}", figure(bound), result.unit),
        Some(Target::ExcessAtMost(bound)) => {
            format!("≤ {} {} above baseline", figure(bound), result.unit)
        }
    }
}

/// The cells of one result: name, figure, baseline, ratio, target, verdict, notes.
fn cells(result: &BenchResult) -> [String; 7] {
    [
        result.name.clone(),
        format!("{} {}", figure(result.figure), result.unit),
        result.baseline.map_or("none".to_owned(), |b| {
            format!("{} {}", figure(b), result.unit)
        }),
        result
            .ratio
            .map_or("—".to_owned(), |r| format!("{}×", figure(r))),
        target(result),
        match result.met {
            Some(true) => "met".to_owned(),
            Some(false) => "MISSED".to_owned(),
            None => "—".to_owned(),
        },
        result.notes.clone(),
    ]
}

const HEADINGS: [&str; 7] = [
    "result", "figure", "baseline", "ratio", "target", "verdict", "notes",
];

/// Aligned columns for the terminal; notes come last and are not padded.
pub fn table(results: &Results) -> String {
    let rows: Vec<[String; 7]> = results
        .runs
        .iter()
        .flat_map(|run| run.results.iter().map(cells))
        .collect();
    let mut widths = HEADINGS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let headings = HEADINGS.map(str::to_owned);
    for row in std::iter::once(&headings).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let padding = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(padding));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn markdown(results: &Results) -> String {
    let mut md = String::from(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (as root) from `target/bench/results.json`, which\n\
         holds the raw figures; do not edit by hand. The machines these run on are shared\n\
         and noisy, so each figure stands beside a baseline measured in the same run, and\n\
         the targets are on their ratios where there is a baseline.\n\n\
         ```sh\n\
         cargo xtask bench                  # everything, as the issue sets it out\n\
         cargo xtask bench --only replay    # one benchmark; the others' results are kept\n\
         cargo xtask bench --quick          # smaller inputs and shorter rounds, to try things out\n\
         ```\n\n\
         It installs what a benchmark needs when it is missing (tshark, nginx, wrk, tcpdump,\n\
         tcpreplay), and builds the release daemon and the criterion benchmarks. Paths\n\
         under `target/` below are under `$CARGO_TARGET_DIR` when that is set. The kernel,\n\
         overhead and storm benchmarks share the machine's cores with everything else on\n\
         it: read their figures with the load averages beside them.\n\n## Machine\n\n",
    );
    for (name, value) in &results.machine {
        let _ = writeln!(md, "- {name}: {value}");
    }
    md.push_str("\n## Versions\n\n");
    for (tool, version) in &results.versions {
        let _ = writeln!(md, "- {tool}: {version}");
    }
    md.push_str("\n## Results\n\n");
    let _ = writeln!(md, "| {} |", HEADINGS.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(HEADINGS.len()));
    for run in &results.runs {
        for result in &run.results {
            let row = cells(result).map(|cell| cell.replace('|', "\\|"));
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
    }
    md.push_str("\n## What each benchmark did\n");
    for run in &results.runs {
        let _ = write!(
            md,
            "\n### {}\n\n{}\n\nRan {}{}, load average {:.2} before and {:.2} after. Commands:\n\n```sh\n",
            run.benchmark,
            run.about,
            run.started,
            if run.quick { " with --quick" } else { "" },
            run.load_before,
            run.load_after
        );
        for command in &run.commands {
            let _ = writeln!(md, "{command}");
        }
        md.push_str("```\n");
    }
    md
}
