//! Which leg of a reverse proxy a watched port serves, as the configuration
//! says: some rules judge the same exchange differently on each leg.

use std::{fmt, str::FromStr};

use serde::Deserialize;

/// Not the client/server role of an HTTP message's sender: the role of the
/// server's port in front of or behind a proxy.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum PortRole {
    /// Clients reach the proxy here.
    Frontend,
    /// The proxy reaches its backends here.
    Backend,
}

impl FromStr for PortRole {
    type Err = String;

    fn from_str(text: &str) -> Result<PortRole, String> {
        match text {
            "frontend" => Ok(PortRole::Frontend),
            "backend" => Ok(PortRole::Backend),
            other => Err(format!("`{other}` is not a role (frontend or backend)")),
        }
    }
}

impl TryFrom<String> for PortRole {
    type Error = String;

    fn try_from(text: String) -> Result<PortRole, String> {
        text.parse()
    }
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRole::Frontend => "frontend",
            PortRole::Backend => "backend",
        })
    }
}
