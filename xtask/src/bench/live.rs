//! What the live benchmarks (kernel, overhead, storm) share: the proxy lab
//! with nginx, tuned for many short connections; the daemon on nginx's two
//! legs; and the clients they send through nginx, which run on threads in
//! the lab's client namespace.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use lab::{
    netns::NetNs,
    proxy::{Proxy, RunningProxy},
    ProxyLab,
};

use super::Context;
use crate::daemon::RunningAuditor;

/// Debian packages: `ip`, and nginx as the lab's proxy.
pub const COMMANDS: [(&str, &str); 2] = [("ip", "iproute2"), ("nginx", "nginx-light")];
pub const CAPTURE_STARTUP: Duration = Duration::from_secs(30);
/// A client's reads give up after this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A Sec-WebSocket-Key, whose value the benchmarks do not check.
const WEBSOCKET_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The proxy lab with nginx forwarding upgrades; the caller starts the
/// backend.
pub fn nginx_lab(context: &mut Context) -> Result<(ProxyLab, RunningProxy)> {
    let lab = ProxyLab::new();
    // Thousands of connections a second would otherwise run out of
    // ephemeral ports, held in TIME_WAIT by the side that closes first: the
    // client towards nginx, nginx towards the backend. The range stays above
    // the lab's ports 8080 and 9000.
    for netns in [&lab.client, &lab.proxy] {
        context.run(netns.command("sysctl").args([
            "-w",
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=10000 65535",
        ]))?;
    }
    let nginx = RunningProxy::start(&lab, Proxy::Nginx).context("cannot start nginx")?;
    Ok((lab, nginx))
}

/// `auditor ARGS...` in the proxy namespace, once its capture has started.
pub fn start_daemon(
    context: &mut Context,
    netns: &NetNs,
    auditor: &Path,
    args: &[String],
) -> Result<RunningAuditor> {
    context.record(netns.command(auditor).args(args));
    let mut daemon = RunningAuditor::start(netns, auditor, args)?;
    daemon.wait_for_log("capture started", CAPTURE_STARTUP)?;
    Ok(daemon)
}

/// A connection to nginx's front, from the client namespace (the calling
/// thread must be in it).
pub fn connect() -> Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect(ProxyLab::proxy_front()).context("cannot connect to nginx")?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

/// Offers `protocol` (with a key when it is `websocket`) and returns the
/// status code of the answer.
pub fn offer_upgrade(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    protocol: &str,
) -> Result<u16> {
    let key = if protocol == "websocket" {
        format!("Sec-WebSocket-Key: {WEBSOCKET_KEY}\r\nSec-WebSocket-Version: 13\r\n")
    } else {
        String::new()
    };
    // One write, as clients send a head: `write!` on the unbuffered,
    // TCP_NODELAY socket would send each piece of the format as a segment.
    let head = format!(
        "GET /upgrade HTTP/1.1\r\nHost: {}\r\nUpgrade: {protocol}\r\nConnection: Upgrade\r\n{key}\r\n",
        ProxyLab::proxy_front()
    );
    stream.write_all(head.as_bytes())?;
    Ok(read_head(reader)?.status)
}

/// A keep-alive POST of `body`; the answer's status, its body read and
/// dropped.
pub fn post(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, body: &[u8]) -> Result<u16> {
    let mut request = format!(
        "POST /submit HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        ProxyLab::proxy_front(),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let head = read_head(reader)?;
    std::io::copy(
        &mut reader.by_ref().take(head.content_length),
        &mut std::io::sink(),
    )?;
    Ok(head.status)
}

struct ResponseHead {
    status: u16,
    content_length: u64,
}

fn read_head(reader: &mut impl BufRead) -> Result<ResponseHead> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut content_length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed inside a response head");
        }
        let field = line.trim_end();
        if field.is_empty() {
            return Ok(ResponseHead {
                status,
                content_length,
            });
        }
        if let Some((name, value)) = field.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse()?;
            }
        }
    }
}

/// The number that follows `label` in `line`.
pub fn number_after(line: &str, label: &str) -> Result<u64> {
    line.split_once(label)
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .with_context(|| format!("no {label:?} in {line}"))
}

/// The `counters` line the daemon logs when it stops; call after
/// [`RunningAuditor::stop`].
pub fn final_counters(daemon: &mut RunningAuditor) -> Result<String> {
    daemon
        .whole_log()
        .iter()
        .rev()
        .find(|line| line.contains("counters"))
        .cloned()
        .context("the daemon logged no counters when it stopped")
}
