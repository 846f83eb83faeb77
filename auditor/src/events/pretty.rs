//! `--format pretty`: events for a person at a terminal, a few lines each.

use std::fmt::Write as _;

use super::{format_timestamp, Event, EventBody, Flow};
use crate::rules::{Outcome, Severity};

const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// `colour`: ANSI colours for a terminal: an alert's severity in its colour,
/// its rule id in bold.
pub fn render(event: &Event, colour: bool) -> String {
    let time = format_timestamp(event.timestamp_ns);
    let mut out = String::new();
    match &event.body {
        EventBody::Alert(alert) => {
            let a = &alert.alert;
            let mut severity = a.severity.to_string().to_uppercase();
            let mut rule = a.rule.to_owned();
            if colour {
                severity = format!("{}{severity}{RESET}", severity_colour(a.severity));
                rule = format!("{BOLD}{rule}{RESET}");
            }
            let _ = writeln!(out, "{time} {severity} {rule} on {}", flow(&alert.flow));
            let _ = writeln!(out, "  {}", a.message);
            if let Some(suppressed) = a.suppressed {
                let _ = writeln!(out, "  {suppressed} more held back by the rate limit");
            }
            let _ = writeln!(out, "  spec: {}", a.spec);
            let _ = writeln!(out, "  fix:  {}", a.remediation);
            for (outcome, word) in [
                (Outcome::Breaks, "breaks"),
                (Outcome::Tolerates, "tolerates"),
            ] {
                let proxies: Vec<String> = a
                    .proxy_impact
                    .iter()
                    .filter(|impact| impact.outcome == outcome)
                    .map(|impact| format!("{} ({})", impact.proxy, impact.effect))
                    .collect();
                if !proxies.is_empty() {
                    let _ = writeln!(out, "  {word}: {}", proxies.join("; "));
                }
            }
        }
        EventBody::Handshake(handshake) => {
            let h = &handshake.handshake;
            let outcome = serde_json::to_value(h.outcome).unwrap_or_default();
            let _ = writeln!(
                out,
                "{time} handshake {} offered {} on {}{}{}",
                outcome.as_str().unwrap_or("?"),
                h.protocols_offered.join(", "),
                flow(&handshake.flow),
                h.protocol
                    .as_ref()
                    .map(|p| format!(", switched to {p}"))
                    .unwrap_or_default(),
                if h.rules.is_empty() {
                    String::new()
                } else {
                    format!(", rules: {}", h.rules.join(", "))
                },
            );
        }
        EventBody::Loss { loss } => {
            let counts = serde_json::to_value(loss).unwrap_or_default();
            let nonzero: Vec<String> = counts
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, value)| value.as_u64() != Some(0))
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let _ = writeln!(out, "{time} loss {}", nonzero.join(" "));
        }
        EventBody::Stats { stats } => {
            let _ = writeln!(
                out,
                "{time} stats {}",
                serde_json::to_string(stats).unwrap_or_default()
            );
        }
    }
    out
}

fn severity_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "\x1b[1;31m",
        Severity::Error => "\x1b[31m",
        Severity::Warning => "\x1b[33m",
        Severity::Info => "\x1b[36m",
    }
}

fn flow(flow: &Flow) -> String {
    let role = flow.role.map(|r| format!(" ({r})")).unwrap_or_default();
    let interface = flow
        .interface
        .as_ref()
        .map(|i| format!(" on {i}"))
        .unwrap_or_default();
    format!(
        "{} → {}{role}{interface}",
        std::net::SocketAddr::new(flow.src_ip, flow.src_port),
        std::net::SocketAddr::new(flow.dest_ip, flow.dest_port)
    )
}
