//! Requests and responses: heads read into the queue of requests awaiting
//! responses, each final response paired with the oldest, messages that
//! could not be read standing in their place, and what is reported when.

use std::mem;

use super::declined::NextStart;
use super::end::End;
use super::reading::Reader;
use super::{loss_flags, Connection, Cx, Phase, Pickup, MALFORMED};
use crate::http::awaiting::Pending;
use crate::http::exchange::{EarlyData, Pairing, Quality, RequestHead};
use crate::http::framing::{request_framing, response_framing, BodyReader, Framing};
use crate::http::head::{parse_request, parse_response, HeadError, HeadReader, Role};

impl Connection {
    pub(super) fn request_head(
        &mut self,
        end: End,
        bytes: &[u8],
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Reader {
        let request = match parse_request(bytes, cx.limits.max_headers) {
            Ok(request) => request,
            Err(error) => return self.unreadable_head(end, error, cx),
        };
        self.at_intact_start = false;
        let framing = request_framing(&request);
        let first_in_line = self.awaiting.is_empty() && self.sides[end.peer()].idle();
        let sure_start = self.sides[end].take_request_start(first_in_line);
        let mut pending = self.new_pending(end, Some(request), Some(ts));
        pending.first_in_line = first_in_line;
        if let Some(pickup) = &mut self.pickup {
            pending.pairing = match sure_start {
                true => Pairing::RequestOnly,
                false => Pairing::Unknown,
            };
            let answered = mem::take(&mut pickup.answered_first_in_line);
            pickup.in_step |= first_in_line && answered;
        }
        let seq = pending.seq;
        pending.quality.malformed |= framing == Framing::Invalid;
        self.sides[end].last_request = Some(seq);
        // Out of step, a request followed by another before its answer may
        // be one of several quoted back to back in a body.
        let out_of_step = self.pickup.as_ref().is_some_and(|p| !p.in_step);
        for earlier in self.awaiting.iter_mut() {
            earlier.pipelined_behind = true;
            if out_of_step {
                earlier.pairing = Pairing::Unknown;
            }
        }
        self.push_awaiting(pending, cx);
        match BodyReader::new(framing, cx.limits.max_head_bytes) {
            Some(body) => Reader::Body {
                body: Box::new(body),
                exchange: Some(seq),
            },
            None if framing == Framing::Invalid => {
                self.taint(end, MALFORMED, cx);
                Reader::resync(Some(Role::Client))
            }
            None => Reader::Head(HeadReader::default()),
        }
    }

    pub(super) fn response_head(
        &mut self,
        end: End,
        bytes: &[u8],
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Reader {
        let response = match parse_response(bytes, cx.limits.max_headers) {
            Ok(response) => response,
            Err(error) => return self.unreadable_head(end, error, cx),
        };
        self.at_intact_start = false;
        let overlap = mem::take(&mut self.sides[end].overlap_pending);
        let sure_start = self.sides[end].take_response_start();
        let status = response.line.status;
        if (100..200).contains(&status) && status != 101 {
            if self.awaiting.is_empty() {
                let unseen = self.new_pending(end, None, None);
                self.push_awaiting(unseen, cx);
            }
            if !self.awaiting.add_interim(response, cx.limits) {
                cx.stats.interim_dropped += 1;
            }
            if let Some(front) = self.awaiting.front_mut() {
                front.quality.absorb(self.later_responses);
                front.quality.conflicting_overlap |= overlap;
            }
            return Reader::Head(HeadReader::default());
        }
        let mut pending = match self.awaiting.pop_front() {
            Some(pending) => pending,
            None => {
                // A request sent before capture started, or lost.
                if let Some(pickup) = &mut self.pickup {
                    *pickup = Pickup::default();
                }
                self.new_pending(end, None, None)
            }
        };
        self.pair_after_pickup(&mut pending, sure_start, status);
        pending.quality.absorb(self.later_responses);
        pending.quality.conflicting_overlap |= overlap;
        let method = pending.request.as_ref().map(|r| r.line.method.as_str());
        let framing = response_framing(method, &response);
        let tunnel = method == Some("CONNECT") && (200..300).contains(&status);
        let may_switch = pending.may_switch();
        pending.response = Some(response);
        pending.response_ns = Some(ts);
        // Held bytes follow every request awaiting: they are the early data
        // of the last that may switch, unless an earlier one switches now.
        if may_switch && (status == 101 || !self.awaiting.iter().any(Pending::may_switch)) {
            pending.early_data = self.early_data(end.peer(), status == 101);
        }
        if status == 101 {
            self.begin_switch(end, pending, ts, cx);
            return Reader::Switched;
        }
        if pending.carries_upgrade() && !tunnel {
            self.await_next_starts(end, pending, ts, cx);
        } else {
            self.report(pending, None, cx);
        }
        if tunnel {
            self.gate_both(cx);
            self.report_unanswered(cx);
            return Reader::Ignored;
        }
        if may_switch {
            self.release_held(end.peer(), ts, cx);
        }
        match BodyReader::new(framing, cx.limits.max_head_bytes) {
            Some(body) => Reader::Body {
                body: Box::new(body),
                exchange: None,
            },
            None if framing == Framing::Invalid => {
                self.taint(end, MALFORMED, cx);
                Reader::resync(Some(Role::Server))
            }
            None => Reader::Head(HeadReader::default()),
        }
    }

    /// On a connection picked up mid-stream, whether `pending`'s request
    /// and the final response with `status` that takes it certainly belong
    /// together (see [`Pickup`]).
    fn pair_after_pickup(&mut self, pending: &mut Pending, sure_start: bool, status: u16) {
        let Some(pickup) = &mut self.pickup else {
            return;
        };
        let requested_first_in_line = pending.first_in_line && pending.pairing != Pairing::Unknown;
        if requested_first_in_line && sure_start {
            if pickup.in_step || status == 101 {
                pending.pairing = Pairing::Certain;
            }
            pickup.answered_first_in_line = true;
        }
    }

    fn unreadable_head(&mut self, end: End, error: HeadError, cx: &mut Cx<'_>) -> Reader {
        match error {
            HeadError::TooManyHeaders => self.lost_oversized_message(end, cx),
            HeadError::Malformed => self.lost_message(end, MALFORMED, MALFORMED, cx),
        }
        Reader::resync(self.role(end))
    }

    /// [`Self::lost_message`] for a head over a limit: the message is
    /// oversized, and what follows it is truncated.
    pub(super) fn lost_oversized_message(&mut self, end: End, cx: &mut Cx<'_>) {
        cx.stats.heads_oversized += 1;
        let oversized = Quality {
            oversized: true,
            ..Quality::default()
        };
        let later = Quality {
            truncated: true,
            ..Quality::default()
        };
        self.lost_message(end, oversized, later, cx);
    }

    /// A message of the side `end` could not be read: the client's stands in the
    /// queue as a request not seen, the server's answers the oldest request.
    /// `own` flags that exchange, `later` the exchanges of the side's later
    /// messages.
    pub(super) fn lost_message(&mut self, end: End, own: Quality, later: Quality, cx: &mut Cx<'_>) {
        self.at_intact_start = false;
        match self.role(end) {
            Some(Role::Client) => {
                let mut lost = self.new_pending(end, None, None);
                lost.quality.absorb(own);
                self.push_awaiting(lost, cx);
            }
            Some(Role::Server) => {
                if let Some(mut answered) = self.awaiting.pop_front() {
                    answered.quality.absorb(own);
                    answered.quality.absorb(self.later_responses);
                    answered.quality.conflicting_overlap |=
                        mem::take(&mut self.sides[end].overlap_pending);
                    self.report(answered, None, cx);
                }
            }
            None => {}
        }
        self.taint(end, later, cx);
    }

    /// The side `end` lost message boundaries: `flags` marks the exchanges of its
    /// later messages (of both sides while the roles are unknown).
    pub(super) fn taint(&mut self, end: End, flags: Quality, cx: &mut Cx<'_>) {
        self.next_start(end, NextStart::Unknowable, cx);
        let role = self.role(end);
        if role != Some(Role::Server) {
            self.later_requests.absorb(flags);
        }
        if role != Some(Role::Client) {
            self.later_responses.absorb(flags);
        }
    }

    fn new_pending(
        &mut self,
        end: End,
        request: Option<RequestHead>,
        request_ns: Option<u64>,
    ) -> Pending {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut pending = Pending::new(seq, request, request_ns);
        pending.quality = self.later_requests;
        if self.role(end) == Some(Role::Client) {
            pending.quality.conflicting_overlap |= mem::take(&mut self.sides[end].overlap_pending);
        }
        pending
    }

    fn push_awaiting(&mut self, pending: Pending, cx: &mut Cx<'_>) {
        cx.stats.requests_not_kept += self.awaiting.push(pending, cx.limits);
    }

    pub(super) fn flag_awaiting(&mut self, exchange: Option<u64>, flags: Quality) -> bool {
        let Some(seq) = exchange else { return false };
        match self.awaiting.find_mut(seq) {
            Some(pending) => {
                pending.quality.absorb(flags);
                true
            }
            None => false,
        }
    }

    pub(super) fn assign_roles(&mut self, end: End, role: Role) {
        let client = match role {
            Role::Client => end,
            Role::Server => end.peer(),
        };
        self.client = Some(client);
        let peer = end.peer();
        if let Reader::Resync(scanner) = &mut self.sides[peer].reader {
            scanner.set_wanted(role.peer());
        }
    }

    /// The answer to the last request that could switch protocols was not a
    /// switch: the client bytes held since are HTTP again.
    fn release_held(&mut self, client: End, ts: u64, cx: &mut Cx<'_>) {
        if self.awaiting.iter().any(Pending::may_switch)
            || !matches!(self.sides[client].reader, Reader::Held(_))
        {
            return;
        }
        let Reader::Held(held) = mem::replace(
            &mut self.sides[client].reader,
            Reader::Head(HeadReader::default()),
        ) else {
            return;
        };
        self.feed(client, &held.bytes, held.start, ts, cx);
        if let Some(kind) = held.cut {
            // Where the kept bytes end, the position in the stream is lost.
            self.taint(client, loss_flags(kind), cx);
            if !matches!(self.phase, Phase::Over) {
                self.sides[client].reader = Reader::resync(Some(Role::Client));
            }
        }
    }

    /// Client bytes that came before the answer to a request that may
    /// switch and did not start a request; with `switch`, an unfinished
    /// request head the switch takes as the new protocol counts too.
    fn early_data(&self, client: End, switch: bool) -> Option<EarlyData> {
        let side = &self.sides[client];
        match &side.reader {
            Reader::Held(held) => Some(EarlyData {
                bytes: side.next_offset.saturating_sub(held.start),
                looks_like_request: false,
            }),
            Reader::Head(head) if switch && !head.bytes().is_empty() => Some(EarlyData {
                bytes: head.bytes().len() as u64,
                looks_like_request: true,
            }),
            _ => None,
        }
    }
}
