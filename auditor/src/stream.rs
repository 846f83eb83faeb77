//! Ordered bytes per connection and direction: what the HTTP layer reads,
//! whatever the source. Reassembly makes them out of TCP segments; a source
//! that reads bytes already in order (plaintext out of a TLS library) hands
//! them over as they are.

use std::net::SocketAddr;

/// One connection, for as long as its source follows it: ids are never
/// reused within one pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Stream offsets count payload bytes of one direction: offset 0 is the
/// byte after the SYN, or, for a connection picked up mid-stream, the first
/// byte seen in that direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The first segment of a connection was seen.
    Opened {
        id: ConnectionId,
        /// The endpoint that sent the first segment seen, and its peer.
        first: SocketAddr,
        second: SocketAddr,
        /// The endpoint that sent the SYN, when the handshake was seen.
        syn_sender: Option<SocketAddr>,
        /// The connection was already open when capture started.
        midstream: bool,
        interface: Option<u32>,
        timestamp_ns: u64,
    },
    /// In-order payload sent by `src`, starting at `offset`.
    Data {
        id: ConnectionId,
        src: SocketAddr,
        offset: u64,
        bytes: &'a [u8],
        timestamp_ns: u64,
    },
    /// `len` bytes sent by `src` from `offset` that will never be delivered.
    Gap {
        id: ConnectionId,
        src: SocketAddr,
        offset: u64,
        len: u64,
        kind: GapKind,
        timestamp_ns: u64,
    },
    /// The bytes sent by `src` at `offset` were seen twice with different
    /// contents; the first seen were kept.
    ConflictingOverlap {
        id: ConnectionId,
        src: SocketAddr,
        offset: u64,
        len: u64,
        timestamp_ns: u64,
    },
    /// `src` finished sending: its FIN was reached in order.
    Finished {
        id: ConnectionId,
        src: SocketAddr,
        timestamp_ns: u64,
    },
    /// The connection is gone; no more events carry its id.
    Closed {
        id: ConnectionId,
        reason: CloseReason,
        timestamp_ns: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapKind {
    /// A hole of known length that the capture left on purpose: a record
    /// truncated at the per-segment cap, a closed payload gate, a capture
    /// file's snapshot length. The segment itself was seen.
    Uncopied,
    /// Bytes never seen: a segment missing from the capture, a record lost
    /// in the kernel, a buffer overflow. Its length is known from the
    /// sequence numbers around it.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished.
    Fin,
    Rst,
    /// Nothing was seen for the idle timeout.
    Idle,
    /// Pushed out of the flow table to make room (least recently used).
    Evicted,
    /// The capture file ended, or the daemon stopped.
    EndOfInput,
}

impl StreamEvent<'_> {
    pub fn connection(&self) -> ConnectionId {
        match self {
            StreamEvent::Opened { id, .. }
            | StreamEvent::Data { id, .. }
            | StreamEvent::Gap { id, .. }
            | StreamEvent::ConflictingOverlap { id, .. }
            | StreamEvent::Finished { id, .. }
            | StreamEvent::Closed { id, .. } => *id,
        }
    }

    pub fn timestamp_ns(&self) -> u64 {
        match self {
            StreamEvent::Opened { timestamp_ns, .. }
            | StreamEvent::Data { timestamp_ns, .. }
            | StreamEvent::Gap { timestamp_ns, .. }
            | StreamEvent::ConflictingOverlap { timestamp_ns, .. }
            | StreamEvent::Finished { timestamp_ns, .. }
            | StreamEvent::Closed { timestamp_ns, .. } => *timestamp_ns,
        }
    }
}
