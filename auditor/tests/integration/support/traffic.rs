//! Blocking TCP peers for the tests: one request, one response, then close.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
};

/// `len` bytes of a pattern that differs per `seed`, so misplaced bytes show.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i / 7 + usize::from(seed) * 3 + i) % 26) as u8)
        .collect()
}

/// Serves one connection on `listener`: reads `request_len` bytes, answers
/// `response` in one write and closes. Returns what it read.
pub fn serve_once(
    listener: TcpListener,
    request_len: usize,
    response: Vec<u8>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = vec![0; request_len];
        stream.read_exact(&mut request).expect("read the request");
        stream.write_all(&response).expect("write the response");
        stream.shutdown(Shutdown::Both).ok();
        request
    })
}

/// Sends `request` in one write and reads the answer to its end. Returns the
/// answer and the client's own address.
pub fn request(server: SocketAddr, request: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut stream = TcpStream::connect(server).expect("connect");
    let local = stream.local_addr().expect("local address");
    stream.write_all(request).expect("write the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    (response, local)
}

/// One full exchange against a fresh listener on `server`; asserts both
/// sides got exactly what the other sent, and returns the client's address.
pub fn exchange(server: SocketAddr, request_bytes: &[u8], response_bytes: &[u8]) -> SocketAddr {
    let listener = TcpListener::bind(server).expect("bind");
    let server_side = serve_once(listener, request_bytes.len(), response_bytes.to_vec());
    let (response, client) = request(server, request_bytes);
    assert_eq!(server_side.join().expect("server thread"), request_bytes);
    assert_eq!(response, response_bytes);
    client
}

/// The Proxmox Backup case: an upgrade offer answered by a 101 without
/// `Connection`, which raises `upgrade-101-missing-connection-option`.
pub const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
pub const PROXMOX_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

/// One Proxmox-style exchange for `target` against a fresh listener on
/// `server`; returns the client's address.
pub fn proxmox_upgrade(server: SocketAddr, target: &str) -> SocketAddr {
    let offer = format!(
        "GET {target} HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n"
    );
    exchange(server, offer.as_bytes(), PROXMOX_101)
}
