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
}

impl Offer {
    /// A WebSocket opening handshake with RFC 6455's example key.
    pub fn websocket() -> Offer {
        Offer {
            target: "/chat".to_owned(),
            protocol: "websocket".to_owned(),
            websocket_key: Some("dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        }
    }

    /// What `proxmox-backup-client` sends to start a backup.
    pub fn proxmox_backup() -> Offer {
        Offer {
            target: "/api2/json/backup?backup-type=host&backup-id=lab&store=lab".to_owned(),
            protocol: "proxmox-backup-protocol-v1".to_owned(),
            websocket_key: None,
        }
    }

    fn request(&self) -> String {
        let front = ProxyLab::proxy_front();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {front}\r\nUpgrade: {}\r\nConnection: Upgrade\r\n",
            self.target, self.protocol
        );
        if let Some(key) = &self.websocket_key {
            request.push_str(&format!(
                "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            ));
        }
        request.push_str("\r\n");
        request
    }

    /// What the client sends after a 101, and the echo it expects back:
    /// a WebSocket frame for a WebSocket offer, raw bytes otherwise.
    fn probe(&self) -> (Vec<u8>, Vec<u8>) {
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
    let request = offer.request();
    let probe = offer.probe();
    lab.client.run(move || {
        let mut stream = TcpStream::connect_timeout(&ProxyLab::proxy_front(), READ_TIMEOUT)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        let head = Head::read(&mut stream)?;
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
        if status == 101 {
            received.bytes_flow = echoes(&mut stream, probe)?;
        } else {
            received.body = read_body(&mut stream, received.header("Content-Length"))?;
        }
        Ok(received)
    })
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

/// What `curl --http2` got for a plain `http://` URL, the request curl
/// turns into an h2c upgrade offer (`Upgrade: h2c`, `HTTP2-Settings`).
#[derive(Clone, Debug)]
pub struct CurlReceived {
    /// curl's exit code (0: a complete response).
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

/// Runs `curl --http2 http://PROXY/h2c` in the client namespace.
pub fn curl_http2(lab: &ProxyLab) -> io::Result<CurlReceived> {
    const WRITE_OUT: &str = "\n%{http_version} %{response_code}";
    let output = lab
        .client
        .command("curl")
        .args(["--http2", "--silent", "--show-error", "--include"])
        .args(["--max-time", "5", "--write-out", WRITE_OUT])
        .arg(format!("http://{}/h2c", ProxyLab::proxy_front()))
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
