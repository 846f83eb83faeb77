//! The catalogue for people: `auditor rules` (table, JSON, Markdown),
//! `auditor explain`, and the generated parts of docs/rules.md, from the
//! same metadata the engine runs.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Outcome, ProxyImpact, Reads, Rule, Scope, Severity};

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
            cell(rule.actor),
            cell(rule.spec),
            cell(rule.checks)
        );
    }
    out
}

/// A family of rules in docs/rules.md: the rules whose id starts with
/// `id_prefix`, under their own heading.
struct Family {
    id_prefix: &'static str,
    heading: &'static str,
    /// A sentence or two under the heading: what the family covers.
    introduction: &'static str,
}

const FAMILIES: [Family; 3] = [
    Family {
        id_prefix: "upgrade-",
        heading: "Any upgrade (`upgrade-*`)",
        introduction: "How an upgrade is offered, accepted or declined, whatever the protocol: \
                       RFC 9110 §7.6.1, §7.8, §15.2 and §15.5.22, and RFC 9112.",
    },
    Family {
        id_prefix: "ws-",
        heading: "WebSocket opening handshake (`ws-*`)",
        introduction: "A WebSocket offer is an offer whose `Upgrade` names `websocket` \
                       (RFC 6455 §4 and §11.3). `Sec-WebSocket-Accept` must equal \
                       base64(SHA-1(key ‖ `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)), with the key \
                       taken verbatim from the request: the RFC's own example key \
                       `dGhlIHNhbXBsZSBub25jZQ==` gives `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.",
    },
    Family {
        id_prefix: "h2c-",
        heading: "h2c (`h2c-*`)",
        introduction: "An h2c offer is an offer whose `Upgrade` names `h2c` (RFC 7540 §3.2). \
                       RFC 9113 §3.1 deprecates the mechanism: HTTP/2 is spoken over TLS, \
                       or in cleartext with prior knowledge.",
    },
];

/// Every rule in full, family by family, each with an index table: the
/// catalogue section of docs/rules.md.
pub fn reference_markdown<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    let rules: Vec<&Rule> = rules.into_iter().collect();
    let sections: Vec<String> = FAMILIES
        .iter()
        .filter_map(|family| family_section(family, &rules))
        .collect();
    sections.join("\n")
}

/// The heading, introduction, index and entries of the rules of `family`;
/// None when it has none.
fn family_section(family: &Family, rules: &[&Rule]) -> Option<String> {
    let members: Vec<&Rule> = rules
        .iter()
        .copied()
        .filter(|rule| rule.id.starts_with(family.id_prefix))
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut out = format!("## {}\n\n{}\n\n", family.heading, family.introduction);
    out.push_str("| rule | severity | actor | spec |\n|---|---|---|---|\n");
    for rule in &members {
        let _ = writeln!(
            out,
            "| [`{0}`](#{0}) | {1} | {2} | {3} |",
            rule.id,
            rule.severity,
            cell(rule.actor),
            cell(rule.spec)
        );
    }
    for rule in members {
        out.push('\n');
        reference_entry(&mut out, rule);
    }
    Some(out)
}

fn reference_entry(out: &mut String, rule: &Rule) {
    let scope = match rule.scope {
        Scope::Upgrade => "exchanges that involve an upgrade",
        Scope::Any => "every exchange",
    };
    let runs_on = match rule.reads {
        Reads::Request => format!("{scope}; reads the request alone"),
        Reads::Exchange => scope.to_owned(),
    };
    let _ = writeln!(out, "### `{}`\n\n{}\n", rule.id, rule.checks);
    let _ = writeln!(out, "- **Severity:** {}", rule.severity);
    let _ = writeln!(out, "- **Actor:** {}", rule.actor);
    let _ = writeln!(out, "- **Spec:** {}", rule.spec);
    let _ = writeln!(out, "- **Runs on:** {runs_on}");
    let _ = writeln!(out, "- **Enforces:** {}", rule.spec_text);
    let _ = writeln!(out, "- **Remediation:** {}", rule.remediation);
    if rule.proxy_impact.is_empty() {
        let _ = writeln!(out, "- **Proxy impact:** none recorded");
    } else {
        let _ = writeln!(out, "- **Proxy impact:**");
        for impact in rule.proxy_impact {
            let _ = writeln!(
                out,
                "  - {} {}: {}",
                impact.proxy,
                outcome_name(impact.outcome),
                impact.effect
            );
        }
    }
}

/// A Markdown table of what each proxy does with each rule that records
/// any proxy impact: the proxy matrix of docs/rules.md. Proxies are in the
/// order the catalogue first names them; a blank cell means the rule
/// records nothing for that proxy.
pub fn proxy_matrix_markdown<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    let rules: Vec<&Rule> = rules
        .into_iter()
        .filter(|rule| !rule.proxy_impact.is_empty())
        .collect();
    let mut proxies: Vec<&str> = Vec::new();
    for impact in rules.iter().flat_map(|rule| rule.proxy_impact) {
        if !proxies.contains(&impact.proxy) {
            proxies.push(impact.proxy);
        }
    }
    let mut out = String::from("| rule |");
    for proxy in &proxies {
        let _ = write!(out, " {} |", cell(proxy));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(proxies.len()));
    out.push('\n');
    for rule in rules {
        let _ = write!(out, "| [`{0}`](#{0}) |", rule.id);
        for proxy in &proxies {
            let outcome = rule
                .proxy_impact
                .iter()
                .find(|impact| impact.proxy == *proxy)
                .map_or("", |impact| outcome_name(impact.outcome));
            let _ = write!(out, " {outcome} |");
        }
        out.push('\n');
    }
    out
}

/// `text` inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Breaks => "breaks",
        Outcome::Tolerates => "tolerates",
    }
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
            let _ = writeln!(
                out,
                "  {} {}: {}",
                impact.proxy,
                outcome_name(impact.outcome),
                impact.effect
            );
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
    fn every_rule_belongs_to_one_family() {
        for rule in catalogue() {
            let families = FAMILIES
                .iter()
                .filter(|family| rule.id.starts_with(family.id_prefix))
                .count();
            assert_eq!(
                families, 1,
                "{}: docs/rules.md groups rules by the families of render.rs",
                rule.id
            );
        }
    }

    #[test]
    fn the_reference_gives_every_rule_in_full() {
        let reference = reference_markdown(catalogue());
        for rule in catalogue() {
            let entry = &reference[reference
                .find(&format!("### `{}`\n", rule.id))
                .unwrap_or_else(|| panic!("{} has no entry", rule.id))..];
            let entry = &entry[..entry[4..].find("\n#").map_or(entry.len(), |end| end + 4)];
            for text in [rule.checks, rule.spec, rule.spec_text, rule.remediation] {
                assert!(entry.contains(text), "{}: {text}", rule.id);
            }
            for impact in rule.proxy_impact {
                assert!(
                    entry.contains(impact.effect),
                    "{}: {}",
                    rule.id,
                    impact.proxy
                );
            }
        }
    }

    #[test]
    fn the_proxy_matrix_has_a_column_per_proxy_and_a_row_per_rule_with_impact() {
        let matrix = proxy_matrix_markdown(catalogue());
        let rows: Vec<Vec<&str>> = matrix
            .lines()
            .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let column = |proxy: &str| rows[0].iter().position(|name| *name == proxy).unwrap();
        let row = |id: &str| {
            rows.iter()
                .find(|row| row[0] == format!("[`{id}`](#{id})"))
                .unwrap()
        };
        assert_eq!(
            rows.len(),
            2 + catalogue().filter(|r| !r.proxy_impact.is_empty()).count()
        );
        let missing_option = row("upgrade-101-missing-connection-option");
        assert_eq!(missing_option[column("Caddy")], "breaks");
        assert_eq!(missing_option[column("nginx")], "tolerates");
        assert_eq!(row("upgrade-101-has-content-length")[column("Caddy")], "");
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
