//! The `auditor` binary as users run it: start-up, errors, signals.

mod support;

use std::{net::SocketAddr, process::Command, time::Duration};

use aya::programs::{SchedClassifier, TcAttachType};
use nix::sys::signal::Signal;
use support::{
    daemon::{logged_counter, logged_program_ids, Daemon, AUDITOR},
    lab::NetNs,
    require_privileges,
    schema::valid_events,
    traffic::{exchange, pattern, proxmox_upgrade},
};

const STARTUP: Duration = Duration::from_secs(20);

/// Ids of the programs attached to `lo` ingress in `netns`, asked of the kernel.
fn attached_to_loopback(netns: &NetNs) -> Vec<u32> {
    netns
        .spawn(|| {
            let (_, programs) =
                SchedClassifier::query_tcx("lo", TcAttachType::Ingress).expect("query tcx");
            programs.iter().map(|p| p.id()).collect()
        })
        .join()
        .unwrap()
}

/// Polls until nothing is attached to `lo` in `netns`: the kernel releases a
/// dead process's links asynchronously.
fn assert_detached(netns: &NetNs) {
    for _ in 0..50 {
        if attached_to_loopback(netns).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("programs still attached: {:?}", attached_to_loopback(netns));
}

fn start_on_loopback(netns: &NetNs, extra: &[&str]) -> (Daemon, Vec<u32>) {
    let mut args = vec!["run", "--interface", "lo", "--port", "8080"];
    args.extend_from_slice(extra);
    let mut daemon = Daemon::start(netns, &args);
    let started = daemon.wait_for("capture started", STARTUP);
    let ids = logged_program_ids(&started);
    let attached = attached_to_loopback(netns);
    assert_eq!(attached.len(), 1, "one program on lo: ingress only");
    assert!(
        ids.contains(&attached[0]),
        "the attached program is the daemon's"
    );
    (daemon, ids)
}

#[test]
#[ignore = "needs root"]
fn sigint_and_sigterm_detach_cleanly() {
    require_privileges();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let netns = NetNs::new();
        let (daemon, _) = start_on_loopback(&netns, &[]);
        daemon.signal(signal);
        let (status, log) = daemon.wait();
        assert!(status.success(), "{}: {status}\n{log}", signal.as_str());
        assert!(
            log.contains(&format!("signal=\"{}\"", signal.as_str())),
            "{log}"
        );
        assert!(log.contains("detached from every interface"), "{log}");
        assert_detached(&netns);
    }
}

#[test]
#[ignore = "needs root"]
fn after_sigkill_nothing_stays_attached_and_traffic_flows() {
    require_privileges();
    let netns = NetNs::new();
    let (daemon, _) = start_on_loopback(&netns, &[]);
    daemon.signal(Signal::SIGKILL);
    let (status, _) = daemon.wait();
    assert!(!status.success());
    assert_detached(&netns);
    netns
        .spawn(|| {
            let server = SocketAddr::new("127.0.0.1".parse().unwrap(), 8080);
            exchange(server, &pattern(5_000, 1), &pattern(5_000, 2));
        })
        .join()
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn debug_log_shows_the_segments_of_a_curl_to_a_watched_port() {
    require_privileges();
    let netns = NetNs::new();
    let (mut daemon, _) = start_on_loopback(&netns, &["--log-level", "debug"]);
    let server = netns
        .spawn(|| {
            use std::io::{Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
            std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).unwrap();
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .unwrap();
            })
        })
        .join()
        .unwrap();
    let curl = netns
        .command("curl")
        .args(["-sS", "--max-time", "10", "http://127.0.0.1:8080/from-curl"])
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    server.join().unwrap();
    let request = daemon.wait_for("GET /from-curl HTTP/1.1", STARTUP);
    assert!(request.contains("dst=127.0.0.1:8080"), "{request}");
    let response = daemon.wait_for("HTTP/1.1 200 OK", STARTUP);
    assert!(response.contains("src=127.0.0.1:8080"), "{response}");
    daemon.signal(Signal::SIGINT);
    let (status, log) = daemon.wait();
    assert!(status.success(), "{log}");
}

#[test]
fn an_unknown_interface_is_a_usage_error_naming_it() {
    let output = Command::new(AUDITOR)
        .args(["run", "--interface", "nosuch0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown interface `nosuch0`"), "{stderr}");
    assert!(
        stderr.contains("lo"),
        "lists the interfaces that exist: {stderr}"
    );
}

#[test]
fn missing_privileges_are_named() {
    // As root, drop to an unprivileged user; otherwise we already are one.
    let mut command = if nix::unistd::geteuid().is_root() {
        let mut setpriv = Command::new("setpriv");
        setpriv.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            AUDITOR,
        ]);
        setpriv
    } else {
        Command::new(AUDITOR)
    };
    let output = command.args(["run", "--interface", "lo"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let missing = stderr
        .split("missing: ")
        .nth(1)
        .expect("a list of what is missing");
    for capability in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"] {
        assert!(missing.contains(capability), "{stderr}");
    }
}

#[test]
fn check_config_accepts_valid_files_and_names_the_error_in_invalid_ones() {
    let dir = std::env::temp_dir().join(format!("auditor-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = dir.join("valid.toml");
    std::fs::write(
        &valid,
        "interfaces = [\"lo\"]\n[[ports]]\nport = 8080\nrole = \"backend\"\n",
    )
    .unwrap();
    let invalid = dir.join("invalid.toml");
    std::fs::write(&invalid, "[[ports]]\nport = 99999\n").unwrap();

    let ok = Command::new(AUDITOR)
        .args(["check-config"])
        .arg(&valid)
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid (1 ports, interfaces lo)"));

    let bad = Command::new(AUDITOR)
        .args(["check-config"])
        .arg(&invalid)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid.toml") && stderr.contains("99999"),
        "{stderr}"
    );

    let missing = Command::new(AUDITOR)
        .args(["check-config", "/nonexistent/auditor.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/auditor.toml")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Stops the daemon once the traffic has been read; returns its log, the
/// exchanges it printed, and how many payload bytes the kernel copied.
fn stop_and_count_copied(daemon: Daemon) -> (String, Vec<String>, u64) {
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal(Signal::SIGINT);
    let (status, log, exchanges) = daemon.wait_with_output();
    assert!(status.success(), "{log}");
    let copied = logged_counter(&log, "payload_bytes_copied");
    (log, exchanges, copied)
}

/// Plays a WebSocket-style session on `stream` from the server side: reads
/// the offer, answers 101, sends a first frame, then `bulk` bytes.
fn websocket_server(mut stream: std::net::TcpStream, bulk: usize) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    stream
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Send and receive at once, as both peers blast: neither may wait for the other.
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        writer.write_all(&vec![0x42; bulk]).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).unwrap();
    sending.join().unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_websocket_session_moving_10_mb_copies_only_kilobytes() {
    use std::io::{Read, Write};
    require_privileges();
    let netns = NetNs::new();
    let (daemon, _) = start_on_loopback(&netns, &[]);
    let bulk = 5 << 20;
    netns
        .spawn(move || {
            let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
            let server = std::thread::spawn(move || websocket_server(listener.accept().unwrap().0, bulk));
            let mut client = std::net::TcpStream::connect("127.0.0.1:8080").unwrap();
            client
                .write_all(
                    b"GET /chat HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .unwrap();
            let mut answer = vec![0u8; 129 + 7];
            client.read_exact(&mut answer).unwrap();
            client.write_all(b"\x81\x85\x01\x02\x03\x04iggmn").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let mut writer = client.try_clone().unwrap();
            let sending = std::thread::spawn(move || {
                writer.write_all(&vec![0x43; bulk]).unwrap();
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            assert_eq!(rest.len(), bulk);
            sending.join().unwrap();
            server.join().unwrap();
        })
        .join()
        .unwrap();
    let (log, exchanges, copied) = stop_and_count_copied(daemon);
    assert!(
        copied < 8 * 1024,
        "copied {copied} bytes of a 10 MB session\n{log}"
    );
    let events: Vec<serde_json::Value> = exchanges
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let handshake = events
        .iter()
        .find(|e| e["event_type"] == "handshake")
        .unwrap_or_else(|| panic!("a handshake event: {exchanges:?}"));
    assert_eq!(handshake["handshake"]["outcome"], "switched");
    assert_eq!(handshake["handshake"]["protocol"], "websocket");
    assert_eq!(handshake["http"]["response"]["status"], 101);
    assert_eq!(
        handshake["handshake"]["rules"],
        serde_json::json!([]),
        "a compliant handshake"
    );
}

#[test]
#[ignore = "needs root"]
fn a_large_body_is_skipped_in_the_kernel_and_the_next_request_still_parsed() {
    use std::io::{Read, Write};
    require_privileges();
    let netns = NetNs::new();
    let (daemon, _) = start_on_loopback(&netns, &["--exchanges"]);
    let body = 8 << 20;
    netns
        .spawn(move || {
            let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buffer = [0u8; 4096];
                for _ in 0..2 {
                    let n = stream.read(&mut buffer).unwrap();
                    assert!(buffer[..n].ends_with(b"\r\n\r\n"));
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n");
                    stream.write_all(head.as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    stream.write_all(&vec![b'b'; body]).unwrap();
                }
            });
            let mut client = std::net::TcpStream::connect("127.0.0.1:8080").unwrap();
            for target in ["/first", "/second"] {
                let request = format!("GET {target} HTTP/1.1\r\nHost: lab\r\n\r\n");
                client.write_all(request.as_bytes()).unwrap();
                let mut received = 0;
                let mut buffer = vec![0u8; 1 << 16];
                let head_len = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n").len();
                while received < head_len + body {
                    received += client.read(&mut buffer).unwrap();
                }
            }
            server.join().unwrap();
        })
        .join()
        .unwrap();
    let (log, exchanges, copied) = stop_and_count_copied(daemon);
    assert!(
        copied < 64 * 1024,
        "copied {copied} bytes of two {body}-byte bodies\n{log}"
    );
    let targets: Vec<String> = exchanges
        .iter()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["request"]["target"]
                .to_string()
        })
        .collect();
    assert_eq!(targets, ["\"/first\"", "\"/second\""]);
}

#[test]
#[ignore = "needs root"]
fn a_live_101_without_connection_raises_the_proxmox_alert() {
    require_privileges();
    let netns = NetNs::new();
    let (daemon, _) = start_on_loopback(&netns, &[]);
    netns
        .spawn(|| proxmox_upgrade(SocketAddr::new("127.0.0.1".parse().unwrap(), 8080)))
        .join()
        .unwrap();
    let (log, lines, _) = stop_and_count_copied(daemon);
    let events = valid_events(lines.iter().map(String::as_str));
    let alert = events
        .iter()
        .find(|e| e["event_type"] == "alert")
        .unwrap_or_else(|| panic!("an alert: {lines:?}\n{log}"));
    assert_eq!(
        alert["alert"]["rule"],
        "upgrade-101-missing-connection-option"
    );
    assert_eq!(alert["flow"]["dest_port"], 8080);
    assert_eq!(alert["flow"]["interface"], "lo");
}
