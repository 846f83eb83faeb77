//! Replay speed: `auditor replay` against tshark on the same generated
//! capture, both on one core. They must find the same 101 responses, the
//! number the generator wrote, or they did not do comparable work.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{median, BenchResult, Benchmark, Context, Target};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "replay",
    about: "A capture made by auditor/examples/bench_capture.rs (seeded): 64 connections \
            open at once to port 8080, each doing 0-2 keep-alive exchanges (1% with a body of \
            64-512 KiB) then offering an upgrade (WebSocket, h2c or custom; 10% broken, 5% \
            declined), then a few bytes of the new protocol. `auditor replay` and \
            `tshark -d tcp.port==8080,http -Y 'http.response.code == 101'` read it in turns, \
            each pinned to core 0; figures are from the median time of each. Target: the \
            auditor at least 20 times as fast.",
    needs_root: false,
    run,
};

/// Debian packages: tshark, and taskset to pin to one core.
const COMMANDS: [(&str, &str); 2] = [("tshark", "tshark"), ("taskset", "util-linux")];
const SEED: &str = "7";
const TARGET_RATIO: f64 = 20.0;

/// What the generator says it wrote.
struct Capture {
    port: u64,
    handshakes: u64,
    switched: u64,
    packets: u64,
    bytes: u64,
}

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&COMMANDS)?;
    let auditor = context.auditor()?;
    context.version(
        "tshark",
        &super::report::first_line(Command::new("tshark").arg("--version")),
    );
    let (handshakes, rounds) = if context.quick {
        (20_000, 1)
    } else {
        (100_000, 3)
    };
    let path = context.out_dir.join("replay.pcap");
    let capture = generate(context, &path, handshakes)?;
    let events = context.out_dir.join("replay-events.jsonl");
    let tshark_out = context.out_dir.join("replay-tshark.txt");
    let port = capture.port.to_string();

    let (mut auditor_secs, mut tshark_secs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut replay = Command::new("taskset");
        replay
            .args(["-c", "0"])
            .arg(&auditor)
            .args(["replay", "--port", &port])
            .arg(&path);
        auditor_secs.push(context.run_into(&mut replay, &events)?.as_secs_f64());
        check_count("auditor", switched_in_events(&events)?, &capture)?;

        let mut tshark = Command::new("taskset");
        tshark
            .args(["-c", "0", "tshark", "-r"])
            .arg(&path)
            .args(["-d", &format!("tcp.port=={port},http")])
            .args(["-Y", "http.response.code == 101"]);
        tshark_secs.push(context.run_into(&mut tshark, &tshark_out)?.as_secs_f64());
        let lines = std::fs::read_to_string(&tshark_out)?.lines().count() as u64;
        check_count("tshark", lines, &capture)?;
    }
    let (auditor_secs, tshark_secs) = (median(&auditor_secs), median(&tshark_secs));
    let megabytes = capture.bytes as f64 / 1e6;
    let handshakes = capture.handshakes as f64;
    let work = format!(
        "{} handshakes ({} answered 101, found by both), {} packets, {megabytes:.0} MB; \
         median of {rounds}: auditor {auditor_secs:.2} s, tshark {tshark_secs:.2} s",
        capture.handshakes, capture.switched, capture.packets
    );
    Ok(vec![
        BenchResult::new(
            "replay.handshakes",
            handshakes / auditor_secs,
            "handshakes/s",
        )
        .against(handshakes / tshark_secs)
        .target(Target::RatioAtLeast(TARGET_RATIO))
        .note(format!("baseline: tshark; {work}")),
        BenchResult::new("replay.throughput", megabytes / auditor_secs, "MB/s")
            .against(megabytes / tshark_secs)
            .note("baseline: tshark, the same file"),
    ])
}

fn generate(context: &mut Context, path: &Path, handshakes: u64) -> Result<Capture> {
    let (output, _) = context.run(
        crate::cargo(&context.root)
            .args(["run", "--quiet", "--release", "--package", "auditor"])
            .args(["--example", "bench_capture", "--"])
            .arg(path)
            .args([&handshakes.to_string(), SEED]),
    )?;
    let summary: Value =
        serde_json::from_slice(&output.stdout).context("bench_capture printed no JSON summary")?;
    let field = |name: &str| {
        summary[name]
            .as_u64()
            .with_context(|| format!("bench_capture's summary has no {name}"))
    };
    Ok(Capture {
        port: field("port")?,
        handshakes: field("handshakes")?,
        switched: field("switched")?,
        packets: field("packets")?,
        bytes: field("bytes")?,
    })
}

/// Handshake events whose response is a 101.
fn switched_in_events(events: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(events)?;
    let mut switched = 0;
    for line in text.lines() {
        let event: Value = serde_json::from_str(line)
            .with_context(|| format!("the auditor printed a line that is not JSON: {line}"))?;
        if event["event_type"] == "handshake" && event["http"]["response"]["status"] == 101 {
            switched += 1;
        }
    }
    Ok(switched)
}

fn check_count(reader: &str, found: u64, capture: &Capture) -> Result<()> {
    if found != capture.switched {
        bail!(
            "{reader} found {found} responses 101 where the capture holds {}: the comparison would not be fair",
            capture.switched
        );
    }
    Ok(())
}
