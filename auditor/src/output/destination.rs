//! `--output SPEC` and the config's `output.destinations`.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::Deserialize;

/// The local syslog socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Destination {
    Stdout,
    /// Appended to; reopened on SIGHUP.
    File(PathBuf),
    /// RFC 5424 messages to a local datagram socket.
    Syslog(PathBuf),
}

impl FromStr for Destination {
    type Err = String;

    /// `stdout`, `file:PATH`, `syslog` or `syslog:SOCKET`.
    fn from_str(spec: &str) -> Result<Destination, String> {
        match spec.split_once(':') {
            None if spec == "stdout" => Ok(Destination::Stdout),
            None if spec == "syslog" => Ok(Destination::Syslog(SYSLOG_SOCKET.into())),
            Some(("file", path)) if !path.is_empty() => Ok(Destination::File(path.into())),
            Some(("syslog", socket)) if !socket.is_empty() => {
                Ok(Destination::Syslog(socket.into()))
            }
            _ => Err(format!(
                "`{spec}` is not an output (stdout, file:PATH, syslog or syslog:SOCKET)"
            )),
        }
    }
}

impl TryFrom<String> for Destination {
    type Error = String;

    fn try_from(spec: String) -> Result<Destination, String> {
        spec.parse()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Stdout => f.write_str("stdout"),
            Destination::File(path) => write!(f, "file:{}", path.display()),
            Destination::Syslog(socket) => write!(f, "syslog:{}", socket.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_spec() {
        assert_eq!("stdout".parse(), Ok(Destination::Stdout));
        assert_eq!(
            "file:/var/log/a.json".parse(),
            Ok(Destination::File("/var/log/a.json".into()))
        );
        assert_eq!("syslog".parse(), Ok(Destination::Syslog("/dev/log".into())));
        assert_eq!(
            "syslog:/run/x.sock".parse(),
            Ok(Destination::Syslog("/run/x.sock".into()))
        );
        for bad in ["", "file:", "stderr", "syslog:", "http://x"] {
            let error = bad.parse::<Destination>().unwrap_err();
            assert!(error.contains("is not an output"), "{bad}: {error}");
        }
    }
}
