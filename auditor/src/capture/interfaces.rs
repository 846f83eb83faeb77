//! The network interfaces of this network namespace, and which ones to watch.

use std::collections::BTreeMap;

use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

/// `ARPHRD_*` link types the kernel program can parse: it expects an
/// Ethernet header, which loopback devices carry too.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub loopback: bool,
    /// `ARPHRD_*` link type.
    pub link_type: u16,
}

impl Interface {
    pub fn has_ethernet_header(&self) -> bool {
        matches!(self.link_type, ARPHRD_ETHER | ARPHRD_LOOPBACK)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown interface `{name}`; interfaces here: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("interface `{name}` has link type {link_type}, without an Ethernet header; the capture reads Ethernet and loopback interfaces only")]
    LinkType { name: String, link_type: u16 },
    #[error("no interface is up")]
    NoneUp,
}

/// The interfaces of the calling thread's network namespace. It asks the
/// kernel over netlink rather than reading /sys, which shows the namespace
/// /sys was mounted in.
pub fn list() -> std::io::Result<Vec<Interface>> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for address in getifaddrs()? {
        let Some(link) = address.address.as_ref().and_then(|a| a.as_link_addr()) else {
            continue;
        };
        by_name.insert(
            address.interface_name.clone(),
            Interface {
                name: address.interface_name.clone(),
                index: link.ifindex() as u32,
                up: address.flags.contains(InterfaceFlags::IFF_UP),
                loopback: address.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                link_type: link.hatype(),
            },
        );
    }
    Ok(by_name.into_values().collect())
}

/// The interfaces named in `wanted`, or, when it is empty, every interface
/// that is up and carries Ethernet headers.
pub fn select(available: &[Interface], wanted: &[String]) -> Result<Vec<Interface>, SelectError> {
    if wanted.is_empty() {
        let chosen: Vec<Interface> = available
            .iter()
            .filter(|i| i.up && i.has_ethernet_header())
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(SelectError::NoneUp);
        }
        return Ok(chosen);
    }
    wanted
        .iter()
        .map(|name| {
            let interface =
                available
                    .iter()
                    .find(|i| &i.name == name)
                    .ok_or_else(|| SelectError::Unknown {
                        name: name.clone(),
                        known: available.iter().map(|i| i.name.clone()).collect(),
                    })?;
            if !interface.has_ethernet_header() {
                return Err(SelectError::LinkType {
                    name: name.clone(),
                    link_type: interface.link_type,
                });
            }
            Ok(interface.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, up: bool, link_type: u16) -> Interface {
        Interface {
            name: name.into(),
            index: 1,
            up,
            loopback: link_type == ARPHRD_LOOPBACK,
            link_type,
        }
    }

    fn lab() -> Vec<Interface> {
        vec![
            interface("lo", true, ARPHRD_LOOPBACK),
            interface("eth0", true, ARPHRD_ETHER),
            interface("eth1", false, ARPHRD_ETHER),
            interface("wg0", true, 65534),
        ]
    }

    #[test]
    fn default_is_every_ethernet_interface_that_is_up() {
        let names: Vec<String> = select(&lab(), &[])
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["lo", "eth0"]);
    }

    #[test]
    fn named_interfaces_must_exist_and_carry_ethernet() {
        assert_eq!(
            select(&lab(), &["eth9".into()]),
            Err(SelectError::Unknown {
                name: "eth9".into(),
                known: vec!["lo".into(), "eth0".into(), "eth1".into(), "wg0".into()]
            })
        );
        assert!(matches!(
            select(&lab(), &["wg0".into()]),
            Err(SelectError::LinkType { .. })
        ));
        assert_eq!(select(&lab(), &["eth1".into()]).unwrap()[0].name, "eth1");
    }

    #[test]
    fn lists_loopback_of_this_namespace() {
        let lo = list()
            .unwrap()
            .into_iter()
            .find(|i| i.loopback)
            .expect("a loopback interface");
        assert_eq!(lo.link_type, ARPHRD_LOOPBACK);
        assert!(lo.index > 0);
    }
}
