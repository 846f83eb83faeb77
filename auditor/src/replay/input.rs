//! Recognising the file format and handing the bytes to pcap-parser's
//! streaming readers.

use std::{
    io::{self, Cursor, Read},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use pcap_parser::{traits::PcapReaderIterator, LegacyPcapReader, PcapError, PcapNGReader};

use super::{ReplayError, MAX_BLOCK_LEN};

/// What the readers start with; they grow, up to [`MAX_BLOCK_LEN`], for
/// larger blocks.
const INITIAL_BUFFER_LEN: usize = 64 * 1024;

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// The pcap magics pcap-parser reads, as their first four bytes: microsecond
/// and nanosecond timestamps in both byte orders, and the "modified" format.
const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x34, 0xcd, 0xb2, 0xa1],
];

/// The last I/O error of the input, kept for the error message: pcap-parser
/// only reports that a read failed.
pub(super) type LastReadError = Arc<Mutex<Option<io::Error>>>;

/// How many bytes of the input were read so far, shared with the reader
/// inside pcap-parser.
#[derive(Clone, Debug, Default)]
pub(super) struct BytesRead(Arc<AtomicU64>);

impl BytesRead {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, count: usize) {
        self.0.fetch_add(count as u64, Ordering::Relaxed);
    }
}

pub(super) struct Opened {
    pub is_pcapng: bool,
    pub reader: Box<dyn PcapReaderIterator + Send>,
    pub last_read_error: LastReadError,
    pub bytes_read: BytesRead,
}

/// Reads the first bytes, picks the reader for the format and sizes its buffer
/// so the first block fits.
pub(super) fn open_reader(
    path: &Path,
    mut input: Box<dyn Read + Send>,
) -> Result<Opened, ReplayError> {
    let mut prefix = [0u8; 12];
    let prefix_len = fill(&mut input, &mut prefix).map_err(|source| ReplayError::Io {
        path: path.to_owned(),
        source,
    })?;
    let prefix = &prefix[..prefix_len];
    let truncated = || ReplayError::Truncated {
        path: path.to_owned(),
        offset: 0,
    };
    if prefix.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_owned(),
        });
    }
    let is_pcapng = prefix.starts_with(&PCAPNG_MAGIC);
    let is_pcap = PCAP_MAGICS.iter().any(|magic| prefix.starts_with(magic));
    if !is_pcapng && !is_pcap {
        let starts_a_magic = prefix.len() < 4
            && std::iter::once(&PCAPNG_MAGIC)
                .chain(&PCAP_MAGICS)
                .any(|magic| magic.starts_with(prefix));
        return Err(if starts_a_magic {
            truncated()
        } else {
            ReplayError::NotACapture {
                path: path.to_owned(),
                first_bytes: prefix[..prefix.len().min(4)].to_vec(),
            }
        });
    }
    let buffer_len = if is_pcapng {
        let Some(section_header_len) = section_header_len(prefix) else {
            return Err(if prefix.len() < 12 {
                truncated()
            } else {
                ReplayError::Malformed {
                    path: path.to_owned(),
                    offset: 0,
                    problem: "the section header's byte-order magic is wrong".into(),
                }
            });
        };
        if section_header_len > MAX_BLOCK_LEN as u64 {
            return Err(ReplayError::BlockTooLarge {
                path: path.to_owned(),
                offset: 0,
                claimed: section_header_len,
            });
        }
        INITIAL_BUFFER_LEN.max(section_header_len as usize + 1)
    } else {
        INITIAL_BUFFER_LEN
    };

    let last_read_error = LastReadError::default();
    let bytes_read = BytesRead::default();
    let source = FillingReader {
        inner: Cursor::new(prefix.to_vec()).chain(input),
        last_error: last_read_error.clone(),
        bytes_read: bytes_read.clone(),
    };
    let reader: Result<Box<dyn PcapReaderIterator + Send>, _> = if is_pcapng {
        PcapNGReader::new(buffer_len, source).map(|reader| Box::new(reader) as _)
    } else {
        LegacyPcapReader::new(buffer_len, source).map(|reader| Box::new(reader) as _)
    };
    let reader = reader.map_err(|error| match error {
        PcapError::ReadError => read_error(path, &last_read_error),
        PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof => truncated(),
        other => ReplayError::Malformed {
            path: path.to_owned(),
            offset: 0,
            problem: format!("unreadable file header ({other})"),
        },
    })?;
    Ok(Opened {
        is_pcapng,
        reader,
        last_read_error,
        bytes_read,
    })
}

pub(super) fn read_error(path: &Path, last_read_error: &LastReadError) -> ReplayError {
    let source = last_read_error
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
        .unwrap_or_else(|| io::Error::other("read failed"));
    ReplayError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The length a pcapng section header block claims, in the byte order its
/// byte-order magic gives; None without 12 bytes or with a wrong magic.
pub(super) fn section_header_len(block: &[u8]) -> Option<u64> {
    let length: [u8; 4] = block.get(4..8)?.try_into().ok()?;
    let byte_order: [u8; 4] = block.get(8..12)?.try_into().ok()?;
    if u32::from_le_bytes(byte_order) == PCAPNG_BYTE_ORDER_MAGIC {
        Some(u32::from_le_bytes(length).into())
    } else if u32::from_be_bytes(byte_order) == PCAPNG_BYTE_ORDER_MAGIC {
        Some(u32::from_be_bytes(length).into())
    } else {
        None
    }
}

pub(super) fn is_section_header(block: &[u8]) -> bool {
    block.starts_with(&PCAPNG_MAGIC)
}

/// Reads until `buf` is full or the input ends: pcap-parser parses the file
/// header from a single read, so short reads (pipes, slow devices, the
/// prefix put back in front) must not reach it.
struct FillingReader<R> {
    inner: R,
    last_error: LastReadError,
    bytes_read: BytesRead,
}

impl<R: Read> Read for FillingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let filled = fill(&mut self.inner, buf).map_err(|error| {
            let kind = error.kind();
            *self
                .last_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
            io::Error::from(kind)
        })?;
        self.bytes_read.add(filled);
        Ok(filled)
    }
}

fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
