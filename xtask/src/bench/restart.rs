//! A daemon restarted in the middle of a storm through HAProxy, which
//! reuses its backend connections: how much of what a replay of the whole
//! recording judges after the restart the new daemon judges too, and
//! whether it raises any alert the replay does not.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    proxy::{Proxy, RunningProxy},
    ProxyLab, BACKEND_PORT, PROXY_PORT,
};
use serde_json::Value;

use super::{live, tcpdump::ProxyLegs, BenchResult, Benchmark, Context, Target};
use crate::daemon::{check_interrupt, interrupted, teardown_on_interrupt, RunningAuditor};

pub const BENCHMARK: Benchmark = Benchmark {
    name: "restart",
    about: "`auditor run` on both legs of HAProxy with `http-reuse always` in front of a \
            keep-alive backend that answers WebSocket offers correctly and others like Proxmox \
            Backup Server (a 101 without `Connection`, which HAProxy answers with a 502), while \
            16 threads in the client namespace, half offering WebSocket and half Proxmox's \
            protocol, each open a connection, send a plain POST and, 20 ms later, the offer, \
            one connection after another, for 16 s \
            (--quick: 4 s); tcpdump records both legs. Halfway, the daemon is stopped and a new \
            one started. An offer is judged when its `handshake` event says \
            `capture.complete`. Both daemons and the replay read one configuration, the lab's \
            ports and a rate limit no storm reaches (alerts are compared one by one). The \
            figure is the offers the new daemon judged; the baseline, \
            those `auditor replay` of the whole recording judges from the new daemon's first \
            event on each leg on; the offers on connections already open at the restart are counted \
            apart. Target: at least 0.99 of the replay's, and no alert the replay does not \
            raise for the same flow.",
    needs_root: true,
    run,
};

const COMMANDS: [(&str, &str); 3] = [
    ("haproxy", "haproxy"),
    ("tcpdump", "tcpdump"),
    ("mergecap", "wireshark-common"),
];
const THREADS: u32 = 16;
/// What the threads offer, in turn: WebSocket, which the backend and HAProxy
/// pass on, and Proxmox's protocol, whose 101 HAProxy answers with a 502.
const OFFERED: [&str; 2] = ["websocket", "proxmox-backup-protocol-v1"];
/// Between a client's POST and its offer: most connections are open, and
/// their backend connections idle in HAProxy's pool, at any moment.
const PAUSE: Duration = Duration::from_millis(20);
/// Time for the daemon and tcpdump to catch up with the end of the storm.
const DRAIN: Duration = Duration::from_secs(2);

/// An offer as events name it: the leg's role and the client's endpoint.
type FlowKey = (String, String, u64);

/// What one output (a daemon's, or the replay's) says of the offers.
#[derive(Default)]
struct Offers {
    /// Judged (`capture.complete`), by flow, in the window compared.
    judged: BTreeSet<FlowKey>,
    /// Offers on connections open before capture started, judged or not.
    midstream: BTreeSet<FlowKey>,
    /// The judged ones among them.
    judged_midstream: BTreeSet<FlowKey>,
    /// Each alert's flow and rule, whenever it was raised: the replay's
    /// timestamps differ a little from the daemon's.
    alerts: BTreeSet<(FlowKey, String)>,
}

impl Offers {
    /// The offers in `events` judged from `since` on, the first time of
    /// each leg, and every alert.
    fn of(events: &[Value], since: &BTreeMap<String, String>) -> Offers {
        let mut offers = Offers::default();
        for event in events {
            let flow = &event["flow"];
            // RFC 3339 timestamps in UTC compare as text.
            let seen = flow["role"].as_str().and_then(|role| since.get(role));
            let in_time = seen.is_some_and(|since| event["timestamp"].as_str() >= Some(since));
            let key = (
                flow["role"].as_str().unwrap_or_default().to_owned(),
                flow["src_ip"].as_str().unwrap_or_default().to_owned(),
                flow["src_port"].as_u64().unwrap_or_default(),
            );
            let capture = &event["capture"];
            match event["event_type"].as_str() {
                Some("handshake") if in_time => {
                    let midstream = capture["midstream"] == true;
                    if midstream {
                        offers.midstream.insert(key.clone());
                    }
                    if capture["complete"] == true {
                        if midstream {
                            offers.judged_midstream.insert(key.clone());
                        }
                        offers.judged.insert(key);
                    }
                }
                Some("alert") => {
                    let rule = event["alert"]["rule"].as_str().unwrap_or_default();
                    offers.alerts.insert((key, rule.to_owned()));
                }
                _ => {}
            }
        }
        offers
    }
}

/// The events at `path`.
fn events_in(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("no events in {}", path.display()))?;
    text.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

/// The time of the first event on each leg: from then on the daemon
/// watched it (it attaches to one interface after the other).
fn first_on_each_leg(events: &[Value]) -> BTreeMap<String, String> {
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    for event in events {
        let (Some(role), Some(at)) = (event["flow"]["role"].as_str(), event["timestamp"].as_str())
        else {
            continue;
        };
        let earliest = first
            .entry(role.to_owned())
            .or_insert_with(|| at.to_owned());
        if at < earliest.as_str() {
            *earliest = at.to_owned();
        }
    }
    first
}

fn run(context: &mut Context) -> Result<Vec<BenchResult>> {
    crate::setup::ensure_packages(&COMMANDS)?;
    let auditor = context.auditor()?;
    teardown_on_interrupt()?;
    let duration = Duration::from_secs(if context.quick { 4 } else { 16 });
    let lab = ProxyLab::new();
    let _backend = RunningBackend::start(&lab, Backend::KeepAlive)?;
    let _haproxy =
        RunningProxy::start(&lab, Proxy::HAProxyPooled).context("cannot start HAProxy")?;
    let legs = ProxyLegs::record(context, &lab, "restart")?;

    let config = context.out_dir.join("restart.toml");
    // The lab's ports, and a rate limit no storm here reaches: each alert
    // is compared with the replay's.
    let configuration = format!(
        "[[ports]]\nport = {PROXY_PORT}\nrole = \"frontend\"\n\
         [[ports]]\nport = {BACKEND_PORT}\nrole = \"backend\"\n\
         [rate_limit]\nmax_alerts = 1000000000\n"
    );
    std::fs::write(&config, configuration)?;
    let before = context.out_dir.join("restart-events-before.jsonl");
    let after = context.out_dir.join("restart-events-after.jsonl");
    let mut daemon = start_daemon(context, &lab, &auditor, &config, &before)?;
    let offers_made = thread::scope(|scope| -> Result<_> {
        let storm = scope.spawn(|| storm(&lab, duration));
        thread::sleep(duration / 2);
        daemon.stop()?;
        daemon = start_daemon(context, &lab, &auditor, &config, &after)?;
        storm
            .join()
            .map_err(|_| anyhow::anyhow!("the storm panicked"))
    })?;
    thread::sleep(DRAIN);
    daemon.stop()?;
    let recording = context.out_dir.join("restart.pcap");
    legs.merge_into(context, &recording)?;
    let replayed = context.out_dir.join("restart-replay.jsonl");
    let mut replay = Command::new(&auditor);
    replay
        .args(["replay", "--config"])
        .arg(&config)
        .arg(&recording);
    context.run_into(&mut replay, &replayed)?;

    let after = events_in(&after)?;
    let restarted_at = first_on_each_leg(&after);
    let new_daemon = Offers::of(&after, &restarted_at);
    let replay = Offers::of(&events_in(&replayed)?, &restarted_at);
    // Offers on connections open at the restart: what the replay judged of
    // them, and what the new daemon did.
    let open_judged_by_replay = replay.judged.intersection(&new_daemon.midstream).count();
    let open_judged = replay
        .judged
        .intersection(&new_daemon.judged_midstream)
        .count();
    let false_alerts = new_daemon.alerts.difference(&replay.alerts).count();
    let work = format!(
        "{offers_made} offers made in {} s; the daemon restarted after {} s; from the new \
         daemon's first event on each leg on, the replay judged {} offers and the new daemon \
         {} ({open_judged} of the {open_judged_by_replay} the replay judged on connections open \
         at the restart); alerts: the new daemon {}, the replay {} (all of its run)",
        duration.as_secs(),
        (duration / 2).as_secs(),
        replay.judged.len(),
        new_daemon.judged.len(),
        new_daemon.alerts.len(),
        replay.alerts.len()
    );
    Ok(vec![
        BenchResult::new(
            "restart.judged_offers",
            new_daemon.judged.len() as f64,
            "offers",
        )
        .against(replay.judged.len() as f64)
        .target(Target::RatioAtLeast(0.99))
        .note(format!(
            "baseline: what `auditor replay` of the whole recording judges from the new \
             daemon's first event on each leg on; {work}"
        )),
        BenchResult::new(
            "restart.judged_on_open_connections",
            open_judged as f64,
            "offers",
        )
        .against(open_judged_by_replay as f64)
        .note(
            "baseline: the offers the replay judged on the connections the new daemon picked \
             up mid-stream (`capture.midstream`). It leaves unjudged those answered with \
             something else than a 101 (HAProxy's 502) before their connection was in step: \
             their pairing is not certain (docs/rules.md)",
        ),
        BenchResult::new("restart.false_alerts", false_alerts as f64, "alerts")
            .target(Target::FigureAtMost(0.0))
            .note("alerts of the new daemon whose flow and rule the replay does not raise"),
    ])
}

/// The daemon on both of HAProxy's legs with `config`, writing to `events`.
fn start_daemon(
    context: &mut Context,
    lab: &ProxyLab,
    auditor: &Path,
    config: &Path,
    events: &Path,
) -> Result<RunningAuditor> {
    check_interrupt()?;
    // The daemon appends to its output file.
    let _ = std::fs::remove_file(events);
    let mut args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);
    args.push("--config".to_owned());
    args.push(config.display().to_string());
    args.push("--output".to_owned());
    args.push(format!("file:{}", events.display()));
    live::start_daemon(context, &lab.proxy, auditor, &args)
}

/// [`THREADS`] threads in the client namespace, each opening one connection
/// after another for `duration`: a plain POST, then, after [`PAUSE`], a
/// Proxmox offer. The offers answered, whatever the answer.
fn storm(lab: &ProxyLab, duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let protocol = OFFERED[thread as usize % OFFERED.len()];
            lab.client.spawn(move || {
                let mut offers = 0;
                while Instant::now() < deadline && !interrupted() {
                    if post_then_offer(protocol).is_ok() {
                        offers += 1;
                    }
                }
                offers
            })
        })
        .collect();
    workers.into_iter().filter_map(|w| w.join().ok()).sum()
}

fn post_then_offer(protocol: &str) -> Result<u16> {
    let (mut stream, mut reader) = live::connect()?;
    live::post(&mut stream, &mut reader, b"{}")?;
    thread::sleep(PAUSE);
    live::offer_upgrade(&mut stream, &mut reader, protocol)
}
