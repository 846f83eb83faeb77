//! TCP reassembly: segments in, per-direction in-order byte streams out.

mod event;

pub use event::{CloseReason, ConnectionId, GapKind, StreamEvent};
