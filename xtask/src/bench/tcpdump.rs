//! tcpdump writing one interface's TCP packets to a file, for the
//! benchmarks that record live traffic and replay it; both of the proxy
//! lab's legs into one file.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use lab::{netns::NetNs, ProxyLab};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use super::Context;

/// tcpdump writing one interface's TCP packets to a file until stopped.
struct Tcpdump {
    child: Child,
    /// Held open, so that what tcpdump says when it stops cannot fail.
    _stderr: BufReader<ChildStderr>,
}

impl Tcpdump {
    /// Starts tcpdump and waits until it captures.
    fn start(
        context: &mut Context,
        netns: &NetNs,
        interface: &str,
        path: &Path,
    ) -> Result<Tcpdump> {
        let mut command = netns.command("tcpdump");
        command
            // As root, like the other files under target/bench.
            .args(["-Z", "root", "-i", interface, "-s", "0", "-U", "-w"])
            .arg(path)
            .arg("tcp");
        context.record(&command);
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start tcpdump")?;
        let mut stderr = BufReader::new(child.stderr.take().context("tcpdump's stderr")?);
        let mut said = String::new();
        stderr.read_line(&mut said)?;
        if !said.contains("listening on") {
            let _ = child.kill();
            bail!("tcpdump did not start: {said}");
        }
        Ok(Tcpdump {
            child,
            _stderr: stderr,
        })
    }

    /// Stops tcpdump, which writes out what it holds.
    fn stop(mut self) -> Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT)?;
        let status = self.child.wait()?;
        // tcpdump exits 0 on SIGINT; a signal exit means it was killed.
        if status.code().is_none() {
            bail!("tcpdump did not exit cleanly: {status}");
        }
        Ok(())
    }
}

/// A storm that failed before `stop` leaves no tcpdump behind.
impl Drop for Tcpdump {
    fn drop(&mut self) {
        // Both do nothing once `stop` has reaped it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tcpdump on both of the proxy lab's legs, each into a file of its own
/// until [`ProxyLegs::merge_into`].
pub struct ProxyLegs {
    legs: Vec<(Tcpdump, PathBuf)>,
}

impl ProxyLegs {
    /// Starts recording both legs into `NAME-INTERFACE.pcap` in the output
    /// directory.
    pub fn record(context: &mut Context, lab: &ProxyLab, name: &str) -> Result<ProxyLegs> {
        let mut legs = Vec::new();
        for interface in [ProxyLab::PROXY_CLIENT_IF, ProxyLab::PROXY_BACKEND_IF] {
            let path = context.out_dir.join(format!("{name}-{interface}.pcap"));
            legs.push((Tcpdump::start(context, &lab.proxy, interface, &path)?, path));
        }
        Ok(ProxyLegs { legs })
    }

    /// Stops recording and merges both legs, by time, into `path`.
    pub fn merge_into(self, context: &mut Context, path: &Path) -> Result<()> {
        let mut mergecap = Command::new("mergecap");
        mergecap.arg("-w").arg(path);
        for (tcpdump, leg) in self.legs {
            tcpdump.stop()?;
            mergecap.arg(leg);
        }
        context.run(&mut mergecap)?;
        Ok(())
    }
}
