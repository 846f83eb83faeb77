//! Secrets never reach an event: values of the credential and cookie fields
//! and query strings of request targets, unless the user allow-lists them,
//! nor the user information of an absolute-form target.
//!
//! Events only carry upgrade-relevant fields, so a secret field value could
//! only leak through text that quotes it: a rule's message, or a field that
//! happens to repeat it. Every string taken from the wire therefore goes
//! through a [`Redactor`], which knows the exchange's secrets and replaces
//! them wherever they appear.

use serde::Deserialize;

use crate::{http::Exchange, rules::utf8_lossy};

const REDACTED: &str = "[redacted]";

/// Fields whose values are secret unless allow-listed.
pub const SECRET_FIELDS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// What the user lets through redaction; by default nothing.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionAllowlist {
    /// Secret fields whose values may appear (names compare case-insensitively).
    pub headers: Vec<String>,
    /// Query strings of request targets may appear.
    pub query_strings: bool,
}

impl RedactionAllowlist {
    fn allows_field(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
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
        let request_fields = exchange.request.iter().flat_map(|r| r.headers.iter());
        let response_fields = exchange
            .interim
            .iter()
            .chain(&exchange.response)
            .flat_map(|r| r.headers.iter());
        let mut secrets: Vec<String> = request_fields
            .chain(response_fields)
            .filter(|field| is_secret_field(field.name) && !allowlist.allows_field(field.name))
            .map(|field| utf8_lossy(field.value).trim().to_owned())
            .collect();
        let targets = exchange.request.iter().map(|r| r.target.as_str());
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
        events::{events_for, EventContext},
        rules::{self, testing, Context, Finding},
    };

    /// Every planted secret contains this marker, and nothing else does.
    const MARKER: &str = "s3cr3t";
    const SECRET_LINES: &str = "Authorization: Basic s3cr3t-authorization\r\n\
        proxy-AUTHORIZATION: Bearer s3cr3t-proxy-authorization\r\n\
        Cookie: session=s3cr3t-cookie-one; lang=en\r\n\
        cOOKIE: s3cr3t-cookie-two\r\n";

    /// Requests and responses with secrets in every position, repeated and
    /// in mixed case; a `Sec-WebSocket-Protocol` element repeats a cookie.
    fn planted_corpus() -> Vec<Exchange> {
        let requests = [
            format!("GET /chat?token=s3cr3t-query&x=1 HTTP/1.1\r\nHost: example.com\r\n{SECRET_LINES}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, s3cr3t-cookie-two\r\n\r\n"),
            format!("GET http://user:s3cr3t-userinfo@example.com/?s3cr3t-query HTTP/1.1\r\n{SECRET_LINES}Host: example.com\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"),
            format!("GET /backup?s3cr3t-query HTTP/1.1\r\nHost: pbs\r\n{SECRET_LINES}Expect: 100-continue\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n"),
            format!("GET /plain?s3cr3t-query HTTP/1.1\r\nHost: a\r\n{SECRET_LINES}\r\n"),
        ];
        let responses = [
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSet-Cookie: id=s3cr3t-set-cookie\r\nsEt-CoOkIe: s3cr3t-set-cookie-two\r\n\r\n",
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
            std::iter::once(r.target.clone()).chain(
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
        ] {
            assert!(raw.contains(secret), "{secret} is not planted");
        }
    }

    #[test]
    fn no_secret_reaches_an_event_by_default() {
        let output = serialized_events(&RedactionAllowlist::default());
        assert!(output.contains("\"event_type\":\"handshake\""));
        assert!(output.contains("\"event_type\":\"alert\""));
        assert!(output.contains(REDACTED));
        let leaks: Vec<&str> = output.lines().filter(|l| l.contains(MARKER)).collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
    }

    #[test]
    fn allow_listed_secrets_pass_and_the_others_stay_redacted() {
        let output = serialized_events(&RedactionAllowlist {
            headers: vec!["COOKIE".into(), "authorization".into()],
            query_strings: true,
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
        ] {
            assert!(!output.contains(secret), "{secret} leaked");
        }
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
            query_strings: false,
        };
        let redactor = Redactor::new(&allowlist, &exchange);
        for name in ["Authorization", "PROXY-AUTHORIZATION", "cookie"] {
            assert_eq!(redactor.field(name, b"x"), REDACTED);
        }
        assert_eq!(redactor.field("set-cookie", b"x"), "x");
        assert_eq!(redactor.field("Upgrade", b"websocket"), "websocket");
    }
}
