//! A TCP endpoint stored compactly in per-connection tables.

use std::{
    hash::{Hash, Hasher},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
};

/// An IP address and port in 20 bytes instead of [`SocketAddr`]'s 32: the
/// flow tables hold one or two per connection, and a daemon may track
/// hundreds of thousands of connections.
///
/// It keeps what a packet header says about an endpoint: an IPv6 address's
/// flow info and scope id are not kept (the packet decoders never set them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PackedAddr {
    /// An IPv4 address in the first 4 bytes, the rest zero.
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl From<SocketAddr> for PackedAddr {
    fn from(addr: SocketAddr) -> PackedAddr {
        match addr {
            // Built as one 16-byte value: filled piecewise, the array is
            // read back (compared, hashed) across its partial writes, which
            // stalls the load on every segment.
            SocketAddr::V4(addr) => PackedAddr {
                ip: (u128::from(addr.ip().to_bits()) << 96).to_be_bytes(),
                port: addr.port(),
                v6: false,
            },
            SocketAddr::V6(addr) => PackedAddr {
                ip: addr.ip().octets(),
                port: addr.port(),
                v6: true,
            },
        }
    }
}

/// Two words for the hasher rather than the derived hash's length-prefixed
/// slice and two small fields: every segment looks its connection up by two.
impl Hash for PackedAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.ip));
        state.write_u32(u32::from(self.port) << 1 | u32::from(self.v6));
    }
}

impl From<PackedAddr> for SocketAddr {
    fn from(addr: PackedAddr) -> SocketAddr {
        if addr.v6 {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(addr.ip), addr.port, 0, 0))
        } else {
            let [a, b, c, d, ..] = addr.ip;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), addr.port))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_families_apart() {
        for text in [
            "10.1.2.3:80",
            "[2001:db8::1]:443",
            "[::ffff:10.1.2.3]:80",
            "0.0.0.0:0",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(SocketAddr::from(PackedAddr::from(addr)), addr);
        }
        let v4: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let mapped: SocketAddr = "[::a01:203]:80".parse().unwrap();
        assert_ne!(PackedAddr::from(v4), PackedAddr::from(mapped));
        assert_eq!(std::mem::size_of::<PackedAddr>(), 20);
    }
}
