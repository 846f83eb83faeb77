//! Backends on the backend namespace's address, port 9000, that answer
//! upgrade offers the way known servers do, broken ones included. After a
//! 101 they echo what arrives (WebSocket frames as server frames), so a
//! client can tell whether bytes flow; the h2c backend answers over HTTP/2.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha1::{Digest, Sha1};

use crate::{head::Head, websocket, ProxyLab};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Proxmox Backup Server: `101` with `Upgrade: proxmox-backup-protocol-v1`
    /// and no `Connection` field.
    ProxmoxBackup,
    /// A server that keeps its connections open, so that a proxy can pool
    /// them: plain requests, any number per connection, get `200` with
    /// [`KEEP_ALIVE_BODY`] (after their body is read); a WebSocket offer is
    /// answered as [`Backend::WebSocket`] does; any other offer as
    /// [`Backend::ProxmoxBackup`] does.
    KeepAlive,
    /// A WebSocket 101 whose `Sec-WebSocket-Accept` hashes the key without
    /// RFC 6455's GUID.
    WrongWebSocketAccept,
    /// A 101 to `IRC/6.9`, whatever the client offered.
    UnofferedProtocol,
    /// A correct WebSocket 101 that also carries `Content-Length: 0`.
    ContentLengthOn101,
    /// A correct WebSocket server.
    WebSocket,
    /// A WebSocket 101 (`Upgrade: websocket`, `Connection: Upgrade`) with
    /// no `Sec-WebSocket-Accept`.
    WebSocketWithoutAccept,
    /// A server that accepts h2c upgrades (RFC 7540 §3.2): `101` with
    /// `Connection: Upgrade` and `Upgrade: h2c`, then its SETTINGS frame and
    /// a `200` on stream 1 over HTTP/2. Requests without an h2c offer get a
    /// plain HTTP/1.1 `200` with [`HTTP11_BODY`].
    H2c,
    /// A server without h2c, which ignores `Upgrade: h2c` (RFC 9110 §7.8
    /// lets it) and answers every request with a plain HTTP/1.1 `200` with
    /// [`HTTP11_BODY`].
    WithoutH2c,
}

/// The body of the h2c backends' answers over HTTP/1.1.
pub const HTTP11_BODY: &str = "http/1.1\n";
/// The body of [`Backend::KeepAlive`]'s answers to plain requests.
pub const KEEP_ALIVE_BODY: &str = "{\"data\":\"ok\"}";
/// A request for this target waits [`SLOW_ANSWER`] for its answer from
/// [`Backend::KeepAlive`], holding up the requests behind it.
pub const SLOW_TARGET: &str = "/slow";
pub const SLOW_ANSWER: Duration = Duration::from_secs(3);

impl Backend {
    /// The response head to `request`, and what the connection carries next.
    fn answer(self, request: &Head) -> (String, After) {
        const BAD_REQUEST: &str =
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        match self {
            Backend::H2c => return h2c::answer(request),
            Backend::WithoutH2c => return (h2c::plain_200(), After::Close),
            Backend::KeepAlive if request.header("Upgrade").is_none() => {
                if request.start_line.split(' ').nth(1) == Some(SLOW_TARGET) {
                    thread::sleep(SLOW_ANSWER);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{KEEP_ALIVE_BODY}",
                    KEEP_ALIVE_BODY.len()
                );
                return (head, After::NextRequest);
            }
            _ => {}
        }
        if request.header("Upgrade").is_none() {
            return (BAD_REQUEST.to_owned(), After::Close);
        }
        let key = request.header("Sec-WebSocket-Key");
        let backend = match (self, key) {
            (Backend::KeepAlive, Some(_)) => Backend::WebSocket,
            (Backend::KeepAlive, None) => Backend::ProxmoxBackup,
            _ => self,
        };
        let head = match (backend, key) {
            (Backend::ProxmoxBackup | Backend::KeepAlive, _) => {
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: proxmox-backup-protocol-v1\r\n\r\n"
                    .to_owned()
            }
            (Backend::UnofferedProtocol, _) => {
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: IRC/6.9\r\nConnection: Upgrade\r\n\r\n"
                    .to_owned()
            }
            (Backend::WrongWebSocketAccept, Some(key)) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                STANDARD.encode(Sha1::digest(key))
            ),
            (Backend::ContentLengthOn101, Some(key)) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\nContent-Length: 0\r\n\r\n",
                websocket::accept(key)
            ),
            (Backend::WebSocketWithoutAccept, Some(_)) => {
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    .to_owned()
            }
            (Backend::WebSocket, Some(key)) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                websocket::accept(key)
            ),
            (Backend::H2c | Backend::WithoutH2c, _) | (_, None) => {
                return (BAD_REQUEST.to_owned(), After::Close)
            }
        };
        let after = match backend {
            Backend::ProxmoxBackup | Backend::KeepAlive | Backend::UnofferedProtocol => {
                After::EchoBytes
            }
            _ => After::EchoWebSocketFrames,
        };
        (head, after)
    }
}

enum After {
    Close,
    /// Keep-alive: the next request on the same connection.
    NextRequest,
    Http2,
    EchoBytes,
    EchoWebSocketFrames,
}

/// A backend serving on its own threads until dropped.
pub struct RunningBackend {
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl RunningBackend {
    /// Starts `backend` listening on [`ProxyLab::backend_addr`] inside the
    /// lab's backend namespace; it accepts connections once this returns.
    pub fn start(lab: &ProxyLab, backend: Backend) -> io::Result<RunningBackend> {
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (bound, bind_result) = mpsc::channel();
        let acceptor = {
            let stop = stop.clone();
            let peers = peers.clone();
            lab.backend.spawn(move || {
                let listener = match TcpListener::bind(ProxyLab::backend_addr())
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                {
                    Ok(listener) => {
                        let _ = bound.send(Ok(()));
                        listener
                    }
                    Err(error) => {
                        let _ = bound.send(Err(error));
                        return;
                    }
                };
                accept_until_stopped(&listener, &stop, &peers, backend);
            })
        };
        bind_result
            .recv()
            .expect("the backend thread reports its bind")?;
        Ok(RunningBackend {
            stop,
            acceptor: Some(acceptor),
            peers,
        })
    }

    /// The address of every connection accepted so far, in order: the
    /// proxy's side of each backend connection.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers
            .lock()
            .expect("the acceptor never panics")
            .clone()
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_until_stopped(
    listener: &TcpListener,
    stop: &AtomicBool,
    peers: &Mutex<Vec<SocketAddr>>,
    backend: Backend,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                peers.lock().expect("nothing panics holding it").push(peer);
                thread::spawn(move || {
                    let _ = serve(stream, backend);
                });
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    }
}

/// A 101 turns the connection into an echo; a keep-alive answer waits for
/// the next request; anything else closes it.
fn serve(mut stream: TcpStream, backend: Backend) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        let request = Head::read(&mut stream)?;
        let body_length = request
            .header("Content-Length")
            .and_then(|l| l.parse().ok());
        io::copy(
            &mut Read::by_ref(&mut stream).take(body_length.unwrap_or(0)),
            &mut io::sink(),
        )?;
        let (response, after) = backend.answer(&request);
        stream.write_all(response.as_bytes())?;
        if !matches!(after, After::NextRequest) {
            return serve_after(stream, after);
        }
    }
}

/// What the connection carries after the last answer.
fn serve_after(mut stream: TcpStream, after: After) -> io::Result<()> {
    match after {
        After::Close | After::NextRequest => Ok(()),
        After::Http2 => h2c::serve_stream_one(&mut stream),
        After::EchoBytes => {
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer)?;
                if n == 0 {
                    return Ok(());
                }
                stream.write_all(&buffer[..n])?;
            }
        }
        After::EchoWebSocketFrames => {
            while let Some(payload) = websocket::read_masked_frame(&mut stream)? {
                stream.write_all(&websocket::text_frame(&payload))?;
            }
            Ok(())
        }
    }
}

/// Just enough of HTTP/2 (RFC 9113) to complete an h2c upgrade: the
/// server's SETTINGS right after the 101, then, once the client's preface
/// and SETTINGS arrived, a SETTINGS acknowledgement and a `200` ending
/// stream 1, which carries the upgraded request.
mod h2c {
    use std::io::{self, Read, Write};

    use super::{After, HTTP11_BODY};
    use crate::head::Head;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_STREAM_END_HEADERS: u8 = 0x5;
    /// HPACK: the static table's entry 8, `:status: 200`.
    const STATUS_200: u8 = 0x88;

    pub(super) fn answer(request: &Head) -> (String, After) {
        let offers_h2c = request.header("Upgrade").is_some_and(|upgrade| {
            upgrade
                .split(',')
                .any(|protocol| protocol.trim().eq_ignore_ascii_case("h2c"))
        });
        if offers_h2c {
            (
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_owned(),
                After::Http2,
            )
        } else {
            (plain_200(), After::Close)
        }
    }

    /// The answer without a switch.
    pub(super) fn plain_200() -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP11_BODY}",
            HTTP11_BODY.len()
        )
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len()).expect("a short payload");
        let mut frame = length.to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    pub(super) fn serve_stream_one(stream: &mut (impl Read + Write)) -> io::Result<()> {
        stream.write_all(&frame(SETTINGS, 0, 0, &[]))?;
        let mut preface = [0u8; PREFACE.len()];
        stream.read_exact(&mut preface)?;
        if preface != PREFACE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no HTTP/2 preface after the 101",
            ));
        }
        // The client's SETTINGS frame, which must follow its preface.
        let mut header = [0u8; 9];
        stream.read_exact(&mut header)?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        io::copy(
            &mut Read::by_ref(stream).take(length.into()),
            &mut io::sink(),
        )?;
        let mut answer = frame(SETTINGS, ACK, 0, &[]);
        answer.extend(frame(HEADERS, END_STREAM_END_HEADERS, 1, &[STATUS_200]));
        stream.write_all(&answer)?;
        // Whatever else the client sends (its acknowledgement, GOAWAY)
        // until it closes.
        io::copy(stream, &mut io::sink())?;
        Ok(())
    }
}
