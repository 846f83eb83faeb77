//! The `[[silence]]` tables: findings an operator accepts (a vendor
//! appliance, a backend they do not own). A silenced finding raises no
//! alert and does not count for `--fail-on`; it is counted per rule.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use ipnet::IpNet;
use serde::Deserialize;

use super::{Finding, PortRole};
use crate::http::Exchange;

/// One `[[silence]]` table. Every matcher given must match; a table gives
/// at least one (validation says so).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// A rule id.
    #[serde(default)]
    pub rule: Option<String>,
    /// The server's address, or a network in CIDR notation.
    #[serde(default)]
    pub server: Option<Network>,
    #[serde(default)]
    pub server_port: Option<u16>,
    /// The client's address, or a network in CIDR notation.
    #[serde(default)]
    pub client: Option<Network>,
    /// The role of the server's port.
    #[serde(default)]
    pub role: Option<PortRole>,
    /// The request's `Host`, its port left out, in any case; `*.example.com`
    /// matches every name under example.com.
    #[serde(default)]
    pub host: Option<String>,
    /// The last day (UTC) the silence applies.
    #[serde(default)]
    pub expires: Option<ExpiryDate>,
    /// Why the finding is accepted: required.
    pub comment: String,
}

/// An address or a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network(IpNet);

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Network(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|address| Network(IpNet::from(address)))
            .map_err(|_| {
                format!("`{text}` is neither an address nor a network (10.0.0.0/8, 2001:db8::/32)")
            })
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Network, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A calendar day, as TOML writes a date (`expires = 2027-03-31`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiryDate(time::Date);

impl<'de> Deserialize<'de> for ExpiryDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExpiryDate, D::Error> {
        let datetime = toml::value::Datetime::deserialize(deserializer)?;
        let day = match datetime {
            toml::value::Datetime {
                date: Some(date),
                time: None,
                offset: None,
            } => time::Month::try_from(date.month).ok().and_then(|month| {
                time::Date::from_calendar_date(date.year.into(), month, date.day).ok()
            }),
            _ => None,
        };
        day.map(ExpiryDate).ok_or_else(|| {
            serde::de::Error::custom(format!("`{datetime}` is not a day such as 2027-03-31"))
        })
    }
}

impl Silence {
    /// Whether any matcher is given (validation refuses a table without one).
    pub fn matches_something(&self) -> bool {
        self.rule.is_some()
            || self.server.is_some()
            || self.server_port.is_some()
            || self.client.is_some()
            || self.role.is_some()
            || self.host.is_some()
    }

    /// Whether the last day it applies was before `today` (UTC).
    pub fn has_expired(&self, today: time::Date) -> bool {
        self.expires.is_some_and(|last| last.0 < today)
    }

    fn silences(&self, finding: &Finding, seen: &Seen<'_>) -> bool {
        self.rule
            .as_deref()
            .is_none_or(|rule| rule == finding.rule.id)
            && !self.has_expired(seen.today)
            && self
                .server
                .is_none_or(|net| net.0.contains(&seen.server.ip()))
            && self
                .server_port
                .is_none_or(|port| port == seen.server.port())
            && self
                .client
                .is_none_or(|net| net.0.contains(&seen.client.ip()))
            && self.role.is_none_or(|role| Some(role) == seen.role)
            && self
                .host
                .as_deref()
                .is_none_or(|host| host_matches(host, seen.host))
    }
}

/// What silences match an exchange's findings against.
struct Seen<'a> {
    server: SocketAddr,
    client: SocketAddr,
    role: Option<PortRole>,
    host: Option<&'a [u8]>,
    today: time::Date,
}

/// The silences in force.
#[derive(Clone, Debug, Default)]
pub struct Silences {
    silences: Vec<Silence>,
}

impl Silences {
    pub fn new(silences: Vec<Silence>) -> Silences {
        Silences { silences }
    }

    /// Takes the silenced findings out of `findings` of `exchange`, whose
    /// server port has `role`, counting each under its rule in `silenced`.
    /// `today` (UTC) decides which silences have expired.
    pub fn apply(
        &self,
        findings: &mut Vec<Finding>,
        exchange: &Exchange,
        role: Option<PortRole>,
        today: time::Date,
        silenced: &mut BTreeMap<&'static str, u64>,
    ) {
        if self.silences.is_empty() || findings.is_empty() {
            return;
        }
        let host = exchange
            .request
            .as_ref()
            .and_then(|request| request.header_values("host").next());
        let seen = Seen {
            server: exchange.server,
            client: exchange.client,
            role,
            host,
            today,
        };
        findings.retain(|finding| {
            let silence = self.silences.iter().any(|s| s.silences(finding, &seen));
            if silence {
                *silenced.entry(finding.rule.id).or_default() += 1;
            }
            !silence
        });
    }
}

/// `pattern` against a `Host` value, its port left out, in any case.
fn host_matches(pattern: &str, host: Option<&[u8]>) -> bool {
    let Some(host) = host else { return false };
    let host = String::from_utf8_lossy(host);
    let name = match host.rsplit_once(':') {
        // Not the colons of an IPv6 literal without a port.
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => &host,
    };
    match pattern.strip_prefix("*.") {
        Some(domain) => name.len().checked_sub(domain.len() + 1).is_some_and(|dot| {
            name.as_bytes()[dot] == b'.' && name[dot + 1..].eq_ignore_ascii_case(domain)
        }),
        None => name.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{evaluate, testing, Context};

    const PROXMOX_OFFER: &[u8] = b"GET /api2/json/backup HTTP/1.1\r\nHost: PBS.lab.example:8007\r\nUpgrade: proxmox-backup-protocol-v1\r\nConnection: upgrade\r\n\r\n";
    const PROXMOX_101: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: proxmox-backup-protocol-v1\r\n\r\n";
    const RULE: &str = "upgrade-101-missing-connection-option";

    fn day(text: &str) -> time::Date {
        let toml = format!("expires = {text}\ncomment = \"c\"");
        toml::from_str::<Silence>(&toml).unwrap().expires.unwrap().0
    }

    fn silence(toml: &str) -> Silence {
        toml::from_str(&format!("{toml}\ncomment = \"accepted\"")).unwrap()
    }

    /// What is left of the Proxmox exchange's findings under `silence`, on
    /// `today`, and what was counted.
    fn left(silence: Silence, today: &str) -> (Vec<&'static str>, BTreeMap<&'static str, u64>) {
        let exchange = testing::exchange(PROXMOX_OFFER, PROXMOX_101);
        let mut findings = evaluate(&exchange, &Context::default());
        assert!(findings.iter().any(|f| f.rule.id == RULE));
        let mut silenced = BTreeMap::new();
        Silences::new(vec![silence]).apply(
            &mut findings,
            &exchange,
            Some(PortRole::Backend),
            day(today),
            &mut silenced,
        );
        (findings.iter().map(|f| f.rule.id).collect(), silenced)
    }

    #[test]
    fn every_matcher_given_must_match() {
        let server = testing::server();
        let client = testing::client();
        let matching = [
            format!("rule = \"{RULE}\""),
            format!("server = \"{}\"", server.ip()),
            format!("server = \"{}/24\"", server.ip()),
            format!("server_port = {}", server.port()),
            format!("client = \"{}/16\"", client.ip()),
            "role = \"backend\"".to_owned(),
            "host = \"pbs.LAB.example\"".to_owned(),
            "host = \"*.example\"".to_owned(),
            format!("rule = \"{RULE}\"\nexpires = 2027-03-31"),
        ];
        for toml in &matching {
            let (left, silenced) = left(silence(toml), "2027-03-31");
            assert!(!left.contains(&RULE), "{toml} silences it");
            assert_eq!(silenced.get(RULE), Some(&1), "{toml}");
        }
        let missing = [
            "rule = \"ws-key-invalid\"".to_owned(),
            "server = \"192.0.2.4/30\"".to_owned(),
            format!("server_port = {}", server.port() + 1),
            "client = \"198.51.100.0/24\"".to_owned(),
            "role = \"frontend\"".to_owned(),
            "host = \"lab.example\"".to_owned(),
            "host = \"*.pbs.lab.example\"".to_owned(),
            format!("rule = \"{RULE}\"\nrole = \"frontend\""),
            format!("rule = \"{RULE}\"\nexpires = 2027-03-30"),
        ];
        for toml in &missing {
            let (left, silenced) = left(silence(toml), "2027-03-31");
            assert!(left.contains(&RULE), "{toml} does not silence it");
            assert!(silenced.is_empty(), "{toml}");
        }
    }

    #[test]
    fn hosts_match_without_their_port() {
        for (pattern, host, matches) in [
            ("pbs", "pbs:8007", true),
            ("pbs", "PBS", true),
            ("[::1]", "[::1]:443", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
        ] {
            assert_eq!(
                host_matches(pattern, Some(host.as_bytes())),
                matches,
                "{pattern} against {host}"
            );
        }
        assert!(!host_matches("pbs", None));
    }

    #[test]
    fn expiry_is_a_day_and_networks_parse() {
        let error = toml::from_str::<Silence>("expires = 2027-03-31T10:00:00Z\ncomment = \"c\"")
            .unwrap_err();
        assert!(error.message().contains("is not a day"), "{error}");
        let network = |text: &str| text.parse::<Network>();
        assert_eq!(network("10.1.2.3/8"), network("10.0.0.0/8"));
        assert!(network("2001:db8::1").is_ok());
        assert!(network("10.0.0.0/33").is_err() && network("pbs.lab").is_err());
    }
}
