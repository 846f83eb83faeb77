//! The rules and the events on exchanges made from any heads: one
//! connection's conversation (see `auditor_fuzz::conversation`) goes through
//! the HTTP tracker, as reassembly would hand it over, so that every exchange
//! is one the pipeline can make; each exchange then goes through the rules
//! engine and the reporter, and every event is written as JSON and for a
//! person.
//!
//! Besides not panicking: a rule outside the rules of every exchange never
//! fires on an exchange that involves no upgrade (the engine skips them
//! there), and unless allowed, the values of secret fields and query strings
//! reach neither the events nor the exchanges `--exchanges` prints.

#![no_main]

use std::collections::HashMap;

use auditor::{
    events::{pretty, Event, ExchangeRecord, RedactionAllowlist, SECRET_FIELDS},
    http::{Exchange, Headers, HttpOutput, HttpTracker},
    stream::{CloseReason, ConnectionId, StreamEvent},
    reporter::{ReportSettings, Reporter},
    rules::{self, Context, Offer, Scope},
};
use auditor_fuzz::{
    conversation::{self, Settings, What},
    http_limits, report_settings, segments, START_NS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Then the marker may come out as the input's own bytes.
    let marker_in_input = input
        .windows(MARKER.len())
        .any(|window| window == MARKER.as_bytes());
    let (settings, pieces) = conversation::decode(input);
    let id = ConnectionId(0);
    let (client, server) = segments::endpoints(0, false);
    let mut tracker = HttpTracker::new(http_limits());
    let mut outputs = Vec::new();
    let mut now = START_NS;
    tracker.handle(
        &StreamEvent::Opened {
            id,
            first: client,
            second: server,
            syn_sender: (!settings.midstream).then_some(client),
            midstream: settings.midstream,
            interface: Some(0),
            timestamp_ns: now,
        },
        &mut outputs,
    );
    // What reassembly guarantees: each side's offsets follow on, nothing
    // is empty, and nothing comes after a side's end.
    let mut offsets = [0u64; 2];
    let mut finished = [false; 2];
    for piece in pieces {
        let side = usize::from(piece.from_server);
        let src = [client, server][side];
        if piece.pause_secs > 0 {
            now += u64::from(piece.pause_secs) * 1_000_000_000;
            tracker.tick(now, &mut outputs);
        }
        now += 1_000;
        if finished[side] {
            continue;
        }
        if piece.overlap_before && offsets[side] > 0 {
            tracker.handle(
                &StreamEvent::ConflictingOverlap {
                    id,
                    src,
                    offset: offsets[side] - 1,
                    len: 1,
                    timestamp_ns: now,
                },
                &mut outputs,
            );
        }
        let offset = offsets[side];
        let event = match piece.what {
            What::Data([]) | What::Gap { len: 0, .. } => continue,
            What::Data(bytes) => {
                offsets[side] += bytes.len() as u64;
                StreamEvent::Data {
                    id,
                    src,
                    offset,
                    bytes,
                    timestamp_ns: now,
                }
            }
            What::Gap { len, kind } => {
                offsets[side] += len;
                StreamEvent::Gap {
                    id,
                    src,
                    offset,
                    len,
                    kind,
                    timestamp_ns: now,
                }
            }
            What::Finished => {
                finished[side] = true;
                StreamEvent::Finished {
                    id,
                    src,
                    timestamp_ns: now,
                }
            }
        };
        tracker.handle(&event, &mut outputs);
    }
    tracker.handle(
        &StreamEvent::Closed {
            id,
            reason: CloseReason::Fin,
            timestamp_ns: now,
        },
        &mut outputs,
    );

    let context = Context {
        role: settings.role,
    };
    let mut reporter = Reporter::new(reporting(&settings));
    let mut marked_reporter = Reporter::new(reporting(&settings));
    let (mut events, mut marked_events) = (Vec::new(), Vec::new());
    let mut marked_exchanges = Vec::new();
    for output in outputs {
        let HttpOutput::Exchange(exchange) = output else {
            continue;
        };
        serde_json::to_vec(&ExchangeRecord(&exchange)).expect("an exchange serializes");
        check_scope(&exchange, &context);
        reporter.report(&exchange, &mut events);
        let marked = with_marked_secrets(&exchange);
        marked_reporter.report(&marked, &mut marked_events);
        marked_exchanges
            .push(serde_json::to_string(&ExchangeRecord(&marked)).expect("an exchange serializes"));
    }
    reporter.finish(&mut events);
    marked_reporter.finish(&mut marked_events);

    written(&events, settings.colour);
    let marked_written = written(&marked_events, settings.colour);
    if !settings.reveal_secrets && !marker_in_input {
        for text in marked_written.iter().chain(&marked_exchanges) {
            assert!(
                !text.contains(MARKER),
                "a secret reached the output: {text}"
            );
        }
    }
});

/// What the secrets of [`with_marked_secrets`] start with: no text of the
/// auditor holds it, and neither hex nor base64 can spell it.
const MARKER: &str = "zq7xk3-secret";

/// The engine runs only the rules of every exchange on an exchange that
/// involves no upgrade: none of the others may fire on it.
fn check_scope(exchange: &Exchange, context: &Context) {
    let offer = Offer::of(exchange);
    if offer.involves_upgrade || exchange.quality.impaired() || exchange.request.is_none() {
        return;
    }
    for rule in rules::catalogue().filter(|rule| rule.scope == Scope::Upgrade) {
        if let Some(violation) = (rule.check)(exchange, &offer, context) {
            panic!(
                "{} fired on an exchange without upgrade: {}",
                rule.id, violation.message
            );
        }
    }
}

/// `exchange` with every secret field value and query string replaced by
/// [`MARKER`] and a number, which the output may then show only when the
/// allowlist lets secrets through.
fn with_marked_secrets(exchange: &Exchange) -> Exchange {
    let mut marked = exchange.clone();
    let mut count = 0;
    let mut mark = |headers: &Headers| {
        let mut marked = Headers::new();
        for header in headers.iter() {
            if SECRET_FIELDS
                .iter()
                .any(|secret| header.name.eq_ignore_ascii_case(secret))
            {
                count += 1;
                marked.push(header.name, format!("{MARKER}-{count}").as_bytes());
            } else {
                marked.push(header.name, header.value);
            }
        }
        marked
    };
    if let Some(request) = &mut marked.request {
        request.headers = mark(&request.headers);
        if let Some((path, _)) = request.line.target.split_once('?') {
            request.line.target = format!("{path}?{MARKER}-query");
        }
    }
    for response in marked.interim.iter_mut().chain(&mut marked.response) {
        response.headers = mark(&response.headers);
    }
    marked
}

/// Each event as JSON and as the pretty format renders it.
fn written(events: &[Event], colour: bool) -> Vec<String> {
    events
        .iter()
        .flat_map(|event| {
            [
                serde_json::to_string(event).expect("an event serializes"),
                pretty::render(event, colour),
            ]
        })
        .collect()
}

fn reporting(settings: &Settings) -> ReportSettings {
    let (_, server) = segments::endpoints(0, false);
    let allowlist = if settings.reveal_secrets {
        RedactionAllowlist {
            headers: SECRET_FIELDS.map(String::from).to_vec(),
            query_strings: true,
            ..RedactionAllowlist::default()
        }
    } else {
        RedactionAllowlist::default()
    };
    ReportSettings {
        roles: settings
            .role
            .map(|role| HashMap::from([(server.port(), role)]))
            .unwrap_or_default(),
        allowlist,
        ..report_settings()
    }
}
