//! Passive TC classifier: copies the TCP segments of watched ports into a ring
//! buffer for the daemon. It never modifies, delays or drops a packet: every
//! path returns `TC_ACT_UNSPEC`.
#![no_std]
#![no_main]

mod headers;

use auditor_common::{
    gate_mode, record_flags, wakeup_after_bytes, Counter, Direction, FlowKey, PayloadGate,
    PortFilter, Record, RecordHeader, GATES_ACTIVE as ACTIVE, PAYLOAD_GATES_MAX, PORT_TABLE_LEN,
    PORT_WATCHED, RECORDS_PER_SEGMENT_MAX, RECORD_DATA_MAX, RING_BUFFER_BYTES, SEGMENT_CAPTURE_MAX,
    SMALL_RECORD_DATA,
};
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::TcContext,
    Global,
};
use aya_log_ebpf::debug;

use crate::headers::{parse_tcp_segment, Skip, TcpSegment};

/// Let the packet continue as if no program were attached (required under TCX).
const TC_ACT_UNSPEC: i32 = -1;

#[map]
static WATCHED_PORTS: Array<u8> = Array::with_max_entries(PORT_TABLE_LEN, 0);

/// The summary of `WATCHED_PORTS` read first; see `PortFilter`.
#[map]
static PORT_FILTER: Array<PortFilter> = Array::with_max_entries(1, 0);

#[map]
static PAYLOAD_GATES: LruHashMap<FlowKey, PayloadGate> =
    LruHashMap::with_max_entries(PAYLOAD_GATES_MAX, 0);

/// `ACTIVE` while userspace may have gates in `PAYLOAD_GATES`; see
/// `payload_copy_start`.
#[map]
static GATES_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map]
static SEGMENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

/// `GLOBAL_MAX_PAYLOAD_PER_SEGMENT`, set by the loader.
#[unsafe(no_mangle)]
static MAX_PAYLOAD_PER_SEGMENT: Global<u32> = Global::new(SEGMENT_CAPTURE_MAX as u32);

/// `GLOBAL_WAKEUP_AFTER_BYTES`, set by the loader.
#[unsafe(no_mangle)]
static WAKEUP_AFTER_BYTES: Global<u32> = Global::new(wakeup_after_bytes(RING_BUFFER_BYTES));

#[classifier]
pub fn capture_ingress(ctx: TcContext) -> i32 {
    capture(&ctx, Direction::Ingress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn capture_egress(ctx: TcContext) -> i32 {
    capture(&ctx, Direction::Egress);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn capture(ctx: &TcContext, direction: Direction) {
    count(Counter::PacketsSeen, 1);
    let segment = match parse_tcp_segment(ctx, is_watched) {
        Ok(Some(segment)) => segment,
        Ok(None) => return,
        Err(skip) => {
            count(skip.counter(), 1);
            debug!(ctx, "skipped a frame: {}", skip.counter() as u32);
            return;
        }
    };
    count(Counter::SegmentsMatched, 1);
    let reportable_flags = auditor_common::tcp_flags::SYN
        | auditor_common::tcp_flags::FIN
        | auditor_common::tcp_flags::RST;
    if segment.payload_len == 0 && segment.tcp_flags & reportable_flags == 0 {
        return;
    }
    let (ip_version, addresses) = match segment.addresses.read(ctx) {
        Ok(read) => read,
        Err(skip) => {
            count(skip.counter(), 1);
            return;
        }
    };
    // Same 32 bytes, split in two. Nothing here zeroes or copies byte arrays:
    // on BPF that compiles to byte-by-byte loops (memset, memcpy).
    let [src_addr, dst_addr]: [[u8; 16]; 2] = unsafe { core::mem::transmute(addresses) };
    let mut header = RecordHeader {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        seq: segment.seq,
        ack: segment.ack,
        payload_len: segment.payload_len,
        data_offset: 0,
        data_len: 0,
        src_addr,
        dst_addr,
        src_port: segment.src_port,
        dst_port: segment.dst_port,
        ip_version,
        direction: direction as u8,
        tcp_flags: segment.tcp_flags,
        record_flags: 0,
    };
    let copy_from = payload_copy_start(&header);
    if copy_from > 0 {
        header.record_flags |= record_flags::GATED;
    }
    emit_records(ctx, &segment, header, copy_from);
}

/// The filter first: one cache line, warm, that rules out nearly every
/// port that is not watched, where the table's entry for an ephemeral port
/// is usually a cache miss.
#[inline(always)]
fn is_watched(port: u16) -> bool {
    PORT_FILTER
        .get(0)
        .is_some_and(|filter| filter.may_contain(port))
        && matches!(WATCHED_PORTS.get(port as u32), Some(&PORT_WATCHED))
}

/// Where copying of this segment's payload starts, after the flow's gate.
#[inline(always)]
fn payload_copy_start(header: &RecordHeader) -> u32 {
    // Nothing to copy, or no gate anywhere: nothing to look up. The lookup
    // is a hash and a bucket read in a large table, a cache miss for most
    // packets. A gate whose resume point a segment without payload passes
    // goes with the next payload.
    if header.payload_len == 0 || !matches!(GATES_ACTIVE.get(0), Some(&ACTIVE)) {
        return 0;
    }
    let key = FlowKey {
        src_addr: header.src_addr,
        dst_addr: header.dst_addr,
        src_port: header.src_port,
        dst_port: header.dst_port,
    };
    let Some(gate) = (unsafe { PAYLOAD_GATES.get(key) }) else {
        return 0;
    };
    if gate.mode != gate_mode::CLOSED_UNTIL {
        return header.payload_len;
    }
    // Sequence arithmetic is modulo 2^32: a positive distance means the
    // resume point lies ahead of this segment's first byte.
    let distance = gate.resume_seq.wrapping_sub(header.seq) as i32;
    if distance <= 0 {
        let _ = PAYLOAD_GATES.remove(key);
        return 0;
    }
    let distance = distance as u32;
    if distance >= header.payload_len {
        header.payload_len
    } else {
        distance
    }
}

/// Copies up to `MAX_PAYLOAD_PER_SEGMENT` payload bytes from `copy_from`,
/// one record per `RECORD_DATA_MAX` bytes; a segment without payload to copy
/// still yields one record for its flags and lengths.
#[inline(always)]
fn emit_records(ctx: &TcContext, segment: &TcpSegment, header: RecordHeader, copy_from: u32) {
    let payload_len = header.payload_len;
    // The loop below emits at most RECORDS_PER_SEGMENT_MAX records, so a
    // larger setting could not be honoured anyway.
    let max_payload = MAX_PAYLOAD_PER_SEGMENT
        .load()
        .min(SEGMENT_CAPTURE_MAX as u32);
    let capture_end = if payload_len - copy_from > max_payload {
        copy_from + max_payload
    } else {
        payload_len
    };
    if capture_end < payload_len {
        count(Counter::RecordsTruncated, 1);
    }
    let mut offset = copy_from;
    for _ in 0..RECORDS_PER_SEGMENT_MAX {
        let remaining = capture_end - offset;
        let data_len = if remaining > RECORD_DATA_MAX as u32 {
            RECORD_DATA_MAX as u32
        } else {
            remaining
        };
        let mut record_header = header;
        record_header.data_offset = offset;
        record_header.data_len = data_len;
        if offset + data_len == capture_end && capture_end < payload_len {
            record_header.record_flags |= record_flags::TRUNCATED;
        }
        let source = segment.payload_offset + offset;
        let emitted = if data_len as usize <= SMALL_RECORD_DATA {
            emit_record::<SMALL_RECORD_DATA>(ctx, &record_header, source)
        } else {
            emit_record::<RECORD_DATA_MAX>(ctx, &record_header, source)
        };
        if let Err(failure) = emitted {
            count(failure, 1);
            return;
        }
        offset += data_len;
        if offset >= capture_end {
            return;
        }
    }
}

/// Reserves one record with room for `N` bytes and fills it; on failure,
/// the counter that explains why nothing was emitted.
#[inline(always)]
fn emit_record<const N: usize>(
    ctx: &TcContext,
    header: &RecordHeader,
    source: u32,
) -> Result<(), Counter> {
    let Some(mut entry) = SEGMENTS.reserve::<Record<N>>(0) else {
        return Err(Counter::RingBufferFull);
    };
    let record = entry.as_mut_ptr();
    let data_len = header.data_len;
    unsafe {
        (*record).header = *header;
        if data_len > 0 {
            // The verifier must see the length inside [1, N] on this very
            // register (N is a power of two), or it rejects the call.
            let len = ((data_len - 1) & (N as u32 - 1)) + 1;
            let loaded = bpf_skb_load_bytes(
                ctx.skb.skb as *const _,
                source,
                (*record).data.as_mut_ptr() as *mut _,
                len,
            );
            if loaded != 0 {
                entry.discard(BPF_RB_NO_WAKEUP as u64);
                return Err(Counter::SkippedMalformed);
            }
        }
    }
    entry.submit(wakeup_flag(core::mem::size_of::<Record<N>>() as u64));
    count(Counter::RecordsEmitted, 1);
    count(Counter::PayloadBytesCopied, data_len as u64);
    Ok(())
}

/// Waking the reader for every record costs more than the record itself (an
/// interrupt each, a VM exit on a virtual machine): the reader is woken only
/// when this record of `record_len` takes the ring's producer position past
/// a multiple of `WAKEUP_AFTER_BYTES`, and polls for the rest. The producer
/// position is this CPU's to write anyway; the consumer position, which the
/// reader writes as it goes, is not read here.
#[inline(always)]
fn wakeup_flag(record_len: u64) -> u64 {
    let threshold = WAKEUP_AFTER_BYTES.load() as u64;
    let produced = SEGMENTS.query(BPF_RB_PROD_POS as u64);
    if produced / threshold != produced.saturating_sub(record_len) / threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn count(counter: Counter, amount: u64) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *value += amount };
    }
}

impl Skip {
    fn counter(self) -> Counter {
        match self {
            Skip::VlanDepth => Counter::SkippedVlanDepth,
            Skip::Ipv6ExtensionChain => Counter::SkippedIpv6ExtensionChain,
            Skip::IpFragment => Counter::SkippedIpFragment,
            Skip::Malformed => Counter::SkippedMalformed,
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
