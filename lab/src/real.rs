//! Real software as the proxy's peers, from Debian packages: a
//! python3-websockets echo server, an nghttpx h2c server and nginx with a
//! static answer as backends on [`ProxyLab::backend_addr`], and a python3-websockets client in the
//! client namespace. Scripts and files go to a temporary directory, removed
//! with it; dropping a backend kills its processes.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{
    netns::NetNs,
    process::{self, fresh_dir, LabProcesses, WaitError},
    proxy::{nginx_arguments, nginx_configuration},
    ProxyLab, BACKEND_ADDR, BACKEND_PORT,
};

/// Debian's python3, which python3-websockets extends (a `python3` earlier
/// in `PATH` may be another one).
const PYTHON: &str = "/usr/bin/python3";
/// A file of python3-websockets.
const WEBSOCKETS_MARKER: &str = "/usr/lib/python3/dist-packages/websockets/__init__.py";
const STARTUP: Duration = Duration::from_secs(10);
/// Where nghttpd listens inside the backend namespace, behind nghttpx.
const NGHTTPD_PORT: u16 = 9001;

/// Echoes every message on its connection (websockets 10.x asyncio API).
const ECHO_SERVER: &str = r#"import asyncio
import sys

import websockets


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(host, port):
    async with websockets.serve(echo, host, port, compression=None, ping_interval=None):
        await asyncio.Future()


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;

/// Connects to `URI`, sends `MESSAGE`, prints the answer and exits non-zero
/// unless it is the same message; leaving the block closes with 1000.
const ECHO_CLIENT: &str = r#"import asyncio
import sys

import websockets


async def main(uri, message):
    async with websockets.connect(
        uri, compression=None, ping_interval=None, open_timeout=5, close_timeout=2
    ) as ws:
        await ws.send(message)
        reply = await asyncio.wait_for(ws.recv(), 5)
    print(reply)
    if reply != message:
        sys.exit(f"expected the echo {message!r}, got {reply!r}")


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 15))
"#;

/// The file nghttpd serves at `/h2c`, the path [`crate::client::curl_http2`] asks for.
pub const H2C_BODY: &str = "served by nghttpd through nghttpx\n";

/// What [`RealBackend::nginx_static`] answers to every request.
pub const STATIC_BODY: &str = "served by nginx\n";

/// A real backend's processes, killed on drop, and its directory, removed
/// on drop.
pub struct RealBackend {
    processes: LabProcesses,
}

impl RealBackend {
    /// A python3-websockets server that echoes each message back.
    pub fn python_websocket_echo(lab: &ProxyLab) -> io::Result<RealBackend> {
        require_python_websockets()?;
        let mut backend = RealBackend {
            processes: LabProcesses::new("python-ws-server")?,
        };
        let script = backend.processes.dir().join("server.py");
        fs::write(&script, ECHO_SERVER)?;
        let mut command = lab.backend.command(PYTHON);
        command
            .arg(&script)
            .arg(BACKEND_ADDR.to_string())
            .arg(BACKEND_PORT.to_string());
        backend.spawn("server", command)?;
        backend.wait_until_accepting(&lab.backend, ProxyLab::backend_addr())?;
        Ok(backend)
    }

    /// nghttpx, which answers h2c upgrade offers, on the backend address in
    /// front of `nghttpd --no-tls` on the namespace's loopback (nghttpd
    /// 1.52 itself speaks cleartext HTTP/2 only with prior knowledge).
    /// nghttpd serves [`H2C_BODY`] at `/h2c`.
    pub fn nghttpx_h2c(lab: &ProxyLab) -> io::Result<RealBackend> {
        let nghttpd = find_binary("nghttpd", "nghttp2-server")?;
        let nghttpx = find_binary("nghttpx", "nghttp2-proxy")?;
        let mut backend = RealBackend {
            processes: LabProcesses::new("nghttpx")?,
        };
        let dir = backend.processes.dir().to_owned();
        let htdocs = dir.join("htdocs");
        fs::create_dir(&htdocs)?;
        fs::write(htdocs.join("h2c"), H2C_BODY)?;
        let mut command = lab.backend.command(nghttpd);
        command
            .args(["--no-tls", "--address", "127.0.0.1", "--htdocs"])
            .arg(&htdocs)
            .arg(NGHTTPD_PORT.to_string());
        backend.spawn("nghttpd", command)?;
        backend.wait_until_accepting(&lab.backend, ([127, 0, 0, 1], NGHTTPD_PORT).into())?;
        let mut command = lab.backend.command(nghttpx);
        command
            .args(["--conf=/dev/null", "--single-process", "--workers=1"])
            .arg(format!("--frontend={BACKEND_ADDR},{BACKEND_PORT};no-tls"))
            .arg(format!("--backend=127.0.0.1,{NGHTTPD_PORT};;proto=h2"))
            .arg(format!("--pid-file={}", dir.join("nghttpx.pid").display()))
            .arg(format!(
                "--errorlog-file={}",
                dir.join("nghttpx.log").display()
            ))
            .arg(format!(
                "--accesslog-file={}",
                dir.join("access.log").display()
            ));
        backend.spawn("nghttpx", command)?;
        backend.wait_until_accepting(&lab.backend, ProxyLab::backend_addr())?;
        Ok(backend)
    }

    /// nginx answering every request itself with a `200` and [`STATIC_BODY`],
    /// keeping connections alive and logging nothing per request: a backend
    /// fast enough that a benchmark measures what is in front of it.
    pub fn nginx_static(lab: &ProxyLab) -> io::Result<RealBackend> {
        let nginx = find_binary("nginx", "nginx-light")?;
        let mut backend = RealBackend {
            processes: LabProcesses::new("nginx-static")?,
        };
        let dir = backend.processes.dir().to_owned();
        let config = dir.join("nginx.conf");
        fs::write(
            &config,
            nginx_configuration(
                &dir,
                &format!(
                    "    access_log off;\n    server {{\n        listen {BACKEND_ADDR}:{BACKEND_PORT};\n\
                     \x20       location / {{\n            return 200 {STATIC_BODY:?};\n        }}\n    }}\n"
                ),
            ),
        )?;
        let mut command = lab.backend.command(nginx);
        command.args(nginx_arguments(&config, &dir));
        backend.spawn("nginx", command)?;
        backend.wait_until_accepting(&lab.backend, ProxyLab::backend_addr())?;
        Ok(backend)
    }

    /// Everything the processes wrote, file by file.
    pub fn log(&self) -> String {
        self.processes.all_logs()
    }

    /// Starts `command` with its output in `NAME.log`.
    fn spawn(&mut self, name: &str, mut command: std::process::Command) -> io::Result<()> {
        command.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
        Ok(self.processes.spawn(name, command)?)
    }

    /// Until `addr` accepts connections from inside `netns`, so no packet
    /// crosses a watched link; fails when a process exits first.
    fn wait_until_accepting(
        &mut self,
        netns: &NetNs,
        addr: std::net::SocketAddr,
    ) -> io::Result<()> {
        match self.processes.wait_until_accepting(netns, addr, STARTUP) {
            Ok(()) => Ok(()),
            Err(WaitError::Exited(status)) => Err(io::Error::other(format!(
                "a backend process exited at start-up ({status}):\n{}",
                self.log()
            ))),
            Err(WaitError::TimedOut) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "nothing accepted on {addr} within {STARTUP:?}:\n{}",
                    self.log()
                ),
            )),
            Err(WaitError::Io(error)) => Err(error),
        }
    }
}

/// How the python3-websockets client ended.
#[derive(Clone, Debug)]
pub struct PythonClientRun {
    /// 0 when the echo came back and the connection closed cleanly.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a python3-websockets client in the client namespace: it connects to
/// `ws://PROXY/TARGET`, sends `message` and expects it back.
pub fn python_websocket_client(
    lab: &ProxyLab,
    target: &str,
    message: &str,
) -> io::Result<PythonClientRun> {
    require_python_websockets()?;
    let dir = fresh_dir("python-ws-client")?;
    let script = dir.join("client.py");
    let output = fs::write(&script, ECHO_CLIENT).and_then(|()| {
        lab.client
            .command(PYTHON)
            .arg(&script)
            .arg(format!("ws://{}{target}", ProxyLab::proxy_front()))
            .arg(message)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .stdin(Stdio::null())
            .output()
    });
    let _ = fs::remove_dir_all(&dir);
    let output = output?;
    Ok(PythonClientRun {
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn require_python_websockets() -> io::Result<()> {
    if Path::new(PYTHON).is_file() && Path::new(WEBSOCKETS_MARKER).is_file() {
        Ok(())
    } else {
        Err(not_installed(WEBSOCKETS_MARKER, "python3-websockets"))
    }
}

/// `name` in the directories where Debian puts it.
fn find_binary(name: &str, package: &str) -> io::Result<PathBuf> {
    process::debian_binary(name).ok_or_else(|| not_installed(name, package))
}

fn not_installed(what: &str, package: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "`{what}` is missing: install the Debian package `{package}` (`cargo xtask test` does, as root)"
        ),
    )
}
