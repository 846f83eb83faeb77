//! A lab for the auditor's integration tests: network namespaces, real
//! reverse proxies from Debian packages, backends that answer upgrade offers
//! the way known broken servers do, and a client that records what came back.
//!
//! Everything lives in namespaces the lab creates and deletes: no address is
//! reachable from the host, and nothing leaves the machine.

pub mod backend;
pub mod client;
mod head;
pub mod netns;
mod process;
pub mod proxy;
pub mod real;
pub mod websocket;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netns::NetNs;

/// The client's address, on the client↔proxy link.
pub const CLIENT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 240, 1, 1));
/// The proxy's client-facing address, where every proxy listens.
pub const PROXY_FRONT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 240, 1, 2));
/// The proxy's address on the proxy↔backend link.
pub const PROXY_BACK_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 240, 2, 1));
/// The backend's address, where every backend listens.
pub const BACKEND_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 240, 2, 2));
pub const PROXY_PORT: u16 = 8080;
pub const BACKEND_PORT: u16 = 9000;

/// Three namespaces in a row, client — proxy — backend, joined by two veth
/// pairs; all deleted on drop.
pub struct ProxyLab {
    pub client: NetNs,
    pub proxy: NetNs,
    pub backend: NetNs,
}

impl ProxyLab {
    /// In the client namespace.
    pub const CLIENT_IF: &'static str = "to-proxy";
    /// In the proxy namespace, facing the client.
    pub const PROXY_CLIENT_IF: &'static str = "to-client";
    /// In the proxy namespace, facing the backend.
    pub const PROXY_BACKEND_IF: &'static str = "to-backend";
    /// In the backend namespace.
    pub const BACKEND_IF: &'static str = "to-proxy";

    #[allow(clippy::new_without_default)] // creates namespaces: no default value
    pub fn new() -> ProxyLab {
        let lab = ProxyLab {
            client: NetNs::new(),
            proxy: NetNs::new(),
            backend: NetNs::new(),
        };
        link(
            (&lab.client, Self::CLIENT_IF, CLIENT_ADDR),
            (&lab.proxy, Self::PROXY_CLIENT_IF, PROXY_FRONT_ADDR),
        );
        link(
            (&lab.proxy, Self::PROXY_BACKEND_IF, PROXY_BACK_ADDR),
            (&lab.backend, Self::BACKEND_IF, BACKEND_ADDR),
        );
        lab
    }

    pub fn proxy_front() -> SocketAddr {
        SocketAddr::new(PROXY_FRONT_ADDR, PROXY_PORT)
    }

    pub fn backend_addr() -> SocketAddr {
        SocketAddr::new(BACKEND_ADDR, BACKEND_PORT)
    }

    /// `auditor run` arguments that watch both of the proxy's legs: its
    /// client-facing interface with `frontend_port` (role frontend) and its
    /// backend-facing one with `backend_port` (role backend).
    pub fn auditor_watching_both_legs(frontend_port: u16, backend_port: u16) -> Vec<String> {
        [
            "run",
            "--interface",
            Self::PROXY_CLIENT_IF,
            "--interface",
            Self::PROXY_BACKEND_IF,
            "--port",
            &format!("{frontend_port}:frontend"),
            "--port",
            &format!("{backend_port}:backend"),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// A veth pair between two namespaces, each end with a /24 address; the
/// ends are created inside the namespaces, so the host never sees them.
fn link(a: (&NetNs, &str, IpAddr), b: (&NetNs, &str, IpAddr)) {
    let (a_netns, a_if, a_addr) = a;
    let (b_netns, b_if, b_addr) = b;
    a_netns.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        &b_netns.name,
    ]);
    for (netns, interface, addr) in [(a_netns, a_if, a_addr), (b_netns, b_if, b_addr)] {
        netns.ip(&["addr", "add", &format!("{addr}/24"), "dev", interface]);
        netns.ip(&["link", "set", interface, "up"]);
    }
}
