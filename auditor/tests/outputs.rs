//! `auditor run`'s outputs, live on `lo` in a lab namespace: stdout, a file
//! and a real rsyslog at once; logrotate; SIGKILL; a stdout nobody reads.

mod support;

use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::signal::Signal,
    unistd::pipe2,
};
use serde_json::Value;
use support::{
    daemon::{Daemon, AUDITOR},
    lab::NetNs,
    require_privileges,
    rsyslog::Rsyslog,
    schema::valid_events,
    traffic::proxmox_upgrade,
};
use tempfile::TempDir;

const STARTUP: Duration = Duration::from_secs(20);
const ARRIVAL: Duration = Duration::from_secs(10);

fn server() -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), 8080)
}

/// A configuration watching port 8080 on `lo`, with `extra` appended.
fn config(dir: &TempDir, extra: &str) -> String {
    let path = dir.path().join("auditor.toml");
    let text = format!("interfaces = [\"lo\"]\n[[ports]]\nport = 8080\n{extra}");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn start(netns: &NetNs, config: &str, outputs: &[String]) -> Daemon {
    let mut args = vec!["run", "--config", config];
    for output in outputs {
        args.extend(["--output", output]);
    }
    let mut daemon = Daemon::start(netns, &args);
    daemon.wait_for("capture started", STARTUP);
    daemon
}

/// Proxmox-style exchanges from inside `netns`; the clients' addresses.
fn proxmox_upgrades(netns: &NetNs, count: usize) -> Vec<SocketAddr> {
    netns
        .spawn(move || {
            (0..count)
                .map(|_| proxmox_upgrade(server(), "/api2/json/backup"))
                .collect()
        })
        .join()
        .unwrap()
}

/// The events in the file at `path`, each checked against the schema.
fn file_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    valid_events(text.lines())
}

/// The events in the file at `path` while the daemon may be writing it: a
/// last line without its newline may still be growing.
fn events_so_far(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .collect()
}

/// Waits until the file at `path` holds `count` events of `event_type`.
fn wait_for_events(path: &Path, event_type: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let events = events_so_far(path);
        if of_type(&events, event_type).len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {event_type} events expected in {}: {events:#?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn client_port(alert: &Value) -> u16 {
    alert["flow"]["src_port"].as_u64().unwrap() as u16
}

#[test]
#[ignore = "needs root"]
fn an_alert_reaches_stdout_a_file_and_a_real_rsyslog_alike() {
    require_privileges();
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let netns = NetNs::new();
    let daemon = start(
        &netns,
        &config(&dir, ""),
        &[
            "stdout".to_owned(),
            format!("file:{}", file.display()),
            format!("syslog:{}", rsyslog.socket().display()),
        ],
    );
    let pid = daemon.pid().to_string();
    proxmox_upgrades(&netns, 1);
    wait_for_events(&file, "alert", 1);
    rsyslog.wait_for(|message| message.msgid == "alert", ARRIVAL);
    daemon.signal(Signal::SIGINT);
    let (status, log, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{log}");

    let file_lines = std::fs::read_to_string(&file).unwrap();
    let file_lines: Vec<&str> = file_lines.lines().collect();
    assert_eq!(stdout, file_lines, "stdout and the file got the same lines");
    let events = valid_events(file_lines.iter().copied());
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["handshake", "alert"]);
    assert_eq!(
        events[1]["alert"]["rule"],
        "upgrade-101-missing-connection-option"
    );
    assert_eq!(events[1]["alert"]["severity"], "error");

    let messages = rsyslog.messages();
    let received: Vec<(u8, &str, &str)> = messages
        .iter()
        .map(|m| (m.priority, m.msgid.as_str(), m.msg.as_str()))
        .collect();
    // daemon.info for the handshake, daemon.err for an error alert; the
    // JSON whole, byte for byte.
    assert_eq!(
        received,
        [
            (30, "handshake", file_lines[0]),
            (27, "alert", file_lines[1])
        ]
    );
    for message in &messages {
        assert_eq!(message.app_name, "upgrade-auditor");
        assert_eq!(message.procid, pid, "the daemon's pid");
        assert_eq!(message.hostname, events[1]["host"], "the event's host");
        assert_eq!(message.structured_data, "-");
    }
}

#[test]
#[ignore = "needs root"]
fn after_a_rename_and_sighup_new_events_go_to_a_new_file_and_none_is_lost() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let rotated = dir.path().join("events.json.1");
    let netns = NetNs::new();
    let mut daemon = start(
        &netns,
        &config(&dir, ""),
        &[format!("file:{}", file.display())],
    );
    let before = proxmox_upgrades(&netns, 1);
    wait_for_events(&file, "alert", 1);
    std::fs::rename(&file, &rotated).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for("SIGHUP: outputs reopened", ARRIVAL);
    assert!(file.exists(), "a new file at the path");
    let after = proxmox_upgrades(&netns, 2);
    wait_for_events(&file, "alert", 2);
    daemon.signal(Signal::SIGINT);
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");

    for (path, clients) in [(&rotated, &before), (&file, &after)] {
        let events = file_events(path);
        let alerts: Vec<u16> = of_type(&events, "alert")
            .into_iter()
            .map(client_port)
            .collect();
        let handshakes: Vec<u16> = of_type(&events, "handshake")
            .into_iter()
            .map(client_port)
            .collect();
        let expected: Vec<u16> = clients.iter().map(SocketAddr::port).collect();
        assert_eq!(alerts, expected, "{}: {events:#?}", path.display());
        assert_eq!(handshakes, expected, "{}: {events:#?}", path.display());
        assert_eq!(events.len(), 2 * clients.len(), "{events:#?}");
    }
}

#[test]
#[ignore = "needs root"]
fn after_sigkill_the_file_holds_only_whole_json_lines() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let netns = NetNs::new();
    let daemon = start(
        &netns,
        &config(&dir, ""),
        &[format!("file:{}", file.display())],
    );
    let traffic = netns.spawn(|| {
        for _ in 0..200 {
            proxmox_upgrade(server(), "/api2/json/backup");
        }
    });
    wait_for_events(&file, "handshake", 20);
    daemon.signal(Signal::SIGKILL);
    let (status, _) = daemon.wait();
    assert_eq!(status.code(), None, "killed");
    traffic.join().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n'), "the last line is whole");
    let events = valid_events(text.lines());
    assert!(of_type(&events, "handshake").len() >= 20);
}

#[test]
#[ignore = "needs root"]
fn a_stdout_nobody_reads_holds_up_neither_capture_nor_the_file_nor_the_exit() {
    require_privileges();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.json");
    let config = config(
        &dir,
        "[rate_limit]\nmax_alerts = 1000\n[output]\nqueue_capacity = 4\n[reporting]\nloss_interval_secs = 1\n",
    );
    let (unread, stdout) = pipe2(OFlag::O_CLOEXEC).unwrap();
    // One page: a couple of events fill it.
    let resized = fcntl(unread.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    assert_eq!(resized, 4096);
    let netns = NetNs::new();
    let mut daemon = Daemon::start_with_stdout(
        &netns,
        &[
            "run",
            "--config",
            &config,
            "--output",
            "stdout",
            "--output",
            &format!("file:{}", file.display()),
        ],
        Stdio::from(stdout),
    );
    daemon.wait_for("capture started", STARTUP);
    // One after the other, each once the file has its alert: the file's
    // queue never holds more than a few events, while stdout's overflows.
    let exchanges = 40;
    let mut clients = Vec::new();
    let mut events = Vec::new();
    for n in 1..=exchanges {
        clients.extend(proxmox_upgrades(&netns, 1));
        events = wait_for_events(&file, "alert", n);
    }
    let deadline = Instant::now() + ARRIVAL;
    while output_drops(&events) == 0 {
        assert!(
            Instant::now() < deadline,
            "a loss event with output_drops: {events:#?}"
        );
        thread::sleep(Duration::from_millis(100));
        events = events_so_far(&file);
    }
    daemon.signal(Signal::SIGINT);
    let stopping = Instant::now();
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("output=stdout") && log.contains("took no event for 5s at shutdown"),
        "{log}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "stdout did not hold up the exit"
    );
    drop(unread);

    let events = file_events(&file);
    let expected: Vec<u16> = clients.iter().map(SocketAddr::port).collect();
    for event_type in ["handshake", "alert"] {
        let ports: Vec<u16> = of_type(&events, event_type)
            .into_iter()
            .map(client_port)
            .collect();
        assert_eq!(ports, expected, "every {event_type}, in order");
    }
    assert!(
        output_drops(&events) > exchanges as u64,
        "most of the events were dropped for stdout: {events:#?}"
    );
}

#[test]
fn an_output_that_cannot_be_opened_is_named_before_capture_starts() {
    let output = std::process::Command::new(AUDITOR)
        .args(["run", "--interface", "lo", "--output", "stdout"])
        .args(["--output", "file:/nonexistent/auditor/events.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "auditor: cannot open output file:/nonexistent/auditor/events.json: No such file or directory"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("capture started"), "{stderr}");
}

/// The sum of `output_drops` over the `loss` events.
fn output_drops(events: &[Value]) -> u64 {
    of_type(events, "loss")
        .iter()
        .map(|loss| loss["loss"]["output_drops"].as_u64().unwrap())
        .sum()
}
