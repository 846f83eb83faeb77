//! The daemon's configuration: a TOML file, or the embedded defaults.
//!
//! Each component owns the settings of its table (`[rate_limit]` and
//! `[redaction]` in `events`, `[rules]` in `rules`…); this module assembles
//! them, checks them together and hands each component its own.

mod locate;
mod validate;

use std::{collections::HashMap, net::SocketAddr, path::Path, str::FromStr};

use serde::Deserialize;

use crate::{
    events::{RateLimitSettings, RedactionAllowlist},
    output::Destination,
    reassembly::ReassemblyLimits,
    reporter::{self, ReportSettings},
    rules::{PortRole, RuleSettings, Silence, Silences},
};

/// The configuration used when no file is given.
pub const DEFAULT: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interface names; empty means every interface that is up.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Left out: the embedded default's.
    #[serde(default = "default_ports")]
    pub ports: Vec<WatchedPort>,
    #[serde(default)]
    pub reassembly: ReassemblySettings,
    /// How often the same rule may alert for the same server endpoint.
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    /// Secret values and query strings allowed into events (none by
    /// default), and subprotocols that carry a secret.
    #[serde(default)]
    pub redaction: RedactionAllowlist,
    #[serde(default)]
    pub rules: RuleSettings,
    /// Findings the operator accepts, one `[[silence]]` table each.
    #[serde(default)]
    pub silence: Vec<Silence>,
    #[serde(default)]
    pub output: OutputSettings,
    #[serde(default)]
    pub reporting: ReportingSettings,
    #[serde(default)]
    pub capture: CaptureSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// The ports of the embedded default configuration.
fn default_ports() -> Vec<WatchedPort> {
    #[derive(Deserialize)]
    struct Ports {
        ports: Vec<WatchedPort>,
    }
    toml::from_str::<Ports>(DEFAULT)
        .expect("the embedded default configuration lists its ports")
        .ports
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
}

/// A TCP port to watch, and which leg of a proxy it serves.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WatchedPort {
    pub port: u16,
    #[serde(default)]
    pub role: Option<PortRole>,
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
    #[error("cannot read {path}: {reason}")]
    Read {
        path: String,
        reason: std::io::Error,
    },
    /// One line per problem: `ORIGIN:LINE: FIELD: message`.
    #[error("{}", problems.iter().map(|p| p.located(origin)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with a configuration, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; none when the text is not where the problem is (a field
    /// left to its default, or the command line).
    pub line: Option<usize>,
    /// As `ports[1].role`; none for a syntax error.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// `ORIGIN:LINE: FIELD: message`, leaving out what is not known.
    fn located(&self, origin: &str) -> String {
        let line = self.line.map(|line| format!(":{line}")).unwrap_or_default();
        let field = self
            .field
            .as_ref()
            .map(|field| format!(" {field}:"))
            .unwrap_or_default();
        format!("{origin}{line}:{field} {}", self.message)
    }
}

impl Config {
    /// The configured role of each port that has one.
    pub fn roles(&self) -> HashMap<u16, PortRole> {
        self.ports
            .iter()
            .filter_map(|p| Some((p.port, p.role?)))
            .collect()
    }

    /// What the reporter needs from this configuration, on this host;
    /// `interface_names` by index, for live capture.
    pub fn report_settings(&self, interface_names: HashMap<u32, String>) -> ReportSettings {
        ReportSettings {
            host: reporter::host_name(),
            roles: self.roles(),
            interface_names,
            allowlist: self.redaction.clone(),
            rate_limit: self.rate_limit,
            rules: self.rules.clone(),
            silences: Silences::new(self.silence.clone()),
        }
    }

    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT, "embedded default configuration")
            .expect("the embedded default configuration is valid")
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.display().to_string(),
            reason,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// `origin` names the text in error messages. A syntax or type error
    /// stops the parse; otherwise every problem is reported.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let source = locate::Source::new(text);
        let config: Config = toml::from_str(text).map_err(|error| {
            let span = error.span();
            ConfigError::Invalid {
                origin: origin.to_owned(),
                problems: vec![Problem {
                    line: span.as_ref().map(|span| source.line_at(span.start)),
                    field: span
                        .and_then(|span| source.field_at(span))
                        .map(|field| field.to_string()),
                    message: error.message().trim().replace('\n', "; "),
                }],
            }
        })?;
        config.check(origin, |field| source.line_of(field))?;
        Ok(config)
    }

    /// Checks a configuration that did not come from one text, such as a file
    /// with the command line's overrides applied; `origin` names it.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.check(origin, |_| None)
    }

    fn check(
        &self,
        origin: &str,
        line_of: impl Fn(&locate::FieldPath) -> Option<usize>,
    ) -> Result<(), ConfigError> {
        let mut problems: Vec<Problem> = validate::problems(self)
            .into_iter()
            .map(|(field, message)| Problem {
                line: line_of(&field),
                field: Some(field.to_string()),
                message,
            })
            .collect();
        // In the order of the file; what it does not write last.
        problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            }),
        }
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
        let role = role.map(str::parse).transpose()?;
        Ok(WatchedPort { port, role })
    }
}

#[cfg(test)]
mod tests;
