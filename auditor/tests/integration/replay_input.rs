//! Capture files written by the test generator, read back by
//! `auditor::replay`: every format and link type, snapshot lengths, skipped
//! packets, and hostile input. No privileges needed.

use std::{
    io::{self, Read},
    net::SocketAddr,
};

use crate::support::{
    frames::{self, Tcp, ETH_P_IPV4, IPV6_DEST_OPTS, IPV6_HOP_BY_HOP},
    pcap_writer::{
        link_type, pcap, Conversation, InterfaceOptions, Link, PcapNgWriter, PcapOptions,
        PcapWriter, TcpPacket, TempFile,
    },
};
use auditor::{
    replay::{self, CaptureFile, ReplayError, ReplayStats, SkipReason, MAX_BLOCK_LEN},
    segment::Segment,
};

const REQUEST: &[u8] =
    b"GET /chat HTTP/1.1\r\nHost: backend\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
const WEBSOCKET_FRAME: &[u8] = &[0x81, 0x02, b'h', b'i'];

fn v4() -> (SocketAddr, SocketAddr) {
    (
        "10.1.0.1:40000".parse().unwrap(),
        "10.1.0.2:8080".parse().unwrap(),
    )
}

fn v6() -> (SocketAddr, SocketAddr) {
    (
        "[fd00:1::1]:40000".parse().unwrap(),
        "[fd00:1::2]:8080".parse().unwrap(),
    )
}

/// Handshake, upgrade request, 101 response, one WebSocket frame, FIN.
fn upgrade(conversation: Conversation) -> Vec<TcpPacket> {
    let mut conversation = conversation;
    conversation
        .handshake()
        .client_sends(REQUEST)
        .server_sends(RESPONSE)
        .client_sends(WEBSOCKET_FRAME)
        .client_fin();
    conversation.into_packets()
}

fn upgrade_between((client, server): (SocketAddr, SocketAddr)) -> Vec<TcpPacket> {
    upgrade(Conversation::new(client, server))
}

fn segments_of(packets: &[TcpPacket], interface: u32) -> Vec<Segment> {
    packets
        .iter()
        .map(|packet| packet.segment(interface))
        .collect()
}

/// Everything one pass over a capture gives.
struct Outcome {
    segments: Vec<Segment>,
    error: Option<ReplayError>,
    stats: ReplayStats,
    bytes_read: u64,
}

fn read_capture(mut capture: CaptureFile, input_len: usize) -> Outcome {
    let mut segments = Vec::new();
    let mut error = None;
    // Every packet record takes at least 16 bytes: more items than input
    // bytes would be a loop.
    for item in capture.by_ref().take(input_len + 1) {
        assert!(error.is_none(), "nothing after an error");
        match item {
            Ok(segment) => segments.push(segment),
            Err(e) => error = Some(e),
        }
    }
    assert!(segments.len() <= input_len, "the reader loops");
    assert!(capture.next().is_none(), "the iterator stays finished");
    let stats = capture.stats();
    assert_eq!(
        stats.packets,
        stats.tcp_segments + stats.skipped_total(),
        "every packet is a segment or skipped: {stats:?}"
    );
    assert_eq!(stats.tcp_segments, segments.len() as u64);
    Outcome {
        segments,
        error,
        stats,
        bytes_read: capture.bytes_read(),
    }
}

fn read(name: &str, bytes: &[u8]) -> Result<Outcome, ReplayError> {
    Ok(read_capture(
        CaptureFile::from_bytes(name, bytes)?,
        bytes.len(),
    ))
}

/// Reads a capture that must be whole and well-formed.
fn read_clean(name: &str, bytes: &[u8]) -> (Vec<Segment>, ReplayStats) {
    let outcome = read(name, bytes).unwrap();
    if let Some(error) = outcome.error {
        panic!("{error}");
    }
    assert_eq!(
        outcome.bytes_read,
        bytes.len() as u64,
        "the whole input read"
    );
    (outcome.segments, outcome.stats)
}

#[test]
fn every_link_type_reads_back_segment_for_segment() {
    let cases = [
        (Link::Ethernet, v4()),
        (Link::Ethernet, v6()),
        (Link::Vlan, v4()),
        (Link::QinQ, v6()),
        (Link::LinuxSll, v4()),
        (Link::LinuxSll, v6()),
        (Link::LinuxSll2, v4()),
        (Link::LinuxSll2, v6()),
        (Link::Raw, v4()),
        (Link::Raw, v6()),
        (Link::RawIpv4, v4()),
        (Link::RawIpv6, v6()),
        (Link::Null, v4()),
        (Link::Null, v6()),
    ];
    for (link, addresses) in cases {
        let packets = upgrade_between(addresses);
        let (segments, stats) = read_clean("link.pcap", &pcap(link, &packets));
        assert_eq!(segments, segments_of(&packets, 0), "{link:?} {addresses:?}");
        assert_eq!(stats.packets, packets.len() as u64);
        assert_eq!(stats.skipped_total(), 0);
    }
}

#[test]
fn segments_carry_what_the_wire_said() {
    let (segments, _) = read_clean("fields.pcap", &pcap(Link::Ethernet, &upgrade_between(v4())));
    let [syn, syn_ack, ack, request, response, frame, fin] = segments.as_slice() else {
        panic!("{segments:?}");
    };
    let (client, server) = v4();
    assert_eq!(
        (syn.src, syn.dst, syn.seq, syn.ack),
        (client, server, 1000, 0)
    );
    assert_eq!(syn.flags.0, 0x02);
    assert_eq!(
        (syn_ack.src, syn_ack.seq, syn_ack.ack),
        (server, 5000, 1001)
    );
    assert_eq!(syn_ack.flags.0, 0x12);
    assert_eq!((ack.seq, ack.ack, ack.flags.0), (1001, 5001, 0x10));
    assert_eq!(
        (request.seq, request.ack, request.flags.0),
        (1001, 5001, 0x18)
    );
    assert_eq!(request.data, REQUEST);
    assert_eq!(request.payload_len, REQUEST.len() as u32);
    assert_eq!(
        (response.src, response.seq, response.ack),
        (server, 5001, 1001 + REQUEST.len() as u32)
    );
    assert_eq!(frame.seq, 1001 + REQUEST.len() as u32);
    assert_eq!(frame.data, WEBSOCKET_FRAME);
    assert_eq!(fin.flags.0, 0x11);
    assert_eq!(
        fin.seq,
        1001 + (REQUEST.len() + WEBSOCKET_FRAME.len()) as u32
    );
    assert!(fin.data.is_empty() && fin.payload_len == 0);
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(
            segment.timestamp_ns,
            Conversation::START_NS + i as u64 * 1_000_000
        );
        assert_eq!(segment.interface, Some(0));
        assert_eq!(segment.direction, None);
        assert_eq!((segment.data_offset, segment.uncopied_tail), (0, 0));
        assert!(!segment.gated);
    }
}

#[test]
fn pcap_timestamps_in_both_resolutions_and_byte_orders() {
    let (client, server) = v4();
    // Odd nanoseconds: microsecond files keep only the whole microseconds.
    let packets = upgrade(
        Conversation::new(client, server)
            .with_clock(Conversation::START_NS + 123_456_789, 1_000_001),
    );
    for big_endian in [false, true] {
        for nanosecond in [false, true] {
            let mut writer = PcapWriter::new(PcapOptions {
                nanosecond,
                big_endian,
                ..PcapOptions::new(link_type::ETHERNET)
            });
            writer.packets(Link::Ethernet, &packets);
            let (segments, _) = read_clean("time.pcap", writer.bytes());
            let expected: Vec<Segment> = packets
                .iter()
                .map(|packet| Segment {
                    timestamp_ns: if nanosecond {
                        packet.timestamp_ns
                    } else {
                        packet.timestamp_ns / 1_000 * 1_000
                    },
                    ..packet.segment(0)
                })
                .collect();
            assert_eq!(
                segments, expected,
                "big endian {big_endian}, ns {nanosecond}"
            );
        }
    }
    let (segments, _) = read_clean("time.pcap", &pcap(Link::Ethernet, &packets));
    assert_eq!(
        segments[0].timestamp_ns,
        Conversation::START_NS + 123_456_000
    );
    assert_eq!(
        segments[1].timestamp_ns,
        Conversation::START_NS + 124_456_000
    );
}

#[test]
fn pcapng_interfaces_with_their_own_link_types_and_resolutions() {
    let (a_client, a_server) = v4();
    let (b_client, b_server) = v6();
    let (c_client, c_server) = (
        "10.3.0.1:1234".parse().unwrap(),
        "10.3.0.2:80".parse().unwrap(),
    );
    let a = upgrade(Conversation::new(a_client, a_server));
    let b = upgrade(
        Conversation::new(b_client, b_server)
            .with_clock(Conversation::START_NS + 123_456_789, 1_000_001),
    );
    // Quarter seconds are exact in 2^-10 s units.
    let c = upgrade(
        Conversation::new(c_client, c_server)
            .with_clock(Conversation::START_NS + 500_000_000, 250_000_000),
    );
    for big_endian in [false, true] {
        let mut writer = PcapNgWriter::new(big_endian);
        let microseconds = writer.interface(InterfaceOptions::new(Link::Ethernet));
        let nanoseconds = writer.interface(InterfaceOptions {
            tsresol: Some(9),
            ..InterfaceOptions::new(Link::LinuxSll2)
        });
        let binary_with_offset = writer.interface(InterfaceOptions {
            tsresol: Some(0x80 | 10),
            tsoffset: Some(1_600_000_000),
            ..InterfaceOptions::new(Link::Raw)
        });
        let mut expected = Vec::new();
        for i in 0..a.len() {
            writer.enhanced_packet(microseconds, a[i].timestamp_ns, &a[i].frame(Link::Ethernet));
            writer.enhanced_packet(nanoseconds, b[i].timestamp_ns, &b[i].frame(Link::LinuxSll2));
            writer.enhanced_packet(
                binary_with_offset,
                c[i].timestamp_ns,
                &c[i].frame(Link::Raw),
            );
            expected.extend([a[i].segment(0), b[i].segment(1), c[i].segment(2)]);
        }
        let (segments, stats) = read_clean("interfaces.pcapng", writer.bytes());
        assert_eq!(segments, expected, "big endian {big_endian}");
        assert_eq!(stats.packets, 3 * a.len() as u64);
    }
}

#[test]
fn pcapng_sections_continue_the_interface_ids() {
    let first = upgrade_between(v4());
    let second = upgrade_between(v6());
    let mut little = PcapNgWriter::new(false);
    let interface = little.interface(InterfaceOptions::new(Link::Ethernet));
    little.packets(interface, Link::Ethernet, &first);
    let mut big = PcapNgWriter::new(true);
    let interface = big.interface(InterfaceOptions::new(Link::Raw));
    big.packets(interface, Link::Raw, &second);
    let file = [little.bytes(), big.bytes()].concat();

    let (segments, _) = read_clean("sections.pcapng", &file);
    let mut expected = segments_of(&first, 0);
    expected.extend(segments_of(&second, 1));
    assert_eq!(segments, expected);
}

#[test]
fn pcapng_simple_packets_belong_to_interface_zero_and_take_the_previous_time() {
    let packets = upgrade_between(v4());
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions {
        snaplen: 0,
        ..InterfaceOptions::new(Link::Ethernet)
    });
    writer.simple_packet(&packets[0].frame(Link::Ethernet));
    writer.enhanced_packet(
        interface,
        packets[1].timestamp_ns,
        &packets[1].frame(Link::Ethernet),
    );
    writer.simple_packet(&packets[3].frame(Link::Ethernet));

    let (segments, _) = read_clean("simple.pcapng", writer.bytes());
    let expected = [
        Segment {
            timestamp_ns: 0,
            ..packets[0].segment(0)
        },
        packets[1].segment(0),
        Segment {
            timestamp_ns: packets[1].timestamp_ns,
            ..packets[3].segment(0)
        },
    ];
    assert_eq!(segments, expected);
}

#[test]
fn split_duplicated_and_reordered_packets_come_out_in_file_order() {
    let mut packets = upgrade_between(v4());
    let (head, tail) = packets[3].split_at(10);
    packets.splice(3..4, [tail.clone(), head.clone(), tail]);
    let duplicate = packets[4].clone();
    packets.insert(5, duplicate);

    let (segments, _) = read_clean("reordered.pcap", &pcap(Link::Ethernet, &packets));
    assert_eq!(segments, segments_of(&packets, 0));
    assert_eq!(segments[3].seq, 1001 + 10);
    assert_eq!(segments[3].data, &REQUEST[10..]);
    assert_eq!(segments[4].seq, 1001);
    assert_eq!(segments[4].data, &REQUEST[..10]);
    assert_eq!(segments[4].flags.0, 0x10, "PSH stays with the last part");
    assert_eq!(segments[4], segments[5]);
}

#[test]
fn snapshot_length_cuts_become_uncopied_tails() {
    let packets = upgrade_between(v4());
    let response = &packets[4];
    // Ethernet 14 + IPv4 20 + TCP 20 + 26 payload bytes.
    let mut writer = PcapWriter::new(PcapOptions {
        snaplen: 80,
        ..PcapOptions::new(link_type::ETHERNET)
    });
    writer.packets(Link::Ethernet, &packets);
    let (segments, stats) = read_clean("snaplen.pcap", writer.bytes());
    assert_eq!(stats.tcp_segments, packets.len() as u64);
    assert_eq!(
        segments[4],
        Segment {
            data: response.payload[..26].to_vec(),
            uncopied_tail: (RESPONSE.len() - 26) as u32,
            ..response.segment(0)
        }
    );
    assert_eq!(
        segments[5],
        packets[5].segment(0),
        "short payloads are whole"
    );

    // The same in pcapng, through the interface's snapshot length.
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions {
        snaplen: 80,
        ..InterfaceOptions::new(Link::Ethernet)
    });
    writer.packets(interface, Link::Ethernet, &packets);
    let (segments_ng, _) = read_clean("snaplen.pcapng", writer.bytes());
    assert_eq!(segments_ng, segments);

    // Cut inside the TCP header: nothing to make a segment of.
    let mut writer = PcapWriter::new(PcapOptions {
        snaplen: 40,
        ..PcapOptions::new(link_type::ETHERNET)
    });
    writer.packets(Link::Ethernet, &packets);
    let (segments, stats) = read_clean("short-snaplen.pcap", writer.bytes());
    assert!(segments.is_empty());
    assert_eq!(
        stats.skipped(SkipReason::TruncatedHeaders),
        packets.len() as u64
    );
}

#[test]
fn non_tcp_packets_and_fragments_are_skipped_and_counted() {
    let (client, server) = ([10, 1, 0, 1], [10, 1, 0, 2]);
    let tcp = Tcp::new(40_000, 8080, 1, b"data");
    let mut udp = frames::ipv4(client, server, &tcp, false);
    udp[9] = 17;
    let mut gre = frames::ipv4(client, server, &tcp, false);
    gre[9] = 47;
    let mut arp_request = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp_request.extend([0x02, 0, 0, 0, 0, 0xaa, 10, 1, 0, 1]);
    arp_request.extend([0, 0, 0, 0, 0, 0, 10, 1, 0, 2]);
    let arp = frames::ethernet(&[], 0x0806, &arp_request);
    let fragment = frames::ipv4(client, server, &tcp, true);
    let v6 = (
        "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
    );
    const IPV6_FRAGMENT: u8 = 44;
    let v6_fragment = frames::ipv6(v6.0, v6.1, &[IPV6_FRAGMENT], &tcp);
    let v6_with_options = frames::ipv6(v6.0, v6.1, &[IPV6_HOP_BY_HOP, IPV6_DEST_OPTS], &tcp);
    let four_vlan_tags = frames::ethernet(
        &[
            frames::ETH_P_8021AD,
            frames::ETH_P_8021Q,
            frames::ETH_P_8021Q,
            frames::ETH_P_8021Q,
        ],
        ETH_P_IPV4,
        &frames::ipv4(client, server, &tcp, false),
    );

    let mut writer = PcapWriter::new(PcapOptions::new(link_type::ETHERNET));
    for frame in [
        frames::ethernet(&[], ETH_P_IPV4, &udp),
        frames::ethernet(&[], ETH_P_IPV4, &gre),
        arp,
        frames::ethernet(&[], ETH_P_IPV4, &fragment),
        Link::Ethernet.frame(&v6_fragment),
        Link::Ethernet.frame(&v6_with_options),
        four_vlan_tags,
    ] {
        writer.packet(Conversation::START_NS, &frame);
    }
    let (segments, stats) = read_clean("mixed.pcap", writer.bytes());
    assert_eq!(
        segments.len(),
        1,
        "only the IPv6 packet with extension headers"
    );
    assert_eq!(segments[0].data, b"data");
    assert_eq!(segments[0].src, "[fd00::1]:40000".parse().unwrap());
    assert_eq!(stats.packets, 7);
    assert_eq!(stats.skipped(SkipReason::NotTcp), 2);
    assert_eq!(stats.skipped(SkipReason::NotIp), 2);
    assert_eq!(stats.skipped(SkipReason::IpFragment), 2);

    // An interface of a link type the reader does not decode (802.11).
    let mut writer = PcapNgWriter::new(false);
    let wifi = writer.interface(InterfaceOptions {
        link_type: 105,
        ..InterfaceOptions::new(Link::Ethernet)
    });
    let ethernet = writer.interface(InterfaceOptions::new(Link::Ethernet));
    let packets = upgrade_between(v4());
    writer.packets(wifi, Link::Ethernet, &packets[..2]);
    writer.packets(ethernet, Link::Ethernet, &packets[2..]);
    let (segments, stats) = read_clean("wifi.pcapng", writer.bytes());
    assert_eq!(segments, segments_of(&packets[2..], 1));
    assert_eq!(stats.skipped(SkipReason::UnsupportedLinkType), 2);
}

#[test]
fn zero_length_and_malformed_packets_are_skipped_and_counted() {
    let packets = upgrade_between(v4());
    let good = packets[3].frame(Link::Ethernet);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43;
    let mut bad_data_offset = good.clone();
    bad_data_offset[14 + 20 + 12] = 2 << 4;
    let mut ip_longer_than_packet = good.clone();
    ip_longer_than_packet[16..18].copy_from_slice(&1400u16.to_be_bytes());

    let mut writer = PcapWriter::new(PcapOptions::new(link_type::ETHERNET));
    writer
        .packet(1, &[])
        .packet(2, &good[..10])
        .packet(3, &bad_ihl)
        .packet(4, &bad_data_offset)
        .packet(5, &ip_longer_than_packet)
        .packet(packets[3].timestamp_ns, &good);
    let (segments, stats) = read_clean("malformed.pcap", writer.bytes());
    assert_eq!(segments, [packets[3].segment(0)]);
    assert_eq!(stats.packets, 6);
    assert_eq!(stats.skipped(SkipReason::TruncatedHeaders), 2);
    assert_eq!(stats.skipped(SkipReason::Malformed), 3);

    // A pcapng packet of an interface never described.
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions::new(Link::Ethernet));
    writer.enhanced_packet(7, 0, &good);
    writer.enhanced_packet(interface, packets[3].timestamp_ns, &good);
    let (segments, stats) = read_clean("interface.pcapng", writer.bytes());
    assert_eq!(segments, [packets[3].segment(0)]);
    assert_eq!(stats.skipped(SkipReason::UnknownInterface), 1);
}

#[test]
fn empty_and_foreign_inputs_are_refused_by_name() {
    let error = CaptureFile::from_bytes("empty.pcap", b"").err().unwrap();
    assert!(matches!(error, ReplayError::Empty { .. }), "{error}");
    assert!(error.to_string().starts_with("empty.pcap: "));

    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let error = CaptureFile::from_bytes("random.bin", &random)
        .err()
        .unwrap();
    assert!(matches!(error, ReplayError::NotACapture { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("random.bin: not a pcap or pcapng capture"),
        "{error}"
    );

    let error = replay::open(std::path::Path::new("/nonexistent/dir/x.pcapng"))
        .err()
        .unwrap();
    assert!(
        matches!(&error, ReplayError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert!(error.to_string().starts_with("/nonexistent/dir/x.pcapng: "));
}

#[test]
fn open_reads_a_file_from_disk() {
    let packets = upgrade_between(v6());
    let file = TempFile::new("open.pcap", &pcap(Link::Ethernet, &packets));
    let capture = replay::open(file.path()).unwrap();
    assert_eq!(capture.path(), file.path());
    let segments: Vec<Segment> = capture.map(Result::unwrap).collect();
    assert_eq!(segments, segments_of(&packets, 0));
}

/// Hands out one byte per read, as a slow pipe might.
struct OneByteAtATime(io::Cursor<Vec<u8>>);

impl Read for OneByteAtATime {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(1);
        self.0.read(&mut buf[..len])
    }
}

#[test]
fn short_reads_are_no_different() {
    let packets = upgrade_between(v4());
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions::new(Link::Ethernet));
    writer.packets(interface, Link::Ethernet, &packets);
    for bytes in [writer.bytes().to_vec(), pcap(Link::Ethernet, &packets)] {
        let capture =
            CaptureFile::from_reader("slow", OneByteAtATime(io::Cursor::new(bytes.clone())))
                .unwrap();
        let outcome = read_capture(capture, bytes.len());
        assert!(outcome.error.is_none());
        assert_eq!(outcome.segments, segments_of(&packets, 0));
    }
}

/// Stops with an error after `ok_bytes`.
struct FailingReader {
    bytes: io::Cursor<Vec<u8>>,
    ok_bytes: u64,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.ok_bytes.saturating_sub(self.bytes.position());
        if left == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let len = buf.len().min(left as usize);
        self.bytes.read(&mut buf[..len])
    }
}

#[test]
fn read_errors_end_the_iteration_with_their_cause() {
    let (client, server) = v4();
    let mut conversation = Conversation::new(client, server);
    conversation.handshake();
    for _ in 0..100 {
        conversation.client_sends(&[b'x'; 1000]);
    }
    let bytes = pcap(Link::Ethernet, conversation.packets());
    let failing = |ok_bytes| FailingReader {
        bytes: io::Cursor::new(bytes.clone()),
        ok_bytes,
    };

    // The reader's first read asks for more than 100 bytes.
    let error = CaptureFile::from_reader("failing.pcap", failing(100))
        .err()
        .unwrap();
    assert_eq!(error.to_string(), "failing.pcap: disk on fire");

    // After its first 64 KiB.
    let capture = CaptureFile::from_reader("failing.pcap", failing(70_000)).unwrap();
    let outcome = read_capture(capture, bytes.len());
    assert!(
        (50..70).contains(&outcome.segments.len()),
        "{}",
        outcome.segments.len()
    );
    let error = outcome.error.unwrap();
    assert!(matches!(error, ReplayError::Io { .. }));
    assert_eq!(error.to_string(), "failing.pcap: disk on fire");
}

#[test]
fn a_capture_cut_at_any_byte_yields_the_whole_packets_then_says_truncated() {
    let packets = upgrade_between(v4());
    let expected = segments_of(&packets, 0);

    let mut pcap_writer = PcapWriter::new(PcapOptions::new(link_type::ETHERNET));
    pcap_writer.packets(Link::Ethernet, &packets);
    // File header, then one record per packet.
    let pcap_packet_ends = pcap_writer.block_ends()[1..].to_vec();

    let mut pcapng_writer = PcapNgWriter::new(false);
    let interface = pcapng_writer.interface(InterfaceOptions::new(Link::Ethernet));
    pcapng_writer.packets(interface, Link::Ethernet, &packets);
    // Section header, interface description, then one block per packet.
    let pcapng_packet_ends = pcapng_writer.block_ends()[2..].to_vec();

    for (name, bytes, block_ends, packet_ends) in [
        (
            "cut.pcap",
            pcap_writer.bytes(),
            pcap_writer.block_ends(),
            pcap_packet_ends,
        ),
        (
            "cut.pcapng",
            pcapng_writer.bytes(),
            pcapng_writer.block_ends(),
            pcapng_packet_ends,
        ),
    ] {
        let header_end = block_ends[0];
        for cut in 0..=bytes.len() {
            let input = &bytes[..cut];
            let capture = if cut % 2 == 0 {
                CaptureFile::from_bytes(name, input)
            } else {
                CaptureFile::from_reader(name, OneByteAtATime(io::Cursor::new(input.to_vec())))
            };
            if cut == 0 {
                assert!(matches!(capture, Err(ReplayError::Empty { .. })));
                continue;
            }
            if cut < header_end {
                let error = capture.err().unwrap();
                assert!(
                    matches!(error, ReplayError::Truncated { offset: 0, .. }),
                    "{name} cut at {cut}: {error}"
                );
                continue;
            }
            let outcome = read_capture(capture.unwrap(), cut);
            let whole = packet_ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(outcome.segments, expected[..whole], "{name} cut at {cut}");
            let last_block_end = block_ends.iter().copied().filter(|&end| end <= cut).max();
            match outcome.error {
                None => assert!(block_ends.contains(&cut), "{name} cut at {cut}: no error"),
                Some(ReplayError::Truncated { ref path, offset }) => {
                    assert!(!block_ends.contains(&cut), "{name} cut at {cut}");
                    assert_eq!(Some(offset as usize), last_block_end, "{name} cut at {cut}");
                    assert_eq!(path.to_str(), Some(name));
                    let message = outcome.error.unwrap().to_string();
                    assert!(
                        message.starts_with(&format!("{name}: truncated")),
                        "{message}"
                    );
                }
                Some(error) => panic!("{name} cut at {cut}: {error}"),
            }
        }
    }
}

#[test]
fn blocks_claiming_four_gigabytes_are_errors_not_allocations() {
    let packets = upgrade_between(v4());

    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions::new(Link::Ethernet));
    writer.packets(interface, Link::Ethernet, &packets[..1]);
    let huge_block_at = writer.bytes().len() as u64;
    let block_type = writer.u32_bytes(6);
    let length = writer.u32_bytes(0xffff_fffc);
    writer
        .append_raw(&block_type)
        .append_raw(&length)
        .append_raw(&[0; 64]);
    let outcome = read("huge.pcapng", writer.bytes()).unwrap();
    assert_eq!(outcome.segments, segments_of(&packets[..1], 0));
    match outcome.error {
        Some(ReplayError::BlockTooLarge {
            offset, claimed, ..
        }) => {
            assert_eq!((offset, claimed), (huge_block_at, 0xffff_fffc));
        }
        other => panic!("{other:?}"),
    }

    let mut writer = PcapWriter::new(PcapOptions::new(link_type::ETHERNET));
    writer.packets(Link::Ethernet, &packets[..1]);
    let huge_record_at = writer.bytes().len() as u64;
    let mut record = vec![0u8; 8];
    record.extend(u32::MAX.to_le_bytes());
    record.extend(u32::MAX.to_le_bytes());
    writer.append_raw(&record).append_raw(&[0; 64]);
    let outcome = read("huge.pcap", writer.bytes()).unwrap();
    assert_eq!(outcome.segments.len(), 1);
    let error = outcome.error.unwrap();
    assert!(
        matches!(error, ReplayError::BlockTooLarge { offset, claimed, .. }
            if offset == huge_record_at && claimed == 16 + u64::from(u32::MAX)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("huge.pcap: the block at byte "),
        "{error}"
    );

    let mut section_header = vec![0x0a, 0x0d, 0x0d, 0x0a];
    section_header.extend(0xffff_fff0u32.to_le_bytes());
    section_header.extend(0x1a2b_3c4du32.to_le_bytes());
    section_header.extend([0; 64]);
    let error = CaptureFile::from_bytes("huge-header.pcapng", &section_header)
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            ReplayError::BlockTooLarge {
                offset: 0,
                claimed: 0xffff_fff0,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn blocks_larger_than_the_first_buffer_are_read() {
    let (client, server) = v4();
    let mut conversation = Conversation::new(client, server);
    let big_payload = vec![b'x'; 65_000];
    conversation.handshake().server_sends(&big_payload);
    let packets = conversation.into_packets();

    let mut writer = PcapNgWriter::new(false);
    writer.block(0x0bad_0001, &vec![0; 300_000]);
    let interface = writer.interface(InterfaceOptions::new(Link::Ethernet));
    writer.packets(interface, Link::Ethernet, &packets);
    let (segments, _) = read_clean("big.pcapng", writer.bytes());
    assert_eq!(segments, segments_of(&packets, 0));
    assert_eq!(segments[3].data.len(), 65_000);

    // Within the limit, but more than the file has: truncated, after the
    // buffer grew for it.
    let mut writer = PcapWriter::new(PcapOptions::new(link_type::ETHERNET));
    writer.packets(Link::Ethernet, &packets[..1]);
    let mut record = vec![0u8; 8];
    record.extend(((MAX_BLOCK_LEN / 2) as u32).to_le_bytes());
    record.extend(((MAX_BLOCK_LEN / 2) as u32).to_le_bytes());
    writer.append_raw(&record).append_raw(&[0; 1000]);
    let outcome = read("short.pcap", writer.bytes()).unwrap();
    assert_eq!(outcome.segments.len(), 1);
    assert!(
        matches!(outcome.error, Some(ReplayError::Truncated { .. })),
        "{:?}",
        outcome.error
    );
}

#[test]
fn malformed_blocks_are_errors_that_say_where() {
    let packets = upgrade_between(v4());
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions::new(Link::Ethernet));
    writer.packets(interface, Link::Ethernet, &packets[..1]);
    let prefix = writer.bytes().to_vec();

    // An enhanced packet block whose captured length overruns the block.
    let mut epb = writer.u32_bytes(interface).to_vec();
    epb.extend([0; 8]);
    epb.extend(writer.u32_bytes(1000));
    epb.extend(writer.u32_bytes(1000));
    epb.extend([0; 8]);
    writer.block(6, &epb);
    let overrun = writer.bytes().to_vec();
    // A block too short for its own header.
    let mut short = prefix.clone();
    short.extend(6u32.to_le_bytes());
    short.extend(8u32.to_le_bytes());
    short.extend([0; 32]);
    // An interface whose timestamp resolution does not fit 64 bits.
    let mut bad_resolution = PcapNgWriter::new(false);
    bad_resolution.interface(InterfaceOptions {
        tsresol: Some(20),
        ..InterfaceOptions::new(Link::Ethernet)
    });

    for (name, bytes, segments, offset) in [
        ("overrun.pcapng", overrun, 1, prefix.len()),
        ("short.pcapng", short, 1, prefix.len()),
        ("tsresol.pcapng", bad_resolution.bytes().to_vec(), 0, 28),
    ] {
        let outcome = read(name, &bytes).unwrap();
        assert_eq!(outcome.segments.len(), segments, "{name}");
        match outcome.error {
            Some(ReplayError::Malformed {
                offset: at,
                ref problem,
                ..
            }) => {
                assert_eq!(at, offset as u64, "{name}: {problem}");
                let message = outcome.error.as_ref().unwrap().to_string();
                assert!(
                    message.starts_with(&format!("{name}: malformed block at byte {offset}: ")),
                    "{message}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn corrupted_captures_never_panic_or_loop() {
    let packets = upgrade_between(v6());
    let mut writer = PcapNgWriter::new(false);
    let interface = writer.interface(InterfaceOptions::new(Link::Vlan));
    writer.packets(interface, Link::Vlan, &packets);
    writer.simple_packet(&packets[3].frame(Link::Vlan));
    let pcapng = writer.bytes().to_vec();
    let pcap = pcap(Link::LinuxSll, &packets);

    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for original in [&pcapng, &pcap] {
        for _ in 0..600 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if let Ok(capture) = CaptureFile::from_bytes("corrupt", &bytes) {
                read_capture(capture, bytes.len());
            }
        }
        // Garbage after a valid file header.
        let header_len = if original == &pcapng { 28 } else { 24 };
        for len in [1, 7, 16, 100, 5000] {
            let mut bytes = original[..header_len].to_vec();
            bytes.extend((0..len).map(|_| next() as u8));
            let capture = CaptureFile::from_bytes("garbage", &bytes).unwrap();
            read_capture(capture, bytes.len());
        }
    }
}
