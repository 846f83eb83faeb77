//! Ethernet → (VLAN) → IPv4/IPv6 → TCP header walk, bounded and read through
//! `bpf_skb_load_bytes` so it also works on non-linear skbs.

use auditor_common::RecordHeader;
use aya_ebpf::programs::TcContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    vlan::VlanHdr,
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// QinQ: an outer and an inner tag.
const VLAN_TAGS_MAX: usize = 2;
const IPV6_EXTENSION_HEADERS_MAX: usize = 6;

/// A frame that may carry a watched segment but that the program does not
/// follow; each reason has its own counter.
#[derive(Clone, Copy)]
pub enum Skip {
    VlanDepth,
    Ipv6ExtensionChain,
    IpFragment,
    Malformed,
}

pub struct TcpSegment {
    /// Addresses, ports, sequence numbers, flags and payload length filled in.
    pub header: RecordHeader,
    /// Offset of the TCP payload from the start of the frame.
    pub payload_offset: u32,
}

/// `Ok(None)` for frames that are not TCP over IP.
#[inline(always)]
pub fn parse_tcp_segment(ctx: &TcContext) -> Result<Option<TcpSegment>, Skip> {
    let eth: EthHdr = load(ctx, 0)?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut offset = EthHdr::LEN;
    for _ in 0..VLAN_TAGS_MAX {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = load(ctx, offset)?;
        ether_type = u16::from_be(vlan.ether_type);
        offset += VlanHdr::LEN;
    }
    let mut header = empty_header();
    let (ip_payload_len, tcp_offset) = match ether_type {
        ETH_P_IPV4 => match ipv4(ctx, offset, &mut header)? {
            Some(found) => found,
            None => return Ok(None),
        },
        ETH_P_IPV6 => match ipv6(ctx, offset, &mut header)? {
            Some(found) => found,
            None => return Ok(None),
        },
        ETH_P_8021Q | ETH_P_8021AD => return Err(Skip::VlanDepth),
        _ => return Ok(None),
    };
    let tcp: TcpHdr = load(ctx, tcp_offset)?;
    let tcp_header_len = tcp.doff() as u32 * 4;
    if tcp_header_len < TcpHdr::LEN as u32 || tcp_header_len > ip_payload_len {
        return Err(Skip::Malformed);
    }
    header.src_port = u16::from_be_bytes(tcp.source);
    header.dst_port = u16::from_be_bytes(tcp.dest);
    header.seq = u32::from_be_bytes(tcp.seq);
    header.ack = u32::from_be_bytes(tcp.ack_seq);
    header.tcp_flags = tcp_flags(&tcp);
    header.payload_len = ip_payload_len - tcp_header_len;
    Ok(Some(TcpSegment {
        header,
        payload_offset: tcp_offset as u32 + tcp_header_len,
    }))
}

/// Returns the IP payload length and the TCP header's offset.
#[inline(always)]
fn ipv4(
    ctx: &TcContext,
    offset: usize,
    header: &mut RecordHeader,
) -> Result<Option<(u32, usize)>, Skip> {
    let ip: Ipv4Hdr = load(ctx, offset)?;
    if ip.proto != IPPROTO_TCP {
        return Ok(None);
    }
    let ip_header_len = ip.ihl() as u32;
    if ip_header_len < Ipv4Hdr::LEN as u32 {
        return Err(Skip::Malformed);
    }
    // More-fragments flag or a non-zero offset: not a whole segment.
    if ip.frags[0] & 0x3f != 0 || ip.frags[1] != 0 {
        return Err(Skip::IpFragment);
    }
    // BIG TCP super-packets carry a total length of 0; the skb knows the size.
    let total_len = match u16::from_be_bytes(ip.tot_len) as u32 {
        0 => ctx.len().saturating_sub(offset as u32),
        len => len,
    };
    if total_len < ip_header_len {
        return Err(Skip::Malformed);
    }
    header.ip_version = 4;
    header.src_addr[..4].copy_from_slice(&ip.src_addr);
    header.dst_addr[..4].copy_from_slice(&ip.dst_addr);
    Ok(Some((
        total_len - ip_header_len,
        offset + ip_header_len as usize,
    )))
}

/// Returns the IP payload length after extension headers and the TCP header's offset.
#[inline(always)]
fn ipv6(
    ctx: &TcContext,
    offset: usize,
    header: &mut RecordHeader,
) -> Result<Option<(u32, usize)>, Skip> {
    let ip: Ipv6Hdr = load(ctx, offset)?;
    // BIG TCP and jumbograms carry a payload length of 0.
    let mut payload_len = match u16::from_be_bytes(ip.payload_len) as u32 {
        0 => ctx.len().saturating_sub((offset + Ipv6Hdr::LEN) as u32),
        len => len,
    };
    let mut next_header = ip.next_hdr;
    let mut cursor = offset + Ipv6Hdr::LEN;
    for _ in 0..IPV6_EXTENSION_HEADERS_MAX {
        let extension_len = match next_header {
            IPPROTO_TCP => break,
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let len_units: u8 = load(ctx, cursor + 1)?;
                (len_units as u32 + 1) * 8
            }
            IPV6_AUTH => {
                let len_units: u8 = load(ctx, cursor + 1)?;
                (len_units as u32 + 2) * 4
            }
            IPV6_FRAGMENT => return Err(Skip::IpFragment),
            _ => return Ok(None),
        };
        if extension_len > payload_len {
            return Err(Skip::Malformed);
        }
        next_header = load(ctx, cursor)?;
        payload_len -= extension_len;
        cursor += extension_len as usize;
    }
    match next_header {
        IPPROTO_TCP => {
            header.ip_version = 6;
            header.src_addr = ip.src_addr;
            header.dst_addr = ip.dst_addr;
            Ok(Some((payload_len, cursor)))
        }
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AUTH | IPV6_FRAGMENT => {
            Err(Skip::Ipv6ExtensionChain)
        }
        _ => Ok(None),
    }
}

/// The flag bits, as on the wire: byte 13 of the header.
#[inline(always)]
fn tcp_flags(tcp: &TcpHdr) -> u8 {
    // TcpHdr is `repr(C)` bytes only, 20 of them: byte 13 is in bounds.
    unsafe { *(tcp as *const TcpHdr as *const u8).add(13) }
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Result<T, Skip> {
    ctx.load(offset).map_err(|_| Skip::Malformed)
}

#[inline(always)]
fn empty_header() -> RecordHeader {
    RecordHeader {
        timestamp_ns: 0,
        ifindex: 0,
        seq: 0,
        ack: 0,
        payload_len: 0,
        data_offset: 0,
        data_len: 0,
        src_addr: [0; 16],
        dst_addr: [0; 16],
        src_port: 0,
        dst_port: 0,
        ip_version: 0,
        direction: 0,
        tcp_flags: 0,
        record_flags: 0,
    }
}
