//! `cargo xtask demo`: the Proxmox Backup Server case, live. A backup client
//! starts a backup through Caddy; the backend answers like Proxmox Backup
//! Server, with a 101 that has no `Connection`; Caddy hands the client an
//! empty 200; the auditor, watching both of Caddy's legs, says why.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    client::{send_offer, Offer, Received},
    proxy::{Proxy, RunningProxy},
    ProxyLab, BACKEND_PORT, CLIENT_ADDR, PROXY_PORT,
};
use serde_json::Value;

use crate::{
    daemon::{
        check_interrupt, interrupted, teardown_on_interrupt, watching_proxy_legs, PrintedEvent,
        RunningAuditor,
    },
    setup,
};

const RULE: &str = "upgrade-101-missing-connection-option";
const CAPTURE_STARTUP: Duration = Duration::from_secs(20);
const EVENT_WAIT: Duration = Duration::from_secs(10);
const LINE_WIDTH: usize = 80;
const LABEL_WIDTH: usize = 12;

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
    let args = watching_proxy_legs(PROXY_PORT, BACKEND_PORT);
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
    let events = daemon.wait_for_events(EVENT_WAIT, |events| {
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
    println!();
    print_alert(&alert.event);
    println!();
    println!("  the same alert as your log pipeline receives it, one JSON line:");
    println!("{}", alert.line);

    step(5, "teardown");
    let status = daemon.stop()?;
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
    labelled(&leg, &outcome);
}

/// `the ROLE leg, SRC → DEST on INTERFACE`, without the parts it lacks.
fn flow_summary(flow: &Value) -> String {
    let leg = match flow["role"].as_str() {
        Some(role) => format!("the {role} leg, "),
        None => String::new(),
    };
    let interface = match flow["interface"].as_str() {
        Some(interface) => format!(" on {interface}"),
        None => String::new(),
    };
    format!(
        "{leg}{}:{} → {}:{}{interface}",
        text(&flow["src_ip"]),
        flow["src_port"],
        text(&flow["dest_ip"]),
        flow["dest_port"]
    )
}

/// One alert event, for a person: rule and severity, where it was seen,
/// what, the spec, the fix, and which proxies break or tolerate it.
fn print_alert(event: &Value) {
    let alert = &event["alert"];
    println!(
        "  {}  {}",
        text(&alert["severity"]).to_uppercase(),
        text(&alert["rule"])
    );
    labelled("seen on", &flow_summary(&event["flow"]));
    labelled("what", text(&alert["message"]));
    labelled("spec", text(&alert["spec"]));
    labelled("fix", text(&alert["remediation"]));
    let impacts = alert["proxy_impact"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for outcome in ["breaks", "tolerates"] {
        let mut label = outcome;
        for impact in impacts.iter().filter(|impact| impact["outcome"] == outcome) {
            labelled(
                label,
                &format!("{}: {}", text(&impact["proxy"]), text(&impact["effect"])),
            );
            label = "";
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// `label` in a column, then `content` wrapped to the line width.
fn labelled(label: &str, content: &str) {
    let indent = 2 + LABEL_WIDTH + 1;
    let mut line = format!("  {label:<LABEL_WIDTH$} ");
    let mut line_is_empty = true;
    for word in content.split_whitespace() {
        if !line_is_empty && line.chars().count() + 1 + word.chars().count() > LINE_WIDTH {
            println!("{line}");
            line = " ".repeat(indent);
            line_is_empty = true;
        }
        if !line_is_empty {
            line.push(' ');
        }
        line.push_str(word);
        line_is_empty = false;
    }
    println!("{line}");
}
