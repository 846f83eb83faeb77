//! The `[rules]` table of the configuration, and what it does to findings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Finding, Severity};

/// Rules turned off, and severities changed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// Rule ids that never raise.
    pub disabled: Vec<String>,
    /// Rule id → the severity its alerts carry instead of the catalogue's.
    pub severity: BTreeMap<String, Severity>,
}

impl RuleSettings {
    /// The findings of rules that are not disabled, at their configured
    /// severity: an override replaces the catalogue's severity and the one
    /// a rule chose for what it saw.
    pub fn configured(&self, mut findings: Vec<Finding>) -> Vec<Finding> {
        findings.retain(|finding| !self.disabled.iter().any(|id| id == finding.rule.id));
        for finding in &mut findings {
            if let Some(&severity) = self.severity.get(finding.rule.id) {
                finding.severity = severity;
            }
        }
        findings
    }
}
