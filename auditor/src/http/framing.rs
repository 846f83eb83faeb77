//! Where a message body ends (RFC 9112 §6): which framing a head announces,
//! and a reader that follows that framing over bytes and holes.

use super::exchange::{Headers, HttpVersion, RequestHead, ResponseHead};

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    /// Until the sender finishes (responses only).
    UntilClose,
    /// The framing cannot be known: the message boundaries are lost.
    Invalid,
}

/// RFC 9112 §6.3 for a request: Transfer-Encoding, else Content-Length, else
/// no body.
pub(crate) fn request_framing(request: &RequestHead) -> Framing {
    match transfer_coding(request.version, &request.headers) {
        Some(true) => Framing::Chunked,
        // Only chunked delimits a request (§6.3 point 4).
        Some(false) => Framing::Invalid,
        None => match content_length(&request.headers) {
            None => Framing::NoBody,
            Some(length) => length,
        },
    }
}

/// RFC 9112 §6.3 for a response to a request with `request_method` (None
/// when the request was not seen). 101 and a 2xx to CONNECT are not bodies
/// but protocol changes; the caller handles them first.
pub(crate) fn response_framing(request_method: Option<&str>, response: &ResponseHead) -> Framing {
    let status = response.line.status;
    if request_method == Some("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Framing::NoBody;
    }
    match transfer_coding(response.version, &response.headers) {
        Some(true) => Framing::Chunked,
        Some(false) => Framing::UntilClose,
        None => match content_length(&response.headers) {
            None => Framing::UntilClose,
            Some(length) => length,
        },
    }
}

/// None without Transfer-Encoding; else whether chunked is the final coding
/// (never for HTTP/1.0, whose Transfer-Encoding means faulty framing, §6.1).
fn transfer_coding(version: HttpVersion, headers: &Headers) -> Option<bool> {
    let mut present = false;
    let mut final_coding = None;
    for value in headers.values("transfer-encoding") {
        present = true;
        // Empty list elements are no coding.
        if let Some(coding) = Headers::value_elements(value).rfind(|c| !c.is_empty()) {
            final_coding = Some(coding);
        }
    }
    present.then(|| {
        version == HttpVersion::Http11
            && final_coding.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
    })
}

/// None without Content-Length; a list of one repeated value is that value
/// (RFC 9110 §8.6), anything else is invalid.
fn content_length(headers: &Headers) -> Option<Framing> {
    let mut length = None;
    for value in headers.values("content-length") {
        // Every field line gives at least one element, if an empty one.
        for element in Headers::value_elements(value) {
            match parse_decimal(element) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Some(Framing::Invalid),
            }
        }
    }
    length.map(|length| match length {
        0 => Framing::NoBody,
        length => Framing::Length(length),
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Follows one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BodyReader {
    state: BodyState,
    /// A payload gate was already asked for the current body or chunk.
    gate_asked: bool,
    max_trailer_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BodyState {
    Length(u64),
    ChunkSize {
        size: u64,
        digits: usize,
        line: usize,
        phase: ChunkLinePhase,
    },
    ChunkData(u64),
    ChunkDataEnd {
        cr: bool,
    },
    Trailers {
        line: usize,
        total: usize,
    },
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkLinePhase {
    Size,
    Extensions,
    Cr,
}

/// What feeding bytes did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyProgress {
    /// All bytes were body; it goes on.
    More,
    /// The body ended after this many bytes.
    Done(usize),
    /// The framing broke after this many bytes (bad chunk syntax).
    Invalid(usize),
}

/// What a hole in the body did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyHole {
    /// Skipped inside data of known length; the body goes on.
    Skipped,
    /// The body ended inside the hole; this many bytes of it come after.
    Ended { beyond: u64 },
    /// The hole covers framing bytes (chunk sizes, trailers) or a body read
    /// until close: where the body ends is lost.
    Lost,
}

impl BodyReader {
    /// A reader for `framing`; None when there is no body to read.
    pub(crate) fn new(framing: Framing, max_trailer_bytes: usize) -> Option<BodyReader> {
        let state = match framing {
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::chunk_size(),
            Framing::UntilClose => BodyState::UntilClose,
            Framing::NoBody | Framing::Invalid => return None,
        };
        Some(BodyReader {
            state,
            gate_asked: false,
            max_trailer_bytes,
        })
    }

    pub(crate) fn is_until_close(&self) -> bool {
        self.state == BodyState::UntilClose
    }

    pub(crate) fn feed(&mut self, input: &[u8]) -> BodyProgress {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match &mut self.state {
                BodyState::Length(remaining) | BodyState::ChunkData(remaining) => {
                    let take =
                        usize::try_from(*remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    *remaining -= take as u64;
                    used += take;
                    if *remaining == 0 {
                        if matches!(self.state, BodyState::Length(_)) {
                            return BodyProgress::Done(used);
                        }
                        self.state = BodyState::ChunkDataEnd { cr: false };
                    }
                }
                BodyState::UntilClose => return BodyProgress::More,
                _ => {
                    let byte = rest[0];
                    used += 1;
                    match self.framing_byte(byte) {
                        Ok(true) => return BodyProgress::Done(used),
                        Ok(false) => {}
                        Err(()) => return BodyProgress::Invalid(used),
                    }
                }
            }
        }
        BodyProgress::More
    }

    /// One byte of chunked framing; Ok(true) when it ends the body.
    fn framing_byte(&mut self, b: u8) -> Result<bool, ()> {
        match &mut self.state {
            BodyState::ChunkSize {
                size,
                digits,
                line,
                phase,
            } => {
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(());
                }
                let end_of_line = match *phase {
                    ChunkLinePhase::Size => match b {
                        // Digits only before anything else on the line.
                        _ if b.is_ascii_hexdigit() && *line == *digits + 1 => {
                            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                            *size = size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(digit))
                                .ok_or(())?;
                            *digits += 1;
                            false
                        }
                        _ if *digits == 0 => return Err(()),
                        b' ' | b'\t' => false,
                        b';' => {
                            *phase = ChunkLinePhase::Extensions;
                            false
                        }
                        b'\r' => {
                            *phase = ChunkLinePhase::Cr;
                            false
                        }
                        b'\n' => true,
                        _ => return Err(()),
                    },
                    ChunkLinePhase::Extensions => b == b'\n',
                    ChunkLinePhase::Cr if b == b'\n' => true,
                    ChunkLinePhase::Cr => return Err(()),
                };
                if end_of_line {
                    self.state = if *size == 0 {
                        BodyState::Trailers { line: 0, total: 0 }
                    } else {
                        self.gate_asked = false;
                        BodyState::ChunkData(*size)
                    };
                }
                Ok(false)
            }
            BodyState::ChunkDataEnd { cr } => match b {
                b'\r' if !*cr => {
                    *cr = true;
                    Ok(false)
                }
                b'\n' => {
                    self.state = BodyState::chunk_size();
                    Ok(false)
                }
                _ => Err(()),
            },
            BodyState::Trailers { line, total } => {
                *total += 1;
                if *total > self.max_trailer_bytes {
                    return Err(());
                }
                match b {
                    b'\n' if *line == 0 => Ok(true),
                    b'\n' => {
                        *line = 0;
                        Ok(false)
                    }
                    b'\r' => Ok(false),
                    _ => {
                        *line += 1;
                        Ok(false)
                    }
                }
            }
            BodyState::Length(_) | BodyState::ChunkData(_) | BodyState::UntilClose => Ok(false),
        }
    }

    /// A hole of `len` bytes at the current position.
    pub(crate) fn skip(&mut self, len: u64) -> BodyHole {
        match &mut self.state {
            BodyState::Length(remaining) => {
                if len < *remaining {
                    *remaining -= len;
                    BodyHole::Skipped
                } else {
                    BodyHole::Ended {
                        beyond: len - *remaining,
                    }
                }
            }
            BodyState::ChunkData(remaining) if len <= *remaining => {
                *remaining -= len;
                if *remaining == 0 {
                    self.state = BodyState::ChunkDataEnd { cr: false };
                }
                BodyHole::Skipped
            }
            _ => BodyHole::Lost,
        }
    }

    /// The bytes left in the current body or chunk, once per body or chunk,
    /// when at least `threshold`: how far a payload gate may skip.
    pub(crate) fn gate_request(&mut self, threshold: u64) -> Option<u64> {
        let remaining = match self.state {
            BodyState::Length(remaining) | BodyState::ChunkData(remaining) => remaining,
            _ => return None,
        };
        if self.gate_asked || remaining < threshold {
            return None;
        }
        self.gate_asked = true;
        Some(remaining)
    }
}

impl BodyState {
    fn chunk_size() -> BodyState {
        BodyState::ChunkSize {
            size: 0,
            digits: 0,
            line: 0,
            phase: ChunkLinePhase::Size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(headers: &[(&str, &str)]) -> Headers {
        headers
            .iter()
            .map(|(name, value)| crate::http::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    use crate::http::{RequestLine, StatusLine};

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            line: RequestLine {
                method: method.into(),
                target: "/".into(),
            },
            version: HttpVersion::Http11,
            headers: head_with(headers),
        }
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            line: StatusLine {
                status,
                reason: String::new(),
            },
            version: HttpVersion::Http11,
            headers: head_with(headers),
        }
    }

    #[test]
    fn request_framings() {
        assert_eq!(request_framing(&request("GET", &[])), Framing::NoBody);
        assert_eq!(
            request_framing(&request("POST", &[("Content-Length", "12")])),
            Framing::Length(12)
        );
        assert_eq!(
            request_framing(&request("POST", &[("Content-Length", "0")])),
            Framing::NoBody
        );
        assert_eq!(
            request_framing(&request("POST", &[("content-length", "5, 5")])),
            Framing::Length(5)
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[("Content-Length", "5"), ("Content-Length", "6")]
            )),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request("POST", &[("Content-Length", "-1")])),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[("Content-Length", "99999999999999999999")]
            )),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[
                    ("Transfer-Encoding", "gzip, Chunked"),
                    ("Content-Length", "3")
                ]
            )),
            Framing::Chunked
        );
        assert_eq!(
            request_framing(&request("POST", &[("Transfer-Encoding", "chunked, gzip")])),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked,")
                ]
            )),
            Framing::Chunked
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "")]
            )),
            Framing::Chunked
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "gzip")
                ]
            )),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request("POST", &[("Transfer-Encoding", "")])),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request("POST", &[("Content-Length", "5, ")])),
            Framing::Invalid
        );
        assert_eq!(
            request_framing(&request(
                "POST",
                &[("Content-Length", "5"), ("Content-Length", "5")]
            )),
            Framing::Length(5)
        );
        let mut old = request("POST", &[("Transfer-Encoding", "chunked")]);
        old.version = HttpVersion::Http10;
        assert_eq!(request_framing(&old), Framing::Invalid);
    }

    #[test]
    fn response_framings() {
        let chunked = [("Transfer-Encoding", "chunked")];
        let length = [("Content-Length", "10")];
        assert_eq!(
            response_framing(Some("HEAD"), &response(200, &length)),
            Framing::NoBody
        );
        assert_eq!(
            response_framing(Some("GET"), &response(100, &length)),
            Framing::NoBody
        );
        assert_eq!(
            response_framing(Some("GET"), &response(204, &chunked)),
            Framing::NoBody
        );
        assert_eq!(
            response_framing(Some("GET"), &response(304, &length)),
            Framing::NoBody
        );
        assert_eq!(
            response_framing(Some("GET"), &response(200, &chunked)),
            Framing::Chunked
        );
        assert_eq!(
            response_framing(None, &response(200, &length)),
            Framing::Length(10)
        );
        assert_eq!(
            response_framing(Some("GET"), &response(200, &[])),
            Framing::UntilClose
        );
        assert_eq!(
            response_framing(
                Some("GET"),
                &response(200, &[("Transfer-Encoding", "gzip")])
            ),
            Framing::UntilClose
        );
        assert_eq!(
            response_framing(Some("GET"), &response(200, &[("Content-Length", "x")])),
            Framing::Invalid
        );
    }

    fn feed_split(framing: Framing, body: &[u8], split: usize) -> (BodyProgress, usize) {
        let mut reader = BodyReader::new(framing, 64).unwrap();
        match reader.feed(&body[..split]) {
            BodyProgress::More => {}
            other => return (other, 0),
        }
        (reader.feed(&body[split..]), split)
    }

    #[test]
    fn chunked_with_extensions_and_trailers_at_every_split() {
        let body = b"4;name=\"va;lue\"\r\nWiki\r\n5 ; x\r\npedia\r\nD\r\n in\r\n\r\nchunks\r\n0;last\r\nTrailer: x\r\nOther: y\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..=end {
            let (progress, offset) = feed_split(Framing::Chunked, body, split);
            assert_eq!(
                progress,
                BodyProgress::Done(end - offset),
                "split at {split}"
            );
        }
    }

    #[test]
    fn chunked_without_trailers_and_bare_lf() {
        let mut reader = BodyReader::new(Framing::Chunked, 64).unwrap();
        assert_eq!(reader.feed(b"3\nabc\n0\n\nX"), BodyProgress::Done(9));
    }

    #[test]
    fn chunked_syntax_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"3 4\r\n",
            b"11111111111111111\r\n",
        ] {
            let mut reader = BodyReader::new(Framing::Chunked, 64).unwrap();
            assert!(
                matches!(reader.feed(bad), BodyProgress::Invalid(_)),
                "{bad:?}"
            );
        }
        let mut reader = BodyReader::new(Framing::Chunked, 8).unwrap();
        assert!(matches!(
            reader.feed(b"0\r\nLong-Trailer: 123456\r\n\r\n"),
            BodyProgress::Invalid(_)
        ));
    }

    #[test]
    fn length_body_ends_exactly() {
        let mut reader = BodyReader::new(Framing::Length(5), 64).unwrap();
        assert_eq!(reader.feed(b"ab"), BodyProgress::More);
        assert_eq!(reader.feed(b"cdeGET"), BodyProgress::Done(3));
        let mut reader = BodyReader::new(Framing::UntilClose, 64).unwrap();
        assert_eq!(
            reader.feed(b"anything HTTP/1.1 200 OK\r\n"),
            BodyProgress::More
        );
        assert!(reader.is_until_close());
    }

    #[test]
    fn holes() {
        let mut reader = BodyReader::new(Framing::Length(100), 64).unwrap();
        assert_eq!(reader.skip(40), BodyHole::Skipped);
        assert_eq!(reader.feed(&[0; 50]), BodyProgress::More);
        assert_eq!(reader.skip(15), BodyHole::Ended { beyond: 5 });

        let mut reader = BodyReader::new(Framing::Chunked, 64).unwrap();
        assert_eq!(reader.feed(b"10\r\n"), BodyProgress::More);
        assert_eq!(reader.skip(16), BodyHole::Skipped);
        assert_eq!(reader.feed(b"\r\n0\r\n\r\n"), BodyProgress::Done(7));

        let mut reader = BodyReader::new(Framing::Chunked, 64).unwrap();
        assert_eq!(reader.feed(b"10\r\n"), BodyProgress::More);
        assert_eq!(reader.skip(17), BodyHole::Lost);
        let mut reader = BodyReader::new(Framing::UntilClose, 64).unwrap();
        assert_eq!(reader.skip(1), BodyHole::Lost);
    }

    #[test]
    fn gate_requests_once_per_body_or_chunk() {
        let mut reader = BodyReader::new(Framing::Length(1000), 64).unwrap();
        assert_eq!(reader.feed(&[0; 100]), BodyProgress::More);
        assert_eq!(reader.gate_request(500), Some(900));
        assert_eq!(reader.gate_request(500), None);

        let mut reader = BodyReader::new(Framing::Chunked, 64).unwrap();
        assert_eq!(reader.gate_request(1), None);
        assert_eq!(reader.feed(b"400\r\n"), BodyProgress::More);
        assert_eq!(reader.gate_request(1024), Some(1024));
        assert_eq!(reader.skip(1024), BodyHole::Skipped);
        assert_eq!(reader.feed(b"\r\n400\r\n"), BodyProgress::More);
        assert_eq!(reader.gate_request(1024), Some(1024));
        assert_eq!(reader.gate_request(1), None);
    }
}
