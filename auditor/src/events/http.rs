//! The `http` object of `alert` and `handshake` events: the upgrade-relevant
//! parts of the request and its responses, through the [`Redactor`].
//!
//! List fields (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`,
//! `Sec-WebSocket-Extensions`) are the elements of every field line with the
//! name, trimmed, empty ones kept as evidence. Single-valued fields are
//! their field lines joined with `, ` (RFC 9110 §5.3), so a repeat shows;
//! null when absent.

use serde::Serialize;

use super::redact::Redactor;
use crate::http::{Exchange, HttpVersion, RequestHead, ResponseHead};

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
    pub upgrade: Vec<String>,
    pub connection: Vec<String>,
    pub sec_websocket_key: Option<String>,
    pub sec_websocket_version: Option<String>,
    pub sec_websocket_protocol: Vec<String>,
    pub sec_websocket_extensions: Vec<String>,
    /// Whether an `HTTP2-Settings` field is present (its value is not kept).
    pub http2_settings: bool,
    pub expect: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseRecord {
    pub status: u16,
    pub version: HttpVersion,
    pub upgrade: Vec<String>,
    pub connection: Vec<String>,
    pub sec_websocket_accept: Option<String>,
    pub sec_websocket_version: Option<String>,
    pub sec_websocket_protocol: Vec<String>,
    pub sec_websocket_extensions: Vec<String>,
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
        let list_of = |name| list(name, request.header_elements(name), redactor);
        let single_of = |name| redactor.joined_fields(name, request.header_values(name));
        RequestRecord {
            method: redactor.text(&request.method),
            target: redactor.target(&request.target),
            version: request.version,
            host: single_of("host"),
            upgrade: list_of("upgrade"),
            connection: list_of("connection"),
            sec_websocket_key: single_of("sec-websocket-key"),
            sec_websocket_version: single_of("sec-websocket-version"),
            sec_websocket_protocol: list_of("sec-websocket-protocol"),
            sec_websocket_extensions: list_of("sec-websocket-extensions"),
            http2_settings: request.header_values("http2-settings").next().is_some(),
            expect: single_of("expect"),
        }
    }
}

impl ResponseRecord {
    fn of(response: &ResponseHead, redactor: &Redactor<'_>) -> ResponseRecord {
        let list_of = |name| list(name, response.header_elements(name), redactor);
        let single_of = |name| redactor.joined_fields(name, response.header_values(name));
        ResponseRecord {
            status: response.status,
            version: response.version,
            upgrade: list_of("upgrade"),
            connection: list_of("connection"),
            sec_websocket_accept: single_of("sec-websocket-accept"),
            sec_websocket_version: single_of("sec-websocket-version"),
            sec_websocket_protocol: list_of("sec-websocket-protocol"),
            sec_websocket_extensions: list_of("sec-websocket-extensions"),
            http2_settings: response.header_values("http2-settings").next().is_some(),
        }
    }
}

fn list<'a>(
    name: &str,
    elements: impl Iterator<Item = &'a [u8]>,
    redactor: &Redactor<'_>,
) -> Vec<String> {
    elements
        .map(|element| redactor.field(name, element))
        .collect()
}
