//! Small capture files of scripted TCP conversations: a [`Conversation`]
//! produces [`TcpPacket`]s (reorder, duplicate or split them as a test
//! needs), a [`Link`] frames them, and [`PcapWriter`] or [`PcapNgWriter`]
//! writes them the way libpcap and Wireshark do.
//!
//! ```ignore
//! let mut conversation = Conversation::new(client, server);
//! conversation
//!     .handshake()
//!     .client_sends(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
//!     .server_sends(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
//!     .client_fin();
//! let capture = pcap(Link::Ethernet, conversation.packets());
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use auditor::segment::{Segment, TcpFlags};
use auditor_common::tcp_flags::{ACK, FIN, PSH, SYN};

use super::frames::{self, Tcp, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6};

/// Link types (LINKTYPE_* of the pcap and pcapng headers).
pub mod link_type {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// How each IP packet is framed on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan,
    /// Ethernet with an 802.1ad tag, then an 802.1Q tag.
    QinQ,
    /// Linux cooked capture v1, as `tcpdump -i any` writes it.
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// Raw IP, either version (LINKTYPE_RAW).
    Raw,
    /// Raw IPv4 only (LINKTYPE_IPV4).
    RawIpv4,
    /// Raw IPv6 only (LINKTYPE_IPV6).
    RawIpv6,
    /// BSD loopback: the address family in host (here little-endian) order.
    Null,
}

impl Link {
    pub fn link_type(self) -> u32 {
        match self {
            Link::Ethernet | Link::Vlan | Link::QinQ => link_type::ETHERNET,
            Link::LinuxSll => link_type::LINUX_SLL,
            Link::LinuxSll2 => link_type::LINUX_SLL2,
            Link::Raw => link_type::RAW,
            Link::RawIpv4 => link_type::IPV4,
            Link::RawIpv6 => link_type::IPV6,
            Link::Null => link_type::NULL,
        }
    }

    pub fn frame(self, ip_packet: &[u8]) -> Vec<u8> {
        let is_ipv6 = ip_packet.first().is_some_and(|byte| byte >> 4 == 6);
        let ether_type = if is_ipv6 { ETH_P_IPV6 } else { ETH_P_IPV4 };
        const ARPHRD_ETHER: u16 = 1;
        const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
        match self {
            Link::Ethernet => frames::ethernet(&[], ether_type, ip_packet),
            Link::Vlan => frames::ethernet(&[ETH_P_8021Q], ether_type, ip_packet),
            Link::QinQ => frames::ethernet(&[ETH_P_8021AD, ETH_P_8021Q], ether_type, ip_packet),
            Link::LinuxSll => {
                let mut out = vec![0, 0]; // packet type: to us
                out.extend(ARPHRD_ETHER.to_be_bytes());
                out.extend(6u16.to_be_bytes());
                out.extend(MAC);
                out.extend([0, 0]);
                out.extend(ether_type.to_be_bytes());
                out.extend_from_slice(ip_packet);
                out
            }
            Link::LinuxSll2 => {
                let mut out = ether_type.to_be_bytes().to_vec();
                out.extend([0, 0]); // reserved
                out.extend(3u32.to_be_bytes()); // interface index
                out.extend(ARPHRD_ETHER.to_be_bytes());
                out.extend([4, 6]); // packet type: outgoing; address length
                out.extend(MAC);
                out.extend([0, 0]);
                out.extend_from_slice(ip_packet);
                out
            }
            Link::Raw | Link::RawIpv4 | Link::RawIpv6 => ip_packet.to_vec(),
            Link::Null => {
                let family: u32 = if is_ipv6 { 24 } else { 2 };
                let mut out = family.to_le_bytes().to_vec();
                out.extend_from_slice(ip_packet);
                out
            }
        }
    }
}

/// One TCP packet of a scripted conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpPacket {
    pub timestamp_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

impl TcpPacket {
    /// The IPv4 or IPv6 packet, after the addresses' family.
    pub fn ip_packet(&self) -> Vec<u8> {
        let tcp = Tcp::new(self.src.port(), self.dst.port(), self.seq, &self.payload)
            .with_ack(self.ack)
            .with_flags(self.flags);
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                frames::ipv4(src.octets(), dst.octets(), &tcp, false)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                frames::ipv6(src.octets(), dst.octets(), &[], &tcp)
            }
            _ => panic!("{} and {} are of different families", self.src, self.dst),
        }
    }

    pub fn frame(&self, link: Link) -> Vec<u8> {
        link.frame(&self.ip_packet())
    }

    /// Two packets carrying the payload before and after `at`; the second
    /// keeps FIN and PSH.
    pub fn split_at(&self, at: usize) -> (TcpPacket, TcpPacket) {
        assert!(self.flags & SYN == 0, "a SYN is not split");
        let first = TcpPacket {
            flags: self.flags & !(FIN | PSH),
            payload: self.payload[..at].to_vec(),
            ..self.clone()
        };
        let second = TcpPacket {
            seq: self.seq.wrapping_add(at as u32),
            payload: self.payload[at..].to_vec(),
            ..self.clone()
        };
        (first, second)
    }

    /// The segment a capture file of this packet reads back as, whole.
    pub fn segment(&self, interface: u32) -> Segment {
        Segment {
            timestamp_ns: self.timestamp_ns,
            interface: Some(interface),
            direction: None,
            src: self.src,
            dst: self.dst,
            seq: self.seq,
            ack: self.ack,
            flags: TcpFlags(self.flags),
            payload_len: self.payload.len() as u32,
            data_offset: 0,
            data: self.payload.clone(),
            uncopied_tail: 0,
            gated: false,
        }
    }
}

/// A TCP conversation that keeps both sides' sequence numbers; each step
/// adds packets one clock step apart.
pub struct Conversation {
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number each side sends.
    client_seq: u32,
    server_seq: u32,
    clock_ns: u64,
    step_ns: u64,
    packets: Vec<TcpPacket>,
}

impl Conversation {
    /// 2023-11-14T22:13:20Z, a whole second.
    pub const START_NS: u64 = 1_700_000_000_000_000_000;
    pub const CLIENT_ISN: u32 = 1_000;
    pub const SERVER_ISN: u32 = 5_000;

    /// Starts at [`Self::START_NS`], 1 ms between packets.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Conversation {
        Conversation {
            client,
            server,
            client_seq: Self::CLIENT_ISN,
            server_seq: Self::SERVER_ISN,
            clock_ns: Self::START_NS,
            step_ns: 1_000_000,
            packets: Vec::new(),
        }
    }

    #[allow(dead_code)] // for examples/bench_capture.rs, which includes this file
    pub fn with_isns(mut self, client: u32, server: u32) -> Conversation {
        self.client_seq = client;
        self.server_seq = server;
        self
    }

    pub fn with_clock(mut self, start_ns: u64, step_ns: u64) -> Conversation {
        self.clock_ns = start_ns;
        self.step_ns = step_ns;
        self
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> &mut Conversation {
        let client_isn = self.client_seq;
        self.push(true, SYN, 0, &[]);
        self.client_seq = client_isn.wrapping_add(1);
        let server_isn = self.server_seq;
        self.push(false, SYN | ACK, self.client_seq, &[]);
        self.server_seq = server_isn.wrapping_add(1);
        self.push(true, ACK, self.server_seq, &[]);
        self
    }

    pub fn client_sends(&mut self, bytes: &[u8]) -> &mut Conversation {
        self.send(true, PSH | ACK, bytes)
    }

    pub fn server_sends(&mut self, bytes: &[u8]) -> &mut Conversation {
        self.send(false, PSH | ACK, bytes)
    }

    pub fn client_fin(&mut self) -> &mut Conversation {
        self.send(true, FIN | ACK, &[])
    }

    pub fn server_fin(&mut self) -> &mut Conversation {
        self.send(false, FIN | ACK, &[])
    }

    pub fn packets(&self) -> &[TcpPacket] {
        &self.packets
    }

    pub fn into_packets(self) -> Vec<TcpPacket> {
        self.packets
    }

    /// The packets added since the last call, for conversations played
    /// step by step and interleaved.
    pub fn take_packets(&mut self) -> Vec<TcpPacket> {
        std::mem::take(&mut self.packets)
    }

    fn send(&mut self, from_client: bool, flags: u8, payload: &[u8]) -> &mut Conversation {
        let ack = if from_client {
            self.server_seq
        } else {
            self.client_seq
        };
        let seq = self.push(from_client, flags, ack, payload);
        let next = seq
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(flags & FIN != 0));
        if from_client {
            self.client_seq = next;
        } else {
            self.server_seq = next;
        }
        self
    }

    /// Adds a packet at the sender's next sequence number; returns it.
    fn push(&mut self, from_client: bool, flags: u8, ack: u32, payload: &[u8]) -> u32 {
        let (src, dst, seq) = if from_client {
            (self.client, self.server, self.client_seq)
        } else {
            (self.server, self.client, self.server_seq)
        };
        self.packets.push(TcpPacket {
            timestamp_ns: self.clock_ns,
            src,
            dst,
            seq,
            ack,
            flags,
            payload: payload.to_vec(),
        });
        self.clock_ns += self.step_ns;
        seq
    }
}

/// A classic pcap file's header fields.
#[derive(Clone, Copy, Debug)]
pub struct PcapOptions {
    pub link_type: u32,
    /// Packets are cut to this many bytes, their original length kept.
    pub snaplen: u32,
    pub nanosecond: bool,
    pub big_endian: bool,
}

impl PcapOptions {
    /// Microsecond timestamps, little-endian, snaplen 262144 (tcpdump's).
    pub fn new(link_type: u32) -> PcapOptions {
        PcapOptions {
            link_type,
            snaplen: 262_144,
            nanosecond: false,
            big_endian: false,
        }
    }
}

/// Writes a classic pcap file.
pub struct PcapWriter {
    options: PcapOptions,
    out: Vec<u8>,
    block_ends: Vec<usize>,
}

impl PcapWriter {
    pub fn new(options: PcapOptions) -> PcapWriter {
        let mut writer = PcapWriter {
            options,
            out: Vec::new(),
            block_ends: Vec::new(),
        };
        let magic: u32 = if options.nanosecond {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        };
        writer.u32(magic);
        writer.u16(2);
        writer.u16(4);
        writer.u32(0); // thiszone
        writer.u32(0); // sigfigs
        writer.u32(options.snaplen);
        writer.u32(options.link_type);
        writer.block_ends.push(writer.out.len());
        writer
    }

    /// One record: the frame cut to the snapshot length, its length kept.
    pub fn packet(&mut self, timestamp_ns: u64, frame: &[u8]) -> &mut PcapWriter {
        let captured = &frame[..frame.len().min(self.options.snaplen as usize)];
        let fraction = timestamp_ns % 1_000_000_000;
        self.u32((timestamp_ns / 1_000_000_000) as u32);
        self.u32(if self.options.nanosecond {
            fraction
        } else {
            fraction / 1_000
        } as u32);
        self.u32(captured.len() as u32);
        self.u32(frame.len() as u32);
        self.out.extend_from_slice(captured);
        self.block_ends.push(self.out.len());
        self
    }

    pub fn packets(&mut self, link: Link, packets: &[TcpPacket]) -> &mut PcapWriter {
        for packet in packets {
            self.packet(packet.timestamp_ns, &packet.frame(link));
        }
        self
    }

    /// Bytes as they are, for records no honest writer makes.
    pub fn append_raw(&mut self, bytes: &[u8]) -> &mut PcapWriter {
        self.out.extend_from_slice(bytes);
        self
    }

    /// Where the file header and each record end.
    pub fn block_ends(&self) -> &[usize] {
        &self.block_ends
    }

    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// The bytes written since the last call, so that a large capture is
    /// written out as it is made; [`Self::block_ends`] starts over.
    #[allow(dead_code)] // for examples/bench_capture.rs, which includes this file
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.block_ends.clear();
        std::mem::take(&mut self.out)
    }

    fn u16(&mut self, value: u16) {
        let bytes = if self.options.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        self.out.extend(bytes);
    }

    fn u32(&mut self, value: u32) {
        let bytes = if self.options.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        self.out.extend(bytes);
    }
}

/// A pcap file of `packets` with default options for `link`.
pub fn pcap(link: Link, packets: &[TcpPacket]) -> Vec<u8> {
    let mut writer = PcapWriter::new(PcapOptions::new(link.link_type()));
    writer.packets(link, packets);
    writer.bytes().to_vec()
}

/// What an Interface Description Block says.
#[derive(Clone, Copy, Debug)]
pub struct InterfaceOptions {
    pub link_type: u16,
    /// 0: no limit.
    pub snaplen: u32,
    /// if_tsresol: 10^-n seconds, or 2^-(n & 0x7f) with the high bit set;
    /// None leaves the option out (microseconds).
    pub tsresol: Option<u8>,
    /// if_tsoffset, seconds added to every timestamp.
    pub tsoffset: Option<i64>,
}

impl InterfaceOptions {
    pub fn new(link: Link) -> InterfaceOptions {
        InterfaceOptions {
            link_type: link.link_type() as u16,
            snaplen: 262_144,
            tsresol: None,
            tsoffset: None,
        }
    }

    fn units_per_second(&self) -> u128 {
        match self.tsresol {
            None => 1_000_000,
            Some(binary) if binary & 0x80 != 0 => 1u128 << (binary & 0x7f),
            Some(decimal) => 10u128.pow(u32::from(decimal)),
        }
    }
}

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION: u32 = 1;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;
const IF_TSOFFSET: u16 = 14;

/// Writes a pcapng file: a section header first, then what is asked.
pub struct PcapNgWriter {
    big_endian: bool,
    interfaces: Vec<InterfaceOptions>,
    out: Vec<u8>,
    block_ends: Vec<usize>,
}

impl PcapNgWriter {
    pub fn new(big_endian: bool) -> PcapNgWriter {
        let mut writer = PcapNgWriter {
            big_endian,
            interfaces: Vec::new(),
            out: Vec::new(),
            block_ends: Vec::new(),
        };
        writer.section_header();
        writer
    }

    /// Starts a new section: interfaces are described anew.
    pub fn section_header(&mut self) -> &mut PcapNgWriter {
        self.interfaces.clear();
        let mut body = self.u32_bytes(0x1a2b_3c4d).to_vec();
        body.extend(self.u16_bytes(1));
        body.extend(self.u16_bytes(0));
        body.extend([0xff; 8]); // section length: not given
        self.block(SECTION_HEADER, &body)
    }

    /// Describes an interface; returns its id.
    pub fn interface(&mut self, options: InterfaceOptions) -> u32 {
        let mut body = self.u16_bytes(options.link_type).to_vec();
        body.extend([0, 0]);
        body.extend(self.u32_bytes(options.snaplen));
        if let Some(tsresol) = options.tsresol {
            body.extend(self.option(IF_TSRESOL, &[tsresol]));
        }
        if let Some(tsoffset) = options.tsoffset {
            let bytes = if self.big_endian {
                tsoffset.to_be_bytes()
            } else {
                tsoffset.to_le_bytes()
            };
            body.extend(self.option(IF_TSOFFSET, &bytes));
        }
        if options.tsresol.is_some() || options.tsoffset.is_some() {
            body.extend(self.option(OPT_END, &[]));
        }
        self.block(INTERFACE_DESCRIPTION, &body);
        self.interfaces.push(options);
        self.interfaces.len() as u32 - 1
    }

    /// An Enhanced Packet Block: the frame cut to the interface's snapshot
    /// length, the timestamp in its resolution, less its offset. An interface
    /// never described counts as microseconds without limit.
    pub fn enhanced_packet(
        &mut self,
        interface: u32,
        timestamp_ns: u64,
        frame: &[u8],
    ) -> &mut PcapNgWriter {
        let options =
            self.interfaces
                .get(interface as usize)
                .copied()
                .unwrap_or(InterfaceOptions {
                    snaplen: 0,
                    ..InterfaceOptions::new(Link::Ethernet)
                });
        let captured = cut(frame, options.snaplen);
        let since_offset_ns =
            i128::from(timestamp_ns) - i128::from(options.tsoffset.unwrap_or(0)) * 1_000_000_000;
        let units =
            (since_offset_ns.max(0) as u128 * options.units_per_second() / 1_000_000_000) as u64;
        let mut body = self.u32_bytes(interface).to_vec();
        body.extend(self.u32_bytes((units >> 32) as u32));
        body.extend(self.u32_bytes(units as u32));
        body.extend(self.u32_bytes(captured.len() as u32));
        body.extend(self.u32_bytes(frame.len() as u32));
        body.extend_from_slice(captured);
        pad(&mut body);
        self.block(ENHANCED_PACKET, &body)
    }

    /// A Simple Packet Block (interface 0, no timestamp).
    pub fn simple_packet(&mut self, frame: &[u8]) -> &mut PcapNgWriter {
        let snaplen = self
            .interfaces
            .first()
            .map_or(0, |interface| interface.snaplen);
        let mut body = self.u32_bytes(frame.len() as u32).to_vec();
        body.extend_from_slice(cut(frame, snaplen));
        pad(&mut body);
        self.block(SIMPLE_PACKET, &body)
    }

    pub fn packets(
        &mut self,
        interface: u32,
        link: Link,
        packets: &[TcpPacket],
    ) -> &mut PcapNgWriter {
        for packet in packets {
            self.enhanced_packet(interface, packet.timestamp_ns, &packet.frame(link));
        }
        self
    }

    /// Any block: type, length, `body` (a multiple of 4 bytes), length.
    pub fn block(&mut self, block_type: u32, body: &[u8]) -> &mut PcapNgWriter {
        let total_len = (12 + body.len()) as u32;
        let block_type = self.u32_bytes(block_type);
        let length = self.u32_bytes(total_len);
        self.out.extend(block_type);
        self.out.extend(length);
        self.out.extend_from_slice(body);
        self.out.extend(length);
        self.block_ends.push(self.out.len());
        self
    }

    /// Bytes as they are, for blocks no honest writer makes.
    pub fn append_raw(&mut self, bytes: &[u8]) -> &mut PcapNgWriter {
        self.out.extend_from_slice(bytes);
        self
    }

    /// Where each block ends.
    pub fn block_ends(&self) -> &[usize] {
        &self.block_ends
    }

    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// `value` in the section's byte order, for blocks made by hand.
    pub fn u32_bytes(&self, value: u32) -> [u8; 4] {
        if self.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn u16_bytes(&self, value: u16) -> [u8; 2] {
        if self.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn option(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut out = self.u16_bytes(code).to_vec();
        out.extend(self.u16_bytes(value.len() as u16));
        out.extend_from_slice(value);
        pad(&mut out);
        out
    }
}

fn cut(frame: &[u8], snaplen: u32) -> &[u8] {
    if snaplen == 0 {
        frame
    } else {
        &frame[..frame.len().min(snaplen as usize)]
    }
}

fn pad(bytes: &mut Vec<u8>) {
    bytes.resize(bytes.len().next_multiple_of(4), 0);
}

/// A file in the temporary directory, deleted on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// `name` ends the file's name; each file is distinct, as tests that run
    /// at once may use the same name.
    pub fn new(name: &str, bytes: &[u8]) -> TempFile {
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "upgrade-auditor-{}-{serial}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("write temporary capture");
        TempFile(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
