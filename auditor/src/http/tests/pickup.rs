//! Connections picked up mid-stream: which exchanges pair certainly.

use super::*;

const PLAIN: &[u8] = b"GET /status HTTP/1.1\r\nHost: pbs\r\n\r\n";
const PLAIN_200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
/// Proxmox Backup Server's answer: no `Connection: upgrade`.
const PROXMOX_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

/// A connection already open when capture started, its server's segment
/// not necessarily first.
fn picked_up() -> Drive {
    Drive::with(HttpLimits::default(), false, true)
}

fn pairings(d: &Drive) -> Vec<Pairing> {
    d.exchanges().iter().map(|e| e.pairing).collect()
}

/// Which exchanges the rules judge whole.
fn complete(d: &Drive) -> Vec<bool> {
    d.exchanges().iter().map(|e| e.quality.complete).collect()
}

/// The case: a keep-alive connection opened before the start, a
/// plain request after it, then an offer answered by a Proxmox-style 101.
#[test]
fn a_broken_101_after_a_plain_exchange_is_judged() {
    let mut d = picked_up();
    d.client(PLAIN).server(PLAIN_200);
    d.client(PROXMOX_OFFER).server(PROXMOX_101);
    d.client(b"\x01\x02").server(b"\x03").close();
    assert_eq!(pairings(&d), [Pairing::RequestOnly, Pairing::Certain]);
    assert_eq!(complete(&d), [false, true]);
    assert!(d.exchanges().iter().all(|e| e.quality.midstream));
}

/// A pooled connection whose first request after the start is the offer.
#[test]
fn a_101_answering_the_first_request_seen_is_judged() {
    let mut d = picked_up();
    d.client(PROXMOX_OFFER).server(PROXMOX_101);
    d.client(b"\x01").close();
    assert_eq!(pairings(&d), [Pairing::Certain]);
    assert_eq!(complete(&d), [true]);
}

/// Once in step, plain answers pair certainly too.
#[test]
fn in_step_after_one_request_first_in_line_was_answered() {
    let mut d = picked_up();
    for _ in 0..3 {
        d.client(PLAIN).server(PLAIN_200);
    }
    d.close();
    assert_eq!(
        pairings(&d),
        [Pairing::RequestOnly, Pairing::Certain, Pairing::Certain]
    );
}

/// A request sent before capture started, still unanswered: its response
/// takes the first request seen. Neither that pairing nor the offer's is
/// trusted while requests are pipelined; the extra response shows it. A
/// request followed by another before its answer is not even read for the
/// rules of the request: it may be quoted in a body, with others.
#[test]
fn a_request_pipelined_before_the_start_leaves_the_pairing_unsure() {
    let mut d = picked_up();
    // Unseen: a request whose answer is the first 200 below.
    d.client(PLAIN).client(PROXMOX_OFFER);
    d.server(PLAIN_200).server(PLAIN_200).server(PROXMOX_101);
    d.close();
    assert_eq!(
        pairings(&d),
        [Pairing::Unknown, Pairing::RequestOnly, Pairing::Unknown]
    );
    assert_eq!(complete(&d), [false; 3]);
}

/// The first bytes seen are the middle of a body that happens to hold a
/// 101: a start found inside other bytes is not trusted.
#[test]
fn a_101_inside_a_body_is_not_a_switch_to_judge() {
    let mut d = picked_up();
    d.client(PROXMOX_OFFER);
    let mut body = b"...the middle of a body quoting ".to_vec();
    body.extend_from_slice(PROXMOX_101);
    d.server(&body).close();
    assert_eq!(pairings(&d), [Pairing::RequestOnly]);
    assert_eq!(complete(&d), [false]);
}

/// A response whose request was never seen is not judged.
#[test]
fn a_response_to_a_request_never_seen_is_not_judged() {
    let mut d = picked_up();
    d.server(PROXMOX_101).client(b"\x01").close();
    assert_eq!(pairings(&d), [Pairing::Unknown]);
    assert_eq!(complete(&d), [false]);
}

/// The first whole request is read for the rules of the request alone even
/// when its response cannot be paired.
#[test]
fn a_whole_request_is_kept_when_its_response_cannot_be_paired() {
    let mut d = picked_up();
    d.client(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    // The server was answering a request sent before the start.
    d.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    d.server(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    d.close();
    assert_eq!(pairings(&d), [Pairing::RequestOnly, Pairing::Unknown]);
    assert!(d.exchanges()[0].request.is_some());
}

/// Started in the middle of a large request body: the request found after
/// it may be text inside the body; the one after that is read from its
/// first byte.
#[test]
fn started_inside_a_request_body() {
    let mut d = picked_up();
    d.client(b"...the tail of an upload");
    d.client(PLAIN);
    d.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    d.server(PLAIN_200);
    d.client(PLAIN).server(PLAIN_200);
    d.client(PROXMOX_OFFER).server(PROXMOX_101);
    d.client(b"\x01").close();
    assert_eq!(
        pairings(&d),
        [
            Pairing::Unknown,
            Pairing::Unknown,
            Pairing::RequestOnly,
            Pairing::Certain
        ]
    );
    assert_eq!(complete(&d), [false, false, false, true]);
}

/// A request sent while the server is still sending a response is
/// pipelined: it does not show the connection in step.
#[test]
fn a_request_sent_during_a_response_does_not_put_it_in_step() {
    let mut d = picked_up();
    d.client(PLAIN)
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    d.client(PLAIN).server(b"ok").server(PLAIN_200);
    d.client(PLAIN).server(PLAIN_200);
    d.client(PLAIN).server(PLAIN_200).close();
    assert_eq!(
        pairings(&d),
        [
            Pairing::RequestOnly,
            Pairing::RequestOnly,
            Pairing::RequestOnly,
            Pairing::Certain
        ]
    );
}

/// Started in a body that quotes requests back to back: none of them is
/// trusted, as each is followed by another before any answer; the
/// requests after the body are, once one is first in line. The same when
/// the first byte seen happens to start a quoted request.
#[test]
fn requests_quoted_back_to_back_in_a_body_are_not_trusted() {
    for aligned in [false, true] {
        requests_quoted_in_a_body(aligned);
    }
}

fn requests_quoted_in_a_body(aligned: bool) {
    const QUOTED: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n\r\n";
    let mut d = picked_up();
    if !aligned {
        d.client(b"...an upload of a log: ");
    }
    for _ in 0..3 {
        d.client(QUOTED);
    }
    d.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    d.client(PLAIN).server(PLAIN_200).close();
    let quoted = d
        .exchanges()
        .iter()
        .filter(|e| e.request.as_ref().is_some_and(|r| r.line.target == "/chat"))
        .map(|e| e.pairing)
        .collect::<Vec<_>>();
    assert_eq!(quoted, [Pairing::Unknown; 3]);
}

/// Found by the `rules` fuzz target: the first start found may begin in an
/// earlier piece than the one it ends in.
#[test]
fn a_first_start_split_across_pieces_is_placed_where_it_begins() {
    for (before, sure) in [(&b""[..], true), (&b"x"[..], false)] {
        let mut d = picked_up();
        d.client(PROXMOX_OFFER);
        let (first, rest) = PROXMOX_101.split_at(10);
        d.server(&[before, first].concat()).server(rest);
        d.client(b"\x01").close();
        let expected = if sure {
            Pairing::Certain
        } else {
            Pairing::RequestOnly
        };
        assert_eq!(pairings(&d), [expected], "{before:?}");
    }
}
