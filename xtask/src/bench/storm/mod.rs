//! Loss under an upgrade storm: many threads in the lab's client namespace
//! open WebSocket upgrades through nginx to the lab's WebSocket backend as
//! fast as they can, while the daemon watches both of nginx's legs. Every
//! upgrade made (a 101 received) should appear as one `handshake` event per
//! leg, with no kernel drops. When something is lost at full speed, slower
//! paced storms find where loss begins. A recording of a storm sent again
//! faster than the lab makes it (`injected`) tests the target rate.

mod injected;

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    ProxyLab, BACKEND_PORT, PROXY_PORT,
};
use serde_json::Value;

use super::{live, BenchResult, Benchmark, Context, Target};
use crate::daemon::{check_interrupt, interrupted, teardown_on_interrupt};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "storm",
    about: "`auditor run` with the default configuration, in the lab's proxy namespace on \
            both of nginx's legs, events to a file. A generator in xtask (64 threads, one \
            connection at a time each) opens WebSocket upgrades from the client namespace \
            through nginx to the lab's WebSocket backend for 10 s (--quick: 4 s), closing each \
            after its 101. Upgrades made are the 101s received; the daemon's `handshake` \
            events are counted per leg (flow.role) against them, and kernel drops are its \
            ring_buffer_full counter. When anything is lost at full speed, storms paced at \
            25%, 50% and 75% of that rate follow, until one loses something. The daemon's CPU \
            time per upgrade projects the rate at which one core no longer keeps up. Then a \
            storm of 4 s (--quick: 2 s) is recorded by tcpdump on both legs and sent again by \
            tcpreplay into a namespace of its own, where a fresh daemon with the default \
            configuration watches the receiving end: paced at 20,000 upgrades/s for 10 s \
            (--quick: 4 s), then as fast as tcpreplay sends, each loop over the recording with \
            fresh addresses; its `handshake` events are counted against what `auditor replay` \
            finds in the recording, once per loop. Target: nothing lost at 20,000 upgrades/s, \
            or at the highest rate this machine generates.",
    needs_root: true,
    run,
};

const THREADS: u32 = 64;
const TARGET_RATE: f64 = 20_000.0;
const PACED_FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];
/// Time for the daemon to catch up with the end of a storm before it is
/// stopped.
const DRAIN: Duration = Duration::from_secs(2);

/// What the generator did in one storm.
#[derive(Clone, Copy, Default)]
struct Made {
    upgrades: u64,
    /// Answers other than 101.
    declined: u64,
    /// Connections that failed before an answer.
    failed: u64,
}

impl Made {
    fn add(self, other: Made) -> Made {
        Made {
            upgrades: self.upgrades + other.upgrades,
            declined: self.declined + other.declined,
            failed: self.failed + other.failed,
        }
    }
}

/// One storm: what was made, and what the daemon saw.
struct Storm {
    /// The rate asked for; None for as fast as possible.
    paced_at: Option<f64>,
    made: Made,
    rate: f64,
    frontend_handshakes: u64,
    backend_handshakes: u64,
    ring_buffer_full: u64,
    /// The daemon's CPU time over the storm and its drain.
    daemon_cpu: Duration,
    /// The daemon's whole `counters` line when it stopped.
    counters: String,
}

impl Storm {
    fn lost_anything(&self) -> bool {
        self.frontend_handshakes < self.made.upgrades
            || self.backend_handshakes < self.made.upgrades
            || self.ring_buffer_full > 0
    }

    fn summary(&self) -> String {
        let paced = match self.paced_at {
            Some(rate) => format!("paced at {rate:.0}/s"),
            None => "full speed".to_owned(),
        };
        format!(
            "{paced}: {:.0} upgrades/s, {} made, {} declined, {} failed; handshakes frontend {} \
             backend {}; ring buffer full {}",
            self.rate,
            self.made.upgrades,
            self.made.declined,
            self.made.failed,
            self.frontend_handshakes,
            self.backend_handshakes,
            self.ring_buffer_full
        )
    }
}

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&live::COMMANDS)?;
    crate::setup::ensure_packages(&injected::COMMANDS)?;
    let auditor = context.auditor()?;
    teardown_on_interrupt()?;
    let duration = Duration::from_secs(if context.quick { 4 } else { 10 });
    let recorded = Duration::from_secs(if context.quick { 2 } else { 4 });
    let (lab, _nginx) = live::nginx_lab(context)?;
    let _backend = RunningBackend::start(&lab, Backend::WebSocket)?;

    let full_speed = storm(context, &lab, &auditor, None, duration, 0)?;
    eprintln!("xtask: storm {}", full_speed.summary());
    let mut paced = Vec::new();
    if full_speed.lost_anything() {
        for (i, fraction) in PACED_FRACTIONS.into_iter().enumerate() {
            let rate = full_speed.rate * fraction;
            let slower = storm(context, &lab, &auditor, Some(rate), duration, i + 1)?;
            eprintln!("xtask: storm {}", slower.summary());
            let lost = slower.lost_anything();
            paced.push(slower);
            if lost {
                break;
            }
        }
    }

    let onset = match (
        paced.iter().rev().find(|s| !s.lost_anything()),
        paced.iter().find(|s| s.lost_anything()),
    ) {
        _ if !full_speed.lost_anything() => "nothing lost at full speed".to_owned(),
        (None, None) => "nothing paced".to_owned(),
        (Some(lossless), None) => format!(
            "loss begins between {:.0}/s (none) and full speed",
            lossless.rate
        ),
        (None, Some(lossy)) => format!("loss already at {:.0}/s", lossy.rate),
        (Some(lossless), Some(lossy)) => format!(
            "loss begins between {:.0}/s (none) and {:.0}/s",
            lossless.rate, lossy.rate
        ),
    };
    let recording = injected::record(context, &lab, &auditor, recorded)?;
    let loops = recording.loops_for(TARGET_RATE, duration.as_secs_f64());
    let at_target = injected::inject(context, &auditor, &recording, Some(TARGET_RATE), loops)?;
    eprintln!("xtask: injected storm {}", at_target.summary());
    let top_speed = injected::inject(context, &auditor, &recording, None, loops)?;
    eprintln!("xtask: injected storm {}", top_speed.summary());
    let injected_onset = match (at_target.lost_anything(), top_speed.lost_anything()) {
        (false, false) => "nothing lost at either rate".to_owned(),
        (false, true) => format!(
            "loss begins between {:.0}/s (none) and {:.0}/s",
            at_target.rate, top_speed.rate
        ),
        (true, _) => format!("loss already at {:.0}/s", at_target.rate),
    };
    let injected_work = format!(
        "{}; {loops} loops of it sent at each rate; {}; {}",
        recording.summary(),
        at_target.summary(),
        top_speed.summary()
    );

    let storms: Vec<String> = std::iter::once(&full_speed)
        .chain(&paced)
        .map(Storm::summary)
        .collect();
    let upgrades = full_speed.made.upgrades as f64;
    let cpu_per_upgrade_us = full_speed.daemon_cpu.as_secs_f64() * 1e6 / upgrades.max(1.0);
    Ok(vec![
        BenchResult::new("storm.upgrade_rate", full_speed.rate, "upgrades/s").note(format!(
            "no baseline; what {THREADS} threads made through nginx in {} s, the daemon \
             watching; {onset}. The most this machine makes through nginx: the target rate is \
             sent from a recording of such a storm (storm.injected_*)",
            duration.as_secs()
        )),
        BenchResult::new(
            "storm.frontend_handshakes",
            full_speed.frontend_handshakes as f64,
            "events",
        )
        .against(upgrades)
        .target(Target::RatioAtLeast(1.0))
        .note("baseline: upgrades made (101s received) at full speed; client↔nginx leg"),
        BenchResult::new(
            "storm.backend_handshakes",
            full_speed.backend_handshakes as f64,
            "events",
        )
        .against(upgrades)
        .target(Target::RatioAtLeast(1.0))
        .note("baseline: upgrades made (101s received) at full speed; nginx↔backend leg"),
        BenchResult::new(
            "storm.daemon_cpu_per_upgrade",
            cpu_per_upgrade_us,
            "µs/upgrade",
        )
        .note(format!(
            "no baseline; the daemon's CPU time (user and system, all threads, from \
             /proc/PID/stat) over the full-speed storm and the {} s after it, per upgrade made \
             (each seen on both legs): {:.2} s for {} upgrades. One core keeps up with \
             {:.0} upgrades/s at this cost: a linear projection of where sustained loss would \
             begin, as no storm here reaches it (the ring buffer absorbs bursts above it)",
            DRAIN.as_secs(),
            full_speed.daemon_cpu.as_secs_f64(),
            full_speed.made.upgrades,
            1e6 / cpu_per_upgrade_us.max(f64::MIN_POSITIVE)
        )),
        BenchResult::new(
            "storm.kernel_drops",
            full_speed.ring_buffer_full as f64,
            "records",
        )
        .target(Target::FigureAtMost(0.0))
        .note(format!(
            "ring_buffer_full at full speed; storms: {}; the daemon's counters at full speed: \
             {}",
            storms.join(" | "),
            full_speed.counters
        )),
        BenchResult::new("storm.injected_rate", at_target.rate, "upgrades/s")
            .target(Target::FigureAtLeast(TARGET_RATE))
            .note(format!(
                "no baseline; the recorded storm sent again by tcpreplay, paced at {TARGET_RATE:.0} \
                 upgrades/s (asked for {:.0}% of it), by tcpreplay's own timing; {injected_work}",
                injected::PACING_HEADROOM * 100.0
            )),
        BenchResult::new(
            "storm.injected_handshakes",
            (at_target.handshakes.0 + at_target.handshakes.1) as f64,
            "events",
        )
        .against((at_target.expected.0 + at_target.expected.1) as f64)
        .target(Target::RatioAtLeast(1.0))
        .note(format!(
            "baseline: what `auditor replay` finds in the recording, once per loop, both legs; \
             {}",
            at_target.summary()
        )),
        BenchResult::new(
            "storm.injected_kernel_drops",
            at_target.ring_buffer_full as f64,
            "records",
        )
        .target(Target::FigureAtMost(0.0))
        .note(format!("ring_buffer_full, paced at {TARGET_RATE:.0}/s")),
        BenchResult::new("storm.injected_top_rate", top_speed.rate, "upgrades/s").note(format!(
            "no baseline; the recorded storm as fast as tcpreplay sends it: {injected_onset}; {}",
            top_speed.summary()
        )),
    ])
}

/// A fresh daemon writing to its own file, one storm, then the count of
/// what the daemon reported.
fn storm(
    context: &mut Context,
    lab: &ProxyLab,
    auditor: &Path,
    paced_at: Option<f64>,
    duration: Duration,
    index: usize,
) -> Result<Storm> {
    check_interrupt()?;
    let events = context.out_dir.join(format!("storm-events-{index}.jsonl"));
    // The daemon appends to its output file.
    let _ = std::fs::remove_file(&events);
    let mut args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);
    args.push("--output".to_owned());
    args.push(format!("file:{}", events.display()));
    let mut daemon = live::start_daemon(context, &lab.proxy, auditor, &args)?;
    let cpu_at_start = daemon.cpu_time()?;
    let started = Instant::now();
    let made = generate(lab, paced_at, duration)?;
    let rate = made.upgrades as f64 / started.elapsed().as_secs_f64();
    thread::sleep(DRAIN);
    let daemon_cpu = daemon.cpu_time()?.saturating_sub(cpu_at_start);
    daemon.stop()?;
    let counters = live::final_counters(&mut daemon)?;
    let (frontend_handshakes, backend_handshakes) = handshakes_per_leg(&events)?;
    Ok(Storm {
        paced_at,
        made,
        rate,
        frontend_handshakes,
        backend_handshakes,
        ring_buffer_full: live::number_after(&counters, "ring_buffer_full=")?,
        daemon_cpu,
        counters: counters
            .split_once("counters")
            .map_or(counters.as_str(), |(_, rest)| rest)
            .trim()
            .to_owned(),
    })
}

/// [`THREADS`] threads in the client namespace, each upgrading one
/// connection after another for `duration`, at `paced_at` upgrades a second
/// between them or as fast as they can.
fn generate(lab: &ProxyLab, paced_at: Option<f64>, duration: Duration) -> Result<Made> {
    let deadline = Instant::now() + duration;
    let interval = paced_at.map(|rate| Duration::from_secs_f64(f64::from(THREADS) / rate));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            lab.client.spawn(move || {
                let mut made = Made::default();
                let mut due = Instant::now();
                while Instant::now() < deadline && !interrupted() {
                    if let Some(interval) = interval {
                        due += interval;
                        thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    match upgrade_once() {
                        Ok(101) => made.upgrades += 1,
                        Ok(_) => made.declined += 1,
                        Err(_) => made.failed += 1,
                    }
                }
                made
            })
        })
        .collect();
    let mut made = Made::default();
    for worker in workers {
        let worker = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))?;
        made = made.add(worker);
    }
    Ok(made)
}

fn upgrade_once() -> Result<u16> {
    let (mut stream, mut reader) = live::connect()?;
    live::offer_upgrade(&mut stream, &mut reader, "websocket")
}

/// The `handshake` events in `events`, on the frontend and backend legs.
fn handshakes_per_leg(events: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("the daemon wrote no {}", events.display()))?;
    let (mut frontend, mut backend) = (0, 0);
    for line in text.lines() {
        let event: Value = serde_json::from_str(line)
            .with_context(|| format!("the daemon wrote a line that is not JSON: {line}"))?;
        if event["event_type"] != "handshake" {
            continue;
        }
        match event["flow"]["role"].as_str() {
            Some("frontend") => frontend += 1,
            Some("backend") => backend += 1,
            _ => {}
        }
    }
    Ok((frontend, backend))
}
