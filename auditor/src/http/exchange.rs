//! What the HTTP layer reports: one request with its responses, and how much
//! of it was really seen.
//!
//! The values are the bytes as sent, secrets included: what is printed of
//! them goes through the events' redaction (`--exchanges` too, as
//! `events::ExchangeRecord`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;

use serde::{Serialize, Serializer};

/// One request and its answer on one connection, in the order the
/// connection carried them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub connection: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub interface: Option<u32>,
    /// None: a response whose request was not seen (mid-stream, or lost),
    /// or a request head that could not be read (see `quality`).
    pub request: Option<RequestHead>,
    /// Interim responses (1xx other than 101), in order.
    pub interim: Vec<ResponseHead>,
    /// The final response (101 counts as final); None when none came.
    pub response: Option<ResponseHead>,
    /// After a 101: the first bytes of the new protocol in each direction.
    pub switched: Option<Switched>,
    /// Client bytes that came after this request (one that may switch
    /// protocols: `Upgrade` or CONNECT) and before its final response, and
    /// did not start another request.
    pub early_data: Option<EarlyData>,
    /// Another request head was read after this request's and before its
    /// final response.
    pub pipelined_behind: bool,
    /// After a non-101 final response to a request carrying `Upgrade`: a
    /// side whose next message start was not HTTP/1.1 (see [`NotHttp`]).
    pub not_http_after_decline: Option<NotHttp>,
    /// Capture time of the data that completed the request head.
    pub request_ns: Option<u64>,
    /// Capture time of the data that completed the final response head.
    pub response_ns: Option<u64>,
    pub quality: Quality,
    pub pairing: Pairing,
}

/// How certain it is that the response answers the request. Only a
/// connection picked up mid-stream leaves it in doubt: requests sent
/// before capture started may still await their responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// The request and the response were each read from their first byte,
    /// and nothing was outstanding before the request.
    #[default]
    Certain,
    /// The request was read from its first byte, but which response answers
    /// it is not certain: only rules that read the request alone apply.
    RequestOnly,
    /// Even the request's start is not certain: it was found by searching
    /// bytes that were not all seen from a message start.
    Unknown,
}

/// A message head: its start line, its version and its field lines (as
/// hyper's `MessageHead<S>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageHead<L> {
    pub line: L,
    pub version: HttpVersion,
    pub headers: Headers,
}

/// A request's start line, but its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub target: String,
}

/// A response's start line, but its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub status: u16,
    pub reason: String,
}

pub type RequestHead = MessageHead<RequestLine>;
pub type ResponseHead = MessageHead<StatusLine>;

/// The field lines of a head, in the order and with the repeats they were
/// sent with. Names and values are kept back to back in one buffer rather
/// than one allocation each: a head costs two allocations however many
/// lines it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Each line's name, then its value.
    text: Vec<u8>,
    lines: Vec<Line>,
}

/// Where one field line's name and value are in `Headers::text`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    name: Range<usize>,
    value: Range<usize>,
}

/// One field line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Room for `lines` lines whose names and values add up to the lengths given.
    pub fn with_capacity(lines: usize, names_len: usize, values_len: usize) -> Headers {
        Headers {
            text: Vec::with_capacity(names_len.saturating_add(values_len)),
            lines: Vec::with_capacity(lines),
        }
    }

    /// Adds a field line after the others.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let name_start = self.text.len();
        self.text.extend_from_slice(name.as_bytes());
        let value_start = self.text.len();
        self.text.extend_from_slice(value);
        self.lines.push(Line {
            name: name_start..value_start,
            value: value_start..self.text.len(),
        });
    }

    fn name(&self, line: &Line) -> &str {
        // Always UTF-8: `push` copied these bytes from a `str`, whole.
        std::str::from_utf8(&self.text[line.name.clone()]).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Bytes held on the heap, for the memory budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.lines.capacity() * std::mem::size_of::<Line>()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The field lines, in order.
    #[inline]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Header<'_>> + Clone + '_ {
        self.lines.iter().map(|line| Header {
            name: self.name(line),
            value: &self.text[line.value.clone()],
        })
    }

    /// The values of the lines named `name` (case-insensitive), in order.
    /// Rules ask this many times per exchange: names are compared as bytes,
    /// length first, and only matching values are sliced.
    #[inline]
    pub fn values<'a>(
        &'a self,
        name: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a [u8]> + Clone + 'a {
        self.lines
            .iter()
            .filter(move |line| {
                line.name.len() == name.len()
                    && self.text[line.name.clone()].eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|line| &self.text[line.value.clone()])
    }

    /// The elements of the list formed by every line named `name`, trimmed
    /// of spaces and tabs; empty elements are kept.
    pub fn elements<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
        self.values(name).flat_map(Headers::value_elements)
    }

    /// Whether the list `name` has the element `element` (case-insensitive).
    pub fn has_element(&self, name: &str, element: &str) -> bool {
        for value in self.values(name) {
            for listed in Headers::value_elements(value) {
                if listed.eq_ignore_ascii_case(element.as_bytes()) {
                    return true;
                }
            }
        }
        false
    }

    /// The elements of one field line's value of a list, as
    /// [`Headers::elements`] gives them.
    pub fn value_elements(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
        value.split(|&b| b == b',').map(trim_whitespace)
    }
}

impl<'a> FromIterator<Header<'a>> for Headers {
    fn from_iter<I: IntoIterator<Item = Header<'a>>>(lines: I) -> Headers {
        let mut headers = Headers::new();
        for line in lines {
            headers.push(line.name, line.value);
        }
        headers
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HttpVersion {
    #[serde(rename = "HTTP/1.0")]
    Http10,
    #[serde(rename = "HTTP/1.1")]
    Http11,
}

/// The first bytes each side sent after a 101, at most
/// `HttpLimits::switch_bytes` each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Switched {
    #[serde(serialize_with = "serialize_hex")]
    pub client_bytes: Vec<u8>,
    #[serde(serialize_with = "serialize_hex")]
    pub server_bytes: Vec<u8>,
}

/// Client bytes sent before the answer to a request that may switch
/// protocols, in capture order: optimistic data of the new protocol, or
/// bytes hidden from a proxy that believes the switch will happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EarlyData {
    /// From the first of them to the answer, lost bytes included.
    pub bytes: u64,
    /// They were the start of a request head still unfinished when a 101
    /// came; otherwise their first bytes were not a request line.
    pub looks_like_request: bool,
}

/// Bytes that were not an HTTP/1.1 message start where one was due after a
/// non-101 answer to a request carrying `Upgrade`: a tunnel opened without a
/// 101. The exchange waits for the next message start of both sides, and is
/// reported when both were HTTP/1.1 or one was not, when neither can tell any
/// more (a loss of message boundaries, a side finished, the connection
/// closed), when another exchange is reported, or after `switch_wait_ns`.
/// Client bytes sent optimistically before the answer are early data, not
/// this: the client's side is then not judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotHttp {
    /// The client sent them; else the server.
    pub sent_by_client: bool,
    /// The bytes that showed it, at most 16.
    #[serde(serialize_with = "serialize_hex")]
    pub first_bytes: Vec<u8>,
}

/// How much of an exchange was seen. Rules read an exchange only when no
/// flag but `midstream` is set (see `rules::evaluate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Quality {
    /// Request head and final response head (and, after a 101, the first
    /// bytes of the new protocol) were read from contiguous bytes, they
    /// certainly belong together, and no other flag but `midstream` is set.
    pub complete: bool,
    /// Bytes of this exchange were lost, or bytes were lost earlier on the
    /// connection so its pairing is not certain.
    pub gap: bool,
    /// Bytes of this exchange were left uncopied by the capture (or dropped
    /// by a limit of this layer), here or earlier on the connection.
    pub truncated: bool,
    /// The connection was already open when capture started. Alone, it
    /// does not keep the rules off: the exchange's [`Pairing`] says what
    /// they may read.
    pub midstream: bool,
    /// A head was over `max_head_bytes` or `max_headers`, or more interim
    /// responses came than are kept.
    pub oversized: bool,
    /// Bytes of this exchange were seen twice with different contents.
    pub conflicting_overlap: bool,
    /// A head or body framing of this exchange did not parse as HTTP/1.x, or
    /// bytes earlier on the connection did not, so its pairing is not certain.
    pub malformed: bool,
}

impl Quality {
    /// Whether any flag says something was not seen as sent (`midstream`
    /// alone does not).
    pub fn impaired(&self) -> bool {
        self.gap || self.truncated || self.oversized || self.conflicting_overlap || self.malformed
    }

    /// Sets every flag that `other` has.
    pub fn absorb(&mut self, other: Quality) {
        self.gap |= other.gap;
        self.truncated |= other.truncated;
        self.midstream |= other.midstream;
        self.oversized |= other.oversized;
        self.conflicting_overlap |= other.conflicting_overlap;
        self.malformed |= other.malformed;
    }
}

impl Exchange {
    /// The response switched protocols.
    pub fn is_switch(&self) -> bool {
        self.response.as_ref().is_some_and(|r| r.line.status == 101)
    }
}

impl<L> MessageHead<L> {
    /// The values of every field line named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.values(name)
    }

    /// The elements of the list formed by every field line named `name`,
    /// trimmed of spaces and tabs; empty elements are kept.
    pub fn header_elements<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.elements(name)
    }

    /// Whether the list `name` has the element `element` (case-insensitive).
    pub fn has_element(&self, name: &str, element: &str) -> bool {
        self.headers.has_element(name, element)
    }
}

impl RequestHead {
    /// An upgrade offer: `Upgrade` present and `upgrade` listed in `Connection`.
    pub fn is_upgrade_offer(&self) -> bool {
        self.header_values("upgrade").next().is_some() && self.has_element("connection", "upgrade")
    }

    /// Bytes held on the heap, for the memory budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.line.method.capacity() + self.line.target.capacity() + self.headers.heap_bytes()
    }
}

impl ResponseHead {
    /// Bytes held on the heap, for the memory budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.line.reason.capacity() + self.headers.heap_bytes()
    }
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn serialize_hex<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    serializer.serialize_str(&hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn absorbing_sets_every_flag_but_complete() {
        let all = Quality {
            complete: true,
            gap: true,
            truncated: true,
            midstream: true,
            oversized: true,
            conflicting_overlap: true,
            malformed: true,
        };
        let mut quality = Quality::default();
        quality.absorb(all);
        assert_eq!(
            quality,
            Quality {
                complete: false,
                ..all
            }
        );
        assert!(quality.impaired());
        let midstream = Quality {
            midstream: true,
            ..Quality::default()
        };
        assert!(
            !midstream.impaired(),
            "a mid-stream start alone impairs nothing"
        );
    }

    #[test]
    fn header_values_and_lists_span_field_lines() {
        let request = RequestHead {
            line: RequestLine {
                method: "GET".into(),
                target: "/chat".into(),
            },
            version: HttpVersion::Http11,
            headers: Headers::from_iter([
                header("Host", "example"),
                header("Connection", "keep-alive"),
                header("Connection", " Upgrade "),
                header("Upgrade", "websocket"),
            ]),
        };
        let connection: Vec<&[u8]> = request.header_elements("CONNECTION").collect();
        assert_eq!(connection, vec![&b"keep-alive"[..], &b"Upgrade"[..]]);
        assert!(request.has_element("connection", "upgrade"));
        assert!(!request.has_element("connection", "close"));
        assert!(request.is_upgrade_offer());
    }

    #[test]
    fn list_elements_keep_empty_ones_and_do_not_match_substrings() {
        let headers = Headers::from_iter([header("Connection", "notupgrade, ,\tclose")]);
        let elements: Vec<&[u8]> = headers.elements("connection").collect();
        assert_eq!(elements, vec![&b"notupgrade"[..], &b""[..], &b"close"[..]]);
        assert!(!headers.has_element("connection", "upgrade"));
    }
}
