//! The daemon's configuration: a TOML file, or the embedded defaults.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path, str::FromStr};

use serde::Deserialize;

use crate::{
    events::{RateLimitSettings, RedactionAllowlist},
    output::Destination,
    reassembly::ReassemblyLimits,
    rules::Severity,
};

/// The configuration used when no file is given.
pub const DEFAULT: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interface names; empty means every interface that is up.
    #[serde(default)]
    pub interfaces: Vec<String>,
    pub ports: Vec<WatchedPort>,
    #[serde(default)]
    pub reassembly: ReassemblySettings,
    /// How often the same rule may alert for the same server endpoint.
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    /// Secret values and query strings allowed into events (none by default).
    #[serde(default)]
    pub redaction: RedactionAllowlist,
    #[serde(default)]
    pub rules: RuleSettings,
    #[serde(default)]
    pub output: OutputSettings,
    #[serde(default)]
    pub reporting: ReportingSettings,
    #[serde(default)]
    pub capture: CaptureSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// The `[rules]` table: rules turned off, and severities changed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// Rule ids that never raise.
    pub disabled: Vec<String>,
    /// Rule id → the severity its alerts carry instead of the catalogue's.
    pub severity: BTreeMap<String, Severity>,
}

/// The `[output]` table: where events go.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSettings {
    pub destinations: Vec<Destination>,
    /// How events are written to stdout; files and syslog always get JSON.
    pub format: EventFormat,
    /// Events waiting for slow outputs; what does not fit is dropped and
    /// counted in the next `loss` event.
    pub queue_capacity: usize,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            destinations: vec![Destination::Stdout],
            format: EventFormat::Json,
            queue_capacity: 65536,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    Json,
    Pretty,
}

/// The `[reporting]` table: how often counters are reported.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingSettings {
    /// A `loss` event at most this often, when anything was lost.
    pub loss_interval_secs: u64,
    /// A `stats` event this often; 0 turns them off.
    pub stats_interval_secs: u64,
}

impl Default for ReportingSettings {
    fn default() -> Self {
        ReportingSettings {
            loss_interval_secs: 60,
            stats_interval_secs: 0,
        }
    }
}

/// The `[capture]` table: what the kernel program copies.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSettings {
    /// Payload bytes copied per TCP segment, at most 16384.
    pub max_payload_per_segment: u32,
    /// Size of the ring buffer between the kernel program and the daemon: a
    /// power of two, at least one page.
    pub ring_buffer_bytes: u32,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            max_payload_per_segment: auditor_common::SEGMENT_CAPTURE_MAX as u32,
            ring_buffer_bytes: auditor_common::RING_BUFFER_BYTES,
        }
    }
}

/// The `[metrics]` table: the Prometheus endpoint, off unless `listen` is set.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
}

/// The `[reassembly]` table: bounds on what TCP reassembly holds.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReassemblySettings {
    pub max_connections: usize,
    pub max_buffered_per_connection: usize,
    pub max_buffered_total: usize,
    pub idle_timeout_secs: u64,
}

impl Default for ReassemblySettings {
    fn default() -> Self {
        let limits = ReassemblyLimits::default();
        ReassemblySettings {
            max_connections: limits.max_connections,
            max_buffered_per_connection: limits.max_buffered_per_connection,
            max_buffered_total: limits.max_buffered_total,
            idle_timeout_secs: limits.idle_timeout_ns / 1_000_000_000,
        }
    }
}

impl ReassemblySettings {
    pub fn limits(&self) -> ReassemblyLimits {
        ReassemblyLimits {
            max_connections: self.max_connections,
            max_buffered_per_connection: self.max_buffered_per_connection,
            max_buffered_total: self.max_buffered_total,
            idle_timeout_ns: self.idle_timeout_secs.saturating_mul(1_000_000_000),
            ..ReassemblyLimits::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            (
                "max_buffered_per_connection",
                self.max_buffered_per_connection as u64,
            ),
            ("max_buffered_total", self.max_buffered_total as u64),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("reassembly.{name} must be greater than 0"));
        }
        if self.max_buffered_per_connection > self.max_buffered_total {
            return Err("reassembly.max_buffered_per_connection is larger than reassembly.max_buffered_total".into());
        }
        Ok(())
    }
}

/// A TCP port to watch, and which leg of a proxy it serves.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WatchedPort {
    pub port: u16,
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Frontend,
    Backend,
}

/// What the command line says, which overrides the file: an empty list or
/// `None` leaves the file's setting.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub ports: Vec<WatchedPort>,
    pub destinations: Vec<Destination>,
    pub format: Option<EventFormat>,
    pub metrics: Option<SocketAddr>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if !self.interfaces.is_empty() {
            config.interfaces.clone_from(&self.interfaces);
        }
        if !self.ports.is_empty() {
            config.ports.clone_from(&self.ports);
        }
        if !self.destinations.is_empty() {
            config.output.destinations.clone_from(&self.destinations);
        }
        if let Some(format) = self.format {
            config.output.format = format;
        }
        if let Some(listen) = self.metrics {
            config.metrics.listen = Some(listen);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// The configured role of each port that has one.
    pub fn roles(&self) -> std::collections::HashMap<u16, Role> {
        self.ports
            .iter()
            .filter_map(|p| Some((p.port, p.role?)))
            .collect()
    }

    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT, "embedded default configuration")
            .expect("the embedded default configuration is valid")
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// `origin` names the text in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let config: Config =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.ports.is_empty() {
            return Err("`ports` is empty: nothing would be watched".into());
        }
        if let Some(zero) = self.ports.iter().find(|p| p.port == 0) {
            return Err(format!("port {} is not a valid TCP port", zero.port));
        }
        for (i, a) in self.ports.iter().enumerate() {
            if self.ports[..i].iter().any(|b| b.port == a.port) {
                return Err(format!("port {} is listed twice", a.port));
            }
        }
        if let Some(empty) = self.interfaces.iter().find(|name| name.is_empty()) {
            return Err(format!("interface name {empty:?} is empty"));
        }
        self.reassembly.validate()?;
        self.rate_limit.validate()
    }
}

impl FromStr for WatchedPort {
    type Err = String;

    /// `PORT` or `PORT:ROLE`, as on the command line.
    fn from_str(text: &str) -> Result<WatchedPort, String> {
        let (port, role) = match text.split_once(':') {
            Some((port, role)) => (port, Some(role)),
            None => (text, None),
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("`{port}` is not a TCP port (1-65535)")),
        };
        let role = match role {
            None => None,
            Some("frontend") => Some(Role::Frontend),
            Some("backend") => Some(Role::Backend),
            Some(other) => {
                return Err(format!("`{other}` is not a role (frontend or backend)"));
            }
        };
        Ok(WatchedPort { port, role })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Frontend => "frontend",
            Role::Backend => "backend",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_watches_http_and_backend_ports_everywhere() {
        let config = Config::embedded_default();
        assert!(config.interfaces.is_empty());
        let ports: Vec<u16> = config.ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, [80, 8080, 3000, 5000, 8000, 8081, 8888, 9000]);
    }

    #[test]
    fn parses_ports_with_roles() {
        let config = Config::parse(
            "interfaces = [\"eth0\"]\n[[ports]]\nport = 443\n[[ports]]\nport = 8080\nrole = \"backend\"\n",
            "test",
        )
        .unwrap();
        assert_eq!(config.interfaces, ["eth0"]);
        assert_eq!(config.ports[1].role, Some(Role::Backend));
        assert_eq!(config.ports[0].role, None);
    }

    #[test]
    fn rejects_invalid_files_precisely() {
        let error = |text: &str| Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(error("[[ports]]\nport = 70000\n").contains("x.toml"));
        assert!(error("[[ports]]\nport = 0\n").contains("port 0"));
        assert!(error("[[ports]]\nport = 80\n[[ports]]\nport = 80\n").contains("listed twice"));
        assert!(error("ports = []\n").contains("nothing would be watched"));
        assert!(error("[[ports]]\nport = 80\nrole = \"middle\"\n").contains("middle"));
        assert!(error("colour = 1\n[[ports]]\nport = 80\n").contains("colour"));
    }

    #[test]
    fn reassembly_bounds_have_defaults_and_can_be_set() {
        assert_eq!(
            Config::embedded_default().reassembly.limits(),
            ReassemblyLimits::default()
        );
        let config = Config::parse(
            "[[ports]]\nport = 80\n[reassembly]\nmax_connections = 10\nidle_timeout_secs = 2\n",
            "test",
        )
        .unwrap();
        let limits = config.reassembly.limits();
        assert_eq!(limits.max_connections, 10);
        assert_eq!(limits.idle_timeout_ns, 2_000_000_000);
        assert_eq!(
            limits.max_buffered_total,
            ReassemblyLimits::default().max_buffered_total
        );
        let error = |text: &str| Config::parse(text, "x.toml").unwrap_err().to_string();
        assert!(
            error("[[ports]]\nport = 80\n[reassembly]\nmax_connections = 0\n")
                .contains("reassembly.max_connections")
        );
        assert!(
            error("[[ports]]\nport = 80\n[reassembly]\nmax_buffered_total = 10\n")
                .contains("larger than")
        );
        assert!(error("[[ports]]\nport = 80\n[reassembly]\nwindow = 1\n").contains("window"));
    }

    #[test]
    fn rate_limit_and_redaction_can_be_set() {
        let config = Config::parse(
            "[[ports]]\nport = 80\n[rate_limit]\nmax_alerts = 3\n[redaction]\nheaders = [\"Cookie\"]\n",
            "test",
        )
        .unwrap();
        assert_eq!(config.rate_limit.max_alerts, 3);
        assert_eq!(
            config.rate_limit.interval_secs,
            RateLimitSettings::default().interval_secs
        );
        assert_eq!(config.redaction.headers, ["Cookie"]);
        assert!(!config.redaction.query_strings);
        let error = Config::parse(
            "[[ports]]\nport = 80\n[rate_limit]\ninterval_secs = 0\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("rate_limit.interval_secs"), "{error}");
    }

    #[test]
    fn parses_command_line_ports() {
        assert_eq!(
            "8080:frontend".parse::<WatchedPort>(),
            Ok(WatchedPort {
                port: 8080,
                role: Some(Role::Frontend)
            })
        );
        assert_eq!("80".parse::<WatchedPort>().unwrap().role, None);
        assert!("0".parse::<WatchedPort>().is_err());
        assert!("http".parse::<WatchedPort>().is_err());
        assert!("80:sideways"
            .parse::<WatchedPort>()
            .unwrap_err()
            .contains("sideways"));
    }
}
