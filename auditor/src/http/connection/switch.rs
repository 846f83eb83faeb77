//! After a 101: the first bytes of each side in the new protocol, and the
//! switch reported once both are in.

use std::mem;

use super::end::{End, PerEnd};
use super::reading::Reader;
use super::{loss_flags, Connection, Cx, Phase};
use crate::http::awaiting::Pending;
use crate::http::exchange::Switched;

/// The exchange of a 101 waits for the first bytes of each side.
pub(super) struct Switch {
    pub exchange: Pending,
    pub deadline_ns: u64,
    pub first_bytes: PerEnd<FirstBytes>,
}

#[derive(Default)]
pub(super) struct FirstBytes {
    pub bytes: Vec<u8>,
    pub done: bool,
    /// The capture was asked to stop copying this side: the bytes already in
    /// flight still count, and the hole that follows is ours, not a loss.
    pub gated: bool,
}

impl Connection {
    pub(super) fn begin_switch(
        &mut self,
        server: End,
        mut exchange: Pending,
        ts: u64,
        cx: &mut Cx<'_>,
    ) {
        let client = server.peer();
        let switch_bytes = cx.limits.switch_bytes;
        let mut client_bytes = Vec::new();
        // The client's first bytes cannot be collected further.
        let mut client_ended = self.sides[client].finished;
        match mem::replace(&mut self.sides[client].reader, Reader::Switched) {
            Reader::Body {
                body,
                exchange: Some(seq),
            } if seq == exchange.seq => {
                self.sides[client].reader = Reader::Body {
                    body,
                    exchange: Some(seq),
                };
            }
            Reader::Head(head) => client_bytes = head.into_bytes(),
            Reader::Held(held) => {
                client_bytes = held.bytes;
                if let Some(kind) = held.cut.filter(|_| client_bytes.len() < switch_bytes) {
                    exchange.quality.absorb(loss_flags(kind));
                    client_ended = true;
                }
            }
            // Where the new protocol starts in the client's bytes is lost.
            Reader::Resync(_) => client_ended = true,
            Reader::Body { .. } | Reader::Switched | Reader::Ignored => {}
        }
        client_bytes.truncate(switch_bytes);
        let client_full = client_bytes.len() >= switch_bytes;
        let gate_client = !client_bytes.is_empty() && !client_full && !client_ended;
        let mut first_bytes = PerEnd::<FirstBytes>::default();
        first_bytes[client].bytes = client_bytes;
        first_bytes[client].gated = gate_client;
        self.phase = Phase::Switching(Box::new(Switch {
            exchange,
            deadline_ns: ts.saturating_add(cx.limits.switch_wait_ns),
            first_bytes,
        }));
        if gate_client {
            self.gate_forever(client, cx);
        }
        if client_ended || client_full {
            self.first_bytes_done(client, !self.sides[client].finished, cx);
        }
        if switch_bytes == 0 {
            self.first_bytes_done(server, true, cx);
        }
    }

    pub(super) fn keep_first_bytes(&mut self, end: End, input: &[u8], cx: &mut Cx<'_>) {
        let switch_bytes = cx.limits.switch_bytes;
        let Phase::Switching(switch) = &mut self.phase else {
            return;
        };
        let first = &mut switch.first_bytes[end];
        if first.done {
            return;
        }
        let take = input
            .len()
            .min(switch_bytes.saturating_sub(first.bytes.len()));
        first.bytes.extend_from_slice(&input[..take]);
        // The capture stops copying at the first bytes: segments already in
        // flight still fill them up to `switch_bytes`, so a live session
        // moving megabytes copies only its first segments.
        let gate_now = !first.gated && !first.bytes.is_empty();
        first.gated |= gate_now;
        let full = first.bytes.len() >= switch_bytes;
        if gate_now {
            self.gate_forever(end, cx);
        }
        if full {
            self.first_bytes_done(end, true, cx);
        }
    }

    /// The side `end` sent all of its first bytes that will be kept; with `gate`,
    /// the capture may stop copying them. Reports the switch once both did.
    pub(super) fn first_bytes_done(&mut self, end: End, gate: bool, cx: &mut Cx<'_>) {
        let Phase::Switching(switch) = &mut self.phase else {
            return;
        };
        let first = &mut switch.first_bytes[end];
        if !first.done {
            first.done = true;
            let gate = gate && !first.gated;
            first.gated = true;
            if gate {
                self.gate_forever(end, cx);
            }
        }
        if let Phase::Switching(switch) = &self.phase {
            if switch.first_bytes.iter().all(|f| f.done) {
                self.finish_switch(cx);
            }
        }
    }

    pub(super) fn finish_switch(&mut self, cx: &mut Cx<'_>) {
        let Phase::Switching(switch) = mem::replace(&mut self.phase, Phase::Over) else {
            return;
        };
        let Some(client) = self.client() else { return };
        let Switch {
            exchange,
            mut first_bytes,
            ..
        } = *switch;
        let client_bytes = mem::take(&mut first_bytes[client].bytes);
        let server_bytes = mem::take(&mut first_bytes[client.peer()].bytes);
        self.report(
            exchange,
            Some(Switched {
                client_bytes,
                server_bytes,
            }),
            cx,
        );
        self.report_unanswered(cx);
    }
}
