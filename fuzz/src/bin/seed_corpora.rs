//! `seed_corpora CORPUS_DIR FILE...`: seeds the fuzz corpora from committed
//! files. A `.toml` file seeds `config` as it is. Any other file is a
//! capture: it seeds `capture` as it is and rewritten as pcapng, `records`
//! with its segments as the kernel program's records, `segments` with its
//! segments, and `rules` with each of its connections' conversation. A seed
//! is named after the file's path, `/` replaced by `-`.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use auditor::{
    reassembly::{Reassembler, ReassemblyLimits},
    stream::StreamEvent,
    replay::CaptureFile,
    segment::Segment,
};
use auditor_fuzz::{conversation, records, segments};

fn main() {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(corpus), files) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: seed_corpora CORPUS_DIR FILE...");
        std::process::exit(2);
    };
    for file in files {
        let bytes = fs::read(&file).unwrap_or_else(|error| fail(&file, &error));
        let name = file.to_string_lossy().replace('/', "-");
        let seeds = if file.extension().is_some_and(|ext| ext == "toml") {
            vec![("config", name, bytes)]
        } else {
            capture_seeds(&file, &name, bytes)
        };
        for (target, name, seed) in seeds {
            let dir = corpus.join(target);
            fs::create_dir_all(&dir).unwrap_or_else(|error| fail(&dir, &error));
            let path = dir.join(name);
            fs::write(&path, seed).unwrap_or_else(|error| fail(&path, &error));
        }
    }
}

fn fail(path: &Path, error: &dyn std::fmt::Display) -> ! {
    eprintln!("seed_corpora: {}: {error}", path.display());
    std::process::exit(1);
}

/// The seeds of one capture: (target, seed name, bytes).
fn capture_seeds(file: &Path, name: &str, bytes: Vec<u8>) -> Vec<(&'static str, String, Vec<u8>)> {
    let segments = read_segments(file, &bytes);
    let mut seeds = Vec::new();
    if let Some(pcapng) = pcapng_of(&bytes) {
        if read_segments(file, &pcapng) != segments {
            fail(file, &"its pcapng rewrite holds other segments");
        }
        seeds.push(("capture", format!("{name}ng"), pcapng));
    }
    seeds.push(("capture", name.to_owned(), bytes));

    let mut record_seed = Vec::new();
    let mut segment_seed = segments::Encoder::new(0);
    for segment in &segments {
        records::encode(&segment.borrowed(), &mut record_seed);
        segment_seed.push(&segment.borrowed());
    }
    seeds.push(("records", name.to_owned(), record_seed));
    seeds.push(("segments", name.to_owned(), segment_seed.finish()));

    for (index, conversation) in conversations(&segments).into_iter().enumerate() {
        seeds.push(("rules", format!("{name}-{index}"), conversation));
    }
    seeds
}

fn read_segments(file: &Path, capture: &[u8]) -> Vec<Segment> {
    CaptureFile::from_bytes(file, capture)
        .and_then(|capture| capture.collect())
        .unwrap_or_else(|error| fail(file, &error))
}

/// Each connection's stream events as a conversation, in the order the
/// connections opened.
fn conversations(segments: &[Segment]) -> Vec<Vec<u8>> {
    let mut reassembler = Reassembler::new(ReassemblyLimits::default());
    let mut open: HashMap<_, (usize, conversation::Encoder)> = HashMap::new();
    let mut done = Vec::new();
    let mut emit = |event: &StreamEvent<'_>| match *event {
        StreamEvent::Opened {
            id,
            first,
            syn_sender,
            timestamp_ns,
            ..
        } => {
            let encoder = conversation::Encoder::new(syn_sender.unwrap_or(first), timestamp_ns);
            open.insert(id, (open.len() + done.len(), encoder));
        }
        StreamEvent::Closed { id, .. } => done.extend(open.remove(&id)),
        _ => {
            if let Some((_, encoder)) = open.get_mut(&event.connection()) {
                encoder.push(event);
            }
        }
    };
    for segment in segments {
        reassembler.push(&segment.borrowed(), &mut emit);
    }
    reassembler.finish(&mut emit);
    done.sort_by_key(|(opened, _)| *opened);
    done.into_iter()
        .map(|(_, encoder)| encoder.finish())
        .collect()
}

/// A classic pcap file rewritten as pcapng: a section header, one interface
/// with the pcap's link type, snapshot length and timestamp resolution, and
/// an enhanced packet block per record. None for anything else.
fn pcapng_of(pcap: &[u8]) -> Option<Vec<u8>> {
    let (big_endian, nanosecond) = match pcap.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => return None,
    };
    let u32_at = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let mut out = Vec::new();

    let mut section = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    section.extend(1u16.to_le_bytes());
    section.extend(0u16.to_le_bytes());
    section.extend((-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &section);

    let link_type = u32_at(20)? & 0xffff;
    let mut interface = (link_type as u16).to_le_bytes().to_vec();
    interface.extend(0u16.to_le_bytes());
    interface.extend(u32_at(16)?.to_le_bytes());
    if nanosecond {
        // if_tsresol 9 (nanoseconds), padded, then the end of options.
        interface.extend([9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    }
    block(&mut out, 1, &interface);

    let units_per_second: u64 = if nanosecond { 1_000_000_000 } else { 1_000_000 };
    let mut at = 24;
    while at < pcap.len() {
        let units = u64::from(u32_at(at)?) * units_per_second + u64::from(u32_at(at + 4)?);
        let captured = u32_at(at + 8)?;
        let data = pcap.get(at + 16..at + 16 + captured as usize)?;
        let mut packet = 0u32.to_le_bytes().to_vec();
        packet.extend(((units >> 32) as u32).to_le_bytes());
        packet.extend((units as u32).to_le_bytes());
        packet.extend(captured.to_le_bytes());
        packet.extend(u32_at(at + 12)?.to_le_bytes());
        packet.extend_from_slice(data);
        packet.resize(packet.len().next_multiple_of(4), 0);
        block(&mut out, 6, &packet);
        at += 16 + captured as usize;
    }
    Some(out)
}

/// A pcapng block: type, total length, `body` (a multiple of four bytes),
/// total length again.
fn block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend(block_type.to_le_bytes());
    out.extend(total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(total.to_le_bytes());
}
