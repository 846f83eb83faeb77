//! The `http` object of `alert` and `handshake` events: the upgrade-relevant
//! parts of the request and its responses, through the [`Redactor`].
//!
//! List fields (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`,
//! `Sec-WebSocket-Extensions`) are the elements of every field line with the
//! name, trimmed, empty ones kept as evidence. Single-valued fields are
//! their field lines joined with `, ` (RFC 9110 §5.3), so a repeat shows;
//! null when absent.

use serde::Serialize;
use smallvec::SmallVec;

use super::redact::Redactor;
use crate::http::{Exchange, Header, Headers, HttpVersion, RequestHead, ResponseHead};

/// The elements of a list field. Nearly every list a handshake carries has
/// one or two: kept inline rather than in an allocation of their own.
pub type FieldElements = SmallVec<[String; 2]>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRecord {
    /// None when the request head was not seen or could not be read.
    pub request: Option<RequestRecord>,
    /// The final response (a 101 counts as final); None when none came.
    pub response: Option<ResponseRecord>,
    /// Interim responses (100, 103…) before the final one, in order.
    pub interim: Vec<ResponseRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub target: String,
    pub version: HttpVersion,
    pub host: Option<String>,
    pub upgrade: FieldElements,
    pub connection: FieldElements,
    pub sec_websocket_key: Option<String>,
    pub sec_websocket_version: Option<String>,
    pub sec_websocket_protocol: FieldElements,
    pub sec_websocket_extensions: FieldElements,
    /// Whether an `HTTP2-Settings` field is present (its value is not kept).
    pub http2_settings: bool,
    pub expect: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseRecord {
    pub status: u16,
    pub version: HttpVersion,
    pub upgrade: FieldElements,
    pub connection: FieldElements,
    pub sec_websocket_accept: Option<String>,
    pub sec_websocket_version: Option<String>,
    pub sec_websocket_protocol: FieldElements,
    pub sec_websocket_extensions: FieldElements,
    pub http2_settings: bool,
}

impl HttpRecord {
    pub fn of(exchange: &Exchange, redactor: &Redactor<'_>) -> HttpRecord {
        HttpRecord {
            request: exchange
                .request
                .as_ref()
                .map(|request| RequestRecord::of(request, redactor)),
            response: exchange
                .response
                .as_ref()
                .map(|response| ResponseRecord::of(response, redactor)),
            interim: exchange
                .interim
                .iter()
                .map(|response| ResponseRecord::of(response, redactor))
                .collect(),
        }
    }
}

impl RequestRecord {
    fn of(request: &RequestHead, redactor: &Redactor<'_>) -> RequestRecord {
        let mut record = RequestRecord {
            method: redactor.text(&request.line.method),
            target: redactor.target(&request.line.target),
            version: request.version,
            host: None,
            upgrade: FieldElements::new(),
            connection: FieldElements::new(),
            sec_websocket_key: None,
            sec_websocket_version: None,
            sec_websocket_protocol: FieldElements::new(),
            sec_websocket_extensions: FieldElements::new(),
            http2_settings: false,
            expect: None,
        };
        // One pass over the field lines rather than a lookup per field.
        let mut buffer = [0; LONGEST_SHOWN_NAME];
        for line in request.headers.iter() {
            match lowercase(line.name, &mut buffer) {
                Some(b"host") => push_joined(&mut record.host, line, redactor),
                Some(b"upgrade") => push_elements(&mut record.upgrade, line, redactor),
                Some(b"connection") => push_elements(&mut record.connection, line, redactor),
                Some(b"sec-websocket-key") => {
                    push_joined(&mut record.sec_websocket_key, line, redactor)
                }
                Some(b"sec-websocket-version") => {
                    push_joined(&mut record.sec_websocket_version, line, redactor)
                }
                Some(b"sec-websocket-protocol") => {
                    push_elements(&mut record.sec_websocket_protocol, line, redactor)
                }
                Some(b"sec-websocket-extensions") => {
                    push_elements(&mut record.sec_websocket_extensions, line, redactor)
                }
                Some(b"http2-settings") => record.http2_settings = true,
                Some(b"expect") => push_joined(&mut record.expect, line, redactor),
                _ => {}
            }
        }
        record
    }
}

impl ResponseRecord {
    fn of(response: &ResponseHead, redactor: &Redactor<'_>) -> ResponseRecord {
        let mut record = ResponseRecord {
            status: response.line.status,
            version: response.version,
            upgrade: FieldElements::new(),
            connection: FieldElements::new(),
            sec_websocket_accept: None,
            sec_websocket_version: None,
            sec_websocket_protocol: FieldElements::new(),
            sec_websocket_extensions: FieldElements::new(),
            http2_settings: false,
        };
        let mut buffer = [0; LONGEST_SHOWN_NAME];
        for line in response.headers.iter() {
            match lowercase(line.name, &mut buffer) {
                Some(b"upgrade") => push_elements(&mut record.upgrade, line, redactor),
                Some(b"connection") => push_elements(&mut record.connection, line, redactor),
                Some(b"sec-websocket-accept") => {
                    push_joined(&mut record.sec_websocket_accept, line, redactor)
                }
                Some(b"sec-websocket-version") => {
                    push_joined(&mut record.sec_websocket_version, line, redactor)
                }
                Some(b"sec-websocket-protocol") => {
                    push_elements(&mut record.sec_websocket_protocol, line, redactor)
                }
                Some(b"sec-websocket-extensions") => {
                    push_elements(&mut record.sec_websocket_extensions, line, redactor)
                }
                Some(b"http2-settings") => record.http2_settings = true,
                _ => {}
            }
        }
        record
    }
}

/// The longest name a record shows: `sec-websocket-extensions`.
const LONGEST_SHOWN_NAME: usize = 24;

/// `name` in lower case, written to `buffer`; None when it is longer than
/// any name a record shows.
fn lowercase<'b>(name: &str, buffer: &'b mut [u8; LONGEST_SHOWN_NAME]) -> Option<&'b [u8]> {
    let lowered = buffer.get_mut(..name.len())?;
    lowered.copy_from_slice(name.as_bytes());
    lowered.make_ascii_lowercase();
    Some(lowered)
}

/// Adds the elements of a field line of a list to `list`.
fn push_elements(list: &mut FieldElements, line: Header<'_>, redactor: &Redactor<'_>) {
    let elements = Headers::value_elements(line.value);
    list.extend(elements.map(|element| redactor.field(line.name, element)));
}

/// Adds the value of a field line of a single-valued field to `joined`,
/// after `, ` when the field repeats.
fn push_joined(joined: &mut Option<String>, line: Header<'_>, redactor: &Redactor<'_>) {
    let value = redactor.field(line.name, line.value);
    match joined {
        Some(joined) => {
            joined.push_str(", ");
            joined.push_str(&value);
        }
        None => *joined = Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events::RedactionAllowlist, rules::testing};

    #[test]
    fn fields_are_gathered_across_lines_whatever_the_case_of_their_names() {
        let exchange = testing::exchange(
            b"GET /x HTTP/1.1\r\nHOST: a\r\nUpgrade: websocket,\r\nupgrade:  h2c , \r\nConnection: Upgrade\r\nHost: b\r\nX-Longer-Than-Any-Shown-Name: 1\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nsec-websocket-protocol: chat\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUPGRADE: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\nsec-websocket-accept: y\r\n\r\n",
        );
        let allowlist = RedactionAllowlist::default();
        let record = HttpRecord::of(&exchange, &Redactor::new(&allowlist, &exchange));

        let request = record.request.expect("the request was read");
        assert_eq!(request.host.as_deref(), Some("a, b"));
        assert_eq!(request.upgrade[..], ["websocket", "", "h2c", ""]);
        assert_eq!(request.connection[..], ["Upgrade"]);
        assert_eq!(request.sec_websocket_protocol[..], ["chat"]);
        assert!(request.sec_websocket_extensions.is_empty());
        assert!(request.http2_settings);
        assert_eq!(request.expect, None);

        let response = record.response.expect("the 101 was read");
        assert_eq!(response.upgrade[..], ["h2c"]);
        assert_eq!(response.sec_websocket_accept.as_deref(), Some("x, y"));
        assert!(!response.http2_settings);
    }
}
