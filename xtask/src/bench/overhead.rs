//! Overhead on proxied traffic: wrk through nginx to a backend in the lab,
//! with and without the daemon watching both of nginx's legs, and with only
//! the empty TC program at the daemon's hooks (what attaching any program
//! there costs), in rotating runs of the same length; the figures are
//! medians across rounds.

use std::process::Command;

use anyhow::{bail, Context as _, Result};
use lab::{real::RealBackend, ProxyLab, BACKEND_PORT, PROXY_PORT};

use super::{
    empty_program::{self, EmptyProgram},
    live, median, BenchResult, Benchmark, Context, Target,
};
use crate::daemon::{check_interrupt, teardown_on_interrupt};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "overhead",
    about: "wrk (2 threads, 32 keep-alive connections) from the lab's client namespace \
            through nginx to nginx answering a static 200 as backend, for the same time with \
            `auditor run` watching both of nginx's legs (ports 8080 and 9000), without it, and \
            with only an empty TC program (auditor-ebpf/src/bin/baseline.rs) at the daemon's \
            four hooks, rotating which goes first; 5 rounds of 3 × 10 s (--quick: 2 × 3 × 5 s) \
            after a 2 s warm-up. The daemon and the empty program are attached before and \
            removed after each of their runs. Figures are medians across rounds; the baseline \
            is the runs without either. The daemon's own CPU share during its runs is reported \
            beside them, and the empty program's runs give the floor any program at those \
            hooks costs. Targets: throughput ratio at least 0.98, p99 latency ratio at most \
            1.05.",
    needs_root: true,
    run,
};

const WRK: [(&str, &str); 1] = [("wrk", "wrk")];
const THREADS: &str = "2";
const CONNECTIONS: &str = "32";
const WARM_UP_SECS: u64 = 2;
const THROUGHPUT_RATIO: f64 = 0.98;
const P99_RATIO: f64 = 1.05;

/// What is attached at nginx's interfaces during a run.
#[derive(Clone, Copy)]
enum Attached {
    Nothing,
    Daemon,
    EmptyProgram,
}

impl Attached {
    const ALL: [Attached; 3] = [Attached::Nothing, Attached::Daemon, Attached::EmptyProgram];
}

/// What one wrk run reported.
struct WrkRun {
    requests_per_sec: f64,
    p99_ms: f64,
    /// wrk's socket error and non-2xx lines, if any.
    errors: Vec<String>,
}

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&live::COMMANDS)?;
    crate::setup::ensure_packages(&WRK)?;
    let auditor = context.auditor()?;
    context.version("wrk", &version_line("wrk")?);
    context.version("nginx", &version_line("nginx")?);
    teardown_on_interrupt()?;
    let (rounds, secs) = if context.quick { (2, 5) } else { (5, 10) };
    let empty_object = empty_program::object(context)?;
    let (lab, _nginx) = live::nginx_lab(context)?;
    let _backend = RealBackend::nginx_static(&lab).context("cannot start the nginx backend")?;
    let args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);

    wrk(context, &lab, WARM_UP_SECS)?;
    let (mut with, mut without, mut with_empty) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = Vec::new();
    // The daemon's share of one core during each run with it.
    let mut daemon_cpu_shares = Vec::new();
    for round in 0..rounds {
        // Rotating which goes first evens out drift in the machine's load.
        let mut order = Attached::ALL;
        order.rotate_left(round % Attached::ALL.len());
        for attached in order {
            check_interrupt()?;
            let mut daemon = match attached {
                Attached::Daemon => Some(live::start_daemon(context, &lab.proxy, &auditor, &args)?),
                _ => None,
            };
            let empty = match attached {
                Attached::EmptyProgram => Some(EmptyProgram::attach(&lab, &empty_object)?),
                _ => None,
            };
            let cpu_at_start = daemon.as_ref().map(|d| d.cpu_time()).transpose()?;
            let measured = wrk(context, &lab, secs)?;
            if let (Some(daemon), Some(cpu_at_start)) = (daemon.as_mut(), cpu_at_start) {
                let used = daemon.cpu_time()?.saturating_sub(cpu_at_start);
                daemon_cpu_shares.push(used.as_secs_f64() / secs as f64);
                daemon.stop()?;
            }
            drop(empty);
            errors.extend(measured.errors.iter().cloned());
            match attached {
                Attached::Nothing => &mut without,
                Attached::Daemon => &mut with,
                Attached::EmptyProgram => &mut with_empty,
            }
            .push(measured);
        }
    }
    if !errors.is_empty() {
        bail!(
            "wrk saw errors, so the runs are not comparable: {}",
            errors.join("; ")
        );
    }

    let figures = |runs: &[WrkRun], figure: fn(&WrkRun) -> f64| -> Vec<f64> {
        runs.iter().map(figure).collect()
    };
    let rps_with = figures(&with, |r| r.requests_per_sec);
    let rps_without = figures(&without, |r| r.requests_per_sec);
    let rps_empty = figures(&with_empty, |r| r.requests_per_sec);
    let p99_with = figures(&with, |r| r.p99_ms);
    let p99_without = figures(&without, |r| r.p99_ms);
    let p99_empty = figures(&with_empty, |r| r.p99_ms);
    let shown = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let shown_ms = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok(vec![
        BenchResult::new("overhead.throughput", median(&rps_with), "requests/s")
            .against(median(&rps_without))
            .target(Target::RatioAtLeast(THROUGHPUT_RATIO))
            .note(format!(
                "baseline: without the daemon; median of {rounds} runs of {secs} s each; with: \
                 {}; without: {}",
                shown(&rps_with),
                shown(&rps_without)
            )),
        BenchResult::new("overhead.p99_latency", median(&p99_with), "ms")
            .against(median(&p99_without))
            .target(Target::RatioAtMost(P99_RATIO))
            .note(format!(
                "baseline: without the daemon; wrk's 99th percentile, median of {rounds} runs; \
                 with: {}; without: {}",
                shown_ms(&p99_with),
                shown_ms(&p99_without)
            )),
        BenchResult::new(
            "overhead.empty_program_throughput",
            median(&rps_empty),
            "requests/s",
        )
        .against(median(&rps_without))
        .note(format!(
            "the floor, not a verdict: only the empty TC program at the daemon's four hooks, no \
             daemon; baseline: with nothing attached; median of {rounds} runs; requests/s: {}; \
             p99 (ms): {}. The daemon's runs against these: throughput {:.3}×, p99 {:.2}×",
            shown(&rps_empty),
            shown_ms(&p99_empty),
            median(&rps_with) / median(&rps_empty),
            median(&p99_with) / median(&p99_empty)
        )),
        BenchResult::new(
            "overhead.daemon_cpu",
            median(&daemon_cpu_shares) * 100.0,
            "% of a core",
        )
        .note(format!(
            "no baseline; the daemon's CPU time (user and system, all threads, from \
             /proc/PID/stat) over each run with it, as a share of one core, median of \
             {rounds}: {}. wrk, nginx and its backend keep this machine's {} cores busy, so \
             this share is taken from them; the TC program's own cost is in the kernel \
             benchmark",
            daemon_cpu_shares
                .iter()
                .map(|share| format!("{:.1}%", share * 100.0))
                .collect::<Vec<_>>()
                .join(" "),
            std::thread::available_parallelism().map_or(0, usize::from)
        )),
    ])
}

/// The first line `PROGRAM -v` prints: wrk prints it with its usage and
/// exits with 1, nginx prints it on stderr.
fn version_line(program: &str) -> Result<String> {
    let output = Command::new(program).arg("-v").output()?;
    let printed = [output.stdout, output.stderr].concat();
    Ok(String::from_utf8_lossy(&printed)
        .lines()
        .next()
        .unwrap_or("unknown")
        .to_owned())
}

/// wrk from the client namespace to nginx's front for `secs` seconds.
fn wrk(context: &mut Context, lab: &ProxyLab, secs: u64) -> Result<WrkRun> {
    let (output, _) = context.run(
        lab.client
            .command("wrk")
            .args(["-t", THREADS, "-c", CONNECTIONS, "-d", &format!("{secs}s")])
            .arg("--latency")
            .arg(format!("http://{}/", ProxyLab::proxy_front())),
    )?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

fn parse_wrk(text: &str) -> Result<WrkRun> {
    let field = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
            .with_context(|| format!("no {label:?}"))
    };
    Ok(WrkRun {
        requests_per_sec: field("Requests/sec:")?.parse()?,
        p99_ms: milliseconds(field("99%")?)?,
        errors: text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("Socket errors") || line.starts_with("Non-2xx"))
            .map(str::to_owned)
            .collect(),
    })
}

/// wrk's `850.00us`, `1.23ms` or `2.01s` in milliseconds.
fn milliseconds(duration: &str) -> Result<f64> {
    let split = duration
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {duration:?}"))?;
    let (number, unit) = duration.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => bail!("unknown unit in {duration:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_reports() {
        let report = "Running 10s test @ http://10.240.1.2:8080/\n  2 threads and 32 connections\n\
            \x20 Latency Distribution\n     50%  412.00us\n     99%    3.21ms\n\
            \x20 123 requests in 10.00s, 12.34MB read\n  Non-2xx or 3xx responses: 5\n\
            Requests/sec:  12345.67\nTransfer/sec:      1.23MB\n";
        let run = parse_wrk(report).unwrap();
        assert_eq!(run.requests_per_sec, 12345.67);
        assert_eq!(run.p99_ms, 3.21);
        assert_eq!(run.errors, ["Non-2xx or 3xx responses: 5"]);
        assert_eq!(milliseconds("850.00us").unwrap(), 0.85);
        assert_eq!(milliseconds("2.00s").unwrap(), 2000.0);
    }
}
