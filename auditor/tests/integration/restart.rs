//! `auditor run` started while connections are already open, as after a
//! restart: a proxy's pooled backend connection, a large request body, a
//! pipelined burst. The new daemon judges what it can be sure of, and
//! raises no alert it cannot be sure of.

use std::time::Duration;

use crate::support::{daemon::Daemon, require_privileges, schema::valid_events};
use lab::{
    backend::{Backend, RunningBackend, SLOW_ANSWER, SLOW_TARGET},
    client::{plain_get, Offer, Session},
    proxy::{Proxy, RunningProxy},
    ProxyLab,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const MISSING_CONNECTION_OPTION: &str = "upgrade-101-missing-connection-option";

/// A backend that keeps its connections open, behind `proxy`.
struct Lab {
    lab: ProxyLab,
    backend: RunningBackend,
    _proxy: RunningProxy,
}

impl Lab {
    fn start(proxy: Proxy) -> Lab {
        let lab = ProxyLab::new();
        let backend = RunningBackend::start(&lab, Backend::KeepAlive).expect("start the backend");
        let proxy = RunningProxy::start(&lab, proxy).unwrap_or_else(|error| panic!("{error}"));
        Lab {
            lab,
            backend,
            _proxy: proxy,
        }
    }

    fn start_daemon(&self) -> Daemon {
        Daemon::on_proxy_legs(&self.lab)
    }

    fn session(&self) -> Session {
        Session::open(&self.lab).expect("connect to the proxy")
    }
}

/// Stops `daemon`; the events it wrote.
fn stop(daemon: Daemon) -> Vec<Value> {
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal(Signal::SIGINT);
    let (status, log, stdout) = daemon.wait_with_output();
    assert!(status.success(), "{log}");
    valid_events(stdout.iter().map(String::as_str))
}

/// Each alert's rule and the role of the leg it was raised on.
fn alerts(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|event| event["event_type"] == "alert")
        .map(|alert| {
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (text(&alert["alert"]["rule"]), text(&alert["flow"]["role"]))
        })
        .collect()
}

/// Only the Proxmox 101's own alert may be raised, and it is right
/// wherever it is; anything else was judged on a wrong pairing.
fn assert_no_false_alert(events: &[Value]) {
    for (rule, role) in alerts(events) {
        assert_eq!(
            rule, MISSING_CONNECTION_OPTION,
            "on the {role} leg: {events:#?}"
        );
    }
}

/// The case: the proxy keeps a backend connection open across the
/// daemon's restart, and the upgrade goes out on it.
fn offer_on_a_pooled_connection_after_a_restart(proxy: Proxy) {
    let lab = Lab::start(proxy);
    let before = lab.start_daemon();
    let mut client = lab.session();
    assert_eq!(
        client
            .get("/api2/json/version")
            .expect("a plain GET")
            .status,
        200
    );
    assert!(alerts(&stop(before)).is_empty());
    let pooled = lab.backend.peers();
    assert_eq!(pooled.len(), 1, "one backend connection");

    let after = lab.start_daemon();
    client.offer(&Offer::proxmox_backup()).expect("the offer");
    let events = stop(after);
    assert_eq!(
        lab.backend.peers(),
        pooled,
        "the offer went out on the pooled connection, same 4-tuple"
    );
    assert_no_false_alert(&events);
    let on_backend: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "alert" && e["flow"]["role"] == "backend")
        .collect();
    assert_eq!(on_backend.len(), 1, "{events:#?}");
    let alert = on_backend[0];
    assert_eq!(alert["flow"]["src_port"], pooled[0].port(), "{alert}");
    assert_eq!(alert["capture"]["midstream"], true, "{alert}");
    assert_eq!(alert["capture"]["complete"], true, "{alert}");
}

#[test]
#[ignore = "needs root"]
fn nginx_pooled_connection_offer_after_a_restart_is_judged() {
    require_privileges();
    offer_on_a_pooled_connection_after_a_restart(Proxy::NginxPooled);
}

#[test]
#[ignore = "needs root"]
fn haproxy_reused_connection_offer_after_a_restart_is_judged() {
    require_privileges();
    offer_on_a_pooled_connection_after_a_restart(Proxy::HAProxyPooled);
}

/// Started in the middle of an upload whose body quotes WebSocket offers
/// with a broken key, back to back, the capture's first byte on each leg
/// starting one of them: none of them is judged. (Under nginx's 1 MiB
/// limit on bodies.)
fn started_inside_a_request_body(proxy: Proxy) {
    const QUOTED: &str = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let body = QUOTED.repeat(8_000);
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let lab = Lab::start(proxy);
    let mut client = lab.session();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        ProxyLab::proxy_front(),
        body.len()
    );
    client.send(head.as_bytes()).expect("the head");
    client.send(first).expect("half of the body");
    let daemon = lab.start_daemon();
    client.send(rest).expect("the rest of the body");
    assert_eq!(
        client.response(None).expect("the upload's answer").status,
        200
    );
    client.offer(&Offer::proxmox_backup()).expect("the offer");
    let events = stop(daemon);
    assert_no_false_alert(&events);
}

#[test]
#[ignore = "needs root"]
fn nginx_started_inside_a_request_body_raises_no_false_alert() {
    require_privileges();
    started_inside_a_request_body(Proxy::NginxPooled);
}

#[test]
#[ignore = "needs root"]
fn haproxy_started_inside_a_request_body_raises_no_false_alert() {
    require_privileges();
    started_inside_a_request_body(Proxy::HAProxyPooled);
}

/// Started while pipelined requests sent before it still await their
/// answers (the first is slow), more are sent after it, the offer last:
/// on the client leg the answers of the requests sent before take the
/// places of those sent after, the offer's included. No alert is raised
/// on that pairing, and the offer's handshake does not claim, complete,
/// an answer the client did not get.
fn started_inside_a_pipelined_burst(proxy: Proxy) {
    let lab = Lab::start(proxy);
    let mut client = lab.session();
    let mut before = plain_get(SLOW_TARGET);
    for i in 0..4 {
        before.push_str(&plain_get(&format!("/before/{i}")));
    }
    client
        .send(before.as_bytes())
        .expect("the burst's first half");
    let daemon = lab.start_daemon();
    let offer = Offer::proxmox_backup();
    let mut after = String::new();
    for i in 0..4 {
        after.push_str(&plain_get(&format!("/after/{i}")));
    }
    after.push_str(&offer.request());
    client
        .send(after.as_bytes())
        .expect("the burst's second half");
    let started = std::time::Instant::now();
    for _ in 0..9 {
        let received = client.response(None).expect("a plain answer");
        assert_eq!(received.status, 200);
    }
    assert!(started.elapsed() < SLOW_ANSWER * 2);
    let answer = client
        .response(Some(offer.probe()))
        .expect("the offer's answer");
    let events = stop(daemon);
    assert_no_false_alert(&events);
    let on_client_leg: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "handshake" && e["flow"]["role"] == "frontend")
        .collect();
    assert_eq!(on_client_leg.len(), 1, "the offer was seen: {events:#?}");
    let handshake = on_client_leg[0];
    if handshake["capture"]["complete"] == true {
        assert_eq!(
            handshake["http"]["response"]["status"], answer.status,
            "a complete handshake shows the answer the client got: {handshake}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn nginx_started_inside_a_pipelined_burst_pairs_nothing_wrongly() {
    require_privileges();
    started_inside_a_pipelined_burst(Proxy::NginxPooled);
}

#[test]
#[ignore = "needs root"]
fn haproxy_started_inside_a_pipelined_burst_pairs_nothing_wrongly() {
    require_privileges();
    started_inside_a_pipelined_burst(Proxy::HAProxyPooled);
}
