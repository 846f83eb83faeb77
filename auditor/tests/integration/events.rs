//! `auditor replay` as a CI gate: the events it prints for real and
//! generated captures, validated against the JSON Schema, with secrets
//! redacted and `--fail-on` deciding the exit code.

use std::{net::SocketAddr, path::Path, process::Command};

use crate::support::{
    daemon::AUDITOR,
    pcap_writer::{pcap, Conversation, Link, TempFile},
    replay::{data, Replay},
    schema::valid_events,
};
use serde_json::Value;

/// `auditor replay ARGS FILES`, with every event checked against the schema.
fn replay(args: &[&str], files: &[&Path]) -> Replay {
    crate::support::replay::replay(args, files, |stdout| valid_events(stdout.lines()))
}

fn of_type<'a>(run: &'a Replay, event_type: &str) -> Vec<&'a Value> {
    run.lines
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

fn alert_rules(run: &Replay) -> Vec<&str> {
    of_type(run, "alert")
        .iter()
        .map(|e| e["alert"]["rule"].as_str().unwrap())
        .collect()
}

fn conversation(client_bytes: &[&[u8]], server_bytes: &[&[u8]]) -> Conversation {
    let client: SocketAddr = "10.20.0.1:43000".parse().unwrap();
    let server: SocketAddr = "10.20.0.2:8007".parse().unwrap();
    let mut conversation = Conversation::new(client, server);
    conversation.handshake();
    for (request, response) in client_bytes.iter().zip(server_bytes) {
        conversation.client_sends(request).server_sends(response);
    }
    conversation.client_fin().server_fin();
    conversation
}

fn capture(name: &str, client_bytes: &[&[u8]], server_bytes: &[&[u8]]) -> TempFile {
    let packets = conversation(client_bytes, server_bytes).into_packets();
    TempFile::new(name, &pcap(Link::Ethernet, &packets))
}

const PROXMOX_REQUEST: &[u8] = b"GET /api2/json/backup?backup-type=host&backup-id=pve HTTP/1.1\r\nHost: pbs.lab:8007\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\nAuthorization: PBSAPIToken=root@pam!ci:0b9c-secret-token\r\n\r\n";
const PROXMOX_RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";

#[test]
fn the_proxmox_case_raises_one_alert_that_names_the_rule_the_fix_and_the_proxies() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    let run = replay(&[], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        alert_rules(&run),
        ["upgrade-101-missing-connection-option"],
        "{}",
        run.stdout
    );
    let alert = of_type(&run, "alert")[0];
    assert_eq!(alert["alert"]["severity"], "error");
    assert_eq!(alert["alert"]["spec"], "RFC 9110 §7.8, §7.6.1");
    assert_eq!(
        alert["alert"]["message"],
        "the 101 carried `Upgrade: proxmox-backup-protocol-v1` but no `Connection`"
    );
    let impact = alert["alert"]["proxy_impact"].as_array().unwrap();
    let outcome = |proxy: &str| {
        impact
            .iter()
            .find(|i| i["proxy"] == proxy)
            .map(|i| i["outcome"].clone())
    };
    assert_eq!(outcome("Caddy"), Some("breaks".into()));
    assert_eq!(outcome("HAProxy"), Some("breaks".into()));
    assert_eq!(outcome("nginx"), Some("tolerates".into()));
    assert_eq!(alert["flow"]["dest_port"], 8007);
    assert!(alert["flow"]["community_id"]
        .as_str()
        .unwrap()
        .starts_with("1:"));
    let handshake = of_type(&run, "handshake")[0];
    assert_eq!(handshake["handshake"]["outcome"], "switched");
    assert_eq!(
        handshake["handshake"]["rules"],
        serde_json::json!(["upgrade-101-missing-connection-option"])
    );
    assert!(
        !run.stdout.contains("secret-token"),
        "the Authorization value is redacted"
    );
    assert!(
        !run.stdout.contains("backup-id=pve"),
        "the query string is redacted"
    );
}

#[test]
fn an_offer_behind_64_pipelined_requests_is_judged_and_what_was_given_up_counted() {
    let plain = b"GET /status HTTP/1.1\r\nHost: pbs.lab:8007\r\n\r\n".repeat(64);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".repeat(64);
    let requests = [plain, PROXMOX_REQUEST.to_vec()].concat();
    let responses = [ok, PROXMOX_RESPONSE.to_vec()].concat();
    let file = capture("pipelined.pcap", &[&requests], &[&responses]);
    let run = replay(&["--fail-on", "warning"], &[file.path()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert_eq!(
        alert_rules(&run),
        ["upgrade-101-missing-connection-option"],
        "{}",
        run.stdout
    );
    let loss = of_type(&run, "loss");
    assert_eq!(loss.len(), 1, "{}", run.stdout);
    assert_eq!(loss[0]["loss"]["http_requests_not_kept"], 1);
}

#[test]
fn fail_on_exits_1_at_or_above_the_threshold() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    assert_eq!(
        replay(&["--fail-on", "error"], &[file.path()]).code,
        Some(1)
    );
    assert_eq!(
        replay(&["--fail-on", "warning"], &[file.path()]).code,
        Some(1)
    );
    assert_eq!(
        replay(&["--fail-on", "critical"], &[file.path()]).code,
        Some(0)
    );
    let bad = Command::new(AUDITOR)
        .args(["replay", "--fail-on", "fatal"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown severity is a usage error"
    );
}

/// A configuration watching the Proxmox case's port, with `rules` as its
/// `[rules]` table.
fn rules_config(rules: &str) -> TempFile {
    TempFile::new(
        "rules.toml",
        format!("[[ports]]\nport = 8007\n[rules]\n{rules}").as_bytes(),
    )
}

#[test]
fn a_disabled_rule_never_raises() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    let config = rules_config("disabled = [\"upgrade-101-missing-connection-option\"]\n");
    let config = config.path().to_str().unwrap();
    let run = replay(&["--config", config, "--fail-on", "info"], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(alert_rules(&run), Vec::<&str>::new(), "{}", run.stdout);
    let handshake = of_type(&run, "handshake")[0];
    assert_eq!(handshake["handshake"]["outcome"], "switched");
    assert_eq!(handshake["handshake"]["rules"], serde_json::json!([]));
}

#[test]
fn a_severity_override_changes_the_alert_and_what_fail_on_compares() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    let config =
        rules_config("severity = { \"upgrade-101-missing-connection-option\" = \"critical\" }\n");
    let config = config.path().to_str().unwrap();
    let run = replay(
        &["--config", config, "--fail-on", "critical"],
        &[file.path()],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim_end(),
        "auditor: an alert of severity critical was raised"
    );
    let alerts = of_type(&run, "alert");
    assert_eq!(alerts.len(), 1, "{}", run.stdout);
    assert_eq!(
        alerts[0]["alert"]["rule"],
        "upgrade-101-missing-connection-option"
    );
    assert_eq!(alerts[0]["alert"]["severity"], "critical");

    let lowered =
        rules_config("severity = { \"upgrade-101-missing-connection-option\" = \"info\" }\n");
    let lowered = lowered.path().to_str().unwrap();
    let run = replay(
        &["--config", lowered, "--fail-on", "warning"],
        &[file.path()],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(of_type(&run, "alert")[0]["alert"]["severity"], "info");
}

/// An operator's allowlist: the silenced alert is not emitted, does not
/// fail the gate, and is counted; a silence that matches something else, or
/// expired, leaves the alert.
#[test]
fn a_silence_keeps_an_accepted_finding_out_of_the_events_and_the_gate() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    let config = |silence: &str| {
        TempFile::new(
            "silence.toml",
            format!(
                "[[ports]]\nport = 8007\n[[silence]]\n{silence}comment = \"vendor appliance\"\n"
            )
            .as_bytes(),
        )
    };
    let run_with = |silence: &str| {
        let config = config(silence);
        replay(
            &[
                "--config",
                config.path().to_str().unwrap(),
                "--fail-on",
                "error",
            ],
            &[file.path()],
        )
    };
    let silenced = run_with("server = \"10.20.0.0/24\"\nhost = \"PBS.lab\"\n");
    assert_eq!(silenced.code, Some(0), "{}", silenced.stderr);
    assert!(alert_rules(&silenced).is_empty(), "{}", silenced.stdout);
    assert_eq!(of_type(&silenced, "handshake").len(), 1);
    assert_eq!(
        silenced.stderr.trim_end(),
        "auditor: silenced by the configuration: upgrade-101-missing-connection-option 1"
    );
    for other in [
        "server = \"10.21.0.0/24\"\n",
        "rule = \"ws-key-invalid\"\n",
        "rule = \"upgrade-101-missing-connection-option\"\nexpires = 2020-01-31\n",
    ] {
        let run = run_with(other);
        assert_eq!(run.code, Some(1), "{other}: {}", run.stderr);
        assert_eq!(alert_rules(&run), ["upgrade-101-missing-connection-option"]);
    }
}

#[test]
fn real_compliant_handshakes_raise_nothing_at_warning_or_above() {
    let run = replay(
        &["--fail-on", "warning"],
        &[&data("websocket-python.pcap"), &data("nginx-curl.pcap")],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let handshakes = of_type(&run, "handshake");
    let outcomes: Vec<&str> = handshakes
        .iter()
        .map(|h| h["handshake"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["switched", "declined"], "{}", run.stdout);
    assert_eq!(handshakes[0]["handshake"]["protocol"], "websocket");
    assert!(handshakes[0]["handshake"]["latency_us"].as_u64().is_some());
}

#[test]
fn an_h2c_upgrade_is_reported_as_deprecated_and_accepted() {
    let run = replay(&[], &[&data("h2c-curl-nghttpx.pcap")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut rules = alert_rules(&run);
    rules.sort_unstable();
    assert_eq!(
        rules,
        ["h2c-upgrade-accepted", "h2c-upgrade-deprecated"],
        "{}",
        run.stdout
    );
    let backend = replay(
        &["--port", "8081:backend", "--fail-on", "critical"],
        &[&data("h2c-curl-nghttpx.pcap")],
    );
    assert_eq!(
        backend.code,
        Some(1),
        "critical on a backend port: {}",
        backend.stdout
    );
}

#[test]
fn repeated_alerts_are_rate_limited_and_counted() {
    let requests: Vec<&[u8]> =
        vec![b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"; 15];
    let responses: Vec<&[u8]> = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"; 15];
    let file = capture("repeat.pcap", &requests, &responses);
    let run = replay(&[], &[file.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let alerts = of_type(&run, "alert");
    let plain = alerts
        .iter()
        .filter(|a| a["alert"]["suppressed"].is_null())
        .count();
    let summaries: Vec<&&Value> = alerts
        .iter()
        .filter(|a| !a["alert"]["suppressed"].is_null())
        .collect();
    assert_eq!(plain, 10, "{}", run.stdout);
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0]["alert"]["suppressed"], 5);
    let loss = of_type(&run, "loss");
    assert_eq!(loss.len(), 1);
    assert_eq!(loss[0]["loss"]["alerts_suppressed"], 5);
}

#[test]
fn no_rule_judges_bytes_that_were_not_captured() {
    let packets = conversation(&[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]).into_packets();
    // The segment that carried the 101 head never reached the capture.
    let mut lost = packets.clone();
    let response = lost
        .iter()
        .position(|p| p.payload.starts_with(b"HTTP/1.1 101"))
        .unwrap();
    lost.remove(response);
    let lost = TempFile::new("lost.pcap", &pcap(Link::Ethernet, &lost));
    let run = replay(&["--fail-on", "info"], &[lost.path()]);
    assert_eq!(run.code, Some(0), "no alert: {}", run.stdout);
    assert!(alert_rules(&run).is_empty(), "{}", run.stdout);
    let handshake = of_type(&run, "handshake");
    assert!(
        handshake
            .iter()
            .all(|h| h["capture"]["gaps"] == true && h["capture"]["complete"] == false),
        "the capture quality says why: {}",
        run.stdout
    );
}

/// A capture cut after the handshake, or after the first exchange, starts
/// in the middle of the connection: the offer after it is judged as in the
/// whole capture, and its events say the start was not seen.
#[test]
fn a_capture_that_starts_mid_connection_judges_the_later_offer() {
    const PLAIN: &[u8] = b"GET /api2/json/version HTTP/1.1\r\nHost: pbs.lab:8007\r\n\r\n";
    const PLAIN_200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    let packets =
        conversation(&[PLAIN, PROXMOX_REQUEST], &[PLAIN_200, PROXMOX_RESPONSE]).into_packets();
    let starting_with = |bytes: &[u8]| {
        packets
            .iter()
            .position(|p| p.payload.starts_with(bytes))
            .unwrap()
    };
    let whole = TempFile::new("whole.pcap", &pcap(Link::Ethernet, &packets));
    let run = replay(&["--fail-on", "error"], &[whole.path()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let expected = alert_rules(&run);
    assert_eq!(expected, ["upgrade-101-missing-connection-option"]);
    for cut_at in [starting_with(PLAIN), starting_with(PROXMOX_REQUEST)] {
        let cut = TempFile::new("cut.pcap", &pcap(Link::Ethernet, &packets[cut_at..]));
        let run = replay(&["--fail-on", "error"], &[cut.path()]);
        assert_eq!(run.code, Some(1), "{}", run.stdout);
        assert_eq!(alert_rules(&run), expected, "{}", run.stdout);
        let alert = of_type(&run, "alert")[0];
        assert_eq!(alert["capture"]["midstream"], true);
        assert_eq!(alert["capture"]["complete"], true);
    }
}

#[test]
fn pretty_output_tells_a_person_the_rule_the_fix_and_the_proxies() {
    let file = capture("proxmox.pcap", &[PROXMOX_REQUEST], &[PROXMOX_RESPONSE]);
    let run =
        crate::support::replay::replay(&["--format", "pretty"], &[file.path()], |_| Vec::new());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for expected in [
        "Z ERROR upgrade-101-missing-connection-option\n  seen on    10.20.0.1:43000 → 10.20.0.2:8007\n",
        "\n  what       the 101 carried `Upgrade: proxmox-backup-protocol-v1` but no\n",
        "\n  spec       RFC 9110 §7.8, §7.6.1\n",
        "\n  breaks     Caddy: the client receives an empty 200",
        "\n  tolerates  nginx: ",
        "handshake switched offered proxmox-backup-protocol-v1 on 10.20.0.1:43000 → 10.20.0.2:8007, switched to proxmox-backup-protocol-v1, rules: upgrade-101-missing-connection-option",
    ] {
        assert!(run.stdout.contains(expected), "{expected:?} in\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("secret-token"));
}
