//! The real `auditor` binary, started inside a lab namespace, with its
//! stderr log collected line by line.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use super::lab::NetNs;

pub const AUDITOR: &str = env!("CARGO_BIN_EXE_auditor");

pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
    stdout: Option<thread::JoinHandle<Vec<String>>>,
}

impl Daemon {
    /// `auditor ARGS...` inside `netns`. `ip netns exec` execs the binary,
    /// so signals sent to the child reach the daemon itself.
    pub fn start(netns: &NetNs, args: &[&str]) -> Daemon {
        let mut daemon = Daemon::start_with_stdout(netns, args, Stdio::piped());
        let stdout = daemon.child.stdout.take().expect("piped stdout");
        daemon.stdout = Some(thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect()
        }));
        daemon
    }

    /// Like [`Daemon::start`], with stdout going to `stdout` and not read here.
    pub fn start_with_stdout(netns: &NetNs, args: &[&str], stdout: Stdio) -> Daemon {
        let mut child = netns
            .command(AUDITOR)
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start auditor");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Daemon {
            child,
            lines,
            log: Vec::new(),
            stdout: None,
        }
    }

    /// Waits for a log line containing `needle` and returns it; panics with
    /// the log so far after `timeout` or when the daemon exits.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal the daemon");
    }

    /// Waits for the daemon to exit; returns its status and whole log.
    pub fn wait(self) -> (ExitStatus, String) {
        let (status, log, _) = self.wait_with_output();
        (status, log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the daemon to exit; returns its status, whole log and the
    /// lines it wrote on stdout (none when stdout was not read here).
    pub fn wait_with_output(mut self) -> (ExitStatus, String, Vec<String>) {
        let status = self.child.wait().expect("wait for the daemon");
        self.log.extend(self.lines.try_iter());
        // The reader thread may still hold the last lines for a moment.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(line);
        }
        let stdout = self
            .stdout
            .take()
            .map(|reader| reader.join().expect("stdout reader"))
            .unwrap_or_default();
        (status, self.log.join("\n"), stdout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The program ids the daemon logged in its "capture started" line.
pub fn logged_program_ids(line: &str) -> Vec<u32> {
    let list = line
        .split("program_ids=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("program_ids in the start line");
    list.split(',')
        .map(|id| id.trim().parse().expect("a program id"))
        .collect()
}

/// A kernel counter's value from the daemon's final "counters" log line.
pub fn logged_counter(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains(" counters "))
        .expect("a counters line in the log");
    let needle = format!("{name}=");
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&needle))
        .and_then(|value| value.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}
