//! The health of a running daemon: the Prometheus endpoint scraped over TCP
//! and the periodic `stats` events, against the real daemon and kernel
//! program inside a lab namespace.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use crate::support::{
    daemon::{Daemon, AUDITOR},
    lab::NetNs,
    pcap_writer::TempFile,
    require_privileges,
    schema::valid_events,
    traffic::proxmox_upgrade,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(20);
const METRICS_ADDRESS: &str = "127.0.0.1:9700";
const PROXMOX_ALERT: &str =
    "auditor_alerts_total{rule=\"upgrade-101-missing-connection-option\",severity=\"error\"}";
const LOSS_KINDS: [&str; 9] = [
    "kernel_drops",
    "truncated_records",
    "undecodable_records",
    "reassembly_gaps",
    "reassembly_gap_bytes",
    "connections_evicted",
    "output_drops",
    "alerts_suppressed",
    "rate_limit_keys_evicted",
];

/// `auditor run` on `lo` in `netns`, watching port 8080, once capturing.
fn start(netns: &NetNs, extra: &[&str]) -> Daemon {
    let mut args = vec!["run", "--interface", "lo", "--port", "8080"];
    args.extend_from_slice(extra);
    let mut daemon = Daemon::start(netns, &args);
    daemon.wait_for("capture started", STARTUP);
    daemon
}

/// The Proxmox upgrade the daemon raises one alert for, on port 8080 in `netns`.
fn proxmox_upgrade_in(netns: &NetNs) {
    netns.run(|| {
        proxmox_upgrade("127.0.0.1:8080".parse().unwrap(), "/api2/json/backup");
    });
}

fn stop(daemon: Daemon) -> Vec<Value> {
    daemon.signal(Signal::SIGINT);
    let (status, log, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{log}");
    valid_events(stdout.iter().map(String::as_str))
}

/// The raw answer to `request` sent to the metrics address in `netns`.
fn ask(netns: &NetNs, request: &'static [u8]) -> String {
    netns.run(move || {
        let mut stream = TcpStream::connect(METRICS_ADDRESS).expect("connect to the endpoint");
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
}

/// The body of a successful scrape.
fn scrape(netns: &NetNs) -> String {
    let answer = ask(netns, b"GET /metrics HTTP/1.1\r\nHost: auditor\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head}"
    );
    body.to_owned()
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("an integer sample"))
}

fn value(text: &str, series: &str) -> u64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series}:\n{text}"))
}

#[test]
#[ignore = "needs root"]
fn a_scrape_counts_the_proxmox_alert_and_every_stage_exactly() {
    require_privileges();
    let netns = NetNs::new();
    let daemon = start(&netns, &["--metrics", METRICS_ADDRESS]);
    let before = scrape(&netns);
    assert_eq!(value(&before, "auditor_exchanges_total"), 0);
    assert_eq!(sample(&before, PROXMOX_ALERT), None);

    proxmox_upgrade_in(&netns);
    let switched = "auditor_handshakes_total{outcome=\"switched\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&scrape(&netns), switched) == 0 {
        assert!(Instant::now() < deadline, "the handshake never counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The connection's last segments, read by now.
    std::thread::sleep(Duration::from_millis(500));
    let metrics = scrape(&netns);

    assert_eq!(value(&metrics, switched), 1);
    assert_eq!(
        value(&metrics, "auditor_handshakes_total{outcome=\"declined\"}"),
        0
    );
    assert_eq!(
        value(&metrics, "auditor_handshakes_total{outcome=\"incomplete\"}"),
        0
    );
    assert_eq!(value(&metrics, PROXMOX_ALERT), 1);
    let alert_samples = metrics
        .lines()
        .filter(|line| line.starts_with("auditor_alerts_total{"))
        .count();
    assert_eq!(alert_samples, 1, "{metrics}");
    assert_eq!(value(&metrics, "auditor_exchanges_total"), 1);
    assert_eq!(value(&metrics, "auditor_connections_opened_total"), 1);
    let segments = value(&metrics, "auditor_segments_total");
    assert!(segments >= 4, "SYN, SYN-ACK, request, response at least");
    assert_eq!(
        value(&metrics, "auditor_kernel_records_emitted_total"),
        segments,
        "every record the kernel emitted reached the pipeline"
    );
    assert!(value(&metrics, "auditor_kernel_segments_matched_total") >= segments);
    assert!(value(&metrics, "auditor_kernel_payload_bytes_copied_total") > 0);
    for kind in LOSS_KINDS {
        assert_eq!(
            value(&metrics, &format!("auditor_loss_{kind}_total")),
            0,
            "{kind}"
        );
        assert!(metrics.contains(&format!("\n# TYPE auditor_loss_{kind}_total counter\n")));
    }

    let events = stop(daemon);
    let count = |event_type: &str| {
        events
            .iter()
            .filter(|e| e["event_type"] == event_type)
            .count()
    };
    assert_eq!(count("alert"), 1, "the metrics count what was written");
    assert_eq!(count("stats"), 0, "stats events are off by default");
}

#[test]
#[ignore = "needs root"]
fn only_get_metrics_is_answered_and_strangers_cannot_stop_the_daemon() {
    require_privileges();
    let netns = NetNs::new();
    let daemon = start(&netns, &["--metrics", METRICS_ADDRESS]);
    let not_found = ask(&netns, b"GET / HTTP/1.1\r\nHost: auditor\r\n\r\n");
    assert!(
        not_found.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{not_found}"
    );
    let garbage = ask(
        &netns,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    );
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
    netns.run(|| {
        let mut stream = TcpStream::connect(METRICS_ADDRESS).unwrap();
        stream.write_all(b"GET /metr").unwrap();
    });
    assert!(scrape(&netns).contains("auditor_segments_total "));
    stop(daemon);
}

#[test]
#[ignore = "needs root"]
fn the_endpoint_is_off_by_default() {
    require_privileges();
    let netns = NetNs::new();
    let daemon = start(&netns, &[]);
    let listening = netns.run(|| {
        // TCP sockets of this thread's namespace; state 0A is LISTEN.
        ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
            .iter()
            .flat_map(|path| {
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .skip(1)
                    .filter(|line| line.split_whitespace().nth(3) == Some("0A"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(listening, Vec::<String>::new());
    stop(daemon);
}

#[test]
#[ignore = "needs root"]
fn a_busy_or_foreign_metrics_address_is_a_usage_error_before_capture() {
    require_privileges();
    let netns = NetNs::new();
    let busy = netns.run(|| std::net::TcpListener::bind(METRICS_ADDRESS).unwrap());
    for (address, reason) in [
        (METRICS_ADDRESS, "Address already in use"),
        ("192.0.2.1:9700", "Cannot assign requested address"),
    ] {
        let output = netns
            .command(AUDITOR)
            .args(["run", "--interface", "lo", "--metrics", address])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot serve metrics on {address}: {reason}")),
            "{stderr}"
        );
        assert!(stderr.contains("--metrics or [metrics] listen"), "{stderr}");
        assert!(!stderr.contains("capture started"), "{stderr}");
    }
    drop(busy);
    let usage = Command::new(AUDITOR)
        .args(["run", "--metrics", "localhost:http"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
#[ignore = "needs root"]
fn stats_events_carry_the_totals_every_interval() {
    require_privileges();
    let config = TempFile::new(
        "stats.toml",
        b"interfaces = [\"lo\"]\n[[ports]]\nport = 8080\n[reporting]\nstats_interval_secs = 1\n",
    );
    let netns = NetNs::new();
    let mut daemon = Daemon::start(
        &netns,
        &["run", "--config", config.path().to_str().unwrap()],
    );
    daemon.wait_for("capture started", STARTUP);
    proxmox_upgrade_in(&netns);
    std::thread::sleep(Duration::from_millis(2500));
    let events = stop(daemon);

    let stats: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "stats")
        .map(|e| &e["stats"])
        .collect();
    assert!(stats.len() >= 2, "one a second: {events:?}");
    for pair in stats.windows(2) {
        for total in ["segments", "exchanges", "handshakes", "alerts"] {
            assert!(
                pair[0][total].as_u64() <= pair[1][total].as_u64(),
                "{pair:?}"
            );
        }
    }
    let last = stats.last().unwrap();
    assert_eq!(last["handshakes"], 1, "{last}");
    assert_eq!(last["alerts"], 1, "{last}");
    assert_eq!(last["exchanges"], 1, "{last}");
    assert_eq!(last["connections_opened"], 1, "{last}");
    assert!(last["segments"].as_u64().unwrap() >= 4, "{last}");
    for kind in LOSS_KINDS {
        assert_eq!(last["loss"][kind], 0, "{kind}: {last}");
    }
}
