//! Soak: the live daemon on both of nginx's legs for an hour of steady
//! WebSocket upgrades and keep-alive requests with connection churn, as an
//! operator runs it: SIGHUP every minute, and every ten minutes its output
//! file renamed before the SIGHUP, as logrotate does, so that it opens a new
//! one. Its resident memory, open descriptors and threads and the handshakes
//! its metrics count are sampled as it goes; afterwards every upgrade the
//! clients made should have its `handshake` event on each leg in one of the
//! files, and the `loss` events should count nothing lost.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lab::{websocket, ProxyLab, BACKEND_PORT, PROXY_PORT};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

use super::{live, BenchResult, Benchmark, Context, Target};
use crate::daemon::{check_interrupt, teardown_on_interrupt, RunningAuditor};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "soak",
    about: "`auditor run` with the default configuration in the lab's proxy namespace, on both \
            of nginx's legs, events to a file (`--output file:target/bench/soak-events.jsonl`) \
            and metrics on the namespace's loopback (`--metrics`), for an hour (--quick: 150 s) \
            of steady traffic from the client namespace through nginx to a backend in xtask \
            that takes both kinds on port 9000: 2 clients each open 25 WebSocket upgrades a \
            second (one message echoed over each, then closed), and 4 clients each send 50 \
            keep-alive POSTs of 512 bytes a second, closing each connection after 20 and \
            opening another. The daemon gets SIGHUP every minute (--quick: 15 s); every 10 \
            minutes (--quick: 45 s) its output file is first renamed to soak-events.jsonl.N, \
            as logrotate does, and the SIGHUP makes it open a new one. Every 10 s (--quick: \
            5 s) its VmRSS, threads and open descriptors (/proc/PID/status, /proc/PID/fd) and \
            the handshakes its metrics count are sampled into target/bench/soak-samples.csv. \
            Afterwards the `handshake` events with outcome switched, in the rotated files and \
            the current one, are counted per leg (flow.role) against the upgrades the clients \
            made (101s received), and the counts in the `loss` events are summed. Targets: \
            VmRSS at most 1 MiB higher at the end than after a warm-up of 5 minutes (--quick: \
            30 s), no more descriptors at the end than at the start, every upgrade's handshake \
            on both legs, and nothing lost.",
    needs_root: true,
    run,
};

/// How long the soak runs and how often things happen in it, in seconds
/// from the start of the traffic; each period is a multiple of `sample_every`.
struct Schedule {
    duration: u64,
    /// Memory growth is judged from the first sample at or after this.
    warm_up: u64,
    sample_every: u64,
    hangup_every: u64,
    /// A multiple of `hangup_every`: that SIGHUP follows the rename.
    rotate_every: u64,
    /// How often a sample is repeated in the notes.
    shown_every: u64,
}

const FULL: Schedule = Schedule {
    duration: 3600,
    warm_up: 300,
    sample_every: 10,
    hangup_every: 60,
    rotate_every: 600,
    shown_every: 300,
};

const QUICK: Schedule = Schedule {
    duration: 150,
    warm_up: 30,
    sample_every: 5,
    hangup_every: 15,
    rotate_every: 45,
    shown_every: 15,
};

const UPGRADING_CLIENTS: u32 = 2;
const UPGRADES_PER_CLIENT_PER_SEC: f64 = 25.0;
const KEEP_ALIVE_CLIENTS: u32 = 4;
const REQUESTS_PER_CLIENT_PER_SEC: f64 = 50.0;
/// Requests a keep-alive client sends on a connection before it closes it
/// and opens another.
const REQUESTS_PER_CONNECTION: u32 = 20;
const POST_BODY_BYTES: usize = 512;
/// What each upgrading client sends over its upgraded connection and gets back.
const MESSAGE: &[u8] = b"soak";
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x08];
/// What the backend answers to a request that is not an upgrade.
const ANSWER: &str = "ok\n";
/// On the proxy namespace's loopback, where only xtask reaches it.
const METRICS_ADDR: &str = "127.0.0.1:9700";
const RSS_GROWTH_MIB: f64 = 1.0;
/// How long the daemon may take to create its output file again after
/// the SIGHUP that follows a rename.
const REOPEN_LIMIT: Duration = Duration::from_secs(10);
/// Time for the daemon to catch up with the end of the traffic before its
/// counters are read.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the backend's acceptor sleeps when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// A backend connection gives up on nginx after this.
const BACKEND_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Counts in `loss` events that are not loss of anything captured: alerts
/// the rate limit held back by design, and the bytes of gaps already
/// counted as gaps.
const NOT_LOSS: [&str; 2] = ["alerts_suppressed", "reassembly_gap_bytes"];

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&live::COMMANDS)?;
    let auditor = context.auditor()?;
    teardown_on_interrupt()?;
    let schedule = if context.quick { QUICK } else { FULL };
    let events = context.out_dir.join("soak-events.jsonl");
    remove_event_files(&events)?;
    let (lab, _nginx) = live::nginx_lab(context)?;
    let _backend = SoakBackend::start(&lab)?;
    let mut args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);
    args.extend([
        "--output".to_owned(),
        format!("file:{}", events.display()),
        "--metrics".to_owned(),
        METRICS_ADDR.to_owned(),
    ]);
    let mut daemon = live::start_daemon(context, &lab.proxy, &auditor, &args)?;

    let traffic = Traffic::start(&lab);
    let samples = context.out_dir.join("soak-samples.csv");
    let soaked = soak(&lab, &daemon, &traffic.made, &events, &schedule, &samples)?;
    let made = traffic.finish()?;
    thread::sleep(DRAIN);
    let metrics_at_end = scrape(&lab)?;
    daemon.stop()?;
    let files: Vec<PathBuf> = soaked
        .rotated
        .iter()
        .cloned()
        .chain([events.clone()])
        .collect();
    let counted = count_events(&files)?;

    let upgrades = made.upgrades.load(Ordering::Relaxed);
    let after_warm_up: Vec<&Sample> = soaked
        .samples
        .iter()
        .filter(|s| s.at_secs >= schedule.warm_up)
        .collect();
    let (first, last) = (after_warm_up[0], after_warm_up[after_warm_up.len() - 1]);
    let start = &soaked.samples[0];
    let mib = |kib: u64| kib as f64 / 1024.0;
    let shown = |value: fn(&Sample) -> String| {
        soaked
            .samples
            .iter()
            .filter(|s| s.at_secs % schedule.shown_every == 0)
            .map(value)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let fds: Vec<usize> = soaked.samples.iter().map(|s| s.fds).collect();
    let lost: u64 = counted
        .loss
        .iter()
        .filter(|(kind, _)| !NOT_LOSS.contains(&kind.as_str()))
        .map(|(_, count)| count)
        .sum();
    let metrics_lost: f64 = metrics_at_end
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix("auditor_loss_")
                .and_then(|kind| kind.strip_suffix("_total"))
                .is_some_and(|kind| !NOT_LOSS.contains(&kind))
        })
        .map(|(_, value)| value)
        .sum();
    let handshakes_note = |leg: &str| {
        format!(
            "baseline: upgrades the clients made (101s received); `handshake` events with outcome \
             switched on the {leg} leg, in {} files: {} (lines per file: {}); {upgrades} upgrades, \
             {} declined, {} failed; {} keep-alive requests on {} connections, {} failed; \
             {} handshake events not switched; {} SIGHUPs, every {} s, {} of them after a rename \
             (every {} s), the slowest new file there {:.0} ms after its SIGHUP",
            files.len(),
            files
                .iter()
                .filter_map(|f| f.file_name())
                .map(|name| name.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", "),
            counted
                .lines_per_file
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            made.declined.load(Ordering::Relaxed),
            made.upgrade_failures.load(Ordering::Relaxed),
            made.requests.load(Ordering::Relaxed),
            made.connections.load(Ordering::Relaxed),
            made.request_failures.load(Ordering::Relaxed),
            counted.not_switched,
            soaked.hangups,
            schedule.hangup_every,
            soaked.rotated.len(),
            schedule.rotate_every,
            soaked.slowest_reopen.as_secs_f64() * 1e3
        )
    };
    Ok(vec![
        BenchResult::new(
            "soak.rss_growth",
            mib(last.rss_kib) - mib(first.rss_kib),
            "MiB",
        )
        .target(Target::FigureAtMost(RSS_GROWTH_MIB))
        .note(format!(
            "VmRSS at the end ({} s) minus at {} s, after the warm-up; anonymous memory (RssAnon) \
             {:+.3} MiB over the same time; {:.2} MiB when the traffic started; VmRSS every {} s \
             from the start (MiB): {}",
            last.at_secs,
            first.at_secs,
            mib(last.anon_kib) - mib(first.anon_kib),
            mib(start.rss_kib),
            schedule.shown_every,
            shown(|s| format!("{:.2}", s.rss_kib as f64 / 1024.0))
        )),
        BenchResult::new(
            "soak.fd_growth",
            last.fds as f64 - start.fds as f64,
            "descriptors",
        )
        .target(Target::FigureAtMost(0.0))
        .note(format!(
            "open descriptors (/proc/PID/fd) at the end minus when the traffic started: {} → {}, \
             between {} and {} in {} samples; threads {} → {}; every {} s: {}",
            start.fds,
            last.fds,
            fds.iter().min().expect("samples"),
            fds.iter().max().expect("samples"),
            fds.len(),
            start.threads,
            last.threads,
            schedule.shown_every,
            shown(|s| s.fds.to_string())
        )),
        BenchResult::new(
            "soak.frontend_handshakes",
            counted.frontend as f64,
            "events",
        )
        .against(upgrades as f64)
        .target(Target::RatioAtLeast(1.0))
        .note(handshakes_note("client↔nginx")),
        BenchResult::new("soak.backend_handshakes", counted.backend as f64, "events")
            .against(upgrades as f64)
            .target(Target::RatioAtLeast(1.0))
            .note(handshakes_note("nginx↔backend")),
        BenchResult::new("soak.loss", lost as f64, "lost")
            .target(Target::FigureAtMost(0.0))
            .note(format!(
                "the counts of every `loss` event in all {} files, summed over all kinds but {}: \
                 {}; the daemon's auditor_loss_*_total metrics at the end, the same kinds: {}; \
                 auditor_kernel_ring_buffer_full_total: {}",
                files.len(),
                NOT_LOSS.join(" and "),
                if counted.loss.is_empty() {
                    "none".to_owned()
                } else {
                    counted
                        .loss
                        .iter()
                        .map(|(kind, count)| format!("{kind} {count}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                metrics_lost,
                metrics_at_end
                    .get("auditor_kernel_ring_buffer_full_total")
                    .map_or("absent".to_owned(), f64::to_string)
            )),
    ])
}

/// The output file and the rotated ones a previous soak left.
fn remove_event_files(events: &Path) -> Result<()> {
    let name = events
        .file_name()
        .context("an events file name")?
        .to_string_lossy();
    for entry in std::fs::read_dir(events.parent().context("an events directory")?)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&*name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// What the daemon looked like at one moment of the soak.
struct Sample {
    at_secs: u64,
    rss_kib: u64,
    anon_kib: u64,
    threads: u64,
    fds: usize,
    cpu: Duration,
    /// `handshake` events so far, by the daemon's metrics.
    handshakes: u64,
    /// Upgrades and keep-alive requests the clients made so far.
    upgrades: u64,
    requests: u64,
}

impl Sample {
    const CSV_HEADER: &'static str =
        "seconds,vm_rss_kib,rss_anon_kib,threads,fds,cpu_seconds,handshake_events,upgrades,requests";

    fn take(at_secs: u64, lab: &ProxyLab, daemon: &RunningAuditor, made: &Made) -> Result<Sample> {
        let pid = daemon.pid();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).context("the daemon is gone")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        // Before the scrape, whose connection would be counted.
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        let handshakes = scrape(lab)?
            .iter()
            .filter(|(series, _)| series.starts_with("auditor_handshakes_total{"))
            .map(|(_, value)| *value as u64)
            .sum();
        Ok(Sample {
            at_secs,
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            threads: field("Threads:")?,
            fds,
            cpu: daemon.cpu_time()?,
            handshakes,
            upgrades: made.upgrades.load(Ordering::Relaxed),
            requests: made.requests.load(Ordering::Relaxed),
        })
    }

    fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{:.2},{},{},{}",
            self.at_secs,
            self.rss_kib,
            self.anon_kib,
            self.threads,
            self.fds,
            self.cpu.as_secs_f64(),
            self.handshakes,
            self.upgrades,
            self.requests
        )
    }
}

/// What the soak's loop did.
struct Soaked {
    samples: Vec<Sample>,
    /// The renamed output files, oldest first.
    rotated: Vec<PathBuf>,
    hangups: u32,
    /// The longest a new output file took to appear after its SIGHUP.
    slowest_reopen: Duration,
}

/// Samples the daemon, signals it and rotates its output on `schedule`
/// while the traffic runs, writing each sample to `csv` as it is taken.
fn soak(
    lab: &ProxyLab,
    daemon: &RunningAuditor,
    made: &Made,
    events: &Path,
    schedule: &Schedule,
    csv: &Path,
) -> Result<Soaked> {
    let pid = Pid::from_raw(i32::try_from(daemon.pid())?);
    let mut csv = File::create(csv)?;
    writeln!(csv, "{}", Sample::CSV_HEADER)?;
    let mut soaked = Soaked {
        samples: Vec::new(),
        rotated: Vec::new(),
        hangups: 0,
        slowest_reopen: Duration::ZERO,
    };
    let started = Instant::now();
    for at_secs in (0..=schedule.duration).step_by(usize::try_from(schedule.sample_every)?) {
        thread::sleep(Duration::from_secs(at_secs).saturating_sub(started.elapsed()));
        check_interrupt()?;
        // Before the signal, so that no sample sees a reopen half done.
        let sample = Sample::take(at_secs, lab, daemon, made)?;
        writeln!(csv, "{}", sample.csv_line())?;
        let hangup_due =
            at_secs > 0 && at_secs < schedule.duration && at_secs % schedule.hangup_every == 0;
        if hangup_due {
            if at_secs % schedule.rotate_every == 0 {
                let rotated =
                    PathBuf::from(format!("{}.{}", events.display(), soaked.rotated.len() + 1));
                let waited = rotate(events, &rotated, pid)?;
                soaked.slowest_reopen = soaked.slowest_reopen.max(waited);
                soaked.rotated.push(rotated);
            } else {
                kill(pid, Signal::SIGHUP).context("cannot signal the daemon")?;
            }
            soaked.hangups += 1;
            eprintln!(
                "xtask: soak {at_secs}/{} s: VmRSS {:.1} MiB, {} descriptors, {} threads, {} \
                 handshake events, {} upgrades made, {} SIGHUPs, {} rotations",
                schedule.duration,
                sample.rss_kib as f64 / 1024.0,
                sample.fds,
                sample.threads,
                sample.handshakes,
                sample.upgrades,
                soaked.hangups,
                soaked.rotated.len()
            );
        }
        soaked.samples.push(sample);
    }
    Ok(soaked)
}

/// Renames the output file to `rotated` and signals the daemon, as
/// logrotate does without copytruncate; returns how long the daemon took to
/// create the file again.
fn rotate(events: &Path, rotated: &Path, pid: Pid) -> Result<Duration> {
    std::fs::rename(events, rotated)
        .with_context(|| format!("cannot rename {}", events.display()))?;
    kill(pid, Signal::SIGHUP).context("cannot signal the daemon")?;
    let signalled = Instant::now();
    while !events.exists() {
        if signalled.elapsed() > REOPEN_LIMIT {
            bail!(
                "the daemon did not open {} again within {REOPEN_LIMIT:?} of SIGHUP",
                events.display()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(signalled.elapsed())
}

/// The daemon's metrics: each series (name and labels) and its value.
fn scrape(lab: &ProxyLab) -> Result<BTreeMap<String, f64>> {
    lab.proxy.run(|| -> Result<BTreeMap<String, f64>> {
        let mut stream =
            TcpStream::connect(METRICS_ADDR).context("cannot connect to the daemon's metrics")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (_, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("not an HTTP response: {response:?}"))?;
        Ok(body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect())
    })
}

/// What the event files hold.
#[derive(Default)]
struct Counted {
    /// `handshake` events with outcome switched, by leg.
    frontend: u64,
    backend: u64,
    /// `handshake` events with another outcome.
    not_switched: u64,
    /// The counts of all `loss` events, by kind.
    loss: BTreeMap<String, u64>,
    lines_per_file: Vec<u64>,
}

fn count_events(files: &[PathBuf]) -> Result<Counted> {
    let mut counted = Counted::default();
    for file in files {
        let reader = BufReader::new(
            File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        );
        let mut lines = 0;
        for line in reader.lines() {
            let line = line?;
            lines += 1;
            let event: Value = serde_json::from_str(&line).with_context(|| {
                format!("{} holds a line that is not JSON: {line}", file.display())
            })?;
            match event["event_type"].as_str() {
                Some("handshake") if event["handshake"]["outcome"] == "switched" => {
                    match event["flow"]["role"].as_str() {
                        Some("frontend") => counted.frontend += 1,
                        Some("backend") => counted.backend += 1,
                        _ => {}
                    }
                }
                Some("handshake") => counted.not_switched += 1,
                Some("loss") => {
                    let kinds = event["loss"].as_object().into_iter().flatten();
                    for (kind, count) in kinds {
                        let count = count.as_u64().unwrap_or(0);
                        if count > 0 {
                            *counted.loss.entry(kind.clone()).or_default() += count;
                        }
                    }
                }
                _ => {}
            }
        }
        counted.lines_per_file.push(lines);
    }
    Ok(counted)
}

/// What the clients did so far; read while they run.
#[derive(Default)]
struct Made {
    /// 101s received.
    upgrades: AtomicU64,
    /// Upgrade offers answered otherwise.
    declined: AtomicU64,
    /// Upgrades that failed before an answer, or whose message did not come back.
    upgrade_failures: AtomicU64,
    /// Keep-alive requests answered 200.
    requests: AtomicU64,
    request_failures: AtomicU64,
    /// Keep-alive connections opened.
    connections: AtomicU64,
}

/// The clients in the lab's client namespace, each paced on its own
/// thread, until [`Traffic::finish`] or drop.
struct Traffic {
    made: Arc<Made>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Traffic {
    fn start(lab: &ProxyLab) -> Traffic {
        let made = Arc::new(Made::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..UPGRADING_CLIENTS {
            let (made, stop) = (made.clone(), stop.clone());
            clients.push(lab.client.spawn(move || upgrading_client(&made, &stop)));
        }
        for _ in 0..KEEP_ALIVE_CLIENTS {
            let (made, stop) = (made.clone(), stop.clone());
            clients.push(lab.client.spawn(move || keep_alive_client(&made, &stop)));
        }
        Traffic {
            made,
            stop,
            clients,
        }
    }

    /// Stops the clients once their current request is done; what they made.
    fn finish(mut self) -> Result<Arc<Made>> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            client
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        }
        Ok(self.made.clone())
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits for each next turn of a client that acts `per_sec` times a second;
/// a client that fell behind catches up.
struct Pace {
    interval: Duration,
    due: Instant,
}

impl Pace {
    fn new(per_sec: f64) -> Pace {
        Pace {
            interval: Duration::from_secs_f64(1.0 / per_sec),
            due: Instant::now(),
        }
    }

    fn wait(&mut self) {
        self.due += self.interval;
        thread::sleep(self.due.saturating_duration_since(Instant::now()));
    }
}

fn upgrading_client(made: &Made, stop: &AtomicBool) {
    let mut pace = Pace::new(UPGRADES_PER_CLIENT_PER_SEC);
    while !stop.load(Ordering::Relaxed) {
        pace.wait();
        if upgrade_once(made).is_err() {
            made.upgrade_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One WebSocket upgrade through nginx, one message echoed over it, then
/// the connection closed.
fn upgrade_once(made: &Made) -> Result<()> {
    let (mut stream, mut reader) = live::connect()?;
    if live::offer_upgrade(&mut stream, &mut reader, "websocket")? != 101 {
        made.declined.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    made.upgrades.fetch_add(1, Ordering::Relaxed);
    stream.write_all(&websocket::masked_text_frame(MESSAGE, MASK))?;
    let expected = websocket::text_frame(MESSAGE);
    let mut echoed = vec![0; expected.len()];
    reader.read_exact(&mut echoed)?;
    if echoed != expected {
        bail!("the backend echoed {echoed:02x?}");
    }
    Ok(())
}

/// Keep-alive POSTs, [`REQUESTS_PER_CONNECTION`] on each connection; a
/// failed request closes its connection.
fn keep_alive_client(made: &Made, stop: &AtomicBool) {
    let body = vec![b'k'; POST_BODY_BYTES];
    let mut pace = Pace::new(REQUESTS_PER_CLIENT_PER_SEC);
    while !stop.load(Ordering::Relaxed) {
        pace.wait();
        let Ok((mut stream, mut reader)) = live::connect() else {
            made.request_failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        made.connections.fetch_add(1, Ordering::Relaxed);
        for sent in 0..REQUESTS_PER_CONNECTION {
            if sent > 0 {
                pace.wait();
            }
            match live::post(&mut stream, &mut reader, &body) {
                Ok(200) => made.requests.fetch_add(1, Ordering::Relaxed),
                _ => {
                    made.request_failures.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
}

/// The backend behind nginx, on the lab's backend address: a 101 to each
/// WebSocket offer, then every message echoed, and a 200 to any other
/// request, keeping the connection open; the lab's backends each answer
/// one kind. Serves until dropped.
struct SoakBackend {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SoakBackend {
    fn start(lab: &ProxyLab) -> Result<SoakBackend> {
        // A socket stays in the namespace it was made in, whichever thread uses it.
        let listener = lab
            .backend
            .run(|| -> std::io::Result<TcpListener> {
                let listener = TcpListener::bind(ProxyLab::backend_addr())?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .context("cannot listen on the backend address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            thread::spawn(move || serve(stream));
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(ACCEPT_POLL);
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Ok(SoakBackend {
            stop,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for SoakBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Answers one connection from nginx until it closes.
fn serve(stream: TcpStream) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(BACKEND_READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        if let Some(key) = request.websocket_key {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                websocket::accept(&key)
            );
            writer.write_all(head.as_bytes())?;
            while let Some(message) = websocket::read_masked_frame(&mut reader)? {
                writer.write_all(&websocket::text_frame(&message))?;
            }
            return Ok(());
        }
        std::io::copy(
            &mut reader.by_ref().take(request.content_length),
            &mut std::io::sink(),
        )?;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        writer.write_all(answer.as_bytes())?;
    }
    Ok(())
}

/// What the backend needs of a request head.
struct RequestHead {
    websocket_key: Option<String>,
    content_length: u64,
}

/// The next request head; None when the connection closed between requests.
fn read_request(reader: &mut impl BufRead) -> Result<Option<RequestHead>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut head = RequestHead {
        websocket_key: None,
        content_length: 0,
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed inside a request head");
        }
        let field = line.trim_end();
        if field.is_empty() {
            return Ok(Some(head));
        }
        if let Some((name, value)) = field.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.trim().parse()?;
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                head.websocket_key = Some(value.trim().to_owned());
            }
        }
    }
}
