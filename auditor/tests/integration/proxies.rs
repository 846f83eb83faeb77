//! Real reverse proxies between a client and a backend, each in its own
//! namespace, with the daemon watching both of the proxy's legs: what the
//! client receives must match what the alerts predict for that proxy.

use std::{collections::BTreeSet, fmt::Debug, io, time::Duration};

use crate::support::{daemon::Daemon, require_privileges, schema::valid_events};
use lab::{
    backend::{Backend, RunningBackend, HTTP11_BODY},
    client::{curl_http2, curl_upgrade, send_offer, CurlReceived, Offer, Received},
    proxy::{Proxy, RunningProxy},
    real::{python_websocket_client, RealBackend, H2C_BODY},
    ProxyLab, BACKEND_PORT, PROXY_PORT,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const MISSING_CONNECTION_OPTION: &str = "upgrade-101-missing-connection-option";
/// curl's exit code when `--max-time` ran out: curl 7.88 waits for a body
/// after a 101 to anything but h2c.
const CURL_TIMED_OUT: i32 = 28;

/// What one client's traffic through a proxy produced.
struct Observed<T = Received> {
    received: T,
    events: Vec<Value>,
    proxy_log: String,
}

/// A client that sends an offer from the client namespace and records what
/// came back: [`send_offer`] or [`curl_upgrade`].
type Client<T> = fn(&ProxyLab, &Offer) -> io::Result<T>;

/// What the tests read from a client's run, whichever client it was.
trait ClientRun: Debug {
    /// The status of the last response the client received.
    fn status(&self) -> u16;
    /// A field of the last response head, compared case-insensitively.
    fn header(&self, name: &str) -> Option<&str>;
    fn body(&self) -> &[u8];
    /// Whether the client got a switch it could use: a 101, with bytes
    /// flowing through it where the client sends any.
    fn switched(&self) -> bool;
}

impl ClientRun for Received {
    fn status(&self) -> u16 {
        self.status
    }

    fn header(&self, name: &str) -> Option<&str> {
        Received::header(self, name)
    }

    fn body(&self) -> &[u8] {
        &self.body
    }

    fn switched(&self) -> bool {
        self.status == 101 && self.bytes_flow
    }
}

/// curl sends nothing after a 101, so a 101 is all it can tell.
impl ClientRun for CurlReceived {
    fn status(&self) -> u16 {
        self.status
    }

    fn header(&self, name: &str) -> Option<&str> {
        CurlReceived::header(self, name)
    }

    fn body(&self) -> &[u8] {
        CurlReceived::body(self).as_bytes()
    }

    fn switched(&self) -> bool {
        self.status == 101
    }
}

/// The `proxy_impact` outcome that matches what the client got.
fn impact_seen_by(received: &impl ClientRun) -> &'static str {
    if received.switched() {
        "tolerates"
    } else {
        "breaks"
    }
}

/// Starts `backend` and `proxy`, then the daemon on both of the proxy's
/// legs; sends `offer` with `client` and stops the daemon.
fn offer_through<T>(
    proxy: Proxy,
    backend: Backend,
    offer: Offer,
    client: Client<T>,
) -> Observed<T> {
    through(proxy, lab_backend(backend), |lab| {
        client(lab, &offer).expect("the client's offer")
    })
}

/// Starts one of the lab's own backends, for [`through`].
fn lab_backend(backend: Backend) -> impl FnOnce(&ProxyLab) -> RunningBackend {
    move |lab| RunningBackend::start(lab, backend).expect("start the backend")
}

/// Starts the backend with `start_backend`, which runs until the daemon
/// stopped, and `proxy`, then the daemon on both of the proxy's legs; runs
/// `client` and stops the daemon.
fn through<B, T>(
    proxy: Proxy,
    start_backend: impl FnOnce(&ProxyLab) -> B,
    client: impl FnOnce(&ProxyLab) -> T,
) -> Observed<T> {
    let lab = ProxyLab::new();
    let _backend = start_backend(&lab);
    let running_proxy = RunningProxy::start(&lab, proxy).unwrap_or_else(|error| panic!("{error}"));
    let daemon = Daemon::on_proxy_legs(&lab);
    let received = client(&lab);
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

/// The Proxmox Backup Server case behind `proxy`, the offer sent by
/// `client`: the alert fires on the backend leg, and its prediction for
/// `proxy` is what the client saw.
fn proxmox_style_101_behind<T: ClientRun>(proxy: Proxy, client: Client<T>) -> Observed<T> {
    let observed = offer_through(
        proxy,
        Backend::ProxmoxBackup,
        Offer::proxmox_backup(),
        client,
    );
    // One offer, one handshake on each leg; the frontend leg's is switched
    // only when the proxy passed the 101 on.
    let frontend = if observed.received.status() == 101 {
        "switched"
    } else {
        "declined"
    };
    assert_eq!(
        outcomes_on(&observed.events, "frontend"),
        [frontend],
        "{:#?}",
        observed.events
    );
    assert_eq!(
        outcomes_on(&observed.events, "backend"),
        ["switched"],
        "{:#?}",
        observed.events
    );
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
    assert_eq!(
        predicted["outcome"],
        impact_seen_by(received),
        "{} predicted {predicted}, the client received {received:?}; proxy log:\n{}",
        proxy.name(),
        observed.proxy_log
    );
    observed
}

fn assert_empty_200(received: &impl ClientRun) {
    assert_eq!(received.status(), 200, "{received:?}");
    assert!(received.body().is_empty(), "{received:?}");
}

fn assert_proxmox_switch(received: &impl ClientRun) {
    assert_eq!(received.status(), 101, "{received:?}");
    assert_eq!(
        received.header("Upgrade"),
        Some("proxmox-backup-protocol-v1"),
        "{received:?}"
    );
    assert!(received.switched(), "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn caddy_turns_a_proxmox_style_101_into_an_empty_200() {
    require_privileges();
    assert_empty_200(&proxmox_style_101_behind(Proxy::Caddy, send_offer).received);
}

#[test]
#[ignore = "needs root"]
fn caddy_turns_a_proxmox_style_101_into_an_empty_200_for_curl() {
    require_privileges();
    let curl = proxmox_style_101_behind(Proxy::Caddy, curl_upgrade).received;
    assert_empty_200(&curl);
    assert_eq!(curl.exit_code, Some(0), "{curl:?}");
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_proxmox_style_101_on() {
    require_privileges();
    assert_proxmox_switch(&proxmox_style_101_behind(Proxy::Nginx, send_offer).received);
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_proxmox_style_101_on_to_curl() {
    require_privileges();
    let curl = proxmox_style_101_behind(Proxy::Nginx, curl_upgrade).received;
    assert_proxmox_switch(&curl);
    assert_eq!(curl.exit_code, Some(CURL_TIMED_OUT), "{curl:?}");
}

#[test]
#[ignore = "needs root"]
fn haproxy_answers_a_proxmox_style_101_with_502() {
    require_privileges();
    let received = proxmox_style_101_behind(Proxy::HAProxy, send_offer).received;
    assert_eq!(received.status, 502, "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn haproxy_answers_a_proxmox_style_101_with_502_for_curl() {
    require_privileges();
    let curl = proxmox_style_101_behind(Proxy::HAProxy, curl_upgrade).received;
    assert_eq!((curl.exit_code, curl.status), (Some(0), 502), "{curl:?}");
}

/// A correct WebSocket backend behind `proxy`, the offer sent by `client`:
/// the switch reaches the client, nothing at warning or above, one
/// handshake on each leg.
fn websocket_passes_cleanly_through<T: ClientRun>(proxy: Proxy, client: Client<T>) -> T {
    let offer = Offer::websocket();
    let key = offer.websocket_key.clone().expect("a WebSocket key");
    let observed = offer_through(proxy, Backend::WebSocket, offer, client);
    let received = observed.received;
    assert_eq!(received.status(), 101, "{received:?}");
    assert_eq!(
        received.header("Sec-WebSocket-Accept"),
        Some(lab::websocket::accept(&key).as_str()),
        "{received:?}"
    );
    assert!(received.switched(), "{received:?}");
    assert_clean_switch_on_both_legs(&observed.events);
    received
}

fn curl_websocket_passes_cleanly_through(proxy: Proxy) {
    let curl = websocket_passes_cleanly_through(proxy, curl_upgrade);
    assert_eq!(curl.exit_code, Some(CURL_TIMED_OUT), "{curl:?}");
}

/// Nothing at warning or above, and one switched handshake on each leg.
fn assert_clean_switch_on_both_legs(events: &[Value]) {
    let serious: Vec<&Value> = of_type(events, "alert")
        .into_iter()
        .filter(|alert| alert["alert"]["severity"] != "info")
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
    let handshakes = of_type(events, "handshake");
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
    websocket_passes_cleanly_through(Proxy::Caddy, send_offer);
}

#[test]
#[ignore = "needs root"]
fn websocket_through_nginx_is_clean_on_both_legs() {
    require_privileges();
    websocket_passes_cleanly_through(Proxy::Nginx, send_offer);
}

#[test]
#[ignore = "needs root"]
fn websocket_through_haproxy_is_clean_on_both_legs() {
    require_privileges();
    websocket_passes_cleanly_through(Proxy::HAProxy, send_offer);
}

#[test]
#[ignore = "needs root"]
fn curl_websocket_through_caddy_is_clean_on_both_legs() {
    require_privileges();
    curl_websocket_passes_cleanly_through(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn curl_websocket_through_nginx_is_clean_on_both_legs() {
    require_privileges();
    curl_websocket_passes_cleanly_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn curl_websocket_through_haproxy_is_clean_on_both_legs() {
    require_privileges();
    curl_websocket_passes_cleanly_through(Proxy::HAProxy);
}

/// What the daemon must report on one leg of the proxy.
struct Leg<'a> {
    /// The outcome of each `handshake` event, one per upgrade offer of the
    /// client that reached this leg as an offer: nothing is lost.
    outcomes: &'a [&'a str],
    /// Every rule that fired on this leg (an alert each).
    rules: &'a [&'a str],
}

/// The frontend leg (client ↔ proxy, port 8080) and the backend leg
/// (proxy ↔ backend, port 9000) each show exactly `frontend` and `backend`.
fn assert_legs(events: &[Value], frontend: Leg, backend: Leg) {
    for (role, port, expected) in [
        ("frontend", PROXY_PORT, frontend),
        ("backend", BACKEND_PORT, backend),
    ] {
        let on_leg: Vec<&Value> = events
            .iter()
            .filter(|event| event["event_type"] != "loss" && event["flow"]["role"] == role)
            .collect();
        for event in &on_leg {
            assert_eq!(event["flow"]["dest_port"], port, "{event}");
        }
        assert_eq!(
            outcomes_on(events, role),
            expected.outcomes,
            "{role} leg: {events:#?}"
        );
        let fired: BTreeSet<&str> = on_leg
            .iter()
            .filter(|event| event["event_type"] == "alert")
            .map(|alert| alert["alert"]["rule"].as_str().unwrap_or("?"))
            .collect();
        let expected_rules: BTreeSet<&str> = expected.rules.iter().copied().collect();
        assert_eq!(fired, expected_rules, "{role} leg: {events:#?}");
    }
    let lost: Vec<&Value> = of_type(events, "loss");
    assert!(lost.is_empty(), "{lost:#?}");
}

/// The outcome of each `handshake` event on the leg whose role is `role`.
fn outcomes_on<'a>(events: &'a [Value], role: &str) -> Vec<&'a str> {
    of_type(events, "handshake")
        .into_iter()
        .filter(|handshake| handshake["flow"]["role"] == role)
        .map(|handshake| handshake["handshake"]["outcome"].as_str().unwrap_or("?"))
        .collect()
}

/// The rules on the backend leg whose `proxy_impact` for `proxy` says the
/// opposite of what happened: `tolerates` when the client did not get a
/// working switch, `breaks` when it did. Rules without an entry for
/// `proxy` make no prediction and are left out.
fn mispredicted(observed: &Observed, proxy: Proxy) -> Vec<String> {
    let received = &observed.received;
    let actual = impact_seen_by(received);
    of_type(&observed.events, "alert")
        .into_iter()
        .filter(|alert| alert["flow"]["role"] == "backend")
        .filter_map(|alert| {
            let impact = alert["alert"]["proxy_impact"]
                .as_array()?
                .iter()
                .find(|impact| impact["proxy"] == proxy.name())?;
            (impact["outcome"] != actual).then(|| {
                format!(
                    "{}: predicted {}, client got {} (bytes flow: {})",
                    alert["alert"]["rule"].as_str().unwrap_or("?"),
                    impact["outcome"],
                    received.status,
                    received.bytes_flow
                )
            })
        })
        .collect()
}

/// A WebSocket offer through `proxy` to the broken `backend`: the legs
/// show `frontend` and `backend`, and the predictions that disagree with
/// what the client got are exactly the rules in `disagreeing`.
fn websocket_offer_through(
    proxy: Proxy,
    backend: Backend,
    frontend: Leg,
    backend_leg: Leg,
    disagreeing: &[&str],
) -> Received {
    let observed = offer_through(proxy, backend, Offer::websocket(), send_offer);
    assert_legs(&observed.events, frontend, backend_leg);
    let wrong = mispredicted(&observed, proxy);
    let wrong_rules: Vec<&str> = wrong
        .iter()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        wrong_rules,
        disagreeing,
        "{}: {wrong:#?}; proxy log:\n{}",
        proxy.name(),
        observed.proxy_log
    );
    observed.received
}

const ACCEPT_MISMATCH: &str = "ws-101-accept-mismatch";

/// No proxy checks `Sec-WebSocket-Accept`: the wrong value reaches the
/// client, and the daemon flags it on both legs.
fn wrong_accept_passes_through(proxy: Proxy) {
    let received = websocket_offer_through(
        proxy,
        Backend::WrongWebSocketAccept,
        Leg {
            outcomes: &["switched"],
            rules: &[ACCEPT_MISMATCH],
        },
        Leg {
            outcomes: &["switched"],
            rules: &[ACCEPT_MISMATCH],
        },
        &[],
    );
    assert_eq!(received.status, 101, "{received:?}");
    assert_ne!(
        received.header("Sec-WebSocket-Accept"),
        Some(lab::websocket::accept("dGhlIHNhbXBsZSBub25jZQ==").as_str())
    );
    assert!(received.bytes_flow, "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn caddy_passes_a_wrong_websocket_accept_on() {
    require_privileges();
    wrong_accept_passes_through(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_wrong_websocket_accept_on() {
    require_privileges();
    wrong_accept_passes_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn haproxy_passes_a_wrong_websocket_accept_on() {
    require_privileges();
    wrong_accept_passes_through(Proxy::HAProxy);
}

/// What a 101 to `IRC/6.9` in answer to a WebSocket offer raises.
const UNOFFERED_RULES: &[&str] = &[
    "upgrade-101-protocol-not-offered",
    "ws-101-upgrade-not-websocket",
    "ws-101-accept-missing",
];

#[test]
#[ignore = "needs root"]
fn caddy_turns_a_101_to_an_unoffered_protocol_into_an_empty_200() {
    require_privileges();
    let received = websocket_offer_through(
        Proxy::Caddy,
        Backend::UnofferedProtocol,
        Leg {
            outcomes: &["declined"],
            rules: &[],
        },
        Leg {
            outcomes: &["switched"],
            rules: UNOFFERED_RULES,
        },
        &[],
    );
    assert_eq!(received.status, 200, "{received:?}");
    assert!(received.body.is_empty(), "{received:?}");
}

/// nginx and HAProxy do not compare the 101's protocol with the offer.
fn unoffered_protocol_passes_through(proxy: Proxy, disagreeing: &[&str]) {
    let received = websocket_offer_through(
        proxy,
        Backend::UnofferedProtocol,
        Leg {
            outcomes: &["switched"],
            rules: UNOFFERED_RULES,
        },
        Leg {
            outcomes: &["switched"],
            rules: UNOFFERED_RULES,
        },
        disagreeing,
    );
    assert_eq!(received.status, 101, "{received:?}");
    assert_eq!(received.header("Upgrade"), Some("IRC/6.9"), "{received:?}");
    assert!(received.bytes_flow, "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_101_to_an_unoffered_protocol_on() {
    require_privileges();
    unoffered_protocol_passes_through(Proxy::Nginx, &[]);
}

/// HAProxy 2.6 passes a 101 without `Sec-WebSocket-Accept` on when the
/// 101 names another protocol than `websocket`: the catalogue's `breaks`
/// (502) for `ws-101-accept-missing` does not hold here.
#[test]
#[ignore = "needs root"]
fn haproxy_passes_a_101_to_an_unoffered_protocol_on() {
    require_privileges();
    unoffered_protocol_passes_through(Proxy::HAProxy, &["ws-101-accept-missing"]);
}

/// With `Upgrade: websocket` in the 101, HAProxy does check that
/// `Sec-WebSocket-Accept` is there, as the catalogue predicts.
#[test]
#[ignore = "needs root"]
fn haproxy_answers_a_websocket_101_without_accept_with_502() {
    require_privileges();
    let received = websocket_offer_through(
        Proxy::HAProxy,
        Backend::WebSocketWithoutAccept,
        Leg {
            outcomes: &["declined"],
            rules: &[],
        },
        Leg {
            outcomes: &["switched"],
            rules: &["ws-101-accept-missing"],
        },
        &[],
    );
    assert_eq!(received.status, 502, "{received:?}");
}

const CONTENT_LENGTH_ON_101: &str = "upgrade-101-has-content-length";

/// Caddy and HAProxy drop the 101's `Content-Length`; nginx keeps it.
fn content_length_on_101_through(proxy: Proxy, frontend_rules: &[&str]) -> Received {
    let received = websocket_offer_through(
        proxy,
        Backend::ContentLengthOn101,
        Leg {
            outcomes: &["switched"],
            rules: frontend_rules,
        },
        Leg {
            outcomes: &["switched"],
            rules: &[CONTENT_LENGTH_ON_101],
        },
        &[],
    );
    assert_eq!(received.status, 101, "{received:?}");
    assert!(received.bytes_flow, "{received:?}");
    received
}

#[test]
#[ignore = "needs root"]
fn caddy_removes_the_content_length_of_a_101() {
    require_privileges();
    let received = content_length_on_101_through(Proxy::Caddy, &[]);
    assert_eq!(received.header("Content-Length"), None, "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn nginx_keeps_the_content_length_of_a_101() {
    require_privileges();
    let received = content_length_on_101_through(Proxy::Nginx, &[CONTENT_LENGTH_ON_101]);
    assert_eq!(received.header("Content-Length"), Some("0"), "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn haproxy_removes_the_content_length_of_a_101() {
    require_privileges();
    let received = content_length_on_101_through(Proxy::HAProxy, &[]);
    assert_eq!(received.header("Content-Length"), None, "{received:?}");
}

/// Without `proxy_set_header Upgrade/Connection` nginx sends the backend a
/// plain HTTP/1.0 GET: the backend leg shows no offer and no rule, and the
/// backend's 400 reaches the client as a declined offer.
#[test]
#[ignore = "needs root"]
fn nginx_without_upgrade_headers_never_offers_the_upgrade_to_the_backend() {
    require_privileges();
    let observed = offer_through(
        Proxy::NginxWithoutUpgradeHeaders,
        Backend::WebSocket,
        Offer::websocket(),
        send_offer,
    );
    assert_legs(
        &observed.events,
        Leg {
            outcomes: &["declined"],
            rules: &[],
        },
        Leg {
            outcomes: &[],
            rules: &[],
        },
    );
    let received = &observed.received;
    assert_eq!(received.status, 400, "{received:?}");
    assert_eq!(received.header("Upgrade"), None, "{received:?}");
}

const H2C_DEPRECATED: &str = "h2c-upgrade-deprecated";
const H2C_ACCEPTED: &str = "h2c-upgrade-accepted";
const H2C_MISSING_PREFACE: &str = "h2c-missing-preface";

/// `h2c-upgrade-accepted` is critical on the backend leg, a warning on
/// the frontend leg.
fn assert_h2c_accepted_severities(events: &[Value]) {
    for alert in of_type(events, "alert") {
        if alert["alert"]["rule"] == H2C_ACCEPTED {
            let expected = if alert["flow"]["role"] == "backend" {
                "critical"
            } else {
                "warning"
            };
            assert_eq!(alert["alert"]["severity"], expected, "{alert}");
        }
    }
}

/// The rules a correct h2c offer raises on the backend leg once `proxy`
/// forwarded it, as the `*_forwards_h2c_*` tests show.
fn forwarded_h2c_offer_rules(proxy: Proxy) -> Vec<&'static str> {
    match proxy {
        Proxy::Caddy => vec![
            H2C_DEPRECATED,
            "h2c-settings-count",
            "h2c-settings-not-connection-option",
        ],
        Proxy::Nginx => vec![H2C_DEPRECATED, "h2c-settings-not-connection-option"],
        Proxy::HAProxy => vec![H2C_DEPRECATED],
        Proxy::NginxWithoutUpgradeHeaders => {
            panic!("nginx without upgrade lines forwards no offer")
        }
        Proxy::NginxPooled | Proxy::HAProxyPooled => {
            panic!("the h2c tests run through the proxies as the matrix configures them")
        }
    }
}

/// curl's h2c offer through `proxy` to the backend `start_backend` starts:
/// the legs show `frontend` and `backend`, and curl got a complete
/// response.
fn curl_h2c_through<B>(
    proxy: Proxy,
    start_backend: impl FnOnce(&ProxyLab) -> B,
    frontend: Leg,
    backend: Leg,
) -> CurlReceived {
    let observed = through(proxy, start_backend, |lab| {
        curl_http2(lab).expect("run curl")
    });
    assert_legs(&observed.events, frontend, backend);
    assert_h2c_accepted_severities(&observed.events);
    let curl = observed.received;
    assert_eq!(
        curl.exit_code,
        Some(0),
        "{curl:?}; proxy log:\n{}",
        observed.proxy_log
    );
    curl
}

/// curl's h2c offer through `proxy` to a backend that accepts it: every
/// proxy forwards the offer and passes the 101 on, so curl talks HTTP/2
/// to the backend through a tunnel the proxy does not inspect.
fn h2c_through(proxy: Proxy) {
    let curl = curl_h2c_through(
        proxy,
        lab_backend(Backend::H2c),
        Leg {
            outcomes: &["switched"],
            rules: &[H2C_DEPRECATED, H2C_ACCEPTED],
        },
        Leg {
            outcomes: &["switched"],
            rules: &[forwarded_h2c_offer_rules(proxy), vec![H2C_ACCEPTED]].concat(),
        },
    );
    assert!(curl.output.starts_with("HTTP/1.1 101"), "{curl:?}");
    assert_eq!(
        (curl.http_version.as_str(), curl.status),
        ("2", 200),
        "{curl:?}"
    );
}

/// Caddy forwards `Upgrade: h2c` but drops `HTTP2-Settings` and its
/// connection option, so the backend leg also breaks RFC 7540 §3.2.
#[test]
#[ignore = "needs root"]
fn caddy_forwards_h2c_without_its_settings() {
    require_privileges();
    h2c_through(Proxy::Caddy);
}

/// nginx forwards `HTTP2-Settings` but writes `Connection: upgrade`
/// without the `HTTP2-Settings` option.
#[test]
#[ignore = "needs root"]
fn nginx_forwards_h2c_without_the_settings_connection_option() {
    require_privileges();
    h2c_through(Proxy::Nginx);
}

/// HAProxy forwards the offer as the client made it.
#[test]
#[ignore = "needs root"]
fn haproxy_forwards_h2c_unchanged() {
    require_privileges();
    h2c_through(Proxy::HAProxy);
}

/// curl's h2c offer through `proxy` to a server without h2c: every proxy
/// forwards the offer and passes the server's plain 200 on, so the offer
/// is declined on both legs and curl goes on with HTTP/1.1.
fn h2c_declined_by_the_backend_behind(proxy: Proxy) {
    let curl = curl_h2c_through(
        proxy,
        lab_backend(Backend::WithoutH2c),
        Leg {
            outcomes: &["declined"],
            rules: &[H2C_DEPRECATED],
        },
        Leg {
            outcomes: &["declined"],
            rules: &forwarded_h2c_offer_rules(proxy),
        },
    );
    assert_eq!(
        (curl.http_version.as_str(), curl.status),
        ("1.1", 200),
        "{curl:?}"
    );
    assert_eq!(curl.body(), HTTP11_BODY, "{curl:?}");
}

#[test]
#[ignore = "needs root"]
fn caddy_passes_a_backends_h2c_refusal_on() {
    require_privileges();
    h2c_declined_by_the_backend_behind(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_a_backends_h2c_refusal_on() {
    require_privileges();
    h2c_declined_by_the_backend_behind(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn haproxy_passes_a_backends_h2c_refusal_on() {
    require_privileges();
    h2c_declined_by_the_backend_behind(Proxy::HAProxy);
}

/// Without `proxy_set_header Upgrade/Connection` nginx forwards curl's h2c
/// offer as a plain GET: the frontend leg shows the declined offer, the
/// backend leg nothing, and the h2c server answers over HTTP/1.1.
#[test]
#[ignore = "needs root"]
fn nginx_without_upgrade_headers_strips_the_h2c_offer() {
    require_privileges();
    let curl = curl_h2c_through(
        Proxy::NginxWithoutUpgradeHeaders,
        lab_backend(Backend::H2c),
        Leg {
            outcomes: &["declined"],
            rules: &[H2C_DEPRECATED],
        },
        Leg {
            outcomes: &[],
            rules: &[],
        },
    );
    assert_eq!(
        (curl.http_version.as_str(), curl.status),
        ("1.1", 200),
        "{curl:?}"
    );
    assert_eq!(curl.body(), HTTP11_BODY, "{curl:?}");
}

/// The lab client's h2c offer through `proxy` to a server that accepts
/// it; after the 101 the client sends its probe where the HTTP/2
/// connection preface belongs. The proxy tunnels the probe to the backend,
/// so both legs show the client's missing preface; the server's SETTINGS
/// comes first on both, so the client alone is at fault.
fn h2c_without_preface_through(proxy: Proxy) {
    let observed = offer_through(proxy, Backend::H2c, Offer::h2c(), send_offer);
    assert_legs(
        &observed.events,
        Leg {
            outcomes: &["switched"],
            rules: &[H2C_DEPRECATED, H2C_ACCEPTED, H2C_MISSING_PREFACE],
        },
        Leg {
            outcomes: &["switched"],
            rules: &[
                forwarded_h2c_offer_rules(proxy),
                vec![H2C_ACCEPTED, H2C_MISSING_PREFACE],
            ]
            .concat(),
        },
    );
    assert_h2c_accepted_severities(&observed.events);
    for alert in of_type(&observed.events, "alert") {
        if alert["alert"]["rule"] == H2C_MISSING_PREFACE {
            assert_eq!(
                alert["alert"]["message"],
                "after the h2c 101 the client's first bytes are `lab-probe-after-101`, \
                 not the connection preface",
                "{alert}"
            );
        }
    }
    let received = &observed.received;
    assert_eq!(received.status, 101, "{received:?}");
    assert_eq!(received.header("Upgrade"), Some("h2c"), "{received:?}");
}

#[test]
#[ignore = "needs root"]
fn caddy_tunnels_an_h2c_client_without_preface() {
    require_privileges();
    h2c_without_preface_through(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn nginx_tunnels_an_h2c_client_without_preface() {
    require_privileges();
    h2c_without_preface_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn haproxy_tunnels_an_h2c_client_without_preface() {
    require_privileges();
    h2c_without_preface_through(Proxy::HAProxy);
}

/// A python3-websockets client through `proxy` to a python3-websockets
/// echo server: the echo comes back, and both legs show one clean switch.
fn python_websockets_through(proxy: Proxy) {
    const MESSAGE: &str = "hello from python3-websockets";
    let observed = through(
        proxy,
        |lab| RealBackend::python_websocket_echo(lab).unwrap_or_else(|error| panic!("{error}")),
        |lab| python_websocket_client(lab, "/echo", MESSAGE).expect("run the client"),
    );
    let client = &observed.received;
    assert_eq!(
        client.exit_code,
        Some(0),
        "{client:?}; proxy log:\n{}",
        observed.proxy_log
    );
    assert_eq!(client.stdout.trim_end(), MESSAGE, "{client:?}");
    assert_clean_switch_on_both_legs(&observed.events);
}

#[test]
#[ignore = "needs root"]
fn python_websockets_through_caddy_is_clean_on_both_legs() {
    require_privileges();
    python_websockets_through(Proxy::Caddy);
}

#[test]
#[ignore = "needs root"]
fn python_websockets_through_nginx_is_clean_on_both_legs() {
    require_privileges();
    python_websockets_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn python_websockets_through_haproxy_is_clean_on_both_legs() {
    require_privileges();
    python_websockets_through(Proxy::HAProxy);
}

/// curl's h2c offer through `proxy` to nghttpx, which accepts an h2c
/// upgrade only with exactly one `HTTP2-Settings` (RFC 7540 §3.2) and
/// otherwise answers over HTTP/1.1: the legs show `frontend` and
/// `backend`, and curl gets nghttpd's file either way.
fn h2c_to_nghttpx_through(proxy: Proxy, frontend: Leg, backend: Leg) -> CurlReceived {
    let curl = curl_h2c_through(
        proxy,
        |lab| RealBackend::nghttpx_h2c(lab).unwrap_or_else(|error| panic!("{error}")),
        frontend,
        backend,
    );
    assert_eq!(curl.status, 200, "{curl:?}");
    assert!(curl.output.ends_with(H2C_BODY), "{curl:?}");
    curl
}

/// Caddy drops `HTTP2-Settings`, so nghttpx declines the offer: the
/// upgrade silently falls back to HTTP/1.1 and the backend leg shows the
/// broken offer.
#[test]
#[ignore = "needs root"]
fn caddy_loses_the_h2c_upgrade_to_nghttpx() {
    require_privileges();
    let curl = h2c_to_nghttpx_through(
        Proxy::Caddy,
        Leg {
            outcomes: &["declined"],
            rules: &[H2C_DEPRECATED],
        },
        Leg {
            outcomes: &["declined"],
            rules: &forwarded_h2c_offer_rules(Proxy::Caddy),
        },
    );
    assert_eq!(curl.http_version, "1.1", "{curl:?}");
    assert!(curl.output.starts_with("HTTP/1.1 200"), "{curl:?}");
}

/// nghttpx accepts the offer nginx and HAProxy forward, `HTTP2-Settings`
/// connection option or not.
fn h2c_upgrade_to_nghttpx_through(proxy: Proxy) {
    let curl = h2c_to_nghttpx_through(
        proxy,
        Leg {
            outcomes: &["switched"],
            rules: &[H2C_DEPRECATED, H2C_ACCEPTED],
        },
        Leg {
            outcomes: &["switched"],
            rules: &[forwarded_h2c_offer_rules(proxy), vec![H2C_ACCEPTED]].concat(),
        },
    );
    assert_eq!(curl.http_version, "2", "{curl:?}");
    assert!(curl.output.starts_with("HTTP/1.1 101"), "{curl:?}");
}

#[test]
#[ignore = "needs root"]
fn nginx_passes_the_h2c_upgrade_to_nghttpx() {
    require_privileges();
    h2c_upgrade_to_nghttpx_through(Proxy::Nginx);
}

#[test]
#[ignore = "needs root"]
fn haproxy_passes_the_h2c_upgrade_to_nghttpx() {
    require_privileges();
    h2c_upgrade_to_nghttpx_through(Proxy::HAProxy);
}
