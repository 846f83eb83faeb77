//! Exchanges for rule tests, made the way the pipeline makes them: the
//! client's and server's bytes through the real HTTP tracker.

use std::net::SocketAddr;

use super::{evaluate, Context, Finding, Offer, Rule, Severity, Violation};
use crate::{
    http::{Exchange, HttpLimits, HttpOutput, HttpTracker},
    stream::{CloseReason, ConnectionId, StreamEvent},
};

pub fn client() -> SocketAddr {
    "192.0.2.1:40000".parse().unwrap()
}

pub fn server() -> SocketAddr {
    "192.0.2.2:8080".parse().unwrap()
}

/// The exchanges the tracker reports for a connection whose client sent
/// `client_bytes` and whose server then answered `server_bytes`.
pub fn exchanges(client_bytes: &[u8], server_bytes: &[u8]) -> Vec<Exchange> {
    conversation(&[(Peer::Client, client_bytes), (Peer::Server, server_bytes)])
}

/// The one exchange of a connection that carried `pieces`.
fn only_exchange(pieces: &[(Peer, &[u8])]) -> Exchange {
    let mut all = conversation(pieces);
    assert_eq!(all.len(), 1, "one exchange expected");
    all.remove(0)
}

/// What `rule` says of `exchange`.
fn check_exchange(rule: &Rule, exchange: &Exchange, context: &Context) -> Option<Violation> {
    (rule.check)(exchange, &Offer::of(exchange), context)
}

/// The one exchange of a request and its response.
pub fn exchange(request: &[u8], response: &[u8]) -> Exchange {
    only_exchange(&[(Peer::Client, request), (Peer::Server, response)])
}

/// What `rule` says of the exchange of `request` and `response`.
pub fn check(rule: &Rule, request: &[u8], response: &[u8]) -> Option<Violation> {
    check_with(rule, request, response, &Context::default())
}

pub fn check_with(
    rule: &Rule,
    request: &[u8],
    response: &[u8],
    context: &Context,
) -> Option<Violation> {
    check_exchange(rule, &exchange(request, response), context)
}

/// What `rule` says of a request and its response, expected to fire: its message.
pub fn message(rule: &Rule, request: &[u8], response: &[u8]) -> String {
    check(rule, request, response)
        .unwrap_or_else(|| panic!("{} fires", rule.id))
        .message
}

/// Every finding of the whole catalogue on one exchange.
pub fn findings(request: &[u8], response: &[u8]) -> Vec<Finding> {
    evaluate(&exchange(request, response), &Context::default())
}

/// The one exchange of a connection whose client sent `request`, whose
/// server answered `response`, and whose client then sent `client_after`
/// (after a 101: its first bytes of the new protocol, sent once the 101
/// arrived rather than optimistically).
pub fn exchange_after_answer(request: &[u8], response: &[u8], client_after: &[u8]) -> Exchange {
    only_exchange(&[
        (Peer::Client, request),
        (Peer::Server, response),
        (Peer::Client, client_after),
    ])
}

/// What `rule` says of [`exchange_after_answer`].
pub fn check_after_answer(
    rule: &Rule,
    request: &[u8],
    response: &[u8],
    client_after: &[u8],
) -> Option<Violation> {
    check_exchange(
        rule,
        &exchange_after_answer(request, response, client_after),
        &Context::default(),
    )
}

/// Every finding of the whole catalogue on [`exchange_after_answer`].
pub fn findings_after_answer(request: &[u8], response: &[u8], client_after: &[u8]) -> Vec<Finding> {
    evaluate(
        &exchange_after_answer(request, response, client_after),
        &Context::default(),
    )
}

/// Who sends a piece of a [`conversation`].
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Client,
    Server,
}

/// The exchanges the tracker reports for a connection that carried
/// `pieces`, in this order, and then closed.
pub fn conversation(pieces: &[(Peer, &[u8])]) -> Vec<Exchange> {
    let id = ConnectionId(1);
    let mut tracker = HttpTracker::new(HttpLimits::default());
    let mut out = Vec::new();
    tracker.handle(
        &StreamEvent::Opened {
            id,
            first: client(),
            second: server(),
            syn_sender: Some(client()),
            midstream: false,
            interface: Some(1),
            timestamp_ns: 1,
        },
        &mut out,
    );
    let mut offsets = [0u64; 2];
    for (at, (peer, bytes)) in pieces.iter().enumerate() {
        let (src, offset) = match peer {
            Peer::Client => (client(), &mut offsets[0]),
            Peer::Server => (server(), &mut offsets[1]),
        };
        let event = StreamEvent::Data {
            id,
            src,
            offset: *offset,
            bytes,
            timestamp_ns: 2 + at as u64,
        };
        *offset += bytes.len() as u64;
        tracker.handle(&event, &mut out);
    }
    tracker.handle(
        &StreamEvent::Closed {
            id,
            reason: CloseReason::Fin,
            timestamp_ns: 2 + pieces.len() as u64,
        },
        &mut out,
    );
    out.into_iter()
        .filter_map(|output| match output {
            HttpOutput::Exchange(exchange) => Some(exchange),
            HttpOutput::Gate(_) => None,
        })
        .collect()
}

/// What `rule` says of each exchange of a [`conversation`].
pub fn checks(rule: &Rule, pieces: &[(Peer, &[u8])]) -> Vec<Option<Violation>> {
    conversation(pieces)
        .iter()
        .map(|exchange| check_exchange(rule, exchange, &Context::default()))
        .collect()
}

/// Whether `finding` is at warning or above and comes from one of `rules`.
pub fn is_serious_in(rules: &[&Rule], finding: &Finding) -> bool {
    finding.severity >= Severity::Warning && rules.iter().any(|r| r.id == finding.rule.id)
}
