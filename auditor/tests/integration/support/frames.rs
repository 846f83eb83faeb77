//! Ethernet frames built byte by byte, for header layouts ordinary sockets
//! never send (stacked VLAN tags, long IPv6 extension chains, fragments),
//! and an AF_PACKET socket to send them out of an interface.

use std::{io, os::fd::AsRawFd};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_DEST_OPTS: u8 = 60;

pub struct Tcp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// The flags byte: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10.
    pub flags: u8,
    pub payload: &'a [u8],
}

impl<'a> Tcp<'a> {
    /// A PSH|ACK segment acknowledging nothing (ack 0).
    pub fn new(src_port: u16, dst_port: u16, seq: u32, payload: &'a [u8]) -> Tcp<'a> {
        Tcp {
            src_port,
            dst_port,
            seq,
            ack: 0,
            flags: 0x18,
            payload,
        }
    }

    pub fn with_ack(self, ack: u32) -> Tcp<'a> {
        Tcp { ack, ..self }
    }

    pub fn with_flags(self, flags: u8) -> Tcp<'a> {
        Tcp { flags, ..self }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.src_port.to_be_bytes());
        out.extend(self.dst_port.to_be_bytes());
        out.extend(self.seq.to_be_bytes());
        out.extend(self.ack.to_be_bytes());
        out.extend([5 << 4, self.flags]); // data offset 5 words
        out.extend([0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
        out.extend_from_slice(self.payload);
        out
    }
}

/// Ethernet header, then one 802.1ad/802.1Q tag per entry of `tags` (outer
/// first), then `ether_type`.
pub fn ethernet(tags: &[u16], ether_type: u16, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa];
    for (i, &tpid) in tags.iter().enumerate() {
        out.extend(tpid.to_be_bytes());
        out.extend((10 + i as u16).to_be_bytes()); // VLAN id
    }
    out.extend(ether_type.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// IPv4 header (no options) carrying `tcp`; `fragment` sets more-fragments.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], tcp: &Tcp, fragment: bool) -> Vec<u8> {
    let segment = tcp.bytes();
    let total = (20 + segment.len()) as u16;
    let mut out = vec![0x45, 0];
    out.extend(total.to_be_bytes());
    out.extend([0, 1]); // id
    out.extend(if fragment { [0x20, 0] } else { [0x40, 0] }); // MF or DF
    out.extend([64, IPPROTO_TCP, 0, 0]);
    out.extend(src);
    out.extend(dst);
    out.extend(segment);
    out
}

/// IPv6 header, then one 8-byte extension header per entry of `extensions`
/// (their types, in order), then `tcp`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], extensions: &[u8], tcp: &Tcp) -> Vec<u8> {
    let segment = tcp.bytes();
    let payload_len = (extensions.len() * 8 + segment.len()) as u16;
    let mut out = vec![0x60, 0, 0, 0];
    out.extend(payload_len.to_be_bytes());
    out.push(extensions.first().copied().unwrap_or(IPPROTO_TCP));
    out.push(64);
    out.extend(src);
    out.extend(dst);
    for (i, _) in extensions.iter().enumerate() {
        let next = extensions.get(i + 1).copied().unwrap_or(IPPROTO_TCP);
        out.extend([next, 0, 1, 4, 0, 0, 0, 0]); // length 0 (8 bytes), PadN
    }
    out.extend(segment);
    out
}

/// Sends whole frames out of one interface, bypassing the IP stack.
pub struct RawSender {
    socket: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawSender {
    /// Must be called inside the interface's namespace.
    pub fn new(interface: &str) -> io::Result<RawSender> {
        let name = std::ffi::CString::new(interface).expect("interface name");
        // SAFETY: plain libc calls; the descriptor is owned at once.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RawSender {
                socket: std::os::fd::FromRawFd::from_raw_fd(fd),
                ifindex: ifindex as i32,
            })
        }
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = self.ifindex;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid descriptor, buffer and address of the given sizes.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
