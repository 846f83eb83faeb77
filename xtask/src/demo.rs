//! `cargo xtask demo`: the Proxmox Backup Server case, live. A backup client
//! starts a backup through Caddy; the backend answers like Proxmox Backup
//! Server, with a 101 that has no `Connection`; Caddy hands the client an
//! empty 200; the auditor, watching both of Caddy's legs, says why.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    client::{send_offer, Offer, Received},
    proxy::{Proxy, RunningProxy},
    ProxyLab, BACKEND_PORT, CLIENT_ADDR, PROXY_PORT,
};
use serde_json::Value;

use crate::{
    daemon::{check_interrupt, interrupted, teardown_on_interrupt, PrintedEvent, RunningAuditor},
    setup,
};

const RULE: &str = "upgrade-101-missing-connection-option";
const CAPTURE_STARTUP: Duration = Duration::from_secs(20);
const EVENT_WAIT: Duration = Duration::from_secs(10);

pub fn demo(root: &Path) -> Result<()> {
    if !setup::is_root() {
        bail!(
            "cargo xtask demo needs root: it creates network namespaces, starts Caddy in one \
             and loads the auditor's eBPF program. Run it as root (`sudo cargo xtask demo`)."
        );
    }
    setup::ensure_test_packages()?;
    let auditor = crate::build(root)?;
    teardown_on_interrupt()?;
    let shown = show(root, &auditor);
    // The lab is gone by now: everything `show` started was dropped.
    if interrupted() {
        bail!("interrupted; the auditor, Caddy and the namespaces were removed");
    }
    shown
}

fn show(root: &Path, auditor: &Path) -> Result<()> {
    step(
        1,
        "the lab: three network namespaces, nothing reachable from the host",
    );
    let lab = ProxyLab::new();
    let backend =
        RunningBackend::start(&lab, Backend::ProxmoxBackup).context("cannot start the backend")?;
    let caddy = RunningProxy::start(&lab, Proxy::Caddy).context("cannot start Caddy")?;
    println!(
        "  backup client {CLIENT_ADDR}  →  Caddy {}  →  backend {}",
        ProxyLab::proxy_front(),
        ProxyLab::backend_addr()
    );
    println!("  the backend answers like Proxmox Backup Server: a 101 with no `Connection` field");
    check_interrupt()?;

    step(2, "the auditor, watching both of Caddy's legs");
    let events_file = EventsFile::new()?;
    let mut args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);
    args.extend(
        [
            "--format",
            "pretty",
            "--output",
            "stdout",
            "--output",
            &format!("file:{}", events_file.path.display()),
        ]
        .map(str::to_owned),
    );
    println!(
        "  ip netns exec {} {} {}",
        lab.proxy.name,
        auditor.strip_prefix(root).unwrap_or(auditor).display(),
        args.join(" ")
    );
    let mut daemon = RunningAuditor::start(&lab.proxy, auditor, &args)?;
    daemon.wait_for_log("capture started", CAPTURE_STARTUP)?;
    println!("  capture started");
    check_interrupt()?;

    step(3, "the backup client starts a backup through Caddy");
    let offer = Offer::proxmox_backup();
    println!("  it asks:");
    for line in [
        format!("GET {} HTTP/1.1", offer.target),
        format!("Host: {}", ProxyLab::proxy_front()),
        format!("Upgrade: {}", offer.protocol),
        "Connection: Upgrade".to_owned(),
    ] {
        println!("    {line}");
    }
    let received = send_offer(&lab, &offer).context("the backup client's request failed")?;
    println!("  it receives:");
    print_received(&received);
    check_interrupt()?;

    step(4, "what the auditor saw on Caddy's two legs");
    let events = daemon.wait_for_events_in(&events_file.path, EVENT_WAIT, |events| {
        alert_for(events, RULE).is_some()
            && events.iter().any(|e| {
                e.event["event_type"] == "handshake" && e.event["flow"]["role"] == "frontend"
            })
    })?;
    // In the order of the story: what Caddy got, then what it passed on.
    for role in ["backend", "frontend"] {
        for handshake in events
            .iter()
            .filter(|e| e.event["event_type"] == "handshake" && e.event["flow"]["role"] == role)
        {
            print_handshake(&handshake.event);
        }
    }
    let alert = alert_for(&events, RULE).expect("waited for the alert");
    // Stopped now so that everything it printed has been read.
    let status = daemon.stop()?;
    println!();
    println!("  what it printed for a person (`--format pretty`):");
    for line in pretty_block(&daemon.printed(), RULE) {
        println!("  {line}");
    }
    println!();
    println!("  the same alert as your log pipeline receives it, one JSON line:");
    println!("{}", alert.line);

    step(5, "teardown");
    println!("  auditor stopped by SIGINT ({status})");
    let namespaces = [&lab.client, &lab.proxy, &lab.backend].map(|netns| netns.name.clone());
    drop((caddy, backend, lab));
    let left: Vec<&String> = namespaces
        .iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .collect();
    if !left.is_empty() {
        bail!("could not delete the namespaces {left:?}: `ip netns del` them");
    }
    println!(
        "  Caddy and the backend stopped, the namespaces {} deleted",
        namespaces.join(", ")
    );
    Ok(())
}

fn step(number: u32, title: &str) {
    println!("\n[{number}/5] {title}");
}

fn print_received(received: &Received) {
    println!("    HTTP {}", received.status);
    for (name, value) in &received.headers {
        println!("    {name}: {value}");
    }
    let verdict = if received.status == 101 && received.bytes_flow {
        "101, and bytes flow through the tunnel: the backup would work".to_owned()
    } else if received.status == 200 && received.body.is_empty() {
        "HTTP 200, empty body: the backup fails for no visible reason".to_owned()
    } else {
        format!(
            "HTTP {}, {} bytes of body: the backup fails",
            received.status,
            received.body.len()
        )
    };
    println!("  → {verdict}");
}

fn alert_for<'a>(events: &'a [PrintedEvent], rule: &str) -> Option<&'a PrintedEvent> {
    events
        .iter()
        .find(|e| e.event["event_type"] == "alert" && e.event["alert"]["rule"] == rule)
}

/// One handshake event on one line: its leg and its outcome.
fn print_handshake(event: &Value) {
    let handshake = &event["handshake"];
    let status = &event["http"]["response"]["status"];
    let outcome = match text(&handshake["outcome"]) {
        "switched" => format!("{status}, switched to {}", text(&handshake["protocol"])),
        "declined" => format!("{status}, upgrade declined"),
        other => other.to_owned(),
    };
    let leg = format!("{} leg", text(&event["flow"]["role"]));
    println!("  {leg:<13}{outcome}");
}

/// The block `--format pretty` printed for the alert of `rule`: its first
/// line (`TIME SEVERITY RULE`) and the indented lines after it.
fn pretty_block<'a>(printed: &'a [String], rule: &str) -> Vec<&'a str> {
    let Some(first) = printed
        .iter()
        .position(|line| line.split_whitespace().skip(2).eq([rule]))
    else {
        return Vec::new();
    };
    let details = printed[first + 1..]
        .iter()
        .take_while(|line| line.starts_with("  "));
    std::iter::once(&printed[first])
        .chain(details)
        .map(String::as_str)
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// Where the demo's auditor also writes its events as JSON lines; removed on
/// drop.
struct EventsFile {
    dir: PathBuf,
    path: PathBuf,
}

impl EventsFile {
    fn new() -> Result<EventsFile> {
        let dir = std::env::temp_dir().join(format!("auditor-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("events.json");
        Ok(EventsFile { dir, path })
    }
}

impl Drop for EventsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
