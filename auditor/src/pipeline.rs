//! What happens to captured segments. For now it counts them and logs each
//! at debug level; TCP reassembly replaces it.

use crate::segment::{DecodeError, Segment};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub segments: u64,
    pub payload_bytes: u64,
    pub undecodable_records: u64,
}

#[derive(Debug, Default)]
pub struct Pipeline {
    stats: PipelineStats,
}

impl Pipeline {
    pub fn accept(&mut self, record: Result<Segment, DecodeError>) {
        let segment = match record {
            Ok(segment) => segment,
            Err(error) => {
                self.stats.undecodable_records += 1;
                tracing::warn!(%error, "undecodable record from the kernel program");
                return;
            }
        };
        self.stats.segments += 1;
        self.stats.payload_bytes += segment.data.len() as u64;
        tracing::debug!(
            interface = segment.interface,
            direction = ?segment.direction,
            src = %segment.src,
            dst = %segment.dst,
            seq = segment.seq,
            data_offset = segment.data_offset,
            ack = segment.ack,
            flags = %segment.flags,
            payload_len = segment.payload_len,
            captured = segment.data.len(),
            uncopied_tail = segment.uncopied_tail,
            head = %printable_prefix(&segment.data, 64),
            "segment"
        );
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }
}

/// The first `max` bytes with non-printable ones escaped, for the debug log.
fn printable_prefix(data: &[u8], max: usize) -> String {
    data.iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segments_bytes_and_bad_records() {
        let mut pipeline = Pipeline::default();
        pipeline.accept(Err(DecodeError::ShortRecord(3)));
        assert_eq!(pipeline.stats().undecodable_records, 1);
        assert_eq!(pipeline.stats().segments, 0);
    }

    #[test]
    fn escapes_binary_in_the_log() {
        assert_eq!(printable_prefix(b"GET /\r\n\x00xyz", 8), "GET /\\r\\n\\x00");
    }
}
