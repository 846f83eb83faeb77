//! From an exchange and its findings to `handshake` and `alert` events.

use std::{net::SocketAddr, sync::Arc};

use super::{
    community_id, http::HttpRecord, rate_limit::AlertDraft, redact::Redactor, Alert, AlertEvent,
    Event, EventBody, Flow, Handshake, HandshakeEvent, HandshakeOutcome, RedactionAllowlist,
};
use crate::{
    http::{Exchange, Quality},
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
    events_for_offer(exchange, &Offer::of(exchange), findings, context, |made| {
        events.push(match made {
            Made::Handshake(event) => event,
            Made::Alert(alert) => alert.build(),
        })
    });
    events
}

/// What [`events_for_offer`] hands over, in order.
pub enum Made<'a> {
    Handshake(Event),
    /// An alert, for the rate limiter to decide on before it is built.
    Alert(PendingAlert<'a>),
}

/// An alert of an exchange, everything it shares with the exchange's other
/// events made, its own part not yet.
pub struct PendingAlert<'a> {
    timestamp_ns: u64,
    host: &'a Arc<str>,
    flow: &'a Arc<Flow>,
    http: &'a Arc<HttpRecord>,
    capture: Quality,
    finding: Finding,
    redactor: &'a Redactor<'a>,
}

impl PendingAlert<'_> {
    fn with_message(self, message: String) -> Event {
        let rule = self.finding.rule;
        let body = EventBody::Alert(AlertEvent {
            flow: Arc::clone(self.flow),
            http: Arc::clone(self.http),
            capture: self.capture,
            alert: Alert {
                rule: rule.id,
                severity: self.finding.severity,
                actor: rule.actor,
                spec: rule.spec,
                message,
                remediation: rule.remediation,
                proxy_impact: rule.proxy_impact,
                suppressed: None,
                interval_s: None,
            },
        });
        Event::new(self.timestamp_ns, Arc::clone(self.host), body)
    }
}

impl AlertDraft for PendingAlert<'_> {
    fn key(&self) -> (&'static str, SocketAddr) {
        let server = SocketAddr::new(self.flow.dest_ip, self.flow.dest_port);
        (self.finding.rule.id, server)
    }

    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// The alert takes over the finding's message, redacted.
    fn build(mut self) -> Event {
        let message = self
            .redactor
            .redacted(std::mem::take(&mut self.finding.message));
        self.with_message(message)
    }

    fn evidence(self) -> Event {
        self.with_message(String::new())
    }
}

/// [`events_for`], with the exchange's offer already worked out (the rules
/// need it too), handing each event to `emit` as it is made.
pub fn events_for_offer(
    exchange: &Exchange,
    offer: &Offer,
    findings: Vec<Finding>,
    context: &EventContext,
    mut emit: impl FnMut(Made<'_>),
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
    if let Some(handshake) = handshake(exchange, offer, &findings, &redactor) {
        let body = EventBody::Handshake(HandshakeEvent {
            flow: Arc::clone(&flow),
            http: Arc::clone(&http),
            capture,
            handshake,
        });
        emit(Made::Handshake(Event::new(
            timestamp_ns,
            Arc::clone(context.host),
            body,
        )));
    }
    for finding in findings {
        emit(Made::Alert(PendingAlert {
            timestamp_ns,
            host: context.host,
            flow: &flow,
            http: &http,
            capture,
            finding,
            redactor: &redactor,
        }));
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
