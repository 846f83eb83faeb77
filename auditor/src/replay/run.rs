//! `auditor replay`: capture files through one pipeline, as `daemon::run`
//! feeds it from the ring buffer.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::PathBuf,
};

use super::{CaptureFile, ReplayProgress};
use crate::{
    config::Config,
    output::Sink,
    pipeline::{Output, Pipeline},
    rules::Severity,
    segment::SegmentRef,
    source::{Fed, Input, Source, SourceLoss},
};

/// How a replay ended, once every file was read.
pub struct Replayed {
    /// Why files broke off midway; what they held before was processed.
    pub broken: Vec<String>,
    /// The highest severity of any alert raised.
    pub worst: Option<Severity>,
    /// Findings the configuration's silences kept from raising an alert,
    /// by rule.
    pub silenced: BTreeMap<&'static str, u64>,
}

/// Runs `files` (opened from `paths`) through the pipeline `config`
/// describes, in the order given, with the captures' own timestamps,
/// handing `output` to `sink`. Only segments to or from `ports` are
/// followed; with none, every TCP connection is.
pub fn run<S: Sink>(
    config: &Config,
    ports: &[u16],
    files: Vec<CaptureFile>,
    paths: &[PathBuf],
    output: Output,
    sink: S,
) -> io::Result<Replayed> {
    let watched = |segment: &SegmentRef| {
        ports.is_empty()
            || ports.contains(&segment.src.port())
            || ports.contains(&segment.dst.port())
    };
    let mut pipeline = Pipeline::configured(config, output, HashMap::new(), sink);
    let mut broken = Vec::new();
    let mut last_seen_ns = 0;
    let mut progress = ReplayProgress::for_files(paths);
    for mut file in files {
        let mut accept = |input: Input<'_>| match input {
            Input::Segment(segment) if !watched(&segment) => Ok(()),
            input => {
                if let Input::Segment(segment) = &input {
                    last_seen_ns = segment.timestamp_ns;
                }
                pipeline.accept(input)
            }
        };
        while file.feed(&mut accept)? == Fed::More {
            progress.reading(file.bytes_read());
        }
        broken.extend(file.broken().map(ToString::to_string));
        progress.file_done(file.bytes_read());
    }
    progress.finish();
    pipeline.finish()?;
    pipeline.report_loss(last_seen_ns, SourceLoss::default())?;
    Ok(Replayed {
        broken,
        worst: pipeline.worst_severity(),
        silenced: pipeline.snapshot(SourceLoss::default()).silenced,
    })
}
