//! `--format pretty`: events for a person at a terminal: a block per alert,
//! a line for each other event.
//!
//! Messages and protocols quote the wire, and interface names may hold
//! control characters too: every character that could steer a terminal or
//! reorder what it shows is written as `\u{…}` ([`escape_controls`]), before
//! colours are added.

use std::{borrow::Cow, fmt::Write as _};

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
            let line = format!(
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
            let _ = writeln!(out, "{}", escape_controls(&line));
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
    for word in escape_controls(content).split_whitespace() {
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

/// `text` with C0 and C1 controls, DEL, and the bidirectional marks,
/// embeddings, overrides and isolates written as `\u{9b}`: they would reach
/// the terminal as commands (CSI, OSC…) or reorder the line on screen.
fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers_terminal) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match steers_terminal(c) {
            true => escaped.extend(c.escape_unicode()),
            false => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn steers_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smallvec::smallvec;

    use super::*;
    use crate::{
        events::{
            events_for, Alert, AlertEvent, EventContext, Handshake, HandshakeEvent,
            HandshakeOutcome, HttpRecord, RedactionAllowlist,
        },
        rules::{self, testing, Context},
    };

    /// Every character the pretty output must not write raw.
    fn steering_characters() -> Vec<char> {
        let c0_del_c1 = (0..0x20_u32).chain(0x7f..=0x9f);
        let bidi = [0x061c, 0x200e, 0x200f]
            .into_iter()
            .chain(0x202a..=0x202e)
            .chain(0x2066..=0x2069);
        c0_del_c1.chain(bidi).filter_map(char::from_u32).collect()
    }

    fn assert_nothing_raw(rendered: &str) {
        let raw: Vec<char> = steering_characters()
            .into_iter()
            .filter(|&c| rendered.contains(c))
            .collect();
        // The one allowed: the newline that ends each line.
        assert_eq!(raw, ['\n'], "{rendered:?}");
        assert!(rendered.ends_with('\n'), "{rendered:?}");
    }

    fn flow(interface: &str) -> Arc<Flow> {
        let client: std::net::SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let server: std::net::SocketAddr = "192.0.2.2:80".parse().unwrap();
        Arc::new(Flow {
            src_ip: client.ip(),
            src_port: client.port(),
            dest_ip: server.ip(),
            dest_port: server.port(),
            community_id: crate::events::community_id::tcp(client, server),
            interface: Some(interface.to_owned()),
            role: None,
        })
    }

    fn capture() -> crate::http::Quality {
        crate::http::Quality::default()
    }

    fn http() -> Arc<HttpRecord> {
        Arc::new(HttpRecord {
            request: None,
            response: None,
            interim: Vec::new(),
        })
    }

    #[test]
    fn controls_and_bidi_marks_from_the_wire_are_escaped() {
        let steering: String = steering_characters().into_iter().collect();
        let text = format!("a{steering}z");
        let rule = rules::catalogue().next().unwrap();
        let alert = Event::new(
            0,
            Arc::from("sensor"),
            EventBody::Alert(AlertEvent {
                flow: flow(&text),
                http: http(),
                capture: capture(),
                alert: Alert {
                    rule: rule.id,
                    severity: Severity::Error,
                    actor: rule.actor,
                    spec: rule.spec,
                    message: format!("the 101 carried `Upgrade: {text}`"),
                    remediation: rule.remediation,
                    proxy_impact: rule.proxy_impact,
                    suppressed: None,
                    interval_s: None,
                },
            }),
        );
        let handshake = Event::new(
            0,
            Arc::from("sensor"),
            EventBody::Handshake(HandshakeEvent {
                flow: flow(&text),
                http: http(),
                capture: capture(),
                handshake: Handshake {
                    protocols_offered: smallvec![text.clone(), "websocket".to_owned()],
                    outcome: HandshakeOutcome::Switched,
                    protocol: Some(text.clone()),
                    latency_us: None,
                    rules: smallvec![],
                },
            }),
        );
        for event in [&alert, &handshake] {
            for colour in [false, true] {
                let rendered = render(event, colour);
                let uncoloured = rendered
                    .replace(severity_colour(Severity::Error), "")
                    .replace(BOLD, "")
                    .replace(RESET, "");
                assert_nothing_raw(&uncoloured);
                assert!(rendered.contains(r"\u{9b}"), "{rendered}");
                assert!(rendered.contains(r"\u{202e}"), "{rendered}");
                assert!(rendered.contains(r"\u{1b}"), "{rendered}");
            }
        }
    }

    #[test]
    fn c1_controls_in_header_values_do_not_reach_the_terminal() {
        let exchange = testing::exchange(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\u{9b}2J\u{202e}\r\nConnection: Upgrade\r\n\r\n"
                .as_bytes(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: y\u{9d}0;title\u{9c}\r\n\r\n".as_bytes(),
        );
        let allowlist = RedactionAllowlist::default();
        let context = EventContext {
            host: &Arc::from("sensor"),
            interface: None,
            role: None,
            allowlist: &allowlist,
        };
        let findings = rules::evaluate(&exchange, &Context::default());
        let events = events_for(&exchange, &findings, &context);
        assert!(events.len() >= 2, "a handshake and an alert: {events:#?}");
        for event in &events {
            let rendered = render(event, false);
            assert_nothing_raw(&rendered);
        }
    }
}
