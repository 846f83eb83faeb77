//! h2c rules (RFC 7540 §3.2; deprecated by RFC 9113 §3.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::view::{decoded_len, not_exactly_one, utf8_lossy};
use super::view::{joined_values, switch_response};
use super::{Context, Offer, PortRole, Reads, Rule, Scope, Severity, Violation};
use crate::http::{Exchange, RequestHead, ResponseHead};

pub(super) static RULES: &[&Rule] = &[
    &H2C_UPGRADE_DEPRECATED,
    &H2C_SETTINGS_COUNT,
    &H2C_SETTINGS_NOT_CONNECTION_OPTION,
    &H2C_SETTINGS_INVALID,
    &H2C_101_HAS_SETTINGS,
    &H2C_101_FOR_H2_TOKEN,
    &H2C_MISSING_PREFACE,
    &H2C_UPGRADE_ACCEPTED,
];

/// RFC 7540 §3.5: the client connection preface.
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// RFC 7540 §6.5: the frame type of SETTINGS.
const SETTINGS_FRAME_TYPE: u8 = 0x4;
/// RFC 7540 §6.5: each setting is a 16-bit identifier and a 32-bit value.
const SETTING_LEN: usize = 6;

/// The request of an h2c offer.
fn h2c_offer<'a>(exchange: &'a Exchange, offer: &Offer) -> Option<&'a RequestHead> {
    exchange.request.as_ref().filter(|_| offer.names_h2c())
}

/// A 101 that switched to h2c.
fn h2c_switch<'a>(exchange: &'a Exchange, offer: &Offer) -> Option<&'a ResponseHead> {
    switch_response(exchange).filter(|_| offer.switched_to_h2c())
}

pub(super) static H2C_UPGRADE_DEPRECATED: Rule = Rule {
    id: "h2c-upgrade-deprecated",
    severity: Severity::Info,
    actor: "client",
    spec: "RFC 9113 §3.1",
    checks: "A request offers an upgrade to h2c.",
    spec_text: "RFC 9113 §3.1: \"The \"h2c\" string was previously used as a token for use in the HTTP Upgrade mechanism's Upgrade header field (Section 7.8 of [HTTP]). This usage was never widely deployed and is deprecated by this document. The same applies to the HTTP2-Settings header field, which was used with the upgrade to \"h2c\".\"",
    remediation: "Speak cleartext HTTP/2 with prior knowledge (start with the connection preface, e.g. `curl --http2-prior-knowledge`), or HTTP/2 over TLS negotiated with ALPN `h2`, instead of `Upgrade: h2c`.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = h2c_offer(exchange, offer)?;
        Some(Violation::new(format!(
            "the request offered an h2c upgrade with `Upgrade: {}`",
            joined_values(request.header_values("upgrade"))
        )))
    },
};

pub(super) static H2C_SETTINGS_COUNT: Rule = Rule {
    id: "h2c-settings-count",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 7540 §3.2",
    checks: "An h2c offer has no `HTTP2-Settings`, or more than one.",
    spec_text: "RFC 7540 §3.2: \"A request that upgrades from HTTP/1.1 to HTTP/2 MUST include exactly one \"HTTP2-Settings\" (Section 3.2.1) header field.\"",
    remediation: "Send exactly one `HTTP2-Settings` field with the h2c offer (the base64url SETTINGS payload, possibly empty), or drop the h2c offer.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = h2c_offer(exchange, offer)?;
        not_exactly_one(
            "the h2c offer has",
            "HTTP2-Settings",
            request.header_values("http2-settings"),
        )
    },
};

pub(super) static H2C_SETTINGS_NOT_CONNECTION_OPTION: Rule = Rule {
    id: "h2c-settings-not-connection-option",
    severity: Severity::Error,
    actor: "client",
    spec: "RFC 7540 §3.2.1",
    checks: "An h2c offer's `Connection` does not list `HTTP2-Settings`.",
    spec_text: "RFC 7540 §3.2.1: \"Since the upgrade is only intended to apply to the immediate connection, a client sending the HTTP2-Settings header field MUST also send \"HTTP2-Settings\" as a connection option in the Connection header field to prevent it from being forwarded (see Section 8.1.2.2 of [RFC7230]).\"",
    remediation: "Send `Connection: Upgrade, HTTP2-Settings` with an h2c offer, so that proxies drop `HTTP2-Settings` instead of forwarding it.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = h2c_offer(exchange, offer)?;
        if request.has_element("connection", "http2-settings") {
            return None;
        }
        Some(Violation::new(format!(
            "the h2c offer's `Connection: {}` does not list `HTTP2-Settings`",
            joined_values(request.header_values("connection"))
        )))
    },
};

pub(super) static H2C_SETTINGS_INVALID: Rule = Rule {
    id: "h2c-settings-invalid",
    severity: Severity::Warning,
    actor: "client",
    spec: "RFC 7540 §3.2.1",
    checks: "An h2c offer's `HTTP2-Settings` is not unpadded base64url, or decodes to a length that is not a multiple of 6.",
    spec_text: "RFC 7540 §3.2.1: \"The content of the HTTP2-Settings header field is the payload of a SETTINGS frame (Section 6.5), encoded as a base64url string (that is, the URL- and filename-safe Base64 encoding described in Section 5 of [RFC4648], with any trailing '=' characters omitted).\" §6.5: \"A SETTINGS frame with a length other than a multiple of 6 octets MUST be treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR.\"",
    remediation: "Encode the SETTINGS payload (6 bytes per setting) with the URL-safe base64 alphabet (`-` and `_`, not `+` and `/`) and without trailing `=`.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Request,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let request = h2c_offer(exchange, offer)?;
        request
            .header_values("http2-settings")
            .map(<[u8]>::trim_ascii)
            .find_map(|settings| {
                let shown = || utf8_lossy(settings);
                match decoded_len(&URL_SAFE_NO_PAD, settings) {
                    Ok(len) if len % SETTING_LEN == 0 => None,
                    Ok(len) => Some(format!(
                        "the h2c offer's `HTTP2-Settings: {}` decodes to {len} bytes, not a multiple of 6",
                        shown()
                    )),
                    Err(_) => Some(format!(
                        "the h2c offer's `HTTP2-Settings: {}` is not unpadded base64url",
                        shown()
                    )),
                }
            })
            .map(Violation::new)
    },
};

pub(super) static H2C_101_HAS_SETTINGS: Rule = Rule {
    id: "h2c-101-has-settings",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 7540 §3.2.1",
    checks: "A 101 carries `HTTP2-Settings`.",
    spec_text: "RFC 7540 §3.2.1: \"A server MUST NOT upgrade the connection to HTTP/2 if this header field is not present or if more than one is present. A server MUST NOT send this header field.\"",
    remediation: "Remove `HTTP2-Settings` from the server's 101: the server sends its settings in the SETTINGS frame that opens its side of the HTTP/2 connection.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        let response = switch_response(exchange)?;
        response.header_values("http2-settings").next()?;
        Some(Violation::new(format!(
            "the 101 carries `HTTP2-Settings: {}`",
            joined_values(response.header_values("http2-settings"))
        )))
    },
};

pub(super) static H2C_101_FOR_H2_TOKEN: Rule = Rule {
    id: "h2c-101-for-h2-token",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 7540 §3.2",
    checks: "A 101 switches to `h2`, the identifier of HTTP/2 over TLS.",
    spec_text: "RFC 7540 §3.2: \"Servers MUST ignore an \"h2\" token in an Upgrade header field. Presence of a token with \"h2\" implies HTTP/2 over TLS, which is instead negotiated as described in Section 3.3.\"",
    remediation: "Make the server ignore `h2` in `Upgrade` (answer as HTTP/1.1); HTTP/2 over TLS is negotiated with ALPN, and a cleartext upgrade, if at all, uses `h2c`.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        let response = switch_response(exchange).filter(|_| offer.switched_to_h2())?;
        Some(Violation::new(format!(
            "the 101 switches with `Upgrade: {}`, the TLS-only HTTP/2 identifier",
            joined_values(response.header_values("upgrade"))
        )))
    },
};

pub(super) static H2C_MISSING_PREFACE: Rule = Rule {
    id: "h2c-missing-preface",
    severity: Severity::Error,
    actor: "client / server",
    spec: "RFC 7540 §3.2, §3.5",
    checks: "After an h2c 101, the client's first bytes are not the connection preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`, or the server's first frame is not SETTINGS.",
    spec_text: "RFC 7540 §3.2: \"The first HTTP/2 frame sent by the server MUST be a server connection preface (Section 3.5) consisting of a SETTINGS frame (Section 6.5). Upon receiving the 101 response, the client MUST send a connection preface (Section 3.5), which includes a SETTINGS frame.\" §3.5: \"the connection preface starts with the string \"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n\"\"",
    remediation: "After the 101, make the client send `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n` and a SETTINGS frame, and the server a SETTINGS frame before any other frame; a side that goes on speaking HTTP/1.1 does not implement h2c and should not offer or accept it.",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, _: &Context| {
        h2c_switch(exchange, offer)?;
        let switched = exchange.switched.as_ref()?;
        let client = switched.client_bytes.as_slice();
        // Only the bytes captured are compared: a short capture that agrees
        // with the preface so far is no evidence either way.
        let shared = client.len().min(CLIENT_PREFACE.len());
        let client_fault = (client[..shared] != CLIENT_PREFACE[..shared]).then(|| {
            format!(
                "the client's first bytes are `{}`, not the connection preface",
                client[..shared].escape_ascii()
            )
        });
        let server_fault = switched
            .server_bytes
            .get(3)
            .filter(|&&frame_type| frame_type != SETTINGS_FRAME_TYPE)
            .map(|frame_type| {
                format!("the server's first frame has type `0x{frame_type:02x}`, not SETTINGS (`0x04`)")
            });
        let faults: Vec<String> = client_fault.into_iter().chain(server_fault).collect();
        (!faults.is_empty())
            .then(|| Violation::new(format!("after the h2c 101 {}", faults.join(", and "))))
    },
};

pub(super) static H2C_UPGRADE_ACCEPTED: Rule = Rule {
    id: "h2c-upgrade-accepted",
    severity: Severity::Warning,
    actor: "server / intermediary",
    spec: "RFC 9110 §7.6.1; h2c smuggling",
    checks: "A server accepted an h2c upgrade (critical on a port whose role is `backend`: behind a proxy, the client can then open HTTP/2 streams the proxy never inspects).",
    spec_text: "RFC 9110 §7.6.1: \"Intermediaries MUST parse a received Connection header field before a message is forwarded and, for each connection-option in this field, remove any header or trailer field(s) from the message with the same name as the connection-option, and then remove the Connection header field itself (or replace it with the intermediary's own control options for the forwarded message).\" A proxy that forwards `Upgrade: h2c` and then tunnels the switched connection lets the client send requests the proxy never sees (h2c smuggling).",
    remediation: "Disable h2c upgrades on the server (it can still serve HTTP/2 with prior knowledge or over TLS); on the proxy, do not forward `Upgrade: h2c` (e.g. in nginx, set `proxy_set_header Upgrade` only for `websocket`).",
    proxy_impact: &[],
    scope: Scope::Upgrade,
    reads: Reads::Exchange,
    check: |exchange: &Exchange, offer: &Offer, context: &Context| {
        let response = h2c_switch(exchange, offer)?;
        let upgrade = joined_values(response.header_values("upgrade"));
        Some(if context.role == Some(PortRole::Backend) {
            Violation {
                message: format!(
                    "the server, on a backend port, accepted an h2c upgrade with `Upgrade: {upgrade}`"
                ),
                severity: Some(Severity::Critical),
            }
        } else {
            Violation::new(format!(
                "the server accepted an h2c upgrade with `Upgrade: {upgrade}`"
            ))
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{
        check, check_after_answer, check_with, findings, findings_after_answer, is_serious_in,
        message,
    };
    use crate::rules::Finding;

    const OFFER: &[u8] = b"GET / HTTP/1.1\r\nHost: server.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    const ACCEPTED: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    /// An empty SETTINGS frame: all a server connection preface needs.
    const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    const DECLINED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    fn client_preface() -> Vec<u8> {
        [CLIENT_PREFACE, EMPTY_SETTINGS].concat()
    }

    /// An h2c offer with `fields` (each ending in CRLF) after `Host`.
    fn offer_with(fields: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: example\r\nUpgrade: h2c\r\n{fields}\r\n").into_bytes()
    }

    /// This file's findings at warning or above, but `h2c-upgrade-accepted`,
    /// which a correct h2c upgrade raises by design.
    fn serious(findings: Vec<Finding>) -> Vec<String> {
        findings
            .into_iter()
            .filter(|f| f.rule.id != "h2c-upgrade-accepted" && is_serious_in(RULES, f))
            .map(|f| format!("{}: {}", f.rule.id, f.message))
            .collect()
    }

    #[test]
    fn a_correct_h2c_upgrade_raises_only_the_by_design_rules() {
        let server = [ACCEPTED, EMPTY_SETTINGS].concat();
        let all = findings_after_answer(OFFER, &server, &client_preface());
        let ids: Vec<&str> = all.iter().map(|f| f.rule.id).collect();
        assert!(ids.contains(&"h2c-upgrade-deprecated"), "{ids:?}");
        assert!(ids.contains(&"h2c-upgrade-accepted"), "{ids:?}");
        assert_eq!(serious(all), Vec::<String>::new());
        let mixed_case = b"GET / HTTP/1.1\r\nhost: example\r\nCONNECTION: keep-alive, upgrade\r\nconnection: http2-settings\r\nupgrade: H2C\r\nhttp2-settings: AAMAAABk\r\n\r\n";
        let continued = [
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: H2C\r\n\r\n"[..],
            EMPTY_SETTINGS,
        ]
        .concat();
        assert_eq!(
            serious(findings_after_answer(
                mixed_case,
                &continued,
                &client_preface()
            )),
            Vec::<String>::new()
        );
        // Empty settings are a valid (empty) SETTINGS payload.
        let empty = offer_with("Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: \r\n");
        assert_eq!(serious(findings(&empty, DECLINED)), Vec::<String>::new());
    }

    #[test]
    fn upgrade_deprecated() {
        assert_eq!(
            message(&H2C_UPGRADE_DEPRECATED, OFFER, DECLINED),
            "the request offered an h2c upgrade with `Upgrade: h2c`"
        );
        let websocket =
            b"GET / HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(check(&H2C_UPGRADE_DEPRECATED, websocket, DECLINED), None);
        // `Upgrade: h2c` without the connection option is no offer.
        let no_option = b"GET / HTTP/1.1\r\nHost: example\r\nUpgrade: h2c\r\nConnection: HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk\r\n\r\n";
        assert_eq!(check(&H2C_UPGRADE_DEPRECATED, no_option, DECLINED), None);
    }

    #[test]
    fn settings_count() {
        let none = offer_with("Connection: Upgrade, HTTP2-Settings\r\n");
        assert_eq!(
            message(&H2C_SETTINGS_COUNT, &none, DECLINED),
            "the h2c offer has no `HTTP2-Settings`"
        );
        let two = offer_with(
            "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk\r\nHTTP2-Settings: AAQAAP__\r\n",
        );
        assert_eq!(
            message(&H2C_SETTINGS_COUNT, &two, DECLINED),
            "the h2c offer has 2 `HTTP2-Settings` field lines: `AAMAAABk`, `AAQAAP__`"
        );
        assert_eq!(check(&H2C_SETTINGS_COUNT, OFFER, DECLINED), None);
    }

    #[test]
    fn settings_not_connection_option() {
        let request = offer_with("Connection: Upgrade\r\nHTTP2-Settings: AAMAAABk\r\n");
        assert_eq!(
            message(&H2C_SETTINGS_NOT_CONNECTION_OPTION, &request, DECLINED),
            "the h2c offer's `Connection: Upgrade` does not list `HTTP2-Settings`"
        );
        // Across field lines and in any case.
        let request = offer_with(
            "Connection: Upgrade\r\nconnection: http2-SETTINGS\r\nHTTP2-Settings: AAMAAABk\r\n",
        );
        assert_eq!(
            check(&H2C_SETTINGS_NOT_CONNECTION_OPTION, &request, DECLINED),
            None
        );
        let request =
            offer_with("Connection: Upgrade, HTTP2-Settings-X\r\nHTTP2-Settings: AAMAAABk\r\n");
        assert!(check(&H2C_SETTINGS_NOT_CONNECTION_OPTION, &request, DECLINED).is_some());
    }

    #[test]
    fn settings_invalid() {
        for (settings, expected) in [
            (
                "AAMAAABkAA==",
                "the h2c offer's `HTTP2-Settings: AAMAAABkAA==` is not unpadded base64url",
            ),
            (
                "AAQAAP//",
                "the h2c offer's `HTTP2-Settings: AAQAAP//` is not unpadded base64url",
            ),
            (
                "AAMAAABkAA",
                "the h2c offer's `HTTP2-Settings: AAMAAABkAA` decodes to 7 bytes, not a multiple of 6",
            ),
        ] {
            let request = offer_with(&format!(
                "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: {settings}\r\n"
            ));
            assert_eq!(message(&H2C_SETTINGS_INVALID, &request, DECLINED), expected);
        }
        let url_safe =
            offer_with("Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAQAAP__\r\n");
        assert_eq!(check(&H2C_SETTINGS_INVALID, &url_safe, DECLINED), None);
        assert_eq!(check(&H2C_SETTINGS_INVALID, OFFER, DECLINED), None);
    }

    #[test]
    fn switch_has_settings() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n";
        assert_eq!(
            message(&H2C_101_HAS_SETTINGS, OFFER, response),
            "the 101 carries `HTTP2-Settings: AAMAAABk`"
        );
        assert_eq!(check(&H2C_101_HAS_SETTINGS, OFFER, ACCEPTED), None);
        let declined = b"HTTP/1.1 200 OK\r\nHTTP2-Settings: AAMAAABk\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(&H2C_101_HAS_SETTINGS, OFFER, declined), None);
    }

    #[test]
    fn switch_for_h2_token() {
        let request = b"GET / HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2, h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n";
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2\r\n\r\n";
        assert_eq!(
            message(&H2C_101_FOR_H2_TOKEN, request, response),
            "the 101 switches with `Upgrade: h2`, the TLS-only HTTP/2 identifier"
        );
        // `h2c` is not `h2`.
        assert_eq!(check(&H2C_101_FOR_H2_TOKEN, request, ACCEPTED), None);
    }

    #[test]
    fn missing_preface() {
        let server = [ACCEPTED, EMPTY_SETTINGS].concat();
        let violation = check_after_answer(
            &H2C_MISSING_PREFACE,
            OFFER,
            &server,
            b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n",
        )
        .expect("fires");
        assert_eq!(
            violation.message,
            "after the h2c 101 the client's first bytes are `GET /next HTTP/1.1\\r\\nHost`, not the connection preface"
        );
        let server_http = [ACCEPTED, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"].concat();
        assert_eq!(
            check_after_answer(&H2C_MISSING_PREFACE, OFFER, &server_http, &client_preface())
                .expect("fires")
                .message,
            "after the h2c 101 the server's first frame has type `0x50`, not SETTINGS (`0x04`)"
        );
        assert_eq!(
            check_after_answer(&H2C_MISSING_PREFACE, OFFER, &server, &client_preface()),
            None
        );
        // What was not captured is no evidence: a partial preface, no server bytes.
        assert_eq!(
            check_after_answer(&H2C_MISSING_PREFACE, OFFER, ACCEPTED, b"PRI * HTTP/2"),
            None
        );
        assert_eq!(check(&H2C_MISSING_PREFACE, OFFER, ACCEPTED), None);
    }

    #[test]
    fn upgrade_accepted_is_critical_on_a_backend() {
        assert_eq!(
            message(&H2C_UPGRADE_ACCEPTED, OFFER, ACCEPTED),
            "the server accepted an h2c upgrade with `Upgrade: h2c`"
        );
        let backend = Context {
            role: Some(PortRole::Backend),
        };
        let violation = check_with(&H2C_UPGRADE_ACCEPTED, OFFER, ACCEPTED, &backend).unwrap();
        assert_eq!(violation.severity, Some(Severity::Critical));
        assert_eq!(
            violation.message,
            "the server, on a backend port, accepted an h2c upgrade with `Upgrade: h2c`"
        );
        let frontend = Context {
            role: Some(PortRole::Frontend),
        };
        assert_eq!(
            check_with(&H2C_UPGRADE_ACCEPTED, OFFER, ACCEPTED, &frontend)
                .unwrap()
                .severity,
            None
        );
        assert_eq!(
            check_with(&H2C_UPGRADE_ACCEPTED, OFFER, DECLINED, &backend),
            None
        );
    }
}
