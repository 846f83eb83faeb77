//! Community ID v1 (https://github.com/corelight/community-id-spec) of a
//! TCP connection, so alerts join with Zeek and Suricata logs of the same
//! flow.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{Serialize, Serializer};
use sha1::{Digest, Sha1};

const SEED: u16 = 0;
const PROTOCOL_TCP: u8 = 6;
/// `1:` and 28 characters of base64 (a SHA-1 digest).
const ID_LEN: usize = 30;

/// A community ID, kept inline: every flow of an event carries one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommunityId([u8; ID_LEN]);

impl CommunityId {
    pub fn as_str(&self) -> &str {
        // Only `1:` and base64 were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for CommunityId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `1:` and the base64 of the SHA-1 of seed, addresses, protocol and ports,
/// endpoints ordered so both directions give the same id.
pub fn tcp(a: SocketAddr, b: SocketAddr) -> CommunityId {
    let (a_ip, b_ip) = (AddressBytes::of(a.ip()), AddressBytes::of(b.ip()));
    let ((first_ip, first_port), (second_ip, second_port)) =
        if (a_ip.as_slice(), a.port()) <= (b_ip.as_slice(), b.port()) {
            ((a_ip, a.port()), (b_ip, b.port()))
        } else {
            ((b_ip, b.port()), (a_ip, a.port()))
        };
    let mut hasher = Sha1::new();
    hasher.update(SEED.to_be_bytes());
    hasher.update(first_ip.as_slice());
    hasher.update(second_ip.as_slice());
    hasher.update([PROTOCOL_TCP, 0]);
    hasher.update(first_port.to_be_bytes());
    hasher.update(second_port.to_be_bytes());
    let mut id = [0; ID_LEN];
    id[..2].copy_from_slice(b"1:");
    STANDARD
        .encode_slice(hasher.finalize(), &mut id[2..])
        .expect("a SHA-1 digest is 28 characters of base64");
    CommunityId(id)
}

/// The octets of an address, in network order.
enum AddressBytes {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl AddressBytes {
    fn of(ip: IpAddr) -> AddressBytes {
        match ip {
            IpAddr::V4(v4) => AddressBytes::V4(v4.octets()),
            IpAddr::V6(v6) => AddressBytes::V6(v6.octets()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            AddressBytes::V4(octets) => octets,
            AddressBytes::V6(octets) => octets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the spec's baseline/baseline_deflt.json and Zeek's test suite.
    #[test]
    fn matches_the_published_test_vectors_in_both_directions() {
        let vectors = [
            (
                "128.232.110.120:34855",
                "66.35.250.204:80",
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "1.2.3.4:1122",
                "5.6.7.8:3344",
                "1:wCb3OG7yAFWelaUydu0D+125CLM=",
            ),
            (
                "[2001:470:e5bf:dead:4957:2174:e82c:4887]:63943",
                "[2607:f8b0:400c:c03::1a]:25",
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
        ];
        for (client, server, expected) in vectors {
            let (client, server) = (client.parse().unwrap(), server.parse().unwrap());
            assert_eq!(tcp(client, server).as_str(), expected);
            assert_eq!(tcp(server, client).as_str(), expected);
        }
    }

    #[test]
    fn equal_addresses_are_ordered_by_port() {
        let low: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let high: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        assert_eq!(tcp(low, high), tcp(high, low));
        assert_ne!(tcp(low, high), tcp(low, "10.0.0.1:1235".parse().unwrap()));
    }
}
