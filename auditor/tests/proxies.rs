//! Real reverse proxies between a client and a backend, each in its own
//! namespace, with the daemon watching both of the proxy's legs: what the
//! client receives must match what the alerts predict for that proxy.

mod support;

use std::time::Duration;

use lab::{
    backend::{Backend, RunningBackend},
    client::{send_offer, Offer, Received},
    proxy::{Proxy, RunningProxy},
    ProxyLab, BACKEND_PORT, PROXY_PORT,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::{daemon::Daemon, require_privileges, schema::valid_events};

const STARTUP: Duration = Duration::from_secs(20);
const MISSING_CONNECTION_OPTION: &str = "upgrade-101-missing-connection-option";

/// What one offer through a proxy produced.
struct Observed {
    received: Received,
    events: Vec<Value>,
    proxy_log: String,
}

/// Starts `backend` and `proxy`, then the daemon on both of the proxy's
/// legs; sends `offer` from the client and stops the daemon.
fn offer_through(proxy: Proxy, backend: Backend, offer: Offer) -> Observed {
    let lab = ProxyLab::new();
    let _backend = RunningBackend::start(&lab, backend).expect("start the backend");
    let running_proxy = RunningProxy::start(&lab, proxy).unwrap_or_else(|error| panic!("{error}"));
    let mut daemon = Daemon::start(
        &lab.proxy,
        &[
            "run",
            "--interface",
            ProxyLab::PROXY_CLIENT_IF,
            "--interface",
            ProxyLab::PROXY_BACKEND_IF,
            "--port",
            &format!("{PROXY_PORT}:frontend"),
            "--port",
            &format!("{BACKEND_PORT}:backend"),
        ],
    );
    daemon.wait_for("capture started", STARTUP);
    let received = send_offer(&lab, &offer).expect("the client's offer");
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal(Signal::SIGINT);
    let (status, log, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{log}");
    Observed {
        received,
        events: valid_events(stdout.iter().map(String::as_str)),
        proxy_log: running_proxy.log(),
    }
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .collect()
}

/// The Proxmox Backup Server case behind `proxy`: the alert fires on the
/// backend leg, and its prediction for `proxy` is what the client saw.
fn proxmox_style_101_behind(proxy: Proxy) -> Observed {
    let observed = offer_through(proxy, Backend::ProxmoxBackup, Offer::proxmox_backup());
    let alerts: Vec<&Value> = of_type(&observed.events, "alert")
        .into_iter()
        .filter(|alert| alert["alert"]["rule"] == MISSING_CONNECTION_OPTION)
        .collect();
    assert_eq!(alerts.len(), 1, "{:#?}", observed.events);
    let alert = alerts[0];
    assert_eq!(alert["flow"]["dest_port"], BACKEND_PORT, "{alert}");
    assert_eq!(alert["flow"]["role"], "backend", "{alert}");
    let predicted = alert["alert"]["proxy_impact"]
        .as_array()
        .expect("proxy_impact")
        .iter()
        .find(|impact| impact["proxy"] == proxy.name())
        .unwrap_or_else(|| panic!("no prediction for {}: {alert}", proxy.name()));
    let received = &observed.received;
    let actual = if received.status == 101 && received.bytes_flow {
        "tolerates"
    } else {
        "breaks"
    };
    assert_eq!(
        predicted["outcome"],
        actual,
        "{} predicted {predicted}, the client received {received:?}; proxy log:\n{}",
        proxy.name(),
        observed.proxy_log
    );
    observed
}

#[test]
#[ignore = "needs root"]
fn caddy_turns_a_proxmox_style_101_into_an_empty_200() {
    require_privileges();
    let received = proxmox_style_101_behind(Proxy::Caddy).received;
    assert_eq!(received.status, 200, "{received:?}");
    assert!(received.body.is_empty(), "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_proxmox_style_101_on() {
    require_privileges();
    let received = proxmox_style_101_behind(Proxy::Nginx).received;
    assert_eq!(received.status, 101, "{received:?}");
    assert_eq!(
        received.header("Upgrade"),
        Some("proxmox-backup-protocol-v1")
    );
    assert!(received.bytes_flow, "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn haproxy_answers_a_proxmox_style_101_with_502() {
    require_privileges();
    let received = proxmox_style_101_behind(Proxy::HAProxy).received;
    assert_eq!(received.status, 502, "{received:?}");
}

/// A correct WebSocket backend behind `proxy`: the switch reaches the
/// client, nothing at warning or above, one handshake on each leg.
fn websocket_passes_cleanly_through(proxy: Proxy) {
    let observed = offer_through(proxy, Backend::WebSocket, Offer::websocket());
    let received = &observed.received;
    assert_eq!(received.status, 101, "{received:?}");
    assert!(received.bytes_flow, "{received:?}");
    let serious: Vec<&Value> = of_type(&observed.events, "alert")
        .into_iter()
        .filter(|alert| alert["alert"]["severity"] != "info")
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
    let handshakes = of_type(&observed.events, "handshake");
    for (role, port) in [("frontend", PROXY_PORT), ("backend", BACKEND_PORT)] {
        let on_leg: Vec<&&Value> = handshakes
            .iter()
            .filter(|handshake| handshake["flow"]["role"] == role)
            .collect();
        assert_eq!(on_leg.len(), 1, "{role}: {handshakes:#?}");
        assert_eq!(on_leg[0]["flow"]["dest_port"], port, "{}", on_leg[0]);
        assert_eq!(
            on_leg[0]["handshake"]["outcome"], "switched",
            "{}",
            on_leg[0]
        );
    }
}

#[test]
#[ignore = "needs root"]
fn websocket_through_caddy_is_clean_on_both_legs() {
    require_privileges();
    websocket_passes_cleanly_through(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn websocket_through_nginx_is_clean_on_both_legs() {
    require_privileges();
    websocket_passes_cleanly_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn websocket_through_haproxy_is_clean_on_both_legs() {
    require_privileges();
    websocket_passes_cleanly_through(Proxy::HAProxy);
}
