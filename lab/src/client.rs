//! A client in the client namespace that sends one upgrade offer through
//! the proxy and records what came back.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::{head::Head, websocket, ProxyLab};

/// What the client waits for before it gives up on a read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Sent after a 101; the lab's backends echo it.
const PROBE: &[u8] = b"lab-probe-after-101";

/// An upgrade offer: a GET with `Upgrade: PROTOCOL` and `Connection: Upgrade`.
#[derive(Clone, Debug)]
pub struct Offer {
    pub target: String,
    pub protocol: String,
    pub websocket_key: Option<String>,
    /// The `HTTP2-Settings` of an h2c offer, which `Connection` then also
    /// names.
    pub http2_settings: Option<String>,
}

impl Offer {
    /// A WebSocket opening handshake with RFC 6455's example key.
    pub fn websocket() -> Offer {
        Offer {
            target: "/chat".to_owned(),
            protocol: "websocket".to_owned(),
            websocket_key: Some("dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
            http2_settings: None,
        }
    }

    /// What `proxmox-backup-client` sends to start a backup.
    pub fn proxmox_backup() -> Offer {
        Offer {
            target: "/api2/json/backup?backup-type=host&backup-id=lab&store=lab".to_owned(),
            protocol: "proxmox-backup-protocol-v1".to_owned(),
            websocket_key: None,
            http2_settings: None,
        }
    }

    /// A correct h2c offer (RFC 7540 §3.2). [`send_offer`] does not speak
    /// HTTP/2: after a 101 it sends its probe where the connection preface
    /// belongs.
    pub fn h2c() -> Offer {
        Offer {
            target: "/h2c".to_owned(),
            protocol: "h2c".to_owned(),
            websocket_key: None,
            // Three settings: HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE and
            // ENABLE_PUSH.
            http2_settings: Some("AAMAAABkAARAAAAAAAIAAAAA".to_owned()),
        }
    }

    /// The header fields after `Host`, in order.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let connection = if self.http2_settings.is_some() {
            "Upgrade, HTTP2-Settings"
        } else {
            "Upgrade"
        };
        let mut fields = vec![
            ("Upgrade", self.protocol.clone()),
            ("Connection", connection.to_owned()),
        ];
        if let Some(key) = &self.websocket_key {
            fields.push(("Sec-WebSocket-Key", key.clone()));
            fields.push(("Sec-WebSocket-Version", "13".to_owned()));
        }
        if let Some(settings) = &self.http2_settings {
            fields.push(("HTTP2-Settings", settings.clone()));
        }
        fields
    }

    pub fn request(&self) -> String {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            self.target,
            ProxyLab::proxy_front()
        );
        for (name, value) in self.fields() {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request
    }

    /// What the client sends after a 101, and the echo it expects back:
    /// a WebSocket frame for a WebSocket offer, raw bytes otherwise.
    pub fn probe(&self) -> (Vec<u8>, Vec<u8>) {
        if self.websocket_key.is_some() {
            (
                websocket::masked_text_frame(PROBE, [0x1b, 0x2c, 0x3d, 0x4e]),
                websocket::text_frame(PROBE),
            )
        } else {
            (PROBE.to_vec(), PROBE.to_vec())
        }
    }
}

/// What the client received.
#[derive(Clone, Debug)]
pub struct Received {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body of a final response (empty after a 101).
    pub body: Vec<u8>,
    /// After a 101: whether bytes written came back through the tunnel.
    pub bytes_flow: bool,
}

impl Received {
    /// The first value of the field `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::head::header(&self.headers, name)
    }
}

/// Sends `offer` from the client namespace to the proxy's front address.
pub fn send_offer(lab: &ProxyLab, offer: &Offer) -> io::Result<Received> {
    let mut session = Session::open(lab)?;
    session.offer(offer)
}

/// One connection from the client namespace to the proxy's front address,
/// kept open for requests in turn, or written in parts.
pub struct Session {
    stream: TcpStream,
}

impl Session {
    pub fn open(lab: &ProxyLab) -> io::Result<Session> {
        let stream = lab.client.run(|| {
            let stream = TcpStream::connect_timeout(&ProxyLab::proxy_front(), READ_TIMEOUT)?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            Ok::<_, io::Error>(stream)
        })?;
        Ok(Session { stream })
    }

    /// A plain GET of `target`, and its response.
    pub fn get(&mut self, target: &str) -> io::Result<Received> {
        self.send(plain_get(target).as_bytes())?;
        self.response(None)
    }

    /// Writes `bytes` as they are: requests, or part of one.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `offer`; after a 101, checks that bytes flow through the tunnel.
    pub fn offer(&mut self, offer: &Offer) -> io::Result<Received> {
        self.send(offer.request().as_bytes())?;
        self.response(Some(offer.probe()))
    }

    /// Reads the next response: its head, and its body or, after a 101,
    /// whether `probe` (what to send and its echo) comes back.
    pub fn response(&mut self, probe: Option<(Vec<u8>, Vec<u8>)>) -> io::Result<Received> {
        let stream = &mut self.stream;
        let head = Head::read(stream)?;
        let status = head
            .start_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not a status line: {:?}", head.start_line),
                )
            })?;
        let mut received = Received {
            status,
            body: Vec::new(),
            bytes_flow: false,
            headers: head.headers,
        };
        match probe {
            Some(probe) if status == 101 => received.bytes_flow = echoes(stream, probe)?,
            _ => received.body = read_body(stream, received.header("Content-Length"))?,
        }
        Ok(received)
    }
}

/// A GET of `target` without a body, to the proxy's front address.
pub fn plain_get(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n",
        ProxyLab::proxy_front()
    )
}

/// Writes `probe` and reads until `echo` came back, or the probe itself
/// verbatim (a backend that switched to another protocol than the one the
/// probe speaks echoes raw bytes).
fn echoes(stream: &mut TcpStream, (probe, echo): (Vec<u8>, Vec<u8>)) -> io::Result<bool> {
    stream.write_all(&probe)?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 256];
    while received != echo
        && received != probe
        && (echo.starts_with(&received) || probe.starts_with(&received))
    {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(false),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_end_or_timeout(&error) => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    Ok(received == echo || received == probe)
}

/// The body by `Content-Length`, or else whatever arrives until the proxy
/// closes the connection or goes quiet.
fn read_body(stream: &mut TcpStream, content_length: Option<&str>) -> io::Result<Vec<u8>> {
    if let Some(length) = content_length.and_then(|length| length.parse().ok()) {
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    match stream.read_to_end(&mut body) {
        Ok(_) => Ok(body),
        Err(error) if is_end_or_timeout(&error) => Ok(body),
        Err(error) => Err(error),
    }
}

fn is_end_or_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::ConnectionReset
    )
}

/// What curl received: from [`curl_http2`] or [`curl_upgrade`].
#[derive(Clone, Debug)]
pub struct CurlReceived {
    /// curl's exit code: 0 for a complete response, 28 when `--max-time`
    /// ran out.
    pub exit_code: Option<i32>,
    /// `%{http_version}` of the final response: `2` when the h2c upgrade
    /// went through end to end, `1.1` otherwise, `0` when nothing came.
    pub http_version: String,
    /// `%{response_code}` of the final response (0 when none came).
    pub status: u16,
    /// The heads curl received (`--include`: a 101 and the final one) and
    /// the body.
    pub output: String,
    /// curl's error message, if any.
    pub stderr: String,
}

impl CurlReceived {
    /// The first value of the field `name` in the last head curl received,
    /// compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        let (heads, _) = self.heads_and_body();
        let last_head = heads.last()?;
        last_head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(field, _)| field.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    }

    /// What followed the last head.
    pub fn body(&self) -> &str {
        self.heads_and_body().1
    }

    /// `--include` writes each head, status line to empty line, before the
    /// body.
    fn heads_and_body(&self) -> (Vec<&str>, &str) {
        let mut heads = Vec::new();
        let mut rest = self.output.as_str();
        while rest.starts_with("HTTP/") {
            let Some((head, after)) = rest.split_once("\r\n\r\n") else {
                break;
            };
            heads.push(head);
            rest = after;
        }
        (heads, rest)
    }
}

/// How long curl may take, in seconds.
const CURL_MAX_TIME: &str = "5";

/// Runs `curl --http2 http://PROXY/h2c` in the client namespace: for a
/// plain `http://` URL curl makes an h2c upgrade offer (`Upgrade: h2c`,
/// `HTTP2-Settings`).
pub fn curl_http2(lab: &ProxyLab) -> io::Result<CurlReceived> {
    run_curl(lab, "/h2c", ["--http2"])
}

/// Runs curl with `offer`'s header fields over HTTP/1.1 in the client
/// namespace. curl 7.88 prints the 101 of a switch to anything but h2c,
/// sends nothing after it and waits for a body until [`CURL_MAX_TIME`]:
/// it exits with 28 and `%{response_code}` 101.
pub fn curl_upgrade(lab: &ProxyLab, offer: &Offer) -> io::Result<CurlReceived> {
    let mut args = vec!["--http1.1".to_owned()];
    for (name, value) in offer.fields() {
        args.push("--header".to_owned());
        args.push(format!("{name}: {value}"));
    }
    run_curl(lab, &offer.target, args)
}

fn run_curl(
    lab: &ProxyLab,
    target: &str,
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
) -> io::Result<CurlReceived> {
    const WRITE_OUT: &str = "\n%{http_version} %{response_code}";
    let output = lab
        .client
        .command("curl")
        .args(["--silent", "--show-error", "--include"])
        .args(["--max-time", CURL_MAX_TIME, "--write-out", WRITE_OUT])
        .args(args)
        .arg(format!("http://{}{target}", ProxyLab::proxy_front()))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, summary) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (http_version, status) = summary.split_once(' ').unwrap_or((summary, "0"));
    Ok(CurlReceived {
        exit_code: output.status.code(),
        http_version: http_version.to_owned(),
        status: status.trim().parse().unwrap_or(0),
        output: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curl_output(output: &str) -> CurlReceived {
        CurlReceived {
            exit_code: Some(0),
            http_version: "2".to_owned(),
            status: 200,
            output: output.to_owned(),
            stderr: String::new(),
        }
    }

    #[test]
    fn the_last_head_and_the_body_after_it() {
        let curl = curl_output(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\
             HTTP/2 200 \r\ncontent-length: 5\r\nupgrade: none\r\n\r\nHTTP/",
        );
        assert_eq!(curl.header("Content-Length"), Some("5"));
        assert_eq!(curl.header("upgrade"), Some("none"));
        assert_eq!(curl.body(), "HTTP/");
    }

    #[test]
    fn a_101_without_a_body() {
        let curl = curl_output("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n");
        assert_eq!(curl.header("Upgrade"), Some("x"));
        assert_eq!(curl.header("Connection"), None);
        assert_eq!(curl.body(), "");
    }

    #[test]
    fn an_h2c_offer_names_its_settings_in_connection() {
        assert_eq!(
            Offer::h2c().request(),
            "GET /h2c HTTP/1.1\r\nHost: 10.240.1.2:8080\r\nUpgrade: h2c\r\n\
             Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
    }
}
