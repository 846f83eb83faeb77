//! How the catalogue reads messages ("How rules read messages" in
//! docs/rules.md): token lists across field lines, case-insensitive, and
//! the offer.

use std::borrow::Cow;
use std::cell::OnceCell;

use base64::{DecodeError, DecodeSliceError, Engine};
use smallvec::SmallVec;

use super::Violation;
use crate::http::{is_tchar, Exchange, Headers, RequestHead};

/// The elements of one head's `Upgrade`. Nearly every offer names one or
/// two protocols and a 101 one: every exchange works out an offer, so
/// these stay off the heap.
pub type UpgradeProtocols<'a> = SmallVec<[Cow<'a, str>; 2]>;

/// The upgrade offer an exchange's request makes, if any, and what its 101
/// switched to: worked out once per exchange for every rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer<'a> {
    /// The request carries `Upgrade` and lists `upgrade` in `Connection`.
    pub is_offer: bool,
    /// The request's `Upgrade` elements, trimmed, as sent.
    pub protocols: UpgradeProtocols<'a>,
    /// The non-empty `Upgrade` elements of the exchange's 101, as sent;
    /// none without a 101.
    pub switched_protocols: UpgradeProtocols<'a>,
    /// The exchange's 101 carries `Upgrade`, empty or not.
    pub switch_carries_upgrade: bool,
    /// The request carries `Upgrade` (an offer or not) or the response is
    /// a 101: the exchanges [`Scope::Upgrade`](super::Scope::Upgrade) rules read.
    pub involves_upgrade: bool,
    /// Every element of the request's `Upgrade` and of the 101's, empty
    /// ones included, is `name[/version]` of tokens (so too without them):
    /// worked out while the offer reads them, for `upgrade-invalid-token`.
    pub upgrade_elements_are_tokens: bool,
    /// Whether the offer names `websocket`, and `h2c` (protocol name only,
    /// case-insensitive), which every rule of those catalogues asks first.
    websocket: bool,
    h2c: bool,
    switched_to: SwitchedTo,
    /// What the client checks of a WebSocket offer find, in their order,
    /// worked out on first use: the client rules and
    /// `ws-101-to-invalid-handshake` report the same defects.
    pub(super) websocket_defects: OnceCell<[Option<String>; 5]>,
}

/// What the offer keeps of one head's `Upgrade`, read in one pass.
struct UpgradeList<'a> {
    /// The head has `Upgrade` lines.
    carried: bool,
    /// The elements that are not empty, as sent.
    protocols: UpgradeProtocols<'a>,
    /// Every element is `name[/version]` of tokens.
    all_tokens: bool,
}

impl<'a> UpgradeList<'a> {
    /// No `Upgrade` at all.
    fn none() -> UpgradeList<'a> {
        UpgradeList {
            carried: false,
            protocols: UpgradeProtocols::new(),
            all_tokens: true,
        }
    }

    /// The list of a head's `Upgrade` field values: a line, even empty,
    /// has at least one element.
    fn of(values: impl Iterator<Item = &'a [u8]>) -> UpgradeList<'a> {
        let mut list = UpgradeList::none();
        for value in values {
            list.carried = true;
            for element in Headers::value_elements(value) {
                list.all_tokens &= is_protocol_token(element.trim_ascii());
                if !element.is_empty() {
                    list.protocols.push(utf8_lossy(element));
                }
            }
        }
        list
    }
}

/// The protocols rules ask about that the `Upgrade` of an exchange's 101
/// names (protocol name only, case-insensitive); none without a 101.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SwitchedTo {
    websocket: bool,
    h2c: bool,
    h2: bool,
}

impl SwitchedTo {
    fn of(switched_protocols: &[Cow<str>]) -> SwitchedTo {
        let mut switched_to = SwitchedTo::default();
        for protocol in switched_protocols {
            let name = protocol_name(protocol);
            switched_to.websocket |= name.eq_ignore_ascii_case("websocket");
            switched_to.h2c |= name.eq_ignore_ascii_case("h2c");
            switched_to.h2 |= name.eq_ignore_ascii_case("h2");
        }
        switched_to
    }
}

impl<'a> Offer<'a> {
    pub fn of(exchange: &'a Exchange) -> Offer<'a> {
        let switch = switch_response(exchange);
        let switched = switch.map_or_else(UpgradeList::none, |response| {
            UpgradeList::of(response.header_values("upgrade"))
        });
        let switched_to = SwitchedTo::of(&switched.protocols);
        match &exchange.request {
            Some(request) => {
                let mut offer = Offer::of_request(request, switched, switched_to);
                offer.involves_upgrade |= switch.is_some();
                offer
            }
            None => Offer {
                is_offer: false,
                protocols: UpgradeProtocols::new(),
                switched_protocols: switched.protocols,
                switch_carries_upgrade: switched.carried,
                involves_upgrade: switch.is_some(),
                upgrade_elements_are_tokens: switched.all_tokens,
                websocket: false,
                h2c: false,
                switched_to,
                websocket_defects: OnceCell::new(),
            },
        }
    }

    fn of_request(
        request: &'a RequestHead,
        switched: UpgradeList<'a>,
        switched_to: SwitchedTo,
    ) -> Offer<'a> {
        // The `Upgrade` lines are looked up once, for the offer and its protocols.
        let offered = UpgradeList::of(request.header_values("upgrade"));
        let protocols = offered.protocols;
        let carries_upgrade = offered.carried;
        let is_offer = carries_upgrade && request.has_element("connection", "upgrade");
        // Each protocol's name worked out once for both questions.
        let (mut websocket, mut h2c) = (false, false);
        if is_offer {
            for protocol in &protocols {
                let name = protocol_name(protocol);
                websocket |= name.eq_ignore_ascii_case("websocket");
                h2c |= name.eq_ignore_ascii_case("h2c");
            }
        }
        Offer {
            is_offer,
            protocols,
            switched_protocols: switched.protocols,
            switch_carries_upgrade: switched.carried,
            involves_upgrade: carries_upgrade,
            upgrade_elements_are_tokens: offered.all_tokens && switched.all_tokens,
            websocket,
            h2c,
            switched_to,
            websocket_defects: OnceCell::new(),
        }
    }

    /// The exchange's 101 switched to `websocket`.
    pub fn switched_to_websocket(&self) -> bool {
        self.switched_to.websocket
    }

    /// The exchange's 101 switched to `h2c`.
    pub fn switched_to_h2c(&self) -> bool {
        self.switched_to.h2c
    }

    /// The exchange's 101 switched to `h2`.
    pub fn switched_to_h2(&self) -> bool {
        self.switched_to.h2
    }

    /// The request is an offer that names `websocket` (protocol name
    /// only, case-insensitive).
    pub fn names_websocket(&self) -> bool {
        self.websocket
    }

    /// The request is an offer that names `h2c` (protocol name only,
    /// case-insensitive).
    pub fn names_h2c(&self) -> bool {
        self.h2c
    }
}

/// [`String::from_utf8_lossy`], which rules and events ask of nearly every
/// value they read. Values are almost always ASCII, which `is_ascii` checks
/// a word at a time: several times cheaper on short values than
/// `str::from_utf8`, let alone the lossy decoder.
pub fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    String::from_utf8_lossy(bytes)
}

/// `name` of an `Upgrade` element `name[/version]`.
pub fn protocol_name(element: &str) -> &str {
    protocol_parts(element).0.trim()
}

/// The 101 of an exchange that switched protocols.
pub fn switch_response(exchange: &Exchange) -> Option<&crate::http::ResponseHead> {
    exchange.response.as_ref().filter(|r| r.line.status == 101)
}

/// Field values as sent, joined into one list for a message: `a, b`.
pub fn joined_values<'a>(values: impl Iterator<Item = &'a [u8]>) -> String {
    let mut joined = String::new();
    for (index, value) in values.enumerate() {
        if index > 0 {
            joined.push_str(", ");
        }
        joined.push_str(&utf8_lossy(value));
    }
    joined
}

/// Each value in backticks, for a message: `` `a`, `b` ``.
pub fn backticked_values(values: &[&[u8]]) -> String {
    values
        .iter()
        .map(|value| format!("`{}`", utf8_lossy(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name` and `version` of an `Upgrade` element `name[/version]`.
pub fn protocol_parts(element: &str) -> (&str, Option<&str>) {
    // Rules ask this of every protocol offered and chosen: a plain byte
    // search is much cheaper than a `char` pattern on such short strings,
    // and since `/` is ASCII, slicing around it stays on char boundaries.
    match element.bytes().position(|b| b == b'/') {
        Some(slash) => (&element[..slash], Some(&element[slash + 1..])),
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
    // Most servers echo a protocol exactly as offered: no better match exists.
    if offer.protocols.iter().any(|offered| offered == chosen) {
        return OfferMatch::Exact;
    }
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

/// Whether an `Upgrade` element is `token ["/" token]` (RFC 9110 §7.8).
pub fn is_protocol_token(element: &[u8]) -> bool {
    let is_token = |part: &[u8]| !part.is_empty() && part.iter().all(|&b| is_tchar(b));
    match element.iter().position(|&b| b == b'/') {
        Some(slash) => is_token(&element[..slash]) && is_token(&element[slash + 1..]),
        None => is_token(element),
    }
}

/// The length `engine` decodes `encoded` to, or why it cannot. Values of
/// heads are short: they are decoded on the stack, a longer one only into
/// an allocation.
pub(super) fn decoded_len(engine: &impl Engine, encoded: &[u8]) -> Result<usize, DecodeError> {
    let mut decoded = [0; 64];
    match engine.decode_slice(encoded, &mut decoded) {
        Ok(len) => Ok(len),
        Err(DecodeSliceError::DecodeError(error)) => Err(error),
        Err(DecodeSliceError::OutputSliceTooSmall) => engine.decode(encoded).map(|d| d.len()),
    }
}

/// The values of the field lines of one name: most fields that must appear
/// once do, so the values are only collected when there are several.
pub(super) enum Occurrences<'a> {
    None,
    Once(&'a [u8]),
    Several(Vec<&'a [u8]>),
}

impl<'a> Occurrences<'a> {
    pub(super) fn of(mut values: impl Iterator<Item = &'a [u8]>) -> Occurrences<'a> {
        match (values.next(), values.next()) {
            (None, _) => Occurrences::None,
            (Some(value), None) => Occurrences::Once(value),
            (Some(first), Some(second)) => {
                Occurrences::Several([first, second].into_iter().chain(values).collect())
            }
        }
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
pub(super) fn not_exactly_one<'a>(
    subject: &str,
    name: &str,
    values: impl Iterator<Item = &'a [u8]>,
) -> Option<Violation> {
    match Occurrences::of(values) {
        Occurrences::None => Some(Violation::new(format!("{subject} no `{name}`"))),
        Occurrences::Once(_) => None,
        Occurrences::Several(several) => Some(Violation::new(format!(
            "{subject} {}",
            field_lines(name, &several)
        ))),
    }
}
