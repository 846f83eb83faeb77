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

fn echoes(stream: &mut TcpStream, (probe, echo): (Vec<u8>, Vec<u8>)) -> io::Result<bool> {
    stream.write_all(&probe)?;
    let mut echoed = vec![0u8; echo.len()];
    match stream.read_exact(&mut echoed) {
        Ok(()) => Ok(echoed == echo),
        Err(error) if is_end_or_timeout(&error) => Ok(false),
        Err(error) => Err(error),
    }
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
