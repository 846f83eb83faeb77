//! h2c rules (RFC 7540 §3.2; deprecated by RFC 9113 §3.1).

use super::Rule;

pub(super) static RULES: &[&Rule] = &[];
