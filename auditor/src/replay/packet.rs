//! One captured packet, link layer first, turned into a TCP [`Segment`] or a
//! reason to skip it.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    err::{packet::SliceError, Layer},
    EtherPayloadSlice, EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, Ipv6Slice, LaxNetSlice,
    LaxSlicedPacket, LenSource, SingleVlanSlice, TcpSlice, TransportSlice,
};
use pcap_parser::{
    data::{get_packetdata, PacketData},
    Linktype,
};

use crate::segment::{Segment, SegmentRef, TcpFlags};

/// Why a packet of a capture file did not become a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// The capture's link type is not one this reader decodes.
    UnsupportedLinkType,
    /// A pcapng packet names an interface its section never described.
    UnknownInterface,
    /// The captured bytes end inside the link, IP or TCP header.
    TruncatedHeaders,
    /// A header field contradicts the packet (bad IP header length, TCP data
    /// offset, lengths beyond the original packet…).
    Malformed,
    /// Not carried over IPv4 or IPv6 (ARP, deeper VLAN stacks, other
    /// protocols).
    NotIp,
    /// IP, but not TCP.
    NotTcp,
    /// An IP fragment: fragments are not reassembled.
    IpFragment,
}

impl SkipReason {
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLinkType => "unsupported link type",
            SkipReason::UnknownInterface => "unknown interface",
            SkipReason::TruncatedHeaders => "truncated headers",
            SkipReason::Malformed => "malformed",
            SkipReason::NotIp => "not IP",
            SkipReason::NotTcp => "not TCP",
            SkipReason::IpFragment => "IP fragment",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A packet as a capture file stores it.
pub(super) struct CapturedPacket<'a> {
    pub link_type: Linktype,
    /// The captured bytes, starting with the link-layer header.
    pub data: &'a [u8],
    /// The packet's length on the wire, before the snapshot length cut it.
    pub orig_len: u32,
    pub timestamp_ns: u64,
    pub interface: u32,
}

/// Decodes the packet's headers; the segment's payload is the captured part of
/// the TCP payload, and `uncopied_tail` what the snapshot length cut off.
pub(super) fn tcp_segment<'a>(packet: &CapturedPacket<'a>) -> Result<SegmentRef<'a>, SkipReason> {
    match plain_segment(packet) {
        Some(segment) => Ok(segment),
        None => any_segment(packet),
    }
}

/// The common case, decoded with etherparse's strict slices, which cost far
/// less than the [`LaxSlicedPacket`] of [`any_segment`] (a large value that
/// gets copied around): at most one VLAN tag, IPv4 or IPv6 without extension
/// headers and with all the bytes its header declares, TCP. None for every
/// other packet, and [`any_segment`] decides what it is; the packets taken
/// here, it would turn into the same segments.
fn plain_segment<'a>(packet: &CapturedPacket<'a>) -> Option<SegmentRef<'a>> {
    let mut ether_payload = if packet.link_type == Linktype::ETHERNET {
        Ethernet2Slice::from_slice_without_fcs(packet.data)
            .ok()?
            .payload()
    } else {
        match get_packetdata(packet.data, packet.link_type, packet.data.len())? {
            PacketData::L3(ether_type, payload) => EtherPayloadSlice {
                ether_type: EtherType(ether_type),
                len_source: LenSource::Slice,
                payload,
            },
            PacketData::L2(_) | PacketData::L4(..) | PacketData::Unsupported(_) => return None,
        }
    };
    if matches!(
        ether_payload.ether_type,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    ) {
        ether_payload = SingleVlanSlice::from_slice(ether_payload.payload)
            .ok()?
            .payload();
    }
    let (ip_number, src_ip, dst_ip, ip_payload): (_, IpAddr, IpAddr, _) =
        match ether_payload.ether_type {
            EtherType::IPV4 => {
                let ipv4 = Ipv4Slice::from_slice(ether_payload.payload).ok()?;
                let header = ipv4.header();
                (
                    header.protocol(),
                    header.source_addr().into(),
                    header.destination_addr().into(),
                    ipv4.payload().clone(),
                )
            }
            EtherType::IPV6 => {
                let ipv6 = Ipv6Slice::from_slice(ether_payload.payload).ok()?;
                let header = ipv6.header();
                (
                    header.next_header(),
                    header.source_addr().into(),
                    header.destination_addr().into(),
                    ipv6.payload().clone(),
                )
            }
            _ => return None,
        };
    // The IP header's own protocol keeps out extension headers, even those
    // followed by TCP; `LenSource::Slice`: an IPv6 payload length of 0, which
    // the packet's length stands in for.
    if ip_number != IpNumber::TCP
        || ip_payload.fragmented
        || ip_payload.len_source == LenSource::Slice
    {
        return None;
    }
    let tcp = TcpSlice::from_slice(ip_payload.payload).ok()?;
    let payload_len = u32::try_from(tcp.payload().len()).ok()?;
    Some(segment(packet, src_ip, dst_ip, &tcp, payload_len, 0))
}

/// Any packet of the supported link types, with etherparse's lax slicing,
/// which says how far the headers go and what stopped it.
fn any_segment<'a>(packet: &CapturedPacket<'a>) -> Result<SegmentRef<'a>, SkipReason> {
    let sliced = slice_headers(packet)?;
    match &sliced.stop_err {
        // Broken headers of protocols other than IP and TCP: the packet is
        // not TCP, whatever else is wrong with it.
        Some((
            _,
            Layer::Arp
            | Layer::UdpHeader
            | Layer::UdpPayload
            | Layer::Icmpv4
            | Layer::Icmpv4Timestamp
            | Layer::Icmpv4TimestampReply
            | Layer::Icmpv6
            | Layer::Igmp,
        ))
        | None => {}
        Some((SliceError::Len(len), _)) if len.len_source == LenSource::Slice => {
            return Err(SkipReason::TruncatedHeaders);
        }
        Some(_) => return Err(SkipReason::Malformed),
    }
    let (src_ip, dst_ip, ip_payload, declared_ip_payload_len): (IpAddr, IpAddr, _, _) =
        match &sliced.net {
            Some(LaxNetSlice::Ipv4(ipv4)) => {
                let header = ipv4.header();
                let headers_len = header.slice().len()
                    + ipv4.extensions().auth.map_or(0, |auth| auth.slice().len());
                (
                    header.source_addr().into(),
                    header.destination_addr().into(),
                    ipv4.payload(),
                    usize::from(header.total_len()).checked_sub(headers_len),
                )
            }
            Some(LaxNetSlice::Ipv6(ipv6)) => {
                let header = ipv6.header();
                (
                    header.source_addr().into(),
                    header.destination_addr().into(),
                    ipv6.payload(),
                    usize::from(header.payload_length())
                        .checked_sub(ipv6.extensions().slice().len()),
                )
            }
            Some(LaxNetSlice::Arp(_)) | None => return Err(SkipReason::NotIp),
        };
    if ip_payload.fragmented {
        return Err(SkipReason::IpFragment);
    }
    if ip_payload.ip_number != IpNumber::TCP {
        return Err(SkipReason::NotTcp);
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return Err(SkipReason::Malformed);
    };

    // Bytes of the original packet the capture did not keep.
    let snapshot_cut = u64::from(packet.orig_len).saturating_sub(packet.data.len() as u64);
    let ip_payload_len = if ip_payload.incomplete {
        // The IP header's length reaches past the captured bytes.
        declared_ip_payload_len.ok_or(SkipReason::Malformed)? as u64
    } else if ip_payload.len_source == LenSource::Slice {
        // The IP header gives no usable length (IPv4 total length 0 from
        // segmentation offload, IPv6 jumbograms): the packet's own length is
        // the best there is.
        ip_payload.payload.len() as u64 + snapshot_cut
    } else {
        ip_payload.payload.len() as u64
    };
    let captured = tcp.payload();
    let tcp_payload_len = ip_payload_len
        .checked_sub(tcp.header_slice().len() as u64)
        .ok_or(SkipReason::Malformed)?;
    let missing = tcp_payload_len
        .checked_sub(captured.len() as u64)
        .ok_or(SkipReason::Malformed)?;
    if missing > snapshot_cut {
        // The IP header claims bytes the original packet did not have.
        return Err(SkipReason::Malformed);
    }
    let payload_len = u32::try_from(tcp_payload_len).map_err(|_| SkipReason::Malformed)?;
    Ok(segment(
        packet,
        src_ip,
        dst_ip,
        tcp,
        payload_len,
        missing as u32,
    ))
}

/// The segment of a decoded packet: its data is the captured part of the TCP
/// payload.
fn segment<'a>(
    packet: &CapturedPacket<'a>,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    tcp: &TcpSlice<'a>,
    payload_len: u32,
    uncopied_tail: u32,
) -> SegmentRef<'a> {
    let tcp_flags_byte = tcp.header_slice()[13];
    Segment {
        timestamp_ns: packet.timestamp_ns,
        interface: Some(packet.interface),
        direction: None,
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(tcp_flags_byte),
        payload_len,
        data_offset: 0,
        data: tcp.payload(),
        uncopied_tail,
        gated: false,
    }
}

/// Strips the link-layer header (pcap-parser knows the link types) and lets
/// etherparse walk VLAN tags, IP and TCP.
fn slice_headers<'a>(packet: &CapturedPacket<'a>) -> Result<LaxSlicedPacket<'a>, SkipReason> {
    match get_packetdata(packet.data, packet.link_type, packet.data.len()) {
        Some(PacketData::L2(frame)) => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| SkipReason::TruncatedHeaders)
        }
        Some(PacketData::L3(ether_type, body)) => Ok(LaxSlicedPacket::from_ether_type(
            EtherType(ether_type),
            body,
        )),
        Some(PacketData::L4(..)) => Err(SkipReason::NotIp),
        Some(PacketData::Unsupported(_)) => Err(SkipReason::UnsupportedLinkType),
        // pcap-parser says None both for a packet shorter than the link
        // header and for link-layer protocols without IP (netlink).
        None if packet.data.len() < link_header_len(packet.link_type) => {
            Err(SkipReason::TruncatedHeaders)
        }
        None => Err(SkipReason::NotIp),
    }
}

fn link_header_len(link_type: Linktype) -> usize {
    match link_type {
        Linktype::NULL => 4,
        Linktype::LINUX_SLL => 16,
        Linktype::LINUX_SLL2 => 20,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 4] = [10, 0, 0, 1];
    const SERVER: [u8; 4] = [10, 0, 0, 2];

    /// IPv4 header (no options) with `total_len`, then [`tcp`].
    fn ipv4_tcp(total_len: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x45, 0];
        out.extend(total_len.to_be_bytes());
        out.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
        out.extend(CLIENT);
        out.extend(SERVER);
        out.extend(tcp(payload));
        out
    }

    /// IPv6 header with `payload_length` and `next_header`, then [`tcp`].
    fn ipv6_tcp(payload_length: u16, next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x60, 0, 0, 0];
        out.extend(payload_length.to_be_bytes());
        out.extend([next_header, 64]);
        out.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        out.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        out.extend(tcp(payload));
        out
    }

    /// A 20-byte TCP header (PSH|ACK, seq 7, ack 9), then `payload`.
    fn tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = 40_000u16.to_be_bytes().to_vec();
        out.extend(80u16.to_be_bytes());
        out.extend(7u32.to_be_bytes());
        out.extend(9u32.to_be_bytes());
        out.extend([5 << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    /// An Ethernet frame: MAC addresses, a VLAN tag for each of `vlan_ids`,
    /// `ether_type`, `body`.
    fn ethernet(vlan_ids: &[u16], ether_type: u16, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 12];
        for vlan_id in vlan_ids {
            out.extend(0x8100u16.to_be_bytes());
            out.extend(vlan_id.to_be_bytes());
        }
        out.extend(ether_type.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn raw(data: &[u8], orig_len: u32) -> Result<Segment, SkipReason> {
        captured(Linktype::RAW, data, orig_len)
    }

    /// `data` as a capture file of `link_type` hands it over.
    fn captured(link_type: Linktype, data: &[u8], orig_len: u32) -> Result<Segment, SkipReason> {
        tcp_segment(&CapturedPacket {
            link_type,
            data,
            orig_len,
            timestamp_ns: 5,
            interface: 2,
        })
        .map(|segment| segment.to_owned_segment())
    }

    #[test]
    fn raw_ipv4_segment() {
        let packet = ipv4_tcp(45, b"hello");
        let segment = raw(&packet, packet.len() as u32).unwrap();
        assert_eq!(segment.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(segment.dst, "10.0.0.2:80".parse().unwrap());
        assert_eq!((segment.seq, segment.ack), (7, 9));
        assert_eq!(segment.flags, TcpFlags(0x18));
        assert_eq!(segment.data, b"hello");
        assert_eq!((segment.payload_len, segment.uncopied_tail), (5, 0));
        assert_eq!((segment.timestamp_ns, segment.interface), (5, Some(2)));
    }

    #[test]
    fn snapshot_cut_becomes_the_uncopied_tail() {
        let packet = ipv4_tcp(45, b"hello");
        let segment = raw(&packet[..42], 45).unwrap();
        assert_eq!(segment.data, b"he");
        assert_eq!((segment.payload_len, segment.uncopied_tail), (5, 3));
    }

    #[test]
    fn padding_after_the_ip_packet_is_not_payload() {
        let mut packet = ipv4_tcp(45, b"hello");
        packet.extend([0; 6]);
        let segment = raw(&packet, packet.len() as u32).unwrap();
        assert_eq!(segment.data, b"hello");
        assert_eq!(segment.payload_len, 5);
    }

    #[test]
    fn ip_length_beyond_the_original_packet_is_malformed() {
        let packet = ipv4_tcp(100, b"hello");
        assert_eq!(
            raw(&packet, packet.len() as u32),
            Err(SkipReason::Malformed)
        );
    }

    #[test]
    fn offload_packets_without_ip_length_use_the_packet_length() {
        let packet = ipv4_tcp(0, b"hello");
        let segment = raw(&packet[..42], 45).unwrap();
        assert_eq!((segment.payload_len, segment.uncopied_tail), (5, 3));
    }

    #[test]
    fn cut_inside_the_tcp_header_is_truncated() {
        let packet = ipv4_tcp(45, b"hello");
        assert_eq!(raw(&packet[..30], 45), Err(SkipReason::TruncatedHeaders));
        assert_eq!(raw(&packet[..10], 45), Err(SkipReason::TruncatedHeaders));
        assert_eq!(raw(&[], 45), Err(SkipReason::TruncatedHeaders));
    }

    #[test]
    fn tcp_header_longer_than_the_ip_packet_is_malformed() {
        // The IP packet ends 10 bytes into the TCP header, though more bytes
        // were captured.
        let packet = ipv4_tcp(30, b"hello");
        assert_eq!(raw(&packet, 45), Err(SkipReason::Malformed));
    }

    #[test]
    fn bad_header_fields_are_malformed() {
        let mut packet = ipv4_tcp(45, b"hello");
        packet[32] = 2 << 4; // TCP data offset of 2 words
        assert_eq!(raw(&packet, 45), Err(SkipReason::Malformed));
        let mut packet = ipv4_tcp(45, b"hello");
        packet[0] = 0x43; // IHL of 3 words
        assert_eq!(raw(&packet, 45), Err(SkipReason::Malformed));
    }

    #[test]
    fn plain_packets_decode_as_any_packet() {
        use Linktype as L;
        let ipv4 = ipv4_tcp(45, b"hello");
        let mut padded = ethernet(&[], 0x0800, &ipv4);
        padded.extend([0; 6]);
        let mut loopback = 2u32.to_le_bytes().to_vec();
        loopback.extend(&ipv4);
        let plain = [
            (L::ETHERNET, ethernet(&[], 0x0800, &ipv4)),
            (L::ETHERNET, padded),
            (L::ETHERNET, ethernet(&[7], 0x0800, &ipv4)),
            (
                L::ETHERNET,
                ethernet(&[], 0x86dd, &ipv6_tcp(25, 6, b"hello")),
            ),
            (L::RAW, ipv4.clone()),
            (L::NULL, loopback),
        ];
        let mut fragment = ipv4.clone();
        fragment[6] = 0x20; // more fragments
        let mut udp = ipv4.clone();
        udp[9] = 17;
        let mut bad_data_offset = ipv4.clone();
        bad_data_offset[32] = 2 << 4;
        let others = [
            (L::ETHERNET, ethernet(&[], 0x0800, &ipv4_tcp(0, b"hello"))),
            (L::ETHERNET, ethernet(&[], 0x0800, &ipv4_tcp(100, b"hello"))),
            (L::ETHERNET, ethernet(&[], 0x0800, &fragment)),
            (L::ETHERNET, ethernet(&[], 0x0800, &udp)),
            (L::ETHERNET, ethernet(&[], 0x0800, &bad_data_offset)),
            (L::ETHERNET, ethernet(&[], 0x86dd, &ipv4)),
            (
                L::ETHERNET,
                ethernet(&[], 0x0800, &ipv6_tcp(25, 6, b"hello")),
            ),
            (
                L::ETHERNET,
                ethernet(&[], 0x86dd, &ipv6_tcp(0, 6, b"hello")),
            ),
            (
                L::ETHERNET,
                ethernet(&[], 0x86dd, &ipv6_tcp(25, 0, b"hello")),
            ),
            (L::ETHERNET, ethernet(&[7, 8], 0x0800, &ipv4)),
            (L::ETHERNET, ethernet(&[], 0x0806, &[0; 28])),
            (L::ETHERNET, ethernet(&[], 0x0800, &ipv4)[..40].to_vec()),
            (L::ETHERNET, vec![0; 10]),
            (L::ETHERNET, vec![]),
            (L::RAW, ipv4[..40].to_vec()),
            (L::NULL, vec![2, 0]),
            (Linktype(147), ipv4.clone()),
        ];
        let cut_by_the_snapshot_length = ethernet(&[], 0x0800, &ipv4)[..56].to_vec();
        let cases = plain
            .iter()
            .map(|(link_type, data)| (*link_type, data, data.len() as u32, true))
            .chain(
                others
                    .iter()
                    .map(|(link_type, data)| (*link_type, data, 59, false)),
            )
            .chain([(L::ETHERNET, &cut_by_the_snapshot_length, 59, false)]);
        for (link_type, data, orig_len, is_plain) in cases {
            let packet = CapturedPacket {
                link_type,
                data,
                orig_len,
                timestamp_ns: 5,
                interface: 2,
            };
            let case = format!("{link_type:?} {data:02x?}");
            assert_eq!(plain_segment(&packet).is_some(), is_plain, "{case}");
            assert_eq!(tcp_segment(&packet), any_segment(&packet), "{case}");
        }
    }

    #[test]
    fn linux_cooked_header_of_a_loopback_device() {
        // etherparse refuses SLL headers of ARPHRD_LOOPBACK; pcap-parser's
        // link-layer step takes them.
        let mut frame = vec![0, 0, 0x03, 0x04, 0, 0];
        frame.extend([0; 8]);
        frame.extend(0x0800u16.to_be_bytes());
        frame.extend(ipv4_tcp(45, b"hello"));
        let segment = captured(Linktype::LINUX_SLL, &frame, frame.len() as u32).unwrap();
        assert_eq!(segment.data, b"hello");
        let short = captured(Linktype::LINUX_SLL, &frame[..12], frame.len() as u32);
        assert_eq!(short, Err(SkipReason::TruncatedHeaders));
    }

    #[test]
    fn bsd_loopback_header() {
        let mut frame = 2u32.to_le_bytes().to_vec();
        frame.extend(ipv4_tcp(45, b"hello"));
        let segment = captured(Linktype::NULL, &frame, frame.len() as u32).unwrap();
        assert_eq!(segment.data, b"hello");
    }

    #[test]
    fn unknown_link_type_is_skipped() {
        let packet = ipv4_tcp(45, b"hello");
        let result = captured(Linktype(147), &packet, 45);
        assert_eq!(result, Err(SkipReason::UnsupportedLinkType));
    }
}
