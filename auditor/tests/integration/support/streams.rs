//! Puts each direction's payload back together from the records, by sequence
//! number, the way a reader of the records would.

use std::{collections::BTreeMap, net::SocketAddr};

use auditor::segment::Segment;

/// The payload one direction of a connection carried, rebuilt from records.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of the SYN, when one was seen.
    pub syn_seq: Option<u32>,
    /// Bytes by offset from the first payload byte (SYN + 1).
    pub bytes: BTreeMap<u32, u8>,
    pub segments: Vec<Segment>,
}

impl Stream {
    /// The contiguous payload from offset 0; panics on conflicting bytes for
    /// the same sequence number.
    pub fn contiguous(&self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(&b) = self.bytes.get(&(out.len() as u32)) {
            out.push(b);
        }
        out
    }
}

/// Streams keyed by (source, destination).
pub fn rebuild(segments: &[Segment]) -> BTreeMap<(SocketAddr, SocketAddr), Stream> {
    let mut streams: BTreeMap<(SocketAddr, SocketAddr), Stream> = BTreeMap::new();
    for segment in segments {
        let stream = streams.entry((segment.src, segment.dst)).or_default();
        if segment.flags.syn() {
            stream.syn_seq = Some(segment.seq);
        }
        stream.segments.push(segment.clone());
    }
    for stream in streams.values_mut() {
        let isn = stream
            .syn_seq
            .expect("the SYN of every direction was recorded");
        for segment in &stream.segments {
            let start = segment.data_seq().wrapping_sub(isn.wrapping_add(1));
            for (i, &b) in segment.data.iter().enumerate() {
                let previous = stream.bytes.insert(start + i as u32, b);
                assert!(
                    previous.is_none() || previous == Some(b),
                    "conflicting bytes at offset {}",
                    start + i as u32
                );
            }
        }
    }
    streams
}
