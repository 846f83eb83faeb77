//! Backends on the backend namespace's address, port 9000, that answer
//! upgrade offers the way known servers do, broken ones included. After a
//! 101 they echo what arrives (WebSocket frames as server frames), so a
//! client can tell whether bytes flow.

use std::{
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
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
    /// A WebSocket 101 whose `Sec-WebSocket-Accept` hashes the key without
    /// RFC 6455's GUID.
    WrongWebSocketAccept,
    /// A 101 to `IRC/6.9`, whatever the client offered.
    UnofferedProtocol,
    /// A correct WebSocket 101 that also carries `Content-Length: 0`.
    ContentLengthOn101,
    /// A correct WebSocket server.
    WebSocket,
}

impl Backend {
    /// The response head to `request`, and what the connection carries next.
    fn answer(self, request: &Head) -> (String, After) {
        const BAD_REQUEST: &str =
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if request.header("Upgrade").is_none() {
            return (BAD_REQUEST.to_owned(), After::Close);
        }
        let key = request.header("Sec-WebSocket-Key");
        let head = match (self, key) {
            (Backend::ProxmoxBackup, _) => {
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
            (Backend::WebSocket, Some(key)) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                websocket::accept(key)
            ),
            (_, None) => return (BAD_REQUEST.to_owned(), After::Close),
        };
        let after = match self {
            Backend::ProxmoxBackup | Backend::UnofferedProtocol => After::EchoBytes,
            _ => After::EchoWebSocketFrames,
        };
        (head, after)
    }
}

enum After {
    Close,
    EchoBytes,
    EchoWebSocketFrames,
}

/// A backend serving on its own threads until dropped.
pub struct RunningBackend {
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl RunningBackend {
    /// Starts `backend` listening on [`ProxyLab::backend_addr`] inside the
    /// lab's backend namespace; it accepts connections once this returns.
    pub fn start(lab: &ProxyLab, backend: Backend) -> io::Result<RunningBackend> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound, bind_result) = mpsc::channel();
        let acceptor = {
            let stop = stop.clone();
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
                accept_until_stopped(&listener, &stop, backend);
            })
        };
        bind_result
            .recv()
            .expect("the backend thread reports its bind")?;
        Ok(RunningBackend {
            stop,
            acceptor: Some(acceptor),
        })
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

fn accept_until_stopped(listener: &TcpListener, stop: &AtomicBool, backend: Backend) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
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

/// One exchange per connection: a 101 turns the connection into an echo,
/// anything else closes it.
fn serve(mut stream: TcpStream, backend: Backend) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = Head::read(&mut stream)?;
    let (response, after) = backend.answer(&request);
    stream.write_all(response.as_bytes())?;
    match after {
        After::Close => Ok(()),
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
