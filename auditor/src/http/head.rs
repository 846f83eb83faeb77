//! Message heads read incrementally: bytes in any split, at most
//! `max_head_bytes` buffered, parsed with `httparse` once the blank line that
//! ends the head has arrived (so a head split into many pieces is parsed once).
//!
//! While a head begins, its first bytes are checked against the shape of a
//! request line or a status line, so bytes that are not HTTP (TLS, another
//! protocol, the new protocol after an upgrade) are recognised after a few
//! bytes instead of being buffered.

use super::exchange::{Headers, HttpVersion, RequestHead, RequestLine, ResponseHead, StatusLine};

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
        (self.stage, self.len) = self.after(b);
        self.looks()
    }

    /// The stage and part length byte `b` leads to.
    fn after(&self, b: u8) -> (RequestLineStage, u8) {
        use RequestLineStage::*;
        let len = self.len;
        match self.stage {
            Done(verdict) => (Done(verdict), len),
            Method if is_tchar(b) && usize::from(len) < MAX_METHOD_LEN => (Method, len + 1),
            Method if b == b' ' && len > 0 => (Target, 0),
            Target if is_target_byte(b) => (Target, len.saturating_add(1)),
            Target if b == b' ' && len > 0 => (Version, 0),
            Version
                if usize::from(len) < VERSION_PREFIX.len()
                    && b == VERSION_PREFIX[usize::from(len)] =>
            {
                (Version, len + 1)
            }
            Version if usize::from(len) == VERSION_PREFIX.len() && b.is_ascii_digit() => {
                (Version, len + 1)
            }
            Version if usize::from(len) > VERSION_PREFIX.len() && b == b'\r' => (Cr, len),
            Version | Cr if b == b'\n' && usize::from(len) > VERSION_PREFIX.len() => {
                (Done(true), len)
            }
            _ => (Done(false), len),
        }
    }

    /// Takes the bytes at the start of `input` that decide nothing (of a
    /// request line, all but its final LF) and returns how many: feeding
    /// them one by one would only count them.
    fn take_run(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            let run = self.part_run(&input[taken..]);
            self.len = self
                .len
                .saturating_add(u8::try_from(run).unwrap_or(u8::MAX));
            taken += run;
            // The byte after a run ends the part: it starts the next one, or
            // decides.
            let Some(&b) = input.get(taken) else {
                return taken;
            };
            match self.after(b) {
                (RequestLineStage::Done(_), _) => return taken,
                (stage, len) => (self.stage, self.len) = (stage, len),
            }
            taken += 1;
        }
    }

    /// How many bytes at the start of `input` only take the sniffer further
    /// in the part of the line it is in (the method, the target, or the
    /// `HTTP/1.` of the version), found a part at a time rather than a byte
    /// at a time.
    fn part_run(&self, input: &[u8]) -> usize {
        let len = usize::from(self.len);
        match self.stage {
            RequestLineStage::Method => input
                .iter()
                .take(MAX_METHOD_LEN - len)
                .take_while(|&&b| is_tchar(b))
                .count(),
            RequestLineStage::Target => input
                .iter()
                .position(|&b| !is_target_byte(b))
                .unwrap_or(input.len()),
            RequestLineStage::Version => {
                let expected = VERSION_PREFIX.get(len..).unwrap_or_default();
                input
                    .iter()
                    .zip(expected)
                    .take_while(|(b, expected)| b == expected)
                    .count()
            }
            RequestLineStage::Cr | RequestLineStage::Done(_) => 0,
        }
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

    /// Takes the bytes at the start of `input` that match the status line
    /// start without completing it and returns how many: feeding them one
    /// by one would decide nothing.
    fn take_run(&mut self, input: &[u8]) -> usize {
        if self.verdict.is_some() {
            return 0;
        }
        let matched = usize::from(self.matched);
        let run = input
            .iter()
            .take(STATUS_START_LEN - 1 - matched)
            .enumerate()
            .take_while(|&(k, &b)| status_start_byte_fits(matched + k, b))
            .count();
        self.matched = self
            .matched
            .saturating_add(u8::try_from(run).unwrap_or(u8::MAX));
        run
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

/// A byte of a token (RFC 9110 §5.6.2). A table lookup: it is asked for
/// every byte of a method, and by the rules of every `Upgrade` element.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
};

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

/// One head being received.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadReader {
    /// The head's bytes taken so far, unless it came whole in one input:
    /// that one is read where it is (see [`Self::complete_head`]).
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

    /// The head bytes kept so far: empty at a message start, and after a
    /// head that came whole in one input.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The bytes, without spare room: they may be kept a while (early data,
    /// first bytes after a switch).
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.shrink_to_fit();
        self.bytes
    }

    /// The head whose end [`Self::push`] just reported as
    /// [`HeadStep::Complete`], given the same `input` and the bytes it took.
    pub(crate) fn complete_head<'a>(&'a self, input: &'a [u8], used: usize) -> &'a [u8] {
        if self.bytes.is_empty() {
            &input[line_ends_before_head(&input[..used])..used]
        } else {
            &self.bytes
        }
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
        let start = if self.bytes.is_empty() {
            line_ends_before_head(input)
        } else {
            0
        };
        let (step, used) = self.read(input, start, role, max_head_bytes);
        if step != HeadStep::Complete || !self.bytes.is_empty() {
            super::extend_within(&mut self.bytes, &input[start..used], max_head_bytes);
        }
        (step, used)
    }

    /// [`Self::push`] without keeping the bytes: the head so far is
    /// `self.bytes` followed by `input[start..]` up to the current byte.
    fn read(
        &mut self,
        input: &[u8],
        start: usize,
        role: Option<Role>,
        max_head_bytes: usize,
    ) -> (HeadStep, usize) {
        let mut i = start;
        while let Some(&b) = input.get(i) {
            if self.first_line_read() {
                return self.read_rest(input, start, i, max_head_bytes);
            }
            let head_len = self.bytes.len() + (i - start);
            if head_len >= max_head_bytes {
                return (HeadStep::TooLarge, i);
            }
            // Once one sniffer has decided, most bytes of a first line only
            // take the other further: they are taken in a run (they cannot
            // end the head or change a verdict).
            let rest = &input[i..];
            let rest = &rest[..rest.len().min(max_head_bytes - head_len)];
            let run = if self.status.looks() != Looks::Undecided {
                self.request.take_run(rest)
            } else if self.request.looks() != Looks::Undecided {
                self.status.take_run(rest)
            } else {
                0
            };
            if run > 0 {
                i += run;
                continue;
            }
            let ends_head = b == b'\n' && self.ends_with_line_end(&input[start..i]);
            i += 1;
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
    /// is left is to find its end, which [`Self::read_rest`] does a line at
    /// a time rather than a byte at a time.
    fn first_line_read(&self) -> bool {
        self.request.looks() != Looks::Undecided && self.status.looks() != Looks::Undecided
    }

    /// [`Self::read`] from `input[from]` on, once the first line is read:
    /// the same steps, found by looking only at line ends.
    fn read_rest(
        &self,
        input: &[u8],
        start: usize,
        from: usize,
        max_head_bytes: usize,
    ) -> (HeadStep, usize) {
        let head_len = self.bytes.len() + (from - start);
        let limit = from + max_head_bytes.saturating_sub(head_len);
        let mut searched = from;
        while let Some(found) = memchr::memchr(b'\n', &input[searched..]) {
            let lf = searched + found;
            if lf >= limit {
                break;
            }
            if self.ends_with_line_end(&input[start..lf]) {
                return (HeadStep::Complete, lf + 1);
            }
            searched = lf + 1;
        }
        if input.len() > limit {
            return (HeadStep::TooLarge, limit);
        }
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

    /// Whether the head so far (the kept bytes, then `taken`) ends a line,
    /// so that a LF now ends the head (an empty line: LF LF or LF CR LF).
    fn ends_with_line_end(&self, taken: &[u8]) -> bool {
        match taken {
            [.., b'\n'] | [.., b'\n', b'\r'] => true,
            [b'\r'] => self.bytes.last() == Some(&b'\n'),
            [] => matches!(self.bytes.as_slice(), [.., b'\n'] | [.., b'\n', b'\r']),
            _ => false,
        }
    }
}

/// How many CR and LF bytes start `input`: empty lines before a head.
fn line_ends_before_head(input: &[u8]) -> usize {
    input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len())
}

/// Why a complete head was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooManyHeaders,
    Malformed,
}

pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> Result<RequestHead, HeadError> {
    with_header_slots(head, max_headers, |slots| {
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
            line: RequestLine {
                method: method.to_owned(),
                target: target.to_owned(),
            },
            version: http_version(version)?,
            headers: owned_headers(request.headers),
        })
    })
}

pub(crate) fn parse_response(head: &[u8], max_headers: usize) -> Result<ResponseHead, HeadError> {
    with_header_slots(head, max_headers, |slots| {
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
            line: StatusLine {
                status: code,
                reason: raw_reason(head),
            },
            headers: owned_headers(response.headers),
        })
    })
}

/// Heads with up to this many header lines get their slots on the stack.
const STACK_HEADER_SLOTS: usize = 32;

/// Runs `parse` with room for at most `max_headers` headers: first on the
/// stack (most heads: no allocation, and no counting of their lines), then,
/// for a head with more headers than that, on the heap with no more slots
/// than the head has lines.
fn with_header_slots<'h, T>(
    head: &'h [u8],
    max_headers: usize,
    mut parse: impl FnMut(&mut [httparse::Header<'h>]) -> Result<T, HeadError>,
) -> Result<T, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let parsed = parse(&mut stack[..max_headers.min(STACK_HEADER_SLOTS)]);
    if max_headers <= STACK_HEADER_SLOTS || !matches!(parsed, Err(HeadError::TooManyHeaders)) {
        return parsed;
    }
    let lines = memchr::memchr_iter(b'\n', head).count().min(max_headers);
    parse(&mut vec![httparse::EMPTY_HEADER; lines])
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
    let (names_len, values_len) = headers.iter().fold((0, 0), |(names, values), h| {
        (names + h.name.len(), values + h.value.len())
    });
    let mut owned = Headers::with_capacity(headers.len(), names_len, values_len);
    for h in headers {
        owned.push(h.name, h.value);
    }
    owned
}

/// The reason phrase as sent (httparse drops one holding non-ASCII bytes).
fn raw_reason(head: &[u8]) -> String {
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let reason = line.get(STATUS_START_LEN + 1..).unwrap_or_default();
    // Checking UTF-8 is cheaper than the lossy conversion's walk, and
    // almost every reason phrase passes.
    match std::str::from_utf8(reason) {
        Ok(reason) => reason.to_owned(),
        Err(_) => String::from_utf8_lossy(reason).into_owned(),
    }
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
            (request.line.method.as_str(), request.line.target.as_str()),
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

    /// Pushes `pieces` in turn to a new reader until a step other than
    /// NeedMore: that step with the bytes taken in all, and the head read.
    fn push_pieces<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
        role: Option<Role>,
        limit: usize,
    ) -> ((HeadStep, usize), Vec<u8>) {
        let mut reader = HeadReader::default();
        let mut taken = 0;
        for piece in pieces {
            let (step, used) = reader.push(piece, role, limit);
            taken += used;
            if step == HeadStep::Complete {
                return ((step, taken), reader.complete_head(piece, used).to_vec());
            }
            if step != HeadStep::NeedMore {
                return ((step, taken), reader.bytes().to_vec());
            }
        }
        ((HeadStep::NeedMore, taken), reader.bytes().to_vec())
    }

    #[test]
    fn runs_of_first_line_bytes_are_taken_as_if_fed_one_by_one() {
        let long = b"GET /a/long/target?q=1&r=%20 HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let status = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nBODY";
        let cases: [(&[u8], Option<Role>, usize); 19] = [
            (long, Some(Role::Client), 1024),
            (long, None, 1024),
            (long, Some(Role::Client), 12),
            (long, Some(Role::Client), 5),
            (long, Some(Role::Client), 2),
            (long, Some(Role::Client), 33),
            (b"GET /x\x7fy HTTP/1.1\r\n\r\n", Some(Role::Client), 1024),
            (b"GET /abc  HTTP/1.1\r\n\r\n", None, 1024),
            (b"GET /abc\r\n\r\n", Some(Role::Client), 1024),
            (b"GET / HTTP/2.0\r\n\r\n", Some(Role::Client), 1024),
            (b"GET / HTTP/1.1x\r\n\r\n", Some(Role::Client), 1024),
            (&[b'A'; MAX_METHOD_LEN + 2], Some(Role::Client), 1024),
            (b"HTTP/1.1 200 OK\r\n\r\n", None, 1024),
            (b"HTTP/1.1 200 OK\r\n\r\n", None, 3),
            (b"HTTPS/1.1 200 OK\r\n\r\n", Some(Role::Server), 1024),
            (status, Some(Role::Server), 1024),
            (status, Some(Role::Server), 8),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", Some(Role::Server), 1024),
            (b"HTTP/1.1 200 OK\r\n\r\n", Some(Role::Client), 1024),
        ];
        for (input, role, limit) in cases {
            let one_by_one = push_pieces(input.chunks(1), role, limit);
            let text = String::from_utf8_lossy(input);
            assert_eq!(push_pieces([input], role, limit), one_by_one, "{text:?}");
            for split in 1..input.len() {
                let (first, rest) = input.split_at(split);
                let in_halves = push_pieces([first, rest], role, limit);
                assert_eq!(in_halves, one_by_one, "{text:?} split at {split}");
            }
        }
    }

    #[test]
    fn a_request_line_run_takes_what_feeding_would_and_stops_before_a_verdict() {
        let long_method = [b'A'; MAX_METHOD_LEN + 2];
        let lines: [&[u8]; 8] = [
            b"GET /a?b=%20 HTTP/1.1\r\n",
            b"GET / HTTP/1.0\nHost",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1x\r\n",
            b"GET / HTTP/1.1\rx",
            b"GET / HTTP/2.0\r\n",
            b"GET /\x7f HTTP/1.1\r\n",
            &long_method,
        ];
        for line in lines {
            for start in 0..line.len() {
                let mut fed = RequestLineSniffer::default();
                for &b in &line[..start] {
                    fed.feed(b);
                }
                let mut run = fed.clone();
                let taken = run.take_run(&line[start..]);
                for &b in &line[start..start + taken] {
                    assert_eq!(fed.feed(b), Looks::Undecided, "{line:?} from {start}");
                }
                assert_eq!(
                    (run.stage, run.len),
                    (fed.stage, fed.len),
                    "{line:?} from {start}"
                );
                if let (Looks::Undecided, Some(&b)) = (fed.looks(), line.get(start + taken)) {
                    assert_ne!(fed.feed(b), Looks::Undecided, "{line:?} from {start}");
                }
            }
        }
    }

    #[test]
    fn bare_lf_heads_end_too() {
        let mut reader = HeadReader::default();
        let input = b"HTTP/1.0 200 OK\nA: b\n\nrest";
        let (step, used) = reader.push(input, Some(Role::Server), 1024);
        assert_eq!((step, used), (HeadStep::Complete, 22));
        let response = parse_response(reader.complete_head(input, used), 8).unwrap();
        assert_eq!(
            (response.line.status, response.version),
            (200, HttpVersion::Http10)
        );
        assert_eq!(response.line.reason, "OK");
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
        assert_eq!(response.line.reason, "Switching \u{e9}");
        let response = parse_response(b"HTTP/1.1 204\r\n\r\n", 4).unwrap();
        assert_eq!(response.line.reason, "");
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
