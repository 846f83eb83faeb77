//! Just enough of RFC 6455 for the lab: the accept value and small frames.

use std::io::{self, Read};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const FIN_TEXT: u8 = 0x81;
const MASK_BIT: u8 = 0x80;

/// The `Sec-WebSocket-Accept` value RFC 6455 §4.2.2 derives from `key`.
pub fn accept(key: &str) -> String {
    STANDARD.encode(Sha1::digest(format!("{key}{GUID}")))
}

/// A final text frame as a client sends it, masked with `mask`; `payload`
/// is under 126 bytes.
pub fn masked_text_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![FIN_TEXT, MASK_BIT | short_length(payload)];
    frame.extend_from_slice(&mask);
    frame.extend(apply_mask(payload, mask));
    frame
}

/// A final text frame as a server sends it, unmasked; `payload` is under
/// 126 bytes.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![FIN_TEXT, short_length(payload)];
    frame.extend_from_slice(payload);
    frame
}

/// Reads one masked client frame with a payload under 126 bytes and
/// returns the payload; `None` at the end of the stream.
pub fn read_masked_frame(stream: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 2];
    match stream.read_exact(&mut header) {
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        result => result?,
    }
    let length = header[1] & !MASK_BIT;
    if header[1] & MASK_BIT == 0 || length >= 126 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a short masked frame: {header:02x?}"),
        ));
    }
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask)?;
    let mut payload = vec![0u8; length.into()];
    stream.read_exact(&mut payload)?;
    Ok(Some(apply_mask(&payload, mask)))
}

fn short_length(payload: &[u8]) -> u8 {
    u8::try_from(payload.len())
        .ok()
        .filter(|length| *length < 126)
        .expect("a payload under 126 bytes")
}

fn apply_mask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload
        .iter()
        .zip(mask.iter().cycle())
        .map(|(byte, mask)| byte ^ mask)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_6455_example() {
        assert_eq!(
            accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_masked_frame_reads_back() {
        let frame = masked_text_frame(b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        // RFC 6455 §5.7's example.
        assert_eq!(
            frame,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(
            read_masked_frame(&mut &frame[..]).unwrap(),
            Some(b"Hello".to_vec())
        );
    }
}
