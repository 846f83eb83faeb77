//! One connection's conversation, the input of the `rules` target: what
//! reassembly hands the HTTP layer (each side's bytes in order, the holes in
//! them, their ends), so that the rules see exchanges made the way the
//! pipeline makes them.
//!
//! ```text
//! input = settings:u8 piece*
//! piece = kind:u8 len:u16 data
//! ```
//!
//! `len` is little-endian. `kind`: bit 0 sent by the server (else the
//! client); bits 1-2 what the piece is: `len` bytes of `data` (fewer at the
//! end of the input), a hole of `len` bytes lost, a hole of `len` bytes left
//! uncopied on purpose, or the side's end (FIN); bit 3 the side's bytes
//! before it were seen twice with different contents; bits 4-7 the seconds
//! of capture time that pass before it. `settings`: see [`Settings`].

use std::net::SocketAddr;

use auditor::{
    stream::{GapKind, StreamEvent},
    rules::PortRole,
};

use crate::Reader;

const FROM_SERVER: u8 = 0x01;
const WHAT_SHIFT: u8 = 1;
const WHAT_DATA: u8 = 0;
const WHAT_LOST: u8 = 1;
const WHAT_UNCOPIED: u8 = 2;
const WHAT_FINISHED: u8 = 3;
const OVERLAP_BEFORE: u8 = 0x08;
const PAUSE_SHIFT: u8 = 4;

/// From the settings byte: bits 0-1 the role of the server's port (none,
/// frontend, backend, none), bit 2 the connection was already open when
/// capture started, bit 3 secrets and query strings may appear in events,
/// bit 4 the pretty format is coloured.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub role: Option<PortRole>,
    pub midstream: bool,
    pub reveal_secrets: bool,
    pub colour: bool,
}

impl Settings {
    fn from_byte(byte: u8) -> Settings {
        Settings {
            role: match byte & 0x03 {
                1 => Some(PortRole::Frontend),
                2 => Some(PortRole::Backend),
                _ => None,
            },
            midstream: byte & 0x04 != 0,
            reveal_secrets: byte & 0x08 != 0,
            colour: byte & 0x10 != 0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum What<'a> {
    Data(&'a [u8]),
    Gap { len: u64, kind: GapKind },
    Finished,
}

#[derive(Clone, Copy, Debug)]
pub struct Piece<'a> {
    pub from_server: bool,
    pub what: What<'a>,
    pub overlap_before: bool,
    pub pause_secs: u8,
}

/// The input's settings and its pieces.
pub fn decode(input: &[u8]) -> (Settings, impl Iterator<Item = Piece<'_>>) {
    let mut reader = Reader::new(input);
    let settings = Settings::from_byte(reader.u8());
    let pieces = std::iter::from_fn(move || {
        if reader.is_empty() {
            return None;
        }
        let kind = reader.u8();
        let len = reader.u16();
        let what = match (kind >> WHAT_SHIFT) & 0x03 {
            WHAT_DATA => What::Data(reader.bytes(usize::from(len))),
            WHAT_LOST => What::Gap {
                len: len.into(),
                kind: GapKind::Lost,
            },
            WHAT_UNCOPIED => What::Gap {
                len: len.into(),
                kind: GapKind::Uncopied,
            },
            _ => What::Finished,
        };
        Some(Piece {
            from_server: kind & FROM_SERVER != 0,
            what,
            overlap_before: kind & OVERLAP_BEFORE != 0,
            pause_secs: kind >> PAUSE_SHIFT,
        })
    });
    (settings, pieces)
}

/// Writes the stream events of one connection as a conversation with
/// settings 0.
pub struct Encoder {
    out: Vec<u8>,
    client: SocketAddr,
    last_timestamp_ns: u64,
    overlap_pending: bool,
}

impl Encoder {
    /// `client` sent the SYN (or, mid-stream, the first request).
    pub fn new(client: SocketAddr, opened_ns: u64) -> Encoder {
        Encoder {
            out: vec![0],
            client,
            last_timestamp_ns: opened_ns,
            overlap_pending: false,
        }
    }

    pub fn push(&mut self, event: &StreamEvent<'_>) {
        let (src, what) = match *event {
            StreamEvent::Data { src, bytes, .. } => (src, What::Data(bytes)),
            StreamEvent::Gap { src, len, kind, .. } => (src, What::Gap { len, kind }),
            StreamEvent::Finished { src, .. } => (src, What::Finished),
            StreamEvent::ConflictingOverlap { .. } => {
                self.overlap_pending = true;
                return;
            }
            StreamEvent::Opened { .. } | StreamEvent::Closed { .. } => return,
        };
        let pause_secs = (event.timestamp_ns().saturating_sub(self.last_timestamp_ns)
            / 1_000_000_000)
            .min(15) as u8;
        self.last_timestamp_ns = event.timestamp_ns();
        let mut kind = pause_secs << PAUSE_SHIFT;
        if src != self.client {
            kind |= FROM_SERVER;
        }
        if std::mem::take(&mut self.overlap_pending) {
            kind |= OVERLAP_BEFORE;
        }
        match what {
            What::Data(bytes) => {
                // A piece holds at most u16::MAX bytes: longer data is split.
                for chunk in bytes.chunks(usize::from(u16::MAX)) {
                    self.piece(kind | (WHAT_DATA << WHAT_SHIFT), chunk.len() as u16);
                    self.out.extend_from_slice(chunk);
                    kind &= FROM_SERVER;
                }
            }
            What::Gap { len, kind: gap } => {
                let what = match gap {
                    GapKind::Lost => WHAT_LOST,
                    GapKind::Uncopied => WHAT_UNCOPIED,
                };
                let len = u16::try_from(len).unwrap_or(u16::MAX);
                self.piece(kind | (what << WHAT_SHIFT), len);
            }
            What::Finished => self.piece(kind | (WHAT_FINISHED << WHAT_SHIFT), 0),
        }
    }

    fn piece(&mut self, kind: u8, len: u16) {
        self.out.push(kind);
        self.out.extend(len.to_le_bytes());
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}
