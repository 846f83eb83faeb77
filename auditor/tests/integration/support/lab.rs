//! Network namespaces and veth pairs. Every address lives inside namespaces
//! the test created; dropping a [`NetNs`] deletes it, also when the test
//! fails, and a new lab sweeps namespaces left by test processes that died.

use std::net::IpAddr;

use lab::netns::ip;
pub use lab::netns::{in_fresh_netns, NetNs};

/// Two namespaces joined by a veth pair, each end with an IPv4 and an IPv6
/// address.
pub struct VethLab {
    pub a: NetNs,
    pub b: NetNs,
    /// Interface name of the pair's end in `a`.
    pub a_if: String,
    pub a_v4: IpAddr,
    pub b_v4: IpAddr,
    pub a_v6: IpAddr,
}

impl VethLab {
    pub fn new() -> VethLab {
        let a = NetNs::new();
        let b = NetNs::new();
        let (a_if, b_if) = ("veth-a".to_owned(), "veth-b".to_owned());
        ip(&[
            "link", "add", &a_if, "netns", &a.name, "type", "veth", "peer", "name", &b_if, "netns",
            &b.name,
        ]);
        a.ip(&["addr", "add", "10.231.0.1/24", "dev", &a_if]);
        b.ip(&["addr", "add", "10.231.0.2/24", "dev", &b_if]);
        a.ip(&["addr", "add", "fd00:231::1/64", "dev", &a_if, "nodad"]);
        b.ip(&["addr", "add", "fd00:231::2/64", "dev", &b_if, "nodad"]);
        a.ip(&["link", "set", &a_if, "up"]);
        b.ip(&["link", "set", &b_if, "up"]);
        VethLab {
            a,
            b,
            a_if,
            a_v4: "10.231.0.1".parse().unwrap(),
            b_v4: "10.231.0.2".parse().unwrap(),
            a_v6: "fd00:231::1".parse().unwrap(),
        }
    }
}
