//! `cargo xtask demo`: the Proxmox Backup Server case, live. A backup client
//! starts a backup through Caddy; the backend answers like Proxmox Backup
//! Server, with a 101 that has no `Connection`; Caddy hands the client an
//! empty 200; the auditor, watching both of Caddy's legs, says why.

use std::{
    ffi::c_int,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lab::{
    backend::{Backend, RunningBackend},
    client::{send_offer, Offer, Received},
    proxy::{Proxy, RunningProxy},
    ProxyLab, BACKEND_PORT, CLIENT_ADDR, PROXY_PORT,
};
use nix::{
    sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::Pid,
};
use serde_json::Value;

use crate::setup;

const RULE: &str = "upgrade-101-missing-connection-option";
const CAPTURE_STARTUP: Duration = Duration::from_secs(20);
const EVENT_WAIT: Duration = Duration::from_secs(10);
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often waits look at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);
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
    let mut daemon = RunningAuditor::start(&lab, root, auditor)?;
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

/// A line the auditor printed on stdout, and its JSON.
struct PrintedEvent {
    line: String,
    event: Value,
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

/// `auditor run` in the lab's proxy namespace, on both of the proxy's
/// interfaces, printing JSON events; stopped with SIGINT on drop.
struct RunningAuditor {
    child: Child,
    log: Receiver<String>,
    events: Receiver<String>,
    log_so_far: Vec<String>,
}

impl RunningAuditor {
    fn start(lab: &ProxyLab, root: &Path, auditor: &Path) -> Result<RunningAuditor> {
        let args = [
            "run".to_owned(),
            "--interface".to_owned(),
            ProxyLab::PROXY_CLIENT_IF.to_owned(),
            "--interface".to_owned(),
            ProxyLab::PROXY_BACKEND_IF.to_owned(),
            "--port".to_owned(),
            format!("{PROXY_PORT}:frontend"),
            "--port".to_owned(),
            format!("{BACKEND_PORT}:backend"),
        ];
        println!(
            "  ip netns exec {} {} {}",
            lab.proxy.name,
            auditor.strip_prefix(root).unwrap_or(auditor).display(),
            args.join(" ")
        );
        // `ip netns exec` execs the auditor: the child's pid is the daemon's.
        let mut child = lab
            .proxy
            .command(auditor)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", auditor.display()))?;
        let events = lines_of(child.stdout.take().expect("piped stdout"));
        let log = lines_of(child.stderr.take().expect("piped stderr"));
        Ok(RunningAuditor {
            child,
            log,
            events,
            log_so_far: Vec::new(),
        })
    }

    fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.log.recv_timeout(POLL) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log_so_far.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    check_interrupt()?;
                    bail!(
                        "the auditor exited before logging {needle:?}; its log:\n{}",
                        self.log_so_far.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    check_interrupt()?;
                    if Instant::now() > deadline {
                        bail!(
                            "the auditor did not log {needle:?} within {timeout:?}; its log:\n{}",
                            self.log_so_far.join("\n")
                        );
                    }
                }
            }
        }
    }

    /// The events printed so far and those that follow, until `enough`
    /// says they are.
    fn wait_for_events(
        &mut self,
        timeout: Duration,
        enough: impl Fn(&[PrintedEvent]) -> bool,
    ) -> Result<Vec<PrintedEvent>> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while !enough(&events) {
            match self.events.recv_timeout(POLL) {
                Ok(line) => {
                    let event = serde_json::from_str(&line).with_context(|| {
                        format!("the auditor printed a line that is not JSON: {line}")
                    })?;
                    events.push(PrintedEvent { line, event });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    check_interrupt()?;
                    self.log_so_far.extend(self.log.try_iter());
                    bail!(
                        "the auditor exited before the expected events; its log:\n{}",
                        self.log_so_far.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    check_interrupt()?;
                    if Instant::now() > deadline {
                        let lines: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();
                        bail!(
                            "the expected events did not come within {timeout:?}; it printed:\n{}",
                            lines.join("\n")
                        );
                    }
                }
            }
        }
        Ok(events)
    }

    /// SIGINT, as an operator would stop it, then its exit status; killed
    /// when it does not exit within [`STOP_WAIT`].
    fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(self.child.id().try_into()?);
        signal::kill(pid, Signal::SIGINT).context("cannot signal the auditor")?;
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the auditor did not stop within {STOP_WAIT:?} of SIGINT and was killed")
    }
}

impl Drop for RunningAuditor {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The lines `stream` delivers, read on their own thread.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From here on the first SIGINT or SIGTERM only raises a flag, which the
/// demo checks between steps and while it waits, so that the drops tear the
/// lab down; a second one terminates at once.
fn teardown_on_interrupt() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(note_interrupt),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for interrupt in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { signal::sigaction(interrupt, &action) }
            .with_context(|| format!("cannot handle {interrupt}"))?;
    }
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}
