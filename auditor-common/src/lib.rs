//! Types shared by the kernel program (`auditor-ebpf`) and the daemon (`auditor`).
//!
//! Everything here crosses the kernel boundary as raw bytes, so every type is
//! `#[repr(C)]` with explicit padding and no pointers.
#![no_std]

/// Payload bytes carried by one full-size ring-buffer record.
pub const RECORD_DATA_MAX: usize = 4096;

/// Payload bytes carried by a small record; shorter payloads use it so that
/// the many small segments of HTTP traffic do not each reserve a full record.
pub const SMALL_RECORD_DATA: usize = 512;

/// Most records emitted for one TCP segment.
pub const RECORDS_PER_SEGMENT_MAX: usize = 4;

/// Most payload bytes copied from one TCP segment (16 KiB), and the default
/// of [`GLOBAL_MAX_PAYLOAD_PER_SEGMENT`]. A header block of up to this size
/// written at once reaches userspace whole, even when the kernel hands it to
/// us as one GSO super-packet; the rest of a larger segment is reported as a
/// known, explicitly sized hole.
pub const SEGMENT_CAPTURE_MAX: usize = RECORD_DATA_MAX * RECORDS_PER_SEGMENT_MAX;

/// Default size of the ring buffer that carries records to userspace; the
/// loader may set another (`MAP_SEGMENTS`' max_entries).
pub const RING_BUFFER_BYTES: u32 = 16 << 20;

/// Entries of the port table: one per TCP port.
pub const PORT_TABLE_LEN: u32 = 1 << 16;

/// Most flows whose payload copying userspace can gate at once.
pub const PAYLOAD_GATES_MAX: u32 = 65_536;

/// Names of the maps and programs in the object, shared so neither side can drift.
pub const MAP_WATCHED_PORTS: &str = "WATCHED_PORTS";
/// One entry, a [`PortFilter`] of the ports in `WATCHED_PORTS`.
pub const MAP_PORT_FILTER: &str = "PORT_FILTER";
pub const MAP_PAYLOAD_GATES: &str = "PAYLOAD_GATES";
/// One entry: [`GATES_ACTIVE`] while userspace may have gates in
/// `PAYLOAD_GATES`, 0 while it has none and the kernel skips the lookup.
pub const MAP_GATES_ACTIVE: &str = "GATES_ACTIVE";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_SEGMENTS: &str = "SEGMENTS";
pub const PROGRAM_INGRESS: &str = "capture_ingress";
pub const PROGRAM_EGRESS: &str = "capture_egress";

/// Read-only global of the kernel program: payload bytes copied per TCP
/// segment, at most [`SEGMENT_CAPTURE_MAX`]; the loader sets it.
pub const GLOBAL_MAX_PAYLOAD_PER_SEGMENT: &str = "MAX_PAYLOAD_PER_SEGMENT";

/// Read-only global of the kernel program: the reader is woken each time
/// this many more bytes of records were written to the ring buffer; between
/// wake-ups it finds them when it polls. The loader sets it ([`wakeup_after_bytes`]).
pub const GLOBAL_WAKEUP_AFTER_BYTES: &str = "WAKEUP_AFTER_BYTES";

/// The wake-up threshold for a ring buffer of `ring_buffer_bytes`: an eighth
/// of it, at most 256 KiB, so a wake-up comes long before the ring fills and
/// while the records are fresh.
pub const fn wakeup_after_bytes(ring_buffer_bytes: u32) -> u32 {
    let eighth = ring_buffer_bytes / 8;
    if eighth < 256 << 10 {
        eighth
    } else {
        256 << 10
    }
}

/// Value of `GATES_ACTIVE`'s entry while userspace may have gates in
/// `PAYLOAD_GATES`. Userspace sets it before it puts the first gate there,
/// and clears it after it removed the last.
pub const GATES_ACTIVE: u32 = 1;

/// Value stored in `WATCHED_PORTS` for a watched port (0 means not watched).
pub const PORT_WATCHED: u8 = 1;

/// A one-cache-line summary of the watched ports, which the kernel program
/// reads before `WATCHED_PORTS`: a port whose bit (its number modulo
/// [`PortFilter::BITS`]) is clear is not watched, and the table, where an
/// ephemeral port's entry is a cache miss, is left alone. A set bit only
/// means "maybe": the table decides. Userspace writes the table first, then
/// this filter, from the whole set of watched ports.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortFilter {
    pub words: [u64; 8],
}

impl PortFilter {
    pub const BITS: u16 = 512;

    /// The filter of `ports`.
    pub fn of(ports: impl IntoIterator<Item = u16>) -> PortFilter {
        let mut filter = PortFilter::default();
        for port in ports {
            let bit = port % Self::BITS;
            filter.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        filter
    }

    /// False when `port` is certainly not watched.
    #[inline(always)]
    pub fn may_contain(&self, port: u16) -> bool {
        let bit = port % Self::BITS;
        // The index is below 8 by construction; the mask lets the verifier see it.
        (self.words[(bit / 64) as usize & 7] >> (bit % 64)) & 1 != 0
    }
}

/// TCP header flag bits, as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Bits of [`RecordHeader::record_flags`].
pub mod record_flags {
    /// This is the last record of its segment, and payload bytes after it
    /// were not copied because of the per-segment maximum
    /// ([`super::GLOBAL_MAX_PAYLOAD_PER_SEGMENT`]).
    pub const TRUNCATED: u8 = 0x01;
    /// Copying started late or not at all because userspace closed the
    /// flow's payload gate: the bytes before `data_offset` were not copied.
    pub const GATED: u8 = 0x02;
}

/// Which way the packet was crossing the interface's TC hook.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

/// Fixed header of every ring-buffer record; `data_len` payload bytes follow it.
///
/// One TCP segment yields one record, or several when its payload is longer
/// than a record carries: each record then holds the bytes
/// `[data_offset, data_offset + data_len)` of the segment's payload.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub seq: u32,
    pub ack: u32,
    /// The segment's true TCP payload length, from the IP header.
    pub payload_len: u32,
    /// Offset of this record's bytes within the segment's payload.
    pub data_offset: u32,
    /// Payload bytes in this record.
    pub data_len: u32,
    /// IPv4 addresses use the first four bytes.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// A [`Direction`] as `u8`.
    pub direction: u8,
    /// TCP flags byte ([`tcp_flags`]).
    pub tcp_flags: u8,
    /// [`record_flags`] bits.
    pub record_flags: u8,
}

pub const RECORD_HEADER_LEN: usize = core::mem::size_of::<RecordHeader>();

/// A ring-buffer record with room for `N` payload bytes.
#[repr(C)]
pub struct Record<const N: usize> {
    pub header: RecordHeader,
    pub data: [u8; N],
}

/// One direction of a TCP connection, as the key of `PAYLOAD_GATES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
}

/// Values of [`PayloadGate::mode`].
pub mod gate_mode {
    /// Copy no payload of this direction until userspace removes the gate.
    pub const CLOSED: u32 = 0;
    /// Copy no payload before `resume_seq`; the kernel removes the gate once
    /// the stream passes it.
    pub const CLOSED_UNTIL: u32 = 1;
}

/// Stops the copying of one flow direction's payload. SYN, FIN, RST and the
/// true payload lengths are still reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadGate {
    pub mode: u32,
    pub resume_seq: u32,
}

/// Indexes of the per-CPU `COUNTERS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    PacketsSeen = 0,
    SegmentsMatched,
    RecordsEmitted,
    PayloadBytesCopied,
    RecordsTruncated,
    RingBufferFull,
    SkippedVlanDepth,
    SkippedIpv6ExtensionChain,
    SkippedIpFragment,
    SkippedMalformed,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::PacketsSeen,
        Counter::SegmentsMatched,
        Counter::RecordsEmitted,
        Counter::PayloadBytesCopied,
        Counter::RecordsTruncated,
        Counter::RingBufferFull,
        Counter::SkippedVlanDepth,
        Counter::SkippedIpv6ExtensionChain,
        Counter::SkippedIpFragment,
        Counter::SkippedMalformed,
    ];
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The counter's name in logs and `stats` events.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::PacketsSeen => "packets_seen",
            Counter::SegmentsMatched => "segments_matched",
            Counter::RecordsEmitted => "records_emitted",
            Counter::PayloadBytesCopied => "payload_bytes_copied",
            Counter::RecordsTruncated => "records_truncated",
            Counter::RingBufferFull => "ring_buffer_full",
            Counter::SkippedVlanDepth => "skipped_vlan_depth",
            Counter::SkippedIpv6ExtensionChain => "skipped_ipv6_extension_chain",
            Counter::SkippedIpFragment => "skipped_ip_fragment",
            Counter::SkippedMalformed => "skipped_malformed",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with explicit padding and no pointers.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::PayloadGate {}
    unsafe impl aya::Pod for super::PortFilter {}
}

#[cfg(test)]
mod tests {
    use super::PortFilter;

    #[test]
    fn port_filter_holds_its_ports_and_few_others() {
        let ports = [80, 443, 8080, 9000, 65535, 0];
        let filter = PortFilter::of(ports);
        for port in ports {
            assert!(filter.may_contain(port), "{port}");
        }
        // Ports sharing a bit with one of them pass too; the table decides.
        assert!(filter.may_contain(8080 + PortFilter::BITS));
        let passing = (0..=u16::MAX).filter(|&p| filter.may_contain(p)).count();
        assert_eq!(passing, ports.len() * (65536 / PortFilter::BITS as usize));
        assert!(!PortFilter::default().may_contain(8080));
        assert!(!filter.may_contain(8081));
    }
}
