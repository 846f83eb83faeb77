//! Ring-buffer records, the input of the `records` target: what the kernel
//! program hands to `auditor run`, one record after another.
//!
//! ```text
//! input = (length:u16 record)*
//! ```
//!
//! `length` is little-endian; a record is `length` bytes, fewer at the end of
//! the input: a [`RecordHeader`] and its payload bytes, or anything else.

use auditor::segment::SegmentRef;
use auditor_common::{record_flags, Direction, RecordHeader, RECORD_HEADER_LEN};

use crate::Reader;

/// The records of an input.
pub fn split(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut reader = Reader::new(input);
    std::iter::from_fn(move || {
        if reader.is_empty() {
            return None;
        }
        let length = reader.u16();
        Some(reader.bytes(usize::from(length)))
    })
}

/// Appends `segment` as the record the kernel program would have written
/// for it (a capture file's segments have no TC hook: they get ingress).
pub fn encode(segment: &SegmentRef<'_>, out: &mut Vec<u8>) {
    let data = &segment.data[..segment
        .data
        .len()
        .min(usize::from(u16::MAX) - RECORD_HEADER_LEN)];
    let header = RecordHeader {
        timestamp_ns: segment.timestamp_ns,
        ifindex: segment.interface.unwrap_or(0),
        seq: segment.seq,
        ack: segment.ack,
        payload_len: segment.payload_len,
        data_offset: segment.data_offset,
        data_len: data.len() as u32,
        src_addr: address(segment.src.ip()),
        dst_addr: address(segment.dst.ip()),
        src_port: segment.src.port(),
        dst_port: segment.dst.port(),
        ip_version: if segment.src.is_ipv4() { 4 } else { 6 },
        direction: segment.direction.unwrap_or(Direction::Ingress) as u8,
        tcp_flags: segment.flags.0,
        record_flags: if segment.uncopied_tail > 0 {
            record_flags::TRUNCATED
        } else {
            0
        } | if segment.gated {
            record_flags::GATED
        } else {
            0
        },
    };
    out.extend(((RECORD_HEADER_LEN + data.len()) as u16).to_le_bytes());
    let start = out.len();
    out.resize(start + RECORD_HEADER_LEN, 0);
    // SAFETY: `out[start..]` is exactly one header long; the write is unaligned.
    unsafe {
        std::ptr::write_unaligned(out[start..].as_mut_ptr().cast::<RecordHeader>(), header);
    }
    out.extend_from_slice(data);
}

/// An address as a record holds it: IPv4 in the first four bytes.
fn address(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}
