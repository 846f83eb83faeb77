//! The catalogue for people: `auditor rules` (table, JSON, Markdown) and
//! `auditor explain`, from the same metadata the engine runs.

use std::fmt::Write as _;

use serde::Serialize;

use super::{ProxyImpact, Rule, Severity};

#[derive(Serialize)]
struct RuleJson<'a> {
    id: &'a str,
    severity: Severity,
    actor: &'a str,
    spec: &'a str,
    checks: &'a str,
    spec_text: &'a str,
    remediation: &'a str,
    proxy_impact: &'a [ProxyImpact],
}

pub fn json<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    let rules: Vec<RuleJson> = rules
        .into_iter()
        .map(|rule| RuleJson {
            id: rule.id,
            severity: rule.severity,
            actor: rule.actor,
            spec: rule.spec,
            checks: rule.checks,
            spec_text: rule.spec_text,
            remediation: rule.remediation,
            proxy_impact: rule.proxy_impact,
        })
        .collect();
    serde_json::to_string_pretty(&rules).expect("rule metadata serializes")
}

/// Aligned columns for a terminal.
pub fn table<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    let rows: Vec<[String; 4]> = rules
        .into_iter()
        .map(|rule| {
            [
                rule.id.to_owned(),
                rule.severity.to_string(),
                rule.actor.to_owned(),
                rule.spec.to_owned(),
            ]
        })
        .collect();
    let header = ["RULE", "SEVERITY", "ACTOR", "SPEC"].map(str::to_owned);
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// A Markdown table; the README's rule list is this output.
pub fn markdown<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    let mut out = String::from(
        "| rule | severity | actor | spec | what it checks |\n|---|---|---|---|---|\n",
    );
    for rule in rules {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            rule.id,
            rule.severity,
            rule.actor,
            rule.spec,
            rule.checks.replace('|', "\\|")
        );
    }
    out
}

/// Everything about one rule, for `auditor explain`.
pub fn explain(rule: &Rule) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  ({}, {})", rule.id, rule.severity, rule.actor);
    let _ = writeln!(out, "\nWhat it checks:\n  {}", rule.checks);
    let _ = writeln!(
        out,
        "\nSpecification ({}):\n  {}",
        rule.spec, rule.spec_text
    );
    let _ = writeln!(out, "\nHow to fix it:\n  {}", rule.remediation);
    if !rule.proxy_impact.is_empty() {
        let _ = writeln!(out, "\nWhat proxies do with it:");
        for impact in rule.proxy_impact {
            let outcome = match impact.outcome {
                super::Outcome::Breaks => "breaks",
                super::Outcome::Tolerates => "tolerates",
            };
            let _ = writeln!(out, "  {} {outcome}: {}", impact.proxy, impact.effect);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{catalogue, find};

    #[test]
    fn every_format_lists_every_rule() {
        let count = catalogue().count();
        assert_eq!(table(catalogue()).lines().count(), count + 1);
        assert_eq!(markdown(catalogue()).lines().count(), count + 2);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&json(catalogue())).unwrap();
        assert_eq!(parsed.len(), count);
        assert_eq!(parsed[0]["id"], catalogue().next().unwrap().id);
        assert!(parsed
            .iter()
            .all(|r| r["severity"].is_string() && r["remediation"].is_string()));
    }

    #[test]
    fn explain_names_the_spec_the_fix_and_the_proxies() {
        let text = explain(find("upgrade-101-missing-connection-option").unwrap());
        assert!(text.starts_with("upgrade-101-missing-connection-option  (error, server)"));
        assert!(text.contains("RFC 9110 §7.8, §7.6.1"));
        assert!(text.contains("How to fix it:"));
        assert!(text.contains("Caddy breaks: the client receives an empty 200"));
        assert!(text.contains("nginx tolerates"));
    }
}
