//! The HTTP/1.1 exchange tracker (head parsing, framing, pairing) on one
//! connection's in-order streams, as reassembly hands them over.

use std::net::SocketAddr;

use auditor::{
    http::{HttpLimits, HttpOutput, HttpTracker},
    stream::{CloseReason, ConnectionId, StreamEvent},
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WEBSOCKET_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: app.example:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n\
Sec-WebSocket-Version: 13\r\nOrigin: http://app.example:8080\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Connection: keep-alive, Upgrade\r\nCookie: session=0123456789abcdef\r\nPragma: no-cache\r\n\
Cache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n";
const WEBSOCKET_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nServer: nginx/1.26.3\r\n\
Date: Thu, 26 Nov 2026 08:23:21 GMT\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// A masked text frame from the client, and the server's answer.
const CLIENT_FRAME: &[u8] = &[0x81, 0x85, 1, 2, 3, 4, 0x49, 0x67, 0x6f, 0x68, 0x6e];
const SERVER_FRAME: &[u8] = &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'];

const PIPELINED: usize = 16;
const KEEP_ALIVE_REQUEST: &[u8] = b"GET /api/items?page=2 HTTP/1.1\r\nHost: app.example\r\n\
User-Agent: bench/1\r\nAccept: application/json\r\nCookie: session=0123456789abcdef\r\n\r\n";
const KEEP_ALIVE_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Content-Length: 64\r\nCache-Control: no-store\r\n\r\n\
{\"items\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],\"next\":\"3\"}  ";

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:8080";

/// One connection: opened with a handshake, `messages` as in-order data
/// from the client (true) or the server, then closed.
fn connection<'a>(messages: &[(bool, &'a [u8])]) -> Vec<StreamEvent<'a>> {
    let id = ConnectionId(1);
    let (client, server): (SocketAddr, SocketAddr) =
        (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let mut offsets = [0u64; 2];
    let mut events = vec![StreamEvent::Opened {
        id,
        first: client,
        second: server,
        syn_sender: Some(client),
        midstream: false,
        interface: Some(1),
        timestamp_ns: 1,
    }];
    for (i, &(from_client, bytes)) in messages.iter().enumerate() {
        let side = usize::from(!from_client);
        events.push(StreamEvent::Data {
            id,
            src: if from_client { client } else { server },
            offset: offsets[side],
            bytes,
            timestamp_ns: 2 + i as u64,
        });
        offsets[side] += bytes.len() as u64;
    }
    events.push(StreamEvent::Closed {
        id,
        reason: CloseReason::Fin,
        timestamp_ns: 100,
    });
    events
}

fn bench(c: &mut Criterion, name: &str, events: &[StreamEvent<'_>], expected_exchanges: usize) {
    let bytes: usize = events
        .iter()
        .map(|event| match event {
            StreamEvent::Data { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum();
    let mut tracker = HttpTracker::new(HttpLimits::default());
    let mut out = Vec::new();
    let mut run = |out: &mut Vec<HttpOutput>| {
        out.clear();
        for event in events {
            tracker.handle(event, out);
        }
    };
    run(&mut out);
    let exchanges = out
        .iter()
        .filter(|o| matches!(o, HttpOutput::Exchange(_)))
        .count();
    assert_eq!(exchanges, expected_exchanges, "{name}: exchanges reported");
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(name, |b| b.iter(|| run(&mut out)));
    group.finish();
}

fn exchanges(c: &mut Criterion) {
    let upgrade = connection(&[
        (true, WEBSOCKET_REQUEST),
        (false, WEBSOCKET_RESPONSE),
        (true, CLIENT_FRAME),
        (false, SERVER_FRAME),
    ]);
    bench(c, "websocket_upgrade", &upgrade, 1);

    let requests = KEEP_ALIVE_REQUEST.repeat(PIPELINED);
    let responses = KEEP_ALIVE_RESPONSE.repeat(PIPELINED);
    let pipelined = connection(&[(true, &requests), (false, &responses)]);
    bench(c, "pipelined_keep_alive", &pipelined, PIPELINED);
}

criterion_group!(benches, exchanges);
criterion_main!(benches);
