//! `auditor replay` end to end: capture files in, one JSON line per
//! exchange out. Real captures from real servers, and generated ones for
//! the reassembly and framing cases. No privileges needed.

use std::{net::SocketAddr, path::Path};

use crate::support::{
    pcap_writer::{pcap, Conversation, Link, TcpPacket, TempFile},
    replay::{data, json_lines, Replay},
};
use serde_json::Value;

/// `auditor replay --exchanges ARGS FILES`: every exchange followed.
fn replay(args: &[&str], files: &[&Path]) -> Replay {
    crate::support::replay::replay(&[&["--exchanges"][..], args].concat(), files, json_lines)
}

/// [`replay`] of a capture of `packets`, written to the temporary file `name`.
fn replay_packets(name: &str, packets: &[TcpPacket]) -> Replay {
    let file = TempFile::new(name, &pcap(Link::Ethernet, packets));
    replay(&[], &[file.path()])
}

/// Asserts that the capture quality of every exchange of `run` has `flag`.
fn assert_all_have(run: &Replay, flag: &str) {
    assert!(
        run.lines.iter().all(|e| e["quality"][flag] == true),
        "{}",
        run.stdout
    );
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
        .lines
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
        run.lines[0]["connection"], run.lines[1]["connection"],
        "keep-alive"
    );
    assert_all_have(&run, "complete");
    let declined = &run.lines[3];
    assert_eq!(header(&declined["request"], "upgrade"), ["websocket"]);
    assert!(declined["switched"].is_null());
    assert_eq!(declined["server"], "127.0.0.1:8080");
}

#[test]
fn python_websockets_handshake_switches_and_keeps_the_first_frames() {
    let run = replay(&[], &[&data("websocket-python.pcap")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines.len(), 1, "{}", run.stdout);
    let exchange = &run.lines[0];
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
    assert_eq!(run.lines.len(), 1, "{}", run.stdout);
    let exchange = &run.lines[0];
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
    assert_eq!(first.lines.len(), 6);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn the_port_filter_keeps_only_matching_connections() {
    let files = [data("nginx-curl.pcap"), data("websocket-python.pcap")];
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let run = replay(&["--port", "8765"], &paths);
    assert_eq!(run.lines.len(), 1);
    assert_eq!(run.lines[0]["server"], "127.0.0.1:8765");
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
    let run = replay_packets("busy.pcap", &busy_connection());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let targets: Vec<&str> = run
        .lines
        .iter()
        .map(|e| e["request"]["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["/upload", "/page", "/gone", "/chat"],
        "{}",
        run.stdout
    );
    assert_eq!(run.lines[0]["interim"][0]["status"], 100);
    assert_eq!(run.lines[0]["response"]["status"], 201);
    let upgrade = &run.lines[3];
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
    assert_all_have(&run, "complete");
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
    let strip_times = |run: Replay| -> Vec<Value> {
        run.lines
            .into_iter()
            .map(|mut e| {
                e["request_ns"] = Value::Null;
                e["response_ns"] = Value::Null;
                e
            })
            .collect()
    };
    let clean_run = strip_times(replay_packets("clean.pcap", &clean));
    let messy_run = strip_times(replay_packets("messy.pcap", &messy));
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
    let run = replay_packets("lost.pcap", &packets);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let last = run.lines.last().unwrap();
    assert_eq!(last["quality"]["complete"], false, "{}", run.stdout);
    assert_eq!(last["quality"]["gap"], true, "{}", run.stdout);
    assert!(run.lines.iter().all(|e| e["request"]["target"] != "/chat"));
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
    let run = replay_packets("hostile.pcap", &packets);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines.len(), 2, "{}", run.stdout);
    assert_all_have(&run, "oversized");
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
        cut.lines.len(),
        4,
        "what came before the cut is still reported"
    );
}
