//! One connection: which side is the client, what each side is reading, the
//! requests awaiting their responses, and the switch to another protocol.
//!
//! Each side has a reader (a head, a body, a search for the next message
//! start after the boundaries were lost, ...). Requests join a queue when
//! their head is read; each final response takes the oldest (RFC 9112 §9.2)
//! and the exchange is reported then, except after a 101, which waits for
//! the first bytes of the new protocol, and after another answer to a
//! request carrying `Upgrade`, which waits for the next message start of
//! each side (is HTTP/1.1 going on, or was a tunnel opened without a 101?).

use std::mem;
use std::net::SocketAddr;

use super::awaiting::{Awaiting, Pending};
use super::exchange::{EarlyData, Exchange, NotHttp, Quality, RequestHead, Switched};
use super::framing::{
    request_framing, response_framing, BodyHole, BodyProgress, BodyReader, Framing,
};
use super::head::{parse_request, parse_response, HeadError, HeadReader, HeadStep, Role};
use super::resync::Scanner;
use super::{GateUntil, HttpLimits, HttpOutput, HttpStats, PayloadGateRequest};
use crate::addr::PackedAddr;
use crate::reassembly::{ConnectionId, GapKind};

/// Bytes kept of a message start that is not HTTP/1.1 after a declined upgrade.
const NOT_HTTP_KEPT: usize = 16;

/// What every step needs: the limits, where outputs go, and what limits
/// cost is counted in.
pub(crate) struct Cx<'a> {
    pub limits: &'a HttpLimits,
    pub out: &'a mut Vec<HttpOutput>,
    pub stats: &'a mut HttpStats,
}

pub(crate) struct Connection {
    id: ConnectionId,
    interface: Option<u32>,
    midstream: bool,
    sides: [Side; 2],
    /// Index in `sides` of the client, once known (0 or 1: a u8 keeps the
    /// connection small; read it with `client()`).
    client: Option<u8>,
    /// Exchanges whose request was read (or lost) and whose final response
    /// was not.
    awaiting: Awaiting,
    next_seq: u64,
    /// Client message boundaries were lost: flags every exchange whose
    /// request is read from now on, as its pairing is no longer certain.
    later_requests: Quality,
    /// Server message boundaries were lost: flags every exchange whose
    /// response is read from now on.
    later_responses: Quality,
    /// Every byte was seen since the start and no message was read yet: a
    /// client that does not start with a request line is not HTTP.
    at_intact_start: bool,
    phase: Phase,
    /// A declined upgrade waiting for the next message start of each side.
    declined: Option<Box<Declined>>,
    /// The switch deadline the tracker indexed this connection under.
    pub(crate) indexed_deadline: Option<u64>,
    /// `heap_bytes` as the tracker last counted it.
    pub(crate) counted_bytes: usize,
}

enum Phase {
    Http,
    Switching(Box<Switch>),
    /// No more HTTP on this connection (switched, tunnel, given up).
    Over,
}

/// After a 101: the exchange waits for the first bytes of each side.
struct Switch {
    exchange: Pending,
    deadline_ns: u64,
    /// Indexed like `Connection::sides`.
    first_bytes: [FirstBytes; 2],
}

/// A non-101 final answer to a request carrying `Upgrade`: its exchange is
/// reported once each side's next message start shows whether HTTP/1.1 goes
/// on (see `Exchange::not_http_after_decline`).
struct Declined {
    exchange: Pending,
    deadline_ns: u64,
    /// Indexed like `Connection::sides`: the side's next message start was
    /// read, or can no longer be told.
    decided: [bool; 2],
}

/// What a side's next message start after a declined upgrade showed.
enum NextStart<'a> {
    Http,
    /// These bytes, the first of which do not start an HTTP/1.1 message.
    NotHttp(&'a [u8]),
    /// Boundaries were lost, or the side finished.
    Unknowable,
}

#[derive(Default)]
struct FirstBytes {
    bytes: Vec<u8>,
    done: bool,
    /// The capture was asked to stop copying this side: the bytes already in
    /// flight still count, and the hole that follows is ours, not a loss.
    gated: bool,
}

struct Side {
    addr: PackedAddr,
    next_offset: u64,
    reader: Reader,
    finished: bool,
    /// A conflicting overlap touched bytes not tied to a pending exchange:
    /// it flags the next exchange this side's messages belong to.
    overlap_pending: bool,
    /// The exchange of the last request head this side completed.
    last_request: Option<u64>,
}

/// The readers of other states than `Head` are boxed so that the common
/// one, a connection waiting in a head, is not the size of the largest.
enum Reader {
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
    fn resync(role: Option<Role>) -> Reader {
        Reader::Resync(Box::new(Scanner::new(role)))
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Reader::Head(head) => head.heap_bytes(),
            Reader::Body { .. } => mem::size_of::<BodyReader>(),
            Reader::Resync(scanner) => mem::size_of::<Scanner>() + scanner.heap_bytes(),
            Reader::Held(held) => mem::size_of::<Held>() + held.bytes.capacity(),
            Reader::Switched | Reader::Ignored => 0,
        }
    }
}

struct Held {
    bytes: Vec<u8>,
    /// Stream offset of `bytes[0]`.
    start: u64,
    /// Bytes after `bytes` were not kept: lost, or over the cap (`Uncopied`).
    cut: Option<GapKind>,
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

fn loss_flags(kind: GapKind) -> Quality {
    match kind {
        GapKind::Lost => Quality {
            gap: true,
            ..Quality::default()
        },
        GapKind::Uncopied => Quality {
            truncated: true,
            ..Quality::default()
        },
    }
}

/// Which role side `i` has, when `client` (the client's side) is known.
fn role_of(client: Option<usize>, i: usize) -> Option<Role> {
    client.map(|c| if c == i { Role::Client } else { Role::Server })
}

const MALFORMED: Quality = Quality {
    malformed: true,
    complete: false,
    gap: false,
    truncated: false,
    midstream: false,
    oversized: false,
    conflicting_overlap: false,
};

impl Connection {
    pub(crate) fn open(
        id: ConnectionId,
        first: SocketAddr,
        second: SocketAddr,
        syn_sender: Option<SocketAddr>,
        midstream: bool,
        interface: Option<u32>,
    ) -> Connection {
        let client = syn_sender.and_then(|s| [first, second].iter().position(|a| *a == s));
        let side = |i: usize, addr: SocketAddr| Side {
            addr: addr.into(),
            next_offset: 0,
            reader: if midstream {
                Reader::resync(role_of(client, i))
            } else {
                Reader::Head(HeadReader::default())
            },
            finished: false,
            overlap_pending: false,
            last_request: None,
        };
        Connection {
            id,
            interface,
            midstream,
            sides: [side(0, first), side(1, second)],
            client: client.and_then(|c| u8::try_from(c).ok()),
            awaiting: Awaiting::default(),
            next_seq: 0,
            later_requests: Quality::default(),
            later_responses: Quality::default(),
            at_intact_start: !midstream,
            phase: Phase::Http,
            declined: None,
            indexed_deadline: None,
            counted_bytes: 0,
        }
    }

    /// When the post-switch wait (or the wait after a declined upgrade)
    /// ends, while one runs.
    pub(crate) fn switch_deadline(&self) -> Option<u64> {
        match &self.phase {
            Phase::Switching(switch) => Some(switch.deadline_ns),
            _ => self.declined.as_ref().map(|declined| declined.deadline_ns),
        }
    }

    /// Bytes held on the heap for this connection, for the memory budget
    /// (its own size aside).
    pub(crate) fn heap_bytes(&self) -> usize {
        let phase = match &self.phase {
            Phase::Switching(switch) => {
                let first_bytes = switch.first_bytes.iter().map(|f| f.bytes.capacity());
                mem::size_of::<Switch>() + switch.exchange.heap_bytes() + first_bytes.sum::<usize>()
            }
            Phase::Http | Phase::Over => 0,
        };
        let declined = self
            .declined
            .as_ref()
            .map_or(0, |d| mem::size_of::<Declined>() + d.exchange.heap_bytes());
        let readers = self.sides.iter().map(|side| side.reader.heap_bytes());
        self.awaiting.heap_bytes() + phase + declined + readers.sum::<usize>()
    }

    fn side_of(&self, addr: SocketAddr) -> Option<usize> {
        let addr = PackedAddr::from(addr);
        self.sides.iter().position(|s| s.addr == addr)
    }

    fn role(&self, i: usize) -> Option<Role> {
        role_of(self.client(), i)
    }

    /// Index in `sides` of the client, once known.
    fn client(&self) -> Option<usize> {
        self.client.map(usize::from)
    }

    pub(crate) fn on_data(
        &mut self,
        src: SocketAddr,
        offset: u64,
        bytes: &[u8],
        ts: u64,
        cx: &mut Cx<'_>,
    ) {
        let Some(i) = self.side_of(src) else { return };
        let bytes = match self.catch_up(i, offset, cx) {
            None => bytes,
            Some(seen) => match bytes.get(usize::try_from(seen).unwrap_or(usize::MAX)..) {
                Some(fresh) if !fresh.is_empty() => fresh,
                _ => return,
            },
        };
        let at = self.sides[i].next_offset;
        self.sides[i].next_offset = at.saturating_add(bytes.len() as u64);
        self.feed(i, bytes, at, ts, cx);
    }

    pub(crate) fn on_gap(
        &mut self,
        src: SocketAddr,
        offset: u64,
        len: u64,
        kind: GapKind,
        cx: &mut Cx<'_>,
    ) {
        let Some(i) = self.side_of(src) else { return };
        let len = match self.catch_up(i, offset, cx) {
            None => len,
            Some(seen) => len.saturating_sub(seen),
        };
        if len > 0 {
            self.on_hole(i, len, kind, cx);
        }
    }

    /// Brings side `i` to `offset`, where its next data or gap starts: the
    /// bytes between its position and a later `offset` were lost (`None`);
    /// from an earlier one, how many bytes from `offset` the side has already
    /// had.
    fn catch_up(&mut self, i: usize, offset: u64, cx: &mut Cx<'_>) -> Option<u64> {
        let expected = self.sides[i].next_offset;
        if offset > expected {
            self.on_hole(i, offset - expected, GapKind::Lost, cx);
            None
        } else {
            Some(expected - offset)
        }
    }

    /// `len` bytes at the side's position will never come.
    fn on_hole(&mut self, i: usize, len: u64, kind: GapKind, cx: &mut Cx<'_>) {
        self.sides[i].next_offset = self.sides[i].next_offset.saturating_add(len);
        self.hole(i, len, kind, cx);
    }

    fn hole(&mut self, i: usize, len: u64, kind: GapKind, cx: &mut Cx<'_>) {
        let flags = loss_flags(kind);
        let role = self.role(i);
        let reader = match mem::replace(&mut self.sides[i].reader, Reader::Ignored) {
            Reader::Head(_) => {
                self.lost_message(i, flags, flags, cx);
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
                    self.sides[i].reader = self.after_message(i);
                    if beyond > 0 {
                        self.hole(i, beyond, kind, cx);
                    }
                    return;
                }
                BodyHole::Lost => {
                    self.flag_awaiting(exchange, flags);
                    self.lose_boundaries(i, flags, cx)
                }
            },
            Reader::Resync(mut scanner) => {
                scanner.break_continuity();
                self.taint(i, flags, cx);
                Reader::Resync(scanner)
            }
            Reader::Held(mut held) => {
                held.cut.get_or_insert(kind);
                Reader::Held(held)
            }
            Reader::Switched => {
                if let Phase::Switching(switch) = &mut self.phase {
                    let first = &switch.first_bytes[i];
                    let requested = first.gated && kind == GapKind::Uncopied;
                    if !first.done && !requested {
                        switch.exchange.quality.absorb(flags);
                    }
                }
                self.first_bytes_done(i, true, cx);
                Reader::Switched
            }
            Reader::Ignored => Reader::Ignored,
        };
        if !matches!(self.phase, Phase::Over) {
            self.sides[i].reader = reader;
        }
    }

    pub(crate) fn on_overlap(&mut self, src: SocketAddr) {
        let Some(i) = self.side_of(src) else { return };
        let touched = match &self.sides[i].reader {
            Reader::Body { exchange, .. } => *exchange,
            Reader::Head(head) if head.bytes().is_empty() => self.sides[i].last_request,
            Reader::Switched => {
                if let Phase::Switching(switch) = &mut self.phase {
                    switch.exchange.quality.conflicting_overlap = true;
                }
                return;
            }
            _ => None,
        };
        let overlap = Quality {
            conflicting_overlap: true,
            ..Quality::default()
        };
        if !self.flag_awaiting(touched, overlap) {
            self.sides[i].overlap_pending = true;
        }
    }

    pub(crate) fn on_finished(&mut self, src: SocketAddr, cx: &mut Cx<'_>) {
        let Some(i) = self.side_of(src) else { return };
        self.sides[i].finished = true;
        self.next_start(i, NextStart::Unknowable, cx);
        if let Reader::Body { body, .. } = &self.sides[i].reader {
            if body.is_until_close() {
                self.sides[i].reader = self.after_message(i);
            }
        }
        self.first_bytes_done(i, false, cx);
    }

    /// Reports what is pending; the connection is gone.
    pub(crate) fn close(mut self, cx: &mut Cx<'_>) {
        if let Phase::Switching(switch) = &mut self.phase {
            for first in &mut switch.first_bytes {
                first.done = true;
            }
            self.finish_switch(cx);
        } else {
            self.report_unanswered(cx);
        }
    }

    /// Ends the post-switch wait (or the wait after a declined upgrade) if
    /// it is over at `now_ns`.
    pub(crate) fn expire_switch_wait(&mut self, now_ns: u64, cx: &mut Cx<'_>) {
        if self
            .declined
            .as_ref()
            .is_some_and(|declined| declined.deadline_ns <= now_ns)
        {
            self.report_declined(cx);
        }
        if self
            .switch_deadline()
            .is_some_and(|deadline| deadline <= now_ns)
        {
            self.first_bytes_done(0, true, cx);
            self.first_bytes_done(1, true, cx);
        }
    }

    /// Reads `input`, which starts at stream offset `start` of side `i`.
    fn feed(&mut self, i: usize, input: &[u8], start: u64, ts: u64, cx: &mut Cx<'_>) {
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
            let reader = mem::replace(&mut self.sides[i].reader, Reader::Ignored);
            let step = self.step(i, reader, chunk, at, ts, cx);
            if matches!(self.phase, Phase::Over) {
                return;
            }
            self.sides[i].reader = step.reader;
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
            let large_body = match &mut self.sides[i].reader {
                Reader::Body { body, .. } => body.gate_request(cx.limits.large_body_bytes),
                _ => None,
            };
            if let Some(remaining) = large_body {
                self.gate(i, GateUntil::Offset(at.saturating_add(remaining)), cx);
            }
        }
    }

    fn step(
        &mut self,
        i: usize,
        reader: Reader,
        input: &[u8],
        at: u64,
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        match reader {
            Reader::Head(head) => self.read_head(i, head, input, at, ts, cx),
            Reader::Body { body, exchange } => self.read_body(i, body, exchange, input, at, cx),
            Reader::Resync(mut scanner) => match scanner.scan(input, cx.limits.max_head_bytes) {
                None => Step::took(Reader::Resync(scanner), input.len()),
                Some(found) => {
                    if self.client.is_none() {
                        self.assign_roles(i, found.role);
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
                    super::extend_within(&mut held.bytes, &input[..take], cap);
                    if take < input.len() {
                        held.cut = Some(GapKind::Uncopied);
                    }
                }
                Step::took(Reader::Held(held), input.len())
            }
            Reader::Switched => {
                self.keep_first_bytes(i, input, cx);
                Step::took(Reader::Switched, input.len())
            }
            Reader::Ignored => Step::took(Reader::Ignored, input.len()),
        }
    }

    fn read_head(
        &mut self,
        i: usize,
        mut head: HeadReader,
        input: &[u8],
        at: u64,
        ts: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        let role = self.role(i);
        let (step, used) = head.push(input, role, cx.limits.max_head_bytes);
        match (step, role) {
            (HeadStep::NeedMore, _) => Step::took(Reader::Head(head), used),
            (HeadStep::Identified(found), _) => {
                self.assign_roles(i, found);
                Step::took(Reader::Head(head), used)
            }
            (HeadStep::NotAMessage, _) => {
                let mut shown = head.bytes().to_vec();
                shown.extend_from_slice(&input[used..]);
                shown.truncate(NOT_HTTP_KEPT);
                self.next_start(i, NextStart::NotHttp(&shown), cx);
                let start = at
                    .saturating_add(used as u64)
                    .saturating_sub(head.bytes().len() as u64);
                self.not_a_message(i, head.into_bytes(), start, used, input.len(), cx)
            }
            (HeadStep::Complete, Some(Role::Client)) => {
                self.next_start(i, NextStart::Http, cx);
                let request = head.complete_head(input, used);
                Step::took(self.request_head(i, request, ts, cx), used)
            }
            (HeadStep::Complete, Some(Role::Server)) => {
                self.next_start(i, NextStart::Http, cx);
                let response = head.complete_head(input, used);
                Step::took(self.response_head(i, response, ts, cx), used)
            }
            (HeadStep::Complete, None) => Step::took(Reader::resync(None), used),
            (HeadStep::TooLarge, _) => {
                self.lost_oversized_message(i, cx);
                Step::took(Reader::resync(role), used)
            }
        }
    }

    /// The bytes at a message start of side `i` (`bytes`, from stream offset
    /// `start`, the last one decisive) are not a message of its role.
    fn not_a_message(
        &mut self,
        i: usize,
        bytes: Vec<u8>,
        start: u64,
        used: usize,
        input_len: usize,
        cx: &mut Cx<'_>,
    ) -> Step {
        let role = self.role(i);
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
        self.lost_message(i, MALFORMED, MALFORMED, cx);
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

    fn request_head(&mut self, i: usize, bytes: &[u8], ts: u64, cx: &mut Cx<'_>) -> Reader {
        let request = match parse_request(bytes, cx.limits.max_headers) {
            Ok(request) => request,
            Err(error) => return self.unreadable_head(i, error, cx),
        };
        self.at_intact_start = false;
        let framing = request_framing(&request);
        let mut pending = self.new_pending(i, Some(request), Some(ts));
        let seq = pending.seq;
        pending.quality.malformed |= framing == Framing::Invalid;
        self.sides[i].last_request = Some(seq);
        for earlier in self.awaiting.iter_mut() {
            earlier.pipelined_behind = true;
        }
        self.push_awaiting(pending, cx);
        match BodyReader::new(framing, cx.limits.max_head_bytes) {
            Some(body) => Reader::Body {
                body: Box::new(body),
                exchange: Some(seq),
            },
            None if framing == Framing::Invalid => {
                self.taint(i, MALFORMED, cx);
                Reader::resync(Some(Role::Client))
            }
            None => Reader::Head(HeadReader::default()),
        }
    }

    fn response_head(&mut self, i: usize, bytes: &[u8], ts: u64, cx: &mut Cx<'_>) -> Reader {
        let response = match parse_response(bytes, cx.limits.max_headers) {
            Ok(response) => response,
            Err(error) => return self.unreadable_head(i, error, cx),
        };
        self.at_intact_start = false;
        let overlap = mem::take(&mut self.sides[i].overlap_pending);
        let status = response.status;
        if (100..200).contains(&status) && status != 101 {
            if self.awaiting.is_empty() {
                let unseen = self.new_pending(i, None, None);
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
            None => self.new_pending(i, None, None),
        };
        pending.quality.absorb(self.later_responses);
        pending.quality.conflicting_overlap |= overlap;
        let method = pending.request.as_ref().map(|r| r.method.as_str());
        let framing = response_framing(method, &response);
        let tunnel = method == Some("CONNECT") && (200..300).contains(&status);
        let may_switch = pending.may_switch();
        pending.response = Some(response);
        pending.response_ns = Some(ts);
        // Held bytes follow every request awaiting: they are the early data
        // of the last that may switch, unless an earlier one switches now.
        if may_switch && (status == 101 || !self.awaiting.iter().any(Pending::may_switch)) {
            pending.early_data = self.early_data(1 - i, status == 101);
        }
        if status == 101 {
            self.begin_switch(i, pending, ts, cx);
            return Reader::Switched;
        }
        if pending.carries_upgrade() && !tunnel {
            self.await_next_starts(i, pending, ts, cx);
        } else {
            self.report(pending, None, cx);
        }
        if tunnel {
            self.gate_forever(0, cx);
            self.gate_forever(1, cx);
            self.report_unanswered(cx);
            return Reader::Ignored;
        }
        if may_switch {
            self.release_held(1 - i, ts, cx);
        }
        match BodyReader::new(framing, cx.limits.max_head_bytes) {
            Some(body) => Reader::Body {
                body: Box::new(body),
                exchange: None,
            },
            None if framing == Framing::Invalid => {
                self.taint(i, MALFORMED, cx);
                Reader::resync(Some(Role::Server))
            }
            None => Reader::Head(HeadReader::default()),
        }
    }

    fn unreadable_head(&mut self, i: usize, error: HeadError, cx: &mut Cx<'_>) -> Reader {
        match error {
            HeadError::TooManyHeaders => self.lost_oversized_message(i, cx),
            HeadError::Malformed => self.lost_message(i, MALFORMED, MALFORMED, cx),
        }
        Reader::resync(self.role(i))
    }

    fn read_body(
        &mut self,
        i: usize,
        mut body: Box<BodyReader>,
        exchange: Option<u64>,
        input: &[u8],
        at: u64,
        cx: &mut Cx<'_>,
    ) -> Step {
        match body.feed(input) {
            BodyProgress::More => {
                if let Some(remaining) = body.gate_request(cx.limits.large_body_bytes) {
                    let end = at
                        .saturating_add(input.len() as u64)
                        .saturating_add(remaining);
                    let until = GateUntil::Offset(end);
                    self.gate(i, until, cx);
                }
                Step::took(Reader::Body { body, exchange }, input.len())
            }
            BodyProgress::Done(used) => Step::took(self.after_message(i), used),
            BodyProgress::Invalid(used) => {
                self.flag_awaiting(exchange, MALFORMED);
                Step::took(self.lose_boundaries(i, MALFORMED, cx), used)
            }
        }
    }

    /// Side `i` lost track of where its body ends: it searches for the next
    /// message start, and `flags` marks the exchanges of its later messages.
    /// During a switch (the offer's own body) it is where the new protocol
    /// starts that is lost.
    fn lose_boundaries(&mut self, i: usize, flags: Quality, cx: &mut Cx<'_>) -> Reader {
        if let Phase::Switching(switch) = &mut self.phase {
            switch.exchange.quality.absorb(flags);
            self.first_bytes_done(i, true, cx);
            return Reader::Switched;
        }
        self.taint(i, flags, cx);
        Reader::resync(self.role(i))
    }

    /// What side `i` reads once a message ended.
    fn after_message(&self, i: usize) -> Reader {
        match (&self.phase, self.role(i)) {
            // The offer's own body went first; the new protocol follows it.
            (Phase::Switching(_), Some(Role::Client)) => Reader::Switched,
            _ => Reader::Head(HeadReader::default()),
        }
    }

    /// [`Self::lost_message`] for a head over a limit: the message is
    /// oversized, and what follows it is truncated.
    fn lost_oversized_message(&mut self, i: usize, cx: &mut Cx<'_>) {
        cx.stats.heads_oversized += 1;
        let oversized = Quality {
            oversized: true,
            ..Quality::default()
        };
        let later = Quality {
            truncated: true,
            ..Quality::default()
        };
        self.lost_message(i, oversized, later, cx);
    }

    /// A message of side `i` could not be read: the client's stands in the
    /// queue as a request not seen, the server's answers the oldest request.
    /// `own` flags that exchange, `later` the exchanges of the side's later
    /// messages.
    fn lost_message(&mut self, i: usize, own: Quality, later: Quality, cx: &mut Cx<'_>) {
        self.at_intact_start = false;
        match self.role(i) {
            Some(Role::Client) => {
                let mut lost = self.new_pending(i, None, None);
                lost.quality.absorb(own);
                self.push_awaiting(lost, cx);
            }
            Some(Role::Server) => {
                if let Some(mut answered) = self.awaiting.pop_front() {
                    answered.quality.absorb(own);
                    answered.quality.absorb(self.later_responses);
                    answered.quality.conflicting_overlap |=
                        mem::take(&mut self.sides[i].overlap_pending);
                    self.report(answered, None, cx);
                }
            }
            None => {}
        }
        self.taint(i, later, cx);
    }

    /// Side `i` lost message boundaries: `flags` marks the exchanges of its
    /// later messages (of both sides while the roles are unknown).
    fn taint(&mut self, i: usize, flags: Quality, cx: &mut Cx<'_>) {
        self.next_start(i, NextStart::Unknowable, cx);
        let role = self.role(i);
        if role != Some(Role::Server) {
            self.later_requests.absorb(flags);
        }
        if role != Some(Role::Client) {
            self.later_responses.absorb(flags);
        }
    }

    fn new_pending(
        &mut self,
        i: usize,
        request: Option<RequestHead>,
        request_ns: Option<u64>,
    ) -> Pending {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut pending = Pending::new(seq, request, request_ns);
        pending.quality = self.later_requests;
        if self.role(i) == Some(Role::Client) {
            pending.quality.conflicting_overlap |= mem::take(&mut self.sides[i].overlap_pending);
        }
        pending
    }

    fn push_awaiting(&mut self, pending: Pending, cx: &mut Cx<'_>) {
        cx.stats.requests_not_kept += self.awaiting.push(pending, cx.limits);
    }

    fn flag_awaiting(&mut self, exchange: Option<u64>, flags: Quality) -> bool {
        let Some(seq) = exchange else { return false };
        match self.awaiting.find_mut(seq) {
            Some(pending) => {
                pending.quality.absorb(flags);
                true
            }
            None => false,
        }
    }

    fn assign_roles(&mut self, i: usize, role: Role) {
        let client = match role {
            Role::Client => i,
            Role::Server => 1 - i,
        };
        self.client = u8::try_from(client).ok();
        let peer = 1 - i;
        if let Reader::Resync(scanner) = &mut self.sides[peer].reader {
            scanner.set_wanted(role.peer());
        }
    }

    /// The answer to the last request that could switch protocols was not a
    /// switch: the client bytes held since are HTTP again.
    fn release_held(&mut self, client: usize, ts: u64, cx: &mut Cx<'_>) {
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

    fn begin_switch(&mut self, server: usize, mut exchange: Pending, ts: u64, cx: &mut Cx<'_>) {
        let client = 1 - server;
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
        let mut first_bytes = [FirstBytes::default(), FirstBytes::default()];
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

    fn keep_first_bytes(&mut self, i: usize, input: &[u8], cx: &mut Cx<'_>) {
        let switch_bytes = cx.limits.switch_bytes;
        let Phase::Switching(switch) = &mut self.phase else {
            return;
        };
        let first = &mut switch.first_bytes[i];
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
            self.gate_forever(i, cx);
        }
        if full {
            self.first_bytes_done(i, true, cx);
        }
    }

    /// Side `i` sent all of its first bytes that will be kept; with `gate`,
    /// the capture may stop copying them. Reports the switch once both did.
    fn first_bytes_done(&mut self, i: usize, gate: bool, cx: &mut Cx<'_>) {
        let Phase::Switching(switch) = &mut self.phase else {
            return;
        };
        let first = &mut switch.first_bytes[i];
        if !first.done {
            first.done = true;
            let gate = gate && !first.gated;
            first.gated = true;
            if gate {
                self.gate_forever(i, cx);
            }
        }
        if let Phase::Switching(switch) = &self.phase {
            if switch.first_bytes.iter().all(|f| f.done) {
                self.finish_switch(cx);
            }
        }
    }

    fn finish_switch(&mut self, cx: &mut Cx<'_>) {
        let Phase::Switching(switch) = mem::replace(&mut self.phase, Phase::Over) else {
            return;
        };
        let Some(client) = self.client() else { return };
        let Switch {
            exchange,
            first_bytes: [first, second],
            ..
        } = *switch;
        let (client_bytes, server_bytes) = if client == 0 {
            (first.bytes, second.bytes)
        } else {
            (second.bytes, first.bytes)
        };
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

    /// Reports every request still waiting; no HTTP follows on this connection.
    fn report_unanswered(&mut self, cx: &mut Cx<'_>) {
        self.report_declined(cx);
        self.phase = Phase::Over;
        for side in &mut self.sides {
            side.reader = Reader::Ignored;
        }
        while let Some(pending) = self.awaiting.pop_front() {
            self.report(pending, None, cx);
        }
    }

    /// Not HTTP: nothing to report, and nothing more to copy.
    fn give_up(&mut self, cx: &mut Cx<'_>) {
        self.gate_forever(0, cx);
        self.gate_forever(1, cx);
        self.report_unanswered(cx);
    }

    fn gate_forever(&self, i: usize, cx: &mut Cx<'_>) {
        self.gate(i, GateUntil::Forever, cx);
    }

    fn gate(&self, i: usize, until: GateUntil, cx: &mut Cx<'_>) {
        cx.out.push(HttpOutput::Gate(PayloadGateRequest {
            connection: self.id,
            src: self.sides[i].addr.into(),
            dst: self.sides[1 - i].addr.into(),
            until,
        }));
    }

    /// Client bytes that came before the answer to a request that may
    /// switch and did not start a request; with `switch`, an unfinished
    /// request head the switch takes as the new protocol counts too.
    fn early_data(&self, client: usize, switch: bool) -> Option<EarlyData> {
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

    /// `exchange` declined an upgrade (`server`: the server's side): it
    /// waits for the next message start of each side, unless neither is to
    /// be read.
    fn await_next_starts(&mut self, server: usize, exchange: Pending, ts: u64, cx: &mut Cx<'_>) {
        let client = 1 - server;
        let mut decided = [false; 2];
        // The client's next message start is not to judge after a request
        // already read behind the declined one, after early data (sent
        // before the answer), or once its boundaries are lost.
        decided[client] = !self.awaiting.is_empty()
            || self.sides[client].finished
            || !matches!(
                self.sides[client].reader,
                Reader::Head(_) | Reader::Body { .. }
            );
        decided[server] = self.sides[server].finished;
        if decided.iter().all(|d| *d) {
            self.report(exchange, None, cx);
            return;
        }
        self.report_declined(cx);
        self.declined = Some(Box::new(Declined {
            exchange,
            deadline_ns: ts.saturating_add(cx.limits.switch_wait_ns),
            decided,
        }));
    }

    /// Side `i` showed its next message start (or that it cannot be told).
    fn next_start(&mut self, i: usize, next: NextStart<'_>, cx: &mut Cx<'_>) {
        let sent_by_client = self.client() == Some(i);
        let Some(declined) = self.declined.as_mut() else {
            return;
        };
        if declined.decided[i] {
            return;
        }
        declined.decided[i] = true;
        if let NextStart::NotHttp(bytes) = next {
            declined.exchange.not_http_after_decline = Some(NotHttp {
                sent_by_client,
                first_bytes: bytes.to_vec(),
            });
        }
        let settled = declined.exchange.not_http_after_decline.is_some()
            || declined.decided.iter().all(|d| *d);
        if settled {
            self.report_declined(cx);
        }
    }

    fn report_declined(&mut self, cx: &mut Cx<'_>) {
        if let Some(declined) = self.declined.take() {
            self.emit(declined.exchange, None, cx);
        }
    }

    /// Reports an exchange, after the declined upgrade still waiting, which
    /// came first.
    fn report(&mut self, pending: Pending, switched: Option<Switched>, cx: &mut Cx<'_>) {
        self.report_declined(cx);
        self.emit(pending, switched, cx);
    }

    fn emit(&self, pending: Pending, switched: Option<Switched>, cx: &mut Cx<'_>) {
        let Some(client) = self.client() else { return };
        let mut quality = pending.quality;
        quality.midstream |= self.midstream;
        quality.complete =
            pending.request.is_some() && pending.response.is_some() && !quality.impaired();
        cx.out.push(HttpOutput::Exchange(Exchange {
            connection: self.id.0,
            client: self.sides[client].addr.into(),
            server: self.sides[1 - client].addr.into(),
            interface: self.interface,
            request: pending.request,
            interim: pending.interim,
            response: pending.response,
            switched,
            early_data: pending.early_data,
            pipelined_behind: pending.pipelined_behind,
            not_http_after_decline: pending.not_http_after_decline,
            request_ns: pending.request_ns,
            response_ns: pending.response_ns,
            quality,
        }));
    }
}
