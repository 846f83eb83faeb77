//! HTTP/1.1 exchange tracking: in-order stream events in, request/response exchanges out.
//!
//! Pure and bounded: no I/O, no panics whatever the bytes, and per
//! connection at most two heads of `max_head_bytes`, `max_pipelined`
//! requests awaiting responses with `max_pending_bytes` of heads between
//! them (see `awaiting`), `switch_bytes` per side after a 101 and
//! `max(max_head_bytes, switch_bytes)` of early data held until an upgrade
//! offer is answered. What it holds is counted (`HttpTracker::heap_bytes`)
//! for the budget it shares with reassembly.
//!
//! How the bytes are read:
//! - The client is the SYN's sender; without a handshake, the side whose
//!   first bytes are a request line (or whose peer's are a status line). A
//!   connection whose client does not start with an HTTP/1.x request line is
//!   given up: no exchange, and a payload gate for good on both sides.
//! - Bodies are framed per RFC 9112 §6. A body of known length of at least
//!   `large_body_bytes` gets a payload gate up to its end (per chunk for
//!   chunked bodies), so the capture skips it.
//! - Responses pair with requests in order; 1xx other than 101 are interim.
//!   An exchange is reported when its final response head is read, after a
//!   101 once the first bytes of both sides are in (or a side finished, the
//!   connection closed or `switch_wait_ns` passed), after a declined upgrade
//!   once both sides are seen to go on as HTTP/1.1 (or not: a tunnel without
//!   101), and at close for requests never answered.
//! - After a request carrying `Upgrade` (or a CONNECT), client bytes that are
//!   not a request line are held: after a 101 (or a 2xx to CONNECT) they are
//!   the new protocol, after another answer they are read as HTTP again.
//! - When message boundaries are lost (a gap in a head, in chunk framing or
//!   in a body read until close; bytes that are not HTTP; a head over the
//!   limits; a connection picked up mid-stream) the side searches for the
//!   next message start, and a message it could not read stands as an
//!   exchange without that head. Since pairing is no longer certain, every
//!   exchange whose request (after a client-side loss) or response (after a
//!   server-side loss) is read later carries the flag of the loss (`gap`,
//!   `truncated` or `malformed`).

mod awaiting;
mod connection;
mod exchange;
mod framing;
mod head;
mod resync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use connection::{Connection, Cx};
pub use exchange::{
    Exchange, Header, Headers, HttpVersion, MessageHead, Pairing, Quality, RequestHead,
    RequestLine, ResponseHead, StatusLine, Switched,
};
use foldhash::fast::RandomState;
pub(crate) use head::is_tchar;

use crate::stream::{ConnectionId, StreamEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A head longer than this is `oversized`.
    pub max_head_bytes: usize,
    /// More header lines than this is `oversized`.
    pub max_headers: usize,
    /// First bytes kept per direction after a 101.
    pub switch_bytes: usize,
    /// After a 101, the exchange is reported without waiting longer for
    /// first bytes (capture time).
    pub switch_wait_ns: u64,
    /// Bodies of known length at least this long get a payload-gate request.
    pub large_body_bytes: u64,
    /// Requests awaiting responses per connection whose heads are kept…
    pub max_pipelined: usize,
    /// … and the bytes those heads (and their interim responses) may hold.
    pub max_pending_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 256,
            switch_bytes: 64,
            switch_wait_ns: 5_000_000_000,
            large_body_bytes: 64 * 1024,
            max_pipelined: 64,
            max_pending_bytes: 64 * 1024,
        }
    }
}

/// What the HTTP layer gave up to stay within its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Heads over `max_head_bytes` or `max_headers`: not read.
    pub heads_oversized: u64,
    /// Requests awaiting responses past `max_pipelined` or
    /// `max_pending_bytes`: their place kept, their head not.
    pub requests_not_kept: u64,
    /// Interim responses past the count or bytes kept per exchange.
    pub interim_dropped: u64,
}

/// Brings `total` up to date with what `connection` holds now, counting
/// its bytes once.
fn recount(total: &mut usize, connection: &mut Connection) {
    let now = connection.heap_bytes();
    *total = *total - connection.counted_bytes + now;
    connection.counted_bytes = now;
}

/// Appends `bytes` to `buffer`, which is never to hold more than `bound`
/// bytes: it grows by doubling, but its capacity stays within the bound,
/// so that what the memory budget counts is all that is held.
fn extend_within(buffer: &mut Vec<u8>, bytes: &[u8], bound: usize) {
    let needed = buffer.len() + bytes.len();
    if needed > buffer.capacity() {
        let grown = (buffer.capacity() * 2).min(bound).max(needed);
        buffer.reserve_exact(grown - buffer.len());
    }
    buffer.extend_from_slice(bytes);
}

// Exchanges are the common output and are drained right away: boxing them
// would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpOutput {
    Exchange(Exchange),
    Gate(PayloadGateRequest),
}

/// Ask the capture to stop copying the bytes `src` sends from now on,
/// until stream offset `until` (exclusive) or for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadGateRequest {
    pub connection: ConnectionId,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub until: GateUntil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateUntil {
    Offset(u64),
    Forever,
}

/// Follows every connection the reassembly reports.
pub struct HttpTracker {
    limits: HttpLimits,
    /// Boxed: a connection is a few hundred bytes, and a table of them
    /// inline would hold that much again in free slots (memory for many
    /// idle connections). The ids are ours, but the hasher is seeded anyway.
    connections: HashMap<ConnectionId, Box<Connection>, RandomState>,
    /// Connections waiting for first bytes after a 101, by deadline.
    switch_deadlines: BTreeSet<(u64, ConnectionId)>,
    /// What the connections hold on the heap besides their fixed size.
    heap_bytes: usize,
    stats: HttpStats,
}

impl HttpTracker {
    pub fn new(limits: HttpLimits) -> HttpTracker {
        HttpTracker {
            limits,
            connections: HashMap::default(),
            switch_deadlines: BTreeSet::new(),
            heap_bytes: 0,
            stats: HttpStats::default(),
        }
    }

    /// Events of a connection not opened first are ignored.
    pub fn handle(&mut self, event: &StreamEvent<'_>, out: &mut Vec<HttpOutput>) {
        let id = event.connection();
        let limits = self.limits;
        let mut stats = self.stats;
        let mut cx = Cx {
            limits: &limits,
            out,
            stats: &mut stats,
        };
        match *event {
            StreamEvent::Opened {
                first,
                second,
                syn_sender,
                midstream,
                interface,
                ..
            } => {
                self.forget(id, &mut cx);
                let mut connection =
                    Connection::open(id, first, second, syn_sender, midstream, interface);
                recount(&mut self.heap_bytes, &mut connection);
                self.connections.insert(id, Box::new(connection));
            }
            StreamEvent::Closed { .. } => self.forget(id, &mut cx),
            _ => self.follow(event, &mut cx),
        }
        self.stats = stats;
    }

    fn follow(&mut self, event: &StreamEvent<'_>, cx: &mut Cx<'_>) {
        let id = event.connection();
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        connection.expire_switch_wait(event.timestamp_ns(), cx);
        match *event {
            StreamEvent::Data {
                src,
                offset,
                bytes,
                timestamp_ns,
                ..
            } => connection.on_data(src, offset, bytes, timestamp_ns, cx),
            StreamEvent::Gap {
                src,
                offset,
                len,
                kind,
                ..
            } => connection.on_gap(src, offset, len, kind, cx),
            StreamEvent::ConflictingOverlap { src, .. } => connection.on_overlap(src),
            StreamEvent::Finished { src, .. } => connection.on_finished(src, cx),
            StreamEvent::Opened { .. } | StreamEvent::Closed { .. } => {}
        }
        recount(&mut self.heap_bytes, connection);
        let deadline = connection.switch_deadline();
        if deadline != connection.indexed_deadline {
            if let Some(previous) = connection.indexed_deadline {
                self.switch_deadlines.remove(&(previous, id));
            }
            if let Some(deadline) = deadline {
                self.switch_deadlines.insert((deadline, id));
            }
            connection.indexed_deadline = deadline;
        }
    }

    /// Reports what `id` left pending and drops it.
    fn forget(&mut self, id: ConnectionId, cx: &mut Cx<'_>) {
        if let Some(connection) = self.connections.remove(&id) {
            if let Some(deadline) = connection.indexed_deadline {
                self.switch_deadlines.remove(&(deadline, id));
            }
            self.heap_bytes -= connection.counted_bytes;
            connection.close(cx);
        }
    }

    /// Emits exchanges whose post-switch wait has elapsed by `now_ns` (capture time).
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<HttpOutput>) {
        let limits = self.limits;
        let mut stats = self.stats;
        let mut cx = Cx {
            limits: &limits,
            out,
            stats: &mut stats,
        };
        while let Some(&(deadline, id)) = self.switch_deadlines.first() {
            if deadline > now_ns {
                break;
            }
            self.switch_deadlines.pop_first();
            if let Some(connection) = self.connections.get_mut(&id) {
                connection.expire_switch_wait(now_ns, &mut cx);
                connection.indexed_deadline = None;
                recount(&mut self.heap_bytes, connection);
            }
        }
        self.stats = stats;
    }

    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Bytes held for every connection followed: their state, partial
    /// heads, requests awaiting responses, bytes kept across a switch.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    pub fn stats(&self) -> HttpStats {
        self.stats
    }
}
