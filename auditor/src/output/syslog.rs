//! `syslog` and `syslog:SOCKET`: RFC 5424 messages over a local Unix
//! datagram socket, one event per message, facility `daemon`.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{events::Timestamp, rules};

/// rsyslog's default `maxMessageSize`: its socket input reads at most this
/// many bytes of a datagram and cuts the rest off. Longer messages are not
/// sent (their JSON would arrive cut) but counted as dropped.
pub const MAX_MESSAGE_BYTES: usize = 8096;

const APP_NAME: &str = "upgrade-auditor";

const FACILITY_DAEMON: u8 = 3;

/// RFC 5424 severities the events map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogSeverity {
    Critical = 2,
    Error = 3,
    Warning = 4,
    Informational = 6,
}

impl From<rules::Severity> for SyslogSeverity {
    fn from(severity: rules::Severity) -> SyslogSeverity {
        match severity {
            rules::Severity::Critical => SyslogSeverity::Critical,
            rules::Severity::Error => SyslogSeverity::Error,
            rules::Severity::Warning => SyslogSeverity::Warning,
            rules::Severity::Info => SyslogSeverity::Informational,
        }
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME upgrade-auditor PROCID MSGID - MSG`, without
/// structured data: `json` is the whole event.
pub fn format_message(
    severity: SyslogSeverity,
    timestamp_ns: u64,
    host: &str,
    pid: u32,
    msgid: &str,
    json: &str,
) -> String {
    let priority = FACILITY_DAEMON * 8 + severity as u8;
    let timestamp = Timestamp::of(timestamp_ns);
    format!("<{priority}>1 {timestamp} {host} {APP_NAME} {pid} {msgid} - {json}")
}

/// A connection to the syslog socket at a path, made again after an error:
/// the syslog daemon may have restarted and made a new socket.
pub struct SyslogSocket {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    host: String,
    pid: u32,
}

impl SyslogSocket {
    pub fn connect(path: &Path) -> io::Result<SyslogSocket> {
        let socket = connect(path)?;
        Ok(SyslogSocket {
            path: path.to_owned(),
            socket: Some(socket),
            host: hostname(),
            pid: std::process::id(),
        })
    }

    /// Sends one message, reconnecting once if the socket fails.
    pub fn send(&mut self, severity: SyslogSeverity, msgid: &str, json: &str) -> io::Result<()> {
        let message = format_message(severity, unix_now_ns(), &self.host, self.pid, msgid, json);
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {msgid} event of {} bytes is over the {MAX_MESSAGE_BYTES} bytes a syslog message may have; not sent",
                    message.len()
                ),
            ));
        }
        self.send_once(message.as_bytes()).or_else(|_| {
            self.socket = None;
            self.send_once(message.as_bytes())
        })
    }

    fn send_once(&mut self, message: &[u8]) -> io::Result<()> {
        let socket = match &self.socket {
            Some(socket) => socket,
            None => self.socket.insert(connect(&self.path)?),
        };
        socket.send(message).map(drop)
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

/// This host's name as RFC 5424 allows it (printable ASCII, at most 255
/// bytes), else its NILVALUE.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| {
            (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-26T07:13:08.420039Z.
    const T0: u64 = 1_795_677_188_420_039_999;

    #[test]
    fn formats_rfc_5424_with_facility_daemon() {
        assert_eq!(
            format_message(
                SyslogSeverity::Error,
                T0,
                "proxy-1",
                4242,
                "alert",
                r#"{"event_type":"alert"}"#
            ),
            r#"<27>1 2026-11-26T07:13:08.420039Z proxy-1 upgrade-auditor 4242 alert - {"event_type":"alert"}"#
        );
        let priorities = [
            (rules::Severity::Critical, 26),
            (rules::Severity::Error, 27),
            (rules::Severity::Warning, 28),
            (rules::Severity::Info, 30),
        ];
        for (severity, priority) in priorities {
            let message = format_message(severity.into(), T0, "h", 1, "alert", "{}");
            assert!(message.starts_with(&format!("<{priority}>1 ")), "{message}");
        }
    }

    fn socket_pair() -> (tempfile::TempDir, UnixDatagram, SyslogSocket) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let client = SyslogSocket::connect(&path).unwrap();
        (dir, server, client)
    }

    fn receive(server: &UnixDatagram) -> String {
        let mut buffer = vec![0; 2 * MAX_MESSAGE_BYTES];
        let len = server.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    }

    #[test]
    fn sends_one_datagram_per_event_and_reconnects_to_a_new_socket() {
        let (dir, server, mut client) = socket_pair();
        client
            .send(SyslogSeverity::Warning, "loss", r#"{"n":1}"#)
            .unwrap();
        let first = receive(&server);
        assert!(first.starts_with("<28>1 "), "{first}");
        assert!(
            first.ends_with(&format!(
                " upgrade-auditor {} loss - {{\"n\":1}}",
                std::process::id()
            )),
            "{first}"
        );
        // The syslog daemon restarts: a new socket at the same path.
        drop(server);
        std::fs::remove_file(dir.path().join("log.sock")).unwrap();
        let server = UnixDatagram::bind(dir.path().join("log.sock")).unwrap();
        client
            .send(SyslogSeverity::Informational, "stats", "{}")
            .unwrap();
        assert!(receive(&server).starts_with("<30>1 "));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_whole_not_cut() {
        let (_dir, server, mut client) = socket_pair();
        let header = format_message(
            SyslogSeverity::Error,
            unix_now_ns(),
            &client.host,
            client.pid,
            "alert",
            "",
        );
        let fits = "x".repeat(MAX_MESSAGE_BYTES - header.len());
        client.send(SyslogSeverity::Error, "alert", &fits).unwrap();
        assert_eq!(receive(&server).len(), MAX_MESSAGE_BYTES);
        let error = client
            .send(SyslogSeverity::Error, "alert", &format!("{fits}x"))
            .unwrap_err();
        assert!(
            error.to_string().contains("8097 bytes is over the 8096"),
            "{error}"
        );
        server.set_nonblocking(true).unwrap();
        assert_eq!(
            server.recv(&mut [0; 16]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "nothing was sent"
        );
    }
}
