//! Network namespaces and veth pairs. Every address lives inside namespaces
//! the test created; dropping a [`NetNs`] deletes it, also when the test
//! fails, and a new lab sweeps namespaces left by test processes that died.

use std::{
    fs::File,
    net::IpAddr,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use nix::sched::{setns, CloneFlags};

const PREFIX: &str = "uatest";

pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A new namespace with its loopback up.
    pub fn new() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_namespaces_of_dead_processes();
        let name = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let netns = NetNs { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Moves the calling thread into this namespace, for good.
    pub fn enter(&self) {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open the namespace");
        setns(file, CloneFlags::CLONE_NEWNET).expect("setns into the lab namespace");
    }

    /// Runs `work` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = File::open(path).expect("open the namespace");
            setns(file, CloneFlags::CLONE_NEWNET).expect("setns into the lab namespace");
            work()
        })
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

/// Runs `work` on a thread inside a fresh namespace, deleted afterwards;
/// a panic in `work` fails the caller.
pub fn in_fresh_netns<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = NetNs::new();
    let result = netns.spawn(work).join();
    drop(netns);
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair, each end with an IPv4 and an IPv6
/// address.
pub struct VethLab {
    pub a: NetNs,
    pub b: NetNs,
    /// Interface name of the pair's end in `a` (and in `b`).
    pub a_if: String,
    pub b_if: String,
    pub a_v4: IpAddr,
    pub b_v4: IpAddr,
    pub a_v6: IpAddr,
    pub b_v6: IpAddr,
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
            b_if,
            a_v4: "10.231.0.1".parse().unwrap(),
            b_v4: "10.231.0.2".parse().unwrap(),
            a_v6: "fd00:231::1".parse().unwrap(),
            b_v6: "fd00:231::2".parse().unwrap(),
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes lab namespaces whose creating test process no longer exists
/// (it was killed before its destructors ran).
fn sweep_namespaces_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
