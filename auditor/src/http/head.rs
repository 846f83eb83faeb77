//! Message heads read incrementally: bytes in any split, at most
//! `max_head_bytes` buffered, parsed with `httparse` once the blank line that
//! ends the head has arrived (so a head split into many pieces is parsed once).
//!
//! While a head begins, its first bytes are checked against the shape of a
//! request line or a status line, so bytes that are not HTTP (TLS, another
//! protocol, the new protocol after an upgrade) are recognised after a few
//! bytes instead of being buffered.

use super::exchange::{Headers, HttpVersion, RequestHead, ResponseHead};

/// Which kind of message start a side sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Sends requests.
    Client,
    /// Sends responses.
    Server,
}

impl Role {
    pub(crate) fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// What the bytes seen so far say about a message start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Looks {
    Yes,
    No,
    Undecided,
}

/// Longest method accepted as the start of a request line.
pub(crate) const MAX_METHOD_LEN: usize = 32;

/// Checks, byte by byte, that a request line `METHOD SP target SP HTTP/1.x`
/// ending in CRLF or LF begins the bytes fed.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestLineSniffer {
    stage: RequestLineStage,
    /// Bytes of the current part; saturates (a target only needs to be
    /// non-empty). A u8 so that every connection's head reader stays small.
    len: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RequestLineStage {
    #[default]
    Method,
    Target,
    Version,
    Cr,
    Done(bool),
}

const VERSION_PREFIX: &[u8; 7] = b"HTTP/1.";

impl RequestLineSniffer {
    pub(crate) fn looks(&self) -> Looks {
        match self.stage {
            RequestLineStage::Done(true) => Looks::Yes,
            RequestLineStage::Done(false) => Looks::No,
            _ => Looks::Undecided,
        }
    }

    /// Feeds one byte; returns the verdict after it.
    pub(crate) fn feed(&mut self, b: u8) -> Looks {
        use RequestLineStage::*;
        let next = match self.stage {
            Done(_) => return self.looks(),
            Method if is_tchar(b) && usize::from(self.len) < MAX_METHOD_LEN => {
                self.len += 1;
                Method
            }
            Method if b == b' ' && self.len > 0 => {
                self.len = 0;
                Target
            }
            Target if is_target_byte(b) => {
                self.len = self.len.saturating_add(1);
                Target
            }
            Target if b == b' ' && self.len > 0 => {
                self.len = 0;
                Version
            }
            Version
                if usize::from(self.len) < VERSION_PREFIX.len()
                    && b == VERSION_PREFIX[usize::from(self.len)] =>
            {
                self.len += 1;
                Version
            }
            Version if usize::from(self.len) == VERSION_PREFIX.len() && b.is_ascii_digit() => {
                self.len += 1;
                Version
            }
            Version if usize::from(self.len) > VERSION_PREFIX.len() && b == b'\r' => Cr,
            Version | Cr if b == b'\n' && usize::from(self.len) > VERSION_PREFIX.len() => {
                Done(true)
            }
            _ => Done(false),
        };
        self.stage = next;
        self.looks()
    }

    /// How many bytes at the start of `input` continue the request target
    /// the sniffer is in (0 when it is not in one): feeding them one by one
    /// would only count them, and decide nothing.
    fn target_run(&self, input: &[u8]) -> usize {
        if self.stage != RequestLineStage::Target {
            return 0;
        }
        input
            .iter()
            .position(|&b| !is_target_byte(b))
            .unwrap_or(input.len())
    }

    /// Takes `n` bytes of a run found by [`Self::target_run`].
    fn skip_target(&mut self, n: usize) {
        self.len = self.len.saturating_add(u8::try_from(n).unwrap_or(u8::MAX));
    }
}

/// A byte that may be part of a request target: visible ASCII and beyond.
fn is_target_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

/// Checks that `HTTP/1.x SP 3DIGIT` begins the bytes fed.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusLineSniffer {
    /// At most `STATUS_START_LEN`.
    matched: u8,
    verdict: Option<bool>,
}

pub(crate) const STATUS_START_LEN: usize = 12;

impl StatusLineSniffer {
    pub(crate) fn looks(&self) -> Looks {
        match self.verdict {
            Some(true) => Looks::Yes,
            Some(false) => Looks::No,
            None => Looks::Undecided,
        }
    }

    pub(crate) fn feed(&mut self, b: u8) -> Looks {
        if self.verdict.is_none() {
            if status_start_byte_fits(usize::from(self.matched), b) {
                self.matched += 1;
                if usize::from(self.matched) == STATUS_START_LEN {
                    self.verdict = Some(true);
                }
            } else {
                self.verdict = Some(false);
            }
        }
        self.looks()
    }
}

/// Whether `b` may be byte `i` of `HTTP/1.x SP 3DIGIT`.
pub(crate) fn status_start_byte_fits(i: usize, b: u8) -> bool {
    match i {
        0..=6 => b == VERSION_PREFIX[i],
        7 | 9..=11 => b.is_ascii_digit(),
        8 => b == b' ',
        _ => false,
    }
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a call to [`HeadReader::push`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadStep {
    /// All the input was taken; the head goes on.
    NeedMore,
    /// The side's role was unknown and these bytes show it.
    Identified(Role),
    /// The bytes buffered (the last one decided it) do not start a message
    /// of the side's role.
    NotAMessage,
    /// The head ended with the last byte taken.
    Complete,
    /// The head does not fit in `max_head_bytes`.
    TooLarge,
}

/// At most this much is reserved for a head before its bytes are seen.
const HEAD_RESERVE_CAP: usize = 2048;

/// One head being received.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadReader {
    bytes: Vec<u8>,
    request: RequestLineSniffer,
    status: StatusLineSniffer,
}

impl HeadReader {
    /// A head whose first bytes were already found to start a message of `role`.
    pub(crate) fn starting_with(seed: Vec<u8>, role: Role) -> HeadReader {
        let mut reader = HeadReader {
            bytes: seed,
            ..HeadReader::default()
        };
        match role {
            Role::Client => reader.request.stage = RequestLineStage::Done(true),
            Role::Server => reader.status.verdict = Some(true),
        }
        reader
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, without the room [`Self::push`] reserved: they may be
    /// kept a while (early data, first bytes after a switch).
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.shrink_to_fit();
        self.bytes
    }

    /// Takes bytes of `input` until the head ends, the limit is reached, or
    /// the first bytes decide what the side sends. `role` None: the side may
    /// be either. Empty lines before a head are skipped (RFC 9112 §2.2).
    /// Returns the step and how many input bytes were taken.
    pub(crate) fn push(
        &mut self,
        input: &[u8],
        role: Option<Role>,
        max_head_bytes: usize,
    ) -> (HeadStep, usize) {
        if let Some(step) = self.verdict(role) {
            return (step, 0);
        }
        if self.bytes.is_empty() {
            // Most heads come whole in one input: room for it at once rather
            // than growing byte by byte. What is reserved beyond the head is
            // freed with the reader once the head is read; the cap keeps a
            // large input (pipelined requests, a head and its body) from
            // reserving much more than a head.
            self.bytes
                .reserve(input.len().min(max_head_bytes).min(HEAD_RESERVE_CAP));
        }
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.first_line_read() {
                let (step, taken) = self.push_rest(&input[i..], max_head_bytes);
                return (step, i + taken);
            }
            if self.bytes.is_empty() && (b == b'\r' || b == b'\n') {
                i += 1;
                continue;
            }
            if self.bytes.len() >= max_head_bytes {
                return (HeadStep::TooLarge, i);
            }
            // Most of a request line is its target: its bytes are taken in a
            // run (they cannot end the head or change a verdict: a status
            // line sniffer has already said no to a line with a method).
            let run = self.request.target_run(&input[i..]);
            if run > 0 && self.status.looks() != Looks::Undecided {
                let run = run.min(max_head_bytes - self.bytes.len());
                self.bytes.extend_from_slice(&input[i..i + run]);
                self.request.skip_target(run);
                i += run;
                continue;
            }
            i += 1;
            let ends_head = b == b'\n' && self.ends_with_line_end();
            self.bytes.push(b);
            self.request.feed(b);
            self.status.feed(b);
            if let Some(step) = self.verdict(role) {
                return (step, i);
            }
            if ends_head {
                return (HeadStep::Complete, i);
            }
        }
        (HeadStep::NeedMore, input.len())
    }

    /// Both sniffers have decided, and the verdict let the head go on: what
    /// is left is to find its end, which [`Self::push_rest`] does a line at
    /// a time rather than a byte at a time.
    fn first_line_read(&self) -> bool {
        self.request.looks() != Looks::Undecided && self.status.looks() != Looks::Undecided
    }

    /// [`Self::push`] once the first line is read: the same steps, found by
    /// looking only at line ends.
    fn push_rest(&mut self, input: &[u8], max_head_bytes: usize) -> (HeadStep, usize) {
        let room = max_head_bytes.saturating_sub(self.bytes.len());
        let mut searched = 0;
        while let Some(found) = memchr::memchr(b'\n', &input[searched..]) {
            let lf = searched + found;
            if lf >= room {
                break;
            }
            let ends_head = match lf {
                0 => self.ends_with_line_end(),
                1 => input[0] == b'\n' || (input[0] == b'\r' && self.bytes.last() == Some(&b'\n')),
                _ => input[lf - 1] == b'\n' || (input[lf - 1] == b'\r' && input[lf - 2] == b'\n'),
            };
            if ends_head {
                self.bytes.extend_from_slice(&input[..=lf]);
                return (HeadStep::Complete, lf + 1);
            }
            searched = lf + 1;
        }
        if input.len() > room {
            self.bytes.extend_from_slice(&input[..room]);
            return (HeadStep::TooLarge, room);
        }
        self.bytes.extend_from_slice(input);
        (HeadStep::NeedMore, input.len())
    }

    /// What the sniffers decided that the caller must act on.
    fn verdict(&self, role: Option<Role>) -> Option<HeadStep> {
        let (request, status) = (self.request.looks(), self.status.looks());
        match role {
            Some(Role::Client) if request == Looks::No => Some(HeadStep::NotAMessage),
            Some(Role::Server) if status == Looks::No => Some(HeadStep::NotAMessage),
            Some(_) => None,
            None if request == Looks::Yes => Some(HeadStep::Identified(Role::Client)),
            None if status == Looks::Yes => Some(HeadStep::Identified(Role::Server)),
            None if request == Looks::No && status == Looks::No => Some(HeadStep::NotAMessage),
            None => None,
        }
    }

    /// Whether the buffered bytes end a line, so that a LF now ends the head
    /// (an empty line: LF LF or LF CR LF).
    fn ends_with_line_end(&self) -> bool {
        matches!(self.bytes.as_slice(), [.., b'\n'] | [.., b'\n', b'\r'])
    }
}

/// Why a complete head was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooManyHeaders,
    Malformed,
}

pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> Result<RequestHead, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(head, max_headers, &mut stack, &mut heap);
    let mut request = httparse::Request::new(slots);
    let status = request.parse(head).map_err(head_error)?;
    if status != httparse::Status::Complete(head.len()) {
        return Err(HeadError::Malformed);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed);
    };
    Ok(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version: http_version(version)?,
        headers: owned_headers(request.headers),
    })
}

pub(crate) fn parse_response(head: &[u8], max_headers: usize) -> Result<ResponseHead, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let slots = header_slots(head, max_headers, &mut stack, &mut heap);
    let mut response = httparse::Response::new(slots);
    let mut config = httparse::ParserConfig::default();
    // Servers are the ones audited: read what sloppy ones send rather than
    // losing the exchange.
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true);
    let status = config
        .parse_response(&mut response, head)
        .map_err(head_error)?;
    if status != httparse::Status::Complete(head.len()) {
        return Err(HeadError::Malformed);
    }
    let (Some(version), Some(code)) = (response.version, response.code) else {
        return Err(HeadError::Malformed);
    };
    Ok(ResponseHead {
        version: http_version(version)?,
        status: code,
        reason: raw_reason(head),
        headers: owned_headers(response.headers),
    })
}

/// Heads with up to this many lines get their header slots on the stack.
const STACK_HEADER_SLOTS: usize = 32;

/// Room for the headers of `head`: no more than it has lines, so that a
/// typical head does not pay for `max_headers` slots, and no more than
/// `max_headers`, so that a head with more still fails as TooManyHeaders.
/// Taken from `stack` when it is large enough (most heads: no allocation),
/// else from `heap`.
fn header_slots<'s, 'h>(
    head: &[u8],
    max_headers: usize,
    stack: &'s mut [httparse::Header<'h>; STACK_HEADER_SLOTS],
    heap: &'s mut Vec<httparse::Header<'h>>,
) -> &'s mut [httparse::Header<'h>] {
    let slots = memchr::memchr_iter(b'\n', head).count().min(max_headers);
    if slots <= STACK_HEADER_SLOTS {
        &mut stack[..slots]
    } else {
        heap.resize(slots, httparse::EMPTY_HEADER);
        heap
    }
}

fn head_error(error: httparse::Error) -> HeadError {
    match error {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        _ => HeadError::Malformed,
    }
}

fn http_version(minor: u8) -> Result<HttpVersion, HeadError> {
    match minor {
        0 => Ok(HttpVersion::Http10),
        1 => Ok(HttpVersion::Http11),
        _ => Err(HeadError::Malformed),
    }
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Headers {
    let names_len = headers.iter().map(|h| h.name.len()).sum();
    let values_len = headers.iter().map(|h| h.value.len()).sum();
    let mut owned = Headers::with_capacity(headers.len(), names_len, values_len);
    for h in headers {
        owned.push(h.name, h.value);
    }
    owned
}

/// The reason phrase as sent (httparse drops one holding non-ASCII bytes).
fn raw_reason(head: &[u8]) -> String {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    String::from_utf8_lossy(line.get(STATUS_START_LEN + 1..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff_request(bytes: &[u8]) -> Looks {
        let mut sniffer = RequestLineSniffer::default();
        bytes.iter().fold(Looks::Undecided, |_, &b| sniffer.feed(b))
    }

    #[test]
    fn request_line_sniffing() {
        assert_eq!(sniff_request(b"GET / HTTP/1.1\r\n"), Looks::Yes);
        assert_eq!(sniff_request(b"M-SEARCH * HTTP/1.0\n"), Looks::Yes);
        assert_eq!(sniff_request(b"GET /a?b HTTP/1."), Looks::Undecided);
        assert_eq!(sniff_request(b"\x16\x03\x01"), Looks::No);
        assert_eq!(sniff_request(b"PRI * HTTP/2.0\r\n"), Looks::No);
        assert_eq!(sniff_request(b"GET  / HTTP/1.1\r\n"), Looks::No);
        assert_eq!(sniff_request(b"GET / HTTP/1.1 \r\n"), Looks::No);
        assert_eq!(sniff_request(b"GET /\r\n"), Looks::No);
        assert_eq!(sniff_request(&[b'A'; MAX_METHOD_LEN + 1]), Looks::No);
    }

    #[test]
    fn status_line_sniffing() {
        let sniff = |bytes: &[u8]| {
            let mut sniffer = StatusLineSniffer::default();
            bytes.iter().fold(Looks::Undecided, |_, &b| sniffer.feed(b))
        };
        assert_eq!(sniff(b"HTTP/1.1 101"), Looks::Yes);
        assert_eq!(sniff(b"HTTP/1.0 2"), Looks::Undecided);
        assert_eq!(sniff(b"HTTP/2 200"), Looks::No);
        assert_eq!(sniff(b"SSH-2.0"), Looks::No);
    }

    #[test]
    fn head_split_at_every_byte_completes_once_at_the_blank_line() {
        let head = b"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let mut reader = HeadReader::default();
        let mut steps = Vec::new();
        for (i, b) in head.iter().enumerate() {
            let (step, used) = reader.push(std::slice::from_ref(b), Some(Role::Client), 1024);
            if step != HeadStep::NeedMore {
                steps.push((i, step, used));
                break;
            }
        }
        assert_eq!(steps, vec![(head.len() - 5, HeadStep::Complete, 1)]);
        assert_eq!(reader.bytes(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        let request = parse_request(reader.bytes(), 8).unwrap();
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("GET", "/x")
        );
        assert_eq!(
            request.headers.iter().collect::<Vec<_>>(),
            vec![crate::http::Header {
                name: "Host",
                value: b"a"
            }]
        );
    }

    #[test]
    fn runs_of_target_bytes_are_taken_as_if_fed_one_by_one() {
        let long = b"GET /a/long/target?q=1&r=%20 HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let cases: [(&[u8], Option<Role>, usize); 8] = [
            (long, Some(Role::Client), 1024),
            (long, None, 1024),
            (long, Some(Role::Client), 12),
            (long, Some(Role::Client), 5),
            (b"GET /x\x7fy HTTP/1.1\r\n\r\n", Some(Role::Client), 1024),
            (b"GET /abc  HTTP/1.1\r\n\r\n", None, 1024),
            (b"GET /abc\r\n\r\n", Some(Role::Client), 1024),
            (b"HTTP/1.1 200 OK\r\n\r\n", None, 1024),
        ];
        for (input, role, limit) in cases {
            let mut whole = HeadReader::default();
            let at_once = whole.push(input, role, limit);
            let mut single = HeadReader::default();
            let mut one_by_one = (HeadStep::NeedMore, 0);
            for b in input {
                let (step, used) = single.push(std::slice::from_ref(b), role, limit);
                one_by_one = (step, one_by_one.1 + used);
                if step != HeadStep::NeedMore {
                    break;
                }
            }
            assert_eq!(at_once, one_by_one, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(whole.bytes(), single.bytes());
        }
    }

    #[test]
    fn bare_lf_heads_end_too() {
        let mut reader = HeadReader::default();
        let (step, used) = reader.push(b"HTTP/1.0 200 OK\nA: b\n\nrest", Some(Role::Server), 1024);
        assert_eq!((step, used), (HeadStep::Complete, 22));
        let response = parse_response(reader.bytes(), 8).unwrap();
        assert_eq!(
            (response.status, response.version),
            (200, HttpVersion::Http10)
        );
        assert_eq!(response.reason, "OK");
    }

    #[test]
    fn unknown_role_is_identified_from_the_first_bytes() {
        let mut reader = HeadReader::default();
        assert_eq!(
            reader.push(b"HTTP/1.1 2", None, 1024),
            (HeadStep::NeedMore, 10)
        );
        assert_eq!(
            reader.push(b"00 OK\r\n", None, 1024),
            (HeadStep::Identified(Role::Server), 2)
        );
        let mut reader = HeadReader::default();
        assert_eq!(
            reader.push(b"GET / HTTP/1.1\r\n\r\n", None, 1024),
            (HeadStep::Identified(Role::Client), 16)
        );
        let mut reader = HeadReader::default();
        assert_eq!(
            reader.push(b"\x16\x03\x01\x02\x00", None, 1024),
            (HeadStep::NotAMessage, 1)
        );
    }

    #[test]
    fn limits() {
        let mut reader = HeadReader::default();
        let (step, used) = reader.push(
            b"GET / HTTP/1.1\r\nA: bbbbbbbbbbbbbbbbbbbb\r\n",
            Some(Role::Client),
            20,
        );
        assert_eq!((step, used), (HeadStep::TooLarge, 20));
        assert_eq!(reader.bytes().len(), 20);

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..10 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many, 9), Err(HeadError::TooManyHeaders));
        assert_eq!(parse_request(&many, 10).map(|r| r.headers.len()), Ok(10));
    }

    #[test]
    fn reason_phrase_is_kept_as_sent() {
        let response = parse_response(b"HTTP/1.1 101 Switching \xc3\xa9\r\n\r\n", 4).unwrap();
        assert_eq!(response.reason, "Switching \u{e9}");
        let response = parse_response(b"HTTP/1.1 204\r\n\r\n", 4).unwrap();
        assert_eq!(response.reason, "");
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 4),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.2\r\n\r\n", 4),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 20x OK\r\n\r\n", 4),
            Err(HeadError::Malformed)
        );
    }
}
