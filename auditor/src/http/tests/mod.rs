//! The tracker end to end: stream events in, exchanges and gates out.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::exchange::{EarlyData, NotHttp};
use super::*;
use crate::stream::{CloseReason, GapKind};

mod pickup;

const ID: ConnectionId = ConnectionId(9);

/// Drives one connection of a tracker, one event at a time; each event is
/// one nanosecond after the previous one.
struct Drive {
    tracker: HttpTracker,
    out: Vec<HttpOutput>,
    client: SocketAddr,
    server: SocketAddr,
    /// Next stream offset of the client, then of the server.
    offsets: [u64; 2],
    now: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum From {
    Client,
    Server,
}

impl Drive {
    fn new() -> Drive {
        Drive::limited(HttpLimits::default())
    }

    /// A connection whose handshake was seen, tracked with `limits`.
    fn limited(limits: HttpLimits) -> Drive {
        Drive::with(limits, true, false)
    }

    /// `syn`: the handshake was seen; `midstream`: the connection was already open.
    fn with(limits: HttpLimits, syn: bool, midstream: bool) -> Drive {
        let client: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let server: SocketAddr = "192.0.2.2:80".parse().unwrap();
        let mut drive = Drive {
            tracker: HttpTracker::new(limits),
            out: Vec::new(),
            client,
            server,
            offsets: [0, 0],
            now: 1000,
        };
        // Without a handshake the server's segment may well be seen first.
        let (first, second) = if syn {
            (client, server)
        } else {
            (server, client)
        };
        drive.event(StreamEvent::Opened {
            id: ID,
            first,
            second,
            syn_sender: syn.then_some(client),
            midstream,
            interface: Some(2),
            timestamp_ns: 1000,
        });
        drive
    }

    fn addr(&self, from: From) -> SocketAddr {
        match from {
            From::Client => self.client,
            From::Server => self.server,
        }
    }

    fn event(&mut self, event: StreamEvent<'_>) {
        self.tracker.handle(&event, &mut self.out);
    }

    fn send(&mut self, from: From, bytes: &[u8]) -> &mut Drive {
        self.now += 1;
        let offset = self.offsets[from as usize];
        self.offsets[from as usize] += bytes.len() as u64;
        let src = self.addr(from);
        self.event(StreamEvent::Data {
            id: ID,
            src,
            offset,
            bytes,
            timestamp_ns: self.now,
        });
        self
    }

    fn client(&mut self, bytes: &[u8]) -> &mut Drive {
        self.send(From::Client, bytes)
    }

    fn server(&mut self, bytes: &[u8]) -> &mut Drive {
        self.send(From::Server, bytes)
    }

    fn gap(&mut self, from: From, len: u64, kind: GapKind) -> &mut Drive {
        self.now += 1;
        let offset = self.offsets[from as usize];
        self.offsets[from as usize] += len;
        let src = self.addr(from);
        self.event(StreamEvent::Gap {
            id: ID,
            src,
            offset,
            len,
            kind,
            timestamp_ns: self.now,
        });
        self
    }

    fn finish(&mut self, from: From) -> &mut Drive {
        self.now += 1;
        let src = self.addr(from);
        self.event(StreamEvent::Finished {
            id: ID,
            src,
            timestamp_ns: self.now,
        });
        self
    }

    /// Lets time pass up to just before `deadline`, when nothing is reported
    /// yet, and then to `deadline`.
    fn wait_until(&mut self, deadline: u64) {
        self.tracker.tick(deadline - 1, &mut self.out);
        assert!(self.exchanges().is_empty());
        self.tracker.tick(deadline, &mut self.out);
    }

    fn close(&mut self) -> &mut Drive {
        self.now += 1;
        self.event(StreamEvent::Closed {
            id: ID,
            reason: CloseReason::Fin,
            timestamp_ns: self.now,
        });
        self
    }

    fn exchanges(&self) -> Vec<&Exchange> {
        self.out
            .iter()
            .filter_map(|o| match o {
                HttpOutput::Exchange(e) => Some(e),
                HttpOutput::Gate(_) => None,
            })
            .collect()
    }

    fn gates(&self) -> Vec<(SocketAddr, GateUntil)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                HttpOutput::Gate(g) => Some((g.src, g.until)),
                HttpOutput::Exchange(_) => None,
            })
            .collect()
    }
}

/// Method, target and status of each exchange, for short assertions.
fn summary(exchanges: &[&Exchange]) -> Vec<(Option<String>, Option<u16>)> {
    exchanges
        .iter()
        .map(|e| {
            (
                e.request
                    .as_ref()
                    .map(|r| format!("{} {}", r.line.method, r.line.target)),
                e.response.as_ref().map(|r| r.line.status),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, u16)]) -> Vec<(Option<String>, Option<u16>)> {
    list.iter()
        .map(|(r, s)| (Some((*r).to_owned()), Some(*s)))
        .collect()
}

fn all_complete(exchanges: &[&Exchange]) -> bool {
    exchanges.iter().all(|e| e.quality.complete)
}

const OFFER: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

#[test]
fn keep_alive_with_content_length_bodies_up_to_an_upgrade() {
    let mut d = Drive::new();
    d.client(b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\nGET / HTTP/")
        .client(b"GET /b HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nHTTP/1.1 500 inside!")
        .server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno\n")
        .client(OFFER)
        .server(SWITCH)
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("POST /a", 200), ("GET /b", 404), ("GET /chat", 101)])
    );
    assert!(all_complete(&exchanges), "{exchanges:#?}");
    assert_eq!(exchanges[0].request_ns, Some(1001));
    assert_eq!(exchanges[0].response_ns, Some(1003));
    assert_eq!(
        (exchanges[0].client, exchanges[0].server),
        (d.client, d.server)
    );
    assert_eq!(exchanges[0].interface, Some(2));
    assert_eq!(
        exchanges[2].switched,
        Some(Switched {
            client_bytes: vec![],
            server_bytes: vec![]
        })
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let mut d = Drive::new();
    d.client(b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"a b\"\r\nGET /\r\n0\r\nX-T: 1\r\n\r\n")
        .client(b"GET /next HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n")
        .server(b"3\r\nabc\r\n0;x=y\r\nTrailer: HTTP/1.1 999\r\n\r\n")
        .server(b"HTTP/1.1 204 No Content\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("POST /up", 200), ("GET /next", 204)])
    );
    assert!(all_complete(&exchanges));
}

#[test]
fn head_and_bodyless_statuses_have_no_body() {
    let mut d = Drive::new();
    d.client(b"HEAD /h HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        .server(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
        .server(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[
            ("HEAD /h", 200),
            ("GET /n", 204),
            ("GET /c", 304),
            ("GET /x", 200)
        ])
    );
    assert!(all_complete(&exchanges));
}

#[test]
fn body_read_until_the_server_finishes() {
    let mut d = Drive::new();
    d.client(b"GET /old HTTP/1.0\r\n\r\n")
        .server(b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 200 looks like a response but is body\r\n\r\n");
    assert_eq!(d.exchanges().len(), 1);
    d.server(b"more body").finish(From::Server).close();
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), pairs(&[("GET /old", 200)]));
    assert!(exchanges[0].quality.complete);
    assert_eq!(d.tracker.connections(), 0);
}

#[test]
fn pipelined_requests_with_interim_responses() {
    let mut d = Drive::new();
    d.client(b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .server(b"HTTP/1.1 100 Continue\r\n\r\n")
        .client(b"hiGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
        .server(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges)[..2],
        pairs(&[("POST /a", 201), ("GET /b", 200)])
    );
    let statuses = |e: &Exchange| e.interim.iter().map(|r| r.line.status).collect::<Vec<_>>();
    assert_eq!(statuses(exchanges[0]), vec![100]);
    assert_eq!(statuses(exchanges[1]), vec![103, 102]);
    assert!(all_complete(&exchanges[..2]));
    // Closed before its answer.
    assert_eq!(summary(&exchanges)[2], (Some("GET /c".to_owned()), None));
    assert!(!exchanges[2].quality.complete);
}

#[test]
fn a_101_ends_at_its_blank_line_whatever_content_length_says() {
    let mut d = Drive::new();
    d.client(OFFER)
        .server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n\x81\x02hi")
        .client(b"\x81\x82mask");
    let exchanges = d.exchanges();
    assert!(exchanges.is_empty(), "waits for the first bytes");
    d.close();
    let exchanges = d.exchanges();
    assert_eq!(exchanges.len(), 1);
    let switched = exchanges[0].switched.as_ref().unwrap();
    assert_eq!(switched.server_bytes, b"\x81\x02hi");
    assert_eq!(switched.client_bytes, b"\x81\x82mask");
    assert!(exchanges[0].quality.complete);
}

#[test]
fn first_bytes_after_a_switch_each_direction_and_gates() {
    let limits = HttpLimits {
        switch_bytes: 4,
        ..HttpLimits::default()
    };
    let mut d = Drive::limited(limits);
    // Early data right behind the offer, before the 101: held, then first bytes.
    d.client(OFFER).client(b"\x81\x01");
    assert!(d.gates().is_empty());
    // Each side is gated at its first bytes; what is still in flight fills them up.
    d.server(SWITCH).server(b"\x82\x00\x82\x00\x82");
    let both = vec![
        (d.client, GateUntil::Forever),
        (d.server, GateUntil::Forever),
    ];
    assert_eq!(d.gates(), both);
    assert!(d.exchanges().is_empty());
    d.client(b"AB").client(b"CD");
    assert_eq!(d.gates(), both, "no gate twice");
    let exchanges = d.exchanges();
    assert_eq!(exchanges.len(), 1);
    let switched = exchanges[0].switched.as_ref().unwrap();
    assert_eq!(switched.client_bytes, b"\x81\x01AB");
    assert_eq!(switched.server_bytes, b"\x82\x00\x82\x00");
    assert!(exchanges[0].quality.complete);
    assert_eq!(exchanges[0].response_ns, Some(1003));
    // Nothing after the switch is HTTP.
    d.client(b"GET / HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\n\r\n")
        .close();
    assert_eq!(d.exchanges().len(), 1);
}

#[test]
fn the_switch_is_reported_when_a_side_finishes_or_the_wait_ends() {
    let mut d = Drive::new();
    d.client(OFFER).server(SWITCH);
    let deadline = d.now + HttpLimits::default().switch_wait_ns;
    d.server(b"srv").finish(From::Client);
    assert!(d.exchanges().is_empty());
    d.wait_until(deadline);
    let exchanges = d.exchanges();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].switched.as_ref().unwrap().server_bytes, b"srv");
    assert!(exchanges[0].quality.complete);
    // The client finished (no gate needed); the server is gated at the deadline.
    assert_eq!(d.gates(), vec![(d.server, GateUntil::Forever)]);

    // A later event past the deadline ends the wait too, before it is read.
    let mut d = Drive::new();
    d.client(OFFER).server(SWITCH);
    d.now += HttpLimits::default().switch_wait_ns;
    d.client(b"late");
    let exchanges = d.exchanges();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].switched.as_ref().unwrap().client_bytes, b"");
}

#[test]
fn declined_offer_then_more_requests() {
    let mut d = Drive::new();
    d.client(OFFER)
        .server(
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 4\r\n\r\nnope",
        )
        .client(b"GET /after HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("GET /chat", 426), ("GET /after", 200)])
    );
    assert!(all_complete(&exchanges));
    assert!(exchanges.iter().all(|e| e.switched.is_none()));
}

#[test]
fn early_data_after_a_declined_offer_is_read_as_http_again() {
    let mut d = Drive::new();
    d.client(OFFER)
        .client(b"\x81\x85junkGET /next HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![
            (Some("GET /chat".to_owned()), Some(200)),
            (None, Some(400)),
            (Some("GET /next".to_owned()), Some(200)),
        ]
    );
    assert!(exchanges[0].quality.complete);
    assert!(exchanges[1].quality.malformed && exchanges[2].quality.malformed);
    assert!(!exchanges[2].quality.complete);
}

#[test]
fn connect_tunnel() {
    let mut d = Drive::new();
    d.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01")
        .server(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03")
        .client(b"GET / HTTP/1.1\r\n\r\n")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("CONNECT example.com:443", 200)])
    );
    assert!(exchanges[0].switched.is_none());
    assert!(exchanges[0].quality.complete);
    assert_eq!(
        d.gates(),
        vec![
            (d.client, GateUntil::Forever),
            (d.server, GateUntil::Forever)
        ]
    );
}

#[test]
fn large_bodies_are_gated_and_their_uncopied_bytes_skipped() {
    let limits = HttpLimits {
        large_body_bytes: 100,
        ..HttpLimits::default()
    };
    let mut d = Drive::limited(limits);
    let head = b"POST /big HTTP/1.1\r\nContent-Length: 1000\r\n\r\n";
    d.client(head).client(&[b'x'; 10]);
    assert_eq!(
        d.gates(),
        vec![(d.client, GateUntil::Offset(head.len() as u64 + 1000))]
    );
    d.gap(From::Client, 990, GapKind::Uncopied)
        .client(b"GET /next HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
    assert_eq!(
        d.gates()[1],
        (d.server, GateUntil::Offset(d.offsets[1] + 0x1000))
    );
    d.gap(From::Server, 0x1000, GapKind::Uncopied)
        .server(b"\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("POST /big", 200), ("GET /next", 204)])
    );
    assert!(all_complete(&exchanges), "{exchanges:#?}");
}

#[test]
fn lost_bytes_inside_a_known_length_body_flag_only_its_exchange() {
    let mut d = Drive::new();
    d.client(b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")
        .gap(From::Client, 8, GapKind::Lost)
        .client(b"GET /b HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("POST /a", 200), ("GET /b", 200)])
    );
    assert!(exchanges[0].quality.gap && !exchanges[0].quality.complete);
    assert!(exchanges[1].quality.complete);
}

#[test]
fn lost_bytes_in_a_head_resynchronise_and_flag_every_later_exchange() {
    let mut d = Drive::new();
    d.client(b"GET /one HTTP/1.1\r\nHo")
        .gap(From::Client, 30, GapKind::Lost)
        .client(b"ost: b\r\n\r\nGET /two HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .server(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![(None, Some(200)), (Some("GET /two".to_owned()), Some(301))]
    );
    assert!(exchanges
        .iter()
        .all(|e| e.quality.gap && !e.quality.complete));

    // A hole the capture left on purpose in a head: truncated.
    let mut d = Drive::new();
    d.client(b"GET /one HTTP/1.1\r\n")
        .gap(From::Client, 100, GapKind::Uncopied)
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), vec![(None, Some(200))]);
    assert!(exchanges[0].quality.truncated && !exchanges[0].quality.gap);
}

#[test]
fn lost_bytes_in_a_response_head_answer_the_oldest_request() {
    let mut d = Drive::new();
    d.client(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 2")
        .gap(From::Server, 40, GapKind::Lost)
        .server(b"xx\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![
            (Some("GET /a".to_owned()), None),
            (Some("GET /b".to_owned()), Some(200))
        ]
    );
    assert!(exchanges.iter().all(|e| e.quality.gap));
}

#[test]
fn midstream_connections_resynchronise_on_message_starts() {
    let mut d = Drive::with(HttpLimits::default(), false, true);
    d.server(
        b"of a body we never saw the head of\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .client(b"tail of an upload")
    .client(b"GET /seen HTTP/1.1\r\nHost: a\r\n\r\n")
    .server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![(None, Some(200)), (Some("GET /seen".to_owned()), Some(404))]
    );
    assert!(exchanges
        .iter()
        .all(|e| e.quality.midstream && !e.quality.complete));
    assert!(exchanges
        .iter()
        .all(|e| e.client == d.client && e.server == d.server));
}

#[test]
fn sides_found_from_the_first_bytes_without_a_handshake() {
    let mut d = Drive::with(HttpLimits::default(), false, false);
    d.client(b"GET /x HT")
        .client(b"TP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), pairs(&[("GET /x", 200)]));
    assert_eq!(
        (exchanges[0].client, exchanges[0].server),
        (d.client, d.server)
    );
    assert!(exchanges[0].quality.complete);
}

#[test]
fn tls_on_a_watched_port_is_given_up_quietly() {
    for syn in [true, false] {
        let mut d = Drive::with(HttpLimits::default(), syn, false);
        d.client(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .server(b"\x16\x03\x03\x00\x7a\x02")
            .client(b"GET / HTTP/1.1\r\n\r\n")
            .close();
        assert!(d.exchanges().is_empty());
        let mut gates = d.gates();
        gates.sort_by_key(|(addr, _)| *addr);
        let mut expected = vec![
            (d.client, GateUntil::Forever),
            (d.server, GateUntil::Forever),
        ];
        expected.sort_by_key(|(addr, _)| *addr);
        assert_eq!(gates, expected, "syn {syn}");
    }
}

#[test]
fn oversized_heads_do_not_stop_the_connection() {
    let mut huge = b"GET /huge HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(1 << 20, b'a');
    huge.extend_from_slice(b"\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    let mut d = Drive::new();
    for piece in huge.chunks(16 * 1024) {
        d.client(piece);
    }
    d.server(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![
            (None, Some(431)),
            (Some("GET /after".to_owned()), Some(200))
        ]
    );
    assert!(exchanges[0].quality.oversized && !exchanges[0].quality.truncated);
    assert!(exchanges[1].quality.truncated && !exchanges[1].quality.complete);

    let mut many = b"GET /many HTTP/1.1\r\n".to_vec();
    for i in 0..10_000 {
        many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut d = Drive::new();
    d.client(&many).server(b"HTTP/1.1 431 Too Many\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), vec![(None, Some(431))]);
    assert!(exchanges[0].quality.oversized);
}

#[test]
fn malformed_heads_stand_as_unread_requests() {
    let mut d = Drive::new();
    d.client(b"GET /a HTTP/1.1\r\nBad Header\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![(None, Some(400)), (Some("GET /b".to_owned()), Some(200))]
    );
    assert!(
        exchanges
            .iter()
            .all(|e| e.quality.malformed && !e.quality.complete),
        "{exchanges:#?}"
    );
}

#[test]
fn bytes_after_a_non_request_are_searched_for_the_next_request() {
    let mut d = Drive::new();
    d.client(b"GET /a HTTP/1.1\r\n\r\nFOO BA")
        .client(b"R\r\nGET /b HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![
            (Some("GET /a".to_owned()), Some(200)),
            (None, Some(400)),
            (Some("GET /b".to_owned()), Some(200))
        ]
    );
    assert!(exchanges[0].quality.complete);
    assert!(exchanges[1].quality.malformed && exchanges[2].quality.malformed);
}

#[test]
fn the_new_protocol_follows_the_body_of_an_offer() {
    let mut d = Drive::new();
    d.client(b"POST /h2 HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhel")
        .server(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04")
        .client(b"loPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), pairs(&[("POST /h2", 101)]));
    let switched = exchanges[0].switched.as_ref().unwrap();
    assert_eq!(switched.client_bytes, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(switched.server_bytes, b"\x00\x00\x00\x04");
    assert!(exchanges[0].quality.complete);
}

#[test]
fn a_request_pipelined_behind_an_accepted_offer_is_never_answered() {
    let mut d = Drive::new();
    d.client(OFFER)
        .client(b"GET /behind HTTP/1.1\r\n\r\n\x81\x80")
        .server(SWITCH)
        .server(b"\x81\x00")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        vec![
            (Some("GET /chat".to_owned()), Some(101)),
            (Some("GET /behind".to_owned()), None)
        ]
    );
    assert_eq!(
        exchanges[0].switched.as_ref().unwrap().client_bytes,
        b"\x81\x80"
    );
    assert!(exchanges[0].quality.complete && !exchanges[1].quality.complete);
}

#[test]
fn early_data_is_what_the_client_sent_before_the_answer() {
    // Before a 101: the held bytes, lost ones included.
    let mut d = Drive::new();
    d.client(OFFER)
        .client(b"\x81\x85abcd")
        .gap(From::Client, 3, GapKind::Lost)
        .server(SWITCH)
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        exchanges[0].early_data,
        Some(EarlyData {
            bytes: 9,
            looks_like_request: false
        })
    );
    // Before a decline: the held bytes are read as HTTP again afterwards.
    let mut d = Drive::new();
    d.client(OFFER)
        .client(b"\x81\x85junk")
        .server(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(exchanges[0].early_data.map(|e| e.bytes), Some(6));
    assert_eq!(exchanges[0].not_http_after_decline, None);
    // An unfinished request head that a 101 turns into the new protocol.
    let mut d = Drive::new();
    d.client(OFFER).client(b"GET /x HT").server(SWITCH).close();
    assert_eq!(
        d.exchanges()[0].early_data,
        Some(EarlyData {
            bytes: 9,
            looks_like_request: true
        })
    );
    // Bytes sent once the 101 arrived are not early.
    let mut d = Drive::new();
    d.client(OFFER).server(SWITCH).client(b"\x81\x80").close();
    assert_eq!(d.exchanges()[0].early_data, None);
}

#[test]
fn requests_read_before_an_answer_are_pipelined_behind_it() {
    let mut d = Drive::new();
    d.client(OFFER)
        .client(b"GET /behind HTTP/1.1\r\n\r\n")
        .server(SWITCH)
        .close();
    let exchanges = d.exchanges();
    assert!(exchanges[0].pipelined_behind);
    assert!(!exchanges[1].pipelined_behind);
    assert_eq!(exchanges[0].early_data, None);

    let mut d = Drive::new();
    d.client(b"GET /a HTTP/1.1\r\n\r\n")
        .server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .client(b"GET /b HTTP/1.1\r\n\r\n")
        .close();
    assert!(d.exchanges().iter().all(|e| !e.pipelined_behind));
}

const DECLINE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn a_declined_upgrade_waits_for_the_next_message_start_of_each_side() {
    // The server goes on with a WebSocket frame instead of HTTP/1.1.
    let mut d = Drive::new();
    d.client(OFFER).server(DECLINE);
    assert!(
        d.exchanges().is_empty(),
        "waits for the next message starts"
    );
    d.server(b"\x81\x05hello");
    let exchanges = d.exchanges();
    assert_eq!(summary(&exchanges), pairs(&[("GET /chat", 200)]));
    assert_eq!(
        exchanges[0].not_http_after_decline,
        Some(NotHttp {
            sent_by_client: false,
            first_bytes: b"\x81\x05hello".to_vec()
        })
    );
    assert!(exchanges[0].quality.complete);

    // The client does, once the answer came.
    let mut d = Drive::new();
    d.client(OFFER)
        .server(DECLINE)
        .client(b"\x81\x85\x01\x02\x03\x04hello-from-client")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        exchanges[0].not_http_after_decline,
        Some(NotHttp {
            sent_by_client: true,
            first_bytes: b"\x81\x85\x01\x02\x03\x04hello-from".to_vec()
        })
    );

    // Both go on with HTTP/1.1: reported before the next exchange.
    let mut d = Drive::new();
    d.client(OFFER)
        .server(DECLINE)
        .client(b"GET /next HTTP/1.1\r\n\r\n");
    assert!(d.exchanges().is_empty());
    d.server(b"HTTP/1.1 204 No Content\r\n\r\n");
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        pairs(&[("GET /chat", 200), ("GET /next", 204)])
    );
    assert!(exchanges.iter().all(|e| e.not_http_after_decline.is_none()));
}

#[test]
fn a_declined_upgrade_is_reported_when_its_sides_can_no_longer_tell() {
    // The wait ends.
    let mut d = Drive::new();
    d.client(OFFER).server(DECLINE);
    let deadline = d.now + HttpLimits::default().switch_wait_ns;
    d.wait_until(deadline);
    assert_eq!(d.exchanges().len(), 1);
    // Not HTTP after it is none of the declined exchange's business then.
    d.server(b"\x81\x00").close();
    assert_eq!(d.exchanges()[0].not_http_after_decline, None);

    // Both sides finished.
    let mut d = Drive::new();
    d.client(OFFER)
        .server(DECLINE)
        .finish(From::Server)
        .finish(From::Client);
    assert_eq!(d.exchanges().len(), 1);

    // Bytes were lost where the server's next message starts.
    let mut d = Drive::new();
    d.client(OFFER)
        .server(DECLINE)
        .gap(From::Server, 10, GapKind::Lost)
        .server(b"\x81\x00")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(exchanges[0].not_http_after_decline, None);
    assert!(exchanges[0].quality.complete);
}

#[test]
fn requests_past_the_pipelining_bound_keep_their_place_but_not_their_head() {
    let limits = HttpLimits {
        max_pipelined: 2,
        ..HttpLimits::default()
    };
    let mut d = Drive::limited(limits);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    d.client(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
        .server(ok)
        .client(b"GET /4 HTTP/1.1\r\n\r\n")
        .server(ok)
        .server(ok)
        .server(ok)
        .close();
    let exchanges = d.exchanges();
    assert_eq!(
        summary(&exchanges),
        [
            (Some("GET /1".into()), Some(200)),
            (Some("GET /2".into()), Some(200)),
            (None, Some(200)),
            (Some("GET /4".into()), Some(200)),
        ]
    );
    // The third request's exchange is reported without its head, not
    // judged; pairing stays certain, so the fourth is judged.
    assert!(exchanges[2].quality.oversized && !exchanges[2].quality.complete);
    assert!([0, 1, 3].iter().all(|&i| exchanges[i].quality.complete));
    assert_eq!(d.tracker.stats().requests_not_kept, 1);
}

#[test]
fn an_offer_behind_more_plain_requests_than_the_bound_is_judged() {
    let mut d = Drive::new();
    let plain = b"GET / HTTP/1.1\r\nHost: pbs\r\n\r\n".repeat(64);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".repeat(64);
    d.client(&plain)
        .client(b"GET /backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n")
        .server(&ok)
        .server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n")
        .close();
    let exchanges = d.exchanges();
    assert_eq!(exchanges.len(), 65);
    let offer = &exchanges[64];
    assert_eq!(offer.request.as_ref().unwrap().line.target, "/backup");
    assert!(offer.is_switch() && offer.quality.complete);
    assert_eq!(exchanges.iter().filter(|e| e.request.is_none()).count(), 1);
    assert_eq!(d.tracker.stats().requests_not_kept, 1);
}

#[test]
fn partial_heads_and_requests_awaiting_count_as_held_until_the_connection_ends() {
    let mut d = Drive::new();
    assert_eq!(d.tracker.heap_bytes(), 0);
    let unfinished = [b"GET / HTTP/1.1\r\nX-Pad: ".as_slice(), &[b'a'; 20_000]].concat();
    d.client(b"GET /first HTTP/1.1\r\n\r\n").client(&unfinished);
    let held = d.tracker.heap_bytes();
    assert!(
        (unfinished.len()..2 * unfinished.len()).contains(&held),
        "{held} bytes held for a head of {} and one request",
        unfinished.len()
    );
    d.server(&[b"HTTP/1.1 200 OK\r\nX-Pad: ".as_slice(), &[b'b'; 30_000]].concat());
    assert!(d.tracker.heap_bytes() > held + 30_000);
    d.close();
    assert_eq!(d.tracker.heap_bytes(), 0);
}

#[test]
fn a_head_never_holds_more_than_the_head_limit() {
    let limits = HttpLimits {
        max_head_bytes: 1000,
        ..HttpLimits::default()
    };
    let mut d = Drive::limited(limits);
    d.client(b"GET / HTTP/1.1\r\n");
    for _ in 0..99 {
        d.client(b"X: 0123456\r\n");
        assert!(d.tracker.heap_bytes() <= 1000, "{}", d.tracker.heap_bytes());
    }
}

#[test]
fn conflicting_overlap_flags_the_exchange_it_touches() {
    let mut d = Drive::new();
    d.client(b"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
    d.event(StreamEvent::ConflictingOverlap {
        id: ID,
        src: d.client,
        offset: 40,
        len: 2,
        timestamp_ns: 2000,
    });
    d.client(b"cdGET /b HTTP/1.1\r\n\r\n").server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let exchanges = d.exchanges();
    assert!(exchanges[0].quality.conflicting_overlap && !exchanges[0].quality.complete);
    assert!(exchanges[1].quality.complete);
}

#[test]
fn closing_forgets_the_connection_and_reports_what_was_pending() {
    let mut d = Drive::new();
    d.client(b"GET /a HTTP/1.1\r\n\r\nGET /b HT");
    assert_eq!(d.tracker.connections(), 1);
    d.close();
    assert_eq!(d.tracker.connections(), 0);
    assert_eq!(
        summary(&d.exchanges()),
        vec![(Some("GET /a".to_owned()), None)]
    );
    // Events after the close are ignored.
    d.server(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(d.exchanges().len(), 1);
}

/// A conversation cut into pieces: the client's and the server's bytes,
/// and for each server byte offset, how many client bytes must have been
/// sent before it (a response follows its request).
struct Conversation {
    client: Vec<u8>,
    server: Vec<u8>,
    /// (server offset, client bytes needed before the server bytes from there)
    causality: Vec<(usize, usize)>,
}

fn conversation() -> Conversation {
    let mut c = Conversation {
        client: Vec::new(),
        server: Vec::new(),
        causality: Vec::new(),
    };
    let exchange = |c: &mut Conversation, request: &[u8], response: &[u8]| {
        c.client.extend_from_slice(request);
        c.causality.push((c.server.len(), c.client.len()));
        c.server.extend_from_slice(response);
    };
    exchange(
        &mut c,
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    );
    exchange(
        &mut c,
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: v\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    exchange(
        &mut c,
        b"HEAD /h HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
    );
    exchange(
        &mut c,
        b"\r\nGET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    );
    // A request pipelined behind the offer, sent before the 101.
    exchange(
        &mut c,
        &[OFFER, b"GET /behind HTTP/1.1\r\n\r\n"].concat(),
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    c.client
        .extend_from_slice(b"\x81\x85\x01\x02\x03\x04hello-from-client");
    c.server.extend_from_slice(b"\x81\x05hello-from-server");
    c
}

/// Feeds the conversation split at `client_cuts` / `server_cuts`, sending
/// client pieces first whenever causality asks for them; returns the
/// exchanges without capture times, early data and pipelining (which depend
/// on the cuts: how far the client got before each answer).
fn run_split(
    c: &Conversation,
    syn: bool,
    client_cuts: &[usize],
    server_cuts: &[usize],
) -> Vec<Exchange> {
    let pieces = |len: usize, cuts: &[usize]| {
        let mut points: Vec<usize> = cuts.iter().map(|&p| p % (len + 1)).collect();
        points.extend([0, len]);
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>()
    };
    let client_pieces = pieces(c.client.len(), client_cuts);
    let server_pieces = pieces(c.server.len(), server_cuts);
    let mut d = Drive::with(HttpLimits::default(), syn, false);
    let mut next_client = client_pieces.iter().peekable();
    for &(start, end) in &server_pieces {
        // Client bytes needed before any server byte of this piece.
        let needed = c
            .causality
            .iter()
            .filter(|(s, _)| *s < end)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        while let Some(&&(cs, ce)) = next_client.peek() {
            if cs >= needed {
                break;
            }
            d.client(&c.client[cs..ce]);
            next_client.next();
        }
        d.server(&c.server[start..end]);
    }
    for &(cs, ce) in next_client {
        d.client(&c.client[cs..ce]);
    }
    d.close();
    d.exchanges()
        .into_iter()
        .map(|e| Exchange {
            request_ns: None,
            response_ns: None,
            early_data: None,
            pipelined_behind: false,
            ..e.clone()
        })
        .collect()
}

#[test]
fn the_conversation_read_whole() {
    let c = conversation();
    let exchanges = run_split(&c, true, &[], &[]);
    assert_eq!(run_split(&c, false, &[], &[]), exchanges);
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    let mut expected = pairs(&[
        ("POST /a", 200),
        ("PUT /c", 201),
        ("HEAD /h", 200),
        ("GET /chat", 426),
        ("GET /chat", 101),
    ]);
    expected.push((Some("GET /behind".to_owned()), None));
    assert_eq!(summary(&refs), expected);
    assert!(all_complete(&refs[..5]), "{refs:#?}");
    let switched = exchanges[4].switched.as_ref().unwrap();
    assert_eq!(
        switched.client_bytes,
        b"\x81\x85\x01\x02\x03\x04hello-from-client"
    );
    assert_eq!(switched.server_bytes, b"\x81\x05hello-from-server");
    assert_eq!(exchanges[4].interim.len(), 1);
}

proptest! {
    #[test]
    fn any_split_reads_like_the_whole(
        client_cuts in proptest::collection::vec(0usize..1000, 0..40),
        server_cuts in proptest::collection::vec(0usize..1000, 0..40),
        syn in any::<bool>(),
    ) {
        let c = conversation();
        let whole = run_split(&c, true, &[], &[]);
        prop_assert_eq!(run_split(&c, syn, &client_cuts, &server_cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_and_holes_never_panic(
        events in proptest::collection::vec(
            (any::<bool>(), prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(Ok),
                (1u64..5000, any::<bool>()).prop_map(Err),
            ]),
            0..60,
        ),
        syn in any::<bool>(),
        midstream in any::<bool>(),
    ) {
        let limits = HttpLimits { max_head_bytes: 256, max_headers: 4, switch_bytes: 8, max_pipelined: 3, large_body_bytes: 16, ..HttpLimits::default() };
        let mut d = Drive::with(limits, syn, midstream);
        let prefixes: [&[u8]; 4] = [b"GET / HTTP/1.1\r\n", b"HTTP/1.1 101 x\r\n\r\n", b"Content-Length: 3\r\n\r\n", b"\r\n"];
        for (i, (from_client, piece)) in events.iter().enumerate() {
            let from = if *from_client { From::Client } else { From::Server };
            match piece {
                Ok(bytes) => {
                    let mut bytes = bytes.clone();
                    // Make HTTP-looking input likely.
                    if i % 3 == 0 {
                        bytes.splice(0..0, prefixes[i % 4].iter().copied());
                    }
                    d.send(from, &bytes);
                }
                Err((len, lost)) => {
                    d.gap(from, *len, if *lost { GapKind::Lost } else { GapKind::Uncopied });
                }
            }
        }
        d.close();
        prop_assert_eq!(d.tracker.connections(), 0);
        prop_assert_eq!(d.tracker.heap_bytes(), 0, "what was counted was given back");
        for exchange in d.exchanges() {
            prop_assert!(exchange.interim.len() <= 8);
            if let Some(switched) = &exchange.switched {
                prop_assert!(switched.client_bytes.len() <= 8 && switched.server_bytes.len() <= 8);
            }
            prop_assert!(!exchange.quality.complete || !exchange.quality.impaired());
        }
    }
}
