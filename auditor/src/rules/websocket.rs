//! WebSocket opening handshake rules (RFC 6455 §4, §11.3).

use super::Rule;

pub(super) static RULES: &[&Rule] = &[];
