//! Where the pipeline's bytes come from. Every source hands the pipeline
//! [`Input`]s, in the order it read them, through [`Source::feed`]:
//!
//! - the kernel program's ring buffer ([`crate::capture::SegmentReader`])
//!   and capture files ([`crate::replay::CaptureFile`]) hand TCP segments,
//!   which reassembly puts in order;
//! - a source that reads bytes already in order, such as plaintext out of
//!   a TLS library, hands [`StreamEvent`]s straight to the HTTP layer.
//!
//! What a source lost before the pipeline, it reports as a [`SourceLoss`].

use std::io;

use crate::{
    segment::{DecodeError, SegmentRef},
    stream::StreamEvent,
};

/// One thing a source read, borrowed from its buffer: the pipeline copies
/// only what it keeps.
#[derive(Debug)]
pub enum Input<'a> {
    /// A TCP segment as captured, for reassembly.
    Segment(SegmentRef<'a>),
    /// A record the source read but could not make sense of: counted, and
    /// otherwise skipped.
    Undecodable(DecodeError),
    /// Bytes in order on one connection, or its opening or end.
    Stream(StreamEvent<'a>),
}

/// Whether a source may have more to hand over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// More may come: call [`Source::feed`] again (for a live source, once
    /// it has woken up).
    More,
    /// The source has ended.
    Ended,
}

pub trait Source {
    /// Hands `accept` the inputs ready now, in order. The first error of
    /// `accept` stops it and is returned; a source's own failures are its
    /// to report, and end it.
    fn feed(&mut self, accept: impl FnMut(Input<'_>) -> io::Result<()>) -> io::Result<Fed>;
}

/// What a source could not deliver: for the live capture, the kernel
/// program's ring buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceLoss {
    /// Records that found the ring buffer full.
    pub records_dropped: u64,
    /// Records whose payload was not copied in full.
    pub records_truncated: u64,
}
