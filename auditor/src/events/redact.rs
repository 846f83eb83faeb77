//! Secrets never reach an event: values of the credential and cookie fields
//! and query strings of request targets, unless the user allow-lists them,
//! nor the user information of an absolute-form target, nor what follows a
//! secret prefix in a `Sec-WebSocket-Protocol` element (the Kubernetes API
//! server's bearer token, and the prefixes the user configures).
//!
//! Events only carry upgrade-relevant fields, so a secret field value could
//! only leak through text that quotes it: a rule's message, or a field that
//! happens to repeat it. Every string taken from the wire therefore goes
//! through a [`Redactor`], which knows the exchange's secrets and replaces
//! them wherever they appear. `--exchanges` output goes through one too
//! ([`Redactor::exchange_field`]).

use serde::Deserialize;

use crate::{
    http::{Exchange, Headers},
    rules::utf8_lossy,
};

const REDACTED: &str = "[redacted]";

/// Fields whose values are secret unless allow-listed.
pub const SECRET_FIELDS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// The Kubernetes API server takes a bearer token from the WebSocket
/// subprotocol `base64url.bearer.authorization.k8s.io.<token>` (sent by
/// clients of exec, attach and port-forward that cannot set
/// `Authorization`). What follows it is always redacted.
const KUBERNETES_BEARER_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// The `[redaction]` table: what the user lets through redaction (by
/// default nothing), and which subprotocols carry a secret.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionAllowlist {
    /// Secret fields whose values may appear (names compare case-insensitively).
    pub headers: Vec<String>,
    /// Query strings of request targets may appear.
    pub query_strings: bool,
    /// Prefixes of `Sec-WebSocket-Protocol` elements that carry a secret
    /// after them, besides [`KUBERNETES_BEARER_PREFIX`]; compared
    /// case-insensitively.
    pub secret_subprotocol_prefixes: Vec<String>,
}

impl RedactionAllowlist {
    fn allows_field(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// What follows the shortest secret prefix `element` starts with, when
    /// anything does.
    fn subprotocol_secret<'e>(&self, element: &'e str) -> Option<&'e str> {
        let configured = self.secret_subprotocol_prefixes.iter().map(String::as_str);
        std::iter::once(KUBERNETES_BEARER_PREFIX)
            .chain(configured)
            .filter_map(|prefix| strip_prefix_ignore_ascii_case(element, prefix))
            .max_by_key(|secret| secret.len())
    }
}

/// Redacts the secrets of one exchange.
pub struct Redactor<'a> {
    allowlist: &'a RedactionAllowlist,
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl<'a> Redactor<'a> {
    pub fn new(allowlist: &'a RedactionAllowlist, exchange: &Exchange) -> Redactor<'a> {
        let responses = exchange.interim.iter().chain(&exchange.response);
        let heads: Vec<&Headers> = exchange
            .request
            .iter()
            .map(|r| &r.headers)
            .chain(responses.map(|r| &r.headers))
            .collect();
        let fields = heads.iter().flat_map(|headers| headers.iter());
        let mut secrets: Vec<String> = fields
            .filter(|field| is_secret_field(field.name) && !allowlist.allows_field(field.name))
            .map(|field| utf8_lossy(field.value).trim().to_owned())
            .collect();
        let subprotocols = heads
            .iter()
            .flat_map(|headers| headers.elements("sec-websocket-protocol"));
        for element in subprotocols {
            if let Some(secret) = allowlist.subprotocol_secret(&utf8_lossy(element)) {
                secrets.push(secret.to_owned());
            }
        }
        let targets = exchange.request.iter().map(|r| r.line.target.as_str());
        secrets.extend(targets.clone().filter_map(userinfo).map(str::to_owned));
        if !allowlist.query_strings {
            let queries = targets.filter_map(split_query);
            secrets.extend(queries.map(|(_, query)| query.to_owned()));
        }
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { allowlist, secrets }
    }

    /// `text` with every secret of the exchange replaced.
    pub fn text(&self, text: &str) -> String {
        self.redacted(text.to_owned())
    }

    /// [`Redactor::text`], for text already owned.
    pub fn redacted(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// The value of the field line `name`, as an event may show it.
    pub fn field(&self, name: &str, value: &[u8]) -> String {
        if is_secret_field(name) && !self.allowlist.allows_field(name) {
            return REDACTED.to_owned();
        }
        self.redacted(utf8_lossy(value).into_owned())
    }

    /// The value of the field line `name` as `--exchanges` shows it, with a
    /// redactor made with nothing allowed. That output does not see the
    /// `[redaction]` table, so it cannot tell which subprotocols were
    /// configured secret: each `Sec-WebSocket-Protocol` element reads
    /// `[redacted]`, but for the prefix of a Kubernetes bearer token.
    pub fn exchange_field(&self, name: &str, value: &[u8]) -> String {
        if !name.eq_ignore_ascii_case("sec-websocket-protocol") {
            return self.field(name, value);
        }
        let elements = Headers::value_elements(value).map(|element| {
            let element = utf8_lossy(element);
            match self.allowlist.subprotocol_secret(&element) {
                Some(_) => self.text(&element),
                None => REDACTED.to_owned(),
            }
        });
        elements.collect::<Vec<_>>().join(", ")
    }

    /// The values of the field lines `name`, each as an event may show it,
    /// joined with `, `; None without any.
    pub fn joined_fields<'v>(
        &self,
        name: &str,
        mut values: impl Iterator<Item = &'v [u8]>,
    ) -> Option<String> {
        // Value by value: in the joined text a secret could straddle a `, `.
        let mut joined = self.field(name, values.next()?);
        for value in values {
            joined.push_str(", ");
            joined.push_str(&self.field(name, value));
        }
        Some(joined)
    }

    /// A request target without its query string (unless allowed) and
    /// without the user information an absolute-form target may carry.
    pub fn target(&self, target: &str) -> String {
        match split_query(target) {
            Some((path, query)) if !query.is_empty() && !self.allowlist.query_strings => {
                self.redacted([path, "?", REDACTED].concat())
            }
            _ => self.text(target),
        }
    }
}

fn is_secret_field(name: &str) -> bool {
    SECRET_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// `text` after `prefix`, compared case-insensitively.
fn strip_prefix_ignore_ascii_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `target` split at its first `?`. Every target is asked: a byte search is
/// much cheaper than a `char` pattern, and since `?` is ASCII, slicing
/// around it stays on char boundaries.
fn split_query(target: &str) -> Option<(&str, &str)> {
    let mark = target.bytes().position(|b| b == b'?')?;
    Some((&target[..mark], &target[mark + 1..]))
}

/// `user:password` of `scheme://user:password@host/…`.
fn userinfo(target: &str) -> Option<&str> {
    // As in `split_query`: a byte search, and `://` is ASCII.
    let scheme_end = target.as_bytes().windows(3).position(|w| w == b"://")?;
    let rest = &target[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        events::{events_for, EventContext, ExchangeRecord},
        rules::{self, testing, Context, Finding},
    };

    /// Every planted secret contains this marker, and nothing else does.
    const MARKER: &str = "s3cr3t";
    const SECRET_LINES: &str = "Authorization: Basic s3cr3t-authorization\r\n\
        proxy-AUTHORIZATION: Bearer s3cr3t-proxy-authorization\r\n\
        Cookie: session=s3cr3t-cookie-one; lang=en\r\n\
        cOOKIE: s3cr3t-cookie-two\r\n";

    /// A prefix [`settings_with_secret_subprotocol`] holds secret.
    const CONFIGURED_PREFIX: &str = "x-token.";

    /// Nothing allowed, and the subprotocols starting with
    /// [`CONFIGURED_PREFIX`] secret.
    fn settings_with_secret_subprotocol() -> RedactionAllowlist {
        RedactionAllowlist {
            secret_subprotocol_prefixes: vec![CONFIGURED_PREFIX.into()],
            ..RedactionAllowlist::default()
        }
    }

    /// Requests and responses with secrets in every position, repeated and
    /// in mixed case; a `Sec-WebSocket-Protocol` element repeats a cookie,
    /// others carry a Kubernetes bearer token (as kubectl sends it) and a
    /// token after [`CONFIGURED_PREFIX`].
    fn planted_corpus() -> Vec<Exchange> {
        let requests = [
            format!("GET /chat?token=s3cr3t-query&x=1 HTTP/1.1\r\nHost: example.com\r\n{SECRET_LINES}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, s3cr3t-cookie-two\r\n\r\n"),
            "GET /api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true HTTP/1.1\r\nHost: kubernetes\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.s3cr3t-k8s-token\r\nSec-WebSocket-Protocol: X-Token.s3cr3t-subprotocol\r\n\r\n".to_owned(),
            format!("GET http://user:s3cr3t-userinfo@example.com/?s3cr3t-query HTTP/1.1\r\n{SECRET_LINES}Host: example.com\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"),
            format!("GET /backup?s3cr3t-query HTTP/1.1\r\nHost: pbs\r\n{SECRET_LINES}Expect: 100-continue\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n"),
            format!("GET /plain?s3cr3t-query HTTP/1.1\r\nHost: a\r\n{SECRET_LINES}\r\n"),
        ];
        let responses = [
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSet-Cookie: id=s3cr3t-set-cookie\r\nsEt-CoOkIe: s3cr3t-set-cookie-two\r\n\r\n",
            // A subprotocol the Kubernetes offer did not list: the alert quotes the offer.
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
            "HTTP/1.1 100 Continue\r\nSet-Cookie: s3cr3t-interim\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\nSet-Cookie: s3cr3t-set-cookie\r\n\r\n",
            "HTTP/1.1 401 Unauthorized\r\nSet-Cookie: s3cr3t-set-cookie\r\nContent-Length: 0\r\n\r\n",
            "",
        ];
        let mut corpus = Vec::new();
        for request in &requests {
            for response in responses {
                corpus.extend(testing::exchanges(request.as_bytes(), response.as_bytes()));
            }
        }
        corpus
    }

    /// Every string of an exchange as sent: the planted secrets are there.
    fn raw_text(exchange: &Exchange) -> String {
        let request = exchange.request.iter().flat_map(|r| {
            std::iter::once(r.line.target.clone()).chain(
                r.headers
                    .iter()
                    .map(|h| format!("{}: {}", h.name, String::from_utf8_lossy(h.value))),
            )
        });
        let responses = exchange
            .interim
            .iter()
            .chain(&exchange.response)
            .flat_map(|r| r.headers.iter())
            .map(|h| format!("{}: {}", h.name, String::from_utf8_lossy(h.value)));
        request.chain(responses).collect::<Vec<_>>().join("\n")
    }

    /// Every event of the corpus, serialized, with the catalogue's findings
    /// and one finding whose message quotes the whole exchange, as a
    /// careless rule might.
    fn serialized_events(allowlist: &RedactionAllowlist) -> String {
        let context = EventContext {
            host: &Arc::from("sensor"),
            interface: Some("eth0"),
            role: None,
            allowlist,
        };
        let mut output = String::new();
        for exchange in planted_corpus() {
            let mut findings = rules::evaluate(&exchange, &Context::default());
            findings.push(Finding {
                rule: rules::catalogue().next().unwrap(),
                severity: rules::Severity::Info,
                message: format!("saw {}", raw_text(&exchange)),
            });
            for event in events_for(&exchange, &findings, &context) {
                output.push_str(&serde_json::to_string(&event).unwrap());
                output.push('\n');
            }
        }
        output
    }

    #[test]
    fn the_corpus_carries_every_secret_in_every_position() {
        let raw: String = planted_corpus().iter().map(raw_text).collect();
        for secret in [
            "Basic s3cr3t-authorization",
            "Bearer s3cr3t-proxy-authorization",
            "session=s3cr3t-cookie-one",
            "cOOKIE: s3cr3t-cookie-two",
            "chat, s3cr3t-cookie-two",
            "token=s3cr3t-query&x=1",
            "user:s3cr3t-userinfo@",
            "id=s3cr3t-set-cookie",
            "sEt-CoOkIe: s3cr3t-set-cookie-two",
            "s3cr3t-interim",
            "base64url.bearer.authorization.k8s.io.s3cr3t-k8s-token",
            "X-Token.s3cr3t-subprotocol",
        ] {
            assert!(raw.contains(secret), "{secret} is not planted");
        }
    }

    #[test]
    fn no_secret_reaches_an_event_when_nothing_is_allowed() {
        let output = serialized_events(&settings_with_secret_subprotocol());
        assert!(output.contains("\"event_type\":\"handshake\""));
        assert!(output.contains("\"event_type\":\"alert\""));
        assert!(output.contains(REDACTED));
        let leaks: Vec<&str> = output.lines().filter(|l| l.contains(MARKER)).collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
    }

    #[test]
    fn a_kubernetes_bearer_token_is_redacted_in_handshakes_and_alerts() {
        let output = serialized_events(&RedactionAllowlist::default());
        let kubernetes: Vec<serde_json::Value> = output
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|event: &serde_json::Value| event["http"]["request"]["host"] == "kubernetes")
            .collect();
        let offered = serde_json::json!([
            "v5.channel.k8s.io",
            "base64url.bearer.authorization.k8s.io.[redacted]",
            "X-Token.s3cr3t-subprotocol"
        ]);
        for event in &kubernetes {
            assert_eq!(event["http"]["request"]["sec_websocket_protocol"], offered);
        }
        let not_offered = kubernetes
            .iter()
            .find(|event| event["alert"]["rule"] == "ws-subprotocol-not-offered")
            .expect("the 101 chose a subprotocol the offer did not list");
        assert_eq!(
            not_offered["alert"]["message"],
            "the 101 chose `Sec-WebSocket-Protocol: chat`, which the offer did not list \
             (offered: `v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.[redacted], \
             X-Token.s3cr3t-subprotocol`)"
        );
        assert!(kubernetes
            .iter()
            .any(|event| event["event_type"] == "handshake"));
        assert!(!output.contains("s3cr3t-k8s-token"));
    }

    #[test]
    fn exchanges_output_redacts_what_events_do_whatever_is_configured() {
        let output: Vec<String> = planted_corpus()
            .iter()
            .map(|exchange| serde_json::to_string(&ExchangeRecord(exchange)).unwrap())
            .collect();
        let leaks: Vec<&String> = output.iter().filter(|l| l.contains(MARKER)).collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
        let output = output.concat();
        for redacted in [
            r#""target":"http://[redacted]@example.com/?[redacted]""#,
            r#""value":"[redacted], base64url.bearer.authorization.k8s.io.[redacted]""#,
        ] {
            assert!(output.contains(redacted), "{redacted} is not in {output}");
        }
    }

    #[test]
    fn allow_listed_secrets_pass_and_the_others_stay_redacted() {
        let output = serialized_events(&RedactionAllowlist {
            headers: vec!["COOKIE".into(), "authorization".into()],
            query_strings: true,
            ..settings_with_secret_subprotocol()
        });
        for allowed in [
            "Basic s3cr3t-authorization",
            "session=s3cr3t-cookie-one",
            "s3cr3t-cookie-two",
            "/chat?token=s3cr3t-query&x=1",
        ] {
            assert!(output.contains(allowed), "{allowed} was redacted");
        }
        for secret in [
            "s3cr3t-proxy-authorization",
            "s3cr3t-userinfo",
            "s3cr3t-set-cookie",
            "s3cr3t-interim",
            "s3cr3t-k8s-token",
            "s3cr3t-subprotocol",
        ] {
            assert!(!output.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn a_subprotocol_is_secret_after_the_kubernetes_or_a_configured_prefix() {
        let exchange = testing::exchange(
            b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: chat, x-token.t1, x-token., BASE64URL.bearer.authorization.k8s.io.t2\r\n\r\n",
            b"",
        );
        let value = b"chat, x-token.t1, x-token., BASE64URL.bearer.authorization.k8s.io.t2";
        let shown = |settings: &RedactionAllowlist| {
            Redactor::new(settings, &exchange).field("Sec-WebSocket-Protocol", value)
        };
        assert_eq!(
            shown(&RedactionAllowlist::default()),
            "chat, x-token.t1, x-token., BASE64URL.bearer.authorization.k8s.io.[redacted]"
        );
        let configured = |prefixes: &[&str]| RedactionAllowlist {
            secret_subprotocol_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            ..RedactionAllowlist::default()
        };
        assert_eq!(
            shown(&configured(&["X-TOKEN."])),
            "chat, x-token.[redacted], x-token., BASE64URL.bearer.authorization.k8s.io.[redacted]",
            "a prefix matches whatever the case; an element that is only a prefix holds no secret"
        );
        assert_eq!(
            shown(&configured(&["x-token.", "x-"])),
            "chat, x-[redacted], x-[redacted], BASE64URL.bearer.authorization.k8s.io.[redacted]",
            "the shortest prefix decides"
        );
        let nothing_allowed = RedactionAllowlist::default();
        assert_eq!(
            Redactor::new(&nothing_allowed, &exchange)
                .exchange_field("sec-websocket-protocol", value),
            "[redacted], [redacted], [redacted], BASE64URL.bearer.authorization.k8s.io.[redacted]",
        );
    }

    #[test]
    fn targets_lose_their_query_and_userinfo() {
        let exchange = testing::exchange(
            b"GET http://u:p@example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        );
        let default = RedactionAllowlist::default();
        let redactor = Redactor::new(&default, &exchange);
        assert_eq!(
            redactor.target("http://u:p@example.com/a?b=1"),
            "http://[redacted]@example.com/a?[redacted]"
        );
        assert_eq!(redactor.target("/a?"), "/a?");
        assert_eq!(redactor.target("/a"), "/a");
        let queries = RedactionAllowlist {
            query_strings: true,
            ..RedactionAllowlist::default()
        };
        assert_eq!(
            Redactor::new(&queries, &exchange).target("http://u:p@example.com/a?b=1"),
            "http://[redacted]@example.com/a?b=1"
        );
    }

    #[test]
    fn secret_fields_are_redacted_by_name_whatever_the_case() {
        let exchange = testing::exchange(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"");
        let allowlist = RedactionAllowlist {
            headers: vec!["Set-Cookie".into()],
            ..RedactionAllowlist::default()
        };
        let redactor = Redactor::new(&allowlist, &exchange);
        for name in ["Authorization", "PROXY-AUTHORIZATION", "cookie"] {
            assert_eq!(redactor.field(name, b"x"), REDACTED);
        }
        assert_eq!(redactor.field("set-cookie", b"x"), "x");
        assert_eq!(redactor.field("Upgrade", b"websocket"), "websocket");
    }
}
