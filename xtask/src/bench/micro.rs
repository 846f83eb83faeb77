//! The criterion micro-benchmarks of auditor/benches, run briefly, as
//! throughput. They have no baseline of their own, except reordered
//! reassembly, which stands against in-order reassembly.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{BenchResult, Benchmark, Context};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "micro",
    about: "Criterion micro-benchmarks (auditor/benches): the HTTP exchange tracker on a \
            WebSocket upgrade and on 16 pipelined keep-alive exchanges, and TCP reassembly \
            of one connection's 64 segments in order and with adjacent pairs swapped. \
            Figures are throughput of payload bytes (criterion's median estimate).",
    needs_root: false,
    run,
};

/// criterion group/function, in auditor/benches.
const HTTP: [&str; 2] = ["http/websocket_upgrade", "http/pipelined_keep_alive"];
const IN_ORDER: &str = "reassembly/in_order";
const REORDERED: &str = "reassembly/reordered";

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_ebpf_toolchain()?;
    let criterion_home = context.out_dir.join("criterion");
    let (measurement, samples) = if context.quick {
        ("1", "10")
    } else {
        ("5", "50")
    };
    context.run(
        crate::cargo(&context.root)
            .env("CRITERION_HOME", &criterion_home)
            .args(["bench", "--package", "auditor"])
            .args(["--bench", "http_exchanges", "--bench", "reassembly", "--"])
            .args(["--warm-up-time", "1", "--measurement-time", measurement])
            .args(["--sample-size", samples]),
    )?;
    context.version("criterion", &locked_version(&context.root, "criterion")?);

    let mut results = Vec::new();
    for name in HTTP {
        results.push(
            BenchResult::new(name, throughput(&criterion_home, name)?, "MB/s")
                .note("criterion; no baseline"),
        );
    }
    let in_order = throughput(&criterion_home, IN_ORDER)?;
    results.push(BenchResult::new(IN_ORDER, in_order, "MB/s").note("criterion; no baseline"));
    results.push(
        BenchResult::new(REORDERED, throughput(&criterion_home, REORDERED)?, "MB/s")
            .against(in_order)
            .note("criterion; baseline: in-order reassembly"),
    );
    Ok(results)
}

/// Megabytes (10^6) of input per second, from criterion's median time per
/// iteration and the bytes per iteration the benchmark declared.
fn throughput(criterion_home: &Path, name: &str) -> Result<f64> {
    let dir = criterion_home.join(name);
    let read = |file: &str| -> Result<Value> {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("criterion wrote no {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let median_ns = read("new/estimates.json")?["median"]["point_estimate"]
        .as_f64()
        .context("no median in criterion's estimates")?;
    let bytes = read("new/benchmark.json")?["throughput"]["Bytes"]
        .as_f64()
        .context("the criterion benchmark declares no throughput in bytes")?;
    Ok(bytes / median_ns * 1e3)
}

/// The version of `package` in Cargo.lock.
fn locked_version(root: &Path, package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))?;
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&entry)
        .with_context(|| format!("{package} is not in Cargo.lock"))?
        + entry.len();
    Ok(lock[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned())
}
