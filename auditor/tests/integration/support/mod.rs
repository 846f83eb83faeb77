//! What the integration tests share: network namespaces and veth pairs that
//! the tests create and always delete, the daemon and replay runners,
//! capture files written packet by packet, and helpers that put the kernel
//! program's records back together.

pub mod daemon;
pub mod frames;
pub mod lab;
pub mod pcap_writer;
pub mod replay;
pub mod rsyslog;
pub mod schema;
pub mod session;
pub mod streams;
pub mod traffic;

/// Fails with a clear message when the process cannot load eBPF programs.
pub fn require_privileges() {
    let missing = auditor::capture::privileges::missing().expect("read capabilities");
    assert!(
        missing.is_empty(),
        "this test needs {missing:?}: run `cargo xtask test` as root"
    );
}
