//! `auditor replay` end to end: capture files in, one JSON line per
//! exchange out. Real captures from real servers, and generated ones for
//! the reassembly and framing cases. No privileges needed.

mod support;

use std::{net::SocketAddr, path::Path, process::Command};

use serde_json::Value;
use support::{
    daemon::AUDITOR,
    pcap_writer::{pcap, Conversation, Link, TcpPacket, TempFile},
};

struct Replay {
    code: Option<i32>,
    exchanges: Vec<Value>,
    stdout: String,
    stderr: String,
}

/// `auditor replay --exchanges ARGS FILES`: every exchange followed.
fn replay(args: &[&str], files: &[&Path]) -> Replay {
    let output = Command::new(AUDITOR)
        .args(["replay", "--exchanges"])
        .args(args)
        .args(files)
        .output()
        .expect("run auditor replay");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let exchanges = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    Replay {
        code: output.status.code(),
        exchanges,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn header<'a>(head: &'a Value, name: &str) -> Vec<&'a str> {
    head["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h["value"].as_str().unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn nginx_and_curl_keep_alive_post_and_declined_offer() {
    let run = replay(&[], &[&data("nginx-curl.pcap")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary: Vec<(String, String, u64)> = run
        .exchanges
        .iter()
        .map(|e| {
            (
                e["request"]["method"].as_str().unwrap().to_owned(),
                e["request"]["target"].as_str().unwrap().to_owned(),
                e["response"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET".into(), "/a".into(), 200),
            ("GET".into(), "/b".into(), 200),
            ("POST".into(), "/post".into(), 200),
            ("GET".into(), "/ws".into(), 200),
        ]
    );
    assert_eq!(
        run.exchanges[0]["connection"], run.exchanges[1]["connection"],
        "keep-alive"
    );
    assert!(
        run.exchanges
            .iter()
            .all(|e| e["quality"]["complete"] == true),
        "{}",
        run.stdout
    );
    let declined = &run.exchanges[3];
    assert_eq!(header(&declined["request"], "upgrade"), ["websocket"]);
    assert!(declined["switched"].is_null());
    assert_eq!(declined["server"], "127.0.0.1:8080");
}

#[test]
fn python_websockets_handshake_switches_and_keeps_the_first_frames() {
    let run = replay(&[], &[&data("websocket-python.pcap")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.exchanges.len(), 1, "{}", run.stdout);
    let exchange = &run.exchanges[0];
    assert_eq!(exchange["response"]["status"], 101);
    assert_eq!(
        header(&exchange["request"], "sec-websocket-key"),
        ["KqibsOJMl0cDhI/oHr3Qow=="]
    );
    assert_eq!(
        header(&exchange["response"], "sec-websocket-accept"),
        ["+LIXsAhgd4JBd3gcZBoBLXWEq9U="]
    );
    // A masked text frame from the client (FIN|text, MASK|len 9), an unmasked one from the server.
    assert!(exchange["switched"]["client_bytes"]
        .as_str()
        .unwrap()
        .starts_with("8189"));
    assert!(exchange["switched"]["server_bytes"]
        .as_str()
        .unwrap()
        .starts_with(&hex(b"\x81\x12reply")));
    assert_eq!(exchange["quality"]["complete"], true);
    assert!(exchange["response_ns"].as_u64() >= exchange["request_ns"].as_u64());
}

#[test]
fn curl_h2c_upgrade_switches_to_http2() {
    let run = replay(&[], &[&data("h2c-curl-nghttpx.pcap")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.exchanges.len(), 1, "{}", run.stdout);
    let exchange = &run.exchanges[0];
    assert_eq!(header(&exchange["request"], "upgrade"), ["h2c"]);
    assert_eq!(
        header(&exchange["request"], "http2-settings"),
        ["AAMAAABkAAQCAAAAAAIAAAAA"]
    );
    assert_eq!(exchange["response"]["status"], 101);
    assert!(exchange["switched"]["client_bytes"]
        .as_str()
        .unwrap()
        .starts_with(&hex(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")));
    // The server's SETTINGS frame came in the same segment as the 101.
    assert!(exchange["switched"]["server_bytes"]
        .as_str()
        .unwrap()
        .starts_with("000018040000000000"));
}

#[test]
fn several_files_run_as_one_replay_and_the_output_is_the_same_every_run() {
    let files = [
        data("nginx-curl.pcap"),
        data("websocket-python.pcap"),
        data("h2c-curl-nghttpx.pcap"),
    ];
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let first = replay(&[], &paths);
    let second = replay(&[], &paths);
    assert_eq!(first.exchanges.len(), 6);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn the_port_filter_keeps_only_matching_connections() {
    let files = [data("nginx-curl.pcap"), data("websocket-python.pcap")];
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let run = replay(&["--port", "8765"], &paths);
    assert_eq!(run.exchanges.len(), 1);
    assert_eq!(run.exchanges[0]["server"], "127.0.0.1:8765");
}

fn client() -> SocketAddr {
    "10.9.0.1:41000".parse().unwrap()
}

fn server() -> SocketAddr {
    "10.9.0.2:8080".parse().unwrap()
}

/// Keep-alive requests with bodies in both framings, then an upgrade.
fn busy_connection() -> Vec<TcpPacket> {
    let mut conversation = Conversation::new(client(), server());
    conversation
        .handshake()
        .client_sends(b"POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: 11\r\n\r\nhello world")
        .server_sends(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n")
        .client_sends(b"HEAD /page HTTP/1.1\r\nHost: lab\r\n\r\n")
        .server_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        .client_sends(b"GET /gone HTTP/1.1\r\nHost: lab\r\n\r\n")
        .server_sends(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        .client_sends(b"GET /chat HTTP/1.1\r\nHost: lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .server_sends(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nContent-Length: 5\r\n\r\n\x81\x02hi")
        .client_sends(b"\x81\x82abcd\x09\x0b")
        .client_fin()
        .server_fin();
    conversation.into_packets()
}

#[test]
fn a_busy_keep_alive_connection_is_followed_up_to_its_upgrade() {
    let file = TempFile::new("busy.pcap", &pcap(Link::Ethernet, &busy_connection()));
    let run = replay(&[], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let targets: Vec<&str> = run
        .exchanges
        .iter()
        .map(|e| e["request"]["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["/upload", "/page", "/gone", "/chat"],
        "{}",
        run.stdout
    );
    assert_eq!(run.exchanges[0]["interim"][0]["status"], 100);
    assert_eq!(run.exchanges[0]["response"]["status"], 201);
    let upgrade = &run.exchanges[3];
    assert_eq!(upgrade["response"]["status"], 101);
    assert_eq!(
        upgrade["switched"]["server_bytes"],
        hex(b"\x81\x02hi"),
        "a 101 ends at its blank line"
    );
    assert_eq!(
        upgrade["switched"]["client_bytes"],
        hex(b"\x81\x82abcd\x09\x0b")
    );
    assert!(
        run.exchanges
            .iter()
            .all(|e| e["quality"]["complete"] == true),
        "{}",
        run.stdout
    );
}

#[test]
fn split_reordered_and_duplicated_packets_give_the_same_exchanges() {
    let clean = busy_connection();
    let mut messy: Vec<TcpPacket> = Vec::new();
    for packet in &clean {
        if packet.payload.len() > 3 {
            let (head, tail) = packet.split_at(packet.payload.len() / 3);
            messy.push(tail);
            messy.push(head.clone());
            messy.push(head);
        } else {
            messy.push(packet.clone());
        }
    }
    let clean_file = TempFile::new("clean.pcap", &pcap(Link::Ethernet, &clean));
    let messy_file = TempFile::new("messy.pcap", &pcap(Link::Ethernet, &messy));
    let strip_times = |run: Replay| -> Vec<Value> {
        run.exchanges
            .into_iter()
            .map(|mut e| {
                e["request_ns"] = Value::Null;
                e["response_ns"] = Value::Null;
                e
            })
            .collect()
    };
    let clean_run = strip_times(replay(&[], &[clean_file.path()]));
    let messy_run = strip_times(replay(&[], &[messy_file.path()]));
    assert_eq!(clean_run.len(), 4);
    assert_eq!(clean_run, messy_run);
}

#[test]
fn a_lost_segment_in_a_head_marks_the_exchange_and_no_rule_input_is_invented() {
    let mut packets = busy_connection();
    // Drop the segment carrying the upgrade request; the server's ACK shows it was sent.
    let offer = packets
        .iter()
        .position(|p| p.payload.starts_with(b"GET /chat"))
        .unwrap();
    packets.remove(offer);
    let file = TempFile::new("lost.pcap", &pcap(Link::Ethernet, &packets));
    let run = replay(&[], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let last = run.exchanges.last().unwrap();
    assert_eq!(last["quality"]["complete"], false, "{}", run.stdout);
    assert_eq!(last["quality"]["gap"], true, "{}", run.stdout);
    assert!(run
        .exchanges
        .iter()
        .all(|e| e["request"]["target"] != "/chat"));
}

#[test]
fn hostile_heads_are_marked_oversized_without_harm() {
    let mut huge_header = b"GET /big HTTP/1.1\r\nHost: lab\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge_header.extend_from_slice(b"\r\n\r\n");
    let mut many_lines = b"GET /many HTTP/1.1\r\nHost: lab\r\n".to_vec();
    for i in 0..10_000 {
        many_lines.extend_from_slice(format!("X-Line-{i}: v\r\n").as_bytes());
    }
    many_lines.extend_from_slice(b"\r\n");
    let mut packets = Vec::new();
    for (port, request) in [(41001, &huge_header), (41002, &many_lines)] {
        let mut conversation = Conversation::new(SocketAddr::new(client().ip(), port), server());
        conversation.handshake();
        for chunk in request.chunks(60_000) {
            conversation.client_sends(chunk);
        }
        conversation.server_sends(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        );
        packets.extend(conversation.into_packets());
    }
    let file = TempFile::new("hostile.pcap", &pcap(Link::Ethernet, &packets));
    let run = replay(&[], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.exchanges.len(), 2, "{}", run.stdout);
    assert!(
        run.exchanges
            .iter()
            .all(|e| e["quality"]["oversized"] == true),
        "{}",
        run.stdout
    );
}

#[test]
fn a_missing_file_is_a_usage_error_and_a_truncated_one_a_runtime_error() {
    let missing = replay(&[], &[Path::new("/nonexistent/capture.pcap")]);
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("/nonexistent/capture.pcap"),
        "{}",
        missing.stderr
    );

    let whole = std::fs::read(data("nginx-curl.pcap")).unwrap();
    let file = TempFile::new("cut.pcap", &whole[..whole.len() - 10]);
    let cut = replay(&[], &[file.path()]);
    assert_eq!(cut.code, Some(3));
    assert!(cut.stderr.contains("truncated"), "{}", cut.stderr);
    assert_eq!(
        cut.exchanges.len(),
        4,
        "what came before the cut is still reported"
    );
}
