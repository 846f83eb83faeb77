//! TCP reassembly of one connection's segments, in order and reordered.

use std::net::SocketAddr;

use auditor::{
    reassembly::{Reassembler, ReassemblyLimits},
    segment::{Segment, TcpFlags},
    stream::StreamEvent,
};
use auditor_common::tcp_flags::{ACK, FIN, PSH, SYN};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SEGMENTS: usize = 64;
const MSS: usize = 1448;
const CLIENT_ISN: u32 = 1_000;
const SERVER_ISN: u32 = 9_000;

fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    data: Vec<u8>,
) -> Segment {
    Segment {
        timestamp_ns: 1,
        interface: Some(1),
        direction: None,
        src,
        dst,
        seq,
        ack,
        flags: TcpFlags(flags),
        payload_len: data.len() as u32,
        data_offset: 0,
        data,
        uncopied_tail: 0,
        gated: false,
    }
}

/// A whole connection: handshake, the client's data in `SEGMENTS`
/// segments (adjacent pairs swapped when `reordered`), both FINs.
fn connection(reordered: bool) -> Vec<Segment> {
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let (client_data, server_data) = (CLIENT_ISN + 1, SERVER_ISN + 1);
    let mut data: Vec<Segment> = (0..SEGMENTS)
        .map(|i| {
            let seq = client_data + (i * MSS) as u32;
            segment(
                client,
                server,
                seq,
                server_data,
                PSH | ACK,
                vec![b'a' + (i % 26) as u8; MSS],
            )
        })
        .collect();
    if reordered {
        for pair in data.chunks_mut(2) {
            pair.reverse();
        }
    }
    let client_fin = client_data + (SEGMENTS * MSS) as u32;
    let mut segments = vec![
        segment(client, server, CLIENT_ISN, 0, SYN, Vec::new()),
        segment(
            server,
            client,
            SERVER_ISN,
            client_data,
            SYN | ACK,
            Vec::new(),
        ),
        segment(client, server, client_data, server_data, ACK, Vec::new()),
    ];
    segments.extend(data);
    segments.push(segment(
        client,
        server,
        client_fin,
        server_data,
        FIN | ACK,
        Vec::new(),
    ));
    segments.push(segment(
        server,
        client,
        server_data,
        client_fin + 1,
        FIN | ACK,
        Vec::new(),
    ));
    segments
}

fn reassembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Bytes((SEGMENTS * MSS) as u64));
    for (name, reordered) in [("in_order", false), ("reordered", true)] {
        let segments = connection(reordered);
        let mut reassembler = Reassembler::new(ReassemblyLimits::default());
        let mut delivered = 0usize;
        for segment in &segments {
            reassembler.push(&segment.borrowed(), &mut |event| {
                if let StreamEvent::Data { bytes, .. } = event {
                    delivered += bytes.len();
                }
            });
        }
        assert_eq!(delivered, SEGMENTS * MSS, "{name}: every byte delivered");
        assert_eq!(reassembler.connections(), 0, "{name}: both FINs close it");
        group.bench_function(name, |b| {
            b.iter(|| {
                for segment in &segments {
                    reassembler.push(&segment.borrowed(), &mut |_| {});
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reassembly);
criterion_main!(benches);
