//! What each side is reading: a head, a body, the search for the next
//! message start once the boundaries were lost, early data held back, the
//! bytes after a switch; and what a hole in the bytes does to each.

use std::mem;

use super::declined::NextStart;
use super::end::End;
use super::{loss_flags, Connection, Cx, Phase, Starts, MALFORMED};
use crate::http::awaiting::Pending;
use crate::http::exchange::Quality;
use crate::http::framing::{BodyHole, BodyProgress, BodyReader};
use crate::http::head::{HeadReader, HeadStep, Role};
use crate::http::resync::Scanner;
use crate::http::GateUntil;
use crate::stream::GapKind;

/// Bytes kept of a message start that is not HTTP/1.1 after a declined upgrade.
const NOT_HTTP_KEPT: usize = 16;

/// The readers of other states than `Head` are boxed so that the common
/// one, a connection waiting in a head, is not the size of the largest.
pub(super) enum Reader {
    /// At a message start, or inside a head.
    Head(HeadReader),
    /// `exchange`: the pending exchange the body belongs to, if any.
    Body {
        body: Box<BodyReader>,
        exchange: Option<u64>,
    },
    /// Boundaries lost: looking for the next message start.
    Resync(Box<Scanner>),
    /// Client bytes that are not a request, after a request whose answer may
    /// switch protocols (early data): kept until that answer.
    Held(Box<Held>),
    /// After a 101: bytes go to the switch's first bytes.
    Switched,
    Ignored,
}

impl Reader {
    pub(super) fn resync(role: Option<Role>) -> Reader {
        Reader::Resync(Box::new(Scanner::new(role)))
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Reader::Head(head) => head.heap_bytes(),
            Reader::Body { .. } => mem::size_of::<BodyReader>(),
            Reader::Resync(scanner) => mem::size_of::<Scanner>() + scanner.heap_bytes(),
            Reader::Held(held) => mem::size_of::<Held>() + held.bytes.capacity(),
            Reader::Switched | Reader::Ignored => 0,
        }
    }
}

pub(super) struct Held {
    pub bytes: Vec<u8>,
    /// Stream offset of `bytes[0]`.
    pub start: u64,
    /// Bytes after `bytes` were not kept: lost, or over the cap (`Uncopied`).
    pub cut: Option<GapKind>,
}

/// What one step of a side's reader did with the input.
struct Step {
    reader: Reader,
    used: usize,
    /// Already-consumed bytes to read again, before the rest of the input.
    again: Option<Vec<u8>>,
}

impl Step {
    fn took(reader: Reader, used: usize) -> Step {
        Step {
            reader,
            used,
            again: None,
        }
    }
}

impl Connection {
    /// Reads `input`, which starts at stream offset `start` of the side `end`.
    pub(super) fn feed(&mut self, end: End, input: &[u8], start: u64, ts: u64, cx: &mut Cx<'_>) {
        let mut again: Vec<u8> = Vec::new();
        let mut again_used = 0;
        let mut input_used = 0;
        let mut at = start;
        while !matches!(self.phase, Phase::Over) {
            let from_again = again_used < again.len();
            let chunk = if from_again {
                &again[again_used..]
            } else if input_used < input.len() {
                &input[input_used..]
            } else {
                return;
            };
            let reader = mem::replace(&mut self.sides[end].reader, Reader::Ignored);
            let step = self.step(end, reader, chunk, at, ts, cx);
            if matches!(self.phase, Phase::Over) {
                return;
            }
            self.sides[end].reader = step.reader;
            at = at.saturating_add(step.used as u64);
            if from_again {
                again_used += step.used;
            } else {
                input_used += step.used;
            }
            if let Some(mut bytes) = step.again {
                at = at.saturating_sub(bytes.len() as u64);
                bytes.extend_from_slice(&again[again_used..]);
                again = bytes;
                again_used = 0;
            }
            // A large body that starts here is gated before its first byte
            // arrives, not after: a sender that writes head and body
            // separately would otherwise have much of the body copied.
            let large_body = match &mut self.sides[end].reader {
                Reader::Body { body, .. } => body.gate_request(cx.limits.large_body_bytes),
                _ => None,
            };
            if let Some(remaining) = large_body {
                self.gate(end, GateUntil::Offset(at.saturating_add(remaining)), cx);
            }
        }
    }

    fn step(
        &mut self,
        end: End,
        reader: Reader,
        input: &[u8],
        at: u64,
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        match reader {
            Reader::Head(head) => self.read_head(end, head, input, at, ts, cx),
            Reader::Body { body, exchange } => self.read_body(end, body, exchange, input, at, cx),
            Reader::Resync(mut scanner) => match scanner.scan(input, cx.limits.max_head_bytes) {
                None => Step::took(Reader::Resync(scanner), input.len()),
                Some(found) => {
                    if self.client.is_none() {
                        self.assign_roles(end, found.role);
                    }
                    let side = &mut self.sides[end];
                    if mem::take(&mut side.searching_first) {
                        // The seed may begin in earlier input than this.
                        let end = at.saturating_add(found.used as u64);
                        let start = end.saturating_sub(found.seed.len() as u64);
                        if start > 0 {
                            side.starts = Starts::NextUnsure;
                        }
                    }
                    Step::took(
                        Reader::Head(HeadReader::starting_with(found.seed, found.role)),
                        found.used,
                    )
                }
            },
            Reader::Held(mut held) => {
                let cap = cx.limits.max_head_bytes.max(cx.limits.switch_bytes);
                if held.cut.is_none() {
                    let take = input.len().min(cap.saturating_sub(held.bytes.len()));
                    crate::http::extend_within(&mut held.bytes, &input[..take], cap);
                    if take < input.len() {
                        held.cut = Some(GapKind::Uncopied);
                    }
                }
                Step::took(Reader::Held(held), input.len())
            }
            Reader::Switched => {
                self.keep_first_bytes(end, input, cx);
                Step::took(Reader::Switched, input.len())
            }
            Reader::Ignored => Step::took(Reader::Ignored, input.len()),
        }
    }

    fn read_head(
        &mut self,
        end: End,
        mut head: HeadReader,
        input: &[u8],
        at: u64,
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        let role = self.role(end);
        let (step, used) = head.push(input, role, cx.limits.max_head_bytes);
        match (step, role) {
            (HeadStep::NeedMore, _) => Step::took(Reader::Head(head), used),
            (HeadStep::Identified(found), _) => {
                self.assign_roles(end, found);
                Step::took(Reader::Head(head), used)
            }
            (HeadStep::NotAMessage, _) => {
                let mut shown = head.bytes().to_vec();
                shown.extend_from_slice(&input[used..]);
                shown.truncate(NOT_HTTP_KEPT);
                self.next_start(end, NextStart::NotHttp(&shown), cx);
                let start = at
                    .saturating_add(used as u64)
                    .saturating_sub(head.bytes().len() as u64);
                self.not_a_message(end, head.into_bytes(), start, used, input.len(), cx)
            }
            (HeadStep::Complete, Some(Role::Client)) => {
                self.next_start(end, NextStart::Http, cx);
                let request = head.complete_head(input, used);
                Step::took(self.request_head(end, request, ts, cx), used)
            }
            (HeadStep::Complete, Some(Role::Server)) => {
                self.next_start(end, NextStart::Http, cx);
                let response = head.complete_head(input, used);
                Step::took(self.response_head(end, response, ts, cx), used)
            }
            (HeadStep::Complete, None) => Step::took(Reader::resync(None), used),
            (HeadStep::TooLarge, _) => {
                self.lost_oversized_message(end, cx);
                Step::took(Reader::resync(role), used)
            }
        }
    }

    /// The bytes at a message start of the side `end` (`bytes`, from stream offset
    /// `start`, the last one decisive) are not a message of its role.
    fn not_a_message(
        &mut self,
        end: End,
        bytes: Vec<u8>,
        start: u64,
        used: usize,
        input_len: usize,
        cx: &mut Cx<'_>,
    ) -> Step {
        let role = self.role(end);
        if self.at_intact_start && role != Some(Role::Server) {
            self.give_up(cx);
            return Step::took(Reader::Ignored, input_len);
        }
        if role == Some(Role::Client) && self.awaiting.iter().any(Pending::may_switch) {
            return Step::took(
                Reader::Held(Box::new(Held {
                    bytes,
                    start,
                    cut: None,
                })),
                used,
            );
        }
        self.lost_message(end, MALFORMED, MALFORMED, cx);
        // A message may start after the first of these bytes.
        let again = bytes
            .get(1..)
            .filter(|rest| !rest.is_empty())
            .map(<[u8]>::to_vec);
        Step {
            reader: Reader::resync(role),
            used,
            again,
        }
    }

    fn read_body(
        &mut self,
        end: End,
        mut body: Box<BodyReader>,
        exchange: Option<u64>,
        input: &[u8],
        at: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        match body.feed(input) {
            BodyProgress::More => {
                if let Some(remaining) = body.gate_request(cx.limits.large_body_bytes) {
                    let body_end = at
                        .saturating_add(input.len() as u64)
                        .saturating_add(remaining);
                    let until = GateUntil::Offset(body_end);
                    self.gate(end, until, cx);
                }
                Step::took(Reader::Body { body, exchange }, input.len())
            }
            BodyProgress::Done(used) => Step::took(self.after_message(end), used),
            BodyProgress::Invalid(used) => {
                self.flag_awaiting(exchange, MALFORMED);
                Step::took(self.lose_boundaries(end, MALFORMED, cx), used)
            }
        }
    }

    /// The side `end` lost track of where its body ends: it searches for the next
    /// message start, and `flags` marks the exchanges of its later messages.
    /// During a switch (the offer's own body) it is where the new protocol
    /// starts that is lost.
    fn lose_boundaries(&mut self, end: End, flags: Quality, cx: &mut Cx<'_>) -> Reader {
        if let Phase::Switching(switch) = &mut self.phase {
            switch.exchange.quality.absorb(flags);
            self.first_bytes_done(end, true, cx);
            return Reader::Switched;
        }
        self.taint(end, flags, cx);
        Reader::resync(self.role(end))
    }

    /// What the side `end` reads once a message ended.
    pub(super) fn after_message(&self, end: End) -> Reader {
        match (&self.phase, self.role(end)) {
            // The offer's own body went first; the new protocol follows it.
            (Phase::Switching(_), Some(Role::Client)) => Reader::Switched,
            _ => Reader::Head(HeadReader::default()),
        }
    }

    pub(super) fn hole(&mut self, end: End, len: u64, kind: GapKind, cx: &mut Cx<'_>) {
        let flags = loss_flags(kind);
        let role = self.role(end);
        let reader = match mem::replace(&mut self.sides[end].reader, Reader::Ignored) {
            Reader::Head(_) => {
                self.lost_message(end, flags, flags, cx);
                Reader::resync(role)
            }
            Reader::Body { mut body, exchange } => match body.skip(len) {
                BodyHole::Skipped => {
                    if kind == GapKind::Lost {
                        self.flag_awaiting(exchange, flags);
                    }
                    Reader::Body { body, exchange }
                }
                BodyHole::Ended { beyond } => {
                    if kind == GapKind::Lost {
                        self.flag_awaiting(exchange, flags);
                    }
                    self.sides[end].reader = self.after_message(end);
                    if beyond > 0 {
                        self.hole(end, beyond, kind, cx);
                    }
                    return;
                }
                BodyHole::Lost => {
                    self.flag_awaiting(exchange, flags);
                    self.lose_boundaries(end, flags, cx)
                }
            },
            Reader::Resync(mut scanner) => {
                scanner.break_continuity();
                self.taint(end, flags, cx);
                Reader::Resync(scanner)
            }
            Reader::Held(mut held) => {
                held.cut.get_or_insert(kind);
                Reader::Held(held)
            }
            Reader::Switched => {
                if let Phase::Switching(switch) = &mut self.phase {
                    let first = &switch.first_bytes[end];
                    let requested = first.gated && kind == GapKind::Uncopied;
                    if !first.done && !requested {
                        switch.exchange.quality.absorb(flags);
                    }
                }
                self.first_bytes_done(end, true, cx);
                Reader::Switched
            }
            Reader::Ignored => Reader::Ignored,
        };
        if !matches!(self.phase, Phase::Over) {
            self.sides[end].reader = reader;
        }
    }
}
