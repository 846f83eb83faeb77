//! Storms faster than the lab makes them: a live storm's packets on both of
//! nginx's legs, recorded by tcpdump, are sent again by tcpreplay into a
//! namespace of their own, paced at the target rate and then as fast as
//! tcpreplay sends, while a fresh daemon with the default configuration
//! watches the receiving end. Each loop over the recording gets fresh
//! addresses (`--unique-ip`), so it is new traffic to the daemon, which
//! should report what `auditor replay` finds in the recording, once per loop.
//! Nothing there answers the packets: the namespace has no addresses.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lab::{netns::NetNs, ProxyLab, BACKEND_PORT, PROXY_PORT};

use super::{generate, handshakes_per_leg, DRAIN};
use crate::bench::{live, tcpdump::ProxyLegs, Context};
use crate::daemon::check_interrupt;

/// Commands this needs beyond the live lab's, and their Debian packages.
pub const COMMANDS: [(&str, &str); 4] = [
    ("tcpdump", "tcpdump"),
    ("tcpreplay", "tcpreplay"),
    ("mergecap", "wireshark-common"),
    ("capinfos", "wireshark-common"),
];

/// A paced injection asks for this much more than its rate, so that what
/// tcpreplay sends, with its pacing error, is not below it.
pub const PACING_HEADROOM: f64 = 1.05;
/// The veth pair of the injection namespace: tcpreplay sends on the first,
/// the daemon watches the second.
const SENDER_IF: &str = "inject-send";
const WATCHED_IF: &str = "inject-watch";
/// Time for the last connections of a recorded storm to close.
const LAST_CLOSES: Duration = Duration::from_secs(1);

/// A recorded live storm.
pub struct Recording {
    path: PathBuf,
    packets: u64,
    /// Upgrades a second while it was recorded.
    rate: f64,
    /// `handshake` events `auditor replay` finds in it, per leg.
    handshakes: (u64, u64),
}

impl Recording {
    /// The loops of the recording that make `seconds` at `rate` upgrades a second.
    pub fn loops_for(&self, rate: f64, seconds: f64) -> u32 {
        (rate * seconds / self.handshakes.0.max(1) as f64).ceil() as u32
    }

    pub fn summary(&self) -> String {
        format!(
            "recorded at {:.0} upgrades/s: {} packets, {} handshakes on the frontend leg and {} \
             on the backend leg by `auditor replay`",
            self.rate, self.packets, self.handshakes.0, self.handshakes.1
        )
    }
}

/// One injection: how fast it went, and what the daemon saw.
pub struct Injection {
    /// The rate asked for; None for as fast as tcpreplay sends.
    pub paced_at: Option<f64>,
    /// Upgrades a second sent, by tcpreplay's own timing.
    pub rate: f64,
    pub seconds: f64,
    /// What the daemon should report, per leg: the recording's, once per loop.
    pub expected: (u64, u64),
    pub handshakes: (u64, u64),
    pub ring_buffer_full: u64,
}

impl Injection {
    pub fn lost_anything(&self) -> bool {
        self.handshakes.0 < self.expected.0
            || self.handshakes.1 < self.expected.1
            || self.ring_buffer_full > 0
    }

    pub fn summary(&self) -> String {
        let paced = match self.paced_at {
            Some(rate) => format!("paced at {rate:.0}/s"),
            None => "top speed".to_owned(),
        };
        format!(
            "{paced}: {:.0} upgrades/s for {:.1} s; handshakes frontend {} of {}, backend {} of \
             {}; ring buffer full {}",
            self.rate,
            self.seconds,
            self.handshakes.0,
            self.expected.0,
            self.handshakes.1,
            self.expected.1,
            self.ring_buffer_full
        )
    }
}

/// A live storm of `duration` through the lab, recorded on both of nginx's
/// legs into one file, and what `auditor replay` finds in it.
pub fn record(
    context: &mut Context,
    lab: &ProxyLab,
    auditor: &Path,
    duration: Duration,
) -> Result<Recording> {
    check_interrupt()?;
    let legs = ProxyLegs::record(context, lab, "storm")?;
    let started = Instant::now();
    let made = generate(lab, None, duration)?;
    let rate = made.upgrades as f64 / started.elapsed().as_secs_f64();
    thread::sleep(LAST_CLOSES);
    let path = context.out_dir.join("storm.pcap");
    legs.merge_into(context, &path)?;
    let packets = packets_in(context, &path)?;

    let events = context.out_dir.join("storm-replay.jsonl");
    let mut replay = Command::new(auditor);
    replay
        .args(["replay", "--port", &format!("{PROXY_PORT}:frontend")])
        .args(["--port", &format!("{BACKEND_PORT}:backend")])
        .arg(&path);
    context.run_into(&mut replay, &events)?;
    let handshakes = handshakes_per_leg(&events)?;
    if handshakes.0 < made.upgrades {
        bail!(
            "the recording holds {} handshakes on the frontend leg where the storm made {} \
             upgrades: tcpdump missed packets",
            handshakes.0,
            made.upgrades
        );
    }
    Ok(Recording {
        path,
        packets,
        rate,
        handshakes,
    })
}

/// Sends `loops` loops of `recording` to a fresh daemon, paced at `paced_at`
/// upgrades a second or as fast as tcpreplay sends, and counts what the
/// daemon reported.
pub fn inject(
    context: &mut Context,
    auditor: &Path,
    recording: &Recording,
    paced_at: Option<f64>,
    loops: u32,
) -> Result<Injection> {
    check_interrupt()?;
    let netns = NetNs::new();
    netns.ip(&[
        "link", "add", SENDER_IF, "type", "veth", "peer", "name", WATCHED_IF,
    ]);
    for interface in [SENDER_IF, WATCHED_IF] {
        // Room for any frame tcpdump recorded, segmentation offload included.
        netns.ip(&["link", "set", interface, "mtu", "65535", "up"]);
    }
    let name = if paced_at.is_some() { "paced" } else { "top" };
    let events = context.out_dir.join(format!("storm-injected-{name}.jsonl"));
    // The daemon appends to its output file.
    let _ = std::fs::remove_file(&events);
    let args = [
        "run",
        "--interface",
        WATCHED_IF,
        "--port",
        &format!("{PROXY_PORT}:frontend"),
        "--port",
        &format!("{BACKEND_PORT}:backend"),
        "--output",
        &format!("file:{}", events.display()),
    ]
    .map(str::to_owned);
    let mut daemon = live::start_daemon(context, &netns, auditor, &args)?;

    let mut tcpreplay = netns.command("tcpreplay");
    tcpreplay
        .args(["--intf1", SENDER_IF, "--preload-pcap", "--unique-ip"])
        .args(["--loop", &loops.to_string()]);
    match paced_at {
        // Packets a second keep the pace better than a multiple of the
        // recording's own timing, which tcpreplay falls behind.
        Some(rate) => {
            let per_upgrade = recording.packets as f64 / recording.handshakes.0.max(1) as f64;
            let packets_per_second = rate * PACING_HEADROOM * per_upgrade;
            tcpreplay.args(["--pps", &format!("{packets_per_second:.0}")])
        }
        None => tcpreplay.arg("--topspeed"),
    };
    tcpreplay.arg(&recording.path);
    let (output, _) = context.run(&mut tcpreplay)?;
    let seconds = sent_in_seconds(&String::from_utf8_lossy(&output.stdout))?;
    thread::sleep(DRAIN);
    daemon.stop()?;
    let counters = live::final_counters(&mut daemon)?;
    let expected = (
        recording.handshakes.0 * u64::from(loops),
        recording.handshakes.1 * u64::from(loops),
    );
    Ok(Injection {
        paced_at,
        rate: expected.0 as f64 / seconds,
        seconds,
        expected,
        handshakes: handshakes_per_leg(&events)?,
        ring_buffer_full: live::number_after(&counters, "ring_buffer_full=")?,
    })
}

/// The packets in the capture at `path`, by capinfos.
fn packets_in(context: &mut Context, path: &Path) -> Result<u64> {
    let mut capinfos = Command::new("capinfos");
    capinfos.args(["-M", "-c"]).arg(path);
    let (output, _) = context.run(&mut capinfos)?;
    let report = String::from_utf8_lossy(&output.stdout);
    report
        .lines()
        .find_map(|line| line.strip_prefix("Number of packets:")?.trim().parse().ok())
        .with_context(|| format!("capinfos reported no packet count: {report}"))
}

/// The seconds in tcpreplay's `Actual: N packets (B bytes) sent in S seconds`.
fn sent_in_seconds(report: &str) -> Result<f64> {
    report
        .lines()
        .find_map(|line| {
            let (_, rest) = line
                .trim()
                .strip_prefix("Actual:")?
                .split_once("sent in ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .filter(|seconds| *seconds > 0.0)
        .with_context(|| format!("tcpreplay reported no time sending: {report}"))
}

#[cfg(test)]
mod tests {
    use super::sent_in_seconds;

    #[test]
    fn reads_the_time_tcpreplay_took() {
        let report = "Actual: 361893 packets (145011636 bytes) sent in 0.664598 seconds\n\
                      Rated: 218193240.1 Bps, 1745.54 Mbps, 544529.14 pps\n";
        assert_eq!(sent_in_seconds(report).unwrap(), 0.664598);
        assert!(sent_in_seconds("Actual: 0 packets (0 bytes) sent in 0.000000 seconds").is_err());
        assert!(sent_in_seconds("tcpreplay: no such device").is_err());
    }
}
