//! Typed TCP segments, decoded from the kernel program's ring-buffer records.
//!
//! A record is only trusted as far as its own length: every length field is
//! checked against the bytes actually received before it is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use auditor_common::{record_flags, tcp_flags, Direction, RecordHeader, RECORD_HEADER_LEN};

/// The copied bytes of one TCP segment's payload (or a part of them), from a
/// kernel record or a capture file. `D` holds the bytes: owned by default, or
/// borrowed from a capture file's buffer (see [`SegmentRef`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<D = Vec<u8>> {
    /// When the packet was seen, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Interface index (live capture) or capture-file interface id.
    pub interface: Option<u32>,
    /// The TC hook that saw the packet; capture files do not say.
    pub direction: Option<Direction>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Sequence number of the segment's first payload byte (or of its SYN).
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The segment's true payload length, whatever was copied.
    pub payload_len: u32,
    /// Offset of `data` within the segment's payload.
    pub data_offset: u32,
    pub data: D,
    /// Payload bytes after `data` that the kernel deliberately did not copy
    /// (per-segment cap): a hole of known length, not loss.
    pub uncopied_tail: u32,
    /// Bytes before `data_offset` were left out because the flow's payload
    /// gate was closed.
    pub gated: bool,
}

/// A segment whose payload is borrowed: what the reassembler reads (it copies
/// only what it must keep).
pub type SegmentRef<'a> = Segment<&'a [u8]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub fn syn(self) -> bool {
        self.0 & tcp_flags::SYN != 0
    }
    pub fn fin(self) -> bool {
        self.0 & tcp_flags::FIN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & tcp_flags::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & tcp_flags::ACK != 0
    }
}

impl std::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (tcp_flags::SYN, 'S'),
            (tcp_flags::FIN, 'F'),
            (tcp_flags::RST, 'R'),
            (tcp_flags::PSH, 'P'),
            (tcp_flags::ACK, '.'),
        ];
        for (bit, name) in names {
            if self.0 & bit != 0 {
                write!(f, "{name}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its {RECORD_HEADER_LEN}-byte header")]
    ShortRecord(usize),
    #[error("record claims {claimed} data bytes but carries {carried}")]
    DataBeyondRecord { claimed: u32, carried: usize },
    #[error(
        "record data ends at payload offset {end}, past the segment's {payload_len}-byte payload"
    )]
    DataBeyondPayload { end: u64, payload_len: u32 },
    #[error("record has IP version {0}")]
    IpVersion(u8),
    #[error("record has direction {0}")]
    Direction(u8),
}

impl<'a> SegmentRef<'a> {
    /// Decodes a kernel record, its payload borrowed from it;
    /// `clock_offset_ns` turns the kernel's CLOCK_MONOTONIC timestamp into
    /// Unix time.
    pub fn decode(record: &'a [u8], clock_offset_ns: u64) -> Result<SegmentRef<'a>, DecodeError> {
        if record.len() < RECORD_HEADER_LEN {
            return Err(DecodeError::ShortRecord(record.len()));
        }
        // SAFETY: the length was checked; every bit pattern is a valid
        // RecordHeader (integers and byte arrays only); the read is unaligned.
        let header: RecordHeader =
            unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<RecordHeader>()) };
        let carried = record.len() - RECORD_HEADER_LEN;
        if header.data_len as usize > carried {
            return Err(DecodeError::DataBeyondRecord {
                claimed: header.data_len,
                carried,
            });
        }
        let data_end = u64::from(header.data_offset) + u64::from(header.data_len);
        if data_end > u64::from(header.payload_len) {
            return Err(DecodeError::DataBeyondPayload {
                end: data_end,
                payload_len: header.payload_len,
            });
        }
        let (src_ip, dst_ip) = match header.ip_version {
            4 => (ipv4(&header.src_addr), ipv4(&header.dst_addr)),
            6 => (
                IpAddr::V6(Ipv6Addr::from(header.src_addr)),
                IpAddr::V6(Ipv6Addr::from(header.dst_addr)),
            ),
            other => return Err(DecodeError::IpVersion(other)),
        };
        let direction = match header.direction {
            0 => Direction::Ingress,
            1 => Direction::Egress,
            other => return Err(DecodeError::Direction(other)),
        };
        let data_start = RECORD_HEADER_LEN;
        let data = &record[data_start..data_start + header.data_len as usize];
        let uncopied_tail = if header.record_flags & record_flags::TRUNCATED != 0 {
            header.payload_len - data_end as u32
        } else {
            0
        };
        Ok(Segment {
            timestamp_ns: header.timestamp_ns.wrapping_add(clock_offset_ns),
            interface: Some(header.ifindex),
            direction: Some(direction),
            src: SocketAddr::new(src_ip, header.src_port),
            dst: SocketAddr::new(dst_ip, header.dst_port),
            seq: header.seq,
            ack: header.ack,
            flags: TcpFlags(header.tcp_flags),
            payload_len: header.payload_len,
            data_offset: header.data_offset,
            data,
            uncopied_tail,
            gated: header.record_flags & record_flags::GATED != 0,
        })
    }
}

impl Segment {
    /// The same segment, its payload borrowed.
    pub fn borrowed(&self) -> SegmentRef<'_> {
        self.with_data(&self.data)
    }
}

impl<D> Segment<D> {
    /// Sequence number of `data[0]`.
    pub fn data_seq(&self) -> u32 {
        let syn = u32::from(self.flags.syn());
        self.seq.wrapping_add(syn).wrapping_add(self.data_offset)
    }

    fn with_data<E>(&self, data: E) -> Segment<E> {
        Segment {
            timestamp_ns: self.timestamp_ns,
            interface: self.interface,
            direction: self.direction,
            src: self.src,
            dst: self.dst,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            payload_len: self.payload_len,
            data_offset: self.data_offset,
            data,
            uncopied_tail: self.uncopied_tail,
            gated: self.gated,
        }
    }
}

impl SegmentRef<'_> {
    /// The same segment, its payload copied.
    pub fn to_owned_segment(&self) -> Segment {
        self.with_data(self.data.to_vec())
    }
}

fn ipv4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(record: &[u8]) -> Result<Segment, DecodeError> {
        SegmentRef::decode(record, 1_000).map(|segment| segment.to_owned_segment())
    }

    fn record(header: RecordHeader, data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; RECORD_HEADER_LEN];
        // SAFETY: the buffer is exactly one header long.
        unsafe { std::ptr::write_unaligned(bytes.as_mut_ptr().cast::<RecordHeader>(), header) };
        bytes.extend_from_slice(data);
        bytes
    }

    fn header(payload_len: u32, data_offset: u32, data_len: u32) -> RecordHeader {
        let mut src_addr = [0u8; 16];
        src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut dst_addr = [0u8; 16];
        dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        RecordHeader {
            timestamp_ns: 42,
            ifindex: 3,
            seq: 1000,
            ack: 7,
            payload_len,
            data_offset,
            data_len,
            src_addr,
            dst_addr,
            src_port: 40000,
            dst_port: 80,
            ip_version: 4,
            direction: Direction::Egress as u8,
            tcp_flags: tcp_flags::ACK | tcp_flags::PSH,
            record_flags: 0,
        }
    }

    #[test]
    fn decodes_addresses_ports_and_data() {
        let segment = decode(&record(header(5, 0, 5), b"hello")).unwrap();
        assert_eq!(segment.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(segment.dst, "10.0.0.2:80".parse().unwrap());
        assert_eq!(segment.direction, Some(Direction::Egress));
        assert_eq!(
            segment.timestamp_ns,
            42 + 1_000,
            "kernel time plus the clock offset"
        );
        assert_eq!(segment.data, b"hello");
        assert_eq!(segment.data_seq(), 1000);
        assert_eq!(segment.uncopied_tail, 0);
        assert!(segment.flags.ack() && !segment.flags.syn());
    }

    #[test]
    fn ignores_slack_after_the_data() {
        // Records are fixed-size slots: bytes after data_len are not data.
        let segment = decode(&record(header(3, 0, 3), b"abcXXXX")).unwrap();
        assert_eq!(segment.data, b"abc");
    }

    #[test]
    fn truncated_record_reports_the_uncopied_tail() {
        let mut h = header(65_000, 12_288, 4096);
        h.record_flags = record_flags::TRUNCATED;
        let segment = decode(&record(h, &[b'x'; 4096])).unwrap();
        assert_eq!(segment.uncopied_tail, 65_000 - 16_384);
        assert_eq!(segment.data_seq(), 1000 + 12_288);
    }

    #[test]
    fn syn_occupies_one_sequence_number() {
        let mut h = header(0, 0, 0);
        h.tcp_flags = tcp_flags::SYN;
        h.seq = u32::MAX;
        let segment = decode(&record(h, &[])).unwrap();
        assert!(segment.flags.syn());
        assert_eq!(segment.data_seq(), 0, "sequence numbers wrap");
    }

    #[test]
    fn decodes_ipv6() {
        let mut h = header(0, 0, 0);
        h.ip_version = 6;
        h.src_addr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let segment = decode(&record(h, &[])).unwrap();
        assert_eq!(segment.src.ip(), "fd00::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_records_that_lie_about_lengths() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::ShortRecord(10)));
        assert_eq!(
            decode(&record(header(100, 0, 50), &[0u8; 20])),
            Err(DecodeError::DataBeyondRecord {
                claimed: 50,
                carried: 20
            })
        );
        assert_eq!(
            decode(&record(header(10, u32::MAX, 5), &[0u8; 5])),
            Err(DecodeError::DataBeyondPayload {
                end: u64::from(u32::MAX) + 5,
                payload_len: 10
            })
        );
        let mut h = header(0, 0, 0);
        h.ip_version = 5;
        assert_eq!(decode(&record(h, &[])), Err(DecodeError::IpVersion(5)));
        let mut h = header(0, 0, 0);
        h.direction = 9;
        assert_eq!(decode(&record(h, &[])), Err(DecodeError::Direction(9)));
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
