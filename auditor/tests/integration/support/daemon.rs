//! The real `auditor` binary, started inside a lab namespace, with its
//! stderr log collected line by line.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use lab::{ProxyLab, BACKEND_PORT, PROXY_PORT};

use super::lab::NetNs;

pub const AUDITOR: &str = env!("CARGO_BIN_EXE_auditor");
/// How long a daemon may take to load and attach its program.
const CAPTURE_STARTUP: Duration = Duration::from_secs(20);

pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
    stdout_lines: Receiver<String>,
    stdout: Vec<String>,
}

impl Daemon {
    /// `auditor ARGS...` inside `netns`. `ip netns exec` execs the binary,
    /// so signals sent to the child reach the daemon itself.
    pub fn start(netns: &NetNs, args: &[&str]) -> Daemon {
        Daemon::start_with_stdout(netns, args, Stdio::piped())
    }

    /// Like [`Daemon::start`], with stdout going to `stdout`, read here only
    /// when it is a pipe.
    pub fn start_with_stdout(netns: &NetNs, args: &[&str], stdout: Stdio) -> Daemon {
        let mut child = netns
            .command(AUDITOR)
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start auditor");
        let stdout_lines = match child.stdout.take() {
            Some(pipe) => forward_lines(pipe),
            None => mpsc::channel().1,
        };
        let lines = forward_lines(child.stderr.take().expect("piped stderr"));
        Daemon {
            child,
            lines,
            log: Vec::new(),
            stdout_lines,
            stdout: Vec::new(),
        }
    }

    /// `auditor run` in the proxy lab's proxy namespace, on both of the
    /// proxy's legs (the lab's ports, with their roles), once it captures.
    pub fn on_proxy_legs(lab: &ProxyLab) -> Daemon {
        let args = ProxyLab::auditor_watching_both_legs(PROXY_PORT, BACKEND_PORT);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut daemon = Daemon::start(&lab.proxy, &args);
        daemon.wait_for("capture started", CAPTURE_STARTUP);
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle` and returns it; panics with
    /// the log so far after `timeout` or when the daemon exits.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        next_line_with(&self.lines, &mut self.log, needle, timeout).unwrap_or_else(|| {
            panic!(
                "no log line with {needle:?}; log so far:\n{}",
                self.log.join("\n")
            )
        })
    }

    /// Waits for a line on stdout containing `needle` and returns it; `None`
    /// after `timeout` or when the daemon exits.
    pub fn next_output_with(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        next_line_with(&self.stdout_lines, &mut self.stdout, needle, timeout)
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

    /// Waits for the daemon to exit; returns its status, whole log and the
    /// lines it wrote on stdout.
    pub fn wait_with_output(mut self) -> (ExitStatus, String, Vec<String>) {
        let status = self.child.wait().expect("wait for the daemon");
        // The reader threads may still hold the last lines for a moment;
        // they end at the pipes' end.
        for (lines, seen) in [
            (&self.lines, &mut self.log),
            (&self.stdout_lines, &mut self.stdout),
        ] {
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
                seen.push(line);
            }
        }
        let stdout = std::mem::take(&mut self.stdout);
        (status, self.log.join("\n"), stdout)
    }
}

/// The lines of `pipe`, read on a thread of their own.
fn forward_lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Receives lines into `seen` until one contains `needle`; `None` after
/// `timeout` or at the end of the lines.
fn next_line_with(
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// A configuration file in a directory of its own, deleted on drop.
pub struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    /// `name` tells the tests' files apart.
    pub fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("auditor-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the configuration's directory");
        let file = ConfigFile {
            path: dir.join("auditor.toml"),
            dir,
        };
        file.write(text);
        file
    }

    /// Replaces the file's contents.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write the configuration");
    }

    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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
