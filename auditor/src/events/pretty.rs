//! `--format pretty`: events for a person at a terminal: a block per alert,
//! a line for each other event.

use std::fmt::Write as _;

use super::{Event, EventBody, Flow, Timestamp};
use crate::rules::{Outcome, Severity};

/// An alert's details follow a label column this wide, wrapped at
/// [`LINE_WIDTH`].
const LABEL_WIDTH: usize = 10;
const LINE_WIDTH: usize = 80;
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// `colour`: ANSI colours for a terminal: an alert's severity in its colour,
/// its rule id in bold.
pub fn render(event: &Event, colour: bool) -> String {
    let time = Timestamp::of(event.timestamp_ns);
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
            let _ = writeln!(out, "{time} {severity} {rule}");
            labelled(&mut out, "seen on", &flow(&alert.flow));
            labelled(&mut out, "what", &a.message);
            if let (Some(suppressed), Some(interval)) = (a.suppressed, a.interval_s) {
                let held_back = format!("{suppressed} more in {interval} s, by the rate limit");
                labelled(&mut out, "held back", &held_back);
            }
            labelled(&mut out, "spec", a.spec);
            labelled(&mut out, "fix", a.remediation);
            for (outcome, word) in [
                (Outcome::Breaks, "breaks"),
                (Outcome::Tolerates, "tolerates"),
            ] {
                let mut label = word;
                for impact in a.proxy_impact.iter().filter(|i| i.outcome == outcome) {
                    labelled(
                        &mut out,
                        label,
                        &format!("{}: {}", impact.proxy, impact.effect),
                    );
                    label = "";
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

/// `  LABEL     content`, the content's words wrapped under itself.
fn labelled(out: &mut String, label: &str, content: &str) {
    let indent = 2 + LABEL_WIDTH + 1;
    let mut line = format!("  {label:<LABEL_WIDTH$} ");
    let mut line_is_empty = true;
    for word in content.split_whitespace() {
        if !line_is_empty && line.chars().count() + 1 + word.chars().count() > LINE_WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            line_is_empty = true;
        }
        if !line_is_empty {
            line.push(' ');
        }
        line.push_str(word);
        line_is_empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
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
