//! Capture files (pcap, pcapng) read into the same segments as live capture.
//!
//! A [`CaptureFile`] streams its input through pcap-parser, block by block,
//! and yields one [`Segment`] per TCP packet, in capture order. Memory stays
//! bounded: the read buffer starts at 64 KiB and grows only for a block that
//! needs it, never past [`MAX_BLOCK_LEN`].
//!
//! What the segments carry that live capture does not say the same way:
//! - `interface` is the pcapng interface id (pcap: 0). The ids of a later
//!   section continue after those of the earlier ones, so they stay unique
//!   within the file.
//! - `direction` is None: capture files do not say.
//! - `uncopied_tail` counts the payload bytes the snapshot length cut off.
//! - A pcapng Simple Packet Block has no timestamp: it gets the one of the
//!   packet before it (0 at the start of the file).
//!
//! Packets that do not become segments are counted by [`SkipReason`] in
//! [`ReplayStats`]; problems with the file itself end the iteration with one
//! [`ReplayError`].

mod input;
mod packet;
mod progress;
mod run;

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Cursor, Read},
    path::{Path, PathBuf},
};

use pcap_parser::{
    pcapng::{Block, InterfaceDescriptionBlock, OptionCode},
    traits::{PcapNGPacketBlock, PcapReaderIterator},
    Linktype, PcapBlockOwned, PcapError,
};

pub use packet::SkipReason;
pub use progress::{ReplayProgress, PROGRESS_MIN_BYTES};
pub use run::{run, Replayed};

use crate::{
    segment::{Segment, SegmentRef},
    source::{Fed, Input, Source},
};
use input::{
    is_section_header, open_reader, read_error, section_header_len, BytesRead, LastReadError,
};
use packet::{tcp_segment, CapturedPacket};

/// The largest block (pcap record or pcapng block) accepted; a block claiming
/// more is an error, not an allocation.
pub const MAX_BLOCK_LEN: usize = 16 * 1024 * 1024;

/// pcap-parser wants more bytes for a block than the block's length holds.
const CONTENTS_OVERRUN: &str = "its contents overrun its length";

/// The shortest pcapng block: its type and its length, twice.
const MIN_PCAPNG_BLOCK_LEN: u64 = 12;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: empty file, not a pcap or pcapng capture", .path.display())]
    Empty { path: PathBuf },
    #[error("{}: not a pcap or pcapng capture (it starts with {first_bytes:02x?})", .path.display())]
    NotACapture { path: PathBuf, first_bytes: Vec<u8> },
    #[error("{}: truncated: the file ends inside the block at byte {offset}", .path.display())]
    Truncated { path: PathBuf, offset: u64 },
    #[error(
        "{}: the block at byte {offset} claims {claimed} bytes, more than the {MAX_BLOCK_LEN} this reader accepts",
        .path.display()
    )]
    BlockTooLarge {
        path: PathBuf,
        offset: u64,
        claimed: u64,
    },
    #[error("{}: malformed block at byte {offset}: {problem}", .path.display())]
    Malformed {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
}

/// What a capture file held, so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Packets read: pcap records, pcapng enhanced and simple packet blocks.
    pub packets: u64,
    /// Packets that became segments.
    pub tcp_segments: u64,
    skipped: BTreeMap<SkipReason, u64>,
}

impl ReplayStats {
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The reasons that occurred, with their counts.
    pub fn skipped_by_reason(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        self.skipped.iter().map(|(&reason, &count)| (reason, count))
    }
}

/// Opens a pcap or pcapng file for reading; see [`CaptureFile`].
pub fn open(path: &Path) -> Result<CaptureFile, ReplayError> {
    CaptureFile::open(path)
}

/// A capture file read as TCP segments, in capture order: a [`Source`], or
/// an iterator.
///
/// After an error (the file is truncated, a block is malformed or too large,
/// a read fails) the file ends.
pub struct CaptureFile {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    last_read_error: LastReadError,
    bytes_read: BytesRead,
    blocks: BlockDecoder,
    finished: bool,
    /// Why the file ended early, when fed as a [`Source`].
    broken: Option<ReplayError>,
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<CaptureFile, ReplayError> {
        let file = File::open(path).map_err(|source| ReplayError::Io {
            path: path.to_owned(),
            source,
        })?;
        CaptureFile::from_reader(path, file)
    }

    /// Reads a capture from any input; `name` stands for it in errors.
    pub fn from_reader(
        name: impl AsRef<Path>,
        input: impl Read + Send + 'static,
    ) -> Result<CaptureFile, ReplayError> {
        let path = name.as_ref().to_owned();
        let opened = open_reader(&path, Box::new(input))?;
        let format = if opened.is_pcapng {
            Format::PcapNg(Section::default())
        } else {
            Format::Pcap(PcapFormat::default())
        };
        Ok(CaptureFile {
            path,
            reader: opened.reader,
            last_read_error: opened.last_read_error,
            bytes_read: opened.bytes_read,
            blocks: BlockDecoder {
                format,
                last_timestamp_ns: 0,
                stats: ReplayStats::default(),
            },
            finished: false,
            broken: None,
        })
    }

    /// Reads a capture held in memory; `name` stands for it in errors.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<CaptureFile, ReplayError> {
        CaptureFile::from_reader(name, Cursor::new(bytes.to_vec()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> ReplayStats {
        self.blocks.stats.clone()
    }

    /// Bytes of the input read so far; the reader reads ahead of the
    /// segments it yielded by at most its buffer's length.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.get()
    }

    /// Why the file, fed as a [`Source`], ended before its end.
    pub fn broken(&self) -> Option<&ReplayError> {
        self.broken.as_ref()
    }

    fn fail(&mut self, error: ReplayError) -> ReplayError {
        self.finished = true;
        error
    }

    /// Makes room for, and reads, more of the block at `offset` that the
    /// parser found incomplete.
    fn read_more(&mut self, offset: u64) -> Result<(), ReplayError> {
        let buffered = self.reader.data();
        if let Some(claimed) = self.blocks.claimed_block_len(buffered) {
            if claimed > MAX_BLOCK_LEN as u64 {
                return Err(ReplayError::BlockTooLarge {
                    path: self.path.clone(),
                    offset,
                    claimed,
                });
            }
            if claimed <= buffered.len() as u64 {
                return Err(self.malformed(offset, CONTENTS_OVERRUN.into()));
            }
            // The parser wants room for the whole block, and one byte more.
            // (False when the buffer is that large already.)
            self.reader.grow(claimed as usize + 1);
        }
        let buffered_before = self.reader.data().len();
        if self.reader.refill().is_err() {
            return Err(read_error(&self.path, &self.last_read_error));
        }
        if self.reader.data().len() == buffered_before && !self.reader.reader_exhausted() {
            // A full buffer, though it holds the block's claimed length: a
            // guard against asking forever.
            return Err(self.malformed(
                offset,
                "pcap-parser wants more than the block's length".into(),
            ));
        }
        Ok(())
    }

    fn malformed(&self, offset: u64, problem: String) -> ReplayError {
        ReplayError::Malformed {
            path: self.path.clone(),
            offset,
            problem,
        }
    }
}

impl Iterator for CaptureFile {
    type Item = Result<Segment, ReplayError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|segment| segment.map(|segment| segment.to_owned_segment()))
    }
}

impl Source for CaptureFile {
    /// One packet at a time, so that progress can be shown as it goes.
    fn feed(&mut self, mut accept: impl FnMut(Input<'_>) -> io::Result<()>) -> io::Result<Fed> {
        let outcome = self.next_with(|segment| match segment {
            Ok(segment) => accept(Input::Segment(segment)).map(|()| None),
            Err(error) => Ok(Some(error)),
        });
        match outcome {
            None => Ok(Fed::Ended),
            Some(Ok(None)) => Ok(Fed::More),
            Some(Ok(Some(error))) => {
                self.broken = Some(error);
                Ok(Fed::Ended)
            }
            Some(Err(error)) => Err(error),
        }
    }
}

impl CaptureFile {
    /// The next segment, or the error that ends the file, handed to `f`
    /// while its payload is still in the read buffer: no copy of it is made.
    /// None once the file has ended.
    pub fn next_with<R>(
        &mut self,
        f: impl FnOnce(Result<SegmentRef<'_>, ReplayError>) -> R,
    ) -> Option<R> {
        while !self.finished {
            let offset = self.reader.consumed() as u64;
            if let Some(claimed) = self.blocks.undersized_block(self.reader.data()) {
                let problem = format!(
                    "it claims {claimed} bytes, fewer than its type and length fields ({MIN_PCAPNG_BLOCK_LEN})"
                );
                let error = self.malformed(offset, problem);
                return Some(f(Err(self.fail(error))));
            }
            // `consume_noshift`: without the copy of the buffer's unread
            // half that `consume` makes once half of it is read. `refill`
            // shifts before it reads, moving only an incomplete last block.
            match self.reader.next() {
                Ok((block_len, block)) => match self.blocks.decode(block) {
                    Ok(Some(segment)) => {
                        let result = f(Ok(segment));
                        self.reader.consume_noshift(block_len);
                        return Some(result);
                    }
                    Ok(None) => self.reader.consume_noshift(block_len),
                    Err(problem) => {
                        self.reader.consume_noshift(block_len);
                        let error = self.malformed(offset, problem);
                        return Some(f(Err(self.fail(error))));
                    }
                },
                Err(PcapError::Eof) => self.finished = true,
                Err(PcapError::UnexpectedEof) => {
                    let buffered = self.reader.data();
                    let error = match self.blocks.claimed_block_len(buffered) {
                        Some(claimed) if claimed <= buffered.len() as u64 => {
                            self.malformed(offset, CONTENTS_OVERRUN.into())
                        }
                        _ => ReplayError::Truncated {
                            path: self.path.clone(),
                            offset,
                        },
                    };
                    return Some(f(Err(self.fail(error))));
                }
                Err(PcapError::Incomplete(_) | PcapError::BufferTooSmall) => {
                    if let Err(error) = self.read_more(offset) {
                        return Some(f(Err(self.fail(error))));
                    }
                }
                Err(PcapError::ReadError) => {
                    let error = read_error(&self.path, &self.last_read_error);
                    return Some(f(Err(self.fail(error))));
                }
                Err(other) => {
                    // Not `other`'s Display: it prints the whole buffer.
                    let problem = match other {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("pcap-parser rejects it ({kind:?})")
                        }
                        _ => format!("pcap-parser rejects it ({other:?})"),
                    };
                    let error = self.malformed(offset, problem);
                    return Some(f(Err(self.fail(error))));
                }
            }
        }
        None
    }
}

/// Turns blocks into segments, keeping what earlier blocks said about the
/// ones after them.
struct BlockDecoder {
    format: Format,
    last_timestamp_ns: u64,
    stats: ReplayStats,
}

enum Format {
    Pcap(PcapFormat),
    PcapNg(Section),
}

/// From the pcap file header.
struct PcapFormat {
    link_type: Linktype,
    nanosecond: bool,
    big_endian: bool,
    record_header_len: u64,
}

impl Default for PcapFormat {
    fn default() -> Self {
        PcapFormat {
            link_type: Linktype::ETHERNET,
            nanosecond: false,
            big_endian: false,
            record_header_len: 16,
        }
    }
}

/// The current pcapng section.
#[derive(Default)]
struct Section {
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Interface ids of earlier sections come before this section's.
    first_interface_id: u32,
}

struct Interface {
    link_type: Linktype,
    /// 0: no limit.
    snaplen: u32,
    units_per_second: u64,
    offset_seconds: i64,
}

impl BlockDecoder {
    /// A segment, nothing (a skipped packet, a block without packet), or what
    /// is wrong with the block.
    fn decode<'a>(&mut self, block: PcapBlockOwned<'a>) -> Result<Option<SegmentRef<'a>>, String> {
        match (&mut self.format, block) {
            (Format::Pcap(format), PcapBlockOwned::LegacyHeader(header)) => {
                *format = PcapFormat {
                    // The upper bits carry the frame check sequence length.
                    link_type: Linktype(header.network.0 & 0xffff),
                    nanosecond: header.is_nanosecond_precision(),
                    big_endian: header.is_bigendian(),
                    record_header_len: if header.is_modified_format() { 24 } else { 16 },
                };
                Ok(None)
            }
            (Format::Pcap(format), PcapBlockOwned::Legacy(record)) => {
                let fraction_ns = if format.nanosecond { 1 } else { 1_000 };
                let timestamp_ns = u64::from(record.ts_sec) * 1_000_000_000
                    + u64::from(record.ts_usec) * fraction_ns;
                let packet = CapturedPacket {
                    link_type: format.link_type,
                    data: record.data,
                    orig_len: record.origlen,
                    timestamp_ns,
                    interface: 0,
                };
                Ok(self.packet(&packet))
            }
            (Format::PcapNg(section), PcapBlockOwned::NG(block)) => match block {
                Block::SectionHeader(header) => {
                    let first_interface_id = section
                        .first_interface_id
                        .saturating_add(section.interfaces.len() as u32);
                    *section = Section {
                        big_endian: header.big_endian(),
                        interfaces: Vec::new(),
                        first_interface_id,
                    };
                    Ok(None)
                }
                Block::InterfaceDescription(description) => {
                    let interface = Interface::new(&description, section.big_endian)?;
                    section.interfaces.push(interface);
                    Ok(None)
                }
                Block::EnhancedPacket(epb) => {
                    let Some(interface) = section.interfaces.get(epb.if_id as usize) else {
                        return Ok(self.skip(SkipReason::UnknownInterface));
                    };
                    let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let packet = CapturedPacket {
                        link_type: interface.link_type,
                        data: leading(epb.data, epb.caplen),
                        orig_len: epb.origlen,
                        timestamp_ns: interface.timestamp_ns(units),
                        interface: section.first_interface_id.saturating_add(epb.if_id),
                    };
                    Ok(self.packet(&packet))
                }
                Block::SimplePacket(spb) => {
                    let Some(interface) = section.interfaces.first() else {
                        return Ok(self.skip(SkipReason::UnknownInterface));
                    };
                    let mut data = leading(spb.data, spb.origlen);
                    if interface.snaplen != 0 {
                        data = &data[..data.len().min(interface.snaplen as usize)];
                    }
                    let packet = CapturedPacket {
                        link_type: interface.link_type,
                        data,
                        orig_len: spb.orig_len(),
                        timestamp_ns: self.last_timestamp_ns,
                        interface: section.first_interface_id,
                    };
                    Ok(self.packet(&packet))
                }
                _ => Ok(None),
            },
            (Format::Pcap(_), PcapBlockOwned::NG(_))
            | (Format::PcapNg(_), PcapBlockOwned::Legacy(_) | PcapBlockOwned::LegacyHeader(_)) => {
                unreachable!("each pcap-parser reader returns the blocks of its own format")
            }
        }
    }

    fn packet<'a>(&mut self, packet: &CapturedPacket<'a>) -> Option<SegmentRef<'a>> {
        self.stats.packets += 1;
        self.last_timestamp_ns = packet.timestamp_ns;
        match tcp_segment(packet) {
            Ok(segment) => {
                self.stats.tcp_segments += 1;
                Some(segment)
            }
            Err(reason) => {
                *self.stats.skipped.entry(reason).or_default() += 1;
                None
            }
        }
    }

    fn skip<'a>(&mut self, reason: SkipReason) -> Option<SegmentRef<'a>> {
        self.stats.packets += 1;
        *self.stats.skipped.entry(reason).or_default() += 1;
        None
    }

    /// The length a pcapng block at the start of `buffered` claims, when it
    /// is shorter than any block can be. pcap-parser 0.17 takes the 12
    /// bytes of type and lengths off the claim unchecked for some blocks
    /// (process information): an overflow, a panic where overflow is checked.
    fn undersized_block(&self, buffered: &[u8]) -> Option<u64> {
        match self.format {
            Format::Pcap(_) => None,
            Format::PcapNg(_) => self
                .claimed_block_len(buffered)
                .filter(|&claimed| claimed < MIN_PCAPNG_BLOCK_LEN),
        }
    }

    /// How long the block at the start of `buffered` says it is, header
    /// included; None while too little of it is buffered to tell.
    fn claimed_block_len(&self, buffered: &[u8]) -> Option<u64> {
        let (length_field, big_endian, header_len) = match &self.format {
            Format::Pcap(format) => (8..12, format.big_endian, format.record_header_len),
            Format::PcapNg(_) if is_section_header(buffered) => {
                return section_header_len(buffered);
            }
            Format::PcapNg(section) => (4..8, section.big_endian, 0),
        };
        let bytes: [u8; 4] = buffered.get(length_field)?.try_into().ok()?;
        let length = if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        };
        Some(header_len + u64::from(length))
    }
}

/// The first `len` bytes of a packet block's data (which may have padding
/// after them): pcap-parser's `packet_data`, but borrowing from the buffer
/// rather than from the block value, so the segment can outlive the block.
fn leading(data: &[u8], len: u32) -> &[u8] {
    &data[..data.len().min(len as usize)]
}

/// Timestamp units per second for an `if_tsresol`: 10^-n seconds, or
/// 2^-n with the high bit set. (pcap-parser's `ts_resolution` refuses every
/// binary resolution: it compares n before masking the high bit.)
fn units_per_second(if_tsresol: u8) -> Option<u64> {
    let exponent = u32::from(if_tsresol & 0x7f);
    if if_tsresol & 0x80 == 0 {
        10u64.checked_pow(exponent)
    } else {
        1u64.checked_shl(exponent).filter(|_| exponent < 64)
    }
}

impl Interface {
    fn new(description: &InterfaceDescriptionBlock, big_endian: bool) -> Result<Interface, String> {
        let units_per_second = units_per_second(description.if_tsresol).ok_or_else(|| {
            format!(
                "interface description with an invalid if_tsresol {:#04x}",
                description.if_tsresol
            )
        })?;
        // pcap-parser reads if_tsoffset as little-endian whatever the section.
        let offset_seconds = description
            .options
            .iter()
            .find(|option| option.code == OptionCode::IfTsoffset)
            .and_then(|option| <[u8; 8]>::try_from(option.as_bytes().ok()?).ok())
            .map_or(0, |bytes| {
                if big_endian {
                    i64::from_be_bytes(bytes)
                } else {
                    i64::from_le_bytes(bytes)
                }
            });
        Ok(Interface {
            link_type: description.linktype,
            snaplen: description.snaplen,
            units_per_second,
            offset_seconds,
        })
    }

    /// Unix nanoseconds of a timestamp in this interface's units, clamped to
    /// what a u64 holds.
    fn timestamp_ns(&self, units: u64) -> u64 {
        let ns = i128::from(units) * 1_000_000_000 / i128::from(self.units_per_second)
            + i128::from(self.offset_seconds) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(units_per_second: u64, offset_seconds: i64) -> Interface {
        Interface {
            link_type: Linktype::ETHERNET,
            snaplen: 0,
            units_per_second,
            offset_seconds,
        }
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(units_per_second(6), Some(1_000_000));
        assert_eq!(units_per_second(19), Some(10_000_000_000_000_000_000));
        assert_eq!(units_per_second(20), None);
        assert_eq!(units_per_second(0x80 | 10), Some(1024));
        assert_eq!(units_per_second(0x80 | 63), Some(1 << 63));
        assert_eq!(units_per_second(0x80 | 64), None);
    }

    #[test]
    fn pcapng_timestamps_in_any_resolution() {
        assert_eq!(
            interface(1_000_000, 0).timestamp_ns(1_500_000),
            1_500_000_000
        );
        assert_eq!(interface(1_000_000_000, 0).timestamp_ns(7), 7);
        assert_eq!(interface(1 << 10, 0).timestamp_ns(512), 500_000_000);
        assert_eq!(interface(1_000, 10).timestamp_ns(1), 10_001_000_000);
        assert_eq!(interface(1, -10).timestamp_ns(3), 0, "before 1970: clamped");
        assert_eq!(interface(1, 0).timestamp_ns(u64::MAX), u64::MAX, "clamped");
    }

    fn decoder(format: Format) -> BlockDecoder {
        BlockDecoder {
            format,
            last_timestamp_ns: 0,
            stats: ReplayStats::default(),
        }
    }

    #[test]
    fn claimed_block_lengths() {
        let pcap = decoder(Format::Pcap(PcapFormat::default()));
        let mut record = vec![0u8; 8];
        assert_eq!(pcap.claimed_block_len(&record), None);
        record.extend(u32::MAX.to_le_bytes());
        assert_eq!(
            pcap.claimed_block_len(&record),
            Some(16 + u64::from(u32::MAX))
        );

        let pcapng = decoder(Format::PcapNg(Section {
            big_endian: true,
            ..Section::default()
        }));
        let block = [0, 0, 0, 6, 0, 0, 0, 32];
        assert_eq!(pcapng.claimed_block_len(&block), Some(32));
        let mut section_header = vec![0x0a, 0x0d, 0x0d, 0x0a];
        section_header.extend(28u32.to_le_bytes());
        section_header.extend(0x1a2b_3c4du32.to_le_bytes());
        assert_eq!(pcapng.claimed_block_len(&section_header), Some(28));
    }

    /// Found by the `capture` fuzz target (the input as it minimized it): a
    /// section header block, then a process information block (type
    /// 0x80000001) that claims 5 bytes, which pcap-parser took 12 from.
    #[test]
    fn a_block_shorter_than_its_own_fields_is_malformed() {
        let input = [
            0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00, 0x4d, 0x3c, 0x2b, 0x1a, 0x2c, 0x00,
            0x00, 0x27, 0x37, 0x15, 0x0d, 0x4b, 0x6f, 0xff, 0xff, 0xff, 0x1c, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x80, 0x05, 0x00, 0x00, 0x00,
        ];
        let mut capture = CaptureFile::from_bytes("short.pcapng", &input).unwrap();
        let error = capture.next().unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "short.pcapng: malformed block at byte 28: it claims 5 bytes, fewer than its type and length fields (12)"
        );
        assert!(capture.next().is_none());
    }

    #[test]
    fn capture_files_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<CaptureFile>();
    }

    #[test]
    fn errors_name_the_file() {
        let error = CaptureFile::from_bytes("captures/x.pcap", b"")
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "captures/x.pcap: empty file, not a pcap or pcapng capture"
        );
        let error = CaptureFile::from_bytes("y.bin", b"GET / HTTP/1.1\r\n")
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "y.bin: not a pcap or pcapng capture (it starts with [47, 45, 54, 20])"
        );
        let error = CaptureFile::from_bytes("z.pcap", &[0xd4, 0xc3])
            .err()
            .unwrap();
        assert!(matches!(error, ReplayError::Truncated { offset: 0, .. }));
        let error = open(Path::new("/nonexistent/capture.pcap")).err().unwrap();
        assert!(
            error.to_string().starts_with("/nonexistent/capture.pcap: "),
            "{error}"
        );
    }

    #[test]
    fn stats_count_skips_by_reason() {
        let mut stats = ReplayStats::default();
        stats.skipped.insert(SkipReason::NotTcp, 2);
        stats.skipped.insert(SkipReason::IpFragment, 1);
        assert_eq!(stats.skipped(SkipReason::NotTcp), 2);
        assert_eq!(stats.skipped(SkipReason::Malformed), 0);
        assert_eq!(stats.skipped_total(), 3);
        assert_eq!(
            stats.skipped_by_reason().collect::<Vec<_>>(),
            [(SkipReason::NotTcp, 2), (SkipReason::IpFragment, 1)]
        );
    }
}
