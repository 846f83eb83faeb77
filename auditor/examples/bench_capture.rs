//! Writes the capture `cargo xtask bench` replays: HTTP/1.1 connections to
//! port 8080, many open at once and their packets interleaved, each doing a
//! few keep-alive exchanges (some with large bodies) and then offering an
//! upgrade — WebSocket, h2c or a custom protocol, some of them broken.
//!
//! `bench_capture OUT HANDSHAKES SEED`: the same arguments always write the
//! same file. It prints what it wrote as one JSON object on stdout.

#[allow(dead_code)] // the capture writer's helpers for other link types
#[path = "../tests/integration/support/frames.rs"]
mod frames;
#[allow(dead_code)]
#[path = "../tests/integration/support/pcap_writer.rs"]
mod pcap_writer;

use base64::{prelude::BASE64_STANDARD, Engine as _};
use std::{
    fs::File,
    io::{BufWriter, Write},
    net::{Ipv4Addr, SocketAddr},
};

use pcap_writer::{Conversation, Link, PcapOptions, PcapWriter, TcpPacket};

const SERVER_PORT: u16 = 8080;
/// Connections open at once; the next packet comes from any of them.
const CONCURRENT: usize = 64;
/// Capture time between two packets.
const PACKET_STEP_NS: u64 = 10_000;
/// Bodies are sent in segments of this size, as a capture on a host with
/// segmentation offload holds them.
const BODY_SEGMENT: usize = 16 * 1024;

/// splitmix64: deterministic and good enough to pick scenarios.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default)]
struct Totals {
    connections: u64,
    handshakes: u64,
    switched: u64,
    keep_alive_requests: u64,
    large_bodies: u64,
    packets: u64,
    bytes: u64,
}

/// One connection's script, played step by step so that connections
/// interleave: each step is one message (or a close) and its packets.
struct Connection {
    conversation: Conversation,
    keep_alive_left: u64,
    state: State,
}

enum State {
    KeepAlive,
    Upgrade,
    Tunnel(Protocol),
    Close,
}

#[derive(Clone, Copy)]
enum Protocol {
    WebSocket,
    H2c,
    Custom,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, handshakes, seed] = &args[..] else {
        eprintln!("usage: bench_capture OUT HANDSHAKES SEED");
        std::process::exit(2);
    };
    let handshakes: u64 = handshakes.parse().expect("HANDSHAKES is a number");
    let mut rng = Rng(seed.parse().expect("SEED is a number"));
    let mut file = BufWriter::new(File::create(out)?);
    let mut pcap = PcapWriter::new(PcapOptions::new(Link::Ethernet.link_type()));
    let mut totals = Totals::default();
    let mut clock_ns = Conversation::START_NS;
    let mut slots: Vec<Option<Connection>> = (0..CONCURRENT).map(|_| None).collect();
    let mut started = 0u64;
    while started < handshakes || slots.iter().any(Option::is_some) {
        let slot = &mut slots[rng.below(CONCURRENT as u64) as usize];
        if slot.is_none() {
            if started == handshakes {
                continue;
            }
            *slot = Some(open(started, &mut rng));
            started += 1;
            totals.connections += 1;
        }
        let connection = slot.as_mut().expect("opened above");
        let done = step(connection, &mut rng, &mut totals);
        for mut packet in connection.conversation.take_packets() {
            packet.timestamp_ns = clock_ns;
            clock_ns += PACKET_STEP_NS;
            write_packet(&mut pcap, &packet, &mut totals);
        }
        file.write_all(&pcap.take_bytes())?;
        if done {
            *slot = None;
        }
    }
    file.flush()?;
    println!(
        "{{\"port\":{SERVER_PORT},\"connections\":{},\"handshakes\":{},\"switched\":{},\"keep_alive_requests\":{},\"large_bodies\":{},\"packets\":{},\"bytes\":{}}}",
        totals.connections,
        totals.handshakes,
        totals.switched,
        totals.keep_alive_requests,
        totals.large_bodies,
        totals.packets,
        totals.bytes
    );
    Ok(())
}

fn write_packet(pcap: &mut PcapWriter, packet: &TcpPacket, totals: &mut Totals) {
    let before = pcap.bytes().len();
    pcap.packet(packet.timestamp_ns, &packet.frame(Link::Ethernet));
    totals.packets += 1;
    totals.bytes += (pcap.bytes().len() - before) as u64;
}

/// The `number`th connection, from its own client address and port.
fn open(number: u64, rng: &mut Rng) -> Connection {
    let client = SocketAddr::from((
        Ipv4Addr::new(10, 1, (number >> 8) as u8, number as u8),
        40_000 + (number % 20_000) as u16,
    ));
    let server = SocketAddr::from((Ipv4Addr::new(10, 2, 0, 1), SERVER_PORT));
    let mut conversation = Conversation::new(client, server)
        .with_isns(rng.next() as u32, rng.next() as u32)
        .with_clock(0, 0);
    conversation.handshake();
    Connection {
        conversation,
        keep_alive_left: rng.below(3),
        state: State::KeepAlive,
    }
}

/// Plays one message of the connection's script; true when it is closed.
fn step(connection: &mut Connection, rng: &mut Rng, totals: &mut Totals) -> bool {
    let conversation = &mut connection.conversation;
    match connection.state {
        State::KeepAlive if connection.keep_alive_left > 0 => {
            connection.keep_alive_left -= 1;
            totals.keep_alive_requests += 1;
            keep_alive_exchange(conversation, rng, totals);
        }
        State::KeepAlive => {
            connection.state = State::Upgrade;
            return step(connection, rng, totals);
        }
        State::Upgrade => {
            totals.handshakes += 1;
            connection.state = match upgrade_exchange(conversation, rng) {
                Some(protocol) => {
                    totals.switched += 1;
                    State::Tunnel(protocol)
                }
                None => State::Close,
            };
        }
        State::Tunnel(protocol) => {
            first_tunnel_bytes(conversation, protocol);
            connection.state = State::Close;
        }
        State::Close => {
            conversation.client_fin().server_fin();
            return true;
        }
    }
    false
}

/// A GET answered with a small or large body, or a POST with a body.
fn keep_alive_exchange(conversation: &mut Conversation, rng: &mut Rng, totals: &mut Totals) {
    let large = rng.chance(1);
    if large {
        totals.large_bodies += 1;
    }
    let body_len = if large {
        64 * 1024 + rng.below(448 * 1024) as usize
    } else {
        rng.below(2048) as usize
    };
    let body = vec![b'x'; body_len];
    if rng.chance(70) {
        conversation.client_sends(
            b"GET /api/items?page=2 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: bench/1\r\n\
              Accept: application/json\r\nCookie: session=0123456789abcdef\r\n\r\n",
        );
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\
             Cache-Control: no-store\r\n\r\n"
        );
        conversation.server_sends(head.as_bytes());
        send_in_segments(conversation, false, &body);
    } else {
        let head = format!(
            "POST /api/upload HTTP/1.1\r\nHost: app.example\r\nUser-Agent: bench/1\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
        );
        conversation.client_sends(head.as_bytes());
        send_in_segments(conversation, true, &body);
        conversation.server_sends(b"HTTP/1.1 204 No Content\r\nServer: app\r\n\r\n");
    }
}

fn send_in_segments(conversation: &mut Conversation, from_client: bool, body: &[u8]) {
    for chunk in body.chunks(BODY_SEGMENT) {
        if from_client {
            conversation.client_sends(chunk);
        } else {
            conversation.server_sends(chunk);
        }
    }
}

/// An upgrade offer and its answer; the protocol switched to, if the answer
/// is a 101. One in ten is broken in a way a rule names.
fn upgrade_exchange(conversation: &mut Conversation, rng: &mut Rng) -> Option<Protocol> {
    let broken = rng.chance(10);
    let declined = rng.chance(5);
    match rng.below(3) {
        0 => {
            let nonce: Vec<u8> = [rng.next(), rng.next()]
                .iter()
                .flat_map(|half| half.to_le_bytes())
                .collect();
            let key = BASE64_STANDARD.encode(nonce);
            conversation.client_sends(
                format!(
                    "GET /socket HTTP/1.1\r\nHost: app.example\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
                     Sec-WebSocket-Version: 13\r\nOrigin: http://app.example\r\n\r\n"
                )
                .as_bytes(),
            );
            if declined {
                conversation.server_sends(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                return None;
            }
            let accept = if broken {
                "not-the-accept-value".to_owned()
            } else {
                lab::websocket::accept(&key)
            };
            conversation.server_sends(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .as_bytes(),
            );
            Some(Protocol::WebSocket)
        }
        1 => {
            let settings = if broken {
                ""
            } else {
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            };
            conversation.client_sends(
                format!(
                    "GET /grpc HTTP/1.1\r\nHost: app.example\r\nUpgrade: h2c\r\n\
                     Connection: Upgrade, HTTP2-Settings\r\n{settings}\r\n"
                )
                .as_bytes(),
            );
            if declined {
                conversation.server_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                return None;
            }
            conversation.server_sends(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            );
            Some(Protocol::H2c)
        }
        _ => {
            conversation.client_sends(
                b"GET /api2/json/backup?backup-type=host&backup-id=bench HTTP/1.1\r\n\
                  Host: app.example\r\nUpgrade: proxmox-backup-protocol-v1\r\n\
                  Connection: Upgrade\r\n\r\n",
            );
            if declined {
                conversation.server_sends(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
                return None;
            }
            let connection = if broken {
                ""
            } else {
                "Connection: upgrade\r\n"
            };
            conversation.server_sends(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n{connection}\r\n"
                )
                .as_bytes(),
            );
            Some(Protocol::Custom)
        }
    }
}

/// What each side sends first after the switch.
fn first_tunnel_bytes(conversation: &mut Conversation, protocol: Protocol) {
    /// An empty HTTP/2 SETTINGS frame.
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    match protocol {
        Protocol::WebSocket => conversation
            .client_sends(&lab::websocket::masked_text_frame(
                b"ping from the client",
                [1, 2, 3, 4],
            ))
            .server_sends(&lab::websocket::text_frame(b"pong from the server")),
        Protocol::H2c => conversation
            .client_sends(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice(), &SETTINGS].concat())
            .server_sends(&SETTINGS),
        Protocol::Custom => conversation
            .client_sends(&[0x00, 0x01, 0x02, 0x03, 0x10, 0x20])
            .server_sends(&[0x80, 0x00, 0x00, 0x01]),
    };
}
