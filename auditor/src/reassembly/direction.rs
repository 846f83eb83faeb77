//! One direction of a connection: sequence numbers turned into stream
//! offsets, out-of-order bytes held until the hole before them fills.

use std::collections::BTreeMap;

/// Segments further ahead of the next expected byte than this are out of
/// window: no real sender is that far ahead of what its peer acknowledged.
const WINDOW: u64 = 1 << 30;

/// What the buffer holds at a stream offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Vec<u8>),
    /// Bytes the capture saw but deliberately did not copy.
    Uncopied(u64),
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Data(bytes) => bytes.len() as u64,
            Chunk::Uncopied(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            Chunk::Data(bytes) => bytes.len(),
            Chunk::Uncopied(_) => 0,
        }
    }
}

/// What `DirectionStream::next_delivery` hands out, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Data { offset: u64, bytes: Vec<u8> },
    Uncopied { offset: u64, len: u64 },
}

/// An overlap whose bytes differ from the ones seen first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub offset: u64,
    pub len: u64,
}

/// Kept compact (64 bytes): the flow table holds two per connection.
#[derive(Debug, Default)]
pub struct DirectionStream {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// Next offset to deliver.
    next: u64,
    /// Allocated when a first chunk arrives out of order (most directions
    /// never have one), then kept.
    pending: Option<Box<Pending>>,
    /// The last delivered bytes, kept to notice retransmissions whose
    /// contents differ from what was delivered. A Vec rather than a ring:
    /// it is short, and moving it up is cheaper than popping bytes one by one.
    recent: Vec<u8>,
    /// The FIN, once seen.
    fin: Option<Fin>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Out-of-order chunks by offset; they never overlap each other.
    chunks: BTreeMap<u64, Chunk>,
    /// Data bytes in `chunks`.
    bytes: usize,
}

#[derive(Clone, Copy, Debug)]
struct Fin {
    /// Stream offset of the FIN.
    at: u64,
    /// Delivery reached it (and said so).
    reached: bool,
}

impl DirectionStream {
    pub fn base(&self) -> Option<u32> {
        self.base
    }

    /// Sets offset 0 at `seq`, unless it is already known.
    pub fn start_at(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq);
        }
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.bytes)
    }

    pub fn finished(&self) -> bool {
        self.fin.is_some_and(|fin| fin.reached)
    }

    /// The out-of-order chunks, if any were ever buffered.
    fn chunks(&self) -> Option<&BTreeMap<u64, Chunk>> {
        self.pending.as_ref().map(|pending| &pending.chunks)
    }

    /// The stream offset of `seq`: the one nearest the next expected byte,
    /// so sequence numbers may wrap. `None` before the base is known.
    pub fn offset_of(&self, seq: u32) -> Option<u64> {
        let base = self.base?;
        let relative = u64::from(seq.wrapping_sub(base));
        let epoch = self.next & !0xFFFF_FFFF;
        let candidates = [
            epoch.checked_sub(1 << 32).map(|e| e | relative),
            Some(epoch | relative),
            epoch.checked_add(1 << 32).map(|e| e | relative),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|&offset| offset.abs_diff(self.next))
    }

    /// The sequence number of stream `offset`.
    pub fn seq_of(&self, offset: u64) -> Option<u32> {
        Some(self.base?.wrapping_add(offset as u32))
    }

    /// Whether a chunk at `offset` is too far from the stream to be real.
    pub fn out_of_window(&self, offset: u64) -> bool {
        offset > self.next + WINDOW
    }

    pub fn set_fin(&mut self, offset: u64) {
        if self.fin.is_none() && offset >= self.next {
            self.fin = Some(Fin {
                at: offset,
                reached: false,
            });
        }
    }

    /// Whether the FIN was reached by now; true once.
    pub fn take_finish(&mut self) -> bool {
        let due = self.fin_due();
        if let (true, Some(fin)) = (due, &mut self.fin) {
            fin.reached = true;
        }
        due
    }

    /// Buffers `chunk` at `offset`, first seen wins: only the parts no
    /// earlier chunk covered are kept. Returns the conflicting overlaps.
    pub fn insert(&mut self, offset: u64, chunk: Chunk) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        let end = offset + chunk.len();
        if end <= offset {
            return conflicts;
        }
        // Bytes before `next` were delivered already: compare what we still
        // remember of them, then drop them.
        let (mut offset, chunk) = if offset < self.next {
            let delivered = (self.next.min(end) - offset) as usize;
            if let Chunk::Data(bytes) = &chunk {
                if let Some(conflict) = self.compare_with_recent(offset, &bytes[..delivered]) {
                    conflicts.push(conflict);
                }
            }
            if end <= self.next {
                return conflicts;
            }
            (self.next, chunk.split_off(delivered as u64))
        } else {
            (offset, chunk)
        };
        let mut remaining = Some(chunk);
        // Walk the pending chunks that overlap [offset, end), keeping the
        // pieces of the new chunk that fall between them.
        let overlapping: Vec<(u64, u64)> = self
            .chunks()
            .into_iter()
            .flat_map(|chunks| chunks.range(..end))
            .filter(|(&start, existing)| start + existing.len() > offset)
            .map(|(&start, existing)| (start, start + existing.len()))
            .collect();
        for (start, stop) in overlapping {
            let Some(chunk) = remaining.take() else { break };
            if start > offset {
                let (before, rest) = chunk.split_at(start - offset);
                self.put(offset, before);
                remaining = Some(rest);
                offset = start;
            } else {
                remaining = Some(chunk);
            }
            let Some(chunk) = remaining.take() else { break };
            let covered = stop.min(end) - offset;
            let (overlap, rest) = chunk.split_at(covered);
            let old = self.chunks().and_then(|chunks| chunks.get(&start));
            if let (Chunk::Data(new), Some(Chunk::Data(old))) = (&overlap, old) {
                let from = (offset - start) as usize;
                if old[from..from + new.len()] != new[..] {
                    conflicts.push(Conflict {
                        offset,
                        len: covered,
                    });
                }
            }
            offset += covered;
            remaining = (!rest.is_empty()).then_some(rest);
        }
        if let Some(chunk) = remaining {
            self.put(offset, chunk);
        }
        conflicts
    }

    fn put(&mut self, offset: u64, chunk: Chunk) {
        if chunk.is_empty() {
            return;
        }
        let pending = self.pending.get_or_insert_with(Box::default);
        pending.bytes += chunk.buffered_bytes();
        pending.chunks.insert(offset, chunk);
    }

    fn compare_with_recent(&self, offset: u64, bytes: &[u8]) -> Option<Conflict> {
        let remembered_from = self.next - self.recent.len() as u64;
        let start = offset.max(remembered_from);
        let end = offset + bytes.len() as u64;
        if start >= end {
            return None;
        }
        let differs = (start..end).any(|at| {
            self.recent[(at - remembered_from) as usize] != bytes[(at - offset) as usize]
        });
        differs.then_some(Conflict {
            offset: start,
            len: end - start,
        })
    }

    /// The next in-order piece, if the chunk at `next` is buffered.
    pub fn next_delivery(&mut self, recent_limit: usize) -> Option<Delivery> {
        if !self.chunk_due() {
            return None;
        }
        let pending = self.pending.as_mut()?;
        let (offset, chunk) = pending.chunks.pop_first()?;
        pending.bytes -= chunk.buffered_bytes();
        self.next += chunk.len();
        Some(match chunk {
            Chunk::Data(bytes) => {
                self.remember(&bytes, recent_limit);
                Delivery::Data { offset, bytes }
            }
            Chunk::Uncopied(len) => {
                self.recent.clear();
                Delivery::Uncopied { offset, len }
            }
        })
    }

    /// Marks `bytes`, delivered straight from a segment at `next`, as delivered.
    pub fn delivered_in_place(&mut self, bytes: &[u8], recent_limit: usize) {
        self.next += bytes.len() as u64;
        self.remember(bytes, recent_limit);
    }

    fn remember(&mut self, bytes: &[u8], recent_limit: usize) {
        let keep = bytes.len().min(recent_limit);
        let excess = (self.recent.len() + keep).saturating_sub(recent_limit);
        let wanted = self.recent.len() - excess + keep;
        if wanted > self.recent.capacity() {
            // Grown as a Vec grows (doubling, here up to the limit), with the
            // bytes still recent copied once: moving them up, then
            // reallocating, would copy them twice.
            let capacity = wanted
                .max(self.recent.capacity().saturating_mul(2))
                .min(recent_limit);
            let mut grown = Vec::with_capacity(capacity);
            grown.extend_from_slice(&self.recent[excess..]);
            self.recent = grown;
        } else {
            self.recent.drain(..excess);
        }
        self.recent.extend_from_slice(&bytes[bytes.len() - keep..]);
    }

    /// Gives up the hole at the head of the stream: up to the first buffered
    /// chunk or `until`, whichever comes first, or to the FIN when neither
    /// is given. Returns the lost range and moves `next` past it.
    pub fn skip_hole(&mut self, until: Option<u64>) -> Option<(u64, u64)> {
        let first_buffered = self
            .chunks()
            .and_then(|chunks| chunks.first_key_value())
            .map(|(&offset, _)| offset);
        let target = match (first_buffered, until) {
            (Some(buffered), Some(until)) => buffered.min(until),
            (Some(buffered), None) => buffered,
            (None, Some(until)) => until,
            (None, None) => self.fin?.at,
        };
        if target <= self.next {
            return None;
        }
        let lost = (self.next, target - self.next);
        self.next = target;
        self.recent.clear();
        Some(lost)
    }

    /// Whether chunks wait in the buffer behind a hole.
    pub fn has_buffered(&self) -> bool {
        self.chunks().is_some_and(|chunks| !chunks.is_empty())
    }

    /// Whether [`Self::next_delivery`] or [`Self::take_finish`] has
    /// something to hand out.
    pub fn has_delivery(&self) -> bool {
        self.chunk_due() || self.fin_due()
    }

    /// The first buffered chunk starts where delivery stands.
    fn chunk_due(&self) -> bool {
        self.chunks()
            .and_then(BTreeMap::first_key_value)
            .is_some_and(|(&offset, _)| offset == self.next)
    }

    /// Delivery reached the end, not yet reported.
    fn fin_due(&self) -> bool {
        self.fin
            .is_some_and(|fin| !fin.reached && fin.at == self.next)
    }
}

impl Chunk {
    /// The first `at` bytes and the rest.
    fn split_at(self, at: u64) -> (Chunk, Chunk) {
        match self {
            Chunk::Data(mut bytes) => {
                let rest = bytes.split_off(at as usize);
                (Chunk::Data(bytes), Chunk::Data(rest))
            }
            Chunk::Uncopied(len) => (Chunk::Uncopied(at), Chunk::Uncopied(len - at)),
        }
    }

    /// The part from `at` on.
    fn split_off(self, at: u64) -> Chunk {
        self.split_at(at).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_window_keeps_the_last_bytes_and_grows_only_to_its_limit() {
        let sent: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut stream = DirectionStream::default();
        stream.start_at(0);
        let mut delivered = 0;
        for len in [3, 50, 1, 120, 7, 300, 2] {
            stream.delivered_in_place(&sent[delivered..delivered + len], 256);
            delivered += len;
            let kept = delivered.min(256);
            assert_eq!(stream.recent, sent[delivered - kept..delivered]);
            assert!(stream.recent.capacity() <= 256);
        }
        let mut first = DirectionStream::default();
        first.delivered_in_place(&sent[..100], 256);
        assert_eq!(
            first.recent.capacity(),
            100,
            "a first delivery gets room for itself only"
        );
    }
}
