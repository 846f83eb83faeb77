//! TCP reassembly: segments in, per-direction in-order byte streams out.
//!
//! Every connection lives in a table bounded in entries (least recently used
//! evicted first) and in buffered bytes, per connection and in total. Every
//! eviction, overflow and lost byte is counted.

mod direction;

use std::net::SocketAddr;

use foldhash::fast::RandomState;
use lru::LruCache;

use self::direction::{Chunk, Delivery, DirectionStream};
use crate::{
    addr::PackedAddr,
    segment::SegmentRef,
    stream::{CloseReason, ConnectionId, GapKind, StreamEvent},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Connections tracked at once.
    pub max_connections: usize,
    /// Out-of-order bytes held for one connection.
    pub max_buffered_per_connection: usize,
    /// Out-of-order bytes held for all connections together.
    pub max_buffered_total: usize,
    /// A connection with no segment for this long is closed.
    pub idle_timeout_ns: u64,
    /// Delivered bytes remembered per direction to notice retransmissions
    /// that carry different bytes.
    pub recent_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_connections: 65_536,
            max_buffered_per_connection: 256 * 1024,
            max_buffered_total: 64 * 1024 * 1024,
            idle_timeout_ns: 300 * 1_000_000_000,
            recent_bytes: 256,
        }
    }
}

/// Counts of what reassembly could not deliver or had to give up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub connections_opened: u64,
    pub connections_evicted: u64,
    pub connections_idled: u64,
    pub lost_gaps: u64,
    pub lost_bytes: u64,
    pub uncopied_bytes: u64,
    pub conflicting_overlaps: u64,
    pub out_of_window_segments: u64,
    pub buffer_overflows: u64,
}

/// Both endpoints, in a fixed order, so both directions find the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnectionKey(PackedAddr, PackedAddr);

impl ConnectionKey {
    /// The key of the connection `src` sends on to `dst`, and whether `src`
    /// is its first endpoint.
    fn new(src: SocketAddr, dst: SocketAddr) -> (ConnectionKey, bool) {
        let (src, dst) = (PackedAddr::from(src), PackedAddr::from(dst));
        if src <= dst {
            (ConnectionKey(src, dst), true)
        } else {
            (ConnectionKey(dst, src), false)
        }
    }
}

/// One entry of the flow table; its key holds the endpoints (the table
/// holds a connection's addresses once, not twice: 40 bytes a connection).
struct Connection {
    id: ConnectionId,
    /// Side 0, the sender of the first segment seen, is the key's second
    /// endpoint (else its first); `directions` is indexed by side.
    first_is_second: bool,
    directions: [DirectionStream; 2],
    last_seen_ns: u64,
}

impl Connection {
    /// The side whose sender is the key's first endpoint (`sender_is_first`)
    /// or its second.
    fn side_of(&self, sender_is_first: bool) -> usize {
        usize::from(sender_is_first == self.first_is_second)
    }

    /// The sender of side `side`'s bytes.
    fn endpoint(&self, key: &ConnectionKey, side: usize) -> SocketAddr {
        self.packed_endpoint(key, side).into()
    }

    fn packed_endpoint(&self, key: &ConnectionKey, side: usize) -> PackedAddr {
        if (side == 0) == self.first_is_second {
            key.1
        } else {
            key.0
        }
    }

    fn buffered(&self) -> usize {
        self.directions.iter().map(|d| d.pending_bytes()).sum()
    }
}

pub type Emit<'e> = dyn FnMut(&StreamEvent<'_>) + 'e;

pub struct Reassembler {
    limits: ReassemblyLimits,
    /// Keyed by both endpoints: strangers choose them, so the hasher is
    /// randomly seeded (foldhash, much faster than SipHash on these 40-byte keys).
    connections: LruCache<ConnectionKey, Connection, RandomState>,
    next_id: u64,
    buffered_total: usize,
    stats: ReassemblyStats,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            connections: LruCache::unbounded_with_hasher(RandomState::default()),
            next_id: 0,
            buffered_total: 0,
            stats: ReassemblyStats::default(),
        }
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_total
    }

    /// The sequence number of the byte `src` sends at stream `offset`.
    pub fn seq_of(&self, src: SocketAddr, dst: SocketAddr, offset: u64) -> Option<u32> {
        let (key, src_is_first) = ConnectionKey::new(src, dst);
        let connection = self.connections.peek(&key)?;
        connection.directions[connection.side_of(src_is_first)].seq_of(offset)
    }

    pub fn push(&mut self, segment: &SegmentRef<'_>, emit: &mut Emit<'_>) {
        let (key, src_is_first) = ConnectionKey::new(segment.src, segment.dst);
        let (syn, ack) = (segment.flags.syn(), segment.flags.ack());
        if syn && !ack {
            self.close_if_reused(key, src_is_first, segment, emit);
        }
        let limits = self.limits;
        let connection = match self.connections.get_mut(&key) {
            Some(connection) => connection,
            None => {
                if segment.payload_len == 0 && !syn {
                    // A lone ACK, FIN or RST of a connection we do not know.
                    return;
                }
                self.open(key, src_is_first, segment, emit);
                self.connections.get_mut(&key).expect("opened above")
            }
        };
        let before = connection.buffered();
        connection.last_seen_ns = segment.timestamp_ns;
        let side = connection.side_of(src_is_first);
        let peer = 1 - side;
        let syn_len = u32::from(syn);
        if syn {
            connection.directions[side].start_at(segment.seq.wrapping_add(1));
        }
        if ack {
            connection.directions[peer].start_at(segment.ack);
        }
        connection.directions[side].start_at(segment.seq.wrapping_add(syn_len));

        let stream = &mut connection.directions[side];
        let payload_start = stream
            .offset_of(segment.seq.wrapping_add(syn_len))
            .expect("the base was just set");
        if stream.out_of_window(payload_start) {
            self.stats.out_of_window_segments += 1;
            return;
        }
        let mut conflicts = Vec::new();
        if segment.gated && segment.data_offset > 0 {
            conflicts.extend(stream.insert(
                payload_start,
                Chunk::Uncopied(u64::from(segment.data_offset)),
            ));
        }
        let data_start = payload_start + u64::from(segment.data_offset);
        if !segment.data.is_empty() {
            if stream.next() == data_start && !stream.has_buffered() {
                // In order with nothing buffered: hand the bytes over as they are.
                emit(&StreamEvent::Data {
                    id: connection.id,
                    src: segment.src,
                    offset: data_start,
                    bytes: segment.data,
                    timestamp_ns: segment.timestamp_ns,
                });
                stream.delivered_in_place(segment.data, limits.recent_bytes);
            } else {
                conflicts.extend(stream.insert(data_start, Chunk::Data(segment.data.to_vec())));
            }
        }
        if segment.uncopied_tail > 0 {
            let tail_start = data_start + segment.data.len() as u64;
            conflicts.extend(stream.insert(
                tail_start,
                Chunk::Uncopied(u64::from(segment.uncopied_tail)),
            ));
        }
        for conflict in conflicts {
            self.stats.conflicting_overlaps += 1;
            emit(&StreamEvent::ConflictingOverlap {
                id: connection.id,
                src: segment.src,
                offset: conflict.offset,
                len: conflict.len,
                timestamp_ns: segment.timestamp_ns,
            });
        }
        if segment.flags.fin() {
            stream.set_fin(payload_start + u64::from(segment.payload_len));
        }
        deliver(
            connection,
            &key,
            side,
            &limits,
            &mut self.stats,
            segment.timestamp_ns,
            emit,
        );

        // The peer acknowledged bytes this side never showed us while later
        // ones wait in the buffer: they were lost from the capture.
        if ack {
            let peer_stream = &connection.directions[peer];
            if let Some(acked) = peer_stream.offset_of(segment.ack) {
                if acked > peer_stream.next() && peer_stream.has_buffered() {
                    skip_lost(
                        connection,
                        &key,
                        peer,
                        Some(acked),
                        &mut self.stats,
                        segment.timestamp_ns,
                        emit,
                    );
                    deliver(
                        connection,
                        &key,
                        peer,
                        &limits,
                        &mut self.stats,
                        segment.timestamp_ns,
                        emit,
                    );
                }
            }
        }
        while connection.buffered() > limits.max_buffered_per_connection {
            self.stats.buffer_overflows += 1;
            if !give_up_oldest_hole(
                connection,
                &key,
                &limits,
                &mut self.stats,
                segment.timestamp_ns,
                emit,
            ) {
                break;
            }
        }
        self.buffered_total = self.buffered_total + connection.buffered() - before;

        if segment.flags.rst() {
            self.close(key, CloseReason::Rst, segment.timestamp_ns, emit);
        } else if connection.directions.iter().all(|d| d.finished()) {
            self.close(key, CloseReason::Fin, segment.timestamp_ns, emit);
        }
        self.enforce_total_buffer(key, segment.timestamp_ns, emit);
    }

    /// Closes connections that saw no segment for the idle timeout by `now_ns`.
    pub fn expire(&mut self, now_ns: u64, emit: &mut Emit<'_>) {
        while let Some((&key, connection)) = self.connections.peek_lru() {
            if now_ns.saturating_sub(connection.last_seen_ns) < self.limits.idle_timeout_ns {
                break;
            }
            self.stats.connections_idled += 1;
            self.close(key, CloseReason::Idle, now_ns, emit);
        }
    }

    /// Delivers what is buffered and closes every connection: the input ended.
    pub fn finish(&mut self, emit: &mut Emit<'_>) {
        while let Some((&key, connection)) = self.connections.peek_lru() {
            let last_seen = connection.last_seen_ns;
            self.close(key, CloseReason::EndOfInput, last_seen, emit);
        }
    }

    fn open(
        &mut self,
        key: ConnectionKey,
        src_is_first: bool,
        segment: &SegmentRef<'_>,
        emit: &mut Emit<'_>,
    ) {
        if self.connections.len() >= self.limits.max_connections {
            self.evict_least_recent(segment.timestamp_ns, emit);
        }
        let (syn, ack) = (segment.flags.syn(), segment.flags.ack());
        let syn_sender = match (syn, ack) {
            (true, false) => Some(segment.src),
            (true, true) => Some(segment.dst),
            _ => None,
        };
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        self.stats.connections_opened += 1;
        self.connections.put(
            key,
            Connection {
                id,
                first_is_second: !src_is_first,
                directions: Default::default(),
                last_seen_ns: segment.timestamp_ns,
            },
        );
        emit(&StreamEvent::Opened {
            id,
            first: segment.src,
            second: segment.dst,
            syn_sender,
            midstream: syn_sender.is_none(),
            interface: segment.interface,
            timestamp_ns: segment.timestamp_ns,
        });
    }

    /// A SYN for a known connection with another initial sequence number
    /// starts a new connection on the same ports.
    fn close_if_reused(
        &mut self,
        key: ConnectionKey,
        src_is_first: bool,
        segment: &SegmentRef<'_>,
        emit: &mut Emit<'_>,
    ) {
        let Some(connection) = self.connections.peek(&key) else {
            return;
        };
        let base = connection.directions[connection.side_of(src_is_first)].base();
        if base.is_some_and(|base| base != segment.seq.wrapping_add(1)) {
            self.close(key, CloseReason::Evicted, segment.timestamp_ns, emit);
        }
    }

    fn close(
        &mut self,
        key: ConnectionKey,
        reason: CloseReason,
        timestamp_ns: u64,
        emit: &mut Emit<'_>,
    ) {
        let Some(mut connection) = self.connections.pop(&key) else {
            return;
        };
        self.buffered_total -= connection.buffered();
        // Everything still buffered is delivered, each hole before it lost.
        for side in 0..2 {
            loop {
                deliver(
                    &mut connection,
                    &key,
                    side,
                    &self.limits,
                    &mut self.stats,
                    timestamp_ns,
                    emit,
                );
                if !skip_lost(
                    &mut connection,
                    &key,
                    side,
                    None,
                    &mut self.stats,
                    timestamp_ns,
                    emit,
                ) {
                    break;
                }
            }
        }
        emit(&StreamEvent::Closed {
            id: connection.id,
            reason,
            timestamp_ns,
        });
    }

    /// Over the total budget: first give up this connection's holes, then
    /// evict the least recently used connections.
    fn enforce_total_buffer(&mut self, key: ConnectionKey, timestamp_ns: u64, emit: &mut Emit<'_>) {
        let limits = self.limits;
        if self.buffered_total <= limits.max_buffered_total {
            return;
        }
        self.stats.buffer_overflows += 1;
        if let Some(connection) = self.connections.peek_mut(&key) {
            let before = connection.buffered();
            while give_up_oldest_hole(
                connection,
                &key,
                &limits,
                &mut self.stats,
                timestamp_ns,
                emit,
            ) {}
            self.buffered_total -= before - connection.buffered();
        }
        while self.buffered_total > limits.max_buffered_total
            && self.evict_least_recent(timestamp_ns, emit)
        {}
    }

    /// Closes the least recently used connection, to free what it holds;
    /// false when there is none.
    pub fn evict_least_recent(&mut self, now_ns: u64, emit: &mut Emit<'_>) -> bool {
        let Some((&lru, _)) = self.connections.peek_lru() else {
            return false;
        };
        self.stats.connections_evicted += 1;
        self.close(lru, CloseReason::Evicted, now_ns, emit);
        true
    }
}

/// Emits every in-order piece of one direction, then its end if reached.
#[inline]
fn deliver(
    connection: &mut Connection,
    key: &ConnectionKey,
    side: usize,
    limits: &ReassemblyLimits,
    stats: &mut ReassemblyStats,
    timestamp_ns: u64,
    emit: &mut Emit<'_>,
) {
    // Most segments leave nothing to deliver: they are not even a call.
    if connection.directions[side].has_delivery() {
        deliver_due(connection, key, side, limits, stats, timestamp_ns, emit);
    }
}

/// [`deliver`] for a direction with something to deliver.
fn deliver_due(
    connection: &mut Connection,
    key: &ConnectionKey,
    side: usize,
    limits: &ReassemblyLimits,
    stats: &mut ReassemblyStats,
    timestamp_ns: u64,
    emit: &mut Emit<'_>,
) {
    // The sender's address is unpacked only for an event.
    let (id, sender) = (connection.id, connection.packed_endpoint(key, side));
    let stream = &mut connection.directions[side];
    while let Some(delivery) = stream.next_delivery(limits.recent_bytes) {
        match delivery {
            Delivery::Data { offset, bytes } => emit(&StreamEvent::Data {
                id,
                src: sender.into(),
                offset,
                bytes: &bytes,
                timestamp_ns,
            }),
            Delivery::Uncopied { offset, len } => {
                stats.uncopied_bytes += len;
                emit(&StreamEvent::Gap {
                    id,
                    src: sender.into(),
                    offset,
                    len,
                    kind: GapKind::Uncopied,
                    timestamp_ns,
                });
            }
        }
    }
    if stream.take_finish() {
        emit(&StreamEvent::Finished {
            id,
            src: sender.into(),
            timestamp_ns,
        });
    }
}

/// Declares the hole at the head of one direction lost (up to `until`, the
/// first buffered chunk or the FIN). False when there is no hole.
fn skip_lost(
    connection: &mut Connection,
    key: &ConnectionKey,
    side: usize,
    until: Option<u64>,
    stats: &mut ReassemblyStats,
    timestamp_ns: u64,
    emit: &mut Emit<'_>,
) -> bool {
    let Some((offset, len)) = connection.directions[side].skip_hole(until) else {
        return false;
    };
    stats.lost_gaps += 1;
    stats.lost_bytes += len;
    emit(&StreamEvent::Gap {
        id: connection.id,
        src: connection.endpoint(key, side),
        offset,
        len,
        kind: GapKind::Lost,
        timestamp_ns,
    });
    true
}

/// Frees buffer space: the direction holding the most bytes gives up the
/// hole in front of them and delivers what follows. False when nothing is
/// buffered.
fn give_up_oldest_hole(
    connection: &mut Connection,
    key: &ConnectionKey,
    limits: &ReassemblyLimits,
    stats: &mut ReassemblyStats,
    timestamp_ns: u64,
    emit: &mut Emit<'_>,
) -> bool {
    let side = usize::from(
        connection.directions[1].pending_bytes() > connection.directions[0].pending_bytes(),
    );
    if !connection.directions[side].has_buffered() {
        return false;
    }
    skip_lost(connection, key, side, None, stats, timestamp_ns, emit);
    deliver(connection, key, side, limits, stats, timestamp_ns, emit);
    true
}

#[cfg(test)]
mod tests;
