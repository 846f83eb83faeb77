//! Ring-buffer records, decoded and fed to the pipeline as `auditor run`
//! does: a record is trusted no further than its own length.

#![no_main]

use auditor::segment::SegmentRef;
use auditor_fuzz::{check_segment, records, PipelineRun};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut run = PipelineRun::new(false, false);
    for record in records::split(input) {
        let decoded = SegmentRef::decode(record, 0);
        if let Ok(segment) = &decoded {
            check_segment(segment);
        }
        run.accept(decoded);
    }
    run.finish();
});
