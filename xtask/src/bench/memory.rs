//! Memory: the live daemon's resident memory while it tracks 100,000 TCP
//! connections, each stopped in the middle of its request head, held for a
//! while (60 s by default); the baseline is the same daemon idle, before the
//! connections.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lab::netns::NetNs;
use socket2::{Domain, Socket, Type};

use super::{
    live::{final_counters, number_after},
    BenchResult, Benchmark, Context, Target,
};
use crate::daemon::{check_interrupt, RunningAuditor};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "memory",
    about: "`auditor run` on the loopback of a fresh network namespace, watching port \
            8080, with a configuration whose flow table holds 131,072 connections (the \
            default, 65,536, would evict a third of them). 100,000 real TCP connections \
            from 127.0.0.2-11 (ten processes) each send the first part of a WebSocket upgrade request head \
            and stop there. The daemon's VmRSS is sampled while they are held; the \
            baseline is its VmRSS idle, before them. Targets: at most 128 MiB, and flat: \
            the last sample at most 1 MiB above the first.",
    needs_root: true,
    run,
};

const FLOWS: usize = 100_000;
/// Flows per process and per source address, within the usual limit of
/// open files and the ephemeral port range.
const FLOWS_PER_PROCESS: usize = 10_000;
const PORT: u16 = 8080;
const MAX_CONNECTIONS: usize = 131_072;
const TARGET_MIB: f64 = 128.0;
const FLAT_MIB: f64 = 1.0;
const SAMPLES: u32 = 12;
const CAPTURE_STARTUP: Duration = Duration::from_secs(30);
/// Waiting for the daemon to go idle gives up after this.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
const PARTIAL_HEAD: &[u8] = b"GET /socket HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Ver";

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&[("ip", "iproute2")])?;
    let auditor = context.auditor()?;
    crate::daemon::teardown_on_interrupt()?;
    let config = context.out_dir.join("memory.toml");
    std::fs::write(
        &config,
        format!(
            "interfaces = [\"lo\"]\n[[ports]]\nport = {PORT}\n\
             [reassembly]\nmax_connections = {MAX_CONNECTIONS}\n"
        ),
    )?;
    let netns = NetNs::new();
    context.run(
        netns
            .command("sysctl")
            .args(["-w", &format!("net.core.somaxconn={FLOWS}")]),
    )?;
    let args = [
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    context.record(netns.command(&auditor).args(&args));
    let mut daemon = RunningAuditor::start(&netns, &auditor, &args)?;
    daemon.wait_for_log("capture started", CAPTURE_STARTUP)?;
    let pid = daemon.pid();
    settle(pid)?;
    let idle = rss(pid)?;

    let opening = Instant::now();
    let flows = open_flows(context, &netns)?;
    let open_secs = opening.elapsed().as_secs_f64();
    settle(pid)?;
    let mut samples = Vec::new();
    let held = Instant::now();
    for sample in 0..=SAMPLES {
        let due = context.memory_duration * sample / SAMPLES;
        std::thread::sleep(due.saturating_sub(held.elapsed()));
        check_interrupt()?;
        samples.push(rss(pid)?);
    }
    let hold_secs = held.elapsed().as_secs_f64();
    daemon.stop()?;
    drop(flows);
    let counters = final_counters(&mut daemon)?;
    let tracked = number_after(&counters, "connections_opened: ")?;
    let evicted = number_after(&counters, "connections_evicted: ")?;
    let ring_buffer_full = number_after(&counters, "ring_buffer_full=")?;

    let peak = samples.iter().copied().fold(Rss::default(), Rss::max);
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let shape: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1}", s.total_mib))
        .collect();
    Ok(vec![
        BenchResult::new("memory.rss_peak", peak.total_mib, "MiB")
            .against(idle.total_mib)
            .target(Target::FigureAtMost(TARGET_MIB))
            .note(format!(
                "baseline: idle; {FLOWS} flows opened in {open_secs:.1} s; the daemon opened \
                 {tracked} connections, evicted {evicted}, the kernel's ring buffer was full \
                 {ring_buffer_full} times; anonymous memory at the peak {:.1} MiB; \
                 max_connections = {MAX_CONNECTIONS}",
                peak.anon_mib
            )),
        BenchResult::new("memory.rss_growth", last.total_mib - first.total_mib, "MiB")
            .target(Target::FigureAtMost(FLAT_MIB))
            .note(format!(
                "last sample minus first over {hold_secs:.0} s; samples (MiB): {}",
                shape.join(" ")
            )),
    ])
}

#[derive(Clone, Copy, Debug, Default)]
struct Rss {
    total_mib: f64,
    anon_mib: f64,
}

impl Rss {
    fn max(self, other: Rss) -> Rss {
        if other.total_mib > self.total_mib {
            other
        } else {
            self
        }
    }
}

fn rss(pid: u32) -> Result<Rss> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("the daemon is gone")?;
    let mib = |field: &str| -> Result<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
        Ok(kib / 1024.0)
    };
    Ok(Rss {
        total_mib: mib("VmRSS:")?,
        anon_mib: mib("RssAnon:")?,
    })
}

/// Waits until the daemon has caught up: under 5% of a core for a second.
fn settle(pid: u32) -> Result<()> {
    let started = Instant::now();
    let mut before = cpu_ticks(pid)?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        check_interrupt()?;
        let now = cpu_ticks(pid)?;
        // Clock ticks are hundredths of a second.
        if now - before < 5 {
            return Ok(());
        }
        if started.elapsed() > SETTLE_LIMIT {
            bail!("the daemon was still busy after {SETTLE_LIMIT:?}");
        }
        before = now;
    }
}

/// User and system time, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the daemon is gone")?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    ticks(11)
        .zip(ticks(12))
        .map(|(user, system)| user + system)
        .context("unreadable /proc/PID/stat")
}

/// `cargo xtask hold-flows`, run inside the namespace by the benchmark:
/// `count` connections from `source` to `port` on the loopback, each with
/// part of a request head sent, held until stdin closes. A process may not
/// be allowed enough open files for all the flows, so several share them;
/// the listener never accepts them, the kernel holds them in its queue.
pub fn hold_flows(source: Ipv4Addr, count: usize, port: u16) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::io::Read as _;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut flows = Vec::with_capacity(count);
    for i in 0..count {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&SocketAddrV4::new(source, 0).into())?;
        socket
            .connect(&server.into())
            .with_context(|| format!("connection {i} from {source}"))?;
        let mut client: TcpStream = socket.into();
        client.write_all(PARTIAL_HEAD)?;
        flows.push(client);
    }
    println!("ready");
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Starts the [`hold_flows`] processes in `netns` and waits until every
/// flow is open; the flows close when the children are dropped.
fn open_flows(context: &mut Context, netns: &NetNs) -> Result<Vec<Child>> {
    netns.run(|| -> Result<()> {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, PORT)).into())?;
        listener.listen(i32::try_from(FLOWS)?)?;
        // Kept open in the namespace for as long as the process lives.
        std::mem::forget(listener);
        Ok(())
    })?;
    let xtask = std::env::current_exe()?;
    let mut children = Vec::new();
    for (i, count) in (0..FLOWS).step_by(FLOWS_PER_PROCESS).map(|start| {
        (
            start / FLOWS_PER_PROCESS,
            FLOWS_PER_PROCESS.min(FLOWS - start),
        )
    }) {
        let source = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
        let mut command = netns.command(&xtask);
        command.args([
            "hold-flows",
            &source.to_string(),
            &count.to_string(),
            &PORT.to_string(),
        ]);
        context.record(&command);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut ready)?;
        if ready.trim() != "ready" {
            bail!("hold-flows from {source} did not open its flows");
        }
        children.push(child);
    }
    Ok(children)
}
