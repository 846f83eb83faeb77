//! Real reverse proxies from Debian packages, started in the lab's proxy
//! namespace with configurations generated in a temporary directory. Each
//! listens on [`ProxyLab::proxy_front`] and forwards to
//! [`ProxyLab::backend_addr`]; dropping it kills the process.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    process::{self, LabProcesses, SpawnError, WaitError},
    ProxyLab, BACKEND_ADDR, BACKEND_PORT, PROXY_FRONT_ADDR, PROXY_PORT,
};

const STARTUP: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// `reverse_proxy`, which handles upgrades without configuration.
    Caddy,
    /// `proxy_pass` with HTTP/1.1 and the `Upgrade` and `Connection`
    /// request fields set, as nginx's WebSocket documentation says.
    Nginx,
    /// `proxy_pass` alone: nginx forwards neither field, so no offer
    /// reaches the backend.
    NginxWithoutUpgradeHeaders,
    /// `mode http`.
    HAProxy,
    /// [`Proxy::Nginx`] with an `upstream` block that keeps up to 8 idle
    /// connections to the backend (`keepalive`), sending
    /// `Connection: upgrade` only with an offer.
    NginxPooled,
    /// [`Proxy::HAProxy`] with `http-reuse always`: any request may go out
    /// on an idle backend connection that another one opened.
    HAProxyPooled,
}

impl Proxy {
    /// The name the rule catalogue's `proxy_impact` uses.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Caddy => "Caddy",
            Proxy::Nginx | Proxy::NginxWithoutUpgradeHeaders | Proxy::NginxPooled => "nginx",
            Proxy::HAProxy | Proxy::HAProxyPooled => "HAProxy",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Proxy::Caddy => "caddy",
            Proxy::Nginx | Proxy::NginxWithoutUpgradeHeaders | Proxy::NginxPooled => "nginx",
            Proxy::HAProxy | Proxy::HAProxyPooled => "haproxy",
        }
    }

    /// The Debian package that provides [`Proxy::binary`].
    pub fn package(self) -> &'static str {
        match self {
            Proxy::Caddy => "caddy",
            Proxy::Nginx | Proxy::NginxWithoutUpgradeHeaders | Proxy::NginxPooled => "nginx-light",
            Proxy::HAProxy | Proxy::HAProxyPooled => "haproxy",
        }
    }
}

#[derive(Debug)]
pub enum StartError {
    NotInstalled {
        binary: &'static str,
        package: &'static str,
    },
    Io {
        what: String,
        error: std::io::Error,
    },
    Exited {
        proxy: Proxy,
        status: std::process::ExitStatus,
        log: String,
    },
    NotListening {
        proxy: Proxy,
        log: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInstalled { binary, package } => write!(
                f,
                "`{binary}` is not installed: install the Debian package `{package}` (`cargo xtask test` does, as root)"
            ),
            StartError::Io { what, error } => write!(f, "{what}: {error}"),
            StartError::Exited { proxy, status, log } => {
                write!(f, "{} exited at start-up ({status}); its log:\n{log}", proxy.name())
            }
            StartError::NotListening { proxy, log } => write!(
                f,
                "{} did not accept connections on {} within {STARTUP:?}; its log:\n{log}",
                proxy.name(),
                ProxyLab::proxy_front()
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// A proxy process, killed on drop, and its directory, removed on drop.
pub struct RunningProxy {
    pub proxy: Proxy,
    processes: LabProcesses,
}

impl RunningProxy {
    /// Starts `proxy` in the lab's proxy namespace and returns once its
    /// front port accepts connections.
    pub fn start(lab: &ProxyLab, proxy: Proxy) -> Result<RunningProxy, StartError> {
        let binary = find_binary(proxy.binary()).ok_or(StartError::NotInstalled {
            binary: proxy.binary(),
            package: proxy.package(),
        })?;
        let mut processes = LabProcesses::new(proxy.binary()).map_err(|error| StartError::Io {
            what: "cannot create the proxy's directory".to_owned(),
            error,
        })?;
        let io_error = |what: &str| {
            let what = what.to_owned();
            move |error| StartError::Io { what, error }
        };
        let dir = processes.dir().to_owned();
        let (config_path, config) = configuration(proxy, &dir);
        fs::write(&config_path, config).map_err(io_error("cannot write the configuration"))?;
        let mut command = lab.proxy.command(&binary);
        command
            .args(arguments(proxy, &config_path, &dir))
            // Caddy keeps its state under these; nothing goes to the real home.
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .env("XDG_DATA_HOME", &dir);
        processes
            .spawn("output", command)
            .map_err(|error| match error {
                SpawnError::CreateLog(error) => io_error("cannot create the proxy's log")(error),
                SpawnError::ShareLog(error) => io_error("cannot share the log")(error),
                SpawnError::Start(error) => {
                    io_error(&format!("cannot start {}", binary.display()))(error)
                }
            })?;
        let mut running = RunningProxy { proxy, processes };
        running.wait_until_listening(lab)?;
        Ok(running)
    }

    /// What the proxy wrote on stdout and stderr, and nginx's error log.
    pub fn log(&self) -> String {
        ["output.log", "error.log"]
            .iter()
            .filter_map(|name| self.processes.read(name))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_until_listening(&mut self, lab: &ProxyLab) -> Result<(), StartError> {
        match self
            .processes
            .wait_until_accepting(&lab.proxy, ProxyLab::proxy_front(), STARTUP)
        {
            Ok(()) => Ok(()),
            Err(WaitError::Exited(status)) => Err(StartError::Exited {
                proxy: self.proxy,
                status,
                log: self.log(),
            }),
            Err(WaitError::TimedOut) => Err(StartError::NotListening {
                proxy: self.proxy,
                log: self.log(),
            }),
            Err(WaitError::Io(error)) => Err(StartError::Io {
                what: format!("cannot check on {}", self.proxy.name()),
                error,
            }),
        }
    }
}

fn configuration(proxy: Proxy, dir: &Path) -> (PathBuf, String) {
    let (front, port) = (PROXY_FRONT_ADDR, PROXY_PORT);
    let backend = format!("{BACKEND_ADDR}:{BACKEND_PORT}");
    let dir_name = dir.display();
    match proxy {
        Proxy::Caddy => (
            dir.join("Caddyfile"),
            format!(
                "{{\n\tadmin off\n\tauto_https off\n\tdebug\n}}\n\
                 http://{front}:{port} {{\n\tbind {front}\n\treverse_proxy {backend}\n}}\n"
            ),
        ),
        Proxy::Nginx | Proxy::NginxWithoutUpgradeHeaders => {
            let upgrade_lines = if proxy == Proxy::Nginx {
                "            proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Upgrade $http_upgrade;\n\
                 \x20           proxy_set_header Connection \"upgrade\";\n"
            } else {
                ""
            };
            (
                dir.join("nginx.conf"),
                nginx_configuration(
                    dir,
                    &format!(
                        "    access_log {dir_name}/access.log;\n\
                         \x20   server {{\n        listen {front}:{port};\n        location / {{\n\
                         \x20           proxy_pass http://{backend};\n{upgrade_lines}\
                         \x20       }}\n    }}\n"
                    ),
                ),
            )
        }
        Proxy::NginxPooled => (
            dir.join("nginx.conf"),
            nginx_configuration(
                dir,
                &format!(
                    "    access_log {dir_name}/access.log;\n\
                     \x20   map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' '';\n    }}\n\
                     \x20   upstream lab_back {{\n        server {backend};\n        keepalive 8;\n    }}\n\
                     \x20   server {{\n        listen {front}:{port};\n        location / {{\n\
                     \x20           proxy_pass http://lab_back;\n\
                     \x20           proxy_http_version 1.1;\n\
                     \x20           proxy_set_header Upgrade $http_upgrade;\n\
                     \x20           proxy_set_header Connection $connection_upgrade;\n\
                     \x20       }}\n    }}\n"
                ),
            ),
        ),
        Proxy::HAProxy | Proxy::HAProxyPooled => {
            let reuse = if proxy == Proxy::HAProxyPooled {
                "    http-reuse always\n"
            } else {
                ""
            };
            (
                dir.join("haproxy.cfg"),
                format!(
                    "global\n    log stderr format raw local0 info\n\
                     defaults\n    mode http\n    log global\n    option httplog\n\
                     \x20   timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                     \x20   timeout tunnel 30s\n\
                     frontend lab_front\n    bind {front}:{port}\n    default_backend lab_back\n\
                     backend lab_back\n{reuse}    server lab_backend {backend}\n"
                ),
            )
        }
    }
}

fn arguments(proxy: Proxy, config: &Path, dir: &Path) -> Vec<std::ffi::OsString> {
    let args: Vec<&std::ffi::OsStr> = match proxy {
        Proxy::Caddy => vec![
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--adapter".as_ref(),
            "caddyfile".as_ref(),
        ],
        Proxy::Nginx | Proxy::NginxWithoutUpgradeHeaders | Proxy::NginxPooled => {
            return nginx_arguments(config, dir)
        }
        Proxy::HAProxy | Proxy::HAProxyPooled => {
            vec!["-db".as_ref(), "-f".as_ref(), config.as_os_str()]
        }
    };
    args.into_iter().map(ToOwned::to_owned).collect()
}

/// An nginx configuration with everything nginx writes kept in `dir` and
/// `http_block` as the contents of its `http` block.
pub(crate) fn nginx_configuration(dir: &Path, http_block: &str) -> String {
    let dir_name = dir.display();
    let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|kind| format!("    {kind}_temp_path {dir_name}/{kind};\n"))
        .collect();
    // One process, so killing the child stops all of nginx; enough
    // connections for the benchmarks' load generators.
    format!(
        "daemon off;\nmaster_process off;\npid {dir_name}/nginx.pid;\n\
         error_log {dir_name}/error.log info;\n\
         events {{\n    worker_connections 4096;\n}}\n\
         http {{\n{temp_paths}{http_block}}}\n"
    )
}

/// The arguments that start nginx with `config` and `dir` as its prefix.
pub(crate) fn nginx_arguments(config: &Path, dir: &Path) -> Vec<std::ffi::OsString> {
    // `-e` replaces the compiled-in error log, which nginx opens before it
    // reads the configuration.
    [
        "-p".as_ref(),
        dir.as_os_str(),
        "-e".as_ref(),
        "error.log".as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
    ]
    .into_iter()
    .map(ToOwned::to_owned)
    .collect()
}

/// `name` in `PATH` or in the sbin directories, where Debian puts daemons
/// and which a non-login root shell may lack.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .or_else(|| process::debian_binary(name))
}
