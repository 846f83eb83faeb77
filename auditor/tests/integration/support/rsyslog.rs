//! A real rsyslogd from Debian, in the foreground with a configuration of
//! its own: its socket input on a temporary path (not /dev/log, no system
//! service), RFC 5424 parsed, and every message written to a file, one line
//! each, with the header fields kept. Killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// One message as rsyslog parsed it.
#[derive(Debug)]
pub struct SyslogMessage {
    pub priority: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: String,
}

pub struct Rsyslog {
    child: Child,
    dir: TempDir,
}

impl Rsyslog {
    pub fn start() -> Rsyslog {
        assert!(
            Path::new(RSYSLOGD).is_file(),
            "{RSYSLOGD} is missing: install the Debian package rsyslog (`cargo xtask test` does)"
        );
        let dir = tempfile::tempdir().expect("rsyslog directory");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            r#"global(workDirectory="{dir}")
module(load="imuxsock" sysSock.use="off")
input(type="imuxsock" socket="{socket}" useSpecialParser="off" parseHostname="on" ignoreTimestamp="off" rateLimit.interval="0")
template(name="fields" type="string" string="%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{messages}" template="fields")
"#,
            dir = dir.path().display(),
            socket = path("log.sock"),
            messages = path("messages"),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), config).expect("write rsyslog.conf");
        let mut child = Command::new(RSYSLOGD)
            .args([
                "-n",
                "-f",
                &path("rsyslog.conf"),
                "-i",
                &path("rsyslogd.pid"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.path().join("log.sock").exists() {
            if let Some(status) = child.try_wait().expect("rsyslogd status") {
                let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
                panic!("rsyslogd exited with {status}: {stderr}");
            }
            assert!(Instant::now() < deadline, "rsyslogd made no socket");
            thread::sleep(Duration::from_millis(20));
        }
        Rsyslog { child, dir }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    /// The messages of the auditor received so far (rsyslog's own are left out).
    pub fn messages(&self) -> Vec<SyslogMessage> {
        std::fs::read_to_string(self.dir.path().join("messages"))
            .unwrap_or_default()
            .lines()
            .map(parse)
            .filter(|message| message.app_name == "upgrade-auditor")
            .collect()
    }

    /// Waits until a message satisfies `found`; panics with what came after
    /// `timeout`.
    pub fn wait_for(&self, found: impl Fn(&SyslogMessage) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.messages().iter().any(&found) {
            assert!(
                Instant::now() < deadline,
                "no such syslog message; received: {:#?}",
                self.messages()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(line: &str) -> SyslogMessage {
    let fields: Vec<&str> = line.splitn(7, '|').collect();
    let [priority, hostname, app_name, procid, msgid, structured_data, msg] = fields[..] else {
        panic!("not a line of the `fields` template: {line}");
    };
    SyslogMessage {
        priority: priority.parse().expect("a numeric PRI"),
        hostname: hostname.to_owned(),
        app_name: app_name.to_owned(),
        procid: procid.to_owned(),
        msgid: msgid.to_owned(),
        structured_data: structured_data.to_owned(),
        msg: msg.to_owned(),
    }
}
