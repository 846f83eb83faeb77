//! Ring-buffer records, decoded and fed to the pipeline as `auditor run`
//! does: a record is trusted no further than its own length.

#![no_main]

use auditor::{segment::SegmentRef, source::Input};
use auditor_fuzz::{check_segment, records, PipelineRun};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut run = PipelineRun::new(false, false);
    for record in records::split(input) {
        run.accept(match SegmentRef::decode(record, 0) {
            Ok(segment) => {
                check_segment(&segment);
                Input::Segment(segment)
            }
            Err(error) => Input::Undecodable(error),
        });
    }
    run.finish();
});
