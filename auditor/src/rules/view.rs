//! How the catalogue reads messages ("How messages are read" in rules.md):
//! token lists across field lines, case-insensitive, and the offer.

use super::Violation;
use crate::http::{Exchange, RequestHead};

/// The upgrade offer an exchange's request makes, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The request carries `Upgrade` and lists `upgrade` in `Connection`.
    pub is_offer: bool,
    /// The request's `Upgrade` elements, trimmed, as sent.
    pub protocols: Vec<String>,
    /// `names("websocket")` and `names("h2c")`, which every rule of those
    /// catalogues asks first.
    websocket: bool,
    h2c: bool,
}

impl Offer {
    pub fn of(exchange: &Exchange) -> Offer {
        match &exchange.request {
            Some(request) => Offer::of_request(request),
            None => Offer {
                is_offer: false,
                protocols: Vec::new(),
                websocket: false,
                h2c: false,
            },
        }
    }

    fn of_request(request: &RequestHead) -> Offer {
        let protocols: Vec<String> = request
            .header_elements("upgrade")
            .filter(|element| !element.is_empty())
            .map(|element| String::from_utf8_lossy(element).into_owned())
            .collect();
        let mut offer = Offer {
            is_offer: request.is_upgrade_offer(),
            protocols,
            websocket: false,
            h2c: false,
        };
        offer.websocket = offer.names("websocket");
        offer.h2c = offer.names("h2c");
        offer
    }

    /// `self.names("websocket")`, worked out once.
    pub fn names_websocket(&self) -> bool {
        self.websocket
    }

    /// `self.names("h2c")`, worked out once.
    pub fn names_h2c(&self) -> bool {
        self.h2c
    }

    /// Whether the offer names `name` (protocol name only, case-insensitive).
    pub fn names(&self, name: &str) -> bool {
        self.is_offer
            && self
                .protocols
                .iter()
                .any(|p| protocol_name(p).eq_ignore_ascii_case(name))
    }
}

/// `name` of an `Upgrade` element `name[/version]`.
pub fn protocol_name(element: &str) -> &str {
    // Rules ask this of every offered protocol: a plain byte search is much
    // cheaper than a `char` pattern on such short strings, and since `/` is
    // ASCII, slicing before it stays on a char boundary.
    let end = element
        .bytes()
        .position(|b| b == b'/')
        .unwrap_or(element.len());
    element[..end].trim()
}

/// The 101 of an exchange that switched protocols.
pub fn switch_response(exchange: &Exchange) -> Option<&crate::http::ResponseHead> {
    exchange.response.as_ref().filter(|r| r.status == 101)
}

/// Whether the response's `Upgrade` names `name` (protocol name only, case-insensitive).
pub fn upgrades_to(response: &crate::http::ResponseHead, name: &str) -> bool {
    response
        .header_elements("upgrade")
        .any(|element| protocol_name(&String::from_utf8_lossy(element)).eq_ignore_ascii_case(name))
}

/// Field values as sent, joined into one list for a message: `a, b`.
pub fn joined_values<'a>(values: impl Iterator<Item = &'a [u8]>) -> String {
    values
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each value in backticks, for a message: `` `a`, `b` ``.
pub fn backticked_values(values: &[&[u8]]) -> String {
    values
        .iter()
        .map(|value| format!("`{}`", String::from_utf8_lossy(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name` and `version` of an `Upgrade` element `name[/version]`.
pub fn protocol_parts(element: &str) -> (&str, Option<&str>) {
    match element.split_once('/') {
        Some((name, version)) => (name, Some(version)),
        None => (element, None),
    }
}

/// How a protocol a response switches to matches the offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OfferMatch {
    NotOffered,
    /// Only when the case of the name is ignored.
    IgnoringCase,
    Exact,
}

/// The best match of `chosen` among the offered protocols: names compare
/// case-insensitively, and a version, where `chosen` gives one, must equal
/// the offered one.
pub fn offer_match(offer: &Offer, chosen: &str) -> OfferMatch {
    let (name, version) = protocol_parts(chosen);
    offer
        .protocols
        .iter()
        .map(|offered| {
            let (offered_name, offered_version) = protocol_parts(offered);
            if !offered_name.eq_ignore_ascii_case(name)
                || version.is_some_and(|v| offered_version != Some(v))
            {
                OfferMatch::NotOffered
            } else if offered_name == name {
                OfferMatch::Exact
            } else {
                OfferMatch::IgnoringCase
            }
        })
        .max()
        .unwrap_or(OfferMatch::NotOffered)
}

/// The non-empty `Upgrade` elements of a response, as sent.
pub fn switched_protocols(response: &crate::http::ResponseHead) -> Vec<String> {
    response
        .header_elements("upgrade")
        .filter(|element| !element.is_empty())
        .map(|element| String::from_utf8_lossy(element).into_owned())
        .collect()
}

/// Whether an `Upgrade` element is `token ["/" token]` (RFC 9110 §7.8).
pub fn is_protocol_token(element: &[u8]) -> bool {
    let is_token = |part: &[u8]| {
        !part.is_empty()
            && part
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
    };
    match element.iter().position(|&b| b == b'/') {
        Some(slash) => is_token(&element[..slash]) && is_token(&element[slash + 1..]),
        None => is_token(element),
    }
}

/// Several field lines of one name, for a message: ``2 `Name` field lines: `a`, `b` ``.
pub(super) fn field_lines(name: &str, values: &[&[u8]]) -> String {
    format!(
        "{} `{name}` field lines: {}",
        values.len(),
        backticked_values(values)
    )
}

/// What is wrong with the field lines `values` of a field `name` that must
/// appear exactly once: `subject` (e.g. "the h2c offer has") no `name`, or
/// several.
pub(super) fn not_exactly_one(subject: &str, name: &str, values: &[&[u8]]) -> Option<Violation> {
    match values {
        [] => Some(Violation::new(format!("{subject} no `{name}`"))),
        [_] => None,
        several => Some(Violation::new(format!(
            "{subject} {}",
            field_lines(name, several)
        ))),
    }
}
