//! Any sequence of TCP segments through reassembly, the HTTP layer, the rules
//! and the events, as `auditor replay` runs them (see
//! `auditor_fuzz::segments` for the input format).

#![no_main]

use auditor::source::Input;
use auditor_fuzz::{
    segments::{self, MODE_EXCHANGES, MODE_PRETTY},
    PipelineRun,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (mode, segments) = segments::decode(input);
    let mut run = PipelineRun::new(mode & MODE_EXCHANGES != 0, mode & MODE_PRETTY != 0);
    for segment in segments {
        run.accept(Input::Segment(segment));
    }
    run.finish();
});
