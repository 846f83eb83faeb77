//! How the catalogue reads messages ("How messages are read" in rules.md):
//! token lists across field lines, case-insensitive, and the offer.

use crate::http::{Exchange, RequestHead};

/// The upgrade offer an exchange's request makes, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The request carries `Upgrade` and lists `upgrade` in `Connection`.
    pub is_offer: bool,
    /// The request's `Upgrade` elements, trimmed, as sent.
    pub protocols: Vec<String>,
}

impl Offer {
    pub fn of(exchange: &Exchange) -> Offer {
        match &exchange.request {
            Some(request) => Offer::of_request(request),
            None => Offer {
                is_offer: false,
                protocols: Vec::new(),
            },
        }
    }

    fn of_request(request: &RequestHead) -> Offer {
        let protocols: Vec<String> = request
            .header_elements("upgrade")
            .filter(|element| !element.is_empty())
            .map(|element| String::from_utf8_lossy(element).into_owned())
            .collect();
        Offer {
            is_offer: request.is_upgrade_offer(),
            protocols,
        }
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
    element.split('/').next().unwrap_or(element).trim()
}
