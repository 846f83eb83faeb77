//! Network namespaces that the caller creates and that are deleted when
//! dropped, also when a test fails; a new namespace first sweeps those left
//! by test processes that died before their destructors ran.

use std::{
    fs::File,
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
    #[allow(clippy::new_without_default)] // creates a namespace: no default value
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

    /// Runs `work` inside this namespace and returns its result; a panic in
    /// `work` fails the caller.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(work)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A command that runs inside this namespace. `ip netns exec` execs the
    /// program, so the child's pid is the program's own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

/// Runs `work` on a thread inside a fresh namespace, deleted afterwards;
/// a panic in `work` fails the caller.
pub fn in_fresh_netns<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    NetNs::new().run(work)
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `ip ARGS...`, which must succeed.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes lab namespaces whose creating test process no longer exists.
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
            kill_processes_in(&name);
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Kills what an interrupted run left running in namespace `name`
/// (proxies, backends, daemons), which would otherwise outlive it.
fn kill_processes_in(name: &str) {
    let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root"]
    fn a_new_lab_removes_what_an_interrupted_run_left() {
        // A namespace named for a process that no longer exists, with a
        // process still running in it, as a killed test run leaves them.
        let name = format!("{PREFIX}-{}-0", i32::MAX);
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let mut leftover = Command::new("ip")
            .args(["netns", "exec", &name, "sleep", "300"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));

        let fresh = NetNs::new();

        assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
        let status = leftover.wait().unwrap();
        assert!(!status.success(), "the leftover process was killed");
        drop(fresh);
    }
}
