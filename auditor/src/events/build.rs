//! From an exchange and its findings to `handshake` and `alert` events.

use std::sync::Arc;

use super::{
    community_id, http::HttpRecord, redact::Redactor, Alert, AlertEvent, Event, EventBody, Flow,
    Handshake, HandshakeEvent, HandshakeOutcome, RedactionAllowlist,
};
use crate::{
    http::Exchange,
    rules::{Finding, Offer, PortRole},
};

/// Where an exchange was seen, and what its events may show.
#[derive(Clone, Copy, Debug)]
pub struct EventContext<'a> {
    /// The capturing machine's host name.
    pub host: &'a Arc<str>,
    /// The name of the interface the exchange was seen on, when known.
    pub interface: Option<&'a str>,
    /// The role configured for the server's port.
    pub role: Option<PortRole>,
    pub allowlist: &'a RedactionAllowlist,
}

/// The `handshake` event when the request is an upgrade offer, then one
/// `alert` per finding, in the findings' order.
///
/// Their timestamp is the capture time of the last head read: the final
/// response's, else the request's.
pub fn events_for(exchange: &Exchange, findings: &[Finding], context: &EventContext) -> Vec<Event> {
    let mut events = Vec::new();
    let findings = findings.to_vec();
    events_for_offer(exchange, &Offer::of(exchange), findings, context, |event| {
        events.push(event)
    });
    events
}

/// [`events_for`], with the exchange's offer already worked out (the rules
/// need it too), handing each event to `emit` as it is built. The alerts
/// take over the findings' messages.
pub fn events_for_offer(
    exchange: &Exchange,
    offer: &Offer,
    findings: Vec<Finding>,
    context: &EventContext,
    mut emit: impl FnMut(Event),
) {
    // Most exchanges (keep-alive requests without an offer, with no
    // finding) make no event: nothing is built for them, not even the
    // redactor.
    if !offer.is_offer && findings.is_empty() {
        return;
    }
    let redactor = Redactor::new(context.allowlist, exchange);
    let timestamp_ns = exchange
        .response_ns
        .or(exchange.request_ns)
        .unwrap_or_default();
    // An exchange's events all show the same flow and request: they share one copy.
    let flow = Arc::new(Flow {
        src_ip: exchange.client.ip(),
        src_port: exchange.client.port(),
        dest_ip: exchange.server.ip(),
        dest_port: exchange.server.port(),
        community_id: community_id::tcp(exchange.client, exchange.server),
        interface: context.interface.map(str::to_owned),
        role: context.role,
    });
    let http = Arc::new(HttpRecord::of(exchange, &redactor));
    let capture = exchange.quality;
    let handshake = handshake(exchange, offer, &findings, &redactor).map(|handshake| {
        EventBody::Handshake(HandshakeEvent {
            flow: Arc::clone(&flow),
            http: Arc::clone(&http),
            capture,
            handshake,
        })
    });
    let alerts = findings.into_iter().map(|finding| {
        let rule = finding.rule;
        EventBody::Alert(AlertEvent {
            flow: Arc::clone(&flow),
            http: Arc::clone(&http),
            capture,
            alert: Alert {
                rule: rule.id,
                severity: finding.severity,
                actor: rule.actor,
                spec: rule.spec,
                message: redactor.redacted(finding.message),
                remediation: rule.remediation,
                proxy_impact: rule.proxy_impact,
                suppressed: None,
                interval_s: None,
            },
        })
    });
    for body in handshake.into_iter().chain(alerts) {
        emit(Event::new(timestamp_ns, Arc::clone(context.host), body));
    }
}

/// None unless the request is an upgrade offer.
fn handshake(
    exchange: &Exchange,
    offer: &Offer,
    findings: &[Finding],
    redactor: &Redactor<'_>,
) -> Option<Handshake> {
    if !offer.is_offer {
        return None;
    }
    let (outcome, protocol) = match &exchange.response {
        Some(response) if response.line.status == 101 => {
            let protocols = offer.switched_protocols.iter().map(|p| p.as_bytes());
            let protocol = redactor.joined_fields("upgrade", protocols);
            (HandshakeOutcome::Switched, protocol)
        }
        Some(_) => (HandshakeOutcome::Declined, None),
        None => (HandshakeOutcome::Incomplete, None),
    };
    let latency_us = match (exchange.request_ns, exchange.response_ns) {
        (Some(request_ns), Some(response_ns)) => {
            Some(response_ns.saturating_sub(request_ns) / 1_000)
        }
        _ => None,
    };
    Some(Handshake {
        protocols_offered: offer
            .protocols
            .iter()
            .map(|protocol| redactor.text(protocol))
            .collect(),
        outcome,
        protocol,
        latency_us,
        rules: findings.iter().map(|finding| finding.rule.id).collect(),
    })
}
