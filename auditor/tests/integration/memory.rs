//! The memory bound the README gives, held against the worst case: every
//! connection stopped at the largest request head and the largest response
//! head the HTTP layer reads, with out-of-order bytes waiting behind a hole,
//! in replay and live. Peak resident memory must stay under the README's
//! formula for the configured limits.

use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use crate::support::{
    daemon::{ConfigFile, Daemon, AUDITOR},
    frames::RawSender,
    lab::VethLab,
    pcap_writer::{pcap, Conversation, Link, TcpPacket},
    replay::json_lines,
    require_privileges,
};
use serde_json::Value;

/// The README's per-connection cost of tracking, besides what the budget
/// bounds: the reassembly and HTTP entries of one connection.
const PER_CONNECTION: u64 = 1024;
/// The longest head the HTTP layer reads; one byte less stays unfinished.
const MAX_HEAD: usize = 64 * 1024;
/// What a process's allocator and one connection's heads in flight may add
/// over the formula's terms.
const SLACK: u64 = 8 << 20;

const CONNECTIONS: u16 = 300;
const BUDGET: u64 = 1 << 20;
const PER_CONNECTION_BUFFER: u64 = 64 * 1024;
const RING: u64 = 16 << 20;

fn config() -> ConfigFile {
    ConfigFile::new(
        "memory.toml",
        &format!(
            "[[ports]]\nport = 8080\n\
             [reassembly]\nmax_buffered_per_connection = {PER_CONNECTION_BUFFER}\n\
             max_buffered_total = {BUDGET}\n\
             [capture]\nring_buffer_bytes = {RING}\n\
             [reporting]\nloss_interval_secs = 1\n"
        ),
    )
}

/// A head of `len` bytes that starts with `first_line` and does not end.
fn unfinished_head(first_line: &str, len: usize) -> Vec<u8> {
    let mut head = first_line.as_bytes().to_vec();
    while head.len() < len {
        let line = format!("X-Pad-{}: {}\r\n", head.len(), "a".repeat(1000));
        head.extend_from_slice(line.as_bytes());
    }
    head.truncate(len);
    head
}

/// `connections` connections each at the worst case; the server's address
/// is no host's, so nothing answers.
fn worst_case(connections: u16) -> Vec<TcpPacket> {
    let request = unfinished_head("GET / HTTP/1.1\r\n", MAX_HEAD - 1);
    let response = unfinished_head("HTTP/1.1 200 OK\r\n", MAX_HEAD - 1);
    let out_of_order = vec![b'o'; PER_CONNECTION_BUFFER as usize - 1];
    let mut packets = Vec::new();
    for i in 0..connections {
        let client: SocketAddr = format!("10.231.0.1:{}", 20_000 + i).parse().unwrap();
        let server: SocketAddr = "10.231.0.99:8080".parse().unwrap();
        let mut conversation = Conversation::new(client, server)
            .with_clock(Conversation::START_NS + u64::from(i) * 1_000_000_000, 1_000);
        conversation.handshake();
        for piece in request.chunks(1400) {
            conversation.client_sends(piece);
        }
        for piece in response.chunks(1400) {
            conversation.server_sends(piece);
        }
        packets.extend(conversation.take_packets());
        // A hole the server never acknowledges, then bytes that wait behind it.
        conversation.client_sends(&[b'h'; 100]);
        conversation.take_packets();
        for piece in out_of_order.chunks(1400) {
            conversation.client_sends(piece);
        }
        packets.extend(conversation.take_packets());
    }
    packets
}

/// The README's bound on resident memory, over `base`, the process's own
/// before any connection (the ring buffer's mapping included).
fn bound(base: u64, connections: u16) -> u64 {
    base + u64::from(connections) * PER_CONNECTION + BUDGET + SLACK
}

fn assert_within_bound(peak: u64, base: u64) {
    let limit = bound(base, CONNECTIONS);
    assert!(
        peak <= limit,
        "peak {} MiB over the bound {} MiB (base {} MiB)",
        peak >> 20,
        limit >> 20,
        base >> 20
    );
}

/// `auditor replay --config CONFIG /dev/stdin` fed `capture`: its exit
/// status, standard output and peak resident memory in bytes, read before
/// the end of its input lets it finish. (`wait4`'s figure would include
/// the test process's own memory, which the child had until its `exec`.)
fn replay_measured(config: &ConfigFile, capture: &[u8]) -> (ExitStatus, String, u64) {
    let mut child = Command::new(AUDITOR)
        .args(["replay", "--config", config.arg(), "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start auditor replay");
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(capture).expect("write the capture");
    // What is left in the pipe is less than one connection's worth.
    thread::sleep(Duration::from_millis(500));
    let peak = resident(child.id(), "VmHWM");
    drop(stdin);
    let status = child.wait().unwrap();
    (status, reader.join().unwrap().unwrap(), peak)
}

fn loss_totals(events: &[Value], kind: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["event_type"] == "loss")
        .map(|e| e["loss"][kind].as_u64().unwrap())
        .sum()
}

#[test]
fn replay_of_the_worst_case_stays_under_the_bound() {
    let config = config();
    let idle = pcap(Link::Ethernet, &worst_case(1)[..3]);
    let (status, _, base) = replay_measured(&config, &idle);
    assert!(status.success());
    let capture = pcap(Link::Ethernet, &worst_case(CONNECTIONS));
    let held_without_bounds = capture.len() as u64;
    let (status, stdout, peak) = replay_measured(&config, &capture);
    assert!(status.success(), "{status}");
    assert_within_bound(peak, base);
    assert!(
        bound(base, CONNECTIONS) < base + held_without_bounds,
        "the bound must be below what holding everything would take"
    );
    let events = json_lines(&stdout);
    assert!(
        loss_totals(&events, "connections_evicted") > 0,
        "shedding is counted: {stdout}"
    );
}

#[test]
#[ignore = "needs root"]
fn live_capture_of_the_worst_case_stays_under_the_bound() {
    require_privileges();
    let lab = VethLab::new();
    let config = config();
    let mut daemon = Daemon::start(
        &lab.a,
        &["run", "--config", config.arg(), "--interface", &lab.a_if],
    );
    daemon.wait_for("capture started", Duration::from_secs(20));
    let base = resident(daemon.pid(), "VmRSS");
    let frames: Vec<Vec<u8>> = worst_case(CONNECTIONS)
        .iter()
        .map(|packet| packet.frame(Link::Ethernet))
        .collect();
    let a_if = lab.a_if.clone();
    lab.a
        .spawn(move || {
            let sender = RawSender::new(&a_if).unwrap();
            for (i, frame) in frames.iter().enumerate() {
                sender.send(frame).unwrap();
                // Paced so that the ring buffer is drained as it fills.
                if i % 64 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .join()
        .unwrap();
    thread::sleep(Duration::from_secs(2));
    let peak = resident(daemon.pid(), "VmHWM");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, _, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{status}");
    assert_within_bound(peak, base);
    let events: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        loss_totals(&events, "kernel_drops"),
        0,
        "every frame was seen"
    );
    assert!(loss_totals(&events, "connections_evicted") > 0);
}

/// A `/proc/PID/status` figure of `pid`, in bytes.
fn resident(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    kib * 1024
}
