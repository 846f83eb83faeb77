//! pcap and pcapng files, read as `auditor replay` reads them: any bytes
//! become segments, skipped packets and at most one error, and the counts
//! add up.

#![no_main]

use auditor::{
    replay::{CaptureFile, ReplayError},
    segment::SegmentRef,
};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.pcap";

fuzz_target!(|input: &[u8]| {
    let mut capture = match CaptureFile::from_bytes(NAME, input) {
        Ok(capture) => capture,
        Err(error) => return check_error(&error),
    };
    while capture.next_with(check).is_some() {}
    let stats = capture.stats();
    assert_eq!(stats.packets, stats.tcp_segments + stats.skipped_total());
    assert!(capture.bytes_read() <= input.len() as u64);
});

fn check(segment: Result<SegmentRef<'_>, ReplayError>) {
    match segment {
        Ok(segment) => {
            // The captured bytes and the tail the snapshot length cut off
            // are the whole payload.
            let parts = u64::from(segment.data_offset)
                + segment.data.len() as u64
                + u64::from(segment.uncopied_tail);
            assert_eq!(parts, u64::from(segment.payload_len));
        }
        Err(error) => check_error(&error),
    }
}

fn check_error(error: &ReplayError) {
    let message = error.to_string();
    assert!(message.starts_with(&format!("{NAME}: ")), "{message}");
}
