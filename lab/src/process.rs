//! What [`crate::proxy`] and [`crate::real`] share: processes started in a
//! namespace with a temporary directory of their own, their output in log
//! files there, waited for until a port accepts connections, and killed,
//! with the directory removed, on drop.

use std::{
    fs, io,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// Where Debian puts programs and daemons, which a non-login root shell's
/// `PATH` may lack.
const DEBIAN_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// `name` in the directories where Debian puts it.
pub(crate) fn debian_binary(name: &str) -> Option<PathBuf> {
    DEBIAN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// A new, empty `upgrade-lab-KIND-PID-N` in the temporary directory.
pub(crate) fn fresh_dir(kind: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "upgrade-lab-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Which step of [`LabProcesses::spawn`] failed.
#[derive(Debug)]
pub(crate) enum SpawnError {
    CreateLog(io::Error),
    ShareLog(io::Error),
    Start(io::Error),
}

impl From<SpawnError> for io::Error {
    fn from(error: SpawnError) -> io::Error {
        match error {
            SpawnError::CreateLog(error)
            | SpawnError::ShareLog(error)
            | SpawnError::Start(error) => error,
        }
    }
}

/// Why [`LabProcesses::wait_until_accepting`] gave up.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// A process ended first.
    Exited(ExitStatus),
    /// Nothing accepted within the time allowed.
    TimedOut,
    /// A process's state could not be read.
    Io(io::Error),
}

/// Processes, killed on drop in the reverse of their start order, and
/// their directory, removed on drop after them.
pub(crate) struct LabProcesses {
    children: Vec<Child>,
    dir: PathBuf,
}

impl LabProcesses {
    /// No processes yet, and a fresh directory named after `kind`.
    pub(crate) fn new(kind: &str) -> io::Result<LabProcesses> {
        Ok(LabProcesses {
            children: Vec::new(),
            dir: fresh_dir(kind)?,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts `command` with stdin empty and stdout and stderr in
    /// `NAME.log` in the directory.
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command) -> Result<(), SpawnError> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(SpawnError::CreateLog)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(SpawnError::ShareLog)?)
            .stderr(log)
            .spawn()
            .map_err(SpawnError::Start)?;
        self.children.push(child);
        Ok(())
    }

    /// The file `name` in the directory, if it can be read.
    pub(crate) fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name)).ok()
    }

    /// Every `.log` file in the directory, in name order, each after its
    /// path.
    pub(crate) fn all_logs(&self) -> String {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return String::new();
        };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        logs.iter()
            .map(|path| {
                let text = fs::read_to_string(path).unwrap_or_default();
                format!("{}:\n{text}", path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Until `addr` accepts connections from inside `netns`, so no packet
    /// crosses a watched link, for at most `timeout`; fails when a process
    /// exits first.
    pub(crate) fn wait_until_accepting(
        &mut self,
        netns: &NetNs,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for child in &mut self.children {
                if let Some(status) = child.try_wait().map_err(WaitError::Io)? {
                    return Err(WaitError::Exited(status));
                }
            }
            let accepted = netns
                .run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok());
            if accepted {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(WaitError::TimedOut)
    }
}

impl Drop for LabProcesses {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
