//! The rule catalogue, which docs/rules.md is generated from, and the
//! engine that runs it over exchanges. Each rule keeps its metadata, its
//! check and its tests in one place: adding a rule is one local change in
//! the file of its family.

mod h2c;
mod port_role;
pub mod render;
mod settings;
mod silence;
mod upgrade;
mod view;
mod websocket;

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::http::{Exchange, Pairing};
pub use port_role::PortRole;
pub use settings::RuleSettings;
pub use silence::{Silence, Silences};
pub(crate) use view::utf8_lossy;
pub use view::Offer;

/// Ordered: `info` < `warning` < `error` < `critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Severity, String> {
        match text {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "`{other}` is not a severity (info, warning, error, critical)"
            )),
        }
    }
}

impl TryFrom<String> for Severity {
    type Error = String;

    fn try_from(text: String) -> Result<Severity, String> {
        text.parse()
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        })
    }
}

/// Whether a well-known proxy breaks on what a rule saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Breaks,
    Tolerates,
}

/// One line of the proxy matrix: what a proxy does with what a rule saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProxyImpact {
    pub proxy: &'static str,
    pub outcome: Outcome,
    /// What the user will see, e.g. Caddy's empty 200 and its debug log line.
    pub effect: &'static str,
}

/// What a rule's check can see besides the exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    /// The role configured for the server's port.
    pub role: Option<PortRole>,
}

/// A rule's check found a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// One sentence naming what was seen.
    pub message: String,
    /// Overrides the rule's default severity (e.g. early data on a WebSocket offer).
    pub severity: Option<Severity>,
}

impl Violation {
    pub fn new(message: impl Into<String>) -> Violation {
        Violation {
            message: message.into(),
            severity: None,
        }
    }
}

/// Which exchanges a rule's check can fire on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only those whose request carries `Upgrade` or whose response is a
    /// 101: the check is not run on the others.
    Upgrade,
    /// Every exchange.
    Any,
}

/// What of an exchange a rule's check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// The request head alone: the check runs even when which response
    /// answers the request is not certain ([`Pairing::RequestOnly`]).
    Request,
    /// The request with its response, or what followed them.
    Exchange,
}

pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    /// As the catalogue writes it: `client`, `server`, `intermediary`, `any`, `client / server`…
    pub actor: &'static str,
    pub spec: &'static str,
    /// What the rule checks, in a sentence.
    pub checks: &'static str,
    /// The specification text the rule enforces.
    pub spec_text: &'static str,
    pub remediation: &'static str,
    pub proxy_impact: &'static [ProxyImpact],
    pub scope: Scope,
    pub reads: Reads,
    /// Runs only on exchanges whose capture is intact (see [`evaluate`]).
    pub check: fn(&Exchange, &Offer, &Context) -> Option<Violation>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rule").field(&self.id).finish()
    }
}

/// A rule that fired on an exchange.
#[derive(Clone, Debug)]
pub struct Finding {
    pub rule: &'static Rule,
    pub severity: Severity,
    pub message: String,
}

/// Every rule, in catalogue order.
pub fn catalogue() -> impl Iterator<Item = &'static Rule> {
    upgrade::RULES
        .iter()
        .chain(websocket::RULES)
        .chain(h2c::RULES)
        .copied()
}

pub fn find(id: &str) -> Option<&'static Rule> {
    catalogue().find(|rule| rule.id == id)
}

/// Runs the rules over `exchange`: those of [`Scope::Upgrade`] only when it
/// involves an upgrade ([`Offer::involves_upgrade`]). A rule never fires on
/// bytes that were not captured: an exchange touched by a gap, a
/// truncation, an oversized or malformed head, or a conflicting overlap is
/// left alone, and its capture quality says why. On a connection picked up
/// mid-stream, only the rules that read the request alone run until the
/// pairing of requests and responses is certain (see [`Pairing`]).
pub fn evaluate(exchange: &Exchange, context: &Context) -> Vec<Finding> {
    evaluate_offer(exchange, &Offer::of(exchange), context)
}

/// [`evaluate`], with the exchange's offer already worked out (the events
/// need it too).
pub fn evaluate_offer(exchange: &Exchange, offer: &Offer, context: &Context) -> Vec<Finding> {
    if exchange.quality.impaired() || exchange.request.is_none() {
        return Vec::new();
    }
    match exchange.pairing {
        Pairing::Certain => {}
        Pairing::RequestOnly => {
            let request_rules = catalogue().filter(|rule| rule.reads == Reads::Request);
            return findings(request_rules, exchange, offer, context);
        }
        Pairing::Unknown => return Vec::new(),
    }
    // Most exchanges are keep-alive requests that have nothing to do with an
    // upgrade: only the few rules of every exchange are run on them.
    if offer.involves_upgrade {
        findings(catalogue(), exchange, offer, context)
    } else {
        findings(any_exchange_rules(), exchange, offer, context)
    }
}

/// The rules of [`Scope::Any`], in catalogue order.
fn any_exchange_rules() -> impl Iterator<Item = &'static Rule> {
    static RULES: LazyLock<Vec<&'static Rule>> = LazyLock::new(|| {
        catalogue()
            .filter(|rule| rule.scope == Scope::Any)
            .collect()
    });
    RULES.iter().copied()
}

/// What `rules` find in `exchange`.
fn findings(
    rules: impl Iterator<Item = &'static Rule>,
    exchange: &Exchange,
    offer: &Offer,
    context: &Context,
) -> Vec<Finding> {
    rules
        .filter_map(|rule| {
            let violation = (rule.check)(exchange, offer, context)?;
            Some(Finding {
                rule,
                severity: violation.severity.unwrap_or(rule.severity),
                message: violation.message,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_in_kebab_case() {
        let ids: Vec<&str> = catalogue().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids.iter().all(|id| id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')));
    }

    #[test]
    fn every_rule_explains_itself() {
        for rule in catalogue() {
            for (field, text) in [
                ("checks", rule.checks),
                ("spec_text", rule.spec_text),
                ("remediation", rule.remediation),
                ("spec", rule.spec),
                ("actor", rule.actor),
            ] {
                assert!(!text.trim().is_empty(), "{} has no {field}", rule.id);
            }
        }
    }

    #[test]
    fn only_rules_of_any_exchange_fire_on_one_without_upgrade() {
        // No `Upgrade` in the requests, no 101, but every other field
        // rules read, and what the rules of every exchange look for.
        let corpus: [(&[u8], &[u8]); 4] = [
            (
                b"GET / HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 8\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nUpgrade: h2c, bad token\r\nConnection: Upgrade\r\nHTTP2-Settings: x\r\nSec-WebSocket-Accept: x\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                b"POST / HTTP/1.1\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
            ),
        ];
        let mut fired = Vec::new();
        for (request, response) in corpus {
            for exchange in testing::exchanges(request, response) {
                let offer = Offer::of(&exchange);
                assert!(!offer.involves_upgrade);
                for rule in catalogue() {
                    let violation = (rule.check)(&exchange, &offer, &Context::default());
                    match rule.scope {
                        Scope::Upgrade => assert_eq!(violation, None, "{} fired", rule.id),
                        Scope::Any => fired.extend(violation.map(|_| rule.id)),
                    }
                }
            }
        }
        fired.sort_unstable();
        assert_eq!(
            fired,
            [
                "upgrade-101-to-http10",
                "upgrade-426-missing-upgrade",
                "upgrade-invalid-token"
            ]
        );
    }

    /// A rule that says it reads the request alone finds the same with or
    /// without what answered it: it may run when the pairing is not certain.
    #[test]
    fn rules_of_the_request_alone_read_nothing_else() {
        let requests: [&[u8]; 6] = [
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"POST /chat HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nHTTP2-Settings: !!\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: foo/2\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ];
        let responses: [&[u8]; 4] = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            b"",
        ];
        let request_rules: Vec<&Rule> = catalogue()
            .filter(|rule| rule.reads == Reads::Request)
            .collect();
        assert!(request_rules.len() >= 10);
        let mut fired = std::collections::BTreeSet::new();
        for request in requests {
            let alone = testing::exchange(request, b"");
            let alone_offer = Offer::of(&alone);
            for response in responses {
                for exchange in testing::exchanges(request, response) {
                    let offer = Offer::of(&exchange);
                    for rule in &request_rules {
                        let found = (rule.check)(&exchange, &offer, &Context::default());
                        let without = (rule.check)(&alone, &alone_offer, &Context::default());
                        assert_eq!(found, without, "{} reads more than the request", rule.id);
                        fired.extend(found.map(|_| rule.id));
                    }
                }
            }
        }
        assert!(fired.len() >= 8, "the corpus exercises them: {fired:?}");
    }

    /// What the rules read of an exchange whose pairing is not certain.
    #[test]
    fn an_unsure_pairing_leaves_only_the_rules_of_the_request() {
        let mut exchange = testing::exchange(
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        );
        let fired = |exchange: &Exchange| -> Vec<&str> {
            let findings = evaluate(exchange, &Context::default());
            findings.iter().map(|f| f.rule.id).collect()
        };
        let all = fired(&exchange);
        assert!(
            all.contains(&"ws-key-invalid")
                && all.contains(&"upgrade-101-missing-connection-option")
        );
        exchange.pairing = Pairing::RequestOnly;
        assert_eq!(fired(&exchange), ["ws-key-invalid"]);
        exchange.pairing = Pairing::Unknown;
        assert!(fired(&exchange).is_empty());
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Error < Severity::Critical);
        assert_eq!("error".parse::<Severity>(), Ok(Severity::Error));
        assert!("fatal".parse::<Severity>().is_err());
    }
}
