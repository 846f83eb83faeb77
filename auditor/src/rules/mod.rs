//! The rule catalogue (../shared/spec/rules.md) and the engine that runs it
//! over exchanges. Each rule keeps its metadata, its check and its tests in
//! one place: adding a rule is one local change in the file of its family.

mod generic;
mod h2c;
pub mod render;
mod view;
mod websocket;

use serde::{Deserialize, Serialize};

use crate::{config::Role, http::Exchange};
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
    pub role: Option<Role>,
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
    generic::RULES
        .iter()
        .chain(websocket::RULES)
        .chain(h2c::RULES)
        .copied()
}

pub fn find(id: &str) -> Option<&'static Rule> {
    catalogue().find(|rule| rule.id == id)
}

/// Runs every rule over `exchange`. A rule never fires on bytes that were
/// not captured: an exchange touched by a gap, a truncation, a mid-stream
/// start, an oversized or malformed head, or a conflicting overlap is left
/// alone, and its capture quality says why.
pub fn evaluate(exchange: &Exchange, context: &Context) -> Vec<Finding> {
    evaluate_offer(exchange, &Offer::of(exchange), context)
}

/// [`evaluate`], with the exchange's offer already worked out (the events
/// need it too).
pub fn evaluate_offer(exchange: &Exchange, offer: &Offer, context: &Context) -> Vec<Finding> {
    if exchange.quality.impaired() || exchange.request.is_none() {
        return Vec::new();
    }
    catalogue()
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
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Error < Severity::Critical);
        assert_eq!("error".parse::<Severity>(), Ok(Severity::Error));
        assert!("fatal".parse::<Severity>().is_err());
    }
}
