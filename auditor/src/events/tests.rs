//! Events against `schema/events.schema.json` and the field names of
//! docs/interfaces.md.

use std::{collections::BTreeSet, sync::LazyLock};

use serde_json::{json, Value};

use super::*;
use crate::{
    http::Exchange,
    rules::{self, testing, Context, Finding},
};

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../../schema/events.schema.json")).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
});

const HOST: &str = "sensor-1";
/// 2026-11-26T07:13:08.420039999Z.
const T0: u64 = 1_795_677_188_420_039_999;

const WEBSOCKET_OFFER: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
const WEBSOCKET_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: pbs.example\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
const PROXMOX_101: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

fn schema_errors(event: &Value) -> Vec<String> {
    SCHEMA
        .iter_errors(event)
        .map(|error| format!("{} at {}", error, error.instance_path))
        .collect()
}

fn assert_valid(event: &Value) {
    let errors = schema_errors(event);
    assert!(errors.is_empty(), "{event:#}\n{errors:#?}");
}

/// A valid event, a change that breaks it, and a part of the error the
/// change must cause.
type BrokenEvent<'a> = (&'a Value, fn(&mut Value), &'a str);

fn json_of(event: &Event) -> Value {
    serde_json::to_value(event).unwrap()
}

/// The exchange of `request` and `response`, its request head completed at
/// `T0` and its response head 1.5 ms later.
fn timed_exchange(request: &[u8], response: &[u8]) -> Exchange {
    let mut exchange = testing::exchange(request, response);
    exchange.request_ns = Some(T0);
    exchange.response_ns = exchange.response.as_ref().map(|_| T0 + 1_500_000);
    exchange
}

/// The events of an exchange with the findings of the whole catalogue.
fn evaluated(exchange: &Exchange) -> Vec<Event> {
    let allowlist = RedactionAllowlist::default();
    let context = EventContext {
        host: &Arc::from(HOST),
        interface: Some("eth0"),
        role: Some(PortRole::Frontend),
        allowlist: &allowlist,
    };
    let findings = rules::evaluate(exchange, &Context::default());
    events_for(exchange, &findings, &context)
}

fn one_finding() -> Vec<Finding> {
    vec![Finding {
        rule: rules::catalogue().next().unwrap(),
        severity: Severity::Warning,
        message: "something was seen".into(),
    }]
}

#[test]
fn every_kind_of_event_validates_against_the_schema() {
    let corpus = [
        timed_exchange(WEBSOCKET_OFFER, WEBSOCKET_101),
        timed_exchange(PROXMOX_OFFER, PROXMOX_101),
        timed_exchange(
            WEBSOCKET_OFFER,
            b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
        ),
        timed_exchange(WEBSOCKET_OFFER, b""),
        timed_exchange(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        ),
        timed_exchange(
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nUpgrade: foo/2\r\nConnection: upgrade\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/2\r\nConnection: Upgrade\r\n\r\n",
        ),
    ];
    let mut events: Vec<Event> = corpus.iter().flat_map(evaluated).collect();

    let mut summaries = Vec::new();
    let mut limiter = AlertRateLimiter::new(RateLimitSettings {
        max_alerts: 1,
        ..RateLimitSettings::default()
    });
    let alerts = events
        .iter()
        .chain(&events)
        .filter(|event| matches!(event.body, EventBody::Alert(_)));
    for alert in alerts.cloned() {
        limiter.admit(alert, &mut Vec::new());
    }
    limiter.finish(&mut summaries);
    assert!(!summaries.is_empty());
    events.extend(summaries);

    let loss = LossCounters {
        kernel_drops: 3,
        alerts_suppressed: limiter.suppressed_total(),
        ..LossCounters::default()
    };
    events.push(Event::loss(T0, HOST, loss));
    events.push(Event::stats(
        T0,
        HOST,
        StatsCounters {
            segments: 100,
            exchanges: 6,
            loss,
            ..StatsCounters::default()
        },
    ));

    let mut kinds = BTreeSet::new();
    for event in &events {
        let value = json_of(event);
        assert_valid(&value);
        let kind = value["event_type"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "handshake" => kinds.insert(value["handshake"]["outcome"].to_string()),
            "alert" if value["alert"].get("suppressed").is_some() => {
                kinds.insert("summary".to_owned())
            }
            _ => kinds.insert(kind),
        };
    }
    assert_eq!(
        kinds,
        BTreeSet::from(
            [
                "alert",
                "loss",
                "stats",
                "summary",
                "\"switched\"",
                "\"declined\"",
                "\"incomplete\""
            ]
            .map(str::to_owned)
        )
    );
}

#[test]
fn a_handshake_event_has_the_contracted_fields() {
    let events = evaluated(&timed_exchange(WEBSOCKET_OFFER, WEBSOCKET_101));
    let handshake = events
        .iter()
        .map(json_of)
        .find(|e| e["event_type"] == "handshake")
        .unwrap();
    let rules = handshake["handshake"]["rules"].clone();
    assert_eq!(
        handshake,
        json!({
            "timestamp": "2026-11-26T07:13:08.421539Z",
            "schema_version": 1,
            "host": "sensor-1",
            "event_type": "handshake",
            "flow": {
                "src_ip": "192.0.2.1",
                "src_port": 40000,
                "dest_ip": "192.0.2.2",
                "dest_port": 8080,
                "community_id": community_id::tcp(testing::client(), testing::server()),
                "interface": "eth0",
                "role": "frontend"
            },
            "http": {
                "request": {
                    "method": "GET",
                    "target": "/chat?[redacted]",
                    "version": "HTTP/1.1",
                    "host": "example.com",
                    "upgrade": ["websocket"],
                    "connection": ["keep-alive", "Upgrade"],
                    "sec_websocket_key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "sec_websocket_version": "13",
                    "sec_websocket_protocol": ["chat", "superchat"],
                    "sec_websocket_extensions": ["permessage-deflate"],
                    "http2_settings": false,
                    "expect": null
                },
                "response": {
                    "status": 101,
                    "version": "HTTP/1.1",
                    "upgrade": ["websocket"],
                    "connection": ["Upgrade"],
                    "sec_websocket_accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "sec_websocket_version": null,
                    "sec_websocket_protocol": ["chat"],
                    "sec_websocket_extensions": [],
                    "http2_settings": false
                },
                "interim": []
            },
            "capture": {
                "complete": true,
                "midstream": false,
                "gaps": false,
                "truncated": false,
                "oversized": false,
                "conflicting_overlap": false,
                "malformed": false
            },
            "handshake": {
                "protocols_offered": ["websocket"],
                "outcome": "switched",
                "protocol": "websocket",
                "latency_us": 1500,
                "rules": rules
            }
        })
    );
    // A compliant handshake: whatever rules exist, none fires.
    assert_eq!(rules, json!([]));
    assert_eq!(events.len(), 1);
}

#[test]
fn an_alert_event_carries_the_rule_and_the_same_flow_and_http() {
    let events = evaluated(&timed_exchange(PROXMOX_OFFER, PROXMOX_101));
    let events: Vec<Value> = events.iter().map(json_of).collect();
    let [handshake, alert] = &events[..] else {
        panic!("a handshake and one alert expected: {events:#?}");
    };
    assert_eq!(handshake["event_type"], "handshake");
    assert_eq!(
        handshake["handshake"]["rules"],
        json!(["upgrade-101-missing-connection-option"])
    );
    assert_eq!(
        handshake["handshake"]["protocol"],
        "proxmox-backup-protocol-v1"
    );
    assert_eq!(alert["event_type"], "alert");
    for shared in ["timestamp", "host", "flow", "http", "capture"] {
        assert_eq!(alert[shared], handshake[shared], "{shared}");
    }
    let rule = rules::find("upgrade-101-missing-connection-option").unwrap();
    let body = &alert["alert"];
    assert_eq!(body["rule"], rule.id);
    assert_eq!(body["severity"], "error");
    assert_eq!(body["actor"], rule.actor);
    assert_eq!(body["spec"], rule.spec);
    assert_eq!(body["remediation"], rule.remediation);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("no `Connection`"));
    assert_eq!(
        body["proxy_impact"],
        serde_json::to_value(rule.proxy_impact).unwrap()
    );
    assert!(body["proxy_impact"][0]["outcome"].is_string());
    assert!(body.get("suppressed").is_none() && body.get("interval_s").is_none());
}

#[test]
fn declined_and_incomplete_offers_name_no_protocol() {
    let declined = evaluated(&timed_exchange(
        WEBSOCKET_OFFER,
        b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    ));
    let declined = json_of(&declined[0]);
    assert_eq!(declined["handshake"]["outcome"], "declined");
    assert_eq!(declined["handshake"]["protocol"], Value::Null);
    assert_eq!(declined["handshake"]["latency_us"], 1500);

    let incomplete = json_of(&evaluated(&timed_exchange(WEBSOCKET_OFFER, b""))[0]);
    assert_eq!(incomplete["handshake"]["outcome"], "incomplete");
    assert_eq!(incomplete["http"]["response"], Value::Null);
    assert_eq!(incomplete["handshake"]["latency_us"], Value::Null);
    assert_eq!(incomplete["timestamp"], "2026-11-26T07:13:08.420039Z");
}

#[test]
fn a_request_that_is_no_offer_gets_alerts_but_no_handshake() {
    let exchange = timed_exchange(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let allowlist = RedactionAllowlist::default();
    let context = EventContext {
        host: &Arc::from(HOST),
        interface: None,
        role: None,
        allowlist: &allowlist,
    };
    let events = events_for(&exchange, &one_finding(), &context);
    assert_eq!(events.len(), 1);
    let alert = json_of(&events[0]);
    assert_valid(&alert);
    assert_eq!(alert["event_type"], "alert");
    assert_eq!(alert["flow"]["interface"], Value::Null);
    assert_eq!(alert["flow"]["role"], Value::Null);
    assert!(events_for(&exchange, &[], &context).is_empty());
}

#[test]
fn an_impaired_capture_is_reported_as_such() {
    let mut exchange = timed_exchange(WEBSOCKET_OFFER, WEBSOCKET_101);
    exchange.quality = Quality {
        midstream: true,
        gap: true,
        ..Quality::default()
    };
    let event = json_of(&evaluated(&exchange)[0]);
    assert_valid(&event);
    assert_eq!(
        event["capture"],
        json!({
            "complete": false,
            "midstream": true,
            "gaps": true,
            "truncated": false,
            "oversized": false,
            "conflicting_overlap": false,
            "malformed": false
        })
    );
}

#[test]
fn timestamps_are_utc_rfc3339_with_microseconds() {
    assert_eq!(Timestamp::of(T0).as_str(), "2026-11-26T07:13:08.420039Z");
    assert_eq!(Timestamp::of(0).as_str(), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        Timestamp::of(u64::MAX).as_str(),
        "2554-07-21T23:34:33.709551Z"
    );
}

/// Whether `event`'s JSON text has `keys` in this order, each at its first
/// occurrence: enough for keys that no nested object has before them.
fn writes_keys_in_order(event: &Event, keys: &[&str]) -> bool {
    let text = serde_json::to_string(event).unwrap();
    let positions: Vec<Option<usize>> = keys
        .iter()
        .map(|key| text.find(&format!("\"{key}\":")))
        .collect();
    positions.iter().all(Option::is_some) && positions.is_sorted()
}

#[test]
fn events_write_the_common_fields_then_the_event_type_then_the_body() {
    let events = evaluated(&timed_exchange(PROXMOX_OFFER, PROXMOX_101));
    let common = ["timestamp", "schema_version", "host", "event_type"];
    let body = ["flow", "http", "capture"];
    assert!(writes_keys_in_order(
        &events[0],
        &[&common[..], &body, &["handshake"]].concat()
    ));
    assert!(writes_keys_in_order(
        &events[1],
        &[&common[..], &body, &["alert"]].concat()
    ));
    let loss = Event::loss(T0, HOST, LossCounters::default());
    assert!(writes_keys_in_order(
        &loss,
        &[&common[..], &["loss"]].concat()
    ));
}

#[test]
fn loss_and_stats_events_carry_their_counters() {
    let loss = LossCounters {
        reassembly_gaps: 2,
        ..LossCounters::default()
    };
    let event = json_of(&Event::loss(T0, HOST, loss));
    assert_eq!(event["event_type"], "loss");
    assert_eq!(event["loss"]["reassembly_gaps"], 2);
    assert_eq!(event["loss"]["kernel_drops"], 0);
    let event = json_of(&Event::stats(T0, HOST, StatsCounters::default()));
    assert_eq!(event["event_type"], "stats");
    assert_eq!(event["stats"]["loss"]["alerts_suppressed"], 0);
}

#[test]
fn the_schema_rejects_missing_misspelled_and_out_of_range_fields() {
    let events = evaluated(&timed_exchange(PROXMOX_OFFER, PROXMOX_101));
    let (handshake, alert) = (json_of(&events[0]), json_of(&events[1]));
    assert_valid(&handshake);
    assert_valid(&alert);

    let broken: [BrokenEvent; 12] = [
        (
            &handshake,
            |e| drop(e.as_object_mut().unwrap().remove("host")),
            "\"host\" is a required property",
        ),
        (
            &handshake,
            |e| {
                let host = e.as_object_mut().unwrap().remove("host").unwrap();
                e["hots"] = host;
            },
            "'hots' was unexpected",
        ),
        (
            &handshake,
            |e| {
                let flow = e["flow"].as_object_mut().unwrap();
                let ip = flow.remove("src_ip").unwrap();
                flow.insert("source_ip".into(), ip);
            },
            "'source_ip' was unexpected",
        ),
        (
            &handshake,
            |e| e["event_type"] = json!("handshakes"),
            "at /event_type",
        ),
        (
            &handshake,
            |e| e["event_type"] = json!("alert"),
            "\"alert\" is a required property",
        ),
        (
            &handshake,
            |e| e["schema_version"] = json!(2),
            "at /schema_version",
        ),
        (
            &handshake,
            |e| e["timestamp"] = json!("2026-11-26T07:13:08Z"),
            "at /timestamp",
        ),
        (
            &handshake,
            |e| e["handshake"]["outcome"] = json!("accepted"),
            "at /handshake/outcome",
        ),
        (
            &handshake,
            |e| e["handshake"]["outcome"] = json!("declined"),
            "at /handshake/protocol",
        ),
        (
            &handshake,
            |e| e["flow"]["dest_port"] = json!(70000),
            "at /flow/dest_port",
        ),
        (
            &alert,
            |e| e["alert"]["severity"] = json!("fatal"),
            "at /alert/severity",
        ),
        (
            &alert,
            |e| e["alert"]["suppressed"] = json!(3),
            "\"interval_s\" is a required property",
        ),
    ];
    for (valid, breaking, expected) in broken {
        let mut event = valid.clone();
        breaking(&mut event);
        let errors = schema_errors(&event);
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "expected an error with {expected:?} for {event:#}, got {errors:#?}"
        );
    }
}

#[test]
fn pretty_alerts_are_coloured_only_when_asked() {
    let events = evaluated(&timed_exchange(PROXMOX_OFFER, PROXMOX_101));
    let alert = events
        .iter()
        .find(|e| matches!(e.body, EventBody::Alert(_)))
        .unwrap();
    let flow = "192.0.2.1:40000 → 192.0.2.2:8080 (frontend) on eth0";
    let plain = pretty::render(alert, false);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "2026-11-26T07:13:08.421539Z ERROR upgrade-101-missing-connection-option",
            &format!("  seen on    {flow}"),
            "  what       the 101 carried `Upgrade: proxmox-backup-protocol-v1` but no",
        ]
    );
    assert_eq!(
        lines[3], "             `Connection`",
        "wrapped under itself"
    );
    assert!(
        lines.iter().all(|line| line.chars().count() <= 80),
        "{plain}"
    );
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let coloured = pretty::render(alert, true);
    assert_eq!(
        coloured.lines().next().unwrap(),
        "2026-11-26T07:13:08.421539Z \x1b[31mERROR\x1b[0m \x1b[1mupgrade-101-missing-connection-option\x1b[0m"
    );
    assert_eq!(
        coloured.lines().skip(1).collect::<Vec<_>>(),
        plain.lines().skip(1).collect::<Vec<_>>(),
        "only the first line is coloured"
    );
}
