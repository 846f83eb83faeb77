//! The `upgrade-*` rules: HTTP/1.1 upgrades whatever the protocol (RFC 9110 §7.6.1, §7.8, §15.2, §15.5.22; RFC 9112).

use super::view::{
    is_protocol_token, joined_values, not_exactly_one, offer_match, switch_response, OfferMatch,
};
use super::{Context, Offer, Outcome::*, ProxyImpact, Reads, Rule, Scope, Severity, Violation};
use crate::http::{Exchange, HttpVersion};

pub(super) static RULES: &[&Rule] = &[
    &UPGRADE_101_MISSING_CONNECTION_OPTION,
    &UPGRADE_101_MISSING_UPGRADE,
    &UPGRADE_101_PROTOCOL_NOT_OFFERED,
    &UPGRADE_101_UNSOLICITED,
    &UPGRADE_101_TO_HTTP10,
    &UPGRADE_101_HAS_CONTENT_LENGTH,
    &UPGRADE_101_HAS_TRANSFER_ENCODING,
    &UPGRADE_101_BEFORE_100_CONTINUE,
    &UPGRADE_426_MISSING_UPGRADE,
    &UPGRADE_REQUEST_MISSING_CONNECTION_OPTION,
    &UPGRADE_REQUEST_HOST_INVALID,
    &UPGRADE_INVALID_TOKEN,
    &UPGRADE_PROTOCOL_CASE_DIFFERS,
    &UPGRADE_101_PICKS_FROM_LIST,
    &UPGRADE_REQUEST_PIPELINED,
    &UPGRADE_EARLY_DATA,
    &UPGRADE_TUNNEL_WITHOUT_101,
];

/// What the proxies of the matrix do with a 101 whose `Connection` lacks `upgrade`.
const MISSING_CONNECTION_OPTION_IMPACT: &[ProxyImpact] = &[
    ProxyImpact {
        proxy: "Caddy",
        outcome: Breaks,
        effect: "the client receives an empty 200; logged only at debug level: \"backend tried to switch to unexpected protocol via Upgrade header\"",
    },
    ProxyImpact {
        proxy: "Go net/http/httputil.ReverseProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway: \"backend tried to switch protocol\"",
    },
    ProxyImpact {
        proxy: "Traefik",
        outcome: Breaks,
        effect: "500 with Go's \"backend tried to switch protocol\" error",
    },
    ProxyImpact {
        proxy: "HAProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway",
    },
    ProxyImpact {
        proxy: "Envoy",
        outcome: Breaks,
        effect: "the upgrade is not tunnelled",
    },
    ProxyImpact {
        proxy: "Node http-proxy",
        outcome: Breaks,
        effect: "the client's socket is destroyed",
    },
    ProxyImpact {
        proxy: "nginx",
        outcome: Tolerates,
        effect: "passes the switch on and writes `Connection: upgrade` itself",
    },
    ProxyImpact {
        proxy: "Apache mod_proxy_http",
        outcome: Tolerates,
        effect: "passes the switch on",
    },
];

const GO_REJECTS_PROTOCOL: ProxyImpact = ProxyImpact {
    proxy: "Go net/http/httputil.ReverseProxy",
    outcome: Breaks,
    effect: "502 Bad Gateway: backend tried to switch protocol \"X\" when \"Y\" was requested (it compares the whole `Upgrade` header strings)",
};

const TRAEFIK_REJECTS_PROTOCOL: ProxyImpact = ProxyImpact {
    proxy: "Traefik",
    outcome: Breaks,
    effect: "500 with Go's \"backend tried to switch protocol\" error",
};

const CADDY_REJECTS_PROTOCOL: ProxyImpact = ProxyImpact {
    proxy: "Caddy",
    outcome: Breaks,
    effect: "the client receives an empty 200; logged only at debug level: \"backend tried to switch to unexpected protocol via Upgrade header\"",
};

const APACHE_REJECTS_PROTOCOL: ProxyImpact = ProxyImpact {
    proxy: "Apache mod_proxy_http",
    outcome: Breaks,
    effect: "502 Bad Gateway: \"AH00898: Unexpected Upgrade: X (expecting Y)\"",
};

const NGINX_PASSES: ProxyImpact = ProxyImpact {
    proxy: "nginx",
    outcome: Tolerates,
    effect: "passes the switch on",
};

/// The proxies that require the 101's `Upgrade` to equal the request's.
const PROTOCOL_COMPARED_IMPACT: &[ProxyImpact] = &[
    GO_REJECTS_PROTOCOL,
    TRAEFIK_REJECTS_PROTOCOL,
    CADDY_REJECTS_PROTOCOL,
    APACHE_REJECTS_PROTOCOL,
    NGINX_PASSES,
];

/// As [`PROTOCOL_COMPARED_IMPACT`], with the proxies that do not compare
/// the protocols at all.
const PROTOCOL_MISMATCH_IMPACT: &[ProxyImpact] = &[
    GO_REJECTS_PROTOCOL,
    TRAEFIK_REJECTS_PROTOCOL,
    CADDY_REJECTS_PROTOCOL,
    APACHE_REJECTS_PROTOCOL,
    NGINX_PASSES,
    ProxyImpact {
        proxy: "HAProxy",
        outcome: Tolerates,
        effect: "does not compare the protocols",
    },
    ProxyImpact {
        proxy: "Envoy",
        outcome: Tolerates,
        effect: "does not compare the protocols",
    },
    ProxyImpact {
        proxy: "Node http-proxy",
        outcome: Tolerates,
        effect: "does not compare the protocols",
    },
];

const CASE_IGNORED_IMPACT: &[ProxyImpact] = &[
    ProxyImpact {
        proxy: "Go net/http/httputil.ReverseProxy",
        outcome: Tolerates,
        effect: "compares the protocols case-insensitively",
    },
    ProxyImpact {
        proxy: "Traefik",
        outcome: Tolerates,
        effect: "compares the protocols case-insensitively (Go's ReverseProxy)",
    },
    ProxyImpact {
        proxy: "Caddy",
        outcome: Tolerates,
        effect: "lower-cases both protocols before comparing them",
    },
    ProxyImpact {
        proxy: "Apache mod_proxy_http",
        outcome: Tolerates,
        effect: "compares the protocols case-insensitively",
    },
];

/// What the proxies of the matrix do with `Content-Length` or
/// `Transfer-Encoding` on a 1xx.
const FRAMING_ON_1XX_IMPACT: &[ProxyImpact] = &[
    ProxyImpact {
        proxy: "Envoy",
        outcome: Breaks,
        effect: "codec error: the response is refused and the upgrade is not tunnelled",
    },
    NGINX_PASSES,
];

pub(super) static UPGRADE_101_MISSING_CONNECTION_OPTION: Rule = Rule {
    id: "upgrade-101-missing-connection-option",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8, §7.6.1",
    checks: "A 101 carries `Upgrade` but its `Connection` has no `upgrade` element.",
    spec_text: "RFC 9110 §7.8: \"A sender of Upgrade MUST also send an \"Upgrade\" connection option in the Connection header field (Section 7.6.1) to inform intermediaries not to forward this field.\"",
    remediation: "Make the server send `Connection: upgrade` with every `101 Switching Protocols` that carries `Upgrade` (for Proxmox Backup Server behind a proxy, or any custom protocol: add the header in the server, or have the proxy add it).",
    proxy_impact: MISSING_CONNECTION_OPTION_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let response = exchange.response.as_ref().filter(|r| r.line.status == 101)?;
        if !offer.switch_carries_upgrade || response.has_element("connection", "upgrade")
        {
            return None;
        }
        Some(Violation::new(format!(
            "the 101 carried `Upgrade: {}` but {}",
            joined_values(response.header_values("upgrade")),
            connection_without_upgrade(response.header_values("connection"))
        )))
    },
};

/// How a head's `Connection` (its field values as sent) lacks `upgrade`,
/// for a message.
fn connection_without_upgrade<'a>(connection: impl Iterator<Item = &'a [u8]>) -> String {
    let connection = joined_values(connection);
    if connection.is_empty() {
        "no `Connection`".to_owned()
    } else {
        format!("`Connection: {connection}`, without `upgrade`")
    }
}

/// The request's `Upgrade` as sent, for a message.
fn offered(exchange: &Exchange) -> String {
    exchange
        .request
        .as_ref()
        .map_or_else(String::new, |request| {
            joined_values(request.header_values("upgrade"))
        })
}

pub(super) static UPGRADE_101_MISSING_UPGRADE: Rule = Rule {
    id: "upgrade-101-missing-upgrade",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8, §15.2.2",
    checks: "A 101 has no `Upgrade` field at all.",
    spec_text: "RFC 9110 §7.8: \"A server that sends a 101 (Switching Protocols) response MUST send an Upgrade header field to indicate the new protocol(s) to which the connection is being switched\"; §15.2.2: \"The server MUST generate an Upgrade header field in the response that indicates which protocol(s) will be in effect after this response.\"",
    remediation: "Make the server send `Upgrade` with the protocol it switches to (e.g. `Upgrade: websocket`) and `Connection: upgrade` in every `101 Switching Protocols`.",
    proxy_impact: PROTOCOL_COMPARED_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        switch_response(exchange)?;
        if offer.switch_carries_upgrade {
            return None;
        }
        Some(Violation::new(if offer.protocols.is_empty() {
            "the 101 carried no `Upgrade`".to_owned()
        } else {
            format!(
                "the 101 carried no `Upgrade` (the request offered `Upgrade: {}`)",
                offered(exchange)
            )
        }))
    },
};

pub(super) static UPGRADE_101_PROTOCOL_NOT_OFFERED: Rule = Rule {
    id: "upgrade-101-protocol-not-offered",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8",
    checks: "A protocol in the 101's `Upgrade` is not in the request's offer (names compared case-insensitively; a version the 101 gives must equal the offered one).",
    spec_text: "RFC 9110 §7.8: \"A server MUST NOT switch to a protocol that was not indicated by the client in the corresponding request's Upgrade header field.\"",
    remediation: "Make the server answer with one of the protocols the client listed in its `Upgrade` (and its version, if it names one), or decline the upgrade with a non-101 response.",
    proxy_impact: PROTOCOL_MISMATCH_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        switch_response(exchange).filter(|_| offer.is_offer)?;
        let not_offered: Vec<String> = offer
            .switched_protocols
            .iter()
            .filter(|chosen| offer_match(offer, chosen) == OfferMatch::NotOffered)
            .map(|chosen| format!("`{chosen}`"))
            .collect();
        if not_offered.is_empty() {
            return None;
        }
        Some(Violation::new(format!(
            "the 101 switched to {}, which the request's `Upgrade: {}` did not offer",
            not_offered.join(", "),
            offered(exchange)
        )))
    },
};

pub(super) static UPGRADE_101_UNSOLICITED: Rule = Rule {
    id: "upgrade-101-unsolicited",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8",
    checks: "A 101 answers a request that made no upgrade offer (no `Upgrade`, or `Upgrade` without the `upgrade` connection option).",
    spec_text: "RFC 9110 §7.8: \"A server MUST NOT switch to a protocol that was not indicated by the client in the corresponding request's Upgrade header field.\"",
    remediation: "Make the server switch protocols only in answer to a request carrying both `Upgrade` and `Connection: upgrade`; if the client means to upgrade, make it send both.",
    proxy_impact: PROTOCOL_COMPARED_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let response = switch_response(exchange).filter(|_| !offer.is_offer)?;
        let request = exchange.request.as_ref()?;
        let switched_to = joined_values(response.header_values("upgrade"));
        let answered = if switched_to.is_empty() {
            "the 101".to_owned()
        } else {
            format!("the 101 to `Upgrade: {switched_to}`")
        };
        Some(Violation::new(
            if request.header_values("upgrade").next().is_none() {
                format!("{answered} answered a request with no `Upgrade`")
            } else {
                format!(
                    "{answered} answered a request whose `Upgrade: {}` came with {}",
                    offered(exchange),
                    connection_without_upgrade(request.header_values("connection"))
                )
            },
        ))
    },
};

pub(super) static UPGRADE_101_TO_HTTP10: Rule = Rule {
    id: "upgrade-101-to-http10",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8, §15.2",
    checks: "A 101 (or any 1xx) answers an `HTTP/1.0` request.",
    spec_text: "RFC 9110 §15.2: \"Since HTTP/1.0 did not define any 1xx status codes, a server MUST NOT send a 1xx response to an HTTP/1.0 client.\"; §7.8: \"A server that receives an Upgrade header field in an HTTP/1.0 request MUST ignore that Upgrade field.\"",
    remediation: "Make the server ignore `Upgrade` and `Expect` in HTTP/1.0 requests and answer them with a final response; a client that means to upgrade must send HTTP/1.1.",
    proxy_impact: &[],
    scope: Scope::Any,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        let request = exchange.request.as_ref()?;
        if request.version != HttpVersion::Http10 {
            return None;
        }
        let informational: Vec<String> = exchange
            .interim
            .iter()
            .chain(&exchange.response)
            .filter(|r| (100..200).contains(&r.line.status))
            .map(|r| format!("`{}`", r.line.status))
            .collect();
        if informational.is_empty() {
            return None;
        }
        Some(Violation::new(format!(
            "the `HTTP/1.0` request was answered with {}",
            informational.join(", ")
        )))
    },
};

/// A 101 that carries the framing field `name` (spelled `shown` in the
/// message), which no 1xx may carry.
fn framing_field_on_101(exchange: &Exchange, name: &str, shown: &str) -> Option<Violation> {
    let response = switch_response(exchange)?;
    response.header_values(name).next()?;
    Some(Violation::new(format!(
        "the 101 carried `{shown}: {}`",
        joined_values(response.header_values(name))
    )))
}

pub(super) static UPGRADE_101_HAS_CONTENT_LENGTH: Rule = Rule {
    id: "upgrade-101-has-content-length",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §8.6",
    checks: "A 101 carries `Content-Length`.",
    spec_text: "RFC 9110 §8.6: \"A server MUST NOT send a Content-Length header field in any response with a status code of 1xx (Informational) or 204 (No Content).\"",
    remediation: "Remove `Content-Length` from the server's `101 Switching Protocols` (frameworks often add `Content-Length: 0` to every response: exempt 1xx).",
    proxy_impact: FRAMING_ON_1XX_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        framing_field_on_101(exchange, "content-length", "Content-Length")
    },
};

pub(super) static UPGRADE_101_HAS_TRANSFER_ENCODING: Rule = Rule {
    id: "upgrade-101-has-transfer-encoding",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9112 §6.1",
    checks: "A 101 carries `Transfer-Encoding`.",
    spec_text: "RFC 9112 §6.1: \"A server MUST NOT send a Transfer-Encoding header field in any response with a status code of 1xx (Informational) or 204 (No Content).\"",
    remediation: "Remove `Transfer-Encoding` from the server's `101 Switching Protocols`: the new protocol starts right after the blank line, nothing is chunked.",
    proxy_impact: FRAMING_ON_1XX_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        framing_field_on_101(exchange, "transfer-encoding", "Transfer-Encoding")
    },
};

pub(super) static UPGRADE_101_BEFORE_100_CONTINUE: Rule = Rule {
    id: "upgrade-101-before-100-continue",
    severity: Severity::Warning,
    actor: "server",
    spec: "RFC 9110 §7.8",
    checks: "The offer also had `Expect: 100-continue`, and the 101 came without a 100 before it.",
    spec_text: "RFC 9110 §7.8: \"If a server receives both an Upgrade and an Expect header field with the \"100-continue\" expectation (Section 10.1.1), the server MUST send a 100 (Continue) response before sending a 101 (Switching Protocols) response.\"",
    remediation: "Make the server send `100 Continue` (and read the request body) before its `101 Switching Protocols` when the offer carries `Expect: 100-continue`.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        switch_response(exchange).filter(|_| offer.is_offer)?;
        let request = exchange.request.as_ref()?;
        let expects_continue = request.has_element("expect", "100-continue");
        if !expects_continue || exchange.interim.iter().any(|r| r.line.status == 100) {
            return None;
        }
        Some(Violation::new(
            "the offer carried `Expect: 100-continue` but the 101 came without a `100` before it",
        ))
    },
};

pub(super) static UPGRADE_426_MISSING_UPGRADE: Rule = Rule {
    id: "upgrade-426-missing-upgrade",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §15.5.22",
    checks: "A 426 response has no `Upgrade` field.",
    spec_text: "RFC 9110 §15.5.22: \"The server MUST send an Upgrade header field in a 426 response to indicate the required protocol(s) (Section 7.8).\"",
    remediation: "Make the server name the required protocol(s) in `Upgrade` (with `Connection: upgrade`) on every `426 Upgrade Required`.",
    proxy_impact: &[],
    scope: Scope::Any,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        let response = exchange.response.as_ref().filter(|r| r.line.status == 426)?;
        if response.header_values("upgrade").next().is_some() {
            return None;
        }
        Some(Violation::new("the 426 carried no `Upgrade`"))
    },
};

pub(super) static UPGRADE_REQUEST_MISSING_CONNECTION_OPTION: Rule = Rule {
    id: "upgrade-request-missing-connection-option",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 9110 §7.8",
    checks: "A request carries `Upgrade` but its `Connection` has no `upgrade` element, so it is no offer: strict proxies and servers treat it as a plain request.",
    spec_text: "RFC 9110 §7.8: \"The Upgrade header field only applies to the immediate connection. Therefore, a sender of Upgrade MUST also send an \"Upgrade\" connection option in the Connection header field (Section 7.6.1) to inform intermediaries not to forward this field.\"",
    remediation: "Make the client send `Connection: upgrade` with `Upgrade`; behind a proxy, forward both (nginx: `proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";`).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = exchange.request.as_ref().filter(|_| !offer.is_offer)?;
        request.header_values("upgrade").next()?;
        Some(Violation::new(format!(
            "the request carried `Upgrade: {}` but {}",
            offered(exchange),
            connection_without_upgrade(request.header_values("connection"))
        )))
    },
};

pub(super) static UPGRADE_REQUEST_HOST_INVALID: Rule = Rule {
    id: "upgrade-request-host-invalid",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 9112 §3.2",
    checks: "An HTTP/1.1 upgrade offer has no `Host`, or more than one `Host` field line.",
    spec_text: "RFC 9112 §3.2: \"A client MUST send a Host header field (Section 7.2 of [HTTP]) in all HTTP/1.1 request messages.\" … \"A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request message that lacks a Host header field and to any request message that contains more than one Host header field line or a Host header field with an invalid field value.\"",
    remediation: "Make the client send exactly one `Host` field with the offer (the authority of the target URI); a proxy must not add a second one.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = exchange
            .request
            .as_ref()
            .filter(|r| offer.is_offer && r.version == HttpVersion::Http11)?;
        not_exactly_one(
            "the HTTP/1.1 offer carried",
            "Host",
            request.header_values("host"),
        )
    },
};

pub(super) static UPGRADE_INVALID_TOKEN: Rule = Rule {
    id: "upgrade-invalid-token",
    severity: Severity::Warning,
    actor: "any",
    spec: "RFC 9110 §7.8 (ABNF)",
    checks: "An `Upgrade` element of the request or of a response is not `token [\"/\" token]` (empty, spaces inside, control or non-ASCII bytes).",
    spec_text: "RFC 9110 §7.8: \"Upgrade = #protocol\", \"protocol = protocol-name [\"/\" protocol-version]\", \"protocol-name = token\", \"protocol-version = token\"",
    remediation: "Send `Upgrade` as a comma-separated list of `name` or `name/version` tokens, without spaces inside an element, empty elements or non-ASCII bytes (e.g. `Upgrade: websocket` or `Upgrade: HTTP/2.0, h2c`).",
    proxy_impact: &[],
    scope: Scope::Any,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        // The offer has read the request's `Upgrade` and the 101's: when
        // their elements are all tokens, only the other heads are left.
        let read_by_offer = offer.upgrade_elements_are_tokens;
        // Each head with its sender: the request (`None`) or a response (its status).
        let request = exchange
            .request
            .iter()
            .filter(|_| !read_by_offer)
            .map(|r| (None, &r.headers));
        let final_response = exchange
            .response
            .iter()
            .filter(|r| !(read_by_offer && r.line.status == 101));
        let responses = exchange
            .interim
            .iter()
            .chain(final_response)
            .map(|r| (Some(r.line.status), &r.headers));
        request.chain(responses).find_map(|(status, headers)| {
            // Field lines hold no CR or LF: trimming ASCII whitespace trims spaces and tabs.
            let invalid = headers
                .values("upgrade")
                .flat_map(|value| value.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .find(|element| !is_protocol_token(element))?;
            let sender = status.map_or_else(|| "request".to_owned(), |status| status.to_string());
            let what = if invalid.is_empty() {
                "an empty element".to_owned()
            } else {
                format!(
                    "`{}`, which is not `name[/version]` of tokens",
                    invalid.escape_ascii()
                )
            };
            Some(Violation::new(format!(
                "the {sender}'s `Upgrade: {}` has {what}",
                joined_values(headers.values("upgrade"))
            )))
        })
    },
};

pub(super) static UPGRADE_PROTOCOL_CASE_DIFFERS: Rule = Rule {
    id: "upgrade-protocol-case-differs",
    severity: Severity::Info,
    actor: "server",
    spec: "RFC 9110 §7.8",
    checks: "The 101's protocol matches the offer only when case is ignored (legal; implementations that match exactly break).",
    spec_text: "RFC 9110 §7.8: \"Although protocol names are registered with a preferred case, recipients SHOULD use case-insensitive comparison when matching each protocol-name to supported protocols.\"",
    remediation: "Make the server echo the protocol name with the case the client offered (e.g. `websocket`, not `WebSocket`), so that clients and proxies comparing exactly accept it.",
    proxy_impact: CASE_IGNORED_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        switch_response(exchange).filter(|_| offer.is_offer)?;
        let chosen = offer
            .switched_protocols
            .iter()
            .find(|chosen| offer_match(offer, chosen) == OfferMatch::IgnoringCase)?;
        Some(Violation::new(format!(
            "the 101 switched to `{chosen}` where the request offered `Upgrade: {}`",
            offered(exchange)
        )))
    },
};

pub(super) static UPGRADE_101_PICKS_FROM_LIST: Rule = Rule {
    id: "upgrade-101-picks-from-list",
    severity: Severity::Info,
    actor: "server",
    spec: "RFC 9110 §7.8",
    checks: "The offer listed several protocols and the 101 chose a subset (legal; proxies that compare the whole `Upgrade` header string reject it).",
    spec_text: "RFC 9110 §7.8: \"A server MAY choose to ignore the order of preference indicated by the client and select the new protocol(s) based on other factors, such as the nature of the request or the current load on the server.\"",
    remediation: "Behind Go, Traefik, Caddy or Apache, make the client offer only the protocol it needs (one `Upgrade` element), since those proxies compare the 101's `Upgrade` with the request's as a whole string.",
    proxy_impact: PROTOCOL_MISMATCH_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        switch_response(exchange).filter(|_| offer.protocols.len() > 1)?;
        let chosen = &offer.switched_protocols;
        let all_offered = chosen
            .iter()
            .all(|c| offer_match(offer, c) != OfferMatch::NotOffered);
        if chosen.is_empty() || !all_offered || chosen.len() >= offer.protocols.len() {
            return None;
        }
        Some(Violation::new(format!(
            "the 101 chose `Upgrade: {}` from the offered `Upgrade: {}`",
            chosen.join(", "),
            offered(exchange)
        )))
    },
};

pub(super) static UPGRADE_REQUEST_PIPELINED: Rule = Rule {
    id: "upgrade-request-pipelined",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 9112 §9.3, RFC 9110 §7.8",
    checks: "Another HTTP request follows an upgrade offer on the same connection before the offer's final response.",
    spec_text: "RFC 9110 §7.8: \"If the Upgrade header field is received in a GET request and the server decides to switch protocols, it first responds with a 101 (Switching Protocols) message in HTTP/1.1 and then immediately follows that with the new protocol's equivalent of a response to a GET on the target resource.\" — after a 101, the bytes that follow the offer belong to the new protocol, so a request pipelined behind an offer is never answered as HTTP (RFC 9112 §9.3).",
    remediation: "Make the client wait for the offer's final response before sending another request on the connection (or send it on another connection).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        if !offer.is_offer || !exchange.pipelined_behind {
            return None;
        }
        Some(Violation::new(format!(
            "another request followed the `Upgrade: {}` offer before its final response",
            offered(exchange)
        )))
    },
};

pub(super) static UPGRADE_EARLY_DATA: Rule = Rule {
    id: "upgrade-early-data",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 9110 §7.8, RFC 9931",
    checks: "After an upgrade offer and before its response, the client sent bytes that are not an HTTP request (optimistic upgrade; if the server declines, they are read as HTTP). Error for a WebSocket offer.",
    spec_text: "RFC 9931: \"This document discusses the security considerations that apply to data sent by the client before this request is confirmed and adds new requirements to RFCs 9112 and 9298 to avoid related security issues.\"; RFC 6455 §4.1: \"Once the client's opening handshake has been sent, the client MUST wait for a response from the server before sending any further data.\"",
    remediation: "Make the client wait for the `101 Switching Protocols` before sending bytes of the new protocol; a server or proxy that declines an upgrade should close the connection rather than read what follows as HTTP.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let early = exchange
            .early_data
            .filter(|early| offer.is_offer && !early.looks_like_request)?;
        let violation = Violation::new(format!(
            "the client sent {} bytes that are not an HTTP request after the `Upgrade: {}` offer and before its response",
            early.bytes,
            offered(exchange)
        ));
        Some(if offer.names_websocket() {
            Violation {
                severity: Some(Severity::Error),
                ..violation
            }
        } else {
            violation
        })
    },
};

pub(super) static UPGRADE_TUNNEL_WITHOUT_101: Rule = Rule {
    id: "upgrade-tunnel-without-101",
    severity: Severity::Critical,
    actor: "server / intermediary",
    spec: "RFC 9110 §7.8",
    checks: "After a non-101 final response to an upgrade offer, the next bytes on the connection are not HTTP/1.1 in one direction or the other: a tunnel was opened without a 101 (the WebSocket smuggling pattern).",
    spec_text: "RFC 9110 §7.8: \"A server MAY ignore a received Upgrade header field if it wishes to continue using the current protocol on that connection.\"; §15.2.2: \"The 101 (Switching Protocols) status code indicates that the server understands and is willing to comply with the client's request, via the Upgrade header field (Section 7.8), for a change in the application protocol being used on this connection.\"",
    remediation: "Make the proxy open a tunnel only after the backend's `101 Switching Protocols` (check the status, not just the request's `Upgrade`), and the server speak HTTP/1.1 after any other answer; until then, treat the connection as compromised (requests may be smuggled past the proxy).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let response = exchange.response.as_ref().filter(|r| r.line.status != 101)?;
        let not_http = exchange
            .not_http_after_decline
            .as_ref()
            .filter(|_| offer.is_offer)?;
        Some(Violation::new(format!(
            "after the `{}` to the `Upgrade: {}` offer the {} sent `{}` instead of HTTP/1.1",
            response.line.status,
            offered(exchange),
            if not_http.sent_by_client {
                "client"
            } else {
                "server"
            },
            not_http.first_bytes.escape_ascii()
        )))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{
        check, checks, conversation, findings, is_serious_in, message, Peer,
    };
    use crate::rules::{evaluate, Context};

    const WEBSOCKET_OFFER: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const WEBSOCKET_SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    fn breaking(rule: &Rule) -> Vec<&'static str> {
        rule.proxy_impact
            .iter()
            .filter(|i| i.outcome == Breaks)
            .map(|i| i.proxy)
            .collect()
    }

    #[test]
    fn proxmox_backup_server_101_without_connection() {
        let request = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";
        let violation =
            check(&UPGRADE_101_MISSING_CONNECTION_OPTION, request, response).expect("fires");
        assert_eq!(
            violation.message,
            "the 101 carried `Upgrade: proxmox-backup-protocol-v1` but no `Connection`"
        );
        let breaking: Vec<&str> = UPGRADE_101_MISSING_CONNECTION_OPTION
            .proxy_impact
            .iter()
            .filter(|i| i.outcome == Breaks)
            .map(|i| i.proxy)
            .collect();
        for proxy in ["Caddy", "Go net/http/httputil.ReverseProxy", "HAProxy"] {
            assert!(breaking.contains(&proxy), "{proxy} breaks");
        }
        let nginx = UPGRADE_101_MISSING_CONNECTION_OPTION
            .proxy_impact
            .iter()
            .find(|i| i.proxy == "nginx")
            .unwrap();
        assert_eq!(nginx.outcome, Tolerates);
        assert!(findings(request, response)
            .iter()
            .any(|f| f.rule.id == "upgrade-101-missing-connection-option"));
    }

    #[test]
    fn names_a_connection_header_without_upgrade() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
        let violation = check(
            &UPGRADE_101_MISSING_CONNECTION_OPTION,
            WEBSOCKET_OFFER,
            response,
        )
        .unwrap();
        assert!(violation
            .message
            .contains("`Connection: keep-alive`, without `upgrade`"));
    }

    #[test]
    fn near_misses_stay_silent() {
        for response in [
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert_eq!(check(&UPGRADE_101_MISSING_CONNECTION_OPTION, WEBSOCKET_OFFER, response), None);
        }
        // `notupgrade` is not `upgrade`.
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: notupgrade\r\n\r\n";
        assert!(check(
            &UPGRADE_101_MISSING_CONNECTION_OPTION,
            WEBSOCKET_OFFER,
            response
        )
        .is_some());
    }

    #[test]
    fn a_101_without_upgrade() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_MISSING_UPGRADE, WEBSOCKET_OFFER, response),
            "the 101 carried no `Upgrade` (the request offered `Upgrade: websocket`)"
        );
        assert_eq!(
            check(
                &UPGRADE_101_MISSING_UPGRADE,
                WEBSOCKET_OFFER,
                WEBSOCKET_SWITCH
            ),
            None
        );
    }

    #[test]
    fn a_101_to_a_protocol_not_offered() {
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_PROTOCOL_NOT_OFFERED, WEBSOCKET_OFFER, response),
            "the 101 switched to `h2c`, which the request's `Upgrade: websocket` did not offer"
        );
        // A version the 101 gives must be the offered one.
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: HTTP/2.0\r\nConnection: upgrade\r\n\r\n";
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: HTTP/3.0\r\nConnection: upgrade\r\n\r\n";
        assert!(check(&UPGRADE_101_PROTOCOL_NOT_OFFERED, request, response).is_some());
        for response in [
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: http\r\nConnection: upgrade\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: http/2.0\r\nConnection: upgrade\r\n\r\n",
        ] {
            assert_eq!(
                check(&UPGRADE_101_PROTOCOL_NOT_OFFERED, request, response),
                None
            );
        }
        assert_eq!(
            breaking(&UPGRADE_101_PROTOCOL_NOT_OFFERED),
            [
                "Go net/http/httputil.ReverseProxy",
                "Traefik",
                "Caddy",
                "Apache mod_proxy_http"
            ]
        );
    }

    #[test]
    fn a_101_to_a_request_without_offer() {
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(
                &UPGRADE_101_UNSOLICITED,
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                switch
            ),
            "the 101 to `Upgrade: websocket` answered a request with no `Upgrade`"
        );
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_UNSOLICITED, request, switch),
            "the 101 to `Upgrade: websocket` answered a request whose `Upgrade: websocket` came with `Connection: keep-alive`, without `upgrade`"
        );
        assert_eq!(
            check(&UPGRADE_101_UNSOLICITED, WEBSOCKET_OFFER, switch),
            None
        );
    }

    #[test]
    fn a_1xx_to_http10() {
        let request = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_TO_HTTP10, request, WEBSOCKET_SWITCH),
            "the `HTTP/1.0` request was answered with `101`"
        );
        let declined = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(&UPGRADE_101_TO_HTTP10, request, declined), None);
        assert_eq!(
            check(&UPGRADE_101_TO_HTTP10, WEBSOCKET_OFFER, WEBSOCKET_SWITCH),
            None
        );
    }

    #[test]
    fn framing_fields_on_a_101() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_HAS_CONTENT_LENGTH, WEBSOCKET_OFFER, response),
            "the 101 carried `Content-Length: 0`"
        );
        assert_eq!(
            message(
                &UPGRADE_101_HAS_TRANSFER_ENCODING,
                WEBSOCKET_OFFER,
                response
            ),
            "the 101 carried `Transfer-Encoding: chunked`"
        );
        assert_eq!(breaking(&UPGRADE_101_HAS_TRANSFER_ENCODING), ["Envoy"]);
        let declined = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for rule in [
            &UPGRADE_101_HAS_CONTENT_LENGTH,
            &UPGRADE_101_HAS_TRANSFER_ENCODING,
        ] {
            assert_eq!(check(rule, WEBSOCKET_OFFER, WEBSOCKET_SWITCH), None);
            assert_eq!(check(rule, WEBSOCKET_OFFER, declined), None);
        }
    }

    #[test]
    fn a_101_before_the_expected_100() {
        let request = b"POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: custom\r\nConnection: upgrade\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi";
        let switch =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: custom\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_BEFORE_100_CONTINUE, request, switch),
            "the offer carried `Expect: 100-continue` but the 101 came without a `100` before it"
        );
        let continued = [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], switch].concat();
        assert_eq!(
            check(&UPGRADE_101_BEFORE_100_CONTINUE, request, &continued),
            None
        );
    }

    #[test]
    fn a_426_without_upgrade() {
        let response = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_426_MISSING_UPGRADE, WEBSOCKET_OFFER, response),
            "the 426 carried no `Upgrade`"
        );
        let response = b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check(&UPGRADE_426_MISSING_UPGRADE, WEBSOCKET_OFFER, response),
            None
        );
    }

    #[test]
    fn a_request_with_upgrade_but_no_connection_option() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_REQUEST_MISSING_CONNECTION_OPTION, request, ok),
            "the request carried `Upgrade: websocket` but no `Connection`"
        );
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: notupgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_REQUEST_MISSING_CONNECTION_OPTION, request, ok),
            "the request carried `Upgrade: websocket` but `Connection: notupgrade`, without `upgrade`"
        );
        let split = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\n\r\n";
        assert_eq!(
            check(&UPGRADE_REQUEST_MISSING_CONNECTION_OPTION, split, ok),
            None
        );
    }

    #[test]
    fn an_offer_without_exactly_one_host() {
        let request = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_REQUEST_HOST_INVALID, request, WEBSOCKET_SWITCH),
            "the HTTP/1.1 offer carried no `Host`"
        );
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_REQUEST_HOST_INVALID, request, WEBSOCKET_SWITCH),
            "the HTTP/1.1 offer carried 2 `Host` field lines: `a`, `b`"
        );
        let http10 = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let plain = b"GET / HTTP/1.1\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(&UPGRADE_REQUEST_HOST_INVALID, http10, ok), None);
        assert_eq!(check(&UPGRADE_REQUEST_HOST_INVALID, plain, ok), None);
    }

    #[test]
    fn upgrade_elements_that_are_not_tokens() {
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: web socket\r\nConnection: upgrade\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_INVALID_TOKEN, request, ok),
            "the request's `Upgrade: web socket` has `web socket`, which is not `name[/version]` of tokens"
        );
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket,\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_INVALID_TOKEN, WEBSOCKET_OFFER, response),
            "the 101's `Upgrade: websocket,` has an empty element"
        );
        // Behind a well-formed offer, a response other than a 101 is still read.
        let declined =
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: web socket\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_INVALID_TOKEN, WEBSOCKET_OFFER, declined),
            "the 426's `Upgrade: web socket` has `web socket`, which is not `name[/version]` of tokens"
        );
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: HTTP/2.0, h2c ,\tfoo/1\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(check(&UPGRADE_INVALID_TOKEN, request, ok), None);
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: caf\xc3\xa9/\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_INVALID_TOKEN, request, ok),
            "the request's `Upgrade: caf\u{e9}/` has `caf\\xc3\\xa9/`, which is not `name[/version]` of tokens"
        );
    }

    #[test]
    fn a_101_whose_protocol_differs_in_case() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_PROTOCOL_CASE_DIFFERS, WEBSOCKET_OFFER, response),
            "the 101 switched to `WebSocket` where the request offered `Upgrade: websocket`"
        );
        assert!(breaking(&UPGRADE_PROTOCOL_CASE_DIFFERS).is_empty());
        assert_eq!(
            check(
                &UPGRADE_PROTOCOL_CASE_DIFFERS,
                WEBSOCKET_OFFER,
                WEBSOCKET_SWITCH
            ),
            None
        );
    }

    #[test]
    fn a_101_that_picks_one_of_several() {
        let request =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c\r\nConnection: upgrade\r\n\r\n";
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            message(&UPGRADE_101_PICKS_FROM_LIST, request, response),
            "the 101 chose `Upgrade: websocket` from the offered `Upgrade: websocket, h2c`"
        );
        assert_eq!(
            breaking(&UPGRADE_101_PICKS_FROM_LIST),
            [
                "Go net/http/httputil.ReverseProxy",
                "Traefik",
                "Caddy",
                "Apache mod_proxy_http"
            ]
        );
        assert_eq!(
            check(
                &UPGRADE_101_PICKS_FROM_LIST,
                WEBSOCKET_OFFER,
                WEBSOCKET_SWITCH
            ),
            None
        );
    }

    #[test]
    fn a_request_pipelined_behind_an_offer() {
        let behind = [
            WEBSOCKET_OFFER,
            b"GET /behind HTTP/1.1\r\nHost: example\r\n\r\n",
        ]
        .concat();
        let verdicts = checks(
            &UPGRADE_REQUEST_PIPELINED,
            &[(Peer::Client, &behind), (Peer::Server, WEBSOCKET_SWITCH)],
        );
        assert_eq!(
            verdicts[0].as_ref().unwrap().message,
            "another request followed the `Upgrade: websocket` offer before its final response"
        );
        assert_eq!(verdicts[1], None);
        // Sent once the offer was answered.
        let verdicts = checks(
            &UPGRADE_REQUEST_PIPELINED,
            &[
                (Peer::Client, WEBSOCKET_OFFER),
                (
                    Peer::Server,
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                ),
                (Peer::Client, b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n"),
            ],
        );
        assert!(verdicts.iter().all(Option::is_none));
    }

    #[test]
    fn early_data_behind_an_offer() {
        let optimistic = [WEBSOCKET_OFFER, b"\x81\x84mask"].concat();
        let verdicts = checks(
            &UPGRADE_EARLY_DATA,
            &[
                (Peer::Client, &optimistic),
                (Peer::Server, WEBSOCKET_SWITCH),
            ],
        );
        let violation = verdicts[0].as_ref().unwrap();
        assert_eq!(
            violation.message,
            "the client sent 6 bytes that are not an HTTP request after the `Upgrade: websocket` offer and before its response"
        );
        assert_eq!(violation.severity, Some(Severity::Error));
        let custom =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: custom\r\nConnection: upgrade\r\n\r\n\x00\x01";
        let verdicts = checks(
            &UPGRADE_EARLY_DATA,
            &[
                (Peer::Client, custom),
                (
                    Peer::Server,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                ),
            ],
        );
        assert_eq!(verdicts[0].as_ref().unwrap().severity, None);
        // Sent once the 101 arrived.
        let verdicts = checks(
            &UPGRADE_EARLY_DATA,
            &[
                (Peer::Client, WEBSOCKET_OFFER),
                (Peer::Server, WEBSOCKET_SWITCH),
                (Peer::Client, b"\x81\x84mask"),
            ],
        );
        assert_eq!(verdicts, [None]);
    }

    #[test]
    fn a_tunnel_after_a_declined_offer() {
        let declined = b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n";
        let verdicts = checks(
            &UPGRADE_TUNNEL_WITHOUT_101,
            &[
                (Peer::Client, WEBSOCKET_OFFER),
                (Peer::Server, declined),
                (Peer::Server, b"\x81\x05hello"),
            ],
        );
        assert_eq!(
            verdicts[0].as_ref().unwrap().message,
            "after the `426` to the `Upgrade: websocket` offer the server sent `\\x81\\x05hello` instead of HTTP/1.1"
        );
        let verdicts = checks(
            &UPGRADE_TUNNEL_WITHOUT_101,
            &[
                (Peer::Client, WEBSOCKET_OFFER),
                (Peer::Server, declined),
                (Peer::Client, b"\x81\x84mask"),
            ],
        );
        assert!(verdicts[0]
            .as_ref()
            .unwrap()
            .message
            .contains("the client sent `\\x81\\x84mask`"));
    }

    /// Every generic finding at warning or above, over a conversation.
    fn serious(pieces: &[(Peer, &[u8])]) -> Vec<(&'static str, String)> {
        conversation(pieces)
            .iter()
            .flat_map(|exchange| evaluate(exchange, &Context::default()))
            .filter(|f| is_serious_in(RULES, f))
            .map(|f| (f.rule.id, f.message))
            .collect()
    }

    #[test]
    fn well_formed_upgrades_raise_nothing_serious() {
        let accept = b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let key =
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let head = |lines: &[u8], end: &[u8]| [lines, end].concat();
        let cases: Vec<Vec<(Peer, Vec<u8>)>> = vec![
            // `Connection: keep-alive, Upgrade`.
            vec![
                (Peer::Client, head(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n", key)),
                (Peer::Server, head(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", accept)),
            ],
            // `Connection` over two field lines, in both messages.
            vec![
                (Peer::Client, head(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", key)),
                (Peer::Server, head(b"HTTP/1.1 101 Switching Protocols\r\nConnection: keep-alive\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", accept)),
            ],
            // Mixed case names and values.
            vec![
                (Peer::Client, head(b"GET /chat HTTP/1.1\r\nHOST: a\r\nCONNECTION: UPGRADE\r\nupgrade: WebSocket\r\n", key)),
                (Peer::Server, head(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nUPGRADE: WebSocket\r\n", accept)),
            ],
            // A 100 before the 101.
            vec![
                (Peer::Client, b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: custom/1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".to_vec()),
                (Peer::Server, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
                (Peer::Client, b"hi".to_vec()),
                (Peer::Server, b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: custom/1\r\n\r\n\x00\x01".to_vec()),
                (Peer::Client, b"\x02\x03".to_vec()),
            ],
            // A declined offer, then more HTTP/1.1 requests.
            vec![
                (Peer::Client, head(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", key)),
                (Peer::Server, b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 4\r\n\r\nnope".to_vec()),
                (Peer::Client, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
                (Peer::Server, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            ],
        ];
        for case in &cases {
            let pieces: Vec<(Peer, &[u8])> = case.iter().map(|(p, b)| (*p, b.as_slice())).collect();
            assert!(conversation(&pieces).iter().all(|e| e.quality.complete));
            assert_eq!(serious(&pieces), [], "{case:?}");
        }
    }
}
