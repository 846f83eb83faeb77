use std::net::SocketAddr;

use auditor_common::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use proptest::prelude::*;

use super::*;
use crate::segment::{Segment, TcpFlags};

const CLIENT_ISN: u32 = 1_000;
const SERVER_ISN: u32 = 5_000;

fn client() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}

fn server() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

/// What the tests compare: events with their borrowed bytes copied.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Opened {
        first: SocketAddr,
        syn_sender: Option<SocketAddr>,
        midstream: bool,
    },
    Data {
        src: SocketAddr,
        offset: u64,
        bytes: Vec<u8>,
    },
    Gap {
        src: SocketAddr,
        offset: u64,
        len: u64,
        kind: GapKind,
    },
    Conflict {
        src: SocketAddr,
        offset: u64,
        len: u64,
    },
    Finished {
        src: SocketAddr,
    },
    Closed {
        reason: CloseReason,
    },
}

impl From<&StreamEvent<'_>> for Seen {
    fn from(event: &StreamEvent<'_>) -> Seen {
        match *event {
            StreamEvent::Opened {
                first,
                syn_sender,
                midstream,
                ..
            } => Seen::Opened {
                first,
                syn_sender,
                midstream,
            },
            StreamEvent::Data {
                src, offset, bytes, ..
            } => Seen::Data {
                src,
                offset,
                bytes: bytes.to_vec(),
            },
            StreamEvent::Gap {
                src,
                offset,
                len,
                kind,
                ..
            } => Seen::Gap {
                src,
                offset,
                len,
                kind,
            },
            StreamEvent::ConflictingOverlap {
                src, offset, len, ..
            } => Seen::Conflict { src, offset, len },
            StreamEvent::Finished { src, .. } => Seen::Finished { src },
            StreamEvent::Closed { reason, .. } => Seen::Closed { reason },
        }
    }
}

struct Harness {
    reassembler: Reassembler,
    seen: Vec<Seen>,
    clock: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(ReassemblyLimits::default())
    }

    fn with_limits(limits: ReassemblyLimits) -> Harness {
        Harness {
            reassembler: Reassembler::new(limits),
            seen: Vec::new(),
            clock: 0,
        }
    }

    fn push(&mut self, segment: Segment) {
        self.clock = segment.timestamp_ns;
        let seen = &mut self.seen;
        self.reassembler
            .push(&segment.borrowed(), &mut |event| seen.push(event.into()));
    }

    fn finish(&mut self) {
        let seen = &mut self.seen;
        self.reassembler
            .finish(&mut |event| seen.push(event.into()));
    }

    /// The bytes `src` delivered, with each gap as that many `#`.
    fn stream(&self, src: SocketAddr) -> Vec<u8> {
        let mut out = Vec::new();
        for event in &self.seen {
            match event {
                Seen::Data {
                    src: s,
                    offset,
                    bytes,
                } if *s == src => {
                    assert_eq!(*offset, out.len() as u64, "data arrives in order");
                    out.extend_from_slice(bytes);
                }
                Seen::Gap {
                    src: s,
                    offset,
                    len,
                    ..
                } if *s == src => {
                    assert_eq!(*offset, out.len() as u64, "gaps arrive in order");
                    out.extend(std::iter::repeat_n(b'#', *len as usize));
                }
                _ => {}
            }
        }
        out
    }

    fn gaps(&self) -> Vec<Seen> {
        self.seen
            .iter()
            .filter(|e| matches!(e, Seen::Gap { .. }))
            .cloned()
            .collect()
    }
}

fn segment(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, data: &[u8]) -> Segment {
    Segment {
        timestamp_ns: 1,
        interface: Some(1),
        direction: None,
        src,
        dst,
        seq,
        ack: 0,
        flags: TcpFlags(flags),
        payload_len: data.len() as u32,
        data_offset: 0,
        data: data.to_vec(),
        uncopied_tail: 0,
        gated: false,
    }
}

fn from_client(offset: u32, data: &[u8]) -> Segment {
    segment(client(), server(), CLIENT_ISN + 1 + offset, ACK | PSH, data)
}

fn from_server(offset: u32, data: &[u8]) -> Segment {
    segment(server(), client(), SERVER_ISN + 1 + offset, ACK | PSH, data)
}

fn handshake(h: &mut Harness) {
    h.push(segment(client(), server(), CLIENT_ISN, SYN, b""));
    let mut syn_ack = segment(server(), client(), SERVER_ISN, SYN | ACK, b"");
    syn_ack.ack = CLIENT_ISN + 1;
    h.push(syn_ack);
}

#[test]
fn in_order_streams_are_delivered_and_closed_by_both_fins() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"GET / HTTP/1.1\r\n\r\n"));
    h.push(from_server(0, b"HTTP/1.1 200 OK\r\n\r\n"));
    h.push(segment(
        client(),
        server(),
        CLIENT_ISN + 1 + 18,
        ACK | FIN,
        b"",
    ));
    h.push(segment(
        server(),
        client(),
        SERVER_ISN + 1 + 19,
        ACK | FIN,
        b"",
    ));
    assert_eq!(
        h.seen[0],
        Seen::Opened {
            first: client(),
            syn_sender: Some(client()),
            midstream: false
        }
    );
    assert_eq!(h.stream(client()), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(h.stream(server()), b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(h.seen.contains(&Seen::Finished { src: client() }));
    assert_eq!(
        h.seen.last(),
        Some(&Seen::Closed {
            reason: CloseReason::Fin
        })
    );
    assert_eq!(h.reassembler.connections(), 0);
}

#[test]
fn out_of_order_segments_wait_for_the_hole_to_fill() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(5, b"world"));
    assert_eq!(h.stream(client()), b"");
    assert_eq!(h.reassembler.buffered_bytes(), 5);
    h.push(from_client(0, b"hello"));
    assert_eq!(h.stream(client()), b"helloworld");
    assert_eq!(h.reassembler.buffered_bytes(), 0);
}

#[test]
fn duplicates_and_retransmissions_are_delivered_once() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"hello"));
    h.push(from_client(0, b"hello"));
    h.push(from_client(5, b"world"));
    h.push(from_client(3, b"loworld"));
    h.push(from_client(7, b"rld"));
    assert_eq!(h.stream(client()), b"helloworld");
    assert!(!h.seen.iter().any(|e| matches!(e, Seen::Conflict { .. })));
}

#[test]
fn overlaps_keep_the_first_bytes_and_report_conflicts() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(10, b"KLMNOP"));
    // Overlaps the buffered chunk with different bytes at 12..16.
    h.push(from_client(8, b"ijklmnopq"));
    h.push(from_client(0, b"abcdefgh"));
    assert_eq!(h.stream(client()), b"abcdefghijKLMNOPq");
    assert!(h.seen.contains(&Seen::Conflict {
        src: client(),
        offset: 10,
        len: 6
    }));
    // A retransmission of delivered bytes with other contents.
    h.push(from_client(14, b"xx"));
    assert!(h.seen.contains(&Seen::Conflict {
        src: client(),
        offset: 14,
        len: 2
    }));
    assert_eq!(h.stream(client()), b"abcdefghijKLMNOPq");
    assert_eq!(h.reassembler.stats().conflicting_overlaps, 2);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut h = Harness::new();
    let isn = u32::MAX - 3;
    h.push(segment(client(), server(), isn, SYN, b""));
    h.push(segment(
        client(),
        server(),
        isn.wrapping_add(1),
        ACK,
        b"abcdef",
    ));
    h.push(segment(
        client(),
        server(),
        isn.wrapping_add(7),
        ACK,
        b"ghij",
    ));
    h.push(segment(client(), server(), 7, ACK, b"klm")); // wrapped: offset 10
    assert_eq!(h.stream(client()), b"abcdefghijklm");
}

#[test]
fn uncopied_bytes_are_gaps_of_known_length() {
    let mut h = Harness::new();
    handshake(&mut h);
    let mut truncated = from_client(0, b"head");
    truncated.payload_len = 10;
    truncated.uncopied_tail = 6;
    h.push(truncated);
    let mut gated = from_client(10, b"tail");
    gated.payload_len = 7;
    gated.data_offset = 3;
    gated.gated = true;
    h.push(gated);
    assert_eq!(h.stream(client()), b"head#########tail");
    assert_eq!(
        h.gaps(),
        [
            Seen::Gap {
                src: client(),
                offset: 4,
                len: 6,
                kind: GapKind::Uncopied
            },
            Seen::Gap {
                src: client(),
                offset: 10,
                len: 3,
                kind: GapKind::Uncopied
            },
        ]
    );
    assert_eq!(h.reassembler.stats().uncopied_bytes, 9);
    assert_eq!(h.reassembler.stats().lost_bytes, 0);
}

#[test]
fn records_of_one_segment_are_joined() {
    // The kernel splits a large segment into records: same seq, growing data_offset.
    let mut h = Harness::new();
    handshake(&mut h);
    let mut first = from_client(0, b"abcd");
    first.payload_len = 8;
    let mut second = from_client(0, b"efgh");
    second.payload_len = 8;
    second.data_offset = 4;
    h.push(second);
    h.push(first);
    assert_eq!(h.stream(client()), b"abcdefgh");
}

#[test]
fn bytes_the_peer_acknowledged_but_we_never_saw_are_lost() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"GET "));
    h.push(from_client(8, b"HTTP")); // 4 bytes at 4..8 never captured
    assert!(h.gaps().is_empty(), "it may still arrive");
    let mut ack = from_server(0, b"");
    ack.ack = CLIENT_ISN + 1 + 12;
    h.push(ack);
    assert_eq!(
        h.gaps(),
        [Seen::Gap {
            src: client(),
            offset: 4,
            len: 4,
            kind: GapKind::Lost
        }]
    );
    assert_eq!(h.stream(client()), b"GET ####HTTP");
    assert_eq!(h.reassembler.stats().lost_bytes, 4);
}

#[test]
fn holes_left_at_the_end_are_lost_and_what_follows_is_delivered() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"ab"));
    h.push(from_client(4, b"ef"));
    h.finish();
    assert_eq!(h.stream(client()), b"ab##ef");
    assert_eq!(
        h.seen.last(),
        Some(&Seen::Closed {
            reason: CloseReason::EndOfInput
        })
    );
}

#[test]
fn a_reset_closes_the_connection() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"abc"));
    h.push(segment(server(), client(), SERVER_ISN + 1, RST, b""));
    assert_eq!(
        h.seen.last(),
        Some(&Seen::Closed {
            reason: CloseReason::Rst
        })
    );
    assert_eq!(h.reassembler.connections(), 0);
    // Stray segments of a closed connection open nothing without payload.
    h.push(segment(server(), client(), SERVER_ISN + 1, RST, b""));
    assert_eq!(h.reassembler.connections(), 0);
}

#[test]
fn idle_connections_time_out() {
    let limits = ReassemblyLimits {
        idle_timeout_ns: 1_000,
        ..Default::default()
    };
    let mut h = Harness::with_limits(limits);
    handshake(&mut h);
    let seen = &mut h.seen;
    h.reassembler.expire(500, &mut |e| seen.push(e.into()));
    assert_eq!(h.reassembler.connections(), 1);
    h.reassembler.expire(2_000, &mut |e| seen.push(e.into()));
    assert_eq!(h.reassembler.connections(), 0);
    assert_eq!(
        h.seen.last(),
        Some(&Seen::Closed {
            reason: CloseReason::Idle
        })
    );
    assert_eq!(h.reassembler.stats().connections_idled, 1);
}

#[test]
fn connections_seen_mid_stream_start_at_their_first_byte() {
    let mut h = Harness::new();
    let mut response = from_server(100, b"HTTP/1.1 200 OK\r\n");
    response.ack = CLIENT_ISN + 1 + 50;
    h.push(response);
    h.push(from_client(50, b"GET /next HTTP/1.1\r\n"));
    assert_eq!(
        h.seen[0],
        Seen::Opened {
            first: server(),
            syn_sender: None,
            midstream: true
        }
    );
    assert_eq!(h.stream(server()), b"HTTP/1.1 200 OK\r\n");
    assert_eq!(h.stream(client()), b"GET /next HTTP/1.1\r\n");
}

#[test]
fn a_syn_ack_seen_without_its_syn_names_the_client() {
    let mut h = Harness::new();
    let mut syn_ack = segment(server(), client(), SERVER_ISN, SYN | ACK, b"");
    syn_ack.ack = CLIENT_ISN + 1;
    h.push(syn_ack);
    h.push(from_client(0, b"GET"));
    assert_eq!(
        h.seen[0],
        Seen::Opened {
            first: server(),
            syn_sender: Some(client()),
            midstream: false
        }
    );
    assert_eq!(h.stream(client()), b"GET");
}

#[test]
fn a_new_syn_on_the_same_ports_starts_a_new_connection() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"old"));
    h.push(segment(client(), server(), 90_000, SYN, b""));
    h.push(segment(client(), server(), 90_001, ACK, b"new"));
    let opened = h
        .seen
        .iter()
        .filter(|e| matches!(e, Seen::Opened { .. }))
        .count();
    assert_eq!(opened, 2);
    assert!(h.seen.contains(&Seen::Closed {
        reason: CloseReason::Evicted
    }));
}

#[test]
fn segments_far_outside_the_window_are_dropped_and_counted() {
    let mut h = Harness::new();
    handshake(&mut h);
    h.push(from_client(0, b"ok"));
    h.push(from_client(1 << 31, b"bogus"));
    assert_eq!(h.stream(client()), b"ok");
    assert_eq!(h.reassembler.stats().out_of_window_segments, 1);
    assert_eq!(h.reassembler.buffered_bytes(), 0);
}

#[test]
fn the_connection_table_evicts_the_least_recently_used() {
    let limits = ReassemblyLimits {
        max_connections: 3,
        ..Default::default()
    };
    let mut h = Harness::with_limits(limits);
    for port in 0..10u16 {
        let src = SocketAddr::new("10.0.0.9".parse().unwrap(), 1000 + port);
        h.push(segment(src, server(), 7, SYN, b""));
    }
    assert_eq!(h.reassembler.connections(), 3);
    assert_eq!(h.reassembler.stats().connections_evicted, 7);
    assert_eq!(
        h.seen
            .iter()
            .filter(|e| **e
                == Seen::Closed {
                    reason: CloseReason::Evicted
                })
            .count(),
        7
    );
}

#[test]
fn buffered_bytes_stay_within_the_per_connection_limit() {
    let limits = ReassemblyLimits {
        max_buffered_per_connection: 1_000,
        ..Default::default()
    };
    let mut h = Harness::with_limits(limits);
    handshake(&mut h);
    // A hole at offset 0 that never fills, then 5 000 bytes behind it.
    for i in 0..50u32 {
        h.push(from_client(10 + i * 100, &[b'x'; 100]));
        assert!(h.reassembler.buffered_bytes() <= 1_000);
    }
    let stats = h.reassembler.stats();
    assert!(stats.buffer_overflows > 0);
    assert_eq!(stats.lost_bytes, 10, "the hole was given up once");
    assert_eq!(
        h.stream(client()).len(),
        10 + 50 * 100 - h.reassembler.buffered_bytes()
    );
}

#[test]
fn buffered_bytes_stay_within_the_total_limit_across_connections() {
    let limits = ReassemblyLimits {
        max_buffered_per_connection: 10_000,
        max_buffered_total: 3_000,
        ..Default::default()
    };
    let mut h = Harness::with_limits(limits);
    for port in 0..20u16 {
        let src = SocketAddr::new("10.0.0.9".parse().unwrap(), 1000 + port);
        h.push(segment(src, server(), 7, SYN, b""));
        h.push(segment(src, server(), 8 + 10, ACK, &[b'y'; 900]));
        assert!(h.reassembler.buffered_bytes() <= 3_000);
    }
    assert!(h.reassembler.stats().buffer_overflows > 0);
}

#[test]
fn a_flood_of_half_open_connections_keeps_memory_flat() {
    let limits = ReassemblyLimits {
        max_connections: 1_000,
        ..Default::default()
    };
    let mut h = Harness::with_limits(limits);
    for i in 0..20_000u32 {
        let src = SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 40_000);
        h.push(segment(src, server(), i, SYN, b""));
        h.seen.clear();
    }
    assert_eq!(h.reassembler.connections(), 1_000);
    assert_eq!(h.reassembler.stats().connections_evicted, 19_000);
}

/// One direction's bytes cut at `cuts`, as segments from `src`.
fn cut(src: SocketAddr, dst: SocketAddr, isn: u32, bytes: &[u8], cuts: &[usize]) -> Vec<Segment> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| {
            segment(
                src,
                dst,
                isn.wrapping_add(1 + w[0] as u32),
                PSH,
                &bytes[w[0]..w[1]],
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn any_segmentation_reordering_and_duplication_delivers_the_same_streams(
        up in proptest::collection::vec(any::<u8>(), 1..600),
        down in proptest::collection::vec(any::<u8>(), 1..600),
        up_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        down_cuts in proptest::collection::vec(any::<usize>(), 0..12),
        swaps in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..20),
        duplicates in proptest::collection::vec(any::<usize>(), 0..6),
        isn in any::<u32>(),
    ) {
        let mut segments = cut(client(), server(), isn, &up, &up_cuts);
        segments.extend(cut(server(), client(), isn ^ 0x5555_5555, &down, &down_cuts));
        for &(a, b) in &swaps {
            let (a, b) = (a % segments.len(), b % segments.len());
            segments.swap(a, b);
        }
        for &d in &duplicates {
            let copy = segments[d % segments.len()].clone();
            segments.push(copy);
        }
        let mut h = Harness::new();
        h.push(segment(client(), server(), isn, SYN, b""));
        h.push(segment(server(), client(), isn ^ 0x5555_5555, SYN, b""));
        for s in segments {
            h.push(s);
        }
        h.finish();
        prop_assert_eq!(h.stream(client()), up);
        prop_assert_eq!(h.stream(server()), down);
        prop_assert!(h.gaps().is_empty());
        prop_assert_eq!(h.reassembler.stats().conflicting_overlaps, 0);
    }
}
