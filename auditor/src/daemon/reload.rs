//! SIGHUP: reads the configuration again and applies it without reloading
//! the kernel program. An invalid file, or interfaces that cannot be found
//! or attached, leave the running configuration as it was.

use std::{collections::BTreeSet, path::PathBuf};

use super::{interface_names, loss_timer, DaemonError, Running};
use crate::{
    capture::{interfaces, Capture, CaptureError, Interface},
    config::{Config, ConfigError, Overrides, WatchedPort},
    output::Sink,
};

/// Where the configuration comes from: the file (or the embedded defaults),
/// then the command line on top.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.file {
            Some(path) => Config::load(path)?,
            None => Config::embedded_default(),
        };
        self.overrides.apply(&mut config);
        config.validate("the command line")?;
        Ok(config)
    }

    /// The configuration and the interfaces it selects, or what is wrong.
    fn load_with_interfaces(&self) -> Result<(Config, Vec<Interface>), String> {
        let config = self.load().map_err(|e| e.to_string())?;
        let available =
            interfaces::list().map_err(|e| format!("cannot list network interfaces: {e}"))?;
        let selected =
            interfaces::select(&available, &config.interfaces).map_err(|e| e.to_string())?;
        Ok((config, selected))
    }
}

impl<S: Sink> Running<S> {
    pub(super) fn reload(&mut self) -> Result<(), DaemonError> {
        let (mut config, selected) = match self.source.load_with_interfaces() {
            Ok(loaded) => loaded,
            Err(problem) => {
                log_refusal(&problem);
                return Ok(());
            }
        };
        let to_attach: Vec<&Interface> = selected
            .iter()
            .filter(|i| !self.capture.attachments().any(|a| a.index == i.index))
            .collect();
        let to_detach: Vec<(u32, String)> = self
            .capture
            .attachments()
            .filter(|a| !selected.iter().any(|i| i.index == a.index))
            .map(|a| (a.index, a.interface.clone()))
            .collect();
        if let Err(error) = attach_all(&mut self.capture, &to_attach) {
            log_refusal(&error.to_string());
            return Ok(());
        }
        let (watched, unwatched) = port_changes(&self.config.ports, &config.ports);
        for &port in &watched {
            self.capture.watch_port(port)?;
        }
        for &port in &unwatched {
            self.capture.unwatch_port(port)?;
        }
        for (index, _) in &to_detach {
            self.capture.detach(*index);
        }
        self.pipeline
            .replace_report_settings(config.report_settings(interface_names(&self.capture)))?;
        if config.reporting.loss_interval_secs != self.config.reporting.loss_interval_secs {
            self.loss_timer = loss_timer(&config.reporting);
        }

        let needing_restart = keep_restart_settings(&self.config, &mut config);
        if !needing_restart.is_empty() {
            tracing::warn!(
                settings = ?needing_restart,
                "changed settings need a restart; they keep their running values"
            );
        }
        let changes = describe_changes(&self.config, &config, &to_attach, &to_detach);
        if changes.is_empty() {
            tracing::info!("configuration reloaded; nothing changed");
        } else {
            tracing::info!(changed = %changes.join("; "), "configuration reloaded");
        }
        self.config = config;
        Ok(())
    }
}

fn log_refusal(problem: &str) {
    tracing::error!(
        "configuration not reloaded, the running one stays: {}",
        one_line(problem)
    );
}

/// `text` on one log line: its non-blank lines, trimmed, joined by `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Attaches to every interface of `interfaces`, or to none of them.
fn attach_all(capture: &mut Capture, interfaces: &[&Interface]) -> Result<(), CaptureError> {
    for (done, interface) in interfaces.iter().enumerate() {
        if let Err(error) = capture.attach(interface) {
            for attached in &interfaces[..done] {
                capture.detach(attached.index);
            }
            return Err(error);
        }
    }
    Ok(())
}

/// The ports to start watching, and those to stop watching.
fn port_changes(running: &[WatchedPort], new: &[WatchedPort]) -> (Vec<u16>, Vec<u16>) {
    let running: BTreeSet<u16> = running.iter().map(|p| p.port).collect();
    let new: BTreeSet<u16> = new.iter().map(|p| p.port).collect();
    (
        new.difference(&running).copied().collect(),
        running.difference(&new).copied().collect(),
    )
}

fn describe_port(port: &WatchedPort) -> String {
    match port.role {
        Some(role) => format!("{}:{role}", port.port),
        None => port.port.to_string(),
    }
}

/// What a reload changes, for the log.
fn describe_changes(
    running: &Config,
    new: &Config,
    attached: &[&Interface],
    detached: &[(u32, String)],
) -> Vec<String> {
    let mut changes = Vec::new();
    if new.ports != running.ports {
        let ports: Vec<String> = new.ports.iter().map(describe_port).collect();
        changes.push(format!("ports [{}]", ports.join(", ")));
    }
    if !attached.is_empty() {
        let names: Vec<&str> = attached.iter().map(|i| i.name.as_str()).collect();
        changes.push(format!("attached to {}", names.join(", ")));
    }
    if !detached.is_empty() {
        let names: Vec<&str> = detached.iter().map(|(_, name)| name.as_str()).collect();
        changes.push(format!("detached from {}", names.join(", ")));
    }
    changes.extend(changed_sections(running, new).map(str::to_owned));
    changes
}

/// The settings, other than ports and interfaces, that a reload changes.
fn changed_sections<'a>(
    running: &'a Config,
    new: &'a Config,
) -> impl Iterator<Item = &'static str> + 'a {
    [
        ("rate_limit", running.rate_limit != new.rate_limit),
        ("redaction", running.redaction != new.redaction),
        ("rules", running.rules != new.rules),
        ("silence", running.silence != new.silence),
        (
            "reporting.loss_interval_secs",
            running.reporting.loss_interval_secs != new.reporting.loss_interval_secs,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
}

/// Sets the settings of `new` that only take effect at start back to their
/// `running` values; returns the names of those that differed.
fn keep_restart_settings(running: &Config, new: &mut Config) -> Vec<&'static str> {
    fn keep<T: Clone + PartialEq>(
        kept: &mut Vec<&'static str>,
        name: &'static str,
        running: &T,
        new: &mut T,
    ) {
        if running != new {
            kept.push(name);
            new.clone_from(running);
        }
    }
    let mut kept = Vec::new();
    keep(
        &mut kept,
        "reassembly",
        &running.reassembly,
        &mut new.reassembly,
    );
    keep(&mut kept, "capture", &running.capture, &mut new.capture);
    keep(&mut kept, "output", &running.output, &mut new.output);
    keep(&mut kept, "metrics", &running.metrics, &mut new.metrics);
    keep(
        &mut kept,
        "reporting.stats_interval_secs",
        &running.reporting.stats_interval_secs,
        &mut new.reporting.stats_interval_secs,
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "test").unwrap()
    }

    #[test]
    fn restart_settings_keep_their_running_values_and_are_named() {
        let running = config("[[ports]]\nport = 80\n");
        let mut new = config(
            "[[ports]]\nport = 81\n[capture]\nmax_payload_per_segment = 512\n\
             [reassembly]\nidle_timeout_secs = 5\n[metrics]\nlisten = \"127.0.0.1:9700\"\n\
             [reporting]\nloss_interval_secs = 5\nstats_interval_secs = 10\n\
             [output]\ndestinations = [\"file:/tmp/x\"]\n",
        );
        assert_eq!(
            keep_restart_settings(&running, &mut new),
            [
                "reassembly",
                "capture",
                "output",
                "metrics",
                "reporting.stats_interval_secs"
            ]
        );
        let expected = Config {
            ports: new.ports.clone(),
            reporting: crate::config::ReportingSettings {
                loss_interval_secs: 5,
                ..running.reporting
            },
            ..running.clone()
        };
        assert_eq!(new, expected, "ports and the loss interval change live");
        assert!(keep_restart_settings(&running, &mut running.clone()).is_empty());
    }

    #[test]
    fn port_changes_ignore_roles_and_order() {
        let running = config("[[ports]]\nport = 80\n[[ports]]\nport = 81\n");
        let new = config(
            "[[ports]]\nport = 82\n[[ports]]\nport = 81\nrole = \"backend\"\n[[ports]]\nport = 83\n",
        );
        assert_eq!(
            port_changes(&running.ports, &new.ports),
            (vec![82, 83], vec![80])
        );
        assert_eq!(describe_port(&new.ports[1]), "81:backend");
        assert_eq!(
            changed_sections(&running, &new).count(),
            0,
            "ports are reported on their own"
        );
    }

    #[test]
    fn problems_spanning_lines_are_logged_on_one() {
        assert_eq!(
            one_line("x.toml: error at line 3\n  \n  unknown field `colour`\n"),
            "x.toml: error at line 3; unknown field `colour`"
        );
    }

    #[test]
    fn live_sections_are_named_when_changed() {
        let running = config("[[ports]]\nport = 80\n");
        let new = config(
            "[[ports]]\nport = 80\n[rate_limit]\nmax_alerts = 1\n[rules]\ndisabled = [\"upgrade-101-missing-connection-option\"]\n[[silence]]\nrole = \"backend\"\ncomment = \"c\"\n",
        );
        assert_eq!(
            changed_sections(&running, &new).collect::<Vec<_>>(),
            ["rate_limit", "rules", "silence"]
        );
    }
}
