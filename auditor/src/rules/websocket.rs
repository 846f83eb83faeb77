//! WebSocket opening handshake rules (RFC 6455 §4, §11.3).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha1::{Digest, Sha1};

use super::view::{decoded_len, field_lines, not_exactly_one, utf8_lossy, Occurrences};
use super::view::{joined_values, switch_response};
use super::{Context, Offer, Outcome::*, ProxyImpact, Reads, Rule, Scope, Severity, Violation};
use crate::http::{Exchange, HttpVersion, RequestHead, ResponseHead};

pub(super) static RULES: &[&Rule] = &[
    &WS_METHOD_NOT_GET,
    &WS_HTTP_VERSION_TOO_OLD,
    &WS_KEY_MISSING,
    &WS_KEY_INVALID,
    &WS_VERSION_NOT_13,
    &WS_101_UPGRADE_NOT_WEBSOCKET,
    &WS_101_ACCEPT_MISSING,
    &WS_101_ACCEPT_MISMATCH,
    &WS_101_TO_INVALID_HANDSHAKE,
    &WS_SUBPROTOCOL_NOT_OFFERED,
    &WS_EXTENSION_NOT_OFFERED,
    &WS_VERSION_REJECTION_MISSING_HEADER,
    &WS_CLIENT_FRAME_UNMASKED,
];

/// RFC 6455 §1.3: appended to the key before hashing it into `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// HAProxy rejects a WebSocket offer whose key is not 24 characters long.
const HAPROXY_KEY_IMPACT: &[ProxyImpact] = &[ProxyImpact {
    proxy: "HAProxy",
    outcome: Breaks,
    effect: "400 Bad Request when `Sec-WebSocket-Key` is not 24 characters long",
}];

/// The proxies of the matrix that compare the 101's protocol with the request's.
const PROTOCOL_MISMATCH_IMPACT: &[ProxyImpact] = &[
    ProxyImpact {
        proxy: "Go net/http/httputil.ReverseProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway: backend tried to switch protocol \"…\" when \"websocket\" was requested",
    },
    ProxyImpact {
        proxy: "Traefik",
        outcome: Breaks,
        effect: "500 with Go's \"backend tried to switch protocol\" error",
    },
    ProxyImpact {
        proxy: "Caddy",
        outcome: Breaks,
        effect: "the client receives an empty 200; logged only at debug level: \"backend tried to switch to unexpected protocol via Upgrade header\"",
    },
    ProxyImpact {
        proxy: "Apache mod_proxy_http",
        outcome: Breaks,
        effect: "502 Bad Gateway: \"AH00898: Unexpected Upgrade: … (expecting websocket)\"",
    },
    ProxyImpact {
        proxy: "nginx",
        outcome: Tolerates,
        effect: "passes the switch on without comparing protocols",
    },
    ProxyImpact {
        proxy: "HAProxy",
        outcome: Tolerates,
        effect: "does not compare the 101's protocol with the request's",
    },
    ProxyImpact {
        proxy: "Envoy",
        outcome: Tolerates,
        effect: "does not compare the 101's protocol with the request's",
    },
    ProxyImpact {
        proxy: "Node http-proxy",
        outcome: Tolerates,
        effect: "does not compare the 101's protocol with the request's",
    },
];

/// The request of a WebSocket offer.
fn websocket_offer<'a>(exchange: &'a Exchange, offer: &Offer) -> Option<&'a RequestHead> {
    exchange
        .request
        .as_ref()
        .filter(|_| offer.names_websocket())
}

/// A WebSocket offer and the 101 that accepted it.
fn websocket_switch<'a>(
    exchange: &'a Exchange,
    offer: &Offer,
) -> Option<(&'a RequestHead, &'a ResponseHead)> {
    Some((
        websocket_offer(exchange, offer)?,
        switch_response(exchange)?,
    ))
}

// What is wrong with a WebSocket offer, as a predicate of "the WebSocket
// offer …": shared by the client rules and `ws-101-to-invalid-handshake`.

/// The client checks of a WebSocket offer, in catalogue order.
#[derive(Clone, Copy)]
enum OfferCheck {
    Method,
    HttpVersion,
    KeyMissing,
    KeyInvalid,
    Version,
}

impl OfferCheck {
    const ALL: [OfferCheck; 5] = [
        OfferCheck::Method,
        OfferCheck::HttpVersion,
        OfferCheck::KeyMissing,
        OfferCheck::KeyInvalid,
        OfferCheck::Version,
    ];

    fn defect(self, request: &RequestHead) -> Option<String> {
        match self {
            OfferCheck::Method => method_defect(request),
            OfferCheck::HttpVersion => http_version_defect(request),
            OfferCheck::KeyMissing => key_missing_defect(request),
            OfferCheck::KeyInvalid => key_invalid_defect(request),
            OfferCheck::Version => version_defect(request),
        }
    }
}

/// What each client check finds wrong with the WebSocket offer of
/// `exchange`, in [`OfferCheck::ALL`] order: worked out once per exchange.
fn offer_defects<'o>(exchange: &Exchange, offer: &'o Offer) -> Option<&'o [Option<String>; 5]> {
    let request = websocket_offer(exchange, offer)?;
    Some(
        offer
            .websocket_defects
            .get_or_init(|| OfferCheck::ALL.map(|check| check.defect(request))),
    )
}

fn method_defect(request: &RequestHead) -> Option<String> {
    (request.line.method != "GET")
        .then(|| format!("used method `{}`, not `GET`", request.line.method))
}

fn http_version_defect(request: &RequestHead) -> Option<String> {
    (request.version == HttpVersion::Http10).then(|| "was sent as `HTTP/1.0`".to_owned())
}

fn key_missing_defect(request: &RequestHead) -> Option<String> {
    request
        .header_values("sec-websocket-key")
        .next()
        .is_none()
        .then(|| "has no `Sec-WebSocket-Key`".to_owned())
}

fn key_invalid_defect(request: &RequestHead) -> Option<String> {
    let value = match Occurrences::of(request.header_values("sec-websocket-key")) {
        Occurrences::None => return None,
        Occurrences::Once(value) => value.trim_ascii(),
        Occurrences::Several(several) => {
            return Some(format!(
                "has {}",
                field_lines("Sec-WebSocket-Key", &several)
            ))
        }
    };
    let shown = || utf8_lossy(value);
    if value.contains(&b',') {
        return Some(format!(
            "has `Sec-WebSocket-Key: {}`, several comma-joined values",
            shown()
        ));
    }
    match decoded_len(&STANDARD, value) {
        Ok(16) => None,
        Ok(len) => Some(format!(
            "has `Sec-WebSocket-Key: {}`, which decodes to {len} bytes instead of 16",
            shown()
        )),
        Err(_) => Some(format!(
            "has `Sec-WebSocket-Key: {}`, which is not strict base64",
            shown()
        )),
    }
}

fn version_defect(request: &RequestHead) -> Option<String> {
    match Occurrences::of(request.header_values("sec-websocket-version")) {
        Occurrences::None => Some("has no `Sec-WebSocket-Version`".to_owned()),
        Occurrences::Once(value) if value.trim_ascii() == b"13" => None,
        Occurrences::Once(value) => Some(format!(
            "has `Sec-WebSocket-Version: {}`, not `13`",
            utf8_lossy(value.trim_ascii())
        )),
        Occurrences::Several(several) => Some(format!(
            "has {}",
            field_lines("Sec-WebSocket-Version", &several)
        )),
    }
}

/// A client rule: what `check` finds wrong with a WebSocket offer.
fn offer_violation(exchange: &Exchange, offer: &Offer, check: OfferCheck) -> Option<Violation> {
    let defect = offer_defects(exchange, offer)?[check as usize].as_ref()?;
    Some(Violation::new(format!("the WebSocket offer {defect}")))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` value, as RFC 6455 §4.2.2 builds it.
fn accept_for(key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(ACCEPT_GUID);
    STANDARD.encode(hasher.finalize())
}

/// Whether the bytes begin with a request line: `METHOD SP target SP HTTP/`.
fn looks_like_request(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    let mut words = line.split(|&b| b == b' ');
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let version = words.next().unwrap_or_default();
    !method.is_empty()
        && method.iter().all(u8::is_ascii_alphabetic)
        && !target.is_empty()
        && version.starts_with(b"HTTP/")
}

pub(super) static WS_METHOD_NOT_GET: Rule = Rule {
    id: "ws-method-not-get",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 6455 §4.1 (2)",
    checks: "A WebSocket offer uses a method other than GET.",
    spec_text: "RFC 6455 §4.1: \"The method of the request MUST be GET, and the HTTP version MUST be at least 1.1.\"",
    remediation: "Send the WebSocket opening handshake as a `GET` request; to carry data with it, use the query string or send it as a message once the connection is open.",
    proxy_impact: &[ProxyImpact {
        proxy: "Node http-proxy",
        outcome: Breaks,
        effect: "the upgrade is not proxied: only GET requests with `Upgrade: websocket` are",
    }],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        offer_violation(exchange, offer, OfferCheck::Method)
    },
};

pub(super) static WS_HTTP_VERSION_TOO_OLD: Rule = Rule {
    id: "ws-http-version-too-old",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 6455 §4.1 (2)",
    checks: "A WebSocket offer is sent as HTTP/1.0.",
    spec_text: "RFC 6455 §4.1: \"The method of the request MUST be GET, and the HTTP version MUST be at least 1.1.\"",
    remediation: "Send the opening handshake as `HTTP/1.1` (check the client library, or a proxy in front of it that downgrades requests to HTTP/1.0, such as nginx without `proxy_http_version 1.1`).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        offer_violation(exchange, offer, OfferCheck::HttpVersion)
    },
};

pub(super) static WS_KEY_MISSING: Rule = Rule {
    id: "ws-key-missing",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 6455 §4.1 (7)",
    checks: "A WebSocket offer has no `Sec-WebSocket-Key`.",
    spec_text: "RFC 6455 §4.1: \"The request MUST include a header field with the name |Sec-WebSocket-Key|. The value of this header field MUST be a nonce consisting of a randomly selected 16-byte value that has been base64-encoded (see Section 4 of [RFC4648]).\"",
    remediation: "Send `Sec-WebSocket-Key` with 16 random bytes, base64-encoded (24 characters), new for every connection; if a proxy removes it, make the proxy forward it.",
    proxy_impact: HAPROXY_KEY_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        offer_violation(exchange, offer, OfferCheck::KeyMissing)
    },
};

pub(super) static WS_KEY_INVALID: Rule = Rule {
    id: "ws-key-invalid",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 6455 §4.1 (7), §11.3.1",
    checks: "A WebSocket offer's `Sec-WebSocket-Key` does not decode (strict base64) to exactly 16 bytes, appears more than once, or holds several comma-joined values.",
    spec_text: "RFC 6455 §4.1: \"The value of this header field MUST be a nonce consisting of a randomly selected 16-byte value that has been base64-encoded (see Section 4 of [RFC4648]).\" §11.3.1: \"The |Sec-WebSocket-Key| header field MUST NOT appear more than once in an HTTP request.\"",
    remediation: "Send exactly one `Sec-WebSocket-Key` holding 16 random bytes in padded standard base64 (24 characters ending in `==`); do not reuse or concatenate keys when retrying or proxying.",
    proxy_impact: HAPROXY_KEY_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        offer_violation(exchange, offer, OfferCheck::KeyInvalid)
    },
};

pub(super) static WS_VERSION_NOT_13: Rule = Rule {
    id: "ws-version-not-13",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 6455 §4.1 (9), §11.3.5",
    checks: "A WebSocket offer's `Sec-WebSocket-Version` is missing, repeated, or not `13`.",
    spec_text: "RFC 6455 §4.1: \"The request MUST include a header field with the name |Sec-WebSocket-Version|. The value of this header field MUST be 13.\" §11.3.5: \"the |Sec-WebSocket-Version| header field MUST NOT appear more than once in an HTTP request.\"",
    remediation: "Send exactly one `Sec-WebSocket-Version: 13`; clients still speaking a draft version (8 and earlier) need upgrading.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        offer_violation(exchange, offer, OfferCheck::Version)
    },
};

pub(super) static WS_101_UPGRADE_NOT_WEBSOCKET: Rule = Rule {
    id: "ws-101-upgrade-not-websocket",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.2 (5.2)",
    checks: "The 101 answering a WebSocket offer does not name `websocket` in `Upgrade`.",
    spec_text: "RFC 6455 §4.2.2: \"If the server chooses to accept the incoming connection, it MUST reply with a valid HTTP response indicating the following. […] 2. An |Upgrade| header field with value \"websocket\" as per RFC 2616 [RFC2616].\"",
    remediation: "Make the server answer a WebSocket offer with `Upgrade: websocket` in its 101 (not another protocol, and not without `Upgrade`).",
    proxy_impact: PROTOCOL_MISMATCH_IMPACT,
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let (_, response) = websocket_switch(exchange, offer)?;
        if offer.switched_to_websocket() {
            return None;
        }
        let upgrade = joined_values(response.header_values("upgrade"));
        Some(Violation::new(if upgrade.is_empty() {
            "the 101 to a WebSocket offer has no `Upgrade`".to_owned()
        } else {
            format!("the 101 to a WebSocket offer has `Upgrade: {upgrade}`, not `websocket`")
        }))
    },
};

pub(super) static WS_101_ACCEPT_MISSING: Rule = Rule {
    id: "ws-101-accept-missing",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.2 (5.4), §11.3.3",
    checks: "The 101 answering a WebSocket offer has no `Sec-WebSocket-Accept`, or more than one.",
    spec_text: "RFC 6455 §4.2.2: \"it MUST reply with a valid HTTP response indicating the following. […] 4. A |Sec-WebSocket-Accept| header field.\" §11.3.3: \"The |Sec-WebSocket-Accept| header MUST NOT appear more than once in an HTTP response.\"",
    remediation: "Make the server send exactly one `Sec-WebSocket-Accept` in its 101: base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")) of the request's `Sec-WebSocket-Key`; a proxy in front must not drop or duplicate it.",
    proxy_impact: &[ProxyImpact {
        proxy: "HAProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway when a 101 to `websocket` has no `Sec-WebSocket-Accept`; a 101 to another protocol is passed on (seen with HAProxy 2.6.12)",
    }],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let (_, response) = websocket_switch(exchange, offer)?;
        not_exactly_one(
            "the 101 to a WebSocket offer has",
            "Sec-WebSocket-Accept",
            response.header_values("sec-websocket-accept"),
        )
    },
};

pub(super) static WS_101_ACCEPT_MISMATCH: Rule = Rule {
    id: "ws-101-accept-mismatch",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.2 (5.4)",
    checks: "The 101's `Sec-WebSocket-Accept` differs from base64(SHA-1(key ‖ GUID)) computed from the request's `Sec-WebSocket-Key`.",
    spec_text: "RFC 6455 §4.2.2: \"A |Sec-WebSocket-Accept| header field. The value of this header field is constructed by concatenating /key/, defined above in step 4 in Section 4.2.2, with the string \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\", taking the SHA-1 hash of this concatenated value to obtain a 20-byte value and base64-encoding (see Section 4 of [RFC4648]) this 20-byte hash.\"",
    remediation: "Compute `Sec-WebSocket-Accept` from the key of this very request, taken verbatim (not decoded, not trimmed of `=`, not from another connection), with the exact GUID `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`, SHA-1 and padded standard base64; a proxy that rewrites the key must rewrite the accept value too.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let (request, response) = websocket_switch(exchange, offer)?;
        // Without exactly one of each there is nothing to compare:
        // `ws-key-missing`, `ws-key-invalid` and `ws-101-accept-missing` say so.
        let Occurrences::Once(key) = Occurrences::of(request.header_values("sec-websocket-key"))
        else {
            return None;
        };
        let Occurrences::Once(accept) =
            Occurrences::of(response.header_values("sec-websocket-accept"))
        else {
            return None;
        };
        let (key, accept) = (key.trim_ascii(), accept.trim_ascii());
        let expected = accept_for(key);
        (accept != expected.as_bytes()).then(|| {
            Violation::new(format!(
                "the 101's `Sec-WebSocket-Accept: {}` differs from `{expected}`, computed from the request's `Sec-WebSocket-Key: {}`",
                utf8_lossy(accept),
                utf8_lossy(key)
            ))
        })
    },
};

pub(super) static WS_101_TO_INVALID_HANDSHAKE: Rule = Rule {
    id: "ws-101-to-invalid-handshake",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.1",
    checks: "A 101 accepted a WebSocket offer that fails `ws-method-not-get`, `ws-http-version-too-old`, `ws-key-missing`, `ws-key-invalid` or `ws-version-not-13`.",
    spec_text: "RFC 6455 §4.2.1: \"If the server, while reading the handshake, finds that the client did not send a handshake that matches the description below […], the server MUST stop processing the client's handshake and return an HTTP response with an appropriate error code (such as 400 Bad Request).\"",
    remediation: "Make the server validate the opening handshake before switching: answer 400 to a non-GET or HTTP/1.0 offer or to a missing or malformed `Sec-WebSocket-Key`, and 426 with `Sec-WebSocket-Version: 13` to another version.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        websocket_switch(exchange, offer)?;
        let defects: Vec<&str> = offer_defects(exchange, offer)?
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!defects.is_empty()).then(|| {
            Violation::new(format!(
                "a 101 accepted a WebSocket offer that {}",
                defects.join(" and ")
            ))
        })
    },
};

pub(super) static WS_SUBPROTOCOL_NOT_OFFERED: Rule = Rule {
    id: "ws-subprotocol-not-offered",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.2, §11.3.4",
    checks: "The 101's `Sec-WebSocket-Protocol` is not one of the offered values, is present when none was offered, is empty, holds several values, or appears twice.",
    spec_text: "RFC 6455 §4.2.2: \"/subprotocol/ Either a single value representing the subprotocol the server is ready to use or null. The value chosen MUST be derived from the client's handshake, specifically by selecting one of the values from the |Sec-WebSocket-Protocol| field […] The empty string is not the same as the null value for these purposes and is not a legal value for this field.\" §11.3.4: \"the |Sec-WebSocket-Protocol| header field MUST NOT appear more than once in an HTTP response.\"",
    remediation: "Make the server echo exactly one of the subprotocols the client listed, spelled as the client spelled it, in a single `Sec-WebSocket-Protocol`, and send no `Sec-WebSocket-Protocol` at all when it agrees to none (or none was offered).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let (request, response) = websocket_switch(exchange, offer)?;
        let chosen = match Occurrences::of(response.header_values("sec-websocket-protocol")) {
            Occurrences::None => return None,
            Occurrences::Once(value) => value.trim_ascii(),
            Occurrences::Several(several) => {
                return Some(Violation::new(format!(
                    "the 101 has {}",
                    field_lines("Sec-WebSocket-Protocol", &several)
                )))
            }
        };
        let offered: Vec<&[u8]> = request
            .header_elements("sec-websocket-protocol")
            .filter(|p| !p.is_empty())
            .collect();
        let shown = utf8_lossy(chosen);
        let message = if chosen.is_empty() {
            "the 101 has an empty `Sec-WebSocket-Protocol`".to_owned()
        } else if chosen.contains(&b',') {
            format!("the 101 has `Sec-WebSocket-Protocol: {shown}`, several values instead of one")
        } else if offered.is_empty() {
            format!("the 101 has `Sec-WebSocket-Protocol: {shown}` but the offer listed no subprotocol")
        } else if offered.contains(&chosen) {
            // Browsers compare the chosen subprotocol exactly, case included.
            return None;
        } else {
            format!(
                "the 101 chose `Sec-WebSocket-Protocol: {shown}`, which the offer did not list (offered: `{}`)",
                joined_values(offered.into_iter())
            )
        };
        Some(Violation::new(message))
    },
};

/// The extension names of a `Sec-WebSocket-Extensions` list: each element up to its parameters.
fn extension_names<'a>(elements: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    elements
        .filter_map(|element| element.split(|&b| b == b';').next())
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty())
}

pub(super) static WS_EXTENSION_NOT_OFFERED: Rule = Rule {
    id: "ws-extension-not-offered",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 6455 §4.2.2",
    checks: "The 101's `Sec-WebSocket-Extensions` lists an extension the client did not offer.",
    spec_text: "RFC 6455 §4.2.2: \"/extensions/ […] the value MUST be derived from the client's handshake, specifically by selecting one or more of the values from the |Sec-WebSocket-Extensions| field. […] Extensions not listed by the client MUST NOT be listed.\"",
    remediation: "Make the server accept only extensions the client listed in `Sec-WebSocket-Extensions` (e.g. no `permessage-deflate` in the 101 unless the request offered it); a proxy that strips the request's `Sec-WebSocket-Extensions` must strip the 101's too.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let (request, response) = websocket_switch(exchange, offer)?;
        let offered = || extension_names(request.header_elements("sec-websocket-extensions"));
        let unoffered = extension_names(response.header_elements("sec-websocket-extensions"))
            .find(|name| !offered().any(|o| o.eq_ignore_ascii_case(name)))?;
        let offered = match joined_values(offered()) {
            none if none.is_empty() => "none".to_owned(),
            names => format!("`{names}`"),
        };
        Some(Violation::new(format!(
            "the 101 accepted extension `{}`, which the offer did not list (offered: {offered})",
            utf8_lossy(unoffered)
        )))
    },
};

pub(super) static WS_VERSION_REJECTION_MISSING_HEADER: Rule = Rule {
    id: "ws-version-rejection-missing-header",
    severity: Severity::Warning,
    actor: "server",
    spec: "RFC 6455 §4.2.2, §4.4",
    checks: "A non-101 answer to a WebSocket offer whose `Sec-WebSocket-Version` is not `13` lacks `Sec-WebSocket-Version`.",
    spec_text: "RFC 6455 §4.2.2: \"/version/ […] If this version does not match a version understood by the server, the server MUST abort the WebSocket handshake described in this section and instead send an appropriate HTTP error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header field indicating the version(s) the server is capable of understanding.\" §4.4: \"If the server doesn't support the requested version, it MUST respond with a |Sec-WebSocket-Version| header field (or multiple |Sec-WebSocket-Version| header fields) containing all versions it is willing to use.\"",
    remediation: "When declining a WebSocket version, answer `426 Upgrade Required` with `Sec-WebSocket-Version: 13` (every version the server speaks), so the client can retry with one.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = websocket_offer(exchange, offer)?;
        let response = exchange.response.as_ref().filter(|r| r.line.status != 101)?;
        let mut versions = request
            .header_elements("sec-websocket-version")
            .filter(|v| !v.is_empty())
            .peekable();
        // Without a version, or with 13 among them, the handshake is
        // malformed (400) rather than of a version to decline.
        if versions.peek().is_none()
            || versions.any(|v| v == b"13")
            || response.header_values("sec-websocket-version").next().is_some()
        {
            return None;
        }
        Some(Violation::new(format!(
            "the {} answering an offer with `Sec-WebSocket-Version: {}` has no `Sec-WebSocket-Version`",
            response.line.status,
            joined_values(request.header_values("sec-websocket-version"))
        )))
    },
};

pub(super) static WS_CLIENT_FRAME_UNMASKED: Rule = Rule {
    id: "ws-client-frame-unmasked",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 6455 §5.1",
    checks: "The client's first frame after the 101 has its MASK bit clear, or the client's first bytes look like an HTTP request.",
    spec_text: "RFC 6455 §5.1: \"To avoid confusing network intermediaries (such as intercepting proxies) and for security reasons that are further discussed in Section 10.3, a client MUST mask all frames that it sends to the server (see Section 5.3 for further details).\"",
    remediation: "Make the client mask every frame it sends (set the MASK bit and a fresh 4-byte masking key per frame); a client that goes on sending HTTP after the 101 did not see the switch, which usually means a proxy between it and the server dropped the 101.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        // Frames are only WebSocket frames if the 101 switched to WebSocket.
        websocket_switch(exchange, offer)?;
        if !offer.switched_to_websocket() {
            return None;
        }
        let first = exchange.switched.as_ref()?.client_bytes.as_slice();
        if looks_like_request(first) {
            let line = first.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or(first);
            return Some(Violation::new(format!(
                "the client's first bytes after the 101 look like an HTTP request: `{}`",
                line.escape_ascii()
            )));
        }
        let &[opcode, length, ..] = first else {
            return None;
        };
        (length & 0x80 == 0).then(|| {
            Violation::new(format!(
                "the client's first frame after the 101 has its MASK bit clear (first bytes `{opcode:02x} {length:02x}`)"
            ))
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{
        check, check_after_answer, exchange_after_answer, findings, findings_after_answer,
        is_serious_in, message,
    };
    use crate::rules::{evaluate, Finding};

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const RFC_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
    /// RFC 6455 §5.7: a masked "Hello" from the client.
    const MASKED_HELLO: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    /// RFC 6455 §5.7: an unmasked "Hello", as a server sends it.
    const UNMASKED_HELLO: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];

    const OFFER: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const ACCEPTED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    /// A WebSocket offer whose field lines are `fields` (each ending in CRLF).
    fn offer_with(method: &str, version: &str, fields: &str) -> Vec<u8> {
        format!(
            "{method} /chat {version}\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{fields}\r\n"
        )
        .into_bytes()
    }

    /// A 101 to a WebSocket offer, with `fields` (each ending in CRLF) after its
    /// `Upgrade` and `Connection`.
    fn switch_with(fields: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{fields}\r\n").into_bytes()
    }

    /// This file's findings at warning or above.
    fn serious(findings: Vec<Finding>) -> Vec<String> {
        findings
            .into_iter()
            .filter(|f| is_serious_in(RULES, f))
            .map(|f| format!("{}: {}", f.rule.id, f.message))
            .collect()
    }

    #[test]
    fn accept_matches_the_rfc_example() {
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn compliant_handshakes_raise_nothing() {
        let deflate_request = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let deflate_response = switch_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n");
        let mixed_case_request = b"GET /chat HTTP/1.1\r\nhost: example\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\nsec-websocket-protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n\r\n";
        let mixed_case_response = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WEBSOCKET\r\nCONNECTION: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSEC-WEBSOCKET-PROTOCOL: superchat\r\n\r\n";
        let continued = [b"HTTP/1.1 100 Continue\r\n\r\n", ACCEPTED].concat();
        let cases: [(&[u8], &[u8]); 4] = [
            (&deflate_request, &deflate_response),
            (mixed_case_request, mixed_case_response),
            (OFFER, &continued),
            (OFFER, b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"),
        ];
        for (request, response) in cases {
            assert_eq!(serious(findings(request, response)), Vec::<String>::new());
        }
        let rfc = exchange_after_answer(
            RFC_REQUEST,
            &[RFC_RESPONSE, UNMASKED_HELLO].concat(),
            MASKED_HELLO,
        );
        assert_eq!(rfc.switched.as_ref().unwrap().client_bytes, MASKED_HELLO);
        assert_eq!(
            serious(evaluate(&rfc, &Default::default())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn method_not_get() {
        let request = offer_with(
            "POST",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n",
        );
        assert_eq!(
            message(&WS_METHOD_NOT_GET, &request, ACCEPTED),
            "the WebSocket offer used method `POST`, not `GET`"
        );
        assert_eq!(WS_METHOD_NOT_GET.proxy_impact[0].proxy, "Node http-proxy");
        // A POST whose `Upgrade` lacks the connection option is no offer.
        let not_an_offer = b"POST /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check(
                &WS_METHOD_NOT_GET,
                not_an_offer,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            ),
            None
        );
        assert_eq!(check(&WS_METHOD_NOT_GET, OFFER, ACCEPTED), None);
    }

    #[test]
    fn http_version_too_old() {
        let request = offer_with(
            "GET",
            "HTTP/1.0",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        let declined = b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            message(&WS_HTTP_VERSION_TOO_OLD, &request, declined),
            "the WebSocket offer was sent as `HTTP/1.0`"
        );
        // HTTP/1.0 without a WebSocket offer is fine.
        let h2c = b"GET / HTTP/1.0\r\nHost: example\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(check(&WS_HTTP_VERSION_TOO_OLD, h2c, declined), None);
    }

    #[test]
    fn key_missing() {
        let request = offer_with("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13\r\n");
        assert_eq!(
            message(
                &WS_KEY_MISSING,
                &request,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
            ),
            "the WebSocket offer has no `Sec-WebSocket-Key`"
        );
        assert_eq!(WS_KEY_MISSING.proxy_impact, HAPROXY_KEY_IMPACT);
        // A key spelled in lower case is still the key.
        let request = offer_with(
            "GET",
            "HTTP/1.1",
            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(check(&WS_KEY_MISSING, &request, ACCEPTED), None);
    }

    #[test]
    fn key_invalid() {
        let cases = [
            (
                "Sec-WebSocket-Key: c2hvcnQ=\r\n",
                "the WebSocket offer has `Sec-WebSocket-Key: c2hvcnQ=`, which decodes to 5 bytes instead of 16",
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
                "the WebSocket offer has `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ`, which is not strict base64",
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n",
                "the WebSocket offer has `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==`, which is not strict base64",
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
                "the WebSocket offer has 2 `Sec-WebSocket-Key` field lines: `dGhlIHNhbXBsZSBub25jZQ==`, `AQIDBAUGBwgJCgsMDQ4PEA==`",
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
                "the WebSocket offer has `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, AQIDBAUGBwgJCgsMDQ4PEA==`, several comma-joined values",
            ),
        ];
        let declined = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        for (key, expected) in cases {
            let request = offer_with(
                "GET",
                "HTTP/1.1",
                &format!("{key}Sec-WebSocket-Version: 13\r\n"),
            );
            assert_eq!(message(&WS_KEY_INVALID, &request, declined), expected);
        }
        let request = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key:   AQIDBAUGBwgJCgsMDQ4PEA==  \r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(check(&WS_KEY_INVALID, &request, declined), None);
        // A missing key is `ws-key-missing`'s.
        let request = offer_with("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13\r\n");
        assert_eq!(check(&WS_KEY_INVALID, &request, declined), None);
    }

    #[test]
    fn version_not_13() {
        let declined = b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for (version, expected) in [
            ("", "the WebSocket offer has no `Sec-WebSocket-Version`"),
            (
                "Sec-WebSocket-Version: 8\r\n",
                "the WebSocket offer has `Sec-WebSocket-Version: 8`, not `13`",
            ),
            (
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
                "the WebSocket offer has 2 `Sec-WebSocket-Version` field lines: `13`, `13`",
            ),
        ] {
            let request = offer_with("GET", "HTTP/1.1", &format!("{key}{version}"));
            assert_eq!(message(&WS_VERSION_NOT_13, &request, declined), expected);
        }
        assert_eq!(check(&WS_VERSION_NOT_13, OFFER, ACCEPTED), None);
    }

    #[test]
    fn upgrade_not_websocket() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            message(&WS_101_UPGRADE_NOT_WEBSOCKET, OFFER, response),
            "the 101 to a WebSocket offer has `Upgrade: h2c`, not `websocket`"
        );
        let response = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            message(&WS_101_UPGRADE_NOT_WEBSOCKET, OFFER, response),
            "the 101 to a WebSocket offer has no `Upgrade`"
        );
        assert!(WS_101_UPGRADE_NOT_WEBSOCKET
            .proxy_impact
            .iter()
            .any(|i| i.proxy == "Caddy" && i.outcome == Breaks));
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check(&WS_101_UPGRADE_NOT_WEBSOCKET, OFFER, response), None);
    }

    #[test]
    fn accept_missing() {
        assert_eq!(
            message(&WS_101_ACCEPT_MISSING, OFFER, &switch_with("")),
            "the 101 to a WebSocket offer has no `Sec-WebSocket-Accept`"
        );
        let twice = switch_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n");
        assert_eq!(
            message(&WS_101_ACCEPT_MISSING, OFFER, &twice),
            "the 101 to a WebSocket offer has 2 `Sec-WebSocket-Accept` field lines: `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`, `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`"
        );
        assert_eq!(WS_101_ACCEPT_MISSING.proxy_impact[0].proxy, "HAProxy");
        assert_eq!(check(&WS_101_ACCEPT_MISSING, OFFER, ACCEPTED), None);
        // A declined offer needs no accept value.
        let declined = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(&WS_101_ACCEPT_MISSING, OFFER, declined), None);
    }

    #[test]
    fn accept_mismatch() {
        // The accept value of another key, as a server reusing a cached answer sends it.
        let response = switch_with("Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n");
        assert_eq!(
            message(&WS_101_ACCEPT_MISMATCH, OFFER, &response),
            "the 101's `Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=` differs from `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`, computed from the request's `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==`"
        );
        // Base64 is case-sensitive.
        let response = switch_with("Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n");
        assert!(check(&WS_101_ACCEPT_MISMATCH, OFFER, &response).is_some());
        let response = switch_with("Sec-WebSocket-Accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n");
        assert_eq!(check(&WS_101_ACCEPT_MISMATCH, OFFER, &response), None);
        // Nothing to compare with: `ws-101-accept-missing` speaks.
        assert_eq!(
            check(&WS_101_ACCEPT_MISMATCH, OFFER, &switch_with("")),
            None
        );
    }

    #[test]
    fn switch_to_invalid_handshake() {
        let request = offer_with(
            "POST",
            "HTTP/1.1",
            "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n",
        );
        assert_eq!(
            message(&WS_101_TO_INVALID_HANDSHAKE, &request, ACCEPTED),
            "a 101 accepted a WebSocket offer that used method `POST`, not `GET` and has no `Sec-WebSocket-Key`"
        );
        let request = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        );
        assert_eq!(
            message(&WS_101_TO_INVALID_HANDSHAKE, &request, ACCEPTED),
            "a 101 accepted a WebSocket offer that has `Sec-WebSocket-Version: 8`, not `13`"
        );
        // Declining the same offer is right.
        let declined = b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check(&WS_101_TO_INVALID_HANDSHAKE, &request, declined),
            None
        );
        assert_eq!(check(&WS_101_TO_INVALID_HANDSHAKE, OFFER, ACCEPTED), None);
    }

    #[test]
    fn subprotocol_not_offered() {
        let offered = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n",
        );
        let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let cases: [(&[u8], &str, &str); 5] = [
            (
                &offered,
                "Sec-WebSocket-Protocol: mqtt\r\n",
                "the 101 chose `Sec-WebSocket-Protocol: mqtt`, which the offer did not list (offered: `chat, superchat`)",
            ),
            (
                OFFER,
                "Sec-WebSocket-Protocol: chat\r\n",
                "the 101 has `Sec-WebSocket-Protocol: chat` but the offer listed no subprotocol",
            ),
            (
                &offered,
                "Sec-WebSocket-Protocol: \r\n",
                "the 101 has an empty `Sec-WebSocket-Protocol`",
            ),
            (
                &offered,
                "Sec-WebSocket-Protocol: chat, superchat\r\n",
                "the 101 has `Sec-WebSocket-Protocol: chat, superchat`, several values instead of one",
            ),
            (
                &offered,
                "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
                "the 101 has 2 `Sec-WebSocket-Protocol` field lines: `chat`, `chat`",
            ),
        ];
        for (request, protocol, expected) in cases {
            let response = switch_with(&format!("{accept}{protocol}"));
            assert_eq!(
                message(&WS_SUBPROTOCOL_NOT_OFFERED, request, &response),
                expected
            );
        }
        for protocol in ["", "Sec-WebSocket-Protocol: superchat\r\n"] {
            let response = switch_with(&format!("{accept}{protocol}"));
            assert_eq!(
                check(&WS_SUBPROTOCOL_NOT_OFFERED, &offered, &response),
                None
            );
        }
    }

    #[test]
    fn extension_not_offered() {
        let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let response = switch_with(&format!(
            "{accept}Sec-WebSocket-Extensions: permessage-deflate\r\n"
        ));
        assert_eq!(
            message(&WS_EXTENSION_NOT_OFFERED, OFFER, &response),
            "the 101 accepted extension `permessage-deflate`, which the offer did not list (offered: none)"
        );
        let offered = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let response = switch_with(&format!(
            "{accept}Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
        ));
        assert_eq!(
            message(&WS_EXTENSION_NOT_OFFERED, &offered, &response),
            "the 101 accepted extension `x-webkit-deflate-frame`, which the offer did not list (offered: `permessage-deflate`)"
        );
        let response = switch_with(&format!(
            "{accept}Sec-WebSocket-Extensions: Permessage-Deflate; server_max_window_bits=10\r\n"
        ));
        assert_eq!(check(&WS_EXTENSION_NOT_OFFERED, &offered, &response), None);
    }

    #[test]
    fn version_rejection_missing_header() {
        let request = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        );
        let bare = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            message(&WS_VERSION_REJECTION_MISSING_HEADER, &request, bare),
            "the 426 answering an offer with `Sec-WebSocket-Version: 8` has no `Sec-WebSocket-Version`"
        );
        let told = b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check(&WS_VERSION_REJECTION_MISSING_HEADER, &request, told),
            None
        );
        // Version 13 declined for another reason needs no version list.
        assert_eq!(
            check(&WS_VERSION_REJECTION_MISSING_HEADER, OFFER, bare),
            None
        );
        let no_version = offer_with(
            "GET",
            "HTTP/1.1",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
        assert_eq!(
            check(
                &WS_VERSION_REJECTION_MISSING_HEADER,
                &no_version,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
            ),
            None
        );
    }

    #[test]
    fn client_frame_unmasked() {
        assert_eq!(
            check_after_answer(&WS_CLIENT_FRAME_UNMASKED, OFFER, ACCEPTED, UNMASKED_HELLO)
                .expect("fires")
                .message,
            "the client's first frame after the 101 has its MASK bit clear (first bytes `81 05`)"
        );
        assert_eq!(
            check_after_answer(
                &WS_CLIENT_FRAME_UNMASKED,
                OFFER,
                ACCEPTED,
                b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n"
            )
            .expect("fires")
            .message,
            "the client's first bytes after the 101 look like an HTTP request: `GET /next HTTP/1.1`"
        );
        assert_eq!(
            check_after_answer(&WS_CLIENT_FRAME_UNMASKED, OFFER, ACCEPTED, MASKED_HELLO),
            None
        );
        // A 101 to another protocol: the client's bytes are not WebSocket frames.
        assert_eq!(
            check_after_answer(
                &WS_CLIENT_FRAME_UNMASKED,
                OFFER,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: IRC/6.9\r\nConnection: Upgrade\r\n\r\n",
                UNMASKED_HELLO
            ),
            None
        );
        // Nothing, or only one byte, captured from the client: silent.
        assert_eq!(check(&WS_CLIENT_FRAME_UNMASKED, OFFER, ACCEPTED), None);
        assert_eq!(
            check_after_answer(&WS_CLIENT_FRAME_UNMASKED, OFFER, ACCEPTED, &[0x81]),
            None
        );
        assert!(findings_after_answer(OFFER, ACCEPTED, UNMASKED_HELLO)
            .iter()
            .any(|f| f.rule.id == "ws-client-frame-unmasked"));
    }
}
