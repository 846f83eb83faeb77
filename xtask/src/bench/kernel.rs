//! Kernel cost: the average run time per packet of the daemon's TC
//! programs, from the kernel's own statistics (run_time_ns and run_cnt, on
//! while this runs), as deltas over each kind of traffic. The same traffic
//! goes through nginx twice: once while the daemon watches other ports,
//! which is the unwatched figure and each watched figure's baseline, then
//! while it watches nginx's two ports.
//!
//! With statistics on, the kernel reads its clock around every run, and
//! that accounting is part of each run's time: on a virtual machine it is a
//! large share of the unwatched figure. During the unwatched pass an empty
//! program (`auditor-ebpf/src/bin/baseline.rs`, which only returns
//! `TC_ACT_UNSPEC`) sits at the same hooks and sees the same packets; its
//! figure is that floor, and the unwatched verdict is on the daemon's cost
//! above it.

use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    path::Path,
};

use anyhow::{bail, Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    real::RealBackend,
    ProxyLab, BACKEND_PORT, PROXY_PORT,
};

use aya::programs::SchedClassifier;

use super::{
    empty_program::{self, EmptyProgram, EMPTY_PROGRAM},
    live, BenchResult, Benchmark, Context, Target,
};
use crate::daemon::{check_interrupt, teardown_on_interrupt};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "kernel",
    about: "`auditor run` in the proxy namespace of the lab, on both of nginx's legs; the \
            kernel's BPF statistics on for the run (BPF_ENABLE_STATS, the same switch as \
            `kernel.bpf_stats_enabled`). From the client namespace, through nginx: WebSocket \
            upgrades one after another (the lab's WebSocket backend), the same upgrades from 16 \
            clients at once, as a busy proxy sees them, keep-alive POSTs of 4 KiB \
            (nginx answering as backend), and bulk data echoed after an upgrade \
            (proxmox-backup-protocol-v1, the lab's echoing backend), in 64 KiB writes. Each \
            kind is measured on its own, as the change in run_time_ns / run_cnt summed over the \
            daemon's programs (ingress and egress, on both interfaces), first while the daemon \
            watches ports nobody uses (baseline, and the unwatched figure), then while it \
            watches 8080 and 9000. Run-time statistics cost every program a clock read around \
            each run, counted in its run time: during the unwatched pass an empty TC program \
            (auditor-ebpf/src/bin/baseline.rs, built with the daemon, only returns \
            TC_ACT_UNSPEC) is attached by xtask at the same four hooks and sees the same \
            packets; its run_time_ns / run_cnt is kernel.empty_program, the accounting floor. \
            Every figure is reported as measured, and the unwatched and watched ones also net of \
            that floor (measured minus the empty program's ns per packet on the same traffic). \
            Targets: at most 100 ns per packet unwatched, judged on the daemon's own cost (net \
            of the empty program), and at most 500 ns watched, judged on the figure as measured.",
    needs_root: true,
    run,
};

const UNWATCHED_TARGET_NS: f64 = 100.0;
const WATCHED_TARGET_NS: f64 = 500.0;
/// Ports the unwatched daemon watches, which no traffic uses.
const UNUSED_PORTS: (u16, u16) = (18080, 19000);
const POST_BODY_BYTES: usize = 4096;
const BULK_CHUNK_BYTES: usize = 65536;
/// Clients upgrading at once in [`Traffic::ConcurrentHandshakes`].
const CONCURRENT_CLIENTS: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Traffic {
    Handshakes,
    /// The same upgrades as `Handshakes`, from [`CONCURRENT_CLIENTS`] at once.
    /// One client at a time leaves the machine idle between packets, so every
    /// packet meets cold caches; a busy proxy's packets do not.
    ConcurrentHandshakes,
    KeepAlive,
    BulkAfterUpgrade,
}

impl Traffic {
    const ALL: [Traffic; 4] = [
        Traffic::Handshakes,
        Traffic::ConcurrentHandshakes,
        Traffic::KeepAlive,
        Traffic::BulkAfterUpgrade,
    ];

    fn name(self) -> &'static str {
        match self {
            Traffic::Handshakes => "handshakes",
            Traffic::ConcurrentHandshakes => "handshakes_concurrent",
            Traffic::KeepAlive => "keep_alive",
            Traffic::BulkAfterUpgrade => "bulk_after_upgrade",
        }
    }

    /// The backend this traffic needs, serving until dropped.
    fn start_backend(self, lab: &ProxyLab) -> Result<Box<dyn Any>> {
        Ok(match self {
            Traffic::Handshakes | Traffic::ConcurrentHandshakes => {
                Box::new(RunningBackend::start(lab, Backend::WebSocket)?)
            }
            Traffic::KeepAlive => Box::new(RealBackend::nginx_static(lab)?),
            Traffic::BulkAfterUpgrade => {
                Box::new(RunningBackend::start(lab, Backend::ProxmoxBackup)?)
            }
        })
    }

    /// Sends this traffic through nginx from the client namespace.
    fn send(self, lab: &ProxyLab, amount: Amount) -> Result<()> {
        match self {
            Traffic::Handshakes => handshakes(lab, 1, amount.handshakes),
            Traffic::ConcurrentHandshakes => handshakes(lab, CONCURRENT_CLIENTS, amount.handshakes),
            Traffic::KeepAlive => lab.client.run(move || keep_alive_posts(amount)),
            Traffic::BulkAfterUpgrade => lab
                .client
                .run(move || bulk_after_upgrade(amount.bulk_bytes)),
        }
    }
}

/// `count` WebSocket upgrades, from `clients` clients at once, each
/// upgrading one connection after another.
fn handshakes(lab: &ProxyLab, clients: u32, count: u32) -> Result<()> {
    let per_client = count / clients;
    let running: Vec<_> = (0..clients)
        .map(|_| {
            lab.client.spawn(move || -> Result<()> {
                for _ in 0..per_client {
                    let (mut stream, mut reader) = live::connect()?;
                    expect(
                        101,
                        live::offer_upgrade(&mut stream, &mut reader, "websocket")?,
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for client in running {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(())
}

fn keep_alive_posts(amount: Amount) -> Result<()> {
    let body = vec![b'x'; POST_BODY_BYTES];
    for _ in 0..amount.connections {
        let (mut stream, mut reader) = live::connect()?;
        for _ in 0..amount.posts_per_connection {
            expect(200, live::post(&mut stream, &mut reader, &body)?)?;
        }
    }
    Ok(())
}

fn bulk_after_upgrade(bytes: u64) -> Result<()> {
    let (mut stream, mut reader) = live::connect()?;
    let protocol = "proxmox-backup-protocol-v1";
    expect(
        101,
        live::offer_upgrade(&mut stream, &mut reader, protocol)?,
    )?;
    let chunk = vec![b'b'; BULK_CHUNK_BYTES];
    let mut echoed = vec![0; BULK_CHUNK_BYTES];
    for _ in 0..bytes / BULK_CHUNK_BYTES as u64 {
        stream.write_all(&chunk)?;
        reader.read_exact(&mut echoed)?;
    }
    Ok(())
}

fn expect(wanted: u16, status: u16) -> Result<()> {
    if status != wanted {
        bail!("nginx answered {status} where {wanted} was expected");
    }
    Ok(())
}

/// How much of each kind of traffic is sent.
#[derive(Clone, Copy)]
struct Amount {
    handshakes: u32,
    connections: u32,
    posts_per_connection: u32,
    bulk_bytes: u64,
}

/// Run time and runs, summed over the programs of one name.
#[derive(Clone, Copy, Debug, Default)]
struct RunStats {
    run_time_ns: u64,
    runs: u64,
}

impl RunStats {
    fn since(self, before: RunStats) -> RunStats {
        RunStats {
            run_time_ns: self.run_time_ns - before.run_time_ns,
            runs: self.runs - before.runs,
        }
    }

    fn add(self, other: RunStats) -> RunStats {
        RunStats {
            run_time_ns: self.run_time_ns + other.run_time_ns,
            runs: self.runs + other.runs,
        }
    }

    fn ns_per_run(self) -> f64 {
        self.run_time_ns as f64 / self.runs.max(1) as f64
    }
}

/// What one kind of traffic cost each of the daemon's programs, by name.
type Cost = BTreeMap<String, RunStats>;

fn total(cost: &Cost) -> RunStats {
    cost.values()
        .fold(RunStats::default(), |sum, s| sum.add(*s))
}

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&live::COMMANDS)?;
    let auditor = context.auditor()?;
    teardown_on_interrupt()?;
    let amount = if context.quick {
        Amount {
            handshakes: 500,
            connections: 10,
            posts_per_connection: 50,
            bulk_bytes: 64 << 20,
        }
    } else {
        Amount {
            handshakes: 2000,
            connections: 20,
            posts_per_connection: 200,
            bulk_bytes: 256 << 20,
        }
    };
    // Counting stops when this file descriptor closes, also if xtask dies.
    let _stats_on = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("cannot turn on the kernel's BPF run-time statistics")?;
    let empty_object = empty_program::object(context)?;
    let (lab, _nginx) = live::nginx_lab(context)?;
    let (unwatched, empty) = measure(
        context,
        &lab,
        &auditor,
        UNUSED_PORTS,
        amount,
        Some(&empty_object),
    )?;
    let (watched, _) = measure(
        context,
        &lab,
        &auditor,
        (PROXY_PORT, BACKEND_PORT),
        amount,
        None,
    )?;

    let all_unwatched = unwatched
        .values()
        .fold(RunStats::default(), |sum, cost| sum.add(total(cost)));
    let all_empty = empty
        .values()
        .fold(RunStats::default(), |sum, cost| sum.add(total(cost)));
    let floor = all_empty.ns_per_run();
    let unwatched_net = all_unwatched.ns_per_run() - floor;
    let mut results = vec![
        BenchResult::new("kernel.empty_program", floor, "ns/packet").note(format!(
            "the accounting floor, not a verdict: an empty TC program (only returns \
             TC_ACT_UNSPEC) at the daemon's four hooks during the unwatched pass, the kernel's \
             run-time accounting of a run and the call into it, loaded twice to tell ingress \
             from egress; {} packets ({} for the daemon's programs); {}",
            all_empty.runs,
            all_unwatched.runs,
            per_traffic(&empty, None)
        )),
        BenchResult::new("kernel.unwatched", all_unwatched.ns_per_run(), "ns/packet")
            .against(floor)
            .target(Target::ExcessAtMost(UNWATCHED_TARGET_NS))
            .note(format!(
            "verdict on the daemon's own cost, net of the accounting floor: {unwatched_net:.0} \
             ns/packet = {:.0} as measured − {floor:.0} for the empty program (the baseline) on \
             the same packets; all three kinds of traffic while ports {} and {} were watched: \
             {} packets; as measured (net): {}",
            all_unwatched.ns_per_run(),
            UNUSED_PORTS.0,
            UNUSED_PORTS.1,
            all_unwatched.runs,
            per_traffic(&unwatched, Some(&empty))
        )),
    ];
    for traffic in Traffic::ALL {
        let cost = &watched[&traffic];
        let baseline = total(&unwatched[&traffic]);
        let floor = total(&empty[&traffic]).ns_per_run();
        let raw = total(cost).ns_per_run();
        results.push(
            BenchResult::new(&format!("kernel.{}", traffic.name()), raw, "ns/packet")
                .against(baseline.ns_per_run())
                .target(Target::FigureAtMost(WATCHED_TARGET_NS))
                .note(format!(
                    "verdict on the figure as measured; net of the accounting floor: {:.0} \
                     ns/packet ({raw:.0} − {floor:.0} for the empty program on the same traffic \
                     unwatched), the baseline {:.0}; baseline: the same traffic unwatched; {} \
                     packets; {}",
                    raw - floor,
                    baseline.ns_per_run() - floor,
                    total(cost).runs,
                    per_program(cost)
                )),
        );
    }
    Ok(results)
}

impl EmptyProgram {
    /// Run time and runs so far, by direction.
    fn stats(&self) -> Result<Cost> {
        let mut cost = Cost::new();
        for (direction, ebpf) in [("ingress", &self.ingress), ("egress", &self.egress)] {
            let program: &SchedClassifier = ebpf
                .program(EMPTY_PROGRAM)
                .context("the empty program is gone")?
                .try_into()?;
            let info = program.info()?;
            cost.insert(
                direction.to_owned(),
                RunStats {
                    run_time_ns: u64::try_from(info.run_time().as_nanos())?,
                    runs: info.run_count(),
                },
            );
        }
        Ok(cost)
    }
}

/// Starts the daemon watching `ports`, with the empty program in
/// `empty_object` beside it when given, sends each kind of traffic to its
/// backend, and returns what each cost the daemon's programs, and the empty
/// program in each direction.
fn measure(
    context: &mut Context,
    lab: &ProxyLab,
    auditor: &Path,
    ports: (u16, u16),
    amount: Amount,
    empty_object: Option<&Path>,
) -> Result<(BTreeMap<Traffic, Cost>, BTreeMap<Traffic, Cost>)> {
    let args = ProxyLab::auditor_watching_both_legs(ports.0, ports.1);
    let mut daemon = live::start_daemon(context, &lab.proxy, auditor, &args)?;
    let empty = empty_object
        .map(|object| EmptyProgram::attach(lab, object))
        .transpose()?;
    let mut costs = BTreeMap::new();
    let mut empty_costs = BTreeMap::new();
    for traffic in Traffic::ALL {
        check_interrupt()?;
        let _backend = traffic.start_backend(lab)?;
        let before = program_stats(daemon.pid())?;
        let empty_before = empty.as_ref().map(EmptyProgram::stats).transpose()?;
        traffic
            .send(lab, amount)
            .with_context(|| format!("sending {}", traffic.name()))?;
        let after = program_stats(daemon.pid())?;
        if let (Some(empty), Some(before)) = (&empty, empty_before) {
            let cost = empty
                .stats()?
                .into_iter()
                .map(|(direction, stats)| {
                    let before = before.get(&direction).copied().unwrap_or_default();
                    (direction, stats.since(before))
                })
                .collect();
            empty_costs.insert(traffic, cost);
        }
        let cost = after
            .iter()
            .map(|(name, stats)| {
                let before = before.get(name).copied().unwrap_or_default();
                (name.clone(), stats.since(before))
            })
            .collect();
        costs.insert(traffic, cost);
    }
    drop(empty);
    daemon.stop()?;
    Ok((costs, empty_costs))
}

/// The statistics of the eBPF programs the process `pid` holds, by name:
/// the program ids come from its file descriptors (the kernel names them in
/// each descriptor's fdinfo), so programs other processes loaded under the
/// same names do not count.
fn program_stats(pid: u32) -> Result<BTreeMap<String, RunStats>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).context("the daemon is gone")? {
        // A descriptor may close between listing and reading.
        let Ok(fdinfo) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(id) = fdinfo.lines().find_map(|l| l.strip_prefix("prog_id:")) {
            ids.insert(id.trim().parse::<u32>()?);
        }
    }
    let mut stats = BTreeMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if ids.contains(&info.id()) {
            let name = info.name_as_str().unwrap_or("unnamed").to_owned();
            let program: &mut RunStats = stats.entry(name).or_default();
            program.run_time_ns += u64::try_from(info.run_time().as_nanos())?;
            program.runs += info.run_count();
        }
    }
    if stats.is_empty() {
        bail!("the daemon (pid {pid}) holds no eBPF program");
    }
    Ok(stats)
}

/// `NAME A ns × N`, for each program.
fn per_program(cost: &Cost) -> String {
    cost.iter()
        .map(|(name, stats)| format!("{name} {:.0} ns × {}", stats.ns_per_run(), stats.runs))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `KIND A ns × R (PROGRAMS)`, for each kind of traffic: ns per packet as
/// measured and each program's; with `floors`, `KIND A (N) ns …`, N net of
/// the empty program's ns per packet on the same traffic.
fn per_traffic(
    costs: &BTreeMap<Traffic, Cost>,
    floors: Option<&BTreeMap<Traffic, Cost>>,
) -> String {
    costs
        .iter()
        .map(|(traffic, cost)| {
            let measured = total(cost);
            let net = floors
                .map(|floors| {
                    let floor = floors.get(traffic).map_or(0.0, |e| total(e).ns_per_run());
                    format!(" ({:.0})", measured.ns_per_run() - floor)
                })
                .unwrap_or_default();
            format!(
                "{} {:.0}{net} ns × {} ({})",
                traffic.name(),
                measured.ns_per_run(),
                measured.runs,
                per_program(cost)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
