//! The real `auditor` started in a lab namespace, its output read line by
//! line, and stopped as an operator would; and Ctrl-C handling that lets
//! the lab be torn down.

use std::{
    ffi::c_int,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use lab::netns::NetNs;
use nix::{
    sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::{sysconf, Pid, SysconfVar},
};
use serde_json::Value;

/// Long enough for a daemon tracking many connections to close them all.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// How often waits look at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);

/// An event's JSON line, and the JSON.
pub struct PrintedEvent {
    pub line: String,
    pub event: Value,
}

/// `auditor run` in a lab namespace; stopped with SIGINT on drop.
pub struct RunningAuditor {
    child: Child,
    log: Receiver<String>,
    stdout: Receiver<String>,
    log_so_far: Vec<String>,
}

impl RunningAuditor {
    /// `auditor ARGS...` inside `netns`, its stdout and stderr read line by line.
    pub fn start(netns: &NetNs, auditor: &Path, args: &[String]) -> Result<RunningAuditor> {
        // `ip netns exec` execs the auditor: the child's pid is the daemon's.
        let mut child = netns
            .command(auditor)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", auditor.display()))?;
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let log = lines_of(child.stderr.take().expect("piped stderr"));
        Ok(RunningAuditor {
            child,
            log,
            stdout,
            log_so_far: Vec::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time it has used so far, user and system, all threads
    /// together (proc(5): `utime` and `stime`, in clock ticks).
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .context("the auditor is not running")?;
        // The command name, in parentheses, may hold spaces: count the
        // fields after it, the state (field 3) first.
        let (_, after_name) = stat
            .rsplit_once(')')
            .context("no command name in its stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |number: usize| -> Result<u64> {
            let text = fields.get(number - 3).context("a short stat line")?;
            Ok(text.parse()?)
        };
        let ticks = field(14)? + field(15)?;
        let ticks_per_sec = sysconf(SysconfVar::CLK_TCK)?.context("no clock tick rate")?;
        Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_sec as f64))
    }

    /// Everything it logged; call it after [`Self::stop`], as it waits for
    /// the end of the log.
    pub fn whole_log(&mut self) -> &[String] {
        self.log_so_far.extend(self.log.iter());
        &self.log_so_far
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.log.recv_timeout(POLL) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log_so_far.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    check_interrupt()?;
                    bail!(
                        "the auditor exited before logging {needle:?}; its log:\n{}",
                        self.log_so_far.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    check_interrupt()?;
                    if Instant::now() > deadline {
                        bail!(
                            "the auditor did not log {needle:?} within {timeout:?}; its log:\n{}",
                            self.log_so_far.join("\n")
                        );
                    }
                }
            }
        }
    }

    /// The events in `file` (an `--output file:` of this auditor), read
    /// again until `enough` says they are.
    pub fn wait_for_events_in(
        &mut self,
        file: &Path,
        timeout: Duration,
        enough: impl Fn(&[PrintedEvent]) -> bool,
    ) -> Result<Vec<PrintedEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            // A missing file is no events yet; the writer only appends whole lines.
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let events = text
                .lines()
                .map(|line| {
                    let event = serde_json::from_str(line).with_context(|| {
                        format!("{} holds a line that is not JSON: {line}", file.display())
                    })?;
                    Ok(PrintedEvent {
                        line: line.to_owned(),
                        event,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if enough(&events) {
                return Ok(events);
            }
            check_interrupt()?;
            if self.child.try_wait()?.is_some() {
                self.log_so_far.extend(self.log.try_iter());
                bail!(
                    "the auditor exited before the expected events; its log:\n{}",
                    self.log_so_far.join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the expected events did not come within {timeout:?}; {} holds:\n{text}",
                    file.display()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// What it printed on stdout; call it after [`Self::stop`], as it waits
    /// for the end of its output.
    pub fn printed(&mut self) -> Vec<String> {
        self.stdout.iter().collect()
    }

    /// SIGINT, as an operator would stop it, then its exit status; killed
    /// when it does not exit within [`STOP_WAIT`].
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(self.child.id().try_into()?);
        signal::kill(pid, Signal::SIGINT).context("cannot signal the auditor")?;
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the auditor did not stop within {STOP_WAIT:?} of SIGINT and was killed")
    }
}

impl Drop for RunningAuditor {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The lines `stream` delivers, read on their own thread.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From here on the first SIGINT or SIGTERM only raises a flag, which the
/// caller checks between steps and [`RunningAuditor`] while it waits, so
/// that the drops tear the lab down; a second one terminates at once.
pub fn teardown_on_interrupt() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(note_interrupt),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for interrupt in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { signal::sigaction(interrupt, &action) }
            .with_context(|| format!("cannot handle {interrupt}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}
