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
//!
//! This file holds the connection and the events it takes; each phase is a
//! file of its own: `reading` (what each side reads, and holes), `pairing`
//! (requests and responses), `switch` (the first bytes after a 101) and
//! `declined` (the watch after a declined upgrade). `End` names a side.

use std::mem;
use std::net::SocketAddr;

mod declined;
mod end;
mod pairing;
mod reading;
mod switch;

use self::declined::{Declined, NextStart};
use self::end::{End, PerEnd};
use self::reading::Reader;
use self::switch::Switch;
use super::awaiting::{Awaiting, Pending};
use super::exchange::{Exchange, Pairing, Quality, Switched};
use super::head::{HeadReader, Role};
use super::{GateUntil, HttpLimits, HttpOutput, HttpStats, PayloadGateRequest};
use crate::addr::PackedAddr;
use crate::stream::{ConnectionId, GapKind};

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
    /// None when the connection's start was seen.
    pickup: Option<Pickup>,
    sides: PerEnd<Side>,
    /// The client's end, once known.
    client: Option<End>,
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

/// Where a connection picked up mid-stream stands. Requests sent before
/// capture started may still await their responses, so a response pairs
/// certainly with the request it takes only once the connection is in step:
/// a request read when nothing awaited and the server was between messages
/// (first in line) got its final response, and the client's next request
/// was read first in line too. Until then only a 101 pairs certainly, with
/// a request first in line: it answers an upgrade offer, and requests sent
/// before capture cannot be offers still waiting (the client sent more
/// after them). A final response with no request awaiting shows that some
/// were sent before capture: the connection is out of step again. Out of
/// step, a request followed by another before its answer is not trusted at
/// all: it may be one of several quoted back to back in a body.
#[derive(Default)]
struct Pickup {
    in_step: bool,
    /// A request read first in line got its final response.
    answered_first_in_line: bool,
}

enum Phase {
    Http,
    Switching(Box<Switch>),
    /// No more HTTP on this connection (switched, tunnel, given up).
    Over,
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
    starts: Starts,
    /// Picked up mid-stream, the side has not found a message start yet.
    searching_first: bool,
}

/// How far a side's message starts can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Starts {
    /// Every one: the side's start was seen, or its first byte seen began
    /// a message.
    Sure,
    /// The next was found by searching past the side's first byte (picked
    /// up mid-stream): it might lie inside a body.
    NextUnsure,
    /// After an unsure start, as a body may quote several messages back to
    /// back: a request is trusted once it is read first in line; a
    /// response, once one follows by framing.
    Confirming,
}

impl Side {
    /// Whether the request whose head was just read started where a
    /// request certainly starts; `first_in_line`: nothing awaited a
    /// response and the server was between messages.
    fn take_request_start(&mut self, first_in_line: bool) -> bool {
        self.starts = match self.starts {
            Starts::NextUnsure => Starts::Confirming,
            Starts::Confirming if !first_in_line => Starts::Confirming,
            Starts::Sure | Starts::Confirming => Starts::Sure,
        };
        self.starts == Starts::Sure
    }

    /// [`Self::take_request_start`] for a response.
    fn take_response_start(&mut self) -> bool {
        let sure = self.starts != Starts::NextUnsure;
        self.starts = match self.starts {
            Starts::NextUnsure => Starts::Confirming,
            Starts::Sure | Starts::Confirming => Starts::Sure,
        };
        sure
    }

    /// Between messages: at a head's start, or, picked up mid-stream, before
    /// any byte.
    fn idle(&self) -> bool {
        match &self.reader {
            Reader::Head(head) => head.bytes().is_empty(),
            Reader::Resync(_) => self.searching_first && self.next_offset == 0,
            _ => false,
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

/// The role of `end`, when the client's end is known.
fn role_of(client: Option<End>, end: End) -> Option<Role> {
    client.map(|c| if c == end { Role::Client } else { Role::Server })
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
        let client = syn_sender.and_then(|s| PerEnd::new(first, second).find(|&a| a == s));
        let side = |end: End, addr: SocketAddr| Side {
            addr: addr.into(),
            next_offset: 0,
            reader: if midstream {
                Reader::resync(role_of(client, end))
            } else {
                Reader::Head(HeadReader::default())
            },
            finished: false,
            overlap_pending: false,
            last_request: None,
            starts: Starts::Sure,
            searching_first: midstream,
        };
        Connection {
            id,
            interface,
            midstream,
            pickup: midstream.then(Pickup::default),
            sides: PerEnd::new(side(End::First, first), side(End::Second, second)),
            client,
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

    fn end_of(&self, addr: SocketAddr) -> Option<End> {
        let addr = PackedAddr::from(addr);
        self.sides.find(|s| s.addr == addr)
    }

    fn role(&self, end: End) -> Option<Role> {
        role_of(self.client(), end)
    }

    fn client(&self) -> Option<End> {
        self.client
    }

    pub(crate) fn on_data(
        &mut self,
        src: SocketAddr,
        offset: u64,
        bytes: &[u8],
        ts: u64,
        cx: &mut Cx<'_>,
    ) {
        let Some(end) = self.end_of(src) else { return };
        let bytes = match self.catch_up(end, offset, cx) {
            None => bytes,
            Some(seen) => match bytes.get(usize::try_from(seen).unwrap_or(usize::MAX)..) {
                Some(fresh) if !fresh.is_empty() => fresh,
                _ => return,
            },
        };
        let at = self.sides[end].next_offset;
        self.sides[end].next_offset = at.saturating_add(bytes.len() as u64);
        self.feed(end, bytes, at, ts, cx);
    }

    pub(crate) fn on_gap(
        &mut self,
        src: SocketAddr,
        offset: u64,
        len: u64,
        kind: GapKind,
        cx: &mut Cx<'_>,
    ) {
        let Some(end) = self.end_of(src) else { return };
        let len = match self.catch_up(end, offset, cx) {
            None => len,
            Some(seen) => len.saturating_sub(seen),
        };
        if len > 0 {
            self.on_hole(end, len, kind, cx);
        }
    }

    /// Brings the side `end` to `offset`, where its next data or gap starts: the
    /// bytes between its position and a later `offset` were lost (`None`);
    /// from an earlier one, how many bytes from `offset` the side has already
    /// had.
    fn catch_up(&mut self, end: End, offset: u64, cx: &mut Cx<'_>) -> Option<u64> {
        let expected = self.sides[end].next_offset;
        if offset > expected {
            self.on_hole(end, offset - expected, GapKind::Lost, cx);
            None
        } else {
            Some(expected - offset)
        }
    }

    /// `len` bytes at the side's position will never come.
    fn on_hole(&mut self, end: End, len: u64, kind: GapKind, cx: &mut Cx<'_>) {
        self.sides[end].next_offset = self.sides[end].next_offset.saturating_add(len);
        self.hole(end, len, kind, cx);
    }

    pub(crate) fn on_overlap(&mut self, src: SocketAddr) {
        let Some(end) = self.end_of(src) else { return };
        let touched = match &self.sides[end].reader {
            Reader::Body { exchange, .. } => *exchange,
            Reader::Head(head) if head.bytes().is_empty() => self.sides[end].last_request,
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
            self.sides[end].overlap_pending = true;
        }
    }

    pub(crate) fn on_finished(&mut self, src: SocketAddr, cx: &mut Cx<'_>) {
        let Some(end) = self.end_of(src) else { return };
        self.sides[end].finished = true;
        self.next_start(end, NextStart::Unknowable, cx);
        if let Reader::Body { body, .. } = &self.sides[end].reader {
            if body.is_until_close() {
                self.sides[end].reader = self.after_message(end);
            }
        }
        self.first_bytes_done(end, false, cx);
    }

    /// Reports what is pending; the connection is gone.
    pub(crate) fn close(mut self, cx: &mut Cx<'_>) {
        if let Phase::Switching(switch) = &mut self.phase {
            for first in switch.first_bytes.iter_mut() {
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
            for end in End::BOTH {
                self.first_bytes_done(end, true, cx);
            }
        }
    }

    /// Reports every request still waiting; no HTTP follows on this connection.
    fn report_unanswered(&mut self, cx: &mut Cx<'_>) {
        self.report_declined(cx);
        self.phase = Phase::Over;
        for side in self.sides.iter_mut() {
            side.reader = Reader::Ignored;
        }
        while let Some(pending) = self.awaiting.pop_front() {
            self.report(pending, None, cx);
        }
    }

    /// Not HTTP: nothing to report, and nothing more to copy.
    fn give_up(&mut self, cx: &mut Cx<'_>) {
        self.gate_both(cx);
        self.report_unanswered(cx);
    }

    fn gate_both(&self, cx: &mut Cx<'_>) {
        for end in End::BOTH {
            self.gate_forever(end, cx);
        }
    }

    fn gate_forever(&self, end: End, cx: &mut Cx<'_>) {
        self.gate(end, GateUntil::Forever, cx);
    }

    fn gate(&self, end: End, until: GateUntil, cx: &mut Cx<'_>) {
        cx.out.push(HttpOutput::Gate(PayloadGateRequest {
            connection: self.id,
            src: self.sides[end].addr.into(),
            dst: self.sides[end.peer()].addr.into(),
            until,
        }));
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
        let pairing = match (&self.pickup, &pending.request) {
            (Some(_), None) => Pairing::Unknown,
            _ => pending.pairing,
        };
        quality.complete = pending.request.is_some()
            && pending.response.is_some()
            && !quality.impaired()
            && pairing == Pairing::Certain;
        cx.out.push(HttpOutput::Exchange(Exchange {
            connection: self.id.0,
            client: self.sides[client].addr.into(),
            server: self.sides[client.peer()].addr.into(),
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
            pairing,
        }));
    }
}
