//! tcpdump writing one interface's TCP packets to a file, for the
//! benchmarks that record live traffic and replay it.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStderr, Stdio},
};

use anyhow::{bail, Context as _, Result};
use lab::netns::NetNs;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use super::Context;

/// tcpdump writing one interface's TCP packets to a file until stopped.
pub struct Tcpdump {
    child: Child,
    /// Held open, so that what tcpdump says when it stops cannot fail.
    _stderr: BufReader<ChildStderr>,
}

impl Tcpdump {
    /// Starts tcpdump and waits until it captures.
    pub fn start(
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
    pub fn stop(mut self) -> Result<()> {
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
