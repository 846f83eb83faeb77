//! Ethernet → (VLAN) → IPv4/IPv6 → TCP header walk, bounded and read through
//! `bpf_skb_load_bytes` so it also works on non-linear skbs; only the usual
//! frame (untagged IPv4 without options) is read in place, when its headers
//! are in the skb's linear part.
//!
//! The walk runs for every packet, so it reads only what the port check and
//! the payload bounds need; sequence numbers, flags and addresses are read
//! only for segments of watched ports ([`Addresses::read`]).

use core::mem::MaybeUninit;

use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::TcContext};
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

/// What the walk found out about a TCP segment.
pub struct TcpSegment {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub tcp_flags: u8,
    /// The segment's TCP payload length, from the IP header.
    pub payload_len: u32,
    /// Offset of the TCP payload from the start of the frame.
    pub payload_offset: u32,
    pub addresses: Addresses,
}

/// Where the segment's addresses are, to be read only if it is watched.
pub enum Addresses {
    /// Source and destination, kept from the header already read.
    V4([u8; 4], [u8; 4]),
    /// Offset of the IPv6 header in the frame.
    V6(u32),
}

/// An untagged Ethernet frame carrying IPv4 without options and TCP: the
/// usual frame.
#[repr(C)]
struct Ipv4Frame {
    eth: EthHdr,
    ip: Ipv4Hdr,
    tcp: TcpHdr,
}

/// `Ok(None)` for frames that are not TCP over IP, and for segments of
/// which neither port `is_watched`: the ports are checked as soon as the
/// TCP header is known to be whole, before anything else is read.
#[inline(always)]
pub fn parse_tcp_segment(
    ctx: &TcContext,
    is_watched: impl Fn(u16) -> bool,
) -> Result<Option<TcpSegment>, Skip> {
    // The usual frame is read in place, without a helper call. Every other
    // frame, and one whose headers are not all in the skb's linear part,
    // takes the step-by-step walk below, which reaches the same verdicts.
    let ether_type = match in_place::<Ipv4Frame>(ctx) {
        Some(frame) => {
            if frame.eth.ether_type == ETH_P_IPV4.to_be()
                && frame.ip.vihl == 0x45
                && frame.ip.proto == IPPROTO_TCP
            {
                let ip_payload_len = ipv4_payload_len(ctx, EthHdr::LEN, &frame.ip)?;
                return tcp_segment(
                    &frame.tcp,
                    ip_payload_len,
                    EthHdr::LEN + Ipv4Hdr::LEN,
                    is_watched,
                    || Addresses::V4(frame.ip.src_addr, frame.ip.dst_addr),
                );
            }
            frame.eth.ether_type
        }
        None => load::<EthHdr>(ctx, 0)?.ether_type,
    };
    let mut ether_type = u16::from_be(ether_type);
    let mut offset = EthHdr::LEN;
    for _ in 0..VLAN_TAGS_MAX {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = load(ctx, offset)?;
        ether_type = u16::from_be(vlan.ether_type);
        offset += VlanHdr::LEN;
    }
    let (ip_payload_len, tcp_offset, addresses) = match ether_type {
        ETH_P_IPV4 => match ipv4(ctx, offset)? {
            Some(found) => found,
            None => return Ok(None),
        },
        ETH_P_IPV6 => match ipv6(ctx, offset)? {
            Some(found) => found,
            None => return Ok(None),
        },
        ETH_P_8021Q | ETH_P_8021AD => return Err(Skip::VlanDepth),
        _ => return Ok(None),
    };
    let tcp: TcpHdr = load(ctx, tcp_offset)?;
    tcp_segment(&tcp, ip_payload_len, tcp_offset, is_watched, || addresses)
}

#[inline(always)]
fn tcp_segment(
    tcp: &TcpHdr,
    ip_payload_len: u32,
    tcp_offset: usize,
    is_watched: impl Fn(u16) -> bool,
    addresses: impl FnOnce() -> Addresses,
) -> Result<Option<TcpSegment>, Skip> {
    let tcp_header_len = tcp.doff() as u32 * 4;
    if tcp_header_len < TcpHdr::LEN as u32 || tcp_header_len > ip_payload_len {
        return Err(Skip::Malformed);
    }
    let src_port = u16::from_be_bytes(tcp.source);
    let dst_port = u16::from_be_bytes(tcp.dest);
    if !is_watched(src_port) && !is_watched(dst_port) {
        return Ok(None);
    }
    Ok(Some(TcpSegment {
        src_port,
        dst_port,
        seq: u32::from_be_bytes(tcp.seq),
        ack: u32::from_be_bytes(tcp.ack_seq),
        tcp_flags: tcp_flags(tcp),
        payload_len: ip_payload_len - tcp_header_len,
        payload_offset: tcp_offset as u32 + tcp_header_len,
        addresses: addresses(),
    }))
}

/// Returns the IP payload length, the TCP header's offset and the addresses.
#[inline(always)]
fn ipv4(ctx: &TcContext, offset: usize) -> Result<Option<(u32, usize, Addresses)>, Skip> {
    let ip: Ipv4Hdr = load(ctx, offset)?;
    if ip.proto != IPPROTO_TCP {
        return Ok(None);
    }
    let payload_len = ipv4_payload_len(ctx, offset, &ip)?;
    Ok(Some((
        payload_len,
        offset + ip.ihl() as usize,
        Addresses::V4(ip.src_addr, ip.dst_addr),
    )))
}

/// The IP payload length of an IPv4 header carrying TCP at `offset`.
#[inline(always)]
fn ipv4_payload_len(ctx: &TcContext, offset: usize, ip: &Ipv4Hdr) -> Result<u32, Skip> {
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
    Ok(total_len - ip_header_len)
}

/// Returns the IP payload length after extension headers, the TCP header's
/// offset and the addresses.
#[inline(always)]
fn ipv6(ctx: &TcContext, offset: usize) -> Result<Option<(u32, usize, Addresses)>, Skip> {
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
        IPPROTO_TCP => Ok(Some((payload_len, cursor, Addresses::V6(offset as u32)))),
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AUTH | IPV6_FRAGMENT => {
            Err(Skip::Ipv6ExtensionChain)
        }
        _ => Ok(None),
    }
}

impl Addresses {
    /// The IP version, then the source and destination addresses as they
    /// follow each other in `RecordHeader` (IPv4 addresses take the first
    /// four bytes of their 16). Words, not bytes: byte arrays would be
    /// zeroed and copied one byte at a time.
    #[inline(always)]
    pub fn read(&self, ctx: &TcContext) -> Result<(u8, [u32; 8]), Skip> {
        match *self {
            Addresses::V4(src, dst) => {
                let (src, dst) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
                Ok((4, [src, 0, 0, 0, dst, 0, 0, 0]))
            }
            Addresses::V6(ip_offset) => {
                // The source address at byte 8 of the IPv6 header, the
                // destination right after it.
                let mut words = MaybeUninit::<[u32; 8]>::uninit();
                let loaded = unsafe {
                    bpf_skb_load_bytes(
                        ctx.skb.skb as *const _,
                        ip_offset + 8,
                        words.as_mut_ptr() as *mut _,
                        32,
                    )
                };
                if loaded != 0 {
                    return Err(Skip::Malformed);
                }
                Ok((6, unsafe { words.assume_init() }))
            }
        }
    }
}

/// The flag bits, as on the wire: byte 13 of the header.
#[inline(always)]
fn tcp_flags(tcp: &TcpHdr) -> u8 {
    // TcpHdr is `repr(C)` bytes only, 20 of them: byte 13 is in bounds.
    unsafe { *(tcp as *const TcpHdr as *const u8).add(13) }
}

/// A `T` at the start of the frame, read in place when the skb's linear
/// part holds all of it.
#[inline(always)]
fn in_place<T>(ctx: &TcContext) -> Option<&T> {
    let start = ctx.data();
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // In bounds, just checked. Every T here is bytes and u16s; the verifier
    // accepts unaligned packet reads unless the architecture lacks efficient
    // unaligned access.
    Some(unsafe { &*(start as *const T) })
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Result<T, Skip> {
    ctx.load(offset).map_err(|_| Skip::Malformed)
}
