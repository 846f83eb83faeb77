//! What a configuration must satisfy beyond its types. Every problem is
//! reported, each with the field it concerns, so that one run of
//! `check-config` shows them all.

use std::fmt::Display;

use super::{locate::FieldPath, Config};
use crate::{events::SECRET_FIELDS, http::is_tchar, rules};

/// Events that may wait for slow outputs; at about a kilobyte each, the queue
/// stays within a gigabyte.
const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// The longest reporting interval: a day.
const MAX_REPORTING_INTERVAL_SECS: u64 = 86_400;
/// The kernel's ring buffer holds at least a page.
const MIN_RING_BUFFER_BYTES: u32 = 4096;
const MAX_RING_BUFFER_BYTES: u32 = 1 << 30;
/// Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL).
const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Every problem of `config`, in the order of its fields.
pub fn problems(config: &Config) -> Vec<(FieldPath, String)> {
    let mut problems = Problems::default();
    problems.interfaces(config);
    problems.ports(config);
    problems.reassembly(config);
    problems.rate_limit(config);
    problems.redaction(config);
    problems.rules(config);
    problems.silences(config);
    problems.output(config);
    problems.reporting(config);
    problems.capture(config);
    problems.0
}

#[derive(Default)]
struct Problems(Vec<(FieldPath, String)>);

impl Problems {
    fn add(&mut self, field: FieldPath, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// `value` must be in `min..=max`.
    fn within<T: PartialOrd + Display>(&mut self, field: FieldPath, value: T, min: T, max: T) {
        if value < min || value > max {
            self.add(field, format!("{value} is not between {min} and {max}"));
        }
    }

    fn positive(&mut self, field: FieldPath, value: u64) {
        if value == 0 {
            self.add(field, "must be greater than 0");
        }
    }

    /// Each value after its first occurrence in `values`.
    fn listed_once<T: PartialEq + Display>(&mut self, list: &FieldPath, values: &[T]) {
        for (i, value) in values.iter().enumerate() {
            if let Some(first) = values[..i].iter().position(|v| v == value) {
                self.add(
                    list.index(i),
                    format!("`{value}` is listed twice (first as {})", list.index(first)),
                );
            }
        }
    }

    fn interfaces(&mut self, config: &Config) {
        let list = FieldPath::of("interfaces");
        for (i, name) in config.interfaces.iter().enumerate() {
            if name.is_empty() {
                self.add(list.index(i), "is empty");
            } else if name.len() > MAX_INTERFACE_NAME_BYTES {
                self.add(
                    list.index(i),
                    format!("`{name}` is longer than {MAX_INTERFACE_NAME_BYTES} bytes, which no Linux interface name is"),
                );
            }
        }
        self.listed_once(&list, &config.interfaces);
    }

    fn ports(&mut self, config: &Config) {
        let list = FieldPath::of("ports");
        if config.ports.is_empty() {
            self.add(list.clone(), "is empty: nothing would be watched");
        }
        for (i, watched) in config.ports.iter().enumerate() {
            let field = list.index(i).key("port");
            if watched.port == 0 {
                self.add(field, "0 is not a TCP port (1-65535)");
            } else if let Some(first) = config.ports[..i]
                .iter()
                .position(|p| p.port == watched.port)
            {
                self.add(
                    field,
                    format!(
                        "port {} is listed twice (first as {})",
                        watched.port,
                        list.index(first)
                    ),
                );
            }
        }
    }

    fn reassembly(&mut self, config: &Config) {
        let table = FieldPath::of("reassembly");
        let settings = &config.reassembly;
        for (name, value) in [
            ("max_connections", settings.max_connections as u64),
            (
                "max_buffered_per_connection",
                settings.max_buffered_per_connection as u64,
            ),
            ("max_buffered_total", settings.max_buffered_total as u64),
            ("idle_timeout_secs", settings.idle_timeout_secs),
        ] {
            self.positive(table.key(name), value);
        }
        if settings.max_buffered_per_connection > settings.max_buffered_total {
            self.add(
                table.key("max_buffered_per_connection"),
                format!(
                    "{} is more than reassembly.max_buffered_total ({})",
                    settings.max_buffered_per_connection, settings.max_buffered_total
                ),
            );
        }
    }

    fn rate_limit(&mut self, config: &Config) {
        let table = FieldPath::of("rate_limit");
        self.positive(table.key("interval_secs"), config.rate_limit.interval_secs);
        self.positive(
            table.key("max_tracked_keys"),
            config.rate_limit.max_tracked_keys as u64,
        );
    }

    fn redaction(&mut self, config: &Config) {
        let table = FieldPath::of("redaction");
        let headers = table.key("headers");
        for (i, name) in config.redaction.headers.iter().enumerate() {
            if !SECRET_FIELDS
                .iter()
                .any(|secret| secret.eq_ignore_ascii_case(name))
            {
                self.add(
                    headers.index(i),
                    format!("`{name}` is never redacted; only Authorization, Proxy-Authorization, Cookie and Set-Cookie can be allowed"),
                );
            }
        }
        let prefix_list = table.key("secret_subprotocol_prefixes");
        let prefixes = &config.redaction.secret_subprotocol_prefixes;
        for (i, prefix) in prefixes.iter().enumerate() {
            if prefix.is_empty() {
                self.add(
                    prefix_list.index(i),
                    "is empty: every subprotocol would read [redacted]",
                );
            } else if !prefix.bytes().all(is_tchar) {
                self.add(
                    prefix_list.index(i),
                    format!("`{prefix}` begins no subprotocol: subprotocols are tokens (letters, digits and !#$%&'*+-.^_`|~)"),
                );
            }
        }
        self.listed_once(&prefix_list, prefixes);
    }

    fn rules(&mut self, config: &Config) {
        let table = FieldPath::of("rules");
        let unknown = |id: &str| format!("no rule `{id}`; `auditor rules` lists them");
        let disabled = table.key("disabled");
        for (i, id) in config.rules.disabled.iter().enumerate() {
            if rules::find(id).is_none() {
                self.add(disabled.index(i), unknown(id));
            }
        }
        self.listed_once(&disabled, &config.rules.disabled);
        for id in config.rules.severity.keys() {
            if rules::find(id).is_none() {
                self.add(table.key("severity").key(id), unknown(id));
            }
        }
    }

    fn silences(&mut self, config: &Config) {
        let list = FieldPath::of("silence");
        for (i, silence) in config.silence.iter().enumerate() {
            let table = list.index(i);
            if silence.comment.trim().is_empty() {
                self.add(
                    table.key("comment"),
                    "is empty: say why the finding is accepted",
                );
            }
            if !silence.matches_something() {
                self.add(
                    table.clone(),
                    "would silence every alert: give a rule, server, server_port, client, role or host",
                );
            }
            if let Some(id) = &silence.rule {
                if rules::find(id).is_none() {
                    self.add(
                        table.key("rule"),
                        format!("no rule `{id}`; `auditor rules` lists them"),
                    );
                }
            }
            if silence.server_port == Some(0) {
                self.add(table.key("server_port"), "0 is not a TCP port (1-65535)");
            }
            if silence
                .host
                .as_deref()
                .is_some_and(|host| host.trim_start_matches("*.").is_empty())
            {
                self.add(table.key("host"), "names no host");
            }
        }
    }

    fn output(&mut self, config: &Config) {
        let table = FieldPath::of("output");
        let destinations = table.key("destinations");
        if config.output.destinations.is_empty() {
            self.add(destinations.clone(), "is empty: events would go nowhere");
        }
        self.listed_once(&destinations, &config.output.destinations);
        self.within(
            table.key("queue_capacity"),
            config.output.queue_capacity,
            1,
            MAX_QUEUE_CAPACITY,
        );
    }

    fn reporting(&mut self, config: &Config) {
        let table = FieldPath::of("reporting");
        let settings = &config.reporting;
        self.within(
            table.key("loss_interval_secs"),
            settings.loss_interval_secs,
            1,
            MAX_REPORTING_INTERVAL_SECS,
        );
        if settings.stats_interval_secs > MAX_REPORTING_INTERVAL_SECS {
            self.add(
                table.key("stats_interval_secs"),
                format!(
                    "{} is more than {MAX_REPORTING_INTERVAL_SECS} (a day); 0 turns stats events off",
                    settings.stats_interval_secs
                ),
            );
        }
    }

    fn capture(&mut self, config: &Config) {
        let table = FieldPath::of("capture");
        let settings = &config.capture;
        self.within(
            table.key("max_payload_per_segment"),
            settings.max_payload_per_segment,
            1,
            auditor_common::SEGMENT_CAPTURE_MAX as u32,
        );
        let ring = settings.ring_buffer_bytes;
        if !ring.is_power_of_two()
            || !(MIN_RING_BUFFER_BYTES..=MAX_RING_BUFFER_BYTES).contains(&ring)
        {
            self.add(
                table.key("ring_buffer_bytes"),
                format!("{ring} is not a power of two between {MIN_RING_BUFFER_BYTES} and {MAX_RING_BUFFER_BYTES} (1 GiB)"),
            );
        }
    }
}
