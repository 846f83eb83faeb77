//! Generic HTTP/1.1 upgrade rules (RFC 9110 §7.6.1, §7.8, §15.2, §15.5.22; RFC 9112).

use super::{Context, Offer, Outcome::*, ProxyImpact, Rule, Severity, Violation};
use crate::http::Exchange;

pub(super) static RULES: &[&Rule] = &[&UPGRADE_101_MISSING_CONNECTION_OPTION];

/// What the proxies of the matrix do with a 101 whose `Connection` lacks `upgrade`.
const MISSING_CONNECTION_OPTION_IMPACT: &[ProxyImpact] = &[
    ProxyImpact {
        proxy: "Caddy",
        outcome: Breaks,
        effect: "the client receives an empty 200; logged only at debug level: \"backend tried to switch to unexpected protocol via Upgrade header\"",
    },
    ProxyImpact {
        proxy: "Go net/http/httputil.ReverseProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway: \"backend tried to switch protocol\"",
    },
    ProxyImpact {
        proxy: "Traefik",
        outcome: Breaks,
        effect: "500 with Go's \"backend tried to switch protocol\" error",
    },
    ProxyImpact {
        proxy: "HAProxy",
        outcome: Breaks,
        effect: "502 Bad Gateway",
    },
    ProxyImpact {
        proxy: "Envoy",
        outcome: Breaks,
        effect: "the upgrade is not tunnelled",
    },
    ProxyImpact {
        proxy: "Node http-proxy",
        outcome: Breaks,
        effect: "the client's socket is destroyed",
    },
    ProxyImpact {
        proxy: "nginx",
        outcome: Tolerates,
        effect: "passes the switch on and writes `Connection: upgrade` itself",
    },
    ProxyImpact {
        proxy: "Apache mod_proxy_http",
        outcome: Tolerates,
        effect: "passes the switch on",
    },
];

pub(super) static UPGRADE_101_MISSING_CONNECTION_OPTION: Rule = Rule {
    id: "upgrade-101-missing-connection-option",
    severity: Severity::Error,
    actor: "server",
    spec: "RFC 9110 §7.8, §7.6.1",
    checks: "A 101 carries `Upgrade` but its `Connection` has no `upgrade` element.",
    spec_text: "RFC 9110 §7.8: \"A sender of Upgrade MUST also send an \"Upgrade\" connection option in the Connection header field (Section 7.6.1) to inform intermediaries not to forward this field.\"",
    remediation: "Make the server send `Connection: upgrade` with every `101 Switching Protocols` that carries `Upgrade` (for Proxmox Backup Server behind a proxy, or any custom protocol: add the header in the server, or have the proxy add it).",
    proxy_impact: MISSING_CONNECTION_OPTION_IMPACT,
    check: |exchange: &Exchange, _: &Offer, _: &Context| {
        let response = exchange.response.as_ref().filter(|r| r.status == 101)?;
        let upgrade: Vec<String> = response
            .header_values("upgrade")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if upgrade.is_empty() || response.has_element("connection", "upgrade") {
            return None;
        }
        let connection: Vec<String> = response
            .header_values("connection")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let seen = if connection.is_empty() {
            "no `Connection`".to_owned()
        } else {
            format!("`Connection: {}`, without `upgrade`", connection.join(", "))
        };
        Some(Violation::new(format!(
            "the 101 carried `Upgrade: {}` but {seen}",
            upgrade.join(", ")
        )))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{check, findings};

    const WEBSOCKET_OFFER: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn proxmox_backup_server_101_without_connection() {
        let request = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";
        let violation =
            check(&UPGRADE_101_MISSING_CONNECTION_OPTION, request, response).expect("fires");
        assert_eq!(
            violation.message,
            "the 101 carried `Upgrade: proxmox-backup-protocol-v1` but no `Connection`"
        );
        let breaking: Vec<&str> = UPGRADE_101_MISSING_CONNECTION_OPTION
            .proxy_impact
            .iter()
            .filter(|i| i.outcome == Breaks)
            .map(|i| i.proxy)
            .collect();
        for proxy in ["Caddy", "Go net/http/httputil.ReverseProxy", "HAProxy"] {
            assert!(breaking.contains(&proxy), "{proxy} breaks");
        }
        let nginx = UPGRADE_101_MISSING_CONNECTION_OPTION
            .proxy_impact
            .iter()
            .find(|i| i.proxy == "nginx")
            .unwrap();
        assert_eq!(nginx.outcome, Tolerates);
        assert!(findings(request, response)
            .iter()
            .any(|f| f.rule.id == "upgrade-101-missing-connection-option"));
    }

    #[test]
    fn names_a_connection_header_without_upgrade() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
        let violation = check(
            &UPGRADE_101_MISSING_CONNECTION_OPTION,
            WEBSOCKET_OFFER,
            response,
        )
        .unwrap();
        assert!(violation
            .message
            .contains("`Connection: keep-alive`, without `upgrade`"));
    }

    #[test]
    fn near_misses_stay_silent() {
        for response in [
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert_eq!(check(&UPGRADE_101_MISSING_CONNECTION_OPTION, WEBSOCKET_OFFER, response), None);
        }
        // `notupgrade` is not `upgrade`.
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: notupgrade\r\n\r\n";
        assert!(check(
            &UPGRADE_101_MISSING_CONNECTION_OPTION,
            WEBSOCKET_OFFER,
            response
        )
        .is_some());
    }
}
