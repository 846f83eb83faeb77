//! What one TCP connection stopped in the middle of its request head costs
//! the pipeline, measured without root: the same shape as the memory
//! benchmark (`cargo xtask bench --only memory`), pushed straight into a
//! [`Pipeline`] instead of captured live.
//!
//! `flow_memory [FLOWS]` (default 10,000) prints, per flow, the bytes and
//! allocations still held once every flow is open (a counting allocator,
//! without the allocator's own overhead) and the growth of the process's
//! anonymous resident memory (with it).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use auditor::{
    http::{Exchange, HttpLimits},
    output::Sink,
    pipeline::{Mode, Pipeline},
    reassembly::ReassemblyLimits,
    reporter::{ReportSettings, Reporter},
    segment::{Segment, TcpFlags},
    source::Input,
};

/// Counts what is allocated and not yet freed.
struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Relaxed);
        BLOCKS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size(), Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size, Relaxed);
        BYTES.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the benchmark's clients send before they stop (xtask/src/bench/memory.rs).
const PARTIAL_HEAD: &[u8] = b"GET /socket HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Ver";

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

struct Discard;

impl Sink for Discard {
    fn event(&mut self, _: &auditor::events::Event) -> io::Result<()> {
        Ok(())
    }
    fn exchange(&mut self, _: &Exchange) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Segment {
    Segment {
        timestamp_ns: 1_000_000_000,
        interface: Some(1),
        direction: None,
        src,
        dst,
        seq,
        ack,
        flags: TcpFlags(flags),
        payload_len: data.len() as u32,
        data_offset: 0,
        data: data.to_vec(),
        uncopied_tail: 0,
        gated: false,
    }
}

fn anon_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let flows: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let limits = ReassemblyLimits {
        max_connections: 131_072,
        ..ReassemblyLimits::default()
    };
    let reporter = Reporter::new(ReportSettings {
        interface_names: HashMap::new(),
        ..ReportSettings::default()
    });
    let mut pipeline = Pipeline::new(
        limits,
        HttpLimits::default(),
        Mode::Events(Box::new(reporter)),
        Discard,
    );
    let server = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 8080));
    let (bytes, blocks, anon) = (BYTES.load(Relaxed), BLOCKS.load(Relaxed), anon_kib());
    for i in 0..flows {
        let client = SocketAddr::from((
            Ipv4Addr::from(0x7f00_0002 + (i / 50_000) as u32),
            (10_000 + i % 50_000) as u16,
        ));
        let (c, s) = (1_000u32, 5_000u32);
        for segment in [
            segment(client, server, c, 0, SYN, b""),
            segment(server, client, s, c + 1, SYN | ACK, b""),
            segment(client, server, c + 1, s + 1, ACK, b""),
            segment(client, server, c + 1, s + 1, PSH_ACK, PARTIAL_HEAD),
            segment(
                server,
                client,
                s + 1,
                c + 1 + PARTIAL_HEAD.len() as u32,
                ACK,
                b"",
            ),
        ] {
            pipeline
                .accept(Input::Segment(segment.borrowed()))
                .expect("the sink never fails");
        }
    }
    let held = BYTES.load(Relaxed) - bytes;
    let held_blocks = BLOCKS.load(Relaxed) - blocks;
    let anon_growth = anon_kib().saturating_sub(anon) * 1024;
    println!(
        "{flows} flows: {} connections tracked; per flow {:.0} bytes in {:.2} allocations held, \
         anonymous RSS growth {:.0} bytes",
        pipeline.snapshot(Default::default()).connections_open,
        held as f64 / flows as f64,
        held_blocks as f64 / flows as f64,
        anon_growth as f64 / flows as f64,
    );
}
