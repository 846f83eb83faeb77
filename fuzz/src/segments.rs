//! Segment sequences, the input of the `segments` target: TCP segments of up
//! to eight connections, in any order and with any flags, sequence numbers,
//! holes and overlaps, for reassembly and the HTTP layer behind it.
//!
//! ```text
//! input   = mode:u8 segment*
//! segment = selector:u8 tcp_flags:u8 seq:u32 ack:u32 advance_ms:u16
//!           data_offset:u16 tail:u16 data_len:u16 data
//! ```
//!
//! Numbers are little-endian; `data` is `data_len` bytes, fewer at the end of
//! the input. `mode`: [`MODE_EXCHANGES`], [`MODE_PRETTY`]. `selector`: bits
//! 0-1 the connection, then [`SENT_BY_SERVER`], [`IPV6`], [`GATED`] (the
//! `data_offset` payload bytes before the data were not copied),
//! [`TAIL_UNCOPIED`] (the `tail` bytes after the data were left out on
//! purpose; otherwise they come in another record, as when the kernel splits
//! a segment), and in bits 6-7 the TC hook (none, ingress, egress, none). The
//! payload is `data_offset + data_len + tail` bytes long; the segment is seen
//! `advance_ms` after the one before it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use auditor::segment::{Segment, SegmentRef, TcpFlags};
use auditor_common::Direction;

use crate::{Reader, BACKEND_PORT, FRONTEND_PORT, START_NS};

/// Mode bit: the pipeline prints exchanges (`--exchanges`), not events.
pub const MODE_EXCHANGES: u8 = 0x01;
/// Mode bit: events in the pretty format.
pub const MODE_PRETTY: u8 = 0x02;

const CONNECTION: u8 = 0x03;
pub const SENT_BY_SERVER: u8 = 0x04;
pub const IPV6: u8 = 0x08;
pub const GATED: u8 = 0x10;
pub const TAIL_UNCOPIED: u8 = 0x20;
const HOOK_SHIFT: u8 = 6;

/// Client and server of connection `index` (0-3): the clients on ports
/// 40000-40003, the servers on the frontend and the backend port in turn.
pub fn endpoints(index: u8, ipv6: bool) -> (SocketAddr, SocketAddr) {
    let (client, server): (IpAddr, IpAddr) = if ipv6 {
        (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
        )
    } else {
        (
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(10, 0, 0, 2).into(),
        )
    };
    let server_port = if index.is_multiple_of(2) {
        FRONTEND_PORT
    } else {
        BACKEND_PORT
    };
    (
        SocketAddr::new(client, 40_000 + u16::from(index)),
        SocketAddr::new(server, server_port),
    )
}

/// The input's mode byte and its segments.
pub fn decode(input: &[u8]) -> (u8, Segments<'_>) {
    let mut reader = Reader::new(input);
    let mode = reader.u8();
    let segments = Segments {
        reader,
        timestamp_ns: START_NS,
    };
    (mode, segments)
}

pub struct Segments<'a> {
    reader: Reader<'a>,
    timestamp_ns: u64,
}

impl<'a> Iterator for Segments<'a> {
    type Item = SegmentRef<'a>;

    fn next(&mut self) -> Option<SegmentRef<'a>> {
        if self.reader.is_empty() {
            return None;
        }
        let r = &mut self.reader;
        let selector = r.u8();
        let flags = TcpFlags(r.u8());
        let seq = r.u32();
        let ack = r.u32();
        let advance_ms = r.u16();
        let data_offset = r.u16();
        let tail = r.u16();
        let data_len = r.u16();
        let data = r.bytes(usize::from(data_len));
        self.timestamp_ns += u64::from(advance_ms) * 1_000_000;
        let (client, server) = endpoints(selector & CONNECTION, selector & IPV6 != 0);
        let (src, dst) = if selector & SENT_BY_SERVER != 0 {
            (server, client)
        } else {
            (client, server)
        };
        let direction = match selector >> HOOK_SHIFT {
            1 => Some(Direction::Ingress),
            2 => Some(Direction::Egress),
            _ => None,
        };
        Some(Segment {
            timestamp_ns: self.timestamp_ns,
            interface: Some(0),
            direction,
            src,
            dst,
            seq,
            ack,
            flags,
            payload_len: u32::from(data_offset) + data.len() as u32 + u32::from(tail),
            data_offset: u32::from(data_offset),
            data,
            uncopied_tail: if selector & TAIL_UNCOPIED != 0 {
                u32::from(tail)
            } else {
                0
            },
            gated: selector & GATED != 0,
        })
    }
}

/// Writes segments in this format. Each connection (pair of endpoints) gets
/// one of the four, in order of first appearance, and the sender of its
/// first segment is its client.
pub struct Encoder {
    out: Vec<u8>,
    connections: Vec<(SocketAddr, SocketAddr)>,
    last_timestamp_ns: Option<u64>,
}

impl Encoder {
    pub fn new(mode: u8) -> Encoder {
        Encoder {
            out: vec![mode],
            connections: Vec::new(),
            last_timestamp_ns: None,
        }
    }

    pub fn push(&mut self, segment: &SegmentRef<'_>) {
        let endpoints = (segment.src, segment.dst);
        let index = match self
            .connections
            .iter()
            .position(|&(a, b)| (a, b) == endpoints || (b, a) == endpoints)
        {
            Some(index) => index,
            None => {
                self.connections.push(endpoints);
                self.connections.len() - 1
            }
        };
        let mut selector = (index % 4) as u8;
        if self.connections[index].0 != segment.src {
            selector |= SENT_BY_SERVER;
        }
        if segment.src.is_ipv6() {
            selector |= IPV6;
        }
        if segment.gated {
            selector |= GATED;
        }
        let data = &segment.data[..segment.data.len().min(usize::from(u16::MAX))];
        let data_end = segment.data_offset.saturating_add(data.len() as u32);
        let tail = if segment.uncopied_tail > 0 {
            selector |= TAIL_UNCOPIED;
            segment.uncopied_tail
        } else {
            segment.payload_len.saturating_sub(data_end)
        };
        selector |= match segment.direction {
            None => 0,
            Some(Direction::Ingress) => 1 << HOOK_SHIFT,
            Some(Direction::Egress) => 2 << HOOK_SHIFT,
        };
        let advance_ms = self.last_timestamp_ns.map_or(0, |last| {
            segment.timestamp_ns.saturating_sub(last) / 1_000_000
        });
        self.last_timestamp_ns = Some(segment.timestamp_ns);

        self.out.extend([selector, segment.flags.0]);
        self.out.extend(segment.seq.to_le_bytes());
        self.out.extend(segment.ack.to_le_bytes());
        self.out.extend(saturating_u16(advance_ms).to_le_bytes());
        self.out
            .extend(saturating_u16(segment.data_offset.into()).to_le_bytes());
        self.out.extend(saturating_u16(tail.into()).to_le_bytes());
        self.out.extend((data.len() as u16).to_le_bytes());
        self.out.extend_from_slice(data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

fn saturating_u16(value: u64) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}
